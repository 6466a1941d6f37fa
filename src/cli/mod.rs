//! The offline subcommands (`tarn tenant …`, `tarn migrate …`, `tarn backup|restore|check`):
//! they act on the data dir directly through the same `Store` the server uses. Invariant:
//! commands that write take the data dir lock first, so they never run beside a server on
//! the same files; backup and check only read, so they may.

pub mod placement;

use crate::app::{lock_data_dir, open_store};
use crate::config::{StaffCommand, StoreArgs, TenantCommand, TokenCommand, TrashCommand};
use crate::replica::ReplicaConfig;
use crate::store::NewTenant;
use crate::tenant::TenantId;
use crate::tenant::pool::PoolMetrics;
use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn parse_id(s: &str) -> anyhow::Result<TenantId> {
    Ok(TenantId::parse(s)?)
}

/// The store of a data dir that must exist already (commands that only read, or that work
/// on existing tenants): a mistyped `--data-dir` is an error, not a new empty data dir.
/// Says on stderr which data dir it uses.
fn open_existing_store(args: &StoreArgs) -> anyhow::Result<crate::store::Store> {
    let dir = &args.data_dir;
    let control = crate::tenant::Layout::new(dir).control_db();
    if !control.is_file() {
        bail!(
            "{} is not a tarn data dir (no _control.db there); pass --data-dir or set TARN_DATA_DIR",
            dir.display()
        );
    }
    let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
    eprintln!("data dir: {}", shown.display());
    Ok(open_store(args, PoolMetrics::default())?)
}

/// A tenant id that names a registered (active) tenant of `store`.
fn registered(store: &crate::store::Store, id: &str) -> anyhow::Result<TenantId> {
    let id = parse_id(id)?;
    match store.get_tenant(&id) {
        Ok(_) => Ok(id),
        Err(crate::tenant::StoreError::NotFound(_)) => {
            bail!("tenant {id} is not registered in this data dir")
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs `tarn tenant <command>`.
pub fn tenant(args: &StoreArgs, command: TenantCommand) -> anyhow::Result<()> {
    let writes = matches!(
        command,
        TenantCommand::Create { .. } | TenantCommand::Delete { .. } | TenantCommand::Restore { .. }
    );
    let _lock = if writes {
        Some(lock_data_dir(&args.data_dir)?)
    } else {
        None
    };
    let store = if writes {
        open_store(args, PoolMetrics::default())?
    } else {
        open_existing_store(args)?
    };
    match command {
        TenantCommand::Create {
            id,
            name,
            currency,
            timezone,
        } => {
            let created = store.create_tenant(NewTenant {
                id: parse_id(&id)?,
                name,
                currency,
                timezone,
            })?;
            print_json(&created)?;
            eprintln!("keep the api_key: it is not shown again (rotate it with the API if lost)");
        }
        TenantCommand::List { limit, after } => {
            let after = after.as_deref().map(parse_id).transpose()?;
            print_json(&store.list_tenants(after.as_ref(), limit)?)?;
        }
        TenantCommand::Show { id } => print_json(&store.get_tenant(&parse_id(&id)?)?)?,
        TenantCommand::Delete { id } => print_json(&store.delete_tenant(&parse_id(&id)?)?)?,
        TenantCommand::Restore { id } => print_json(&store.restore_tenant(&parse_id(&id)?)?)?,
    }
    Ok(())
}

/// Runs `tarn trash list|purge`.
pub fn trash(
    args: &StoreArgs,
    replica: &crate::config::ReplicaArgs,
    command: TrashCommand,
) -> anyhow::Result<()> {
    match command {
        TrashCommand::List { limit } => {
            let store = open_existing_store(args)?;
            print_json(&store.trash(None, limit)?)?;
        }
        TrashCommand::Purge {
            all,
            ids,
            deleted_at,
        } => {
            let _lock = lock_data_dir(&args.data_dir)?;
            let store = open_existing_store(args)?;
            let ids: Vec<TenantId> = if all {
                let mut ids: Vec<TenantId> = store
                    .trash(None, usize::MAX >> 1)?
                    .into_iter()
                    .map(|t| t.id)
                    .collect();
                ids.dedup();
                ids
            } else {
                ids.iter()
                    .map(|s| parse_id(s))
                    .collect::<anyhow::Result<_>>()?
            };
            let mut copies = Vec::new();
            for id in &ids {
                match store.trashed_copies(id, deleted_at.as_deref()) {
                    Ok(p) => copies.extend(p),
                    Err(crate::tenant::StoreError::NotFound(_)) => {
                        bail!("{id} has nothing in the trash")
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let runtime = tokio::runtime::Runtime::new()?;
            let purged = runtime.block_on(async {
                let bucket = ReplicaConfig::from_args(replica)
                    .map_err(anyhow::Error::msg)?
                    .map(|c| crate::replica::Bucket::new(&c.url, c.credentials.as_ref()))
                    .transpose()?;
                anyhow::Ok(crate::trash::purge(&store, bucket.as_ref(), copies).await?)
            })?;
            print_json(&purged)?;
            eprintln!(
                "purged {} trashed cop{}",
                purged.len(),
                if purged.len() == 1 { "y" } else { "ies" }
            );
        }
    }
    Ok(())
}

/// Runs `tarn token show|rotate` on the data dir's generated operator token.
pub fn token(args: &StoreArgs, command: TokenCommand) -> anyhow::Result<()> {
    if !args.data_dir.is_dir() {
        bail!(
            "{} does not exist: pass --data-dir or set TARN_DATA_DIR",
            args.data_dir.display()
        );
    }
    match command {
        TokenCommand::Show => println!("{}", crate::token::show(&args.data_dir)?),
        TokenCommand::Rotate => {
            println!("{}", crate::token::rotate(&args.data_dir)?);
            eprintln!(
                "the old token stopped working (a server started with TARN_ADMIN_TOKEN keeps that one)"
            );
        }
    }
    Ok(())
}

/// Runs `tarn staff <command>` on a tenant's file (beside a running server too: SQLite
/// serializes the writes).
pub fn staff(args: &StoreArgs, command: StaffCommand) -> anyhow::Result<()> {
    use crate::shop::{self, ExecError, staff};
    let store = open_existing_store(args)?;
    let tenant = match &command {
        StaffCommand::List { tenant }
        | StaffCommand::Chats { tenant, .. }
        | StaffCommand::Unlink { tenant, .. }
        | StaffCommand::JoinCode { tenant, .. } => registered(&store, tenant)?,
    };
    let handle = store.pool().acquire(&tenant)?;
    let conn = handle.conn()?;
    let member = |name: &str| -> anyhow::Result<i64> {
        match shop::find_staff(&conn, name)? {
            Some(s) => Ok(s.id),
            None => bail!("{tenant} has no staff member {name:?}"),
        }
    };
    match command {
        StaffCommand::List { .. } => print_json(&staff::staff_list(&conn)?)?,
        StaffCommand::Chats { staff, .. } => print_json(&staff::chats(&conn, member(&staff)?)?)?,
        StaffCommand::Unlink { staff, chat, .. } => {
            staff::unlink_chat(&conn, member(&staff)?, chat)?;
            println!("chat {chat} unlinked from {staff}");
        }
        StaffCommand::JoinCode { staff, .. } => {
            let settings = shop::load_settings(&conn)?;
            let code = staff::issue_join_code(&conn, &settings, member(&staff)?)
                .map_err(|e: ExecError| anyhow::anyhow!(e))?;
            print_json(&code)?;
        }
    }
    Ok(())
}

/// Runs `tarn chat <tenant> --as <staff>` on stdin/stdout.
pub fn chat(
    args: &StoreArgs,
    tenant: &str,
    sender: Option<&str>,
    llm: &crate::config::LlmArgs,
    prompts_dir: &std::path::Path,
) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let store = open_existing_store(args)?;
    let tenant = registered(&store, tenant)?;
    let llm = crate::llm::LlmConfig::from_args(llm)
        .map(|c| crate::llm::LlmClient::new(c, prompts_dir))
        .transpose()?;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    crate::chat::repl(
        &store,
        llm.as_ref(),
        &tenant,
        sender,
        stdin.lock(),
        std::io::stdout(),
        interactive,
    )
}

/// Runs `tarn migrate [--all | ID]`. Fails (after walking everything) if any tenant failed.
pub fn migrate(
    args: &StoreArgs,
    all: bool,
    id: Option<String>,
    workers: usize,
) -> anyhow::Result<()> {
    let _lock = lock_data_dir(&args.data_dir)?;
    let store = open_store(args, PoolMetrics::default())?;
    if !all {
        let id = parse_id(id.as_deref().context("name a tenant or pass --all")?)?;
        let o = store.migrate_tenant(&id)?;
        println!("{id}: schema {} -> {}", o.from, o.to);
        return Ok(());
    }
    let total = store.all_tenant_ids()?.len() as u64;
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} tenants ({per_sec}, eta {eta}) {msg}")
            .expect("valid template"),
    );
    let reports = store.migrate_all(workers, |r| {
        if let Err(e) = &r.result {
            bar.println(format!("{}: FAILED: {e}", r.id));
        }
        bar.inc(1);
    })?;
    bar.finish();
    let failed: Vec<_> = reports.iter().filter(|r| r.result.is_err()).collect();
    let upgraded = reports
        .iter()
        .filter(|r| r.result.as_ref().is_ok_and(|o| o.from != o.to))
        .count();
    println!(
        "migrated {} tenants: {upgraded} upgraded, {} already current, {} failed",
        reports.len(),
        reports.len() - upgraded - failed.len(),
        failed.len()
    );
    if !failed.is_empty() {
        for r in &failed {
            if let Err(e) = &r.result {
                println!("  {}: {e}", r.id);
            }
        }
        bail!("{} tenants failed to migrate", failed.len());
    }
    Ok(())
}

fn progress_bar(total: usize, what: &str) -> ProgressBar {
    ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template(&format!(
            "{{bar:40}} {{pos}}/{{len}} {what} ({{per_sec}}, eta {{eta}}) {{msg}}"
        ))
        .expect("valid template"),
    )
}

/// The tenants a command names (each must be registered), or every registered one with
/// `--all`.
fn targets(
    store: &crate::store::Store,
    all: bool,
    ids: &[String],
) -> anyhow::Result<Vec<TenantId>> {
    if all {
        return Ok(store.all_tenant_ids()?);
    }
    ids.iter().map(|s| registered(store, s)).collect()
}

/// Prints the failures of a walk and fails if there were any.
fn summarize(verb: &str, reports: &[crate::backup::FileReport]) -> anyhow::Result<()> {
    let failed: Vec<_> = reports.iter().filter(|r| !r.ok).collect();
    println!(
        "{verb} {} tenants: {} ok, {} failed",
        reports.len(),
        reports.len() - failed.len(),
        failed.len()
    );
    for r in &failed {
        println!("  {}: {}", r.id, r.detail);
    }
    if !failed.is_empty() {
        bail!("{} tenants failed", failed.len());
    }
    Ok(())
}

/// Runs `tarn backup [--all | ID…] --to DIR` (no lock: it only reads the live files).
pub fn backup(
    args: &StoreArgs,
    all: bool,
    ids: &[String],
    to: &std::path::Path,
    workers: usize,
) -> anyhow::Result<()> {
    use crate::tenant::Layout;
    let store = open_existing_store(args)?;
    let ids = targets(&store, all, ids)?;
    let (live, dest) = (Layout::new(&args.data_dir), Layout::new(to));
    if dest.root() == live.root() {
        bail!("the backup must go somewhere other than the data dir");
    }
    let control =
        crate::backup::backup_control(&live, &dest).context("backing up the control db")?;
    let bar = progress_bar(ids.len(), "tenants");
    let reports = crate::backup::for_each(
        &ids,
        workers,
        |id| crate::backup::backup_tenant(&live, &dest, id),
        |r| {
            if !r.ok {
                bar.println(format!("{}: FAILED: {}", r.id, r.detail));
            }
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    println!("control db: {control} bytes");
    summarize("backed up", &reports)
}

/// Runs `tarn check [--all | ID…] [--full]` (no lock).
pub fn check(
    args: &StoreArgs,
    all: bool,
    ids: &[String],
    full: bool,
    workers: usize,
) -> anyhow::Result<()> {
    let store = open_existing_store(args)?;
    let live = crate::tenant::Layout::new(&args.data_dir);
    if all {
        let problems = crate::backup::check_file(&live.control_db(), full)?;
        println!(
            "control db: {}",
            if problems.is_empty() {
                "ok".to_owned()
            } else {
                problems.join("; ")
            }
        );
        if !problems.is_empty() {
            bail!("the control db fails its check");
        }
    }
    let ids = targets(&store, all, ids)?;
    let bar = progress_bar(ids.len(), "tenants");
    let reports = crate::backup::for_each(
        &ids,
        workers,
        |id| crate::backup::check_tenant(&live, id, full),
        |r| {
            if !r.ok {
                bar.println(format!("{}: FAILED: {}", r.id, r.detail));
            }
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    summarize("checked", &reports)
}

/// Runs `tarn restore --from DIR [--all | ID…] [--force]` (takes the data dir lock). With
/// replication configured, each restored file is then uploaded into its new lineage.
pub fn restore(
    args: &StoreArgs,
    replica: &crate::config::ReplicaArgs,
    from: &std::path::Path,
    all: bool,
    ids: &[String],
    force: bool,
) -> anyhow::Result<()> {
    use crate::tenant::Layout;
    let _lock = lock_data_dir(&args.data_dir)?;
    let store = open_store(args, PoolMetrics::default())?;
    let src = Layout::new(from);
    let ids: Vec<TenantId> = if all {
        crate::backup::ids_in(&src)
    } else {
        ids.iter()
            .map(|s| parse_id(s))
            .collect::<anyhow::Result<_>>()?
    };
    if ids.is_empty() {
        bail!("no tenant files under {}", from.display());
    }
    let bucket = ReplicaConfig::from_args(replica)
        .map_err(anyhow::Error::msg)?
        .map(crate::replica::restore::FromBucket::new)
        .transpose()?;
    restore_ids(args, &store, &src, &ids, force, bucket.as_ref())
}

/// Puts `ids` back from the data-dir-shaped folder `src` (a backup, or files restored from
/// the bucket), reporting each; then, when there is a `bucket`, uploads what was restored
/// into its new lineage, and the registry that now names those lineages.
fn restore_ids(
    args: &StoreArgs,
    store: &crate::store::Store,
    src: &crate::tenant::Layout,
    ids: &[TenantId],
    force: bool,
    bucket: Option<&crate::replica::restore::FromBucket>,
) -> anyhow::Result<()> {
    let live = crate::tenant::Layout::new(&args.data_dir);
    let bar = progress_bar(ids.len(), "tenants");
    let reports = crate::backup::for_each(
        ids,
        1,
        |id| crate::backup::restore_tenant(src, &live, store.control(), id, force),
        |r| {
            if !r.ok {
                bar.println(format!("{}: FAILED: {}", r.id, r.detail));
            }
            bar.inc(1);
        },
    );
    bar.finish_and_clear();
    if let Some(bucket) = bucket {
        let lineage = store.control().own_lineage()?;
        let mut files = vec![(live.control_db(), bucket.url().control(&lineage))];
        for r in reports.iter().filter(|r| r.ok) {
            let id = parse_id(&r.id)?;
            let lineage = store.control().replica_lineage(&id)?;
            files.push((live.tenant_db(&id), bucket.url().tenant(&id, &lineage)));
        }
        bucket.upload(&files, &live.tmp_dir())?;
        eprintln!("{} files uploaded to the bucket", files.len());
    }
    summarize("restored", &reports)
}

/// Runs `tarn restore --from-replica`: copies the files out of the bucket into a staging
/// folder, each from the lineage that was current at the moment asked, then puts them in
/// place like a backup (checked, `--force` to replace a live file, a new sync epoch and a
/// new lineage, uploaded at once). With `--all`, the tenants are those of the bucket's
/// registry, which also becomes the live registry when the data dir has none (a lost disk).
pub fn restore_from_replica(
    args: &StoreArgs,
    replica: &crate::config::ReplicaArgs,
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
    all: bool,
    ids: &[String],
    force: bool,
) -> anyhow::Result<()> {
    use crate::tenant::Layout;
    let Some(config) = ReplicaConfig::from_args(replica).map_err(anyhow::Error::msg)? else {
        bail!("--from-replica needs TARN_REPLICA_URL (or --replica-url)");
    };
    let _lock = lock_data_dir(&args.data_dir)?;
    let bucket = crate::replica::restore::FromBucket::new(config)?;
    let live = Layout::new(&args.data_dir);
    let staging = Layout::new(live.tmp_dir().join("replica"));
    let _ = std::fs::remove_dir_all(staging.root());
    crate::tenant::create_private_dir(staging.root())?;
    let asked = Asked {
        timestamp,
        all,
        ids,
        force,
    };
    let result = restore_staged(args, &bucket, &live, &staging, &asked);
    let _ = std::fs::remove_dir_all(staging.root());
    result
}

/// Files fetched out of the bucket at once (each a `litestream restore`, mostly waiting on
/// the network).
const FETCHES: usize = 8;

/// What `tarn restore --from-replica` was asked for.
struct Asked<'a> {
    timestamp: Option<chrono::DateTime<chrono::Utc>>,
    all: bool,
    ids: &'a [String],
    force: bool,
}

fn restore_staged(
    args: &StoreArgs,
    bucket: &crate::replica::restore::FromBucket,
    live: &crate::tenant::Layout,
    staging: &crate::tenant::Layout,
    asked: &Asked<'_>,
) -> anyhow::Result<()> {
    let Asked {
        timestamp,
        all,
        ids,
        force,
    } = *asked;
    let no_registry = || anyhow::anyhow!("the bucket has no registry to restore");
    // The registry is needed to know every tenant, or when the data dir has none.
    let had_registry = live.control_db().exists();
    let staged = if all || !had_registry {
        bucket.registry(&staging.control_db(), timestamp)?
    } else {
        None
    };
    if !had_registry {
        let lineage = staged.as_ref().ok_or_else(no_registry)?;
        std::fs::copy(staging.control_db(), live.control_db())?;
        eprintln!("registry restored from lineage {lineage}");
    }
    let store = open_store(args, PoolMetrics::default())?;
    if !had_registry {
        store.control().begin_own_lineage()?;
    }
    // Each tenant's lineages as the registry of that moment knew them.
    let registry = match staged {
        Some(_) => crate::control::ControlDb::open(staging)?,
        None => store.control().clone(),
    };
    let ids: Vec<TenantId> = if all {
        if staged.is_none() {
            return Err(no_registry());
        }
        registry
            .list("active", None, usize::MAX >> 1)?
            .into_iter()
            .map(|t| t.id)
            .collect()
    } else {
        ids.iter()
            .map(|s| parse_id(s))
            .collect::<anyhow::Result<_>>()?
    };
    let bar = progress_bar(ids.len(), "fetched");
    let fetched = crate::backup::for_each(
        &ids,
        FETCHES,
        |id| {
            let lineages = match registry.replica_lineages(id) {
                Err(crate::tenant::StoreError::NotFound(_)) => Vec::new(),
                other => other?,
            };
            let out = staging.tenant_db(id);
            anyhow::Ok(bucket.tenant(id, &lineages, &out, timestamp)?)
        },
        |_| bar.inc(1),
    );
    bar.finish_and_clear();
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for (id, got) in ids.into_iter().zip(fetched) {
        match got? {
            true => found.push(id),
            false => missing.push(id.to_string()),
        }
    }
    let result = if found.is_empty() {
        Err(anyhow::anyhow!("the bucket holds none of these tenants"))
    } else {
        restore_ids(args, &store, staging, &found, force, Some(bucket))
    };
    if !missing.is_empty() {
        bail!("no replica in the bucket for: {}", missing.join(", "));
    }
    result
}

/// Runs `tarn eval FILE [--lexicon FILE] [--llm [--llm-all]] [--misses]`.
pub fn eval(args: &crate::config::EvalArgs) -> anyhow::Result<()> {
    let messages = crate::eval::load(&args.file)?;
    let lexicon_path = match &args.lexicon {
        Some(p) => p.clone(),
        None => args
            .file
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("parse_lexicon.json"),
    };
    let lex = crate::eval::lexicon(&lexicon_path)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let llm = if args.llm {
        let Some(config) = crate::llm::LlmConfig::from_args(&args.llm_args) else {
            bail!(
                "--llm needs TARN_LLM_API_KEY (any value for a local server) and TARN_LLM_BASE_URL"
            );
        };
        Some(crate::llm::LlmClient::new(config, &args.prompts_dir)?)
    } else {
        None
    };
    let scored = runtime.block_on(crate::eval::evaluate(
        &messages,
        &lex,
        llm.as_ref(),
        args.digits,
        args.llm_all,
    ));
    let title = format!(
        "{} ({})",
        args.file.display(),
        match (llm.is_some(), args.llm_all) {
            (true, true) => "the LLM asked about every message, then routed as the server would",
            (true, false) => "built-in parser, then the LLM when unsure",
            (false, _) => "built-in parser",
        }
    );
    print!("{}", crate::eval::report(&title, &scored, args.misses));
    Ok(())
}
