//! weft: a CPaaS messaging gateway. Follow one message through it:
//!
//! 1. [`api`] — `POST /v1/messages` authenticates the bearer key ([`api::auth`]), validates
//!    the request ([`domain::address`] for E.164 and friends, [`domain::segment`] for SMS
//!    parts) and hands it to the [`store`].
//! 2. [`store`] — the group-commit [`store::writer`] writes message + outbox row in one
//!    transaction shared with every concurrent request; the API answers 202 only after the
//!    commit.
//! 3. [`dispatch`] — the message is handed to a worker in memory; it picks a connection from
//!    the [`providers`] registry, waits for the connection's rate limit, records the attempt
//!    as in flight, calls the adapter (`providers/*` crates, one `Provider` trait) and records
//!    the result: queued with provider ids, retry later with back-off, or rejected.
//! 4. [`api`] webhooks — the provider's status callbacks are verified, stored raw and applied
//!    through the one monotonic state machine; inbound messages and calls are placed on a
//!    conversation by [`threading`].
//! 5. [`metrics`] — every `weft_*` metric, in one module; [`telemetry`] — JSON logs.

pub mod api;
pub mod app;
pub mod app_webhooks;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod domain;
pub mod events;
pub mod metrics;
pub mod policy;
pub mod providers;
pub mod store;
pub mod telemetry;
pub mod threading;
