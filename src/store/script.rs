//! Statements that need no Rust decision between them, run as one unit.
//!
//! - On a PostgreSQL writer's connection ([`Db::Pg`]) they are pipelined: all sent before
//!   the first answer is awaited, one round trip.
//! - On the SQLite writer's connection ([`Db::Lite`]) they run one after another on the
//!   writer's thread, where a statement costs no hop.
//! - Through sqlx on SQLite ([`Db::Any`]) every statement is a hand-off to the connection's
//!   worker thread and back, so they go as one multi-statement query: sqlx binds `$N` by
//!   number across its statements, so each statement's own `$1…$k` are renumbered onto one
//!   shared argument list. Through sqlx on PostgreSQL they run one by one.

use super::db::{run_any_multi, Db, Executed};
use sqlx::any::AnyRow;
use std::borrow::Cow;

/// A bind value.
#[derive(Debug, Clone)]
pub enum Val {
    Text(Option<String>),
    Int(Option<i64>),
    /// An array (`TEXT[]`): a PostgreSQL writer's statements only (one row per element
    /// with `unnest`); elsewhere binding it is an error.
    Texts(Vec<Option<String>>),
    /// An array (`INT8[]`), as [`Val::Texts`].
    Ints(Vec<Option<i64>>),
}

impl Val {
    /// The error binding an array outside a PostgreSQL writer's connection gives.
    pub fn not_here() -> String {
        "array parameters are for a PostgreSQL writer's connection only".into()
    }
}

impl From<&str> for Val {
    fn from(v: &str) -> Val {
        Val::Text(Some(v.to_string()))
    }
}

impl From<&String> for Val {
    fn from(v: &String) -> Val {
        Val::Text(Some(v.clone()))
    }
}

impl From<String> for Val {
    fn from(v: String) -> Val {
        Val::Text(Some(v))
    }
}

impl From<Option<&str>> for Val {
    fn from(v: Option<&str>) -> Val {
        Val::Text(v.map(str::to_string))
    }
}

impl From<&Option<String>> for Val {
    fn from(v: &Option<String>) -> Val {
        Val::Text(v.clone())
    }
}

impl From<Option<String>> for Val {
    fn from(v: Option<String>) -> Val {
        Val::Text(v)
    }
}

impl From<i64> for Val {
    fn from(v: i64) -> Val {
        Val::Int(Some(v))
    }
}

impl From<Option<i64>> for Val {
    fn from(v: Option<i64>) -> Val {
        Val::Int(v)
    }
}

/// A column's type, for statements built from a column list ([`insert_one`], [`insert_unnest`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    Text,
    Int,
}

/// `INSERT INTO table (a, b, …) VALUES ($1, $2, …)`.
pub fn insert_one(table: &str, cols: &[(&str, Col)]) -> String {
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let params: Vec<String> = (1..=cols.len()).map(|i| format!("${i}")).collect();
    format!(
        "INSERT INTO {table} ({}) VALUES ({})",
        names.join(", "),
        params.join(", ")
    )
}

/// `INSERT INTO table (a, b, …) SELECT * FROM unnest($1::text[], $2::int8[], …)`: one row
/// per element, bound with [`columns`] (a PostgreSQL writer's connection only).
pub fn insert_unnest(table: &str, cols: &[(&str, Col)]) -> String {
    let names: Vec<&str> = cols.iter().map(|(n, _)| *n).collect();
    let params: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, (_, c))| match c {
            Col::Text => format!("${}::text[]", i + 1),
            Col::Int => format!("${}::int8[]", i + 1),
        })
        .collect();
    format!(
        "INSERT INTO {table} ({}) SELECT * FROM unnest({})",
        names.join(", "),
        params.join(", ")
    )
}

/// Rows of scalar values as one array value per column (`cols` gives the types, so a
/// column of NULLs still binds as the right array). A value of another type is an error.
pub fn columns(cols: &[(&str, Col)], rows: &[Vec<Val>]) -> Result<Vec<Val>, sqlx::Error> {
    let wrong =
        |name: &str| sqlx::Error::Protocol(format!("column {name}: a value of another type"));
    cols.iter()
        .enumerate()
        .map(|(i, (name, col))| {
            Ok(match col {
                Col::Text => Val::Texts(
                    rows.iter()
                        .map(|r| match r.get(i) {
                            Some(Val::Text(t)) => Ok(t.clone()),
                            _ => Err(wrong(name)),
                        })
                        .collect::<Result<_, _>>()?,
                ),
                Col::Int => Val::Ints(
                    rows.iter()
                        .map(|r| match r.get(i) {
                            Some(Val::Int(n)) => Ok(*n),
                            _ => Err(wrong(name)),
                        })
                        .collect::<Result<_, _>>()?,
                ),
            })
        })
        .collect()
}

/// What one statement of a script produced.
#[derive(Default)]
pub struct Out {
    pub rows_affected: u64,
    pub rows: Vec<AnyRow>,
}

/// Statements to run in order, in the caller's transaction.
#[derive(Debug, Default)]
pub struct Script {
    /// Mostly `&'static str` constants: no copy of the SQL per statement on the hot path.
    stmts: Vec<(Cow<'static, str>, Vec<Val>)>,
    /// Per statement: sent together with the previous one ([`Script::add_joined`]).
    joined: Vec<bool>,
}

impl Script {
    pub fn new() -> Script {
        Script::default()
    }

    /// Adds a statement; its parameters are numbered `$1…$k` as if it ran alone.
    pub fn add(&mut self, sql: impl Into<Cow<'static, str>>, args: Vec<Val>) -> usize {
        self.stmts.push((sql.into(), args));
        self.joined.push(false);
        self.stmts.len() - 1
    }

    /// Adds a statement that a PostgreSQL writer sends together with the previous one, as
    /// one statement: the previous one (an `INSERT`, `UPDATE` or `DELETE` whose answer no
    /// one reads) becomes a data-modifying `WITH` of this one, whose answer is the pair's.
    /// PostgreSQL's cost per statement (executor start-up, plan-cache checks, protocol) is
    /// most of what it spends on weft's small statements. Elsewhere it is [`Script::add`].
    /// Every statement keeps its [`Out`] (the previous one's is empty on PostgreSQL). The two
    /// see the database as it was before them, not each other's rows: they must not depend
    /// on each other nor change the same row (PostgreSQL would apply only one change), and
    /// the pair takes its row locks in an order of PostgreSQL's choosing — pair only
    /// statements whose rows the transaction has locked already or no other writer locks.
    /// (Chains of three or more, and pairs taking new locks — the accept's inserts, the
    /// send result's attempt update with the message lock — were tried: slower, and a
    /// deadlock.)
    pub fn add_joined(&mut self, sql: impl Into<Cow<'static, str>>, args: Vec<Val>) -> usize {
        let i = self.add(sql, args);
        self.joined[i] = i > 0;
        i
    }

    /// Runs the statements; one [`Out`] per statement, in order.
    pub async fn run(self, db: &mut Db<'_>) -> Result<Vec<Out>, sqlx::Error> {
        if self.stmts.is_empty() {
            return Ok(Vec::new());
        }
        match db {
            Db::Any(conn) if conn.backend_name() == "SQLite" && self.stmts.len() > 1 => {
                let mut sql = String::new();
                let mut args = Vec::new();
                for (s, a) in self.stmts {
                    renumber(&s, args.len(), &mut sql);
                    sql.push_str(";\n");
                    args.extend(a);
                }
                Ok(run_any_multi(conn, &sql, args)
                    .await?
                    .into_iter()
                    .map(out)
                    .collect())
            }
            // A PostgreSQL writer's connection sends them all before awaiting the first.
            Db::Pg(conn) => {
                let (sent, paired) = self.merged_pairs();
                let stmts: Vec<(&str, &[Val])> =
                    sent.iter().map(|(s, a)| (s.as_ref(), a.as_ref())).collect();
                let mut answers = conn.run_all(&stmts).await?.into_iter();
                let mut outs = Vec::with_capacity(self.stmts.len());
                for first in paired {
                    if first {
                        outs.push(Out::default());
                    }
                    let (rows_affected, rows) = answers.next().unwrap_or_default();
                    outs.push(Out {
                        rows_affected,
                        rows,
                    });
                }
                Ok(outs)
            }
            // sqlx's PostgreSQL takes one statement per query; the SQLite writer's own
            // connection runs them on its thread, where one more statement costs no hop.
            _ => {
                let mut outs = Vec::with_capacity(self.stmts.len());
                for (s, a) in self.stmts {
                    outs.push(out(db.run(&s, a, true).await?));
                }
                Ok(outs)
            }
        }
    }
}

/// A statement as sent: its SQL and arguments, borrowed from the script or made for a pair.
type Sent<'a> = (Cow<'a, str>, Cow<'a, [Val]>);

impl Script {
    /// The statements a PostgreSQL writer sends (each pair as one), and per statement sent
    /// whether it carries a pair. Pairs only: a statement joined to the second of a pair is
    /// sent on its own.
    fn merged_pairs(&self) -> (Vec<Sent<'_>>, Vec<bool>) {
        let mut sent = Vec::with_capacity(self.stmts.len());
        let mut paired = Vec::with_capacity(self.stmts.len());
        let mut i = 0;
        while i < self.stmts.len() {
            let (sql, args) = &self.stmts[i];
            match self.stmts.get(i + 1) {
                Some((second, second_args)) if self.joined[i + 1] => {
                    let mut merged = String::with_capacity(sql.len() + second.len() + 16);
                    merged.push_str("WITH first AS (");
                    merged.push_str(sql);
                    merged.push_str(")\n");
                    renumber(second, args.len(), &mut merged);
                    let mut all = args.clone();
                    all.extend(second_args.iter().cloned());
                    sent.push((Cow::Owned(merged), Cow::Owned(all)));
                    paired.push(true);
                    i += 2;
                }
                _ => {
                    sent.push((Cow::Borrowed(sql.as_ref()), Cow::Borrowed(args.as_slice())));
                    paired.push(false);
                    i += 1;
                }
            }
        }
        (sent, paired)
    }
}

fn out((done, rows): (Executed, Vec<AnyRow>)) -> Out {
    Out {
        rows_affected: done.rows_affected(),
        rows,
    }
}

/// Appends `sql` to `into` with every `$N` outside string literals shifted by `offset`.
fn renumber(sql: &str, offset: usize, into: &mut String) {
    use std::fmt::Write;
    let bytes = sql.as_bytes();
    let mut quoted = false;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' => quoted = !quoted,
            b'$' if !quoted => {
                let start = i + 1;
                let mut end = start;
                while end < bytes.len() && bytes[end].is_ascii_digit() {
                    end += 1;
                }
                if let Ok(n) = sql[start..end].parse::<usize>() {
                    into.push_str(&sql[copied..start]);
                    let _ = write!(into, "{}", n + offset);
                    copied = end;
                }
                i = end;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    into.push_str(&sql[copied..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renumbering_shifts_parameters_but_not_literals() {
        let mut s = String::new();
        renumber("UPDATE t SET a = $1, b = '$2' WHERE id = $12", 3, &mut s);
        assert_eq!(s, "UPDATE t SET a = $4, b = '$2' WHERE id = $15");
        let mut s = String::new();
        renumber("SELECT $1 || 'it''s $1'", 0, &mut s);
        assert_eq!(s, "SELECT $1 || 'it''s $1'");
    }

    #[tokio::test]
    async fn one_out_per_statement_with_shared_numbering_on_sqlite() {
        use sqlx::{AnyConnection, Connection, Row};
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect("sqlite::memory:")
            .await
            .expect("connect");
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, n INTEGER)")
            .execute(&mut conn)
            .await
            .expect("create");
        let mut s = Script::new();
        s.add(
            "INSERT INTO t (id, n) VALUES ($1, $2)",
            vec!["a".into(), 1i64.into()],
        );
        s.add(
            "INSERT INTO t (id, n) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING",
            vec!["a".into(), 2i64.into()],
        );
        s.add(
            "UPDATE t SET n = n + $1 WHERE id = $2 RETURNING n",
            vec![10i64.into(), "a".into()],
        );
        s.add("SELECT id FROM t WHERE n > $1", vec![Val::Int(None)]);
        let out = s.run(&mut Db::Any(&mut conn)).await.expect("run");
        assert_eq!(out.len(), 4);
        assert_eq!(out[0].rows_affected, 1);
        assert_eq!(out[1].rows_affected, 0);
        assert_eq!(out[2].rows.len(), 1);
        assert_eq!(out[2].rows[0].try_get::<i64, _>("n").expect("n"), 11);
        // NULL compares as unknown: no rows, and the statement still has its own Out.
        assert!(out[3].rows.is_empty());
    }
}
