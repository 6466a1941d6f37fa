//! The ticker's cost with a big index: 100,000 tenants on it (400,000 schedules), of which
//! 1,000 real tenant files have their daily summary due at the same instant. Prints the
//! median time to claim and dispatch the batch, to run it to the end, the cost of a tick
//! with nothing due, and the process RSS across quiet ticks and rounds.
//!
//! `cargo bench --bench scheduler` (TARN_BENCH_INDEX, default 100000 tenants on the index;
//! TARN_BENCH_DUE, default 1000; TARN_BENCH_ROUNDS, default 10).

use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};
use tarn::scheduler::{Scheduler, SchedulerConfig};
use tarn::store::{NewTenant, Store};
use tarn::tenant::TenantId;
use tarn::tenant::pool::PoolMetrics;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn rss_mib() -> f64 {
    tarn::system::self_rss_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0)
}

/// Puts `n` tenants that exist only in the index (four schedules each, due in a year).
fn fill_index(data_dir: &std::path::Path, n: usize, far: i64) {
    let mut conn = rusqlite::Connection::open(data_dir.join("_control.db")).unwrap();
    let tx = conn.transaction().unwrap();
    {
        let mut stmt = tx
            .prepare(
                "INSERT INTO schedules (tenant_id, kind, cron, timezone, enabled, recipients,
                                        next_run_ms, updated_at)
                 VALUES (?1, ?2, '0 20 * * *', 'Europe/Berlin', 1, '[\"owner\"]', ?3, '')",
            )
            .unwrap();
        for i in 0..n {
            let t = format!("idx-{i:07}");
            for (k, kind) in [
                "daily_summary",
                "low_stock_alert",
                "delivery_reminder",
                "weekly_report",
            ]
            .iter()
            .enumerate()
            {
                // Spread over the coming year, never due during the bench.
                let at = far + ((i * 4 + k) as i64 % 31_536_000) * 1000;
                stmt.execute(rusqlite::params![t, kind, at]).unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let index = env_usize("TARN_BENCH_INDEX", 100_000);
    let due = env_usize("TARN_BENCH_DUE", 1000);
    let rounds = env_usize("TARN_BENCH_ROUNDS", 10);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = tarn::config::ServeConfig::with_data_dir(&data).store;
    let store: Store = tarn::app::open_store(&args, PoolMetrics::default()).unwrap();

    let t0 = Instant::now();
    let mut real = Vec::new();
    for i in 0..due {
        let id = TenantId::parse(&format!("due-{i:05}")).unwrap();
        store
            .create_tenant(NewTenant {
                id: id.clone(),
                name: id.to_string(),
                currency: Some("EUR".into()),
                timezone: Some("Europe/Berlin".into()),
            })
            .unwrap();
        let h = store.pool().acquire(&id).unwrap();
        h.conn()
            .unwrap()
            .execute_batch(&format!(
                "INSERT INTO identities (staff_id, channel, external_id, chat_id, created_at)
                 VALUES (1, 'telegram', '{i}', '{i}', '');
                 INSERT INTO products (name, name_key, price, stock, created_at)
                 VALUES ('Rice', 'rice', 250, 100000, '');
                 INSERT INTO sales (staff_id, total, paid, at) VALUES (1, 750, 1, '2026-11-23T10:00:00.000Z');"
            ))
            .unwrap();
        real.push(id);
    }
    let far = Utc::now().timestamp_millis() + 365 * 86_400_000;
    fill_index(&data, index.saturating_sub(due), far);
    let rows: i64 = rusqlite::Connection::open(data.join("_control.db"))
        .unwrap()
        .query_row("SELECT count(*) FROM schedules", [], |r| r.get(0))
        .unwrap();
    println!(
        "index: {} tenants, {rows} schedules; {due} real tenant files (set up in {:.1?})",
        index.max(due),
        t0.elapsed()
    );
    store.pool().close_all();

    let sched = Scheduler::new(store.clone(), None, SchedulerConfig::default());
    sched.recover().await.unwrap();
    let control = rusqlite::Connection::open(data.join("_control.db")).unwrap();
    control
        .execute(
            "UPDATE schedules SET enabled = 0, next_run_ms = NULL WHERE tenant_id LIKE 'due-%'
               AND kind != 'daily_summary'",
            [],
        )
        .unwrap();

    // A tick with nothing due.
    let quiet_at = Utc::now();
    let mut quiet = Vec::new();
    let rss_before_quiet = rss_mib();
    for _ in 0..5000 {
        let t = Instant::now();
        assert!(sched.tick(quiet_at).await.unwrap().is_empty());
        quiet.push(t.elapsed());
    }
    println!(
        "tick with nothing due: median {:?} over 5000 ticks; RSS {rss_before_quiet:.1} MiB before, {:.1} MiB after",
        median(quiet),
        rss_mib()
    );

    let base_slot: DateTime<Utc> = "2026-11-23T19:00:00Z".parse().unwrap();
    let (mut claim, mut total) = (Vec::new(), Vec::new());
    let rss_start = rss_mib();
    let mut rss = Vec::new();
    for round in 0..rounds {
        // Each round a new evening: 20:00 Berlin on consecutive days, all 1,000 due at once.
        let slot = base_slot + chrono::Duration::days(round as i64);
        control
            .execute(
                "UPDATE schedules SET next_run_ms = ?1, lease_ms = NULL
                 WHERE tenant_id LIKE 'due-%' AND kind = 'daily_summary'",
                [slot.timestamp_millis()],
            )
            .unwrap();
        let now = slot + chrono::Duration::seconds(1);
        let t = Instant::now();
        let handles = sched.tick(now).await.unwrap();
        let claimed = t.elapsed();
        assert_eq!(handles.len(), due, "the whole batch is claimed in one tick");
        let mut sent = 0;
        for h in handles {
            let r = h.await.unwrap();
            assert_eq!(r.status, tarn::schedule::RunStatus::Done, "{r:?}");
            sent += r.sent;
        }
        let done = t.elapsed();
        assert_eq!(sent, due as i64);
        claim.push(claimed);
        total.push(done);
        rss.push(rss_mib());
        println!(
            "round {round}: claimed and dispatched {due} in {claimed:?}; all ran in {done:?} ({:.0} jobs/s); RSS {:.1} MiB",
            due as f64 / done.as_secs_f64(),
            rss_mib()
        );
    }
    let outbox: i64 = real
        .iter()
        .map(|id| {
            let h = store.pool().acquire(id).unwrap();
            h.conn()
                .unwrap()
                .query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))
                .unwrap()
        })
        .sum();
    assert_eq!(
        outbox,
        (due * rounds) as i64,
        "one message per tenant per round"
    );
    println!(
        "median over {rounds} rounds: claim+dispatch {:?}, run to the end {:?}; RSS {rss_start:.1} MiB before, {:.1} MiB after round 1, {:.1} MiB after round {rounds}",
        median(claim),
        median(total),
        rss[0],
        rss[rss.len() - 1]
    );
    let open = store.pool().stats().open;
    store.pool().close_all();
    println!(
        "after closing the {open} open tenants (as the idle sweep would): RSS {:.1} MiB",
        rss_mib()
    );
}
