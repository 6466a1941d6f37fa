//! Limits: the per-tenant request rate (429 with Retry-After), the statement timeout, the
//! answer size cap, the disk guard, and a real full disk (a small tmpfs as the data dir):
//! each refusal is clean and writes nothing.

use crate::helpers::*;
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_key_over_its_rate_gets_429_with_retry_after() {
    let app = spawn_app_with(|c| {
        c.tenant_rps = 2;
        c.tenant_burst = 5;
    })
    .await;
    let key = app.new_tenant("busy").await;
    let other = app.new_tenant("calm").await;
    let mut codes = Vec::new();
    for _ in 0..12 {
        let r = app.get_tenant("busy", &key).await;
        codes.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(r.error_code(), "rate_limited");
            let wait: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
            assert!((1..=2).contains(&wait), "{wait}");
        }
    }
    let ok = codes.iter().filter(|c| **c == StatusCode::OK).count();
    assert!((5..=6).contains(&ok), "the burst, then refusals: {codes:?}");
    // Other tenants and the operator are not held back; the tenant recovers after the wait.
    assert_eq!(app.get_tenant("calm", &other).await.status, StatusCode::OK);
    assert_eq!(app.get_tenant("busy", ADMIN).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get_tenant("busy", &key).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_over_the_timeout_is_stopped_cleanly() {
    let app = spawn_app_with(|c| c.store.statement_timeout_ms = 5).await;
    // A zone with a half-hour offset: its days do not start on a UTC hour, so its report
    // reads the sales themselves rather than the hourly totals.
    app.shop_in("slow", "Asia/Kolkata").await;
    {
        // A big history, seeded directly: 300,000 sales lines to summarise.
        let conn = rusqlite::Connection::open(tenant_file(&app.data_dir(), "slow")).unwrap();
        conn.busy_timeout(Duration::from_secs(5)).unwrap();
        conn.execute_batch(
            "BEGIN;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000)
             INSERT INTO sales (staff_id, total, paid, at)
               SELECT 1, 100, 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now') FROM n;
             INSERT INTO sale_items (sale_id, product_id, qty, unit_price, total)
               SELECT id, 1, 1000, 100, 100 FROM sales;
             COMMIT;",
        )
        .unwrap();
    }
    let r = app.get("/v1/tenants/slow/reports/sales?period=today").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert_eq!(r.error_code(), "timeout");
    assert!(!r.text.contains("interrupt"), "no SQLite text: {}", r.text);
    // The connection is fine afterwards, and small requests pass.
    let r = app.get("/v1/tenants/slow/products").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_over_the_size_cap_are_refused_with_advice() {
    let app = spawn_app_with(|c| c.max_response_bytes = 2_000).await;
    app.shop("big").await;
    let r = app.get("/v1/tenants/big/products").await;
    assert_eq!(r.status, StatusCode::OK, "a small catalog fits");
    for i in 0..40 {
        let r = app
            .post(
                "/v1/tenants/big/products",
                json!({"name": format!("Product number {i}"), "price": 1}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED);
    }
    let r = app.get("/v1/tenants/big/products").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.error_code(), "response_too_large");
    assert!(r.text.len() < 2_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_refused_with_507_while_the_disk_is_nearly_full() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app_in(dir, |_| {}).await;
    app.shop("s").await;
    let before = app.product("s", "Rice").await["stock"].clone();
    let dir = app.stop().await;
    // The same data dir, now with a free-space floor far above what the disk has.
    let app = spawn_app_in(dir, |c| c.min_free_mb = 1 << 40).await;
    let r = app.say("s", "Sam", "/sale 2 rice").await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE, "{}", r.text);
    assert_eq!(r.error_code(), "insufficient_storage");
    assert!(r.headers.contains_key("retry-after"));
    let r = app.create_tenant("new", "New").await;
    assert_eq!(r.status, StatusCode::INSUFFICIENT_STORAGE);
    // Reads go on; readiness says why; nothing was written.
    assert_eq!(app.product("s", "Rice").await["stock"], before);
    let r = app.request(Method::GET, "/readyz", None, None).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.body["checks"]["disk_ok"], false);
    let r = app.get("/v1/tenants/s/messages").await;
    assert_eq!(r.body["messages"].as_array().unwrap().len(), 0);
    assert!(!tenant_file(&app.data_dir(), "new").exists());
}

/// Mounts a tmpfs of `mib` MiB at `dir` (root only); false when that is not possible here.
fn mount_tmpfs(dir: &std::path::Path, mib: u32) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_without_corrupting_anything() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("small");
    std::fs::create_dir(&mount).unwrap();
    if !mount_tmpfs(&mount, 6) {
        // Documented in the README as a manual test for machines without `mount`.
        eprintln!("SKIPPED: cannot mount a tmpfs here (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            // Lazy: the stopped server's last handles may still be closing.
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount.clone());
    let data = mount.join("data");
    let app = spawn_app_in(tempfile::tempdir().unwrap(), |c| {
        c.store.data_dir = data.clone();
        c.min_free_mb = 0;
    })
    .await;
    app.shop("s").await;
    // Fill the disk with a ballast file, leaving a few hundred KiB.
    let free = tarn::system::free_disk_bytes(&mount).unwrap();
    let ballast = mount.join("ballast");
    std::fs::write(&ballast, vec![0u8; (free - 300 * 1024) as usize]).unwrap();
    // Write until the disk is full: every answer is applied or a clean 507.
    let note = "n".repeat(150);
    let (mut applied, mut full) = (0, 0);
    for i in 0..3000 {
        let r = app
            .say("s", "Mary", &format!("/expense {} fuel {note}", i + 1))
            .await;
        match r.status {
            StatusCode::OK => {
                assert_eq!(r.body["status"], "applied", "{}", r.text);
                applied += 1;
            }
            StatusCode::INSUFFICIENT_STORAGE => {
                assert_eq!(r.error_code(), "insufficient_storage", "{}", r.text);
                full += 1;
                if full >= 5 {
                    break;
                }
            }
            other => panic!("{other}: {}", r.text),
        }
    }
    eprintln!("full disk: {applied} writes applied, then {full} refused");
    assert!(
        applied > 0 && full >= 5,
        "{applied} applied, {full} refused"
    );
    // Space comes back: writing works again, and the books hold every applied write once.
    std::fs::remove_file(&ballast).unwrap();
    let r = app.say("s", "Mary", "/expense 1 fuel after").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let _dir = app.stop().await;
    let conn = rusqlite::Connection::open(tenant_file(&data, "s")).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let expenses: i64 = conn
        .query_row("SELECT count(*) FROM expenses", [], |r| r.get(0))
        .unwrap();
    assert_eq!(expenses, applied + 1, "refused writes left nothing behind");
    let logged: i64 = conn
        .query_row("SELECT count(*) FROM message_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(logged, applied + 1);
}
