//! Hostile input: bad tenant ids, oversized, truncated and deeply nested bodies, wrong
//! content types, forged webhook secrets and signatures, other tenants' keys on every route,
//! cross-tenant WhatsApp deliveries, nasty message text and a lying LLM. Each gets a clear
//! 4xx or a safe reply, and a fingerprint of every SQLite file shows nothing was written
//! (beyond the message log row a message always leaves).

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::BTreeMap;
use std::path::Path;

/// Every table of every SQLite file under `data`: `file:table` -> row count and a hash of
/// the rows. Reads through the server's WAL, so it sees every committed write.
pub fn fingerprint(data: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for file in files_under(data) {
        if !file.ends_with(".db") {
            continue;
        }
        let conn = rusqlite::Connection::open_with_flags(
            data.join(&file),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .unwrap();
        let tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        for t in tables {
            let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
            let n = stmt.column_count();
            let mut rows: Vec<String> = stmt
                .query_map([], |r| {
                    Ok((0..n)
                        .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                        .collect::<Vec<_>>()
                        .join("|"))
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            rows.sort();
            let hash = hex::encode(sha2::Sha256::digest(rows.join("\n").as_bytes()));
            out.insert(format!("{file}:{t}"), format!("{} rows {hash}", rows.len()));
        }
    }
    out
}

/// Asserts `after` equals `before` except for the keys ending in one of `allowed`.
pub fn unchanged_except(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
    allowed: &[&str],
    what: &str,
) {
    let keys: std::collections::BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    for k in keys {
        if allowed.iter().any(|a| k.ends_with(a)) {
            continue;
        }
        assert_eq!(before.get(k), after.get(k), "{what}: {k} changed");
    }
}

async fn raw(
    app: &TestApp,
    method: Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Reply {
    let mut req = app
        .client
        .request(method, format!("{}{path}", app.base))
        .body(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    into_reply(req.send().await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_ids_bodies_and_content_types_get_4xx_and_write_nothing() {
    let app = spawn_app_with(|c| c.max_body_bytes = 64 * 1024).await;
    app.shop("s").await;
    let data = app.data_dir();
    let before = fingerprint(&data);
    let files = files_under(&data);
    let ids = [
        "..",
        "..%2f..%2fetc",
        "a%2fb",
        "%2e%2e",
        "a%00b",
        "%00",
        "%D0%B0cme",    // Cyrillic а
        "%EF%BD%93hop", // fullwidth ｓ
        "UPPER",
        "-dash-first",
        "a.b",
        "a%20b",
        &"x".repeat(64),
        &"y".repeat(300),
    ];
    for id in ids {
        for (m, path) in [
            (Method::GET, format!("/v1/tenants/{id}")),
            (Method::GET, format!("/v1/tenants/{id}/products")),
            (Method::POST, format!("/v1/tenants/{id}/messages")),
            (Method::DELETE, format!("/v1/tenants/{id}")),
        ] {
            let r = app
                .request(
                    m.clone(),
                    &path,
                    Some(ADMIN),
                    Some(json!({"text": "/stock"})),
                )
                .await;
            assert!(r.status.is_client_error(), "{m} {path}: {}", r.status);
            assert!(
                r.body["error"]["code"].is_string(),
                "{m} {path}: {}",
                r.text
            );
        }
        let decoded = percent_decode(id);
        let r = app
            .post("/v1/tenants", json!({"id": decoded, "name": "x"}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{decoded:?}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("tenant id") || m.contains("id")),
            "{decoded:?}: {}",
            r.text
        );
    }
    let url = "/v1/tenants/s/messages";
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode)> = vec![
        // Over the body limit.
        (
            Some("application/json"),
            format!("{{\"text\": \"{}\"}}", "a".repeat(70 * 1024)).into_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        // Truncated.
        (
            Some("application/json"),
            br#"{"text": "/sale 1 ri"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        // Deeply nested.
        (
            Some("application/json"),
            format!("{{\"text\": {}1{}}}", "[".repeat(5000), "]".repeat(5000)).into_bytes(),
            StatusCode::BAD_REQUEST,
        ),
        // Not JSON at all, and JSON of the wrong shape.
        (
            Some("application/json"),
            b"\xff\xfe\x00garbage".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/json"),
            br#"{"text": 42}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/json"),
            br#"{"text": "/sale 1 rice", "sender": "Sam", "admin": true}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            Some("application/json"),
            br#"[{"text": "/sale 1 rice"}]"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        // Wrong or missing content types.
        (
            Some("text/plain"),
            br#"{"text": "/sale 1 rice"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            Some("application/x-www-form-urlencoded"),
            b"text=%2Fsale+1+rice".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            None,
            br#"{"text": "/sale 1 rice"}"#.to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
    ];
    for (ct, body, want) in cases {
        let r = raw(&app, Method::POST, url, Some(ADMIN), ct, body).await;
        assert_eq!(r.status, want, "{ct:?}: {}", r.text);
        assert!(
            r.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{}",
            r.text
        );
    }
    // Bodies on the other write routes too.
    for path in [
        "/v1/tenants",
        "/v1/tenants/s/products",
        "/v1/tenants/s/actions",
        "/v1/tenants/s/schedules",
    ] {
        let r = raw(
            &app,
            Method::POST,
            path,
            Some(ADMIN),
            Some("application/json"),
            b"{\"id\": ".to_vec(),
        )
        .await;
        assert!(r.status.is_client_error(), "{path}: {}", r.status);
    }
    assert_eq!(files_under(&data), files, "no file was created");
    unchanged_except(&before, &fingerprint(&data), &[], "bad requests");
}

/// `%xx` escapes decoded to bytes, then to text (lossy), as a client would mean them.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_key_is_refused_on_every_tenant_route() {
    let app = spawn_app().await;
    app.shop("victim").await;
    let thief = app.new_tenant("thief").await;
    let data = app.data_dir();
    let before = fingerprint(&data);
    let routes: &[(Method, &str)] = &[
        (Method::GET, "/v1/tenants/victim"),
        (Method::DELETE, "/v1/tenants/victim"),
        (Method::POST, "/v1/tenants/victim/rotate-key"),
        (Method::POST, "/v1/tenants/victim/restore"),
        (Method::GET, "/v1/tenants/victim/settings"),
        (Method::PATCH, "/v1/tenants/victim/settings"),
        (Method::GET, "/v1/tenants/victim/backup"),
        (Method::POST, "/v1/tenants/victim/parse"),
        (Method::POST, "/v1/tenants/victim/messages"),
        (Method::GET, "/v1/tenants/victim/messages"),
        (Method::POST, "/v1/tenants/victim/actions"),
        (Method::GET, "/v1/tenants/victim/products"),
        (Method::POST, "/v1/tenants/victim/products"),
        (Method::GET, "/v1/tenants/victim/products/1"),
        (Method::PATCH, "/v1/tenants/victim/products/1"),
        (Method::DELETE, "/v1/tenants/victim/products/1"),
        (Method::GET, "/v1/tenants/victim/customers"),
        (Method::POST, "/v1/tenants/victim/customers"),
        (Method::GET, "/v1/tenants/victim/customers/1"),
        (Method::PATCH, "/v1/tenants/victim/customers/1"),
        (Method::DELETE, "/v1/tenants/victim/customers/1"),
        (Method::GET, "/v1/tenants/victim/staff"),
        (Method::POST, "/v1/tenants/victim/staff"),
        (Method::GET, "/v1/tenants/victim/staff/1"),
        (Method::PATCH, "/v1/tenants/victim/staff/1"),
        (Method::DELETE, "/v1/tenants/victim/staff/1"),
        (Method::GET, "/v1/tenants/victim/sales"),
        (Method::GET, "/v1/tenants/victim/orders"),
        (Method::GET, "/v1/tenants/victim/reports/sales"),
        (Method::GET, "/v1/tenants/victim/reports"),
        (Method::GET, "/v1/tenants/victim/reports/1/chart.png"),
        (Method::GET, "/v1/tenants/victim/schedules"),
        (Method::PUT, "/v1/tenants/victim/schedules"),
        (
            Method::POST,
            "/v1/tenants/victim/schedules/daily_summary/run",
        ),
        (Method::GET, "/v1/tenants/victim/runs"),
        (Method::GET, "/v1/tenants/victim/channels/telegram"),
        (Method::PUT, "/v1/tenants/victim/channels/telegram"),
        (Method::DELETE, "/v1/tenants/victim/channels/telegram"),
        (Method::GET, "/v1/tenants/victim/channels/whatsapp"),
        (Method::PUT, "/v1/tenants/victim/channels/whatsapp"),
        (Method::DELETE, "/v1/tenants/victim/channels/whatsapp"),
    ];
    let body = json!({"text": "/sale 1 rice", "name": "x", "schedules": [{"kind": "daily_summary", "enabled": false}], "bot_token": "1:x"});
    for (m, path) in routes {
        let r = app
            .request(m.clone(), path, Some(&thief), Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{m} {path}: {}", r.text);
        assert!(!r.text.contains("Rice"), "{m} {path} leaked data");
        // No key, and a made-up key.
        let r = app.request(m.clone(), path, None, Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {path}");
        let r = app
            .request(m.clone(), path, Some("tarn_forged"), Some(body.clone()))
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{m} {path}");
    }
    unchanged_except(&before, &fingerprint(&data), &[], "foreign keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nasty_message_text_gets_a_safe_reply_and_changes_no_books() {
    let app = spawn_app().await;
    app.shop("s").await;
    app.shop("other").await;
    let data = app.data_dir();
    let before = fingerprint(&data);
    let texts = [
        "'; DROP TABLE sales; --",
        "/sale 1 rice'); DELETE FROM products; --",
        "Robert'); UPDATE customers SET balance = 0; --",
        "%s%s%s%n%x {0} {} ${jndi:ldap://x/a} {{7*7}}",
        "\u{0}\u{1b}[31mred\u{7}\u{8}\r\n\u{202e}reversed",
        "/sale -5 rice",
        "/sale 0 rice",
        "/sale 99999999999999999999 rice",
        "/sale 1e9 rice",
        "/paid ahmed -100",
        "/expense -20 fuel",
        "/price rice -1",
        "/restock rice 5 -2",
        "/undo; /undo",
        "/tenant other /sale 1 rice",
        "how much rice'; DROP TABLE products; --",
    ];
    for text in texts {
        let r = app.say("s", "Sam", text).await;
        assert_eq!(r.status, StatusCode::OK, "{text:?}: {}", r.text);
        // Whatever it was taken for, it wrote nothing (checked below); the reply is words.
        assert!(r.body["status"].is_string(), "{text:?}: {}", r.text);
        assert!(
            !r.body["reply"]
                .as_str()
                .unwrap()
                .to_lowercase()
                .contains("sqlite"),
            "{}",
            r.text
        );
    }
    // Only the message log moved; the other tenant not at all.
    let after = fingerprint(&data);
    unchanged_except(&before, &after, &["message_log"], "nasty text");
    let log_keys: Vec<&String> = after
        .keys()
        .filter(|k| k.ends_with(":message_log") && before.get(*k) != after.get(*k))
        .collect();
    assert_eq!(log_keys.len(), 1, "one tenant's log: {log_keys:?}");
    let r = app.say("s", "Sam", "/sale 1 rice").await;
    assert_eq!(
        r.body["status"], "applied",
        "the shop still works: {}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_webhooks_and_cross_tenant_deliveries_are_refused() {
    use crate::whatsapp::{PHONE, deliver, sign, text_from, wa_app};
    let (app, _fake) = wa_app().await;
    app.shop("b").await;
    let data = app.data_dir();
    let before = fingerprint(&data);
    let body = text_from("wamid.X1", "4470001", "", "/sale 1 rice");
    // No signature, a wrong one, and a valid signature over other bytes.
    assert_eq!(deliver(&app, &body, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        deliver(&app, &body, Some("sha256=00".into())).await,
        StatusCode::UNAUTHORIZED
    );
    let other = text_from("wamid.X2", "4470001", "", "/stock");
    assert_eq!(
        deliver(&app, &body, Some(sign(other.as_bytes()))).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        deliver(&app, &format!("{body} "), Some(sign(body.as_bytes()))).await,
        StatusCode::UNAUTHORIZED
    );
    // Telegram: no tenant has a bot; secrets cannot be guessed into one.
    for secret in [None, Some("guess"), Some("")] {
        let mut req = app
            .client
            .post(format!("{}/webhooks/telegram/b", app.base))
            .json(&json!({"update_id": 1, "message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "/sale 1 rice"}}));
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        let status = req.send().await.unwrap().status();
        assert!(status.is_client_error(), "{secret:?}: {status}");
    }
    unchanged_except(&before, &fingerprint(&data), &[], "forged webhooks");

    // Tenant b cannot claim s's WhatsApp number...
    let r = app
        .request(
            Method::PUT,
            "/v1/tenants/b/channels/whatsapp",
            Some(ADMIN),
            Some(json!({"phone_number_id": PHONE, "access_token": "EAAG-good"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    // ...and a signed delivery for s's number lands in s only; an unbound number nowhere.
    let before = fingerprint(&data);
    let stray = body.replace(PHONE, "999999999999");
    let r = deliver(&app, &stray, Some(sign(stray.as_bytes()))).await;
    assert_eq!(r, StatusCode::OK, "acknowledged, dropped");
    unchanged_except(&before, &fingerprint(&data), &[], "unbound number");
    assert_eq!(
        deliver(&app, &body, Some(sign(body.as_bytes()))).await,
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let after = fingerprint(&data);
    let changed: Vec<&String> = after
        .keys()
        .filter(|k| before.get(*k) != after.get(*k))
        .collect();
    assert!(!changed.is_empty());
    let b_file = tenant_file(&data, "b");
    let b_rel = b_file
        .strip_prefix(&data)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        changed.iter().all(|k| !k.starts_with(&b_rel)),
        "tenant b untouched: {changed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lying_llm_cannot_write_or_reach_another_tenant() {
    use crate::llm::{Script, app_with_llm};
    let (app, fake) = app_with_llm().await;
    app.shop("other").await;
    let data = app.data_dir();
    let before = fingerprint(&data);
    let lies: Vec<Value> = vec![
        json!({"action": "record_sale", "tenant": "other", "items": [{"product": "Rice", "qty": 1}]}),
        json!({"action": "drop_table", "table": "sales"}),
        json!({"action": "sql", "query": "DELETE FROM products"}),
        json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 1, "sql": "x"}]}),
        json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 1e30}]}),
        json!({"action": "record_sale", "items": [{"product": "Rice", "qty": -3}]}),
        json!({"action": "record_expense", "amount": -50}),
        serde_json::from_str(r#"{"action": "record_payment", "customer": "Ahmed", "amount": 99999999999999999999999}"#).unwrap(),
        json!({"action": "restock", "items": [{"product": "Rice", "qty": 0}]}),
        json!({"action": "record_sale", "items": [{"product": "Caviar", "qty": 1}]}),
    ];
    for lie in &lies {
        // The same lie twice: the first answer and the one repair attempt.
        fake.push(Script::Content(lie.to_string()));
        fake.push(Script::Content(lie.to_string()));
        let r = app
            .say("s", "Sam", "Ahmed grabbed 2 of the usual rice thing")
            .await;
        assert_eq!(r.status, StatusCode::OK, "{lie}: {}", r.text);
        assert!(
            matches!(r.body["status"].as_str(), Some("rejected" | "clarify")),
            "{lie} must not apply: {}",
            r.text
        );
    }
    assert!(fake.calls() >= lies.len());
    let after = fingerprint(&data);
    unchanged_except(&before, &after, &["message_log", "llm_usage"], "LLM lies");
    let other = tenant_file(&data, "other");
    let other_rel = other
        .strip_prefix(&data)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(
        after
            .iter()
            .filter(|(k, _)| k.starts_with(&other_rel))
            .all(|(k, v)| before.get(k) == Some(v)),
        "the other tenant's file is untouched"
    );
}
