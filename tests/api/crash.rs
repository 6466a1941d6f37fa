//! Crash tests: the real `tarn` binary (release under `cargo test --release`) as a child
//! process, killed with SIGKILL at random moments while clients write to it, restarted on the
//! same data dir; clients resend what was not acknowledged, then everything once more, as a
//! provider would. Every message must be applied exactly once and every file intact.

use crate::helpers::*;
use rand::RngExt;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `tarn serve` child on a fixed port and data dir, restartable.
pub struct Server {
    pub base: String,
    port: u16,
    data: PathBuf,
    log: PathBuf,
    extra: Vec<(String, String)>,
    child: Option<Child>,
    pub starts: usize,
}

impl Server {
    pub async fn start(dir: &Path, extra: &[(&str, &str)]) -> Server {
        let port = free_port();
        let mut s = Server {
            base: format!("http://127.0.0.1:{port}"),
            port,
            data: dir.join("data"),
            log: dir.join("server.log"),
            extra: extra
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
            starts: 0,
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tarn"));
        cmd.arg("serve")
            .env("TARN_DATA_DIR", &self.data)
            .env("TARN_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("TARN_ADMIN_TOKEN", ADMIN)
            .env("TARN_SCHEDULER", "false")
            .env("TARN_CHAT_GAP_MS", "10")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.extra {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("the tarn binary starts"));
        self.starts += 1;
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = client
                .get(format!("{}/healthz", self.base))
                .timeout(Duration::from_millis(500))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not come up: {}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, then start again on the same data dir and port.
    pub async fn crash_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.spawn().await;
    }

    /// Starts it again after `kill` (same data dir and port).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "it is running");
        self.spawn().await;
    }

    /// SIGKILL, and no restart.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let started = Instant::now();
            let deadline = started + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                if Instant::now() >= deadline {
                    let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(30).collect();
                    panic!(
                        "no clean stop within 20 s; the log ends:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `PRAGMA integrity_check` on the control db and every tenant file under `data`.
pub fn integrity_all(data: &Path) -> usize {
    let files: Vec<String> = files_under(data)
        .into_iter()
        .filter(|f| f.ends_with(".db"))
        .collect();
    for f in &files {
        let conn = rusqlite::Connection::open(data.join(f)).unwrap();
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok", "{f}");
    }
    files.len()
}

const TENANTS: usize = 100;
const MESSAGES: usize = 5000;
const CLIENTS: usize = 8;

fn message(i: usize) -> (String, String, String) {
    let tenant = format!("c{:03}", i % TENANTS);
    let q = 1 + i % 3;
    let text = if (i / TENANTS).is_multiple_of(2) {
        format!("/sale {q} rice to Ahmed on credit")
    } else {
        format!("/sale {q} rice")
    };
    (tenant, text, format!("m-{i}"))
}

/// Sends every message in `ids` with its idempotency key until the server answers it;
/// returns how many answers were `applied` and `duplicate`.
async fn send_all(base: String, ids: Vec<usize>, acked: Arc<AtomicUsize>) -> (usize, usize) {
    let queue = Arc::new(Mutex::new(ids));
    let counts = Arc::new(Mutex::new((0, 0)));
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (queue, counts, acked, base) = (
            queue.clone(),
            counts.clone(),
            acked.clone(),
            base.to_owned(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap();
            loop {
                let Some(i) = queue.lock().unwrap().pop() else {
                    return;
                };
                let (t, text, id) = message(i);
                loop {
                    let sent = client
                        .post(format!("{base}/v1/tenants/{t}/messages"))
                        .bearer_auth(ADMIN)
                        .json(&json!({"text": text, "sender": "Sam", "id": id}))
                        .send()
                        .await;
                    let body = match sent {
                        Ok(r) if r.status().is_success() => r.json::<Value>().await.ok(),
                        // Down or restarting: not acknowledged, so sent again.
                        _ => None,
                    };
                    match body.as_ref().and_then(|b| b["status"].as_str()) {
                        Some("applied") => counts.lock().unwrap().0 += 1,
                        Some("duplicate") => counts.lock().unwrap().1 += 1,
                        Some(other) => panic!("{text}: {other}: {body:?}"),
                        None => {
                            tokio::time::sleep(Duration::from_millis(25)).await;
                            continue;
                        }
                    }
                    acked.fetch_add(1, Ordering::SeqCst);
                    break;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    *counts.lock().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_under_load_applies_every_message_exactly_once() {
    let _alone = crate::helpers::MACHINE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[]).await;
    let client = reqwest::Client::new();
    for j in 0..TENANTS {
        let t = format!("c{j:03}");
        for (path, body) in [
            ("/v1/tenants".to_owned(), json!({"id": t, "name": t})),
            (
                format!("/v1/tenants/{t}/products"),
                json!({"name": "Rice", "price": 2, "stock": 100_000}),
            ),
            (
                format!("/v1/tenants/{t}/customers"),
                json!({"name": "Ahmed"}),
            ),
            (
                format!("/v1/tenants/{t}/staff"),
                json!({"name": "Sam", "role": "staff"}),
            ),
        ] {
            let r = client
                .post(format!("{}{path}", server.base))
                .bearer_auth(ADMIN)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "{path}");
        }
    }

    // Kill at random points of the run: at least three times.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut rng = rand::rng();
    let mut kill_at: Vec<usize> = (0..4)
        .map(|_| rng.random_range(300..MESSAGES - 300))
        .collect();
    kill_at.sort();
    let mut ids: Vec<usize> = (0..MESSAGES).collect();
    ids.reverse();
    let base = server.base.clone();
    let sender = tokio::spawn(send_all(base.clone(), ids, acked.clone()));
    let started = Instant::now();
    for at in &kill_at {
        while acked.load(Ordering::SeqCst) < *at && !sender.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.crash_and_restart().await;
    }
    let (applied, duplicate) = sender.await.unwrap();
    let first = started.elapsed();
    assert_eq!(applied + duplicate, MESSAGES);
    assert!(server.starts >= 4, "killed at least three times");

    // A provider retry of everything: nothing applies twice.
    let (again, dup_again) = send_all(
        base.clone(),
        (0..MESSAGES).collect(),
        Arc::new(AtomicUsize::new(0)),
    )
    .await;
    assert_eq!(
        (again, dup_again),
        (0, MESSAGES),
        "every resend is a duplicate"
    );
    server.stop();

    let data = dir.path().join("data");
    for j in 0..TENANTS {
        let t = format!("c{j:03}");
        let mine: Vec<usize> = (0..MESSAGES).filter(|i| i % TENANTS == j).collect();
        let qty: usize = mine.iter().map(|i| 1 + i % 3).sum();
        let credit: usize = mine
            .iter()
            .filter(|i| (*i / TENANTS).is_multiple_of(2))
            .map(|i| 1 + i % 3)
            .sum();
        let conn = rusqlite::Connection::open(tenant_file(&data, &t)).unwrap();
        let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
        assert_eq!(
            one("SELECT count(*) FROM sales") as usize,
            mine.len(),
            "{t} sales"
        );
        assert_eq!(
            one("SELECT count(*) FROM message_log") as usize,
            mine.len(),
            "{t} log"
        );
        assert_eq!(
            one("SELECT stock FROM products WHERE name = 'Rice'"),
            (100_000 - qty as i64) * 1000,
            "{t} stock"
        );
        assert_eq!(
            one("SELECT balance FROM customers WHERE name = 'Ahmed'"),
            credit as i64 * 200,
            "{t} balance"
        );
        assert_eq!(
            one("SELECT count(*) FROM stock_movements WHERE cause = 'sale'") as usize,
            mine.len()
        );
    }
    assert_eq!(integrity_all(&data), TENANTS + 1);
    eprintln!(
        "crash test: {MESSAGES} messages to {TENANTS} tenants by {CLIENTS} clients in {first:?} with {} kills; {applied} applied + {duplicate} duplicate on the first pass",
        server.starts - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_during_telegram_webhooks_answers_every_update() {
    let _alone = crate::helpers::MACHINE.lock().await;
    use crate::telegram::{fake_bot, text_update};
    const CHATS: i64 = 20;
    const PER_CHAT: i64 = 15;
    let fake = fake_bot().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut server, secret) = telegram_shop(dir.path(), &fake, &[]).await;
    let client = reqwest::Client::new();
    let mut codes = Vec::new();
    for c in 0..CHATS {
        codes.push(new_clerk(&client, &server.base, c).await);
    }

    // Every update: 20 joins, then 15 sales from each chat.
    let mut updates: Vec<Value> = (0..CHATS)
        .map(|c| {
            text_update(
                c + 1,
                5000 + c,
                5000 + c,
                &format!("/join {}", codes[c as usize]),
            )
        })
        .collect();
    for n in 0..PER_CHAT {
        for c in 0..CHATS {
            updates.push(text_update(
                1000 + n * CHATS + c,
                5000 + c,
                5000 + c,
                "/sale 1 rice",
            ));
        }
    }
    let base = server.base.clone();
    let deliver = |list: Vec<Value>, acked: Arc<AtomicUsize>| {
        let (client, base, secret) = (client.clone(), base.clone(), secret.clone());
        async move {
            // In order, as Telegram does: the next update only after this one is answered 200.
            for u in list {
                loop {
                    let r = client
                        .post(format!("{base}/webhooks/telegram/tg"))
                        .header("X-Telegram-Bot-Api-Secret-Token", &secret)
                        .json(&u)
                        .timeout(Duration::from_secs(5))
                        .send()
                        .await;
                    if r.is_ok_and(|r| r.status().is_success()) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                acked.fetch_add(1, Ordering::SeqCst);
            }
        }
    };
    let acked = Arc::new(AtomicUsize::new(0));
    let total = updates.len();
    let (joins, sales) = updates.split_at(CHATS as usize);
    deliver(joins.to_vec(), acked.clone()).await;
    let sender = tokio::spawn(deliver(sales.to_vec(), acked.clone()));
    let mut rng = rand::rng();
    let mut kill_at: Vec<usize> = (0..3).map(|_| rng.random_range(40..total - 20)).collect();
    kill_at.sort();
    for at in kill_at {
        while acked.load(Ordering::SeqCst) < at && !sender.is_finished() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        server.crash_and_restart().await;
    }
    sender.await.unwrap();
    // Telegram retrying everything: all answered 200, nothing applied or answered again.
    deliver(updates.clone(), Arc::new(AtomicUsize::new(0))).await;

    // Every update answered: each chat gets its welcome and one reply per sale.
    let deadline = Instant::now() + Duration::from_secs(90);
    let expected = (1 + PER_CHAT) as usize;
    loop {
        let short = (0..CHATS).any(|c| {
            let mut got = fake.sent_to(5000 + c);
            got.sort();
            got.dedup();
            got.len() < expected
        });
        if !short {
            break;
        }
        assert!(Instant::now() < deadline, "replies missing after 90 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut duplicates = 0;
    for c in 0..CHATS {
        let got = fake.sent_to(5000 + c);
        let mut distinct = got.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), expected, "chat {c}: {got:?}");
        assert!(
            distinct[0..]
                .iter()
                .any(|t| t.starts_with("Welcome, Clerk"))
        );
        duplicates += got.len() - distinct.len();
    }
    let kills = server.starts - 1;
    server.stop();
    // A reply can be sent twice only if the process died between Telegram's answer and the
    // write that marks it sent: at most the sends in flight at each kill.
    assert!(
        duplicates <= kills * 16,
        "{duplicates} duplicate replies over {kills} kills"
    );

    let data = dir.path().join("data");
    let conn = rusqlite::Connection::open(tenant_file(&data, "tg")).unwrap();
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        one("SELECT count(*) FROM inbox"),
        total as i64,
        "one inbox row per update"
    );
    assert_eq!(
        one("SELECT count(*) FROM inbox WHERE status = 'done'"),
        total as i64
    );
    assert_eq!(one("SELECT count(*) FROM sales"), CHATS * PER_CHAT);
    assert_eq!(
        one("SELECT stock FROM products"),
        (100_000 - CHATS * PER_CHAT) * 1000
    );
    assert_eq!(
        one("SELECT count(*) FROM outbox"),
        total as i64,
        "one reply per update"
    );
    assert_eq!(
        one("SELECT count(*) FROM outbox WHERE status = 'sent'"),
        total as i64
    );
    assert_eq!(integrity_all(&data), 2);
    eprintln!(
        "telegram crash test: {total} updates, {kills} kills, {duplicates} replies sent twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_burst_of_webhooks_drains_every_reply() {
    let _alone = crate::helpers::MACHINE.lock().await;
    use crate::telegram::{fake_bot, text_update};
    const CHATS: i64 = 10;
    const PER_CHAT: i64 = 40;
    let fake = fake_bot().await;
    let dir = tempfile::tempdir().unwrap();
    let (mut server, secret) = telegram_shop(dir.path(), &fake, &[("TARN_CHAT_GAP_MS", "0")]).await;
    let client = reqwest::Client::new();
    let url = format!("{}/webhooks/telegram/tg", server.base);
    let send = {
        let client = client.clone();
        move |u: Value| {
            let req = client
                .post(&url)
                .header("X-Telegram-Bot-Api-Secret-Token", &secret)
                .json(&u)
                .timeout(Duration::from_secs(5));
            async move { req.send().await.is_ok_and(|r| r.status().is_success()) }
        }
    };
    for c in 0..CHATS {
        let code = new_clerk(&client, &server.base, c).await;
        assert!(
            send(text_update(
                c + 1,
                7000 + c,
                7000 + c,
                &format!("/join {code}")
            ))
            .await
        );
    }
    // Every chat sends its sales in order, as fast as they are acknowledged, until the
    // server stops answering.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut chats = tokio::task::JoinSet::new();
    for c in 0..CHATS {
        let (acked, send) = (acked.clone(), send.clone());
        let updates: Vec<Value> = (0..PER_CHAT)
            .map(|n| text_update(1000 + n * CHATS + c, 7000 + c, 7000 + c, "/sale 1 rice"))
            .collect();
        chats.spawn(async move {
            for u in updates {
                if !send(u).await {
                    return;
                }
                acked.fetch_add(1, Ordering::SeqCst);
            }
        });
    }
    while acked.load(Ordering::SeqCst) < (CHATS * PER_CHAT / 3) as usize {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    server.stop();
    while chats.join_next().await.is_some() {}
    let acked = acked.load(Ordering::SeqCst) as i64;
    assert!(acked < CHATS * PER_CHAT, "the stop came during the burst");

    // Every update stored was answered before the process ended (the bot's 30 a second
    // makes the sender the slow part): nothing left pending.
    let data = dir.path().join("data");
    let conn = rusqlite::Connection::open(tenant_file(&data, "tg")).unwrap();
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
    assert_eq!(
        one("SELECT count(*) FROM inbox WHERE status = 'pending'"),
        0,
        "{log}"
    );
    assert_eq!(
        one("SELECT count(*) FROM outbox WHERE status != 'sent'"),
        0,
        "{log}"
    );
    let stored_sales = one("SELECT count(*) FROM inbox") - CHATS;
    assert!(
        stored_sales >= acked,
        "{stored_sales} stored, {acked} acknowledged"
    );
    assert_eq!(one("SELECT count(*) FROM sales"), stored_sales);
    let replies: usize = (0..CHATS).map(|c| fake.sent_to(7000 + c).len()).sum();
    assert_eq!(
        replies as i64,
        CHATS + stored_sales,
        "one reply per stored update, each sent before the stop"
    );
}

/// A server (with the Bot API stand-in) holding tenant `tg`, Rice with 100,000 in stock and
/// the stand-in's bot bound; and the webhook secret the bot was given.
async fn telegram_shop(
    dir: &Path,
    fake: &crate::telegram::FakeBot,
    extra: &[(&str, &str)],
) -> (Server, String) {
    let mut env = vec![
        ("TARN_TELEGRAM_API_URL", fake.base.as_str()),
        ("TARN_PUBLIC_URL", "https://tarn.example"),
    ];
    env.extend_from_slice(extra);
    let server = Server::start(dir, &env).await;
    let client = reqwest::Client::new();
    let admin = |req: reqwest::RequestBuilder, body: Value| async move {
        let r = req.bearer_auth(ADMIN).json(&body).send().await.unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    };
    let base = &server.base;
    admin(
        client.post(format!("{base}/v1/tenants")),
        json!({"id": "tg", "name": "tg"}),
    )
    .await;
    admin(
        client.post(format!("{base}/v1/tenants/tg/products")),
        json!({"name": "Rice", "price": 2, "stock": 100_000}),
    )
    .await;
    admin(
        client.put(format!("{base}/v1/tenants/tg/channels/telegram")),
        json!({"bot_token": crate::telegram::TOKEN}),
    )
    .await;
    let secret = fake.call("setwebhook").unwrap()["secret_token"]
        .as_str()
        .unwrap()
        .to_owned();
    (server, secret)
}

/// A new staff member `Clerk<c>` of `tg`; their join code.
async fn new_clerk(client: &reqwest::Client, base: &str, c: i64) -> String {
    let r = client
        .post(format!("{base}/v1/tenants/tg/staff"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": format!("Clerk{c}"), "role": "staff"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let staff: Value = r.json().await.unwrap();
    staff["join_code"].as_str().unwrap().to_owned()
}
