//! Products and customers: rows, lookups and the admin API's create/update/delete.
//! Invariants: stock changes only through stock movements (never by editing a product);
//! deleting keeps history (products are deactivated, customers with history stay).

use super::ExecError;
use crate::action::resolve::key;
use crate::action::{Dec, MAX_MONEY, MAX_QTY, MAX_TEXT};
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// A product as stored.
#[derive(Debug, Clone)]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub unit: String,
    pub price: i64,
    pub stock: i64,
    pub low_stock_at: Option<i64>,
}

/// A customer as stored.
#[derive(Debug, Clone)]
pub struct Customer {
    pub id: i64,
    pub name: String,
    pub phone: Option<String>,
    pub balance: i64,
}

const PRODUCT_COLS: &str = "id, name, unit, price, stock, low_stock_at";

fn product_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    Ok(Product {
        id: r.get(0)?,
        name: r.get(1)?,
        unit: r.get(2)?,
        price: r.get(3)?,
        stock: r.get(4)?,
        low_stock_at: r.get(5)?,
    })
}

/// An active product by id.
pub fn product(conn: &Connection, id: i64) -> rusqlite::Result<Option<Product>> {
    conn.row(
        &format!("SELECT {PRODUCT_COLS} FROM products WHERE id = ?1 AND active = 1"),
        [id],
        product_row,
    )
    .optional()
}

/// An active product whose name or alias has exactly this key.
pub fn product_by_key(conn: &Connection, k: &str) -> rusqlite::Result<Option<Product>> {
    conn.row(
        &format!(
            "SELECT {PRODUCT_COLS} FROM products WHERE active = 1 AND (name_key = ?1
               OR id = (SELECT product_id FROM product_aliases WHERE alias_key = ?1))"
        ),
        [k],
        product_row,
    )
    .optional()
}

/// Every active product, lowest stock relative to its threshold first when `low_first`.
pub fn products(conn: &Connection) -> rusqlite::Result<Vec<Product>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {PRODUCT_COLS} FROM products WHERE active = 1 ORDER BY name_key"
    ))?;
    let rows = stmt.query_map([], product_row)?;
    rows.collect()
}

fn customer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Customer> {
    Ok(Customer {
        id: r.get(0)?,
        name: r.get(1)?,
        phone: r.get(2)?,
        balance: r.get(3)?,
    })
}

/// A customer by id.
pub fn customer(conn: &Connection, id: i64) -> rusqlite::Result<Option<Customer>> {
    conn.row(
        "SELECT id, name, phone, balance FROM customers WHERE id = ?1 AND removed_at IS NULL",
        [id],
        customer_row,
    )
    .optional()
}

/// A customer whose name has exactly this key.
pub fn customer_by_key(conn: &Connection, k: &str) -> rusqlite::Result<Option<Customer>> {
    conn.row(
        "SELECT id, name, phone, balance FROM customers WHERE name_key = ?1 AND removed_at IS NULL",
        [k],
        customer_row,
    )
    .optional()
}

/// Adds a customer (name unique in any case).
pub fn insert_customer(
    conn: &Connection,
    name: &str,
    phone: Option<&str>,
) -> Result<Customer, ExecError> {
    let name = clean_name("name", name)?;
    let k = key(&name);
    if customer_by_key(conn, &k)?.is_some() {
        return Err(ExecError::Conflict(format!(
            "a customer called {name} exists"
        )));
    }
    conn.exec(
        "INSERT INTO customers (name, name_key, phone, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![name, k, phone, crate::clock::now()],
    )?;
    Ok(customer(conn, conn.last_insert_rowid())?.expect("just inserted"))
}

pub(super) fn clean_name(field: &str, s: &str) -> Result<String, ExecError> {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() || key(&s).is_empty() {
        return Err(ExecError::Invalid(format!(
            "{field} must contain letters or digits"
        )));
    }
    if s.len() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(ExecError::Invalid(format!(
            "{field} must be at most {MAX_TEXT} bytes of printable text"
        )));
    }
    Ok(s)
}

fn not_negative(field: &str, d: Dec, digits: u32, bound: i64) -> Result<i64, ExecError> {
    let v = d
        .to_fixed(digits)
        .map_err(|e| ExecError::Invalid(format!("{field}: {e}")))?;
    if v < 0 {
        return Err(ExecError::Invalid(format!("{field} cannot be negative")));
    }
    if v > bound {
        return Err(ExecError::Invalid(format!(
            "{field} {d} is more than the books can hold (at most {})",
            Dec::from_fixed(bound, digits)
        )));
    }
    Ok(v)
}

/// A price as stored: minor units, not negative, at most `MAX_MONEY`.
fn price(d: Dec, digits: u32) -> Result<i64, ExecError> {
    not_negative("price", d, digits, MAX_MONEY)
}

/// A stock figure as stored: thousandths, not negative, at most `MAX_QTY`.
fn quantity(field: &str, d: Dec) -> Result<i64, ExecError> {
    not_negative(field, d, 3, MAX_QTY * 1000)
}

// ---- products (admin API) ----

/// A product as the API shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ProductView {
    pub id: i64,
    pub name: String,
    pub unit: String,
    pub price: Dec,
    pub stock: Dec,
    pub low_stock_at: Option<Dec>,
    pub low: bool,
    pub aliases: Vec<String>,
}

/// Shows a product with its currency's digits and the tenant's default threshold.
pub fn product_view(
    conn: &Connection,
    p: &Product,
    digits: u32,
    low_default: i64,
) -> rusqlite::Result<ProductView> {
    let mut stmt = conn.prepare_cached(
        "SELECT alias_key FROM product_aliases WHERE product_id = ?1 ORDER BY alias_key",
    )?;
    let aliases = stmt
        .query_map([p.id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ProductView {
        id: p.id,
        name: p.name.clone(),
        unit: p.unit.clone(),
        price: Dec::from_fixed(p.price, digits),
        stock: Dec::from_fixed(p.stock, 3),
        low_stock_at: p.low_stock_at.map(|l| Dec::from_fixed(l, 3)),
        low: p.stock < p.low_stock_at.unwrap_or(low_default),
        aliases,
    })
}

/// Body of `POST /products`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub name: String,
    pub price: Dec,
    pub unit: Option<String>,
    pub stock: Option<Dec>,
    pub low_stock_at: Option<Dec>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// Body of `PATCH /products/{id}` (stock changes go through restock / stock count).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub price: Option<Dec>,
    pub unit: Option<String>,
    pub low_stock_at: Option<Dec>,
    pub aliases: Option<Vec<String>>,
}

fn set_aliases(conn: &Connection, id: i64, aliases: &[String]) -> Result<(), ExecError> {
    conn.exec("DELETE FROM product_aliases WHERE product_id = ?1", [id])?;
    for a in aliases {
        let k = key(&clean_name("alias", a)?);
        let taken = product_by_key(conn, &k)?.is_some_and(|p| p.id != id);
        if taken {
            return Err(ExecError::Conflict(format!(
                "{a:?} already names another product"
            )));
        }
        conn.exec(
            "INSERT OR REPLACE INTO product_aliases (alias_key, product_id) VALUES (?1, ?2)",
            params![k, id],
        )?;
    }
    Ok(())
}

/// Adds a product; an opening stock is recorded as an `initial` movement.
pub fn insert_product(
    conn: &Connection,
    new: &NewProduct,
    digits: u32,
    journal_id: Option<i64>,
) -> Result<Product, ExecError> {
    let name = clean_name("name", &new.name)?;
    let k = key(&name);
    if product_by_key(conn, &k)?.is_some() {
        return Err(ExecError::Conflict(format!(
            "a product called {name} exists"
        )));
    }
    let unit = match &new.unit {
        Some(u) => clean_name("unit", u)?,
        None => "pcs".into(),
    };
    let price = price(new.price, digits)?;
    let stock = new
        .stock
        .map(|s| quantity("stock", s))
        .transpose()?
        .unwrap_or(0);
    let low = new
        .low_stock_at
        .map(|l| quantity("low_stock_at", l))
        .transpose()?;
    // A deleted product's name is free again.
    conn.exec(
        "UPDATE products SET name_key = name_key || '#' || id WHERE name_key = ?1 AND active = 0",
        [&k],
    )?;
    conn.exec(
        "INSERT INTO products (name, name_key, unit, price, stock, low_stock_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![name, k, unit, price, stock, low, crate::clock::now()],
    )?;
    let id = conn.last_insert_rowid();
    if stock != 0 {
        conn.exec(
            "INSERT INTO stock_movements (product_id, delta, cause, journal_id, at)
             VALUES (?1, ?2, 'initial', ?3, ?4)",
            params![id, stock, journal_id, crate::clock::now()],
        )?;
    }
    set_aliases(conn, id, &new.aliases)?;
    Ok(product(conn, id)?.expect("just inserted"))
}

/// Applies a product patch.
pub fn update_product(
    conn: &Connection,
    id: i64,
    patch: &ProductPatch,
    digits: u32,
) -> Result<Product, ExecError> {
    product(conn, id)?.ok_or_else(|| ExecError::NotFound(format!("product {id} not found")))?;
    if let Some(name) = &patch.name {
        let name = clean_name("name", name)?;
        let k = key(&name);
        if product_by_key(conn, &k)?.is_some_and(|o| o.id != id) {
            return Err(ExecError::Conflict(format!(
                "a product called {name} exists"
            )));
        }
        conn.exec(
            "UPDATE products SET name = ?2, name_key = ?3 WHERE id = ?1",
            params![id, name, k],
        )?;
    }
    if let Some(price) = patch.price {
        conn.exec(
            "UPDATE products SET price = ?2 WHERE id = ?1",
            params![id, self::price(price, digits)?],
        )?;
    }
    if let Some(unit) = &patch.unit {
        conn.exec(
            "UPDATE products SET unit = ?2 WHERE id = ?1",
            params![id, clean_name("unit", unit)?],
        )?;
    }
    if let Some(low) = patch.low_stock_at {
        conn.exec(
            "UPDATE products SET low_stock_at = ?2 WHERE id = ?1",
            params![id, quantity("low_stock_at", low)?],
        )?;
    }
    if let Some(aliases) = &patch.aliases {
        set_aliases(conn, id, aliases)?;
    }
    Ok(product(conn, id)?.expect("exists"))
}

/// Deactivates a product (its history stays).
pub fn delete_product(conn: &Connection, id: i64) -> Result<(), ExecError> {
    let n = conn.exec(
        "UPDATE products SET active = 0 WHERE id = ?1 AND active = 1",
        [id],
    )?;
    conn.exec("DELETE FROM product_aliases WHERE product_id = ?1", [id])?;
    if n == 0 {
        return Err(ExecError::NotFound(format!("product {id} not found")));
    }
    Ok(())
}

// ---- customers (admin API) ----

/// A customer as the API shows it (`balance` is what they owe the shop).
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct CustomerView {
    pub id: i64,
    pub name: String,
    pub phone: Option<String>,
    pub balance: Dec,
}

impl Customer {
    /// The API view with the currency's digits.
    pub fn view(&self, digits: u32) -> CustomerView {
        CustomerView {
            id: self.id,
            name: self.name.clone(),
            phone: self.phone.clone(),
            balance: Dec::from_fixed(self.balance, digits),
        }
    }
}

/// Body of `POST /customers` and `PATCH /customers/{id}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    pub name: Option<String>,
    pub phone: Option<String>,
}

/// Every customer by name.
pub fn customers(conn: &Connection) -> rusqlite::Result<Vec<Customer>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, name, phone, balance FROM customers WHERE removed_at IS NULL ORDER BY name_key",
    )?;
    let rows = stmt.query_map([], customer_row)?;
    rows.collect()
}

fn check_phone(phone: &Option<String>) -> Result<(), ExecError> {
    if let Some(p) = phone
        && (p.len() > 32 || !p.chars().all(|c| c.is_ascii_digit() || "+-() ".contains(c)))
    {
        return Err(ExecError::Invalid(
            "phone must be up to 32 digits, spaces, +, -, ( or )".into(),
        ));
    }
    Ok(())
}

/// Adds a customer from the API.
pub fn create_customer(conn: &Connection, input: &CustomerInput) -> Result<Customer, ExecError> {
    let name = input
        .name
        .as_deref()
        .ok_or_else(|| ExecError::Invalid("name is required".into()))?;
    check_phone(&input.phone)?;
    insert_customer(conn, name, input.phone.as_deref())
}

/// Renames a customer or changes their phone.
pub fn update_customer(
    conn: &Connection,
    id: i64,
    input: &CustomerInput,
) -> Result<Customer, ExecError> {
    customer(conn, id)?.ok_or_else(|| ExecError::NotFound(format!("customer {id} not found")))?;
    check_phone(&input.phone)?;
    if let Some(name) = &input.name {
        let name = clean_name("name", name)?;
        let k = key(&name);
        if customer_by_key(conn, &k)?.is_some_and(|c| c.id != id) {
            return Err(ExecError::Conflict(format!(
                "a customer called {name} exists"
            )));
        }
        conn.exec(
            "UPDATE customers SET name = ?2, name_key = ?3 WHERE id = ?1",
            params![id, name, k],
        )?;
    }
    if let Some(phone) = &input.phone {
        conn.exec(
            "UPDATE customers SET phone = ?2 WHERE id = ?1",
            params![id, phone],
        )?;
    }
    Ok(customer(conn, id)?.expect("exists"))
}

/// Takes a customer out of lists and lookups, keeping their row for the history that names
/// them (an undone sale, a cancelled order); their name is free again.
pub fn remove_customer(conn: &Connection, id: i64) -> rusqlite::Result<()> {
    conn.exec(
        "UPDATE customers SET removed_at = ?2, name_key = name_key || '#' || id
         WHERE id = ?1 AND removed_at IS NULL",
        params![id, crate::clock::now()],
    )?;
    Ok(())
}

/// Removes a customer who has no history.
pub fn delete_customer(conn: &Connection, id: i64) -> Result<(), ExecError> {
    customer(conn, id)?.ok_or_else(|| ExecError::NotFound(format!("customer {id} not found")))?;
    let used: bool = conn.row(
        "SELECT EXISTS (SELECT 1 FROM sales WHERE customer_id = ?1)
             OR EXISTS (SELECT 1 FROM payments WHERE customer_id = ?1)
             OR EXISTS (SELECT 1 FROM orders WHERE customer_id = ?1)",
        [id],
        |r| r.get(0),
    )?;
    if used {
        return Err(ExecError::Conflict(format!(
            "customer {id} has sales, payments or orders and cannot be deleted"
        )));
    }
    conn.exec("DELETE FROM customers WHERE id = ?1", [id])?;
    Ok(())
}

/// A product under its low-stock threshold that has not been alerted since it was last
/// at or over it.
#[derive(Debug, Clone)]
pub struct NewlyLow {
    pub id: i64,
    pub name: String,
    pub unit: String,
    pub stock: i64,
    /// Its threshold (its own, else the shop's default), in stock units.
    pub threshold: i64,
}

/// Re-arms the alert of products back at or over their threshold (a restock, a count, a new
/// threshold), then lists the active products under it not alerted yet, by name.
pub fn newly_low(conn: &Connection, default_threshold: i64) -> rusqlite::Result<Vec<NewlyLow>> {
    let threshold = "coalesce(low_stock_at, ?1)";
    conn.exec(
        &format!(
            "UPDATE products SET low_alerted = 0 WHERE low_alerted = 1 AND stock >= {threshold}"
        ),
        [default_threshold],
    )?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, name, unit, stock, {threshold} FROM products
         WHERE active = 1 AND low_alerted = 0 AND stock < {threshold} ORDER BY name_key"
    ))?;
    stmt.query_map([default_threshold], |r| {
        Ok(NewlyLow {
            id: r.get(0)?,
            name: r.get(1)?,
            unit: r.get(2)?,
            stock: r.get(3)?,
            threshold: r.get(4)?,
        })
    })?
    .collect()
}

/// Flags products as alerted, so the next runs stay quiet until their stock is back up.
pub fn mark_low_alerted(conn: &Connection, low: &[NewlyLow]) -> rusqlite::Result<()> {
    for p in low {
        conn.exec("UPDATE products SET low_alerted = 1 WHERE id = ?1", [p.id])?;
    }
    Ok(())
}
