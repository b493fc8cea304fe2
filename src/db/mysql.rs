//! Ledger, lock, inline SQL and checks on MySQL and MariaDB. DDL commits
//! implicitly there, so inline statements run one by one and the ledger
//! records how many were applied.

use super::flow::Engine;
use super::postgres::state;
use super::{LedgerKey, LedgerState, Runner, Timeouts};
use sqlx::{AssertSqlSafe, MySqlPool, Row};

const LEDGER_DDL: &str = "CREATE TABLE IF NOT EXISTS bellows_ledger (
  namespace VARCHAR(63) NOT NULL,
  rollout VARCHAR(253) NOT NULL,
  phase VARCHAR(16) NOT NULL,
  digest VARCHAR(16) NOT NULL,
  state VARCHAR(16) NOT NULL,
  started_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  finished_at TIMESTAMP(3) NULL,
  duration_ms BIGINT NULL,
  job_name VARCHAR(63) NULL,
  statements INT NULL,
  progress INT NOT NULL DEFAULT 0,
  message TEXT NULL,
  lease_until TIMESTAMP(3) NULL,
  PRIMARY KEY (namespace, rollout, phase, digest)
)";

/// One lock per database: phases of rollouts on it run one at a time.
const LOCK_NAME: &str = "CONCAT('bellows:', DATABASE())";

const WHERE_KEY: &str = "WHERE namespace = ? AND rollout = ? AND phase = ? AND digest = ?";

/// Creates the ledger table if absent (once per pool, see `Pools`).
pub(super) async fn ensure_ledger<'e, E: sqlx::MySqlExecutor<'e>>(
    db: E,
) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(LEDGER_DDL).execute(db).await.map(|_| ())
}

fn bind_key<'q>(
    q: sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>,
    key: &'q LedgerKey,
) -> sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments> {
    q.bind(&key.namespace)
        .bind(&key.rollout)
        .bind(key.step.as_str())
        .bind(&key.digest)
}

pub(super) async fn ledger(
    pool: &MySqlPool,
    key: &LedgerKey,
) -> Result<Option<LedgerState>, sqlx::Error> {
    let sql = format!("SELECT state, progress, message FROM bellows_ledger {WHERE_KEY}");
    let row = bind_key(sqlx::query(AssertSqlSafe(sql)), key)
        .fetch_optional(pool)
        .await?;
    Ok(row.map(|r| state(r.get("state"), r.get("progress"), r.get("message"))))
}

pub(super) async fn record_start(
    pool: &MySqlPool,
    key: &LedgerKey,
    runner: &Runner,
) -> Result<(), sqlx::Error> {
    insert_started(pool, key, runner).await
}

async fn insert_started<'e, E: sqlx::MySqlExecutor<'e>>(
    db: E,
    key: &LedgerKey,
    runner: &Runner,
) -> Result<(), sqlx::Error> {
    let (job, statements) = match runner {
        Runner::Job(name) => (Some(name.as_str()), None),
        Runner::Statements(n) => (None, Some(*n as i32)),
    };
    sqlx::query(
        "INSERT INTO bellows_ledger (namespace, rollout, phase, digest, state, job_name, statements)
         VALUES (?, ?, ?, ?, 'started', ?, ?)
         ON DUPLICATE KEY UPDATE state = IF(state = 'claimed', 'started', state)",
    )
    .bind(&key.namespace)
    .bind(&key.rollout)
    .bind(key.step.as_str())
    .bind(&key.digest)
    .bind(job)
    .bind(statements)
    .execute(db)
    .await
    .map(|_| ())
}

async fn finish<'e, E: sqlx::MySqlExecutor<'e>>(
    db: E,
    key: &LedgerKey,
    failure: Option<&str>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE bellows_ledger SET state = ?, message = ?, finished_at = CURRENT_TIMESTAMP(3),
           duration_ms = TIMESTAMPDIFF(MICROSECOND, started_at, CURRENT_TIMESTAMP(3)) DIV 1000 {WHERE_KEY}"
    );
    let q = sqlx::query(AssertSqlSafe(sql))
        .bind(if failure.is_some() {
            "failed"
        } else {
            "succeeded"
        })
        .bind(failure);
    bind_key(q, key).execute(db).await.map(|_| ())
}

pub(super) async fn record_finish(
    pool: &MySqlPool,
    key: &LedgerKey,
    failure: Option<&str>,
) -> Result<(), sqlx::Error> {
    finish(pool, key, failure).await
}

/// MySQL and MariaDB: a named lock (`GET_LOCK`); DDL commits implicitly,
/// so a phase's statements run one by one, the ledger recording how many
/// were applied.
pub(super) struct My;

impl Engine for My {
    type Conn = sqlx::MySqlConnection;

    async fn try_lock(conn: &mut Self::Conn) -> Result<bool, sqlx::Error> {
        let locked: Option<i64> =
            sqlx::query_scalar(AssertSqlSafe(format!("SELECT GET_LOCK({LOCK_NAME}, 0)")))
                .fetch_one(conn)
                .await?;
        Ok(locked == Some(1))
    }

    async fn unlock(conn: &mut Self::Conn) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!("SELECT RELEASE_LOCK({LOCK_NAME})")))
            .execute(conn)
            .await
            .map(|_| ())
    }

    async fn active_job(
        conn: &mut Self::Conn,
        namespace: &str,
        rollout: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        active_job(conn, namespace, rollout).await
    }

    async fn insert_claim(
        conn: &mut Self::Conn,
        key: &LedgerKey,
        job: &str,
        lease: std::time::Duration,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT IGNORE INTO bellows_ledger (namespace, rollout, phase, digest, state, job_name, lease_until)
             VALUES (?, ?, ?, ?, 'claimed', ?, NOW(3) + INTERVAL ? SECOND)",
        )
        .bind(&key.namespace)
        .bind(&key.rollout)
        .bind(key.step.as_str())
        .bind(&key.digest)
        .bind(job)
        .bind(lease.as_secs() as i64)
        .execute(conn)
        .await
        .map(|_| ())
    }

    /// MySQL names the holder from the ledger's `started` row instead.
    async fn name_holder(_: &mut Self::Conn, _: &LedgerKey) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn run_locked(
        conn: &mut Self::Conn,
        key: &LedgerKey,
        statements: &[String],
        t: Timeouts,
    ) -> Result<(), sqlx::Error> {
        run_locked(conn, key, statements, t).await
    }
}

/// Drops `key`'s claim (a Job that was never created): the database is
/// free again. A row that went on to `started` or finished stays.
pub(super) async fn release(pool: &MySqlPool, key: &LedgerKey) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM bellows_ledger
         WHERE namespace = ? AND rollout = ? AND phase = ? AND digest = ? AND state = 'claimed'",
    )
    .bind(&key.namespace)
    .bind(&key.rollout)
    .bind(key.step.as_str())
    .bind(&key.digest)
    .execute(pool)
    .await
    .map(|_| ())
}

async fn run_locked(
    conn: &mut sqlx::MySqlConnection,
    key: &LedgerKey,
    statements: &[String],
    t: Timeouts,
) -> Result<(), sqlx::Error> {
    let sql = format!("SELECT state FROM bellows_ledger {WHERE_KEY}");
    let existing: Option<String> = bind_key(sqlx::query(AssertSqlSafe(sql)), key)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.get("state"));
    if existing.is_some() {
        // Finished, or interrupted part-way: never run statements twice.
        return Ok(());
    }
    set_session(conn, t).await?;
    let total = statements.len();
    insert_started(&mut *conn, key, &Runner::Statements(total)).await?;
    for (i, statement) in statements.iter().enumerate() {
        let mut tries = 0;
        let failed = loop {
            tries += 1;
            match sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
                .execute(&mut *conn)
                .await
            {
                Ok(_) => break None,
                // A lock wait timeout or a deadlock undid the statement:
                // the next try may well pass.
                Err(e) if super::transient(&e) && tries < super::TRIES => {
                    tokio::time::sleep(super::retry_delay(tries)).await;
                }
                Err(e) => break Some(e),
            }
        };
        // What the statement may have changed of the session, before the
        // ledger is written on it.
        set_session(conn, t).await?;
        if let Some(e) = failed {
            let message = format!(
                "statement {} of {total} failed after {i} were applied (MySQL commits DDL one statement at a time){}: {}",
                i + 1,
                super::tries_note(tries),
                super::failure(statement, &e)
            );
            return finish(&mut *conn, key, Some(&message)).await;
        }
        let sql = format!("UPDATE bellows_ledger SET progress = ? {WHERE_KEY}");
        bind_key(sqlx::query(AssertSqlSafe(sql)).bind(i as i32 + 1), key)
            .execute(&mut *conn)
            .await?;
    }
    finish(&mut *conn, key, None).await
}

/// The session a phase's statements run in: autocommit (each statement
/// and each ledger write committed at once) and the phase's timeouts; set
/// before the first statement and again after each.
async fn set_session(conn: &mut sqlx::MySqlConnection, t: Timeouts) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET SESSION autocommit = 1, lock_wait_timeout = {}",
        t.lock.as_secs().max(1)
    )))
    .execute(&mut *conn)
    .await?;
    // MariaDB's per-statement limit; MySQL has no equivalent for DDL.
    let _ = sqlx::raw_sql(AssertSqlSafe(format!(
        "SET SESSION max_statement_time = {}",
        t.statement.as_secs_f64()
    )))
    .execute(&mut *conn)
    .await;
    Ok(())
}

pub(super) async fn lock_holder(pool: &MySqlPool) -> Result<Option<String>, sqlx::Error> {
    let used: Option<i64> =
        sqlx::query_scalar(AssertSqlSafe(format!("SELECT IS_USED_LOCK({LOCK_NAME})")))
            .fetch_one(pool)
            .await?;
    if used.is_none() {
        return Ok(None);
    }
    let row = sqlx::query(
        "SELECT namespace, rollout, phase FROM bellows_ledger
         WHERE state = 'started' AND statements IS NOT NULL ORDER BY started_at DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(Some(row.map_or_else(
        || "another connection".to_owned(),
        |r| {
            format!(
                "{}/{} {}",
                r.get::<String, _>(0),
                r.get::<String, _>(1),
                r.get::<String, _>(2)
            )
        },
    )))
}

pub(super) async fn active_job<'e, E: sqlx::MySqlExecutor<'e>>(
    db: E,
    namespace: &str,
    rollout: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CONCAT(namespace, '/', rollout, ' ', phase) FROM bellows_ledger
         WHERE state IN ('claimed', 'started') AND job_name IS NOT NULL AND NOT (namespace = ? AND rollout = ?)
           AND lease_until > NOW(3) ORDER BY started_at LIMIT 1",
    )
    .bind(namespace)
    .bind(rollout)
    .fetch_optional(db)
    .await
}

pub(super) async fn check(pool: &MySqlPool, sql: &str) -> Result<super::CheckValue, sqlx::Error> {
    // The check is the user's own SQL, run as written by design.
    let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(pool).await?;
    let row = match super::one_row(&rows) {
        Ok(row) => row,
        Err(invalid) => return Ok(Err(invalid)),
    };
    // MySQL has no boolean type: `count(*) = 0` is an integer 0 or 1.
    // (sqlx would read any integer as a boolean: only 0 and 1 are one.)
    let value: Option<Option<bool>> = match row.try_get::<Option<i64>, _>(0) {
        Ok(None) => Some(None),
        Ok(Some(n @ (0 | 1))) => Some(Some(n == 1)),
        Ok(Some(_)) => None,
        Err(_) => row.try_get::<Option<bool>, _>(0).ok(),
    };
    Ok(match value {
        Some(Some(b)) => Ok(b),
        Some(None) => Err(super::CHECK_NULL.to_owned()),
        None => Err(super::not_boolean(row)),
    })
}
