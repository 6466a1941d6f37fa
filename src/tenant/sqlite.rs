//! How every SQLite connection of tarn is opened: flags, pragmas and memory settings.
//! Invariant: each connection is in WAL mode with `synchronous=NORMAL`, foreign keys on, a
//! busy timeout, a small page cache and no lookaside buffer (it costs RSS per connection).

use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::OnceLock;

/// How long a connection waits on a lock held by another before failing.
pub const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Page cache limit per connection, in KiB (SQLite grows the cache only as pages are used).
pub const CACHE_KIB: u32 = 512;

/// Page size of new database files. Every page a transaction changes is written whole to the
/// WAL, and a sale changes about 14 (rows and index entries of six tables): with 1 KiB pages a
/// message writes a quarter of the bytes it would with the 4 KiB default, and an open tenant's
/// page cache holds a quarter of the memory. Tenant files are small, so the deeper b-trees
/// cost little.
pub const PAGE_SIZE: u32 = 1024;

/// The bundled SQLite must include the WAL-reset corruption fix.
pub const MIN_SQLITE_VERSION: i32 = 3_051_003;

/// Flags for opening an existing database (never creates one).
pub fn open_flags_existing() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
}

/// Process-wide SQLite settings. Call it first thing in `main`, before any thread uses SQLite
/// (`sqlite3_config` is not thread-safe and is refused once SQLite is initialized; then the
/// defaults stay, which is slower but correct). Returns whether the settings took.
pub fn configure_process() -> bool {
    use rusqlite::ffi;
    // Memory statistics put one global mutex around every SQLite allocation. With lookaside
    // off, every small allocation takes it, and under load the threads queue on it.
    // SAFETY: called before SQLite is initialized, while no other thread uses it.
    let rc = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_MEMSTATUS, 0 as std::ffi::c_int) };
    // Refused: SQLite is in use already, and must not be shut down to learn its defaults.
    rc == ffi::SQLITE_OK && spin_before_sleeping()
}

/// SQLite's own mutexes, whose `enter` tries a while before it sleeps.
static DEFAULT_MUTEX: OnceLock<rusqlite::ffi::sqlite3_mutex_methods> = OnceLock::new();

/// Tries a busy mutex this many times before sleeping on it.
const MUTEX_SPINS: u32 = 100;

/// Makes SQLite's mutexes spin briefly before they sleep (what glibc's adaptive mutexes do).
/// The bundled SQLite is built with `SQLITE_ENABLE_MEMORY_MANAGEMENT`, so every connection's
/// page cache shares one process-wide mutex, taken on every page fetch. It is held for
/// nanoseconds, but a thread that finds it taken slept on a futex and had to be woken: under
/// load that was a tenth of the server's CPU. Returns whether the methods took.
fn spin_before_sleeping() -> bool {
    use rusqlite::ffi;
    // SAFETY: called only from `configure_process`, before any other use of SQLite: its
    // default methods are filled in by one initialize (and shutdown) and copied out; the
    // replacement is copied in by `sqlite3_config` before SQLite is initialized again.
    unsafe {
        if ffi::sqlite3_initialize() != ffi::SQLITE_OK || ffi::sqlite3_shutdown() != ffi::SQLITE_OK
        {
            return false;
        }
        let mut methods = std::mem::MaybeUninit::<ffi::sqlite3_mutex_methods>::zeroed();
        let rc = ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETMUTEX, methods.as_mut_ptr());
        let methods = methods.assume_init();
        if rc != ffi::SQLITE_OK || methods.xMutexEnter.is_none() || methods.xMutexTry.is_none() {
            return false;
        }
        let _ = DEFAULT_MUTEX.set(methods);
        let spinning = ffi::sqlite3_mutex_methods {
            xMutexEnter: Some(spin_then_enter),
            ..methods
        };
        ffi::sqlite3_config(
            ffi::SQLITE_CONFIG_MUTEX,
            &spinning as *const ffi::sqlite3_mutex_methods,
        ) == ffi::SQLITE_OK
    }
}

/// `xMutexEnter`: SQLite's own `xMutexTry` up to `MUTEX_SPINS` times, then its `xMutexEnter`.
unsafe extern "C" fn spin_then_enter(m: *mut rusqlite::ffi::sqlite3_mutex) {
    let methods = DEFAULT_MUTEX
        .get()
        .expect("set before these methods are installed");
    let (try_enter, enter) = (
        methods.xMutexTry.expect("checked when installed"),
        methods.xMutexEnter.expect("checked when installed"),
    );
    for _ in 0..MUTEX_SPINS {
        // SAFETY: `m` is a mutex SQLite allocated with the same methods.
        if unsafe { try_enter(m) } == rusqlite::ffi::SQLITE_OK {
            return;
        }
        std::hint::spin_loop();
    }
    // SAFETY: as above.
    unsafe { enter(m) }
}

/// Applies the per-connection settings. Runs on every new connection.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    disable_lookaside(conn);
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -{CACHE_KIB};
         PRAGMA temp_store = MEMORY;"
    ))
}

/// Frees what a connection holds only to be fast: its prepared statements and the pages of
/// its cache that no statement uses. The schema and the open files stay.
pub fn release_memory(conn: &Connection) {
    conn.flush_prepared_statement_cache();
    // SAFETY: the handle is valid while `conn` lives, and `conn` is not used meanwhile.
    unsafe { rusqlite::ffi::sqlite3_db_release_memory(conn.handle()) };
}

/// Statements kept prepared per connection (rusqlite's LRU statement cache). A message runs
/// about 15 distinct statements; re-preparing them was a fifth of the server's CPU.
pub const STATEMENT_CACHE: usize = 32;

/// `execute` and `query_row` through the connection's prepared-statement cache, for the
/// fixed SQL of the hot paths (never for SQL built from input).
pub trait Cached {
    /// Like `Connection::execute`, with the statement cached.
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
    /// Like `Connection::query_row`, with the statement cached.
    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// A write transaction: `BEGIN IMMEDIATE` on a connection in none, else a savepoint inside
/// the caller's transaction (which then commits it with its own writes, as one). Dropped
/// uncommitted, it is rolled back. Its statements are prepared once per connection.
pub struct Tx<'c> {
    conn: &'c mut Connection,
    nested: bool,
    open: bool,
}

/// Begins a write transaction (see `Tx`).
pub fn begin(conn: &mut Connection) -> rusqlite::Result<Tx<'_>> {
    let nested = !conn.is_autocommit();
    conn.exec(
        if nested {
            "SAVEPOINT tx"
        } else {
            "BEGIN IMMEDIATE"
        },
        [],
    )?;
    Ok(Tx {
        conn,
        nested,
        open: true,
    })
}

impl Tx<'_> {
    /// Commits (a nested one: releases its savepoint into the caller's transaction).
    pub fn commit(mut self) -> rusqlite::Result<()> {
        self.open = false;
        let done = self
            .conn
            .exec(if self.nested { "RELEASE tx" } else { "COMMIT" }, []);
        if done.is_err() {
            self.undo();
        }
        done.map(|_| ())
    }

    /// Rolls back all this transaction wrote and begins it again, in place.
    pub fn restart(&mut self) -> rusqlite::Result<()> {
        match self.nested {
            // Rolling back to a savepoint keeps it open.
            true => self.conn.exec("ROLLBACK TO tx", []).map(|_| ()),
            false => {
                self.conn.exec("ROLLBACK", [])?;
                self.conn.exec("BEGIN IMMEDIATE", []).map(|_| ())
            }
        }
    }

    fn undo(&self) {
        let undo = match self.nested {
            true => "ROLLBACK TO tx; RELEASE tx",
            false => "ROLLBACK",
        };
        if !self.conn.is_autocommit()
            && let Err(e) = self.conn.execute_batch(undo)
        {
            tracing::error!(error = %e, "rolling back a transaction failed");
        }
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            self.undo();
        }
    }
}

impl std::ops::Deref for Tx<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn
    }
}

impl std::ops::DerefMut for Tx<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn
    }
}

/// Opens an existing database file and configures it.
pub fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, open_flags_existing())?;
    configure(&conn)?;
    Ok(conn)
}

/// Opens (creating if needed, with mode 0600) a database file, switches it to WAL and
/// configures it.
pub fn open_or_create(path: &Path) -> Result<Connection, super::StoreError> {
    super::create_private_file(path)?;
    let conn =
        Connection::open_with_flags(path, open_flags_existing() | OpenFlags::SQLITE_OPEN_CREATE)?;
    configure(&conn)?;
    // Only takes effect while the file is still empty, i.e. for a new database.
    conn.execute_batch(&format!("PRAGMA page_size = {PAGE_SIZE}"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(super::StoreError::Sqlite(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "could not switch {} to WAL (journal_mode is {mode})",
                path.display()
            )),
        )));
    }
    Ok(conn)
}

/// Whether the linked SQLite is new enough (see `MIN_SQLITE_VERSION`).
pub fn version_ok() -> bool {
    rusqlite::version_number() >= MIN_SQLITE_VERSION
}

// Lookaside is a per-connection slab (about 40-120 KiB) that speeds small allocations; with
// thousands of mostly idle connections it is the largest per-tenant memory cost.
fn disable_lookaside(conn: &Connection) {
    // SAFETY: the handle is valid for the connection's lifetime and no statement has run yet,
    // so no lookaside memory is outstanding; a null buffer with size 0 turns lookaside off.
    unsafe {
        rusqlite::ffi::sqlite3_db_config(
            conn.handle(),
            rusqlite::ffi::SQLITE_DBCONFIG_LOOKASIDE,
            std::ptr::null_mut::<std::ffi::c_void>(),
            0 as std::ffi::c_int,
            0 as std::ffi::c_int,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
        conn
    }

    fn all(conn: &Connection) -> Vec<i64> {
        let mut s = conn.prepare("SELECT n FROM t ORDER BY n").unwrap();
        s.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    #[test]
    fn a_transaction_commits_or_rolls_back_when_dropped() {
        let mut conn = numbers();
        let tx = begin(&mut conn).unwrap();
        tx.exec("INSERT INTO t VALUES (1)", []).unwrap();
        tx.commit().unwrap();
        let tx = begin(&mut conn).unwrap();
        tx.exec("INSERT INTO t VALUES (2)", []).unwrap();
        drop(tx);
        assert!(conn.is_autocommit());
        assert_eq!(all(&conn), [1]);
    }

    #[test]
    fn a_nested_transaction_commits_with_the_outer_one_and_can_roll_back_alone() {
        let mut conn = numbers();
        let mut outer = begin(&mut conn).unwrap();
        outer.exec("INSERT INTO t VALUES (1)", []).unwrap();
        {
            let inner = begin(&mut outer).unwrap();
            inner.exec("INSERT INTO t VALUES (2)", []).unwrap();
            let mut sp = {
                let mut inner = inner;
                let sp = begin(&mut inner).unwrap();
                sp.exec("INSERT INTO t VALUES (3)", []).unwrap();
                drop(sp);
                inner.commit().unwrap();
                begin(&mut outer).unwrap()
            };
            sp.exec("INSERT INTO t VALUES (4)", []).unwrap();
            let deeper = begin(&mut sp).unwrap();
            deeper.exec("INSERT INTO t VALUES (5)", []).unwrap();
            deeper.commit().unwrap();
            // Dropped: 4 and 5 go, 1 and 2 stay in the outer transaction.
        }
        assert!(!outer.is_autocommit());
        outer.commit().unwrap();
        assert!(conn.is_autocommit());
        assert_eq!(all(&conn), [1, 2]);
    }

    #[test]
    fn a_restarted_transaction_keeps_only_what_follows_the_restart() {
        let mut conn = numbers();
        let mut tx = begin(&mut conn).unwrap();
        tx.exec("INSERT INTO t VALUES (1)", []).unwrap();
        tx.restart().unwrap();
        tx.exec("INSERT INTO t VALUES (2)", []).unwrap();
        tx.commit().unwrap();
        assert_eq!(all(&conn), [2]);

        let mut outer = begin(&mut conn).unwrap();
        outer.exec("INSERT INTO t VALUES (3)", []).unwrap();
        let mut inner = begin(&mut outer).unwrap();
        inner.exec("INSERT INTO t VALUES (4)", []).unwrap();
        inner.restart().unwrap();
        inner.exec("INSERT INTO t VALUES (5)", []).unwrap();
        inner.commit().unwrap();
        outer.commit().unwrap();
        assert_eq!(
            all(&conn),
            [2, 3, 5],
            "a nested restart undoes only its own part"
        );
    }

    #[test]
    fn bundled_sqlite_is_new_enough() {
        assert!(version_ok(), "SQLite {} is too old", rusqlite::version());
    }

    #[test]
    fn connections_get_wal_and_pragmas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        assert!(
            open_existing(&path).is_err(),
            "must not create a missing file"
        );
        drop(open_or_create(&path).unwrap());
        let conn = open_existing(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        let fk: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .unwrap();
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap();
        assert_eq!((mode.as_str(), fk, sync), ("wal", 1, 1));
    }
}
