//! `weft`: parse the command line, load and validate config, start logging, run.

use clap::Parser;
use std::process::ExitCode;
use weft::{cli, config::Config, telemetry};

/// mimalloc: fewer instructions per allocation than glibc malloc on the request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // Before anything can open a database (SQLite takes this only before it initializes).
    let sqlite = weft::store::sqlite_alloc::configure();
    let args = cli::Cli::parse();
    let cfg = match Config::load(args.config.as_deref()) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&cfg.log);
    tracing::debug!(?sqlite, "SQLite allocator");
    match cli::run(args, cfg).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
