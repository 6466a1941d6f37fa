//! Runs one action for one sender on one tenant file: idempotency, parse, checks, role,
//! name resolution, fixed SQL, journal and message log — all in one transaction.
//! Invariant: an action's effects, its journal entry and its log row commit together or not
//! at all; a clarify or a refusal writes only the log row.

mod apply;
mod order;
mod proposal;
mod step;
mod undo;

pub use apply::HELP;
pub use undo::UNDO_WINDOW_MS;

pub use crate::shop::ExecError;

use crate::action::{Action, Role};
use crate::mail::Provider;
use crate::mail::inbox::{self, ReplyTo};
use crate::parser::{self, Source};
use crate::shop::{self, ShopSettings, Staff};
use crate::tenant::session;
use crate::tenant::sqlite::{self, Cached};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;
use std::time::Instant;

/// What came in.
#[derive(Debug, Clone)]
pub enum Input {
    /// A chat message, for the parser.
    Text(String),
    /// A structured action (the mobile app, `/actions`).
    Action(serde_json::Value),
    /// A chat message already parsed: the text is logged, the action run — or, when the
    /// parser was not sure of a write (`tentative`), proposed for the sender's yes.
    Parsed {
        text: String,
        action: Box<Action>,
        source: Source,
        usage: Option<crate::llm::Usage>,
        tentative: bool,
    },
}

/// One message or action to run.
#[derive(Debug, Clone)]
pub struct Request {
    /// The idempotency key: the same key twice applies once.
    pub inbound_id: Option<String>,
    /// Where it came from, as logged.
    pub channel: Origin,
    /// Staff name or id; the shop's owner (`shop::staff::default_owner`) when absent.
    pub sender: Option<String>,
    /// The most trusted role the request may speak as: `Some(Manager)` from a manager's
    /// device (it must name a sender who is not an owner); `None`: any.
    pub ceiling: Option<Role>,
    pub input: Input,
    /// Time spent parsing before the request got here (the LLM's), if any.
    pub parse_us: Option<i64>,
    /// For chat channels: the inbox row to mark done and where to send the reply, in the
    /// same transaction as the action.
    pub reply_to: Option<ReplyTo>,
}

/// Where a request came from, as the message log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The HTTP API (`/messages`, `/actions`).
    Http,
    /// `tarn chat`.
    Cli,
    /// The demo tenant's seed.
    Demo,
    /// A chat app, through the inbox.
    Chat(Provider),
}

impl Origin {
    /// The logged name.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Http => "http",
            Origin::Cli => "cli",
            Origin::Demo => "demo",
            Origin::Chat(p) => p.as_str(),
        }
    }
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Applied,
    Rejected,
    Clarify,
    Duplicate,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Applied => "applied",
            Status::Rejected => "rejected",
            Status::Clarify => "clarify",
            Status::Duplicate => "duplicate",
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Outcome {
    /// The action as understood (names resolved), or null for a duplicate of an old entry.
    pub action: serde_json::Value,
    pub status: Status,
    pub reply: String,
    /// Why a duplicate's answer may not fit this request (its id was first used for another).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The write checkpoint: a syncing client sees this message's effects once it has
    /// pulled up to this position (absent when nothing synced changed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sync_seq: Option<i64>,
}

/// The answer to a dry run (`/parse`).
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct DryRun {
    /// The action the text means, names resolved.
    pub action: serde_json::Value,
    pub source: Source,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clarify: Option<String>,
}

/// Why an applied action did not apply.
pub(crate) enum Flow {
    /// A name needs the person to choose: the question.
    Clarify(String),
    /// The action cannot be taken: the reason.
    Reject(String),
    /// A value found while applying is out of bounds (a total the books cannot hold): a
    /// 400 for a structured action, a refusal in a chat. Nothing is written.
    Invalid(String),
    Db(rusqlite::Error),
}

impl From<rusqlite::Error> for Flow {
    fn from(e: rusqlite::Error) -> Self {
        Flow::Db(e)
    }
}

impl From<shop::report::ReportError> for Flow {
    fn from(e: shop::report::ReportError) -> Self {
        ExecError::from(e).into()
    }
}

impl From<ExecError> for Flow {
    fn from(e: ExecError) -> Self {
        match e {
            ExecError::Db(e) => Flow::Db(e),
            ExecError::Invalid(m) => Flow::Invalid(m),
            other => Flow::Reject(other.to_string()),
        }
    }
}

/// What `apply` works with.
pub(crate) struct Ctx {
    pub settings: ShopSettings,
    pub staff: Staff,
    pub now: String,
    pub now_ms: i64,
    pub journal_id: Option<i64>,
    pub undo: Vec<step::UndoOp>,
    /// What an applied write did, in the shop's words (for the undo reply).
    pub summary: Option<String>,
}

/// A person's refusal: who may take the action instead.
fn refusal(action: &Action) -> String {
    format!("Sorry, only {} can {}.", action.who_may(), action.what())
}

/// The staff member a request speaks as: the one it names, else the shop's owner. Under a
/// `ceiling` (a manager's device), the sender must be named and no more trusted than it.
pub fn sender_staff(
    conn: &Connection,
    sender: Option<&str>,
    ceiling: Option<Role>,
) -> Result<Staff, ExecError> {
    let rank = |r: Role| Role::ALL.iter().position(|x| *x == r);
    let staff = match (sender, ceiling) {
        (None, Some(c)) => Err(ExecError::Invalid(format!(
            "a {} device must name its sender: a staff member who is not an owner",
            c.as_str()
        ))),
        (None, None) => shop::staff::default_owner(conn)?.ok_or_else(|| {
            ExecError::UnknownSender("this shop has no active owner: name a sender".into())
        }),
        (Some(sender), _) => named_sender(conn, sender),
    }?;
    match ceiling {
        Some(c) if rank(staff.role) < rank(c) => Err(ExecError::Forbidden(format!(
            "a {} device cannot speak as {}, an {}",
            c.as_str(),
            staff.name,
            staff.role.as_str()
        ))),
        _ => Ok(staff),
    }
}

fn named_sender(conn: &Connection, sender: &str) -> Result<Staff, ExecError> {
    match shop::find_staff(conn, sender)? {
        Some(s) if s.active => Ok(s),
        Some(s) => Err(ExecError::UnknownSender(format!(
            "staff member {} is not active",
            s.name
        ))),
        None => Err(ExecError::UnknownSender(format!(
            "unknown sender {:?}: name a staff member (or their id)",
            sender.chars().take(64).collect::<String>()
        ))),
    }
}

fn decode<'a>(
    conn: &Connection,
    input: &'a Input,
) -> Result<(Action, Source, Option<&'a str>), ExecError> {
    match input {
        Input::Text(t) => {
            let (parsed, _) = parse_builtin(conn, t)?;
            Ok((parsed.action, Source::Grammar, Some(t.as_str())))
        }
        Input::Parsed {
            text,
            action,
            source,
            ..
        } => Ok((action.as_ref().clone(), *source, Some(text.as_str()))),
        Input::Action(v) => serde_json::from_value(v.clone())
            .map(|a| (a, Source::Api, None))
            .map_err(|e| ExecError::Invalid(format!("invalid action: {e}"))),
    }
}

fn to_json(action: &Action) -> serde_json::Value {
    serde_json::to_value(action).expect("actions serialize")
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Input {
    /// SHA-256 of what was asked, so a reused idempotency key can tell a different request.
    pub fn request_sha(&self) -> String {
        use sha2::{Digest, Sha256};
        let what = match self {
            Input::Text(t) | Input::Parsed { text: t, .. } => format!("text:{t}"),
            Input::Action(v) => format!("action:{v}"),
        };
        hex::encode(Sha256::digest(what.as_bytes()))
    }
}

/// The logged answer to an idempotency key already seen (`request_sha`: what it is asked
/// for now; a different request gets a note saying nothing was done for it).
pub fn seen(
    conn: &Connection,
    inbound_id: &str,
    request_sha: &str,
) -> Result<Option<Outcome>, ExecError> {
    let row = conn
        .row(
            "SELECT action, reply, request_sha, sync_seq FROM message_log WHERE inbound_id = ?1",
            [inbound_id],
            |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                ))
            },
        )
        .optional()?;
    Ok(row.map(|(action, reply, sha, sync_seq)| Outcome {
        sync_seq,
        action: action
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or(serde_json::Value::Null),
        status: Status::Duplicate,
        reply,
        note: sha.filter(|s| s != request_sha).map(|_| {
            "this id was already used for a different request: that request's answer is shown, and nothing was done for this one; send it with a new id".to_owned()
        }),
    }))
}

/// The built-in parser's answer for `text` on this tenant, with the tenant's names (loaded
/// only for free text: slash commands name things the executor resolves itself).
pub fn parse_builtin(
    conn: &Connection,
    text: &str,
) -> Result<(parser::Parsed, crate::parser::Lexicon), ExecError> {
    let lexicon = if text.trim_start().starts_with('/') {
        crate::parser::Lexicon::default()
    } else {
        shop::lexicon(conn)?
    };
    Ok((parser::parse(text, &lexicon), lexicon))
}

/// Runs a request in one transaction and logs it. Bad input (an undecodable or invalid
/// structured action, an unknown sender) is an error and writes nothing.
pub fn execute(conn: &mut Connection, req: &Request) -> Result<Outcome, ExecError> {
    let started = Instant::now();
    let sha = req.inbound_id.as_ref().map(|_| req.input.request_sha());
    let mut tx = sqlite::begin(conn)?;
    if let (Some(id), Some(sha)) = (&req.inbound_id, &sha)
        && let Some(dup) = seen(&tx, id, sha)?
    {
        return Ok(dup);
    }
    let settings = shop::load_settings(&tx)?;
    let staff = sender_staff(&tx, req.sender.as_deref(), req.ceiling)?;
    let (mut action, source, text) = decode(&tx, &req.input)?;
    let (usage, mut tentative) = match &req.input {
        Input::Parsed {
            usage, tentative, ..
        } => (*usage, *tentative),
        _ => (None, false),
    };
    // "yes": what this sender was just asked to confirm, now recorded as said.
    let mut nothing_to_confirm = false;
    if matches!(action, Action::Confirm {}) {
        match proposal::take(&tx, staff.id, now_ms())? {
            Some(proposed) => {
                action = proposed;
                tentative = false;
            }
            None => nothing_to_confirm = true,
        }
    }
    let mut proposed = false;
    let parse_us = req
        .parse_us
        .unwrap_or_else(|| started.elapsed().as_micros() as i64);

    let outcome = match action.check(settings.digits) {
        _ if nothing_to_confirm => (Status::Rejected, proposal::NOTHING_TO_CONFIRM.into(), None),
        Err(e) if source == Source::Api => return Err(ExecError::Invalid(e)),
        Err(e) => (Status::Rejected, format!("Sorry: {e}."), None),
        Ok(()) if !action.permits(staff.role) => (Status::Rejected, refusal(&action), None),
        Ok(()) => {
            let mut ctx = Ctx {
                settings,
                staff: staff.clone(),
                now: crate::clock::now(),
                now_ms: now_ms(),
                journal_id: None,
                undo: Vec::new(),
                summary: None,
            };
            if tentative && action.is_write() {
                // A proposal only reads: nothing to undo.
                match proposal::propose(&tx, &ctx, &mut action) {
                    Ok(question) => {
                        proposed = true;
                        (Status::Clarify, question, None)
                    }
                    Err(flow) => answer_of(flow, source)?,
                }
            } else {
                run(&mut tx, &mut ctx, &mut action, source)?
            }
        }
    };
    finish(
        tx,
        req,
        &started,
        Logged {
            staff: &staff,
            text,
            action: &action,
            source,
            outcome,
            parse_us,
            usage,
            proposed,
            sha: sha.as_deref(),
        },
    )
}

/// A status, the reply and the journal entry of an applied write.
type Answer = (Status, String, Option<i64>);

/// Applies a checked action inside `tx`, with its journal entry for a write. An action that
/// does not apply (a question, a refusal) leaves nothing behind: what it may have written is
/// rolled back. (No savepoint around it: one makes SQLite copy every page the action changes,
/// and most actions apply.)
fn run(
    tx: &mut sqlite::Tx<'_>,
    ctx: &mut Ctx,
    action: &mut Action,
    source: Source,
) -> Result<Answer, ExecError> {
    let journal_id = if action.is_read_only() || matches!(action, Action::Undo {}) {
        None
    } else {
        tx.exec(
            "INSERT INTO journal (staff_id, action, undo_ops, at_ms) VALUES (?1, ?2, '[]', ?3)",
            params![ctx.staff.id, action.name(), ctx.now_ms],
        )?;
        Some(tx.last_insert_rowid())
    };
    ctx.journal_id = journal_id;
    let answer = match apply::apply(tx, ctx, action) {
        Ok(reply) if matches!(action, Action::Unknown { .. }) => (Status::Clarify, reply, None),
        Ok(reply) => {
            if let Some(j) = journal_id {
                let ops = serde_json::to_string(&ctx.undo).expect("ops serialize");
                tx.exec(
                    "UPDATE journal SET undo_ops = ?2, summary = ?3 WHERE id = ?1",
                    params![j, ops, ctx.summary],
                )?;
            }
            return Ok((Status::Applied, reply, journal_id));
        }
        Err(flow) => answer_of(flow, source)?,
    };
    tx.restart()?;
    Ok(answer)
}

/// The answer to an action that did not apply (an invalid structured action is an error).
fn answer_of(flow: Flow, source: Source) -> Result<Answer, ExecError> {
    Ok(match flow {
        Flow::Clarify(q) => (Status::Clarify, q, None),
        Flow::Reject(r) => (Status::Rejected, r, None),
        Flow::Invalid(m) if source == Source::Api => return Err(ExecError::Invalid(m)),
        Flow::Invalid(m) => (Status::Rejected, format!("Sorry: {m}."), None),
        Flow::Db(e) => return Err(e.into()),
    })
}

/// What a request's log row says.
struct Logged<'a> {
    staff: &'a Staff,
    text: Option<&'a str>,
    action: &'a Action,
    source: Source,
    outcome: (Status, String, Option<i64>),
    parse_us: i64,
    usage: Option<crate::llm::Usage>,
    /// The action waits for the sender's yes.
    proposed: bool,
    /// What was asked, when it has an idempotency key (`Input::request_sha`).
    sha: Option<&'a str>,
}

/// Writes the request's log row (keeping a proposal on it), finishes its inbox row with the
/// reply, and commits.
fn finish(
    tx: sqlite::Tx<'_>,
    req: &Request,
    started: &Instant,
    log: Logged<'_>,
) -> Result<Outcome, ExecError> {
    let (status, reply, journal_id) = log.outcome;
    let action_json = to_json(log.action);
    let sync_seq = session::record(&tx, log.action.name())?;
    tx.exec(
        "INSERT INTO message_log (inbound_id, channel, sender, staff_id, text, action, source,
                                  status, reply, journal_id, received_at, parse_us, exec_us,
                                  llm_prompt_tokens, llm_completion_tokens, request_sha, sync_seq, llm_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            req.inbound_id,
            req.channel.as_str(),
            req.sender.as_deref().unwrap_or(&log.staff.name),
            log.staff.id,
            log.text,
            action_json.to_string(),
            log.source.as_str(),
            status.as_str(),
            reply,
            journal_id,
            crate::clock::now(),
            log.parse_us,
            started.elapsed().as_micros() as i64 - log.parse_us,
            log.usage.map(|u| u.prompt_tokens),
            log.usage.map(|u| u.completion_tokens),
            log.sha,
            sync_seq,
            log.usage.map(|u| u.micros),
        ],
    )?;
    if log.proposed {
        proposal::keep(&tx, tx.last_insert_rowid(), log.action, now_ms())?;
    }
    if let Some(to) = &req.reply_to {
        inbox::finish(&tx, to, &reply, None)?;
    }
    tx.commit()?;
    Ok(Outcome {
        action: action_json,
        status,
        reply,
        note: None,
        sync_seq,
    })
}

/// Parses and resolves without writing anything: the action as it would run.
pub fn dry_run(
    conn: &mut Connection,
    sender: Option<&str>,
    input: &Input,
) -> Result<DryRun, ExecError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let settings = shop::load_settings(&tx)?;
    sender_staff(&tx, sender, None)?;
    let (mut action, source, _) = decode(&tx, input)?;
    let mut clarify = None;
    if action.check(settings.digits).is_ok()
        && let Err(f) = step::resolve_names(&tx, &mut action)
    {
        match f {
            Flow::Clarify(q) => clarify = Some(q),
            Flow::Reject(_) | Flow::Invalid(_) => {}
            Flow::Db(e) => return Err(e.into()),
        }
    }
    // Resolution only reads; the transaction just gives it one snapshot.
    drop(tx);
    Ok(DryRun {
        action: to_json(&action),
        source,
        clarify,
    })
}
