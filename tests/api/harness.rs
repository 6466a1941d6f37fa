//! `tarn bench` end to end at a small size: it builds its tenants, drives the real server
//! child, replays the raw baseline, and reports clean books and zero errors as JSON; in
//! webhook mode every update's reply reaches its Bot API stand-in.

fn bench(args: &[&str]) -> serde_json::Value {
    let _alone = crate::helpers::MACHINE.blocking_lock();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tarn"))
        .arg("bench")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap()
}

#[test]
fn tarn_bench_runs_clean_and_reports_json() {
    let r = bench(&[
        "--tenants",
        "20",
        "--messages",
        "400",
        "--concurrency",
        "8",
        "--max-open-tenants",
        "8",
    ]);
    assert_eq!(r["messages"], 400);
    assert_eq!(r["errors"], 0);
    assert_eq!(r["statuses"]["applied"], 400, "{r}");
    assert_eq!(r["consistency"], "ok");
    assert!(r["messages_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["raw_baseline_per_sec"].as_f64().unwrap() > 0.0);
    assert!(r["latency"]["p99_ms"].as_f64().unwrap() >= r["latency"]["p50_ms"].as_f64().unwrap());
    // A cap of 8 over 20 tenants: the pool had to evict, and never held more than 8.
    assert!(r["evictions"].as_f64().unwrap() > 0.0, "{r}");
    assert!(r["open_tenants_end"].as_f64().unwrap() <= 8.0);
    assert!(
        r["server_rss_mib"]["peak"].as_f64().unwrap()
            >= r["server_rss_mib"]["start"].as_f64().unwrap()
    );
}

#[test]
fn tarn_bench_webhook_mode_gets_every_reply_to_the_bot_api() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let r = bench(&[
        "--tenants",
        "10",
        "--active",
        "6",
        "--messages",
        "300",
        "--concurrency",
        "6",
        "--webhook",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["statuses"]["accepted"], 300, "{r}");
    let w = &r["webhook"];
    assert_eq!(
        (w["replies"].as_u64(), w["missing"].as_u64()),
        (Some(300), Some(0)),
        "{r}"
    );
    assert_eq!(w["unexpected"], 0);
    let e2e = &w["end_to_end"];
    assert!(e2e["p50_ms"].as_f64().unwrap() > 0.0, "{r}");
    assert!(e2e["max_ms"].as_f64().unwrap() >= e2e["p99_ms"].as_f64().unwrap());
    assert_eq!(r["consistency"], "ok");
    // Every update was applied once, as a Telegram message, and only on the active tenants.
    let mut applied = 0;
    for i in 0..10 {
        let path = crate::helpers::tenant_file(&data, &format!("bench-{i:06}"));
        let n: i64 = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM message_log WHERE channel = 'telegram' AND status = 'applied'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert!(i < 6 || n == 0, "inactive tenant {i} got messages");
        applied += n;
    }
    assert_eq!(applied, 300);
}
