//! The connection a store job runs on.
//!
//! PostgreSQL (and SQLite outside the group-commit writer) goes through sqlx's `Any` driver.
//! The SQLite writer has its own synchronous connection (rusqlite) on its own thread: sqlx
//! runs every SQLite statement on a per-connection worker thread, and the two thread hops
//! per statement were most of weft's CPU on the hot path; on the writer's thread a whole
//! batch runs with none. Jobs are written once against [`Db`] and read rows as sqlx
//! [`AnyRow`]s on both, so the SQL and the row handling are shared.
//!
//! Parameters are `$1…$n` everywhere (SQLite binds `$N` by name).

use super::pg::PgConn;
use super::script::Val;
use futures::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Either, Executor};
use sqlx_core::any::{AnyColumn, AnyTypeInfo, AnyTypeInfoKind, AnyValue, AnyValueKind};
use sqlx_core::ext::ustr::UStr;
use std::borrow::Cow;
use std::sync::Arc;

/// A connection (usually inside the caller's transaction).
pub enum Db<'c> {
    Any(&'c mut AnyConnection),
    /// `&mut`: a connection is `Send` but not `Sync`, and job futures must be `Send`.
    Lite(&'c mut rusqlite::Connection),
    /// A PostgreSQL writer's own connection (pipelines a script's statements).
    Pg(&'c mut PgConn),
}

/// What one statement changed.
#[derive(Debug, Default, Clone, Copy)]
pub struct Executed {
    pub(crate) rows_affected: u64,
}

impl Executed {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A statement and its arguments, built like `sqlx::query(sql).bind(…)`.
#[must_use]
pub struct Query<'q> {
    sql: &'q str,
    args: Vec<Val>,
}

/// Starts a statement.
pub fn query(sql: &str) -> Query<'_> {
    Query {
        sql,
        args: Vec::new(),
    }
}

impl<'q> Query<'q> {
    pub fn bind(mut self, v: impl Into<Val>) -> Self {
        self.args.push(v.into());
        self
    }

    pub async fn execute(self, db: &mut Db<'_>) -> Result<Executed, sqlx::Error> {
        Ok(db.run(self.sql, self.args, false).await?.0)
    }

    pub async fn fetch_all(self, db: &mut Db<'_>) -> Result<Vec<AnyRow>, sqlx::Error> {
        Ok(db.run(self.sql, self.args, true).await?.1)
    }

    pub async fn fetch_optional(self, db: &mut Db<'_>) -> Result<Option<AnyRow>, sqlx::Error> {
        Ok(db
            .run(self.sql, self.args, true)
            .await?
            .1
            .into_iter()
            .next())
    }

    pub async fn fetch_one(self, db: &mut Db<'_>) -> Result<AnyRow, sqlx::Error> {
        self.fetch_optional(db)
            .await?
            .ok_or(sqlx::Error::RowNotFound)
    }
}

impl Db<'_> {
    /// The SQLite writer's own connection. There a statement costs no round trip, while a
    /// `RETURNING` clause or an insert reading its own table costs a temporary table (a
    /// B-tree and page cache made and torn down), so hot jobs split such statements there.
    pub fn is_lite(&self) -> bool {
        matches!(self, Db::Lite(_))
    }

    /// True on PostgreSQL, where several writers (and replicas) run transactions at once:
    /// a row read to decide a write must be locked by that read (`FOR UPDATE`), or another
    /// transaction can change it in between. SQLite writes one transaction at a time.
    pub fn concurrent(&self) -> bool {
        match self {
            Db::Pg(_) => true,
            Db::Any(c) => c.backend_name() == "PostgreSQL",
            Db::Lite(_) => false,
        }
    }

    /// `locked` (the same read with `FOR UPDATE`) where transactions run [concurrently],
    /// `plain` elsewhere: the read that decides a write.
    ///
    /// [concurrently]: Db::concurrent
    pub fn deciding_read<'s>(&self, plain: &'s str, locked: &'s str) -> &'s str {
        if self.concurrent() {
            locked
        } else {
            plain
        }
    }

    /// Runs SQL without parameters (`BEGIN`, `COMMIT`, …).
    pub async fn simple(&mut self, sql: &str) -> Result<(), sqlx::Error> {
        match self {
            Db::Any(c) => c.execute(sql).await.map(|_| ()),
            Db::Lite(c) => c.execute_batch(sql).map_err(lite_error),
            Db::Pg(c) => c.simple(sql).await,
        }
    }

    /// Runs one statement: what it changed and the rows it returned.
    pub(crate) async fn run(
        &mut self,
        sql: &str,
        args: Vec<Val>,
        want_rows: bool,
    ) -> Result<(Executed, Vec<AnyRow>), sqlx::Error> {
        match self {
            Db::Any(c) => run_any(c, sql, args).await,
            Db::Lite(c) => run_lite(c, sql, &args, want_rows).map_err(lite_error),
            Db::Pg(c) => {
                let (n, rows) = c.run_all(&[(sql, &args)]).await?.pop().unwrap_or_default();
                Ok((Executed { rows_affected: n }, rows))
            }
        }
    }
}

/// Several statements in one query (SQLite through sqlx), or one: an [`Executed`] and the
/// rows of each statement, in order.
pub(crate) async fn run_any_multi(
    conn: &mut AnyConnection,
    sql: &str,
    args: Vec<Val>,
) -> Result<Vec<(Executed, Vec<AnyRow>)>, sqlx::Error> {
    let mut q = sqlx::query(sql);
    for v in args {
        q = match v {
            Val::Text(t) => q.bind(t),
            Val::Int(i) => q.bind(i),
            Val::Texts(_) | Val::Ints(_) => return Err(sqlx::Error::Protocol(Val::not_here())),
        };
    }
    let mut out = Vec::new();
    let mut rows = Vec::new();
    let mut stream = conn.fetch_many(q);
    while let Some(step) = stream.try_next().await? {
        match step {
            Either::Right(row) => rows.push(row),
            Either::Left(done) => out.push((
                Executed {
                    rows_affected: done.rows_affected(),
                },
                std::mem::take(&mut rows),
            )),
        }
    }
    Ok(out)
}

async fn run_any(
    conn: &mut AnyConnection,
    sql: &str,
    args: Vec<Val>,
) -> Result<(Executed, Vec<AnyRow>), sqlx::Error> {
    let mut all = run_any_multi(conn, sql, args).await?;
    Ok(if all.is_empty() {
        (Executed::default(), Vec::new())
    } else {
        all.swap_remove(0)
    })
}

/// What the SQLite writer needs to know of a prepared statement, worked out once per SQL
/// text: which statement parameter each argument binds, and the result columns.
struct Shape {
    /// `params[k]`: the statement's index of `$k+1`; `None` if the statement does not use it.
    /// (Looking each `$k` up by name per bind was ~2.5 % of weft's instructions.)
    params: Vec<Option<usize>>,
    param_count: usize,
    columns: Arc<Columns>,
}

impl Shape {
    fn new(stmt: &rusqlite::Statement<'_>) -> Shape {
        let param_count = stmt.parameter_count();
        let mut params = Vec::new();
        for i in 1..=param_count {
            let Some(k) = stmt.parameter_name(i).and_then(dollar_number) else {
                continue;
            };
            if params.len() < k {
                params.resize(k, None);
            }
            params[k - 1] = Some(i);
        }
        Shape {
            params,
            param_count,
            columns: Arc::new(Columns::new(stmt.column_names())),
        }
    }

    fn fits(&self, stmt: &rusqlite::Statement<'_>) -> bool {
        self.param_count == stmt.parameter_count() && self.columns.len() == stmt.column_count()
    }
}

/// `k` of a parameter named exactly `$k` (k ≥ 1).
fn dollar_number(name: &str) -> Option<usize> {
    let k: usize = name.strip_prefix('$')?.parse().ok()?;
    (k >= 1 && name == format!("${k}")).then_some(k)
}

type ShapeCache = std::collections::HashMap<String, Arc<Shape>, foldhash::fast::RandomState>;

thread_local! {
    /// Statement shapes on this thread (the SQLite writer's): built once per SQL text, not
    /// per execution. Bounded: dynamic SQL is rare, and the map is dropped when full.
    /// Keyed by the SQL text with foldhash: std's SipHash over a few hundred bytes, once
    /// per statement, was ~0.5 % of weft's instructions.
    static LITE_SHAPES: std::cell::RefCell<ShapeCache> = Default::default();
}

fn lite_shape(sql: &str, stmt: &rusqlite::Statement<'_>) -> Arc<Shape> {
    LITE_SHAPES.with_borrow_mut(|cache| {
        if let Some(s) = cache.get(sql) {
            if s.fits(stmt) {
                return s.clone();
            }
        }
        if cache.len() >= 512 {
            cache.clear();
        }
        let s = Arc::new(Shape::new(stmt));
        cache.insert(sql.to_string(), s.clone());
        s
    })
}

fn run_lite(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Val],
    want_rows: bool,
) -> Result<(Executed, Vec<AnyRow>), rusqlite::Error> {
    #[cfg(feature = "sql-stats")]
    let started = std::time::Instant::now();
    let out = run_lite_untimed(conn, sql, args, want_rows);
    #[cfg(feature = "sql-stats")]
    super::sql_stats::record(sql, started.elapsed());
    out
}

fn run_lite_untimed(
    conn: &rusqlite::Connection,
    sql: &str,
    args: &[Val],
    want_rows: bool,
) -> Result<(Executed, Vec<AnyRow>), rusqlite::Error> {
    let mut stmt = conn.prepare_cached(sql)?;
    let shape = lite_shape(sql, &stmt);
    for (i, v) in args.iter().enumerate() {
        // A parameter the statement does not use is skipped, as sqlx does.
        let Some(idx) = shape.params.get(i).copied().flatten() else {
            continue;
        };
        match v {
            Val::Text(t) => stmt.raw_bind_parameter(idx, t.as_deref())?,
            Val::Int(n) => stmt.raw_bind_parameter(idx, *n)?,
            Val::Texts(_) | Val::Ints(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    Val::not_here().into(),
                ))
            }
        }
    }
    let ncols = stmt.column_count();
    if ncols == 0 {
        let n = stmt.raw_execute()?;
        return Ok((
            Executed {
                rows_affected: n as u64,
            },
            Vec::new(),
        ));
    }
    let columns = &shape.columns;
    let mut out = Vec::new();
    let mut rows = stmt.raw_query();
    while let Some(row) = rows.next()? {
        if !want_rows {
            continue;
        }
        let mut values = Vec::with_capacity(ncols);
        for i in 0..ncols {
            use rusqlite::types::ValueRef;
            values.push(match row.get_ref(i)? {
                ValueRef::Null => AnyValueKind::Null(AnyTypeInfoKind::Null),
                ValueRef::Integer(n) => AnyValueKind::BigInt(n),
                ValueRef::Real(f) => AnyValueKind::Double(f),
                // `from_utf8` first: its ASCII fast path is several times cheaper than the
                // lossy decoder, which only matters for text that is not UTF-8.
                ValueRef::Text(t) => AnyValueKind::Text(Cow::Owned(match std::str::from_utf8(t) {
                    Ok(s) => s.to_owned(),
                    Err(_) => String::from_utf8_lossy(t).into_owned(),
                })),
                ValueRef::Blob(b) => AnyValueKind::Blob(Cow::Owned(b.to_vec())),
            });
        }
        out.push(columns.row(values));
    }
    drop(rows);
    // `changes()` is the last data change's count: a plain SELECT changed nothing.
    let rows_affected = if stmt.readonly() { 0 } else { conn.changes() };
    Ok((Executed { rows_affected }, out))
}

/// A rusqlite error as a sqlx database error, so callers handle one error type.
pub(crate) fn lite_error(e: rusqlite::Error) -> sqlx::Error {
    use rusqlite::ffi;
    let (code, kind) = match &e {
        rusqlite::Error::SqliteFailure(f, _) => (
            Some(format!("{:?}", f.code)),
            match f.extended_code {
                ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                    Violation::Unique
                }
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY => Violation::ForeignKey,
                ffi::SQLITE_CONSTRAINT_NOTNULL => Violation::NotNull,
                ffi::SQLITE_CONSTRAINT_CHECK => Violation::Check,
                _ => Violation::Other,
            },
        ),
        _ => (None, Violation::Other),
    };
    driver_error(e.to_string(), code, kind, e)
}

/// Which constraint a statement broke (sqlx's `ErrorKind`, which is not `Clone`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Violation {
    Unique,
    ForeignKey,
    NotNull,
    Check,
    Other,
}

/// An error of a driver other than sqlx's, as a sqlx database error.
pub(crate) fn driver_error(
    message: String,
    code: Option<String>,
    kind: Violation,
    source: impl std::error::Error + Send + Sync + 'static,
) -> sqlx::Error {
    sqlx::Error::Database(Box::new(DriverError {
        message,
        code,
        kind,
        source: Box::new(source),
    }))
}

#[derive(Debug)]
struct DriverError {
    message: String,
    code: Option<String>,
    kind: Violation,
    source: Box<dyn std::error::Error + Send + Sync>,
}

impl std::fmt::Display for DriverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DriverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

impl sqlx::error::DatabaseError for DriverError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        self.code.as_deref().map(Cow::Borrowed)
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        use sqlx::error::ErrorKind;
        match self.kind {
            Violation::Unique => ErrorKind::UniqueViolation,
            Violation::ForeignKey => ErrorKind::ForeignKeyViolation,
            Violation::NotNull => ErrorKind::NotNullViolation,
            Violation::Check => ErrorKind::CheckViolation,
            Violation::Other => ErrorKind::Other,
        }
    }
}

/// Column metadata of a result, shared by its rows (rows are sqlx [`AnyRow`]s).
pub(crate) struct Columns {
    names: Arc<sqlx_core::HashMap<UStr, usize>>,
    columns: Vec<AnyColumn>,
}

impl Columns {
    pub(crate) fn new<'a>(names: impl IntoIterator<Item = &'a str>) -> Columns {
        let columns: Vec<AnyColumn> = names
            .into_iter()
            .enumerate()
            .map(|(ordinal, name)| AnyColumn {
                ordinal,
                name: UStr::new(name),
                type_info: AnyTypeInfo {
                    kind: AnyTypeInfoKind::Null,
                },
            })
            .collect();
        let names = Arc::new(
            columns
                .iter()
                .map(|c| (c.name.clone(), c.ordinal))
                .collect(),
        );
        Columns { names, columns }
    }

    pub(crate) fn len(&self) -> usize {
        self.columns.len()
    }

    pub(crate) fn row(&self, values: Vec<AnyValueKind<'static>>) -> AnyRow {
        AnyRow {
            column_names: self.names.clone(),
            columns: self.columns.clone(),
            values: values.into_iter().map(|kind| AnyValue { kind }).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Row;

    #[tokio::test]
    async fn rusqlite_rows_read_like_sqlx_rows() {
        let mut conn = rusqlite::Connection::open_in_memory().expect("open");
        let mut db = Db::Lite(&mut conn);
        query("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER, note TEXT)")
            .execute(&mut db)
            .await
            .expect("create");
        let ins =
            query("INSERT INTO t (id, n, note) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING")
                .bind("a")
                .bind(5i64)
                .bind(None::<String>);
        assert_eq!(
            ins.execute(&mut db).await.expect("insert").rows_affected(),
            1
        );
        let again = query("INSERT INTO t (id, n) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING")
            .bind("a")
            .bind(6i64);
        assert_eq!(
            again.execute(&mut db).await.expect("again").rows_affected(),
            0
        );
        // $2 before $1, and $1 twice: bound by name, not by position of appearance.
        let row = query("SELECT id, n + $2 AS m, note FROM t WHERE id = $1 AND id = $1")
            .bind("a")
            .bind(10i64)
            .fetch_one(&mut db)
            .await
            .expect("select");
        assert_eq!(row.try_get::<String, _>("id").expect("id"), "a");
        assert_eq!(row.try_get::<i64, _>("m").expect("m"), 15);
        assert_eq!(
            row.try_get::<Option<String>, _>("note").expect("note"),
            None
        );
        assert_eq!(row.try_get::<i64, _>(1).expect("by index"), 15);
        let upd = query("UPDATE t SET n = n + 1 WHERE id = $1 RETURNING n")
            .bind("a")
            .fetch_all(&mut db)
            .await
            .expect("returning");
        assert_eq!(upd.len(), 1);
        let dup = query("INSERT INTO t (id, n) VALUES ($1, 1)")
            .bind("a")
            .execute(&mut db)
            .await
            .expect_err("duplicate");
        let kind = dup.as_database_error().map(|e| e.kind());
        assert!(
            matches!(kind, Some(sqlx::error::ErrorKind::UniqueViolation)),
            "{dup}"
        );
        // An argument the statement does not use ($2) is skipped; $3 still binds $3.
        let row = query("SELECT n + $3 AS m FROM t WHERE id = $1")
            .bind("a")
            .bind("unused")
            .bind(100i64)
            .fetch_one(&mut db)
            .await
            .expect("gap");
        assert_eq!(row.try_get::<i64, _>("m").expect("m"), 106);
    }

    #[test]
    fn only_exact_dollar_names_are_positional() {
        assert_eq!(dollar_number("$1"), Some(1));
        assert_eq!(dollar_number("$26"), Some(26));
        for name in ["$0", "$01", "$x", ":a", "?1", "$"] {
            assert_eq!(dollar_number(name), None, "{name}");
        }
    }
}
