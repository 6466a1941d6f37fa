//! Change capture for sync and the commit hooks: a writer calls `record` right before commit
//! and the `SYNCED` rows its transaction touched become one densely numbered `sync_log` row (a
//! SQLite changeset); after each commit the tenant's bell rings, the commit is counted and a
//! flagged transaction (`notify_on_commit`) is told to the pool's listener. Invariant: a
//! transaction that changed a synced row cannot commit without `record` (the commit fails).

use super::TenantId;
use super::changeset;
use super::memo;
use super::sqlite::Cached;
use prometheus_client::metrics::counter::Counter;
use rusqlite::ffi::{
    SQLITE_BLOB, SQLITE_DELETE, SQLITE_FLOAT, SQLITE_INSERT, SQLITE_INTEGER, SQLITE_OK,
    SQLITE_TEXT, SQLITE_TRACE_STMT, SQLITE_UPDATE, sqlite3, sqlite3_commit_hook, sqlite3_db_handle,
    sqlite3_free, sqlite3_get_clientdata, sqlite3_preupdate_count, sqlite3_preupdate_hook,
    sqlite3_preupdate_new, sqlite3_preupdate_old, sqlite3_rollback_hook, sqlite3_set_clientdata,
    sqlite3_total_changes64, sqlite3_trace_v2, sqlite3_value, sqlite3_value_blob,
    sqlite3_value_bytes, sqlite3_value_double, sqlite3_value_int64, sqlite3_value_text,
    sqlite3_value_type, sqlite3_wal_checkpoint, sqlite3_wal_hook,
};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OptionalExtension};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ffi::{CStr, c_char, c_int, c_uint, c_void};
use std::sync::{Arc, LazyLock, Mutex};

/// A tenant's bell: its count goes up after every commit on the tenant's pooled connections,
/// waking long-polls and event streams without holding a connection.
pub type Bell = Arc<tokio::sync::watch::Sender<u64>>;

/// Told, with the tenant, after a transaction that called `notify_on_commit` commits (on
/// the committing thread, once the write lock is released).
pub type CommitListener = Arc<dyn Fn(&TenantId) + Send + Sync>;

/// Checkpoint the WAL once it holds this many frames (a WAL hook of our own replaces the
/// built-in one, so it does this itself). SQLite's default is 1,000; a busy tenant rewrites
/// the same few pages, so a longer WAL copies fewer pages per message (4% less CPU per
/// message in `tarn bench`). Up to about 4 MiB of WAL per busy tenant on disk (1 KiB pages);
/// its index stays one 32 KiB block of shared memory (which holds 4,096 frames).
const AUTOCHECKPOINT_FRAMES: c_int = 4000;

/// The tables an owner's app mirrors: the shop's business data. Everything else in a tenant
/// file (idempotency keys, inbox and outbox, chat identities, join codes, the journal, the
/// message log and its LLM usage, job markers, the sync log itself) is private: never in a
/// snapshot or a changeset. Each has a primary key (a changeset names rows by it).
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
    "schedules",
];

/// Columns of synced tables that are always NULL (their values moved to private tables):
/// kept only because dropping a UNIQUE column needs a table rebuild.
pub const RETIRED_COLUMNS: &[(&str, &str)] =
    &[("staff", "join_code"), ("staff", "join_code_expires_at")];

/// Where a connection keeps its `Hooks` (SQLite's per-connection client data).
const HOOKS_KEY: &CStr = c"tarn.sync.hooks";

/// What a connection's hooks share: the tenant's bell and, when capturing, what the open
/// transaction has touched.
struct Hooks {
    bell: Bell,
    capture: Option<Capture>,
    /// Who to tell after a flagged commit, about which tenant.
    listener: Option<(CommitListener, TenantId)>,
    /// The open transaction asked for its commit to be told (`notify_on_commit`).
    flagged: Cell<bool>,
    /// Counts the commits (the pool's `tenant_commits` metric).
    commits: Counter,
}

/// A synced table as the capture sees it.
struct Table {
    /// Columns, in declaration order.
    cols: usize,
    /// Per column: its position in the primary key (from 1), or 0.
    pk: Vec<u8>,
    /// The key's columns, in key order.
    key: Vec<usize>,
    /// Reads a row's values by its key.
    select: String,
}

/// The synced tables' shapes, by index in `SYNCED`; `None` for a table the file does not have.
type Shapes = Arc<[Option<Table>]>;

/// Per connection: the synced tables' shapes (known when capture starts) and the rows the
/// open transaction has touched.
struct Capture {
    /// The connection captured.
    db: *mut sqlite3,
    tables: Shapes,
    touched: RefCell<Touched>,
    /// Row changes the preupdate hook saw (in any table) since the statement running now began.
    hooked: Cell<i64>,
    /// SQLite's count of changes made by finished statements, when that statement began.
    counted: Cell<i64>,
}

/// The rows a transaction touched, each once, with how it was first touched.
#[derive(Default)]
struct Touched {
    rows: Vec<Touch>,
    /// (table, key) of `rows`, to its index there.
    seen: HashMap<(usize, Vec<u8>), usize>,
    /// Why this transaction's changes cannot be captured (its `record` fails).
    broken: Option<String>,
    /// Something was undone inside the transaction (a statement that failed midway, a
    /// savepoint rolled back) without the hook seeing it, so the rows' `new` values may be
    /// stale: `record` reads the rows back instead.
    undone: bool,
}

impl Touched {
    fn clear(&mut self) {
        self.rows.clear();
        self.seen.clear();
        self.broken = None;
        self.undone = false;
    }

    fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.broken.is_none()
    }
}

/// A row's first change in the transaction: whatever happens to it after, the changeset
/// compares its values before (`old`) with its values at `record`. Both are changeset
/// records (`changeset::put`).
struct Touch {
    table: usize,
    first: c_int,
    /// Its primary key's fields.
    key: Vec<u8>,
    /// Its fields before the transaction (empty for a row it inserted).
    old: Vec<u8>,
    /// Its fields after the last change the hook saw (`None` once deleted).
    new: Option<Vec<u8>>,
}

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

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The shapes of the synced tables in `conn`'s file. Files whose synced tables have the same
/// definitions share them: reading them afresh took about 150 µs, on every connection a pool
/// opens, where comparing the definitions takes one query.
fn tables_of(conn: &Connection) -> rusqlite::Result<Shapes> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        let names: Vec<String> = SYNCED.iter().map(|t| format!("'{t}'")).collect();
        format!(
            "SELECT coalesce(group_concat(name || ' ' || sql, ';'), '') FROM (
                 SELECT name, sql FROM main.sqlite_master
                 WHERE type = 'table' AND name IN ({}) ORDER BY name)",
            names.join(", ")
        )
    });
    // A handful of schema versions at most; the bound only guards against surprises.
    static KNOWN: LazyLock<Mutex<HashMap<String, Shapes>>> = LazyLock::new(Mutex::default);
    const KNOWN_MAX: usize = 16;
    let ddl: String = conn.query_row(&SQL, [], |r| r.get(0))?;
    if let Some(shapes) = KNOWN.lock().expect("no panic holds it").get(&ddl) {
        return Ok(shapes.clone());
    }
    let shapes: Shapes = read_tables(conn)?.into();
    let mut known = KNOWN.lock().expect("no panic holds it");
    if known.len() >= KNOWN_MAX {
        known.clear();
    }
    known.insert(ddl, shapes.clone());
    Ok(shapes)
}

/// The shapes of the synced tables in `conn`'s file, read from it.
fn read_tables(conn: &Connection) -> rusqlite::Result<Vec<Option<Table>>> {
    let mut columns =
        conn.prepare("SELECT name, pk, hidden FROM pragma_table_xinfo(?1) ORDER BY cid")?;
    SYNCED
        .iter()
        .map(|table| {
            let cols: Vec<(String, u8, i64)> = columns
                .query_map([table], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            if cols.is_empty() {
                return Ok(None);
            }
            if cols.iter().any(|c| c.2 != 0) || cols.iter().all(|c| c.1 == 0) {
                return Err(failure(
                    rusqlite::ffi::SQLITE_SCHEMA,
                    &format!("synced table {table} needs a primary key and no hidden column"),
                ));
            }
            let mut key: Vec<usize> = (0..cols.len()).filter(|&i| cols[i].1 != 0).collect();
            key.sort_by_key(|&i| cols[i].1);
            let names: Vec<String> = cols.iter().map(|c| quote(&c.0)).collect();
            let wheres: Vec<String> = key
                .iter()
                .enumerate()
                .map(|(n, &i)| format!("{} = ?{}", names[i], n + 1))
                .collect();
            Ok(Some(Table {
                cols: cols.len(),
                pk: cols.iter().map(|c| c.1).collect(),
                select: format!(
                    "SELECT {} FROM main.{} WHERE {}",
                    names.join(", "),
                    quote(table),
                    wheres.join(" AND ")
                ),
                key,
            }))
        })
        .collect()
}

/// A value SQLite handed to the preupdate hook, borrowed for the hook's duration.
///
/// # Safety
/// `v` is a valid value, and the result is dropped before the hook returns.
unsafe fn value_ref<'a>(v: *mut sqlite3_value) -> ValueRef<'a> {
    // SAFETY: per the contract; text and blob pointers are read before their length, as
    // SQLite asks.
    unsafe {
        match sqlite3_value_type(v) {
            SQLITE_INTEGER => ValueRef::Integer(sqlite3_value_int64(v)),
            SQLITE_FLOAT => ValueRef::Real(sqlite3_value_double(v)),
            t @ (SQLITE_TEXT | SQLITE_BLOB) => {
                let p = if t == SQLITE_TEXT {
                    sqlite3_value_text(v)
                } else {
                    sqlite3_value_blob(v) as *const u8
                };
                let n = sqlite3_value_bytes(v).max(0) as usize;
                let bytes = if p.is_null() {
                    &[][..]
                } else {
                    std::slice::from_raw_parts(p, n)
                };
                if t == SQLITE_TEXT {
                    ValueRef::Text(bytes)
                } else {
                    ValueRef::Blob(bytes)
                }
            }
            _ => ValueRef::Null,
        }
    }
}

type Accessor = unsafe extern "C" fn(*mut sqlite3, c_int, *mut *mut sqlite3_value) -> c_int;

/// Appends column `i` of the row before (`sqlite3_preupdate_old`) or after (`_new`) the
/// change to `buf`, as a changeset field.
///
/// # Safety
/// Called from the preupdate hook of `db`.
unsafe fn put_column(
    buf: &mut Vec<u8>,
    db: *mut sqlite3,
    get: Accessor,
    i: usize,
) -> Result<(), String> {
    let mut v = std::ptr::null_mut();
    // SAFETY: inside the hook, for a column the table has.
    let rc = unsafe { get(db, i as c_int, &mut v) };
    if rc != SQLITE_OK || v.is_null() {
        return Err(format!("reading a changed row failed (SQLite error {rc})"));
    }
    // SAFETY: SQLite keeps `v` valid until the hook returns; the value is copied into `buf`.
    changeset::put(buf, unsafe { value_ref(v) });
    Ok(())
}

impl Capture {
    /// Notes a change to a row of `SYNCED[t]` (from the preupdate hook).
    ///
    /// # Safety
    /// Called from the preupdate hook of `db`.
    unsafe fn note(&self, db: *mut sqlite3, t: usize, op: c_int) {
        let Ok(mut touched) = self.touched.try_borrow_mut() else {
            return;
        };
        if touched.broken.is_some() {
            return;
        }
        // SAFETY: we are in the hook.
        if let Err(why) = unsafe { self.try_note(&mut touched, db, t, op) } {
            touched.broken = Some(format!("{}: {why}", SYNCED[t]));
        }
    }

    /// # Safety
    /// As `note`.
    unsafe fn try_note(
        &self,
        touched: &mut Touched,
        db: *mut sqlite3,
        t: usize,
        op: c_int,
    ) -> Result<(), String> {
        let table = self.tables[t]
            .as_ref()
            .ok_or("the table was created after capture began")?;
        // SAFETY: in the hook.
        let count = unsafe { sqlite3_preupdate_count(db) };
        if count as usize != table.cols {
            return Err("the table's columns changed after capture began".into());
        }
        let record_of = |get: Accessor, cols: &mut dyn Iterator<Item = usize>| {
            let mut buf = Vec::with_capacity(64);
            for i in cols {
                // SAFETY: in the hook, for the table's own columns.
                unsafe { put_column(&mut buf, db, get, i)? };
            }
            Ok::<_, String>(buf)
        };
        let key_of = |get: Accessor| record_of(get, &mut table.key.iter().copied());
        let all_of = |get: Accessor| record_of(get, &mut (0..table.cols));
        let mut touch =
            |first: c_int, key: Vec<u8>, old: Option<Accessor>, new: Option<Vec<u8>>| {
                match touched.seen.entry((t, key)) {
                    Entry::Occupied(at) => touched.rows[*at.get()].new = new,
                    Entry::Vacant(slot) => {
                        let old = match old {
                            Some(get) => all_of(get)?,
                            None => Vec::new(),
                        };
                        touched.rows.push(Touch {
                            table: t,
                            first,
                            key: slot.key().1.clone(),
                            old,
                            new,
                        });
                        slot.insert(touched.rows.len() - 1);
                    }
                }
                Ok::<(), String>(())
            };
        let old = sqlite3_preupdate_old as Accessor;
        let new = sqlite3_preupdate_new as Accessor;
        match op {
            SQLITE_INSERT => touch(op, key_of(new)?, None, Some(all_of(new)?)),
            SQLITE_DELETE => touch(op, key_of(old)?, Some(old), None),
            SQLITE_UPDATE => {
                let (before, after) = (key_of(old)?, key_of(new)?);
                let now = Some(all_of(new)?);
                if before == after {
                    touch(op, before, Some(old), now)
                } else {
                    // A changed key: the row under the old key went, one under the new came.
                    touch(SQLITE_DELETE, before, Some(old), None)?;
                    touch(SQLITE_INSERT, after, None, now)
                }
            }
            _ => Ok(()),
        }
    }

    /// Called as each statement begins: whether the one before it was undone.
    ///
    /// SQLite counts the row changes of finished statements, but not those of a statement
    /// that failed and was rolled back. So when the hook saw more changes since the last
    /// statement began than SQLite counted, something was undone (or a change was not
    /// counted, as REPLACE's deletes are not: reading back is then merely slower). A
    /// savepoint's rollback undoes counted changes, so `sql` is checked for it.
    ///
    /// # Safety
    /// `db` is this capture's connection.
    unsafe fn statement_begins(&self, db: *mut sqlite3, rolls_back: bool) {
        // SAFETY: per the contract.
        let total = unsafe { sqlite3_total_changes64(db) };
        let undone = self.hooked.replace(0) > total - self.counted.replace(total) || rolls_back;
        if undone && let Ok(mut touched) = self.touched.try_borrow_mut() {
            touched.undone = true;
        }
    }
}

/// Whether the NUL-terminated statement text at `sql` may roll back (to) a savepoint. Only
/// its first bytes are read when they decide (statements are long, and this runs for each).
///
/// # Safety
/// `sql` points to a NUL-terminated string.
unsafe fn text_rolls_back(sql: *const c_char) -> bool {
    const HEAD: usize = 16;
    let mut head = [0u8; HEAD];
    let mut n = 0;
    while n < HEAD {
        // SAFETY: reading stops at the terminating NUL.
        let b = unsafe { *sql.add(n) } as u8;
        if b == 0 {
            break;
        }
        head[n] = b;
        n += 1;
    }
    let first_word = head[..n].iter().position(|b| !b.is_ascii_whitespace());
    match first_word {
        Some(i) if head[i].is_ascii_alphabetic() && n - i >= 8 => rolls_back(&head[i..n]),
        // A short text, leading spaces or a comment: look at all of it.
        // SAFETY: per the contract.
        _ => rolls_back(unsafe { CStr::from_ptr(sql) }.to_bytes()),
    }
}

/// Whether a statement's text may roll back (to) a savepoint.
fn rolls_back(sql: &[u8]) -> bool {
    const WORD: &[u8] = b"rollback";
    let start = sql
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(sql.len());
    let sql = &sql[start..];
    match sql.first() {
        Some(b) if b.is_ascii_alphabetic() => {
            sql.len() >= WORD.len() && sql[..WORD.len()].eq_ignore_ascii_case(WORD)
        }
        // A leading comment could hide the keyword: look everywhere.
        _ => sql
            .windows(WORD.len())
            .any(|w| w.eq_ignore_ascii_case(WORD)),
    }
}

fn hooks_of(conn: &Connection) -> *const Hooks {
    // SAFETY: only client data is read, on the connection's own thread.
    unsafe { sqlite3_get_clientdata(conn.handle(), HOOKS_KEY.as_ptr()) as *const Hooks }
}

/// The connection's capture, when its hooks capture.
fn capture_of(conn: &Connection) -> Option<&Capture> {
    // SAFETY: set by `start` on this connection and freed only by `stop`, which runs as it
    // closes: the hooks outlive this borrow of the connection.
    unsafe { hooks_of(conn).as_ref() }.and_then(|h| h.capture.as_ref())
}

/// SQLite's preupdate hook: notes changes to rows of synced tables in the main database.
unsafe extern "C" fn before_change(
    hooks: *mut c_void,
    db: *mut sqlite3,
    op: c_int,
    db_name: *const c_char,
    table: *const c_char,
    _old_rowid: i64,
    _new_rowid: i64,
) {
    // SAFETY: `hooks` is the `Box<Hooks>` `start` registered, alive until `stop`; the names
    // are NUL-terminated strings SQLite owns for the call.
    let (hooks, db_name, table) = unsafe {
        (
            &*(hooks as *const Hooks),
            CStr::from_ptr(db_name),
            CStr::from_ptr(table),
        )
    };
    let Some(capture) = &hooks.capture else {
        return;
    };
    capture.hooked.set(capture.hooked.get() + 1);
    if db_name.to_bytes() != b"main" {
        return;
    }
    if let Some(t) = SYNCED.iter().position(|s| s.as_bytes() == table.to_bytes()) {
        // SAFETY: we are in the hook of `db`.
        unsafe { capture.note(db, t, op) };
    }
    if memo::TABLES
        .iter()
        .any(|s| s.as_bytes() == table.to_bytes())
    {
        // SAFETY: the hook's own connection, on its thread.
        unsafe { memo::forget(db) };
    }
}

/// SQLite's trace callback, for the start of each statement (`SQLITE_TRACE_STMT`).
unsafe extern "C" fn statement_begins(
    event: c_uint,
    hooks: *mut c_void,
    stmt: *mut c_void,
    sql: *mut c_void,
) -> c_int {
    if event != SQLITE_TRACE_STMT as c_uint || sql.is_null() {
        return 0;
    }
    // SAFETY: as in `before_change`.
    let hooks = unsafe { &*(hooks as *const Hooks) };
    if let Some(capture) = &hooks.capture {
        // SAFETY: for this event `sql` is the statement's NUL-terminated text, valid during
        // the call; the statement belongs to the connection the hooks were registered on.
        unsafe {
            let db = sqlite3_db_handle(stmt as *mut _);
            let rolls_back = text_rolls_back(sql as *const c_char);
            if rolls_back {
                memo::forget(db);
            }
            capture.statement_begins(db, rolls_back)
        };
    }
    0
}

/// SQLite's commit hook: a transaction that changed synced rows must have recorded them;
/// otherwise the commit becomes a rollback (an app's copy would silently miss the change).
unsafe extern "C" fn before_commit(hooks: *mut c_void) -> c_int {
    // SAFETY: as in `before_change`.
    let hooks = unsafe { &*(hooks as *const Hooks) };
    let Some(capture) = &hooks.capture else {
        return 0;
    };
    let Ok(mut touched) = capture.touched.try_borrow_mut() else {
        return 0;
    };
    if touched.is_empty() {
        return 0;
    }
    let tables: Vec<&str> = touched.rows.iter().map(|r| SYNCED[r.table]).collect();
    tracing::error!(?tables, broken = ?touched.broken, "a transaction changed synced rows without recording them: rolled back");
    touched.clear();
    1
}

/// SQLite's rollback hook: what the transaction touched is gone with it.
unsafe extern "C" fn after_rollback(hooks: *mut c_void) {
    // SAFETY: as in `before_change`.
    let hooks = unsafe { &*(hooks as *const Hooks) };
    if let Some(capture) = &hooks.capture {
        if let Ok(mut touched) = capture.touched.try_borrow_mut() {
            touched.clear();
        }
        // SAFETY: the capture's own connection, on its thread.
        unsafe { memo::forget(capture.db) };
    }
}

/// Runs after every commit (SQLite's WAL hook, called once the write lock is released):
/// rings the tenant's bell and checkpoints like SQLite's own hook would.
unsafe extern "C" fn after_commit(
    hooks: *mut c_void,
    db: *mut sqlite3,
    db_name: *const c_char,
    frames: c_int,
) -> c_int {
    // SAFETY: as in `before_change`.
    let hooks = unsafe { &*(hooks as *const Hooks) };
    hooks.bell.send_modify(|n| *n = n.wrapping_add(1));
    hooks.commits.inc();
    if hooks.flagged.replace(false)
        && let Some((listener, id)) = &hooks.listener
    {
        listener(id);
    }
    if frames >= AUTOCHECKPOINT_FRAMES {
        // SAFETY: allowed from the WAL hook; a busy checkpoint is simply retried later.
        unsafe { sqlite3_wal_checkpoint(db, db_name) };
    }
    SQLITE_OK
}

/// What a connection's hooks tell, and to whom.
#[derive(Clone)]
pub struct Notices {
    /// Rung after every commit.
    pub bell: Bell,
    /// Capture changes to the synced tables (else `record` records nothing).
    pub capture: bool,
    /// Told of commits flagged with `notify_on_commit`.
    pub listener: Option<(CommitListener, TenantId)>,
    /// Counts every commit.
    pub commits: Counter,
}

/// Starts capturing on a connection (unless `capture` is off: then `record` records
/// nothing), rings `bell` after each of its commits and tells `listener` of the flagged
/// ones. Once per connection, after its file is migrated; the pool calls it for every
/// connection it hands out. `stop` must run before it closes.
pub fn start(conn: &Connection, notices: Notices) -> rusqlite::Result<()> {
    let Notices {
        bell,
        capture,
        listener,
        commits,
    } = notices;
    if !hooks_of(conn).is_null() {
        return Ok(());
    }
    let capture = match capture {
        true => Some(Capture {
            // SAFETY: only stored, to name the connection in the rollback hook.
            db: unsafe { conn.handle() },
            tables: tables_of(conn)?,
            touched: RefCell::default(),
            hooked: Cell::new(0),
            // SAFETY: a valid handle, on the connection's own thread.
            counted: Cell::new(unsafe { sqlite3_total_changes64(conn.handle()) }),
        }),
        false => None,
    };
    let capturing = capture.is_some();
    if capturing {
        // Its writes and rollbacks are reported by the hooks below.
        memo::start(conn);
    }
    let hooks = Box::into_raw(Box::new(Hooks {
        bell,
        capture,
        listener,
        flagged: Cell::new(false),
        commits,
    })) as *mut c_void;
    // SAFETY: the handle is used only to register hooks, on the connection's own thread.
    let db = unsafe { conn.handle() };
    // SAFETY: the box lives until `stop` unregisters the hooks and frees it.
    unsafe {
        sqlite3_set_clientdata(db, HOOKS_KEY.as_ptr(), hooks, None);
        sqlite3_wal_hook(db, Some(after_commit), hooks);
        if capturing {
            sqlite3_preupdate_hook(db, Some(before_change), hooks);
            sqlite3_commit_hook(db, Some(before_commit), hooks);
            sqlite3_rollback_hook(db, Some(after_rollback), hooks);
            sqlite3_trace_v2(
                db,
                SQLITE_TRACE_STMT as c_uint,
                Some(statement_begins),
                hooks,
            );
        }
    }
    Ok(())
}

/// Asks for the pool's `CommitListener` to be told once the open transaction (or, outside
/// one, the next statement) commits: a rolled-back flag is told with the next commit, which
/// costs the listener one look that finds nothing. A connection outside the pool has no
/// listener: nothing happens.
pub fn notify_on_commit(conn: &Connection) {
    let hooks = hooks_of(conn);
    if !hooks.is_null() {
        // SAFETY: the hooks live until `stop`, and are used on the connection's own thread.
        unsafe { (*hooks).flagged.set(true) };
    }
}

/// Unhooks capture and the bell and frees them (before the connection closes).
pub fn stop(conn: &Connection) {
    let hooks = hooks_of(conn);
    if hooks.is_null() {
        return;
    }
    // SAFETY: as in `start`.
    let db = unsafe { conn.handle() };
    // SAFETY: the hooks are removed before the box they point to is freed.
    unsafe {
        sqlite3_wal_hook(db, None, std::ptr::null_mut());
        sqlite3_preupdate_hook(db, None, std::ptr::null_mut());
        sqlite3_commit_hook(db, None, std::ptr::null_mut());
        sqlite3_rollback_hook(db, None, std::ptr::null_mut());
        sqlite3_trace_v2(db, 0, None, std::ptr::null_mut());
        sqlite3_set_clientdata(db, HOOKS_KEY.as_ptr(), std::ptr::null_mut(), None);
        drop(Box::from_raw(hooks as *mut Hooks));
    }
    // Nothing reports its changes any more.
    memo::stop(conn);
}

/// What the open transaction changed in the synced tables, as a changeset (empty when
/// nothing changed or the connection does not capture); what it touched is then forgotten.
/// Like SQLite's session extension, it compares each touched row's values before the
/// transaction with its values now, so changes undone since (a savepoint rolled back, a row
/// inserted then deleted) leave nothing. The values now are those the hook last saw, unless
/// something was undone without the hook seeing it: then they are read back from the file.
fn take_changes(conn: &Connection) -> rusqlite::Result<Vec<u8>> {
    let Some(capture) = capture_of(conn) else {
        return Ok(Vec::new());
    };
    // The last statement has finished: was it undone?
    // SAFETY: the connection's own handle, on its thread.
    unsafe { capture.statement_begins(conn.handle(), false) };
    let (mut rows, undone) = {
        let mut touched = capture.touched.borrow_mut();
        if let Some(why) = touched.broken.take() {
            touched.clear();
            return Err(failure(rusqlite::ffi::SQLITE_SCHEMA, &why));
        }
        let undone = std::mem::take(&mut touched.undone);
        touched.seen.clear();
        (std::mem::take(&mut touched.rows), undone)
    };
    rows.sort_by_key(|r| r.table);
    let mut out = changeset::Writer::default();
    for (i, row) in rows.iter().enumerate() {
        let table = capture.tables[row.table]
            .as_ref()
            .expect("rows are noted only for known tables");
        if i == 0 || rows[i - 1].table != row.table {
            out.table(SYNCED[row.table], &table.pk);
        }
        let read;
        let now = match undone {
            false => row.new.as_deref(),
            true => {
                read = read_back(conn, table, row)?;
                read.as_deref()
            }
        };
        match (row.first, now) {
            (SQLITE_INSERT, Some(new)) => out.insert(new),
            (SQLITE_INSERT, None) => {}
            (_, Some(new)) => out.update(&table.pk, &row.old, new),
            (_, None) => out.delete(&row.old),
        }
    }
    Ok(out.finish())
}

/// A touched row's fields as the file has them now (`None`: it is not there).
fn read_back(conn: &Connection, table: &Table, row: &Touch) -> rusqlite::Result<Option<Vec<u8>>> {
    #[cfg(test)]
    tests::READ_BACKS.with(|n| n.set(n.get() + 1));
    let key = changeset::fields(&row.key).map(|f| ToSqlOutput::Borrowed(changeset::value(f)));
    conn.prepare_cached(&table.select)?
        .query_row(rusqlite::params_from_iter(key), |r| {
            let mut buf = Vec::with_capacity(row.old.len().max(64));
            for c in 0..table.cols {
                changeset::put(&mut buf, r.get_ref(c)?);
            }
            Ok(buf)
        })
        .optional()
}

/// Whether the open transaction touched synced rows that no `record` has taken since (such
/// a transaction cannot commit: see `before_commit`).
pub fn pending(conn: &Connection) -> bool {
    let Some(capture) = capture_of(conn) else {
        return false;
    };
    capture.touched.try_borrow().is_ok_and(|t| !t.is_empty())
}

/// Forgets what the open transaction touched since its last `record`: for a caller that has
/// just rolled back to a savepoint taken when nothing was pending, so that all it forgets is
/// undone already.
pub fn forget(conn: &Connection) {
    let Some(capture) = capture_of(conn) else {
        return;
    };
    if let Ok(mut touched) = capture.touched.try_borrow_mut() {
        touched.clear();
    }
    capture.hooked.set(0);
    // SAFETY: the connection's own handle, on its thread.
    capture
        .counted
        .set(unsafe { sqlite3_total_changes64(conn.handle()) });
}

/// Records what this transaction changed in the synced tables as the next `sync_log` row,
/// saying `what` happened; call it inside the transaction, right before commit. Returns the
/// row's sequence number, or `None` when no synced row changed.
pub fn record(conn: &Connection, what: &str) -> rusqlite::Result<Option<i64>> {
    let changes = take_changes(conn)?;
    if changes.is_empty() {
        return Ok(None);
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    // The number comes from a scalar subquery in VALUES, not an INSERT … SELECT: an INSERT
    // from a SELECT may write many rows, so SQLite would copy every page it touches to a
    // statement journal first. `seq` is the rowid, so the insert's rowid is the number.
    conn.exec(
        "INSERT INTO sync_log (seq, what, changeset, at_ms) VALUES (
             (SELECT max(coalesce((SELECT max(seq) FROM sync_log), 0), pruned_through) + 1
              FROM sync_state), ?1, ?2, ?3)",
        rusqlite::params![what, changes, now_ms],
    )?;
    let seq = conn.last_insert_rowid();
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

#[repr(C)]
struct ChangeGroup {
    _opaque: [u8; 0],
}

// The change-group entry points (sqlite3session.h). The bundled SQLite is built with
// SQLITE_ENABLE_SESSION, but libsqlite3-sys's prebuilt bindings leave them out (its `session`
// feature would need bindgen and libclang at build time), so the few used are declared here.
unsafe extern "C" {
    fn sqlite3changegroup_new(out: *mut *mut ChangeGroup) -> c_int;
    fn sqlite3changegroup_add(group: *mut ChangeGroup, n: c_int, data: *mut c_void) -> c_int;
    fn sqlite3changegroup_output(
        group: *mut ChangeGroup,
        n: *mut c_int,
        out: *mut *mut c_void,
    ) -> c_int;
    fn sqlite3changegroup_delete(group: *mut ChangeGroup);
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
    use proptest::prelude::*;
    use rusqlite::params;
    use rusqlite::types::Value;

    #[repr(C)]
    struct Session {
        _opaque: [u8; 0],
    }

    type Conflict = unsafe extern "C" fn(*mut c_void, c_int, *mut c_void) -> c_int;

    // SQLite's own session extension (the reference the capture is checked against) and its
    // changeset apply (what the phone runs).
    unsafe extern "C" {
        fn sqlite3session_create(
            db: *mut sqlite3,
            name: *const c_char,
            out: *mut *mut Session,
        ) -> c_int;
        fn sqlite3session_attach(session: *mut Session, table: *const c_char) -> c_int;
        fn sqlite3session_changeset(
            session: *mut Session,
            n: *mut c_int,
            out: *mut *mut c_void,
        ) -> c_int;
        fn sqlite3session_delete(session: *mut Session);
        fn sqlite3changeset_apply(
            db: *mut sqlite3,
            n: c_int,
            data: *mut c_void,
            filter: Option<unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int>,
            conflict: Option<Conflict>,
            ctx: *mut c_void,
        ) -> c_int;
    }

    const SCHEMA: &str = "
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT, stock INTEGER CHECK (stock < 1000),
                               price REAL, pic BLOB);
        CREATE TABLE settings (key TEXT PRIMARY KEY, value);
        CREATE TABLE product_aliases (alias_key TEXT, product_id INTEGER, note TEXT,
                                      PRIMARY KEY (product_id, alias_key));
        CREATE TABLE inbox (id INTEGER PRIMARY KEY, payload TEXT);
        CREATE TABLE sync_log (seq INTEGER PRIMARY KEY, what TEXT NOT NULL,
                               changeset BLOB NOT NULL, at_ms INTEGER NOT NULL);
        CREATE TABLE sync_state (id INTEGER PRIMARY KEY, epoch TEXT, pruned_through INTEGER);
        INSERT INTO sync_state VALUES (1, 'e', 0);";
    const TABLES: [&str; 3] = ["products", "settings", "product_aliases"];

    fn db() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn
    }

    fn capturing() -> Connection {
        let conn = db();
        start(
            &conn,
            Notices {
                bell: Arc::new(tokio::sync::watch::channel(0).0),
                capture: true,
                listener: None,
                commits: Counter::default(),
            },
        )
        .unwrap();
        conn
    }

    /// Every row of the synced test tables.
    fn dump(conn: &Connection) -> Vec<Vec<Value>> {
        let mut rows = Vec::new();
        for t in TABLES {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM {t} ORDER BY 1, 2"))
                .unwrap();
            let n = stmt.column_count();
            let mut q = stmt.query([]).unwrap();
            while let Some(r) = q.next().unwrap() {
                rows.push((0..n).map(|i| r.get::<_, Value>(i).unwrap()).collect());
            }
        }
        rows
    }

    /// Applies a changeset the strict way (any conflict aborts); returns the conflicts.
    fn apply(conn: &Connection, cs: &[u8]) -> usize {
        unsafe extern "C" fn count(ctx: *mut c_void, _kind: c_int, _it: *mut c_void) -> c_int {
            // SAFETY: `ctx` is the counter below.
            unsafe { *(ctx as *mut usize) += 1 };
            2 // SQLITE_CHANGESET_ABORT
        }
        if cs.is_empty() {
            return 0;
        }
        let mut conflicts = 0usize;
        // SAFETY: the buffer is only read; the counter outlives the call.
        let rc = unsafe {
            sqlite3changeset_apply(
                conn.handle(),
                cs.len() as c_int,
                cs.as_ptr() as *mut c_void,
                None,
                Some(count),
                &mut conflicts as *mut usize as *mut c_void,
            )
        };
        assert!(rc == SQLITE_OK || conflicts > 0, "apply failed: {rc}");
        conflicts
    }

    /// What the session extension captures for `work` on `conn`.
    fn session_changeset(conn: &Connection, work: impl FnOnce()) -> Vec<u8> {
        let mut s = std::ptr::null_mut();
        // SAFETY: a session on an open connection, deleted below.
        unsafe {
            assert_eq!(
                sqlite3session_create(conn.handle(), c"main".as_ptr(), &mut s),
                0
            );
            for t in TABLES {
                let name = std::ffi::CString::new(t).unwrap();
                assert_eq!(sqlite3session_attach(s, name.as_ptr()), 0);
            }
        }
        work();
        let (mut n, mut p) = (0, std::ptr::null_mut());
        // SAFETY: as above.
        unsafe {
            assert_eq!(sqlite3session_changeset(s, &mut n, &mut p), 0);
            sqlite3session_delete(s);
            take_buffer(p, n)
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Product(i64, String, i64, f64, Vec<u8>),
        UpsertProduct(i64, String, i64),
        Stock(i64, i64),
        /// Raises every product's stock, but fails at the last one (after changing the others).
        FailingRestock,
        DropProduct(i64),
        MoveProduct(i64, i64),
        Setting(String, Option<i64>),
        DropSetting(String),
        Alias(i64, String, String),
        DropAlias(i64, String),
        Private(i64),
    }

    fn op() -> impl Strategy<Value = Op> {
        let id = 1..8i64;
        let key = prop::sample::select(vec!["a", "b", "ç", "d\"e"]).prop_map(String::from);
        prop_oneof![
            (
                id.clone(),
                "[a-zé ]{0,6}",
                -5..5i64,
                -2.0..2.0f64,
                prop::collection::vec(any::<u8>(), 0..4)
            )
                .prop_map(|(i, n, s, p, b)| Op::Product(i, n, s, p, b)),
            (id.clone(), "[a-z]{0,3}", -5..5i64).prop_map(|(i, n, s)| Op::UpsertProduct(i, n, s)),
            (id.clone(), -3..3i64).prop_map(|(i, d)| Op::Stock(i, d)),
            Just(Op::FailingRestock),
            id.clone().prop_map(Op::DropProduct),
            (id.clone(), id.clone()).prop_map(|(a, b)| Op::MoveProduct(a, b)),
            (key.clone(), prop::option::of(0..3i64)).prop_map(|(k, v)| Op::Setting(k, v)),
            key.clone().prop_map(Op::DropSetting),
            (id.clone(), key.clone(), "[xy]{0,2}").prop_map(|(i, k, n)| Op::Alias(i, k, n)),
            (id.clone(), key).prop_map(|(i, k)| Op::DropAlias(i, k)),
            id.prop_map(Op::Private),
        ]
    }

    fn run(conn: &Connection, op: &Op) {
        let r = match op {
            Op::Product(i, n, s, p, b) => conn.execute(
                "INSERT OR REPLACE INTO products VALUES (?1, ?2, ?3, ?4, ?5)",
                params![i, n, s, p, b],
            ),
            Op::UpsertProduct(i, n, s) => conn.execute(
                "INSERT INTO products (id, name, stock) VALUES (?1, ?2, ?3)
                 ON CONFLICT (id) DO UPDATE SET name = excluded.name, stock = excluded.stock",
                params![i, n, s],
            ),
            Op::Stock(i, d) => conn.execute(
                "UPDATE products SET stock = stock + ?2 WHERE id = ?1",
                params![i, d],
            ),
            Op::FailingRestock => {
                // Fails whenever there is a product (an empty table has nothing to stop).
                let _ = conn.execute(
                    "UPDATE products SET stock = CASE WHEN id = (SELECT max(id) FROM products)
                                                 THEN 5000 ELSE coalesce(stock, 0) + 1 END",
                    [],
                );
                return;
            }
            Op::DropProduct(i) => conn.execute("DELETE FROM products WHERE id = ?1", [i]),
            Op::MoveProduct(a, b) => conn.execute(
                "UPDATE OR IGNORE products SET id = ?2 WHERE id = ?1",
                params![a, b],
            ),
            Op::Setting(k, v) => conn.execute(
                "INSERT OR REPLACE INTO settings VALUES (?1, ?2)",
                params![k, v],
            ),
            Op::DropSetting(k) => conn.execute("DELETE FROM settings WHERE key = ?1", [k]),
            Op::Alias(i, k, n) => conn.execute(
                "INSERT INTO product_aliases VALUES (?2, ?1, ?3)
                 ON CONFLICT DO UPDATE SET note = excluded.note",
                params![i, k, n],
            ),
            Op::DropAlias(i, k) => conn.execute(
                "DELETE FROM product_aliases WHERE product_id = ?1 AND alias_key = ?2",
                params![i, k],
            ),
            Op::Private(i) => {
                conn.execute("INSERT OR REPLACE INTO inbox VALUES (?1, 'secret')", [i])
            }
        };
        r.unwrap();
    }

    /// A transaction: some changes, perhaps some undone by a savepoint's rollback, more
    /// changes; then commit or rollback.
    #[derive(Debug, Clone)]
    struct Tx {
        before: Vec<Op>,
        undone: Option<Vec<Op>>,
        after: Vec<Op>,
        commit: bool,
    }

    fn tx() -> impl Strategy<Value = Tx> {
        let ops = || prop::collection::vec(op(), 0..5);
        let undone = prop::option::weighted(0.3, ops());
        (ops(), undone, ops(), prop::bool::weighted(0.85)).prop_map(
            |(before, undone, after, commit)| Tx {
                before,
                undone,
                after,
                commit,
            },
        )
    }

    fn run_tx(conn: &Connection, tx: &Tx) {
        tx.before.iter().for_each(|o| run(conn, o));
        if let Some(undone) = &tx.undone {
            conn.execute_batch("SAVEPOINT undone").unwrap();
            undone.iter().for_each(|o| run(conn, o));
            conn.execute_batch("ROLLBACK TO undone; RELEASE undone")
                .unwrap();
        }
        tx.after.iter().for_each(|o| run(conn, o));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Each recorded changeset, applied strictly to a copy, keeps the copy equal to the
        /// source, and is as long as what SQLite's session extension records for the same
        /// transaction.
        #[test]
        fn capture_matches_sqlites_session_extension(txs in prop::collection::vec(tx(), 1..12)) {
            let (ours, theirs) = (capturing(), db());
            let (our_copy, their_copy) = (db(), db());
            let mut seq = 0;
            for tx in &txs {
                ours.execute_batch("BEGIN").unwrap();
                run_tx(&ours, tx);
                theirs.execute_batch("BEGIN").unwrap();
                let reference = session_changeset(&theirs, || run_tx(&theirs, tx));
                if !tx.commit {
                    ours.execute_batch("ROLLBACK").unwrap();
                    theirs.execute_batch("ROLLBACK").unwrap();
                    continue;
                }
                let recorded = record(&ours, "tx").unwrap();
                ours.execute_batch("COMMIT").unwrap();
                theirs.execute_batch("COMMIT").unwrap();
                let cs: Vec<u8> = match recorded {
                    Some(n) => {
                        seq += 1;
                        prop_assert_eq!(n, seq);
                        ours.query_row("SELECT changeset FROM sync_log WHERE seq = ?1", [n], |r| r.get(0)).unwrap()
                    }
                    None => Vec::new(),
                };
                prop_assert_eq!(cs.len(), reference.len());
                prop_assert_eq!(apply(&our_copy, &cs), 0);
                prop_assert_eq!(apply(&their_copy, &reference), 0);
                prop_assert!(!cs.windows(6).any(|w| w == b"secret"));
                prop_assert_eq!(dump(&ours), dump(&theirs));
                prop_assert_eq!(dump(&our_copy), dump(&ours));
                prop_assert_eq!(dump(&their_copy), dump(&theirs));
            }
            stop(&ours);
        }
    }

    thread_local! {
        /// Rows `record` read back from the file on this thread.
        pub(super) static READ_BACKS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// Every changeset in the sync log, in order.
    fn logged(conn: &Connection) -> Vec<Vec<u8>> {
        conn.prepare("SELECT changeset FROM sync_log ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// Runs `sql` (its failure is part of some cases) in a transaction on `conn`, records
    /// it and commits; returns how many rows `record` read back from the file.
    fn recorded_reads(conn: &Connection, sql: &str) -> usize {
        let before = READ_BACKS.with(|n| n.get());
        conn.execute_batch("BEGIN").unwrap();
        let _ = conn.execute_batch(sql);
        record(conn, "t").unwrap();
        conn.execute_batch("COMMIT").unwrap();
        READ_BACKS.with(|n| n.get()) - before
    }

    #[test]
    fn a_statement_that_may_roll_back_is_told_from_its_first_word() {
        let cases: [(&CStr, bool); 8] = [
            (c"ROLLBACK TO tx; RELEASE tx", true),
            (c"rollback", true),
            (c"   \n ROLLBACK TO member", true),
            (c"/* a comment */ ROLLBACK", true),
            (c"-- why\nrollback to tx", true),
            (c"INSERT INTO t (note) VALUES ('rollback')", false),
            (c"COMMIT", false),
            (c"RELEASE tx", false),
        ];
        for (sql, expected) in cases {
            // SAFETY: a NUL-terminated literal.
            let found = unsafe { text_rolls_back(sql.as_ptr()) };
            assert_eq!(found, expected, "{sql:?}");
        }
    }

    #[test]
    fn rows_are_read_back_only_after_something_was_undone() {
        let conn = capturing();
        let plain = "INSERT INTO products (id, stock) VALUES (1, 1), (2, 2);
                     UPDATE products SET stock = stock + 1 WHERE id = 1;
                     INSERT INTO product_aliases VALUES ('a', 1, 'x')
                         ON CONFLICT DO UPDATE SET note = excluded.note;
                     DELETE FROM products WHERE id = 2;";
        assert_eq!(recorded_reads(&conn, plain), 0);
        let savepoint = "UPDATE products SET stock = 7 WHERE id = 1;
                         SAVEPOINT s; UPDATE products SET stock = 8 WHERE id = 1; ROLLBACK TO s;";
        assert_eq!(recorded_reads(&conn, savepoint), 1);
        // The failing statement's first row change is undone with it.
        conn.execute_batch("BEGIN; INSERT INTO products (id, stock) VALUES (3, 3);")
            .unwrap();
        record(&conn, "t").unwrap();
        conn.execute_batch("COMMIT").unwrap();
        let failing = "UPDATE products SET stock = CASE id WHEN 3 THEN 5000 ELSE 9 END;";
        assert_eq!(recorded_reads(&conn, failing), 1);
        let copy = db();
        let all = logged(&conn);
        all.iter().for_each(|cs| assert_eq!(apply(&copy, cs), 0));
        assert_eq!(dump(&copy), dump(&conn));
        assert_eq!(
            dump(&conn)[0..2],
            [
                vec![
                    Value::Integer(1),
                    Value::Null,
                    Value::Integer(7),
                    Value::Null,
                    Value::Null
                ],
                vec![
                    Value::Integer(3),
                    Value::Null,
                    Value::Integer(3),
                    Value::Null,
                    Value::Null
                ],
            ]
        );
        stop(&conn);
    }

    #[test]
    fn a_commit_that_skips_record_is_refused() {
        let conn = capturing();
        let err = conn
            .execute("INSERT INTO products (id, name) VALUES (1, 'Rice')", [])
            .unwrap_err();
        assert!(err.to_string().contains("constraint failed"), "{err}");
        assert_eq!(dump(&conn), Vec::<Vec<Value>>::new());
        // Private tables need no record; and a refused commit leaves nothing behind.
        conn.execute("INSERT INTO inbox VALUES (1, 'x')", [])
            .unwrap();
        conn.execute_batch("BEGIN; INSERT INTO products (id) VALUES (2);")
            .unwrap();
        assert_eq!(record(&conn, "product").unwrap(), Some(1));
        conn.execute_batch("COMMIT").unwrap();
        stop(&conn);
        stop(&conn);
    }

    #[test]
    fn combined_changesets_keep_a_row_once() {
        let conn = capturing();
        for stock in [1, 2, 3] {
            conn.execute_batch("BEGIN").unwrap();
            conn.execute(
                "INSERT OR REPLACE INTO products (id, stock) VALUES (1, ?1)",
                [stock],
            )
            .unwrap();
            record(&conn, "p").unwrap();
            conn.execute_batch("COMMIT").unwrap();
        }
        let blobs = logged(&conn);
        let one = combine(blobs.iter().map(Vec::as_slice)).unwrap();
        let copy = db();
        assert_eq!(apply(&copy, &one), 0);
        assert_eq!(dump(&copy), dump(&conn));
        assert!(one.len() < blobs.iter().map(Vec::len).sum());
        stop(&conn);
    }
}
