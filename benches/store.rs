//! Tenant store benchmark: cold-open latency, RSS per open tenant, and the RSS of a server
//! whose data dir holds many tenants with none open. Prints numbers; asserts nothing.
//!
//! `cargo bench --bench store` (sizes: TARN_BENCH_TENANTS, default 100000; TARN_BENCH_OPENS,
//! default 10000). The populated data dir is kept in `target/bench-store/` and reused.
//! Each phase runs in a fresh child process so one phase's allocations do not blur the next.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tarn::config::StoreArgs;
use tarn::store::{NewTenant, Store};
use tarn::system::{rss_bytes, self_rss_bytes};
use tarn::tenant::TenantId;
use tarn::tenant::pool::PoolMetrics;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn store_args(dir: &Path, max_open: usize) -> StoreArgs {
    StoreArgs {
        data_dir: dir.to_path_buf(),
        max_open_tenants: max_open,
        tenant_idle_secs: 3600,
        tenant_quiet_secs: 0,
        tenant_warm: 0,
        tenant_threads: 0,
        tenant_connections: 1,
        statement_timeout_ms: 5000,
        sync_capture: true,
    }
}

fn open_store(dir: &Path, max_open: usize) -> Store {
    tarn::app::open_store(&store_args(dir, max_open), PoolMetrics::default()).unwrap()
}

fn id(i: usize) -> TenantId {
    TenantId::parse(&format!("t{i:07}")).unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

/// Creates tenants 0..n in `dir` (skipping those already there), with 4 threads.
fn populate(dir: &Path, n: usize) {
    let store = open_store(dir, 16);
    let have = store.all_tenant_ids().unwrap().len();
    if have >= n {
        return;
    }
    let started = Instant::now();
    let next = AtomicUsize::new(have);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    store
                        .create_tenant(NewTenant {
                            id: id(i),
                            name: format!("Shop {i}"),
                            currency: None,
                            timezone: None,
                        })
                        .unwrap();
                    if i.is_multiple_of(10_000) {
                        eprintln!("  populate: {i}/{n}");
                    }
                }
            });
        }
    });
    eprintln!(
        "  populated {} tenants in {:.1} s",
        n - have,
        started.elapsed().as_secs_f64()
    );
}

/// Child phase: opens `opens` distinct cold tenants one after another, cap `cap`.
fn phase_open_latency(dir: &Path, opens: usize, cap: usize) {
    let store = open_store(dir, cap);
    let pool = store.pool();
    let mut fresh = Vec::new();
    let mut evicting = Vec::new();
    for i in 0..opens {
        let t = id(i);
        let started = Instant::now();
        let handle = pool.acquire(&t).unwrap();
        let took = started.elapsed();
        drop(handle);
        if i < cap { &mut fresh } else { &mut evicting }.push(took);
    }
    let report = |name: &str, v: &mut Vec<Duration>| {
        if v.is_empty() {
            return;
        }
        v.sort();
        println!(
            "| cold open, {name} | {} | {:.0} µs | {:.0} µs | {:.0} µs |",
            v.len(),
            percentile(v, 0.5).as_secs_f64() * 1e6,
            percentile(v, 0.99).as_secs_f64() * 1e6,
            v.last().unwrap().as_secs_f64() * 1e6,
        );
    };
    let mut all: Vec<Duration> = fresh.iter().chain(&evicting).copied().collect();
    report("below the cap", &mut fresh);
    report("at the cap (each evicts one)", &mut evicting);
    report("all", &mut all);
}

/// Child phase: RSS growth per open tenant (one idle connection held each).
fn phase_rss(dir: &Path, steps: &[usize]) {
    let store = open_store(dir, *steps.last().unwrap() + 1);
    let pool = store.pool();
    // Warm up allocator and SQLite globals on a tenant outside the measured set.
    drop(pool.acquire(&id(steps.last().unwrap() + 1)).unwrap());
    let base = self_rss_bytes().unwrap();
    let mut opened = 0;
    for &target in steps {
        while opened < target {
            drop(pool.acquire(&id(opened)).unwrap());
            opened += 1;
        }
        let rss = self_rss_bytes().unwrap();
        println!(
            "| RSS per open tenant at {target} open | {:.1} KiB (process {:.1} MiB, base {:.1} MiB) |",
            kib(rss - base) / target as f64,
            kib(rss) / 1024.0,
            kib(base) / 1024.0,
        );
    }
    assert_eq!(pool.stats().open, opened + 1);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer bench\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// RSS of `tarn serve` on `dir` after start-up and a few requests that open no tenant.
fn server_rss(dir: &Path) -> u64 {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .arg("serve")
        .env("TARN_DATA_DIR", dir)
        .env("TARN_LISTEN", format!("127.0.0.1:{port}"))
        .env("TARN_ADMIN_TOKEN", "bench")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/healthz").is_none() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    for path in ["/readyz", "/v1/tenants?limit=1000", "/metrics", "/healthz"] {
        assert!(
            http_get(port, path).unwrap().starts_with("HTTP/1.1 200"),
            "{path}"
        );
    }
    std::thread::sleep(Duration::from_millis(200));
    let rss = rss_bytes(child.id()).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    rss
}

fn run_child(phase: &str, dir: &Path, extra: &[String]) {
    let status = Command::new(std::env::current_exe().unwrap())
        .env("TARN_BENCH_PHASE", phase)
        .env("TARN_BENCH_DIR", dir)
        .env("TARN_BENCH_ARGS", extra.join(","))
        .status()
        .unwrap();
    assert!(status.success(), "phase {phase} failed");
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Ok(phase) = std::env::var("TARN_BENCH_PHASE") {
        let dir = PathBuf::from(std::env::var("TARN_BENCH_DIR").unwrap());
        let args: Vec<usize> = std::env::var("TARN_BENCH_ARGS")
            .unwrap()
            .split(',')
            .map(|s| s.parse().unwrap())
            .collect();
        match phase.as_str() {
            "open" => phase_open_latency(&dir, args[0], args[1]),
            "rss" => phase_rss(&dir, &args),
            _ => unreachable!(),
        }
        return;
    }

    let tenants = env_usize("TARN_BENCH_TENANTS", 100_000);
    let opens = env_usize("TARN_BENCH_OPENS", 10_000).min(tenants);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-store");
    let big = root.join(format!("data-{tenants}"));
    let small = root.join("data-10");
    eprintln!("populating {} and {}", big.display(), small.display());
    populate(&big, tenants);
    populate(&small, 10);

    println!(
        "\ntarn store benchmark — SQLite {}, {} cores",
        rusqlite::version(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("\n| measure | n | p50 | p99 | max |\n|---|---|---|---|---|");
    run_child("open", &big, &[opens.to_string(), (opens / 2).to_string()]);
    println!("\n| measure | value |\n|---|---|");
    let steps: Vec<String> = [1_000, 5_000]
        .iter()
        .filter(|&&s| s < tenants)
        .map(|s| s.to_string())
        .collect();
    run_child("rss", &big, &steps);
    let rss_big = server_rss(&big);
    let rss_small = server_rss(&small);
    println!(
        "| server RSS, {tenants} tenants on disk, none open | {:.1} MiB |",
        kib(rss_big) / 1024.0
    );
    println!(
        "| server RSS, 10 tenants on disk, none open | {:.1} MiB |",
        kib(rss_small) / 1024.0
    );
    println!(
        "| difference | {:+.1} MiB |",
        (kib(rss_big) - kib(rss_small)) / 1024.0
    );
}
