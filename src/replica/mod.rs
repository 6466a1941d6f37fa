//! Continuous replication to S3-compatible storage with Litestream 0.5: tarn runs one
//! `litestream replicate` child, registers the control db and each tenant file while the
//! pool holds it open, and stops (a final sync) and unregisters it when the pool closes it.
//! Invariants: a closed tenant costs Litestream nothing; the child is restarted when it
//! dies, and what is open is registered again; commands for one file run in order; a file
//! replicates under its current lineage (the registry's), never a path another history used.

pub mod bucket;
pub mod control;
pub mod restore;
mod url;

pub use bucket::{Bucket, BucketError, Condition};
pub use url::ReplicaUrl;

use crate::config::ReplicaArgs;
use crate::control::ControlDb;
use crate::tenant::pool::Watcher;
use crate::tenant::{Layout, StoreError, TenantId};
use control::Control;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Access keys for the bucket, handed to Litestream through its environment.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

/// How replication runs.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// Where replicas go.
    pub url: ReplicaUrl,
    /// The `litestream` binary (0.5.7 or newer: the control socket).
    pub litestream: PathBuf,
    /// The bucket's keys; `None`: Litestream reads `AWS_*` from tarn's environment.
    pub credentials: Option<Credentials>,
    /// Replication failing longer than this makes `/readyz` degraded.
    pub max_failing: Duration,
}

impl ReplicaConfig {
    /// The replication settings from the flags: `None` when no URL is set, an error when
    /// the URL is not a usable `s3://` address.
    pub fn from_args(args: &ReplicaArgs) -> Result<Option<ReplicaConfig>, String> {
        let Some(url) = args.replica_url.as_deref() else {
            return Ok(None);
        };
        let mut url: ReplicaUrl = url.parse()?;
        if let Some(m) = args.machine() {
            url = url.for_machine(&m);
        }
        let credentials = match (&args.replica_access_key_id, &args.replica_secret_access_key) {
            (Some(id), Some(secret)) => Some(Credentials {
                access_key_id: id.expose().to_owned(),
                secret_access_key: secret.expose().to_owned(),
            }),
            _ => None,
        };
        Ok(Some(ReplicaConfig {
            url,
            litestream: args.litestream.clone(),
            credentials,
            max_failing: Duration::from_secs(args.replica_max_failing_secs.max(1)),
        }))
    }
}

/// The child's environment: the keys, and never `AWS_CA_BUNDLE` (Litestream's S3 client
/// fails to start with it set).
fn child_env(cmd: &mut tokio::process::Command, credentials: Option<&Credentials>) {
    cmd.env_remove("AWS_CA_BUNDLE");
    if let Some(c) = credentials {
        cmd.env("AWS_ACCESS_KEY_ID", &c.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &c.secret_access_key);
    }
}

/// One replicated file as Litestream last reported it.
#[derive(Debug, Clone, Default, serde::Serialize, schemars::JsonSchema)]
pub struct FileReplica {
    /// Litestream's position in the file's history (its last transaction id).
    pub txid: u64,
    /// When the replica last took changes.
    pub last_sync_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Why the last sync failed, if it did.
    pub error: Option<String>,
}

/// Replication as a whole, for `/readyz` and `/metrics`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Health {
    /// The Litestream child answers on its control socket.
    pub up: bool,
    /// Files registered now (the control db and the open tenants).
    pub files: usize,
    /// Files whose last sync failed.
    pub failing_files: usize,
    /// Seconds replication has been failing (child down or a file failing), if it is.
    pub failing_secs: Option<f64>,
    /// Whether it has failed for longer than allowed.
    pub degraded: bool,
    /// Times the child was (re)started.
    pub starts: u64,
}

enum Cmd {
    Open(PathBuf, String),
    Close(PathBuf),
    /// Answers once every command sent before it is done.
    Flush(std::sync::mpsc::SyncSender<()>),
    Shutdown(tokio::sync::oneshot::Sender<()>),
}

#[derive(Default)]
struct Shared {
    up: AtomicBool,
    starts: AtomicU64,
    failing_since: Mutex<Option<Instant>>,
    files: Mutex<HashMap<PathBuf, FileReplica>>,
    /// Files whose next final sync is waited for (`Replicator::await_final`), with its
    /// outcome once known: true when it reached the bucket.
    finals: Mutex<HashMap<PathBuf, Option<bool>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Records a final sync's outcome if somebody waits for it.
    fn final_outcome(&self, path: &Path, synced: bool) {
        if let Some(v) = lock(&self.finals).get_mut(path) {
            *v = Some(synced);
        }
    }

    fn failing(&self, yes: bool) {
        let mut since = lock(&self.failing_since);
        match (yes, since.is_some()) {
            (true, false) => *since = Some(Instant::now()),
            (false, true) => *since = None,
            _ => {}
        }
    }
}

/// The handle of the replication task. Cheap to share.
pub struct Replicator {
    tx: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    layout: Layout,
    url: ReplicaUrl,
    max_failing: Duration,
    /// Where each file's current lineage is kept.
    registry: ControlDb,
    bucket: Bucket,
}

impl Replicator {
    /// Starts the Litestream child and the task that drives it; the control db is
    /// registered at once. Call within a tokio runtime.
    pub fn start(
        config: ReplicaConfig,
        layout: Layout,
        registry: ControlDb,
    ) -> Result<Arc<Replicator>, BucketError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::default());
        let replicator = Arc::new(Replicator {
            tx,
            shared: shared.clone(),
            layout: layout.clone(),
            url: config.url.clone(),
            max_failing: config.max_failing,
            bucket: Bucket::new(&config.url, config.credentials.as_ref())?,
            registry: registry.clone(),
        });
        tokio::spawn(async move {
            let mut wanted = HashMap::new();
            match crate::tenant::pool::blocking(move || registry.own_lineage()).await {
                Ok(lineage) => {
                    wanted.insert(layout.control_db(), config.url.control(&lineage));
                }
                Err(e) => {
                    tracing::error!(error = %e, "replication: the registry's lineage is unknown; it is not replicated")
                }
            }
            supervise(config, layout, rx, shared, wanted).await
        });
        Ok(replicator)
    }

    /// The replica of a tenant's file, while it is open and registered.
    pub fn tenant(&self, id: &TenantId) -> Option<FileReplica> {
        lock(&self.shared.files)
            .get(&self.layout.tenant_db(id))
            .cloned()
    }

    /// Where a tenant's replica is now (`None` before its first replication). Blocking.
    pub fn tenant_url(&self, id: &TenantId) -> Result<Option<String>, StoreError> {
        Ok(self
            .registry
            .replica_lineages(id)?
            .last()
            .map(|l| self.url.tenant(id, l)))
    }

    /// Asks for the outcome of the file's next final sync (before the close that makes it).
    pub fn await_final(&self, path: &Path) {
        lock(&self.shared.finals).insert(path.to_path_buf(), None);
    }

    /// Whether the file's final sync since `await_final` reached the bucket (call after the
    /// close has settled): a tenant may leave this machine only then.
    pub fn handed_over(&self, path: &Path) -> bool {
        lock(&self.shared.finals)
            .remove(path)
            .flatten()
            .unwrap_or(false)
    }

    /// The replica bucket, for tarn's own reads and deletes.
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// Replication as a whole.
    pub fn health(&self) -> Health {
        let files = lock(&self.shared.files);
        let failing_secs = lock(&self.shared.failing_since).map(|t| t.elapsed().as_secs_f64());
        Health {
            up: self.shared.up.load(Ordering::Relaxed),
            files: files.len(),
            failing_files: files.values().filter(|f| f.error.is_some()).count(),
            failing_secs,
            degraded: failing_secs.is_some_and(|s| s > self.max_failing.as_secs_f64()),
            starts: self.shared.starts.load(Ordering::Relaxed),
        }
    }

    /// Final syncs of every registered file, then stops the child.
    pub async fn shutdown(&self) {
        let (done, wait) = tokio::sync::oneshot::channel();
        if self.tx.send(Cmd::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

impl std::fmt::Debug for Replicator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Replicator({})", self.url)
    }
}

/// Replication's gauges, read from `health` at each scrape.
impl prometheus_client::collector::Collector for Replicator {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        let h = self.health();
        for (name, help, value) in [
            (
                "replica_up",
                "Litestream answers on its control socket",
                f64::from(u8::from(h.up)),
            ),
            (
                "replica_files",
                "Files replicated now (the registry and the open tenants)",
                h.files as f64,
            ),
            (
                "replica_failing_files",
                "Replicated files whose last sync failed",
                h.failing_files as f64,
            ),
            (
                "replica_failing_seconds",
                "How long replication has been failing (0: it is not)",
                h.failing_secs.unwrap_or(0.0),
            ),
            (
                "replica_starts",
                "Times the Litestream child was started",
                h.starts as f64,
            ),
        ] {
            let gauge = prometheus_client::metrics::gauge::ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

impl Watcher for Replicator {
    fn opened(&self, id: &TenantId, path: &Path) {
        match self.registry.replica_lineage(id) {
            Ok(lineage) => {
                let _ = self
                    .tx
                    .send(Cmd::Open(path.to_path_buf(), self.url.tenant(id, &lineage)));
            }
            // Not in the registry (a file being restored or purged): nothing to replicate.
            Err(StoreError::NotFound(_)) => {}
            Err(e) => {
                tracing::error!(tenant = %id, error = %e, "replication: the tenant's lineage is unknown; it is not replicated")
            }
        }
    }

    fn closed(&self, _id: &TenantId, path: &Path) {
        let _ = self.tx.send(Cmd::Close(path.to_path_buf()));
    }

    fn settle(&self) {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        if self.tx.send(Cmd::Flush(done)).is_ok() {
            // A final sync has Litestream's own 30 s timeout per file.
            let _ = wait.recv_timeout(Duration::from_secs(120));
        }
    }
}

/// Where the child's config and control socket live.
fn paths(layout: &Layout) -> (PathBuf, PathBuf) {
    let dir = layout.root().join("_replica");
    (dir.join("litestream.yml"), dir.join("litestream.sock"))
}

/// Litestream's own config. Its L0 retention check lists two levels of every open file in
/// the bucket: once a minute instead of every 15 s, and level-0 files kept one minute past
/// their compaction instead of five, mean fewer LIST calls and shorter listings (only
/// compacted files are ever deleted; restores read level 1 and up).
fn write_config(layout: &Layout) -> std::io::Result<PathBuf> {
    let (config, socket) = paths(layout);
    let dir = config.parent().expect("a file in a folder");
    crate::tenant::create_private_dir(dir).map_err(std::io::Error::other)?;
    let yaml = format!(
        "# Written by tarn at each start: the databases are registered over the socket.\n\
         socket:\n  enabled: true\n  path: {}\n  permissions: 0600\n\
         logging:\n  level: warn\n\
         l0-retention: 1m\n\
         l0-retention-check-interval: 1m\n\
         dbs: []\n",
        serde_json::to_string(&socket.to_string_lossy()).expect("a string serializes")
    );
    std::fs::write(&config, yaml)?;
    Ok(config)
}

/// Starts `litestream replicate`, its output forwarded to tarn's log.
fn spawn(config: &ReplicaConfig, layout: &Layout) -> std::io::Result<tokio::process::Child> {
    let file = write_config(layout)?;
    let mut cmd = tokio::process::Command::new(&config.litestream);
    cmd.arg("replicate")
        .arg("-config")
        .arg(&file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    child_env(&mut cmd, config.credentials.as_ref());
    // If tarn dies without stopping it, Litestream dies too: a restarted tarn starts its
    // own, and two processes must never write one replica.
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    for out in [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        child
            .stderr
            .take()
            .map(|o| Box::new(o) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
    ]
    .into_iter()
    .flatten()
    {
        tokio::spawn(forward_log(out));
    }
    Ok(child)
}

async fn forward_log(out: Box<dyn tokio::io::AsyncRead + Send + Unpin>) {
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(out).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        // Said at every start: the databases come over the socket, not in the config.
        if line.contains("no databases specified in configuration") {
            tracing::debug!(target: "litestream", "{line}");
        } else if line.contains("level=ERROR") {
            tracing::error!(target: "litestream", "{line}");
        } else {
            tracing::warn!(target: "litestream", "{line}");
        }
    }
}

/// The supervising task: (re)starts the child, applies open/close commands, polls health.
async fn supervise(
    config: ReplicaConfig,
    layout: Layout,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    shared: Arc<Shared>,
    mut wanted: HashMap<PathBuf, String>,
) {
    let control = Control::new(&paths(&layout).1);
    let mut backoff = Duration::from_secs(1);
    loop {
        match run_child(&config, &layout, &control, &mut rx, &shared, &mut wanted).await {
            Ran::ShutDown => return,
            Ran::Healthy => backoff = Duration::from_secs(1),
            Ran::Failed => backoff = (backoff * 2).min(Duration::from_secs(30)),
        }
        shared.up.store(false, Ordering::Relaxed);
        shared.failing(true);
        lock(&shared.files).clear();
        // Wait before restarting, still taking commands (a closed file is simply no
        // longer wanted; its final sync happens when it is next opened).
        let until = tokio::time::Instant::now() + backoff;
        loop {
            tokio::select! {
                cmd = rx.recv() => {
                    if !cmd.is_some_and(|cmd| apply_offline(cmd, &mut wanted, &shared)) {
                        return;
                    }
                }
                () = tokio::time::sleep_until(until) => break,
            }
        }
    }
}

/// Applies a command while Litestream is down; false once it says to shut down.
fn apply_offline(cmd: Cmd, wanted: &mut HashMap<PathBuf, String>, shared: &Shared) -> bool {
    match cmd {
        Cmd::Open(path, url) => {
            wanted.insert(path, url);
        }
        Cmd::Close(path) => {
            wanted.remove(&path);
            shared.final_outcome(&path, false);
        }
        Cmd::Flush(done) => {
            let _ = done.try_send(());
        }
        Cmd::Shutdown(done) => {
            let _ = done.send(());
            return false;
        }
    }
    true
}

/// Socket calls (registrations and final syncs) run at once, at most: Litestream never
/// holds more than the open files and this many more.
const MAX_IN_FLIGHT: usize = 32;

/// The socket calls under way: in order for one file, side by side across files (a
/// shutdown closes every tenant at once), and no more than `MAX_IN_FLIGHT`.
#[derive(Default)]
struct InFlight(HashMap<PathBuf, tokio::task::JoinHandle<()>>);

impl InFlight {
    /// Starts `call` for `path` once the file's earlier call is done and a place is free.
    async fn run(&mut self, path: PathBuf, call: impl Future<Output = ()> + Send + 'static) {
        if let Some(earlier) = self.0.remove(&path) {
            let _ = earlier.await;
        }
        self.0.retain(|_, task| !task.is_finished());
        while self.0.len() >= MAX_IN_FLIGHT {
            let Some(any) = self.0.keys().next().cloned() else {
                break;
            };
            if let Some(task) = self.0.remove(&any) {
                let _ = task.await;
            }
        }
        self.0.insert(path, tokio::spawn(call));
    }

    /// Waits for every call under way.
    async fn drain(&mut self) {
        for (_, task) in self.0.drain() {
            let _ = task.await;
        }
    }
}

enum Ran {
    ShutDown,
    /// It ran a while, then died.
    Healthy,
    /// It did not come up, or died at once.
    Failed,
}

async fn run_child(
    config: &ReplicaConfig,
    layout: &Layout,
    control: &Control,
    rx: &mut mpsc::UnboundedReceiver<Cmd>,
    shared: &Arc<Shared>,
    wanted: &mut HashMap<PathBuf, String>,
) -> Ran {
    shared.starts.fetch_add(1, Ordering::Relaxed);
    let mut child = match spawn(config, layout) {
        Ok(child) => child,
        Err(e) => {
            tracing::error!(litestream = %config.litestream.display(), error = %e, "replication: cannot start litestream");
            return Ran::Failed;
        }
    };
    let started = Instant::now();
    let mut up = false;
    for _ in 0..100 {
        if control.alive().await {
            up = true;
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            tracing::error!(%status, "replication: litestream exited at start");
            return Ran::Failed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !up {
        tracing::error!("replication: litestream's control socket did not answer within 10 s");
        return Ran::Failed;
    }
    tracing::info!(files = wanted.len(), "replication: litestream is up");
    shared.up.store(true, Ordering::Relaxed);
    for (path, url) in wanted.iter() {
        register(control, shared, path, url).await;
    }
    refresh(control, shared).await;
    let mut poll = tokio::time::interval(Duration::from_secs(2));
    let mut calls = InFlight::default();
    loop {
        tokio::select! {
            status = child.wait() => {
                tracing::error!(status = ?status.ok(), "replication: litestream exited; restarting it");
                return if started.elapsed() > Duration::from_secs(30) { Ran::Healthy } else { Ran::Failed };
            }
            cmd = rx.recv() => match cmd {
                Some(Cmd::Open(path, url)) => {
                    wanted.insert(path.clone(), url.clone());
                    let (c, s) = (control.clone(), shared.clone());
                    calls.run(path.clone(), async move { register(&c, &s, &path, &url).await }).await;
                }
                Some(Cmd::Close(path)) => {
                    wanted.remove(&path);
                    let (c, s) = (control.clone(), shared.clone());
                    calls.run(path.clone(), async move { release(&c, &s, &path).await }).await;
                }
                Some(Cmd::Flush(done)) => {
                    calls.drain().await;
                    let _ = done.try_send(());
                }
                Some(Cmd::Shutdown(done)) => {
                    for path in wanted.keys() {
                        let (c, s, path) = (control.clone(), shared.clone(), path.clone());
                        calls.run(path.clone(), async move { release(&c, &s, &path).await }).await;
                    }
                    calls.drain().await;
                    terminate(&mut child).await;
                    let _ = done.send(());
                    return Ran::ShutDown;
                }
                None => {
                    terminate(&mut child).await;
                    return Ran::ShutDown;
                }
            },
            _ = poll.tick() => refresh(control, shared).await,
        }
    }
}

async fn register(control: &Control, shared: &Shared, path: &Path, url: &str) {
    match control.register(path, url).await {
        Ok(()) => {
            lock(&shared.files).entry(path.to_path_buf()).or_default();
        }
        Err(e) => {
            tracing::error!(file = %path.display(), error = %e, "replication: cannot register");
            lock(&shared.files).insert(
                path.to_path_buf(),
                FileReplica {
                    error: Some(e.to_string()),
                    ..Default::default()
                },
            );
        }
    }
}

/// A final sync (tried a few times), then forget the file.
async fn release(control: &Control, shared: &Shared, path: &Path) {
    let mut wait = Duration::from_secs(1);
    let mut synced = false;
    for attempt in 1..=4 {
        match control.sync(path).await {
            Ok(txid) => {
                tracing::debug!(file = %path.display(), txid, "replication: final sync");
                synced = true;
                break;
            }
            Err(e) if attempt < 4 => {
                tracing::warn!(file = %path.display(), error = %e, attempt, "replication: final sync failed; retrying");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(e) => {
                shared.failing(true);
                tracing::error!(file = %path.display(), error = %e, "replication: final sync failed; the replica may miss the last writes");
            }
        }
    }
    // Litestream's own last sync of what it holds, and it lets go of the file.
    if let Err(e) = control.stop(path).await {
        tracing::error!(file = %path.display(), error = %e, "replication: stop failed");
        synced = false;
    }
    shared.final_outcome(path, synced);
    if let Err(e) = control.unregister(path).await {
        tracing::warn!(file = %path.display(), error = %e, "replication: cannot unregister");
    }
    lock(&shared.files).remove(path);
}

/// Reads each registered file's last sync from Litestream.
async fn refresh(control: &Control, shared: &Shared) {
    let (listed, states) = match tokio::join!(control.list(), control.sync_states()) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "replication: cannot read litestream's status");
            shared.failing(true);
            return;
        }
    };
    let errors: HashMap<String, SyncFacts> = states
        .into_iter()
        .map(|s| (s.path, (s.txid, s.error.filter(|e| !e.is_empty()))))
        .collect();
    let mut files = lock(&shared.files);
    for l in listed {
        if let Some(f) = files.get_mut(Path::new(&l.path)) {
            let (txid, error) = errors.get(&l.path).cloned().unwrap_or_default();
            *f = FileReplica {
                txid,
                last_sync_at: l.last_sync_at,
                error,
            };
        }
    }
    let failing = files.values().any(|f| f.error.is_some());
    drop(files);
    shared.failing(failing);
}

type SyncFacts = (u64, Option<String>);

/// SIGTERM (Litestream then syncs what it holds), a kill after 30 s.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        if tokio::time::timeout(Duration::from_secs(30), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}
