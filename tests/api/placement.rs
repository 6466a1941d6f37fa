//! Several machines behind a proxy: three real `tarn serve` processes sharing one bucket
//! (moto) through Litestream, and a stock nginx standing in for Fly's proxy (it re-sends a
//! request answered with `fly-replay: instance=M` to machine M, body and headers intact).
//! Clients talk only to nginx. Under load (HTTP messages and Telegram webhooks), tenants are
//! moved, a machine is drained and one is killed; every acknowledged message must be applied
//! exactly once, every reply sent and every minute's scheduled summary run once.

use crate::crash::Server;
use crate::helpers::*;
use crate::replica::{Bucket, bucket, replicated_server_with, sell, setup_tenant};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// nginx, installed from Debian's packages when the machine has none.
fn nginx() -> PathBuf {
    for p in ["/usr/sbin/nginx", "/usr/bin/nginx"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    let installed = Command::new("sh")
        .args([
            "-c",
            "(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light) >/dev/null 2>&1",
        ])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        installed,
        "nginx is not installed and apt-get could not install it"
    );
    "/usr/sbin/nginx".into()
}

/// The part of nginx's config that does what Fly's proxy does with `fly-replay`: a 307
/// carrying the header is intercepted and the request re-sent to the named instance, once.
/// The header and the first machine's address are read (`set`) before `proxy_pass`, which
/// starts a new upstream and with it forgets the first answer. As on Fly, the target sees
/// `fly-replay-src` naming the machine that asked for the replay and echoing its `state`.
fn replay_block(upstream: &str) -> String {
    format!(
        "        location / {{\n\
         \x20           proxy_pass http://{upstream};\n\
         \x20           proxy_intercept_errors on;\n\
         \x20           error_page 307 = @replay;\n\
         \x20       }}\n\
         \x20       location @replay {{\n\
         \x20           set $replay $upstream_http_fly_replay;\n\
         \x20           set $replay_from $upstream_addr;\n\
         \x20           proxy_pass http://$replay_addr;\n\
         \x20           proxy_set_header fly-replay-src \"instance=$replay_src;state=$replay_state\";\n\
         \x20       }}\n"
    )
}

/// nginx in front of `machines` (id, port): one port that balances over all of them, as
/// Fly's proxy does, and one per machine that sends there first. Stopped on drop.
struct Proxy {
    _child: Reaped,
    base: String,
    /// Base URL that reaches each machine first, by machine id.
    first: HashMap<String, String>,
    _dir: tempfile::TempDir,
}

async fn proxy(machines: &[(String, u16)]) -> Proxy {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    let mut map = String::new();
    let mut ids = String::new();
    let mut upstream = String::new();
    let mut servers = String::new();
    let mut first = HashMap::new();
    for (id, p) in machines {
        map.push_str(&format!("        {id} 127.0.0.1:{p};\n"));
        ids.push_str(&format!("        127.0.0.1:{p} {id};\n"));
        upstream.push_str(&format!("        server 127.0.0.1:{p};\n"));
        let own = free_port();
        first.insert(id.clone(), format!("http://127.0.0.1:{own}"));
        servers.push_str(&format!(
            "    server {{\n        listen 127.0.0.1:{own};\n{}    }}\n",
            replay_block(&format!("127.0.0.1:{p}"))
        ));
    }
    let conf = format!(
        "worker_processes 1;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections 2048; }}\n\
         http {{\n\
         \x20   access_log off;\n\
         \x20   client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n\
         \x20   fastcgi_temp_path {d}/fastcgi;\n    uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n\
         \x20   client_max_body_size 1m;\n\
         \x20   map $replay $replay_instance {{\n\
         \x20       \"~instance=([a-z0-9_-]+)\" $1;\n        default \"\";\n    }}\n\
         \x20   map $replay_instance $replay_addr {{\n{map}        default 127.0.0.1:9;\n    }}\n\
         \x20   map $replay $replay_state {{\n        \"~state=([^;]+)\" $1;\n        default \"\";\n    }}\n\
         \x20   map $replay_from $replay_src {{\n{ids}        default \"\";\n    }}\n\
         \x20   upstream fleet {{\n{upstream}    }}\n\
         \x20   server {{\n        listen 127.0.0.1:{port};\n{}    }}\n{servers}}}\n",
        replay_block("fleet")
    );
    let file = dir.path().join("nginx.conf");
    std::fs::write(&file, conf).unwrap();
    let child = Command::new(nginx())
        .arg("-c")
        .arg(&file)
        .arg("-p")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx starts");
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while reqwest::get(format!("{base}/healthz")).await.is_err() {
        assert!(Instant::now() < deadline, "nginx did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Proxy {
        _child: Reaped(child),
        base,
        first,
        _dir: dir,
    }
}

async fn machine_with(root: &Path, id: &str, bucket: &Bucket, extra: &[(&str, &str)]) -> Server {
    let dir = root.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let mut env = vec![("TARN_MACHINE_ID", id)];
    env.extend_from_slice(extra);
    replicated_server_with(&dir, bucket, &env).await
}

fn port_of(s: &Server) -> u16 {
    s.base.rsplit(':').next().unwrap().parse().unwrap()
}

const PACE: Duration = Duration::from_millis(150);

/// Acknowledged message ids by tenant, with when each was acknowledged.
type Acked = HashMap<String, Vec<(String, Instant)>>;

/// Sends `/sale 1 rice` messages to the tenants in turn until `stop`, each retried with its
/// own idempotency key until it is acknowledged; returns the acknowledged ids by tenant.
/// Paced (six senders, each resting `PACE` after an acknowledgement, so at most about 40
/// a second): with 300 tenants nearly every message is a replica upload of its own, and
/// the S3 stand-in (moto, one Python process on these two cores) tops out near 150 requests
/// a second.
async fn load(base: String, tenants: Vec<String>, stop: Arc<AtomicBool>) -> (Acked, usize) {
    let acked = Arc::new(Mutex::new(Acked::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let (acked, next, stop, base, tenants, retries) = (
            acked.clone(),
            next.clone(),
            stop.clone(),
            base.clone(),
            tenants.clone(),
            retries.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            while !stop.load(Ordering::SeqCst) {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let t = &tenants[i % tenants.len()];
                let id = format!("m-{i}");
                let deadline = Instant::now() + Duration::from_secs(120);
                loop {
                    let sent = sell(&client, &base, t, &id).send().await;
                    match sent {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) if r.status() == 503 || r.status() == 502 || r.status() == 504 => {}
                        Ok(r) => {
                            let status = r.status();
                            panic!("{t} {id}: {status} {}", r.text().await.unwrap_or_default())
                        }
                        Err(_) => {}
                    }
                    retries.fetch_add(1, Ordering::Relaxed);
                    assert!(Instant::now() < deadline, "{t} {id} never acknowledged");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                acked
                    .lock()
                    .unwrap()
                    .entry(t.clone())
                    .or_default()
                    .push((id, Instant::now()));
                tokio::time::sleep(PACE).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let acked = Arc::try_unwrap(acked).unwrap().into_inner().unwrap();
    (acked, retries.load(Ordering::Relaxed))
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .bearer_auth(ADMIN);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A GET with the operator token that must answer 200; its body.
async fn get_ok(url: String) -> Value {
    let (status, v) = call(reqwest::Method::GET, url, None).await;
    assert_eq!(status, 200, "{v}");
    v
}

/// The machine that owns `t`, as the directory says.
async fn owner(base: &str, t: &str) -> String {
    let v = get_ok(format!("{base}/v1/placement/tenants/{t}")).await;
    v["owner"]["machine"].as_str().unwrap().to_owned()
}

/// A tenant of the fleet that also talks through Telegram: its bot, and the chat of its
/// owner, who sells through the bot and gets a summary every minute.
struct TgShop {
    tenant: String,
    bot: u64,
    chat: i64,
    secret: String,
}

/// Binds a bot to `t` (through the proxy), has an owner join from a chat and sets a
/// summary for every minute.
async fn telegram_shop(base: &str, fake: &crate::telegram::FakeBot, t: &str, k: u64) -> TgShop {
    let bot = 7_100_000 + k;
    let chat = 9_000 + k as i64;
    let (status, v) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/tenants/{t}/channels/telegram"),
        Some(json!({"bot_token": format!("{bot}:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw")})),
    )
    .await;
    assert!(status < 300, "{status} {v}");
    let secret = fake
        .secret(bot)
        .expect("the bot was given a webhook secret");
    let (status, boss) = call(
        reqwest::Method::POST,
        format!("{base}/v1/tenants/{t}/staff"),
        Some(json!({"name": "Boss", "role": "owner"})),
    )
    .await;
    assert_eq!(status, 201, "{boss}");
    let shop = TgShop {
        tenant: t.to_owned(),
        bot,
        chat,
        secret,
    };
    let join = format!("/join {}", boss["join_code"].as_str().unwrap());
    deliver(
        &reqwest::Client::new(),
        base,
        &shop,
        &crate::telegram::text_update(1, chat, chat, &join),
    )
    .await;
    let (status, v) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/tenants/{t}/schedules"),
        Some(
            json!({"schedules": [{"kind": "daily_summary", "cron": "* * * * *",
            "timezone": "UTC", "recipients": ["owner"]}]}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    shop
}

/// Posts one update as Telegram does, again until it is answered 2xx.
async fn deliver(client: &reqwest::Client, base: &str, shop: &TgShop, update: &Value) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = client
            .post(format!("{base}/webhooks/telegram/{}", shop.tenant))
            .header("X-Telegram-Bot-Api-Secret-Token", &shop.secret)
            .json(update)
            .timeout(Duration::from_secs(20))
            .send()
            .await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{}: update never taken",
            shop.tenant
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The owner's sales through the bot, one update after another (as Telegram sends them),
/// until `stop`; when each was acknowledged.
async fn telegram_load(base: String, shop: Arc<TgShop>, stop: Arc<AtomicBool>) -> Vec<Instant> {
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    let mut update = 100;
    while !stop.load(Ordering::SeqCst) {
        update += 1;
        let u = crate::telegram::text_update(update, shop.chat, shop.chat, "/sale 1 rice");
        deliver(&client, &base, &shop, &u).await;
        acked.push(Instant::now());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    acked
}

fn median_ms(mut xs: Vec<Duration>) -> f64 {
    xs.sort();
    xs[xs.len() / 2].as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_machines_behind_a_proxy_move_and_drain_tenants_with_no_message_lost_or_doubled() {
    let _alone = crate::helpers::MACHINE.lock().await;
    let bucket = bucket("tarn-fleet").await;
    let root = tempfile::tempdir().unwrap();
    let ids = ["m1", "m2", "m3"];
    let fake = crate::telegram::fake_bot().await;
    let mut fleet = Vec::new();
    for id in ids {
        let env = [
            ("TARN_TELEGRAM_API_URL", fake.base.as_str()),
            ("TARN_PUBLIC_URL", "https://tarn.example"),
            ("TARN_SCHEDULER", "true"),
        ];
        fleet.push(machine_with(root.path(), id, &bucket, &env).await);
    }
    let machines: Vec<(String, u16)> = ids
        .iter()
        .zip(&fleet)
        .map(|(id, s)| (id.to_string(), port_of(s)))
        .collect();
    let nginx = proxy(&machines).await;
    let base = nginx.base.clone();

    // Tenants created through the proxy go to the machine with the fewest.
    let began = Instant::now();
    let phase = |what: &str| eprintln!("[{:>6.1} s] {what}", began.elapsed().as_secs_f64());
    let count: usize = 300;
    let tenants: Vec<String> = (0..count).map(|i| format!("f{i:03}")).collect();
    for t in &tenants {
        setup_tenant(&base, t).await;
    }
    phase("tenants created");
    let mut per_machine: HashMap<String, usize> = HashMap::new();
    for t in &tenants {
        *per_machine.entry(owner(&base, t).await).or_default() += 1;
    }
    assert_eq!(per_machine.len(), 3, "{per_machine:?}");
    assert!(
        per_machine.values().all(|n| *n >= count / 4),
        "{per_machine:?}"
    );
    phase("owners read");

    // A request for a tenant sent first to the wrong machine is replayed to its owner.
    let t = &tenants[0];
    let right = owner(&base, t).await;
    let wrong = ids.iter().find(|m| **m != right).unwrap().to_string();
    let client = reqwest::Client::new();
    let mut timing: HashMap<&str, Vec<Duration>> = HashMap::new();
    for round in 0..400 {
        let (label, via) = if round % 2 == 0 {
            ("right", &nginx.first[&right])
        } else {
            ("wrong", &nginx.first[&wrong])
        };
        let started = Instant::now();
        let r = client
            .get(format!("{via}/v1/tenants/{t}/products"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{label}");
        r.bytes().await.unwrap();
        timing.entry(label).or_default().push(started.elapsed());
    }
    println!(
        "replay overhead: GET products, median of 200 each, right machine {:.2} ms, wrong machine (one replay) {:.2} ms",
        median_ms(timing["right"].clone()),
        median_ms(timing["wrong"].clone())
    );
    // A direct request to a machine that does not own the tenant, without a proxy,
    // is told where to go.
    let direct = &fleet[ids.iter().position(|m| *m == wrong).unwrap()].base;
    let r = client
        .get(format!("{direct}/v1/tenants/{t}/products"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 307);
    assert!(
        r.headers()["fly-replay"]
            .to_str()
            .unwrap()
            .starts_with(&format!("instance={right};")),
        "{:?}",
        r.headers()
    );

    // Six of the tenants the moves below take (each seventh) also sell through Telegram,
    // and send their owner a summary every minute.
    let mut shops = Vec::new();
    for k in 0..6 {
        shops.push(Arc::new(
            telegram_shop(&base, &fake, &tenants[k * 7], k as u64).await,
        ));
    }
    phase("telegram shops set up");

    // Load through the proxy while tenants move.
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(load(base.clone(), tenants.clone(), stop.clone()));
    let tg_running: Vec<_> = shops
        .iter()
        .map(|shop| tokio::spawn(telegram_load(base.clone(), shop.clone(), stop.clone())))
        .collect();
    let mut moves = 0;
    let mut fenced = Vec::new();
    for i in 0..30 {
        let t = &tenants[(i * 7) % tenants.len()];
        let from = owner(&base, t).await;
        let to = ids[(ids.iter().position(|m| *m == from).unwrap() + 1 + i % 2) % 3];
        let (status, report) = call(
            reqwest::Method::POST,
            format!("{base}/v1/placement/tenants/{t}/move"),
            Some(json!({"to": to})),
        )
        .await;
        assert_eq!(status, 200, "move {t} {from} -> {to}: {report}");
        assert_eq!(report["to"], to);
        assert_eq!(owner(&base, t).await, to);
        fenced.push(report["fenced_ms"].as_u64().unwrap());
        moves += 1;
    }
    phase("moved");
    // Drain m3 with the command line, through the proxy.
    let drained = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["placement", "--via", &base, "drain", "m3"])
        .env("TARN_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&drained.stdout).into_owned()
        + &String::from_utf8_lossy(&drained.stderr);
    assert!(drained.status.success(), "{said}");
    phase("drained m3");
    // Nothing is left on m3, and nothing new goes there.
    for t in &tenants {
        assert_ne!(owner(&base, t).await, "m3", "{t}");
    }
    let (_, listed) = call(
        reqwest::Method::GET,
        format!("{}/v1/tenants", fleet[2].base),
        None,
    )
    .await;
    assert_eq!(listed["tenants"].as_array().unwrap().len(), 0, "{listed}");
    setup_tenant(&base, "late").await;
    assert_ne!(owner(&base, "late").await, "m3");
    let (status, _) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/placement/machines/m3/draining"),
        Some(json!({"draining": false})),
    )
    .await;
    assert_eq!(status, 200);

    // m2 dies (with its Litestream); its tenants are taken over from the bucket.
    let mut on_m2 = Vec::new();
    for t in &tenants {
        if owner(&base, t).await == "m2" {
            on_m2.push(t.clone());
        }
    }
    assert!(!on_m2.is_empty());
    crate::replica::kill_both(&mut fleet[1], &root.path().join("m2/data"));
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rescued = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(["placement", "--via", &base, "drain", "m2"])
        .env("TARN_ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let rescue_said = String::from_utf8_lossy(&rescued.stdout).into_owned()
        + &String::from_utf8_lossy(&rescued.stderr);
    assert!(rescued.status.success(), "{rescue_said}");
    phase("took over m2");
    let rescue_secs = killed.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let (acked, retries) = running.await.unwrap();
    let mut tg_acked = HashMap::new();
    for (shop, task) in shops.iter().zip(tg_running) {
        tg_acked.insert(shop.tenant.clone(), task.await.unwrap());
    }
    fenced.sort();
    println!(
        "{moves} moves under load: fenced median {} ms, max {} ms; {} messages acknowledged, {retries} retries; drain: {}; m2 killed, its {} tenants served again after {rescue_secs:.1} s: {}",
        fenced[fenced.len() / 2],
        fenced.last().unwrap(),
        acked.values().map(Vec::len).sum::<usize>(),
        said.lines().last().unwrap_or_default(),
        on_m2.len(),
        rescue_said.lines().last().unwrap_or_default()
    );
    for t in &on_m2 {
        assert_ne!(owner(&base, t).await, "m2", "{t}");
    }

    // m2 comes back: it lets go of the copies taken over while it was down.
    fleet[1].restart().await;
    phase("m2 restarted");
    let (_, listed) = call(
        reqwest::Method::GET,
        format!("{}/v1/tenants", fleet[1].base),
        None,
    )
    .await;
    assert_eq!(listed["tenants"].as_array().unwrap().len(), 0, "{listed}");

    // Every acknowledged sale applied exactly once: the stock fell by exactly their count.
    // On m2's tenants, those acknowledged in its last moments (Litestream ships each second)
    // may be lost, and nothing else; none is applied twice.
    let mut lost = 0;
    for t in &tenants {
        let mut times: Vec<Instant> = acked
            .get(t)
            .map_or(vec![], |a| a.iter().map(|x| x.1).collect());
        times.extend(tg_acked.get(t).into_iter().flatten());
        let n = times.len() as i64;
        let (status, products) = call(
            reqwest::Method::GET,
            format!("{base}/v1/tenants/{t}/products"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{products}");
        let sold = 100_000 - products["products"][0]["stock"].as_f64().unwrap() as i64;
        if on_m2.contains(t) {
            let last_moments = times
                .iter()
                .filter(|at| **at <= killed && killed.duration_since(**at) < Duration::from_secs(2))
                .count() as i64;
            assert!(
                sold <= n,
                "{t}: {sold} sold, {n} acknowledged: applied twice"
            );
            assert!(
                sold >= n - last_moments,
                "{t}: {sold} sold, {n} acknowledged, {last_moments} in the last 2 s before the kill"
            );
            lost += n - sold;
        } else {
            assert_eq!(sold, n, "{t}: {n} sales acknowledged");
        }
    }
    phase("checked");
    telegram_checks(&base, &fake, &shops, &tg_acked, &on_m2, killed).await;
    phase("telegram replies and summaries checked");
    println!("m2's kill lost {lost} acknowledged messages (all within its last 2 s)");
}

/// The run ledger of `t`'s minute summaries, newest first.
async fn summary_runs(base: &str, t: &str) -> Vec<Value> {
    let v = get_ok(format!(
        "{base}/v1/tenants/{t}/runs?kind=daily_summary&limit=100"
    ))
    .await;
    v["runs"].as_array().unwrap().clone()
}

/// Every Telegram sale answered once, and every minute's summary run once and sent once:
/// the run ledger of each shop has one row per minute from its first to its last, each
/// done, and the owner got exactly one summary per row. Shops taken over from the killed
/// machine may have lost their last 2 s (as their sales may), and nothing more.
async fn telegram_checks(
    base: &str,
    fake: &crate::telegram::FakeBot,
    shops: &[Arc<TgShop>],
    tg_acked: &HashMap<String, Vec<Instant>>,
    on_m2: &[String],
    killed: Instant,
) {
    // Read in the middle of a minute (every run due and sent, none starting), at least one
    // minute after the load stopped: each shop has run a summary since.
    let into_minute = chrono::Utc::now().timestamp_millis().rem_euclid(60_000) as u64;
    let wait_until = Instant::now() + Duration::from_millis(90_000 - into_minute);
    let mut runs = HashMap::new();
    for shop in shops {
        runs.insert(shop.tenant.clone(), summary_runs(base, &shop.tenant).await);
    }
    tokio::time::sleep_until(wait_until.into()).await;
    let mut slots_total = 0;
    let mut resent = 0;
    for shop in shops {
        let t = &shop.tenant;
        let list = summary_runs(base, t).await;
        assert!(
            list.len() > runs[t].len(),
            "{t}: no summary ran in the last minute: {list:?}"
        );
        let mut slots: Vec<chrono::DateTime<chrono::Utc>> = list
            .iter()
            .filter(|r| r["status"] != "running")
            .map(|r| {
                assert_eq!(r["status"], "done", "{t}: {r}");
                r["slot"].as_str().unwrap().parse().unwrap()
            })
            .collect();
        slots.sort();
        for pair in slots.windows(2) {
            assert_eq!(
                (pair[1] - pair[0]).num_seconds(),
                60,
                "{t}: a minute's summary is missing or doubled: {slots:?}"
            );
        }
        let sent: Vec<String> = fake
            .sent()
            .into_iter()
            .filter(|m| m.bot == shop.bot && m.chat == shop.chat)
            .map(|m| m.text)
            .collect();
        let summaries = sent
            .iter()
            .filter(|m| m.starts_with("Daily summary"))
            .count();
        let replies = sent.len() - summaries;
        let acked = tg_acked[t].len() + 1; // and the /join
        slots_total += slots.len();
        if on_m2.contains(t) {
            // A run or reply sent in the killed machine's last 2 s can be sent again.
            resent += summaries.saturating_sub(slots.len()) + replies.saturating_sub(acked);
            assert!(
                summaries >= slots.len(),
                "{t}: {summaries} summaries, {} slots",
                slots.len()
            );
            let last_moments = tg_acked[t]
                .iter()
                .filter(|at| **at <= killed && killed.duration_since(**at) < Duration::from_secs(2))
                .count();
            assert!(
                replies + last_moments >= acked,
                "{t}: {replies} replies, {acked} updates, {last_moments} in the last 2 s"
            );
        } else {
            assert_eq!(summaries, slots.len(), "{t}: {sent:?}");
            assert!(
                replies >= acked,
                "{t}: {replies} replies to {acked} updates"
            );
            resent += replies - acked;
        }
    }
    println!(
        "telegram: {} shops, {} updates acknowledged, {slots_total} minute summaries run once each; {resent} replies sent twice",
        shops.len(),
        tg_acked.values().map(Vec::len).sum::<usize>()
    );
}

/// A Graph API stand-in that knows every number and takes every message.
async fn any_number_graph() -> String {
    async fn info(axum::extract::Path(phone): axum::extract::Path<String>) -> axum::Json<Value> {
        axum::Json(json!({"display_phone_number": phone, "verified_name": "Shop", "id": phone}))
    }
    async fn send(axum::Json(body): axum::Json<Value>) -> axum::Json<Value> {
        axum::Json(
            json!({"messaging_product": "whatsapp", "contacts": [{"input": body["to"], "wa_id": body["to"]}], "messages": [{"id": format!("wamid.OUT{}", rand_id())}]}),
        )
    }
    fn rand_id() -> u64 {
        static N: AtomicUsize = AtomicUsize::new(0);
        N.fetch_add(1, Ordering::SeqCst) as u64
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v21.0", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/v21.0/{phone}", axum::routing::get(info))
        .route("/v21.0/{phone}/messages", axum::routing::post(send));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

/// A WhatsApp delivery with one text message per (phone_number_id, wamid).
fn wa_body(parts: &[(&str, &str)]) -> String {
    let entries: Vec<Value> = parts
        .iter()
        .map(|(phone, wamid)| {
            json!({"id": "102290129340398", "changes": [{"field": "messages", "value": {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": phone, "phone_number_id": phone},
                "contacts": [{"profile": {"name": "X"}, "wa_id": "447700900123"}],
                "messages": [{"from": "447700900123", "id": wamid, "timestamp": "1763800300", "type": "text", "text": {"body": "hello"}}]}}]})
        })
        .collect();
    json!({"object": "whatsapp_business_account", "entry": entries}).to_string()
}

fn inbox_ids(data: &Path, t: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(crate::helpers::tenant_file(data, t)).unwrap();
    let mut stmt = conn
        .prepare("SELECT update_key FROM inbox ORDER BY update_key")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn whatsapp_deliveries_reach_the_machine_owning_each_number_and_are_split_across_machines() {
    let _alone = crate::helpers::MACHINE.lock().await;
    let bucket = bucket("tarn-wa-fleet").await;
    let root = tempfile::tempdir().unwrap();
    let graph = any_number_graph().await;
    let env = [
        ("TARN_WHATSAPP_API_URL", graph.as_str()),
        ("TARN_WHATSAPP_APP_SECRET", crate::whatsapp::APP_SECRET),
        ("TARN_PUBLIC_URL", "https://tarn.example"),
    ];
    let m1 = machine_with(root.path(), "m1", &bucket, &env).await;
    let m2 = machine_with(root.path(), "m2", &bucket, &env).await;
    let machines = vec![
        ("m1".to_string(), port_of(&m1)),
        ("m2".to_string(), port_of(&m2)),
    ];
    let nginx = proxy(&machines).await;
    let base = nginx.base.clone();
    // wa1 on m1, wa2 on m2, each with its own number.
    for (t, on, phone) in [("wa1", "m1", "1001"), ("wa2", "m2", "1002")] {
        setup_tenant(&base, t).await;
        if owner(&base, t).await != on {
            let (status, r) = call(
                reqwest::Method::POST,
                format!("{base}/v1/placement/tenants/{t}/move"),
                Some(json!({"to": on})),
            )
            .await;
            assert_eq!(status, 200, "{r}");
        }
        let (status, r) = call(
            reqwest::Method::PUT,
            format!("{base}/v1/tenants/{t}/channels/whatsapp"),
            Some(json!({"phone_number_id": phone, "access_token": "EAAG-good"})),
        )
        .await;
        assert_eq!(status, 200, "{r}");
    }
    // A number is one tenant's, across machines.
    let (status, r) = call(
        reqwest::Method::PUT,
        format!("{base}/v1/tenants/wa2/channels/whatsapp"),
        Some(json!({"phone_number_id": "1001", "access_token": "EAAG-good"})),
    )
    .await;
    assert_eq!(status, 409, "{r}");
    let deliver = |via: String, body: String| async move {
        reqwest::Client::new()
            .post(format!("{via}/webhooks/whatsapp"))
            .header("content-type", "application/json")
            .header(
                "X-Hub-Signature-256",
                crate::whatsapp::sign(body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    // Only m1's number, received by m2: replayed to m1 byte for byte (m1 checks the
    // signature again).
    let only_a = wa_body(&[("1001", "wamid.A1")]);
    assert_eq!(deliver(nginx.first["m2"].clone(), only_a).await, 200);
    // Both numbers in one delivery, received by m1: m2's part forwarded, acknowledged once
    // both are stored; sent twice, each message is kept once.
    let both = wa_body(&[("1001", "wamid.A2"), ("1002", "wamid.B1")]);
    for _ in 0..2 {
        assert_eq!(deliver(nginx.first["m1"].clone(), both.clone()).await, 200);
    }
    let both_again = wa_body(&[("1002", "wamid.B2"), ("1001", "wamid.A3")]);
    assert_eq!(deliver(nginx.first["m2"].clone(), both_again).await, 200);
    // A bad signature is refused wherever it lands.
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/whatsapp", nginx.first["m2"]))
        .header("X-Hub-Signature-256", "sha256=00")
        .body(wa_body(&[("1001", "wamid.X")]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        inbox_ids(&root.path().join("m1/data"), "wa1"),
        ["wa:wamid.A1", "wa:wamid.A2", "wa:wamid.A3"]
    );
    assert_eq!(
        inbox_ids(&root.path().join("m2/data"), "wa2"),
        ["wa:wamid.B1", "wa:wamid.B2"]
    );
}
