//! `tarn bench` end to end at a small size: it builds its tenants, drives the real server
//! child, replays the raw baseline, and reports clean books and zero errors as JSON.

#[test]
fn tarn_bench_runs_clean_and_reports_json() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tarn"))
        .args([
            "bench",
            "--tenants",
            "20",
            "--messages",
            "400",
            "--concurrency",
            "8",
            "--max-open-tenants",
            "8",
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_str(&stdout).unwrap();
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
