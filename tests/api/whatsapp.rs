//! WhatsApp end to end against a local fake Graph API (real HTTP, Meta's wire format):
//! handshake, signatures over raw bytes, routing by phone_number_id, dedupe on the wamid,
//! identities by wa_id or user_id, statuses, and the 24-hour window.

use crate::helpers::*;
use axum::extract::{Path as AxPath, State};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tarn::config::Secret;

pub const PHONE: &str = "106540352242922";
pub const APP_SECRET: &str = "meta-app-secret";
const FIRST_OUT: &str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI5QTNDQTVCM0Q0Q0Q2RTY3RTcA";

#[derive(Clone, Default)]
pub struct FakeGraph {
    base: String,
    sent: Arc<Mutex<Vec<Value>>>,
    script: Arc<Mutex<VecDeque<(u16, Value)>>>,
    /// Media uploaded: the form's text fields and the file's bytes.
    media: Arc<Mutex<Vec<Upload>>>,
}

type Upload = (Value, Vec<u8>);

impl FakeGraph {
    async fn wait_sent(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.sent.lock().unwrap().clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn phone_info(AxPath(phone): AxPath<String>, headers: axum::http::HeaderMap) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer EAAG-good") {
        return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message": "Invalid OAuth access token.", "type": "OAuthException", "code": 190}}))).into_response();
    }
    axum::Json(
        json!({"display_phone_number": "15550783881", "verified_name": "Demo Shop", "id": phone}),
    )
    .into_response()
}

async fn messages(
    State(fake): State<FakeGraph>,
    AxPath(phone): AxPath<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    assert_eq!(phone, PHONE);
    if let Some((status, err)) = fake.script.lock().unwrap().pop_front() {
        return (
            axum::http::StatusCode::from_u16(status).unwrap(),
            axum::Json(err),
        )
            .into_response();
    }
    let mut sent = fake.sent.lock().unwrap();
    sent.push(body.clone());
    let id = if sent.len() == 1 {
        FIRST_OUT.to_string()
    } else {
        format!("wamid.OUT{}", sent.len())
    };
    axum::Json(json!({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}], "messages": [{"id": id}]})).into_response()
}

async fn upload_media(
    State(fake): State<FakeGraph>,
    AxPath(phone): AxPath<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    assert_eq!(phone, PHONE);
    assert_eq!(
        headers.get("authorization").and_then(|v| v.to_str().ok()),
        Some("Bearer EAAG-good")
    );
    let parts = crate::telegram::multipart_parts(&headers, &body);
    let mut fields = serde_json::Map::new();
    let mut file = Vec::new();
    for (name, data) in parts {
        if name == "file" {
            file = data;
        } else {
            fields.insert(name, Value::String(String::from_utf8(data).unwrap()));
        }
    }
    let mut media = fake.media.lock().unwrap();
    media.push((Value::Object(fields), file));
    axum::Json(json!({"id": format!("media-{}", media.len())})).into_response()
}

async fn fake_graph() -> FakeGraph {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let fake = FakeGraph {
        base: format!("http://{}/v21.0", listener.local_addr().unwrap()),
        ..FakeGraph::default()
    };
    let app = axum::Router::new()
        .route("/v21.0/{phone}", axum::routing::get(phone_info))
        .route("/v21.0/{phone}/messages", axum::routing::post(messages))
        .route("/v21.0/{phone}/media", axum::routing::post(upload_media))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    fake
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!(
        "{}/tests/data/fixtures/whatsapp/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

pub fn sign(body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(APP_SECRET.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn deliver(app: &TestApp, body: &str, signature: Option<String>) -> StatusCode {
    let mut req = app
        .client
        .post(format!("{}/webhooks/whatsapp", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(s) = signature {
        req = req.header("X-Hub-Signature-256", s);
    }
    req.send().await.unwrap().status()
}

async fn deliver_signed(app: &TestApp, body: &str) {
    assert_eq!(
        deliver(app, body, Some(sign(body.as_bytes()))).await,
        StatusCode::OK
    );
}

pub fn text_from(wamid: &str, wa_id: &str, user_id: &str, text: &str) -> String {
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": [{"field": "messages", "value": {
        "messaging_product": "whatsapp", "metadata": {"display_phone_number": "15550783881", "phone_number_id": PHONE},
        "contacts": [{"profile": {"name": "X"}, "wa_id": wa_id, "user_id": user_id}],
        "messages": [{"from": wa_id, "id": wamid, "timestamp": "1763800300", "type": "text", "text": {"body": text}}]}}]}]}).to_string()
}

/// `PUT /v1/tenants/s/channels/whatsapp` with the test number and `token`.
pub async fn bind(app: &TestApp, token: &str) -> Reply {
    app.request(
        reqwest::Method::PUT,
        "/v1/tenants/s/channels/whatsapp",
        Some(ADMIN),
        Some(json!({"phone_number_id": PHONE, "access_token": token})),
    )
    .await
}

pub async fn wa_app() -> (TestApp, FakeGraph) {
    let fake = fake_graph().await;
    let base = fake.base.clone();
    let app = spawn_app_with(|c| {
        c.whatsapp_api_url = base;
        c.whatsapp_app_secret = Some(Secret::new(APP_SECRET));
        c.whatsapp_verify_token = Some(Secret::new("verify-me"));
        c.public_url = Some("https://tarn.example".into());
        c.chat_gap_ms = 20;
    })
    .await;
    app.shop("s").await;
    let r = bind(&app, "EAAG-good").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(!r.text.contains("EAAG-good"));
    assert_eq!(
        r.body["webhook_url"],
        "https://tarn.example/webhooks/whatsapp"
    );
    (app, fake)
}

fn inbox_count(app: &TestApp) -> i64 {
    let conn = rusqlite::Connection::open(tenant_file(&app.data_dir(), "s")).unwrap();
    conn.query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handshake_binding_and_signatures() {
    let (app, _fake) = wa_app().await;
    let ok = app.client.get(format!("{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=verify-me&hub.challenge=1158201444", app.base)).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    let bad = app
        .client
        .get(format!(
            "{}/webhooks/whatsapp?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1",
            app.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::FORBIDDEN);

    // A wrong token is refused by the Graph API; the number cannot go to a second tenant.
    let r = app
        .request(
            reqwest::Method::PUT,
            "/v1/tenants/s/channels/whatsapp",
            Some(ADMIN),
            Some(json!({"phone_number_id": PHONE, "access_token": "EAAG-bad"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    app.new_tenant("other").await;
    let r = app
        .request(
            reqwest::Method::PUT,
            "/v1/tenants/other/channels/whatsapp",
            Some(ADMIN),
            Some(json!({"phone_number_id": PHONE, "access_token": "EAAG-good"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);

    // Bad signatures store nothing: none, garbage, another secret, a valid one over other bytes.
    let body = fixture("text_message");
    let other = body.replace("how much sugar", "how much  sugar");
    for sig in [
        None,
        Some("sha256=00".to_string()),
        Some(sign(other.as_bytes())),
    ] {
        assert_eq!(deliver(&app, &body, sig).await, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(inbox_count(&app), 0);
    // A number bound to no tenant: acknowledged, stored nowhere.
    let stray = body.replace(PHONE, "999999999");
    deliver_signed(&app, &stray).await;
    assert_eq!(inbox_count(&app), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fixtures_join_dedupe_statuses_and_user_ids() {
    let (app, fake) = wa_app().await;
    let sheena = "16505551234";
    // A stranger's text: one polite line, nothing written.
    deliver_signed(&app, &fixture("text_message")).await;
    let sent = fake.wait_sent(1).await;
    assert_eq!(sent[0]["to"], sheena);
    assert_eq!(sent[0]["text"]["body"], tarn::channel::STRANGER);

    // Meta says our first reply was delivered.
    deliver_signed(&app, &fixture("status_update")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let conn = rusqlite::Connection::open(tenant_file(&app.data_dir(), "s")).unwrap();
    let delivery: String = conn
        .query_row(
            "SELECT delivery_status FROM outbox WHERE provider_id = ?1",
            [FIRST_OUT],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(delivery, "delivered");

    // Join, then the same question delivered twice is answered once.
    let staff = app.get("/v1/tenants/s/staff").await;
    let code = staff.body["staff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Sam")
        .unwrap()["join_code"]
        .as_str()
        .unwrap()
        .to_owned();
    deliver_signed(
        &app,
        &text_from("wamid.J1", sheena, "", &format!("/join {code}")),
    )
    .await;
    let sent = fake.wait_sent(2).await;
    assert!(
        sent[1]["text"]["body"]
            .as_str()
            .unwrap()
            .starts_with("Welcome, Sam!")
    );
    let ask = text_from("wamid.Q1", sheena, "", "sold 2 bags of rice");
    deliver_signed(&app, &ask).await;
    deliver_signed(&app, &ask).await;
    let sent = fake.wait_sent(3).await;
    assert!(
        sent[2]["text"]["body"]
            .as_str()
            .unwrap()
            .starts_with("Sold 2 Rice"),
        "{}",
        sent[2]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.sent.lock().unwrap().len(), 3);
    assert_eq!(app.product("s", "Rice").await["stock"], 18);

    // An interactive button reply is read as its title: "Yes", with nothing to confirm.
    deliver_signed(&app, &fixture("interactive_reply")).await;
    let sent = fake.wait_sent(4).await;
    assert!(
        sent[3]["text"]["body"]
            .as_str()
            .unwrap()
            .contains("nothing waiting for a yes"),
        "{}",
        sent[3]
    );

    // A user with a username and no wa_id is known by the business-scoped user_id.
    deliver_signed(
        &app,
        &text_from("wamid.U1", "", "US.13491208655302741918", "hello"),
    )
    .await;
    let sent = fake.wait_sent(5).await;
    assert_eq!(sent[4]["to"], "US.13491208655302741918");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outside_the_24_hour_window_without_a_template_is_recorded_not_sent() {
    let (app, fake) = wa_app().await;
    fake.script.lock().unwrap().push_back((400, json!({"error": {"message": "Re-engagement message", "type": "OAuthException", "code": 131047}})));
    deliver_signed(&app, &text_from("wamid.W1", "15550001111", "", "hi")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    let conn = rusqlite::Connection::open(tenant_file(&app.data_dir(), "s")).unwrap();
    loop {
        let row: Option<(String, String)> = conn
            .query_row(
                "SELECT status, coalesce(last_error, '') FROM outbox",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .ok();
        if let Some((status, err)) = row.filter(|(s, _)| s != "pending") {
            assert_eq!(status, "failed");
            assert!(err.contains("24-hour window"), "{err}");
            break;
        }
        assert!(Instant::now() < deadline, "never recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(fake.sent.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_weekly_report_goes_out_as_an_uploaded_image() {
    let (app, fake) = wa_app().await;
    let owner = app.get("/v1/tenants/s/staff").await.body["staff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Owner")
        .unwrap()["join_code"]
        .as_str()
        .expect("the owner has a join code")
        .to_owned();
    deliver_signed(
        &app,
        &text_from("wamid.OWN", "4479000", "", &format!("/join {owner}")),
    )
    .await;
    assert!(
        fake.wait_sent(1).await[0]["text"]["body"]
            .as_str()
            .unwrap()
            .starts_with("Welcome, Owner!")
    );
    sale_days_ago(&app, "s", "/sale 2 rice", 3).await;
    let r = app
        .post("/v1/tenants/s/schedules/weekly_report/run", json!({}))
        .await;
    assert_eq!(r.body["run"]["sent"], 2, "{}", r.text);
    let sent = fake.wait_sent(3).await;
    assert_eq!(sent.len(), 3);
    let media = fake.media.lock().unwrap().clone();
    assert_eq!(media.len(), 1);
    assert_eq!(media[0].0["messaging_product"], "whatsapp");
    assert_eq!(media[0].0["type"], "image/png");
    let (size, bars) = chart_bars(&media[0].1);
    assert_eq!(
        (size, bars.len()),
        ((800, 450), 1),
        "the week's one day of sales"
    );
    let image = &sent[1];
    assert_eq!(image["to"], "4479000");
    assert_eq!(image["type"], "image");
    assert_eq!(image["image"]["id"], "media-1");
    assert!(
        image["image"]["caption"]
            .as_str()
            .unwrap()
            .ends_with("sales 30.00 USD"),
        "{image}"
    );
    assert_eq!(sent[2]["type"], "text");
    assert!(
        sent[2]["text"]["body"]
            .as_str()
            .unwrap()
            .contains("Sales: 30.00 USD (1 sale), no sales the week before"),
        "{}",
        sent[2]
    );
}

#[tokio::test]
async fn binding_checks_the_token_and_the_server_settings_first() {
    let (app, fake) = wa_app().await;
    // Both bindings at once.
    let r = app.get("/v1/tenants/s/channels").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(r.body["telegram"].is_null(), "{}", r.text);
    assert_eq!(r.body["whatsapp"]["phone_number_id"], PHONE);
    assert_eq!(
        r.body["whatsapp"]["webhook_url"],
        "https://tarn.example/webhooks/whatsapp"
    );
    assert!(!r.text.contains("EAAG"), "no token: {}", r.text);
    for bad in ["EAAG\u{7}bell", "EAAG with space", "", &"x".repeat(1025)] {
        let r = bind(&app, bad).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad:?}: {}", r.text);
        assert!(r.text.contains("access_token"), "{}", r.text);
        assert!(!r.text.contains("builder"), "{}", r.text);
    }
    // Without the app secret (or the public URL) no delivery could be verified: refused.
    let base = fake.base.clone();
    let bare = spawn_app_with(|c| {
        c.whatsapp_api_url = base;
        c.public_url = Some("https://tarn.example".into());
    })
    .await;
    bare.new_tenant("s").await;
    let r = bind(&bare, "EAAG-good").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text);
    assert!(r.text.contains("TARN_WHATSAPP_APP_SECRET"), "{}", r.text);
}
