//! The control database (`<data_dir>/_control.db`): the tenant registry, channel bindings
//! and API keys (both cached in the handle: a steady-state webhook or app request reads
//! neither), tenants with channel work in flight, and the schedule index with its run ledger
//! ([`schedule`]). Invariant: no per-tenant business data, only SHA-256 hashes of API keys;
//! every call blocks (run it on the blocking pool) except the `cached_*` reads, which do no IO.

mod cache;
pub mod device;
pub mod lineage;
pub mod passport;
pub mod schedule;

use crate::tenant::sqlite::Cached;
use crate::tenant::{Layout, StoreError, TenantId, migrate, sqlite};
use cache::{Fenced, Writing};
use prometheus_client::metrics::counter::Counter;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::sync::Arc;

/// A tenant as the registry knows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
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

/// A deleted tenant's copy waiting in the trash.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, schemars::JsonSchema)]
pub struct Trashed {
    pub id: TenantId,
    pub deleted_at: String,
    pub name: String,
    pub created_at: String,
    pub currency: String,
    pub timezone: String,
    /// Where its files are (not shown: a server path).
    #[serde(skip)]
    pub path: String,
    /// Its file's histories in the bucket, removed with it when purged.
    #[serde(skip)]
    pub replica_lineages: Vec<lineage::Lineage>,
}

const TRASH_COLS: &str =
    "id, deleted_at, name, created_at, currency, timezone, path, replica_lineages";

fn trashed_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Trashed> {
    let id: String = row.get(0)?;
    Ok(Trashed {
        id: TenantId::parse(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        deleted_at: row.get(1)?,
        name: row.get(2)?,
        created_at: row.get(3)?,
        currency: row.get(4)?,
        timezone: row.get(5)?,
        path: row.get(6)?,
        replica_lineages: lineage::decode(&row.get::<_, String>(7)?),
    })
}

/// Handle to the control database. Cheap to clone.
#[derive(Clone)]
pub struct ControlDb {
    pool: r2d2::Pool<SqliteConnectionManager>,
    /// Bindings read so far, by (tenant, channel): a webhook and a send pass find theirs
    /// without a query. Every binding write goes through this handle and empties it.
    bindings: Arc<Fenced<(TenantId, String), Binding>>,
    /// The same, by (channel, key).
    bindings_by_key: Arc<Fenced<(String, String), Binding>>,
    /// Holders of the API keys seen so far, by key hash (about 100 bytes a key in use): a
    /// request finds its tenant without a query. Every write that can end or move a key
    /// (rotation, deletion, restore, revocation) goes through this handle and empties it.
    keys: Arc<Fenced<String, KeyHolder>>,
    /// Connections taken from the pool (the `control_db_uses` metric).
    uses: Counter,
}

/// The active tenant whose API key hashes to `hash`, on `conn`.
fn tenant_of_key(conn: &rusqlite::Connection, hash: &str) -> Result<Option<TenantId>, StoreError> {
    let id: Option<String> = conn
        .row(
            "SELECT id FROM tenants WHERE api_key_hash = ?1 AND status = 'active'",
            [hash],
            |r| r.get(0),
        )
        .optional()?;
    Ok(id.and_then(|id| TenantId::parse(&id).ok()))
}

/// Whose an API key is.
#[derive(Debug, Clone)]
pub enum KeyHolder {
    /// The shop's own key.
    Shop(TenantId),
    /// A device's key, working or revoked.
    Device(device::KeyOwner),
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
        crate::tenant::create_private_dir(root)?;
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
        Ok(ControlDb {
            pool,
            bindings: Arc::default(),
            bindings_by_key: Arc::default(),
            keys: Arc::default(),
            uses: Counter::default(),
        })
    }

    fn conn(&self) -> Result<r2d2::PooledConnection<SqliteConnectionManager>, StoreError> {
        self.uses.inc();
        Ok(self.pool.get()?)
    }

    /// Counts every use of the control db (a connection taken from its pool).
    pub fn uses(&self) -> Counter {
        self.uses.clone()
    }

    /// Adds an active tenant; an active one of the same id makes this fail with
    /// `AlreadyExists` (deleted ones wait in the trash, untouched).
    pub fn insert(&self, rec: &TenantRecord, key_hash: &str) -> Result<(), StoreError> {
        let n = self.conn()?.exec(
            "INSERT OR IGNORE INTO tenants (id, name, status, created_at, currency, timezone, api_key_hash)
             VALUES (?1, ?2, 'active', ?3, ?4, ?5, ?6)",
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
        let conn = self.conn()?;
        let _writing = self.forget_keys();
        conn.exec("DELETE FROM tenants WHERE id = ?1", [id.as_str()])?;
        Ok(())
    }

    /// The tenant's record, whatever its status.
    pub fn get(&self, id: &TenantId) -> Result<Option<TenantRecord>, StoreError> {
        Ok(self
            .conn()?
            .row(
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

    /// Whose key hashes to `hash`: the shop's own, a device's, or nobody's (`None`). From
    /// the cache when it is there; a key found is kept.
    pub fn key_holder(&self, hash: &str) -> Result<Option<KeyHolder>, StoreError> {
        if let Some(h) = self.cached_key_holder(hash) {
            return Ok(Some(h));
        }
        let conn = self.conn()?;
        self.keys.read_through(hash.to_owned(), || {
            Ok(match tenant_of_key(&conn, hash)? {
                Some(t) => Some(KeyHolder::Shop(t)),
                None => device::device_of_key(&conn, hash)?.map(KeyHolder::Device),
            })
        })
    }

    /// The cached holder of a key hash, if any (no IO).
    pub fn cached_key_holder(&self, hash: &str) -> Option<KeyHolder> {
        self.keys.get(&hash.to_owned())
    }

    /// Empties the key cache for a write, holding it empty until the guard drops.
    fn forget_keys(&self) -> Writing<'_> {
        self.keys.forget()
    }

    /// Replaces the active tenant's key hash. `NotFound` if there is no such tenant.
    pub fn set_key_hash(&self, id: &TenantId, hash: &str) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let _writing = self.forget_keys();
        let n = conn.exec(
            "UPDATE tenants SET api_key_hash = ?2 WHERE id = ?1 AND status = 'active'",
            params![id.as_str(), hash],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(id.clone()));
        }
        Ok(())
    }

    /// Takes an active tenant off the registry into the trash list, remembering where its
    /// files went; returns its record as deleted.
    pub fn move_to_trash(
        &self,
        id: &TenantId,
        at: &str,
        path: &str,
    ) -> Result<TenantRecord, StoreError> {
        let mut conn = self.conn()?;
        let _writing = self.forget_keys();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut rec = tx
            .row(
                &format!("SELECT {COLUMNS} FROM tenants WHERE id = ?1 AND status = 'active'"),
                [id.as_str()],
                record,
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        tx.exec(
            "INSERT INTO trash (id, deleted_at, name, created_at, currency, timezone, path, replica_lineages)
             SELECT id, ?2, name, created_at, currency, timezone, ?3, replica_lineages
             FROM tenants WHERE id = ?1",
            params![id.as_str(), at, path],
        )?;
        tx.exec("DELETE FROM tenants WHERE id = ?1", [id.as_str()])?;
        tx.commit()?;
        rec.status = "deleted".into();
        rec.deleted_at = Some(at.to_owned());
        Ok(rec)
    }

    /// Every trashed copy of a tenant, the most recently deleted first.
    pub fn trashed(&self, id: &TenantId) -> Result<Vec<Trashed>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TRASH_COLS} FROM trash WHERE id = ?1 ORDER BY deleted_at DESC"
        ))?;
        let rows = stmt.query_map([id.as_str()], trashed_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Up to `limit` trashed copies, by id and time of deletion, after the cursor.
    pub fn trash_list(
        &self,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<Trashed>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TRASH_COLS} FROM trash WHERE (id, deleted_at) > (?1, ?2)
             ORDER BY id, deleted_at LIMIT ?3"
        ))?;
        let (a, b) = after.unwrap_or(("", ""));
        let rows = stmt.query_map(params![a, b, limit as i64], trashed_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Every trashed copy deleted before `cutoff`.
    pub fn trash_deleted_before(&self, cutoff: &str) -> Result<Vec<Trashed>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {TRASH_COLS} FROM trash WHERE deleted_at < ?1 ORDER BY deleted_at"
        ))?;
        let rows = stmt.query_map([cutoff], trashed_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Makes a trashed copy the active tenant again, with a new key hash.
    pub fn restore_from_trash(&self, t: &Trashed, key_hash: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _writing = self.forget_keys();
        let tx = conn.transaction()?;
        let n = tx.exec(
            "INSERT OR IGNORE INTO tenants (id, name, status, created_at, currency, timezone, api_key_hash, replica_lineages)
             VALUES (?1, ?2, 'active', ?3, ?4, ?5, ?6, ?7)",
            params![
                t.id.as_str(),
                t.name,
                t.created_at,
                t.currency,
                t.timezone,
                key_hash,
                lineage::encode(&t.replica_lineages)
            ],
        )?;
        if n == 0 {
            return Err(StoreError::AlreadyExists(t.id.clone()));
        }
        tx.exec(
            "DELETE FROM trash WHERE id = ?1 AND deleted_at = ?2",
            params![t.id.as_str(), t.deleted_at],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Forgets a trashed copy (its files are gone).
    pub fn forget_trashed(&self, t: &Trashed) -> Result<(), StoreError> {
        self.conn()?.exec(
            "DELETE FROM trash WHERE id = ?1 AND deleted_at = ?2",
            params![t.id.as_str(), t.deleted_at],
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

/// A chat channel bound to a tenant.
#[derive(Debug, Clone)]
pub struct Binding {
    pub tenant: TenantId,
    pub channel: String,
    pub key: String,
    pub token: String,
    pub secret: Option<String>,
    pub username: Option<String>,
    pub created_at: String,
}

fn binding_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Binding> {
    let id: String = r.get(0)?;
    Ok(Binding {
        tenant: TenantId::parse(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        channel: r.get(1)?,
        key: r.get(2)?,
        token: r.get(3)?,
        secret: r.get(4)?,
        username: r.get(5)?,
        created_at: r.get(6)?,
    })
}

const BINDING_COLS: &str = "tenant_id, channel, key, token, secret, username, created_at";

impl ControlDb {
    /// Binds (or re-binds) a channel to a tenant. `Conflict` if the key is bound elsewhere.
    pub fn put_binding(&self, b: &Binding) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let other: Option<String> = conn
            .row(
                "SELECT tenant_id FROM channel_bindings WHERE channel = ?1 AND key = ?2",
                params![b.channel, b.key],
                |r| r.get(0),
            )
            .optional()?;
        if other.is_some_and(|o| o != b.tenant.as_str()) {
            return Err(StoreError::Conflict(format!(
                "this {} account is already bound to another tenant",
                b.channel
            )));
        }
        let _writing = self.forget_bindings();
        conn.exec(
            "INSERT INTO channel_bindings (tenant_id, channel, key, token, secret, username, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (tenant_id, channel) DO UPDATE SET key = excluded.key,
               token = excluded.token, secret = excluded.secret, username = excluded.username,
               created_at = excluded.created_at",
            params![b.tenant.as_str(), b.channel, b.key, b.token, b.secret, b.username, b.created_at],
        )?;
        Ok(())
    }

    /// Empties the binding caches for a write, holding them empty until the guards drop.
    fn forget_bindings(&self) -> (Writing<'_>, Writing<'_>) {
        (self.bindings.forget(), self.bindings_by_key.forget())
    }

    /// The tenant's binding of `channel`.
    pub fn binding(&self, tenant: &TenantId, channel: &str) -> Result<Option<Binding>, StoreError> {
        if let Some(b) = self.cached_binding(tenant, channel) {
            return Ok(Some(b));
        }
        let conn = self.conn()?;
        let key = (tenant.clone(), channel.to_owned());
        self.bindings.read_through(key, || {
            Ok(conn
                .row(
                    &format!("SELECT {BINDING_COLS} FROM channel_bindings WHERE tenant_id = ?1 AND channel = ?2"),
                    params![tenant.as_str(), channel],
                    binding_row,
                )
                .optional()?)
        })
    }

    /// The tenant's binding of `channel` if it was read before (no IO: callable on the async
    /// runtime); `None` says nothing about the database.
    pub fn cached_binding(&self, tenant: &TenantId, channel: &str) -> Option<Binding> {
        self.bindings.get(&(tenant.clone(), channel.to_owned()))
    }

    /// The binding that owns a channel key (a WhatsApp phone_number_id).
    pub fn binding_by_key(&self, channel: &str, key: &str) -> Result<Option<Binding>, StoreError> {
        if let Some(b) = self.cached_binding_by_key(channel, key) {
            return Ok(Some(b));
        }
        let conn = self.conn()?;
        let cache_key = (channel.to_owned(), key.to_owned());
        self.bindings_by_key.read_through(cache_key, || {
            Ok(conn
                .row(
                    &format!(
                        "SELECT {BINDING_COLS} FROM channel_bindings WHERE channel = ?1 AND key = ?2"
                    ),
                    params![channel, key],
                    binding_row,
                )
                .optional()?)
        })
    }

    /// The binding that owns a channel key if it was read before (no IO).
    pub fn cached_binding_by_key(&self, channel: &str, key: &str) -> Option<Binding> {
        self.bindings_by_key
            .get(&(channel.to_owned(), key.to_owned()))
    }

    /// Removes a binding; whether there was one.
    pub fn delete_binding(&self, tenant: &TenantId, channel: &str) -> Result<bool, StoreError> {
        let conn = self.conn()?;
        let _writing = self.forget_bindings();
        Ok(conn.exec(
            "DELETE FROM channel_bindings WHERE tenant_id = ?1 AND channel = ?2",
            params![tenant.as_str(), channel],
        )? > 0)
    }

    /// Notes that a tenant has inbox or outbox rows in flight.
    pub fn mark_pending(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.conn()?.exec(
            "INSERT OR IGNORE INTO pending_work (tenant_id, since) VALUES (?1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
            [tenant.as_str()],
        )?;
        Ok(())
    }

    /// Clears the note once a tenant has nothing in flight.
    pub fn clear_pending(&self, tenant: &TenantId) -> Result<(), StoreError> {
        self.conn()?.exec(
            "DELETE FROM pending_work WHERE tenant_id = ?1",
            [tenant.as_str()],
        )?;
        Ok(())
    }

    /// Every tenant with work in flight.
    pub fn pending_tenants(&self) -> Result<Vec<TenantId>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached("SELECT tenant_id FROM pending_work ORDER BY since")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|r| r.ok().and_then(|s| TenantId::parse(&s).ok()))
            .collect();
        Ok(ids)
    }
}
