//! Scheduling policy, no IO: the job kinds with their default times and recipients, cron
//! math (`cron`), the schedules a new tenant starts with, and checking an owner's changes.
//! Invariant: pure functions over values; the ticker (`scheduler`) and the tenant store
//! (`store`) both build on it, and it imports neither.

pub mod cron;

use crate::action::Role;
use crate::control::schedule::{NewSchedule, ScheduleRow};
use chrono::{DateTime, Utc};
use cron::Spec;
use serde::{Deserialize, Serialize};

/// The kinds of scheduled job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    DailySummary,
    LowStockAlert,
    DeliveryReminder,
    WeeklyReport,
}

impl JobKind {
    /// Every kind, as created with each tenant.
    pub const ALL: [JobKind; 4] = [
        JobKind::DailySummary,
        JobKind::LowStockAlert,
        JobKind::DeliveryReminder,
        JobKind::WeeklyReport,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::DailySummary => "daily_summary",
            JobKind::LowStockAlert => "low_stock_alert",
            JobKind::DeliveryReminder => "delivery_reminder",
            JobKind::WeeklyReport => "weekly_report",
        }
    }

    /// The kind a name means.
    pub fn parse(s: &str) -> Option<JobKind> {
        JobKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// When it runs unless the owner changes it (local time of the tenant).
    pub fn default_cron(self) -> &'static str {
        match self {
            JobKind::DailySummary => "0 20 * * *",
            JobKind::LowStockAlert => "0 * * * *",
            JobKind::DeliveryReminder => "0 9,15 * * *",
            JobKind::WeeklyReport => "0 8 * * 1",
        }
    }

    /// Who gets it unless the owner changes it. For delivery reminders, `driver` means
    /// "each driver gets their own list"; every other role gets the whole list.
    pub fn default_recipients(self) -> Vec<Role> {
        match self {
            JobKind::DeliveryReminder => vec![Role::Owner, Role::Manager, Role::Driver],
            _ => vec![Role::Owner, Role::Manager],
        }
    }

    /// A run that had nothing to send leaves no ledger row (hourly checks would flood it).
    pub fn quiet(self) -> bool {
        self == JobKind::LowStockAlert
    }
}

/// How a claimed slot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Done,
    Failed,
    /// Passed while the server was down, beyond the grace window.
    Missed,
    /// The slot had finished before (a restart mid-run).
    Skipped,
}

impl RunStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Done => "done",
            RunStatus::Failed => "failed",
            RunStatus::Missed => "missed",
            RunStatus::Skipped => "skipped",
        }
    }
}

/// Why a slot ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// On time.
    Schedule,
    /// Late, after downtime (within the grace window).
    CatchUp,
    /// By hand (`run_now`).
    Manual,
}

impl Trigger {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::Manual => "manual",
        }
    }
}

/// The schedules a new tenant starts with, in its time zone, from `now`.
pub fn default_schedules(timezone: &str, now: DateTime<Utc>) -> Vec<NewSchedule> {
    JobKind::ALL
        .into_iter()
        .map(|k| {
            let next = Spec::parse(k.default_cron(), timezone)
                .ok()
                .and_then(|s| s.next_after(now))
                .map(|t| t.timestamp_millis());
            NewSchedule {
                kind: k.as_str().into(),
                cron: k.default_cron().into(),
                timezone: timezone.into(),
                enabled: next.is_some(),
                recipients: k
                    .default_recipients()
                    .into_iter()
                    .map(|r| r.as_str().to_owned())
                    .collect(),
                next_run_ms: next,
            }
        })
        .collect()
}

/// A change to one schedule (fields left out keep their value).
#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleChange {
    pub kind: String,
    pub cron: Option<String>,
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
    pub recipients: Option<Vec<String>>,
}

/// Applies `changes` to `current`, checking every field; the rows to write, with next runs
/// recomputed from `now`. Pure.
pub fn apply_changes(
    current: &[ScheduleRow],
    changes: &[ScheduleChange],
    now: DateTime<Utc>,
) -> Result<Vec<NewSchedule>, String> {
    let mut out: Vec<NewSchedule> = Vec::new();
    for c in changes {
        let Some(cur) = current.iter().find(|s| s.kind == c.kind) else {
            let kinds: Vec<&str> = JobKind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(format!(
                "unknown schedule kind {:?}; the kinds are {}",
                c.kind,
                kinds.join(", ")
            ));
        };
        if out.iter().any(|o| o.kind == c.kind) {
            return Err(format!("schedule {:?} is listed twice", c.kind));
        }
        let cron = c.cron.clone().unwrap_or_else(|| cur.cron.clone());
        let timezone = c.timezone.clone().unwrap_or_else(|| cur.timezone.clone());
        let spec = Spec::parse(&cron, &timezone).map_err(|e| format!("{}: {e}", c.kind))?;
        let recipients = c
            .recipients
            .clone()
            .unwrap_or_else(|| cur.recipients.clone());
        for r in &recipients {
            if Role::parse(r).is_none() {
                return Err(format!(
                    "{}: recipient {r:?} is not a role (owner, manager, staff, driver, vendor)",
                    c.kind
                ));
            }
        }
        let enabled = c.enabled.unwrap_or(cur.enabled);
        if enabled && recipients.is_empty() {
            return Err(format!(
                "{}: an enabled schedule needs at least one recipient role (or set enabled: false)",
                c.kind
            ));
        }
        if recipients
            .iter()
            .enumerate()
            .any(|(i, r)| recipients[..i].contains(r))
        {
            return Err(format!("{}: a recipient role is listed twice", c.kind));
        }
        out.push(NewSchedule {
            kind: c.kind.clone(),
            cron,
            timezone,
            enabled,
            recipients,
            next_run_ms: enabled
                .then(|| spec.next_after(now).map(|t| t.timestamp_millis()))
                .flatten(),
        });
    }
    Ok(out)
}
