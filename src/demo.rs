//! The `demo` tenant of `tarn serve --demo`: a small shop to try tarn with no chat app.
//! Invariant: created once; an existing `demo` tenant is left as it is.

use crate::executor::{self, Input, Origin, Request};
use crate::shop::{self, ExecError, catalog, staff};
use crate::store::{Created, NewTenant, Store};
use crate::tenant::{TenantId, session};
use serde_json::json;

/// The demo tenant's id.
pub const DEMO: &str = "demo";

/// Creates the demo tenant if it does not exist; returns it (with its key) when it did not.
pub fn ensure(store: &Store) -> Result<Option<Created>, ExecError> {
    let id = TenantId::parse(DEMO).expect("valid id");
    if store.get_tenant(&id).is_ok() {
        return Ok(None);
    }
    let created = store.create_tenant(NewTenant {
        id: id.clone(),
        name: "Demo Shop".into(),
        currency: Some("USD".into()),
        timezone: Some("UTC".into()),
    })?;
    let handle = store.pool().acquire(&id)?;
    let mut conn = handle.conn()?;
    for (name, price, unit, stock) in [
        ("Rice", "15", "bag", 40),
        ("Sugar", "2.50", "kg", 60),
        ("Cooking Oil", "3.20", "bottle", 24),
        ("Eggs", "4.50", "tray", 12),
        ("Milk", "1.10", "litre", 30),
        ("Bread", "1.20", "loaf", 20),
    ] {
        let req = Request {
            inbound_id: Some(format!("demo-seed-{name}")),
            channel: Origin::Demo,
            sender: None,
            ceiling: None,
            input: Input::Action(json!({
                "action": "add_product", "name": name, "price": price, "unit": unit, "stock": stock
            })),
            parse_us: None,
            reply_to: None,
        };
        executor::execute(&mut conn, &req)?;
    }
    let tx = conn.transaction()?;
    let settings = shop::load_settings(&tx)?;
    for name in ["Ahmed", "Fatima", "John"] {
        catalog::insert_customer(&tx, name, None)?;
    }
    for (name, role) in [("Mary", "manager"), ("Musa", "driver"), ("Sam", "staff")] {
        let input: staff::StaffInput =
            serde_json::from_value(json!({"name": name, "role": role})).expect("valid input");
        staff::create_staff(&tx, &settings, &input)?;
    }
    session::record(&tx, "seed")?;
    tx.commit()?;
    Ok(Some(created))
}
