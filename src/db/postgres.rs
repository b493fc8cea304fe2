//! Ledger, lock, inline SQL and checks on PostgreSQL.

use super::flow::Engine;
use super::{LedgerKey, LedgerState, Runner, Timeouts};
use crate::sql::{self, Run};
use sqlx::{AssertSqlSafe, PgPool, Row};

const LEDGER_DDL: &str = "CREATE SCHEMA IF NOT EXISTS bellows;
CREATE TABLE IF NOT EXISTS bellows.ledger (
  namespace text NOT NULL,
  rollout text NOT NULL,
  phase text NOT NULL,
  digest text NOT NULL,
  state text NOT NULL,
  started_at timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz,
  duration_ms bigint,
  job_name text,
  statements integer,
  progress integer NOT NULL DEFAULT 0,
  message text,
  lease_until timestamptz,
  PRIMARY KEY (namespace, rollout, phase, digest)
)";

/// One lock per database: phases of rollouts on it run one at a time.
const LOCK_KEY: &str = "hashtext('bellows:' || current_database())";

/// Creates the ledger table if absent (once per pool, see `Pools`).
pub(super) async fn ensure_ledger<'e, E: sqlx::PgExecutor<'e>>(db: E) -> Result<(), sqlx::Error> {
    sqlx::raw_sql(LEDGER_DDL).execute(db).await.map(|_| ())
}

pub(super) async fn ledger(
    pool: &PgPool,
    key: &LedgerKey,
) -> Result<Option<LedgerState>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT state, progress, message FROM bellows.ledger
         WHERE namespace = $1 AND rollout = $2 AND phase = $3 AND digest = $4",
    )
    .bind(&key.namespace)
    .bind(&key.rollout)
    .bind(key.step.as_str())
    .bind(&key.digest)
    .fetch_optional(pool)
    .await?;
    Ok(row.map(|r| state(r.get("state"), r.get("progress"), r.get("message"))))
}

pub(super) fn state(state: &str, progress: i32, message: Option<String>) -> LedgerState {
    match state {
        "succeeded" => LedgerState::Succeeded,
        "failed" => LedgerState::Failed(message.unwrap_or_default()),
        "claimed" => LedgerState::Claimed,
        _ => LedgerState::Started { done: progress },
    }
}

pub(super) async fn record_start(
    pool: &PgPool,
    key: &LedgerKey,
    runner: &Runner,
) -> Result<(), sqlx::Error> {
    insert_started(pool, key, runner).await
}

async fn insert_started<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    key: &LedgerKey,
    runner: &Runner,
) -> Result<(), sqlx::Error> {
    let (job, statements) = match runner {
        Runner::Job(name) => (Some(name.as_str()), None),
        Runner::Statements(n) => (None, Some(*n as i32)),
    };
    sqlx::query(
        "INSERT INTO bellows.ledger (namespace, rollout, phase, digest, state, job_name, statements)
         VALUES ($1, $2, $3, $4, 'started', $5, $6)
         ON CONFLICT (namespace, rollout, phase, digest) DO UPDATE SET state = 'started'
         WHERE bellows.ledger.state = 'claimed'",
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

async fn finish<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    key: &LedgerKey,
    failure: Option<&str>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE bellows.ledger SET state = $5, message = $6, finished_at = now(),
           duration_ms = (extract(epoch FROM now() - started_at) * 1000)::bigint
         WHERE namespace = $1 AND rollout = $2 AND phase = $3 AND digest = $4",
    )
    .bind(&key.namespace)
    .bind(&key.rollout)
    .bind(key.step.as_str())
    .bind(&key.digest)
    .bind(if failure.is_some() {
        "failed"
    } else {
        "succeeded"
    })
    .bind(failure)
    .execute(db)
    .await
    .map(|_| ())
}

pub(super) async fn record_finish(
    pool: &PgPool,
    key: &LedgerKey,
    failure: Option<&str>,
) -> Result<(), sqlx::Error> {
    finish(pool, key, failure).await
}

/// PostgreSQL: an advisory lock; a phase's statements in one transaction,
/// the `started` row written inside it, so an interrupted run leaves no
/// trace and runs again; a failed one is recorded after the rollback.
pub(super) struct Pg;

impl Engine for Pg {
    type Conn = sqlx::PgConnection;

    async fn try_lock(conn: &mut Self::Conn) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT pg_try_advisory_lock({LOCK_KEY})"
        )))
        .fetch_one(conn)
        .await
    }

    async fn unlock(conn: &mut Self::Conn) -> Result<(), sqlx::Error> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT pg_advisory_unlock({LOCK_KEY})"
        )))
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
            "INSERT INTO bellows.ledger (namespace, rollout, phase, digest, state, job_name, lease_until)
             VALUES ($1, $2, $3, $4, 'claimed', $5, now() + make_interval(secs => $6)) ON CONFLICT DO NOTHING",
        )
        .bind(&key.namespace)
        .bind(&key.rollout)
        .bind(key.step.as_str())
        .bind(&key.digest)
        .bind(job)
        .bind(lease.as_secs_f64())
        .execute(conn)
        .await
        .map(|_| ())
    }

    async fn name_holder(conn: &mut Self::Conn, key: &LedgerKey) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT set_config('application_name', $1, false)")
            .bind(format!(
                "bellows {}/{} {}",
                key.namespace,
                key.rollout,
                key.step.as_str()
            ))
            .execute(conn)
            .await
            .map(|_| ())
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
pub(super) async fn release(pool: &PgPool, key: &LedgerKey) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM bellows.ledger
         WHERE namespace = $1 AND rollout = $2 AND phase = $3 AND digest = $4 AND state = 'claimed'",
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
    conn: &mut sqlx::PgConnection,
    key: &LedgerKey,
    statements: &[String],
    t: Timeouts,
) -> Result<(), sqlx::Error> {
    let done = sqlx::query_scalar::<_, String>(
        "SELECT state FROM bellows.ledger WHERE namespace = $1 AND rollout = $2 AND phase = $3 AND digest = $4",
    )
    .bind(&key.namespace)
    .bind(&key.rollout)
    .bind(key.step.as_str())
    .bind(&key.digest)
    .fetch_optional(&mut *conn)
    .await?;
    let groups = sql::groups(&sql::runs(crate::api::Engine::Postgres, statements));
    if groups.iter().all(|g| g.1 == Run::InTransaction) {
        if done.as_deref().is_some_and(|s| s != "started") {
            return Ok(());
        }
        return run_in_one_transaction(conn, key, statements, t).await;
    }
    // Some statements ran alone and stay: a row in any state means this
    // phase ran (or was interrupted), and it never runs again.
    if done.is_some() {
        return Ok(());
    }
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET lock_timeout = '{}ms'; SET statement_timeout = '{}ms'",
        t.lock.as_millis(),
        t.statement.as_millis()
    )))
    .execute(&mut *conn)
    .await?;
    // The connection is closed after the phase: nothing to reset.
    run_in_groups(conn, key, statements, &groups, t).await
}

/// A phase with statements PostgreSQL refuses in a transaction: each
/// group of the others in one transaction (tried again on a transient
/// failure), each of those alone, the ledger's `progress` advanced after
/// each, as on MySQL. A failure leaves the groups before it applied.
async fn run_in_groups(
    conn: &mut sqlx::PgConnection,
    key: &LedgerKey,
    statements: &[String],
    groups: &[(std::ops::Range<usize>, Run)],
    t: Timeouts,
) -> Result<(), sqlx::Error> {
    let total = statements.len();
    insert_started(&mut *conn, key, &Runner::Statements(total)).await?;
    for (range, run) in groups {
        let failed = match run {
            Run::Alone => {
                let statement = &statements[range.start];
                match sqlx::raw_sql(AssertSqlSafe(statement.as_str()))
                    .execute(&mut *conn)
                    .await
                {
                    Ok(_) => {
                        record(conn, key, Record::Progress(range.end)).await?;
                        None
                    }
                    Err(e) => {
                        let left = invalid_index(conn, statement).await?;
                        Some((
                            range.start,
                            e,
                            1,
                            "it ran alone, outside a transaction".to_owned() + &left,
                        ))
                    }
                }
            }
            Run::InTransaction => {
                let mut tries = 0;
                loop {
                    tries += 1;
                    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
                    let Err((i, e)) = run_all(&mut tx, &statements[range.clone()], t).await else {
                        as_login(&mut *tx).await?;
                        set_progress(&mut *tx, key, range.end).await?;
                        tx.commit().await?;
                        break None;
                    };
                    tx.rollback().await?;
                    if escaped(&e) {
                        let message = escape_message(range.start + i, total);
                        return record(conn, key, Record::Failed(total, message)).await;
                    }
                    if super::transient(&e) && tries < super::TRIES {
                        tokio::time::sleep(super::retry_delay(tries)).await;
                        continue;
                    }
                    let group = format!(
                        "its group, statements {}-{}, was rolled back",
                        range.start + 1,
                        range.end
                    );
                    break Some((range.start + i, e, tries, group));
                }
            }
        };
        if let Some((i, e, tries, what)) = failed {
            let message = format!(
                "statement {} of {total} failed after {} were applied ({what}){}: {}",
                i + 1,
                range.start,
                super::tries_note(tries),
                super::failure(&statements[i], &e)
            );
            return record(conn, key, Record::Failed(total, message)).await;
        }
    }
    record(conn, key, Record::Succeeded).await
}

/// After a failed statement that ran alone: a `CREATE INDEX CONCURRENTLY`
/// that fails leaves its index behind, INVALID (unused by queries, still
/// maintained on writes); what to run about it, or nothing.
async fn invalid_index(
    conn: &mut sqlx::PgConnection,
    statement: &str,
) -> Result<String, sqlx::Error> {
    let Some(name) = sql::created_index(statement) else {
        return Ok(String::new());
    };
    let invalid: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
         WHERE NOT i.indisvalid AND c.relname = $1)",
    )
    .bind(&name)
    .fetch_one(&mut *conn)
    .await?;
    Ok(if invalid {
        format!(
            "; it left the INVALID index {name}: run DROP INDEX CONCURRENTLY {name} before the phase runs again"
        )
    } else {
        String::new()
    })
}

/// Makes the rest of the transaction run as the login user, whatever
/// role (or, for a superuser, session authorization) the phase's
/// statements set: bellows' ledger writes after them are its own, and at
/// the transaction's end the user's setting is back.
async fn as_login<'e, E: sqlx::PgExecutor<'e>>(db: E) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("SET LOCAL SESSION AUTHORIZATION DEFAULT; SET LOCAL ROLE NONE")
        .execute(db)
        .await
        .map(|_| ())
}

/// A ledger write on a phase's connection outside the phase's
/// transactions.
enum Record {
    /// The first n statements were applied.
    Progress(usize),
    /// The phase of n statements succeeded.
    Succeeded,
    /// The phase of n statements failed, and why.
    Failed(usize, String),
}

/// Writes `what` for `key` in a transaction of its own, as the login
/// user ([`as_login`]).
async fn record(
    conn: &mut sqlx::PgConnection,
    key: &LedgerKey,
    what: Record,
) -> Result<(), sqlx::Error> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    as_login(&mut *tx).await?;
    match what {
        Record::Progress(done) => set_progress(&mut *tx, key, done).await?,
        Record::Succeeded => finish(&mut *tx, key, None).await?,
        Record::Failed(total, message) => {
            insert_started(&mut *tx, key, &Runner::Statements(total)).await?;
            finish(&mut *tx, key, Some(&message)).await?;
        }
    }
    tx.commit().await
}

/// Records that the first `done` statements were applied.
async fn set_progress<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    key: &LedgerKey,
    done: usize,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE bellows.ledger SET progress = $5
         WHERE namespace = $1 AND rollout = $2 AND phase = $3 AND digest = $4",
    )
    .bind(&key.namespace)
    .bind(&key.rollout)
    .bind(key.step.as_str())
    .bind(&key.digest)
    .bind(done as i32)
    .execute(db)
    .await
    .map(|_| ())
}

/// A phase whose statements all run in one transaction, the `started`
/// row written inside it: all or nothing, and an interrupted run leaves no
/// trace and runs again. A statement that ends the transaction itself is
/// caught by [`guard`] and fails the phase, recorded outside it.
async fn run_in_one_transaction(
    conn: &mut sqlx::PgConnection,
    key: &LedgerKey,
    statements: &[String],
    t: Timeouts,
) -> Result<(), sqlx::Error> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET LOCAL lock_timeout = '{}ms'; SET LOCAL statement_timeout = '{}ms'",
            t.lock.as_millis(),
            t.statement.as_millis()
        )))
        .execute(&mut *tx)
        .await?;
        insert_started(&mut *tx, key, &Runner::Statements(statements.len())).await?;
        let Err((i, e)) = run_all(&mut tx, statements, t).await else {
            as_login(&mut *tx).await?;
            finish(&mut *tx, key, None).await?;
            return tx.commit().await;
        };
        tx.rollback().await?;
        if escaped(&e) {
            let message = escape_message(i, statements.len());
            return record(conn, key, Record::Failed(statements.len(), message)).await;
        }
        // A lock not granted in time, a deadlock or a serialization
        // failure: nothing was applied, and the next try may well pass.
        if super::transient(&e) && tries < super::TRIES {
            tokio::time::sleep(super::retry_delay(tries)).await;
            continue;
        }
        let message = format!(
            "statement {} of {} failed, nothing applied{}: {}",
            i + 1,
            statements.len(),
            super::tries_note(tries),
            super::failure(&statements[i], &e)
        );
        return record(conn, key, Record::Failed(statements.len(), message)).await;
    }
}

/// Runs `statements` in `tx`; the index and error of the first that fails.
/// Each is sent with [`guard`] appended, in the same query string.
async fn run_all(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    statements: &[String],
    t: Timeouts,
) -> Result<(), (usize, sqlx::Error)> {
    let guard = guard(tx, t).await.map_err(|e| (0, e))?;
    for (i, statement) in statements.iter().enumerate() {
        sqlx::raw_sql(AssertSqlSafe(format!("{statement}\n;{guard}")))
            .execute(&mut **tx)
            .await
            .map_err(|e| (i, e))?;
    }
    Ok(())
}

/// SQLSTATE of the error [`guard`] raises.
const ESCAPED: &str = "BLW01";

/// What follows each statement of a transaction, in the same query
/// string: it fails (SQLSTATE [`ESCAPED`]) unless the statement left the
/// phase's transaction open, and sets the phase's timeouts again.
///
/// A statement that ends the transaction (a `COMMIT` or `ROLLBACK` the
/// analyser could not see) would leave what follows it in the string to
/// run in an implicit transaction of its own, committed at the end of the
/// string, and every later statement in autocommit. The guard's error
/// rolls that implicit transaction back and stops the phase: after a
/// `ROLLBACK` nothing is applied, after a `COMMIT` what it committed
/// (the phase's `started` row with it) stays, and the phase is recorded
/// failed. It is in the same string so that no crash of the operator can
/// fall between the statement and the guard.
async fn guard(tx: &mut sqlx::PgConnection, t: Timeouts) -> Result<String, sqlx::Error> {
    let xid: i64 = sqlx::query_scalar("SELECT pg_catalog.txid_current()")
        .fetch_one(&mut *tx)
        .await?;
    Ok(format!(
        "DO $bellows_guard$ BEGIN
  IF pg_catalog.txid_current_if_assigned() IS DISTINCT FROM {xid} THEN
    RAISE EXCEPTION USING ERRCODE = '{ESCAPED}',
      MESSAGE = 'the statement ended the phase''s transaction (a COMMIT, ROLLBACK or the like)';
  END IF;
  PERFORM pg_catalog.set_config('lock_timeout', '{}ms', true),
    pg_catalog.set_config('statement_timeout', '{}ms', true);
END $bellows_guard$",
        t.lock.as_millis(),
        t.statement.as_millis()
    ))
}

/// Whether `e` is [`guard`]'s: the statement ended the transaction.
fn escaped(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == ESCAPED)
}

/// Why a phase stopped when statement `i` (from 0) of `total` ended its
/// transaction.
fn escape_message(i: usize, total: usize) -> String {
    format!(
        "statement {} of {total} ended the phase's transaction itself (a COMMIT, ROLLBACK or the like that bellows could not read in it): what it committed before that stays applied, everything after was rolled back and the phase stopped; check the schema, repair it by hand and change the spec",
        i + 1
    )
}

/// Which other rollout holds the database: one running inline SQL under
/// the lock, or one with an active Job claim.
pub(super) async fn holder(
    pool: &PgPool,
    namespace: &str,
    rollout: &str,
) -> Result<Option<String>, sqlx::Error> {
    match lock_holder(pool).await? {
        None => active_job(pool, namespace, rollout).await,
        held => Ok(held),
    }
}

async fn lock_holder(pool: &PgPool) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND a.application_name LIKE 'bellows %' LIMIT 1",
    )
    .fetch_optional(pool)
    .await
    .map(|h: Option<String>| h.map(|h| h.trim_start_matches("bellows ").to_owned()))
}

pub(super) async fn active_job<'e, E: sqlx::PgExecutor<'e>>(
    db: E,
    namespace: &str,
    rollout: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT namespace || '/' || rollout || ' ' || phase FROM bellows.ledger
         WHERE state IN ('claimed', 'started') AND job_name IS NOT NULL AND NOT (namespace = $1 AND rollout = $2)
           AND lease_until > now() ORDER BY started_at LIMIT 1",
    )
    .bind(namespace)
    .bind(rollout)
    .fetch_optional(db)
    .await
}

pub(super) async fn check(
    pool: &PgPool,
    sql: &str,
    limit: std::time::Duration,
) -> Result<super::CheckValue, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    conn.close_on_drop();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "SET statement_timeout = '{}ms'",
        limit.as_millis()
    )))
    .execute(&mut *conn)
    .await?;
    // The check is the user's own SQL, run as written by design.
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    let row = match super::one_row(&rows) {
        Ok(row) => row,
        Err(invalid) => return Ok(Err(invalid)),
    };
    Ok(match row.try_get::<Option<bool>, _>(0) {
        Ok(Some(b)) => Ok(b),
        Ok(None) => Err(super::CHECK_NULL.to_owned()),
        Err(_) => Err(super::not_boolean(row)),
    })
}
