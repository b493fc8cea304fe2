//! What bellows does with a database, written once for both engines: run a
//! body under the database lock (and always unlock), claim the database
//! for a Job, run an inline phase. [`Engine`] holds only what differs
//! between PostgreSQL and MySQL: the SQL text, how the lock is taken, and
//! how statements run (one transaction, or one by one with progress).

use super::{LedgerKey, Timeouts};
use std::time::Duration;

/// What differs between the engines.
pub(super) trait Engine {
    /// A connection of this engine.
    type Conn: Send;

    /// Takes the database's lock without waiting; false when another
    /// session holds it.
    async fn try_lock(conn: &mut Self::Conn) -> Result<bool, sqlx::Error>;

    /// Releases the lock.
    async fn unlock(conn: &mut Self::Conn) -> Result<(), sqlx::Error>;

    /// Which other rollout's Job holds the database (a live claim).
    async fn active_job(
        conn: &mut Self::Conn,
        namespace: &str,
        rollout: &str,
    ) -> Result<Option<String>, sqlx::Error>;

    /// Writes `key`'s claim for `job`, held for `lease`.
    async fn insert_claim(
        conn: &mut Self::Conn,
        key: &LedgerKey,
        job: &str,
        lease: Duration,
    ) -> Result<(), sqlx::Error>;

    /// Names this session as `key`'s, for other rollouts' `lock_holder`.
    async fn name_holder(conn: &mut Self::Conn, key: &LedgerKey) -> Result<(), sqlx::Error>;

    /// Runs `statements` as `key`'s phase and records the outcome; called
    /// under the lock.
    async fn run_locked(
        conn: &mut Self::Conn,
        key: &LedgerKey,
        statements: &[String],
        t: Timeouts,
    ) -> Result<(), sqlx::Error>;
}

/// Runs `body` under the database lock, unless another rollout holds the
/// lock or runs a Job on the database (then false, and `body` never runs).
/// The lock is released whatever `body` returned.
async fn when_free<E: Engine>(
    conn: &mut E::Conn,
    key: &LedgerKey,
    body: impl AsyncFnOnce(&mut E::Conn) -> Result<(), sqlx::Error>,
) -> Result<bool, sqlx::Error> {
    if !E::try_lock(conn).await? {
        return Ok(false);
    }
    let result = async {
        if E::active_job(conn, &key.namespace, &key.rollout)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        body(conn).await.map(|()| true)
    }
    .await;
    let unlocked = E::unlock(conn).await;
    let ran = result?;
    unlocked?;
    Ok(ran)
}

/// Claims the database for `key`'s Job under the lock; false when another
/// rollout runs a phase on it. The claim becomes `started` once the Job
/// exists (`record_start`).
pub(super) async fn claim<E: Engine>(
    conn: &mut E::Conn,
    key: &LedgerKey,
    job: &str,
    lease: Duration,
) -> Result<bool, sqlx::Error> {
    when_free::<E>(conn, key, async |conn| {
        E::insert_claim(conn, key, job, lease).await
    })
    .await
}

/// Runs `key`'s inline statements under the lock; false when another
/// rollout holds the lock or runs a Job on the database.
pub(super) async fn run_inline<E: Engine>(
    conn: &mut E::Conn,
    key: &LedgerKey,
    statements: &[String],
    t: Timeouts,
) -> Result<bool, sqlx::Error> {
    E::name_holder(conn, key).await?;
    when_free::<E>(conn, key, async |conn| {
        E::run_locked(conn, key, statements, t).await
    })
    .await
}
