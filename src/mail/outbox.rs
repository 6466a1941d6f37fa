//! The outbox: replies and job messages waiting to be sent, with what became of each send.
//! Invariants: queuing a row flags the transaction for the pool's commit listener (the
//! row is its own signal); a row is sent part by part and each part is recorded, so a
//! retry never resends a part the provider took; a row ends `sent`, `failed` or
//! `unreachable`, never silently dropped.

use super::Provider;
use crate::tenant::session;
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, params};
use std::time::Duration;

/// Where an outbox row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutStatus {
    Pending,
    Sent,
    /// Given up after errors (or outside WhatsApp's window without a template).
    Failed,
    /// Blocked, kicked or gone.
    Unreachable,
}

impl OutStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            OutStatus::Pending => "pending",
            OutStatus::Sent => "sent",
            OutStatus::Failed => "failed",
            OutStatus::Unreachable => "unreachable",
        }
    }
}

/// A message to queue.
#[derive(Debug, Clone)]
pub struct Out {
    pub provider: Provider,
    pub chat_id: String,
    pub text: String,
    /// A PNG to send as a photo / image, `text` being its caption.
    pub image: Option<Vec<u8>>,
}

/// Why a row was queued.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// The reply to this inbox row.
    Reply(i64),
    /// A scheduled job of this kind.
    Job(&'a str),
}

/// Queues one message, as part of the caller's transaction.
pub fn queue(conn: &Connection, out: &Out, origin: Origin<'_>, now: &str) -> rusqlite::Result<()> {
    let (inbox_id, origin) = match origin {
        Origin::Reply(id) => (Some(id), None),
        Origin::Job(kind) => (None, Some(kind)),
    };
    conn.exec(
        "INSERT INTO outbox (channel, chat_id, text, image, origin, inbox_id, status,
                             next_attempt_at, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?7)",
        params![
            out.provider.as_str(),
            out.chat_id,
            out.text,
            out.image,
            origin,
            inbox_id,
            now
        ],
    )?;
    session::notify_on_commit(conn);
    Ok(())
}

/// Queues messages for a job of `kind`, as part of the caller's transaction; how many.
pub fn enqueue(conn: &Connection, kind: &str, outs: &[Out]) -> rusqlite::Result<i64> {
    let now = crate::clock::now();
    for o in outs {
        queue(conn, o, Origin::Job(kind), &now)?;
    }
    Ok(outs.len() as i64)
}

/// An outbox row to send.
#[derive(Debug, Clone)]
pub struct OutRow {
    pub id: i64,
    pub provider: Provider,
    pub chat: String,
    pub text: String,
    pub image: Option<Vec<u8>>,
    pub parts_sent: i64,
    pub attempts: i64,
    /// Its next attempt is due now.
    pub due: bool,
}

/// The oldest pending rows (at most 200), due or not. A row of a provider this build does
/// not know ends unreachable.
pub fn pending(conn: &Connection) -> rusqlite::Result<Vec<OutRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, chat_id, text, parts_sent, attempts, next_attempt_at <= ?1, image
         FROM outbox WHERE status = 'pending' ORDER BY id LIMIT 200",
    )?;
    let rows = stmt
        .query_map([crate::clock::now()], |r| {
            Ok((
                r.get::<_, String>(1)?,
                OutRow {
                    id: r.get(0)?,
                    provider: Provider::Telegram,
                    chat: r.get(2)?,
                    text: r.get(3)?,
                    parts_sent: r.get(4)?,
                    attempts: r.get(5)?,
                    due: r.get(6)?,
                    image: r.get(7)?,
                },
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (channel, mut row) in rows {
        match Provider::parse(&channel) {
            Some(p) => {
                row.provider = p;
                out.push(row);
            }
            None => record(
                conn,
                &row,
                0,
                Err(SendError::Unreachable(format!(
                    "unknown channel {channel:?}"
                ))),
            )?,
        }
    }
    Ok(out)
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

/// Sends before a failing message is given up.
pub const MAX_ATTEMPTS: i64 = 6;

/// Records that the first `sent` parts of a row went out (before its last part).
pub fn record_parts(conn: &Connection, id: i64, sent: i64) -> rusqlite::Result<()> {
    conn.exec(
        "UPDATE outbox SET parts_sent = ?2 WHERE id = ?1",
        params![id, sent],
    )?;
    Ok(())
}

/// Records what became of a send attempt of `row` (`parts` of its parts now sent in all):
/// sent, retried later, moved to a new chat, or given up.
pub fn record(
    conn: &Connection,
    row: &OutRow,
    parts: i64,
    result: Result<String, SendError>,
) -> rusqlite::Result<()> {
    let now = crate::clock::now;
    let (status, next, error, provider_id, chat) = match result {
        Ok(pid) => (OutStatus::Sent, now(), None, Some(pid), None),
        Err(SendError::RetryAfter(d)) => (
            OutStatus::Pending,
            crate::clock::after(d),
            Some(format!("rate limited: retry after {d:?}")),
            None,
            None,
        ),
        Err(SendError::Moved(new_chat)) => (
            OutStatus::Pending,
            now(),
            Some("chat migrated".into()),
            None,
            Some(new_chat),
        ),
        Err(SendError::Unreachable(why)) => (OutStatus::Unreachable, now(), Some(why), None, None),
        Err(SendError::OutsideWindow(why)) => (
            OutStatus::Failed,
            now(),
            Some(format!(
                "not sent: outside the 24-hour window and no TARN_WHATSAPP_ALERT_TEMPLATE ({why})"
            )),
            None,
            None,
        ),
        Err(SendError::Retry(why)) if row.attempts + 1 >= MAX_ATTEMPTS => {
            (OutStatus::Failed, now(), Some(why), None, None)
        }
        Err(SendError::Retry(why)) => (
            OutStatus::Pending,
            crate::clock::after(Duration::from_secs(1 << row.attempts.min(6))),
            Some(why),
            None,
            None,
        ),
    };
    conn.exec(
        "UPDATE outbox SET status = ?2, next_attempt_at = ?3, last_error = ?4,
                provider_id = coalesce(?5, provider_id), attempts = attempts + 1,
                parts_sent = ?6, chat_id = coalesce(?7, chat_id),
                sent_at = CASE WHEN ?2 = 'sent' THEN ?3 END
         WHERE id = ?1",
        params![
            row.id,
            status.as_str(),
            next,
            error,
            provider_id,
            parts,
            chat
        ],
    )?;
    Ok(())
}

/// What a provider said became of messages sent: (provider id, status, error).
pub fn record_statuses(
    conn: &Connection,
    statuses: &[(String, String, Option<String>)],
) -> rusqlite::Result<()> {
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
