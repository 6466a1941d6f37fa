//! The offline subcommands (`tarn tenant …`, `tarn migrate …`): they act on the data dir
//! directly through the same `Store` the server uses. Invariant: commands that write take
//! the data dir lock first, so they never run beside a server on the same files.

use crate::app::{lock_data_dir, open_store};
use crate::config::{StoreArgs, TenantCommand};
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
    let store = open_store(args, PoolMetrics::default())?;
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

/// Runs `tarn chat <tenant> --as <staff>` on stdin/stdout.
pub fn chat(args: &StoreArgs, tenant: &str, sender: &str) -> anyhow::Result<()> {
    use std::io::IsTerminal;
    let store = open_store(args, PoolMetrics::default())?;
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    crate::chat::repl(
        &store,
        &parse_id(tenant)?,
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
