//! Backups, restores and checks of the data dir's SQLite files. A backup copies each file
//! through SQLite's online backup API in one step under a read transaction, so it is a
//! consistent snapshot even while a server writes (WAL readers do not block writers).
//! Invariant: backup and check only read the live files; restore writes a tenant file only
//! from a backup that passes `integrity_check`, and swaps it in by rename.

use crate::control::ControlDb;
use crate::tenant::{Layout, StoreError, TenantId, db_files, sqlite};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What happened to one file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub id: String,
    pub ok: bool,
    /// Bytes written (backup, restore) or the check's first findings.
    pub detail: String,
}

/// Copies the database at `src` to a new file `dest` as one consistent snapshot.
pub fn snapshot(src: &Path, dest: &Path) -> Result<u64, StoreError> {
    let from = sqlite::open_existing(src)?;
    snapshot_conn(&from, dest)
}

/// Copies the database behind the open connection `from` to a new file `dest`.
pub fn snapshot_conn(from: &Connection, dest: &Path) -> Result<u64, StoreError> {
    if let Some(dir) = dest.parent() {
        crate::tenant::create_private_dir(dir)?;
    }
    let tmp = dest.with_extension("db-partial");
    let _ = std::fs::remove_file(&tmp);
    crate::tenant::create_private_file(&tmp)?;
    {
        let mut to = Connection::open(&tmp)?;
        let backup = rusqlite::backup::Backup::new(from, &mut to)?;
        // All pages in one step: one read transaction, so one point in time.
        backup.step(-1)?;
    }
    // Closed: the copy is one self-contained file (still in WAL mode, as the original).
    std::fs::rename(&tmp, dest).map_err(|e| StoreError::io(dest, e))?;
    Ok(std::fs::metadata(dest)
        .map_err(|e| StoreError::io(dest, e))?
        .len())
}

/// `quick_check` (or `integrity_check` when `full`) of one file; the problems found.
pub fn check_file(path: &Path, full: bool) -> Result<Vec<String>, StoreError> {
    if !path.exists() {
        return Err(StoreError::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        ));
    }
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let pragma = if full {
        "PRAGMA integrity_check(20)"
    } else {
        "PRAGMA quick_check(20)"
    };
    let mut stmt = conn.prepare(pragma)?;
    let lines = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(lines.into_iter().filter(|l| l != "ok").collect())
}

/// Runs `op` on every id with `workers` threads, calling `progress` after each.
pub fn for_each<R: Send>(
    ids: &[TenantId],
    workers: usize,
    op: impl Fn(&TenantId) -> R + Sync,
    progress: impl Fn(&R) + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::with_capacity(ids.len()));
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(id) = ids.get(i) else { break };
                    let r = op(id);
                    progress(&r);
                    out.lock().unwrap_or_else(|p| p.into_inner()).push((i, r));
                }
            });
        }
    });
    let mut out = out.into_inner().unwrap_or_else(|p| p.into_inner());
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, r)| r).collect()
}

fn report(id: &TenantId, r: Result<String, StoreError>) -> FileReport {
    match r {
        Ok(detail) => FileReport {
            id: id.to_string(),
            ok: true,
            detail,
        },
        Err(e) => FileReport {
            id: id.to_string(),
            ok: false,
            detail: e.to_string(),
        },
    }
}

/// Backs up one tenant of `live` into the backup dir laid out as `to`.
pub fn backup_tenant(live: &Layout, to: &Layout, id: &TenantId) -> FileReport {
    report(
        id,
        snapshot(&live.tenant_db(id), &to.tenant_db(id)).map(|b| format!("{b} bytes")),
    )
}

/// Checks one tenant's file.
pub fn check_tenant(live: &Layout, id: &TenantId, full: bool) -> FileReport {
    report(
        id,
        check_file(&live.tenant_db(id), full).and_then(|problems| {
            if problems.is_empty() {
                Ok("ok".into())
            } else {
                Err(StoreError::Invalid(problems.join("; ")))
            }
        }),
    )
}

/// Backs up the control database (registry, bindings, schedules) into `to`.
pub fn backup_control(live: &Layout, to: &Layout) -> Result<u64, StoreError> {
    snapshot(&live.control_db(), &to.control_db())
}

/// A tenant's registry row in a backup's control db: (name, currency, timezone, key hash).
fn backed_up_record(
    from: &Layout,
    id: &TenantId,
) -> Result<Option<(String, String, String, String)>, StoreError> {
    let path = from.control_db();
    if !path.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    Ok(conn
        .query_row(
            "SELECT name, currency, timezone, api_key_hash FROM tenants WHERE id = ?1",
            [id.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?)
}

/// Restores one tenant from the backup dir `from` into `live`: checks the backup, copies it
/// beside the live file and renames it into place; registers the tenant from the backup's
/// registry if the live registry lacks it. An existing live file is replaced only with
/// `force`. Run with the data dir locked (no server).
pub fn restore_tenant(
    from: &Layout,
    live: &Layout,
    control: &ControlDb,
    id: &TenantId,
    force: bool,
) -> FileReport {
    report(id, restore_one(from, live, control, id, force))
}

fn restore_one(
    from: &Layout,
    live: &Layout,
    control: &ControlDb,
    id: &TenantId,
    force: bool,
) -> Result<String, StoreError> {
    let src = from.tenant_db(id);
    let problems = match check_file(&src, true) {
        Err(StoreError::Sqlite(e)) => vec![e.to_string()],
        other => other?,
    };
    if !problems.is_empty() {
        return Err(StoreError::Invalid(format!(
            "the backup of {id} fails its integrity check: {}",
            problems.join("; ")
        )));
    }
    let dest = live.tenant_db(id);
    if dest.exists() && !force {
        return Err(StoreError::Conflict(format!(
            "{id} has a live file; pass --force to replace it"
        )));
    }
    let staged: PathBuf = dest.with_extension("db-restore");
    let bytes = snapshot(&src, &staged)?;
    // The restored copy is another history than what apps synced: they start again.
    crate::tenant::session::new_epoch(&crate::tenant::sqlite::open_existing(&staged)?)?;
    crate::tenant::forget_replica_state(&dest).map_err(|e| StoreError::io(&dest, e))?;
    for f in db_files(&dest) {
        match std::fs::remove_file(&f) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io(&f, e));
            }
            _ => {}
        }
    }
    std::fs::rename(&staged, &dest).map_err(|e| StoreError::io(&dest, e))?;
    let registered = control.get(id)?.is_some_and(|r| r.status == "active");
    if !registered {
        let Some((name, currency, timezone, key_hash)) = backed_up_record(from, id)? else {
            return Err(StoreError::Invalid(format!(
                "{id} restored to disk but it is in neither registry; register it with `tarn tenant create`"
            )));
        };
        let rec = crate::control::TenantRecord {
            id: id.clone(),
            name,
            status: "active".into(),
            created_at: crate::clock::now(),
            currency,
            timezone: timezone.clone(),
            deleted_at: None,
        };
        control.insert(&rec, &key_hash)?;
        control.add_missing_schedules(
            id,
            &crate::schedule::default_schedules(&timezone, chrono::Utc::now()),
        )?;
    }
    // Another history of the file: it must not continue the replica of the one it replaced.
    control.begin_replica_lineage(id)?;
    Ok(format!("{bytes} bytes"))
}

/// The tenant ids whose files a backup dir holds.
pub fn ids_in(from: &Layout) -> Vec<TenantId> {
    let mut ids = Vec::new();
    let Ok(dirs) = std::fs::read_dir(from.root()) else {
        return ids;
    };
    for d in dirs.flatten() {
        if !d.path().is_dir() || d.file_name().len() != 3 {
            continue;
        }
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "db")
                && let Some(id) = p
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| TenantId::parse(s).ok())
                && from.tenant_db(&id) == p
            {
                ids.push(id);
            }
        }
    }
    ids.sort();
    ids
}
