//! The tenant store: the registry (control db) and the tenant files kept in step, as used by
//! the admin API and the CLI. Invariants: a tenant row is active iff its file is in place;
//! API keys are returned once and only their SHA-256 is kept; every call blocks.

use crate::control::schedule::NewSchedule;
use crate::control::{ControlDb, TenantRecord, Trashed};
use crate::tenant::{Layout, StoreError, TenantId, TenantPool, db_files, migrate, sqlite};
use rand::RngExt;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::Path;

/// What it takes to create a tenant.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    pub id: TenantId,
    #[schemars(length(min = 1, max = 200))]
    pub name: String,
    /// An ISO 4217 code (default USD).
    #[schemars(regex(pattern = r"^[A-Za-z]{3}$"))]
    pub currency: Option<String>,
    /// An IANA time zone name, like Europe/Berlin (default UTC).
    #[schemars(length(min = 1, max = 64))]
    pub timezone: Option<String>,
}

/// The most bytes of a tenant's display name.
pub const MAX_NAME_LEN: usize = 200;

/// A created (or re-keyed) tenant with its API key, which is never shown again.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
pub struct Created {
    #[serde(flatten)]
    pub tenant: TenantRecord,
    pub api_key: String,
}

/// How a migration of one tenant ended.
#[derive(Debug)]
pub struct MigrateReport {
    pub id: TenantId,
    pub result: Result<migrate::Outcome, StoreError>,
}

/// The registry and tenant files together. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    control: ControlDb,
    pool: TenantPool,
}

/// Hex of the SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// A fresh random secret: `prefix` then 64 hex digits (256 bits).
pub fn random_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::rng().random();
    format!("{prefix}{}", hex::encode(bytes))
}

/// Runs `op(path, file name)` on a database file, its `-wal` and its `-shm`; a file that
/// is not there is skipped.
fn each_db_file(
    db: &Path,
    mut op: impl FnMut(&Path, &std::ffi::OsStr) -> std::io::Result<()>,
) -> Result<(), StoreError> {
    crate::tenant::forget_replica_state(db).map_err(|e| StoreError::io(db, e))?;
    for f in db_files(db) {
        let name = f.file_name().expect("database files have names");
        match op(&f, name) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io(&f, e));
            }
            _ => {}
        }
    }
    Ok(())
}

fn now_rfc3339() -> String {
    crate::clock::now()
}

fn validate(new: &NewTenant) -> Result<(String, String, String), StoreError> {
    let name = new.name.trim();
    if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "name must be 1-{MAX_NAME_LEN} bytes of printable text"
        )));
    }
    let currency = new
        .currency
        .as_deref()
        .unwrap_or("USD")
        .to_ascii_uppercase();
    if !crate::action::is_currency(&currency) {
        return Err(StoreError::Invalid(format!(
            "currency {currency:?} is not an ISO 4217 currency code (like USD, EUR, KES)"
        )));
    }
    let timezone = new.timezone.as_deref().unwrap_or("UTC");
    if timezone.parse::<chrono_tz::Tz>().is_err() {
        return Err(StoreError::Invalid(format!(
            "timezone {timezone:?} is not an IANA time zone name (like Europe/Berlin)"
        )));
    }
    Ok((name.to_owned(), currency, timezone.to_owned()))
}

impl Store {
    /// A store over an opened control db and a tenant pool of the same data dir.
    pub fn new(control: ControlDb, pool: TenantPool) -> Self {
        Store { control, pool }
    }

    /// The tenant pool.
    pub fn pool(&self) -> &TenantPool {
        &self.pool
    }

    /// The registry.
    pub fn control(&self) -> &ControlDb {
        &self.control
    }

    fn layout(&self) -> &Layout {
        self.pool.layout()
    }

    /// Writes the tenant's schedules to the schedule index and their mirror in its file.
    pub fn put_schedules(&self, id: &TenantId, rows: &[NewSchedule]) -> Result<(), StoreError> {
        self.control.put_schedules(id, rows)?;
        self.mirror_schedules_of(id)
    }

    /// Turns off a schedule that cannot run (`why` is kept as its last status), in the index
    /// and in the tenant's mirror.
    pub fn disable_schedule(
        &self,
        id: &TenantId,
        schedule_id: i64,
        why: &str,
    ) -> Result<(), StoreError> {
        self.control.disable_schedule(schedule_id, why)?;
        self.mirror_schedules_of(id)
    }

    fn mirror_schedules_of(&self, id: &TenantId) -> Result<(), StoreError> {
        let handle = self.pool.acquire(id)?;
        let mut conn = handle.conn()?;
        self.mirror_schedules(id, &mut conn)
    }

    /// Copies the tenant's schedules from the schedule index into its file (`schedules`, a
    /// synced table) as one recorded change, on a blocking thread. The schedule writes above
    /// and the snapshot call it, so a mirror a failure left behind is caught up.
    pub fn mirror_schedules(
        &self,
        id: &TenantId,
        conn: &mut rusqlite::Connection,
    ) -> Result<(), StoreError> {
        let rows = self.control.schedules(id)?;
        let tx = conn.transaction()?;
        crate::sync::mirror_schedules(&tx, &rows)?;
        crate::tenant::session::record(&tx, "schedules")?;
        tx.commit()?;
        Ok(())
    }

    /// Registers a tenant and creates its file. Returns the record and its new API key.
    pub fn create_tenant(&self, new: NewTenant) -> Result<Created, StoreError> {
        let (name, currency, timezone) = validate(&new)?;
        if self.control.get_active(&new.id).is_ok() {
            return Err(StoreError::AlreadyExists(new.id));
        }
        let init = |conn: &rusqlite::Connection| {
            let tx = conn.unchecked_transaction()?;
            crate::shop::init_tenant(&tx, &currency, &timezone)?;
            Ok(tx.commit()?)
        };
        self.pool.create(&new.id, init).map_err(|e| match e {
            StoreError::AlreadyExists(id) => StoreError::Conflict(format!(
                "a database file for tenant {id} already exists (being created now, or left on disk unregistered)"
            )),
            e => e,
        })?;
        let api_key = random_secret("tarn_");
        let tenant = TenantRecord {
            id: new.id.clone(),
            name,
            status: "active".into(),
            created_at: now_rfc3339(),
            currency,
            timezone,
            deleted_at: None,
        };
        if let Err(e) = self.control.insert(&tenant, &sha256_hex(&api_key)) {
            let _ = self.remove_files(&new.id);
            return Err(e);
        }
        let defaults = crate::schedule::default_schedules(&tenant.timezone, chrono::Utc::now());
        if let Err(e) = self.control.add_missing_schedules(&tenant.id, &defaults) {
            let _ = self.control.remove(&new.id);
            let _ = self.remove_files(&new.id);
            return Err(e);
        }
        Ok(Created { tenant, api_key })
    }

    fn remove_files(&self, id: &TenantId) -> Result<(), StoreError> {
        self.pool.close_and(id, || {
            each_db_file(&self.layout().tenant_db(id), |f, _| std::fs::remove_file(f))
        })
    }

    /// An active tenant's record.
    pub fn get_tenant(&self, id: &TenantId) -> Result<TenantRecord, StoreError> {
        self.control.get_active(id)
    }

    /// A page of active tenants ordered by id, after the cursor `after`.
    pub fn list_tenants(
        &self,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        self.control.list("active", after, limit)
    }

    /// Closes the tenant, moves its files to `<data_dir>/_trash/<id>-<time>/` and lists it in
    /// the trash. `restore_tenant` brings it back; `purge_trash` removes it for good.
    pub fn delete_tenant(&self, id: &TenantId) -> Result<TenantRecord, StoreError> {
        self.control.get_active(id)?;
        let deleted_at = now_rfc3339();
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let trash = self.layout().trash_dir().join(format!("{id}-{stamp}"));
        self.pool.close_and(id, || {
            crate::tenant::create_private_dir(&trash)?;
            each_db_file(&self.layout().tenant_db(id), |f, name| {
                std::fs::rename(f, trash.join(name))
            })?;
            self.control.delete_schedules(id)?;
            self.control
                .move_to_trash(id, &deleted_at, &trash.to_string_lossy())
        })
    }

    /// Lets go of a tenant that moved to another machine: its file (closed; kept out by the
    /// pool's fence) and its control rows go. Safe to repeat after a crash.
    pub fn hand_off(&self, id: &TenantId) -> Result<(), StoreError> {
        self.pool.close_and(id, || {
            each_db_file(&self.layout().tenant_db(id), |f, _| std::fs::remove_file(f))?;
            self.control.forget_tenant(id)
        })
    }

    /// Serves a tenant that moved here: its restored file at `staged` goes into place and
    /// its control rows are registered (replicating under the passport's last lineage, new
    /// for this machine), in that order, so a crash between them is finished by repeating
    /// this.
    pub fn take_in(
        &self,
        id: &TenantId,
        staged: &Path,
        passport: &crate::control::passport::Passport,
    ) -> Result<(), StoreError> {
        self.pool.close_and(id, || {
            let db = self.layout().tenant_db(id);
            if staged.exists() {
                crate::tenant::create_private_dir(&self.layout().tenant_dir(id))?;
                each_db_file(&db, |f, _| std::fs::remove_file(f))?;
                std::fs::rename(staged, &db).map_err(|e| StoreError::io(&db, e))?;
            } else if !db.exists() {
                return Err(StoreError::Invalid(format!(
                    "tenant {id}'s restored file {} is gone",
                    staged.display()
                )));
            }
            self.control.import_passport(id, passport)
        })
    }

    /// Drops a restored file that will not be served here, and its note.
    pub fn drop_arrival(&self, id: &TenantId, staged: &Path) -> Result<(), StoreError> {
        for f in db_files(staged) {
            match std::fs::remove_file(&f) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StoreError::io(&f, e));
                }
                _ => {}
            }
        }
        self.control.drop_arrival(id)
    }

    /// Moves the most recently deleted copy of a tenant back from the trash and reactivates
    /// it with a new key. `Conflict` while a tenant of that id is active.
    pub fn restore_tenant(&self, id: &TenantId) -> Result<Created, StoreError> {
        if self.control.get_active(id).is_ok() {
            return Err(StoreError::Conflict(format!(
                "tenant {id} is active: delete it first to bring back its trashed copy"
            )));
        }
        let Some(trashed) = self.control.trashed(id)?.into_iter().next() else {
            return Err(StoreError::NotFound(id.clone()));
        };
        let from = std::path::PathBuf::from(&trashed.path);
        let api_key = random_secret("tarn_");
        self.pool.close_and(id, || {
            let db = self.layout().tenant_db(id);
            if db.exists() {
                return Err(StoreError::Conflict(format!(
                    "a database file for tenant {id} is already in place"
                )));
            }
            let dir = self.layout().tenant_dir(id);
            crate::tenant::create_private_dir(&dir)?;
            each_db_file(&db, |f, name| std::fs::rename(from.join(name), f))?;
            let _ = std::fs::remove_dir(&from);
            // Apps that synced the tenant before it was deleted start again.
            crate::tenant::session::new_epoch(&crate::tenant::sqlite::open_existing(&db)?)?;
            self.control
                .restore_from_trash(&trashed, &sha256_hex(&api_key))
        })?;
        let tenant = self.control.get_active(id)?;
        let defaults = crate::schedule::default_schedules(&tenant.timezone, chrono::Utc::now());
        self.control.add_missing_schedules(id, &defaults)?;
        Ok(Created { tenant, api_key })
    }

    /// A page of the trash, by id then time of deletion.
    pub fn trash(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<Trashed>, StoreError> {
        self.control.trash_list(after, limit)
    }

    /// The tenant's trashed copies (only the one deleted at `deleted_at`, if given);
    /// `NotFound` when there is none.
    pub fn trashed_copies(
        &self,
        id: &TenantId,
        deleted_at: Option<&str>,
    ) -> Result<Vec<Trashed>, StoreError> {
        let copies: Vec<Trashed> = self
            .control
            .trashed(id)?
            .into_iter()
            .filter(|t| deleted_at.is_none_or(|d| d == t.deleted_at))
            .collect();
        if copies.is_empty() {
            return Err(StoreError::NotFound(id.clone()));
        }
        Ok(copies)
    }

    /// Every trashed copy deleted before `cutoff` (RFC 3339, UTC).
    pub fn trash_deleted_before(&self, cutoff: &str) -> Result<Vec<Trashed>, StoreError> {
        self.control.trash_deleted_before(cutoff)
    }

    /// Removes a trashed copy's files, then its entry (its replicas are the caller's: see
    /// `trash::purge`).
    pub fn purge_copy(&self, t: &Trashed) -> Result<(), StoreError> {
        match std::fs::remove_dir_all(&t.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(StoreError::io(&t.path, e));
            }
            _ => {}
        }
        self.control.forget_trashed(t)
    }

    /// Replaces the tenant's API key; the old one stops working at once.
    pub fn rotate_key(&self, id: &TenantId) -> Result<Created, StoreError> {
        let api_key = random_secret("tarn_");
        self.control.set_key_hash(id, &sha256_hex(&api_key))?;
        Ok(Created {
            tenant: self.control.get_active(id)?,
            api_key,
        })
    }

    /// Brings one tenant file to the current schema (opening it directly, not via the pool).
    pub fn migrate_tenant(&self, id: &TenantId) -> Result<migrate::Outcome, StoreError> {
        self.control.get_active(id)?;
        let path = self.layout().tenant_db(id);
        if !path.exists() {
            return Err(StoreError::NotFound(id.clone()));
        }
        let mut conn = sqlite::open_existing(&path)?;
        migrate::apply(&mut conn, migrate::TENANT, &path)
    }

    /// Every active tenant id, in order.
    pub fn all_tenant_ids(&self) -> Result<Vec<TenantId>, StoreError> {
        let mut ids = Vec::new();
        loop {
            let page = self.control.list("active", ids.last(), 10_000)?;
            if page.is_empty() {
                return Ok(ids);
            }
            ids.extend(page.into_iter().map(|r| r.id));
        }
    }

    /// Migrates every active tenant with `workers` threads, calling `progress` after each;
    /// a failing tenant is reported and the walk goes on.
    pub fn migrate_all(
        &self,
        workers: usize,
        progress: impl Fn(&MigrateReport) + Sync,
    ) -> Result<Vec<MigrateReport>, StoreError> {
        let ids = self.all_tenant_ids()?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let reports = std::sync::Mutex::new(Vec::with_capacity(ids.len()));
        std::thread::scope(|s| {
            for _ in 0..workers.max(1) {
                s.spawn(|| {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(id) = ids.get(i) else { break };
                        let report = MigrateReport {
                            id: id.clone(),
                            result: self.migrate_tenant(id),
                        };
                        progress(&report);
                        reports
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .push(report);
                    }
                });
            }
        });
        let mut reports = reports.into_inner().unwrap_or_else(|p| p.into_inner());
        reports.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(reports)
    }

    /// The tenant's settings as a JSON object.
    pub fn settings(
        &self,
        id: &TenantId,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        let handle = self.pool.acquire(id)?;
        let conn = handle.conn()?;
        let mut stmt = conn.prepare_cached("SELECT key, value FROM settings ORDER BY key")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = serde_json::Map::new();
        for row in rows {
            let (k, v) = row?;
            let v = serde_json::from_str(&v).unwrap_or(serde_json::Value::String(v));
            out.insert(k, v);
        }
        Ok(out)
    }

    /// Merges `patch` into the tenant's settings (a `null` value removes the key), in one
    /// transaction; returns the settings after.
    pub fn update_settings(
        &self,
        id: &TenantId,
        patch: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, StoreError> {
        for (k, v) in patch {
            crate::shop::check_setting(k, v).map_err(StoreError::Invalid)?;
        }
        {
            let handle = self.pool.acquire(id)?;
            let mut conn = handle.conn()?;
            let tx = conn.transaction()?;
            for (k, v) in patch {
                if v.is_null() {
                    tx.execute("DELETE FROM settings WHERE key = ?1", [k])?;
                } else {
                    tx.execute(
                        "INSERT INTO settings (key, value) VALUES (?1, ?2)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value,
                           updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                        [k, &v.to_string()],
                    )?;
                }
            }
            crate::tenant::session::record(&tx, "settings")?;
            tx.commit()?;
        }
        self.settings(id)
    }
}
