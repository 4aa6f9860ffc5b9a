//! Durable state. Store methods name intents (`accept`, `claim_due`, `ingest_webhook`), not
//! SQL; each engine keeps its idiom: PostgreSQL claims with `FOR UPDATE SKIP LOCKED` and runs
//! several writers; SQLite (WAL, `synchronous=FULL`) writes one transaction at a time.
//!
//! Every hot-path write (accept, attempts, receipts, inbound threading) goes through the
//! group-commit [`writer`]: concurrent requests share one transaction (and so one fsync),
//! and each caller hears back only after the commit. The few other writes (contact and
//! conversation changes from the API, sweeps, the app-webhook queue) take a connection from
//! `Store::write_conn`, which on SQLite holds the same write gate the writer holds per
//! batch, so the two never interleave.

pub(crate) mod accept;
mod accepts;
mod begins;
mod checkpoint;
mod claim;
mod contacts;
mod conversations;
pub mod db;
mod delivery;
mod ends;
mod intake;
mod parked;
mod pg;
mod pg_tls;
mod read;
mod receipt_keys;
mod receipts;
pub(crate) mod script;
#[cfg(feature = "sql-stats")]
mod sql_stats;
pub mod sqlite_alloc;
mod status;
mod tenants;
mod webhooks;
pub mod writer;

pub use pg_tls::PgTarget;

pub use accept::{AcceptJob, AcceptOutcome};
pub use claim::{ClaimJob, Claimed};
pub use contacts::{ContactOutcome, ContactView, IdentityView};
pub use conversations::{ConversationView, CreateOutcome, TimelineEntry};
pub use delivery::{AttemptBegin, AttemptEnd, AttemptResult};
pub use read::{ListFilter, OutboxStats};
pub use status::StatusChange;
pub use tenants::AdminDone;
pub use webhooks::{WebhookJob, WebhookOutcome};

use crate::config::{Config, DatabaseUrl};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use std::sync::Arc;
use std::time::Duration;
use writer::{Job, Writer};

static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// A pooled connection for writing, holding the SQLite write gate (see `Store::write_conn`).
pub struct WriteConn {
    conn: sqlx::pool::PoolConnection<sqlx::Any>,
    _gate: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteConn {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &sqlx::AnyConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.conn
    }
}

/// The file of a `sqlite://path?options` URL (the form `Config::database` gives).
fn sqlite_path(url: &str) -> String {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .unwrap_or(url);
    rest.split('?').next().unwrap_or(rest).to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database_url: {0}")]
    Url(#[from] pg_tls::PgUrlError),
    #[error("the store is shutting down")]
    Closed,
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A write job panicked (a bug): its transaction was rolled back and the writer goes on.
    #[error("a write job failed unexpectedly: {0}")]
    Panicked(String),
}

/// The durable store: a read pool and the group-commit writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    read: AnyPool,
    write: AnyPool,
    /// SQLite: held by the writer thread per batch and by every other write (one writer).
    gate: Arc<tokio::sync::Mutex<()>>,
    writer: Writer,
}

impl Store {
    /// Opens the database named by the config (it is created if it is a new SQLite file).
    pub async fn open(cfg: &Config) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let url = cfg.database().map_err(StoreError::Corrupt)?;
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let (backend, read, write, engine) = match &url {
            DatabaseUrl::Sqlite(u) => {
                let opts = || {
                    AnyPoolOptions::new().after_connect(|conn, _| {
                        Box::pin(async move {
                            conn.execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                                .await?;
                            Ok(())
                        })
                    })
                };
                let write = opts().max_connections(1).connect(u).await?;
                let read = opts()
                    .max_connections(cfg.store.pool_size.min(8))
                    .connect(u)
                    .await?;
                let engine = writer::Engine::Sqlite {
                    path: sqlite_path(u),
                    gate: gate.clone(),
                };
                (Backend::Sqlite, read, write, engine)
            }
            DatabaseUrl::Postgres(u) => {
                let writers = cfg.store.writers;
                // The writer tasks have connections of their own; this pool takes the few
                // writes outside the writer (API contact/conversation changes, sweeps).
                let write = AnyPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(u)
                    .await?;
                let read = AnyPoolOptions::new()
                    .max_connections(cfg.store.pool_size)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect(u)
                    .await?;
                let engine = writer::Engine::Postgres {
                    url: u.clone(),
                    writers,
                };
                (Backend::Postgres, read, write, engine)
            }
        };
        let writer = Writer::start(engine, cfg.store.batch_max)?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                read,
                write,
                gate,
                writer,
            }),
        })
    }

    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// A connection for a write outside the group-commit writer, with the SQLite write
    /// gate held while it is in use (SQLite has one writer at a time; PostgreSQL has none).
    pub(crate) async fn write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        self.gated(&self.inner.write).await
    }

    /// Like [`Store::write_conn`], but on PostgreSQL from the (larger) read pool, for
    /// frequent small writes that should not queue behind the writer's connections.
    pub(crate) async fn side_write_conn(&self) -> Result<WriteConn, sqlx::Error> {
        self.gated(&self.inner.read).await
    }

    async fn gated(&self, pg_pool: &AnyPool) -> Result<WriteConn, sqlx::Error> {
        Ok(match self.inner.backend {
            Backend::Sqlite => {
                let gate = self.inner.gate.clone().lock_owned().await;
                WriteConn {
                    conn: self.inner.write.acquire().await?,
                    _gate: Some(gate),
                }
            }
            Backend::Postgres => WriteConn {
                conn: pg_pool.acquire().await?,
                _gate: None,
            },
        })
    }

    pub(crate) fn reader(&self) -> &AnyPool {
        &self.inner.read
    }

    fn migrator(&self) -> &'static sqlx::migrate::Migrator {
        match self.inner.backend {
            Backend::Sqlite => &SQLITE_MIGRATOR,
            Backend::Postgres => &POSTGRES_MIGRATOR,
        }
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.migrator().run(&self.inner.write).await?;
        Ok(())
    }

    /// Readiness: the database answers and every migration is applied.
    pub async fn ready(&self) -> Result<(), String> {
        let expected = self
            .migrator()
            .iter()
            .filter(|m| m.migration_type.is_up_migration())
            .count();
        let row: Result<AnyRow, _> =
            sqlx::query("SELECT COUNT(*) AS n FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_one(&self.inner.read)
                .await;
        match row {
            Ok(row) => {
                let n: i64 = row.try_get("n").map_err(|e| e.to_string())?;
                if usize::try_from(n).unwrap_or(0) >= expected {
                    Ok(())
                } else {
                    Err(format!("{} of {expected} migrations applied", n))
                }
            }
            Err(e) => Err(format!("database unreachable or not migrated: {e}")),
        }
    }

    pub(crate) async fn submit<T>(
        &self,
        job: Job,
        pick: fn(writer::Done) -> Option<T>,
    ) -> Result<T, StoreError> {
        self.inner.writer.submit(job, pick).await
    }

    /// Waits until queued writes are committed and closes the pools.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.read.close().await;
        self.inner.write.close().await;
    }
}

/// Write intents; each goes through the group-commit writer.
impl Store {
    /// Stores a new message and its outbox row (or answers an idempotent replay).
    pub async fn accept(&self, job: AcceptJob) -> Result<AcceptOutcome, StoreError> {
        self.submit(Job::Accept(Box::new(job)), |d| match d {
            writer::Done::Accept(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Leases due outbox rows to this process.
    pub async fn claim_due(&self, job: ClaimJob) -> Result<Vec<Claimed>, StoreError> {
        self.submit(Job::Claim(job), |d| match d {
            writer::Done::Claim(c) => Some(c),
            _ => None,
        })
        .await
    }

    /// Records an attempt as in flight and returns its number; `None` if the lease was lost.
    pub async fn begin_attempt(&self, job: AttemptBegin) -> Result<Option<i64>, StoreError> {
        self.submit(Job::Begin(job), |d| match d {
            writer::Done::Begin(b) => Some(b),
            _ => None,
        })
        .await
    }

    /// Records an attempt's result.
    pub async fn end_attempt(&self, job: AttemptEnd) -> Result<Vec<StatusChange>, StoreError> {
        self.submit(Job::End(Box::new(job)), |d| match d {
            writer::Done::End(c) => Some(c),
            _ => None,
        })
        .await
    }

    /// Stores verified webhook events and applies them.
    pub async fn ingest_webhook(&self, job: WebhookJob) -> Result<WebhookOutcome, StoreError> {
        self.submit(Job::Webhook(Box::new(job)), |d| match d {
            writer::Done::Webhook(w) => Some(w),
            _ => None,
        })
        .await
    }

    /// Creates a tenant (idempotent by name); returns its id and whether it is new.
    pub async fn create_tenant(&self, name: &str) -> Result<AdminDone, StoreError> {
        self.submit(
            Job::Admin(tenants::AdminJob::CreateTenant {
                name: name.to_string(),
            }),
            |d| match d {
                writer::Done::Admin(a) => Some(a),
                _ => None,
            },
        )
        .await
    }

    /// Stores a new API key's hash for a tenant (by name or id).
    pub async fn create_api_key(
        &self,
        tenant: &str,
        key_hash: &str,
    ) -> Result<AdminDone, StoreError> {
        let job = tenants::AdminJob::CreateApiKey {
            tenant: tenant.to_string(),
            key_hash: key_hash.to_string(),
        };
        self.submit(Job::Admin(job), |d| match d {
            writer::Done::Admin(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Revokes a live API key by id (`key_…`) or SHA-256 hash; returns how many were revoked.
    pub async fn revoke_api_key(&self, id_or_hash: &str) -> Result<u64, StoreError> {
        let job = tenants::AdminJob::RevokeApiKey {
            id_or_hash: id_or_hash.to_string(),
        };
        self.submit(Job::Admin(job), |d| match d {
            writer::Done::Admin(AdminDone::Revoked(n)) => Some(n),
            _ => None,
        })
        .await
    }

    /// A persistent setting, set to `value` the first time.
    pub async fn kv_get_or_insert(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let mut conn = self.write_conn().await?;
        sqlx::query("INSERT INTO kv (k, v) VALUES ($1, $2) ON CONFLICT (k) DO NOTHING")
            .bind(key)
            .bind(value)
            .execute(&mut *conn)
            .await?;
        let row = sqlx::query("SELECT v FROM kv WHERE k = $1")
            .bind(key)
            .fetch_one(&mut *conn)
            .await?;
        Ok(row.try_get("v")?)
    }

    /// Gives back idle leases this process holds (shutdown).
    pub async fn release_leases(&self, node: &str) -> Result<u64, StoreError> {
        let mut conn = self.write_conn().await?;
        Ok(delivery::release(&mut db::Db::Any(&mut conn), node).await?)
    }
}

/// Reads an optional JSON column.
pub(crate) fn json_col<T: serde::de::DeserializeOwned>(row: &AnyRow, col: &str) -> Option<T> {
    row.try_get::<Option<String>, _>(col)
        .ok()
        .flatten()
        .and_then(|s| serde_json::from_str(&s).ok())
}

/// Applies every migration weft embeds to a SQLite connection (tests).
#[cfg(test)]
pub(crate) fn migrate_lite(conn: &rusqlite::Connection) {
    for m in SQLITE_MIGRATOR.iter() {
        conn.execute_batch(&m.sql)
            .unwrap_or_else(|e| panic!("migration {}: {e}", m.version));
    }
}

/// The SQLite schema after every migration weft embeds, in memory.
#[cfg(test)]
pub(crate) fn migrated_in_memory() -> rusqlite::Connection {
    let conn = rusqlite::Connection::open_in_memory().expect("open");
    migrate_lite(&conn);
    conn
}

#[cfg(test)]
mod tests {
    use super::migrated_in_memory as migrated;
    use super::sqlite_path;

    fn plan(conn: &rusqlite::Connection, sql: &str) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .expect("plan rows");
        rows.filter_map(Result::ok).collect::<Vec<_>>().join("; ")
    }

    /// The partial indexes (0009, 0010) still serve the lookups that compare with `=`, and
    /// the index changes of 0011 leave no scan behind.
    #[test]
    fn lookups_use_the_partial_indexes() {
        let conn = migrated();
        let prune = super::conversations::PRUNE_EVENTS
            .replace("$1", "'evt_1'")
            .replace("$2", "10");
        let seen = super::webhooks::REF_SQL_SEEN
            .replace("$1", "'c'")
            .replace("$2", "'SM1'")
            .replace("$3", "'k'")
            .replace("$4", "'m/k'");
        let claim = super::claim::lease_sql(super::Backend::Sqlite)
            .replace("$1", "'t'")
            .replace("$2", "2")
            .replace("$3", "0")
            .replace("$4", "1")
            .replace("$5", "1")
            .replace("$6", "5");
        for (sql, index) in [
            (
                "SELECT m.conversation_id FROM messages m WHERE m.tenant_id = 't' AND m.customer_identity = 'tel:+1' AND m.business_addr = 'tel:+2' AND m.direction = 'outbound' ORDER BY m.id DESC LIMIT 50",
                "messages_lease",
            ),
            (
                "SELECT id FROM messages WHERE email_message_id = 'x'",
                "messages_email_id",
            ),
            (
                "SELECT id FROM messages WHERE connection_id = 'c' AND provider_message_id = 'p'",
                "messages_inbound_pid",
            ),
            // 0011 dropped `outbox_due` and `webhook_events_applied_age`: the claim and the
            // retention sweep still find their rows through an index — the claim only the
            // rows already due, not every row scheduled for later.
            (
                claim.as_str(),
                "outbox_due_priority (priority=? AND available_at<?)",
            ),
            (
                prune.as_str(),
                "sqlite_autoindex_webhook_events_1 (id<?)",
            ),
            // 0013: a receipt's retry is looked for in its message's history.
            (seen.as_str(), "status_history_message (message_id=?)"),
            (seen.as_str(), "sqlite_autoindex_webhook_events_2"),
        ] {
            let p = plan(&conn, sql);
            assert!(p.contains(index), "{sql}\n→ {p}");
        }
    }

    /// The SQLite writer's per-message statements that replaced a `RETURNING` or an insert
    /// reading its own table: none may need a temporary table (`OpenEphemeral`), which
    /// cost ~20 k instructions each (a B-tree and page cache built and torn down).
    #[test]
    fn hot_sqlite_statements_need_no_temporary_table() {
        let conn = migrated();
        let sqls = [
            super::delivery::LITE_LEASE,
            super::delivery::LITE_TRIES,
            super::delivery::LITE_ATTEMPT,
            super::delivery::SENT_UPDATE,
            super::delivery::SENT_STATUS_UPDATE,
            super::status::CURRENT_SQL.as_str(),
            crate::threading::contacts::NEW_CONTACT_CONVERSATION,
        ];
        let ephemeral = |sql: &str| {
            let mut stmt = conn.prepare(&format!("EXPLAIN {sql}")).expect("explain");
            // Unbound parameters are NULL; `raw_query` does not insist on binding them.
            let mut rows = stmt.raw_query();
            let mut ops = Vec::new();
            while let Some(row) = rows.next().expect("opcode row") {
                ops.push(row.get::<_, String>(1).expect("opcode"));
            }
            assert!(!ops.is_empty(), "{sql}");
            ops.iter().any(|o| o == "OpenEphemeral")
        };
        for sql in sqls {
            assert!(!ephemeral(sql), "{sql}");
        }
        // The check itself: a `RETURNING` does need one.
        let returning = format!("{} RETURNING tries", super::delivery::LITE_LEASE);
        assert!(ephemeral(&returning));
    }

    /// 0011 copies `status_history` to drop AUTOINCREMENT: every row keeps its id and
    /// fields, and new rows still get ids above all earlier ones.
    #[test]
    fn migration_0011_keeps_the_status_history() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let (before, after): (Vec<_>, Vec<_>) =
            super::SQLITE_MIGRATOR.iter().partition(|m| m.version < 11);
        for m in before {
            conn.execute_batch(&m.sql).expect("migration before 0011");
        }
        conn.execute_batch(
            "INSERT INTO status_history (message_id, status, raw_status, applied, occurred_at) VALUES
               ('msg_a', 'queued', NULL, 1, 1), ('msg_b', 'sent', 'sent', 1, 2),
               ('msg_a', 'delivered', 'delivered', 0, 3);
             DELETE FROM status_history WHERE id = 2;",
        )
        .expect("history");
        let rows = |conn: &rusqlite::Connection| -> Vec<(i64, String, String, i64)> {
            let mut stmt = conn
                .prepare("SELECT id, message_id, status, applied FROM status_history ORDER BY id")
                .expect("select");
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .expect("rows")
                .filter_map(Result::ok)
                .collect()
        };
        let kept = rows(&conn);
        for m in after {
            conn.execute_batch(&m.sql)
                .expect("migration 0011 and later");
        }
        assert_eq!(rows(&conn), kept);
        conn.execute_batch(
            "INSERT INTO status_history (message_id, status, applied, occurred_at) VALUES ('msg_c', 'queued', 1, 4)",
        )
        .expect("insert");
        let ids: Vec<i64> = rows(&conn).iter().map(|r| r.0).collect();
        assert_eq!(ids, vec![1, 3, 4]);
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_master WHERE name = 'status_history'",
                [],
                |r| r.get(0),
            )
            .expect("schema");
        assert!(!sql.to_uppercase().contains("AUTOINCREMENT"), "{sql}");
        let p = plan(
            &conn,
            "SELECT status FROM status_history WHERE message_id = 'msg_a' ORDER BY id",
        );
        assert!(p.contains("status_history_message"), "{p}");
    }

    #[test]
    fn the_sqlite_writer_opens_the_file_sqlx_opens() {
        assert_eq!(sqlite_path("sqlite://weft.db?mode=rwc"), "weft.db");
        assert_eq!(sqlite_path("sqlite:///tmp/x.db?mode=rwc"), "/tmp/x.db");
        assert_eq!(sqlite_path("sqlite://data/w.db"), "data/w.db");
    }
}
