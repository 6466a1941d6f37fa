//! Device keys in `_control.db`: an owner's phone gets a named, revocable key of its own,
//! with a role, instead of the shop's master key.
//! Invariants: only a key's SHA-256 is stored; a revoked device never authenticates again;
//! a device belongs to exactly one tenant.

use super::ControlDb;
use crate::tenant::sqlite::Cached;
use crate::tenant::{StoreError, TenantId};
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// What a device may do on its shop.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum DeviceRole {
    /// Everything the shop's own key may do.
    Owner,
    /// The shop's data and actions, but not its keys, devices, staff, settings or channels.
    Manager,
}

impl DeviceRole {
    fn as_str(self) -> &'static str {
        match self {
            DeviceRole::Owner => "owner",
            DeviceRole::Manager => "manager",
        }
    }

    fn parse(s: &str) -> DeviceRole {
        if s == "owner" {
            DeviceRole::Owner
        } else {
            DeviceRole::Manager
        }
    }
}

/// A device as listed (never its key).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Device {
    pub id: i64,
    pub name: String,
    pub role: DeviceRole,
    pub created_at: String,
    /// When it was revoked (null while it works).
    pub revoked_at: Option<String>,
}

/// Who a device key belongs to.
#[derive(Debug, Clone)]
pub enum KeyOwner {
    /// A working device of this tenant.
    Device {
        tenant: TenantId,
        id: i64,
        role: DeviceRole,
    },
    /// A device that was revoked.
    Revoked,
}

fn now() -> String {
    crate::clock::now()
}

fn device(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    Ok(Device {
        id: r.get(0)?,
        name: r.get(1)?,
        role: DeviceRole::parse(&r.get::<_, String>(2)?),
        created_at: r.get(3)?,
        revoked_at: r.get(4)?,
    })
}

impl ControlDb {
    /// Registers a device of `tenant` with its key's hash.
    pub fn add_device(
        &self,
        tenant: &TenantId,
        name: &str,
        role: DeviceRole,
        key_hash: &str,
    ) -> Result<Device, StoreError> {
        let conn = self.conn()?;
        let created_at = now();
        conn.exec(
            "INSERT INTO devices (tenant_id, name, role, key_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![tenant.as_str(), name, role.as_str(), key_hash, created_at],
        )?;
        Ok(Device {
            id: conn.last_insert_rowid(),
            name: name.to_owned(),
            role,
            created_at,
            revoked_at: None,
        })
    }

    /// A tenant's devices, revoked ones included, oldest first.
    pub fn devices(&self, tenant: &TenantId) -> Result<Vec<Device>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, name, role, created_at, revoked_at FROM devices WHERE tenant_id = ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([tenant.as_str()], device)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes a device of `tenant`: its key stops working at once. False if the tenant has
    /// no such device; revoking twice keeps the first time.
    pub fn revoke_device(&self, tenant: &TenantId, id: i64) -> Result<bool, StoreError> {
        let conn = self.conn()?;
        let _writing = self.forget_keys();
        let n = conn.exec(
            "UPDATE devices SET revoked_at = coalesce(revoked_at, ?3) WHERE tenant_id = ?1 AND id = ?2",
            params![tenant.as_str(), id, now()],
        )?;
        Ok(n > 0)
    }
}

/// Whose device key hashes to `hash`, on `conn`.
pub(super) fn device_of_key(
    conn: &rusqlite::Connection,
    hash: &str,
) -> Result<Option<KeyOwner>, StoreError> {
    let row: Option<(String, i64, String, Option<String>)> = conn
        .row(
            "SELECT tenant_id, id, role, revoked_at FROM devices WHERE key_hash = ?1",
            [hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    Ok(row.map(
        |(tenant, id, role, revoked)| match (revoked, TenantId::parse(&tenant)) {
            (None, Ok(tenant)) => KeyOwner::Device {
                tenant,
                id,
                role: DeviceRole::parse(&role),
            },
            _ => KeyOwner::Revoked,
        },
    ))
}
