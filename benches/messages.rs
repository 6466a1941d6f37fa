//! End-to-end throughput of `POST /v1/tenants/{t}/messages` (slash grammar, one sale with an
//! idempotency key per message) on one tenant and spread over 1,000 tenants. Prints numbers.
//!
//! `cargo bench --bench messages` (TARN_BENCH_MESSAGES, default 5000 per run;
//! TARN_BENCH_CONCURRENCY, default 32). Server and client share this machine's cores.

use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tarn::app::App;
use tarn::config::{Secret, ServeConfig};

const TOKEN: &str = "bench";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn create(client: &reqwest::Client, base: &str, t: &str) {
    let r = client
        .post(format!("{base}/v1/tenants"))
        .bearer_auth(TOKEN)
        .json(&json!({"id": t, "name": t}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = client
        .post(format!("{base}/v1/tenants/{t}/products"))
        .bearer_auth(TOKEN)
        .json(&json!({"name": "Rice", "price": 2.5, "stock": 1_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

async fn run(
    client: &reqwest::Client,
    base: &str,
    tenants: &[String],
    messages: usize,
    concurrency: usize,
    label: &str,
) {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, base, tenants, next) = (
            client.clone(),
            base.to_owned(),
            tenants.to_vec(),
            next.clone(),
        );
        let label = label.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut rng = (w as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= messages {
                    break lat;
                }
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let t = &tenants[(rng % tenants.len() as u64) as usize];
                let sent = Instant::now();
                let r = client
                    .post(format!("{base}/v1/tenants/{t}/messages"))
                    .bearer_auth(TOKEN)
                    .json(&json!({"text": "/sale 1 rice", "sender": "owner", "id": format!("{label}-{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["status"], "applied", "{body}");
                lat.push(sent.elapsed());
            }
        }));
    }
    let mut all: Vec<Duration> = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let secs = started.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    println!(
        "| {label} | {} | {concurrency} | {:.0} msg/s | {:.2} ms | {:.2} ms | {:.2} ms |",
        all.len(),
        all.len() as f64 / secs,
        pct(0.5),
        pct(0.99),
        all.last().unwrap().as_secs_f64() * 1e3
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let messages = env_usize("TARN_BENCH_MESSAGES", 5000);
    let concurrency = env_usize("TARN_BENCH_CONCURRENCY", 32);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::with_data_dir(dir.path());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_token = Some(Secret::new(TOKEN));
        let app = App::build(config).await.unwrap();
        let base = format!("http://{}", app.local_addr());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::builder().pool_max_idle_per_host(concurrency).build().unwrap();
        let one = vec!["one".to_string()];
        create(&client, &base, "one").await;
        let many: Vec<String> = (0..1000).map(|i| format!("t{i:04}")).collect();
        for chunk in many.chunks(50) {
            futures::future::join_all(chunk.iter().map(|t| create(&client, &base, t))).await;
        }
        println!("\n/messages throughput — release build, server and client in one process, 2 cores");
        println!("\n| run | messages | clients | throughput | p50 | p99 | max |\n|---|---|---|---|---|---|---|");
        run(&client, &base, &one, messages, concurrency, "one tenant").await;
        run(&client, &base, &many, messages, concurrency, "1,000 tenants (uniform)").await;
        let _ = tx.send(());
        server.await.unwrap().unwrap();
    });
}
