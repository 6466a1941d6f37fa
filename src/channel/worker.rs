//! The inbox workers: each chat's pending rows run one at a time, oldest first, through
//! the same pipeline as every message (`message::handle`); a stranger can only `/join`.
//! Invariant: a row leaves `pending` only in the transaction that queues its reply (with
//! the action's effects, when there are some); a failed row stays pending and is retried.

use super::{ChannelError, Channels};
use crate::executor::{ExecError, Input, Request};
use crate::mail::inbox::{self, Pending};
use crate::shop;
use crate::shop::staff::Redeemed;
use crate::tenant::TenantId;
use rusqlite::Connection;
use tokio::sync::mpsc;

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

    /// Processes a chat's pending rows one at a time, oldest first.
    async fn process_chat(&self, tenant: TenantId, chat: String) {
        let key = (tenant.clone(), chat.clone());
        let lock = self
            .inner
            .chat_locks
            .entry(key.clone())
            .or_default()
            .clone();
        let held = lock.lock().await;
        while !self.stopping() {
            let c = chat.clone();
            let next = self
                .inner
                .store
                .pool()
                .with_conn(tenant.clone(), move |conn| {
                    let Some(row) = inbox::next_pending(conn, &c)? else {
                        return Ok(None);
                    };
                    let staff = shop::staff::identify(conn, row.provider.as_str(), &row.sender_id)?;
                    Ok::<_, ChannelError>(Some((row, staff)))
                })
                .await;
            let (row, staff) = match next {
                Ok(Some(n)) => n,
                Ok(None) => break,
                Err(e) => {
                    tracing::error!(tenant = %tenant, error = %e, "cannot read the inbox");
                    break;
                }
            };
            let done = match staff {
                Some(staff) => self.run_staff_message(&tenant, row, staff).await,
                None => self.answer_a_stranger(&tenant, row).await,
            };
            if let Err(e) = done {
                // The row stays pending and is retried on the next wake or restart.
                tracing::error!(tenant = %tenant, error = %e, "processing an inbox row failed");
                break;
            }
        }
        drop(held);
        // The map keeps a chat's lock only while someone holds or waits for it.
        self.inner
            .chat_locks
            .remove_if(&key, |_, l| std::sync::Arc::strong_count(l) <= 2);
    }

    /// A staff member's message, through the pipeline; a refusal is the reply.
    async fn run_staff_message(
        &self,
        tenant: &TenantId,
        row: Pending,
        staff: i64,
    ) -> Result<(), ChannelError> {
        let to = row.reply_to();
        let req = Request {
            inbound_id: Some(row.update_key.clone()),
            channel: row.provider.as_str().to_owned(),
            sender: Some(staff.to_string()),
            ceiling: None,
            input: Input::Text(row.text.clone()),
            parse_us: None,
            reply_to: Some(to.clone()),
        };
        match crate::message::handle(&self.inner.store, self.inner.llm.as_ref(), tenant, req).await
        {
            Ok(_) => Ok(()),
            Err(ExecError::Invalid(m) | ExecError::UnknownSender(m)) => {
                self.inner
                    .store
                    .pool()
                    .with_conn(tenant.clone(), move |conn| {
                        let tx = conn.transaction()?;
                        inbox::finish(&tx, &to, &format!("Sorry: {m}"), Some("refused"))?;
                        tx.commit()?;
                        Ok::<_, ChannelError>(())
                    })
                    .await
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn answer_a_stranger(&self, tenant: &TenantId, row: Pending) -> Result<(), ChannelError> {
        self.inner
            .store
            .pool()
            .with_conn(tenant.clone(), move |conn| {
                Ok::<_, ChannelError>(answer_stranger(conn, &row)?)
            })
            .await
    }
}

/// A stranger's message: `/join CODE` links them to the staff member with that code;
/// anything else gets the polite line. Either way only the identity, the inbox row and the
/// reply are written, in one transaction.
fn answer_stranger(conn: &mut Connection, row: &Pending) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
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
