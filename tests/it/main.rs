//! Integration tests through the HTTP API, each run on SQLite and on PostgreSQL.
//!
//! Every test is an `async fn name(backend: Backend)` in a feature module; `backend_tests!`
//! turns it into two `#[tokio::test]`s, `<module>::sqlite::name` and
//! `<module>::postgres::name`. Every app gets its own database (a temp SQLite file, or a fresh
//! PostgreSQL database `weft_it_<ulid>` under `WEFT_TEST_PG_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`) and its own ports, so tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// `backend_tests!(a, b)` → `sqlite::a`, `sqlite::b`, `postgres::a`, `postgres::b`, each calling
/// `super::a(Backend::…)` on a two-worker runtime.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )+
        }
    };
}

mod helpers;

mod app_webhooks;
mod auth;
mod channels;
mod contract;
mod crash;
mod drain;
mod idempotency;
mod listing;
mod ops;
mod policy;
mod readiness;
mod replicas;
mod retry;
mod send;
mod threading;
mod validation;
mod webhooks;
