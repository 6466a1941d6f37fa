//! The pool of open tenants: an LRU of tenants, each an r2d2 pool of SQLite connections, and
//! the SQL threads that run `with_conn` work through a lane per tenant (`lane`: queued writes
//! of one tenant share a commit).
//! Invariants: a tenant is opened at most once at a time (single flight per id); a tenant
//! with a live `TenantHandle` is never evicted or closed; connections are closed outside the
//! LRU lock; everything here but `with_conn` blocks and must run off the async runtime.

use super::lane::{Group, Job, Lane, Run};
use super::{Layout, StoreError, TenantId, migrate, session, sqlite};
use lru::LruCache;
use prometheus_client::metrics::{counter::Counter, gauge::Gauge, histogram::Histogram};
use r2d2::{ManageConnection, PooledConnection};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::Connection;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// File descriptors kept free for sockets, logs and the control database.
pub const FD_RESERVE: u64 = 1024;

/// Each WAL connection holds the database, its `-wal` and its `-shm` open.
pub const FDS_PER_CONNECTION: u64 = 3;

/// Settings of the tenant pool.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Most tenants kept open at once (after `fit_to_fd_limit`).
    pub max_open: usize,
    /// A tenant unused this long is closed by `sweep_idle`.
    pub idle: Duration,
    /// A tenant unused this long gives back its page cache and prepared statements
    /// (`trim_quiet`) but stays open. Zero: never.
    pub quiet: Duration,
    /// The most recently used tenants, this many, are never trimmed however quiet.
    pub warm: usize,
    /// Most SQLite connections per open tenant.
    pub connections: u32,
    /// How long to wait for a tenant's connection or for its users to leave before failing.
    pub wait: Duration,
    /// How long one checkout of a connection may run SQL before SQLite interrupts it.
    pub statement_timeout: Duration,
    /// Whether writes are captured for the sync feed (off only to measure what it costs).
    pub capture: bool,
    /// Threads that run `with_conn` work (0: `default_threads`).
    pub threads: usize,
}

impl PoolConfig {
    /// Twice the cores, at least 4: more threads than cores, so one waiting on the disk
    /// leaves the others running, but few, so that under load a thread that finishes a job
    /// takes the next queued one without a wake-up. (On the shared runtime's blocking pool,
    /// every job woke one of dozens of idle threads: about 10% of the server's CPU per
    /// message.)
    pub fn default_threads() -> usize {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        (2 * cores).max(4)
    }

    /// Lowers `max_open` so that every open tenant at full connection count fits in
    /// `fd_limit` descriptors with `FD_RESERVE` to spare. Returns the cap it set.
    pub fn fit_to_fd_limit(&mut self, fd_limit: u64) -> usize {
        let per_tenant = FDS_PER_CONNECTION * u64::from(self.connections.max(1));
        let fits = fd_limit.saturating_sub(FD_RESERVE) / per_tenant;
        self.max_open = self.max_open.min(fits as usize).max(1);
        self.max_open
    }
}

/// Counters and gauges of the pool, shared with the metrics registry.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    /// Tenants opened from disk.
    pub opens: Counter,
    /// Tenants closed to make room.
    pub evictions_capacity: Counter,
    /// Tenants closed after idling.
    pub evictions_idle: Counter,
    /// Times an open, quiet tenant gave back its memory (`trim_quiet`).
    pub trims: Counter,
    /// Tenants open now.
    pub open_tenants: Gauge,
    /// Seconds a cold open took (stat, open, migrate check, first connection).
    pub open_seconds: Histogram,
    /// Commits on tenant files (write transactions, and writes outside one).
    pub commits: Counter,
    /// Transactions that grouped several queued writes of a tenant (group commit).
    pub group_commits: Counter,
    /// Writes that ran in such a group.
    pub grouped_writes: Counter,
}

impl Default for PoolMetrics {
    fn default() -> Self {
        let buckets = [
            0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
        ];
        PoolMetrics {
            opens: Counter::default(),
            commits: Counter::default(),
            group_commits: Counter::default(),
            grouped_writes: Counter::default(),
            evictions_capacity: Counter::default(),
            evictions_idle: Counter::default(),
            trims: Counter::default(),
            open_tenants: Gauge::default(),
            open_seconds: Histogram::new(buckets),
        }
    }
}

/// A snapshot of the pool's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct PoolStats {
    pub open: usize,
    pub max_open: usize,
    pub opens: u64,
    pub evictions: u64,
}

/// Told when the pool opens a tenant file and after it closes one (replication follows the
/// open tenants). Called from blocking code; must not block, except `settle`.
pub trait Watcher: Send + Sync {
    /// A tenant file was opened.
    fn opened(&self, id: &TenantId, path: &Path);
    /// A tenant file was closed.
    fn closed(&self, id: &TenantId, path: &Path);
    /// Returns once what was reported before is handled (before a closed file is moved or
    /// replaced).
    fn settle(&self);
}

/// The LRU of open tenants. Cheap to clone.
#[derive(Clone)]
pub struct TenantPool {
    inner: Arc<Inner>,
}

struct Inner {
    layout: Layout,
    config: PoolConfig,
    open: Mutex<LruCache<TenantId, Arc<Entry>>>,
    gates: Mutex<HashMap<TenantId, Arc<Mutex<()>>>>,
    workers: Arc<scheduled_thread_pool::ScheduledThreadPool>,
    epoch: Instant,
    metrics: PoolMetrics,
    /// Bells of tenants that are open or listened to (see `bell`).
    bells: Mutex<HashMap<TenantId, session::Bell>>,
    watcher: OnceLock<Arc<dyn Watcher>>,
    listener: OnceLock<session::CommitListener>,
    /// The runtime whose blocking pool runs `with_conn` work (its one async worker idles).
    sql: Option<tokio::runtime::Runtime>,
    /// `with_conn` work waiting for a tenant, by tenant (only while some is queued or running).
    lanes: Mutex<HashMap<TenantId, Lane>>,
    /// Tenants being moved to another machine: nobody may open them (`StoreError::Moving`).
    fenced: Mutex<std::collections::HashSet<TenantId>>,
    /// How many are fenced: `acquire` takes the lock above only when some are.
    fenced_count: AtomicUsize,
}

/// Most jobs one thread runs for a tenant before it requeues itself behind other tenants.
const JOBS_PER_TURN: usize = 32;

impl Drop for Inner {
    fn drop(&mut self) {
        // A runtime may not be dropped (waited for) inside another; nothing runs on it now
        // (each job holds the pool), so there is nothing to wait for.
        if let Some(rt) = self.sql.take() {
            rt.shutdown_background();
        }
    }
}

struct Entry {
    pool: r2d2::Pool<Manager>,
    last_used_ms: AtomicU64,
    /// When `trim_quiet` last gave back this tenant's memory (0: never).
    trimmed_ms: AtomicU64,
    /// Told when this entry goes (however the tenant is closed).
    watched: Option<(Arc<dyn Watcher>, TenantId, PathBuf)>,
}

impl Drop for Entry {
    fn drop(&mut self) {
        if let Some((watcher, id, path)) = &self.watched {
            watcher.closed(id, path);
        }
    }
}

/// A reference to an open tenant; while it lives, the tenant stays open.
pub struct TenantHandle {
    entry: Arc<Entry>,
    id: TenantId,
    statement_timeout: Duration,
}

impl TenantHandle {
    /// The tenant's id.
    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// A connection from the tenant's pool (waits while all are in use). SQL run on it
    /// after the pool's statement timeout fails with `SQLITE_INTERRUPT` instead of running on.
    pub fn conn(&self) -> Result<PooledConnection<Manager>, StoreError> {
        let conn = self.entry.pool.get()?;
        self.arm_timeout(&conn)?;
        Ok(conn)
    }

    /// Starts the statement timeout over for the next use of `conn`.
    fn arm_timeout(&self, conn: &Connection) -> Result<(), StoreError> {
        let deadline = Instant::now() + self.statement_timeout;
        conn.progress_handler(10_000, Some(move || Instant::now() > deadline))?;
        Ok(())
    }
}

/// A pooled tenant connection: a SQLite connection that captures changes to the synced
/// tables (`session`) from its first use until it closes.
pub struct TenantConn(Connection);

impl TenantConn {
    fn new(conn: Connection, notices: session::Notices) -> rusqlite::Result<TenantConn> {
        session::start(&conn, notices)?;
        Ok(TenantConn(conn))
    }
}

impl std::ops::Deref for TenantConn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.0
    }
}

impl std::ops::DerefMut for TenantConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.0
    }
}

impl Drop for TenantConn {
    fn drop(&mut self) {
        // The session must go before the connection closes.
        session::stop(&self.0);
    }
}

/// r2d2 manager for one tenant file: hands out the connection that opened and migrated the
/// file first, so a cold open pays for one SQLite open, then opens more on demand.
pub struct Manager {
    first: Mutex<Option<Connection>>,
    more: SqliteConnectionManager,
    notices: session::Notices,
}

impl ManageConnection for Manager {
    type Connection = TenantConn;
    type Error = rusqlite::Error;

    fn connect(&self) -> Result<TenantConn, rusqlite::Error> {
        let conn = match lock(&self.first).take() {
            Some(conn) => conn,
            None => self.more.connect()?,
        };
        TenantConn::new(conn, self.notices.clone())
    }

    fn is_valid(&self, conn: &mut TenantConn) -> Result<(), rusqlite::Error> {
        self.more.is_valid(conn)
    }

    fn has_broken(&self, conn: &mut TenantConn) -> bool {
        self.more.has_broken(conn)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves the data consistent (every critical
    // section is a single map operation), so poisoning is ignored.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TenantPool {
    /// A pool over the tenants of `layout`. `config.max_open` is used as given.
    pub fn new(layout: Layout, config: PoolConfig, metrics: PoolMetrics) -> Self {
        let workers = Arc::new(
            scheduled_thread_pool::ScheduledThreadPool::builder()
                .num_threads(4)
                .thread_name_pattern("tarn-sqlite-{}")
                .build(),
        );
        let threads = match config.threads {
            0 => PoolConfig::default_threads(),
            n => n,
        };
        let sql = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(threads)
            .thread_name("tarn-db")
            .build()
            .expect("a runtime for tenant SQL (threads only)");
        TenantPool {
            inner: Arc::new(Inner {
                layout,
                config,
                open: Mutex::new(LruCache::unbounded()),
                gates: Mutex::new(HashMap::new()),
                workers,
                epoch: Instant::now(),
                metrics,
                bells: Mutex::new(HashMap::new()),
                watcher: OnceLock::new(),
                listener: OnceLock::new(),
                sql: Some(sql),
                lanes: Mutex::new(HashMap::new()),
                fenced: Mutex::new(std::collections::HashSet::new()),
                fenced_count: AtomicUsize::new(0),
            }),
        }
    }

    /// Reports every open and close from now on to `watcher`. Call it once, before any
    /// tenant opens: a tenant open already would never be reported closed.
    pub fn watch(&self, watcher: Arc<dyn Watcher>) {
        debug_assert!(lock(&self.inner.open).is_empty(), "watch before any open");
        let _ = self.inner.watcher.set(watcher);
    }

    /// Tells `listener` of every commit flagged with `session::notify_on_commit` from now
    /// on. Call it once, before any tenant opens (connections open already are not told).
    pub fn listen(&self, listener: session::CommitListener) {
        debug_assert!(lock(&self.inner.open).is_empty(), "listen before any open");
        let _ = self.inner.listener.set(listener);
    }

    /// The data dir layout.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The pool's settings.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// The pool's metrics.
    pub fn metrics(&self) -> &PoolMetrics {
        &self.inner.metrics
    }

    /// Counters now.
    pub fn stats(&self) -> PoolStats {
        let m = &self.inner.metrics;
        PoolStats {
            open: lock(&self.inner.open).len(),
            max_open: self.inner.config.max_open,
            opens: m.opens.get(),
            evictions: m.evictions_capacity.get() + m.evictions_idle.get(),
        }
    }

    /// Whether the tenant is open now.
    pub fn is_open(&self, id: &TenantId) -> bool {
        lock(&self.inner.open).contains(id)
    }

    /// The open tenant, opening (and migrating) it first if needed; `Moving` while it is
    /// fenced. Blocking.
    pub fn acquire(&self, id: &TenantId) -> Result<TenantHandle, StoreError> {
        if self.is_fenced(id) {
            return Err(StoreError::Moving(id.clone()));
        }
        if let Some(handle) = self.lookup(id) {
            return Ok(handle);
        }
        self.gated(id, || match self.lookup(id) {
            Some(handle) => Ok(handle),
            None => self.open(id),
        })
    }

    /// Keeps everyone out of the tenant (it is leaving this machine) until `unfence`; those
    /// already in finish (`close_and` waits for them).
    pub fn fence(&self, id: &TenantId) {
        let mut fenced = lock(&self.inner.fenced);
        fenced.insert(id.clone());
        self.inner
            .fenced_count
            .store(fenced.len(), Ordering::SeqCst);
    }

    /// Lets users into the tenant again.
    pub fn unfence(&self, id: &TenantId) {
        let mut fenced = lock(&self.inner.fenced);
        fenced.remove(id);
        self.inner
            .fenced_count
            .store(fenced.len(), Ordering::SeqCst);
    }

    /// Whether the tenant is fenced.
    pub fn is_fenced(&self, id: &TenantId) -> bool {
        self.inner.fenced_count.load(Ordering::SeqCst) > 0 && lock(&self.inner.fenced).contains(id)
    }

    /// Creates a new tenant file with the current schema, then runs `init` on it. Fails if
    /// the file exists. Blocking.
    pub fn create(
        &self,
        id: &TenantId,
        init: impl FnOnce(&Connection) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.gated(id, || {
            let path = self.inner.layout.tenant_db(id);
            if path.exists() {
                return Err(StoreError::AlreadyExists(id.clone()));
            }
            let dir = self.inner.layout.tenant_dir(id);
            super::create_private_dir(&dir)?;
            let mut conn = sqlite::open_or_create(&path)?;
            migrate::apply(&mut conn, migrate::TENANT, &path)?;
            init(&conn)
        })
    }

    /// Closes the tenant (waiting for its users to finish, and keeping new ones out), then
    /// runs `then` while the tenant is still held closed. Blocking.
    pub fn close_and<T>(
        &self,
        id: &TenantId,
        then: impl FnOnce() -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.gated(id, || {
            let entry = lock(&self.inner.open).pop(id);
            if let Some(entry) = entry {
                self.inner.metrics.open_tenants.dec();
                let deadline = Instant::now() + self.inner.config.wait;
                while Arc::strong_count(&entry) > 1 {
                    if Instant::now() >= deadline {
                        self.insert(id, entry);
                        return Err(StoreError::Busy(id.clone()));
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                drop(entry);
            }
            // Also a close reported just before (an eviction) is handled before `then`
            // moves or replaces the file.
            if let Some(w) = self.inner.watcher.get() {
                w.settle();
            }
            then()
        })
    }

    /// Closes every tenant unused for longer than the idle time. Returns how many. Blocking.
    pub fn sweep_idle(&self) -> usize {
        let cutoff = self
            .now_ms()
            .saturating_sub(self.inner.config.idle.as_millis() as u64);
        let closed = self.take_unused(|e| e.last_used_ms.load(Ordering::Relaxed) <= cutoff);
        let n = closed.len();
        self.inner.metrics.evictions_idle.inc_by(n as u64);
        self.inner.metrics.open_tenants.dec_by(n as i64);
        drop(closed);
        self.drop_silent_bells();
        n
    }

    /// Gives back the memory of every open tenant unused for the quiet time and not trimmed
    /// since, but for the `warm` most recently used: the page cache of its idle connections
    /// and their prepared statements. The
    /// tenant stays open (its schema and file handles stay), so its next message pays for
    /// re-reading pages and re-preparing statements, not for an open. A tenant in use is
    /// skipped. Returns how many were trimmed. Blocking.
    pub fn trim_quiet(&self) -> usize {
        let quiet = self.inner.config.quiet;
        if quiet.is_zero() {
            return 0;
        }
        let now = self.now_ms();
        let cutoff = now.saturating_sub(quiet.as_millis() as u64);
        let quiet: Vec<Arc<Entry>> = lock(&self.inner.open)
            .iter()
            .skip(self.inner.config.warm)
            .filter(|(_, e)| {
                let used = e.last_used_ms.load(Ordering::Relaxed);
                used <= cutoff && used >= e.trimmed_ms.load(Ordering::Relaxed)
            })
            .map(|(_, e)| e.clone())
            .collect();
        let mut n = 0;
        for entry in quiet {
            let idle = entry.pool.state().idle_connections;
            let conns: Vec<_> = (0..idle).map_while(|_| entry.pool.try_get()).collect();
            if conns.is_empty() {
                continue;
            }
            for conn in &conns {
                sqlite::release_memory(conn);
            }
            entry.trimmed_ms.store(now.max(1), Ordering::Relaxed);
            n += 1;
        }
        self.inner.metrics.trims.inc_by(n as u64);
        n
    }

    /// The tenant's bell, rung after every commit on its pooled connections: subscribe to
    /// wait for a change without holding a connection (or the tenant open).
    pub fn bell(&self, id: &TenantId) -> session::Bell {
        lock(&self.inner.bells)
            .entry(id.clone())
            .or_insert_with(|| Arc::new(tokio::sync::watch::channel(0).0))
            .clone()
    }

    /// Forgets the bells nobody listens to and no open tenant rings: an idle tenant costs
    /// nothing.
    fn drop_silent_bells(&self) {
        let open: std::collections::HashSet<TenantId> = lock(&self.inner.open)
            .iter()
            .map(|(id, _)| id.clone())
            .collect();
        lock(&self.inner.bells).retain(|id, bell| bell.receiver_count() > 0 || open.contains(id));
    }

    /// Checkpoints and closes every tenant that is not in use. Blocking.
    pub fn close_all(&self) -> usize {
        let closed = self.take_unused(|_| true);
        let n = closed.len();
        self.inner.metrics.open_tenants.dec_by(n as i64);
        // A watcher (Litestream) holds a read on each file until it is told of the close: a
        // TRUNCATE would wait out the busy timeout on every file, so only copy what it can.
        let checkpoint = match self.inner.watcher.get() {
            Some(_) => "PRAGMA wal_checkpoint(PASSIVE)",
            None => "PRAGMA wal_checkpoint(TRUNCATE)",
        };
        for entry in &closed {
            if let Ok(conn) = entry.pool.get() {
                let _ = conn.execute_batch(checkpoint);
            }
        }
        drop(closed);
        n
    }

    /// Runs `f` on a connection of every open tenant without counting it as a use (the idle
    /// clock and LRU order stay as they are); returns how many it ran on. Blocking.
    pub fn each_open(&self, mut f: impl FnMut(&TenantId, &Connection)) -> usize {
        let entries: Vec<(TenantId, Arc<Entry>)> = lock(&self.inner.open)
            .iter()
            .map(|(id, e)| (id.clone(), e.clone()))
            .collect();
        let mut n = 0;
        for (id, entry) in entries {
            if let Ok(conn) = entry.pool.get() {
                f(&id, &conn);
                n += 1;
            }
        }
        n
    }

    /// Removes from the LRU every tenant not in use for which `pred` holds.
    fn take_unused(&self, pred: impl Fn(&Entry) -> bool) -> Vec<Arc<Entry>> {
        let mut open = lock(&self.inner.open);
        let ids: Vec<TenantId> = open
            .iter()
            .filter(|(_, e)| Arc::strong_count(e) == 1 && pred(e))
            .map(|(id, _)| id.clone())
            .collect();
        ids.iter().filter_map(|id| open.pop(id)).collect()
    }

    fn now_ms(&self) -> u64 {
        self.inner.epoch.elapsed().as_millis() as u64
    }

    fn lookup(&self, id: &TenantId) -> Option<TenantHandle> {
        let entry = lock(&self.inner.open).get(id).cloned()?;
        entry.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        Some(TenantHandle {
            entry,
            id: id.clone(),
            statement_timeout: self.inner.config.statement_timeout,
        })
    }

    /// Runs `f` holding the tenant's gate: no other open, create or close of this tenant
    /// runs meanwhile.
    fn gated<T>(&self, id: &TenantId, f: impl FnOnce() -> T) -> T {
        let gate = lock(&self.inner.gates)
            .entry(id.clone())
            .or_default()
            .clone();
        let result = {
            let _held = lock(&gate);
            f()
        };
        let mut gates = lock(&self.inner.gates);
        // Only the map and this call hold it: nobody is waiting, so the gate can go.
        if Arc::strong_count(&gate) == 2 {
            gates.remove(id);
        }
        result
    }

    fn open(&self, id: &TenantId) -> Result<TenantHandle, StoreError> {
        let started = Instant::now();
        let path = self.inner.layout.tenant_db(id);
        let mut conn = match sqlite::open_existing(&path) {
            Ok(conn) => conn,
            Err(_) if !path.exists() => return Err(StoreError::NotFound(id.clone())),
            Err(e) => return Err(e.into()),
        };
        migrate::apply(&mut conn, migrate::TENANT, &path)?;
        let manager = Manager {
            notices: session::Notices {
                bell: self.bell(id),
                capture: self.inner.config.capture,
                listener: self.inner.listener.get().map(|l| (l.clone(), id.clone())),
                commits: self.inner.metrics.commits.clone(),
            },
            first: Mutex::new(Some(conn)),
            more: SqliteConnectionManager::file(&path)
                .with_flags(sqlite::open_flags_existing())
                .with_init(|c| sqlite::configure(c)),
        };
        let pool = r2d2::Pool::builder()
            .max_size(self.inner.config.connections.max(1))
            .min_idle(Some(0))
            .idle_timeout(None)
            .max_lifetime(None)
            .test_on_check_out(false)
            .connection_timeout(self.inner.config.wait)
            .thread_pool(self.inner.workers.clone())
            .build_unchecked(manager);
        // Take the first connection into the pool now, so the open is complete when we return.
        drop(pool.get()?);
        let watched = self.inner.watcher.get().map(|w| {
            w.opened(id, &path);
            (w.clone(), id.clone(), path.clone())
        });
        let entry = Arc::new(Entry {
            pool,
            last_used_ms: AtomicU64::new(self.now_ms()),
            trimmed_ms: AtomicU64::new(0),
            watched,
        });
        self.insert(id, entry.clone());
        self.inner.metrics.opens.inc();
        self.inner
            .metrics
            .open_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(TenantHandle {
            entry,
            id: id.clone(),
            statement_timeout: self.inner.config.statement_timeout,
        })
    }

    fn insert(&self, id: &TenantId, entry: Arc<Entry>) {
        let evicted: Vec<Arc<Entry>> = {
            let mut open = lock(&self.inner.open);
            if open.put(id.clone(), entry).is_none() {
                self.inner.metrics.open_tenants.inc();
            }
            let mut evicted = Vec::new();
            while open.len() > self.inner.config.max_open {
                let victim = open
                    .iter()
                    .rev()
                    .find(|(_, e)| Arc::strong_count(e) == 1)
                    .map(|(id, _)| id.clone());
                // Everything is in use: go over the cap rather than close under a user.
                let Some(victim) = victim else { break };
                evicted.extend(open.pop(&victim));
            }
            evicted
        };
        let n = evicted.len() as u64;
        self.inner.metrics.evictions_capacity.inc_by(n);
        self.inner.metrics.open_tenants.dec_by(n as i64);
        drop(evicted);
    }
}

/// Runs blocking storage work on the blocking pool.
pub async fn blocking<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(StoreError::Join(e.to_string()).into()))
}

impl TenantPool {
    /// Runs `f` with a connection of the tenant, on the pool's own SQL threads. Work for
    /// one tenant queues in its lane and runs in order, back to back, on the thread that
    /// holds its connection (several threads when it has several connections).
    pub async fn with_conn<T, E>(
        &self,
        id: TenantId,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.submit(id, |tx| Job::alone(f, tx)).await
    }

    /// Like `with_conn`, for one write that may share its commit with the tenant's other
    /// queued writes (group commit): when others wait in the lane, `f` runs inside their
    /// shared transaction (a `sqlite::begin` in it is a savepoint), and its result comes back
    /// only once that transaction has committed. `f` must leave nothing it wrote behind when
    /// it returns `Err` (it is rolled back), and must record its changes to synced tables.
    pub async fn with_conn_grouped<T, E>(
        &self,
        id: TenantId,
        f: impl FnOnce(&mut Connection) -> Result<T, E> + Send + 'static,
    ) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
    {
        self.submit(id, |tx| Job::grouped(f, tx)).await
    }

    /// Queues the job `make` builds around the sender of its result, and waits for it.
    async fn submit<T, E>(
        &self,
        id: TenantId,
        make: impl FnOnce(tokio::sync::oneshot::Sender<Result<T, E>>) -> Job,
    ) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.queue(id, make(tx));
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Join("the tenant's job panicked".into()).into()))
    }

    /// Queues a job in the tenant's lane, and starts a thread draining it when fewer than
    /// its connection count do.
    fn queue(&self, id: TenantId, job: Job) {
        let start = {
            let mut lanes = lock(&self.inner.lanes);
            let lane = lanes.entry(id.clone()).or_default();
            lane.queue.push_back(job);
            let start = lane.draining < self.inner.config.connections.max(1);
            lane.draining += u32::from(start);
            start
        };
        if start {
            self.drain_soon(id);
        }
    }

    /// Starts a thread draining the tenant's lane (its `draining` already counts it).
    fn drain_soon(&self, id: TenantId) {
        let pool = self.clone();
        let sql = self.inner.sql.as_ref().expect("set until dropped").handle();
        sql.spawn_blocking(move || pool.drain(id));
    }

    /// Runs the tenant's queued jobs on one connection, up to `JOBS_PER_TURN`, then leaves
    /// (or requeues itself when more wait). Grouped jobs that find others queued behind
    /// them share one transaction, committed before an unrelated job runs and before the
    /// thread leaves. When the tenant cannot be opened, the next job gets the error and
    /// another turn tries again for the rest. A job that waited longer than the pool's wait
    /// fails with `Busy` unrun; one that panics fails alone.
    fn drain(&self, id: TenantId) {
        let (mut conn, handle) = match self.acquire(&id).and_then(|h| Ok((h.conn()?, h))) {
            Ok(opened) => opened,
            Err(e) => {
                if let Some((job, _)) = self.next_job(&id, true) {
                    match job.run {
                        Run::Alone(run) => run(Err(e)),
                        Run::Grouped(run) => Group::fail(run, e),
                    }
                    self.drain_soon(id);
                }
                return;
            }
        };
        let mut group = Group::default();
        let mut turns = 0;
        while turns < JOBS_PER_TURN {
            let Some((job, more)) = self.next_job(&id, !group.is_open()) else {
                if !group.is_open() {
                    return;
                }
                self.commit_group(&mut group, &mut conn, &handle);
                continue;
            };
            turns += 1;
            // Waiting in the lane is bounded like waiting for a connection was.
            let ready = match job.queued.elapsed() > self.inner.config.wait {
                true => Err(StoreError::Busy(id.clone())),
                false => handle.arm_timeout(&conn),
            };
            let run = std::panic::AssertUnwindSafe(|| match (job.run, ready) {
                (Run::Alone(run), ready) => {
                    self.commit_group(&mut group, &mut conn, &handle);
                    run(ready.map(|()| &mut **conn))
                }
                (Run::Grouped(run), Err(e)) => Group::fail(run, e),
                (Run::Grouped(run), Ok(())) if !group.is_open() && !more => {
                    Group::run_alone(&mut conn, run)
                }
                (Run::Grouped(run), Ok(())) => group.run(&mut conn, run),
            });
            if std::panic::catch_unwind(run).is_err() {
                tracing::error!(tenant = %id, "a job on the tenant's connection panicked");
            }
        }
        self.commit_group(&mut group, &mut conn, &handle);
        drop(conn);
        drop(handle);
        self.drain_soon(id);
    }

    /// Commits the connection's open group, if any, and counts it.
    fn commit_group(&self, group: &mut Group, conn: &mut Connection, handle: &TenantHandle) {
        if !group.is_open() {
            return;
        }
        // A commit is not cut short by the last member's statement timeout.
        let _ = handle.arm_timeout(conn);
        let members = group.commit(conn);
        self.inner.metrics.group_commits.inc();
        self.inner.metrics.grouped_writes.inc_by(members as u64);
    }

    /// The lane's next job, and whether another waits behind it. When the lane is empty
    /// and `leave` is set, this drainer leaves (and the lane goes once no drainer is left).
    fn next_job(&self, id: &TenantId, leave: bool) -> Option<(Job, bool)> {
        let mut lanes = lock(&self.inner.lanes);
        let lane = lanes.get_mut(id).expect("a drained lane exists");
        if let Some(job) = lane.queue.pop_front() {
            return Some((job, !lane.queue.is_empty()));
        }
        if leave {
            lane.draining -= 1;
            if lane.draining == 0 {
                lanes.remove(id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(dir: &std::path::Path, max_open: usize) -> TenantPool {
        let config = PoolConfig {
            max_open,
            idle: Duration::from_secs(300),
            quiet: Duration::from_secs(300),
            warm: 0,
            connections: 2,
            wait: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            capture: true,
            threads: 0,
        };
        TenantPool::new(Layout::new(dir), config, PoolMetrics::default())
    }

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn fd_cap_leaves_room_for_every_connection() {
        let mut c = PoolConfig {
            max_open: 4096,
            idle: Duration::from_secs(1),
            quiet: Duration::from_secs(1),
            warm: 0,
            connections: 2,
            wait: Duration::from_secs(1),
            statement_timeout: Duration::from_secs(5),
            capture: true,
            threads: 0,
        };
        let cap = c.fit_to_fd_limit(20_000);
        assert_eq!(cap, (20_000 - 1024) / 6);
        assert!(cap as u64 * 6 + FD_RESERVE <= 20_000);
        c.connections = 1;
        c.max_open = 100;
        assert_eq!(c.fit_to_fd_limit(20_000), 100);
    }

    #[test]
    fn missing_tenant_is_not_found_and_not_created() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), 4);
        assert!(matches!(
            p.acquire(&id("ghost")),
            Err(StoreError::NotFound(_))
        ));
        assert!(!p.layout().tenant_db(&id("ghost")).exists());
    }

    #[test]
    fn capacity_evicts_least_recent_but_never_in_use() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), 2);
        for t in ["a", "b", "c"] {
            p.create(&id(t), |_| Ok(())).unwrap();
        }
        let held_a = p.acquire(&id("a")).unwrap();
        drop(p.acquire(&id("b")).unwrap());
        drop(p.acquire(&id("c")).unwrap());
        assert!(p.is_open(&id("a")), "a is in use and must stay open");
        assert!(!p.is_open(&id("b")));
        assert_eq!(p.stats().open, 2);
        held_a.conn().unwrap().execute_batch("SELECT 1").unwrap();
        drop(held_a);
        assert_eq!(p.stats().evictions, 1);
    }

    #[test]
    fn idle_sweep_closes_unused_tenants_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pool(dir.path(), 8);
        Arc::get_mut(&mut p.inner).unwrap().config.idle = Duration::ZERO;
        p.create(&id("a"), |_| Ok(())).unwrap();
        p.create(&id("b"), |_| Ok(())).unwrap();
        let held = p.acquire(&id("a")).unwrap();
        drop(p.acquire(&id("b")).unwrap());
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(p.sweep_idle(), 1);
        assert!(p.is_open(&id("a")));
        drop(held);
        assert_eq!(p.sweep_idle(), 1);
        assert_eq!(p.stats().open, 0);
    }

    /// SQLite's own count of the bytes a connection's page cache and statements hold.
    fn held_bytes(conn: &Connection) -> i32 {
        let mut total = 0;
        for op in [
            rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
            rusqlite::ffi::SQLITE_DBSTATUS_STMT_USED,
        ] {
            let (mut now, mut high) = (0, 0);
            // SAFETY: a valid handle and out-pointers; no reset.
            unsafe { rusqlite::ffi::sqlite3_db_status(conn.handle(), op, &mut now, &mut high, 0) };
            total += now;
        }
        total
    }

    #[test]
    fn a_quiet_tenant_gives_back_its_memory_once_and_stays_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pool(dir.path(), 8);
        Arc::get_mut(&mut p.inner).unwrap().config.quiet = Duration::from_millis(20);
        p.create(&id("a"), |_| Ok(())).unwrap();
        p.create(&id("b"), |_| Ok(())).unwrap();
        let work = |t: &str| {
            let h = p.acquire(&id(t)).unwrap();
            let c = h.conn().unwrap();
            c.prepare_cached("SELECT count(*) FROM products")
                .unwrap()
                .query_row([], |r| r.get::<_, i64>(0))
                .unwrap();
            held_bytes(&c)
        };
        let before = work("a");
        work("b");
        let held = p.acquire(&id("b")).unwrap();
        let busy = held.conn().unwrap();
        assert_eq!(p.trim_quiet(), 0, "both were used just now");
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(
            p.trim_quiet(),
            1,
            "a is quiet; b's only idle connection is in use"
        );
        assert_eq!(
            p.trim_quiet(),
            0,
            "a was trimmed already and not used since"
        );
        let after = held_bytes(&p.acquire(&id("a")).unwrap().conn().unwrap());
        assert!(after < before / 4, "a held {before} bytes, then {after}");
        assert!(p.is_open(&id("a")) && p.is_open(&id("b")));
        drop(busy);
        drop(held);
        let again = work("a");
        assert!(
            again > after,
            "a used again fills its caches again: {after} -> {again}"
        );
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(p.trim_quiet(), 2, "a (used again) and b (now free)");
        assert_eq!(p.metrics().trims.get(), 3);
    }

    #[test]
    fn the_most_recently_used_tenants_stay_warm() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pool(dir.path(), 8);
        let config = &mut Arc::get_mut(&mut p.inner).unwrap().config;
        config.quiet = Duration::from_millis(20);
        config.warm = 1;
        for t in ["a", "b"] {
            p.create(&id(t), |_| Ok(())).unwrap();
        }
        drop(p.acquire(&id("a")).unwrap());
        drop(p.acquire(&id("b")).unwrap());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(p.trim_quiet(), 1, "a only: b is the most recently used");
        drop(p.acquire(&id("a")).unwrap());
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(p.trim_quiet(), 1, "now b only: a was used last");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_tenants_work_runs_in_order_on_the_thread_that_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pool(dir.path(), 8);
        Arc::get_mut(&mut p.inner).unwrap().config.connections = 1;
        p.create(&id("a"), |_| Ok(())).unwrap();
        p.create(&id("b"), |_| Ok(())).unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let first = tokio::spawn({
            let p = p.clone();
            async move {
                p.with_conn(id("a"), move |_| {
                    held.recv().unwrap();
                    Ok::<_, StoreError>(std::thread::current().id())
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let queued: Vec<_> = (0..3)
            .map(|i| {
                let (p, order) = (p.clone(), order.clone());
                let job = tokio::spawn(async move {
                    p.with_conn(id("a"), move |_| {
                        order.lock().unwrap().push(i);
                        Ok::<_, StoreError>(std::thread::current().id())
                    })
                    .await
                });
                std::thread::sleep(Duration::from_millis(10));
                job
            })
            .collect();
        let other = p.with_conn(id("b"), |_| Ok::<_, StoreError>(())).await;
        assert!(other.is_ok(), "b's work runs while a's thread is busy");
        assert!(
            order.lock().unwrap().is_empty(),
            "a's queued work waits its turn"
        );
        release.send(()).unwrap();
        let thread = first.await.unwrap().unwrap();
        for job in queued {
            assert_eq!(
                job.await.unwrap().unwrap(),
                thread,
                "run by the thread holding a"
            );
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2]);
        assert!(
            lock(&p.inner.lanes).is_empty(),
            "no lane is left once drained"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_work_fails_alone_panicking_missing_or_waiting_too_long() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pool(dir.path(), 8);
        Arc::get_mut(&mut p.inner).unwrap().config.wait = Duration::from_millis(100);
        Arc::get_mut(&mut p.inner).unwrap().config.connections = 1;
        p.create(&id("a"), |_| Ok(())).unwrap();
        let panics = p.with_conn(id("a"), |_| -> Result<(), StoreError> { panic!("boom") });
        assert!(matches!(panics.await, Err(StoreError::Join(_))));
        let ok = p.with_conn(id("a"), |c| {
            c.execute_batch("SELECT 1").map_err(StoreError::from)
        });
        assert!(ok.await.is_ok(), "the next job runs after a panic");
        for _ in 0..2 {
            let ghost = p.with_conn(id("ghost"), |_| Ok::<_, StoreError>(()));
            assert!(matches!(ghost.await, Err(StoreError::NotFound(_))));
        }
        let slow = tokio::spawn({
            let p = p.clone();
            async move {
                p.with_conn(id("a"), |_| {
                    std::thread::sleep(Duration::from_millis(300));
                    Ok::<_, StoreError>(())
                })
                .await
            }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let ran = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let late = p.with_conn(id("a"), {
            let ran = ran.clone();
            move |_| {
                ran.store(true, Ordering::Relaxed);
                Ok::<_, StoreError>(())
            }
        });
        assert!(matches!(late.await, Err(StoreError::Busy(_))));
        assert!(
            !ran.load(Ordering::Relaxed),
            "a job that waited too long does not run"
        );
        assert!(slow.await.unwrap().is_ok());
    }

    /// Holds tenant `t`'s lane until the returned sender is used (or dropped).
    async fn hold(p: &TenantPool, t: &str) -> std::sync::mpsc::Sender<()> {
        let (release, held) = std::sync::mpsc::channel::<()>();
        let p2 = p.clone();
        let t = id(t);
        tokio::spawn(async move {
            p2.with_conn(t, move |_| {
                let _ = held.recv();
                Ok::<_, StoreError>(())
            })
            .await
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        release
    }

    fn count(c: &Connection, sql: &str) -> i64 {
        c.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    /// `f` as a grouped write of tenant `a`, on a task of its own.
    fn spawn_write(
        p: &TenantPool,
        f: impl FnOnce(&mut Connection) -> Result<i64, StoreError> + Send + 'static,
    ) -> tokio::task::JoinHandle<Result<i64, StoreError>> {
        let p = p.clone();
        tokio::spawn(async move { p.with_conn_grouped(id("a"), f).await })
    }

    /// A grouped write: an expense of `amount`, its change recorded for sync.
    fn expense(amount: i64) -> impl FnOnce(&mut Connection) -> Result<i64, StoreError> {
        move |c| {
            let tx = sqlite::begin(c)?;
            tx.execute(
                "INSERT INTO expenses (staff_id, amount, at) VALUES (1, ?1, 'x')",
                [amount],
            )?;
            session::record(&tx, "record_expense")?;
            tx.commit()?;
            Ok(amount)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_writes_share_a_commit_and_fail_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pool(dir.path(), 8);
        Arc::get_mut(&mut p.inner).unwrap().config.connections = 1;
        p.create(&id("a"), |c| Ok(crate::shop::init_tenant(c, "USD", "UTC")?))
            .unwrap();
        let commits = p.metrics().commits.get();
        let release = hold(&p, "a").await;
        let mut jobs = Vec::new();
        for amount in [1, 2, 3] {
            jobs.push(spawn_write(&p, expense(amount)));
        }
        // Fails after writing: rolled back alone.
        jobs.push(spawn_write(&p, |c| {
            expense(100)(c)?;
            Err::<i64, _>(StoreError::Invalid("changed my mind".into()))
        }));
        // Leaves a synced change unrecorded: rolled back alone, with an error.
        jobs.push(spawn_write(&p, |c| {
            c.execute(
                "INSERT INTO expenses (staff_id, amount, at) VALUES (1, 1000, 'x')",
                [],
            )?;
            Ok::<i64, StoreError>(1000)
        }));
        jobs.push(spawn_write(&p, expense(4)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).unwrap();
        let mut results = Vec::new();
        for j in jobs {
            results.push(j.await.unwrap());
        }
        let amounts: Vec<Option<i64>> = results.iter().map(|r| r.as_ref().ok().copied()).collect();
        assert_eq!(amounts, [Some(1), Some(2), Some(3), None, None, Some(4)]);
        assert!(matches!(results[3], Err(StoreError::Invalid(_))));
        assert!(matches!(results[4], Err(StoreError::Sqlite(_))));
        let (total, logged) = p
            .with_conn(id("a"), |c| {
                Ok::<_, StoreError>((
                    count(c, "SELECT sum(amount) FROM expenses"),
                    count(
                        c,
                        "SELECT count(*) FROM sync_log WHERE what = 'record_expense'",
                    ),
                ))
            })
            .await
            .unwrap();
        assert_eq!(
            (total, logged),
            (10, 4),
            "the four kept writes, each in the feed"
        );
        assert_eq!(p.metrics().group_commits.get(), 1);
        assert_eq!(p.metrics().grouped_writes.get(), 4);
        // One commit for the four writes (and the setup's and the read's none).
        assert_eq!(p.metrics().commits.get() - commits, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_whose_commit_fails_gives_every_member_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pool(dir.path(), 8);
        Arc::get_mut(&mut p.inner).unwrap().config.connections = 1;
        p.create(&id("a"), |c| Ok(crate::shop::init_tenant(c, "USD", "UTC")?))
            .unwrap();
        let release = hold(&p, "a").await;
        let mut jobs = Vec::new();
        jobs.push(spawn_write(&p, expense(1)));
        // A foreign key checked only at commit: the whole group's commit fails.
        jobs.push(spawn_write(&p, |c| {
            c.execute_batch("PRAGMA defer_foreign_keys = ON")?;
            let tx = sqlite::begin(c)?;
            tx.execute(
                "INSERT INTO expenses (staff_id, amount, at) VALUES (999, 2, 'x')",
                [],
            )?;
            session::record(&tx, "record_expense")?;
            tx.commit()?;
            Ok::<i64, StoreError>(2)
        }));
        jobs.push(spawn_write(&p, expense(3)));
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.send(()).unwrap();
        for j in jobs {
            assert!(j.await.unwrap().is_err(), "no member hears of a success");
        }
        let written = p
            .with_conn(id("a"), |c| {
                Ok::<_, StoreError>(count(c, "SELECT count(*) FROM expenses"))
            })
            .await
            .unwrap();
        assert_eq!(written, 0);
        let again = p.with_conn_grouped(id("a"), expense(5)).await;
        assert_eq!(again.unwrap(), 5, "the tenant's next write works");
    }

    #[test]
    fn concurrent_cold_opens_open_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), 8);
        p.create(&id("cold"), |_| Ok(())).unwrap();
        std::thread::scope(|s| {
            for _ in 0..16 {
                s.spawn(|| drop(p.acquire(&id("cold")).unwrap()));
            }
        });
        assert_eq!(p.stats().opens, 1);
    }

    #[test]
    fn close_waits_for_users() {
        let dir = tempfile::tempdir().unwrap();
        let p = pool(dir.path(), 8);
        p.create(&id("t"), |_| Ok(())).unwrap();
        let held = p.acquire(&id("t")).unwrap();
        let p2 = p.clone();
        let closer = std::thread::spawn(move || p2.close_and(&id("t"), || Ok(Instant::now())));
        std::thread::sleep(Duration::from_millis(50));
        let released = Instant::now();
        drop(held);
        let closed_at = closer.join().unwrap().unwrap();
        assert!(closed_at >= released);
        assert!(!p.is_open(&id("t")));
    }
}
