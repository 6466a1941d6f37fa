//! Telegram webhook path: ack latency of `POST /webhooks/telegram/{t}` under load, and the
//! time until each reply reaches a local fake Bot API. Prints numbers.
//!
//! `cargo bench --bench webhook` (TARN_BENCH_UPDATES, default 2000; TARN_BENCH_CHATS, 200;
//! TARN_BENCH_CONCURRENCY, 32). Joined staff send `/sale 1 rice`; server, fake Bot API and
//! clients share this machine's 2 cores; the per-chat send gap is set to 0, the per-bot cap of
//! 30 messages a second stays (it paces the replies).

use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tarn::app::App;
use tarn::config::{Secret, ServeConfig};

const ADMIN: &str = "bench";
const TOKEN: &str = "7000001:bench";

// The stand-in `tarn bench` and the tests use; this bench needs only its sent messages.
#[allow(dead_code)]
#[path = "../src/bench/bot_api.rs"]
mod bot_api;

/// When each chat got its replies, oldest first.
fn replies_by_chat(fake: &bot_api::BotApi) -> HashMap<i64, Vec<Instant>> {
    let mut out: HashMap<i64, Vec<Instant>> = HashMap::new();
    for s in fake.sent() {
        out.entry(s.chat).or_default().push(s.at);
    }
    out
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let updates = env_usize("TARN_BENCH_UPDATES", 2000);
    let chats = env_usize("TARN_BENCH_CHATS", 200);
    let concurrency = env_usize("TARN_BENCH_CONCURRENCY", 32);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let fake = bot_api::BotApi::start().await.unwrap();
        let fake_base = fake.base.clone();

        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::with_data_dir(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_token = Some(Secret::new(ADMIN));
        config.public_url = Some("https://bench.example".into());
        config.telegram_api_url = fake_base;
        config.chat_gap_ms = 0;
        let app = App::build(config).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async { let _ = rx.await; }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
        let post = |path: String, body: Value| client.post(format!("{base}{path}")).bearer_auth(ADMIN).json(&body).send();
        assert_eq!(post("/v1/tenants".into(), json!({"id": "s", "name": "S"})).await.unwrap().status(), 201);
        post("/v1/tenants/s/products".into(), json!({"name": "Rice", "price": 2, "stock": 1_000_000})).await.unwrap();
        let r = client.put(format!("{base}/v1/tenants/s/channels/telegram")).bearer_auth(ADMIN).json(&json!({"bot_token": TOKEN})).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // The webhook secret, as Telegram would have it: read back from the control db.
        let control = rusqlite::Connection::open(dir.path().join("_control.db")).unwrap();
        let secret: String = control.query_row("SELECT secret FROM channel_bindings", [], |r| r.get(0)).unwrap();
        // Each chat's user joins as a staff member.
        let conn = rusqlite::Connection::open(tarn::tenant::Layout::new(dir.path()).tenant_db(&tarn::tenant::TenantId::parse("s").unwrap())).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        for c in 0..chats {
            conn.execute("INSERT INTO staff (name, name_key, role, created_at) VALUES (?1, ?1, 'staff', 'x')", [format!("u{c}")]).unwrap();
            conn.execute("INSERT INTO identities (staff_id, channel, external_id, chat_id, created_at) VALUES (last_insert_rowid(), 'telegram', ?1, ?1, 'x')", [(1_000_000 + c).to_string()]).unwrap();
        }
        drop(conn);

        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..concurrency {
            let (client, base, secret, next) = (client.clone(), base.clone(), secret.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                let mut acks = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= updates {
                        break acks;
                    }
                    let user = 1_000_000 + (i % chats) as i64;
                    let update = json!({"update_id": 10_000 + i, "message": {"message_id": i, "date": 1763800000,
                        "from": {"id": user, "is_bot": false, "first_name": "U"}, "chat": {"id": user, "type": "private", "first_name": "U"},
                        "text": "/sale 1 rice"}});
                    let t = Instant::now();
                    let r = client.post(format!("{base}/webhooks/telegram/s")).header("X-Telegram-Bot-Api-Secret-Token", &secret).json(&update).send().await.unwrap();
                    assert_eq!(r.status(), 200);
                    acks.push((user, t, t.elapsed()));
                }
            }));
        }
        let mut acks = Vec::new();
        for t in tasks {
            acks.extend(t.await.unwrap());
        }
        let posted = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = fake.sent().len();
            if n >= updates || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let all_replied = started.elapsed();
        // Reply latency: the k-th update of a chat against the k-th reply to that chat.
        let mut by_chat: HashMap<i64, Vec<Instant>> = HashMap::new();
        for (user, t, _) in &acks {
            by_chat.entry(*user).or_default().push(*t);
        }
        let replies = replies_by_chat(&fake);
        let mut e2e: Vec<Duration> = Vec::new();
        for (chat, mut posts) in by_chat {
            posts.sort();
            for (p, r) in posts.iter().zip(replies.get(&chat).map(Vec::as_slice).unwrap_or(&[])) {
                e2e.push(r.saturating_duration_since(*p));
            }
        }
        let mut ack: Vec<Duration> = acks.iter().map(|(_, _, d)| *d).collect();
        ack.sort();
        e2e.sort();
        println!("\nTelegram webhook — {updates} updates from {chats} joined chats, {concurrency} concurrent senders, release build, 2 cores shared by server, fake Bot API and clients\n");
        println!("| measure | p50 | p99 | max |\n|---|---|---|---|");
        println!("| webhook ack (stored, 200) | {:.2} ms | {:.2} ms | {:.2} ms |", pct(&ack, 0.5), pct(&ack, 0.99), ack.last().unwrap().as_secs_f64() * 1e3);
        println!("| update -> reply at the fake Bot API | {:.1} ms | {:.1} ms | {:.1} ms |", pct(&e2e, 0.5), pct(&e2e, 0.99), e2e.last().unwrap().as_secs_f64() * 1e3);
        println!("\nacks: {:.0} updates/s; all {} replies sent after {:.2} s", updates as f64 / posted.as_secs_f64(), e2e.len(), all_replied.as_secs_f64());

        // Unloaded: one update at a time, each waited for until its reply arrives.
        let mut single = Vec::new();
        for k in 0..50 {
            let user = 1_000_000 + (k % chats) as i64;
            let before = fake.sent_to(user).len();
            let update = json!({"update_id": 900_000 + k, "message": {"message_id": k, "date": 1763800000,
                "from": {"id": user, "is_bot": false, "first_name": "U"}, "chat": {"id": user, "type": "private", "first_name": "U"},
                "text": "/sale 1 rice"}});
            let t = Instant::now();
            client.post(format!("{base}/webhooks/telegram/s")).header("X-Telegram-Bot-Api-Secret-Token", &secret).json(&update).send().await.unwrap();
            while fake.sent_to(user).len() <= before {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            single.push(t.elapsed());
        }
        single.sort();
        println!("| unloaded: update -> reply, one at a time (50) | {:.1} ms | {:.1} ms | {:.1} ms |", pct(&single, 0.5), pct(&single, 0.99), single.last().unwrap().as_secs_f64() * 1e3);
        let _ = tx.send(());
        let _ = server.await;
    });
}
