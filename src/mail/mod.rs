//! Mail: each tenant file's inbox and outbox, and the one "tenant has mail" signal.
//! Invariants: only this module writes `inbox` and `outbox`; a committed outbox row is its
//! own signal (the pool's commit listener posts the tenant); a tenant with rows in flight is
//! marked in `pending_work` (an inbound row before the provider is answered, a job's rows
//! right after their commit) and unmarked only once quiet with nothing pending.

pub mod inbox;
pub mod outbox;

use crate::control::ControlDb;
use crate::tenant::pool::blocking;
use crate::tenant::{StoreError, TenantId, TenantPool};
use dashmap::DashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The chat apps tarn speaks, as stored in the `channel` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Telegram,
    WhatsApp,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 2] = [Provider::Telegram, Provider::WhatsApp];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Telegram => "telegram",
            Provider::WhatsApp => "whatsapp",
        }
    }

    /// The provider a stored name means.
    pub fn parse(s: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The sender's end of the signal: tenants with outbox rows, as they are posted.
pub struct Posted {
    rx: mpsc::UnboundedReceiver<TenantId>,
    mail: Mail,
}

impl Posted {
    /// The next posted tenant (`None` once every `Mail` is gone). It counts as queued
    /// until `taken` is called (once the sender holds it where a stop can see it).
    pub async fn recv(&mut self) -> Option<TenantId> {
        self.rx.recv().await
    }

    /// Counts a received tenant out of the queue.
    pub fn taken(&self) {
        self.mail.inner.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether a tenant is marked in the control db, and when it last had mail.
struct Mark {
    marked: bool,
    last: Instant,
}

struct Inner {
    control: ControlDb,
    pool: TenantPool,
    posted_tx: mpsc::UnboundedSender<TenantId>,
    posted_rx: Mutex<Option<mpsc::UnboundedReceiver<TenantId>>>,
    /// Posts not taken yet.
    queued: AtomicUsize,
    /// Tenants with mail in this process's lifetime (dropped by `tidy` once quiet). The
    /// lock of each orders marking against unmarking.
    marks: DashMap<TenantId, Arc<Mutex<Mark>>>,
}

/// The "tenant has mail" signal and its durable mark. Cheap to clone.
#[derive(Clone)]
pub struct Mail {
    inner: Arc<Inner>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Mail {
    /// The signal over `pool`'s tenants: from now on every commit that wrote outbox rows
    /// marks its tenant and posts it. Call before any tenant opens.
    pub fn new(pool: &TenantPool, control: ControlDb) -> Mail {
        let (posted_tx, posted_rx) = mpsc::unbounded_channel();
        let mail = Mail {
            inner: Arc::new(Inner {
                control,
                pool: pool.clone(),
                posted_tx,
                posted_rx: Mutex::new(Some(posted_rx)),
                queued: AtomicUsize::new(0),
                marks: DashMap::new(),
            }),
        };
        // Weak: the pool holds the listener, and the mail holds the pool.
        let weak = Arc::downgrade(&mail.inner);
        pool.listen(Arc::new(move |id: &TenantId| {
            if let Some(inner) = weak.upgrade() {
                let mail = Mail { inner };
                if let Err(e) = mail.keep(id) {
                    tracing::error!(tenant = %id, error = %e, "cannot mark a tenant with mail");
                }
                mail.post(id.clone());
            }
        }));
        mail
    }

    /// The stream of tenants with new outbox rows, for the one sender (taken once).
    pub fn posted(&self) -> Option<Posted> {
        let rx = lock(&self.inner.posted_rx).take()?;
        Some(Posted {
            rx,
            mail: self.clone(),
        })
    }

    /// Posts a tenant again (a retry that is due, or work found at start).
    pub fn post(&self, tenant: TenantId) {
        self.inner.queued.fetch_add(1, Ordering::SeqCst);
        if self.inner.posted_tx.send(tenant).is_err() {
            self.inner.queued.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Posts not taken by the sender yet.
    pub fn queued(&self) -> usize {
        self.inner.queued.load(Ordering::SeqCst)
    }

    fn mark_of(&self, tenant: &TenantId) -> Arc<Mutex<Mark>> {
        self.inner
            .marks
            .entry(tenant.clone())
            .or_insert_with(|| {
                Arc::new(Mutex::new(Mark {
                    marked: false,
                    last: Instant::now(),
                }))
            })
            .clone()
    }

    /// Makes sure a restart finds the tenant: marks it in the control db unless this
    /// process did already. Blocking; call after the row is stored (see `tidy`).
    pub fn keep(&self, tenant: &TenantId) -> Result<(), StoreError> {
        let mark = self.mark_of(tenant);
        let mut mark = lock(&mark);
        mark.last = Instant::now();
        if !mark.marked {
            self.inner.control.mark_pending(tenant)?;
            mark.marked = true;
        }
        Ok(())
    }

    /// At start: the tenants a previous process left with mail in flight (each kept marked).
    pub async fn resume(&self) -> Result<Vec<TenantId>, StoreError> {
        let control = self.inner.control.clone();
        let tenants = blocking(move || control.pending_tenants()).await?;
        for t in &tenants {
            lock(&self.mark_of(t)).marked = true;
        }
        Ok(tenants)
    }

    /// Unmarks the tenants quiet for `quiet` or longer that have nothing pending. Blocking.
    /// Under each tenant's lock, so a row stored meanwhile either is seen here or marks the
    /// tenant again after. Returns how many were unmarked.
    pub fn tidy(&self, quiet: Duration) -> usize {
        let idle: Vec<(TenantId, Arc<Mutex<Mark>>)> = self
            .inner
            .marks
            .iter()
            .filter(|e| lock(e.value()).last.elapsed() >= quiet)
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        let mut unmarked = 0;
        for (tenant, mark) in idle {
            // The connection first, the lock second: whoever holds a mark's lock never
            // waits for a tenant connection (a committing writer may wait for the lock).
            let handle = match self.inner.pool.acquire(&tenant) {
                Ok(h) => Some(h),
                Err(StoreError::NotFound(_)) => None,
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "cannot look at a quiet tenant's mail");
                    continue;
                }
            };
            let conn = match handle.as_ref().map(|h| h.conn()).transpose() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "cannot look at a quiet tenant's mail");
                    continue;
                }
            };
            let mut m = lock(&mark);
            if m.last.elapsed() < quiet {
                continue;
            }
            match conn.as_ref().map(|c| inbox::any_pending(c)).transpose() {
                Ok(Some(true)) => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(tenant = %tenant, error = %e, "cannot look at a quiet tenant's mail");
                    continue;
                }
            }
            if m.marked {
                if let Err(e) = self.inner.control.clear_pending(&tenant) {
                    tracing::warn!(tenant = %tenant, error = %e, "cannot unmark a quiet tenant");
                    continue;
                }
                m.marked = false;
            }
            drop(m);
            self.inner.marks.remove(&tenant);
            unmarked += 1;
        }
        unmarked
    }

    /// Tenants this process holds marks for (for metrics and tests).
    pub fn marked(&self) -> usize {
        self.inner.marks.len()
    }
}

/// Deletes handled inbox and outbox rows older than `cutoff` (a stamp); how many of each.
pub fn prune(conn: &rusqlite::Connection, cutoff: &str) -> rusqlite::Result<(usize, usize)> {
    // Outbox first: its rows point at inbox rows.
    // Ids grow with time: the first row at or after the cutoff bounds the old ones, and
    // finding it reads only the rows that are about to go.
    let outbox = conn.execute(
        "DELETE FROM outbox WHERE status != 'pending' AND id < coalesce(
           (SELECT id FROM outbox WHERE created_at >= ?1 ORDER BY id LIMIT 1),
           (SELECT max(id) + 1 FROM outbox))",
        [cutoff],
    )?;
    let inbox = conn.execute(
        "DELETE FROM inbox WHERE status != 'pending' AND id < coalesce(
           (SELECT id FROM inbox WHERE received_at >= ?1 ORDER BY id LIMIT 1),
           (SELECT max(id) + 1 FROM inbox))
           AND id NOT IN (SELECT inbox_id FROM outbox WHERE inbox_id IS NOT NULL)",
        [cutoff],
    )?;
    Ok((inbox, outbox))
}
