//! The command line: `weft serve | migrate | tenant create NAME | api-key create --tenant NAME`.

use crate::api::auth;
use crate::app::{shutdown_signal, Application, StartupError};
use crate::config::Config;
use crate::store::{AdminDone, Store};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "weft", version, about = "CPaaS messaging gateway")]
pub struct Cli {
    /// TOML config file layered over the built-in defaults.
    #[arg(long, global = true, env = "WEFT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Manage tenants.
    Tenant {
        #[command(subcommand)]
        action: TenantAction,
    },
    /// Manage API keys.
    ApiKey {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Print the effective configuration's problems (or "ok") and exit.
    CheckConfig,
}

#[derive(Debug, Subcommand)]
pub enum TenantAction {
    /// Create a tenant (idempotent by name); prints its id.
    Create { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyAction {
    /// Create an API key; the key is printed alone on the last line and never shown again.
    Create {
        #[arg(long)]
        tenant: String,
    },
    /// Revoke an API key, given the key itself (`weft_…`) or its id (`key_…`, printed at
    /// creation). Every replica stops accepting it within `[api] key_cache_seconds`.
    Revoke { key_or_id: String },
}

/// Runs a parsed command line.
pub async fn run(cli: Cli, cfg: Config) -> Result<(), StartupError> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(cfg).await?;
            ensure_default_tenant(&app.store()).await?;
            reload_routes_on_sighup(app.registry(), cli.config.clone());
            app.run_until(shutdown_signal()).await
        }
        Command::Migrate => {
            let store = Store::open(&cfg).await?;
            store.migrate().await?;
            store.close().await;
            println!("migrations applied");
            Ok(())
        }
        Command::Tenant {
            action: TenantAction::Create { name },
        } => {
            let store = open_migrated(&cfg).await?;
            if let AdminDone::Tenant { id, created } = store.create_tenant(&name).await? {
                println!(
                    "{} tenant {name}",
                    if created { "created" } else { "existing" }
                );
                println!("{id}");
            }
            store.close().await;
            Ok(())
        }
        Command::ApiKey {
            action: KeyAction::Create { tenant },
        } => {
            let store = open_migrated(&cfg).await?;
            let key = auth::new_key();
            let done = store.create_api_key(&tenant, &auth::hash_key(&key)).await?;
            store.close().await;
            match done {
                AdminDone::ApiKey { id } => {
                    println!("created API key {id} for tenant {tenant}; it is shown only once:");
                    println!("{key}");
                    Ok(())
                }
                _ => Err(StartupError::Config(crate::config::ConfigProblems {
                    problems: vec![format!(
                        "no tenant named {tenant:?}; run `weft tenant create {tenant}` first"
                    )],
                })),
            }
        }
        Command::ApiKey {
            action: KeyAction::Revoke { key_or_id },
        } => {
            let store = open_migrated(&cfg).await?;
            let target = if key_or_id.starts_with("weft_") {
                auth::hash_key(&key_or_id)
            } else {
                key_or_id.clone()
            };
            let n = store.revoke_api_key(&target).await?;
            store.close().await;
            if n == 0 {
                return Err(StartupError::Config(crate::config::ConfigProblems {
                    problems: vec!["no live API key matches; nothing revoked".into()],
                }));
            }
            println!(
                "revoked; replicas refuse it within {} s",
                cfg.api.key_cache_seconds
            );
            Ok(())
        }
        Command::CheckConfig => {
            println!("ok");
            Ok(())
        }
    }
}

/// SIGHUP re-reads the configuration and swaps the routing rules (connections and the rest
/// need a restart). A configuration with problems is refused and the old rules stay.
fn reload_routes_on_sighup(registry: crate::providers::Registry, path: Option<PathBuf>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match Config::load(path.as_deref()) {
                Ok(cfg) => {
                    registry.reload_routes(&cfg.routes);
                    tracing::info!(rules = cfg.routes.len(), "Reloaded routing rules.");
                }
                Err(e) => {
                    tracing::error!(error = %e, "Configuration reload refused; keeping the old routing rules.")
                }
            }
        }
    });
    #[cfg(not(unix))]
    let _ = (registry, path);
}

async fn open_migrated(cfg: &Config) -> Result<Store, StartupError> {
    let store = Store::open(cfg).await?;
    store.migrate().await?;
    Ok(store)
}

/// A fresh install has a `default` tenant, so `weft api-key create --tenant default` works
/// right away.
async fn ensure_default_tenant(store: &Store) -> Result<(), StartupError> {
    if let AdminDone::Tenant { created: true, .. } = store.create_tenant("default").await? {
        tracing::info!(
            "Created tenant `default`; get a key with `weft api-key create --tenant default`."
        );
    }
    Ok(())
}
