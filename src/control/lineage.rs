//! Replica lineages in the registry: the name under which each history of a tenant's file
//! (and of the registry itself) is replicated. Invariant: a lineage is never reused — a
//! restored file always gets a new one — and its name sorts by the moment it began.

use super::ControlDb;
use crate::tenant::{StoreError, TenantId};
use chrono::{DateTime, NaiveDateTime, Utc};
use rusqlite::{OptionalExtension, params};

const FORMAT: &str = "%Y%m%dT%H%M%S%3fZ";

/// One history of a file in the bucket, e.g. `20261127T013000123Z-5f3a`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lineage(String);

impl Lineage {
    /// A new lineage beginning now.
    pub fn begin() -> Lineage {
        Lineage(format!(
            "{}-{:04x}",
            Utc::now().format(FORMAT),
            rand::random::<u16>()
        ))
    }

    /// Checks a name read from the registry or the bucket.
    pub fn parse(s: &str) -> Option<Lineage> {
        let ok = s.len() == 24
            && s.is_char_boundary(19)
            && NaiveDateTime::parse_from_str(&s[..19], FORMAT).is_ok()
            && s.as_bytes()[19] == b'-'
            && s[20..].bytes().all(|b| b.is_ascii_hexdigit());
        ok.then(|| Lineage(s.to_owned()))
    }

    /// When it began.
    pub fn began(&self) -> DateTime<Utc> {
        NaiveDateTime::parse_from_str(&self.0[..19], FORMAT)
            .expect("checked when made")
            .and_utc()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Of `all` (oldest first), the one to restore for a moment (`None`: the latest): the
    /// last that began by then.
    pub fn for_moment(all: &[Lineage], at: Option<DateTime<Utc>>) -> Option<&Lineage> {
        all.iter().rev().find(|l| at.is_none_or(|t| l.began() <= t))
    }
}

impl std::fmt::Display for Lineage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes a registry column (a JSON array, oldest first), skipping what is not a lineage.
pub fn decode(json: &str) -> Vec<Lineage> {
    serde_json::from_str::<Vec<String>>(json)
        .unwrap_or_default()
        .iter()
        .filter_map(|s| Lineage::parse(s))
        .collect()
}

pub fn encode(all: &[Lineage]) -> String {
    serde_json::to_string(&all.iter().map(Lineage::as_str).collect::<Vec<_>>())
        .expect("strings serialize")
}

impl ControlDb {
    /// The active tenant's every lineage, oldest first (empty before its first replication).
    pub fn replica_lineages(&self, id: &TenantId) -> Result<Vec<Lineage>, StoreError> {
        let json: Option<String> = self
            .conn()?
            .query_row(
                "SELECT replica_lineages FROM tenants WHERE id = ?1 AND status = 'active'",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()?;
        match json {
            Some(j) => Ok(decode(&j)),
            None => Err(StoreError::NotFound(id.clone())),
        }
    }

    /// The lineage the active tenant's file replicates under now, begun if it has none.
    pub fn replica_lineage(&self, id: &TenantId) -> Result<Lineage, StoreError> {
        match self.replica_lineages(id)?.pop() {
            Some(l) => Ok(l),
            None => self.begin_replica_lineage(id),
        }
    }

    /// Begins a new lineage for the active tenant (its file starts another history).
    pub fn begin_replica_lineage(&self, id: &TenantId) -> Result<Lineage, StoreError> {
        let mut conn = self.conn()?;
        // Immediate: a read that turns into a write could not wait for another writer.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let json: String = tx
            .query_row(
                "SELECT replica_lineages FROM tenants WHERE id = ?1 AND status = 'active'",
                [id.as_str()],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(id.clone()))?;
        let mut all = decode(&json);
        let new = Lineage::begin();
        all.push(new.clone());
        tx.execute(
            "UPDATE tenants SET replica_lineages = ?2 WHERE id = ?1",
            params![id.as_str(), encode(&all)],
        )?;
        tx.commit()?;
        Ok(new)
    }

    /// The registry's own lineage, begun if it has none.
    pub fn own_lineage(&self) -> Result<Lineage, StoreError> {
        let conn = self.conn()?;
        let now: Option<String> = conn
            .query_row("SELECT lineage FROM replica_self", [], |r| r.get(0))
            .optional()?;
        if let Some(l) = now.as_deref().and_then(Lineage::parse) {
            return Ok(l);
        }
        drop(conn);
        self.begin_own_lineage()
    }

    /// Begins a new lineage for the registry (it was restored).
    pub fn begin_own_lineage(&self) -> Result<Lineage, StoreError> {
        let new = Lineage::begin();
        self.conn()?.execute(
            "INSERT INTO replica_self (id, lineage) VALUES (1, ?1)
             ON CONFLICT (id) DO UPDATE SET lineage = excluded.lineage",
            [new.as_str()],
        )?;
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_by_time_and_the_moment_picks_the_last_begun() {
        let a = Lineage::parse("20261120T100000000Z-00aa").unwrap();
        let b = Lineage::parse("20261125T100000000Z-00bb").unwrap();
        let now = Lineage::begin();
        assert!(Lineage::parse(now.as_str()).is_some(), "{now}");
        assert!(a < b && b < now);
        let all = [a.clone(), b.clone()];
        let at = |s: &str| Some(s.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(Lineage::for_moment(&all, None), Some(&b));
        assert_eq!(
            Lineage::for_moment(&all, at("2026-11-24T00:00:00Z")),
            Some(&a)
        );
        assert_eq!(Lineage::for_moment(&all, at("2026-11-01T00:00:00Z")), None);
        for bad in [
            "",
            "x",
            "20261120T100000000Z-00a",
            "20261120T100000000Z_00aa",
            "2026112XT100000000Z-00aa",
        ] {
            assert!(Lineage::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn a_tenant_gets_a_lineage_once_and_a_new_one_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let db = ControlDb::open(&crate::tenant::Layout::new(dir.path())).unwrap();
        let id = TenantId::parse("acme").unwrap();
        assert!(matches!(
            db.replica_lineage(&id),
            Err(StoreError::NotFound(_))
        ));
        db.insert(
            &super::super::TenantRecord {
                id: id.clone(),
                name: "Acme".into(),
                status: "active".into(),
                created_at: "2026-11-27T00:00:00.000Z".into(),
                currency: "USD".into(),
                timezone: "UTC".into(),
                deleted_at: None,
            },
            "hash",
        )
        .unwrap();
        let first = db.replica_lineage(&id).unwrap();
        assert_eq!(db.replica_lineage(&id).unwrap(), first);
        let second = db.begin_replica_lineage(&id).unwrap();
        assert_ne!(second, first);
        assert_eq!(
            db.replica_lineages(&id).unwrap(),
            vec![first, second.clone()]
        );
        assert_eq!(db.replica_lineage(&id).unwrap(), second);
        let own = db.own_lineage().unwrap();
        assert_eq!(db.own_lineage().unwrap(), own);
        assert_ne!(db.begin_own_lineage().unwrap(), own);
    }
}
