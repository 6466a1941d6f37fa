//! Logs (tracing, human or JSON) and Prometheus metrics for one server instance.
//! Invariant: each `Metrics` owns its own registry (no global state), so several servers in
//! one process (the tests) never mix their numbers.

use crate::config::LogFormat;
use crate::tenant::pool::PoolMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::{counter::Counter, family::Family};
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Installs the global tracing subscriber (`RUST_LOG` filters, default `info`, with
/// tokio-cron-scheduler's start-up chatter at `warn`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,tokio_cron_scheduler=warn"));
    use std::io::IsTerminal;
    // Colour codes only for a person at a terminal, never in files or log collectors.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Labels of the HTTP request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

/// The server's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub http_requests: Family<HttpLabels, Counter>,
}

impl Metrics {
    /// A registry with the HTTP counters, the given pool metrics, the control db's uses and,
    /// when replicating, replication's gauges; when the LLM parser is on, its asks.
    pub fn new(
        pool: &PoolMetrics,
        control: &crate::control::ControlDb,
        replica: Option<Arc<crate::replica::Replicator>>,
        llm: Option<&crate::llm::LlmMetrics>,
    ) -> Self {
        let mut registry = Registry::with_prefix("tarn");
        registry.register(
            "build",
            "The running tarn's version",
            prometheus_client::metrics::info::Info::new(vec![(
                "version".to_owned(),
                env!("CARGO_PKG_VERSION").to_owned(),
            )]),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            http_requests.clone(),
        );
        registry.register(
            "tenant_opens",
            "Tenants opened from disk",
            pool.opens.clone(),
        );
        registry.register(
            "tenant_evictions_capacity",
            "Tenants closed to make room",
            pool.evictions_capacity.clone(),
        );
        registry.register(
            "tenant_evictions_idle",
            "Tenants closed after idling",
            pool.evictions_idle.clone(),
        );
        registry.register(
            "tenant_trims",
            "Times an open tenant, quiet for a while, gave back its page cache and statements",
            pool.trims.clone(),
        );
        registry.register(
            "open_tenants",
            "Tenants open now",
            pool.open_tenants.clone(),
        );
        registry.register(
            "tenant_open_seconds",
            "Time to open a tenant from disk",
            pool.open_seconds.clone(),
        );
        registry.register(
            "tenant_commits",
            "Commits on tenant files",
            pool.commits.clone(),
        );
        registry.register(
            "tenant_group_commits",
            "Commits that several queued writes of one tenant shared (group commit)",
            pool.group_commits.clone(),
        );
        registry.register(
            "tenant_grouped_writes",
            "Writes that shared a commit with others of their tenant",
            pool.grouped_writes.clone(),
        );
        registry.register(
            "control_db_uses",
            "Uses of the control database (connections taken from its pool)",
            control.uses(),
        );
        if let Some(replica) = replica {
            registry.register_collector(Box::new(replica));
        }
        if let Some(llm) = llm {
            register_llm(&mut registry, llm);
        }
        Metrics {
            registry: Arc::new(registry),
            http_requests,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

fn register_llm(registry: &mut Registry, llm: &crate::llm::LlmMetrics) {
    registry.register(
        "llm_asks",
        "Messages the LLM parser was asked about, by how the ask ended",
        llm.asks.clone(),
    );
    registry.register(
        "llm_ask_seconds",
        "Time an ask sent to the LLM took (retries and the one repair included)",
        llm.ask_seconds.clone(),
    );
    registry.register(
        "llm_prompt_tokens",
        "Prompt tokens the LLM backend reported",
        llm.prompt_tokens.clone(),
    );
    registry.register(
        "llm_completion_tokens",
        "Completion tokens the LLM backend reported",
        llm.completion_tokens.clone(),
    );
    registry.register(
        "llm_ungrounded",
        "Valid LLM actions not applied: a number or name they carry is not in the message",
        llm.ungrounded.clone(),
    );
}
