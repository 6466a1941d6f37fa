//! The schedule index and run ledger in the control db: one row per (tenant, job kind) with
//! its next run in UTC, claimed by the ticker with a lease; one ledger row per (schedule,
//! slot). Invariant: a claim is one UPDATE … RETURNING (atomic), and a slot's ledger row is
//! unique, so no slot is started twice from here.

use super::ControlDb;
use crate::tenant::{StoreError, TenantId};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// A schedule as stored.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct ScheduleRow {
    #[serde(skip)]
    pub id: i64,
    #[serde(skip)]
    pub tenant: TenantId,
    pub kind: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub recipients: Vec<String>,
    #[serde(skip)]
    pub next_run_ms: Option<i64>,
    pub last_run_at: Option<String>,
    pub last_status: Option<String>,
    pub updated_at: String,
}

/// A schedule to write.
#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub kind: String,
    pub cron: String,
    pub timezone: String,
    pub enabled: bool,
    pub recipients: Vec<String>,
    pub next_run_ms: Option<i64>,
}

/// A ledger row.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RunRow {
    pub id: i64,
    pub kind: String,
    pub slot: String,
    pub trigger: String,
    pub status: String,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub sent: i64,
    pub detail: Option<String>,
}

/// How a claim ended (see [`ControlDb::finish_run`]).
#[derive(Debug, Clone)]
pub struct RunEnd<'a> {
    /// The ledger row, when a slot was started.
    pub run: Option<i64>,
    pub status: &'a str,
    pub sent: i64,
    pub detail: &'a str,
    /// Keep the ledger row (false: a quiet run with nothing to say).
    pub keep: bool,
    /// The next slot; `None` keeps the current one.
    pub next_run_ms: Option<i64>,
    /// The schedule's `updated_at` when it was claimed.
    pub version: &'a str,
}

/// What the ledger already knew of a slot being started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A new ledger row: run the job.
    New(i64),
    /// A row left `running` by a run that never finished (a crash): run the job again; its
    /// tenant-side marker keeps it from sending twice.
    Unfinished(i64),
    /// The slot already finished (with this status): do not run it.
    Finished(String),
}

const SCHEDULE_COLS: &str = "id, tenant_id, kind, cron, timezone, enabled, recipients, next_run_ms, \
     last_run_at, last_status, updated_at";

fn schedule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ScheduleRow> {
    let tenant: String = r.get(1)?;
    let recipients: String = r.get(6)?;
    Ok(ScheduleRow {
        id: r.get(0)?,
        tenant: TenantId::parse(&tenant).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?,
        kind: r.get(2)?,
        cron: r.get(3)?,
        timezone: r.get(4)?,
        enabled: r.get(5)?,
        recipients: serde_json::from_str(&recipients).unwrap_or_default(),
        next_run_ms: r.get(7)?,
        last_run_at: r.get(8)?,
        last_status: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

fn run_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        kind: r.get(1)?,
        slot: r.get(2)?,
        trigger: r.get(3)?,
        status: r.get(4)?,
        started_at: r.get(5)?,
        finished_at: r.get(6)?,
        sent: r.get(7)?,
        detail: r.get(8)?,
    })
}

fn now() -> String {
    crate::clock::now()
}

/// Writes `rows` with one statement, `INSERT … {conflict}`; how many rows it changed.
fn write_schedules(
    conn: &rusqlite::Connection,
    tenant: &TenantId,
    rows: &[NewSchedule],
    conflict: &str,
) -> Result<usize, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO schedules (tenant_id, kind, cron, timezone, enabled, recipients,
                                next_run_ms, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) {conflict}"
    ))?;
    let at = now();
    let mut changed = 0;
    for s in rows {
        changed += stmt.execute(params![
            tenant.as_str(),
            s.kind,
            s.cron,
            s.timezone,
            s.enabled,
            serde_json::to_string(&s.recipients).expect("strings serialize"),
            s.next_run_ms,
            at
        ])?;
    }
    Ok(changed)
}

impl ControlDb {
    /// Inserts or updates the tenant's schedules, all in one transaction.
    pub fn put_schedules(&self, tenant: &TenantId, rows: &[NewSchedule]) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        write_schedules(
            &tx,
            tenant,
            rows,
            "ON CONFLICT (tenant_id, kind) DO UPDATE SET cron = excluded.cron,
               timezone = excluded.timezone, enabled = excluded.enabled,
               recipients = excluded.recipients, next_run_ms = excluded.next_run_ms,
               updated_at = excluded.updated_at",
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Adds the schedules the tenant does not have yet (defaults), leaving the others alone.
    pub fn add_missing_schedules(
        &self,
        tenant: &TenantId,
        rows: &[NewSchedule],
    ) -> Result<usize, StoreError> {
        let conn = self.conn()?;
        write_schedules(
            &conn,
            tenant,
            rows,
            "ON CONFLICT (tenant_id, kind) DO NOTHING",
        )
    }

    /// The tenant's schedules, by kind.
    pub fn schedules(&self, tenant: &TenantId) -> Result<Vec<ScheduleRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {SCHEDULE_COLS} FROM schedules WHERE tenant_id = ?1 ORDER BY kind"
        ))?;
        let rows = stmt.query_map([tenant.as_str()], schedule_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes the tenant's schedules and their ledger (the tenant was deleted).
    pub fn delete_schedules(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.execute(
            "DELETE FROM schedule_runs WHERE tenant_id = ?1",
            [tenant.as_str()],
        )?;
        conn.execute(
            "DELETE FROM schedules WHERE tenant_id = ?1",
            [tenant.as_str()],
        )?;
        Ok(())
    }

    /// Active tenants that have no schedule yet (made before schedules existed), with their
    /// time zone; at most `limit`.
    pub fn tenants_without_schedules(
        &self,
        limit: usize,
    ) -> Result<Vec<(TenantId, String)>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, timezone FROM tenants t WHERE status = 'active'
               AND NOT EXISTS (SELECT 1 FROM schedules s WHERE s.tenant_id = t.id)
             ORDER BY id LIMIT ?1",
        )?;
        let rows = stmt
            .query_map([limit as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, tz)| TenantId::parse(&id).ok().map(|id| (id, tz)))
            .collect())
    }

    /// Claims up to `limit` enabled schedules due at `now_ms` and not held by a live lease,
    /// oldest first, leasing them until `lease_until_ms`. One statement: two tickers never
    /// claim the same row.
    pub fn claim_due(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: usize,
    ) -> Result<Vec<ScheduleRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "UPDATE schedules SET lease_ms = ?2 WHERE id IN (
                 SELECT id FROM schedules
                 WHERE enabled = 1 AND next_run_ms <= ?1 AND (lease_ms IS NULL OR lease_ms < ?1)
                 ORDER BY next_run_ms LIMIT ?3)
             RETURNING {SCHEDULE_COLS}"
        ))?;
        let rows = stmt.query_map(params![now_ms, lease_until_ms, limit as i64], schedule_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Leases one schedule for a run by hand; `None` while another run holds it.
    pub fn lease_schedule(
        &self,
        tenant: &TenantId,
        kind: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<ScheduleRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "UPDATE schedules SET lease_ms = ?4
             WHERE tenant_id = ?1 AND kind = ?2 AND (lease_ms IS NULL OR lease_ms < ?3)
             RETURNING {SCHEDULE_COLS}"
        ))?;
        Ok(stmt
            .query_row(
                params![tenant.as_str(), kind, now_ms, lease_until_ms],
                schedule_row,
            )
            .optional()?)
    }

    /// Drops every lease (at start: this process is the only one on the data dir, so a
    /// lease left in the file belongs to a run that died with the last process).
    pub fn release_leases(&self) -> Result<usize, StoreError> {
        Ok(self.conn()?.execute(
            "UPDATE schedules SET lease_ms = NULL WHERE lease_ms IS NOT NULL",
            [],
        )?)
    }

    /// Starts the ledger row of a slot (see [`Start`]).
    pub fn start_run(
        &self,
        s: &ScheduleRow,
        slot: &str,
        trigger: &str,
    ) -> Result<Start, StoreError> {
        let conn = self.conn()?;
        let inserted = conn.execute(
            "INSERT OR IGNORE INTO schedule_runs (schedule_id, tenant_id, kind, slot, trigger,
                                                  status, started_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'running', ?6)",
            params![s.id, s.tenant.as_str(), s.kind, slot, trigger, now()],
        )?;
        let (id, status): (i64, String) = conn.query_row(
            "SELECT id, status FROM schedule_runs WHERE schedule_id = ?1 AND slot = ?2",
            params![s.id, slot],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(match (inserted, status.as_str()) {
            (1, _) => Start::New(id),
            (_, "running") => Start::Unfinished(id),
            _ => Start::Finished(status),
        })
    }

    /// Whether the ledger has a row for this slot of the schedule.
    pub fn slot_taken(&self, schedule_id: i64, slot: &str) -> Result<bool, StoreError> {
        Ok(self.conn()?.query_row(
            "SELECT EXISTS (SELECT 1 FROM schedule_runs WHERE schedule_id = ?1 AND slot = ?2)",
            params![schedule_id, slot],
            |r| r.get(0),
        )?)
    }

    /// Records slots that passed without a run (downtime beyond the grace window).
    pub fn record_missed(
        &self,
        s: &ScheduleRow,
        slots: &[String],
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR IGNORE INTO schedule_runs (schedule_id, tenant_id, kind, slot, trigger,
                                                      status, finished_at, detail)
                 VALUES (?1, ?2, ?3, ?4, 'schedule', 'missed', ?5, ?6)",
            )?;
            let at = now();
            for slot in slots {
                stmt.execute(params![s.id, s.tenant.as_str(), s.kind, slot, at, detail])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Ends a claim in one transaction: finishes the ledger row (or deletes it when
    /// `end.keep` is false: a quiet run with nothing to say), moves the schedule to
    /// `end.next_run_ms` unless it was changed meanwhile, and drops the lease.
    pub fn finish_run(&self, schedule_id: i64, end: &RunEnd<'_>) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction()?;
        let at = now();
        if let Some(run) = end.run {
            if end.keep {
                tx.execute(
                    "UPDATE schedule_runs SET status = ?2, sent = ?3, detail = ?4, finished_at = ?5
                     WHERE id = ?1",
                    params![run, end.status, end.sent, end.detail, at],
                )?;
            } else {
                tx.execute("DELETE FROM schedule_runs WHERE id = ?1", [run])?;
            }
        }
        // A change through the API while the run was going already set the next run.
        tx.execute(
            "UPDATE schedules SET lease_ms = NULL,
                    next_run_ms = CASE WHEN enabled = 1 AND updated_at = ?6
                                       THEN coalesce(?2, next_run_ms) ELSE next_run_ms END,
                    last_run_at = CASE WHEN ?3 IS NOT NULL THEN ?4 ELSE last_run_at END,
                    last_status = ?5
             WHERE id = ?1",
            params![
                schedule_id,
                end.next_run_ms,
                end.run,
                at,
                end.status,
                end.version
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Turns a schedule off (its row cannot run), noting why.
    pub fn disable_schedule(&self, schedule_id: i64, why: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE schedules SET enabled = 0, next_run_ms = NULL, lease_ms = NULL,
                    last_status = ?2 WHERE id = ?1",
            params![schedule_id, why],
        )?;
        Ok(())
    }

    /// The tenant's ledger, newest first: up to `limit` rows with id below `before`.
    pub fn runs(
        &self,
        tenant: &TenantId,
        kind: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<RunRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, kind, slot, trigger, status, started_at, finished_at, sent, detail
             FROM schedule_runs
             WHERE tenant_id = ?1 AND (?2 IS NULL OR kind = ?2) AND id < ?3
             ORDER BY id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                tenant.as_str(),
                kind,
                before.unwrap_or(i64::MAX),
                limit as i64
            ],
            run_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes ledger rows finished before `cutoff`; how many.
    pub fn prune_runs(&self, cutoff: &str) -> Result<usize, StoreError> {
        Ok(self
            .conn()?
            .execute("DELETE FROM schedule_runs WHERE finished_at < ?1", [cutoff])?)
    }
}
