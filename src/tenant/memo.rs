//! Values read from a tenant's `settings` and `staff` tables, kept per connection until either
//! table changes: every message reads them (the shop's currency, the sender), and they rarely
//! change. Invariant: a kept value is forgotten by any write to `TABLES` on its connection
//! (the capture's preupdate hook tells), by any rollback there, and by a commit of another
//! connection (`PRAGMA data_version`); so a value read now equals what the tables hold now.

use super::sqlite::Cached;
use rusqlite::Connection;
use rusqlite::ffi::{sqlite3, sqlite3_get_clientdata, sqlite3_set_clientdata};
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::ffi::{CStr, c_void};

/// The tables kept values may be read from.
pub const TABLES: &[&str] = &["settings", "staff"];

/// Where a connection keeps its memo (SQLite's per-connection client data).
const KEY: &CStr = c"tarn.memo";

/// A connection's kept values, one per type.
#[derive(Default)]
struct Memo {
    /// `PRAGMA data_version` when the values were read.
    version: Cell<Option<i64>>,
    values: RefCell<Vec<Box<dyn Any>>>,
}

unsafe extern "C" fn free_memo(p: *mut c_void) {
    // SAFETY: `start` stored a `Box<Memo>`; SQLite calls this once, when it is replaced or
    // the connection closes.
    drop(unsafe { Box::from_raw(p as *mut Memo) });
}

fn memo_of(db: *mut sqlite3) -> *const Memo {
    // SAFETY: only client data is read, on the connection's own thread.
    unsafe { sqlite3_get_clientdata(db, KEY.as_ptr()) as *const Memo }
}

/// Starts keeping values on `conn`. Only for a connection whose writes to `TABLES` and
/// rollbacks are reported to `forget` (the session's hooks do, when they capture).
pub(super) fn start(conn: &Connection) {
    // SAFETY: the handle is valid; the box is freed by `free_memo` with the connection.
    unsafe {
        let db = conn.handle();
        if memo_of(db).is_null() {
            let memo = Box::into_raw(Box::<Memo>::default()) as *mut c_void;
            sqlite3_set_clientdata(db, KEY.as_ptr(), memo, Some(free_memo));
        }
    }
}

/// Stops keeping values on `conn` (its changes are no longer reported).
pub(super) fn stop(conn: &Connection) {
    // SAFETY: the handle is valid; replacing the client data frees the old memo.
    unsafe { sqlite3_set_clientdata(conn.handle(), KEY.as_ptr(), std::ptr::null_mut(), None) };
}

/// Forgets every kept value of the connection `db` (a write to `TABLES`, a rollback).
///
/// # Safety
/// `db` is a valid connection, used on this thread.
pub(super) unsafe fn forget(db: *mut sqlite3) {
    // SAFETY: per the contract; the memo lives as long as the connection.
    if let Some(memo) = unsafe { memo_of(db).as_ref() }
        && let Ok(mut values) = memo.values.try_borrow_mut()
    {
        values.clear();
    }
}

/// `read` of the kept `T`, loading it first with `load` when none is kept (or the connection
/// keeps none: then every call loads). `load` may read only `TABLES`.
pub fn with<T: Any, R>(
    conn: &Connection,
    load: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    read: impl FnOnce(&T) -> R,
) -> rusqlite::Result<R> {
    // SAFETY: the connection's own handle, on its thread.
    let Some(memo) = (unsafe { memo_of(conn.handle()).as_ref() }) else {
        return load(conn).map(|v| read(&v));
    };
    let version: i64 = conn.row("PRAGMA data_version", [], |r| r.get(0))?;
    if memo.version.replace(Some(version)) != Some(version)
        && let Ok(mut values) = memo.values.try_borrow_mut()
    {
        values.clear();
    }
    if let Ok(values) = memo.values.try_borrow()
        && let Some(kept) = values.iter().find_map(|v| v.downcast_ref::<T>())
    {
        return Ok(read(kept));
    }
    let value = load(conn)?;
    let out = read(&value);
    if let Ok(mut values) = memo.values.try_borrow_mut() {
        values.push(Box::new(value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::{Layout, PoolConfig, TenantId, TenantPool};
    use std::time::Duration;

    #[derive(Debug, Clone, PartialEq)]
    struct Currency(String);

    #[test]
    fn a_kept_value_is_forgotten_by_writes_rollbacks_and_other_connections() {
        let dir = tempfile::tempdir().unwrap();
        let config = PoolConfig {
            max_open: 4,
            idle: Duration::from_secs(300),
            quiet: Duration::ZERO,
            warm: 0,
            connections: 1,
            wait: Duration::from_secs(2),
            statement_timeout: Duration::from_secs(5),
            capture: true,
            threads: 0,
        };
        let pool = TenantPool::new(Layout::new(dir.path()), config, Default::default());
        let id = TenantId::parse("a").unwrap();
        pool.create(&id, |c| Ok(crate::shop::init_tenant(c, "USD", "UTC")?))
            .unwrap();
        let handle = pool.acquire(&id).unwrap();
        let conn = handle.conn().unwrap();
        let loads = Cell::new(0);
        let currency = || {
            with(
                &conn,
                |c| {
                    loads.set(loads.get() + 1);
                    c.query_row(
                        "SELECT value FROM settings WHERE key = 'currency'",
                        [],
                        |r| r.get(0).map(Currency),
                    )
                },
                Currency::clone,
            )
            .unwrap()
        };
        let set = |c: &Connection, v: &str| {
            c.execute("UPDATE settings SET value = ?1 WHERE key = 'currency'", [v])
                .unwrap()
        };
        assert_eq!(currency(), Currency("\"USD\"".into()));
        assert_eq!((currency(), loads.get()), (Currency("\"USD\"".into()), 1));
        conn.execute(
            "INSERT INTO journal (staff_id, action, undo_ops, at_ms) VALUES (1, 'x', '[]', 0)",
            [],
        )
        .unwrap();
        currency();
        assert_eq!(loads.get(), 1, "a write elsewhere keeps the value");

        // A synced table: the change is recorded for the feed before it commits.
        conn.execute_batch("BEGIN").unwrap();
        set(&conn, "\"EUR\"");
        crate::tenant::session::record(&conn, "settings").unwrap();
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!((currency(), loads.get()), (Currency("\"EUR\"".into()), 2));

        conn.execute_batch("BEGIN").unwrap();
        set(&conn, "\"GBP\"");
        assert_eq!(currency(), Currency("\"GBP\"".into()));
        conn.execute_batch("ROLLBACK").unwrap();
        assert_eq!(currency(), Currency("\"EUR\"".into()), "a rollback forgets");

        conn.execute_batch("BEGIN; SAVEPOINT s").unwrap();
        set(&conn, "\"JPY\"");
        assert_eq!(currency(), Currency("\"JPY\"".into()));
        conn.execute_batch("ROLLBACK TO s; RELEASE s").unwrap();
        crate::tenant::session::record(&conn, "settings").unwrap();
        conn.execute_batch("COMMIT").unwrap();
        assert_eq!(
            currency(),
            Currency("\"EUR\"".into()),
            "so does one to a savepoint"
        );

        let other = Connection::open(pool.layout().tenant_db(&id)).unwrap();
        set(&other, "\"KES\"");
        let before = loads.get();
        assert_eq!(
            currency(),
            Currency("\"KES\"".into()),
            "another connection's commit"
        );
        assert_eq!(loads.get(), before + 1);
    }
}
