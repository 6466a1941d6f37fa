//! Command line and environment configuration (`clap`, every flag also a `TARN_*` variable).
//! Invariant: secrets are wrapped in `Secret`, whose `Debug` never shows the value.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// A value that must not appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// tarn: run a shop from the chat apps you already use.
#[derive(Debug, Parser)]
#[command(name = "tarn", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve(Box<ServeConfig>),
    /// Manage tenants directly on the data dir (refused while a server runs on it).
    Tenant {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// A shop's staff: their linked chats and join codes (works beside a running server).
    Staff {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// Deleted tenants waiting in the trash: list them, or purge them for good.
    Trash {
        #[command(flatten)]
        store: StoreArgs,
        /// Where purged copies' replicas are removed from.
        #[command(flatten)]
        replica: ReplicaArgs,
        #[command(subcommand)]
        command: TrashCommand,
    },
    /// The operator token generated into the data dir: show it, or replace it (a running
    /// server takes the new one at once).
    Token {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Talk to a tenant's shop from the terminal, as a staff member.
    Chat {
        #[command(flatten)]
        store: StoreArgs,
        /// The tenant.
        tenant: String,
        /// Staff name or id to speak as (default: the shop's owner).
        #[arg(long = "as")]
        sender: Option<String>,
        /// The LLM, for messages the built-in parser is not sure of (as for `serve`).
        #[command(flatten)]
        llm: LlmArgs,
        /// Folder of the prompt files.
        #[arg(long, env = "TARN_PROMPTS_DIR", default_value = "./prompts")]
        prompts_dir: PathBuf,
    },
    /// Copy tenant files (and the control db) to DIR as consistent snapshots; safe while a
    /// server runs on the data dir.
    Backup {
        #[command(flatten)]
        store: StoreArgs,
        /// Back up every registered tenant.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Tenants to back up.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Where to write the backup (laid out like a data dir).
        #[arg(long)]
        to: PathBuf,
        /// Files copied at once.
        #[arg(long, env = "TARN_BACKUP_WORKERS", default_value_t = 4)]
        workers: usize,
    },
    /// Put tenant files back from a backup made by `tarn backup`, or from the replicas in
    /// the bucket (refused while a server runs).
    Restore {
        #[command(flatten)]
        store: StoreArgs,
        /// The backup directory.
        #[arg(
            long,
            required_unless_present = "from_replica",
            conflicts_with = "from_replica"
        )]
        from: Option<PathBuf>,
        /// Restore from `TARN_REPLICA_URL` instead (with --all, the registry too when the
        /// data dir has none).
        #[arg(long)]
        from_replica: bool,
        /// With --from-replica: as the files were at this moment (RFC 3339, like
        /// 2026-11-26T10:15:00Z), not at their latest.
        #[arg(long, requires = "from_replica")]
        timestamp: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        replica: ReplicaArgs,
        /// Restore every tenant in the backup.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Tenants to restore.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Replace tenant files that exist.
        #[arg(long)]
        force: bool,
    },
    /// Check tenant files: `quick_check`, or `integrity_check` with --full; safe beside a
    /// running server. Exits non-zero if any file fails.
    Check {
        #[command(flatten)]
        store: StoreArgs,
        /// Check every registered tenant (and the control db).
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Tenants to check.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Full `integrity_check` instead of `quick_check`.
        #[arg(long)]
        full: bool,
        /// Files checked at once.
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Load harness: builds tenants in a scratch dir, drives messages through a `tarn serve`
    /// child over loopback, compares with rusqlite directly, checks the books.
    Bench(BenchArgs),
    /// Score the parser on labelled messages, routed as the server would (see README).
    Eval(Box<EvalArgs>),
    /// Where tenants live when several machines serve them: list, show, move, drain (through
    /// a server's API; a request for a tenant is followed to the machine that owns it).
    Placement {
        /// Base URL of any machine's API (or of the proxy in front of them).
        #[arg(
            long,
            env = "TARN_PLACEMENT_VIA",
            default_value = "http://127.0.0.1:8080"
        )]
        via: String,
        /// The operator token the machines share.
        #[arg(long, env = "TARN_ADMIN_TOKEN", hide_env_values = true)]
        token: Secret,
        #[command(subcommand)]
        command: PlacementCommand,
    },
    /// Bring tenant files to this binary's schema.
    Migrate {
        #[command(flatten)]
        store: StoreArgs,
        /// Migrate every registered tenant.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Migrate one tenant.
        #[arg(required_unless_present = "all")]
        id: Option<String>,
        /// Tenants migrated at once.
        #[arg(long, env = "TARN_MIGRATE_WORKERS", default_value_t = 4)]
        workers: usize,
    },
}

/// Settings of `tarn bench` (build it with `--release`).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Tenants created.
    #[arg(long, default_value_t = 1000)]
    pub tenants: usize,
    /// Tenants that get traffic (popularity Zipf, s = 1.1, over the first N); the rest
    /// only sit on disk. Default: all.
    #[arg(long)]
    pub active: Option<usize>,
    /// Messages sent (70% sales, 10% stock checks, 10% restocks, 5% payments, 5% reports).
    #[arg(long, default_value_t = 20_000)]
    pub messages: usize,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// The server's open-tenant cap.
    #[arg(long, default_value_t = 4096)]
    pub max_open_tenants: usize,
    /// Stop sending after this many seconds even if messages are left.
    #[arg(long)]
    pub duration: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Keep the scratch data dir (its path is printed).
    #[arg(long)]
    pub keep: bool,
    /// Deliver the messages as Telegram updates to the webhook (with its secret) instead of
    /// `POST /messages`: each active tenant gets a bot on a local Bot API stand-in, and the
    /// report adds the end-to-end time until each reply reaches it.
    #[arg(long)]
    pub webhook: bool,
    /// With --webhook: the server's least gap between two replies to one chat, in ms
    /// (Telegram wants about 1000; 0 measures tarn rather than Telegram's pacing).
    #[arg(long, default_value_t = 0)]
    pub chat_gap_ms: u64,
    /// With --webhook: the server's most replies a second per bot (Telegram allows about 30;
    /// 0: no limit).
    #[arg(long, default_value_t = 0)]
    pub bot_rate: u32,
    /// Use this data dir instead of a scratch one, and keep it: tenants missing from it are
    /// built, those already there are reused (a second run skips the build).
    #[arg(long)]
    pub data_dir: Option<std::path::PathBuf>,
}

/// Settings of `tarn eval`.
#[derive(Debug, Clone, Args)]
pub struct EvalArgs {
    /// Labelled messages, one JSON object a line: {"text": "…", "expect": {action…}}.
    pub file: PathBuf,
    /// The shop's names: {"products": […], "customers": […], "staff": [["Mary", "manager"]]}
    /// (default: parse_lexicon.json beside FILE).
    #[arg(long)]
    pub lexicon: Option<PathBuf>,
    /// Ask the LLM (TARN_LLM_*) when the built-in parser is not sure, as the server does.
    #[arg(long)]
    pub llm: bool,
    /// With --llm: ask the LLM about every message, as if the built-in parser were never
    /// sure (the model's own answers are scored too).
    #[arg(long, requires = "llm")]
    pub llm_all: bool,
    /// Print every message that did not match its label.
    #[arg(long)]
    pub misses: bool,
    /// Minor-unit digits of the shop's currency.
    #[arg(long, default_value_t = 2)]
    pub digits: u32,
    #[command(flatten)]
    pub llm_args: LlmArgs,
    /// Folder of the prompt files.
    #[arg(long, env = "TARN_PROMPTS_DIR", default_value = "./prompts")]
    pub prompts_dir: PathBuf,
}

/// Tenant subcommands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Register a tenant and create its database; prints its API key once.
    Create {
        id: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        timezone: Option<String>,
    },
    /// List active tenants.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        after: Option<String>,
    },
    /// Show one tenant.
    Show { id: String },
    /// Move a tenant's files to the trash (recoverable with `restore`).
    Delete { id: String },
    /// Bring a deleted tenant back from the trash; prints a new API key.
    Restore { id: String },
}

/// Placement subcommands.
#[derive(Debug, Subcommand)]
pub enum PlacementCommand {
    /// The machines (with their tenant counts) and where each tenant is.
    List {
        /// Most tenants listed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Which machine owns a tenant.
    Show { tenant: String },
    /// Move a tenant to a machine (it answers 503, retry, for the move's few seconds).
    Move { tenant: String, machine: String },
    /// Move every tenant off a machine, each to the machine with the fewest, and place
    /// nothing new on it.
    Drain { machine: String },
}

/// Trash subcommands.
#[derive(Debug, Subcommand)]
pub enum TrashCommand {
    /// List the trashed copies (id, name, when deleted).
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Remove trashed copies for good (refused while a server runs on the data dir).
    Purge {
        /// Purge everything in the trash.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
        /// Tenants whose trashed copies to purge.
        #[arg(required_unless_present = "all")]
        ids: Vec<String>,
        /// Only the copy deleted at this time (as `trash list` shows it).
        #[arg(long, conflicts_with = "all")]
        deleted_at: Option<String>,
    },
}

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print the generated operator token.
    Show,
    /// Replace the generated operator token with a new random one and print it.
    Rotate,
}

/// Staff subcommands; STAFF is a staff member's name or id.
#[derive(Debug, Subcommand)]
pub enum StaffCommand {
    /// List the staff of a tenant (with unused join codes and how many chats each linked).
    List { tenant: String },
    /// The chats linked to a staff member.
    Chats { tenant: String, staff: String },
    /// Unlink one chat from a staff member (a lost phone); CHAT is its id from `chats`.
    Unlink {
        tenant: String,
        staff: String,
        chat: i64,
    },
    /// Issue a new single-use join code (the old one stops working).
    JoinCode { tenant: String, staff: String },
}

/// Where the data lives and how tenants are kept open.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Folder of the tenant files and the control database.
    #[arg(
        long,
        global = true,
        env = "TARN_DATA_DIR",
        default_value = "./tenants"
    )]
    pub data_dir: PathBuf,
    /// Most tenants kept open at once (lowered to fit the open-file limit).
    #[arg(
        long,
        global = true,
        env = "TARN_MAX_OPEN_TENANTS",
        default_value_t = 4096
    )]
    pub max_open_tenants: usize,
    /// Seconds a tenant may sit unused before it is closed.
    #[arg(
        long,
        global = true,
        env = "TARN_TENANT_IDLE_SECS",
        default_value_t = 300
    )]
    pub tenant_idle_secs: u64,
    /// Seconds an open tenant may sit unused before it gives back its page cache and
    /// prepared statements (it stays open; 0: never).
    #[arg(
        long,
        global = true,
        env = "TARN_TENANT_QUIET_SECS",
        default_value_t = 2
    )]
    pub tenant_quiet_secs: u64,
    /// The most recently used open tenants, this many, keep their caches however quiet.
    #[arg(long, global = true, env = "TARN_TENANT_WARM", default_value_t = 2000)]
    pub tenant_warm: usize,
    /// Threads that run SQL on tenant files for requests, messages and jobs (0: twice the
    /// cores, at least 4).
    #[arg(long, global = true, env = "TARN_TENANT_THREADS", default_value_t = 0)]
    pub tenant_threads: usize,
    /// Most SQLite connections per open tenant.
    #[arg(
        long,
        global = true,
        env = "TARN_TENANT_CONNECTIONS",
        default_value_t = 1
    )]
    pub tenant_connections: u32,
    /// Capture writes for the owner's-app sync feed. Off only to measure what capture costs
    /// (`tarn bench`): the sync routes then answer 503, since their feed would miss changes.
    #[arg(long, env = "TARN_SYNC_CAPTURE", default_value_t = true, action = clap::ArgAction::Set, hide = true)]
    pub sync_capture: bool,
    /// Milliseconds one use of a tenant connection may run SQL before it is interrupted.
    #[arg(
        long,
        global = true,
        env = "TARN_STATEMENT_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub statement_timeout_ms: u64,
}

/// Continuous replication to S3-compatible storage with Litestream (off unless a URL is set).
#[derive(Debug, Clone, Args)]
pub struct ReplicaArgs {
    /// Where the replicas go: `s3://BUCKET/PREFIX`, plus `?endpoint=URL&region=R` for
    /// S3-compatible storage (Tigris, R2, MinIO). Unset: no replication.
    #[arg(long, env = "TARN_REPLICA_URL")]
    pub replica_url: Option<String>,
    /// The bucket's access key id (else Litestream reads `AWS_ACCESS_KEY_ID`).
    #[arg(long, env = "TARN_REPLICA_ACCESS_KEY_ID", hide_env_values = true)]
    pub replica_access_key_id: Option<Secret>,
    /// The bucket's secret key (else Litestream reads `AWS_SECRET_ACCESS_KEY`).
    #[arg(long, env = "TARN_REPLICA_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub replica_secret_access_key: Option<Secret>,
    /// The `litestream` binary, 0.5.7 or newer.
    #[arg(long, env = "TARN_LITESTREAM", default_value = "litestream")]
    pub litestream: PathBuf,
    /// `/readyz` fails when replication has been failing for longer than this, in seconds.
    #[arg(long, env = "TARN_REPLICA_MAX_FAILING_SECS", default_value_t = 60)]
    pub replica_max_failing_secs: u64,
    /// This machine's id when several machines share the bucket (Fly sets
    /// `FLY_MACHINE_ID`, used when this is unset): its registry replicates under
    /// `machines/<id>/control`, and it takes part in placement. Unset on both: one machine.
    #[arg(long, env = "TARN_MACHINE_ID")]
    pub machine_id: Option<String>,
}

impl ReplicaArgs {
    /// This machine's id: the flag, else Fly's `FLY_MACHINE_ID`.
    pub fn machine(&self) -> Option<String> {
        self.machine_id
            .clone()
            .or_else(|| std::env::var("FLY_MACHINE_ID").ok())
            .filter(|m| !m.is_empty())
            .map(|m| m.to_ascii_lowercase())
    }
}

/// Several machines, each owning a share of the tenants (off unless a machine id is set).
#[derive(Debug, Clone, Args)]
pub struct PlacementArgs {
    /// How the other machines reach this one's API, like
    /// `http://<machine id>.vm.<app>.internal:8080` (default on Fly: exactly that, from
    /// `FLY_MACHINE_ID`, `FLY_APP_NAME` and the listen port).
    #[arg(long, env = "TARN_MACHINE_URL")]
    pub machine_url: Option<String>,
    /// How long a machine trusts what it read of another tenant's owner, in milliseconds.
    /// A move tells every machine to forget the tenant at once; one that missed the notice
    /// is told at its first stale replay (a refused replay, retried; never a wrong write).
    #[arg(long, env = "TARN_PLACEMENT_CACHE_MS", default_value_t = 300_000)]
    pub placement_cache_ms: u64,
}

/// The LLM parser (off unless an API key is set).
#[derive(Debug, Clone, Args)]
pub struct LlmArgs {
    /// OpenAI-compatible API base URL.
    #[arg(
        long = "llm-base-url",
        env = "TARN_LLM_BASE_URL",
        default_value = "https://api.groq.com/openai/v1"
    )]
    pub base_url: String,
    /// Model name.
    #[arg(
        long = "llm-model",
        env = "TARN_LLM_MODEL",
        default_value = "llama-3.3-70b-versatile"
    )]
    pub model: String,
    /// API key; the LLM is off when unset (for Ollama and the like, any value).
    #[arg(long = "llm-api-key", env = "TARN_LLM_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,
    /// Seconds before one LLM request is given up.
    #[arg(
        long = "llm-timeout-secs",
        env = "TARN_LLM_TIMEOUT_SECS",
        default_value_t = 8.0
    )]
    pub timeout_secs: f64,
    /// Ask for `json_object` output (backends without JSON Schema support).
    #[arg(long = "llm-json-object", env = "TARN_LLM_JSON_OBJECT")]
    pub json_object: bool,
    /// Ask for strict JSON Schema adherence (backends that support it).
    #[arg(long = "llm-strict", env = "TARN_LLM_STRICT")]
    pub strict: bool,
    /// LLM requests in flight at once.
    #[arg(
        long = "llm-concurrency",
        env = "TARN_LLM_CONCURRENCY",
        default_value_t = 16
    )]
    pub concurrency: usize,
    /// LLM requests per tenant per minute.
    #[arg(
        long = "llm-tenant-per-minute",
        env = "TARN_LLM_TENANT_PER_MINUTE",
        default_value_t = 30
    )]
    pub per_tenant_per_minute: u32,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

/// Settings of `tarn serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "TARN_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Operator token (16 characters or more, unless listening on loopback alone);
    /// generated once into `<data_dir>/_admin_token` when unset.
    #[arg(long, env = "TARN_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<Secret>,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "TARN_MAX_BODY_BYTES", default_value_t = 256 * 1024)]
    pub max_body_bytes: usize,
    /// Seconds before a request is answered 408 and dropped.
    #[arg(long, env = "TARN_REQUEST_TIMEOUT_SECS", default_value_t = 30)]
    pub request_timeout_secs: u64,
    /// Most sync long-polls and event streams open at once per tenant (more: 429).
    #[arg(long, env = "TARN_SYNC_MAX_LISTENERS", default_value_t = 64)]
    pub sync_max_listeners: usize,
    /// `/readyz` fails when the data dir has less free space than this, in MiB.
    #[arg(long, env = "TARN_MIN_FREE_MB", default_value_t = 256)]
    pub min_free_mb: u64,
    /// Log format.
    #[arg(long, env = "TARN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[command(flatten)]
    pub replica: ReplicaArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
    /// Public base URL of this server (for webhooks), like `https://tarn.fly.dev`.
    #[arg(long, env = "TARN_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Telegram Bot API base URL.
    #[arg(
        long,
        env = "TARN_TELEGRAM_API_URL",
        default_value = "https://api.telegram.org"
    )]
    pub telegram_api_url: String,
    /// WhatsApp: the token Meta echoes in the webhook verification handshake.
    #[arg(long, env = "TARN_WHATSAPP_VERIFY_TOKEN", hide_env_values = true)]
    pub whatsapp_verify_token: Option<Secret>,
    /// WhatsApp: the Meta app secret that signs webhook bodies.
    #[arg(long, env = "TARN_WHATSAPP_APP_SECRET", hide_env_values = true)]
    pub whatsapp_app_secret: Option<Secret>,
    /// WhatsApp Cloud API (Graph) base URL.
    #[arg(
        long,
        env = "TARN_WHATSAPP_API_URL",
        default_value = "https://graph.facebook.com/v21.0"
    )]
    pub whatsapp_api_url: String,
    /// WhatsApp: approved template used outside the 24-hour customer service window.
    #[arg(long, env = "TARN_WHATSAPP_ALERT_TEMPLATE")]
    pub whatsapp_alert_template: Option<String>,
    /// Least milliseconds between two messages to one chat (Telegram allows about one a
    /// second).
    #[arg(long, env = "TARN_CHAT_GAP_MS", default_value_t = 1000)]
    pub chat_gap_ms: u64,
    /// Most messages a second one Telegram bot sends (Telegram's limit is about 30; 0: no
    /// limit, for a Bot API stand-in).
    #[arg(long, env = "TARN_TELEGRAM_BOT_RATE", default_value_t = 30)]
    pub telegram_bot_rate: u32,
    /// Folder of the prompt files (`parser.md`, `examples.jsonl`, `weekly_report.md`).
    #[arg(long, env = "TARN_PROMPTS_DIR", default_value = "./prompts")]
    pub prompts_dir: PathBuf,
    /// Create (once) a `demo` tenant with a small catalog and staff, and say how to use it.
    #[arg(long, env = "TARN_DEMO")]
    pub demo: bool,
    #[command(flatten)]
    pub scheduler: SchedulerArgs,
    /// Requests per second one tenant's API key may make (0: no limit); the operator token
    /// is not limited.
    #[arg(long, env = "TARN_TENANT_RPS", default_value_t = 20)]
    pub tenant_rps: u32,
    /// Requests a tenant's key may make at once above that rate.
    #[arg(long, env = "TARN_TENANT_BURST", default_value_t = 60)]
    pub tenant_burst: u32,
    /// Largest JSON answer, in bytes; a bigger one is refused (ask for a smaller page).
    #[arg(long, env = "TARN_MAX_RESPONSE_BYTES", default_value_t = 8 * 1024 * 1024)]
    pub max_response_bytes: usize,
}

/// Settings of the scheduler and housekeeping.
#[derive(Debug, Clone, Args)]
pub struct SchedulerArgs {
    /// Run the tenants' scheduled jobs (summaries, alerts, reminders, weekly reports).
    #[arg(long = "scheduler", env = "TARN_SCHEDULER", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// Milliseconds between two looks at the schedule index.
    #[arg(long, env = "TARN_TICK_MS", default_value_t = 1000)]
    pub tick_ms: u64,
    /// A slot missed (downtime) by at most this many seconds still runs, once; older slots
    /// are recorded as missed.
    #[arg(
        long = "schedule-grace-secs",
        env = "TARN_SCHEDULE_GRACE_SECS",
        default_value_t = 3600
    )]
    pub grace_secs: u64,
    /// Jobs run at once.
    #[arg(long, env = "TARN_JOB_CONCURRENCY", default_value_t = 8)]
    pub job_concurrency: usize,
    /// Days handled chat inbox and outbox rows are kept.
    #[arg(long, env = "TARN_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u64,
    /// Days the schedule run ledger is kept.
    #[arg(long, env = "TARN_RUN_RETENTION_DAYS", default_value_t = 14)]
    pub run_retention_days: u64,
    /// Days a deleted tenant's files (and replicas) wait in the trash before they are purged
    /// (0: kept until purged by hand).
    #[arg(long, env = "TARN_TRASH_RETENTION_DAYS", default_value_t = 30)]
    pub trash_retention_days: u64,
    /// Days the sync log keeps a change; an app offline for longer downloads a new snapshot.
    #[arg(long, env = "TARN_SYNC_RETENTION_DAYS", default_value_t = 30)]
    pub sync_retention_days: u64,
    /// Most changes the sync log keeps per tenant (older ones: a new snapshot).
    #[arg(long, env = "TARN_SYNC_RETENTION_ROWS", default_value_t = 100_000)]
    pub sync_retention_rows: u64,
    /// Seconds between WAL checkpoints (and retention pruning) of the open tenants.
    #[arg(long, env = "TARN_CHECKPOINT_SECS", default_value_t = 300)]
    pub checkpoint_secs: u64,
}

impl ServeConfig {
    /// Defaults for a server on `data_dir` (as if no flag or variable were set).
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let mut cfg = <ServeCli as Parser>::parse_from(["serve"]).config;
        cfg.store.data_dir = data_dir.into();
        cfg
    }
}

#[derive(Parser)]
struct ServeCli {
    #[command(flatten)]
    config: ServeConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug() {
        let mut cfg = ServeConfig::with_data_dir("/tmp/x");
        cfg.admin_token = Some(Secret::new("hunter2-very-secret"));
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
