//! The server's own housekeeping on tokio-cron-scheduler: closing idle tenants, WAL
//! checkpoints of the open ones with pruning of old inbox/outbox rows (`mail::prune`) and
//! of the sync log, pruning of the run ledger, and purging trashed copies (and their
//! replicas) past retention. Invariant: it only touches tenants already open (never opens
//! one from disk) and never counts as a use of a tenant, so it cannot keep one from idling.

use crate::store::Store;
use crate::tenant::StoreError;
use crate::tenant::pool::{TenantPool, blocking};
use std::time::Duration;
use tokio_cron_scheduler::{Job, JobScheduler, JobSchedulerError};

/// How long rows that only serve for a while are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days handled inbox and outbox rows are kept.
    pub days: u64,
    /// Days the sync log keeps a change (an app offline longer re-bootstraps).
    pub sync_days: u64,
    /// Most changes the sync log keeps per tenant.
    pub sync_rows: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: 30,
            sync_days: 30,
            sync_rows: 100_000,
        }
    }
}

/// How often and how long.
#[derive(Debug, Clone)]
pub struct HousekeepingConfig {
    /// Inbox, outbox and sync log retention.
    pub retention: Retention,
    /// Days the run ledger is kept.
    pub run_retention_days: u64,
    /// Days a deleted tenant waits in the trash (0: until purged by hand).
    pub trash_retention_days: u64,
    /// Replication, whose replicas of a purged copy go with it.
    pub replica: Option<std::sync::Arc<crate::replica::Replicator>>,
    /// Time between checkpoint passes.
    pub checkpoint_every: Duration,
}

/// What a checkpoint pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pass {
    pub tenants: usize,
    pub pruned_inbox: usize,
    pub pruned_outbox: usize,
    pub pruned_sync: usize,
}

/// Checkpoints every open tenant and deletes its inbox/outbox rows that are finished and
/// older than `retention.days`, and sync log rows beyond the sync retention. Blocking.
pub fn checkpoint_and_prune(store: &Store, retention: Retention) -> Pass {
    let now = chrono::Utc::now();
    let cutoff = crate::clock::stamp(now - chrono::Duration::days(retention.days as i64));
    let mut pass = Pass::default();
    pass.tenants = store.pool().each_open(|id, conn| {
        let pruned = (|| {
            let (inbox, outbox) = crate::mail::prune(conn, &cutoff)?;
            let synced = crate::sync::prune(
                conn,
                now.timestamp_millis(),
                retention.sync_days as i64 * 86_400_000,
                retention.sync_rows as i64,
            )?;
            conn.execute_batch("PRAGMA wal_checkpoint(PASSIVE)")?;
            Ok::<_, rusqlite::Error>((inbox, outbox, synced))
        })();
        match pruned {
            Ok((i, o, s)) => {
                pass.pruned_inbox += i;
                pass.pruned_outbox += o;
                pass.pruned_sync += s;
            }
            Err(e) => tracing::warn!(tenant = %id, error = %e, "checkpoint or pruning failed"),
        }
    });
    pass
}

async fn run_blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Option<T> {
    match blocking(f).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::error!(error = %e, "housekeeping: {what} failed");
            None
        }
    }
}

/// Runs `pass` over the tenant pool every `every` (on the blocking pool), logging how many
/// tenants it closed or trimmed.
async fn repeat_on_pool(
    sched: &JobScheduler,
    store: &Store,
    every: Duration,
    what: &'static str,
    pass: fn(&TenantPool) -> usize,
) -> Result<(), JobSchedulerError> {
    let s = store.clone();
    sched
        .add(Job::new_repeated_async(every, move |_, _| {
            let pool = s.pool().clone();
            Box::pin(async move {
                if let Some(n) = run_blocking(what, move || Ok(pass(&pool))).await
                    && n > 0
                {
                    tracing::debug!(tenants = n, "housekeeping: {what}");
                }
            })
        })?)
        .await?;
    Ok(())
}

/// Starts the housekeeping jobs; shut the returned scheduler down on exit.
pub async fn start(
    store: Store,
    config: HousekeepingConfig,
) -> Result<JobScheduler, JobSchedulerError> {
    let sched = JobScheduler::new().await?;
    let pool_config = store.pool().config();
    let sweep_every = (pool_config.idle / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    repeat_on_pool(
        &sched,
        &store,
        sweep_every,
        "idle sweep",
        TenantPool::sweep_idle,
    )
    .await?;
    // Trimming walks the open tenants' recency only, so it runs on its own, more often than
    // the idle sweep (which also forgets silent bells).
    if !pool_config.quiet.is_zero() {
        let trim_every = (pool_config.quiet / 2).max(Duration::from_secs(1));
        repeat_on_pool(&sched, &store, trim_every, "trim", TenantPool::trim_quiet).await?;
    }
    let s = store.clone();
    let retention = config.retention;
    sched
        .add(Job::new_repeated_async(
            config.checkpoint_every,
            move |_, _| {
                let s = s.clone();
                Box::pin(async move {
                    if let Some(p) = run_blocking("checkpoint", move || {
                        Ok(checkpoint_and_prune(&s, retention))
                    })
                    .await
                    {
                        tracing::debug!(
                            tenants = p.tenants,
                            inbox = p.pruned_inbox,
                            outbox = p.pruned_outbox,
                            sync = p.pruned_sync,
                            "checkpoint pass"
                        );
                    }
                })
            },
        )?)
        .await?;
    let s = store;
    let days = config.run_retention_days;
    let (trash_days, replica) = (config.trash_retention_days, config.replica);
    // Minute 17 of every hour: away from the top of the hour, when most jobs are due.
    sched
        .add(Job::new_async("0 17 * * * *", move |_, _| {
            let (s, replica) = (s.clone(), replica.clone());
            Box::pin(async move {
                match crate::trash::purge_expired(&s, replica.as_ref().map(|r| r.bucket()), trash_days).await {
                    Ok(p) if !p.is_empty() => tracing::info!(copies = p.len(), "expired trash purged"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "housekeeping: trash purge failed; retried next hour"),
                }
                let cutoff = crate::clock::stamp(
                    chrono::Utc::now() - chrono::Duration::days(days as i64),
                );
                let control = s.control().clone();
                if let Some(n) =
                    run_blocking("ledger pruning", move || control.prune_runs(&cutoff)).await
                    && n > 0
                {
                    tracing::info!(rows = n, "old schedule runs pruned");
                }
            })
        })?)
        .await?;
    sched.start().await?;
    Ok(sched)
}
