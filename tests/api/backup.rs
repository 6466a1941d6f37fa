//! Backups taken while the server is writing: `tarn backup --all` (a second process) and
//! `GET /v1/tenants/{t}/backup`, restored with `tarn restore` into a new data dir and served
//! again; `tarn check` on good and damaged files; a damaged backup is never restored.

use crate::helpers::*;
use serde_json::json;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn tarn(data: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args(args)
        .env("TARN_DATA_DIR", data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The shop's books agree with themselves: stock, balances, sales, journal and log.
fn invariants_hold(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let sales = one("SELECT count(*) FROM sales");
    assert_eq!(
        one("SELECT stock FROM products WHERE name = 'Rice'"),
        100_000_000 - one("SELECT coalesce(sum(qty), 0) FROM sale_items"),
        "{}: stock = initial - sold",
        db.display()
    );
    assert_eq!(
        one("SELECT balance FROM customers WHERE name = 'Ahmed'"),
        one("SELECT coalesce(sum(total), 0) FROM sales WHERE paid = 0"),
        "balance = credit sales"
    );
    assert_eq!(one("SELECT count(*) FROM journal"), sales);
    assert_eq!(
        one("SELECT count(*) FROM message_log WHERE status = 'applied'"),
        sales
    );
    sales
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backups_under_write_load_restore_to_consistent_shops() {
    let app = spawn_app().await;
    let mut keys = Vec::new();
    for t in ["b0", "b1", "b2"] {
        keys.push(app.new_tenant(t).await);
        for (path, body) in [
            (
                "products",
                json!({"name": "Rice", "price": 2, "stock": 100_000}),
            ),
            ("customers", json!({"name": "Ahmed"})),
            ("staff", json!({"name": "Sam", "role": "staff"})),
        ] {
            let r = app.post(&format!("/v1/tenants/{t}/{path}"), body).await;
            assert_eq!(r.status, reqwest::StatusCode::CREATED);
        }
    }
    // Write load on all three tenants until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for w in 0..3 {
        let (stop, sent, base, client) = (
            stop.clone(),
            sent.clone(),
            app.base.clone(),
            app.client.clone(),
        );
        load.push(tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let text = if i % 2 == 0 {
                    format!("/sale {} rice to Ahmed on credit", 1 + i % 4)
                } else {
                    "/sale 1 rice".to_owned()
                };
                let r = client
                    .post(format!("{base}/v1/tenants/b{w}/messages"))
                    .bearer_auth(ADMIN)
                    .json(&json!({"text": text, "sender": "Sam"}))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                sent.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
    }
    while sent.load(Ordering::SeqCst) < 150 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A backup by a second process, and one over HTTP, both while the writes go on.
    let data = app.data_dir();
    let bk = app.dir.path().join("bk");
    let (d, b) = (data.clone(), bk.clone());
    let (ok, out) = tokio::task::spawn_blocking(move || {
        tarn(&d, &["backup", "--all", "--to", b.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("backed up 3 tenants: 3 ok, 0 failed"), "{out}");
    let r = app
        .client
        .get(format!("{}/v1/tenants/b1/backup", app.base))
        .bearer_auth(&keys[1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/vnd.sqlite3");
    let snapshot = r.bytes().await.unwrap();
    assert!(snapshot.starts_with(b"SQLite format 3\0"));
    let over_http = app.dir.path().join("b1-http.db");
    std::fs::write(&over_http, &snapshot).unwrap();
    let before = sent.load(Ordering::SeqCst);
    while sent.load(Ordering::SeqCst) < before + 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for l in load {
        l.await.unwrap();
    }
    assert!(
        std::fs::read_dir(data.join("_tmp"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no snapshot left behind"
    );
    // Another tenant's key cannot download this one.
    let r = app
        .client
        .get(format!("{}/v1/tenants/b1/backup", app.base))
        .bearer_auth(&keys[0])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let live: Vec<i64> = ["b0", "b1", "b2"]
        .iter()
        .map(|t| invariants_hold(&tenant_file(&data, t)))
        .collect();
    let _dir = app.stop().await;

    // The snapshots are consistent books, from the middle of the run.
    let http_sales = invariants_hold(&over_http);
    assert!(
        http_sales > 0 && http_sales < live[1],
        "{http_sales} vs {}",
        live[1]
    );
    let (ok, out) = tarn(&data, &["check", "--all", "--full"]);
    assert!(
        ok && out.contains("checked 3 tenants: 3 ok, 0 failed"),
        "{out}"
    );

    // Restore into an empty data dir and serve it: same keys, same books as the backup.
    let new_dir = tempfile::tempdir().unwrap();
    let new_data = new_dir.path().join("data");
    let (ok, out) = tarn(
        &new_data,
        &["restore", "--from", bk.to_str().unwrap(), "--all"],
    );
    assert!(
        ok && out.contains("restored 3 tenants: 3 ok, 0 failed"),
        "{out}"
    );
    for (i, t) in ["b0", "b1", "b2"].iter().enumerate() {
        let sales = invariants_hold(&tenant_file(&new_data, t));
        assert!(sales > 0 && sales < live[i], "{t}: {sales} of {}", live[i]);
    }
    let restored = spawn_app_in(new_dir, |_| {}).await;
    for (i, t) in ["b0", "b1", "b2"].iter().enumerate() {
        let r = restored.get_tenant(t, &keys[i]).await;
        assert_eq!(
            r.status,
            reqwest::StatusCode::OK,
            "{t}: the key still works"
        );
        let r = restored.say(t, "Sam", "/sale 1 rice").await;
        assert_eq!(r.body["status"], "applied", "{}", r.text);
    }
    let r = restored.get("/v1/tenants/b0/schedules").await;
    assert_eq!(r.body["schedules"].as_array().unwrap().len(), 4);
    let new_data = restored.data_dir();
    let _new_dir = restored.stop().await;

    // Restoring over a live file needs --force; a damaged backup is refused, live file kept.
    let (ok, out) = tarn(
        &new_data,
        &["restore", "--from", bk.to_str().unwrap(), "b0"],
    );
    assert!(!ok && out.contains("pass --force"), "{out}");
    let damaged = tenant_file(&bk, "b2");
    let mut bytes = std::fs::read(&damaged).unwrap();
    let page = 4096;
    for b in &mut bytes[page * 2..page * 3] {
        *b = 0x5a;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    let kept = std::fs::read(tenant_file(&new_data, "b2")).unwrap();
    let (ok, out) = tarn(
        &new_data,
        &["restore", "--from", bk.to_str().unwrap(), "--force", "b2"],
    );
    assert!(!ok && out.contains("fails its integrity check"), "{out}");
    assert_eq!(std::fs::read(tenant_file(&new_data, "b2")).unwrap(), kept);
    // And `tarn check` finds the same damage in a live file.
    std::fs::copy(&damaged, tenant_file(&new_data, "b2")).unwrap();
    let (ok, out) = tarn(&new_data, &["check", "--all", "--full"]);
    assert!(!ok && out.contains("b2: "), "{out}");
    assert!(out.contains("2 ok, 1 failed"), "{out}");
}
