//! Wiring: config → store → registry → dispatcher → router; serving until SIGTERM/Ctrl-C,
//! then draining in-flight sends.

use crate::api::{self, AppState};
use crate::config::{Config, ConfigProblems};
use crate::dispatch::Dispatcher;
use crate::providers::Registry;
use crate::store::{Store, StoreError};
use dashmap::DashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Config(#[from] ConfigProblems),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("connection {0}")]
    Connection(#[from] weft_provider::ConfigError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
    #[error("server failed: {0}")]
    Serve(std::io::Error),
}

/// A built, listening weft.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    cfg: Config,
}

impl Application {
    pub async fn build(cfg: Config) -> Result<Application, StartupError> {
        let metrics = crate::metrics::install();
        // Off the runtime's threads; a request that validates a number meanwhile waits for it.
        tokio::task::spawn_blocking(crate::domain::address::warm_up);
        let store = Store::open(&cfg).await?;
        if cfg.migrate_on_start {
            store.migrate().await?;
        }
        let registry = Registry::new(cfg.connections()?, &cfg.routes, &cfg.breaker)?;
        let listener =
            TcpListener::bind(&cfg.listen)
                .await
                .map_err(|source| StartupError::Listen {
                    addr: cfg.listen.clone(),
                    source,
                })?;
        // With port 0 the public URL must name the port really bound.
        let mut cfg = cfg;
        if let Ok(addr) = listener.local_addr() {
            if cfg.public_url.is_empty() {
                cfg.public_url = format!("http://{addr}");
            }
        }
        let secret = if cfg.email.reply_token_secret.is_empty() {
            let fresh = crate::api::auth::new_key();
            store.kv_get_or_insert("reply_token_secret", &fresh).await?
        } else {
            cfg.email.reply_token_secret.clone()
        };
        let email = Arc::new(crate::threading::EmailThreading {
            domain: cfg.mail_domain(),
            inbound_domain: cfg.inbound_domain(),
            secret: secret.into_bytes(),
        });
        let consent = crate::policy::consent::ConsentPolicy::new(cfg.consent.clone());
        let dispatcher = Dispatcher::start(
            &cfg,
            store.clone(),
            registry.clone(),
            email.clone(),
            consent.clone(),
        );
        let draining = Arc::new(AtomicBool::new(false));
        tokio::spawn(sweep_conversations(
            store.clone(),
            cfg.conversations.clone(),
            cfg.retention.clone(),
            draining.clone(),
        ));
        let app_webhooks = crate::app_webhooks::start(store.clone(), &cfg.app_webhooks);
        let state = AppState::new(crate::api::SharedState {
            store,
            registry,
            dispatcher,
            metrics,
            public_base: cfg.public_base(),
            keys: Arc::new(DashMap::new()),
            key_ttl: std::time::Duration::from_secs(cfg.api.key_cache_seconds),
            draining,
            email,
            consent,
            tenant_limiter: std::num::NonZeroU32::new(cfg.api.tenant_rate_limit_per_second).map(
                |n| {
                    let burst =
                        std::num::NonZeroU32::new(cfg.api.tenant_rate_limit_burst).unwrap_or(n);
                    Arc::new(governor::RateLimiter::keyed(
                        governor::Quota::per_second(n).allow_burst(burst),
                    ))
                },
            ),
            app_webhooks,
        });
        Ok(Application {
            listener,
            state,
            cfg,
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    pub fn registry(&self) -> Registry {
        self.state.registry.clone()
    }

    pub fn store(&self) -> Store {
        self.state.store.clone()
    }

    /// Serves until `shutdown` resolves, then drains.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Application {
            listener,
            state,
            cfg,
        } = self;
        let router = api::router(state.clone(), cfg.max_body_bytes);
        let draining = state.draining.clone();
        tracing::info!(listen = %cfg.listen, public_url = %cfg.public_base(), "weft is serving.");
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                draining.store(true, Ordering::Relaxed);
                tracing::info!("Shutting down: no new requests; draining in-flight sends.");
            })
            .await;
        state
            .dispatcher
            .shutdown(Duration::from_secs(cfg.shutdown.drain_seconds))
            .await;
        state
            .app_webhooks
            .shutdown(Duration::from_secs(cfg.shutdown.drain_seconds))
            .await;
        state.store.close().await;
        served.map_err(StartupError::Serve)
    }
}

/// Moves idle conversations to inactive and closes stale ones, expires messages past
/// `valid_until` and prunes old bookkeeping rows (`[retention]`), until shutdown.
async fn sweep_conversations(
    store: Store,
    cfg: crate::config::ConversationsConfig,
    retention: crate::config::RetentionConfig,
    draining: Arc<AtomicBool>,
) {
    let every = Duration::from_secs(cfg.sweep_interval_seconds);
    let inactive =
        i64::try_from(cfg.inactive_after_seconds.saturating_mul(1000)).unwrap_or(i64::MAX / 4);
    let close = i64::try_from(cfg.close_after_seconds.saturating_mul(1000)).unwrap_or(i64::MAX / 4);
    loop {
        tokio::time::sleep(every).await;
        if draining.load(Ordering::Relaxed) {
            return;
        }
        match store.expire_messages().await {
            Ok(changes) => crate::events::status_changed(&changes, crate::domain::now_ms()),
            Err(e) => tracing::warn!(error = %e, "Expiry sweep failed."),
        }
        match store.sweep_conversations(inactive, close).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(changed = n, "Swept idle conversations."),
            Err(e) => tracing::warn!(error = %e, "Conversation sweep failed."),
        }
        let now = crate::domain::now_ms();
        let before = |days: u64| {
            (days > 0).then(|| {
                now - i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX / 4)
            })
        };
        match store
            .prune(
                before(retention.webhook_events_days),
                before(retention.app_webhook_deliveries_days),
            )
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "Pruned old webhook events and deliveries."),
            Err(e) => tracing::warn!(error = %e, "Retention sweep failed."),
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
