//! Telegram end to end against a local fake Bot API server (real HTTP, the Bot API's wire
//! format): binding, the fixtures, secrets, dedupe, ordering, 429s, /join, strangers, and a
//! restart with work in flight.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "7000001:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

// Shared with `tarn bench`, which uses the parts these tests do not.
#[allow(dead_code)]
#[path = "../../src/bench/bot_api.rs"]
mod bot_api;
pub use bot_api::{BotApi as FakeBot, multipart_parts};

/// The Bot API stand-in `tarn bench` uses too.
pub async fn fake_bot() -> FakeBot {
    FakeBot::start().await.unwrap()
}

/// Waiting for replies on the stand-in.
pub trait WaitSent {
    /// The texts sent to `chat` once there are `n` (or after 15 s, what there is).
    async fn wait_sent(&self, chat: i64, n: usize) -> Vec<String>;
}

impl WaitSent for FakeBot {
    async fn wait_sent(&self, chat: i64, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let got = self.sent_to(chat);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn fixture(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(format!(
            "{}/tests/data/fixtures/telegram/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap(),
    )
    .unwrap()
}

pub fn text_update(update_id: i64, user: i64, chat: i64, text: &str) -> Value {
    json!({"update_id": update_id, "message": {"message_id": update_id, "date": 1763800000,
        "from": {"id": user, "is_bot": false, "first_name": "U"},
        "chat": {"id": chat, "type": if chat < 0 { "supergroup" } else { "private" }, "title": "g", "first_name": "U"},
        "text": text}})
}

struct Tg {
    app: TestApp,
    fake: FakeBot,
    secret: String,
}

impl Tg {
    async fn post(&self, update: &Value, secret: Option<&str>) -> StatusCode {
        let mut req = self
            .app
            .client
            .post(format!("{}/webhooks/telegram/s", self.app.base))
            .json(update);
        if let Some(s) = secret {
            req = req.header("X-Telegram-Bot-Api-Secret-Token", s);
        }
        req.send().await.unwrap().status()
    }
    async fn deliver(&self, update: &Value) {
        assert_eq!(
            self.post(update, Some(&self.secret.clone())).await,
            StatusCode::OK
        );
    }
    fn inbox_count(&self) -> i64 {
        let conn = rusqlite::Connection::open(tenant_file(&self.app.data_dir(), "s")).unwrap();
        conn.query_row("SELECT count(*) FROM inbox", [], |r| r.get(0))
            .unwrap()
    }
    async fn join(&self, update_id: i64, user: i64, staff: &str) {
        let staff_list = self.app.get("/v1/tenants/s/staff").await;
        let code = staff_list.body["staff"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == staff)
            .unwrap()["join_code"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = self.fake.sent_to(user).len();
        self.deliver(&text_update(
            update_id,
            user,
            user,
            &format!("/join {code}"),
        ))
        .await;
        let sent = self.fake.wait_sent(user, before + 1).await;
        assert!(
            sent.last()
                .unwrap()
                .starts_with(&format!("Welcome, {staff}!")),
            "{sent:?}"
        );
    }
}

async fn telegram_app(dir: Option<tempfile::TempDir>, fake: Option<FakeBot>) -> Tg {
    telegram_app_with(dir, fake, |_| {}).await
}

async fn telegram_app_with(
    dir: Option<tempfile::TempDir>,
    fake: Option<FakeBot>,
    more: impl Fn(&mut tarn::config::ServeConfig),
) -> Tg {
    let fake = match fake {
        Some(f) => f,
        None => fake_bot().await,
    };
    let base = fake.base.clone();
    let tweak = |c: &mut tarn::config::ServeConfig| {
        c.public_url = Some("https://tarn.example".into());
        c.telegram_api_url = base.clone();
        c.chat_gap_ms = 20;
        more(c);
    };
    let app = match dir {
        Some(d) => spawn_app_in(d, tweak).await,
        None => spawn_app_with(tweak).await,
    };
    let secret = if app.get("/v1/tenants/s").await.status == StatusCode::OK {
        fake.call("setwebhook")
            .map(|v| v["secret_token"].as_str().unwrap().to_owned())
            .unwrap_or_default()
    } else {
        app.shop("s").await;
        app.post(
            "/v1/tenants/s/staff",
            json!({"name": "Amina", "role": "staff"}),
        )
        .await;
        let r = app
            .request(
                reqwest::Method::PUT,
                "/v1/tenants/s/channels/telegram",
                Some(ADMIN),
                Some(json!({"bot_token": TOKEN})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(!r.text.contains(TOKEN), "the token is never echoed");
        fake.call("setwebhook").unwrap()["secret_token"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    Tg { app, fake, secret }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn binding_fixtures_secrets_join_strangers_and_dedupe() {
    let tg = telegram_app(None, None).await;
    let hook = tg.fake.call("setwebhook").unwrap();
    assert_eq!(hook["url"], "https://tarn.example/webhooks/telegram/s");
    assert_eq!(
        hook["allowed_updates"],
        json!(["message", "edited_message"])
    );
    assert_eq!(tg.secret.len(), 64);
    let commands = tg.fake.call("setmycommands").unwrap();
    assert!(
        commands["commands"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["command"] == "sale")
    );
    let r = tg.app.get("/v1/tenants/s/channels/telegram").await;
    assert_eq!(
        (
            r.body["username"].as_str(),
            r.body["webhook"]["pending_update_count"].as_u64()
        ),
        (Some("tarn_bot"), Some(3))
    );
    assert!(!r.text.contains(TOKEN));

    // Wrong or missing secret: 401 and nothing stored.
    let private = fixture("private_text");
    assert_eq!(
        tg.post(&private, Some("wrong")).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(tg.post(&private, None).await, StatusCode::UNAUTHORIZED);
    assert_eq!(tg.inbox_count(), 0);

    // A stranger gets one polite line and writes nothing.
    tg.deliver(&private).await;
    let amina = 218485655;
    let sent = tg.fake.wait_sent(amina, 1).await;
    assert_eq!(sent, vec![tarn::channel::STRANGER.to_string()]);
    assert_eq!(tg.app.product("s", "Rice").await["stock"], 20);

    // /join links the identity; then the same sale delivered 5 times applies once.
    tg.join(900, amina, "Amina").await;
    let mut sale = private.clone();
    sale["update_id"] = json!(901);
    for _ in 0..5 {
        tg.deliver(&sale).await;
    }
    let sent = tg.fake.wait_sent(amina, 3).await;
    assert!(
        sent[2].starts_with("Sold 3 Rice (15.00 USD each) = 45.00 USD to Ahmed."),
        "{sent:?}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        tg.fake.sent_to(amina).len(),
        3,
        "one reply for five deliveries"
    );
    assert_eq!(tg.app.product("s", "Rice").await["stock"], 17);

    // Edits, photos: stored and acknowledged, never acted on.
    tg.deliver(&fixture("edited_message")).await;
    tg.deliver(&fixture("photo_no_text")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(tg.app.product("s", "Rice").await["stock"], 17);
    assert_eq!(tg.fake.sent_to(amina).len(), 3);

    // A group command from a joined driver: answered in the group, with the driver's role.
    tg.join(902, 5964236329, "Musa").await;
    tg.deliver(&fixture("group_command")).await;
    let group = tg.fake.wait_sent(-1001293752024, 1).await;
    assert_eq!(
        group,
        vec!["Sorry, only the owner or a manager can see sales reports.".to_string()]
    );
    let conn = rusqlite::Connection::open(tenant_file(&tg.app.data_dir(), "s")).unwrap();
    let ignored: i64 = conn
        .query_row(
            "SELECT count(*) FROM inbox WHERE status = 'ignored'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(ignored, 2);

    let r = tg
        .app
        .request(
            reqwest::Method::DELETE,
            "/v1/tenants/s/channels/telegram",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert!(tg.fake.call("deletewebhook").is_some());
    assert_eq!(
        tg.post(&private, Some(&tg.secret)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_chat_in_order_while_other_chats_proceed_and_429_is_honoured() {
    let tg = telegram_app(None, None).await;
    let (a, b) = (1001, 1002);
    tg.join(1, a, "Sam").await;
    tg.join(2, b, "Mary").await;
    tg.fake.script(
        429,
        json!({"ok": false, "error_code": 429,
        "description": "Too Many Requests: retry after 1", "parameters": {"retry_after": 1}}),
    );
    for i in 1..=20 {
        tg.deliver(&text_update(100 + i, a, a, &format!("/expense {i} fuel")))
            .await;
        if i % 4 == 0 {
            tg.deliver(&text_update(200 + i, b, b, "/stock rice")).await;
        }
    }
    let got_a = tg.fake.wait_sent(a, 21).await;
    let expenses: Vec<String> = got_a.iter().skip(1).cloned().collect();
    let want: Vec<String> = (1..=20)
        .map(|i| format!("Expense of {i}.00 USD (fuel) recorded."))
        .collect();
    assert_eq!(expenses, want, "one chat's replies in order");
    assert_eq!(tg.fake.wait_sent(b, 6).await.len(), 6);
    // Whichever chat's reply met the 429 waited the second it was told to.
    let (chat, refused_at) = tg.fake.refused()[0];
    let first_reply = tg
        .fake
        .sent()
        .iter()
        .find(|s| s.chat == chat && s.at > refused_at)
        .map(|s| s.at)
        .unwrap();
    assert!(
        first_reply.duration_since(refused_at) >= Duration::from_millis(950),
        "retry_after honoured"
    );
    let conn = rusqlite::Connection::open(tenant_file(&tg.app.data_dir(), "s")).unwrap();
    let sent: i64 = conn
        .query_row(
            "SELECT count(*) FROM outbox WHERE status = 'sent'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        sent, 27,
        "2 joins, 20 expenses, 5 stock answers: every reply sent once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_with_work_in_flight_sends_exactly_one_reply() {
    let tg = telegram_app(None, None).await;
    let user = 3003;
    tg.join(1, user, "Sam").await;
    let data = tg.app.data_dir();
    let Tg { app, fake, .. } = tg;
    let dir = app.stop().await;

    // As if the server died right after storing an update (and after committing another
    // update's reply but before sending it).
    let conn = rusqlite::Connection::open(tenant_file(&data, "s")).unwrap();
    let stored = text_update(77, user, user, "/sale 2 rice");
    conn.execute(
        "INSERT INTO inbox (channel, update_key, chat_id, sender_id, text, payload, status, received_at)
         VALUES ('telegram', 'tg:7000001:77', ?1, ?1, '/sale 2 rice', ?2, 'pending', '2026-01-01T00:00:00.000Z')",
        rusqlite::params![user.to_string(), stored.to_string()],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO outbox (channel, chat_id, text, status, next_attempt_at, created_at)
         VALUES ('telegram', ?1, 'committed before the crash', 'pending', '2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z')",
        [user.to_string()],
    )
    .unwrap();
    drop(conn);
    let control = rusqlite::Connection::open(data.join("_control.db")).unwrap();
    control
        .execute(
            "INSERT OR IGNORE INTO pending_work (tenant_id, since) VALUES ('s', 'x')",
            [],
        )
        .unwrap();
    drop(control);

    let before = fake.sent_to(user).len();
    let tg = telegram_app(Some(dir), Some(fake.clone())).await;
    let sent = tg.fake.wait_sent(user, before + 2).await;
    let new: Vec<&String> = sent.iter().skip(before).collect();
    assert_eq!(new.len(), 2, "{new:?}");
    assert!(
        new.iter()
            .any(|t| t.as_str() == "committed before the crash")
    );
    assert!(new.iter().any(|t| t.starts_with("Sold 2 Rice")));
    // Telegram retrying the stored update changes nothing.
    tg.deliver(&stored).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(tg.fake.sent_to(user).len(), before + 2);
    assert_eq!(tg.app.product("s", "Rice").await["stock"], 18);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_bot_marks_the_chat_unreachable_and_long_replies_split() {
    let tg = telegram_app(None, None).await;
    let user = 4004;
    tg.join(1, user, "Mary").await;
    // A reply over 4,096 characters goes in parts: a stock list of many products.
    for i in 0..150 {
        tg.app
            .post("/v1/tenants/s/products", json!({"name": format!("Product number {i:03} with a long name"), "price": 1, "stock": 1}))
            .await;
    }
    tg.deliver(&text_update(2, user, user, "/stock")).await;
    let sent = tg.fake.wait_sent(user, 3).await;
    assert!(sent.len() >= 3, "{}", sent.len());
    assert!(sent[1..].iter().all(|p| p.chars().count() <= 4096));
    assert!(sent[1].starts_with("Stock:"));
    let conn = rusqlite::Connection::open(tenant_file(&tg.app.data_dir(), "s")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while conn
        .query_row(
            "SELECT count(*) FROM outbox WHERE status = 'pending'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
        > 0
    {
        assert!(Instant::now() < deadline, "the long reply never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let parts: i64 = conn
        .query_row(
            "SELECT parts_sent FROM outbox ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(parts >= 2, "{parts}");
    assert_eq!(tg.fake.sent_to(user).len() as i64, 1 + parts);
    // The person blocks the bot: the next reply is marked unreachable, not retried forever.
    tg.fake.script(403, json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}));
    tg.deliver(&text_update(3, user, user, "/stock rice")).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status: Option<String> = conn
            .query_row(
                "SELECT o.status FROM outbox o JOIN inbox i ON i.id = o.inbox_id
                 WHERE i.update_key = 'tg:7000001:3'",
                [],
                |r| r.get(0),
            )
            .ok();
        if let Some(status) = status.filter(|s| s != "pending") {
            assert_eq!(status, "unreachable");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_jobs_reach_the_right_chats_with_their_content() {
    let tg = telegram_app(None, None).await;
    let app = &tg.app;
    for (n, (user, staff)) in [(501, "Owner"), (502, "Mary"), (503, "Musa"), (504, "Sam")]
        .into_iter()
        .enumerate()
    {
        tg.join(900 + n as i64, user, staff).await;
    }
    for (who, text) in [
        ("Sam", "/sale 3 rice to Ahmed"),
        ("Sam", "/sale 4 sugar to Ahmed on credit"),
        ("Mary", "/expense 12 fuel"),
        ("Sam", "/order ahmed 2 rice"),
        ("Sam", "/order ahmed 1 cooking oil"),
        ("Mary", "/assign 1 musa"),
    ] {
        let r = app.say("s", who, text).await;
        assert_eq!(r.body["status"], "applied", "{text}: {}", r.text);
    }
    let run = |kind: &'static str| async move {
        let r = app
            .post(&format!("/v1/tenants/s/schedules/{kind}/run"), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        r.body["run"].clone()
    };
    let last = |chat: i64, before: usize| {
        let fake = tg.fake.clone();
        async move { fake.wait_sent(chat, before + 1).await.get(before).cloned() }
    };

    // Daily summary: owners and managers only.
    let counts: Vec<usize> = [501, 502, 503, 504]
        .iter()
        .map(|c| tg.fake.sent_to(*c).len())
        .collect();
    assert_eq!(run("daily_summary").await["sent"], 2);
    let owner = last(501, counts[0])
        .await
        .expect("the owner gets the summary");
    let today = chrono::Utc::now().date_naive().format("%a %-d %b %Y");
    assert_eq!(
        owner,
        format!(
            "Daily summary, {today}\nSales: 55.00 USD (2 sales)\nCash: 45.00 USD · Credit: 10.00 USD\n\
             Expenses: 12.00 USD\nNet: 43.00 USD\nTop products:\n- Rice × 3: 45.00 USD\n- Sugar × 4: 10.00 USD"
        )
    );
    assert_eq!(last(502, counts[1]).await.as_deref(), Some(owner.as_str()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        tg.fake.sent_to(503).len(),
        counts[2],
        "drivers get no summary"
    );
    assert_eq!(
        tg.fake.sent_to(504).len(),
        counts[3],
        "staff get no summary"
    );

    // Delivery reminder: the driver his own order, managers and owners the whole list.
    let counts: Vec<usize> = [501, 502, 503, 504]
        .iter()
        .map(|c| tg.fake.sent_to(*c).len())
        .collect();
    assert_eq!(run("delivery_reminder").await["sent"], 3);
    assert_eq!(
        last(503, counts[2]).await.unwrap(),
        "Your deliveries (1):\n#1 Ahmed: 2 Rice (30.00 USD)\nWhen one is done: /delivered <order number>."
    );
    assert_eq!(
        last(502, counts[1]).await.unwrap(),
        "Open orders: 2 (1 not assigned)\n#1 Ahmed: 2 Rice (30.00 USD) → Musa\n#2 Ahmed: 1 Cooking Oil (3.00 USD) → not assigned"
    );
    assert!(
        last(501, counts[0])
            .await
            .unwrap()
            .starts_with("Open orders: 2")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        tg.fake.sent_to(504).len(),
        counts[3],
        "staff get no reminder"
    );

    // Weekly report: last week's sales (two days) against the week before (one sale).
    let today = chrono::Utc::now().date_naive();
    let day = |ago: u64| format!("{}T10:00:00.000Z", today - chrono::Days::new(ago));
    let r = app.say("s", "Sam", "/sale 1 rice").await;
    assert_eq!(r.body["status"], "applied");
    backdate_sale(&app.data_dir(), "s", 1, &day(5));
    backdate_sale(&app.data_dir(), "s", 2, &day(2));
    backdate_sale(&app.data_dir(), "s", 3, &day(10));
    let counts: Vec<usize> = [501, 502]
        .iter()
        .map(|c| tg.fake.sent_to(*c).len())
        .collect();
    let r = run("weekly_report").await;
    assert_eq!(
        r["sent"], 4,
        "a photo and a text to the owner and the manager: {r}"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tg.fake.photos().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut photos = tg.fake.photos();
    photos.sort_by_key(|p| p.0);
    assert_eq!(
        photos.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![501, 502]
    );
    assert_eq!(photos[0].2, photos[1].2, "the same chart to both");
    let (from, to) = (today - chrono::Days::new(7), today - chrono::Days::new(1));
    assert_eq!(
        photos[0].1,
        format!(
            "Weekly report {} to {}: sales 55.00 USD",
            from.format("%-d %b"),
            to.format("%-d %b")
        )
    );
    let png = &photos[0].2;
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "a PNG file");
    assert!(
        (5_000..200_000).contains(&png.len()),
        "a sensible size: {} bytes",
        png.len()
    );
    let (size, bars) = chart_bars(png);
    assert_eq!(size, (800, 450));
    assert_eq!(bars.len(), 2, "one bar per day with sales: {bars:?}");
    let ratio = bars[0] as f64 / bars[1] as f64;
    assert!(
        (ratio - 45.0 / 10.0).abs() < 0.15,
        "bars follow the sales: {bars:?}"
    );
    let text = last(501, counts[0]).await.unwrap();
    assert!(
        text.starts_with(&format!(
            "Weekly report, {} to {}",
            from.format("%a %-d %b"),
            to.format("%a %-d %b %Y")
        )),
        "{text}"
    );
    assert!(
        text.contains(
            "Sales: 55.00 USD (2 sales), up 266.7% on the week before (15.00 USD in 1 sale)"
        ),
        "{text}"
    );
    assert!(
        text.contains("Top products: Rice 45.00 USD, Sugar 10.00 USD"),
        "{text}"
    );
    // Stored, listed, and its chart served as the same PNG.
    let r = app.get("/v1/tenants/s/reports").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let report = &r.body["reports"][0];
    assert_eq!(report["period_start"], from.to_string());
    assert_eq!(report["data"]["sales_count"], 2);
    assert_eq!(report["data"]["daily"].as_array().unwrap().len(), 7);
    let chart = app
        .client
        .get(format!(
            "{}{}",
            app.base,
            report["chart_url"].as_str().unwrap()
        ))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(chart.headers()["content-type"], "image/png");
    assert_eq!(chart.bytes().await.unwrap().as_ref(), png.as_slice());
    // The ledger has the three runs by hand.
    let r = app.get("/v1/tenants/s/runs").await;
    let kinds: Vec<&str> = r.body["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec!["weekly_report", "delivery_reminder", "daily_summary"]
    );
}

/// What `user` was last answered, after sending `text` as update `id`.
async fn answer(tg: &Tg, id: i64, user: i64, text: &str) -> String {
    let before = tg.fake.sent_to(user).len();
    tg.deliver(&text_update(id, user, user, text)).await;
    tg.fake.wait_sent(user, before + 1).await.pop().unwrap()
}

/// `tarn staff …` beside the running server: whether it succeeded, stdout, stderr.
fn staff_cli(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let args: Vec<&str> = std::iter::once("staff")
        .chain(args.iter().copied())
        .collect();
    tarn_cli(&args, data)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_join_code_links_one_chat_once_until_it_expires() {
    let tg = telegram_app(None, None).await;
    let app = &tg.app;
    let staff = app.get("/v1/tenants/s/staff").await;
    let amina = staff.body["staff"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Amina")
        .unwrap()
        .clone();
    let id = amina["id"].as_i64().unwrap();
    let code = amina["join_code"].as_str().unwrap().to_owned();
    assert!(amina["join_code_expires_at"].is_string(), "{amina}");

    // The first account links; a second account that saw the code (a group chat) cannot.
    let (first, second) = (4001, 4002);
    assert!(
        answer(&tg, 1, first, &format!("/join {code}"))
            .await
            .starts_with("Welcome, Amina!")
    );
    assert_eq!(
        answer(&tg, 2, second, &format!("/join {code}")).await,
        "That join code is not valid. Ask the owner for yours, then send: /join CODE"
    );
    assert!(
        answer(&tg, 3, second, "/sale 1 rice")
            .await
            .starts_with("Hi! This is a shop's bot")
    );
    let r = app.get(&format!("/v1/tenants/s/staff/{id}")).await;
    assert_eq!(r.body["chats"], 1, "{}", r.text);
    assert!(
        r.body.get("join_code").is_none(),
        "a used code is gone: {}",
        r.text
    );

    // The owner sees the linked chat and unlinks it (a lost phone): a stranger again.
    let r = app.get(&format!("/v1/tenants/s/staff/{id}/chats")).await;
    let chats = r.body["chats"].as_array().unwrap();
    assert_eq!(chats.len(), 1, "{}", r.text);
    assert_eq!(chats[0]["channel"], "telegram");
    assert_eq!(chats[0]["external_id"], first.to_string());
    let chat = chats[0]["id"].as_i64().unwrap();
    let r = app
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/tenants/s/staff/{id}/chats/{chat}"),
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
    assert!(
        answer(&tg, 4, first, "/stock rice")
            .await
            .starts_with("Hi! This is a shop's bot")
    );

    // A new code works for the new phone; an expired one does not.
    let r = app
        .post(&format!("/v1/tenants/s/staff/{id}/join-code"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let fresh = r.body["join_code"].as_str().unwrap().to_owned();
    assert_ne!(fresh, code);
    let conn = rusqlite::Connection::open(tenant_file(&app.data_dir(), "s")).unwrap();
    conn.execute(
        "UPDATE join_codes SET expires_at = '2020-01-01T00:00:00.000Z' WHERE staff_id = ?1",
        [id],
    )
    .unwrap();
    assert_eq!(
        answer(&tg, 5, second, &format!("/join {fresh}")).await,
        "That join code has expired. Ask the owner for a new one, then send: /join CODE"
    );

    // The CLI does the same beside the running server.
    let data = app.data_dir();
    let (ok, out, err) = staff_cli(&data, &["join-code", "s", "amina"]);
    assert!(ok, "{out}{err}");
    assert!(err.contains("data dir: "), "says which data dir: {err}");
    let issued: Value = serde_json::from_str(&out).unwrap();
    let cli_code = issued["join_code"].as_str().unwrap().to_owned();
    assert!(
        answer(&tg, 6, second, &format!("/join {cli_code}"))
            .await
            .starts_with("Welcome, Amina!")
    );
    let (ok, out, err) = staff_cli(&data, &["chats", "s", "Amina"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(listed[0]["external_id"], second.to_string(), "{out}");
    let chat = listed[0]["id"].as_i64().unwrap().to_string();
    let (ok, _, err) = staff_cli(&data, &["unlink", "s", "Amina", &chat]);
    assert!(ok, "{err}");
    assert!(
        answer(&tg, 7, second, "/stock rice")
            .await
            .starts_with("Hi! This is a shop's bot")
    );
    let (ok, _, err) = staff_cli(&data, &["chats", "s", "Nobody"]);
    assert!(!ok && err.contains("no staff member"), "{err}");
    let (ok, _, err) = staff_cli(&data, &["chats", "nope", "Amina"]);
    assert!(!ok && err.contains("not registered"), "{err}");
}

#[tokio::test]
async fn bot_tokens_must_look_like_botfathers() {
    let tg = telegram_app(None, None).await;
    for bad in [
        "abc",
        "123:short",
        "x:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw",
        "1:AA/../x?yyyyyyyyyyyyyyyyyyyyyyyyyyyyyy",
    ] {
        let r = tg
            .app
            .request(
                reqwest::Method::PUT,
                "/v1/tenants/s/channels/telegram",
                Some(ADMIN),
                Some(json!({"bot_token": bad})),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
        assert!(r.text.contains("@BotFather"), "{}", r.text);
    }
}

/// The server's tenant commits and control db uses, once they have stopped moving.
async fn settled_counts(app: &TestApp) -> (f64, f64) {
    let mut last = (-1.0, -1.0);
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let text = app.metrics().await;
        let now = (
            metric_value(&text, "tenant_commits"),
            metric_value(&text, "control_db_uses"),
        );
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_webhook_message_costs_two_commits_and_no_control_db_use() {
    // One for the update, its run and its reply's row; one for recording the reply sent.
    // No ticker: it reads the control db every second on its own.
    let tg = telegram_app_with(None, None, |c| c.scheduler.enabled = false).await;
    tg.join(1, 501, "Amina").await;
    // The first message warms the caches (the binding, the tenant's mail mark).
    assert!(answer(&tg, 2, 501, "/sale 1 rice").await.contains("Rice"));
    let (commits, uses) = settled_counts(&tg.app).await;
    let n = 10;
    for i in 0..n {
        let reply = answer(&tg, 10 + i, 501, &format!("sold {} sugar", i + 1)).await;
        assert!(reply.contains("Sugar"), "{reply}");
    }
    let (commits_after, uses_after) = settled_counts(&tg.app).await;
    let per_message = (commits_after - commits) / n as f64;
    println!(
        "{n} webhook messages: {} tenant commits ({per_message} each), {} control db uses",
        commits_after - commits,
        uses_after - uses
    );
    assert!(per_message <= 2.0, "{per_message} commits per message");
    assert_eq!(
        uses_after, uses,
        "steady state never touches the control db"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_update_whose_run_fails_is_still_stored_acknowledged_and_run_later() {
    let tg = telegram_app(None, None).await;
    tg.join(1, 501, "Amina").await;
    let stock = tg.app.product("s", "Rice").await["stock"].as_i64().unwrap();
    // A real SQLite client makes every sale fail inside the run's transaction.
    let file = tenant_file(&tg.app.data_dir(), "s");
    let conn = rusqlite::Connection::open(&file).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER no_sales BEFORE INSERT ON sales BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
    )
    .unwrap();
    tg.deliver(&text_update(2, 501, 501, "/sale 1 rice")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status: String = conn
        .query_row(
            "SELECT status FROM inbox WHERE update_key LIKE 'tg:%:2'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(status, "pending", "the update is kept for another try");
    assert_eq!(tg.app.product("s", "Rice").await["stock"], stock);
    assert_eq!(
        tg.fake.sent_to(501).len(),
        1,
        "only the welcome: no reply yet"
    );

    // Once the file takes sales again, the chat's next update runs both, oldest first.
    conn.execute_batch("DROP TRIGGER no_sales").unwrap();
    tg.deliver(&text_update(3, 501, 501, "/sale 2 rice")).await;
    let replies = tg.fake.wait_sent(501, 3).await;
    assert!(replies[1].contains("1 Rice"), "{replies:?}");
    assert!(replies[2].contains("2 Rice"), "{replies:?}");
    assert_eq!(tg.app.product("s", "Rice").await["stock"], stock - 3);
}
