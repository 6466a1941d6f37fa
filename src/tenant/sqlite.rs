//! How every SQLite connection of tarn is opened: flags, pragmas and memory settings.
//! Invariant: each connection is in WAL mode with `synchronous=NORMAL`, foreign keys on, a
//! busy timeout, a small page cache and no lookaside buffer (it costs RSS per connection).

use rusqlite::{Connection, OpenFlags};
use std::path::Path;

/// How long a connection waits on a lock held by another before failing.
pub const BUSY_TIMEOUT_MS: u32 = 5_000;

/// Page cache limit per connection, in KiB (SQLite grows the cache only as pages are used).
pub const CACHE_KIB: u32 = 512;

/// The bundled SQLite must include the WAL-reset corruption fix.
pub const MIN_SQLITE_VERSION: i32 = 3_051_003;

/// Flags for opening an existing database (never creates one).
pub fn open_flags_existing() -> OpenFlags {
    OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI
}

/// Applies the per-connection settings. Runs on every new connection.
pub fn configure(conn: &Connection) -> rusqlite::Result<()> {
    disable_lookaside(conn);
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = {BUSY_TIMEOUT_MS};
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA cache_size = -{CACHE_KIB};
         PRAGMA temp_store = MEMORY;"
    ))
}

/// Opens an existing database file and configures it.
pub fn open_existing(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, open_flags_existing())?;
    configure(&conn)?;
    Ok(conn)
}

/// Opens (creating if needed) a database file, switches it to WAL and configures it.
pub fn open_or_create(path: &Path) -> rusqlite::Result<Connection> {
    let conn =
        Connection::open_with_flags(path, open_flags_existing() | OpenFlags::SQLITE_OPEN_CREATE)?;
    configure(&conn)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "could not switch {} to WAL (journal_mode is {mode})",
                path.display()
            )),
        ));
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
