//! tarn: small businesses run their shop from the chat apps they already use.
//!
//! # Code map
//!
//! One process serves many tenants; each tenant is one SQLite file opened lazily by the
//! tenant pool. Three flows run through the modules:
//!
//! 1. **message in -> action -> reply**: a Telegram / WhatsApp webhook -> [`channel`]
//!    (verify, store in the inbox, per-chat worker, identity) — or `POST /v1/tenants/{t}/messages`
//!    or `tarn chat` -> [`message`]: [`parser`], then [`llm`] when unsure -> [`executor`]:
//!    [`action`] (checks, role, name resolution) -> fixed SQL of [`shop`] in one transaction
//!    with the journal, the message log and (for channels) the inbox "done" and the outbox
//!    reply -> [`channel`] sender.
//! 2. **schedule -> job -> message out**: [`scheduler`] ticker (one loop, not a timer per
//!    tenant) claims due rows of the schedule index in [`control`] -> job on the tenant's
//!    file ([`scheduler::job`], reading [`shop`]; the weekly chart drawn in memory; an
//!    optional [`llm`] narrative, text only) -> outbox rows and the slot's marker in one
//!    transaction -> [`channel`] sender (photo / image for charts). Housekeeping (idle
//!    sweep, WAL checkpoints, retention) runs on tokio-cron-scheduler.
//! 3. **admin API -> tenant store**: [`http`] (auth, JSON errors, the OpenAPI document built
//!    from the handlers' types) -> [`store`] (registry and trash in [`control`] kept in step
//!    with the files in [`tenant`]); shop routes -> [`shop`] and [`executor`].
//!
//! | module | owns |
//! |---|---|
//! | [`tenant`] | `TenantId` validation, file layout, SQLite settings, migrations, the LRU pool, change capture for sync (`session`: the synced tables, the preupdate and commit hooks, the per-tenant bell; `changeset`: SQLite's changeset format) |
//! | [`control`] | `_control.db`: tenant registry, the trash list, device keys, channel bindings, pending work, schedule index and run ledger, replica lineages (`lineage`) |
//! | [`store`] | tenant lifecycle: create, delete to trash, restore, purge, keys, migrate-all |
//! | [`trash`] | purging trashed copies for good: their replicas in the bucket, then their files (by hand or past retention) |
//! | [`sync`] | the owner's-app sync feed: snapshot, changes by `(epoch, seq)`, retention (capture itself is `tenant::session`) |
//! | [`action`] | `enum Action` (the contract), exact decimals, the books' bounds, roles, name matching — no IO |
//! | [`parser`] | text -> `Action` with a confidence (`text`: tokens and numbers, `phrase`: who did what, `guard`: a write with a word or number it cannot place is not sure) — no IO |
//! | [`llm`] | the OpenAI-compatible LLM client (structured output, repair, breaker) |
//! | [`message`] | routing: built-in parser, LLM when unsure and configured, grounding (numbers and names), executor |
//! | [`eval`] | `tarn eval`: labelled messages routed as the server would, scored |
//! | [`executor`] | one message in one transaction: idempotency, checks, SQL (`apply`, `order`, built on the shared `step`s), journal, `undo`, `proposal` (an unsure write waits for a yes) |
//! | [`shop`] | tenant-db queries: settings, staff and join codes, catalog, reports, message log |
//! | [`channel`] | Telegram and WhatsApp: webhooks, inbox, workers, identities, outbox sender |
//! | [`scheduler`] | cron math (no IO), the ticker, job kinds, weekly chart, housekeeping |
//! | [`chat`], [`demo`] | the terminal REPL and the demo tenant |
//! | [`http`] | axum router, auth extractors, the one `ApiError` |
//! | [`app`] | start-up (lock, token, fd limit), serve, graceful shutdown |
//! | [`cli`] | offline `tarn tenant …` / `tarn migrate …` / `tarn backup`, `restore`, `check` |
//! | [`backup`] | consistent snapshots (online backup API), restore, integrity checks |
//! | [`replica`] | continuous replication: the supervised `litestream` child, its control socket (register on open, final sync and unregister on close, via the pool's `Watcher`), each file under its current lineage, health, tarn's own bucket reads and deletes (`bucket`), restore out of the bucket and upload of restored files (`restore`) |
//! | [`bench`] | `tarn bench`: the load harness against a `tarn serve` child (HTTP or Telegram webhooks with a Bot API stand-in), raw baseline |
//! | [`config`], [`token`], [`telemetry`], [`system`] | flags/env, the operator token, logs/metrics, OS readings |
//!
//! # Rules between modules
//!
//! - `tenant` imports nothing from `http`, `channel`, `parser`, `shop` or `store`; `control`
//!   only from `tenant`. Data flows one way: `http`/`cli` -> `message`/`executor`/`store`
//!   -> `shop`, `control` -> `tenant`.
//! - `action` and `parser` do no IO (the tenant's names reach the parser as a `Lexicon`);
//!   `executor` and `shop` run only their own fixed, parameterized SQL — no SQL text ever
//!   comes from a parser, the LLM or a user.
//! - Every rusqlite call runs on the blocking pool (`tenant::pool::blocking`), never on the
//!   async runtime.
//! - A tenant id becomes a path only as a validated `TenantId`, through `tenant::Layout`; every
//!   file and folder under the data dir is created private (0600 / 0700).
//! - Every figure written to the books is within `action::MAX_MONEY` / `MAX_STOCK`, checked
//!   before the write; beyond is a refusal, never a wrapped or rounded number.
//! - `replica` imports only `tenant` and `control` (the pool tells it of opens and closes
//!   through `tenant::pool::Watcher`; the registry tells it each file's lineage); `app`
//!   wires them, `cli` restores through it, `trash` removes a purged copy's replicas.
//! - `action`, `parser`, `scheduler::cron` and `scheduler::chart` do no IO; a job's effects
//!   commit with its `job_runs` marker, so no slot sends twice.

pub mod action;
pub mod app;
pub mod backup;
pub mod channel;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod control;
pub mod demo;
pub mod eval;
pub mod executor;
pub mod http;
pub mod llm;
pub mod mail;
pub mod message;
pub mod parser;
pub mod replica;
pub mod schedule;
pub mod scheduler;
pub mod shop;
pub mod store;
pub mod sync;
pub mod system;
pub mod telemetry;
pub mod tenant;
pub mod token;
pub mod trash;
