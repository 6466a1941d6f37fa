//! Staff: who may act for the shop, their roles, the chats they linked with a join code, and
//! the owner who speaks when a request names no sender.
//! Invariants: a tenant always keeps an active owner; a join code links one chat, once,
//! before it expires; deleting a staff member deactivates them (their history stays).

use super::{ExecError, ShopSettings};
use crate::action::Role;
use crate::action::resolve::key;
use crate::tenant::memo;
use crate::tenant::sqlite::Cached;
use rand::RngExt;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

/// A staff member.
#[derive(Debug, Clone, Serialize)]
pub struct Staff {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub active: bool,
}

fn staff_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Staff> {
    let role: String = r.get(2)?;
    Ok(Staff {
        id: r.get(0)?,
        name: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Staff),
        active: r.get(3)?,
    })
}

/// Every staff member with their name's key, by id: what requests are matched against,
/// read once per connection while the table is unchanged (`tenant::memo`). A shop has a
/// handful; every message looks one up.
struct Directory(Vec<(String, Staff)>);

fn directory(conn: &Connection) -> rusqlite::Result<Directory> {
    let mut stmt =
        conn.prepare_cached("SELECT id, name, role, active, name_key FROM staff ORDER BY id")?;
    let rows = stmt.query_map([], |r| Ok((r.get(4)?, staff_row(r)?)))?;
    rows.collect::<rusqlite::Result<_>>().map(Directory)
}

fn in_directory<R>(conn: &Connection, read: impl FnOnce(&Directory) -> R) -> rusqlite::Result<R> {
    memo::with(conn, directory, read)
}

/// The staff member a sender names: their id, or their exact name (any case).
pub fn find_staff(conn: &Connection, sender: &str) -> rusqlite::Result<Option<Staff>> {
    if let Ok(id) = sender.trim().parse::<i64>() {
        return staff_by_id(conn, id);
    }
    let wanted = key(sender);
    in_directory(conn, |d| {
        d.0.iter()
            .find(|(k, _)| *k == wanted)
            .map(|(_, s)| s.clone())
    })
}

/// The owner who speaks for a request that names no sender: the active owner with the
/// lowest id, whatever they are called now.
pub fn default_owner(conn: &Connection) -> rusqlite::Result<Option<Staff>> {
    in_directory(conn, |d| {
        d.0.iter()
            .map(|(_, s)| s)
            .find(|s| s.role == Role::Owner && s.active)
            .cloned()
    })
}

/// Staff member by id.
pub fn staff_by_id(conn: &Connection, id: i64) -> rusqlite::Result<Option<Staff>> {
    in_directory(conn, |d| {
        d.0.iter().map(|(_, s)| s).find(|s| s.id == id).cloned()
    })
}

/// A staff member as the API shows it.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct StaffView {
    pub id: i64,
    pub name: String,
    pub role: Role,
    pub active: bool,
    /// The code to send as `/join CODE`, while it is unused and unexpired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub join_code_expires_at: Option<String>,
    /// Chats linked to this staff member.
    pub chats: i64,
}

/// Body of `POST /staff` and `PATCH /staff/{id}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffInput {
    pub name: Option<String>,
    pub role: Option<Role>,
    pub active: Option<bool>,
}

fn staff_view(r: &rusqlite::Row<'_>) -> rusqlite::Result<StaffView> {
    let role: String = r.get(2)?;
    Ok(StaffView {
        id: r.get(0)?,
        name: r.get(1)?,
        role: Role::parse(&role).unwrap_or(Role::Staff),
        active: r.get(3)?,
        join_code: r.get(4)?,
        join_code_expires_at: r.get(5)?,
        chats: r.get(6)?,
    })
}

/// The view's columns; `?1` is now (an expired code is not shown).
const STAFF_VIEW: &str = "SELECT id, name, role, active,
        CASE WHEN j.expires_at > ?1 THEN j.code END,
        CASE WHEN j.expires_at > ?1 THEN j.expires_at END,
        (SELECT count(*) FROM identities i WHERE i.staff_id = staff.id)
     FROM staff LEFT JOIN join_codes j ON j.staff_id = staff.id";

/// Every staff member.
pub fn staff_list(conn: &Connection) -> rusqlite::Result<Vec<StaffView>> {
    let mut stmt = conn.prepare_cached(&format!("{STAFF_VIEW} ORDER BY id"))?;
    let rows = stmt.query_map([crate::clock::now()], staff_view)?;
    rows.collect()
}

/// One staff member.
pub fn staff_one(conn: &Connection, id: i64) -> Result<StaffView, ExecError> {
    conn.row(
        &format!("{STAFF_VIEW} WHERE id = ?2"),
        params![crate::clock::now(), id],
        staff_view,
    )
    .optional()?
    .ok_or_else(|| ExecError::NotFound(format!("staff member {id} not found")))
}

/// A fresh 8-character join code (no look-alike characters).
fn new_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rng();
    (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A join code just issued.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct JoinCode {
    pub staff_id: i64,
    pub join_code: String,
    pub expires_at: String,
}

/// Gives a staff member a new join code (the old one stops working), valid for the shop's
/// `join_code_ttl_hours`.
pub fn issue_join_code(
    conn: &Connection,
    settings: &ShopSettings,
    staff_id: i64,
) -> Result<JoinCode, ExecError> {
    let expires_at = crate::clock::stamp(chrono::Utc::now() + settings.join_code_ttl);
    let code = new_code();
    let n = conn.exec(
        "INSERT INTO join_codes (staff_id, code, expires_at)
         SELECT id, ?2, ?3 FROM staff WHERE id = ?1 AND active = 1
         ON CONFLICT (staff_id) DO UPDATE SET code = excluded.code, expires_at = excluded.expires_at",
        params![staff_id, code, expires_at],
    )?;
    if n == 0 {
        return Err(ExecError::NotFound(format!(
            "no active staff member {staff_id}"
        )));
    }
    Ok(JoinCode {
        staff_id,
        join_code: code,
        expires_at,
    })
}

/// What a `/join CODE` found.
pub enum Redeemed {
    /// The code linked the chat to this staff member; it is used up.
    Linked(Staff),
    /// The code was right but is past its time.
    Expired,
    /// No active staff member has this code.
    Unknown,
}

/// Links a chat identity to the staff member whose code this is, and uses the code up.
pub fn redeem_join_code(
    conn: &Connection,
    code: &str,
    channel: &str,
    external_id: &str,
    chat_id: &str,
) -> rusqlite::Result<Redeemed> {
    let code = code.trim().to_uppercase();
    if code.is_empty() {
        return Ok(Redeemed::Unknown);
    }
    let found: Option<(Staff, Option<String>)> = conn
        .row(
            "SELECT s.id, s.name, s.role, s.active, j.expires_at
             FROM join_codes j JOIN staff s ON s.id = j.staff_id
             WHERE j.code = ?1 AND s.active = 1",
            [&code],
            |r| Ok((staff_row(r)?, r.get(4)?)),
        )
        .optional()?;
    let Some((staff, expires_at)) = found else {
        return Ok(Redeemed::Unknown);
    };
    let now = crate::clock::now();
    if expires_at.is_none_or(|e| e <= now) {
        return Ok(Redeemed::Expired);
    }
    conn.exec(
        "INSERT INTO identities (staff_id, channel, external_id, chat_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (channel, external_id) DO UPDATE SET staff_id = excluded.staff_id,
           chat_id = excluded.chat_id, created_at = excluded.created_at",
        params![staff.id, channel, external_id, chat_id, now],
    )?;
    conn.exec("DELETE FROM join_codes WHERE staff_id = ?1", [staff.id])?;
    Ok(Redeemed::Linked(staff))
}

/// A chat linked to a staff member.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ChatLink {
    pub id: i64,
    pub channel: String,
    /// The person's id on the channel (Telegram user id, WhatsApp number).
    pub external_id: String,
    pub chat_id: Option<String>,
    pub linked_at: String,
}

/// The chats linked to a staff member, oldest first.
pub fn chats(conn: &Connection, staff_id: i64) -> Result<Vec<ChatLink>, ExecError> {
    staff_one(conn, staff_id)?;
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, external_id, chat_id, created_at FROM identities
         WHERE staff_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([staff_id], |r| {
        Ok(ChatLink {
            id: r.get(0)?,
            channel: r.get(1)?,
            external_id: r.get(2)?,
            chat_id: r.get(3)?,
            linked_at: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Unlinks one chat from a staff member (a lost phone): its messages are a stranger's again.
pub fn unlink_chat(conn: &Connection, staff_id: i64, chat: i64) -> Result<(), ExecError> {
    staff_one(conn, staff_id)?;
    let n = conn.exec(
        "DELETE FROM identities WHERE id = ?1 AND staff_id = ?2",
        params![chat, staff_id],
    )?;
    if n == 0 {
        return Err(ExecError::NotFound(format!(
            "staff member {staff_id} has no linked chat {chat}"
        )));
    }
    Ok(())
}

/// Adds a staff member with a fresh join code (for `/join CODE` from a chat app).
pub fn create_staff(
    conn: &Connection,
    settings: &ShopSettings,
    input: &StaffInput,
) -> Result<StaffView, ExecError> {
    let name = super::catalog::clean_name(
        "name",
        input
            .name
            .as_deref()
            .ok_or_else(|| ExecError::Invalid("name is required".into()))?,
    )?;
    let role = input.role.ok_or_else(|| {
        ExecError::Invalid("role is required: owner, manager, staff, driver or vendor".into())
    })?;
    let k = free_name_key(conn, &name, None)?;
    conn.exec(
        "INSERT INTO staff (name, name_key, role, active, created_at) VALUES (?1, ?2, ?3, 1, ?4)",
        params![name, k, role.as_str(), crate::clock::now()],
    )?;
    let id = conn.last_insert_rowid();
    issue_join_code(conn, settings, id)?;
    if input.active == Some(false) {
        conn.exec("UPDATE staff SET active = 0 WHERE id = ?1", [id])?;
    }
    staff_one(conn, id)
}

/// The lookup key of a staff name no one else (but `except`) has: a sender is named by it,
/// so it must be unique and not look like an id.
fn free_name_key(conn: &Connection, name: &str, except: Option<i64>) -> Result<String, ExecError> {
    let k = key(name);
    if k.parse::<i64>().is_ok() {
        return Err(ExecError::Invalid(
            "a staff name cannot be only a number".into(),
        ));
    }
    let taken: bool = conn.row(
        "SELECT EXISTS (SELECT 1 FROM staff WHERE name_key = ?1 AND id IS NOT ?2)",
        params![k, except],
        |r| r.get(0),
    )?;
    if taken {
        return Err(ExecError::Conflict(format!(
            "a staff member called {name} exists"
        )));
    }
    Ok(k)
}

fn active_owners_except(conn: &Connection, id: i64) -> rusqlite::Result<i64> {
    conn.row(
        "SELECT count(*) FROM staff WHERE role = 'owner' AND active = 1 AND id != ?1",
        [id],
        |r| r.get(0),
    )
}

/// Renames, changes the role of, or (de)activates a staff member; the last active owner
/// stays an active owner.
pub fn update_staff(
    conn: &Connection,
    id: i64,
    input: &StaffInput,
) -> Result<StaffView, ExecError> {
    let current = staff_one(conn, id)?;
    let demotes = current.role == Role::Owner
        && current.active
        && (input.role.is_some_and(|r| r != Role::Owner) || input.active == Some(false));
    if demotes && active_owners_except(conn, id)? == 0 {
        return Err(ExecError::Conflict(
            "the last active owner cannot be removed or demoted; make someone else an owner first"
                .into(),
        ));
    }
    if let Some(name) = &input.name {
        let name = super::catalog::clean_name("name", name)?;
        let k = free_name_key(conn, &name, Some(id))?;
        conn.exec(
            "UPDATE staff SET name = ?2, name_key = ?3 WHERE id = ?1",
            params![id, name, k],
        )?;
    }
    if let Some(role) = input.role {
        conn.exec(
            "UPDATE staff SET role = ?2 WHERE id = ?1",
            params![id, role.as_str()],
        )?;
    }
    if let Some(active) = input.active {
        conn.exec(
            "UPDATE staff SET active = ?2 WHERE id = ?1",
            params![id, active],
        )?;
    }
    staff_one(conn, id)
}
/// A chat of a staff member who should get a job's message.
#[derive(Debug, Clone)]
pub struct Recipient {
    pub staff_id: i64,
    pub role: Role,
    pub channel: String,
    pub chat_id: String,
}

/// The chats of active staff with one of `roles` (every channel they joined on), one per
/// chat even when two staff share one (a group).
pub fn recipients(conn: &Connection, roles: &[Role]) -> rusqlite::Result<Vec<Recipient>> {
    let mut stmt = conn.prepare_cached(
        "SELECT s.id, s.role, i.channel, i.chat_id FROM staff s
         JOIN identities i ON i.staff_id = s.id
         WHERE s.active = 1 AND i.chat_id IS NOT NULL ORDER BY s.id, i.id",
    )?;
    let rows = stmt.query_map([], |r| {
        let role: String = r.get(1)?;
        Ok(Recipient {
            staff_id: r.get(0)?,
            role: Role::parse(&role).unwrap_or(Role::Staff),
            channel: r.get(2)?,
            chat_id: r.get(3)?,
        })
    })?;
    let mut out: Vec<Recipient> = Vec::new();
    for r in rows {
        let r = r?;
        if roles.contains(&r.role)
            && !out
                .iter()
                .any(|o| o.channel == r.channel && o.chat_id == r.chat_id)
        {
            out.push(r);
        }
    }
    Ok(out)
}

/// The active staff member a chat identity belongs to, if any.
pub fn identify(conn: &Connection, channel: &str, sender: &str) -> rusqlite::Result<Option<i64>> {
    conn.row(
        "SELECT s.id FROM identities i JOIN staff s ON s.id = i.staff_id
         WHERE i.channel = ?1 AND i.external_id = ?2 AND s.active = 1",
        params![channel, sender],
        |r| r.get(0),
    )
    .optional()
}
