//! The control database (`<data_dir>/_control.db`): the tenant registry, later also channel
//! bindings and the schedule index. Invariant: it holds no per-tenant business data, only
//! SHA-256 hashes of API keys, and every call blocks (run it on the blocking pool).

use crate::tenant::{Layout, StoreError, TenantId, migrate, sqlite};
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// A tenant as the registry knows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantRecord {
    pub id: TenantId,
    pub name: String,
    pub status: String,
    pub created_at: String,
    pub currency: String,
    pub timezone: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<String>,
}

/// Handle to the control database. Cheap to clone.
#[derive(Clone)]
pub struct ControlDb {
    pool: r2d2::Pool<SqliteConnectionManager>,
}

const COLUMNS: &str = "id, name, status, created_at, currency, timezone, deleted_at";

fn record(row: &rusqlite::Row<'_>) -> rusqlite::Result<TenantRecord> {
    let id: String = row.get(0)?;
    Ok(TenantRecord {
        id: TenantId::parse(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        name: row.get(1)?,
        status: row.get(2)?,
        created_at: row.get(3)?,
        currency: row.get(4)?,
        timezone: row.get(5)?,
        deleted_at: row.get(6)?,
    })
}

impl ControlDb {
    /// Opens (creating and migrating if needed) the control database of `layout`.
    pub fn open(layout: &Layout) -> Result<Self, StoreError> {
        let root = layout.root();
        std::fs::create_dir_all(root).map_err(|e| StoreError::io(root, e))?;
        let path = layout.control_db();
        let mut conn = sqlite::open_or_create(&path)?;
        migrate::apply(&mut conn, migrate::CONTROL, &path)?;
        drop(conn);
        let manager = SqliteConnectionManager::file(&path)
            .with_flags(sqlite::open_flags_existing())
            .with_init(|c| sqlite::configure(c));
        let pool = r2d2::Pool::builder()
            .max_size(8)
            .min_idle(Some(1))
            .build(manager)?;
        Ok(ControlDb { pool })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Adds an active tenant. A deleted tenant of the same id is replaced (its files stay in
    /// the trash); an active one makes this fail with `AlreadyExists`.
    pub fn insert(&self, rec: &TenantRecord, key_hash: &str) -> Result<(), StoreError> {
        let n = self.conn()?.execute(
            "INSERT INTO tenants (id, name, status, created_at, currency, timezone, api_key_hash)
             VALUES (?1, ?2, 'active', ?3, ?4, ?5, ?6)
             ON CONFLICT (id) DO UPDATE SET
               name = excluded.name, status = 'active', created_at = excluded.created_at,
               currency = excluded.currency, timezone = excluded.timezone,
               api_key_hash = excluded.api_key_hash, deleted_at = NULL, trash_path = NULL
             WHERE tenants.status = 'deleted'",
            params![
                rec.id.as_str(),
                rec.name,
                rec.created_at,
                rec.currency,
                rec.timezone,
                key_hash
            ],
        )?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(rec.id.clone()));
        }
        Ok(())
    }

    /// Removes a registry row outright (used to undo a half-done create).
    pub fn remove(&self, id: &TenantId) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM tenants WHERE id = ?1", [id.as_str()])?;
        Ok(())
    }

    /// The tenant's record, whatever its status.
    pub fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        Ok(self
            .conn()?
            .query_row(
                &format!("SELECT {COLUMNS} FROM tenants WHERE id = ?1"),
                [id.as_str()],
                record,
            )
            .optional()?)
    }

    /// The active tenant's record, or `NotFound`.
    pub fn get_active(&self, id: &TenantId) -> Result<TenantRecord, StoreError> {
        match self.get(id)? {
            Some(rec) if rec.status == "active" => Ok(rec),
            _ => Err(StoreError::NotFound(id.clone())),
        }
    }

    /// Up to `limit` tenants with the given status, ordered by id, after `after`.
    pub fn list(
        &self,
        status: &str,
        after: Option<&TenantId>,
        limit: usize,
    ) -> Result<Vec<TenantRecord>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM tenants WHERE status = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
        ))?;
        let after = after.map_or("", TenantId::as_str);
        let rows = stmt.query_map(params![status, after, limit as i64], record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The active tenant whose API key hashes to `hash`.
    pub fn tenant_for_key_hash(&self, hash: &str) -> Result<Option<TenantId>, StoreError> {
        let id: Option<String> = self
            .conn()?
            .query_row(
                "SELECT id FROM tenants WHERE api_key_hash = ?1 AND status = 'active'",
                [hash],
                |r| r.get(0),
            )
            .optional()?;
        Ok(id.and_then(|id| TenantId::parse(&id).ok()))
    }

    /// Replaces the active tenant's key hash. `NotFound` if there is no such tenant.
    pub fn set_key_hash(&self, id: &TenantId, hash: &str) -> Result<(), StoreError> {
        let n = self.conn()?.execute(
            "UPDATE tenants SET api_key_hash = ?2 WHERE id = ?1 AND status = 'active'",
            params![id.as_str(), hash],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.clone()));
        }
        Ok(())
    }

    /// Marks the tenant deleted and remembers where its files went.
    pub fn mark_deleted(&self, id: &TenantId, at: &str, trash: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE tenants SET status = 'deleted', deleted_at = ?2, trash_path = ?3,
                    api_key_hash = '' WHERE id = ?1",
            params![id.as_str(), at, trash],
        )?;
        Ok(())
    }

    /// Where a deleted tenant's files are, if it is deleted.
    pub fn trash_path(&self, id: &TenantId) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()?
            .query_row(
                "SELECT trash_path FROM tenants WHERE id = ?1 AND status = 'deleted'",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// Makes a deleted tenant active again with a new key hash.
    pub fn mark_restored(&self, id: &TenantId, key_hash: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE tenants SET status = 'active', deleted_at = NULL, trash_path = NULL,
                    api_key_hash = ?2 WHERE id = ?1",
            params![id.as_str(), key_hash],
        )?;
        Ok(())
    }

    /// Whether the control database accepts a write now.
    pub fn check_writable(&self) -> Result<(), StoreError> {
        let conn = self.conn()?;
        conn.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        Ok(())
    }
}
