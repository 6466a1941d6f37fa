//! The inbox: updates from the chat apps, stored (deduplicated on the provider's key)
//! before the provider is answered, then processed one at a time per chat. Invariant: a
//! row leaves `pending` only with its reply queued in the same transaction (`finish`).

use super::Provider;
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, OptionalExtension, params};

/// What an inbox row is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InStatus {
    /// A text from a person, not processed yet.
    Pending,
    /// Processed: its reply is in the outbox.
    Done,
    /// Stored but never processed (not a text from a person).
    Ignored,
}

impl InStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            InStatus::Pending => "pending",
            InStatus::Done => "done",
            InStatus::Ignored => "ignored",
        }
    }
}

/// An inbound update, decoded enough to store and route.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub provider: Provider,
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
pub fn store(conn: &Connection, inbound: &Inbound) -> rusqlite::Result<bool> {
    let status = if inbound.actionable {
        InStatus::Pending
    } else {
        InStatus::Ignored
    };
    let n = conn.exec(
        "INSERT OR IGNORE INTO inbox (channel, update_key, chat_id, sender_id, sender_name, text,
                                      payload, status, note, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            inbound.provider.as_str(),
            inbound.update_key,
            inbound.chat_id,
            inbound.sender_id,
            inbound.sender_name,
            inbound.text,
            inbound.payload,
            status.as_str(),
            inbound.note,
            crate::clock::now()
        ],
    )?;
    Ok(n == 1 && inbound.actionable)
}

/// One pending inbox row.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: i64,
    pub provider: Provider,
    pub update_key: String,
    pub chat_id: String,
    pub sender_id: String,
    pub text: String,
}

impl Pending {
    /// Where its reply goes.
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            provider: self.provider,
            chat_id: self.chat_id.clone(),
            inbox_id: self.id,
        }
    }
}

/// The chats with pending rows.
pub fn pending_chats(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT chat_id FROM inbox WHERE status = 'pending' ORDER BY chat_id",
    )?;
    stmt.query_map([], |r| r.get::<_, String>(0))?.collect()
}

/// The chat's oldest pending row. A row of a provider this build does not know is left
/// ignored with a note (it can never be answered).
pub fn next_pending(conn: &Connection, chat: &str) -> rusqlite::Result<Option<Pending>> {
    loop {
        let row = conn
            .row(
                "SELECT id, update_key, chat_id, sender_id, text, channel FROM inbox
                 WHERE status = 'pending' AND chat_id = ?1 ORDER BY id LIMIT 1",
                [chat],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?;
        let Some((id, update_key, chat_id, sender_id, text, channel)) = row else {
            return Ok(None);
        };
        match Provider::parse(&channel) {
            Some(provider) => {
                return Ok(Some(Pending {
                    id,
                    provider,
                    update_key,
                    chat_id,
                    sender_id,
                    text,
                }));
            }
            None => {
                conn.exec(
                    "UPDATE inbox SET status = 'ignored', note = ?2 WHERE id = ?1",
                    params![id, format!("unknown channel {channel:?}")],
                )?;
            }
        }
    }
}

/// Whether the tenant has anything in flight: inbox rows to process or outbox rows to send.
pub fn any_pending(conn: &Connection) -> rusqlite::Result<bool> {
    conn.row(
        "SELECT EXISTS (SELECT 1 FROM inbox WHERE status = 'pending')
             OR EXISTS (SELECT 1 FROM outbox WHERE status = 'pending')",
        [],
        |r| r.get(0),
    )
}

/// Where a chat message's reply goes.
#[derive(Debug, Clone)]
pub struct ReplyTo {
    pub provider: Provider,
    pub chat_id: String,
    pub inbox_id: i64,
}

/// Marks an inbox row done and queues `reply` for its chat, as part of the caller's
/// transaction (with the action's effects when there are some).
pub fn finish(
    conn: &Connection,
    to: &ReplyTo,
    reply: &str,
    note: Option<&str>,
) -> rusqlite::Result<()> {
    let now = crate::clock::now();
    conn.exec(
        "UPDATE inbox SET status = 'done', processed_at = ?2, note = ?3 WHERE id = ?1",
        params![to.inbox_id, now, note],
    )?;
    super::outbox::queue(
        conn,
        &super::outbox::Out {
            provider: to.provider,
            chat_id: to.chat_id.clone(),
            text: reply.to_owned(),
            image: None,
        },
        super::outbox::Origin::Reply(to.inbox_id),
        &now,
    )
}
