//! A PostgreSQL writer's own connection (tokio-postgres).
//!
//! sqlx sends a statement and waits for its answer before sending the next; a message
//! costs ~28 statements on its way from accept to the second receipt, each a round trip to
//! the server. tokio-postgres pipelines the queries it is given at once, so the statements
//! of a [`Script`](super::script::Script) go out together and cost one round trip. Statements
//! are prepared with the parameter types sqlx would send (`TEXT`, `INT8`) and kept per
//! connection; rows come back as sqlx [`AnyRow`]s, so jobs read them as they read any other.

use super::db::{driver_error, Columns, Violation};
use super::script::Val;
use super::PgTarget;
use sqlx::any::AnyRow;
use sqlx_core::any::{AnyTypeInfoKind, AnyValueKind};
use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Statement};

/// One connection and its prepared statements.
pub struct PgConn {
    client: Client,
    /// SQL → its statements, one per list of parameter types it was bound with.
    prepared: HashMap<String, Vec<Statement>>,
}

impl PgConn {
    /// Connects; the connection's I/O runs in a task of its own until it closes.
    pub async fn connect(target: &PgTarget) -> Result<PgConn, sqlx::Error> {
        let mut cfg = target.config.clone();
        cfg.connect_timeout(Duration::from_secs(10));
        // Every statement a writer runs looks rows up by key. A prepared statement's
        // generic plan, chosen while a table is small (a new database, before autovacuum's
        // first ANALYZE), hash-joins whole-table (or whole-index) scans and keeps doing so
        // as the table grows, for as long as the connection lives: in a 15 s load run from
        // an empty database the grouped receipts read 18 million rows that way, and
        // PostgreSQL spent a quarter of its time on it. Without sequential scans, hash and
        // merge joins the planner takes the indexes, row by row.
        const KEYED: &str = "-c enable_seqscan=off -c enable_hashjoin=off -c enable_mergejoin=off";
        let options = match cfg.get_options() {
            Some(theirs) => format!("{theirs} {KEYED}"),
            None => KEYED.to_string(),
        };
        cfg.options(&options);
        let (client, connection) = cfg.connect(target.tls.clone()).await.map_err(pg_error)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL writer connection ended.");
            }
        });
        Ok(PgConn {
            client,
            prepared: HashMap::new(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The first column of the one row `sql` returns (tests).
    #[cfg(test)]
    pub async fn scalar_bool(&self, sql: &str) -> Result<bool, sqlx::Error> {
        let row = self.client.query_one(sql, &[]).await.map_err(pg_error)?;
        row.try_get(0).map_err(pg_error)
    }

    /// The first column of the one row `sql` returns (tests).
    #[cfg(test)]
    pub async fn scalar_text(&self, sql: &str) -> Result<String, sqlx::Error> {
        let row = self.client.query_one(sql, &[]).await.map_err(pg_error)?;
        row.try_get(0).map_err(pg_error)
    }

    /// Runs SQL without parameters (`BEGIN`, `COMMIT`, `ROLLBACK`).
    pub async fn simple(&self, sql: &str) -> Result<(), sqlx::Error> {
        self.client.batch_execute(sql).await.map_err(pg_error)
    }

    async fn statement(&mut self, sql: &str, args: &[Val]) -> Result<Statement, sqlx::Error> {
        let types: Vec<Type> = args
            .iter()
            .map(|v| match v {
                Val::Text(_) => Type::TEXT,
                Val::Int(_) => Type::INT8,
                Val::Texts(_) => Type::TEXT_ARRAY,
                Val::Ints(_) => Type::INT8_ARRAY,
            })
            .collect();
        if let Some(s) = self
            .prepared
            .get(sql)
            .and_then(|v| v.iter().find(|s| s.params() == types.as_slice()))
        {
            return Ok(s.clone());
        }
        let stmt = self
            .client
            .prepare_typed(sql, &types)
            .await
            .map_err(pg_error)?;
        // Bounded: SQL built at run time (`IN (…)` lists of varying length) would otherwise
        // keep adding server-side statements; dropping ours closes them on the server.
        if self.prepared.len() >= 512 {
            self.prepared.clear();
        }
        self.prepared
            .entry(sql.to_string())
            .or_default()
            .push(stmt.clone());
        Ok(stmt)
    }

    /// Runs statements in order, all sent before the first answer is awaited: rows
    /// affected and rows of each. The first failure is the answer (the statements after it
    /// fail too: the transaction is aborted).
    pub async fn run_all(
        &mut self,
        stmts: &[(&str, &[Val])],
    ) -> Result<Vec<(u64, Vec<AnyRow>)>, sqlx::Error> {
        let mut prepared = Vec::with_capacity(stmts.len());
        for (sql, args) in stmts {
            prepared.push(self.statement(sql, args).await?);
        }
        let client = &self.client;
        let runs = prepared.iter().zip(stmts).map(|(stmt, (_, args))| {
            let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(param).collect();
            async move {
                if stmt.columns().is_empty() {
                    let n = client.execute(stmt, &params).await.map_err(pg_error)?;
                    Ok::<_, sqlx::Error>((n, Vec::new()))
                } else {
                    let rows = client.query(stmt, &params).await.map_err(pg_error)?;
                    let n = rows.len() as u64;
                    Ok((n, any_rows(stmt, &rows)?))
                }
            }
        });
        futures::future::try_join_all(runs).await
    }
}

fn param(v: &Val) -> &(dyn ToSql + Sync) {
    match v {
        Val::Text(t) => t,
        Val::Int(n) => n,
        Val::Texts(t) => t,
        Val::Ints(n) => n,
    }
}

fn any_rows(stmt: &Statement, rows: &[tokio_postgres::Row]) -> Result<Vec<AnyRow>, sqlx::Error> {
    let columns = Columns::new(stmt.columns().iter().map(|c| c.name()));
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let mut values = Vec::with_capacity(columns.len());
        for (i, c) in stmt.columns().iter().enumerate() {
            values.push(value(row, i, c.type_()).map_err(pg_error)?);
        }
        out.push(columns.row(values));
    }
    Ok(out)
}

/// A column as sqlx's Any driver would hand it over (the same types it supports).
fn value(
    row: &tokio_postgres::Row,
    i: usize,
    ty: &Type,
) -> Result<AnyValueKind<'static>, tokio_postgres::Error> {
    fn or_null<T>(
        v: Option<T>,
        f: impl FnOnce(T) -> AnyValueKind<'static>,
    ) -> AnyValueKind<'static> {
        v.map(f)
            .unwrap_or(AnyValueKind::Null(AnyTypeInfoKind::Null))
    }
    Ok(match *ty {
        Type::INT8 => or_null(row.try_get::<_, Option<i64>>(i)?, AnyValueKind::BigInt),
        Type::INT4 => or_null(row.try_get::<_, Option<i32>>(i)?, AnyValueKind::Integer),
        Type::INT2 => or_null(row.try_get::<_, Option<i16>>(i)?, AnyValueKind::SmallInt),
        Type::BOOL => or_null(row.try_get::<_, Option<bool>>(i)?, AnyValueKind::Bool),
        Type::FLOAT8 => or_null(row.try_get::<_, Option<f64>>(i)?, AnyValueKind::Double),
        Type::FLOAT4 => or_null(row.try_get::<_, Option<f32>>(i)?, AnyValueKind::Real),
        Type::BYTEA => or_null(row.try_get::<_, Option<Vec<u8>>>(i)?, |b| {
            AnyValueKind::Blob(Cow::Owned(b))
        }),
        // TEXT, VARCHAR, BPCHAR, NAME; anything else fails to decode here, as in sqlx Any.
        _ => or_null(row.try_get::<_, Option<String>>(i)?, |s| {
            AnyValueKind::Text(Cow::Owned(s))
        }),
    })
}

/// A tokio-postgres error as a sqlx database error, so callers handle one error type.
pub(crate) fn pg_error(e: tokio_postgres::Error) -> sqlx::Error {
    use tokio_postgres::error::SqlState;
    let code = e.code().cloned();
    let kind = match &code {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => Violation::Unique,
        Some(c) if *c == SqlState::FOREIGN_KEY_VIOLATION => Violation::ForeignKey,
        Some(c) if *c == SqlState::NOT_NULL_VIOLATION => Violation::NotNull,
        Some(c) if *c == SqlState::CHECK_VIOLATION => Violation::Check,
        _ => Violation::Other,
    };
    let message = match e.as_db_error() {
        Some(db) => db.to_string(),
        None => e.to_string(),
    };
    driver_error(message, code.map(|c| c.code().to_string()), kind, e)
}

/// The PostgreSQL the unit tests use (as the integration tests: `WEFT_TEST_PG_URL`).
#[cfg(test)]
pub(crate) fn test_url() -> String {
    std::env::var("WEFT_TEST_PG_URL")
        .or_else(|_| std::env::var("WEFT_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A writer connection to `url` (tests).
#[cfg(test)]
pub(crate) async fn connect_url(url: &str) -> PgConn {
    let target = PgTarget::from_url(url).expect("PostgreSQL URL");
    PgConn::connect(&target)
        .await
        .expect("connect to PostgreSQL")
}

/// A fresh, migrated PostgreSQL database for one unit test; dropped by [`TestDb::drop_db`]
/// (a test that fails midway leaves its `weft_ut_*` database behind, as the integration
/// suite's do).
#[cfg(test)]
pub(crate) struct TestDb {
    pub url: String,
    pub pool: sqlx::AnyPool,
    admin: PgConn,
    name: String,
}

#[cfg(test)]
impl TestDb {
    pub async fn new() -> TestDb {
        let base = test_url();
        let name = format!("weft_ut_{}", ulid::Ulid::new().to_string().to_lowercase());
        let admin = connect_url(&base).await;
        admin
            .simple(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let mut url = url::Url::parse(&base).expect("URL");
        url.set_path(&name);
        let url = url.to_string();
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&url).await.expect("pool");
        crate::store::POSTGRES_MIGRATOR
            .run(&pool)
            .await
            .expect("migrate");
        TestDb {
            url,
            pool,
            admin,
            name,
        }
    }

    /// Asserts what each `SELECT COUNT(*) …` counts.
    pub async fn assert_counts(&self, checks: &[(&str, i64)]) {
        for (sql, want) in checks {
            let n: (i64,) = sqlx::query_as(sql).fetch_one(&self.pool).await.expect(sql);
            assert_eq!(n.0, *want, "{sql}");
        }
    }

    /// A writer connection of its own.
    pub async fn writer(&self) -> PgConn {
        connect_url(&self.url).await
    }

    pub async fn drop_db(self) {
        self.pool.close().await;
        self.admin
            .simple(&format!("DROP DATABASE {} WITH (FORCE)", self.name))
            .await
            .expect("drop database");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::db::Db;
    use crate::store::script::Script;
    use sqlx::Row;

    /// A writer's connection plans without sequential scans, hash or merge joins, and
    /// keeps the URL's own `options`.
    #[tokio::test]
    async fn writers_plan_row_by_row_through_indexes() {
        let keyed = |conn: PgConn| async move {
            for setting in ["enable_seqscan", "enable_hashjoin", "enable_mergejoin"] {
                let show = format!("SHOW {setting}");
                assert_eq!(
                    conn.scalar_text(&show).await.expect("show"),
                    "off",
                    "{setting}"
                );
            }
            conn
        };
        keyed(connect_url(&test_url()).await).await;
        let base = test_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{sep}options=-c%20work_mem%3D5MB");
        let conn = keyed(connect_url(&url).await).await;
        let work_mem = conn.scalar_text("SHOW work_mem").await.expect("show");
        assert_eq!(work_mem, "5MB");
    }

    /// A pipelined script answers per statement, as sqlx would: rows affected, RETURNING
    /// rows, NULLs, `INT4`/`INT8`/`TEXT` columns; a failing statement fails the script.
    #[tokio::test]
    async fn a_pipelined_script_answers_per_statement() {
        let mut conn = connect_url(&test_url()).await;
        conn.simple(
            "CREATE TEMP TABLE t (id TEXT PRIMARY KEY, n BIGINT, small INTEGER, note TEXT)",
        )
        .await
        .expect("create");
        let mut db = Db::Pg(&mut conn);
        let mut s = Script::new();
        s.add(
            "INSERT INTO t (id, n, small) VALUES ($1, $2, $3)",
            vec!["a".into(), 1i64.into(), 7i64.into()],
        );
        s.add(
            "INSERT INTO t (id, n) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            vec!["a".into(), 2i64.into()],
        );
        s.add(
            "UPDATE t SET n = n + $1 WHERE id = $2 RETURNING n, small, note",
            vec![10i64.into(), "a".into()],
        );
        s.add("SELECT id FROM t WHERE n > $1", vec![Val::Int(None)]);
        let out = s.run(&mut db).await.expect("run");
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].rows_affected, 1);
        assert_eq!(out[1].rows_affected, 0);
        assert_eq!(out[2].rows.len(), 1);
        let row = &out[2].rows[0];
        assert_eq!(row.try_get::<i64, _>("n").expect("n"), 11);
        assert_eq!(row.try_get::<i64, _>("small").expect("INT4 as i64"), 7);
        assert_eq!(
            row.try_get::<Option<String>, _>("note").expect("note"),
            None
        );
        assert!(out[3].rows.is_empty());

        // A pair is sent as one statement; both take effect, and every statement still
        // has its answer in its place.
        let mut paired = Script::new();
        paired.add(
            "INSERT INTO t (id, n, note) VALUES ($1, $2, $3)",
            vec!["b".into(), 5i64.into(), "it's $1".into()],
        );
        paired.add_joined(
            "UPDATE t SET note = $1 WHERE id = $2",
            vec!["paired".into(), "a".into()],
        );
        paired.add("DELETE FROM t WHERE id = $1", vec!["none".into()]);
        let last = paired.add_joined("SELECT id, note FROM t ORDER BY id", vec![]);
        let out = paired.run(&mut db).await.expect("paired run");
        assert_eq!((out.len(), last), (4, 3));
        assert_eq!(out[1].rows_affected, 1, "the pair answers as its second");
        let rows: Vec<(String, Option<String>)> = out[3]
            .rows
            .iter()
            .map(|r| {
                (
                    r.try_get("id").expect("id"),
                    r.try_get("note").expect("note"),
                )
            })
            .collect();
        assert_eq!(
            rows,
            vec![
                ("a".to_string(), Some("paired".to_string())),
                ("b".to_string(), Some("it's $1".to_string())),
            ]
        );

        // Pairs only: a statement joined to the second of a pair is sent on its own.
        let mut three = Script::new();
        three.add("INSERT INTO t (id) VALUES ($1)", vec!["d".into()]);
        three.add_joined("INSERT INTO t (id) VALUES ($1)", vec!["e".into()]);
        three.add_joined(
            "INSERT INTO t (id) VALUES ($1) RETURNING id",
            vec!["f".into()],
        );
        let out = three.run(&mut db).await.expect("three joined");
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].rows_affected, 1, "d and e: one pair, answering as e");
        assert_eq!(out[2].rows.len(), 1, "f on its own");

        let mut bad = Script::new();
        bad.add(
            "INSERT INTO t (id, n) VALUES ($1, $2)",
            vec!["a".into(), 3i64.into()],
        );
        bad.add("SELECT id FROM t", vec![]);
        let Err(err) = bad.run(&mut db).await else {
            panic!("a duplicate key must fail the script");
        };
        let kind = err.as_database_error().map(|e| e.kind());
        assert!(
            matches!(kind, Some(sqlx::error::ErrorKind::UniqueViolation)),
            "{err}"
        );
    }

    /// 0012: a send's result updates its message in place (HOT: no index entry written),
    /// and the lookups whose indexes lost a column still go through them.
    #[tokio::test]
    async fn a_send_result_updates_its_message_in_place() {
        let db = TestDb::new().await;
        let mut tx = db.pool.begin().await.expect("begin");
        sqlx::query(
            "INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, status, customer_identity, created_at, updated_at)
             VALUES ('msg_1', 't', 'conv_1', 'outbound', 'sms', '+12025550100', 'queued', 'tel:+12025550100', 1, 1)",
        )
        .execute(&mut *tx)
        .await
        .expect("insert");
        sqlx::query(crate::store::delivery::SENT_STATUS_UPDATE)
            .bind("twilio")
            .bind("tel:+15005550006")
            .bind("+15005550006")
            .bind(1i64)
            .bind("msg_1")
            .bind("sent")
            .bind(2i64)
            .execute(&mut *tx)
            .await
            .expect("update");
        let (updated, hot): (i64, i64) = sqlx::query_as(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'messages'",
        )
        .fetch_one(&mut *tx)
        .await
        .expect("stats");
        assert_eq!((updated, hot), (1, 1));

        sqlx::query("SET LOCAL enable_seqscan = off")
            .execute(&mut *tx)
            .await
            .expect("set");
        for (sql, index) in [
            (crate::threading::ladder::LEASE, "messages_lease"),
            (
                crate::threading::ladder::INBOUND_BY_PROVIDER_ID,
                "messages_inbound_pid",
            ),
            (crate::store::read::HISTORY, "status_history_pkey"),
            // 0013: a receipt's retry is looked for in its message's history.
            (
                super::super::receipt_keys::SEEN.as_str(),
                "status_history_pkey",
            ),
        ] {
            let generic = format!("PREPARE p AS {sql}");
            sqlx::query(&generic)
                .execute(&mut *tx)
                .await
                .expect("prepare");
            let args = (1..10).filter(|n| sql.contains(&format!("${n}"))).count();
            let exec = format!("EXPLAIN EXECUTE p({})", vec!["'x'"; args].join(", "));
            let rows = sqlx::query(&exec)
                .fetch_all(&mut *tx)
                .await
                .expect("explain");
            let plan: Vec<String> = rows
                .iter()
                .map(|r| r.try_get::<String, _>(0).expect("plan line"))
                .collect();
            let plan = plan.join("\n");
            assert!(plan.contains(index), "{sql}\n→ {plan}");
            sqlx::query("DEALLOCATE p")
                .execute(&mut *tx)
                .await
                .expect("deallocate");
        }
        drop(tx);
        db.drop_db().await;
    }
}
