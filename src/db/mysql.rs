//! Ledger, lock, inline SQL and checks on MySQL and MariaDB. DDL commits
//! implicitly there, so inline statements run one by one and the ledger
//! records how many were applied.

use super::flow::Engine;
use super::postgres::state;
use super::{LedgerKey, LedgerState, Runner, Timeouts};
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, MySql, MySqlPool, Row};

/// The ledger's columns (`CREATE TABLE IF NOT EXISTS <table> ...`).
const LEDGER_COLUMNS: &str = "(
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

/// Where the ledger and the lock are: named from the database the target
/// names (its URL's path or `spec.database.database`), never from the
/// session's current database, which a phase's `USE other` changes.
pub(super) struct Names {
    /// The ledger table, qualified: `` `shop`.`bellows_ledger` ``.
    table: String,
    /// The lock, one per database: phases of rollouts on it run one at a
    /// time (`bellows:shop`, as `CONCAT('bellows:', DATABASE())` was).
    lock: String,
}

impl Names {
    /// The names for the database `pool` connects to.
    pub(super) fn of(pool: &MySqlPool) -> Result<Names, sqlx::Error> {
        let options = pool.connect_options();
        let database = options.get_database().ok_or_else(|| {
            sqlx::Error::Configuration(
                "the MySQL connection names no database (bellows keeps its ledger in the one it migrates)".into(),
            )
        })?;
        Ok(Names {
            table: format!("`{}`.`bellows_ledger`", database.replace('`', "``")),
            lock: format!("bellows:{database}"),
        })
    }
}

/// A connection of the pool with the names of its database: what a
/// phase, a claim and the lock run on.
pub(super) struct Session {
    pub(super) conn: PoolConnection<MySql>,
    pub(super) names: Names,
}

impl Session {
    pub(super) async fn of(pool: &MySqlPool) -> Result<Session, sqlx::Error> {
        Ok(Session {
            names: Names::of(pool)?,
            conn: pool.acquire().await?,
        })
    }
}

const WHERE_KEY: &str = "WHERE namespace = ? AND rollout = ? AND phase = ? AND digest = ?";

/// Creates the ledger table if absent (once per pool, see `Pools`).
pub(super) async fn ensure_ledger(pool: &MySqlPool) -> Result<(), sqlx::Error> {
    let table = Names::of(pool)?.table;
    let ddl = format!("CREATE TABLE IF NOT EXISTS {table} {LEDGER_COLUMNS}");
    sqlx::raw_sql(AssertSqlSafe(ddl))
        .execute(pool)
        .await
        .map(|_| ())
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
    let table = Names::of(pool)?.table;
    let sql = format!("SELECT state, progress, message FROM {table} {WHERE_KEY}");
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
    insert_started(pool, &Names::of(pool)?.table, key, runner).await
}

async fn insert_started<'e, E: sqlx::MySqlExecutor<'e>>(
    db: E,
    table: &str,
    key: &LedgerKey,
    runner: &Runner,
) -> Result<(), sqlx::Error> {
    let (job, statements) = match runner {
        Runner::Job(name) => (Some(name.as_str()), None),
        Runner::Statements(n) => (None, Some(*n as i32)),
    };
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {table} (namespace, rollout, phase, digest, state, job_name, statements)
         VALUES (?, ?, ?, ?, 'started', ?, ?)
         ON DUPLICATE KEY UPDATE state = IF(state = 'claimed', 'started', state)"
    )))
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
    table: &str,
    key: &LedgerKey,
    failure: Option<&str>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE {table} SET state = ?, message = ?, finished_at = CURRENT_TIMESTAMP(3),
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
    finish(pool, &Names::of(pool)?.table, key, failure).await
}

/// MySQL and MariaDB: a named lock (`GET_LOCK`); DDL commits implicitly,
/// so a phase's statements run one by one, the ledger recording how many
/// were applied.
pub(super) struct My;

impl Engine for My {
    type Conn = Session;

    async fn try_lock(s: &mut Self::Conn) -> Result<bool, sqlx::Error> {
        let locked: Option<i64> = sqlx::query_scalar("SELECT GET_LOCK(?, 0)")
            .bind(&s.names.lock)
            .fetch_one(&mut *s.conn)
            .await?;
        Ok(locked == Some(1))
    }

    async fn unlock(s: &mut Self::Conn) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT RELEASE_LOCK(?)")
            .bind(&s.names.lock)
            .execute(&mut *s.conn)
            .await
            .map(|_| ())
    }

    async fn active_job(
        s: &mut Self::Conn,
        namespace: &str,
        rollout: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        active_job(&mut *s.conn, &s.names.table, namespace, rollout).await
    }

    async fn insert_claim(
        s: &mut Self::Conn,
        key: &LedgerKey,
        job: &str,
        lease: std::time::Duration,
    ) -> Result<(), sqlx::Error> {
        let table = &s.names.table;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT IGNORE INTO {table} (namespace, rollout, phase, digest, state, job_name, lease_until)
             VALUES (?, ?, ?, ?, 'claimed', ?, NOW(3) + INTERVAL ? SECOND)"
        )))
        .bind(&key.namespace)
        .bind(&key.rollout)
        .bind(key.step.as_str())
        .bind(&key.digest)
        .bind(job)
        .bind(lease.as_secs() as i64)
        .execute(&mut *s.conn)
        .await
        .map(|_| ())
    }

    /// MySQL names the holder from the ledger's `started` row instead.
    async fn name_holder(_: &mut Self::Conn, _: &LedgerKey) -> Result<(), sqlx::Error> {
        Ok(())
    }

    async fn run_locked(
        s: &mut Self::Conn,
        key: &LedgerKey,
        statements: &[String],
        t: Timeouts,
    ) -> Result<(), sqlx::Error> {
        run_locked(&mut s.conn, &s.names.table, key, statements, t).await
    }
}

/// Drops `key`'s claim (a Job that was never created): the database is
/// free again. A row that went on to `started` or finished stays.
pub(super) async fn release(pool: &MySqlPool, key: &LedgerKey) -> Result<(), sqlx::Error> {
    let table = Names::of(pool)?.table;
    sqlx::query(AssertSqlSafe(format!(
        "DELETE FROM {table}
         WHERE namespace = ? AND rollout = ? AND phase = ? AND digest = ? AND state = 'claimed'"
    )))
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
    table: &str,
    key: &LedgerKey,
    statements: &[String],
    t: Timeouts,
) -> Result<(), sqlx::Error> {
    let sql = format!("SELECT state FROM {table} {WHERE_KEY}");
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
    insert_started(&mut *conn, table, key, &Runner::Statements(total)).await?;
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
            return finish(&mut *conn, table, key, Some(&message)).await;
        }
        let sql = format!("UPDATE {table} SET progress = ? {WHERE_KEY}");
        bind_key(sqlx::query(AssertSqlSafe(sql)).bind(i as i32 + 1), key)
            .execute(&mut *conn)
            .await?;
    }
    finish(&mut *conn, table, key, None).await
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

/// Which other rollout holds the database: one running inline SQL under
/// the lock, or one with an active Job claim.
pub(super) async fn holder(
    pool: &MySqlPool,
    namespace: &str,
    rollout: &str,
) -> Result<Option<String>, sqlx::Error> {
    let names = Names::of(pool)?;
    match lock_holder(pool, &names).await? {
        None => active_job(pool, &names.table, namespace, rollout).await,
        held => Ok(held),
    }
}

async fn lock_holder(pool: &MySqlPool, names: &Names) -> Result<Option<String>, sqlx::Error> {
    let Names { table, lock } = names;
    let used: Option<i64> = sqlx::query_scalar("SELECT IS_USED_LOCK(?)")
        .bind(lock)
        .fetch_one(pool)
        .await?;
    if used.is_none() {
        return Ok(None);
    }
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT namespace, rollout, phase FROM {table}
         WHERE state = 'started' AND statements IS NOT NULL ORDER BY started_at DESC LIMIT 1"
    )))
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
    table: &str,
    namespace: &str,
    rollout: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT CONCAT(namespace, '/', rollout, ' ', phase) FROM {table}
         WHERE state IN ('claimed', 'started') AND job_name IS NOT NULL AND NOT (namespace = ? AND rollout = ?)
           AND lease_until > NOW(3) ORDER BY started_at LIMIT 1"
    )))
    .bind(namespace)
    .bind(rollout)
    .fetch_optional(db)
    .await
}

pub(super) async fn check(
    pool: &MySqlPool,
    sql: &str,
    limit: std::time::Duration,
) -> Result<super::CheckValue, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    conn.close_on_drop();
    // The server-side limit: MariaDB's for any statement, MySQL's for a
    // SELECT; each server refuses the other's variable.
    for setting in [
        format!("SET SESSION max_statement_time = {}", limit.as_secs_f64()),
        format!("SET SESSION max_execution_time = {}", limit.as_millis()),
    ] {
        let _ = sqlx::raw_sql(AssertSqlSafe(setting))
            .execute(&mut *conn)
            .await;
    }
    // The check is the user's own SQL, run as written by design.
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
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
