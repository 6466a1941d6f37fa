//! The scheduler with a controllable clock: the ticker is driven tick by tick with chosen
//! instants over a real store in a temp dir (DST changes, downtime, a restart mid-run), and
//! the schedule API, the low-stock rule and housekeeping are checked through the server.

use crate::helpers::*;
use chrono::{DateTime, TimeZone, Timelike, Utc};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::Duration;
use tarn::control::schedule::NewSchedule;
use tarn::schedule::cron::Spec;
use tarn::schedule::{RunStatus, Trigger};
use tarn::scheduler::{RunReport, Scheduler, SchedulerConfig};
use tarn::store::{NewTenant, Store};
use tarn::tenant::TenantId;
use tarn::tenant::pool::PoolMetrics;

fn open(dir: &std::path::Path) -> Store {
    let args = tarn::config::ServeConfig::with_data_dir(dir).store;
    tarn::app::open_store(&args, PoolMetrics::default()).unwrap()
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A tenant in `tz` whose owner has joined a Telegram chat `chat`.
fn tenant(store: &Store, id: &str, tz: &str, chat: i64) -> TenantId {
    let id = TenantId::parse(id).unwrap();
    store
        .create_tenant(NewTenant {
            id: id.clone(),
            name: id.to_string(),
            currency: Some("EUR".into()),
            timezone: Some(tz.into()),
        })
        .unwrap();
    sql(
        store,
        &id,
        &format!(
            "INSERT INTO identities (staff_id, channel, external_id, chat_id, created_at)
         VALUES (1, 'telegram', '{chat}', '{chat}', '2026-01-01T00:00:00.000Z')"
        ),
    );
    id
}

fn sql(store: &Store, id: &TenantId, sql: &str) {
    let h = store.pool().acquire(id).unwrap();
    let mut conn = h.conn().unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(sql).unwrap();
    // Like every writer, a test's direct write records itself in the sync feed.
    tarn::tenant::session::record(&tx, "test").unwrap();
    tx.commit().unwrap();
}

fn count(store: &Store, id: &TenantId, sql: &str) -> i64 {
    let h = store.pool().acquire(id).unwrap();
    h.conn().unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Keeps only `kind` enabled for the tenant, with its first slot after `from`.
fn only(store: &Store, id: &TenantId, kind: &str, cron: &str, from: DateTime<Utc>) {
    let tz = store.control().get_active(id).unwrap().timezone;
    let rows: Vec<NewSchedule> = store
        .control()
        .schedules(id)
        .unwrap()
        .into_iter()
        .map(|s| {
            let on = s.kind == kind;
            NewSchedule {
                cron: if on { cron.into() } else { s.cron },
                timezone: tz.clone(),
                enabled: on,
                recipients: s.recipients,
                next_run_ms: on.then(|| {
                    Spec::parse(cron, &tz)
                        .unwrap()
                        .next_after(from)
                        .unwrap()
                        .timestamp_millis()
                }),
                kind: s.kind,
            }
        })
        .collect();
    store.control().put_schedules(id, &rows).unwrap();
}

fn scheduler(store: &Store, grace: Duration) -> Scheduler {
    Scheduler::new(
        store.clone(),
        None,
        SchedulerConfig {
            grace,
            ..SchedulerConfig::default()
        },
    )
}

/// Claims what is due at `now` straight from the index, with a one-minute lease.
fn claim_at(store: &Store, now: DateTime<Utc>) -> Vec<tarn::control::schedule::ScheduleRow> {
    let ms = now.timestamp_millis();
    store.control().claim_due(ms, ms + 60_000, 10).unwrap()
}

/// One tick at `now`, waiting for every run it started.
async fn tick(s: &Scheduler, now: DateTime<Utc>) -> Vec<RunReport> {
    let mut out = Vec::new();
    for h in s.tick(now).await.unwrap() {
        out.push(h.await.unwrap());
    }
    out
}

fn ledger(store: &Store, id: &TenantId, kind: &str) -> Vec<tarn::control::schedule::RunRow> {
    let mut rows = store.control().runs(id, Some(kind), None, 1000).unwrap();
    rows.reverse();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_job_fires_once_per_local_day_across_both_dst_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let berlin = tenant(&store, "berlin", "Europe/Berlin", 11);
    let newyork = tenant(&store, "newyork", "America/New_York", 22);
    let sched = scheduler(&store, Duration::from_secs(3600));
    // Each window: four days before a change to three days after, in 10-minute ticks.
    let windows = [
        ("2026-03-05T12:00:00Z", "2026-03-12T12:00:00Z"), // New York springs forward 8 March
        ("2026-03-26T12:00:00Z", "2026-04-02T12:00:00Z"), // Berlin, 29 March
        ("2026-10-22T12:00:00Z", "2026-10-29T12:00:00Z"), // Berlin falls back 25 October
        ("2026-10-29T12:00:00Z", "2026-11-05T12:00:00Z"), // New York, 1 November
    ];
    for (start, end) in windows {
        let (start, end) = (utc(start), utc(end));
        for t in [&berlin, &newyork] {
            only(&store, t, "daily_summary", "0 20 * * *", start);
        }
        let before: Vec<usize> = [&berlin, &newyork]
            .iter()
            .map(|t| ledger(&store, t, "daily_summary").len())
            .collect();
        let mut now = start;
        while now < end {
            for r in tick(&sched, now).await {
                assert_eq!(r.status, RunStatus::Done, "{r:?}");
                assert_eq!(r.trigger, Some(Trigger::Schedule));
            }
            now += chrono::Duration::minutes(10);
        }
        for (i, (t, tz)) in [
            (&berlin, chrono_tz::Europe::Berlin),
            (&newyork, chrono_tz::America::New_York),
        ]
        .into_iter()
        .enumerate()
        {
            let runs = ledger(&store, t, "daily_summary");
            let runs = &runs[before[i]..];
            let local: Vec<_> = runs
                .iter()
                .map(|r| utc(&r.slot).with_timezone(&tz))
                .collect();
            assert_eq!(runs.len(), 7, "{t}: one run per local day, got {local:?}");
            assert!(
                local.iter().all(|l| l.hour() == 20 && l.minute() == 0),
                "{local:?}"
            );
            let mut days: Vec<_> = local.iter().map(|l| l.date_naive()).collect();
            days.dedup();
            assert_eq!(days.len(), 7, "{t}: seven distinct local days");
            assert!(runs.iter().all(|r| r.status == "done" && r.sent == 1));
        }
    }
    for t in [&berlin, &newyork] {
        assert_eq!(
            count(
                &store,
                t,
                "SELECT count(*) FROM outbox WHERE origin = 'daily_summary'"
            ),
            28,
            "{t}: one message per run"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downtime_catches_up_once_inside_grace_and_records_missed_outside() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let daily = tenant(&store, "daily", "Europe/Berlin", 1);
    let hourly = tenant(&store, "hourly", "Europe/Berlin", 2);
    sql(
        &store,
        &hourly,
        "INSERT INTO products (name, name_key, price, stock, low_stock_at, created_at)
        VALUES ('Salt', 'salt', 100, 1000, 5000, '2026-01-01T00:00:00.000Z')",
    );
    // Last seen up at 18:30 local on 10 November; back at 21:30: three hours down.
    let down = utc("2026-11-10T17:30:00Z");
    let back = utc("2026-11-10T20:30:00Z");
    only(&store, &daily, "daily_summary", "0 20 * * *", down);
    only(&store, &hourly, "low_stock_alert", "0 * * * *", down);

    // Default grace (1 h): the 20:00 summary is 90 minutes late -> missed, nothing sent.
    let reports = tick(&scheduler(&store, Duration::from_secs(3600)), back).await;
    assert_eq!(reports.len(), 2);
    let runs = ledger(&store, &daily, "daily_summary");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "missed");
    assert_eq!(runs[0].slot, "2026-11-10T19:00:00.000Z");
    assert_eq!(count(&store, &daily, "SELECT count(*) FROM outbox"), 0);
    // The hourly alert: 19:00 and 20:00 missed, 21:00 (30 minutes late) runs once.
    let runs = ledger(&store, &hourly, "low_stock_alert");
    let got: Vec<(&str, &str, &str)> = runs
        .iter()
        .map(|r| (r.slot.as_str(), r.status.as_str(), r.trigger.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("2026-11-10T18:00:00.000Z", "missed", "schedule"),
            ("2026-11-10T19:00:00.000Z", "missed", "schedule"),
            ("2026-11-10T20:00:00.000Z", "done", "catch_up"),
        ]
    );
    assert_eq!(count(&store, &hourly, "SELECT count(*) FROM outbox"), 1);
    // Both moved on to their next slot: a later tick runs nothing more.
    assert!(
        tick(&scheduler(&store, Duration::from_secs(3600)), back)
            .await
            .is_empty()
    );

    // A 4-hour grace: the same outage gives one catch-up summary.
    only(
        &store,
        &daily,
        "daily_summary",
        "0 20 * * *",
        down + chrono::Duration::days(1),
    );
    let reports = tick(
        &scheduler(&store, Duration::from_secs(4 * 3600)),
        back + chrono::Duration::days(1),
    )
    .await;
    let reports: Vec<_> = reports
        .into_iter()
        .filter(|r| r.tenant == "daily")
        .collect();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].status, RunStatus::Done);
    assert_eq!(reports[0].trigger, Some(Trigger::CatchUp));
    assert_eq!(count(&store, &daily, "SELECT count(*) FROM outbox"), 1);
    let text: String = {
        let h = store.pool().acquire(&daily).unwrap();
        h.conn()
            .unwrap()
            .query_row("SELECT text FROM outbox", [], |r| r.get(0))
            .unwrap()
    };
    assert!(text.starts_with("Daily summary, Wed 11 Nov 2026"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_during_a_run_does_not_send_twice() {
    let dir = tempfile::tempdir().unwrap();
    let slot = utc("2026-11-10T19:00:00Z");
    let id;
    {
        let store = open(dir.path());
        id = tenant(&store, "crash", "Europe/Berlin", 7);
        sql(
            &store,
            &id,
            "INSERT INTO identities (staff_id, channel, external_id, chat_id, created_at)
            VALUES (1, 'whatsapp', '4915100', '4915100', '2026-01-01T00:00:00.000Z')",
        );
        only(
            &store,
            &id,
            "daily_summary",
            "0 20 * * *",
            slot - chrono::Duration::hours(1),
        );
        // The run gets as far as committing its messages, then the process dies: the ledger
        // row stays `running`, the lease stays set, the schedule does not move on.
        let claimed = claim_at(&store, slot);
        assert_eq!(claimed.len(), 1);
        let start = store
            .control()
            .start_run(&claimed[0], "2026-11-10T19:00:00.000Z", "schedule")
            .unwrap();
        assert!(matches!(start, tarn::control::schedule::Start::New(_)));
        let sched = scheduler(&store, Duration::from_secs(3600));
        let out = sched
            .execute(
                &id,
                tarn::schedule::JobKind::DailySummary,
                slot,
                &claimed[0].recipients,
            )
            .await
            .unwrap();
        assert_eq!(out.sent, 2, "telegram and whatsapp chats of the owner");
        store.pool().close_all();
    }
    // Restart: a new store and scheduler on the same files, a few seconds later.
    let store = open(dir.path());
    let sched = scheduler(&store, Duration::from_secs(3600));
    sched.recover().await.unwrap();
    let reports = tick(&sched, slot + chrono::Duration::seconds(5)).await;
    assert_eq!(reports.len(), 1, "the unfinished slot is picked up again");
    assert_eq!(reports[0].status, RunStatus::Done);
    assert_eq!(reports[0].sent, 2);
    assert!(
        reports[0].detail.contains("already done"),
        "{:?}",
        reports[0]
    );
    assert_eq!(
        count(&store, &id, "SELECT count(*) FROM outbox"),
        2,
        "no message queued twice"
    );
    let runs = ledger(&store, &id, "daily_summary");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, "done");
    // And it moved on: the next tick that day does nothing.
    assert!(
        tick(&sched, slot + chrono::Duration::hours(1))
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_records_missed_slots_without_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = tenant(&store, "away", "Asia/Kolkata", 3);
    let from = utc("2026-11-01T00:00:00Z");
    only(&store, &id, "delivery_reminder", "0 9,15 * * *", from);
    // Ten days down: 20 slots passed; the latest is hours old, beyond the grace window.
    let reports = tick(
        &scheduler(&store, Duration::from_secs(3600)),
        from + chrono::Duration::days(10),
    )
    .await;
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].status, RunStatus::Missed);
    assert_eq!(reports[0].missed, 20);
    let runs = ledger(&store, &id, "delivery_reminder");
    assert_eq!(runs.len(), 20, "each missed slot is on record");
    assert!(runs.iter().all(|r| r.status == "missed"));
    let next = store
        .control()
        .schedules(&id)
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "delivery_reminder")
        .unwrap();
    let next = DateTime::from_timestamp_millis(next.next_run_ms.unwrap()).unwrap();
    assert_eq!(
        next,
        utc("2026-11-11T03:30:00Z"),
        "09:00 IST after the outage"
    );
}

async fn run_now(app: &TestApp, t: &str, kind: &str) -> serde_json::Value {
    let r = app
        .post(&format!("/v1/tenants/{t}/schedules/{kind}/run"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["run"].clone()
}

fn join_chat(app: &TestApp, t: &str, staff: &str, chat: &str) {
    let conn = rusqlite::Connection::open(tenant_file(&app.data_dir(), t)).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn.execute(
        "INSERT INTO identities (staff_id, channel, external_id, chat_id, created_at)
         SELECT id, 'telegram', ?2, ?2, '2026-01-01T00:00:00.000Z' FROM staff WHERE name = ?1",
        [staff, chat],
    )
    .unwrap();
}

fn outbox(app: &TestApp, t: &str, origin: &str) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(tenant_file(&app.data_dir(), t)).unwrap();
    let mut stmt = conn
        .prepare("SELECT chat_id, text FROM outbox WHERE origin = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([origin], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_stock_alerts_once_per_product_until_restocked() {
    let app = spawn_app_with(|c| c.scheduler.enabled = false).await;
    app.shop("s").await;
    join_chat(&app, "s", "Owner", "100");
    join_chat(&app, "s", "Mary", "200");
    join_chat(&app, "s", "Sam", "300");
    // Sugar alerts under 10 kg; the rest under the default 5.
    let r = run_now(&app, "s", "low_stock_alert").await;
    assert_eq!(
        (r["status"].as_str(), r["sent"].as_i64()),
        (Some("done"), Some(0))
    );
    assert_eq!(
        app.say("s", "Sam", "/sale 42 sugar").await.status,
        StatusCode::OK
    );
    let r = run_now(&app, "s", "low_stock_alert").await;
    assert_eq!(r["sent"], 2, "owner and manager, not staff: {r}");
    let sent = outbox(&app, "s", "low_stock_alert");
    assert_eq!(
        sent.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        vec!["100", "200"]
    );
    assert_eq!(
        sent[0].1,
        "Low stock:\n- Sugar: 8 kg left (alert under 10)\nRestock with /restock <product> <qty>."
    );
    // Still low: no repeat, run after run.
    for _ in 0..3 {
        assert_eq!(run_now(&app, "s", "low_stock_alert").await["sent"], 0);
    }
    // A restock that leaves it under the threshold does not re-arm it...
    assert_eq!(
        app.say("s", "Mary", "/restock sugar 1").await.status,
        StatusCode::OK
    );
    assert_eq!(run_now(&app, "s", "low_stock_alert").await["sent"], 0);
    // ...another product going low alerts for that one only...
    let r = app.say("s", "Sam", "/sale 6 cooking oil").await;
    assert_eq!(r.body["status"], "applied", "{}", r.text);
    let r = run_now(&app, "s", "low_stock_alert").await;
    assert_eq!(r["sent"], 2, "{r}");
    let sent = outbox(&app, "s", "low_stock_alert");
    assert_eq!(sent.len(), 4);
    assert!(
        sent[2].1.contains("Cooking Oil: 4 bottles left") && !sent[2].1.contains("Sugar"),
        "{}",
        sent[2].1
    );
    // ...and back over the threshold then low again alerts again.
    assert_eq!(
        app.say("s", "Mary", "/restock sugar 5").await.status,
        StatusCode::OK
    );
    assert_eq!(run_now(&app, "s", "low_stock_alert").await["sent"], 0);
    assert_eq!(
        app.say("s", "Sam", "/sale 6 sugar").await.status,
        StatusCode::OK
    );
    assert_eq!(run_now(&app, "s", "low_stock_alert").await["sent"], 2);
    let sent = outbox(&app, "s", "low_stock_alert");
    assert!(sent[5].1.contains("Sugar: 8 kg left"), "{}", sent[5].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_api_defaults_changes_and_refusals() {
    let app = spawn_app_with(|c| c.scheduler.enabled = false).await;
    let r = app
        .post(
            "/v1/tenants",
            json!({"id": "k", "name": "K", "timezone": "America/New_York"}),
        )
        .await;
    let key = r.body["api_key"].as_str().unwrap().to_owned();
    let r = app
        .request(Method::GET, "/v1/tenants/k/schedules", Some(&key), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = r.body["schedules"].as_array().unwrap();
    let got: Vec<(&str, &str, bool)> = list
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap(),
                s["cron"].as_str().unwrap(),
                s["enabled"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("daily_summary", "0 20 * * *", true),
            ("delivery_reminder", "0 9,15 * * *", true),
            ("low_stock_alert", "0 * * * *", true),
            ("weekly_report", "0 8 * * 1", true),
        ]
    );
    let daily = &list[0];
    assert_eq!(daily["timezone"], "America/New_York");
    assert_eq!(daily["recipients"], json!(["owner", "manager"]));
    assert_eq!(list[1]["recipients"], json!(["owner", "manager", "driver"]));
    let next =
        utc(daily["next_run"].as_str().unwrap()).with_timezone(&chrono_tz::America::New_York);
    assert_eq!((next.hour(), next.minute()), (20, 0));
    assert!(utc(daily["next_run"].as_str().unwrap()) > Utc::now());

    // A change: another time, zone and recipients; the next run follows.
    let put = |body: serde_json::Value| {
        let key = key.clone();
        let app = &app;
        async move {
            app.request(
                Method::PUT,
                "/v1/tenants/k/schedules",
                Some(&key),
                Some(body),
            )
            .await
        }
    };
    let r = put(json!({"schedules": [
        {"kind": "daily_summary", "cron": "30 18 * * 1-6", "timezone": "Europe/Lisbon", "recipients": ["owner"]},
        {"kind": "low_stock_alert", "enabled": false}
    ]}))
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let list = r.body["schedules"].as_array().unwrap();
    assert_eq!(list[0]["cron"], "30 18 * * 1-6");
    assert_eq!(list[0]["recipients"], json!(["owner"]));
    let next = utc(list[0]["next_run"].as_str().unwrap()).with_timezone(&chrono_tz::Europe::Lisbon);
    assert_eq!((next.hour(), next.minute()), (18, 30));
    assert_eq!(list[2]["enabled"], false);
    assert!(list[2]["next_run"].is_null());

    // Refusals: each one a 400 that names the problem, and nothing written.
    for (body, says) in [
        (
            json!({"schedules": [{"kind": "daily_summary", "cron": "every day"}]}),
            "5 fields",
        ),
        (
            json!({"schedules": [{"kind": "daily_summary", "cron": "0 25 * * *"}]}),
            "daily_summary",
        ),
        (
            json!({"schedules": [{"kind": "daily_summary", "timezone": "Europe/Atlantis"}]}),
            "IANA",
        ),
        (
            json!({"schedules": [{"kind": "daily_summary", "recipients": ["boss"]}]}),
            "not a role",
        ),
        (
            json!({"schedules": [{"kind": "hourly_spam"}]}),
            "unknown schedule kind",
        ),
        (
            json!({"schedules": [{"kind": "daily_summary", "when": "now"}]}),
            "unknown field",
        ),
        (json!({"schedules": []}), "at least one"),
        (
            json!({"schedules": [{"kind": "daily_summary", "recipients": []}]}),
            "needs at least one recipient",
        ),
        (
            json!({"schedules": [{"kind": "daily_summary", "recipients": ["owner", "owner"]}]}),
            "listed twice",
        ),
        (
            json!({"schedules": [{"kind": "low_stock_alert", "enabled": true}, {"kind": "daily_summary", "cron": "bad"}]}),
            "daily_summary",
        ),
    ] {
        let r = put(body.clone()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.text);
        assert!(
            r.body["error"]["message"].as_str().unwrap().contains(says),
            "{body}: {}",
            r.text
        );
    }
    let r = app
        .request(Method::GET, "/v1/tenants/k/schedules", Some(&key), None)
        .await;
    assert_eq!(r.body["schedules"][0]["cron"], "30 18 * * 1-6");
    assert_eq!(
        r.body["schedules"][2]["enabled"], false,
        "the all-or-nothing PUT wrote nothing"
    );

    // Runs by hand, the ledger, and other tenants' keys.
    let other = app.new_tenant("other").await;
    for (m, path) in [
        (Method::GET, "/v1/tenants/k/schedules"),
        (Method::PUT, "/v1/tenants/k/schedules"),
        (Method::POST, "/v1/tenants/k/schedules/daily_summary/run"),
        (Method::GET, "/v1/tenants/k/runs"),
        (Method::GET, "/v1/tenants/k/reports"),
    ] {
        let r = app.request(m, path, Some(&other), Some(json!({}))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}");
    }
    let r = app
        .request(
            Method::POST,
            "/v1/tenants/k/schedules/fortnightly/run",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = app
        .request(
            Method::POST,
            "/v1/tenants/k/schedules/daily_summary/run",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["run"]["trigger"], "manual");
    assert_eq!(r.body["run"]["status"], "done");
    assert!(
        r.body["run"]["detail"]
            .as_str()
            .unwrap()
            .contains("no recipient"),
        "{}",
        r.text
    );
    let r = app
        .request(
            Method::GET,
            "/v1/tenants/k/runs?kind=daily_summary",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.body["runs"].as_array().unwrap().len(), 1, "{}", r.text);
    let r = app
        .request(
            Method::GET,
            "/v1/tenants/k/runs?kind=nope",
            Some(&key),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // A deleted tenant's schedules go with it; a restored one gets the defaults back.
    assert_eq!(app.delete_tenant("k", ADMIN).await.status, StatusCode::OK);
    let r = app.get("/v1/tenants/k/schedules").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(app.restore_tenant("k").await.status, StatusCode::OK);
    let r = app.get("/v1/tenants/k/schedules").await;
    assert_eq!(
        r.body["schedules"].as_array().unwrap().len(),
        4,
        "{}",
        r.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn housekeeping_prunes_old_chat_rows_of_open_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let id = tenant(&store, "tidy", "UTC", 5);
    let old = "2020-01-01T00:00:00.000Z";
    let new = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    sql(&store, &id, &format!(
        "INSERT INTO inbox (channel, update_key, payload, status, received_at) VALUES
           ('telegram', 'a', '{{}}', 'done', '{old}'), ('telegram', 'b', '{{}}', 'pending', '{old}'),
           ('telegram', 'c', '{{}}', 'done', '{new}');
         INSERT INTO outbox (channel, chat_id, text, status, next_attempt_at, created_at) VALUES
           ('telegram', '5', 'x', 'sent', '{old}', '{old}'), ('telegram', '5', 'y', 'pending', '{old}', '{old}'),
           ('telegram', '5', 'z', 'sent', '{new}', '{new}');"
    ));
    let pass = tarn::scheduler::housekeeping::checkpoint_and_prune(&store, Default::default());
    assert_eq!(pass.tenants, 1);
    assert_eq!((pass.pruned_inbox, pass.pruned_outbox), (1, 1));
    assert_eq!(
        count(&store, &id, "SELECT count(*) FROM inbox"),
        2,
        "pending and recent stay"
    );
    assert_eq!(count(&store, &id, "SELECT count(*) FROM outbox"), 2);
    // It never opens a closed tenant.
    store.pool().close_all();
    let pass = tarn::scheduler::housekeeping::checkpoint_and_prune(&store, Default::default());
    assert_eq!(pass.tenants, 0);
    assert!(!store.pool().is_open(&id));
}

#[test]
fn berlin_and_new_york_offsets_really_change() {
    // Guards the DST test's premise: the UTC hour of 20:00 local moves in both zones.
    for (tz, a, b) in [
        (chrono_tz::Europe::Berlin, (2026, 3, 28), (2026, 3, 30)),
        (chrono_tz::America::New_York, (2026, 10, 31), (2026, 11, 2)),
    ] {
        let at = |(y, m, d): (i32, u32, u32)| {
            tz.with_ymd_and_hms(y, m, d, 20, 0, 0)
                .unwrap()
                .with_timezone(&Utc)
                .hour()
        };
        assert_ne!(at(a), at(b));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_catches_up_a_slot_that_fell_due_while_it_was_down() {
    let app = spawn_app().await;
    app.shop("s").await;
    join_chat(&app, "s", "Owner", "100");
    let dir = app.stop().await;
    // The daily summary was due ten minutes ago, while the server was down.
    let due = (Utc::now() - chrono::Duration::minutes(10))
        .with_second(0)
        .unwrap()
        .with_nanosecond(0)
        .unwrap();
    let control = rusqlite::Connection::open(dir.path().join("data/_control.db")).unwrap();
    control
        .execute(
            "UPDATE schedules SET cron = ?1, next_run_ms = ?2
             WHERE tenant_id = 's' AND kind = 'daily_summary'",
            rusqlite::params![
                format!("{} {} * * *", due.minute(), due.hour()),
                due.timestamp_millis()
            ],
        )
        .unwrap();
    drop(control);
    let app = spawn_app_in(dir, |c| {
        c.scheduler.enabled = true;
        c.scheduler.tick_ms = 50;
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let runs = loop {
        let r = app.get("/v1/tenants/s/runs?kind=daily_summary").await;
        let runs = r.body["runs"].as_array().unwrap().clone();
        let finished = !runs.is_empty() && runs.iter().all(|r| r["status"] != "running");
        if finished || std::time::Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(runs.len(), 1, "one catch-up run: {runs:?}");
    assert_eq!(runs[0]["trigger"], "catch_up");
    assert_eq!(runs[0]["status"], "done");
    assert_eq!(runs[0]["sent"], 1);
    assert_eq!(
        utc(runs[0]["slot"].as_str().unwrap()),
        due,
        "the slot it was due for"
    );
    let s = app.get("/v1/tenants/s/schedules").await;
    let next = utc(s.body["schedules"][0]["next_run"].as_str().unwrap());
    assert_eq!(next, due + chrono::Duration::days(1), "on to tomorrow");
    assert_eq!(s.body["schedules"][0]["last_status"], "done");
    assert_eq!(outbox(&app, "s", "daily_summary").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_during_a_run_wins_and_a_held_schedule_is_busy() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("data"));
    let id = tenant(&store, "edit", "UTC", 9);
    let slot = utc("2026-11-10T20:00:00Z");
    only(
        &store,
        &id,
        "daily_summary",
        "0 20 * * *",
        slot - chrono::Duration::hours(1),
    );
    let claimed = claim_at(&store, slot);
    assert_eq!(claimed.len(), 1);
    // While it runs, the owner moves the summary to 07:00.
    std::thread::sleep(Duration::from_millis(5));
    let change = NewSchedule {
        kind: "daily_summary".into(),
        cron: "0 7 * * *".into(),
        timezone: "UTC".into(),
        enabled: true,
        recipients: vec!["owner".into()],
        next_run_ms: Some(utc("2026-11-11T07:00:00Z").timestamp_millis()),
    };
    store
        .control()
        .put_schedules(&id, std::slice::from_ref(&change))
        .unwrap();
    // A second claim finds it held by the lease.
    assert!(
        store
            .control()
            .claim_due(
                slot.timestamp_millis() + 1,
                slot.timestamp_millis() + 60_000,
                10
            )
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .control()
            .lease_schedule(
                &id,
                "daily_summary",
                slot.timestamp_millis(),
                slot.timestamp_millis() + 1
            )
            .unwrap()
            .is_none()
    );
    // The run ends with the next slot of the old pattern: the owner's change stays.
    store
        .control()
        .finish_run(
            claimed[0].id,
            &tarn::control::schedule::RunEnd {
                run: None,
                status: "done",
                sent: 0,
                detail: "",
                keep: true,
                next_run_ms: Some(utc("2026-11-11T20:00:00Z").timestamp_millis()),
                version: &claimed[0].updated_at,
            },
        )
        .unwrap();
    let now = store
        .control()
        .schedules(&id)
        .unwrap()
        .into_iter()
        .find(|s| s.kind == "daily_summary")
        .unwrap();
    assert_eq!(now.cron, "0 7 * * *");
    assert_eq!(now.next_run_ms, change.next_run_ms);
    // Through the API: a schedule held by a run answers 409 to a run by hand.
    drop(store);
    let app = spawn_app_in(dir, |_| {}).await;
    let control = rusqlite::Connection::open(app.data_dir().join("_control.db")).unwrap();
    control
        .execute(
            "UPDATE schedules SET lease_ms = ?1 WHERE tenant_id = 'edit' AND kind = 'weekly_report'",
            [Utc::now().timestamp_millis() + 600_000],
        )
        .unwrap();
    let r = app
        .post("/v1/tenants/edit/schedules/weekly_report/run", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.error_code(), "busy");
    let r = app
        .post("/v1/tenants/edit/schedules/daily_summary/run", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}
