//! The shop end to end over HTTP: every action, roles, clarify, over-selling, idempotency,
//! undo, exact quantities, CRUD, reports and the message log.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};

fn applied(r: &Reply) -> &str {
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    r.body["reply"].as_str().unwrap()
}

async fn sales_count(app: &TestApp, t: &str) -> usize {
    let r = app.get(&format!("/v1/tenants/{t}/sales")).await;
    r.body["sales"].as_array().unwrap().len()
}

#[tokio::test]
async fn every_action_applies_with_a_useful_reply() {
    let app = spawn_app().await;
    let t = "shop";
    app.shop(t).await;

    let r = app.say(t, "Mary", "/addproduct chocolate bar 1.20").await;
    assert!(
        applied(&r).contains("Added chocolate bar at 1.20 USD"),
        "{}",
        r.text
    );
    let r = app.say(t, "mary", "/price rice 16").await;
    assert_eq!(applied(&r), "Rice now costs 16.00 USD (was 15.00 USD).");
    let r = app.say(t, "Vic", "/restock suger 20 2").await;
    assert_eq!(
        r.body["action"],
        json!({"action": "restock", "product": "Sugar", "qty": 20, "unit_cost": 2})
    );
    assert!(applied(&r).contains("Stock: 70 kg"), "{}", r.text);
    let r = app.say(t, "Sam", "/count oil 8").await;
    assert!(
        applied(&r).contains("Counted 8 Cooking Oil (was 10, -2)"),
        "{}",
        r.text
    );
    assert_eq!(app.product(t, "Cooking Oil").await["stock"], 8);
    let r = app.say(t, "Sam", "/stock rice").await;
    assert_eq!(applied(&r), "Rice: 20 bags. Price 16.00 USD.");
    let r = app.say(t, "Musa", "/stock").await;
    assert!(applied(&r).starts_with("Stock:\n"), "{}", r.text);

    // Sales: catalog price, unit price, total, several items, on credit to a customer.
    let r = app.say(t, "Sam", "/sale 3 rice").await;
    assert!(
        applied(&r).contains("Sold 3 Rice (16.00 USD each) = 48.00 USD."),
        "{}",
        r.text
    );
    assert!(r.text.contains("Rice: 17 bags left."), "{}", r.text);
    let r = app.act(t, json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 3, "total": 45}], "customer": "Ahmed", "paid": true, "sender": "Sam"})).await;
    assert!(applied(&r).contains("= 45.00 USD to Ahmed."), "{}", r.text);
    let r = app
        .say(
            t,
            "owner",
            "/sale 2 sugar 2.4, 1 brown bread to ahmed on credit",
        )
        .await;
    assert!(
        applied(&r).contains("= 6.00 USD to Ahmed, on credit. Ahmed owes 6.00 USD."),
        "{}",
        r.text
    );
    assert_eq!(app.balance(t, "Ahmed").await, 6);
    assert_eq!(app.product(t, "Rice").await["stock"], 14);
    assert_eq!(app.product(t, "Sugar").await["stock"], 68);

    let r = app.say(t, "Sam", "/paid ahmed 4").await;
    assert_eq!(
        applied(&r),
        "Received 4.00 USD from Ahmed. Ahmed owes 2.00 USD."
    );
    let r = app.say(t, "Sam", "/balance ahmed").await;
    assert_eq!(applied(&r), "Ahmed owes 2.00 USD.");
    let r = app.say(t, "Sam", "/expense 20 fuel for the van").await;
    assert_eq!(applied(&r), "Expense of 20.00 USD (fuel) recorded.");

    // Orders: create, assign, list (a driver sees own), deliver.
    let r = app.say(t, "Sam", "/order Fatima 2 rice, 1 oil").await;
    assert!(applied(&r).contains("Order #1 for Fatima (new customer): 2 Rice (16.00 USD each), 1 Cooking Oil (3.00 USD each) = 35.00 USD."), "{}", r.text);
    let r = app.say(t, "Mary", "/assign 1 musa").await;
    assert_eq!(applied(&r), "Order #1 assigned to Musa.");
    let r = app.say(t, "Musa", "/orders").await;
    assert!(
        applied(&r).contains("#1 Fatima: 2 Rice, 1 Cooking Oil = 35.00 USD [assigned, Musa]"),
        "{}",
        r.text
    );
    let r = app.say(t, "Musa", "/delivered 1").await;
    assert!(
        applied(&r).contains(
            "Order #1 delivered to Fatima: 35.00 USD added to their account. Fatima owes 35.00 USD."
        ),
        "{}",
        r.text
    );
    assert_eq!(app.product(t, "Rice").await["stock"], 12);
    let r = app.say(t, "Musa", "/orders delivered").await;
    assert!(applied(&r).contains("#1 Fatima"), "{}", r.text);

    let r = app.say(t, "Mary", "/report today").await;
    assert!(applied(&r).contains("4 sales, 134.00 USD (93.00 USD cash, 41.00 USD credit). Payments in 4.00 USD. Expenses 20.00 USD. Net 114.00 USD. Top: Rice 8 (125.00 USD)"), "{}", r.text);
    let r = app.say(t, "Musa", "/help").await;
    assert!(applied(&r).contains("/sale 3 rice 15"));
    let r = app.say(t, "Musa", "good morning").await;
    assert_eq!(r.body["action"]["action"], "unknown");
    assert_eq!(r.body["status"], "clarify", "unknown text asks to rephrase");
    assert!(r.body["reply"].as_str().unwrap().contains("/help"));
}

#[tokio::test]
async fn a_role_that_may_not_is_refused_and_nothing_is_written() {
    let app = spawn_app().await;
    let t = "roles";
    app.shop(t).await;
    for (who, text) in [
        ("Musa", "/sale 1 rice"),
        ("Vic", "/sale 1 rice"),
        ("Sam", "/price rice 1"),
        ("Sam", "/addproduct caviar 100"),
        ("Sam", "/assign 1 musa"),
        ("Sam", "/report"),
        ("Vic", "/count rice 1"),
        ("Musa", "/paid ahmed 5"),
        ("Vic", "/expense 5 fuel"),
    ] {
        let r = app.say(t, who, text).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.body["status"], "rejected", "{who} {text}: {}", r.text);
        assert!(
            r.body["reply"]
                .as_str()
                .unwrap()
                .starts_with("Sorry, only "),
            "{}",
            r.text
        );
    }
    assert_eq!(app.product(t, "Rice").await["stock"], 20);
    assert_eq!(app.product(t, "Rice").await["price"], 15);
    assert_eq!(sales_count(&app, t).await, 0);
    assert_eq!(app.balance(t, "Ahmed").await, 0);
    let r = app
        .get(&format!("/v1/tenants/{t}/reports/sales?period=today"))
        .await;
    assert_eq!(r.body["expenses"], 0);
    // A driver delivers only their own orders.
    app.say(t, "Sam", "/order ahmed 1 rice").await;
    let r = app.say(t, "Musa", "/delivered 1").await;
    assert_eq!(
        (r.body["status"].as_str(), r.body["reply"].as_str()),
        (Some("rejected"), Some("Order #1 is not assigned to you."))
    );
    // An unknown sender is bad input.
    let r = app.say(t, "Mallory", "/stock").await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, "unknown_sender")
    );
}

#[tokio::test]
async fn ambiguous_or_unknown_names_ask_and_write_nothing() {
    let app = spawn_app().await;
    let t = "clar";
    app.shop(t).await;
    let r = app.say(t, "Sam", "/sale 2 rice, 1 bread").await;
    assert_eq!(r.body["status"], "clarify", "{}", r.text);
    assert_eq!(
        r.body["reply"],
        "Which product do you mean by \"bread\": Brown Bread, White Bread?"
    );
    let r = app.say(t, "Sam", "/sale 1 milk").await;
    assert_eq!(r.body["status"], "clarify");
    assert!(
        r.body["reply"]
            .as_str()
            .unwrap()
            .contains("I don't know a product called \"milk\"")
    );
    let r = app.say(t, "Sam", "/paid zainab 5").await;
    assert_eq!(r.body["status"], "clarify");
    let r = app.say(t, "Mary", "/assign 1 bob").await;
    assert_eq!(r.body["status"], "rejected", "no order #1: {}", r.text);
    assert_eq!(
        app.product(t, "Rice").await["stock"],
        20,
        "the rice line was rolled back"
    );
    assert_eq!(sales_count(&app, t).await, 0);

    // The dry run resolves names and writes nothing.
    let r = app
        .post(
            &format!("/v1/tenants/{t}/parse"),
            json!({"text": "/sale 2 rices, 1 oil to ahmad"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["source"], "grammar");
    assert_eq!(
        r.body["action"],
        json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 2}, {"product": "Cooking Oil", "qty": 1}], "customer": "Ahmed"})
    );
    let r = app
        .post(
            &format!("/v1/tenants/{t}/parse"),
            json!({"text": "/sale 1 bread"}),
        )
        .await;
    assert!(r.body["clarify"].as_str().unwrap().contains("Brown Bread"));
    assert_eq!(sales_count(&app, t).await, 0);
    let log = app.get(&format!("/v1/tenants/{t}/messages")).await;
    assert!(
        log.body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] != "applied")
    );
}

#[tokio::test]
async fn overselling_is_recorded_with_a_warning_and_low_stock_is_flagged() {
    let app = spawn_app().await;
    let t = "over";
    app.shop(t).await;
    let r = app.say(t, "Sam", "/sale 25 rice").await;
    assert!(
        applied(&r).contains(
            "Warning: Rice had 20 bags in stock, fewer than sold; it now shows -5 bags. Please check the count."
        ),
        "{}",
        r.text
    );
    assert_eq!(app.product(t, "Rice").await["stock"], -5);
    let r = app.say(t, "Sam", "/sale 41 sugar").await;
    assert!(
        applied(&r).contains("Low stock: Sugar has 9 kg left."),
        "{}",
        r.text
    );
    assert_eq!(app.product(t, "Sugar").await["low"], true);
}

#[tokio::test]
async fn the_same_id_twice_applies_once() {
    let app = spawn_app().await;
    let t = "idem";
    app.shop(t).await;
    let body = json!({"text": "/sale 2 rice", "sender": "Sam", "id": "msg-1"});
    let first = app
        .post(&format!("/v1/tenants/{t}/messages"), body.clone())
        .await;
    assert_eq!(first.body["status"], "applied");
    let again = app.post(&format!("/v1/tenants/{t}/messages"), body).await;
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["reply"], first.body["reply"]);
    assert_eq!(again.body["action"], first.body["action"]);
    let act = json!({"action": "record_payment", "customer": "ahmed", "amount": 3, "id": "pay-1"});
    assert_eq!(app.act(t, act.clone()).await.body["status"], "applied");
    assert_eq!(app.act(t, act).await.body["status"], "duplicate");
    assert_eq!(app.product(t, "Rice").await["stock"], 18);
    assert_eq!(sales_count(&app, t).await, 1);
    assert_eq!(app.balance(t, "Ahmed").await, -3);
}

#[tokio::test]
async fn undo_reverses_each_kind_of_write() {
    let app = spawn_app().await;
    let t = "undo";
    app.shop(t).await;
    let undo = |who: &'static str| app.say(t, who, "/undo");

    let r = undo("Sam").await;
    assert_eq!(
        (r.body["status"].as_str(), r.body["reply"].as_str()),
        (Some("rejected"), Some("There is nothing of yours to undo."))
    );

    app.say(t, "Sam", "/sale 2 rice to ahmed on credit").await;
    assert_eq!(app.balance(t, "Ahmed").await, 30);
    assert_eq!(
        applied(&undo("Sam").await),
        "Undone: sale of 2 Rice to Ahmed on credit, 30.00 USD."
    );
    assert_eq!(app.product(t, "Rice").await["stock"], 20);
    assert_eq!(app.balance(t, "Ahmed").await, 0);
    assert_eq!(sales_count(&app, t).await, 0);

    app.say(t, "Sam", "/paid ahmed 5").await;
    applied(&undo("Sam").await);
    assert_eq!(app.balance(t, "Ahmed").await, 0);

    app.say(t, "Sam", "/expense 9 lunch").await;
    applied(&undo("Sam").await);
    let r = app.get(&format!("/v1/tenants/{t}/reports/sales")).await;
    assert_eq!(r.body["expenses"], 0);

    app.say(t, "Vic", "/restock rice 5").await;
    app.say(t, "Sam", "/count sugar 1").await;
    applied(&undo("Vic").await);
    applied(&undo("Sam").await);
    assert_eq!(app.product(t, "Rice").await["stock"], 20);
    assert_eq!(app.product(t, "Sugar").await["stock"], 50);

    app.say(t, "Mary", "/price rice 99").await;
    applied(&undo("Mary").await);
    assert_eq!(app.product(t, "Rice").await["price"], 15);

    app.say(t, "Mary", "/addproduct caviar 100").await;
    applied(&undo("Mary").await);
    let r = app.get(&format!("/v1/tenants/{t}/products")).await;
    assert!(!r.text.contains("caviar"));

    // Orders: create -> cancelled; assign -> pending again; delivered -> assigned, stock and
    // balance restored.
    app.say(t, "Sam", "/order ahmed 2 rice").await;
    applied(&undo("Sam").await);
    let r = app
        .get(&format!("/v1/tenants/{t}/orders?status=cancelled"))
        .await;
    assert_eq!(r.body["orders"][0]["id"], 1);
    app.say(t, "Sam", "/order ahmed 2 rice").await;
    app.say(t, "Mary", "/assign 2 musa").await;
    applied(&undo("Mary").await);
    let r = app
        .get(&format!("/v1/tenants/{t}/orders?status=pending"))
        .await;
    assert_eq!(r.body["orders"][0]["id"], 2);
    app.say(t, "Mary", "/assign 2 musa").await;
    applied(&app.say(t, "Musa", "/delivered 2").await);
    assert_eq!(app.balance(t, "Ahmed").await, 30);
    applied(&undo("Musa").await);
    assert_eq!(app.balance(t, "Ahmed").await, 0);
    assert_eq!(app.product(t, "Rice").await["stock"], 20);
    let r = app
        .get(&format!("/v1/tenants/{t}/orders?status=assigned"))
        .await;
    assert_eq!(r.body["orders"][0]["id"], 2);
    assert_eq!(sales_count(&app, t).await, 0);

    // One undo per action: the next undo reaches the one before.
    applied(&undo("Mary").await);
    let r = app
        .get(&format!("/v1/tenants/{t}/orders?status=pending"))
        .await;
    assert_eq!(r.body["orders"][0]["id"], 2, "Mary's assign undone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_sales_of_a_tenth_leave_stock_exact() {
    let app = spawn_app().await;
    let t = "exact";
    app.shop(t).await;
    for chunk in 0..20 {
        let sells = (0..50).map(|i| {
            let id = format!("s{chunk}-{i}");
            app.act(t, json!({"action": "record_sale", "items": [{"product": "Sugar", "qty": 0.1}], "id": id}))
        });
        for r in futures::future::join_all(sells).await {
            assert_eq!(r.body["status"], "applied", "{}", r.text);
        }
    }
    assert_eq!(app.product(t, "Sugar").await["stock"], 50 - 100);
    let r = app.get(&format!("/v1/tenants/{t}/reports/sales")).await;
    assert_eq!(r.body["sales_count"], 1000);
    assert_eq!(
        r.body["sales_total"], 250,
        "1,000 x 0.1 kg x 2.50 = 250.00 exactly"
    );
    assert_eq!(r.body["top_products"][0]["qty"], 100);
}

#[tokio::test]
async fn bad_structured_actions_are_400_and_write_nothing() {
    let app = spawn_app().await;
    let t = "bad";
    app.shop(t).await;
    for bad in [
        json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 1}], "sql": "DROP TABLE sales"}),
        json!({"action": "drop_everything"}),
        json!({"action": "restock", "product": "Rice", "qty": -5}),
        json!({"action": "restock", "product": "Rice", "qty": 1e300}),
        json!({"action": "record_payment", "customer": "Ahmed", "amount": 1.234}),
        json!({"action": "record_sale", "items": []}),
        json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 1}], "id": 5}),
    ] {
        let r = app.act(t, bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }
    let r = app.say(t, "Sam", "/restock rice 0").await;
    assert_eq!(r.body["status"], "rejected");
    assert_eq!(app.product(t, "Rice").await["stock"], 20);
    assert_eq!(sales_count(&app, t).await, 0);
}

#[tokio::test]
async fn catalog_customers_and_staff_crud() {
    let app = spawn_app().await;
    let t = "crud";
    app.shop(t).await;
    let base = format!("/v1/tenants/{t}");
    let dup = app
        .post(
            &format!("{base}/products"),
            json!({"name": "rice", "price": 1}),
        )
        .await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let bad = app
        .post(
            &format!("{base}/products"),
            json!({"name": "x", "price": -1}),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let rice = app.product(t, "Rice").await;
    let id = rice["id"].as_i64().unwrap();
    let r = app
        .request(
            reqwest::Method::PATCH,
            &format!("{base}/products/{id}"),
            Some(ADMIN),
            Some(json!({"price": 14.5, "aliases": ["mchele"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["price"], 14.5);
    let r = app.say(t, "Sam", "/sale 1 mchele").await;
    assert!(
        applied(&r).contains("1 Rice (14.50 USD each)"),
        "alias resolves: {}",
        r.text
    );
    let r = app
        .request(
            reqwest::Method::PATCH,
            &format!("{base}/products/{id}"),
            Some(ADMIN),
            Some(json!({"stock": 5})),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::BAD_REQUEST,
        "stock only moves through actions"
    );
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("{base}/products/{id}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("{base}/products/{id}")).await.status,
        StatusCode::NOT_FOUND
    );

    let r = app
        .post(
            &format!("{base}/staff"),
            json!({"name": "Dina", "role": "driver"}),
        )
        .await;
    let code = r.body["join_code"].as_str().unwrap();
    assert_eq!(code.len(), 8);
    let r = app
        .post(
            &format!("{base}/staff"),
            json!({"name": "Eve", "role": "admin"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let staff = app.get(&format!("{base}/staff")).await;
    let owner = staff.body["staff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["role"] == "owner")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("{base}/staff/{owner}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "the last owner stays");

    let r = app
        .post(
            &format!("{base}/customers"),
            json!({"name": "Zed", "phone": "+254 700 000000"}),
        )
        .await;
    let zed = r.body["id"].as_i64().unwrap();
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("{base}/customers/{zed}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    app.say(t, "Sam", "/sale 1 sugar to ahmed on credit").await;
    let ahmed = app.get(&format!("{base}/customers")).await.body["customers"][0]["id"]
        .as_i64()
        .unwrap();
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("{base}/customers/{ahmed}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn reports_sales_orders_and_the_message_log() {
    let app = spawn_app().await;
    let t = "rep";
    app.shop(t).await;
    app.say(t, "Sam", "/sale 2 rice, 1 sugar").await;
    app.say(t, "Sam", "/sale 1 oil to ahmed on credit").await;
    app.say(t, "Sam", "/order ahmed 1 rice").await;
    let r = app
        .get(&format!("/v1/tenants/{t}/reports/sales?period=this_month"))
        .await;
    assert_eq!(
        (r.body["sales_count"].clone(), r.body["sales_total"].clone()),
        (json!(2), json!(35.5))
    );
    assert_eq!(r.body["cash"], 32.5);
    assert_eq!(
        r.body["top_products"][0],
        json!({"product": "Rice", "qty": 2, "total": 30})
    );
    let csv = app
        .client
        .get(format!(
            "{}/v1/tenants/{t}/reports/sales?period=today",
            app.base
        ))
        .bearer_auth(ADMIN)
        .header("accept", "text/csv")
        .send()
        .await
        .unwrap();
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = csv.text().await.unwrap();
    assert!(
        text.starts_with("period,from,to,currency,sales_count"),
        "{text}"
    );
    assert!(text.contains(",USD,2,35.5,32.5,3,0,0,35.5\n"), "{text}");
    assert!(text.contains("Rice,2,30\n"), "{text}");
    let r = app
        .get(&format!("/v1/tenants/{t}/reports/sales?period=decade"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);

    let today = chrono::Utc::now().date_naive();
    let r = app
        .get(&format!("/v1/tenants/{t}/sales?from={today}&to={today}"))
        .await;
    assert_eq!(r.body["sales"].as_array().unwrap().len(), 2);
    assert_eq!(
        app.get(&format!("/v1/tenants/{t}/sales?from=yesterday"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    let r = app
        .get(&format!("/v1/tenants/{t}/orders?status=pending"))
        .await;
    assert_eq!(r.body["orders"][0]["items"][0]["product"], "Rice");
    assert_eq!(
        app.get(&format!("/v1/tenants/{t}/orders?status=lost"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );

    let page = app.get(&format!("/v1/tenants/{t}/messages?limit=2")).await;
    let msgs = page.body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0]["text"], "/order ahmed 1 rice");
    assert_eq!(msgs[0]["source"], "grammar");
    assert!(msgs[0]["exec_us"].as_i64().is_some());
    let before = page.body["next_before"].as_i64().unwrap();
    let rest = app
        .get(&format!("/v1/tenants/{t}/messages?before={before}"))
        .await;
    let rest: Vec<&Value> = rest.body["messages"].as_array().unwrap().iter().collect();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["text"], "/sale 2 rice, 1 sugar");
}

/// Every product's stock equals the sum of its movements, in every tenant file.
fn assert_stock_matches_movements(data: &std::path::Path, tenants: &[String]) -> usize {
    let mut checked = 0;
    for t in tenants {
        let conn = rusqlite::Connection::open(tenant_file(data, t)).unwrap();
        let bad: Vec<(String, i64, i64)> = conn
            .prepare(
                "SELECT p.name, p.stock, coalesce((SELECT sum(delta) FROM stock_movements m
                                                  WHERE m.product_id = p.id), 0)
                 FROM products p",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .filter(|(_, stock, sum)| stock != sum)
            .collect();
        assert!(bad.is_empty(), "tenant {t}: stock != movements: {bad:?}");
        checked += 1;
    }
    checked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_keep_stock_equal_to_its_movements() {
    let app = std::sync::Arc::new(spawn_app_with(|c| c.store.tenant_connections = 2).await);
    let hot = "hot".to_string();
    app.shop(&hot).await;
    let spread: Vec<String> = (0..100).map(|i| format!("t{i:03}")).collect();
    for t in &spread {
        app.new_tenant(t).await;
        let r = app
            .post(
                &format!("/v1/tenants/{t}/products"),
                json!({"name": "Rice", "price": 2, "stock": 100}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let texts = [
        "/sale 1 rice",
        "/sale 0.5 rice",
        "/restock rice 3",
        "/count rice 50",
        "/undo",
        "/stock rice",
    ];
    let mut tasks = Vec::new();
    for client in 0..16 {
        let app = app.clone();
        let tenants = if client < 8 {
            vec![hot.clone()]
        } else {
            spread.clone()
        };
        tasks.push(tokio::spawn(async move {
            let mut sent = 0usize;
            while std::time::Instant::now() < deadline {
                let t = &tenants[(sent * 7 + client) % tenants.len()];
                let text = texts[(sent + client) % texts.len()];
                let r = app.say(t, "owner", text).await;
                assert_eq!(r.status, StatusCode::OK, "{t} {text}: {}", r.text);
                sent += 1;
            }
            sent
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await.unwrap();
    }
    assert!(total > 100, "only {total} messages in 10 s");
    let app = std::sync::Arc::into_inner(app).unwrap();
    let data = app.data_dir();
    let _dir = app.stop().await;
    let mut all = spread;
    all.push(hot);
    assert_eq!(assert_stock_matches_movements(&data, &all), 101);
}

#[tokio::test]
async fn demo_tenant_is_created_once_and_chat_talks_to_it() {
    let app = spawn_app_with(|c| c.demo = true).await;
    let r = app.get("/v1/tenants/demo/products").await;
    assert_eq!(
        r.body["products"].as_array().unwrap().len(),
        6,
        "{}",
        r.text
    );
    applied(&app.say("demo", "Sam", "/sale 1 rice").await);
    let data = app.data_dir();
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |c| c.demo = true).await;
    assert_eq!(
        app.product("demo", "Rice").await["stock"],
        39,
        "not re-seeded"
    );

    // `tarn chat` runs each line through the same pipeline, beside the running server.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["chat", "demo", "--as", "Musa", "--data-dir"])
        .arg(&data)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"/stock rice\n/sale 1 rice\n/quit\n/help\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert_eq!(
        text,
        "Rice: 39 bags. Price 15.00 USD.\n! Sorry, only the owner, a manager or staff can record sales.\n",
        "stops at /quit"
    );
    let log = app.get("/v1/tenants/demo/messages?limit=1").await;
    assert_eq!(log.body["messages"][0]["channel"], "cli");
    // Each line carries its own id, as a chat message does (a line never applies twice).
    let id = log.body["messages"][0]["inbound_id"].as_str().unwrap();
    assert!(id.starts_with("cli:") && id.ends_with(":1"), "{id}");
}

/// Sales report numbers computed from the sales themselves, as the report defines them.
fn report_from_sales(app: &TestApp, t: &str, from: &str, to: &str) -> Value {
    let conn = rusqlite::Connection::open(tenant_file(&app.data_dir(), t)).unwrap();
    let (count, total, cash): (i64, i64, i64) = conn
        .query_row(
            "SELECT count(*), coalesce(sum(total), 0), coalesce(sum(CASE WHEN paid THEN total END), 0)
             FROM sales WHERE voided = 0 AND at >= ?1 AND at < ?2",
            [from, to],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT p.name, sum(i.qty), sum(i.total) FROM sale_items i
             JOIN sales s ON s.id = i.sale_id JOIN products p ON p.id = i.product_id
             WHERE s.voided = 0 AND s.at >= ?1 AND s.at < ?2
             GROUP BY i.product_id ORDER BY sum(i.total) DESC, p.name LIMIT 5",
        )
        .unwrap();
    let top: Vec<(String, i64, i64)> = stmt
        .query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    json!({"count": count, "total": total, "cash": cash, "top": top})
}

/// The same numbers from the report API (money in cents, quantities in thousandths).
async fn report_from_api(app: &TestApp, t: &str) -> Value {
    let r = app
        .get(&format!("/v1/tenants/{t}/reports/sales?period=today"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let cents = |v: &Value| (v.as_f64().unwrap() * 100.0).round() as i64;
    let top: Vec<(String, i64, i64)> = r.body["top_products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["product"].as_str().unwrap().to_owned(),
                (p["qty"].as_f64().unwrap() * 1000.0).round() as i64,
                cents(&p["total"]),
            )
        })
        .collect();
    json!({"count": r.body["sales_count"], "total": cents(&r.body["sales_total"]),
        "cash": cents(&r.body["cash"]), "top": top})
}

#[tokio::test]
async fn hourly_sales_totals_match_the_sales_through_voids_undo_and_backdating() {
    let app = spawn_app().await;
    for (t, zone) in [("hourly", "UTC"), ("halfhour", "Asia/Kolkata")] {
        app.shop_in(t, zone).await;
        for (who, text) in [
            ("Sam", "/sale 2 rice, 3 sugar, 1 rice"),
            ("Sam", "/sale 1 oil to ahmed on credit"),
            (
                "Mary",
                "/sale 2 sugar 2.4, 1 brown bread to ahmed on credit",
            ),
            ("Sam", "/sale 1 white bread"),
            ("Sam", "/undo"),
            ("Mary", "/sale 4 rice"),
        ] {
            let r = app.say(t, who, text).await;
            assert_eq!(r.body["status"], "applied", "{t}: {text}: {}", r.text);
        }
        // Sale 1 leaves today's report; sale 3 moves within the day.
        let day = chrono::Utc::now()
            .with_timezone(&zone.parse::<chrono_tz::Tz>().unwrap())
            .date_naive();
        let midnight = tarn::shop::report::local_midnight_utc(zone.parse().unwrap(), day);
        let next =
            tarn::shop::report::local_midnight_utc(zone.parse().unwrap(), day.succ_opt().unwrap());
        backdate_sale(&app.data_dir(), t, 1, "2020-01-01T10:15:00.000Z");
        backdate_sale(&app.data_dir(), t, 3, &midnight);
        let api = report_from_api(&app, t).await;
        assert_eq!(api, report_from_sales(&app, t, &midnight, &next), "{t}");
        assert_eq!(api["count"], 3, "{t}: {api}");
        assert_eq!(api["top"][0][0], "Rice", "{t}: {api}");
    }
}
