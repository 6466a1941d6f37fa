//! The scheduler: one ticker over the control db's schedule index (never a timer per
//! tenant). Each tick claims the due rows atomically, runs them with bounded concurrency on
//! the blocking pool, records each slot in the run ledger and moves the row to its next
//! slot. Invariants: a slot is started at most once (unique ledger row) and its effects
//! commit at most once (the tenant's `job_runs` marker); one schedule never runs two slots
//! at once (the lease); cost per tick follows the due rows, not the tenants on disk.

pub mod chart;
pub mod housekeeping;
pub mod job;

use crate::action::Role;
use crate::control::schedule::{RunEnd, RunRow, ScheduleRow, Start};
use crate::llm::LlmClient;
use crate::schedule::cron::Spec;
use crate::schedule::{JobKind, RunStatus, Trigger, default_schedules};
use crate::store::Store;
use crate::tenant::pool::blocking;
use crate::tenant::{StoreError, TenantId};
use chrono::{DateTime, Utc};
use dashmap::DashSet;
use job::{JobError, Outcome};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

/// Settings of the ticker.
#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Time between two looks at the index.
    pub tick: Duration,
    /// A slot late by at most this much still runs (once); older ones are recorded missed.
    pub grace: Duration,
    /// Jobs run at once.
    pub concurrency: usize,
    /// Most rows claimed per tick.
    pub batch: usize,
    /// How long a claim holds its schedule.
    pub lease: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            tick: Duration::from_secs(1),
            grace: Duration::from_secs(3600),
            concurrency: 8,
            batch: 1000,
            lease: Duration::from_secs(1800),
        }
    }
}

/// Missed slots recorded one by one at most (older ones are summed up in the detail).
const MISSED_KEPT: usize = 24;

/// A run later than this after its slot is a catch-up (after downtime), not a punctual one.
const PUNCTUAL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// Errors of the scheduler's API.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("no schedule {0:?} for this tenant")]
    UnknownKind(String),
    #[error("{0} is running now; try again when it has finished")]
    Busy(String),
}

/// What became of one claimed schedule in a tick (or one run by hand).
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub tenant: String,
    pub kind: String,
    /// The slot run, if one was.
    pub slot: Option<String>,
    pub trigger: Option<Trigger>,
    /// `done`, `failed`, `missed`, or `skipped` (the slot had already finished).
    pub status: RunStatus,
    pub sent: i64,
    pub detail: String,
    /// Slots recorded missed by this claim.
    pub missed: usize,
}

fn iso(t: DateTime<Utc>) -> String {
    crate::clock::stamp(t)
}

fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

struct Inner {
    store: Store,
    llm: Option<LlmClient>,
    config: SchedulerConfig,
    permits: Arc<Semaphore>,
    /// Schedules with a run in flight in this process.
    running: DashSet<i64>,
}

/// The ticker and the job runner. Cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

impl Scheduler {
    /// A scheduler over `store`; job messages are handed to `channels` when given (else
    /// they stay queued in the outbox), narratives come from `llm` when configured.
    pub fn new(store: Store, llm: Option<LlmClient>, config: SchedulerConfig) -> Scheduler {
        Scheduler {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(config.concurrency.max(1))),
                store,
                llm,
                config,
                running: DashSet::new(),
            }),
        }
    }

    /// At start: drops leases left by a previous process and gives the default schedules
    /// to tenants that have none (made before schedules existed). Returns how many tenants
    /// got them.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let control = self.inner.store.control().clone();
        blocking(move || {
            control.release_leases()?;
            let mut added = 0;
            loop {
                let page = control.tenants_without_schedules(1000)?;
                if page.is_empty() {
                    return Ok(added);
                }
                let now = Utc::now();
                for (id, tz) in page {
                    control.add_missing_schedules(&id, &default_schedules(&tz, now))?;
                    added += 1;
                }
            }
        })
        .await
    }

    /// Claims the rows due at `now` and starts their runs (each waits for one of the
    /// concurrency permits). Returns one handle per claim; dropping them lets runs go on.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<Vec<JoinHandle<RunReport>>, StoreError> {
        let control = self.inner.store.control().clone();
        let (now_ms, lease, batch) = (
            now.timestamp_millis(),
            self.inner.config.lease.as_millis() as i64,
            self.inner.config.batch,
        );
        let claimed = blocking(move || control.claim_due(now_ms, now_ms + lease, batch)).await?;
        let mut handles = Vec::with_capacity(claimed.len());
        for s in claimed {
            if !self.inner.running.insert(s.id) {
                continue;
            }
            let me = self.clone();
            let permits = self.inner.permits.clone();
            handles.push(tokio::spawn(async move {
                let _permit = permits.acquire_owned().await.expect("never closed");
                let id = s.id;
                let report = me.process(s, now).await;
                me.inner.running.remove(&id);
                report
            }));
        }
        Ok(handles)
    }

    /// Runs the ticker until the task is aborted.
    pub fn spawn(self) -> JoinHandle<()> {
        tokio::spawn(async move {
            match self.recover().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(tenants = n, "default schedules added"),
                Err(e) => tracing::error!(error = %e, "scheduler recovery failed"),
            }
            let mut every = tokio::time::interval(self.inner.config.tick);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = self.tick(Utc::now()).await {
                    tracing::error!(error = %e, "scheduler tick failed");
                }
            }
        })
    }

    /// Decides what a claimed row runs: the latest slot due if it is within the grace
    /// window, recording the slots skipped as missed; then moves the row on.
    async fn process(&self, s: ScheduleRow, now: DateTime<Utc>) -> RunReport {
        let mut report = self.blank(&s);
        let (kind, spec) = match (JobKind::parse(&s.kind), Spec::parse(&s.cron, &s.timezone)) {
            (Some(k), Ok(spec)) => (k, spec),
            (kind, spec) => {
                report.detail = match (kind, spec) {
                    (_, Err(e)) => format!("schedule disabled: {e}"),
                    _ => "schedule disabled: unknown kind".into(),
                };
                tracing::error!(tenant = %s.tenant, kind = %s.kind, detail = %report.detail, "bad schedule row");
                let store = self.inner.store.clone();
                let (id, tenant, detail) = (s.id, s.tenant.clone(), report.detail.clone());
                let disabled = blocking(move || store.disable_schedule(&tenant, id, &detail));
                if let Err(e) = disabled.await {
                    tracing::error!(error = %e, "cannot disable a bad schedule");
                }
                return report;
            }
        };
        let due = from_ms(s.next_run_ms.unwrap_or(now.timestamp_millis()));
        let latest = spec.latest_until(now).filter(|l| *l >= due).unwrap_or(due);
        let next = spec.next_after(now).map(|t| t.timestamp_millis());
        let mut skipped = Vec::new();
        let mut slot = due;
        while slot < latest && skipped.len() < 100_000 {
            skipped.push(slot);
            match spec.next_after(slot) {
                Some(n) => slot = n,
                None => break,
            }
        }
        let late = now - latest;
        let run = late <= chrono::TimeDelta::from_std(self.inner.config.grace).unwrap_or_default();
        if !run {
            skipped.push(latest);
        }
        if !skipped.is_empty() {
            report.missed = skipped.len();
            if let Err(e) = self.record_missed(&s, &skipped, run).await {
                tracing::error!(tenant = %s.tenant, kind = %s.kind, error = %e, "recording missed slots failed");
            }
        }
        if !run {
            report.status = RunStatus::Missed;
            report.detail = format!(
                "{} slot(s) passed while the server was down (grace {}s)",
                skipped.len(),
                self.inner.config.grace.as_secs()
            );
            self.end(&s, None, &report, true, next).await;
            return report;
        }
        let trigger = if late > PUNCTUAL {
            Trigger::CatchUp
        } else {
            Trigger::Schedule
        };
        self.run_slot(&s, kind, latest, trigger, next, report).await
    }

    async fn record_missed(
        &self,
        s: &ScheduleRow,
        slots: &[DateTime<Utc>],
        later_runs: bool,
    ) -> Result<(), StoreError> {
        let control = self.inner.store.control().clone();
        let s = s.clone();
        let kept: Vec<String> = slots[slots.len().saturating_sub(MISSED_KEPT)..]
            .iter()
            .map(|t| iso(*t))
            .collect();
        let mut detail = if later_runs {
            "passed while the server was down; only the latest slot ran".to_owned()
        } else {
            "passed while the server was down, beyond the grace window".to_owned()
        };
        if slots.len() > kept.len() {
            detail.push_str(&format!(
                " ({} older slots since {} not listed)",
                slots.len() - kept.len(),
                iso(slots[0])
            ));
        }
        blocking(move || control.record_missed(&s, &kept, &detail)).await
    }

    /// Starts the slot's ledger row, runs the job (unless the slot already finished) and
    /// ends the claim.
    async fn run_slot(
        &self,
        s: &ScheduleRow,
        kind: JobKind,
        slot: DateTime<Utc>,
        trigger: Trigger,
        next: Option<i64>,
        mut report: RunReport,
    ) -> RunReport {
        let slot_s = iso(slot);
        report.slot = Some(slot_s.clone());
        report.trigger = Some(trigger);
        let control = self.inner.store.control().clone();
        let (row, t, tr) = (s.clone(), slot_s.clone(), trigger.as_str());
        let start = blocking(move || control.start_run(&row, &t, tr)).await;
        let run_id = match start {
            Ok(Start::New(id) | Start::Unfinished(id)) => id,
            Ok(Start::Finished(status)) => {
                report.status = RunStatus::Skipped;
                report.detail = format!("slot already {status}");
                self.end(s, None, &report, true, next).await;
                return report;
            }
            Err(e) => {
                tracing::error!(tenant = %s.tenant, kind = %s.kind, error = %e, "cannot start a run");
                report.detail = "internal error (see the server log)".into();
                self.end(s, None, &report, true, next).await;
                return report;
            }
        };
        match self.execute(&s.tenant, kind, slot, &s.recipients).await {
            Ok(Outcome { sent, detail }) => {
                report.status = RunStatus::Done;
                report.sent = sent;
                report.detail = detail;
            }
            // The tenant is leaving for another machine: the claim lapses unfinished, and
            // the slot runs where the schedule goes (its ledger row moves with it).
            Err(JobError::Store(StoreError::Moving(_))) => {
                report.detail = "the tenant is moving to another machine".into();
                return report;
            }
            Err(e) => {
                report.detail = match &e {
                    JobError::Store(StoreError::NotFound(_)) => "the tenant is gone".into(),
                    _ => "internal error (see the server log)".into(),
                };
                tracing::error!(tenant = %s.tenant, kind = %s.kind, slot = %slot_s, error = %e, "job failed");
            }
        }
        let keep = !(kind.quiet()
            && report.sent == 0
            && report.status == RunStatus::Done
            && trigger != Trigger::Manual);
        self.end(s, Some(run_id), &report, keep, next).await;
        report
    }

    /// Finishes the ledger row (if any), moves the schedule to `next` and drops the lease.
    async fn end(
        &self,
        s: &ScheduleRow,
        run: Option<i64>,
        report: &RunReport,
        keep: bool,
        next: Option<i64>,
    ) {
        let control = self.inner.store.control().clone();
        let (id, status, detail, version) = (
            s.id,
            report.status.as_str(),
            report.detail.clone(),
            s.updated_at.clone(),
        );
        let sent = report.sent;
        let ended = blocking(move || {
            control.finish_run(
                id,
                &RunEnd {
                    run,
                    status,
                    sent,
                    detail: &detail,
                    keep,
                    next_run_ms: next,
                    version: &version,
                },
            )
        })
        .await;
        if let Err(e) = ended {
            tracing::error!(tenant = %s.tenant, kind = %s.kind, error = %e, "cannot finish a run");
        }
    }

    /// Runs one job for `slot` against the tenant's file. Effects commit once per slot.
    #[doc(hidden)]
    pub async fn execute(
        &self,
        tenant: &TenantId,
        kind: JobKind,
        slot: DateTime<Utc>,
        recipients: &[String],
    ) -> Result<Outcome, JobError> {
        let roles: Vec<Role> = recipients.iter().filter_map(|r| Role::parse(r)).collect();
        let slot_s = iso(slot);
        let pool = self.inner.store.pool().clone();
        if kind != JobKind::WeeklyReport {
            return pool
                .with_conn(tenant.clone(), move |conn| {
                    job::once(conn, kind, &slot_s, |tx, settings| match kind {
                        JobKind::DailySummary => job::daily_summary(tx, settings, slot, &roles),
                        JobKind::LowStockAlert => job::low_stock_alert(tx, settings, &roles),
                        JobKind::DeliveryReminder => job::delivery_reminder(tx, settings, &roles),
                        JobKind::WeeklyReport => unreachable!("handled below"),
                    })
                })
                .await;
        }
        let facts = pool
            .with_conn(tenant.clone(), move |conn| {
                let settings = crate::shop::load_settings(conn)?;
                let (from, to) = job::report_week(&settings, slot);
                Ok::<_, JobError>(job::weekly_facts(conn, &settings, from, to)?)
            })
            .await?;
        let facts = Arc::new(facts);
        let f = facts.clone();
        let chart = blocking(move || job::weekly_chart(&f)).await?;
        let narrative = match &self.inner.llm {
            Some(llm) => {
                let json = serde_json::to_value(&*facts).expect("facts serialize");
                match llm.narrate(tenant.as_str(), &json).await {
                    Ok(n) => Some(n),
                    Err(e) => {
                        tracing::warn!(tenant = %tenant, error = %e, "no narrative for the weekly report");
                        None
                    }
                }
            }
            None => None,
        };
        pool.with_conn(tenant.clone(), move |conn| {
            job::once(conn, kind, &slot_s, |tx, settings| {
                job::weekly_report(tx, settings, &facts, &chart, narrative.as_deref(), &roles)
            })
        })
        .await
    }

    /// Runs a tenant's job now, by hand (while no other run holds it). The schedule's next
    /// slot does not move.
    pub async fn run_now(&self, tenant: &TenantId, kind: &str) -> Result<RunRow, ScheduleError> {
        let Some(k) = JobKind::parse(kind) else {
            return Err(ScheduleError::UnknownKind(kind.into()));
        };
        let now = Utc::now();
        let control = self.inner.store.control().clone();
        let (t, kd) = (tenant.clone(), kind.to_owned());
        let lease = self.inner.config.lease.as_millis() as i64;
        let leased = blocking(move || {
            control.get_active(&t)?;
            let exists = control.schedules(&t)?.into_iter().any(|s| s.kind == kd);
            if !exists {
                return Ok(None);
            }
            let ms = now.timestamp_millis();
            control
                .lease_schedule(&t, &kd, ms, ms + lease)
                .map(|s| Some(s.ok_or(())))
        })
        .await?;
        let s = match leased {
            None => return Err(ScheduleError::UnknownKind(kind.into())),
            Some(Err(())) => return Err(ScheduleError::Busy(kind.into())),
            Some(Ok(s)) => s,
        };
        // Two runs by hand in one millisecond still get a slot each.
        let control = self.inner.store.control().clone();
        let id = s.id;
        let slot = blocking(move || {
            let mut slot = now;
            while control.slot_taken(id, &iso(slot))? {
                slot += chrono::TimeDelta::milliseconds(1);
            }
            Ok::<_, StoreError>(slot)
        })
        .await;
        let slot = match slot {
            Ok(slot) => slot,
            Err(e) => {
                let mut report = self.blank(&s);
                report.detail = "internal error (see the server log)".into();
                self.end(&s, None, &report, true, None).await;
                return Err(e.into());
            }
        };
        let report = self
            .run_slot(&s, k, slot, Trigger::Manual, None, self.blank(&s))
            .await;
        let control = self.inner.store.control().clone();
        let (t, kd, slot) = (tenant.clone(), kind.to_owned(), report.slot.clone());
        let row = blocking(move || {
            Ok::<_, StoreError>(
                control
                    .runs(&t, Some(&kd), None, 5)?
                    .into_iter()
                    .find(|r| Some(&r.slot) == slot.as_ref()),
            )
        })
        .await?;
        row.ok_or_else(|| {
            ScheduleError::Store(StoreError::Join("the run left no ledger row".into()))
        })
    }

    /// A report of a claim that has not run yet.
    fn blank(&self, s: &ScheduleRow) -> RunReport {
        RunReport {
            tenant: s.tenant.to_string(),
            kind: s.kind.clone(),
            slot: None,
            trigger: None,
            status: RunStatus::Failed,
            sent: 0,
            detail: String::new(),
            missed: 0,
        }
    }
}
