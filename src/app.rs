//! Builds and runs the server: data dir lock, admin token, fd limit, store, router,
//! background sweeps, graceful shutdown. Invariant: one server per data dir (an exclusive
//! lock on `<data_dir>/_server.lock`); on shutdown every tenant is checkpointed and closed.

use crate::config::{ServeConfig, StoreArgs};
use crate::control::ControlDb;
use crate::http::{self, AppState};
use crate::replica::ReplicaConfig;
use crate::store::Store;
use crate::system;
use crate::telemetry::Metrics;
use crate::tenant::pool::{PoolMetrics, blocking};
use crate::tenant::{Layout, PoolConfig, StoreError, TenantPool, sqlite};
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Why the server (or a CLI command on the data dir) could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("data dir {0} is in use by another tarn process (stop it, or use its HTTP API)")]
    Locked(PathBuf),
    #[error("LLM client: {0}")]
    Llm(String),
    #[error("could not create the demo tenant: {0}")]
    Demo(String),
    #[error("SQLite {0} is too old: 3.51.3 or newer is required")]
    OldSqlite(&'static str),
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    #[error(transparent)]
    Replica(#[from] crate::replica::BucketError),
    #[error("TARN_REPLICA_URL: {0}")]
    ReplicaUrl(String),
    #[error("placement: {0}")]
    Placement(String),
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StartError {
    let path = path.to_path_buf();
    move |source| StartError::Io { what, path, source }
}

/// An exclusive hold on a data dir, released on drop.
pub struct DataDirLock {
    _file: File,
}

/// Creates the data dir if needed (mode 0700; an existing one is made 0700 too: it holds
/// every shop's books) and locks it for this process.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, StartError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    crate::tenant::create_private_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io_err("cannot make private", dir))?;
    let path = dir.join("_server.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_err("cannot open", &path))?;
    match file.try_lock() {
        Ok(()) => Ok(DataDirLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io_err("cannot lock", &path)(e)),
    }
}

/// The store of a data dir with the pool sized to this process's open-file limit.
pub fn open_store(args: &StoreArgs, pool_metrics: PoolMetrics) -> Result<Store, StartError> {
    if !sqlite::version_ok() {
        return Err(StartError::OldSqlite(rusqlite::version()));
    }
    let layout = Layout::new(&args.data_dir);
    let mut pool_config = PoolConfig {
        max_open: args.max_open_tenants,
        idle: Duration::from_secs(args.tenant_idle_secs),
        quiet: Duration::from_secs(args.tenant_quiet_secs),
        warm: args.tenant_warm,
        connections: args.tenant_connections.max(1),
        wait: Duration::from_secs(10),
        statement_timeout: Duration::from_millis(args.statement_timeout_ms.max(1)),
        capture: args.sync_capture,
        threads: args.tenant_threads,
    };
    let fd_limit = system::raise_fd_limit();
    let cap = pool_config.fit_to_fd_limit(fd_limit);
    if cap < args.max_open_tenants {
        tracing::warn!(
            fd_limit,
            requested = args.max_open_tenants,
            cap,
            "open-tenant cap lowered to fit the open-file limit"
        );
    }
    let control = ControlDb::open(&layout)?;
    Ok(Store::new(
        control,
        TenantPool::new(layout, pool_config, pool_metrics),
    ))
}

fn print_demo(api_key: Option<&str>, listen: SocketAddr, data_dir: &Path) {
    let dir = data_dir.display();
    let key = match api_key {
        Some(k) => format!("Its API key (shown once): {k}\n  KEY={k}"),
        None => {
            format!("It already existed; use the operator token:\n  KEY=$(cat {dir}/_admin_token)")
        }
    };
    println!(
        "\nDemo shop `demo` is ready (Rice, Sugar, Cooking Oil, Eggs, Milk, Bread; customers \
         Ahmed, Fatima, John; staff Owner, Mary (manager), Musa (driver), Sam (staff)).\n\
         {key}\n\
         Talk to it:\n  \
         curl -s http://{listen}/v1/tenants/demo/messages -H \"Authorization: Bearer $KEY\" \\\n    \
         -H 'content-type: application/json' -d '{{\"text\": \"/sale 3 rice to Ahmed\", \"sender\": \"Sam\"}}'\n\
         or from a terminal:  cargo run --release -- chat demo --as Sam --data-dir {dir}\n"
    );
}

/// A bound, ready-to-run server.
pub struct App {
    listener: TcpListener,
    state: AppState,
    _lock: DataDirLock,
}

impl App {
    /// Locks the data dir, opens the store and binds the listener.
    pub async fn build(config: ServeConfig) -> Result<App, StartError> {
        // The port first: a server that cannot listen creates nothing.
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError::Io {
                what: "cannot listen on",
                path: config.listen.to_string().into(),
                source: e,
            })?;
        let lock = lock_data_dir(&config.store.data_dir)?;
        // Snapshots a crash left half-written (only a server, holding the lock, uses it).
        let _ = std::fs::remove_dir_all(Layout::new(&config.store.data_dir).tmp_dir());
        let admin_token = crate::token::OperatorToken::load(
            config.admin_token.as_ref(),
            &config.store.data_dir,
            config.listen.ip().is_loopback(),
        )?;
        let pool_metrics = PoolMetrics::default();
        let args = config.store.clone();
        let metrics_of_pool = pool_metrics.clone();
        let store = blocking(move || open_store(&args, metrics_of_pool)).await?;
        let replica_config =
            ReplicaConfig::from_args(&config.replica).map_err(StartError::ReplicaUrl)?;
        let replica = match replica_config.clone() {
            Some(c) => {
                tracing::info!(url = %c.url, litestream = %c.litestream.display(), "replication on");
                let layout = Layout::new(&config.store.data_dir);
                let r = crate::replica::Replicator::start(c, layout, store.control().clone())?;
                Some(r)
            }
            None => None,
        };
        let llm = match crate::llm::LlmConfig::from_args(&config.llm) {
            Some(c) => {
                tracing::info!(base_url = %c.base_url, model = %c.model, "LLM parser on");
                Some(
                    crate::llm::LlmClient::new(c, &config.prompts_dir)
                        .map_err(|e| StartError::Llm(e.to_string()))?,
                )
            }
            None => None,
        };
        let metrics = Metrics::new(
            &pool_metrics,
            store.control(),
            replica.clone(),
            llm.as_ref().map(|l| l.metrics()),
        );
        if let Some(r) = &replica {
            // Before anything opens a tenant, so every open is replicated.
            store.pool().watch(r.clone());
        }
        let placement = match crate::placement::PlacementConfig::from_args(
            &config.placement,
            config.replica.machine(),
            listener.local_addr().unwrap_or(config.listen),
            config.admin_token.as_ref(),
            replica_config.as_ref(),
            config.max_body_bytes,
        )
        .map_err(StartError::Placement)?
        {
            Some(c) => {
                let r = replica
                    .clone()
                    .expect("placement is configured only with replication");
                tracing::info!(machine = %c.me, url = %c.url, "placement on");
                let p = crate::placement::Placement::new(c, store.clone(), r);
                // Before the channels resume tenants: a half-done move is settled first.
                p.recover()
                    .await
                    .map_err(|e| StartError::Placement(e.to_string()))?;
                Some(p)
            }
            None => None,
        };
        // Before anything opens a tenant too: every commit with outbox rows is posted.
        let mail = crate::mail::Mail::new(store.pool(), store.control().clone());
        if config.demo {
            let s = store.clone();
            let listen = listener.local_addr().unwrap_or(config.listen);
            let demo = blocking(move || {
                crate::demo::ensure(&s).map_err(|e| StartError::Demo(e.to_string()))
            })
            .await?;
            print_demo(
                demo.as_ref().map(|c| c.api_key.as_str()),
                listen,
                &config.store.data_dir,
            );
        }
        let channels = crate::channel::Channels::start(
            store.clone(),
            mail,
            llm.clone(),
            crate::channel::ChannelConfig {
                telegram_api: config.telegram_api_url.clone(),
                whatsapp_api: config.whatsapp_api_url.clone(),
                whatsapp_template: config.whatsapp_alert_template.clone(),
                chat_gap: Duration::from_millis(config.chat_gap_ms),
                telegram_per_second: config.telegram_bot_rate,
            },
        );
        let sched = &config.scheduler;
        let scheduler = crate::scheduler::Scheduler::new(
            store.clone(),
            llm.clone(),
            crate::scheduler::SchedulerConfig {
                tick: Duration::from_millis(sched.tick_ms.max(10)),
                grace: Duration::from_secs(sched.grace_secs),
                concurrency: sched.job_concurrency.max(1),
                ..Default::default()
            },
        );
        let state = AppState::new(crate::http::Shared {
            limits: Arc::new(crate::http::limit::Limits::new(&config)),
            channels,
            scheduler,
            llm,
            store,
            metrics,
            admin_token: Arc::new(admin_token),
            config: Arc::new(config),
            replica,
            placement,
        });
        Ok(App {
            listener,
            state,
            _lock: lock,
        })
    }

    /// The address actually bound (for `127.0.0.1:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and closes every
    /// tenant.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self.local_addr();
        let pool = self.state.store.pool().clone();
        let channels = self.state.channels.clone();
        let replica = self.state.replica.clone();
        let sched = &self.state.config.scheduler;
        let mut housekeeping = crate::scheduler::housekeeping::start(
            self.state.store.clone(),
            crate::scheduler::housekeeping::HousekeepingConfig {
                retention: crate::scheduler::housekeeping::Retention {
                    days: sched.retention_days,
                    sync_days: sched.sync_retention_days,
                    sync_rows: sched.sync_retention_rows,
                },
                run_retention_days: sched.run_retention_days,
                trash_retention_days: sched.trash_retention_days,
                replica: replica.clone(),
                checkpoint_every: Duration::from_secs(sched.checkpoint_secs.max(1)),
            },
        )
        .await
        .map_err(|e| std::io::Error::other(format!("housekeeping did not start: {e}")))?;
        let ticker = sched.enabled.then(|| self.state.scheduler.clone().spawn());
        let announcing = self
            .state
            .placement
            .as_ref()
            .map(|p| p.keep_announcing(Duration::from_secs(30)));
        tracing::info!(%addr, max_open_tenants = pool.config().max_open, scheduler = sched.enabled, "tarn listening");
        let router = http::router(self.state);
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        if let Some(t) = ticker {
            t.abort();
        }
        if let Some(a) = announcing {
            a.abort();
        }
        if let Err(e) = housekeeping.shutdown().await {
            tracing::warn!(error = %e, "housekeeping did not stop cleanly");
        }
        channels.stop().await;
        let closed = tokio::task::spawn_blocking(move || pool.close_all())
            .await
            .unwrap_or(0);
        if let Some(replica) = replica {
            // The closed tenants' and the registry's final syncs, then Litestream stops.
            replica.shutdown().await;
        }
        tracing::info!(closed, "tarn stopped; tenants checkpointed and closed");
        served
    }
}

/// Resolves on ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
