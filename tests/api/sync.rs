//! Sync for the owner's app against a real SQLite client nobody here wrote: apsw (SQLite's
//! own changeset apply, installed from PyPI into `target/` on first use) drives
//! `tests/sync/conformance.py`; and the feed's edges over HTTP: 409s, 403, long-poll wake-up.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The apsw release the conformance client is pinned to (its wheels carry the session
/// extension).
const APSW: &str = "3.54.1.0";

/// A Python with apsw: a venv under the target dir, made on first use.
fn apsw_python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("apsw-{APSW}"));
            let python = venv.join("bin/python");
            let works = |p: &Path| {
                std::process::Command::new(p)
                    .args(["-c", "import apsw"])
                    .status()
                    .is_ok_and(|s| s.success())
            };
            if !works(&python) {
                let ok = std::process::Command::new("python3")
                    .args(["-m", "venv"])
                    .arg(&venv)
                    .status()
                    .is_ok_and(|s| s.success())
                    && std::process::Command::new(venv.join("bin/pip"))
                        .args(["install", "--quiet", &format!("apsw=={APSW}")])
                        .status()
                        .is_ok_and(|s| s.success());
                assert!(ok, "could not install apsw {APSW} into {}", venv.display());
            }
            python
        })
        .clone()
}

async fn conformance(app: &TestApp, tenant: &str, seed: u64, steps: u32) -> Value {
    let python = apsw_python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sync/conformance.py");
    let db = tenant_file(&app.data_dir(), tenant);
    let (base, tenant) = (app.base.clone(), tenant.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .args(["--base", &base, "--tenant", &tenant, "--token", ADMIN])
            .arg("--server-db")
            .arg(db)
            .args(["--seed", &seed.to_string(), "--steps", &steps.to_string()])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "seed {seed}:\n{stderr}\n{stdout}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apsw_clients_converge_strict_and_replace_through_offline_replays() {
    let app = spawn_app().await;
    app.shop("s").await;
    for seed in [1, 2] {
        let run = conformance(&app, "s", seed, 300).await;
        println!("{run}");
        assert!(run["checks"].as_u64().unwrap() >= 20, "{run}");
        assert!(run["server_seq"].as_u64().unwrap() >= 100, "{run}");
        assert!(run["replayed"].as_u64().unwrap() > 0, "{run}");
        let answers = run["answers"].as_object().unwrap();
        let applied = |kind: &str| {
            answers
                .get(&format!("{kind}:applied"))
                .and_then(Value::as_u64)
                .unwrap_or(0)
        };
        for kind in [
            "record_sale",
            "restock",
            "record_payment",
            "record_expense",
            "create_order",
            "set_price",
            "stock_count",
            "undo",
        ] {
            assert!(applied(kind) > 0, "no {kind} applied: {run}");
        }
        assert!(answers.keys().any(|k| k.ends_with(":duplicate")), "{run}");
        let devices = run["devices"].as_array().unwrap();
        assert!(devices.iter().any(|d| d["policy"] == "replace"));
        assert!(
            devices
                .iter()
                .filter(|d| d["policy"] == "strict")
                .all(|d| d["conflicts"] == 0)
        );
    }
}

async fn get(app: &TestApp, path: &str, token: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.base))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// The feed's position, from a snapshot's headers.
async fn position(app: &TestApp, t: &str) -> (String, i64) {
    let r = get(app, &format!("/v1/tenants/{t}/sync/snapshot"), ADMIN).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers();
    (
        h["tarn-sync-epoch"].to_str().unwrap().to_owned(),
        h["tarn-sync-seq"].to_str().unwrap().parse().unwrap(),
    )
}

async fn changes(app: &TestApp, t: &str, epoch: &str, after: i64) -> reqwest::Response {
    get(
        app,
        &format!("/v1/tenants/{t}/sync/changes?epoch={epoch}&after={after}"),
        ADMIN,
    )
    .await
}

async fn resync_code(r: reqwest::Response) -> String {
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    body["error"]["code"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cursor_the_feed_cannot_serve_whole_is_a_409_and_bad_input_a_400() {
    let app = spawn_app().await;
    app.shop("s").await;
    let (epoch, seq) = position(&app, "s").await;
    assert_eq!(changes(&app, "s", &epoch, seq).await.status(), 204);
    let r = app.say("s", "Sam", "/sale 2 rice").await;
    assert_eq!(r.body["status"], "applied");
    let checkpoint = r.body["sync_seq"].as_i64().unwrap();
    assert_eq!(checkpoint, seq + 1);
    let pulled = changes(&app, "s", &epoch, seq).await;
    assert_eq!(pulled.status(), 200);
    assert_eq!(
        pulled.headers()["tarn-sync-seq"],
        checkpoint.to_string().as_str()
    );
    assert!(!pulled.bytes().await.unwrap().is_empty());
    // A replay of the same id is a duplicate with the same checkpoint, and no new change.
    let body =
        json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 1}], "id": "q1"});
    let first = app.act("s", body.clone()).await;
    let again = app.act("s", body).await;
    assert_eq!(again.body["status"], "duplicate");
    assert_eq!(again.body["sync_seq"], first.body["sync_seq"]);
    let (_, now) = position(&app, "s").await;
    assert_eq!(now, checkpoint + 1);

    for (query, code) in [
        (format!("epoch=other&after={seq}"), "resync_required"),
        (
            format!("epoch={epoch}&after={}", now + 5),
            "resync_required",
        ),
        (
            format!("epoch={epoch}&after=0&schema_version=1"),
            "resync_required",
        ),
    ] {
        let r = get(&app, &format!("/v1/tenants/s/sync/changes?{query}"), ADMIN).await;
        assert_eq!(resync_code(r).await, code, "{query}");
    }
    for query in [
        "after=0",
        "epoch=x&after=-1",
        "epoch=x&after=0&wait=61",
        "epoch=x&after=a",
    ] {
        let r = get(&app, &format!("/v1/tenants/s/sync/changes?{query}"), ADMIN).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{query}");
    }

    // The operator's reset: a new epoch; the old cursor must start again.
    let r = app.post("/v1/tenants/s/sync/reset", json!({})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_ne!(r.body["epoch"], epoch.as_str());
    assert_eq!(
        resync_code(changes(&app, "s", &epoch, now).await).await,
        "resync_required"
    );

    // Delete and restore from the trash: another history, another epoch.
    let (epoch, now) = position(&app, "s").await;
    assert!(app.delete_tenant("s", ADMIN).await.status.is_success());
    assert!(app.restore_tenant("s").await.status.is_success());
    assert_eq!(
        resync_code(changes(&app, "s", &epoch, now).await).await,
        "resync_required"
    );
    let (fresh, _) = position(&app, "s").await;
    assert_ne!(fresh, epoch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_cursor_is_a_409_never_a_silent_gap() {
    let app = spawn_app().await;
    app.shop("s").await;
    let (epoch, start) = position(&app, "s").await;
    for _ in 0..5 {
        app.say("s", "Sam", "/sale 1 rice").await;
    }
    let dir = app.stop().await;
    let file = tenant_file(&dir.path().join("data"), "s");
    let conn = rusqlite::Connection::open(&file).unwrap();
    // Keep the newest two rows only, then none (all older than now).
    let kept: i64 = conn
        .query_row("SELECT count(*) FROM sync_log", [], |r| r.get(0))
        .unwrap();
    assert!(kept >= 5);
    assert_eq!(
        tarn::sync::prune(&conn, 0, i64::MAX, 2).unwrap() as i64,
        kept - 2
    );
    assert_eq!(tarn::sync::prune(&conn, i64::MAX / 2, 0, 100).unwrap(), 2);
    drop(conn);
    let app = spawn_app_in(dir, |_| {}).await;
    assert_eq!(
        resync_code(changes(&app, "s", &epoch, start).await).await,
        "resync_required"
    );
    let (same, seq) = position(&app, "s").await;
    assert_eq!((same.as_str(), seq), (epoch.as_str(), start + 5));
    assert_eq!(changes(&app, "s", &epoch, seq).await.status(), 204);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_wakes_within_100_ms_of_a_commit_and_keys_stay_in_their_shop() {
    let app = spawn_app().await;
    app.shop("s").await;
    let (epoch, seq) = position(&app, "s").await;
    let url = format!(
        "{}/v1/tenants/s/sync/changes?epoch={epoch}&after={seq}&wait=20",
        app.base
    );
    let poll = tokio::spawn({
        let client = app.client.clone();
        async move {
            let r = client.get(url).bearer_auth(ADMIN).send().await.unwrap();
            (Instant::now(), r.status(), r.headers().clone())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !poll.is_finished(),
        "the long-poll waits while nothing changes"
    );
    let r = app.say("s", "Sam", "/sale 1 rice").await;
    let committed = Instant::now();
    assert_eq!(r.body["status"], "applied");
    let (woke, status, headers) = poll.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["tarn-sync-seq"], (seq + 1).to_string().as_str());
    let late = woke.saturating_duration_since(committed);
    assert!(
        late < Duration::from_millis(100),
        "woke {late:?} after the commit"
    );

    // Another shop's key is refused on this shop's feed.
    let key = app.new_tenant("other").await;
    for path in [
        "sync/snapshot",
        &format!("sync/changes?epoch={epoch}&after=0"),
    ] {
        let r = get(&app, &format!("/v1/tenants/s/{path}"), &key).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let r = app
        .client
        .post(format!("{}/v1/tenants/other/sync/reset", app.base))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "reset is the operator's");
    let r = get(&app, "/v1/tenants/other/sync/snapshot", &key).await;
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a shop's own key reads its feed"
    );
}

/// Reads SSE events (`(event, id, data)`) from a streaming answer until `n` have come.
async fn read_events(r: &mut reqwest::Response, n: usize) -> Vec<(String, i64, Value)> {
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(10), r.chunk())
            .await
            .unwrap_or_else(|_| panic!("an event within 10 s; so far {text:?}"))
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim().to_owned())
            };
            if let (Some(event), Some(id), Some(data)) =
                (field("event"), field("id"), field("data"))
            {
                events.push((
                    event,
                    id.parse().unwrap(),
                    serde_json::from_str(&data).unwrap(),
                ));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_event_stream_resumes_after_a_reconnect_without_missing_an_event() {
    let app = spawn_app().await;
    app.shop("s").await;
    let (_, start) = position(&app, "s").await;
    let mut stream = get(&app, "/v1/tenants/s/events", ADMIN).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    app.say("s", "Sam", "/sale 1 rice").await;
    let r = app.say("s", "Mary", "/restock sugar 5").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let seen = read_events(&mut stream, 2).await;
    assert_eq!(
        seen.iter()
            .map(|(e, id, d)| (e.as_str(), *id, d["what"].as_str().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            ("change", start + 1, "record_sale"),
            ("change", start + 2, "restock")
        ]
    );
    // Disconnected: what happens meanwhile comes on the next connection.
    drop(stream);
    app.say("s", "Sam", "/sale 2 rice").await;
    let r = app
        .post("/v1/tenants/s/products", json!({"name": "Tea", "price": 2}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.say("s", "Mary", "/expense 3 transport").await;
    let mut stream = app
        .client
        .get(format!("{}/v1/tenants/s/events", app.base))
        .bearer_auth(ADMIN)
        .header("Last-Event-ID", (start + 2).to_string())
        .send()
        .await
        .unwrap();
    let seen = read_events(&mut stream, 3).await;
    assert_eq!(
        seen.iter()
            .map(|(_, id, d)| (*id, d["what"].as_str().unwrap().to_owned()))
            .collect::<Vec<_>>(),
        vec![
            (start + 3, "record_sale".to_owned()),
            (start + 4, "product".to_owned()),
            (start + 5, "record_expense".to_owned())
        ]
    );
    // A reset while connected: a resync event, then changes of the new epoch.
    // (The sale waits for the resync: a stream that first reads after both would rightly
    // fold the sale into the resync, whose position the client re-reads its state at.)
    let r = app.post("/v1/tenants/s/sync/reset", json!({})).await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = read_events(&mut stream, 1).await;
    assert_eq!(seen[0].0, "resync");
    app.say("s", "Sam", "/sale 1 rice").await;
    let seen = read_events(&mut stream, 1).await;
    assert_eq!((seen[0].0.as_str(), seen[0].1), ("change", start + 6));
    assert_eq!(seen[0].2["epoch"], r.body["epoch"]);

    let key = app.new_tenant("other").await;
    let r = get(&app, "/v1/tenants/s/events", &key).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = app
        .client
        .get(format!("{}/v1/tenants/s/events", app.base))
        .bearer_auth(ADMIN)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_keys_are_per_shop_revocable_at_once_and_managers_cannot_manage() {
    let app = spawn_app().await;
    app.shop("s").await;
    let other_key = app.new_tenant("other").await;
    let r = app
        .post("/v1/tenants/s/devices", json!({"name": "Amina's phone"}))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["role"], "owner");
    let phone = r.body["key"].as_str().unwrap().to_owned();
    let phone_id = r.body["id"].as_i64().unwrap();
    let r = app
        .post(
            "/v1/tenants/s/devices",
            json!({"name": "Till", "role": "manager"}),
        )
        .await;
    let till = r.body["key"].as_str().unwrap().to_owned();
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "role": "driver"}),
        json!({}),
    ] {
        let r = app.post("/v1/tenants/s/devices", bad.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{bad}: {}", r.text);
    }

    let send = |key: String, method: reqwest::Method, path: &str, body: Option<Value>| {
        let req = app
            .client
            .request(method, format!("{}{path}", app.base))
            .bearer_auth(key);
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        async move { req.send().await.unwrap().status() }
    };
    use reqwest::Method;
    // Both devices read the feed and write through actions.
    for key in [&phone, &till] {
        assert_eq!(
            send(
                key.clone(),
                Method::GET,
                "/v1/tenants/s/sync/snapshot",
                None
            )
            .await,
            200
        );
        let sale = json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 1}], "sender": "Mary"});
        assert_eq!(
            send(
                key.clone(),
                Method::POST,
                "/v1/tenants/s/actions",
                Some(sale)
            )
            .await,
            200
        );
    }
    // A manager's device speaks only as a named staff member who is not an owner.
    let sale = |sender: Option<&str>| {
        let mut a = json!({"action": "record_sale", "items": [{"product": "Rice", "qty": 1}]});
        if let Some(s) = sender {
            a["sender"] = json!(s);
        }
        Some(a)
    };
    let actions = "/v1/tenants/s/actions";
    assert_eq!(
        send(till.clone(), Method::POST, actions, sale(None)).await,
        400
    );
    let owner = app.get("/v1/tenants/s/staff/1").await;
    assert_eq!(owner.body["role"], "owner", "{}", owner.text);
    assert_eq!(
        send(till.clone(), Method::POST, actions, sale(Some("1"))).await,
        403
    );
    let text = Some(json!({"text": "/sale 1 rice"}));
    assert_eq!(
        send(
            till.clone(),
            Method::POST,
            "/v1/tenants/s/messages",
            text.clone()
        )
        .await,
        400
    );
    assert_eq!(
        send(phone.clone(), Method::POST, actions, sale(None)).await,
        200
    );
    assert_eq!(
        send(phone.clone(), Method::POST, "/v1/tenants/s/messages", text).await,
        200
    );
    // Never on another shop, nor on operator routes.
    assert_eq!(
        send(
            phone.clone(),
            Method::GET,
            "/v1/tenants/other/sync/snapshot",
            None
        )
        .await,
        403
    );
    assert_eq!(
        send(
            other_key.clone(),
            Method::GET,
            "/v1/tenants/s/devices",
            None
        )
        .await,
        403
    );
    assert_eq!(
        send(phone.clone(), Method::GET, "/v1/tenants", None).await,
        403
    );
    // A manager device cannot manage the shop's keys, devices, staff or settings.
    for (method, path, body) in [
        (
            Method::POST,
            "/v1/tenants/s/devices",
            Some(json!({"name": "x"})),
        ),
        (Method::DELETE, "/v1/tenants/s/devices/1", None),
        (Method::POST, "/v1/tenants/s/rotate-key", None),
        (
            Method::PATCH,
            "/v1/tenants/s/settings",
            Some(json!({"greeting": "hi"})),
        ),
        (
            Method::POST,
            "/v1/tenants/s/staff",
            Some(json!({"name": "Eve", "role": "owner"})),
        ),
    ] {
        assert_eq!(send(till.clone(), method, path, body).await, 403, "{path}");
    }
    // The list never shows keys; revoking cuts the device off on its very next request.
    let r = app.get("/v1/tenants/s/devices").await;
    assert!(
        !r.text.contains(&phone) && !r.text.contains("key_hash"),
        "{}",
        r.text
    );
    assert_eq!(r.body["devices"].as_array().unwrap().len(), 2);
    assert_eq!(
        send(
            phone.clone(),
            Method::DELETE,
            &format!("/v1/tenants/s/devices/{phone_id}"),
            None
        )
        .await,
        204
    );
    assert_eq!(
        send(
            phone.clone(),
            Method::GET,
            "/v1/tenants/s/sync/snapshot",
            None
        )
        .await,
        401
    );
    assert_eq!(
        send(
            till.clone(),
            Method::GET,
            "/v1/tenants/s/sync/snapshot",
            None
        )
        .await,
        200
    );
    let r = app.get("/v1/tenants/s/devices").await;
    assert!(r.body["devices"][0]["revoked_at"].is_string(), "{}", r.text);
    let r = app
        .request(
            reqwest::Method::DELETE,
            "/v1/tenants/s/devices/999",
            Some(ADMIN),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_shop_has_a_bounded_number_of_listeners_and_a_closed_one_frees_its_place() {
    let app = spawn_app_with(|c| c.sync_max_listeners = 2).await;
    app.shop("s").await;
    app.shop("t").await;
    let first = get(&app, "/v1/tenants/s/events", ADMIN).await;
    let second = get(&app, "/v1/tenants/s/events", ADMIN).await;
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let (epoch, at) = position(&app, "s").await;
    let poll = format!("/v1/tenants/s/sync/changes?epoch={epoch}&after={at}&wait=5");
    let r = get(&app, &poll, ADMIN).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));
    let r = get(&app, "/v1/tenants/s/events", ADMIN).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // A poll that does not wait is no listener; another shop has its own places.
    let r = get(&app, &poll.replace("wait=5", "wait=0"), ADMIN).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let r = get(&app, "/v1/tenants/t/events", ADMIN).await;
    assert_eq!(r.status(), StatusCode::OK);
    // A client that goes away frees its place.
    drop(first);
    let mut freed = false;
    for _ in 0..50 {
        let r = get(&app, "/v1/tenants/s/events", ADMIN).await;
        if r.status() == StatusCode::OK {
            freed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(freed, "a dropped stream's place is given back");
    drop(second);
}

#[tokio::test]
async fn schedules_are_in_the_snapshot_and_an_owners_change_is_in_the_feed() {
    let app = spawn_app().await;
    app.shop("s").await;
    let r = get(&app, "/v1/tenants/s/sync/snapshot", ADMIN).await;
    let (epoch, at): (String, i64) = (
        r.headers()["tarn-sync-epoch"].to_str().unwrap().to_owned(),
        r.headers()["tarn-sync-seq"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    std::fs::write(&file, r.bytes().await.unwrap()).unwrap();
    let kinds: Vec<(String, bool)> = rusqlite::Connection::open(&file)
        .unwrap()
        .prepare("SELECT kind, enabled FROM schedules ORDER BY kind")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert!(kinds.iter().all(|(_, on)| *on), "{kinds:?}");
    let r = app
        .request(
            reqwest::Method::PUT,
            "/v1/tenants/s/schedules",
            Some(ADMIN),
            Some(json!({"schedules": [{"kind": "daily_summary", "enabled": false}]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = changes(&app, "s", &epoch, at).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["tarn-sync-seq"], (at + 1).to_string().as_str());
    let body = r.bytes().await.unwrap();
    let has = |s: &[u8]| body.windows(s.len()).any(|w| w == s);
    assert!(has(b"schedules\0") && has(b"daily_summary"));
    assert!(
        !has(b"low_stock_alert"),
        "an unchanged schedule is not in the change"
    );
}

#[tokio::test]
async fn snapshots_and_changes_are_gzipped_for_clients_that_ask() {
    use std::io::Read;
    let app = spawn_app().await;
    app.shop("s").await;
    let gzipped = |path: String| {
        app.client
            .get(format!("{}{path}", app.base))
            .bearer_auth(ADMIN)
            .header("accept-encoding", "gzip")
            .send()
    };
    let plain = get(&app, "/v1/tenants/s/sync/snapshot", ADMIN).await;
    assert!(plain.headers().get("content-encoding").is_none());
    let (epoch, at) = (
        plain.headers()["tarn-sync-epoch"]
            .to_str()
            .unwrap()
            .to_owned(),
        plain.headers()["tarn-sync-seq"]
            .to_str()
            .unwrap()
            .to_owned(),
    );
    let plain = plain.bytes().await.unwrap();
    let r = gzipped("/v1/tenants/s/sync/snapshot".into()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    assert_eq!(
        r.headers()["tarn-sync-seq"],
        at.as_str(),
        "the position survives"
    );
    let packed = r.bytes().await.unwrap();
    let mut file = Vec::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_end(&mut file)
        .unwrap();
    assert!(file.starts_with(b"SQLite format 3\0"));
    assert_eq!(file.len(), plain.len());
    assert!(
        packed.len() * 3 < plain.len(),
        "{} of {}",
        packed.len(),
        plain.len()
    );

    app.say("s", "Sam", "/sale 2 rice").await;
    let r = gzipped(format!(
        "/v1/tenants/s/sync/changes?epoch={epoch}&after={at}"
    ))
    .await
    .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-encoding"], "gzip");
    let mut changes = Vec::new();
    flate2::read::GzDecoder::new(&r.bytes().await.unwrap()[..])
        .read_to_end(&mut changes)
        .unwrap();
    assert!(changes.windows(6).any(|w| w == b"sales\0"));
}
