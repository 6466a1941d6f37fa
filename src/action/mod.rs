//! The closed set of actions (`../shared/ACTIONS.md`): their wire shape, their JSON Schema,
//! who may take each, and the checks each must pass before it touches a database.
//! Invariant: pure data and rules — nothing here does IO; unknown fields are rejected.

mod dec;
pub mod resolve;

pub use dec::{Dec, currency_digits, fmt_money, fmt_qty, fmt_units, is_currency, plural};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One line of a sale or order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub product: String,
    pub qty: Dec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_price: Option<Dec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Dec>,
}

/// Status filter of `list_orders`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Pending,
    Assigned,
    Delivered,
}

impl OrderStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Assigned => "assigned",
            OrderStatus::Delivered => "delivered",
        }
    }
}

/// Period of `sales_report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Today,
    Yesterday,
    ThisWeek,
    #[serde(rename = "last_7_days")]
    Last7Days,
    ThisMonth,
    LastMonth,
}

impl Period {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Today => "today",
            Period::Yesterday => "yesterday",
            Period::ThisWeek => "this_week",
            Period::Last7Days => "last_7_days",
            Period::ThisMonth => "this_month",
            Period::LastMonth => "last_month",
        }
    }

    /// Parses a wire name or the short name chat uses (`week`, `7d`, `month`, `lastmonth`):
    /// chat and API take the same names.
    pub fn parse(s: &str) -> Option<Period> {
        match s.to_lowercase().as_str() {
            "week" => Some(Period::ThisWeek),
            "7d" => Some(Period::Last7Days),
            "month" => Some(Period::ThisMonth),
            "lastmonth" => Some(Period::LastMonth),
            other => serde_json::from_value(serde_json::Value::String(other.to_owned())).ok(),
        }
    }

    /// Every name `parse` takes, for messages.
    pub const NAMES: &'static str = "today, yesterday, this_week (week), last_7_days (7d), this_month (month) or last_month (lastmonth)";

    /// `[start, end)` local dates of the period containing `today`.
    pub fn range(self, today: chrono::NaiveDate) -> (chrono::NaiveDate, chrono::NaiveDate) {
        use chrono::{Datelike, Days, Months};
        let day = Days::new(1);
        let month_start = today.with_day(1).expect("day 1 exists");
        match self {
            Period::Today => (today, today + day),
            Period::Yesterday => (today - day, today),
            Period::ThisWeek => {
                let back = Days::new(today.weekday().num_days_from_monday().into());
                (today - back, today + day)
            }
            Period::Last7Days => (today - Days::new(6), today + day),
            Period::ThisMonth => (month_start, today + day),
            Period::LastMonth => (month_start - Months::new(1), month_start),
        }
    }
}

/// A staff role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Manager,
    Staff,
    Driver,
    Vendor,
}

impl Role {
    /// Every role, most trusted first.
    pub const ALL: [Role; 5] = [
        Role::Owner,
        Role::Manager,
        Role::Staff,
        Role::Driver,
        Role::Vendor,
    ];

    /// The role as a person says it of someone: "the owner", "a manager", "staff".
    pub fn as_person(self) -> &'static str {
        match self {
            Role::Owner => "the owner",
            Role::Manager => "a manager",
            Role::Staff => "staff",
            Role::Driver => "a driver",
            Role::Vendor => "a vendor",
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Manager => "manager",
            Role::Staff => "staff",
            Role::Driver => "driver",
            Role::Vendor => "vendor",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
    }
}

/// What a message asks the shop to do. Tagged by `action`; unknown fields are rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    AddProduct {
        name: String,
        price: Dec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stock: Option<Dec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        low_stock_at: Option<Dec>,
    },
    SetPrice {
        product: String,
        price: Dec,
    },
    Restock {
        product: String,
        qty: Dec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        unit_cost: Option<Dec>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        supplier: Option<String>,
    },
    StockCount {
        product: String,
        qty: Dec,
    },
    CheckStock {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product: Option<String>,
    },
    RecordSale {
        items: Vec<Item>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        paid: Option<bool>,
    },
    RecordPayment {
        customer: String,
        amount: Dec,
    },
    CustomerBalance {
        customer: String,
    },
    RecordExpense {
        amount: Dec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        category: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    CreateOrder {
        customer: String,
        items: Vec<Item>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        address: Option<String>,
    },
    AssignDelivery {
        order_id: i64,
        driver: String,
    },
    MarkDelivered {
        order_id: i64,
    },
    /// Cancels an order; a delivered one has its sale reversed (stock back, balance down).
    CancelOrder {
        order_id: i64,
    },
    ListOrders {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<OrderStatus>,
    },
    SalesReport {
        period: Period,
    },
    Undo {},
    /// "yes": records what the sender was just asked to confirm.
    Confirm {},
    /// "no": drops what the sender was just asked to confirm.
    Decline {},
    Help {},
    Unknown {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

/// Longest name, category, note or address accepted.
pub const MAX_TEXT: usize = 200;
/// Most lines in one sale or order.
pub const MAX_ITEMS: usize = 50;
/// Largest quantity, in whole units.
pub const MAX_QTY: i64 = 1_000_000_000;
/// The most money any one figure of the books may hold, in minor units, either way: a
/// price, a line, a sale or order, a customer's balance, an hour's takings, a report's
/// totals. 15 digits, the most a JSON number (an IEEE double) carries exactly.
pub const MAX_MONEY: i64 = 999_999_999_999_999;
/// The most stock a product may hold either way, in thousandths (15 digits, as `MAX_MONEY`).
pub const MAX_STOCK: i64 = 999_999_999_999_999;

/// `v` as a figure of the books: `None` beyond `MAX_MONEY` either way.
pub fn money_figure(v: i128) -> Option<i64> {
    (v.unsigned_abs() <= MAX_MONEY as u128).then_some(v as i64)
}

/// `qty` (thousandths) × `unit` (minor units), rounded half up to minor units; `None` when
/// the line would be beyond `MAX_MONEY`.
pub fn line_total(qty: i64, unit: i64) -> Option<i64> {
    money_figure((i128::from(qty) * i128::from(unit) + 500).div_euclid(1000))
}

/// The largest amount the books hold, shown in a currency with `digits` decimals.
pub fn max_money_text(digits: u32) -> String {
    Dec::from_fixed(MAX_MONEY, digits).to_string()
}

fn text(field: &str, s: &str) -> Result<(), String> {
    if s.trim().is_empty() {
        return Err(format!("{field} is empty"));
    }
    if s.len() > MAX_TEXT || s.chars().any(char::is_control) {
        return Err(format!(
            "{field} must be at most {MAX_TEXT} bytes of printable text"
        ));
    }
    Ok(())
}

fn opt_text(field: &str, s: &Option<String>) -> Result<(), String> {
    s.as_deref().map_or(Ok(()), |s| text(field, s))
}

fn qty(field: &str, q: Dec, positive: bool) -> Result<i64, String> {
    let v = q.to_fixed(3).map_err(|e| format!("{field}: {e}"))?;
    if positive && v <= 0 {
        return Err(format!("{field} must be more than 0"));
    }
    if v < 0 {
        return Err(format!("{field} cannot be negative"));
    }
    if v > MAX_QTY * 1000 {
        return Err(format!("{field} {q} is too large (at most {MAX_QTY})"));
    }
    Ok(v)
}

fn money(field: &str, m: Dec, digits: u32, positive: bool) -> Result<i64, String> {
    let v = m.to_fixed(digits).map_err(|e| format!("{field}: {e}"))?;
    if v > MAX_MONEY {
        return Err(format!(
            "{field} {m} is more than the books can hold (at most {})",
            max_money_text(digits)
        ));
    }
    if v < 0 || (positive && v == 0) {
        return Err(format!(
            "{field} must be {}",
            if positive { "more than 0" } else { "0 or more" }
        ));
    }
    Ok(v)
}

fn items(list: &[Item], digits: u32) -> Result<(), String> {
    if list.is_empty() {
        return Err("items is empty".into());
    }
    if list.len() > MAX_ITEMS {
        return Err(format!("at most {MAX_ITEMS} items"));
    }
    for it in list {
        text("product", &it.product)?;
        qty("qty", it.qty, true)?;
        if it.unit_price.is_some() && it.total.is_some() {
            return Err(format!(
                "{}: give unit_price or total, not both",
                it.product
            ));
        }
        if let Some(p) = it.unit_price {
            money("unit_price", p, digits, false)?;
        }
        if let Some(t) = it.total {
            money("total", t, digits, false)?;
        }
    }
    Ok(())
}

impl Action {
    /// The wire name of the action.
    pub fn name(&self) -> &'static str {
        match self {
            Action::AddProduct { .. } => "add_product",
            Action::SetPrice { .. } => "set_price",
            Action::Restock { .. } => "restock",
            Action::StockCount { .. } => "stock_count",
            Action::CheckStock { .. } => "check_stock",
            Action::RecordSale { .. } => "record_sale",
            Action::RecordPayment { .. } => "record_payment",
            Action::CustomerBalance { .. } => "customer_balance",
            Action::RecordExpense { .. } => "record_expense",
            Action::CreateOrder { .. } => "create_order",
            Action::AssignDelivery { .. } => "assign_delivery",
            Action::MarkDelivered { .. } => "mark_delivered",
            Action::CancelOrder { .. } => "cancel_order",
            Action::ListOrders { .. } => "list_orders",
            Action::SalesReport { .. } => "sales_report",
            Action::Undo {} => "undo",
            Action::Confirm {} => "confirm",
            Action::Decline {} => "decline",
            Action::Help {} => "help",
            Action::Unknown { .. } => "unknown",
        }
    }

    /// What taking the action is, in a person's words ("record sales"), for refusals.
    pub fn what(&self) -> &'static str {
        match self {
            Action::AddProduct { .. } => "add products",
            Action::SetPrice { .. } => "change prices",
            Action::Restock { .. } => "record stock coming in",
            Action::StockCount { .. } => "record stock counts",
            Action::CheckStock { .. } => "check stock",
            Action::RecordSale { .. } => "record sales",
            Action::RecordPayment { .. } => "record payments",
            Action::CustomerBalance { .. } => "see what customers owe",
            Action::RecordExpense { .. } => "record expenses",
            Action::CreateOrder { .. } => "create orders",
            Action::AssignDelivery { .. } => "assign deliveries",
            Action::MarkDelivered { .. } => "mark orders delivered",
            Action::CancelOrder { .. } => "cancel orders",
            Action::ListOrders { .. } => "list orders",
            Action::SalesReport { .. } => "see sales reports",
            Action::Undo {} => "undo",
            Action::Confirm {} | Action::Decline {} => "answer a question",
            Action::Help {} => "ask for help",
            Action::Unknown { .. } => "do that",
        }
    }

    /// Who may take the action, as a person would say it: "the owner or a manager".
    pub fn who_may(&self) -> String {
        let roles: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|r| self.permits(*r))
            .map(Role::as_person)
            .collect();
        match roles.split_last() {
            None => "no one".into(),
            Some((last, [])) => (*last).into(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        }
    }

    /// Whether the action records something of its own (names, numbers) in the books: what
    /// a parser must never guess. Undo, confirm and decline only act on what was already
    /// said.
    pub fn is_write(&self) -> bool {
        !self.is_read_only() && !matches!(self, Action::Undo {} | Action::Confirm {})
    }

    /// Whether the action only reads (or only answers).
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Action::CheckStock { .. }
                | Action::CustomerBalance { .. }
                | Action::ListOrders { .. }
                | Action::SalesReport { .. }
                | Action::Help {}
                | Action::Decline {}
                | Action::Unknown { .. }
        )
    }

    /// Whether `role` may take this action (ACTIONS.md's table). `mark_delivered` by a
    /// driver is further limited to the driver's own orders when it runs.
    pub fn permits(&self, role: Role) -> bool {
        use Role::*;
        match self {
            Action::AddProduct { .. } | Action::SetPrice { .. } => matches!(role, Owner | Manager),
            Action::Restock { .. } => matches!(role, Owner | Manager | Staff | Vendor),
            Action::StockCount { .. }
            | Action::RecordSale { .. }
            | Action::RecordPayment { .. }
            | Action::CustomerBalance { .. }
            | Action::RecordExpense { .. }
            | Action::CreateOrder { .. } => matches!(role, Owner | Manager | Staff),
            Action::AssignDelivery { .. }
            | Action::SalesReport { .. }
            | Action::CancelOrder { .. } => matches!(role, Owner | Manager),
            Action::MarkDelivered { .. } => matches!(role, Owner | Manager | Driver),
            Action::CheckStock { .. }
            | Action::ListOrders { .. }
            | Action::Undo {}
            | Action::Confirm {}
            | Action::Decline {}
            | Action::Help {}
            | Action::Unknown { .. } => true,
        }
    }

    /// Checks field values (sizes, signs, decimal places for a currency with `digits`).
    pub fn check(&self, digits: u32) -> Result<(), String> {
        match self {
            Action::AddProduct {
                name,
                price,
                unit,
                stock,
                low_stock_at,
            } => {
                text("name", name)?;
                money("price", *price, digits, false)?;
                opt_text("unit", unit)?;
                if let Some(s) = stock {
                    qty("stock", *s, false)?;
                }
                if let Some(l) = low_stock_at {
                    qty("low_stock_at", *l, false)?;
                }
            }
            Action::SetPrice { product, price } => {
                text("product", product)?;
                money("price", *price, digits, false)?;
            }
            Action::Restock {
                product,
                qty: q,
                unit_cost,
                supplier,
            } => {
                text("product", product)?;
                qty("qty", *q, true)?;
                if let Some(c) = unit_cost {
                    money("unit_cost", *c, digits, false)?;
                }
                opt_text("supplier", supplier)?;
            }
            Action::StockCount { product, qty: q } => {
                text("product", product)?;
                qty("qty", *q, false)?;
            }
            Action::CheckStock { product } => opt_text("product", product)?,
            Action::RecordSale {
                items: list,
                customer,
                ..
            } => {
                items(list, digits)?;
                opt_text("customer", customer)?;
            }
            Action::RecordPayment { customer, amount } => {
                text("customer", customer)?;
                money("amount", *amount, digits, true)?;
            }
            Action::CustomerBalance { customer } => text("customer", customer)?,
            Action::RecordExpense {
                amount,
                category,
                note,
            } => {
                money("amount", *amount, digits, true)?;
                opt_text("category", category)?;
                opt_text("note", note)?;
            }
            Action::CreateOrder {
                customer,
                items: list,
                address,
            } => {
                text("customer", customer)?;
                items(list, digits)?;
                opt_text("address", address)?;
            }
            Action::AssignDelivery { order_id, driver } => {
                if *order_id <= 0 {
                    return Err("order_id must be a positive order number".into());
                }
                text("driver", driver)?;
            }
            Action::MarkDelivered { order_id } | Action::CancelOrder { order_id } => {
                if *order_id <= 0 {
                    return Err("order_id must be a positive order number".into());
                }
            }
            Action::Unknown { reason } => {
                if reason.as_ref().is_some_and(|r| r.len() > 1000) {
                    return Err("reason is too long".into());
                }
            }
            Action::ListOrders { .. }
            | Action::SalesReport { .. }
            | Action::Undo {}
            | Action::Confirm {}
            | Action::Decline {}
            | Action::Help {} => {}
        }
        Ok(())
    }
}

/// The JSON Schema of `Action`, as saved in `prompts/actions.schema.json`.
pub fn json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Action)).expect("a schema is JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wire_shape_matches_the_contract() {
        let a: Action = serde_json::from_value(json!({
            "action": "record_sale",
            "items": [{"product": "Rice", "qty": 3, "total": 45}],
            "customer": "Ahmed", "paid": true
        }))
        .unwrap();
        assert_eq!(a.name(), "record_sale");
        let back = serde_json::to_value(&a).unwrap();
        assert_eq!(back["items"][0]["total"], 45);
        for tag in ["undo", "help", "unknown"] {
            let a: Action = serde_json::from_value(json!({ "action": tag })).unwrap();
            assert_eq!(a.name(), tag);
        }
    }

    #[test]
    fn unknown_fields_and_actions_are_rejected() {
        for bad in [
            json!({"action": "record_payment", "customer": "A", "amount": 5, "sql": "DROP"}),
            json!({"action": "undo", "extra": 1}),
            json!({"action": "record_sale", "items": [{"product": "x", "qty": 1, "colour": "red"}]}),
            json!({"action": "drop_tables"}),
            json!({"customer": "A"}),
        ] {
            assert!(
                serde_json::from_value::<Action>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn checks_reject_bad_values() {
        let a = |v| serde_json::from_value::<Action>(v).unwrap();
        assert!(
            a(json!({"action": "restock", "product": "x", "qty": -1}))
                .check(2)
                .is_err()
        );
        assert!(
            a(json!({"action": "restock", "product": "x", "qty": 0}))
                .check(2)
                .is_err()
        );
        assert!(
            a(json!({"action": "restock", "product": "x", "qty": 0.0001}))
                .check(2)
                .is_err()
        );
        assert!(
            a(json!({"action": "record_payment", "customer": "A", "amount": 1.234}))
                .check(2)
                .is_err()
        );
        assert!(
            a(json!({"action": "record_payment", "customer": "A", "amount": 1.234}))
                .check(3)
                .is_ok()
        );
        assert!(
            a(json!({"action": "record_sale", "items": []}))
                .check(2)
                .is_err()
        );
        assert!(
            a(json!({"action": "stock_count", "product": "x", "qty": 0}))
                .check(2)
                .is_ok()
        );
        assert!(
            serde_json::from_value::<Action>(json!({"action": "record_expense", "amount": 1e300}))
                .is_err()
        );
        assert!(
            a(json!({"action": "record_expense", "amount": 10000000000000000u64}))
                .check(2)
                .is_err()
        );
    }

    #[test]
    fn roles_follow_the_table() {
        let sale: Action = serde_json::from_value(
            json!({"action": "record_sale", "items": [{"product": "x", "qty": 1}]}),
        )
        .unwrap();
        assert!(sale.permits(Role::Staff));
        assert!(!sale.permits(Role::Driver));
        assert!(!sale.permits(Role::Vendor));
        let restock: Action =
            serde_json::from_value(json!({"action": "restock", "product": "x", "qty": 1})).unwrap();
        assert!(restock.permits(Role::Vendor));
        assert!(
            !Action::SalesReport {
                period: Period::Today
            }
            .permits(Role::Staff)
        );
        assert!(Action::Undo {}.permits(Role::Driver));
    }

    #[test]
    fn periods_cover_the_right_days() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let today = d("2026-03-04"); // a Wednesday
        assert_eq!(
            Period::ThisWeek.range(today),
            (d("2026-03-02"), d("2026-03-05"))
        );
        assert_eq!(
            Period::LastMonth.range(today),
            (d("2026-02-01"), d("2026-03-01"))
        );
        assert_eq!(
            Period::Last7Days.range(today),
            (d("2026-02-26"), d("2026-03-05"))
        );
        assert_eq!(
            Period::Yesterday.range(today),
            (d("2026-03-03"), d("2026-03-04"))
        );
    }

    #[test]
    fn saved_schema_is_current() {
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/actions.schema.json");
        let fresh = serde_json::to_string_pretty(&json_schema()).unwrap() + "\n";
        if std::env::var_os("TARN_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &fresh).unwrap();
        }
        let saved = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            saved == fresh,
            "prompts/actions.schema.json is stale: run `TARN_UPDATE_SCHEMA=1 cargo test saved_schema_is_current`"
        );
    }
}
