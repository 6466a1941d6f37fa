//! tarn: small businesses run their shop from the chat apps they already use.
//!
//! # Code map
//!
//! One process serves many tenants; each tenant is one SQLite file opened lazily by the
//! tenant pool. Four flows run through the modules:
//!
//! 1. **message in -> action -> reply**: a Telegram / WhatsApp webhook -> [`channel`]
//!    (verify and decode) -> [`mail`] stores it in the inbox -> a [`channel`] worker (in
//!    the webhook's own trip and transaction when the chat is free: the run nests as a
//!    savepoint, `tenant::sqlite::Tx`) -> [`message`]: [`parser`], then [`llm`]
//!    when unsure -> [`executor`]: [`action`] (checks, role, name resolution) -> fixed SQL of
//!    [`shop`] in one transaction with the journal, the message log, the inbox row's "done"
//!    and the reply queued in the outbox ([`mail::inbox::finish`]); `/messages` and
//!    `/actions` of one tenant that queue behind each other share that transaction's commit
//!    (each in a savepoint of its own: `tenant::pool::TenantPool::with_conn_grouped`). The commit itself posts
//!    the tenant ([`mail::Mail`], through the pool's commit listener) -> the [`channel`]
//!    sender sends and records it. `POST /v1/tenants/{t}/messages` and `tarn chat` enter at
//!    [`message`] (no inbox, no reply row).
//! 2. **schedule -> job -> message out**: [`scheduler`] ticker (one loop, not a timer per
//!    tenant) claims due rows of the schedule index in [`control`] (policy: [`schedule`]) ->
//!    job on the tenant's file ([`scheduler::job`], reading [`shop`]; the weekly chart drawn
//!    in memory; an optional [`llm`] narrative, text only) -> outbox rows
//!    ([`mail::outbox::enqueue`]) and the slot's marker in one transaction -> the commit
//!    posts the tenant -> [`channel`] sender (photo / image for charts). Housekeeping (idle
//!    sweep, WAL checkpoints, retention) runs on tokio-cron-scheduler.
//! 3. **admin API -> tenant store**: [`http`] (auth, JSON errors, the OpenAPI document built
//!    from the handlers' types) -> [`store`] (registry and trash in [`control`] kept in step
//!    with the files in [`tenant`]); shop routes -> [`shop`] and [`executor`].
//! 4. **several machines** ([`placement`]): the `http::placement::route` layer answers a
//!    request for a tenant another machine owns with `fly-replay` (the directory in the
//!    bucket, cached until a move's notice); a move fences the tenant in [`tenant`]'s pool,
//!    closes it (the [`replica`] final sync), hands its [`control`] rows over
//!    (`control::passport`), the target restores it from the bucket, the directory switch
//!    commits, [`store`] lets go of the copy, the other machines are told to forget the old
//!    owner; a dead machine's tenants are taken over from the bucket.
//!
//! Floors, bottom up, as `farm-studio look` draws them (a module imports only from floors
//! below it: no import runs up, no circles): `action`, `clock`, `config`, `system`,
//! `tenant` -> `control`, `parser` -> `schedule`, `mail`, `shop`, `sync`, `replica`, `llm`
//! -> `store`, `backup`, `executor`, `telemetry` -> `message`, `demo`, `token`, `trash`,
//! `placement` -> `channel`, `scheduler`, `chat`, `eval` -> `http` -> `app` -> `cli`; the binary adds
//! `main` and `bench`.
//!
//! | module | owns |
//! |---|---|
//! | [`tenant`] | `TenantId` validation, file layout, SQLite settings (and the process-wide ones: no memory statistics, mutexes that spin before they sleep), migrations, the LRU pool (with its `Watcher` of opens and closes and its commit listener; its own SQL threads, a lane per tenant for `with_conn` work where queued writes share one commit (`lane`: group commit), quiet tenants trimmed), change capture for sync (`session`: the synced tables, the preupdate, commit and WAL hooks, the per-tenant bell; `changeset`: SQLite's changeset format), `memo`: settings and staff kept per connection until they change |
//! | [`control`] | `_control.db`: tenant registry, the trash list, device keys and channel bindings (both cached in the handle: `cache::Fenced`), pending work, schedule index and run ledger, replica lineages (`lineage`) |
//! | [`schedule`] | scheduling policy, no IO: job kinds, cron math, default schedules, checking changes, typed run status and trigger |
//! | [`store`] | tenant lifecycle: create, delete to trash, restore, keys, migrate-all |
//! | [`trash`] | purging trashed copies for good: their replicas in the bucket, then their files (by hand or past retention) |
//! | [`sync`] | the owner's-app sync feed: snapshot, changes by `(epoch, seq)`, retention (capture itself is `tenant::session`) |
//! | [`action`] | `enum Action` (the contract), exact decimals, the books' bounds, roles, name matching — no IO |
//! | [`parser`] | text -> `Action` with a confidence (`text`: tokens and numbers, `phrase`: who did what, `guard`: a write with a word or number it cannot place is not sure) — no IO |
//! | [`llm`] | the OpenAI-compatible LLM client (structured output, falling back from `json_schema` to `json_object`, repair, breaker, its metrics), its settings from the flags |
//! | [`mail`] | each tenant file's inbox and outbox, and the "tenant has mail" signal (posted by the commit that queues a row; marked in `control` for restarts) |
//! | [`message`] | routing: built-in parser, LLM when unsure and configured, grounding (numbers and names) and the kind agreeing with the built-in parser's, executor |
//! | [`eval`] | `tarn eval`: labelled messages routed as the server would, scored (and the model's own answers) |
//! | [`executor`] | one message in one transaction: idempotency, checks, SQL (`apply`, `order`, built on the shared `step`s), journal, `undo`, `proposal` (an unsure write waits for a yes) |
//! | [`shop`] | tenant-db queries: settings, staff, identities and join codes, catalog, reports (and stored job reports), message log |
//! | [`channel`] | transport: Telegram and WhatsApp decode/verify and send behind one `Account`, the inbox `worker`s, the outbox `sender`, `pacing` |
//! | [`scheduler`] | the ticker, the job runners (`job`), weekly chart, housekeeping |
//! | [`chat`], [`demo`] | the terminal REPL and the demo tenant |
//! | [`http`] | axum router, auth extractors, the one `ApiError` |
//! | [`app`] | start-up (lock, token, fd limit), serve, graceful shutdown (the chat runtime drains) |
//! | [`cli`] | offline `tarn tenant …` / `tarn migrate …` / `tarn backup`, `restore`, `check` |
//! | [`backup`] | consistent snapshots (online backup API), restore, integrity checks |
//! | [`placement`] | several machines: `MachineId`, the directory in the bucket (owners with epochs changed by conditional PUTs, machine announcements, WhatsApp numbers, moved tenants' rows), `Route` (here, moving, elsewhere, stale), the owner cache and the move notices that clear it, moves (`handover`), takeovers of dead machines (`rescue`), recovery at start |
//! | [`replica`] | continuous replication: the supervised `litestream` child, its control socket (register on open, final sync and unregister on close, via the pool's `Watcher`), each file under its current lineage, health, tarn's own bucket reads and deletes (`bucket`), restore out of the bucket and upload of restored files (`restore`) |
//! | [`clock`], [`config`], [`token`], [`telemetry`], [`system`] | the one timestamp format, flags/env (a leaf), the operator token, logs/metrics, OS readings |
//!
//! `tarn bench` (the load harness, with the Bot API stand-in the tests share) is a module of
//! the binary only (`src/bench/`), not of this library.
//!
//! # Who writes each tenant table
//!
//! | tables | written by | read by |
//! |---|---|---|
//! | `settings`, `staff`, `identities`, `join_codes`, `products`, `product_aliases`, `customers` | [`shop`] (and [`executor`]'s steps for chat actions; the low-stock job flags products through `shop::catalog`) | [`shop`], [`executor`], [`channel`] worker (identities via `shop::staff::identify`) |
//! | `sales`, `sale_items`, `sales_hourly`, `stock_movements`, `payments`, `expenses`, `orders`, `order_items` | [`executor`] (`step`, `apply`, `order`, `undo`) | [`shop`] reports |
//! | `journal`, `message_log` | [`executor`] | [`executor`] (undo, idempotency), [`shop`] (message log) |
//! | `inbox`, `outbox` | [`mail`] only (the executor and the jobs call `mail::inbox::finish` / `mail::outbox::enqueue` inside their transactions) | [`mail`] |
//! | `job_runs`, `reports` | [`scheduler::job`] | [`scheduler::job`], [`shop::report`] |
//! | `schedules` (the app's mirror of the control db's index) | [`sync`] | [`sync`] |
//! | `sync_log`, `sync_state` | [`tenant::session`] (capture), [`sync`] (retention) | [`sync`] |
//!
//! # Rules between modules
//!
//! - `tenant` imports nothing above it; `control` only from `tenant`. Data flows one way:
//!   `http`/`cli` -> `message`/`executor`/`store` -> `shop`, `mail`, `control` -> `tenant`.
//! - `action`, `parser` and `schedule` do no IO (the tenant's names reach the parser as a
//!   `Lexicon`); `executor`, `shop` and `mail` run only their own fixed, parameterized SQL —
//!   no SQL text ever comes from a parser, the LLM or a user.
//! - Nobody calls the chat runtime to say there is mail: queuing an outbox row is the signal.
//! - Every rusqlite call runs on the blocking pool (`tenant::pool::blocking`), never on the
//!   async runtime.
//! - A tenant id becomes a path only as a validated `TenantId`, through `tenant::Layout`; every
//!   file and folder under the data dir is created private (0600 / 0700).
//! - Every figure written to the books is within `action::MAX_MONEY` / `MAX_STOCK`, checked
//!   before the write; beyond is a refusal, never a wrapped or rounded number.
//! - `replica` imports only `tenant`, `control` and `config` (the pool tells it of opens and
//!   closes through `tenant::pool::Watcher`; the registry tells it each file's lineage);
//!   `app` wires them, `cli` restores through it, `trash` removes a purged copy's replicas.
//! - A job's effects commit with its `job_runs` marker, so no slot sends twice.

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
pub mod placement;
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
