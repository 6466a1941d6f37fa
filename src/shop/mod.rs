//! The shop's data in a tenant file: its settings, staff, catalog, customers, sales and
//! reports — the queries shared by the executor and the HTTP routes.
//! Invariant: money is integer minor units and quantities integer thousandths in every
//! query; timestamps are UTC `YYYY-MM-DDTHH:MM:SS.mmmZ`, so text order is time order.

pub mod catalog;
pub mod report;
pub mod staff;

pub use staff::{Staff, find_staff, staff_by_id};

use crate::action::currency_digits;
use crate::action::resolve::Candidate;
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, OptionalExtension, params};

/// Settings the executor needs, read from the tenant's `settings` table.
#[derive(Debug, Clone)]
pub struct ShopSettings {
    pub currency: String,
    pub digits: u32,
    pub timezone: chrono_tz::Tz,
    /// Threshold (thousandths) for products without their own.
    pub low_stock_default: i64,
    /// How long a new join code works.
    pub join_code_ttl: chrono::Duration,
}

/// Default low-stock threshold: 5 units.
pub const LOW_STOCK_DEFAULT: i64 = 5_000;
/// Default life of a join code, in hours.
pub const JOIN_CODE_TTL_HOURS: i64 = 72;

fn setting(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    let raw: Option<String> = conn
        .row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(raw.map(unquote))
}

/// A stored value as text: values are JSON scalars, so strings come back quoted.
fn unquote(v: String) -> String {
    match serde_json::from_str::<serde_json::Value>(&v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => v,
    }
}

/// The settings an owner may change, and what each takes.
pub const SETTINGS: &[(&str, &str)] = &[
    (
        "greeting",
        "text of 1 to 500 characters (what a chat gets before it has joined)",
    ),
    (
        "low_stock_default",
        "a number of units, 0 or more (the low-stock threshold of products without their own)",
    ),
    (
        "join_code_ttl_hours",
        "a whole number of hours from 1 to 8760 (how long a new join code works)",
    ),
];

/// Settings fixed when the tenant is created.
pub const FIXED_SETTINGS: &[&str] = &["currency", "currency_digits", "timezone"];

/// Checks one setting of a `PATCH /settings` (`null` removes it, back to its default).
pub fn check_setting(key: &str, value: &serde_json::Value) -> Result<(), String> {
    if FIXED_SETTINGS.contains(&key) {
        return Err(format!(
            "setting {key:?} is fixed when the tenant is created"
        ));
    }
    if !SETTINGS.iter().any(|(k, _)| *k == key) {
        let known: Vec<&str> = SETTINGS.iter().map(|(k, _)| *k).collect();
        return Err(format!(
            "unknown setting {:?}: the settings are {}",
            key.chars().take(64).collect::<String>(),
            known.join(", ")
        ));
    }
    if value.is_null() {
        return Ok(());
    }
    let ok = match key {
        "greeting" => value
            .as_str()
            .is_some_and(|s| !s.trim().is_empty() && s.chars().count() <= 500),
        "low_stock_default" => {
            value.as_f64().is_some_and(|n| n >= 0.0)
                && crate::action::Dec::parse(&value.to_string())
                    .and_then(|d| d.to_fixed(3).ok())
                    .is_some_and(|m| m <= crate::action::MAX_QTY * 1000)
        }
        "join_code_ttl_hours" => value.as_i64().is_some_and(|h| (1..=8760).contains(&h)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        let what = SETTINGS
            .iter()
            .find(|(k, _)| *k == key)
            .map_or("", |(_, w)| *w);
        Err(format!("{key} must be {what}"))
    }
}

/// The shop's own line for people who have not joined yet (setting `greeting`).
pub fn greeting(conn: &Connection) -> rusqlite::Result<Option<String>> {
    setting(conn, "greeting")
}

/// The shop settings (with defaults for anything unset), kept per connection while the
/// table is unchanged (`tenant::memo`).
pub fn load_settings(conn: &Connection) -> rusqlite::Result<ShopSettings> {
    crate::tenant::memo::with(conn, read_settings, ShopSettings::clone)
}

/// Reads the shop settings from the file.
fn read_settings(conn: &Connection) -> rusqlite::Result<ShopSettings> {
    // One statement for the four (every message reads them). The table holds a handful of
    // rows: reading them all is cheaper than `key IN (…)`, which builds a temporary index.
    let mut stmt = conn.prepare_cached("SELECT key, value FROM settings")?;
    let mut rows = stmt.query([])?;
    let [mut currency, mut timezone, mut low_stock, mut ttl] = [None, None, None, None];
    while let Some(r) = rows.next()? {
        let slot = match r.get_ref(0)?.as_str()? {
            "currency" => &mut currency,
            "timezone" => &mut timezone,
            "low_stock_default" => &mut low_stock,
            "join_code_ttl_hours" => &mut ttl,
            _ => continue,
        };
        *slot = Some(unquote(r.get(1)?));
    }
    let currency = currency.unwrap_or_else(|| "USD".into());
    let timezone = timezone
        .and_then(|t| t.parse().ok())
        .unwrap_or(chrono_tz::UTC);
    let low_stock_default = low_stock
        .and_then(|v| crate::action::Dec::parse(&v))
        .and_then(|d| d.to_fixed(3).ok())
        .unwrap_or(LOW_STOCK_DEFAULT);
    let ttl_hours = ttl
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|h| (1..=8760).contains(h))
        .unwrap_or(JOIN_CODE_TTL_HOURS);
    Ok(ShopSettings {
        digits: currency_digits(&currency),
        currency,
        timezone,
        low_stock_default,
        join_code_ttl: chrono::Duration::hours(ttl_hours),
    })
}

/// Seeds a new tenant file: currency, time zone, minor-unit digits, low-stock default and
/// the `owner` staff member.
pub fn init_tenant(conn: &Connection, currency: &str, timezone: &str) -> rusqlite::Result<()> {
    let set = |k: &str, v: serde_json::Value| {
        conn.exec(
            "INSERT INTO settings (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![k, v.to_string()],
        )
    };
    set("currency", currency.into())?;
    set("currency_digits", currency_digits(currency).into())?;
    set("timezone", timezone.into())?;
    set("low_stock_default", (LOW_STOCK_DEFAULT / 1000).into())?;
    let n = conn.exec(
        "INSERT OR IGNORE INTO staff (name, name_key, role, created_at)
         VALUES ('Owner', 'owner', 'owner', ?1)",
        [crate::clock::now()],
    )?;
    if n == 1 {
        let owner = conn.last_insert_rowid();
        staff::issue_join_code(conn, &load_settings(conn)?, owner).map_err(|e| match e {
            ExecError::Db(e) => e,
            other => rusqlite::Error::ToSqlConversionFailure(other.to_string().into()),
        })?;
    }
    Ok(())
}

/// Active products as match candidates (with their aliases).
pub fn product_candidates(conn: &Connection) -> rusqlite::Result<Vec<Candidate>> {
    let mut stmt = conn.prepare_cached(
        "SELECT p.id, p.name, group_concat(a.alias_key, char(31))
         FROM products p LEFT JOIN product_aliases a ON a.product_id = p.id
         WHERE p.active = 1 GROUP BY p.id",
    )?;
    let rows = stmt.query_map([], |r| {
        let aliases: Option<String> = r.get(2)?;
        Ok(Candidate {
            id: r.get(0)?,
            name: r.get(1)?,
            aliases: aliases
                .map(|a| a.split('\u{1f}').map(str::to_owned).collect())
                .unwrap_or_default(),
        })
    })?;
    rows.collect()
}

fn simple_candidates(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<Candidate>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map([], |r| {
        Ok(Candidate {
            id: r.get(0)?,
            name: r.get(1)?,
            aliases: Vec::new(),
        })
    })?;
    rows.collect()
}

/// The tenant's names for the phrase parser.
pub fn lexicon(conn: &Connection) -> rusqlite::Result<crate::parser::Lexicon> {
    let names = |sql: &str| -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare_cached(sql)?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect()
    };
    Ok(crate::parser::Lexicon {
        products: product_candidates(conn)?,
        customers: names("SELECT name FROM customers WHERE removed_at IS NULL")?,
        staff: names("SELECT name FROM staff WHERE active = 1")?,
        drivers: names("SELECT name FROM staff WHERE active = 1 AND role = 'driver'")?,
    })
}

/// Customers as match candidates.
pub fn customer_candidates(conn: &Connection) -> rusqlite::Result<Vec<Candidate>> {
    simple_candidates(
        conn,
        "SELECT id, name FROM customers WHERE removed_at IS NULL",
    )
}

/// Active drivers as match candidates.
pub fn driver_candidates(conn: &Connection) -> rusqlite::Result<Vec<Candidate>> {
    simple_candidates(
        conn,
        "SELECT id, name FROM staff WHERE role = 'driver' AND active = 1",
    )
}

/// Errors of the shop layer (executor and catalog).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// Bad input: answered 400, nothing written.
    #[error("{0}")]
    Invalid(String),
    /// The sender is no active staff member.
    #[error("{0}")]
    UnknownSender(String),
    /// The caller may not do this (answered 403).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
    #[error(transparent)]
    Store(#[from] crate::tenant::StoreError),
}

impl From<report::ReportError> for ExecError {
    fn from(e: report::ReportError) -> Self {
        match e {
            report::ReportError::Db(e) => ExecError::Db(e),
            too_large => ExecError::Invalid(too_large.to_string()),
        }
    }
}
