//! Change capture for sync: every pooled tenant connection carries a SQLite session (the
//! session extension, compiled into the bundled SQLite by `.cargo/config.toml`) on the
//! tables of `SYNCED`; a writer calls `record` inside its transaction, before commit, and
//! what the transaction changed becomes one densely numbered `sync_log` row, atomically.
//! Invariants: only `SYNCED` tables are ever captured; a `sync_log` row is never empty.

use super::sqlite::Cached;
use rusqlite::Connection;
use rusqlite::ffi::{
    SQLITE_OK, sqlite3, sqlite3_free, sqlite3_get_clientdata, sqlite3_wal_checkpoint,
    sqlite3_wal_hook,
};
use std::ffi::{CStr, c_char, c_int, c_void};
use std::sync::Arc;

/// A tenant's bell: its count goes up after every commit on the tenant's pooled connections,
/// waking long-polls and event streams without holding a connection.
pub type Bell = Arc<tokio::sync::watch::Sender<u64>>;

/// SQLite's default: checkpoint the WAL once it holds this many frames (a WAL hook of our
/// own replaces the built-in one, so it does this itself).
const AUTOCHECKPOINT_FRAMES: c_int = 1000;

/// The tables an owner's app mirrors: the shop's business data. Everything else in a tenant
/// file (idempotency keys, inbox and outbox, chat identities, join codes, the journal, the
/// message log and its LLM usage, job markers, the sync log itself) is private: never in a
/// snapshot or a changeset. Each has a primary key (the session extension needs one).
pub const SYNCED: &[&str] = &[
    "settings",
    "products",
    "product_aliases",
    "customers",
    "staff",
    "sales",
    "sale_items",
    "payments",
    "expenses",
    "orders",
    "order_items",
    "stock_movements",
    "reports",
];

/// Columns of synced tables that are always NULL (their values moved to private tables):
/// kept only because dropping a UNIQUE column needs a table rebuild.
pub const RETIRED_COLUMNS: &[(&str, &str)] =
    &[("staff", "join_code"), ("staff", "join_code_expires_at")];

#[repr(C)]
struct Session {
    _opaque: [u8; 0],
}

#[repr(C)]
struct ChangeGroup {
    _opaque: [u8; 0],
}

// The session extension's entry points (sqlite3session.h). The bundled SQLite is built with
// SQLITE_ENABLE_SESSION, but libsqlite3-sys's prebuilt bindings leave them out (its `session`
// feature would need bindgen and libclang at build time), so the few used are declared here.
unsafe extern "C" {
    fn sqlite3session_create(
        db: *mut sqlite3,
        db_name: *const c_char,
        out: *mut *mut Session,
    ) -> c_int;
    fn sqlite3session_delete(session: *mut Session);
    fn sqlite3session_isempty(session: *mut Session) -> c_int;
    fn sqlite3session_attach(session: *mut Session, table: *const c_char) -> c_int;
    fn sqlite3session_changeset(
        session: *mut Session,
        n: *mut c_int,
        out: *mut *mut c_void,
    ) -> c_int;
    fn sqlite3changegroup_new(out: *mut *mut ChangeGroup) -> c_int;
    fn sqlite3changegroup_add(group: *mut ChangeGroup, n: c_int, data: *mut c_void) -> c_int;
    fn sqlite3changegroup_output(
        group: *mut ChangeGroup,
        n: *mut c_int,
        out: *mut *mut c_void,
    ) -> c_int;
    fn sqlite3changegroup_delete(group: *mut ChangeGroup);
    fn sqlite3_set_clientdata(
        db: *mut sqlite3,
        name: *const c_char,
        data: *mut c_void,
        destructor: Option<unsafe extern "C" fn(*mut c_void)>,
    ) -> c_int;
}

/// Where a connection keeps its session (SQLite's per-connection client data).
const KEY: &CStr = c"tarn.sync.session";
/// Where a connection keeps its bell.
const BELL_KEY: &CStr = c"tarn.sync.bell";

fn failure(rc: c_int, what: &str) -> rusqlite::Error {
    rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(rc), Some(what.to_owned()))
}

fn check(rc: c_int, what: &str) -> rusqlite::Result<()> {
    if rc == SQLITE_OK {
        Ok(())
    } else {
        Err(failure(rc, what))
    }
}

/// A new session on `db` with every synced table attached.
///
/// # Safety
/// `db` is an open connection used by this thread only.
unsafe fn new_session(db: *mut sqlite3) -> rusqlite::Result<*mut Session> {
    let mut session = std::ptr::null_mut();
    // SAFETY: `db` is open; "main" and the table names are NUL-terminated.
    unsafe {
        check(
            sqlite3session_create(db, c"main".as_ptr(), &mut session),
            "sqlite3session_create",
        )?;
        for table in SYNCED {
            let name = std::ffi::CString::new(*table).expect("no NUL in table names");
            let rc = sqlite3session_attach(session, name.as_ptr());
            if rc != SQLITE_OK {
                sqlite3session_delete(session);
                return Err(failure(rc, "sqlite3session_attach"));
            }
        }
    }
    Ok(session)
}

fn session_of(conn: &Connection) -> *mut Session {
    // SAFETY: the handle is only used for client data, on the connection's own thread.
    unsafe { sqlite3_get_clientdata(conn.handle(), KEY.as_ptr()) as *mut Session }
}

fn set_session(conn: &Connection, session: *mut Session) {
    // SAFETY: as above; no destructor: `stop` deletes the session before the connection closes.
    unsafe {
        sqlite3_set_clientdata(conn.handle(), KEY.as_ptr(), session as *mut c_void, None);
    }
}

/// Runs after every commit (SQLite's WAL hook, called once the write lock is released):
/// rings the tenant's bell and checkpoints like SQLite's own hook would.
unsafe extern "C" fn after_commit(
    bell: *mut c_void,
    db: *mut sqlite3,
    db_name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: `bell` is the `Box<Bell>` `start` registered, alive until `stop`.
    let bell = unsafe { &*(bell as *const Bell) };
    bell.send_modify(|n| *n = n.wrapping_add(1));
    if frames >= AUTOCHECKPOINT_FRAMES {
        // SAFETY: allowed from the WAL hook; a busy checkpoint is simply retried later.
        unsafe { sqlite3_wal_checkpoint(db, db_name) };
    }
    SQLITE_OK
}

/// Starts capturing on a connection (unless `capture` is off: then `record` records
/// nothing) and rings `bell` after each of its commits. Once per connection; the pool calls
/// it for every connection it hands out. `stop` must run before it closes.
pub fn start(conn: &Connection, bell: Bell, capture: bool) -> rusqlite::Result<()> {
    // SAFETY: only client data is read.
    if !unsafe { sqlite3_get_clientdata(conn.handle(), BELL_KEY.as_ptr()) }.is_null() {
        return Ok(());
    }
    if capture {
        // SAFETY: the connection is open and used by this thread.
        let session = unsafe { new_session(conn.handle())? };
        set_session(conn, session);
    }
    let bell = Box::into_raw(Box::new(bell)) as *mut c_void;
    // SAFETY: the box lives until `stop` unregisters the hook and frees it.
    unsafe {
        sqlite3_set_clientdata(conn.handle(), BELL_KEY.as_ptr(), bell, None);
        sqlite3_wal_hook(conn.handle(), Some(after_commit), bell);
    }
    Ok(())
}

/// Stops capturing, unhooks the bell and frees both (before the connection closes).
pub fn stop(conn: &Connection) {
    let session = session_of(conn);
    if !session.is_null() {
        set_session(conn, std::ptr::null_mut());
        // SAFETY: the session was created on this connection, which is still open.
        unsafe { sqlite3session_delete(session) };
    }
    // SAFETY: the hook is removed before the box it points to is freed.
    unsafe {
        let bell = sqlite3_get_clientdata(conn.handle(), BELL_KEY.as_ptr());
        if !bell.is_null() {
            sqlite3_wal_hook(conn.handle(), None, std::ptr::null_mut());
            sqlite3_set_clientdata(conn.handle(), BELL_KEY.as_ptr(), std::ptr::null_mut(), None);
            drop(Box::from_raw(bell as *mut Bell));
        }
    }
}

/// Copies a buffer SQLite allocated and frees it.
///
/// # Safety
/// `p` points to `n` bytes allocated by SQLite (or is null with `n == 0`).
unsafe fn take_buffer(p: *mut c_void, n: c_int) -> Vec<u8> {
    if p.is_null() {
        return Vec::new();
    }
    // SAFETY: per the contract above.
    let out = unsafe { std::slice::from_raw_parts(p as *const u8, n.max(0) as usize).to_vec() };
    // SAFETY: SQLite allocated it.
    unsafe { sqlite3_free(p) };
    out
}

/// What the current transaction has changed in the synced tables so far, as a changeset,
/// and a fresh session for what comes after. Empty when nothing changed (or the connection
/// does not capture).
fn take_changes(conn: &Connection) -> rusqlite::Result<Vec<u8>> {
    let session = session_of(conn);
    // SAFETY: the session belongs to this open connection.
    if session.is_null() || unsafe { sqlite3session_isempty(session) } != 0 {
        // Nothing touched a synced table: no changeset to make, and the session can stay.
        return Ok(Vec::new());
    }
    let (mut n, mut p) = (0, std::ptr::null_mut());
    // SAFETY: the session belongs to this open connection.
    let rc = unsafe { sqlite3session_changeset(session, &mut n, &mut p) };
    // SAFETY: on success SQLite allocated `n` bytes at `p`; on failure `p` is null.
    let bytes = unsafe { take_buffer(p, n) };
    check(rc, "sqlite3session_changeset")?;
    // SAFETY: as above; the old session is replaced before it is deleted.
    let fresh = unsafe { new_session(conn.handle())? };
    set_session(conn, fresh);
    // SAFETY: no longer referenced.
    unsafe { sqlite3session_delete(session) };
    Ok(bytes)
}

/// Records what this transaction changed in the synced tables as the next `sync_log` row,
/// saying `what` happened; call it inside the transaction, right before commit. Returns the
/// row's sequence number, or `None` when no synced row changed.
pub fn record(conn: &Connection, what: &str) -> rusqlite::Result<Option<i64>> {
    let changes = take_changes(conn)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let seq: i64 = conn.row(
        "SELECT max(coalesce((SELECT max(seq) FROM sync_log), 0), pruned_through) + 1
         FROM sync_state",
        [],
        |r| r.get(0),
    )?;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    conn.exec(
        "INSERT INTO sync_log (seq, what, changeset, at_ms) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![seq, what, changes, now_ms],
    )?;
    Ok(Some(seq))
}

/// Starts a new epoch of the file's sync feed (after a restore or a migration, or on an
/// operator's reset): clients re-bootstrap. The log is emptied; sequence numbers go on from
/// where they were. Does nothing to a file without a feed (older than its migration).
pub fn new_epoch(conn: &Connection) -> rusqlite::Result<()> {
    let has_feed: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sync_state')",
        [],
        |r| r.get(0),
    )?;
    if has_feed {
        conn.execute_batch(
            "UPDATE sync_state SET epoch = lower(hex(randomblob(8))),
                pruned_through = max(pruned_through, coalesce((SELECT max(seq) FROM sync_log), 0));
             DELETE FROM sync_log;",
        )?;
    }
    Ok(())
}

/// Throws away what the session captured so far (after a rollback, or changes made on
/// purpose outside the feed, such as a migration).
pub fn forget(conn: &Connection) -> rusqlite::Result<()> {
    take_changes(conn).map(|_| ())
}

/// Combines consecutive changesets into one (`sqlite3changegroup`): a row changed many times
/// appears once, with its final values.
pub fn combine<'a>(changesets: impl IntoIterator<Item = &'a [u8]>) -> rusqlite::Result<Vec<u8>> {
    let mut group = std::ptr::null_mut();
    // SAFETY: a new, owned change group, deleted below on every path.
    unsafe { check(sqlite3changegroup_new(&mut group), "sqlite3changegroup_new")? };
    let result = (|| {
        for cs in changesets {
            let n = c_int::try_from(cs.len())
                .map_err(|_| failure(rusqlite::ffi::SQLITE_TOOBIG, "changeset too large"))?;
            // SAFETY: SQLite only reads the buffer during the call.
            let rc = unsafe { sqlite3changegroup_add(group, n, cs.as_ptr() as *mut c_void) };
            check(rc, "sqlite3changegroup_add")?;
        }
        let (mut n, mut p) = (0, std::ptr::null_mut());
        // SAFETY: the group is valid; the output is allocated by SQLite.
        let rc = unsafe { sqlite3changegroup_output(group, &mut n, &mut p) };
        // SAFETY: as above.
        let bytes = unsafe { take_buffer(p, n) };
        check(rc, "sqlite3changegroup_output")?;
        Ok(bytes)
    })();
    // SAFETY: created above, not used after.
    unsafe { sqlite3changegroup_delete(group) };
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, stock INTEGER);
             CREATE TABLE inbox (id INTEGER PRIMARY KEY, payload TEXT);
             CREATE TABLE sync_log (seq INTEGER PRIMARY KEY, what TEXT NOT NULL,
                                    changeset BLOB NOT NULL, at_ms INTEGER NOT NULL);
             CREATE TABLE sync_state (id INTEGER PRIMARY KEY, epoch TEXT, pruned_through INTEGER);
             INSERT INTO sync_state VALUES (1, 'e', 0);",
        )
        .unwrap();
        start(&conn, Arc::new(tokio::sync::watch::channel(0).0), true).unwrap();
        conn
    }

    #[test]
    fn synced_changes_become_dense_log_rows_and_private_ones_do_not() {
        let mut conn = db();
        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO products VALUES (1, 'Rice', 5)", [])
            .unwrap();
        tx.execute("INSERT INTO inbox VALUES (1, 'secret')", [])
            .unwrap();
        assert_eq!(record(&tx, "product").unwrap(), Some(1));
        tx.commit().unwrap();
        // Only a private table: nothing to record.
        let tx = conn.transaction().unwrap();
        tx.execute("INSERT INTO inbox VALUES (2, 'secret')", [])
            .unwrap();
        assert_eq!(record(&tx, "inbox").unwrap(), None);
        tx.commit().unwrap();
        // A change rolled back to a savepoint is not in the changeset.
        let mut tx = conn.transaction().unwrap();
        {
            let sp = tx.savepoint().unwrap();
            sp.execute("UPDATE products SET stock = 99", []).unwrap();
        }
        tx.execute("UPDATE products SET stock = 4", []).unwrap();
        assert_eq!(record(&tx, "sale").unwrap(), Some(2));
        tx.commit().unwrap();
        let blobs: Vec<Vec<u8>> = conn
            .prepare("SELECT changeset FROM sync_log ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(blobs.iter().all(|b| !b.windows(6).any(|w| w == b"secret")));
        let one = combine(blobs.iter().map(Vec::as_slice)).unwrap();
        assert!(!one.is_empty() && one.len() < blobs[0].len() + blobs[1].len());
        stop(&conn);
        stop(&conn);
    }
}
