//! The chat runtime, transport only: Telegram and WhatsApp decode/verify and send behind one
//! `Account`, the inbox `worker`s, the outbox `sender`, `pacing`. Invariants: an update is
//! stored before it is acknowledged; a chat's messages run one at a time in arrival order; a
//! stop drains in-flight work before it returns (what is left resumes at the next start).

mod account;
mod pacing;
mod sender;
pub mod telegram;
pub mod whatsapp;
mod worker;

pub use account::{Account, WhatsAppAccount};
pub use worker::STRANGER;

use crate::control::Binding;
use crate::executor::ExecError;
use crate::llm::LlmClient;
use crate::mail::inbox::{self, Inbound};
use crate::mail::{Mail, Provider, outbox};
use crate::store::Store;
use crate::tenant::{StoreError, TenantId, pool::blocking, sqlite};
use dashmap::DashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex as AsyncMutex, mpsc};

use tokio_util::task::TaskTracker;

/// Errors of the channel layer.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    BadRequest(String),
    #[error("wrong or missing webhook secret")]
    Unauthorized,
    #[error("no {0} channel is bound to this tenant")]
    NotBound(Provider),
    #[error("{0}")]
    Provider(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl From<rusqlite::Error> for ChannelError {
    fn from(e: rusqlite::Error) -> Self {
        ChannelError::Store(e.into())
    }
}

/// Where the providers are and how to pace them.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub telegram_api: String,
    pub whatsapp_api: String,
    /// Approved template for messages outside WhatsApp's 24-hour window.
    pub whatsapp_template: Option<String>,
    /// Least time between two messages to one chat.
    pub chat_gap: Duration,
    /// Most messages a second per Telegram bot (0: no limit).
    pub telegram_per_second: u32,
}

/// How long a stop waits for in-flight work before it leaves the rest for the next start.
const DRAIN: Duration = Duration::from_secs(10);

/// A tenant quiet this long with nothing pending is unmarked in the control db.
const QUIET: Duration = Duration::from_secs(60);

struct Inner {
    store: Store,
    mail: Mail,
    llm: Option<LlmClient>,
    config: ChannelConfig,
    http: reqwest::Client,
    /// Tenants (and the chat, when known) with inbox rows to process.
    inbox_tx: mpsc::UnboundedSender<(TenantId, Option<String>)>,
    /// Wakes sent and not taken by the inbox loop yet.
    woken: AtomicUsize,
    /// Tenants waiting for a timer to post them again (paced or retried rows).
    timers: AtomicUsize,
    chat_locks: DashMap<(TenantId, String), Arc<AsyncMutex<()>>>,
    /// Tenants being sent for; `true`: posted again meanwhile, look once more.
    sending: DashMap<TenantId, bool>,
    pacing: pacing::Pacing,
    bots: DashMap<String, teloxide::Bot>,
    bot_client: teloxide::Bot,
    /// Every worker and send task, so a stop can wait for them.
    work: TaskTracker,
    stopping: AtomicBool,
    loops: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The channel runtime: inbox workers and the outbox sender. Cheap to clone.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

impl Channels {
    /// Starts the workers and the sender over `mail`, and resumes tenants left with work
    /// in flight.
    pub fn start(
        store: Store,
        mail: Mail,
        llm: Option<LlmClient>,
        config: ChannelConfig,
    ) -> Channels {
        let (inbox_tx, inbox_rx) = mpsc::unbounded_channel();
        let posted = mail.posted().expect("one chat runtime per mail signal");
        let channels = Channels {
            inner: Arc::new(Inner {
                store,
                mail,
                llm,
                config,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .expect("an HTTP client with a timeout builds"),
                inbox_tx,
                woken: AtomicUsize::new(0),
                timers: AtomicUsize::new(0),
                chat_locks: DashMap::new(),
                sending: DashMap::new(),
                pacing: pacing::Pacing::default(),
                bots: DashMap::new(),
                bot_client: telegram::shared_client(),
                work: TaskTracker::new(),
                stopping: AtomicBool::new(false),
                loops: std::sync::Mutex::new(Vec::new()),
            }),
        };
        let loops = [
            tokio::spawn(channels.clone().inbox_loop(inbox_rx)),
            tokio::spawn(channels.clone().send_loop(posted)),
            tokio::spawn(channels.clone().tidy_loop()),
            tokio::spawn(channels.clone().resume()),
        ];
        channels.loops().extend(loops);
        channels
    }

    fn loops(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.inner.loops.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wakes the workers and the sender for tenants a previous process left with mail.
    async fn resume(self) {
        match self.inner.mail.resume().await {
            Ok(tenants) => {
                if !tenants.is_empty() {
                    tracing::info!(
                        tenants = tenants.len(),
                        "resuming channel work left from before"
                    );
                }
                for t in tenants {
                    self.wake(t.clone(), None);
                    self.inner.mail.post(t);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read pending channel work"),
        }
    }

    /// Every 30 s: forgets old pacing and unmarks tenants that went quiet.
    async fn tidy_loop(self) {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.inner.pacing.forget_old();
            let mail = self.inner.mail.clone();
            let _ = blocking(move || Ok::<_, StoreError>(mail.tidy(QUIET))).await;
        }
    }

    /// Stops on shutdown: waits (up to 10 s) until no inbox row is being processed, nothing
    /// is being sent and no row waits for its pace or retry, then ends the loops. Rows left
    /// pending (a retry far off, say) resume at the next start.
    pub async fn stop(&self) {
        let deadline = tokio::time::Instant::now() + DRAIN;
        while !self.idle() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.inner.stopping.store(true, Ordering::SeqCst);
        self.inner.work.close();
        let left = self.inner.work.len();
        if left > 0 {
            tracing::warn!(
                tasks = left,
                "channel work still running at stop; it resumes at the next start"
            );
        }
        for l in self.loops().drain(..) {
            l.abort();
        }
    }

    /// No worker or send task is running and no tenant waits for one.
    fn idle(&self) -> bool {
        self.inner.woken.load(Ordering::SeqCst) == 0
            && self.inner.timers.load(Ordering::SeqCst) == 0
            && self.inner.mail.queued() == 0
            && self.inner.work.is_empty()
            && self.inner.sending.is_empty()
    }

    fn stopping(&self) -> bool {
        self.inner.stopping.load(Ordering::SeqCst)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// Looks at a tenant's inbox and outbox (one that just arrived from another machine).
    pub fn post(&self, tenant: TenantId) {
        self.inner.mail.post(tenant);
    }

    /// Where the providers are.
    pub fn config(&self) -> &ChannelConfig {
        &self.inner.config
    }

    /// The Bot API client for a token, built once (all of them share one HTTP client).
    pub fn bot(&self, token: &str) -> Result<teloxide::Bot, ChannelError> {
        if let Some(bot) = self.inner.bots.get(token) {
            return Ok(bot.clone());
        }
        let bot = self.new_bot(token)?;
        self.inner.bots.insert(token.to_owned(), bot.clone());
        Ok(bot)
    }

    /// A client for a bot token on the shared HTTP client, not kept (for checking a token).
    pub fn new_bot(&self, token: &str) -> Result<teloxide::Bot, ChannelError> {
        telegram::bot(
            &self.inner.bot_client,
            &self.inner.config.telegram_api,
            token,
        )
    }

    /// The HTTP client for the Graph API.
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }

    /// The account a binding sends from.
    pub fn account(&self, b: &Binding) -> Result<Account, ChannelError> {
        match Provider::parse(&b.channel) {
            Some(Provider::Telegram) => Ok(Account::Telegram(self.bot(&b.token)?)),
            Some(Provider::WhatsApp) => Ok(Account::WhatsApp(WhatsAppAccount {
                http: self.inner.http.clone(),
                api: self.inner.config.whatsapp_api.clone(),
                phone_number_id: b.key.clone(),
                token: b.token.clone(),
                template: self.inner.config.whatsapp_template.clone(),
            })),
            None => Err(ChannelError::Provider(format!(
                "unknown channel {:?} in a binding",
                b.channel
            ))),
        }
    }

    /// The tenant's binding of `provider`: from the control db's cache when it is there
    /// (no IO), else read once.
    pub async fn binding(
        &self,
        tenant: &TenantId,
        provider: Provider,
    ) -> Result<Option<Binding>, ChannelError> {
        if let Some(b) = self
            .inner
            .store
            .control()
            .cached_binding(tenant, provider.as_str())
        {
            return Ok(Some(b));
        }
        let control = self.inner.store.control().clone();
        let t = tenant.clone();
        Ok(blocking(move || control.binding(&t, provider.as_str())).await?)
    }

    /// The binding of a WhatsApp number (its `phone_number_id`), the same way.
    pub async fn binding_of_number(&self, phone: &str) -> Result<Option<Binding>, ChannelError> {
        let channel = Provider::WhatsApp.as_str();
        if let Some(b) = self
            .inner
            .store
            .control()
            .cached_binding_by_key(channel, phone)
        {
            return Ok(Some(b));
        }
        let control = self.inner.store.control().clone();
        let phone = phone.to_owned();
        Ok(blocking(move || control.binding_by_key(channel, &phone)).await?)
    }

    /// Records what WhatsApp says happened to messages we sent.
    pub async fn record_statuses(
        &self,
        tenant: &TenantId,
        statuses: Vec<(String, String, Option<String>)>,
    ) -> Result<(), ChannelError> {
        self.inner
            .store
            .pool()
            .with_conn(tenant.clone(), move |conn| {
                Ok::<_, ChannelError>(outbox::record_statuses(conn, &statuses)?)
            })
            .await
    }

    /// Stores an inbound update durably; returns whether it needs processing. Call before
    /// answering the provider. When its chat is not busy, the update is also run in the same
    /// trip to the tenant's file (the rest of the chat's rows, or an LLM question, carry on
    /// in the background); otherwise a worker takes it.
    pub async fn accept(&self, tenant: &TenantId, inbound: Inbound) -> Result<bool, ChannelError> {
        let chat = inbound.chat_id.clone().filter(|_| inbound.actionable);
        let held = chat
            .as_ref()
            .and_then(|c| self.chat_lock(tenant, c).try_lock_owned().ok());
        let (store, mail) = (self.inner.store.clone(), self.inner.mail.clone());
        let (t, c) = (tenant.clone(), chat.clone());
        let run_now = held.is_some();
        let with_llm = self.inner.llm.is_some();
        let (fresh, step) = blocking(move || {
            let handle = store.pool().acquire(&t)?;
            let mut conn = handle.conn()?;
            // The row and its run commit as one transaction (one write to the file, not two).
            let mut tx = sqlite::begin(&mut conn)?;
            if !inbox::store(&tx, &inbound)? {
                // A duplicate (nothing written) or a row kept but not acted on.
                tx.commit()?;
                return Ok((false, None));
            }
            // The mark only lets a restart find the row. Failing the webhook here would make
            // the provider's retry a duplicate that nobody wakes for.
            if let Err(e) = mail.keep(&t) {
                tracing::error!(tenant = %t, error = %e, "cannot mark a tenant with mail");
            }
            let step = match (run_now, c) {
                (true, Some(c)) => Some(worker::next_row(&mut tx, &c, with_llm)),
                _ => None,
            };
            if let Some(Err(_)) = &step {
                // The run failed: the row alone is stored, pending (so still acknowledged),
                // and retried by a worker.
                drop(tx);
                inbox::store(&conn, &inbound)?;
            } else {
                tx.commit()?;
            }
            Ok::<_, ChannelError>((true, step))
        })
        .await?;
        let Some(chat) = chat else {
            if fresh {
                self.wake(tenant.clone(), None);
            }
            return Ok(fresh);
        };
        match (held, step) {
            // Run in this trip, with more to do (later rows, or the LLM): carry on behind.
            (Some(held), Some(step)) if !matches!(step, Ok(worker::Step::Done { more: false })) => {
                let (me, t) = (self.clone(), tenant.clone());
                self.inner
                    .work
                    .spawn(async move { me.run_chat(t, chat, held, Some(step)).await });
            }
            (Some(held), _) => {
                drop(held);
                self.forget_chat_lock(tenant.clone(), chat);
            }
            // The chat was busy: a worker takes the row after the one running.
            (None, _) if fresh => self.wake(tenant.clone(), Some(chat)),
            (None, _) => {}
        }
        Ok(fresh)
    }

    /// Asks a worker to process the tenant's pending inbox rows (of `chat`, when known).
    fn wake(&self, tenant: TenantId, chat: Option<String>) {
        self.inner.woken.fetch_add(1, Ordering::SeqCst);
        if self.inner.inbox_tx.send((tenant, chat)).is_err() {
            self.inner.woken.fetch_sub(1, Ordering::SeqCst);
        }
    }
}
