//! `tarn bench`: the load harness. It builds N tenants with a small catalog in a scratch data
//! dir, runs `tarn serve` on it as a child process, drives M messages through
//! `POST /v1/tenants/{t}/messages` from K clients with Zipf(1.1) tenant popularity and a
//! shop's mix, then replays the same transactions with rusqlite directly (the raw baseline)
//! and checks every tenant's stock against its movements. Invariant: it only ever works in
//! its own scratch directory.

// Shared with the tests, which use the parts the bench does not.
#[allow(dead_code)]
mod bot_api;

use anyhow::{Context, bail};
use bot_api::BotApi;
use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tarn::config::{BenchArgs, StoreArgs};
use tarn::store::NewTenant;
use tarn::tenant::pool::PoolMetrics;
use tarn::tenant::sqlite::{self, Cached};
use tarn::tenant::{Layout, TenantId};

const PRODUCTS: [&str; 6] = ["rice", "sugar", "oil", "eggs", "milk", "bread"];
const OPENING_STOCK: i64 = 10_000_000;
/// Telegram chats per staff member in webhook mode (a busy shop's staff are many people).
const CHATS_PER_SENDER: usize = 8;
/// Bot ids are this plus the tenant's number.
const BOT_BASE: u64 = 1_000_000;

/// The Telegram user (and private chat) id of one of a staff member's chats.
fn telegram_user(sender: &str, chat: usize) -> i64 {
    (if sender == "Sam" { 100 } else { 200 }) + chat as i64
}

/// One message of the plan.
#[derive(Debug, Clone)]
struct Msg {
    tenant: usize,
    kind: Kind,
    product: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sale,
    Stock,
    Restock,
    Payment,
    Report,
}

impl Msg {
    /// The Telegram chat (and user) the message comes from in webhook mode.
    fn chat(&self, i: usize) -> i64 {
        telegram_user(self.text().1, i % CHATS_PER_SENDER)
    }

    fn text(&self) -> (String, &'static str) {
        let p = PRODUCTS[self.product];
        match self.kind {
            Kind::Sale => (format!("/sale 1 {p}"), "Sam"),
            Kind::Stock => (format!("/stock {p}"), "Sam"),
            Kind::Restock => (format!("/restock {p} 5"), "Mary"),
            Kind::Payment => ("/paid ahmed 1".into(), "Mary"),
            Kind::Report => ("/report today".into(), "Mary"),
        }
    }
}

/// The message plan: Zipf(1.1) over tenants, 70/10/10/5/5 sale/stock/restock/pay/report.
fn plan(tenants: usize, messages: usize, seed: u64) -> Vec<Msg> {
    let mut cdf = Vec::with_capacity(tenants);
    let mut total = 0.0;
    for k in 1..=tenants {
        total += 1.0 / (k as f64).powf(1.1);
        cdf.push(total);
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..messages)
        .map(|_| {
            let u = rng.random::<f64>() * total;
            let tenant = cdf.partition_point(|c| *c < u).min(tenants - 1);
            let r = rng.random::<f64>();
            let kind = match r {
                r if r < 0.70 => Kind::Sale,
                r if r < 0.80 => Kind::Stock,
                r if r < 0.90 => Kind::Restock,
                r if r < 0.95 => Kind::Payment,
                _ => Kind::Report,
            };
            Msg {
                tenant,
                kind,
                product: rng.random_range(0..PRODUCTS.len()),
            }
        })
        .collect()
}

/// This run's number (its start in Unix ms), in idempotency keys and update ids, so a reused
/// data dir never sees them as repeats.
fn nonce() -> i64 {
    static NONCE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *NONCE.get_or_init(|| chrono::Utc::now().timestamp_millis())
}

/// This run's operator token: only our own server child accepts it.
fn token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| format!("tarn-bench-{:x}", nonce()))
}

fn tenant_id(i: usize) -> TenantId {
    TenantId::parse(&format!("bench-{i:06}")).expect("a valid id")
}

/// Creates the tenants with their catalog, staff and a customer (eight threads: creating a
/// file mostly waits on the disk).
fn build(data: &Path, tenants: usize) -> anyhow::Result<()> {
    let args = StoreArgs {
        data_dir: data.to_path_buf(),
        max_open_tenants: 64,
        tenant_idle_secs: 60,
        tenant_quiet_secs: 0,
        tenant_warm: 0,
        tenant_threads: 0,
        tenant_connections: 1,
        statement_timeout_ms: 60_000,
        sync_capture: true,
    };
    let store = tarn::app::open_store(&args, PoolMetrics::default())?;
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= tenants {
                            return Ok(());
                        }
                        let id = tenant_id(i);
                        if store.pool().layout().tenant_db(&id).exists() {
                            continue;
                        }
                        store.create_tenant(NewTenant {
                            id: id.clone(),
                            name: format!("Bench shop {i}"),
                            currency: Some("USD".into()),
                            timezone: Some("UTC".into()),
                        })?;
                        let h = store.pool().acquire(&id)?;
                        let mut conn = h.conn()?;
                        seed(&mut conn)?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("no panic")?;
        }
        anyhow::Ok(())
    })?;
    store.pool().close_all();
    Ok(())
}

fn seed(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let now = tarn::clock::now();
    for (i, p) in PRODUCTS.iter().enumerate() {
        tx.execute(
            "INSERT INTO products (name, name_key, unit, price, stock, low_stock_at, created_at)
             VALUES (?1, ?1, 'pcs', ?2, ?3, 0, ?4)",
            params![p, 100 + 25 * i as i64, OPENING_STOCK, now],
        )?;
        tx.execute(
            "INSERT INTO stock_movements (product_id, delta, cause, at)
             VALUES (last_insert_rowid(), ?1, 'initial', ?2)",
            params![OPENING_STOCK, now],
        )?;
    }
    tx.execute(
        "INSERT INTO customers (name, name_key, balance, created_at) VALUES ('Ahmed', 'ahmed', 100000000, ?1)",
        [&now],
    )?;
    for (name, role) in [("Sam", "staff"), ("Mary", "manager")] {
        tx.execute(
            "INSERT INTO staff (name, name_key, role, created_at) VALUES (?1, lower(?1), ?2, ?3)",
            params![name, role, now],
        )?;
        for chat in 0..CHATS_PER_SENDER {
            tx.execute(
                "INSERT INTO identities (staff_id, channel, external_id, chat_id, created_at)
                 SELECT id, 'telegram', ?2, ?2, ?3 FROM staff WHERE name_key = lower(?1)",
                params![name, telegram_user(name, chat), now],
            )?;
        }
    }
    tarn::tenant::session::record(&tx, "seed")?;
    tx.commit()
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path, args: &BenchArgs, bot_api: Option<&str>) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut cmd = Command::new(std::env::current_exe()?);
        if let Some(api) = bot_api {
            cmd.env("TARN_TELEGRAM_API_URL", api)
                .env("TARN_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
                .env("TARN_CHAT_GAP_MS", args.chat_gap_ms.to_string())
                .env("TARN_TELEGRAM_BOT_RATE", args.bot_rate.to_string());
        }
        let child = cmd
            .arg("serve")
            .env("TARN_DATA_DIR", data)
            .env("TARN_LISTEN", format!("127.0.0.1:{port}"))
            .env("TARN_ADMIN_TOKEN", token())
            .env("TARN_MAX_OPEN_TENANTS", args.max_open_tenants.to_string())
            .env("TARN_SCHEDULER", "false")
            .env("TARN_TENANT_RPS", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting tarn serve")?;
        Ok(Server {
            child,
            base: format!("http://127.0.0.1:{port}"),
        })
    }

    fn rss(&self) -> u64 {
        tarn::system::rss_bytes(self.child.id()).unwrap_or(0)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) with a pid we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;
        Ok(())
    }
}

/// The RSS of a server started on an empty data dir `dir` (removed afterwards), once up.
async fn empty_server_rss(dir: &Path, args: &BenchArgs) -> anyhow::Result<u64> {
    let _ = std::fs::remove_dir_all(dir);
    let server = start_up(dir, args, None).await?;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss = server.rss();
    server.stop()?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(rss)
}

/// Starts the server and waits until it answers to this run's token. The port is picked
/// free just before the child binds it, so another process can take it meanwhile: then the
/// child exits, and it is started again on another port (the token keeps another server on
/// that port from passing for ours).
async fn start_up(data: &Path, args: &BenchArgs, bot_api: Option<&str>) -> anyhow::Result<Server> {
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let mut server = Server::start(data, args, bot_api)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if client
                .get(format!("{}/v1/tenants?limit=1", server.base))
                .bearer_auth(token())
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(server);
            }
            if server.child.try_wait()?.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = server.child.kill();
        let _ = server.child.wait();
    }
    bail!("the server did not come up")
}

fn metric(text: &str, name: &str) -> f64 {
    let full = format!("tarn_{name}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(' '))
        .filter(|(k, _)| {
            *k == full || *k == format!("{full}_total") || k.starts_with(&format!("{full}_total{{"))
        })
        .filter_map(|(_, v)| v.parse::<f64>().ok())
        .sum()
}

/// Which messages one client sends.
enum Queue {
    /// Whatever is next in the plan (HTTP mode: any client takes any message).
    Shared(Arc<AtomicUsize>, usize),
    /// Its own messages in plan order (webhook mode: one client per chat, so a chat's
    /// messages are sent one after the other, as a person sends them, and its replies come
    /// back in that order).
    Own(std::vec::IntoIter<usize>),
}

impl Queue {
    fn next(&mut self) -> Option<usize> {
        match self {
            Queue::Shared(next, len) => {
                Some(next.fetch_add(1, Ordering::Relaxed)).filter(|i| i < len)
            }
            Queue::Own(it) => it.next(),
        }
    }
}

fn partition(plan: &[Msg], clients: usize, by_chat: bool) -> Vec<Queue> {
    if !by_chat {
        let next = Arc::new(AtomicUsize::new(0));
        return (0..clients)
            .map(|_| Queue::Shared(next.clone(), plan.len()))
            .collect();
    }
    let mut own = vec![Vec::new(); clients];
    for (i, m) in plan.iter().enumerate() {
        let chat = m.chat(i) as usize;
        own[(m.tenant * 31 + chat) % clients].push(i);
    }
    own.into_iter().map(|v| Queue::Own(v.into_iter())).collect()
}

async fn post_message(client: &reqwest::Client, base: &str, m: &Msg, i: usize) -> Option<String> {
    let (text, sender) = m.text();
    let r = client
        .post(format!("{base}/v1/tenants/{}/messages", tenant_id(m.tenant)))
        .bearer_auth(token())
        .json(&serde_json::json!({"text": text, "sender": sender, "id": format!("b-{:x}-{i}", nonce())}))
        .send()
        .await
        .ok()
        .filter(|r| r.status().is_success())?;
    let v = r.json::<serde_json::Value>().await.ok()?;
    v["status"].as_str().map(str::to_owned)
}

/// Posts message `i` as a Telegram update, records the webhook's answer time in `ack_us`,
/// then waits for the reply to reach the Bot API stand-in (as a person waits for the answer
/// before the next message). `accepted` when both happened.
async fn post_update(
    client: &reqwest::Client,
    base: &str,
    fake: &BotApi,
    m: &Msg,
    i: usize,
    ack_us: &mut Vec<u64>,
) -> Option<String> {
    let (text, _) = m.text();
    let bot = BOT_BASE + m.tenant as u64;
    let chat = m.chat(i);
    let secret = fake.secret(bot)?;
    // Telegram's update ids fit in a u32; this run's nonce keeps a reused data dir's inbox
    // from taking them for redeliveries.
    let update_id = (nonce() % 4_000) * 1_000_000 + (i % 1_000_000) as i64;
    let update = serde_json::json!({"update_id": update_id, "message": {
        "message_id": i + 1, "date": chrono::Utc::now().timestamp(),
        "from": {"id": chat, "is_bot": false, "first_name": "Staff"},
        "chat": {"id": chat, "type": "private", "first_name": "Staff"},
        "text": text}});
    let rx = fake.expect_reply(bot, chat);
    let sent = Instant::now();
    let ok = client
        .post(format!("{base}/webhooks/telegram/{}", tenant_id(m.tenant)))
        .header("x-telegram-bot-api-secret-token", secret)
        .json(&update)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    ack_us.push(sent.elapsed().as_micros() as u64);
    if !ok {
        // No reply will come for it.
        fake.forget_expected(bot, chat);
        return None;
    }
    match tokio::time::timeout(REPLY_WAIT, rx).await {
        Ok(Ok(())) => Some("accepted".into()),
        _ => None,
    }
}

/// How long a webhook client waits for a reply before counting it missing.
const REPLY_WAIT: Duration = Duration::from_secs(30);

/// Binds a bot on the stand-in to each active tenant, `concurrency` at a time.
async fn bind_bots(
    client: &reqwest::Client,
    base: &str,
    fake: &BotApi,
    active: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let gate = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let mut binds = tokio::task::JoinSet::new();
    for t in 0..active {
        let (client, base, gate) = (client.clone(), base.to_owned(), gate.clone());
        binds.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let r = client
                .put(format!(
                    "{base}/v1/tenants/{}/channels/telegram",
                    tenant_id(t)
                ))
                .bearer_auth(token())
                .json(&serde_json::json!({"bot_token": format!("{}:AAbench{}", BOT_BASE + t as u64, "x".repeat(30))}))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!(
                    "binding a bot to {}: {} {}",
                    tenant_id(t),
                    r.status(),
                    r.text().await?
                );
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = binds.join_next().await {
        done??;
    }
    if fake.bots_with_secrets() < active {
        bail!(
            "only {} of {active} bots got a webhook secret",
            fake.bots_with_secrets()
        );
    }
    Ok(())
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn latency(mut us: Vec<u64>) -> Latency {
    us.sort_unstable();
    let at = |q: f64| {
        us.get(((us.len() as f64 * q) as usize).min(us.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    Latency {
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        max_ms: us.last().copied().unwrap_or(0) as f64 / 1000.0,
    }
}

/// What a run measured.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tenants: usize,
    pub active: usize,
    pub messages: usize,
    pub concurrency: usize,
    pub max_open_tenants: usize,
    pub seconds: f64,
    pub messages_per_sec: f64,
    pub latency: Latency,
    pub errors: u64,
    pub statuses: HashMap<String, u64>,
    pub server_rss_mib: RssReport,
    /// CPU seconds the server used during the run, and per message in microseconds.
    pub server_cpu_seconds: f64,
    pub server_cpu_us_per_message: f64,
    /// CPU seconds the load generator (this process) used during the run.
    pub client_cpu_seconds: f64,
    /// KiB the server wrote per message: through write calls (WAL frames, checkpoints into
    /// the database files, and the HTTP answers), and as counted at the storage layer.
    pub server_written_kib_per_message: f64,
    pub server_storage_kib_per_message: f64,
    /// Webhook mode only: replies that reached the Bot API stand-in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookReport>,
    pub open_tenants_end: f64,
    pub tenant_opens: f64,
    pub evictions: f64,
    pub raw_baseline_per_sec: f64,
    pub gateway_vs_raw: f64,
    pub consistency: String,
}

/// The replies of a webhook run, as the Bot API stand-in saw them.
#[derive(Debug, Serialize)]
pub struct WebhookReport {
    pub replies: u64,
    /// Accepted updates whose reply never came (counted in `errors`).
    pub missing: u64,
    /// Replies that matched no update (counted in `errors`).
    pub unexpected: u64,
    /// From posting the update to its reply reaching the Bot API.
    pub end_to_end: Latency,
    /// Replies per second, from the first update to the last reply.
    pub replies_per_sec: f64,
}

/// Waits until every accepted update has its reply, or 30 s pass without a new one.
async fn wait_for_replies(fake: &BotApi, acked: u64, started: Instant) -> WebhookReport {
    let mut seen = (fake.reply_counts().0, Instant::now());
    loop {
        let now = fake.reply_counts().0;
        if now >= acked {
            break;
        }
        if now > seen.0 {
            seen = (now, Instant::now());
        } else if seen.1.elapsed() > Duration::from_secs(30) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (replies, unexpected, last) = fake.reply_counts();
    let last = last.unwrap_or(started);
    let e2e = fake.take_e2e_us();
    WebhookReport {
        replies,
        missing: acked.saturating_sub(replies),
        unexpected,
        end_to_end: latency(e2e),
        replies_per_sec: (replies as f64 / (last - started).as_secs_f64().max(1e-9)).round(),
    }
}

/// Server RSS in MiB.
#[derive(Debug, Serialize)]
pub struct RssReport {
    /// A server just started on an empty data dir, for comparison with `start`.
    pub empty_server: f64,
    /// This server just started, with all the tenants on disk and none open.
    pub start: f64,
    pub peak: f64,
    pub end: f64,
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mib(b: u64) -> f64 {
    (b as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

/// Runs the harness and prints its report.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.tenants == 0 || args.messages == 0 || args.concurrency == 0 {
        bail!("--tenants, --messages and --concurrency must be at least 1");
    }
    if args.active.is_some_and(|a| a == 0 || a > args.tenants) {
        bail!("--active must be between 1 and --tenants");
    }
    if args.webhook && args.messages > 1_000_000 {
        bail!("--webhook sends at most 1,000,000 messages (Telegram update ids are 32-bit)");
    }
    let scratch = std::env::temp_dir().join(format!("tarn-bench-{}", std::process::id()));
    let data = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            let _ = std::fs::remove_dir_all(&scratch);
            scratch.join("data")
        }
    };
    let result = run_in(&data, args);
    if args.data_dir.is_none() {
        if args.keep {
            eprintln!("kept {}", data.display());
        } else {
            let _ = std::fs::remove_dir_all(&scratch);
        }
    }
    let report = result?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    if report.errors > 0 || report.consistency != "ok" {
        bail!("the run had errors or inconsistent books");
    }
    Ok(())
}

fn run_in(data: &Path, args: &BenchArgs) -> anyhow::Result<Report> {
    let t = Instant::now();
    build(data, args.tenants)?;
    eprintln!("built {} tenants in {:.1?}", args.tenants, t.elapsed());
    let active = args.active.unwrap_or(args.tenants);
    let plan = Arc::new(plan(active, args.messages, 42));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut report, server) = rt.block_on(async {
        let empty = empty_server_rss(&data.with_extension("empty"), args).await?;
        let fake = match args.webhook {
            true => Some(Arc::new(BotApi::start().await?)),
            false => None,
        };
        let server = start_up(data, args, fake.as_ref().map(|f| f.base.as_str())).await?;
        let (mut report, server) = drive(server, plan.clone(), args, fake).await?;
        report.server_rss_mib.empty_server = mib(empty);
        anyhow::Ok((report, server))
    })?;
    server.stop()?;
    let raw = raw_baseline(data, &plan, active, args)?;
    report.raw_baseline_per_sec = raw;
    report.gateway_vs_raw = (report.messages_per_sec / raw * 100.0).round() / 100.0;
    report.consistency = consistency(data, active)?;
    Ok(report)
}

async fn drive(
    server: Server,
    plan: Arc<Vec<Msg>>,
    args: &BenchArgs,
    fake: Option<Arc<BotApi>>,
) -> anyhow::Result<(Report, Server)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    if let Some(fake) = &fake {
        let active = args.active.unwrap_or(args.tenants);
        bind_bots(&client, &server.base, fake, active, args.concurrency).await?;
    }
    // Measured as the empty server is: up, then settled for a moment.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_start = server.rss();
    let peak = Arc::new(AtomicU64::new(rss_start));
    let pid = server.child.id();
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(r) = tarn::system::rss_bytes(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let cpu = || {
        (
            tarn::system::cpu_seconds(pid).unwrap_or(0.0),
            tarn::system::cpu_seconds(std::process::id()).unwrap_or(0.0),
        )
    };
    let cpu_start = cpu();
    let written = || tarn::system::written_bytes(pid).unwrap_or((0, 0));
    let written_start = written();
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    let started = Instant::now();
    let mut tasks = Vec::new();
    let queues = partition(&plan, args.concurrency, fake.is_some());
    for queue in queues {
        let (client, base, plan, fake) = (
            client.clone(),
            server.base.clone(),
            plan.clone(),
            fake.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut statuses: HashMap<String, u64> = HashMap::new();
            let mut queue = queue;
            while let Some(i) = queue.next() {
                if deadline.is_some_and(|d| Instant::now() > d) {
                    break;
                }
                let t = Instant::now();
                let status = match &fake {
                    None => {
                        let status = post_message(&client, &base, &plan[i], i).await;
                        lat.push(t.elapsed().as_micros() as u64);
                        status
                    }
                    Some(fake) => post_update(&client, &base, fake, &plan[i], i, &mut lat).await,
                };
                match status {
                    Some(s) => *statuses.entry(s).or_default() += 1,
                    None => errors += 1,
                }
            }
            (lat, errors, statuses)
        }));
    }
    let (mut lat, mut errors, mut statuses) = (Vec::new(), 0, HashMap::new());
    for t in tasks {
        let (l, e, s) = t.await?;
        lat.extend(l);
        errors += e;
        for (k, v) in s {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let webhook = match &fake {
        Some(fake) => {
            let acked = statuses.get("accepted").copied().unwrap_or(0);
            let report = wait_for_replies(fake, acked, started).await;
            errors += report.missing + report.unexpected;
            Some(report)
        }
        None => None,
    };
    let cpu_end = cpu();
    let written_end = written();
    sampler.abort();
    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await?
        .text()
        .await?;
    let done = lat.len();
    Ok((
        Report {
            tenants: args.tenants,
            active: args.active.unwrap_or(args.tenants),
            messages: done,
            concurrency: args.concurrency,
            max_open_tenants: args.max_open_tenants,
            seconds: (seconds * 100.0).round() / 100.0,
            messages_per_sec: (done as f64 / seconds).round(),
            latency: latency(lat),
            errors,
            statuses,
            server_rss_mib: RssReport {
                empty_server: 0.0,
                start: mib(rss_start),
                peak: mib(peak.load(Ordering::Relaxed)),
                end: mib(server.rss()),
            },
            server_cpu_seconds: round2(cpu_end.0 - cpu_start.0),
            server_cpu_us_per_message: ((cpu_end.0 - cpu_start.0) * 1e6 / done.max(1) as f64)
                .round(),
            client_cpu_seconds: round2(cpu_end.1 - cpu_start.1),
            server_written_kib_per_message: round2(
                (written_end.0 - written_start.0) as f64 / 1024.0 / done.max(1) as f64,
            ),
            server_storage_kib_per_message: round2(
                (written_end.1.saturating_sub(written_start.1)) as f64
                    / 1024.0
                    / done.max(1) as f64,
            ),
            open_tenants_end: metric(&metrics, "open_tenants"),
            tenant_opens: metric(&metrics, "tenant_opens"),
            evictions: metric(&metrics, "tenant_evictions_capacity")
                + metric(&metrics, "tenant_evictions_idle"),
            webhook,
            raw_baseline_per_sec: 0.0,
            gateway_vs_raw: 0.0,
            consistency: String::new(),
        },
        server,
    ))
}

/// The same transactions with rusqlite directly: no HTTP, no parsing, no journal. Threads
/// take the plan's messages in order, each tenant's connection behind a mutex (one writer per
/// file, as the server's pool has); at most `--max-open-tenants` connections are open, the
/// next one in turn closed to make room. Returns transactions per second.
fn raw_baseline(
    data: &Path,
    plan: &[Msg],
    tenants: usize,
    args: &BenchArgs,
) -> anyhow::Result<f64> {
    let layout = Layout::new(data);
    let threads = args.concurrency.clamp(1, 8);
    let conns: Vec<std::sync::Mutex<Option<Connection>>> =
        (0..tenants).map(|_| std::sync::Mutex::new(None)).collect();
    let (next, open, cursor) = (
        AtomicUsize::new(0),
        AtomicUsize::new(0),
        AtomicUsize::new(0),
    );
    let make_room = || {
        while open.load(Ordering::Relaxed) >= args.max_open_tenants {
            let c = cursor.fetch_add(1, Ordering::Relaxed) % tenants;
            if let Ok(mut slot) = conns[c].try_lock()
                && slot.take().is_some()
            {
                open.fetch_sub(1, Ordering::Relaxed);
            }
        }
    };
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(m) = plan.get(i) else {
                            return Ok(());
                        };
                        let mut slot = conns[m.tenant].lock().expect("no panic");
                        if slot.is_none() {
                            make_room();
                            let path: PathBuf = layout.tenant_db(&tenant_id(m.tenant));
                            *slot = Some(sqlite::open_existing(&path)?);
                            open.fetch_add(1, Ordering::Relaxed);
                        }
                        raw_one(slot.as_mut().expect("just opened"), m, i)?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("no panic")?;
        }
        anyhow::Ok(())
    })?;
    Ok((plan.len() as f64 / started.elapsed().as_secs_f64()).round())
}

fn raw_one(conn: &mut Connection, m: &Msg, i: usize) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let key = format!("raw-{:x}-{i}", nonce());
    let seen: bool = tx.row(
        "SELECT EXISTS (SELECT 1 FROM message_log WHERE inbound_id = ?1)",
        [&key],
        |r| r.get(0),
    )?;
    if seen {
        return Ok(());
    }
    let now = tarn::clock::now();
    let p = PRODUCTS[m.product];
    match m.kind {
        Kind::Sale | Kind::Restock => {
            let (id, price): (i64, i64) = tx.row(
                "SELECT id, price FROM products WHERE name_key = ?1",
                [p],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let delta = if m.kind == Kind::Sale { -1000 } else { 5000 };
            if m.kind == Kind::Sale {
                tx.exec(
                    "INSERT INTO sales (staff_id, total, paid, at) VALUES (2, ?1, 1, ?2)",
                    params![price, now],
                )?;
                let sale = tx.last_insert_rowid();
                tx.exec(
                    "INSERT INTO sale_items (sale_id, product_id, qty, unit_price, total)
                     VALUES (?3, ?1, 1000, ?2, ?2)",
                    params![id, price, sale],
                )?;
                tarn::shop::report::count_sale(&tx, sale, 1)?;
            }
            tx.exec(
                "UPDATE products SET stock = stock + ?2 WHERE id = ?1",
                params![id, delta],
            )?;
            tx.exec(
                "INSERT INTO stock_movements (product_id, delta, cause, at) VALUES (?1, ?2, ?3, ?4)",
                params![id, delta, if m.kind == Kind::Sale { "sale" } else { "restock" }, now],
            )?;
        }
        Kind::Stock => {
            tx.row("SELECT stock FROM products WHERE name_key = ?1", [p], |r| {
                r.get::<_, i64>(0)
            })?;
        }
        Kind::Payment => {
            tx.exec(
                "UPDATE customers SET balance = balance - 100 WHERE name_key = 'ahmed'",
                [],
            )?;
            tx.exec(
                "INSERT INTO payments (customer_id, staff_id, amount, at) VALUES (1, 3, 100, ?1)",
                [&now],
            )?;
        }
        Kind::Report => {
            let settings = tarn::shop::load_settings(&tx)?;
            let today = tarn::shop::report::local_today(&settings);
            tarn::shop::report::summary(&tx, &settings, None, today, today)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(e.into()))?;
        }
    }
    tx.exec(
        "INSERT INTO message_log (inbound_id, channel, sender, text, source, status, reply, received_at)
         VALUES (?1, 'bench', 'raw', '', 'raw', 'applied', '', ?2)",
        params![key, now],
    )?;
    tx.commit()
}

/// Every tenant's product stock equals the sum of its movements.
fn consistency(data: &Path, tenants: usize) -> anyhow::Result<String> {
    let layout = Layout::new(data);
    let mut bad = Vec::new();
    for i in 0..tenants {
        let conn = sqlite::open_existing(&layout.tenant_db(&tenant_id(i)))?;
        let off: i64 = conn.query_row(
            "SELECT count(*) FROM products p
             WHERE stock != (SELECT coalesce(sum(delta), 0) FROM stock_movements m WHERE m.product_id = p.id)",
            [],
            |r| r.get(0),
        )?;
        if off > 0 {
            bad.push(tenant_id(i).to_string());
        }
    }
    Ok(if bad.is_empty() {
        "ok".into()
    } else {
        format!("{} tenants off: {}", bad.len(), bad.join(", "))
    })
}

fn print_report(r: &Report) {
    let mut statuses: Vec<_> = r.statuses.iter().collect();
    statuses.sort();
    let webhook = match &r.webhook {
        None => String::new(),
        Some(w) => format!(
            "replies         {} at the Bot API ({:.0}/s), {} missing, {} unexpected\n\
             end to end      p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms (update posted -> reply at the Bot API)\n",
            w.replies,
            w.replies_per_sec,
            w.missing,
            w.unexpected,
            w.end_to_end.p50_ms,
            w.end_to_end.p95_ms,
            w.end_to_end.p99_ms,
            w.end_to_end.max_ms
        ),
    };
    println!(
        "tarn bench: {} tenants ({} active), {} messages, {} clients, pool cap {}\n\
         throughput      {:.0} messages/s over {:.2} s\n\
         latency         p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}\n\
         {}\
         errors          {}\n\
         statuses        {:?}\n\
         server RSS      start {} MiB (an empty server: {} MiB), peak {} MiB, end {} MiB\n\
         CPU             server {:.2} s ({:.0} µs per message), load generator {:.2} s\n\
         written         {:.2} KiB per message by the server ({:.2} KiB at the storage layer)\n\
         tenants         {} open at the end, {} opens, {} evictions\n\
         raw baseline    {:.0} transactions/s (rusqlite directly, same files and plan)\n\
         gateway / raw   {:.2}\n\
         consistency     {}",
        r.tenants,
        r.active,
        r.messages,
        r.concurrency,
        r.max_open_tenants,
        r.messages_per_sec,
        r.seconds,
        r.latency.p50_ms,
        r.latency.p95_ms,
        r.latency.p99_ms,
        r.latency.max_ms,
        if r.webhook.is_some() {
            " (webhook ack)"
        } else {
            ""
        },
        webhook,
        r.errors,
        statuses,
        r.server_rss_mib.start,
        r.server_rss_mib.empty_server,
        r.server_rss_mib.peak,
        r.server_rss_mib.end,
        r.server_cpu_seconds,
        r.server_cpu_us_per_message,
        r.client_cpu_seconds,
        r.server_written_kib_per_message,
        r.server_storage_kib_per_message,
        r.open_tenants_end,
        r.tenant_opens,
        r.evictions,
        r.raw_baseline_per_sec,
        r.gateway_vs_raw,
        r.consistency
    );
}
