//! The sync feed of a tenant for the owner's app: a snapshot of the synced tables, then the
//! changesets recorded after it (`tenant::session`), by `(epoch, seq)`; a new epoch after a
//! restore, a migration or a reset; retention of the log.
//! Invariants: a cursor is answered with every change after it, in order, or with
//! `Resync` — never with a gap; nothing outside `session::SYNCED` leaves the tenant file.

use crate::control::schedule::ScheduleRow;
use crate::tenant::session::{self, RETIRED_COLUMNS, SYNCED};
use crate::tenant::sqlite::Cached;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

/// Most log rows one `changes` answer combines (the client asks again for the rest).
pub const BATCH_ROWS: i64 = 2000;

/// Where the feed stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Position {
    /// Changes of one history: a cursor of another epoch is answered with `Resync`.
    pub epoch: String,
    /// The last change recorded (0 before the first).
    pub seq: i64,
    /// The tenant file's schema version: a client built on another one must re-bootstrap.
    pub schema_version: i64,
}

/// Why a client must start again from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resync {
    /// The tenant was restored, migrated or reset since the cursor was taken.
    Epoch,
    /// The client's copy has another schema version.
    Schema,
    /// The changes after the cursor were pruned by retention.
    Pruned,
    /// The cursor is past the last change: it belongs to another history.
    Ahead,
}

impl Resync {
    /// The reason, for the 409's message.
    pub fn reason(self) -> &'static str {
        match self {
            Resync::Epoch => {
                "the shop's data was restored, migrated or reset since this copy was made"
            }
            Resync::Schema => "this copy has another schema version",
            Resync::Pruned => "the changes after this position are no longer kept",
            Resync::Ahead => "this position is past the last change",
        }
    }
}

/// Errors of the feed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("resync required: {}", .0.reason())]
    Resync(Resync),
    #[error(transparent)]
    Db(#[from] rusqlite::Error),
}

/// Where the feed stands now.
pub fn position(conn: &Connection) -> rusqlite::Result<Position> {
    conn.row(
        "SELECT epoch, max(coalesce((SELECT max(seq) FROM sync_log), 0), pruned_through),
                (SELECT user_version FROM pragma_user_version)
         FROM sync_state",
        [],
        |r| {
            Ok(Position {
                epoch: r.get(0)?,
                seq: r.get(1)?,
                schema_version: r.get(2)?,
            })
        },
    )
}

/// The changes after `after`, combined into one changeset, and the position they bring a
/// client to. `None` when there is nothing after `after`.
pub fn changes(
    conn: &Connection,
    epoch: &str,
    schema_version: Option<i64>,
    after: i64,
) -> Result<Option<(Vec<u8>, Position)>, SyncError> {
    let tx = conn.unchecked_transaction()?;
    let now = position(&tx)?;
    let pruned: i64 = tx.row("SELECT pruned_through FROM sync_state", [], |r| r.get(0))?;
    if epoch != now.epoch {
        return Err(SyncError::Resync(Resync::Epoch));
    }
    if schema_version.is_some_and(|v| v != now.schema_version) {
        return Err(SyncError::Resync(Resync::Schema));
    }
    if after < pruned {
        return Err(SyncError::Resync(Resync::Pruned));
    }
    if after > now.seq {
        return Err(SyncError::Resync(Resync::Ahead));
    }
    if after == now.seq {
        return Ok(None);
    }
    let mut stmt = tx.prepare_cached(
        "SELECT seq, changeset FROM sync_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    let rows: Vec<(i64, Vec<u8>)> = stmt
        .query_map(params![after, BATCH_ROWS], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    drop(stmt);
    let through = rows.last().map_or(after, |(seq, _)| *seq);
    // Dense: the rows are exactly after+1 ..= through.
    debug_assert_eq!(rows.len() as i64, through - after);
    let body = session::combine(rows.iter().map(|(_, cs)| cs.as_slice()))?;
    Ok(Some((
        body,
        Position {
            seq: through,
            ..now
        },
    )))
}

/// What happened at each change after `after` (for the event stream): `(seq, what)`.
pub fn events_after(
    conn: &Connection,
    after: i64,
    limit: i64,
) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT seq, what FROM sync_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
    stmt.query_map(params![after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}

/// Writes a snapshot of the synced tables to a new SQLite file at `dest` (which must not
/// exist): their tables and indexes, their rows with retired columns empty, and a
/// `tarn_sync` row with the position it is at — all read in one transaction.
pub fn snapshot(conn: &Connection, dest: &Path) -> Result<Position, SyncError> {
    // The copies keep their REFERENCES to private tables, which are not copied.
    conn.execute_batch("PRAGMA foreign_keys = OFF")?;
    let result = copy_synced(conn, dest);
    let _ = conn.execute("DETACH DATABASE snap", []);
    conn.execute_batch("PRAGMA foreign_keys = ON")?;
    result
}

fn copy_synced(conn: &Connection, dest: &Path) -> Result<Position, SyncError> {
    conn.execute(
        "ATTACH DATABASE ?1 AS snap",
        [dest.to_string_lossy().as_ref()],
    )?;
    conn.execute_batch("PRAGMA snap.journal_mode = OFF; PRAGMA snap.synchronous = OFF")?;
    let tx = conn.unchecked_transaction()?;
    let at = position(&tx)?;
    for table in SYNCED {
        let schema: Option<String> = tx
            .query_row(
                "SELECT sql FROM main.sqlite_master WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .optional()?;
        let Some(schema) = schema else { continue };
        tx.execute_batch(&in_snap(&schema, "CREATE TABLE "))?;
        tx.execute(
            &format!("INSERT INTO snap.{table} SELECT * FROM main.{table}"),
            [],
        )?;
        for (t, column) in RETIRED_COLUMNS.iter().filter(|(t, _)| t == table) {
            tx.execute(&format!("UPDATE snap.{t} SET {column} = NULL"), [])?;
        }
        let indexes: Vec<String> = tx
            .prepare(
                "SELECT sql FROM main.sqlite_master
                 WHERE type = 'index' AND tbl_name = ?1 AND sql IS NOT NULL",
            )?
            .query_map([table], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for index in indexes {
            let index = index
                .replacen("CREATE UNIQUE INDEX ", "CREATE UNIQUE INDEX snap.", 1)
                .replacen("CREATE INDEX ", "CREATE INDEX snap.", 1);
            tx.execute_batch(&index)?;
        }
    }
    tx.execute_batch(
        "CREATE TABLE snap.tarn_sync (epoch TEXT NOT NULL, seq INTEGER NOT NULL,
                                      schema_version INTEGER NOT NULL)",
    )?;
    tx.execute(
        "INSERT INTO snap.tarn_sync VALUES (?1, ?2, ?3)",
        params![at.epoch, at.seq, at.schema_version],
    )?;
    tx.commit()?;
    Ok(at)
}

/// `CREATE TABLE name …` as `CREATE TABLE snap.name …`.
fn in_snap(schema: &str, prefix: &str) -> String {
    match schema.strip_prefix(prefix) {
        Some(rest) => format!("{prefix}snap.{rest}"),
        None => schema.to_owned(),
    }
}

/// Retention: removes log rows older than `max_age_ms` and beyond the newest `max_rows`,
/// remembering the last removed so its cursor gets `Resync::Pruned`. Returns how many.
pub fn prune(
    conn: &Connection,
    now_ms: i64,
    max_age_ms: i64,
    max_rows: i64,
) -> rusqlite::Result<usize> {
    let last: Option<i64> = conn.row(
        "SELECT max(seq) FROM sync_log
         WHERE at_ms < ?1 OR seq <= (SELECT max(seq) FROM sync_log) - ?2",
        params![now_ms - max_age_ms, max_rows],
        |r| r.get(0),
    )?;
    let Some(last) = last else { return Ok(0) };
    conn.execute(
        "UPDATE sync_state SET pruned_through = max(pruned_through, ?1)",
        [last],
    )?;
    conn.execute("DELETE FROM sync_log WHERE seq <= ?1", [last])
}

/// Brings the tenant file's `schedules` table (synced) in line with the control db's
/// schedule index (`rows`, the tenant's), inside the caller's transaction; the caller records
/// it. A row that did not change is left alone, so it makes no change in the feed.
pub fn mirror_schedules(conn: &Connection, rows: &[ScheduleRow]) -> rusqlite::Result<()> {
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    let kinds = serde_json::to_string(&kinds).expect("strings serialize");
    conn.execute(
        "DELETE FROM schedules WHERE kind NOT IN (SELECT value FROM json_each(?1))",
        [kinds],
    )?;
    for r in rows {
        let recipients = serde_json::to_string(&r.recipients).expect("strings serialize");
        conn.exec(
            "INSERT INTO schedules (kind, cron, timezone, enabled, recipients, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (kind) DO UPDATE SET cron = excluded.cron, timezone = excluded.timezone,
               enabled = excluded.enabled, recipients = excluded.recipients,
               updated_at = excluded.updated_at
             WHERE (cron, timezone, enabled, recipients, updated_at) IS NOT
                   (excluded.cron, excluded.timezone, excluded.enabled, excluded.recipients,
                    excluded.updated_at)",
            params![
                r.kind,
                r.cron,
                r.timezone,
                r.enabled,
                recipients,
                r.updated_at
            ],
        )?;
    }
    Ok(())
}
