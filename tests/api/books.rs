//! The books are never wrong: figures beyond what the books hold (15 digits) are refused
//! with a 4xx or a polite chat refusal that writes nothing, every money figure is a JSON
//! number, and the chat and REST reports agree.

use crate::helpers::*;
use crate::hostile::{fingerprint, unchanged_except};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A chat refusal for a figure too large: status `rejected`, the reason in the reply.
fn refused_in_chat(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.text);
    assert_eq!(r.body["status"], "rejected", "{what}: {}", r.text);
    let reply = r.body["reply"].as_str().unwrap();
    assert!(
        reply.starts_with("Sorry") && reply.contains("more than"),
        "{what}: {reply}"
    );
}

/// An HTTP refusal for a figure too large: 400 `invalid_input` saying why.
fn refused_over_http(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {}", r.text);
    assert_eq!(r.error_code(), "invalid_input", "{what}: {}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("more than"),
        "{what}: {}",
        r.text
    );
}

/// Every value under the keys named like money or quantities is a JSON number.
fn numbers_everywhere(v: &Value, path: &str) {
    const FIGURES: &[&str] = &[
        "price",
        "stock",
        "qty",
        "total",
        "unit_price",
        "balance",
        "sales_total",
        "cash",
        "credit",
        "payments",
        "expenses",
        "net",
        "amount",
        "unit_cost",
    ];
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if FIGURES.contains(&k.as_str()) && !x.is_null() {
                    assert!(x.is_number(), "{path}.{k} is {x}, not a number");
                }
                numbers_everywhere(x, &format!("{path}.{k}"));
            }
        }
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, x)| numbers_everywhere(x, &format!("{path}[{i}]"))),
        _ => {}
    }
}

#[tokio::test]
async fn the_books_refuse_totals_they_cannot_hold_and_write_nothing() {
    let app = spawn_app().await;
    let t = "big";
    app.shop(t).await;
    let products = format!("/v1/tenants/{t}/products");

    // One field alone: a price beyond 15 digits of minor units.
    let r = app
        .post(
            &products,
            json!({"name": "Jet", "price": 99999999999999u64}),
        )
        .await;
    refused_over_http(&r, "a price too large");
    // The largest price that fits (9,999,999,999,999.00 USD).
    let r = app
        .post(
            &products,
            json!({"name": "Car", "price": 9999999999999u64, "stock": 5}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["price"], json!(9999999999999u64));

    // Products of fields that each pass alone: a sale, an order, a restock's cost.
    let before = fingerprint(&app.data_dir());
    let r = app.say(t, "Sam", "/sale 10000 car").await;
    refused_in_chat(&r, "a sale line");
    let r = app
        .act(t, json!({"action": "record_sale", "items": [{"product": "Car", "qty": 10000}], "sender": "Sam"}))
        .await;
    refused_over_http(&r, "a sale line");
    let r = app
        .act(t, json!({"action": "record_sale", "items": [{"product": "Car", "qty": 0.001, "total": 9999999999999u64}], "sender": "Sam"}))
        .await;
    refused_over_http(&r, "a unit price derived from a total");
    let r = app.say(t, "Sam", "/order ahmed 10000 car").await;
    refused_in_chat(&r, "an order line");
    let r = app
        .act(t, json!({"action": "create_order", "customer": "Ahmed", "items": [{"product": "Car", "qty": 1}, {"product": "Car", "qty": 1}], "sender": "Sam"}))
        .await;
    refused_over_http(&r, "an order total");
    let r = app.say(t, "Mary", "/restock car 10000 99999999999").await;
    refused_in_chat(&r, "a restock cost");
    let r = app
        .act(t, json!({"action": "restock", "product": "Car", "qty": 10000, "unit_cost": 99999999999u64, "sender": "Mary"}))
        .await;
    refused_over_http(&r, "a restock cost");
    unchanged_except(
        &before,
        &fingerprint(&app.data_dir()),
        &["message_log"],
        "refused totals",
    );

    // A balance: one car on credit fits, a second would take Ahmed beyond the bounds.
    let r = app.say(t, "Sam", "/sale 1 car to ahmed on credit").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    assert_eq!(app.balance(t, "Ahmed").await, json!(9999999999999u64));
    let before = fingerprint(&app.data_dir());
    let r = app.say(t, "Sam", "/sale 1 car to ahmed on credit").await;
    refused_in_chat(&r, "a balance");
    // A sale that would take this hour's takings beyond the bounds (it was a 500).
    let r = app
        .act(t, json!({"action": "record_sale", "items": [{"product": "Car", "qty": 1}], "sender": "Sam"}))
        .await;
    refused_over_http(&r, "an hour's takings");
    let r = app.say(t, "Sam", "/sale 1 car").await;
    refused_in_chat(&r, "an hour's takings");
    unchanged_except(
        &before,
        &fingerprint(&app.data_dir()),
        &["message_log"],
        "refused balance and hour",
    );

    // Payments: one brings the balance to -0.99; the next would be beyond the bounds.
    let r = app
        .act(t, json!({"action": "record_payment", "customer": "Ahmed", "amount": 9999999999999.99, "sender": "Sam"}))
        .await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    assert_eq!(app.balance(t, "Ahmed").await, json!(-0.99));
    let r = app.say(t, "Sam", "/paid ahmed 9999999999999.99").await;
    refused_in_chat(&r, "a payment's balance");
    let r = app
        .act(t, json!({"action": "record_payment", "customer": "Ahmed", "amount": 9999999999999.99, "sender": "Sam"}))
        .await;
    refused_over_http(&r, "a payment's balance");

    // Delivering an order whose sale does not fit this hour is refused, not a 500.
    let r = app.say(t, "Sam", "/order ahmed 1 car").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let r = app.say(t, "Mary", "/delivered 1").await;
    refused_in_chat(&r, "a delivery in a full hour");
    let r = app
        .act(
            t,
            json!({"action": "mark_delivered", "order_id": 1, "sender": "Mary"}),
        )
        .await;
    refused_over_http(&r, "a delivery in a full hour");

    // Today's report: REST and chat say the same figures, as numbers.
    let r = app
        .get(&format!("/v1/tenants/{t}/reports/sales?period=today"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["sales_total"], json!(9999999999999u64));
    assert_eq!(r.body["credit"], json!(9999999999999u64));
    assert_eq!(r.body["payments"], json!(9999999999999.99));
    numbers_everywhere(&r.body, "report");
    let chat = app.say(t, "Mary", "/report today").await;
    let reply = chat.body["reply"].as_str().unwrap();
    assert!(
        reply.contains("1 sale, 9999999999999.00 USD (0.00 USD cash, 9999999999999.00 USD credit). Payments in 9999999999999.99 USD."),
        "{reply}"
    );

    // The hour's sale moved to yesterday frees the hour; a second car today fits, but the
    // two together are beyond what a period's total can show: both refuse the same way.
    backdate_sale(
        &app.data_dir(),
        t,
        1,
        &format!(
            "{}T09:00:00.000Z",
            chrono::Utc::now().date_naive() - chrono::Days::new(1)
        ),
    );
    let r = app.say(t, "Sam", "/sale 1 car").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let r = app
        .get(&format!("/v1/tenants/{t}/reports/sales?period=last_7_days"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("shorter period"), "{}", r.text);
    let chat = app.say(t, "Mary", "/report 7d").await;
    assert_eq!(chat.body["status"], "rejected", "{}", chat.text);
    assert!(chat.text.contains("shorter period"), "{}", chat.text);
    let r = app
        .act(
            t,
            json!({"action": "sales_report", "period": "last_7_days", "sender": "Mary"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    // Each day alone still reports.
    let r = app
        .get(&format!("/v1/tenants/{t}/reports/sales?period=yesterday"))
        .await;
    assert_eq!(r.body["sales_total"], json!(9999999999999u64), "{}", r.text);

    // Every money and quantity figure the API shows is a JSON number.
    for path in [
        "sales",
        "products",
        "customers",
        "orders?status=pending",
        "messages",
    ] {
        let r = app.get(&format!("/v1/tenants/{t}/{path}")).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
        numbers_everywhere(&r.body, path);
    }
    let r = app
        .get(&format!(
            "/v1/tenants/{t}/sales?from=2000-01-01&to=2100-01-01"
        ))
        .await;
    assert_eq!(r.body["sales"].as_array().unwrap().len(), 2, "{}", r.text);
    numbers_everywhere(&r.body, "sales");
}

#[tokio::test]
async fn stock_stays_within_the_bounds() {
    let app = spawn_app().await;
    let t = "deep";
    app.shop(t).await;
    // Restocks of the largest quantity, until the stock would pass 15 digits.
    let mut applied = 0;
    let mut refusal = None;
    for _ in 0..1001 {
        let r = app
            .act(t, json!({"action": "restock", "product": "Rice", "qty": 1000000000, "sender": "Mary"}))
            .await;
        if r.status == StatusCode::OK {
            applied += 1;
        } else {
            refusal = Some(r);
            break;
        }
    }
    assert_eq!(applied, 999, "restocks applied before the bound");
    refused_over_http(&refusal.expect("a restock was refused"), "stock");
    let stock = app.product(t, "Rice").await["stock"].clone();
    assert_eq!(stock, json!(999000000020u64));
}

#[tokio::test]
async fn undo_says_what_it_undid_marks_the_log_and_removes_a_customer_it_created() {
    let app = spawn_app().await;
    let t = "und";
    app.shop(t).await;
    let undo = || app.say(t, "Sam", "/undo");

    // A sale to a new customer: undone in the shop's words; the customer goes too.
    let r = app.say(t, "Sam", "/sale 3 rice to Zed").await;
    assert!(r.text.contains("(new customer)"), "{}", r.text);
    let r = undo().await;
    assert_eq!(
        r.body["reply"], "Undone: sale of 3 Rice to Zed, 45.00 USD.",
        "{}",
        r.text
    );
    let r = app.get(&format!("/v1/tenants/{t}/customers")).await;
    assert!(!r.text.contains("Zed"), "{}", r.text);
    assert_eq!(app.product(t, "Rice").await["stock"], 20);
    let log = app.get(&format!("/v1/tenants/{t}/messages")).await;
    let sale = log.body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "/sale 3 rice to Zed")
        .unwrap()
        .clone();
    assert!(
        sale["undone_at"].is_string(),
        "the undone sale is marked: {sale}"
    );
    // The name is free again, and a later sale to Zed makes a fresh customer.
    let r = app.say(t, "Sam", "/sale 1 rice to zed").await;
    assert!(r.text.contains("(new customer)"), "{}", r.text);

    // An order for a new customer: the same.
    let r = app
        .say(t, "Sam", "/order yara 2 sugar, 1 cooking oil")
        .await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let r = undo().await;
    assert_eq!(
        r.body["reply"], "Undone: order #1 of 2 Sugar and 1 Cooking Oil for Yara, 8.00 USD.",
        "{}",
        r.text
    );
    let r = app.get(&format!("/v1/tenants/{t}/customers")).await;
    assert!(!r.text.contains("Yara"), "{}", r.text);

    // A customer who existed before stays.
    app.say(t, "Sam", "/sale 1 rice to ahmed on credit").await;
    let r = undo().await;
    assert_eq!(
        r.body["reply"], "Undone: sale of 1 Rice to Ahmed on credit, 15.00 USD.",
        "{}",
        r.text
    );
    assert_eq!(app.balance(t, "Ahmed").await, 0);

    for (text, undone) in [
        ("/paid ahmed 5", "payment of 5.00 USD from Ahmed"),
        ("/expense 9 fuel", "expense of 9.00 USD (fuel)"),
        (
            "/count sugar 12",
            "stock count of Sugar (12 kg; it shows 50 kg again)",
        ),
    ] {
        app.say(t, "Sam", text).await;
        assert_eq!(
            undo().await.body["reply"],
            format!("Undone: {undone}."),
            "{text}"
        );
    }
    app.say(t, "Vic", "/restock rice 5").await;
    let r = app.say(t, "Vic", "/undo").await;
    assert_eq!(r.body["reply"], "Undone: restock of 5 bags Rice.");
}

#[tokio::test]
async fn an_order_can_be_cancelled_and_a_delivered_one_is_reversed() {
    let app = spawn_app().await;
    let t = "cancel";
    app.shop(t).await;
    // Open: just closed.
    app.say(t, "Sam", "/order ahmed 2 rice").await;
    let r = app.say(t, "Mary", "/cancel 1").await;
    assert_eq!(r.body["reply"], "Order #1 cancelled.", "{}", r.text);
    let r = app.say(t, "Sam", "/cancel 1").await;
    assert_eq!(
        r.body["status"], "rejected",
        "only owners and managers cancel"
    );
    assert!(
        r.text
            .contains("Sorry, only the owner or a manager can cancel orders."),
        "{}",
        r.text
    );
    let r = app.say(t, "Mary", "/delivered 1").await;
    assert_eq!(r.body["reply"], "Order #1 is already cancelled.");

    // Delivered: the sale is reversed, stock back, Ahmed owes nothing; undo brings it back.
    app.say(t, "Sam", "/order ahmed 2 rice").await;
    app.say(t, "Mary", "/assign 2 musa").await;
    let r = app.say(t, "Musa", "/delivered 2").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    assert_eq!(app.product(t, "Rice").await["stock"], 18);
    assert_eq!(app.balance(t, "Ahmed").await, 30);
    let r = app
        .act(
            t,
            json!({"action": "cancel_order", "order_id": 2, "sender": "Mary"}),
        )
        .await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    assert_eq!(
        r.body["reply"],
        "Order #2 cancelled: its sale of 30.00 USD is reversed and the stock is back. Ahmed owes nothing."
    );
    assert_eq!(app.product(t, "Rice").await["stock"], 20);
    assert_eq!(app.balance(t, "Ahmed").await, 0);
    let r = app.get(&format!("/v1/tenants/{t}/reports/sales")).await;
    assert_eq!(
        (r.body["sales_count"].clone(), r.body["sales_total"].clone()),
        (json!(0), json!(0))
    );
    let r = app
        .get(&format!("/v1/tenants/{t}/orders?status=cancelled"))
        .await;
    assert_eq!(r.body["orders"].as_array().unwrap().len(), 2, "{}", r.text);

    let r = app.say(t, "Mary", "/undo").await;
    assert_eq!(
        r.body["reply"], "Undone: cancellation of order #2.",
        "{}",
        r.text
    );
    assert_eq!(app.product(t, "Rice").await["stock"], 18);
    assert_eq!(app.balance(t, "Ahmed").await, 30);
    let r = app.get(&format!("/v1/tenants/{t}/reports/sales")).await;
    assert_eq!(r.body["sales_total"], 30);
    let r = app
        .get(&format!("/v1/tenants/{t}/orders?status=delivered"))
        .await;
    assert_eq!(r.body["orders"][0]["id"], 2, "{}", r.text);
}

#[tokio::test]
async fn a_reused_idempotency_id_with_another_text_says_so() {
    let app = spawn_app().await;
    let t = "idem";
    app.shop(t).await;
    let path = format!("/v1/tenants/{t}/messages");
    let send =
        |text: &'static str| app.post(&path, json!({"text": text, "sender": "Sam", "id": "k1"}));
    let first = send("/sale 1 rice").await;
    assert_eq!(first.body["status"], "applied");
    let same = send("/sale 1 rice").await;
    assert_eq!(same.body["status"], "duplicate");
    assert!(same.body.get("note").is_none(), "{}", same.text);
    let other = send("/sale 5 rice").await;
    assert_eq!(other.body["status"], "duplicate");
    assert!(
        other.body["note"]
            .as_str()
            .unwrap()
            .contains("different request"),
        "{}",
        other.text
    );
    assert_eq!(app.product(t, "Rice").await["stock"], 19);
}

#[tokio::test]
async fn the_message_log_filters_by_status_sender_and_day() {
    let app = spawn_app().await;
    let t = "log";
    app.shop(t).await;
    app.say(t, "Sam", "/sale 1 rice").await;
    app.say(t, "Sam", "/report").await; // refused: staff
    app.say(t, "Mary", "/sale 1 suger").await;
    app.say(t, "Mary", "/sale 1 mango").await; // clarify
    let app = &app;
    let log = |q: &str| {
        let path = format!("/v1/tenants/{t}/messages?{q}");
        async move { app.get(&path).await }
    };
    let texts = |r: &Reply| -> Vec<String> {
        r.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["text"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(texts(&log("status=rejected").await), ["/report"]);
    assert_eq!(texts(&log("status=clarify").await), ["/sale 1 mango"]);
    assert_eq!(
        texts(&log("sender=mary&status=applied").await),
        ["/sale 1 suger"]
    );
    let today = chrono::Utc::now().date_naive();
    assert_eq!(
        texts(&log(&format!("from={today}&to={today}")).await).len(),
        4
    );
    let yesterday = today - chrono::Days::new(1);
    assert!(texts(&log(&format!("to={yesterday}")).await).is_empty());
    // Empty parameters are absent ones; bad ones are 400s that say what is wrong.
    assert_eq!(texts(&log("status=&sender=&from=").await).len(), 4);
    for (q, says) in [
        ("status=done", "status must be"),
        ("sender=Nobody", "no staff member"),
        ("from=yesterday", "from must be a date"),
        (&format!("from={today}&to={yesterday}"), "to is before from"),
    ] {
        let r = log(q).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {}", r.text);
        assert!(r.text.contains(says), "{q}: {}", r.text);
    }
}

#[tokio::test]
async fn reports_speak_in_inclusive_local_days_with_the_same_period_names_as_chat() {
    let app = spawn_app().await;
    let t = "days";
    app.shop(t).await;
    app.say(t, "Sam", "/sale 2 rice").await;
    let today = chrono::Utc::now().date_naive();
    let r = app.get(&format!("/v1/tenants/{t}/reports/sales")).await;
    assert_eq!(
        (r.body["from"].clone(), r.body["to"].clone()),
        (json!(today.to_string()), json!(today.to_string()))
    );
    // Chat's short names work over HTTP, and mean the same period.
    for (short, long) in [
        ("week", "this_week"),
        ("7d", "last_7_days"),
        ("month", "this_month"),
        ("lastmonth", "last_month"),
    ] {
        let a = app
            .get(&format!("/v1/tenants/{t}/reports/sales?period={short}"))
            .await;
        let b = app
            .get(&format!("/v1/tenants/{t}/reports/sales?period={long}"))
            .await;
        assert_eq!(a.status, StatusCode::OK, "{short}: {}", a.text);
        assert_eq!(
            (a.body["from"].clone(), a.body["to"].clone()),
            (b.body["from"].clone(), b.body["to"].clone()),
            "{short}"
        );
        assert_eq!(a.body["period"], long);
    }
    let week = app
        .get(&format!("/v1/tenants/{t}/reports/sales?period=last_7_days"))
        .await;
    assert_eq!(
        week.body["from"],
        json!((today - chrono::Days::new(6)).to_string())
    );
    assert_eq!(
        week.body["to"],
        json!(today.to_string()),
        "the last day is included"
    );
    // from/to: both days included, the same convention as /sales.
    let r = app
        .get(&format!(
            "/v1/tenants/{t}/reports/sales?from={today}&to={today}"
        ))
        .await;
    assert_eq!(r.body["sales_total"], 30, "{}", r.text);
    let yesterday = today - chrono::Days::new(1);
    let r = app
        .get(&format!(
            "/v1/tenants/{t}/reports/sales?from={yesterday}&to={yesterday}"
        ))
        .await;
    assert_eq!(r.body["sales_total"], 0, "{}", r.text);
    let sales = app
        .get(&format!("/v1/tenants/{t}/sales?from={today}&to={today}"))
        .await;
    assert_eq!(sales.body["sales"].as_array().unwrap().len(), 1);
    for bad in [
        format!("period=week&from={today}"),
        format!("from={today}&to={yesterday}"),
        "from=2020-01-01&to=2022-01-01".to_owned(),
        "period=fortnight".to_owned(),
    ] {
        let r = app
            .get(&format!("/v1/tenants/{t}/reports/sales?{bad}"))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
}
