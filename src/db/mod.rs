//! The database a rollout migrates (`spec.database`): connections built
//! from Secrets, the ledger of phases, the per-database lock, inline SQL
//! phases and contract checks, on PostgreSQL and MySQL/MariaDB.
//!
//! Credentials are read from Secrets into connect options and nowhere else:
//! every error leaving this module names the Secret, never its content
//! (and is scrubbed of the password and URL as a second line of defence).

mod connect;
mod flow;
mod mysql;
mod postgres;

pub use crate::planner::ledger::{LedgerKey, LedgerState};

/// Calls the engine module's function of that name on the pool:
/// `on_engine!(pool, |p| ledger(&p, key))` is `postgres::ledger(&p, key)`
/// or `mysql::ledger(&p, key)`, whichever engine the pool is.
macro_rules! on_engine {
    ($pool:expr, |$p:ident| $f:ident($($arg:expr),*)) => {
        match $pool {
            connect::Pool::Postgres($p) => postgres::$f($($arg),*).await,
            connect::Pool::Mysql($p) => mysql::$f($($arg),*).await,
        }
    };
}
pub use connect::{Pools, Target, build, target};

use std::time::Duration;

/// A database operation that failed; the text never holds a credential.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DbError {
    /// The spec or a Secret it names cannot give a connection.
    #[error("{0}")]
    Config(String),
    /// The server could not be reached or refused the login.
    #[error("cannot connect to {target}: {reason}")]
    Connect {
        /// Which database, by engine, host and Secret.
        target: String,
        /// Why, scrubbed.
        reason: String,
    },
    /// A statement or check failed.
    #[error("{0}")]
    Query(String),
    /// Another rollout runs a phase on this database right now.
    #[error("another rollout holds the lock on {0}")]
    Busy(String),
    /// A check ran but did not return one boolean row.
    #[error("{0}")]
    CheckInvalid(String),
}

impl DbError {
    /// Its reason for conditions and events.
    pub fn reason(&self) -> crate::api::Reason {
        use crate::api::Reason;
        match self {
            Self::Config(_) => Reason::DatabaseConfigInvalid,
            Self::Connect { .. } => Reason::DatabaseUnavailable,
            Self::Query(_) => Reason::DatabaseError,
            Self::Busy(_) => Reason::DatabaseBusy,
            Self::CheckInvalid(_) => Reason::CheckInvalid,
        }
    }
}

/// How many times an inline statement (on PostgreSQL: the phase's
/// transaction) is tried when it fails for a reason that passes: a lock
/// not granted within `lockTimeout`, a deadlock, a serialization failure.
pub const TRIES: u32 = 4;

/// Whether `e` is worth another try: PostgreSQL 55P03 (lock_not_available),
/// 40P01 (deadlock_detected), 40001 (serialization_failure); MySQL 1205
/// (lock wait timeout) and 1213 (deadlock).
fn transient(e: &sqlx::Error) -> bool {
    let Some(db) = e.as_database_error() else {
        return false;
    };
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return matches!(mysql.number(), 1205 | 1213);
    }
    matches!(db.code().as_deref(), Some("55P03" | "40P01" | "40001"))
}

/// The wait before try `tries + 1`: 1 s, 2 s, 4 s.
fn retry_delay(tries: u32) -> Duration {
    Duration::from_secs(1 << (tries - 1).min(4))
}

/// `" (tried N times)"` in a failure message, when it was tried again.
fn tries_note(tries: u32) -> String {
    if tries > 1 {
        format!(" (tried {tries} times)")
    } else {
        String::new()
    }
}

/// How much longer than its server-side statement timeout a check is
/// waited for before the client gives up on the server.
const CHECK_BACKSTOP: Duration = Duration::from_secs(5);

/// A check's boolean, or why what it returned is not one.
pub type CheckValue = Result<bool, String>;

/// What a check returned when it was NULL.
const CHECK_NULL: &str =
    "returned NULL; a check must say true or false (e.g. coalesce(..., false))";

/// The single row of a check, or why there is not exactly one (a query
/// returning several must not pass on its first).
fn one_row<R: sqlx::Row>(rows: &[R]) -> Result<&R, String> {
    match rows {
        [row] if row.len() == 1 => Ok(row),
        [row] => Err(format!(
            "returned {} columns; a check returns one boolean column",
            row.len()
        )),
        [] => Err("returned no row; a check returns exactly one row".into()),
        _ => Err(format!(
            "returned {} rows; a check returns exactly one row",
            rows.len()
        )),
    }
}

/// What a check returned when its column was of another type.
fn not_boolean<R: sqlx::Row>(row: &R) -> String {
    use sqlx::{Column, TypeInfo};
    let name = row
        .columns()
        .first()
        .map_or("value", |c| c.type_info().name());
    format!("returned a {name}, not a boolean")
}

/// Why `statement` failed, pointing into the user's SQL: its first line,
/// the SQLSTATE, the server's message and (PostgreSQL) where in the
/// statement, as line and column of the statement, with the server's detail
/// and hint. Never sqlx's rendering, which appends the line of
/// PostgreSQL's own source code that raised the error. String literals of
/// the statement appear in none of it (they can hold passwords).
fn failure(statement: &str, e: &sqlx::Error) -> String {
    let first = crate::sql::first_line(statement);
    let Some(db) = e.as_database_error() else {
        return format!("({first}): {e}");
    };
    let code = db
        .code()
        .map(|c| format!("SQLSTATE {c}: "))
        .unwrap_or_default();
    let echo = |part: &str| crate::sql::scrubbed(part, statement);
    let mut text = format!("({first}): {code}{}", echo(db.message()));
    if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(sqlx::postgres::PgErrorPosition::Original(at)) = pg.position() {
            let (line, column) = line_column(statement, at);
            text.push_str(&format!(
                " at line {line}, column {column} of the statement"
            ));
        }
        for (label, part) in [("detail", pg.detail()), ("hint", pg.hint())] {
            if let Some(part) = part {
                text.push_str(&format!("; {label}: {}", echo(part)));
            }
        }
    }
    text
}

/// Line and column (from 1) of the `at`-th character (from 1) of `text`.
fn line_column(text: &str, at: usize) -> (usize, usize) {
    let before: Vec<char> = text.chars().take(at.saturating_sub(1)).collect();
    let line = 1 + before.iter().filter(|c| **c == '\n').count();
    let column = 1 + before.iter().rev().take_while(|c| **c != '\n').count();
    (line, column)
}

/// What a phase's runner was: a Job or inline statements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Runner {
    /// The Job of that name.
    Job(String),
    /// This many inline statements.
    Statements(usize),
}

/// Timeouts of inline SQL and checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Longest wait for a lock on a table.
    pub lock: Duration,
    /// Longest run of one statement or check.
    pub statement: Duration,
}

impl Target {
    /// The ledger row of `key`, creating the ledger table if absent.
    pub async fn ledger(
        &self,
        pools: &Pools,
        key: &LedgerKey,
    ) -> Result<Option<LedgerState>, DbError> {
        let result = on_engine!(self.ledger_pool(pools).await?, |p| ledger(&p, key));
        // Messages hold driver text; scrub it before it reaches status.
        match result.map_err(|e| self.error(e))? {
            Some(LedgerState::Failed(m)) => Ok(Some(LedgerState::Failed(self.scrub(&m)))),
            other => Ok(other),
        }
    }

    /// Claims the database for the Job `job` of `key` under the lock, unless
    /// another rollout runs a phase on it ([`DbError::Busy`]). Called before
    /// the Job is created, so two rollouts never start Jobs at once. The
    /// claim holds for `lease` (the Job's deadline): a Job that outlived it
    /// has been stopped by its own deadline, so the database is free.
    pub async fn claim_job(
        &self,
        pools: &Pools,
        key: &LedgerKey,
        job: &str,
        lease: Duration,
    ) -> Result<(), DbError> {
        let result = match self.ledger_pool(pools).await? {
            connect::Pool::Postgres(p) => {
                flow::claim::<postgres::Pg>(
                    &mut *p.acquire().await.map_err(|e| self.error(e))?,
                    key,
                    job,
                    lease,
                )
                .await
            }
            connect::Pool::Mysql(p) => {
                let mut session = mysql::Session::of(&p).await.map_err(|e| self.error(e))?;
                flow::claim::<mysql::My>(&mut session, key, job, lease).await
            }
        };
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(DbError::Busy(self.label.clone())),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Releases the claim of `key` whose Job the API server refused, so
    /// other rollouts need not wait for it.
    pub async fn release_claim(&self, pools: &Pools, key: &LedgerKey) -> Result<(), DbError> {
        let result = on_engine!(self.ledger_pool(pools).await?, |p| release(&p, key));
        result.map_err(|e| self.error(e))
    }

    /// Records that `key` started with `runner` (a claim becomes started;
    /// a finished row stays as it is).
    pub async fn record_start(
        &self,
        pools: &Pools,
        key: &LedgerKey,
        runner: &Runner,
    ) -> Result<(), DbError> {
        let result = on_engine!(self.ledger_pool(pools).await?, |p| record_start(
            &p, key, runner
        ));
        result.map_err(|e| self.error(e))
    }

    /// Records that `key` finished; `failure` is why it failed, if it did.
    pub async fn record_finish(
        &self,
        pools: &Pools,
        key: &LedgerKey,
        failure: Option<&str>,
    ) -> Result<(), DbError> {
        let result = on_engine!(self.ledger_pool(pools).await?, |p| record_finish(
            &p, key, failure
        ));
        result.map_err(|e| self.error(e))
    }

    /// Runs `statements` for `key` under the database lock and records the
    /// outcome in the ledger. A phase the ledger shows as succeeded is not
    /// run again. Statement failures are recorded, not returned: the next
    /// observation of the ledger reports them.
    pub async fn run_inline(
        &self,
        pools: &Pools,
        key: &LedgerKey,
        statements: &[String],
    ) -> Result<(), DbError> {
        // The statements may leave anything in their session (SET ROLE,
        // search_path, USE, session locks): its connection is closed after
        // the phase, never handed to a check, the ledger or another phase.
        let result = match self.ledger_pool(pools).await? {
            connect::Pool::Postgres(p) => {
                let mut conn = p.acquire().await.map_err(|e| self.error(e))?;
                conn.close_on_drop();
                flow::run_inline::<postgres::Pg>(&mut conn, key, statements, self.timeouts).await
            }
            connect::Pool::Mysql(p) => {
                let mut session = mysql::Session::of(&p).await.map_err(|e| self.error(e))?;
                session.conn.close_on_drop();
                flow::run_inline::<mysql::My>(&mut session, key, statements, self.timeouts).await
            }
        };
        match result {
            Ok(true) => Ok(()),
            Ok(false) => Err(DbError::Busy(self.label.clone())),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Which other rollout holds the database, if one does: one running
    /// inline SQL under the lock, or one whose migration Job is active (its
    /// ledger row says claimed or started, until the lease its claim was
    /// given). `namespace`/`rollout` name the asking rollout.
    pub async fn lock_holder(
        &self,
        pools: &Pools,
        namespace: &str,
        rollout: &str,
    ) -> Result<Option<String>, DbError> {
        let result = on_engine!(self.ledger_pool(pools).await?, |p| holder(
            &p, namespace, rollout
        ));
        result.map_err(|e| self.error(e))
    }

    /// Evaluates one check: its single boolean row. It runs on a
    /// connection of its own, closed afterwards (a check is the user's SQL
    /// and may change its session), under the server-side statement
    /// timeout; the client-side timer is a backstop a little later.
    pub async fn check(&self, pools: &Pools, sql: &str) -> Result<bool, DbError> {
        let limit = self.timeouts.statement;
        let run = async { on_engine!(pools.get(self), |p| check(&p, sql, limit)) };
        match tokio::time::timeout(limit + CHECK_BACKSTOP, run).await {
            Ok(Ok(value)) => value.map_err(DbError::CheckInvalid),
            Ok(Err(e)) => Err(self.error(e)),
            Err(_) => Err(DbError::Query(format!(
                "timed out after {:?}",
                self.timeouts.statement
            ))),
        }
    }

    /// The pool, with its ledger table in place.
    async fn ledger_pool(&self, pools: &Pools) -> Result<connect::Pool, DbError> {
        pools.with_ledger(self).await.map_err(|e| self.error(e))
    }

    /// Turns a driver error into a DbError without any credential in it.
    fn error(&self, e: sqlx::Error) -> DbError {
        let text = self.scrub(&e.to_string());
        // Login refused: PostgreSQL 28000/28P01, MySQL 1045 (28000).
        let login = e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c.starts_with("28") || c == "1045");
        match e {
            sqlx::Error::Database(_) if !login => DbError::Query(text),
            sqlx::Error::RowNotFound
            | sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnIndexOutOfBounds { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::Decode(_) => DbError::Query(text),
            _ => DbError::Connect {
                target: self.label.clone(),
                reason: text,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn positions_are_lines_and_columns_of_the_statement() {
        let statement = "SELECT\n  nope\nFROM users";
        assert_eq!(super::line_column(statement, 1), (1, 1));
        assert_eq!(super::line_column(statement, 10), (2, 3));
        assert_eq!(
            super::line_column("é = 1", 3),
            (1, 3),
            "characters, not bytes"
        );
    }
}
