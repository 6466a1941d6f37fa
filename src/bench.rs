//! `tarn bench`: the load harness. It builds N tenants with a small catalog in a scratch data
//! dir, runs `tarn serve` on it as a child process, drives M messages through
//! `POST /v1/tenants/{t}/messages` from K clients with Zipf(1.1) tenant popularity and a
//! shop's mix, then replays the same transactions with rusqlite directly (the raw baseline)
//! and checks every tenant's stock against its movements. Invariant: it only ever works in
//! its own scratch directory.

use crate::config::{BenchArgs, StoreArgs};
use crate::store::NewTenant;
use crate::tenant::pool::PoolMetrics;
use crate::tenant::{Layout, TenantId, sqlite};
use anyhow::{Context, bail};
use rand::{RngExt, SeedableRng};
use rusqlite::{Connection, params};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const TOKEN: &str = "tarn-bench-operator";
const PRODUCTS: [&str; 6] = ["rice", "sugar", "oil", "eggs", "milk", "bread"];
const OPENING_STOCK: i64 = 10_000_000;

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

fn tenant_id(i: usize) -> TenantId {
    TenantId::parse(&format!("bench-{i:06}")).expect("a valid id")
}

/// Creates the tenants with their catalog, staff and a customer (two threads).
fn build(data: &Path, tenants: usize) -> anyhow::Result<()> {
    let args = StoreArgs {
        data_dir: data.to_path_buf(),
        max_open_tenants: 64,
        tenant_idle_secs: 60,
        tenant_connections: 1,
        statement_timeout_ms: 60_000,
    };
    let store = crate::app::open_store(&args, PoolMetrics::default())?;
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= tenants {
                            return Ok(());
                        }
                        let id = tenant_id(i);
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
    let now = crate::shop::now_utc();
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
    }
    tx.commit()
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn start(data: &Path, args: &BenchArgs) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = Command::new(std::env::current_exe()?)
            .arg("serve")
            .env("TARN_DATA_DIR", data)
            .env("TARN_LISTEN", format!("127.0.0.1:{port}"))
            .env("TARN_ADMIN_TOKEN", TOKEN)
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
        crate::system::rss_bytes(self.child.id()).unwrap_or(0)
    }

    fn stop(mut self) -> anyhow::Result<()> {
        // SAFETY: kill(2) with a pid we own.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait()?;
        Ok(())
    }
}

async fn wait_up(client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
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
    pub messages: usize,
    pub concurrency: usize,
    pub max_open_tenants: usize,
    pub seconds: f64,
    pub messages_per_sec: f64,
    pub latency: Latency,
    pub errors: u64,
    pub statuses: HashMap<String, u64>,
    pub server_rss_mib: RssReport,
    pub open_tenants_end: f64,
    pub tenant_opens: f64,
    pub evictions: f64,
    pub raw_baseline_per_sec: f64,
    pub gateway_vs_raw: f64,
    pub consistency: String,
}

/// Server RSS in MiB.
#[derive(Debug, Serialize)]
pub struct RssReport {
    pub start: f64,
    pub peak: f64,
    pub end: f64,
}

fn mib(b: u64) -> f64 {
    (b as f64 / (1024.0 * 1024.0) * 10.0).round() / 10.0
}

/// Runs the harness and prints its report.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    if args.tenants == 0 || args.messages == 0 || args.concurrency == 0 {
        bail!("--tenants, --messages and --concurrency must be at least 1");
    }
    let dir = std::env::temp_dir().join(format!("tarn-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    let result = run_in(&data, args);
    if !args.keep {
        let _ = std::fs::remove_dir_all(&dir);
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
    let plan = Arc::new(plan(args.tenants, args.messages, 42));
    let server = Server::start(data, args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (mut report, server) = rt.block_on(drive(server, plan.clone(), args))?;
    server.stop()?;
    let raw = raw_baseline(data, &plan, args)?;
    report.raw_baseline_per_sec = raw;
    report.gateway_vs_raw = (report.messages_per_sec / raw * 100.0).round() / 100.0;
    report.consistency = consistency(data, args.tenants)?;
    Ok(report)
}

async fn drive(
    server: Server,
    plan: Arc<Vec<Msg>>,
    args: &BenchArgs,
) -> anyhow::Result<(Report, Server)> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    wait_up(&client, &server.base).await?;
    let rss_start = server.rss();
    let peak = Arc::new(AtomicU64::new(rss_start));
    let pid = server.child.id();
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                if let Some(r) = crate::system::rss_bytes(pid) {
                    peak.fetch_max(r, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs(s));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..args.concurrency {
        let (client, base, plan, next) = (
            client.clone(),
            server.base.clone(),
            plan.clone(),
            next.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut statuses: HashMap<String, u64> = HashMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= plan.len() || deadline.is_some_and(|d| Instant::now() > d) {
                    return (lat, errors, statuses);
                }
                let m = &plan[i];
                let (text, sender) = m.text();
                let t = Instant::now();
                let sent = client
                    .post(format!("{base}/v1/tenants/{}/messages", tenant_id(m.tenant)))
                    .bearer_auth(TOKEN)
                    .json(&serde_json::json!({"text": text, "sender": sender, "id": format!("b-{i}")}))
                    .send()
                    .await;
                let status = match sent {
                    Ok(r) if r.status().is_success() => r
                        .json::<serde_json::Value>()
                        .await
                        .ok()
                        .and_then(|v| v["status"].as_str().map(str::to_owned)),
                    _ => None,
                };
                lat.push(t.elapsed().as_micros() as u64);
                match status {
                    Some(s) => *statuses.entry(s).or_default() += 1,
                    None => errors += 1,
                }
            }
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
            messages: done,
            concurrency: args.concurrency,
            max_open_tenants: args.max_open_tenants,
            seconds: (seconds * 100.0).round() / 100.0,
            messages_per_sec: (done as f64 / seconds).round(),
            latency: latency(lat),
            errors,
            statuses,
            server_rss_mib: RssReport {
                start: mib(rss_start),
                peak: mib(peak.load(Ordering::Relaxed)),
                end: mib(server.rss()),
            },
            open_tenants_end: metric(&metrics, "open_tenants"),
            tenant_opens: metric(&metrics, "tenant_opens"),
            evictions: metric(&metrics, "tenant_evictions_capacity")
                + metric(&metrics, "tenant_evictions_idle"),
            raw_baseline_per_sec: 0.0,
            gateway_vs_raw: 0.0,
            consistency: String::new(),
        },
        server,
    ))
}

/// The same transactions with rusqlite directly: no HTTP, no parsing, no journal. Each
/// thread owns the tenants `i % threads` (one writer per file, as the server's pool has), and
/// keeps connections open up to its share of the same cap. Returns transactions per second.
fn raw_baseline(data: &Path, plan: &[Msg], args: &BenchArgs) -> anyhow::Result<f64> {
    let layout = Layout::new(data);
    let threads = args.concurrency.clamp(1, 8);
    let cap = (args.max_open_tenants / threads).max(1);
    let started = Instant::now();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|w| {
                let layout = &layout;
                s.spawn(move || -> anyhow::Result<()> {
                    let mut open: HashMap<usize, Connection> = HashMap::new();
                    for (i, m) in plan.iter().enumerate() {
                        if m.tenant % threads != w {
                            continue;
                        }
                        if !open.contains_key(&m.tenant) {
                            if open.len() >= cap {
                                let victim = *open.keys().next().expect("not empty");
                                open.remove(&victim);
                            }
                            let path: PathBuf = layout.tenant_db(&tenant_id(m.tenant));
                            open.insert(m.tenant, sqlite::open_existing(&path)?);
                        }
                        let conn = open.get_mut(&m.tenant).expect("just opened");
                        raw_one(conn, m, i)?;
                    }
                    Ok(())
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
    let key = format!("raw-{i}");
    let seen: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM message_log WHERE inbound_id = ?1)",
        [&key],
        |r| r.get(0),
    )?;
    if seen {
        return Ok(());
    }
    let now = crate::shop::now_utc();
    let p = PRODUCTS[m.product];
    match m.kind {
        Kind::Sale | Kind::Restock => {
            let (id, price): (i64, i64) = tx.query_row(
                "SELECT id, price FROM products WHERE name_key = ?1",
                [p],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let delta = if m.kind == Kind::Sale { -1000 } else { 5000 };
            if m.kind == Kind::Sale {
                tx.execute(
                    "INSERT INTO sales (staff_id, total, paid, at) VALUES (2, ?1, 1, ?2)",
                    params![price, now],
                )?;
                tx.execute(
                    "INSERT INTO sale_items (sale_id, product_id, qty, unit_price, total)
                     VALUES (last_insert_rowid(), ?1, 1000, ?2, ?2)",
                    params![id, price],
                )?;
            }
            tx.execute(
                "UPDATE products SET stock = stock + ?2 WHERE id = ?1",
                params![id, delta],
            )?;
            tx.execute(
                "INSERT INTO stock_movements (product_id, delta, cause, at) VALUES (?1, ?2, ?3, ?4)",
                params![id, delta, if m.kind == Kind::Sale { "sale" } else { "restock" }, now],
            )?;
        }
        Kind::Stock => {
            tx.query_row("SELECT stock FROM products WHERE name_key = ?1", [p], |r| {
                r.get::<_, i64>(0)
            })?;
        }
        Kind::Payment => {
            tx.execute(
                "UPDATE customers SET balance = balance - 100 WHERE name_key = 'ahmed'",
                [],
            )?;
            tx.execute(
                "INSERT INTO payments (customer_id, staff_id, amount, at) VALUES (1, 3, 100, ?1)",
                [&now],
            )?;
        }
        Kind::Report => {
            tx.query_row(
                "SELECT count(*), coalesce(sum(total), 0) FROM sales WHERE voided = 0 AND at >= ?1",
                [&now[..10]],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )?;
        }
    }
    tx.execute(
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
    println!(
        "tarn bench: {} tenants, {} messages, {} clients, pool cap {}\n\
         throughput      {:.0} messages/s over {:.2} s\n\
         latency         p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
         errors          {}\n\
         statuses        {:?}\n\
         server RSS      start {} MiB, peak {} MiB, end {} MiB\n\
         tenants         {} open at the end, {} opens, {} evictions\n\
         raw baseline    {:.0} transactions/s (rusqlite directly, same files and plan)\n\
         gateway / raw   {:.2}\n\
         consistency     {}",
        r.tenants,
        r.messages,
        r.concurrency,
        r.max_open_tenants,
        r.messages_per_sec,
        r.seconds,
        r.latency.p50_ms,
        r.latency.p95_ms,
        r.latency.p99_ms,
        r.latency.max_ms,
        r.errors,
        statuses,
        r.server_rss_mib.start,
        r.server_rss_mib.peak,
        r.server_rss_mib.end,
        r.open_tenants_end,
        r.tenant_opens,
        r.evictions,
        r.raw_baseline_per_sec,
        r.gateway_vs_raw,
        r.consistency
    );
}
