//! The `tarn` binary: parses the command line and runs the server or a CLI command.

mod bench;

use clap::Parser;
use tarn::app::{App, shutdown_signal};
use tarn::config::{Cli, Command, LogFormat};
use tarn::{cli, telemetry};

// mimalloc, for Rust's allocations and (its `override` feature) for SQLite's and libc's: a
// message makes about 240 small allocations, and glibc's malloc and free were a tenth of the
// server's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    tarn::tenant::sqlite::configure_process();
    let args = Cli::parse();
    match args.command {
        Command::Serve(config) => {
            telemetry::init_tracing(config.log_format);
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(async {
                let app = App::build(*config).await?;
                app.run(shutdown_signal()).await?;
                anyhow::Ok(())
            })
        }
        Command::Tenant { store, command } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::tenant(&store, command)
        }
        Command::Trash {
            store,
            replica,
            command,
        } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::trash(&store, &replica, command)
        }
        Command::Token { store, command } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::token(&store, command)
        }
        Command::Staff { store, command } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::staff(&store, command)
        }
        Command::Chat {
            store,
            tenant,
            sender,
            llm,
            prompts_dir,
        } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::chat(&store, &tenant, sender.as_deref(), &llm, &prompts_dir)
        }
        Command::Backup {
            store,
            all,
            ids,
            to,
            workers,
        } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::backup(&store, all, &ids, &to, workers)
        }
        Command::Restore {
            store,
            from,
            from_replica,
            timestamp,
            replica,
            all,
            ids,
            force,
        } => {
            telemetry::init_tracing(LogFormat::Human);
            match from {
                Some(from) => cli::restore(&store, &replica, &from, all, &ids, force),
                None => {
                    debug_assert!(from_replica, "clap requires one of the two");
                    cli::restore_from_replica(&store, &replica, timestamp, all, &ids, force)
                }
            }
        }
        Command::Check {
            store,
            all,
            ids,
            full,
            workers,
        } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::check(&store, all, &ids, full, workers)
        }
        Command::Bench(args) => {
            telemetry::init_tracing(LogFormat::Human);
            bench::run(&args)
        }
        Command::Eval(args) => {
            telemetry::init_tracing(LogFormat::Human);
            cli::eval(&args)
        }
        Command::Placement {
            via,
            token,
            command,
        } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::placement::run(&via, &token, command)
        }
        Command::Migrate {
            store,
            all,
            id,
            workers,
        } => {
            telemetry::init_tracing(LogFormat::Human);
            cli::migrate(&store, all, id, workers)
        }
    }
}
