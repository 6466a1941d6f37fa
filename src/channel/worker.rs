//! The inbox workers: each chat's pending rows run one at a time, oldest first, through
//! the same pipeline as every message (`message::handle`); a stranger can only `/join`.
//! Invariant: a row leaves `pending` only in the transaction that queues its reply (with
//! the action's effects, when there are some); a failed row stays pending and is retried.

use super::{ChannelError, Channels};
use crate::executor::{ExecError, Input, Origin, Request};
use crate::mail::inbox::ReplyTo;
use crate::mail::inbox::{self, Pending};
use crate::message::{self, FirstStep};
use crate::shop;
use crate::shop::staff::Redeemed;
use crate::tenant::{TenantId, sqlite};
use rusqlite::Connection;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The polite line for a stranger.
pub const STRANGER: &str = "Hi! This is a shop's bot for its staff. Ask the owner for your join code, then send: /join CODE";

impl Channels {
    /// Runs a worker for each wake until the runtime stops.
    pub(super) async fn inbox_loop(
        self,
        mut woken: mpsc::UnboundedReceiver<(TenantId, Option<String>)>,
    ) {
        while let Some((tenant, chat)) = woken.recv().await {
            let c = self.clone();
            self.inner.work.spawn(async move {
                match chat {
                    Some(chat) => c.process_chat(tenant, chat).await,
                    None => c.process_tenant(tenant).await,
                }
            });
            // Counted out once tracked, so a stop never sees neither.
            self.inner.woken.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Processes every chat of the tenant with pending rows (after a restart).
    async fn process_tenant(&self, tenant: TenantId) {
        let chats = self
            .inner
            .store
            .pool()
            .with_conn(tenant.clone(), |conn| {
                Ok::<_, ChannelError>(inbox::pending_chats(conn)?)
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
    }

    /// Processes a chat's pending rows one at a time, oldest first (once its lock is free).
    async fn process_chat(&self, tenant: TenantId, chat: String) {
        let held = self.chat_lock(&tenant, &chat).lock_owned().await;
        self.run_chat(tenant, chat, held, None).await;
    }

    /// The lock that keeps one chat's rows in order.
    pub(super) fn chat_lock(&self, tenant: &TenantId, chat: &str) -> Arc<AsyncMutex<()>> {
        self.inner
            .chat_locks
            .entry((tenant.clone(), chat.to_owned()))
            .or_default()
            .clone()
    }

    /// Runs the chat's pending rows while holding its lock, each in one trip to the tenant's
    /// file (read, identify, run, and look for the next) unless the LLM is asked; `first`:
    /// the outcome of a trip already made.
    pub(super) async fn run_chat(
        &self,
        tenant: TenantId,
        chat: String,
        held: OwnedMutexGuard<()>,
        mut first: Option<Result<Step, ChannelError>>,
    ) {
        let with_llm = self.inner.llm.is_some();
        while !self.stopping() {
            let step = match first.take() {
                Some(step) => step,
                None => {
                    let c = chat.clone();
                    self.inner
                        .store
                        .pool()
                        .with_conn(tenant.clone(), move |conn| next_row(conn, &c, with_llm))
                        .await
                }
            };
            let more = match step {
                Ok(Step::Done { more }) => more,
                Ok(Step::AskLlm(req, ask, started)) => {
                    match self.ask_llm(&tenant, *req, *ask, started).await {
                        Ok(()) => true,
                        Err(e) => {
                            // The row stays pending and is retried on the next wake or restart.
                            tracing::error!(tenant = %tenant, error = %e, "processing an inbox row failed");
                            false
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(tenant = %tenant, error = %e, "processing an inbox row failed");
                    false
                }
            };
            if !more {
                break;
            }
        }
        drop(held);
        self.forget_chat_lock(tenant, chat);
    }

    /// Drops a chat's lock from the map unless someone holds or waits for it.
    pub(super) fn forget_chat_lock(&self, tenant: TenantId, chat: String) {
        self.inner
            .chat_locks
            .remove_if(&(tenant, chat), |_, l| Arc::strong_count(l) == 1);
    }

    /// The rest of a row the built-in parser was not sure of: the LLM, then the run; a
    /// refusal is the reply.
    async fn ask_llm(
        &self,
        tenant: &TenantId,
        req: Request,
        ask: message::AskLlm,
        started: Instant,
    ) -> Result<(), ChannelError> {
        let llm = self.inner.llm.as_ref().expect("asked only when configured");
        let to = req
            .reply_to
            .clone()
            .expect("chat requests carry their inbox row");
        match message::with_llm(&self.inner.store, llm, tenant, req, ask, started).await {
            Ok(_) => Ok(()),
            Err(ExecError::Invalid(m) | ExecError::UnknownSender(m)) => {
                self.inner
                    .store
                    .pool()
                    .with_conn(tenant.clone(), move |conn| refuse(conn, &to, &m))
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// What one trip to a chat's inbox did.
pub(super) enum Step {
    /// The oldest row was answered (or there was none); `more`: another row waits.
    Done { more: bool },
    /// The oldest row needs the LLM: the request, what to ask, when it started.
    AskLlm(Box<Request>, Box<message::AskLlm>, Instant),
}

/// Takes the chat's oldest pending row: a stranger's gets the stranger's answer, a staff
/// member's goes through the message pipeline's first step (a refusal is the reply).
pub(super) fn next_row(
    conn: &mut Connection,
    chat: &str,
    with_llm: bool,
) -> Result<Step, ChannelError> {
    let started = Instant::now();
    let Some(row) = inbox::next_pending(conn, chat)? else {
        return Ok(Step::Done { more: false });
    };
    match shop::staff::identify(conn, row.provider.as_str(), &row.sender_id)? {
        None => answer_stranger(conn, &row)?,
        Some(staff) => {
            let to = row.reply_to();
            let req = Request {
                inbound_id: Some(row.update_key.clone()),
                channel: Origin::Chat(row.provider),
                sender: Some(staff.to_string()),
                ceiling: None,
                input: Input::Text(row.text.clone()),
                parse_us: None,
                reply_to: Some(to.clone()),
            };
            match message::first_step(conn, &req, with_llm, started) {
                Ok(FirstStep::Done(_)) => {}
                Ok(FirstStep::AskLlm(ask)) => {
                    return Ok(Step::AskLlm(Box::new(req), ask, started));
                }
                Err(ExecError::Invalid(m) | ExecError::UnknownSender(m)) => refuse(conn, &to, &m)?,
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Step::Done {
        more: inbox::next_pending(conn, chat)?.is_some(),
    })
}

/// A request the executor refused as bad input: the refusal is the reply.
fn refuse(conn: &mut Connection, to: &ReplyTo, why: &str) -> Result<(), ChannelError> {
    let tx = sqlite::begin(conn)?;
    inbox::finish(&tx, to, &format!("Sorry: {why}"), Some("refused"))?;
    tx.commit()?;
    Ok(())
}

/// A stranger's message: `/join CODE` links them to the staff member with that code;
/// anything else gets the polite line. Either way only the identity, the inbox row and the
/// reply are written, in one transaction.
fn answer_stranger(conn: &mut Connection, row: &Pending) -> rusqlite::Result<()> {
    let tx = sqlite::begin(conn)?;
    let mut words = row.text.split_whitespace();
    let cmd = words.next().unwrap_or("").split('@').next().unwrap_or("");
    let reply = if cmd.eq_ignore_ascii_case("/join") {
        let code = words.next().unwrap_or("");
        let channel = row.provider.as_str();
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
    inbox::finish(&tx, &row.reply_to(), &reply, Some("stranger"))?;
    tx.commit()
}
