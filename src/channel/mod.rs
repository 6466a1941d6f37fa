//! Chat channels (Telegram; WhatsApp next): the durable inbox, the per-chat workers, joined
//! identities and the rate-limited outbox sender.
//! Invariants: an update is stored (deduplicated on its provider key) before it is
//! acknowledged; a chat's messages run one at a time in arrival order; an action's effects,
//! its inbox row's "done" and its reply in the outbox commit together; a stranger can only
//! `/join`.

pub mod telegram;
pub mod whatsapp;

use crate::executor::{self, ExecError, Input, ReplyTo, Request};
use crate::llm::LlmClient;
use crate::shop;
use crate::shop::staff::Redeemed;
use crate::store::Store;
use crate::tenant::sqlite::Cached;
use crate::tenant::{StoreError, TenantId, pool::blocking};
use dashmap::{DashMap, DashSet};
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex as AsyncMutex, Notify, mpsc};

/// Errors of the channel layer.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{0}")]
    BadRequest(String),
    #[error("wrong or missing webhook secret")]
    Unauthorized,
    #[error("no {0} channel is bound to this tenant")]
    NotBound(&'static str),
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

/// Why a send did not go through.
#[derive(Debug)]
pub enum SendError {
    /// Try again after this long (429 / retry_after).
    RetryAfter(Duration),
    /// The chat moved (a group became a supergroup): send there instead.
    Moved(String),
    /// Blocked, kicked or gone: stop trying.
    Unreachable(String),
    /// Anything else: retry with backoff.
    Retry(String),
    /// WhatsApp: outside the 24-hour customer service window.
    OutsideWindow(String),
}

/// An inbound update, decoded enough to store and route.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub channel: &'static str,
    pub update_key: String,
    pub chat_id: Option<String>,
    pub sender_id: Option<String>,
    pub sender_name: Option<String>,
    pub text: Option<String>,
    pub payload: String,
    /// A text message from a person: it will be processed.
    pub actionable: bool,
    /// Why it is not processed, when it is not.
    pub note: Option<String>,
}

/// Stores an update unless its key was seen; returns whether a new pending row was stored.
pub fn store_inbound(conn: &Connection, inbound: &Inbound) -> rusqlite::Result<bool> {
    let status = if inbound.actionable {
        "pending"
    } else {
        "ignored"
    };
    let n = conn.exec(
        "INSERT OR IGNORE INTO inbox (channel, update_key, chat_id, sender_id, sender_name, text,
                                      payload, status, note, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            inbound.channel,
            inbound.update_key,
            inbound.chat_id,
            inbound.sender_id,
            inbound.sender_name,
            inbound.text,
            inbound.payload,
            status,
            inbound.note,
            shop::now_utc()
        ],
    )?;
    Ok(n == 1 && inbound.actionable)
}

/// Splits text into parts of at most `max` characters, preferring line breaks.
pub fn split_text(text: &str, max: usize) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        let mut line = line;
        while line.chars().count() > max {
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            let cut = line.char_indices().nth(max).map_or(line.len(), |(i, _)| i);
            parts.push(line[..cut].to_owned());
            line = &line[cut..];
        }
        if current.chars().count() + line.chars().count() > max {
            parts.push(std::mem::take(&mut current));
        }
        current.push_str(line);
    }
    if !current.is_empty() || parts.is_empty() {
        parts.push(current);
    }
    parts
}

/// The polite line for a stranger.
pub const STRANGER: &str = "Hi! This is a shop's bot for its staff. Ask the owner for your join code, then send: /join CODE";

/// One pending inbox row.
struct Row {
    id: i64,
    update_key: String,
    chat_id: String,
    sender_id: String,
    text: String,
}

/// What a row's sender is.
enum Who {
    Staff(i64),
    Stranger,
}

fn identify(conn: &Connection, channel: &str, sender: &str) -> rusqlite::Result<Who> {
    let staff: Option<i64> = conn
        .row(
            "SELECT s.id FROM identities i JOIN staff s ON s.id = i.staff_id
             WHERE i.channel = ?1 AND i.external_id = ?2 AND s.active = 1",
            params![channel, sender],
            |r| r.get(0),
        )
        .optional()?;
    Ok(staff.map_or(Who::Stranger, Who::Staff))
}

/// A stranger's message: `/join CODE` links them to the staff member with that code;
/// anything else gets the polite line. Either way only the identity, the inbox row and the
/// reply are written, in one transaction.
fn handle_stranger(conn: &mut Connection, channel: &str, row: &Row) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let to = ReplyTo {
        channel: channel.to_owned(),
        chat_id: row.chat_id.clone(),
        inbox_id: row.id,
    };
    let mut words = row.text.split_whitespace();
    let cmd = words.next().unwrap_or("").split('@').next().unwrap_or("");
    let reply = if cmd.eq_ignore_ascii_case("/join") {
        let code = words.next().unwrap_or("");
        match shop::staff::redeem_join_code(&tx, code, channel, &row.sender_id, &row.chat_id)? {
            Redeemed::Linked(staff) => format!(
                "Welcome, {}! You are linked as {}. Send /help to see what you can do.",
                staff.name,
                staff.role.as_str()
            ),
            Redeemed::Expired => {
                "That join code has expired. Ask the owner for a new one, then send: /join CODE"
                    .to_owned()
            }
            Redeemed::Unknown => {
                "That join code is not valid. Ask the owner for yours, then send: /join CODE"
                    .to_owned()
            }
        }
    } else {
        shop::greeting(&tx)?.unwrap_or_else(|| STRANGER.to_owned())
    };
    executor::finish_inbox(&tx, &to, &reply, Some("stranger"))?;
    tx.commit()
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

struct Inner {
    store: Store,
    llm: Option<LlmClient>,
    config: ChannelConfig,
    http: reqwest::Client,
    inbox_tx: mpsc::UnboundedSender<TenantId>,
    chat_locks: DashMap<(TenantId, String), Arc<AsyncMutex<()>>>,
    outbox_tenants: DashSet<TenantId>,
    /// Tenants known to be marked in the control db's pending_work (saves a write each).
    marked: DashSet<TenantId>,
    outbox_wake: Notify,
    last_sent: DashMap<String, Instant>,
    send_windows: DashMap<String, (Instant, u32)>,
    bots: DashMap<String, teloxide::Bot>,
    bot_client: teloxide::Bot,
    stopped: std::sync::atomic::AtomicBool,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The channel runtime: inbox workers and the outbox sender. Cheap to clone.
#[derive(Clone)]
pub struct Channels {
    inner: Arc<Inner>,
}

/// Least gap between messages to one Telegram group (about 20 a minute).
const GROUP_GAP: Duration = Duration::from_secs(3);
/// Messages per second per WhatsApp number.
const WHATSAPP_PER_SECOND: u32 = 80;

/// Messages sent at once by the sender.
const SEND_CONCURRENCY: usize = 16;

/// An outbox row to send.
struct OutRow {
    id: i64,
    channel: String,
    chat: String,
    text: String,
    /// A PNG to send as a photo / image, `text` being its caption.
    image: Option<Vec<u8>>,
    parts_sent: i64,
    attempts: i64,
}

impl OutRow {
    /// The key of the row's chat in the per-chat pacing map.
    fn chat_key(&self, tenant: &TenantId) -> String {
        format!("{tenant}/{}/{}", self.channel, self.chat)
    }
}

/// Sends before a failing message is given up.
const MAX_ATTEMPTS: i64 = 6;

impl Channels {
    /// Starts the workers and the sender, and resumes tenants left with work in flight.
    pub fn start(store: Store, llm: Option<LlmClient>, config: ChannelConfig) -> Channels {
        let (inbox_tx, mut inbox_rx) = mpsc::unbounded_channel::<TenantId>();
        let channels = Channels {
            inner: Arc::new(Inner {
                store,
                llm,
                config,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(15))
                    .build()
                    .expect("an HTTP client with a timeout builds"),
                inbox_tx,
                chat_locks: DashMap::new(),
                outbox_tenants: DashSet::new(),
                marked: DashSet::new(),
                outbox_wake: Notify::new(),
                last_sent: DashMap::new(),
                send_windows: DashMap::new(),
                bots: DashMap::new(),
                bot_client: telegram::shared_client(),
                stopped: std::sync::atomic::AtomicBool::new(false),
                tasks: std::sync::Mutex::new(Vec::new()),
            }),
        };
        let c = channels.clone();
        let workers = tokio::spawn(async move {
            while let Some(tenant) = inbox_rx.recv().await {
                let c = c.clone();
                tokio::spawn(async move { c.process_tenant(tenant).await });
            }
        });
        let c = channels.clone();
        let sender = tokio::spawn(async move { c.send_loop().await });
        let c = channels.clone();
        let resume = tokio::spawn(async move {
            let control = c.inner.store.control().clone();
            match blocking(move || control.pending_tenants()).await {
                Ok(tenants) => {
                    if !tenants.is_empty() {
                        tracing::info!(
                            tenants = tenants.len(),
                            "resuming channel work left from before"
                        );
                    }
                    for t in tenants {
                        c.inner.outbox_tenants.insert(t.clone());
                        c.wake(t);
                    }
                    c.inner.outbox_wake.notify_one();
                }
                Err::<_, StoreError>(e) => {
                    tracing::error!(error = %e, "cannot read pending channel work")
                }
            }
        });
        channels
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend([workers, sender, resume]);
        channels
    }

    /// Stops the workers and the sender (on shutdown); rows left pending resume at start.
    pub fn stop(&self) {
        self.inner
            .stopped
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for t in self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }

    fn stopped(&self) -> bool {
        self.inner.stopped.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.inner.store
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
                for (id, status, error) in statuses {
                    conn.exec(
                        "UPDATE outbox SET delivery_status = ?2,
                            last_error = coalesce(?3, last_error),
                            status = CASE WHEN ?2 = 'failed' THEN 'failed' ELSE status END
                     WHERE provider_id = ?1",
                        params![id, status, error],
                    )?;
                }
                Ok(())
            })
            .await
    }

    /// Hands the sender a tenant with new outbox rows (queued by a scheduled job): marks it
    /// in the control db so a restart resumes it, then wakes the sender.
    pub async fn queued(&self, tenant: &TenantId) -> Result<(), ChannelError> {
        if !self.inner.marked.contains(tenant) {
            let control = self.inner.store.control().clone();
            let t = tenant.clone();
            blocking(move || control.mark_pending(&t)).await?;
            self.inner.marked.insert(tenant.clone());
        }
        self.inner.outbox_tenants.insert(tenant.clone());
        self.inner.outbox_wake.notify_one();
        Ok(())
    }

    /// Asks a worker to process the tenant's pending inbox rows.
    pub fn wake(&self, tenant: TenantId) {
        if !self.stopped() {
            let _ = self.inner.inbox_tx.send(tenant);
        }
    }

    /// Stores an inbound update durably; returns whether it needs processing. Call before
    /// answering the provider.
    pub async fn accept(&self, tenant: &TenantId, inbound: Inbound) -> Result<bool, ChannelError> {
        let store = self.inner.store.clone();
        let t = tenant.clone();
        let inner = self.inner.clone();
        let fresh = blocking(move || {
            let handle = store.pool().acquire(&t)?;
            let conn = handle.conn()?;
            let fresh = store_inbound(&conn, &inbound)?;
            // Checked after the row is in: the sender unmarks before it looks for pending
            // rows, so either it sees this row or this sees it unmarked.
            if fresh && !inner.marked.contains(&t) {
                store.control().mark_pending(&t)?;
                inner.marked.insert(t.clone());
            }
            Ok::<_, ChannelError>(fresh)
        })
        .await?;
        if fresh {
            self.wake(tenant.clone());
        }
        Ok(fresh)
    }

    async fn process_tenant(&self, tenant: TenantId) {
        let chats = self
            .inner
            .store
            .pool()
            .with_conn(tenant.clone(), move |conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT chat_id FROM inbox WHERE status = 'pending' ORDER BY chat_id",
                )?;
                let chats = stmt
                    .query_map([], |r| r.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?;
                Ok::<_, ChannelError>(chats)
            })
            .await;
        let chats = match chats {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(tenant = %tenant, error = %e, "cannot read the inbox");
                return;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        for chat in chats {
            let c = self.clone();
            let t = tenant.clone();
            tasks.spawn(async move { c.process_chat(t, chat).await });
        }
        while tasks.join_next().await.is_some() {}
        self.inner.outbox_tenants.insert(tenant);
        self.inner.outbox_wake.notify_one();
    }

    /// Processes a chat's pending rows one at a time, oldest first.
    async fn process_chat(&self, tenant: TenantId, chat: String) {
        let lock = self
            .inner
            .chat_locks
            .entry((tenant.clone(), chat.clone()))
            .or_default()
            .clone();
        let _held = lock.lock().await;
        while !self.stopped() {
            let store = self.inner.store.clone();
            let (t, c) = (tenant.clone(), chat.clone());
            let next = blocking(move || {
                let handle = store.pool().acquire(&t)?;
                let conn = handle.conn()?;
                let row = conn
                    .row(
                        "SELECT id, update_key, chat_id, sender_id, text, channel FROM inbox
                         WHERE status = 'pending' AND chat_id = ?1 ORDER BY id LIMIT 1",
                        [&c],
                        |r| {
                            Ok((
                                Row {
                                    id: r.get(0)?,
                                    update_key: r.get(1)?,
                                    chat_id: r.get(2)?,
                                    sender_id: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                                    text: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                                },
                                r.get::<_, String>(5)?,
                            ))
                        },
                    )
                    .optional()?;
                let Some((row, channel)) = row else {
                    return Ok(None);
                };
                let who = identify(&conn, &channel, &row.sender_id)?;
                Ok::<_, ChannelError>(Some((row, channel, who)))
            })
            .await;
            let (row, channel, who) = match next {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(tenant = %tenant, error = %e, "cannot read the inbox");
                    break;
                }
            };
            if let Err(e) = self.process_row(&tenant, &channel, row, who).await {
                // The row stays pending and is retried on the next wake or restart.
                tracing::error!(tenant = %tenant, error = %e, "processing an inbox row failed");
                break;
            }
        }
    }

    async fn process_row(
        &self,
        tenant: &TenantId,
        channel: &str,
        row: Row,
        who: Who,
    ) -> Result<(), ChannelError> {
        let to = ReplyTo {
            channel: channel.to_owned(),
            chat_id: row.chat_id.clone(),
            inbox_id: row.id,
        };
        match who {
            Who::Staff(staff) => {
                let req = Request {
                    inbound_id: Some(row.update_key.clone()),
                    channel: channel.to_owned(),
                    sender: Some(staff.to_string()),
                    ceiling: None,
                    input: Input::Text(row.text.clone()),
                    parse_us: None,
                    reply_to: Some(to.clone()),
                };
                match crate::message::handle(
                    &self.inner.store,
                    self.inner.llm.as_ref(),
                    tenant,
                    req,
                )
                .await
                {
                    Ok(_) => Ok(()),
                    Err(ExecError::Invalid(m) | ExecError::UnknownSender(m)) => {
                        self.inner
                            .store
                            .pool()
                            .with_conn(tenant.clone(), move |conn| {
                                let tx = conn.transaction()?;
                                executor::finish_inbox(
                                    &tx,
                                    &to,
                                    &format!("Sorry: {m}"),
                                    Some("refused"),
                                )?;
                                tx.commit()?;
                                Ok::<_, ChannelError>(())
                            })
                            .await
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Who::Stranger => {
                let store = self.inner.store.clone();
                let t = tenant.clone();
                let channel = channel.to_owned();
                blocking(move || {
                    let handle = store.pool().acquire(&t)?;
                    let mut conn = handle.conn()?;
                    handle_stranger(&mut conn, &channel, &row)?;
                    Ok::<_, ChannelError>(())
                })
                .await
            }
        }
    }

    async fn send_loop(&self) {
        let mut busy = false;
        loop {
            if !busy {
                let _ = tokio::time::timeout(
                    Duration::from_millis(250),
                    self.inner.outbox_wake.notified(),
                )
                .await;
            }
            busy = false;
            let tenants: Vec<TenantId> = self
                .inner
                .outbox_tenants
                .iter()
                .map(|t| t.clone())
                .collect();
            for tenant in tenants {
                match self.send_due(&tenant).await {
                    Ok((_, true)) => busy = true,
                    Ok((true, false)) => {}
                    Ok((false, false)) => {
                        self.inner.outbox_tenants.remove(&tenant);
                        // Unmark first: an update stored from now on marks the tenant again.
                        self.inner.marked.remove(&tenant);
                        let control = self.inner.store.control().clone();
                        let t = tenant.clone();
                        let _ = self
                            .inner
                            .store
                            .pool()
                            .with_conn(tenant.clone(), move |conn| {
                                let busy: bool = conn.row(
                                    "SELECT EXISTS (SELECT 1 FROM inbox WHERE status = 'pending')
                                     OR EXISTS (SELECT 1 FROM outbox WHERE status = 'pending')",
                                    [],
                                    |r| r.get(0),
                                )?;
                                if !busy {
                                    control.clear_pending(&t)?;
                                }
                                Ok::<_, ChannelError>(())
                            })
                            .await;
                    }
                    Err(ChannelError::Store(StoreError::NotFound(_))) => {
                        // Deleted meanwhile: nothing left to send for it.
                        self.inner.outbox_tenants.remove(&tenant);
                        self.inner.marked.remove(&tenant);
                        let control = self.inner.store.control().clone();
                        let t = tenant.clone();
                        let _ = blocking(move || control.clear_pending(&t)).await;
                    }
                    Err(e) => tracing::error!(tenant = %tenant, error = %e, "outbox send failed"),
                }
            }
        }
    }

    /// Sends the tenant's due outbox rows; returns whether any row is still pending and
    /// whether this pass sent anything.
    async fn send_due(&self, tenant: &TenantId) -> Result<(bool, bool), ChannelError> {
        let store = self.inner.store.clone();
        let t = tenant.clone();
        let (rows, bindings) = blocking(move || {
            let handle = store.pool().acquire(&t)?;
            let conn = handle.conn()?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, channel, chat_id, text, parts_sent, attempts, next_attempt_at <= ?1, image
                 FROM outbox WHERE status = 'pending' ORDER BY id LIMIT 200",
            )?;
            let rows = stmt
                .query_map([shop::now_utc()], |r| {
                    let row = OutRow {
                        id: r.get(0)?,
                        channel: r.get(1)?,
                        chat: r.get(2)?,
                        text: r.get(3)?,
                        parts_sent: r.get(4)?,
                        attempts: r.get(5)?,
                        image: r.get(7)?,
                    };
                    Ok((row, r.get::<_, bool>(6)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            let telegram = store.control().binding(&t, telegram::CHANNEL)?;
            let whatsapp = store.control().binding(&t, whatsapp::CHANNEL)?;
            Ok::<_, ChannelError>((rows, (telegram, whatsapp)))
        })
        .await?;
        let pending = !rows.is_empty();
        let mut chats_done = std::collections::HashSet::new();
        let bindings = Arc::new(bindings);
        let mut sends = tokio::task::JoinSet::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(SEND_CONCURRENCY));
        for (row, is_due) in rows {
            // Only a chat's oldest pending message may go (a delayed one holds the rest back),
            // and one per pass keeps the per-chat pace.
            if !chats_done.insert(row.chat.clone()) || !is_due {
                continue;
            }
            // Telegram groups take about 20 messages a minute; private chats about one a second.
            let gap = if row.channel == telegram::CHANNEL && row.chat.starts_with('-') {
                self.inner.config.chat_gap.max(GROUP_GAP)
            } else {
                self.inner.config.chat_gap
            };
            if self
                .inner
                .last_sent
                .get(&row.chat_key(tenant))
                .is_some_and(|t| t.elapsed() < gap)
            {
                continue;
            }
            let (account, per_second) = match row.channel.as_str() {
                telegram::CHANNEL => (bindings.0.as_ref(), self.inner.config.telegram_per_second),
                _ => (bindings.1.as_ref(), WHATSAPP_PER_SECOND),
            };
            if let Some(b) = account
                && !self.take_send_slot(&format!("{}/{}", row.channel, b.key), per_second)
            {
                continue;
            }
            let (me, t, b) = (self.clone(), tenant.clone(), bindings.clone());
            let permit = permits.clone().acquire_owned().await.expect("never closed");
            sends.spawn(async move {
                let _permit = permit;
                me.send_one(&t, row, &b.0, &b.1).await
            });
        }
        let sent_any = !sends.is_empty();
        while let Some(done) = sends.join_next().await {
            match done {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(tenant = %tenant, error = %e, "recording a send failed")
                }
                Err(e) => tracing::error!(tenant = %tenant, error = %e, "a send task failed"),
            }
        }
        Ok((pending, sent_any))
    }

    /// Takes one send from an account's per-second budget (0: unlimited); false when it is
    /// used up.
    fn take_send_slot(&self, account: &str, per_second: u32) -> bool {
        if per_second == 0 {
            return true;
        }
        let mut w = self
            .inner
            .send_windows
            .entry(account.to_owned())
            .or_insert((Instant::now(), 0));
        if w.0.elapsed() >= Duration::from_secs(1) {
            *w = (Instant::now(), 0);
        }
        if w.1 >= per_second {
            return false;
        }
        w.1 += 1;
        true
    }

    async fn send_one(
        &self,
        tenant: &TenantId,
        row: OutRow,
        tg_binding: &Option<crate::control::Binding>,
        wa_binding: &Option<crate::control::Binding>,
    ) -> Result<(), ChannelError> {
        let result = match (row.channel.as_str(), tg_binding, wa_binding, &row.image) {
            (telegram::CHANNEL, Some(b), _, Some(png)) => {
                telegram::send_photo(&self.bot(&b.token)?, &row.chat, png, &row.text).await
            }
            (whatsapp::CHANNEL, _, Some(b), Some(png)) => {
                let (http, api) = (&self.inner.http, &self.inner.config.whatsapp_api);
                match whatsapp::send_image(http, api, &b.key, &b.token, &row.chat, png, &row.text)
                    .await
                {
                    Err(SendError::OutsideWindow(_))
                        if self.inner.config.whatsapp_template.is_some() =>
                    {
                        self.whatsapp_part(b, &row.chat, row.text.clone()).await
                    }
                    r => r,
                }
            }
            (telegram::CHANNEL, Some(b), _, None) => {
                let bot = self.bot(&b.token)?;
                self.send_parts(tenant, &row, telegram::MAX_TEXT, |part| {
                    let (bot, chat) = (bot.clone(), row.chat.clone());
                    async move { telegram::send(&bot, &chat, &part).await }
                })
                .await?
            }
            (whatsapp::CHANNEL, _, Some(b), None) => {
                self.send_parts(tenant, &row, whatsapp::MAX_TEXT, |part| {
                    self.whatsapp_part(b, &row.chat, part)
                })
                .await?
            }
            (channel, ..) => Err(SendError::Unreachable(format!(
                "no {channel} account is bound to this tenant any more"
            ))),
        };
        self.record_send(tenant, row.id, row.attempts, result).await
    }

    /// Sends the parts of a row not sent yet, recording each; stops at the first failure.
    async fn send_parts<F, Fut>(
        &self,
        tenant: &TenantId,
        row: &OutRow,
        max: usize,
        send: F,
    ) -> Result<Result<String, SendError>, ChannelError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<String, SendError>>,
    {
        let mut sent = row.parts_sent;
        let mut outcome = Ok(String::new());
        for part in split_text(&row.text, max)
            .into_iter()
            .skip(row.parts_sent as usize)
        {
            match send(part).await {
                Ok(pid) => {
                    sent += 1;
                    self.record_parts(tenant, row.id, sent).await?;
                    outcome = Ok(pid);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        self.inner
            .last_sent
            .insert(row.chat_key(tenant), Instant::now());
        Ok(outcome)
    }

    /// One WhatsApp text; outside the 24-hour window, the configured template instead.
    async fn whatsapp_part(
        &self,
        b: &crate::control::Binding,
        chat: &str,
        part: String,
    ) -> Result<String, SendError> {
        let (http, api) = (&self.inner.http, &self.inner.config.whatsapp_api);
        let first = whatsapp::send(http, api, &b.key, &b.token, chat, &part, None).await;
        match (first, &self.inner.config.whatsapp_template) {
            (Err(SendError::OutsideWindow(_)), Some(template)) => {
                whatsapp::send(http, api, &b.key, &b.token, chat, &part, Some(template)).await
            }
            (r, _) => r,
        }
    }

    async fn record_parts(
        &self,
        tenant: &TenantId,
        id: i64,
        sent: i64,
    ) -> Result<(), ChannelError> {
        self.inner
            .store
            .pool()
            .with_conn(tenant.clone(), move |conn| {
                conn.exec(
                    "UPDATE outbox SET parts_sent = ?2 WHERE id = ?1",
                    params![id, sent],
                )?;
                Ok(())
            })
            .await
    }

    async fn record_send(
        &self,
        tenant: &TenantId,
        id: i64,
        attempts: i64,
        result: Result<String, SendError>,
    ) -> Result<(), ChannelError> {
        let store = self.inner.store.clone();
        let t = tenant.clone();
        let later = |d: Duration| {
            (chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or_default())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let (status, next, error, provider): (&str, String, Option<String>, Option<String>) =
            match result {
                Ok(pid) => ("sent", shop::now_utc(), None, Some(pid)),
                Err(SendError::RetryAfter(d)) => (
                    "pending",
                    later(d),
                    Some(format!("rate limited: retry after {d:?}")),
                    None,
                ),
                Err(SendError::Moved(new_chat)) => {
                    let store2 = store.clone();
                    let t2 = t.clone();
                    blocking(move || {
                        let handle = store2.pool().acquire(&t2)?;
                        handle.conn()?.exec(
                            "UPDATE outbox SET chat_id = ?2 WHERE id = ?1",
                            params![id, new_chat],
                        )?;
                        Ok::<_, ChannelError>(())
                    })
                    .await?;
                    (
                        "pending",
                        shop::now_utc(),
                        Some("chat migrated".into()),
                        None,
                    )
                }
                Err(SendError::Unreachable(why)) => {
                    ("unreachable", shop::now_utc(), Some(why), None)
                }
                Err(SendError::OutsideWindow(why)) => (
                    "failed",
                    shop::now_utc(),
                    Some(format!(
                        "not sent: outside the 24-hour window and no TARN_WHATSAPP_ALERT_TEMPLATE ({why})"
                    )),
                    None,
                ),
                Err(SendError::Retry(why)) if attempts + 1 >= MAX_ATTEMPTS => {
                    ("failed", shop::now_utc(), Some(why), None)
                }
                Err(SendError::Retry(why)) => (
                    "pending",
                    later(Duration::from_secs(1 << attempts.min(6))),
                    Some(why),
                    None,
                ),
            };
        blocking(move || {
            let handle = store.pool().acquire(&t)?;
            let conn = handle.conn()?;
            conn.exec(
                "UPDATE outbox SET status = ?2, next_attempt_at = ?3, last_error = ?4,
                        provider_id = coalesce(?5, provider_id), attempts = attempts + 1,
                        sent_at = CASE WHEN ?2 = 'sent' THEN ?3 END
                 WHERE id = ?1",
                params![id, status, next, error, provider],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_text_splits_under_the_limit_on_line_breaks() {
        let text = format!("{}\n{}", "a".repeat(3000), "b".repeat(3000));
        let parts = split_text(&text, 4096);
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().all(|p| p.chars().count() <= 4096));
        assert_eq!(parts.concat(), text);
        let one_line = "x".repeat(9000);
        let parts = split_text(&one_line, 4096);
        assert_eq!(
            parts.iter().map(|p| p.len()).collect::<Vec<_>>(),
            vec![4096, 4096, 808]
        );
        assert_eq!(split_text("hi", 4096), vec!["hi".to_string()]);
    }
}
