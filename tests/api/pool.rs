//! The tenant pool seen through the server: eviction, reopen, single flight, schema checks,
//! idle close, fd-limited cap, shutdown, and `tarn migrate --all`.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_reopened_after_eviction_keeps_its_data() {
    let app = spawn_app_with(|c| c.store.max_open_tenants = 2).await;
    let mut keys = Vec::new();
    for id in ["t1", "t2", "t3", "t4"] {
        let key = app.new_tenant(id).await;
        let r = app
            .patch_settings(id, &key, json!({"greeting": format!("owner of {id}")}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        keys.push(key);
    }
    assert!(app.metric("open_tenants").await <= 2.0);
    assert!(app.metric("tenant_evictions_capacity").await >= 2.0);
    for (id, key) in ["t1", "t2", "t3", "t4"].iter().zip(&keys) {
        let r = app.settings(id, key).await;
        assert_eq!(r.body["greeting"], format!("owner of {id}"));
    }
    assert!(app.metric("open_tenants").await <= 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_requests_to_a_cold_tenant_open_it_once() {
    let app = spawn_app().await;
    let key = app.new_tenant("cold").await;
    assert_eq!(
        app.metric("tenant_opens").await,
        0.0,
        "create leaves it closed"
    );
    let gets = (0..32).map(|_| app.settings("cold", &key));
    for r in futures::future::join_all(gets).await {
        assert_eq!(r.status, StatusCode::OK);
    }
    assert_eq!(app.metric("tenant_opens").await, 1.0);
    assert_eq!(app.metric("open_tenants").await, 1.0);
}

#[tokio::test]
async fn tenant_file_newer_than_the_binary_is_refused() {
    let app = spawn_app().await;
    let key = app.new_tenant("future").await;
    let path = tenant_file(&app.data_dir(), "future");
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 9999)
        .unwrap();
    let r = app.settings("future", &key).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.error_code(), "schema_too_new");
    assert!(!r.text.contains(".db"), "no paths in answers: {}", r.text);
    let v: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 9999, "never downgraded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tenants_are_closed() {
    let app = spawn_app_with(|c| c.store.tenant_idle_secs = 1).await;
    let key = app.new_tenant("sleepy").await;
    assert_eq!(app.settings("sleepy", &key).await.status, StatusCode::OK);
    assert_eq!(app.metric("open_tenants").await, 1.0);
    // Idle after 1 s; the sweep runs every second on housekeeping's half-second ticks.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while app.metric("open_tenants").await != 0.0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(app.metric("open_tenants").await, 0.0);
    assert_eq!(app.metric("tenant_evictions_idle").await, 1.0);
    assert_eq!(app.settings("sleepy", &key).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_checkpoints_and_closes_every_tenant() {
    let app = spawn_app().await;
    for id in ["a", "b", "c"] {
        let key = app.new_tenant(id).await;
        app.patch_settings(id, &key, json!({"x": 1})).await;
    }
    let data = app.data_dir();
    assert!(files_under(&data).iter().any(|f| f.ends_with("-wal")));
    let _dir = app.stop().await;
    let left: Vec<_> = files_under(&data)
        .into_iter()
        .filter(|f| f.ends_with("-wal") && !f.starts_with("_control"))
        .collect();
    assert!(left.is_empty(), "WAL files left after shutdown: {left:?}");
}

#[tokio::test]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let app = spawn_app().await;
    let mut config = tarn::config::ServeConfig::with_data_dir(app.data_dir());
    config.listen = "127.0.0.1:0".parse().unwrap();
    let err = tarn::app::App::build(config)
        .await
        .err()
        .expect("must fail");
    assert!(
        err.to_string().contains("in use by another tarn process"),
        "{err}"
    );
}

fn tarn() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tarn"))
}

/// Runs `tarn serve` under a low open-file limit and touches many more tenants than fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_fd_cap_one_more_tenant_evicts_and_never_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    // 1,100 descriptors: (1100 - 1024 reserve) / (3 per connection * 2 connections) = 12.
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -n 1100 && exec {} serve",
            env!("CARGO_BIN_EXE_tarn")
        ))
        .env("TARN_DATA_DIR", &data)
        .env("TARN_LISTEN", format!("127.0.0.1:{port}"))
        .env("TARN_ADMIN_TOKEN", ADMIN)
        .env("TARN_MAX_OPEN_TENANTS", "4096")
        .env("TARN_TENANT_CONNECTIONS", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            up = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(up, "server did not come up");
    for i in 0..40 {
        let id = format!("fd{i}");
        let r = client
            .post(format!("{base}/v1/tenants"))
            .bearer_auth(ADMIN)
            .json(&json!({"id": id, "name": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = client
            .patch(format!("{base}/v1/tenants/{id}/settings"))
            .bearer_auth(ADMIN)
            .json(&json!({"join_code_ttl_hours": i % 8760 + 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::OK,
            "tenant {i}: {}",
            r.text().await.unwrap()
        );
    }
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(metric_value(&metrics, "open_tenants"), 12.0);
    assert_eq!(metric_value(&metrics, "tenant_evictions_capacity"), 28.0);
}

#[tokio::test]
async fn migrate_all_walks_every_tenant_and_reports_failures() {
    let app = spawn_app().await;
    for i in 0..6 {
        app.new_tenant(&format!("m{i}")).await;
    }
    let data = app.data_dir();
    let dir = app.stop().await;
    // m1 is at schema 0 (an empty file), m2 is from the future.
    let m1 = tenant_file(&data, "m1");
    for f in tarn::tenant::db_files(&m1) {
        let _ = std::fs::remove_file(f);
    }
    rusqlite::Connection::open(&m1).unwrap();
    rusqlite::Connection::open(tenant_file(&data, "m2"))
        .unwrap()
        .pragma_update(None, "user_version", 9999)
        .unwrap();

    let out = tarn()
        .args(["migrate", "--all", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "a failing tenant fails the command");
    assert!(
        stdout.contains("migrated 6 tenants: 1 upgraded, 4 already current, 1 failed"),
        "{stdout}"
    );
    assert!(stdout.contains("m2: database"), "{stdout}");
    let v: i64 = rusqlite::Connection::open(&m1)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, tarn::tenant::migrate::TENANT.len() as i64);

    // The CLI refuses to write beside a running server.
    let app = spawn_app_in(dir, |_| {}).await;
    let out = tarn()
        .args(["migrate", "m1", "--data-dir"])
        .arg(app.data_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another tarn process"));
}

#[test]
fn cli_creates_lists_shows_and_deletes_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = tarn()
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, _) = run(&[
        "tenant",
        "create",
        "cli-shop",
        "--name",
        "CLI Shop",
        "--currency",
        "KES",
    ]);
    assert!(ok, "{out}");
    let created: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(created["api_key"].as_str().unwrap().starts_with("tarn_"));
    let (ok, out, _) = run(&["tenant", "list"]);
    assert!(ok && out.contains("\"cli-shop\""), "{out}");
    let (ok, out, _) = run(&["tenant", "show", "cli-shop"]);
    assert!(ok && out.contains("\"KES\""), "{out}");
    let (ok, _, err) = run(&["tenant", "show", "../etc"]);
    assert!(!ok && err.contains("invalid tenant id"), "{err}");
    let (ok, out, _) = run(&["tenant", "delete", "cli-shop"]);
    assert!(ok && out.contains("\"deleted\""), "{out}");
    let (ok, _, err) = run(&["tenant", "show", "cli-shop"]);
    assert!(!ok && err.contains("not found"), "{err}");
}
