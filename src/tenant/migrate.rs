//! Schema migrations for tenant files and the control database, compiled into the binary.
//! Invariant: `PRAGMA user_version` equals the number of migrations applied; all pending
//! migrations of a file apply in one transaction; a file newer than the binary is refused.

use super::StoreError;
use rusqlite::{Connection, TransactionBehavior};
use std::path::Path;

/// One numbered schema step.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// 1-based version this migration brings the file to.
    pub version: i64,
    /// File name, for errors.
    pub name: &'static str,
    /// The SQL.
    pub sql: &'static str,
}

macro_rules! migrations {
    ($dir:literal: $($version:literal => $file:literal),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $file,
            sql: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/", $dir, $file)),
        }),*]
    };
}

/// The tenant schema (`migrations/NNNN_*.sql`).
pub const TENANT: &[Migration] = migrations!("": 1 => "0001_init.sql", 2 => "0002_shop.sql", 3 => "0003_llm_usage.sql", 4 => "0004_channels.sql", 5 => "0005_jobs.sql", 6 => "0006_lean_writes.sql", 7 => "0007_sales_hourly.sql", 8 => "0008_books.sql", 9 => "0009_sync.sql", 10 => "0010_schedules.sql", 11 => "0011_checks_without_in_lists.sql", 12 => "0012_llm_latency.sql");

/// The control database schema (`migrations/control/NNNN_*.sql`).
pub const CONTROL: &[Migration] = migrations!("control/": 1 => "0001_registry.sql", 2 => "0002_channels.sql", 3 => "0003_schedules.sql", 4 => "0004_trash.sql", 5 => "0005_devices.sql", 6 => "0006_replica.sql", 7 => "0007_placement.sql");

impl Migration {
    /// Whether it edits definitions in `sqlite_schema` directly (SQLite's procedure for
    /// changing a constraint without rebuilding the table).
    fn edits_schema(&self) -> bool {
        self.sql.contains("writable_schema")
    }
}

/// Increments the schema version, so that every connection (this one too) reads the
/// edited definitions again: the last step of SQLite's procedure for editing `sqlite_schema`.
fn bump_schema_version(conn: &Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.query_row("PRAGMA schema_version", [], |r| r.get(0))?;
    conn.pragma_update(None, "schema_version", version + 1)?;
    // The edited text must still parse: read it back now, inside the transaction.
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |_| Ok(()))
}

/// What `apply` did to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Version before.
    pub from: i64,
    /// Version after.
    pub to: i64,
}

/// The version a file is at.
pub fn current_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
}

/// Brings `conn` to the latest of `set`, in one transaction. `path` is only for errors.
pub fn apply(conn: &mut Connection, set: &[Migration], path: &Path) -> Result<Outcome, StoreError> {
    let supported = set.last().map_or(0, |m| m.version);
    let found = current_version(conn)?;
    check_not_newer(found, supported, path)?;
    if found == supported {
        return Ok(Outcome {
            from: found,
            to: found,
        });
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let from = current_version(&tx)?;
    check_not_newer(from, supported, path)?;
    for m in set.iter().filter(|m| m.version > from) {
        let failed = |source| StoreError::Migration {
            path: path.to_path_buf(),
            version: m.version,
            name: m.name,
            source,
        };
        tx.execute_batch(m.sql).map_err(failed)?;
        if m.edits_schema() {
            bump_schema_version(&tx).map_err(failed)?;
        }
    }
    tx.pragma_update(None, "user_version", supported)?;
    if from > 0 {
        // Changesets recorded under the old schema do not fit the new one.
        super::session::new_epoch(&tx)?;
    }
    tx.commit()?;
    Ok(Outcome {
        from,
        to: supported,
    })
}

fn check_not_newer(found: i64, supported: i64, path: &Path) -> Result<(), StoreError> {
    if found > supported {
        return Err(StoreError::SchemaTooNew {
            path: path.to_path_buf(),
            found,
            supported,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered_files(dir: &str) -> Vec<String> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("migrations")
            .join(dir);
        let mut names: Vec<String> = std::fs::read_dir(path)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".sql"))
            .collect();
        names.sort();
        names
    }

    fn check_set(dir: &str, set: &[Migration]) {
        let files = numbered_files(dir);
        let listed: Vec<&str> = set.iter().map(|m| m.name).collect();
        assert_eq!(
            files, listed,
            "every file in migrations/{dir} must be listed, in order"
        );
        for (i, m) in set.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(
                m.name.starts_with(&format!("{:04}_", m.version)),
                "{}",
                m.name
            );
        }
    }

    #[test]
    fn every_migration_file_is_compiled_in_and_numbered() {
        check_set("", TENANT);
        check_set("control", CONTROL);
    }

    #[test]
    fn applies_once_and_refuses_newer() {
        let mut conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        let latest = TENANT.last().unwrap().version;
        assert_eq!(
            apply(&mut conn, TENANT, p).unwrap(),
            Outcome {
                from: 0,
                to: latest
            }
        );
        assert_eq!(
            apply(&mut conn, TENANT, p).unwrap(),
            Outcome {
                from: latest,
                to: latest
            }
        );
        conn.pragma_update(None, "user_version", latest + 1)
            .unwrap();
        assert!(matches!(
            apply(&mut conn, TENANT, p),
            Err(StoreError::SchemaTooNew { found, .. }) if found == latest + 1
        ));
    }

    #[test]
    fn a_migration_of_an_existing_file_starts_a_new_sync_epoch() {
        let mut conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        apply(&mut conn, TENANT, p).unwrap();
        let epoch = |c: &Connection| -> String {
            c.query_row("SELECT epoch FROM sync_state", [], |r| r.get(0))
                .unwrap()
        };
        let first = epoch(&conn);
        apply(&mut conn, TENANT, p).unwrap();
        assert_eq!(epoch(&conn), first, "nothing to apply: same epoch");
        let mut next = TENANT.to_vec();
        next.push(Migration {
            version: TENANT.len() as i64 + 1,
            name: "9999_next.sql",
            sql: "ALTER TABLE products ADD COLUMN colour TEXT;",
        });
        apply(&mut conn, &next, p).unwrap();
        assert_ne!(epoch(&conn), first);
    }

    #[test]
    fn checks_compare_in_place_and_still_refuse_what_they_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        let p = Path::new(":memory:");
        // A file from before the edit, with rows, brought up to date.
        apply(&mut conn, &TENANT[..10], p).unwrap();
        conn.execute_batch(
            "INSERT INTO staff (name, name_key, role, created_at) VALUES ('A', 'a', 'owner', 'x');
             INSERT INTO message_log (channel, sender, source, status, reply, received_at)
             VALUES ('http', 'a', 'grammar', 'applied', 'ok', 'x');",
        )
        .unwrap();
        apply(&mut conn, TENANT, p).unwrap();
        let lists: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_schema WHERE sql LIKE '%IN (''%'")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(lists.is_empty(), "checks with IN lists left in {lists:?}");
        let ok: String = conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .unwrap();
        assert_eq!(ok, "ok");
        let add = |role: &str| {
            conn.execute(
                "INSERT INTO staff (name, name_key, role, created_at) VALUES (?1, ?1, ?2, 'x')",
                [format!("n-{role}"), role.to_owned()],
            )
        };
        assert!(add("driver").is_ok());
        assert!(add("boss").is_err(), "an unknown role is still refused");
        let log = |status: &str| {
            conn.execute(
                "INSERT INTO message_log (channel, sender, source, status, reply, received_at)
                 VALUES ('http', 'a', 'grammar', ?1, 'ok', 'x')",
                [status],
            )
        };
        assert!(log("clarify").is_ok());
        assert!(log("maybe").is_err(), "an unknown status is still refused");
    }

    #[test]
    fn failed_migration_leaves_file_untouched() {
        let mut conn = Connection::open_in_memory().unwrap();
        let bad = [
            Migration {
                version: 1,
                name: "0001_ok.sql",
                sql: "CREATE TABLE a (x);",
            },
            Migration {
                version: 2,
                name: "0002_bad.sql",
                sql: "CREATE TABLE oops (",
            },
        ];
        assert!(apply(&mut conn, &bad, Path::new("m")).is_err());
        assert_eq!(current_version(&conn).unwrap(), 0);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0);
    }
}
