//! A tenant's rows in the control db, carried from one machine to another when the tenant
//! moves: its registry row, channel bindings, device keys, schedules and their run ledger,
//! and the moves' own notes (`moves_out`, `arrivals`). Invariant: an import writes all of a
//! passport's rows or none, its column names come from this machine's schema (never from
//! the passport), and a schedule's slots keep their ledger so none runs twice.

use super::ControlDb;
use super::lineage::{Lineage, decode, encode};
use crate::tenant::{StoreError, TenantId};
use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{params, params_from_iter};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The tables a passport carries, in import order (a run's schedule comes first).
const TABLES: [&str; 5] = [
    "tenants",
    "channel_bindings",
    "devices",
    "schedules",
    "schedule_runs",
];

/// One tenant's control rows, table by table, each row by column name.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Passport {
    pub tables: std::collections::BTreeMap<String, Vec<Map<String, Value>>>,
}

impl Passport {
    /// The lineages of the tenant's file, oldest first.
    pub fn lineages(&self) -> Vec<Lineage> {
        self.tables
            .get("tenants")
            .and_then(|rows| rows.first())
            .and_then(|r| r.get("replica_lineages"))
            .and_then(Value::as_str)
            .map(decode)
            .unwrap_or_default()
    }

    /// Begins a new lineage for the file's next history (on the machine it goes to).
    pub fn begin_lineage(&mut self) -> Lineage {
        let new = Lineage::begin();
        let mut all = self.lineages();
        all.push(new.clone());
        if let Some(row) = self
            .tables
            .get_mut("tenants")
            .and_then(|rows| rows.first_mut())
        {
            row.insert("replica_lineages".into(), Value::from(encode(&all)));
        }
        new
    }
}

/// A move this machine started and has not finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveOut {
    pub tenant: TenantId,
    pub to: String,
    pub epoch: u64,
}

/// A tenant restored here that waits for the directory to name this machine.
#[derive(Debug, Clone)]
pub struct Arrival {
    pub tenant: TenantId,
    pub from: String,
    pub epoch: u64,
    pub staged_path: std::path::PathBuf,
    pub passport: Passport,
}

fn to_json(v: ValueRef<'_>) -> Result<Value, StoreError> {
    Ok(match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(_) => {
            return Err(StoreError::Invalid(
                "a control row holds a blob; passports carry text and numbers".into(),
            ));
        }
    })
}

fn to_sql(v: &Value) -> Result<Sql, StoreError> {
    Ok(match v {
        Value::Null => Sql::Null,
        Value::Bool(b) => Sql::Integer(i64::from(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Sql::Integer(i),
            None => Sql::Real(n.as_f64().unwrap_or_default()),
        },
        Value::String(s) => Sql::Text(s.clone()),
        _ => {
            return Err(StoreError::Invalid(
                "a passport value is not a scalar".into(),
            ));
        }
    })
}

/// The columns of `table` on this machine.
fn columns(conn: &rusqlite::Connection, table: &str) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))?;
    let names = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(names)
}

/// The key column of `table` that names the tenant.
fn tenant_column(table: &str) -> &'static str {
    if table == "tenants" {
        "id"
    } else {
        "tenant_id"
    }
}

impl ControlDb {
    /// The active tenant's rows. `NotFound` if it is not registered here.
    pub fn export_passport(&self, id: &TenantId) -> Result<Passport, StoreError> {
        let conn = self.conn()?;
        let mut passport = Passport::default();
        for table in TABLES {
            let sql = format!(
                "SELECT * FROM {table} WHERE {} = ?1 ORDER BY rowid",
                tenant_column(table)
            );
            let mut stmt = conn.prepare(&sql)?;
            let names: Vec<String> = stmt.column_names().iter().map(|s| s.to_string()).collect();
            let mut rows = stmt.query([id.as_str()])?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let mut m = Map::new();
                for (i, name) in names.iter().enumerate() {
                    m.insert(name.clone(), to_json(row.get_ref(i)?)?);
                }
                out.push(m);
            }
            passport.tables.insert(table.to_owned(), out);
        }
        let active = passport.tables["tenants"]
            .first()
            .is_some_and(|t| t.get("status") == Some(&Value::from("active")));
        if !active {
            return Err(StoreError::NotFound(id.clone()));
        }
        Ok(passport)
    }

    /// Registers the tenant from `passport` (its file replicating under the passport's
    /// last lineage: `Passport::begin_lineage`), and marks it as having work pending (its
    /// inbox and outbox are looked at). Fails, writing nothing, if any of its rows clash
    /// with this machine's.
    pub fn import_passport(&self, id: &TenantId, passport: &Passport) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _keys = self.forget_keys();
        let _bindings = self.forget_bindings();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Old schedule id -> new one here (ids are this machine's own).
        let mut schedule_ids = std::collections::HashMap::<i64, i64>::new();
        for table in TABLES {
            let here = columns(&tx, table)?;
            for row in passport.tables.get(table).into_iter().flatten() {
                let owner = row.get(tenant_column(table)).and_then(Value::as_str);
                if owner != Some(id.as_str()) {
                    return Err(StoreError::Invalid(format!(
                        "a {table} row of the passport is not tenant {id}'s"
                    )));
                }
                let mut names = Vec::new();
                let mut values = Vec::new();
                for col in &here {
                    let Some(v) = row.get(col) else { continue };
                    let value = match (table, col.as_str()) {
                        ("devices" | "schedules" | "schedule_runs", "id") => continue,
                        ("schedules", "lease_ms") => Sql::Null,
                        ("schedule_runs", "schedule_id") => {
                            let old = v.as_i64().unwrap_or_default();
                            match schedule_ids.get(&old) {
                                Some(new) => Sql::Integer(*new),
                                None => continue,
                            }
                        }
                        _ => to_sql(v)?,
                    };
                    names.push(col.as_str());
                    values.push(value);
                }
                if table == "schedule_runs" && !names.contains(&"schedule_id") {
                    continue;
                }
                let marks = vec!["?"; names.len()].join(", ");
                let sql = format!(
                    "INSERT INTO {table} ({}) VALUES ({marks})",
                    names.join(", ")
                );
                tx.execute(&sql, params_from_iter(values))
                    .map_err(|e| match e {
                        rusqlite::Error::SqliteFailure(f, _)
                            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                        {
                            StoreError::Conflict(format!(
                                "tenant {id}'s {table} rows clash with this machine's: {e}"
                            ))
                        }
                        e => e.into(),
                    })?;
                if table == "schedules" {
                    let old = row.get("id").and_then(Value::as_i64).unwrap_or_default();
                    schedule_ids.insert(old, tx.last_insert_rowid());
                }
            }
        }
        tx.execute(
            "INSERT OR IGNORE INTO pending_work (tenant_id, since) VALUES (?1, ?2)",
            params![id.as_str(), crate::clock::now()],
        )?;
        tx.execute("DELETE FROM arrivals WHERE tenant_id = ?1", [id.as_str()])?;
        tx.commit()?;
        Ok(())
    }

    /// Removes the tenant's rows here (it moved away); the trash list keeps its own.
    pub fn forget_tenant(&self, id: &TenantId) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let _keys = self.forget_keys();
        let _bindings = self.forget_bindings();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        for table in TABLES.iter().rev().chain(&["pending_work", "moves_out"]) {
            tx.execute(
                &format!("DELETE FROM {table} WHERE {} = ?1", tenant_column(table)),
                [id.as_str()],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Notes a move of the tenant to `to` (before the directory is switched).
    pub fn begin_move_out(&self, m: &MoveOut) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT OR REPLACE INTO moves_out (tenant_id, to_machine, epoch, started_at)
             VALUES (?1, ?2, ?3, ?4)",
            params![m.tenant.as_str(), m.to, m.epoch as i64, crate::clock::now()],
        )?;
        Ok(())
    }

    /// Forgets a move that did not happen.
    pub fn abandon_move_out(&self, id: &TenantId) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM moves_out WHERE tenant_id = ?1", [id.as_str()])?;
        Ok(())
    }

    /// The moves started here and not finished.
    pub fn moves_out(&self) -> Result<Vec<MoveOut>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare("SELECT tenant_id, to_machine, epoch FROM moves_out")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (t, to, epoch) = row?;
            if let Ok(tenant) = TenantId::parse(&t) {
                out.push(MoveOut {
                    tenant,
                    to,
                    epoch: epoch as u64,
                });
            }
        }
        Ok(out)
    }

    /// Keeps a restored tenant that waits for the directory (replacing an earlier one).
    pub fn put_arrival(&self, a: &Arrival) -> Result<(), StoreError> {
        let passport = serde_json::to_string(&a.passport).expect("JSON values serialize");
        self.conn()?.execute(
            "INSERT OR REPLACE INTO arrivals
             (tenant_id, from_machine, epoch, staged_path, passport, arrived_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                a.tenant.as_str(),
                a.from,
                a.epoch as i64,
                a.staged_path.to_string_lossy(),
                passport,
                crate::clock::now()
            ],
        )?;
        Ok(())
    }

    /// The arrival of a tenant, if one waits.
    pub fn arrival(&self, id: &TenantId) -> Result<Option<Arrival>, StoreError> {
        Ok(self.arrivals_where(Some(id))?.pop())
    }

    /// Every arrival that waits.
    pub fn arrivals(&self) -> Result<Vec<Arrival>, StoreError> {
        self.arrivals_where(None)
    }

    fn arrivals_where(&self, id: Option<&TenantId>) -> Result<Vec<Arrival>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT tenant_id, from_machine, epoch, staged_path, passport FROM arrivals
             WHERE ?1 IS NULL OR tenant_id = ?1",
        )?;
        let rows = stmt.query_map([id.map(TenantId::as_str)], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (t, from, epoch, path, passport) = row?;
            let (Ok(tenant), Ok(passport)) = (TenantId::parse(&t), serde_json::from_str(&passport))
            else {
                continue;
            };
            out.push(Arrival {
                tenant,
                from,
                epoch: epoch as u64,
                staged_path: path.into(),
                passport,
            });
        }
        Ok(out)
    }

    /// Forgets an arrival (it was dropped, or promoted by `import_passport`).
    pub fn drop_arrival(&self, id: &TenantId) -> Result<(), StoreError> {
        self.conn()?
            .execute("DELETE FROM arrivals WHERE tenant_id = ?1", [id.as_str()])?;
        Ok(())
    }

    /// How many active tenants are registered here.
    pub fn active_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn()?.query_row(
            "SELECT count(*) FROM tenants WHERE status = 'active'",
            [],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }
}
