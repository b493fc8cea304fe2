//! `src/db` against real servers: PostgreSQL 15 and MariaDB started from the
//! system binaries in temp dirs, one server per test (no shared state).

use bellows_testkit::{mariadb, postgres, process, wait};

use bellows::api::{DatabaseSpec, Step};
use bellows::db::{DbError, LedgerKey, LedgerState, Pools, Runner, Target, build};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};
use std::time::Duration;

const PG_PASSWORD: &str = "pg-test-pw-91c2";

/// A claim's lease that outlasts any test.
const HOUR: Duration = Duration::from_secs(3600);

fn key(rollout: &str, step: Step) -> LedgerKey {
    LedgerKey {
        namespace: "shop".into(),
        rollout: rollout.into(),
        step,
        digest: "d1".into(),
    }
}

fn target(engine: &str, url: &str) -> Target {
    let spec: DatabaseSpec =
        serde_json::from_value(json!({"engine": engine, "secretRef": {"name": "shop-db", "key": "url"}, "lockTimeout": "2s"}))
            .unwrap();
    build(&spec, Some(url.to_owned()), None, None).unwrap()
}

fn statements(s: &[&str]) -> Vec<String> {
    s.iter().map(|x| x.to_string()).collect()
}

/// Runs `sql` through a fresh connection and returns the first column of
/// the first row as text.
async fn scalar(url: &str, sql: &str) -> String {
    if url.starts_with("mysql") {
        let mut c = sqlx::MySqlConnection::connect(url).await.unwrap();
        let v: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut c)
            .await
            .unwrap();
        v.unwrap_or_default()
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        let v: Option<String> = sqlx::query_scalar(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut c)
            .await
            .unwrap();
        v.unwrap_or_default()
    }
}

async fn pg() -> (tempfile::TempDir, postgres::Postgres, String) {
    let dir = tempfile::Builder::new()
        .prefix("bellows-db-")
        .tempdir()
        .unwrap();
    let path = postgres::shared_dir(dir.path());
    let pg = postgres::Postgres::start(&path, None).await;
    pg.create_database("shop");
    pg.require_password(PG_PASSWORD);
    let url = format!(
        "postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{}/shop",
        pg.port
    );
    (dir, pg, url)
}

async fn maria() -> (tempfile::TempDir, mariadb::MariaDb, String) {
    let dir = tempfile::Builder::new()
        .prefix("bellows-db-")
        .tempdir()
        .unwrap();
    let db = mariadb::MariaDb::start(dir.path()).await;
    let url = db.database("shop", mariadb::PASSWORD);
    (dir, db, url)
}

/// Runs `sql` as the inline phase `k` and asserts the ledger says it
/// succeeded.
async fn succeeds(t: &Target, pools: &Pools, k: &LedgerKey, sql: &[&str]) {
    t.run_inline(pools, k, &statements(sql)).await.unwrap();
    assert_eq!(
        t.ledger(pools, k).await.unwrap(),
        Some(LedgerState::Succeeded),
        "{sql:?}"
    );
}

/// Inline expand then contract; a second run of a finished phase is a no-op.
async fn inline_phases(engine: &str, url: &str) {
    let t = target(engine, url);
    let pools = Pools::default();
    let expand = key("users", Step::Expand);
    t.run_inline(
        &pools,
        &expand,
        &statements(&[
            "CREATE TABLE users (id int, full_name varchar(100))",
            "ALTER TABLE users ADD COLUMN display_name varchar(100)",
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        t.ledger(&pools, &expand).await.unwrap(),
        Some(LedgerState::Succeeded)
    );
    // Ran exactly once: a re-run would fail on CREATE TABLE.
    t.run_inline(
        &pools,
        &expand,
        &statements(&["CREATE TABLE users (id int)"]),
    )
    .await
    .unwrap();
    assert_eq!(
        t.ledger(&pools, &expand).await.unwrap(),
        Some(LedgerState::Succeeded)
    );
    let contract = key("users", Step::Contract);
    succeeds(
        &t,
        &pools,
        &contract,
        &["ALTER TABLE users DROP COLUMN full_name"],
    )
    .await;
    let columns = scalar(url, "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'full_name'").await;
    assert_eq!(columns, "0");
}

/// Checks: true, false and an erroring query.
async fn checks(engine: &str, url: &str) {
    let t = target(engine, url);
    let pools = Pools::default();
    assert_eq!(t.check(&pools, "SELECT 1 = 1").await, Ok(true));
    assert_eq!(
        t.check(
            &pools,
            "SELECT COUNT(*) = 1 FROM (SELECT 1 AS x UNION ALL SELECT 2) AS t"
        )
        .await,
        Ok(false)
    );
    let err = t
        .check(&pools, "SELECT COUNT(*) = 0 FROM no_such_table")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DbError::Query(m) if m.contains("no_such_table")),
        "{err:?}"
    );
    // Ran, but not one boolean row: CheckInvalid, saying what it got.
    for (sql, says) in [
        (
            "SELECT 1 = 1 FROM (SELECT 1 AS x) AS t WHERE x = 2",
            "returned no row",
        ),
        (
            "SELECT x = 1 FROM (SELECT 1 AS x UNION ALL SELECT 2) AS t",
            "returned 2 rows",
        ),
        ("SELECT NULL = 1", "returned NULL"),
        ("SELECT 'yes'", "not a boolean"),
        ("SELECT 1 = 1, 2 = 2", "returned 2 columns"),
    ] {
        let got = t.check(&pools, sql).await;
        assert!(
            matches!(&got, Err(DbError::CheckInvalid(m)) if m.contains(says)),
            "{engine}: {sql}: {got:?}"
        );
        assert_eq!(got.unwrap_err().reason().as_str(), "CheckInvalid");
    }
    if engine == "mysql" {
        // MySQL's comparisons are integers 0 and 1; another count is not.
        assert_eq!(t.check(&pools, "SELECT 1 = 1").await, Ok(true));
        let five = t.check(&pools, "SELECT 5").await;
        assert!(
            matches!(&five, Err(DbError::CheckInvalid(m)) if m.contains("not a boolean")),
            "{five:?}"
        );
    }
}

/// A wrong password and an unreachable host give a clear error that names
/// the Secret and never holds the password.
async fn bad_connections(engine: &str, url: &str, password: &str) {
    let pools = Pools::default();
    let wrong = url.replace(password, "wrong-password-xyz");
    let err = target(engine, &wrong)
        .check(&pools, "SELECT 1 = 1")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.reason().as_str(), "DatabaseUnavailable", "{text}");
    assert!(text.contains("shop-db/url"), "{text}");
    assert!(
        !text.contains("wrong-password-xyz") && !text.contains(password),
        "{text}"
    );
    let port = url.rsplit_once(':').unwrap().1.split('/').next().unwrap();
    let unreachable = url.replace(&format!(":{port}/"), &format!(":{}/", process::free_port()));
    let err = target(engine, &unreachable)
        .check(&pools, "SELECT 1 = 1")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.reason().as_str(), "DatabaseUnavailable", "{text}");
    assert!(!text.contains(password), "{text}");
}

/// The ledger survives the rollout: a new operator (fresh pools, fresh
/// target) sees a Job phase that finished.
async fn ledger_survives_recreate(engine: &str, url: &str) {
    let k = key("recreated", Step::Expand);
    {
        let t = target(engine, url);
        let pools = Pools::default();
        assert_eq!(t.ledger(&pools, &k).await.unwrap(), None);
        t.record_start(&pools, &k, &Runner::Job("recreated-expand-d1".into()))
            .await
            .unwrap();
        assert_eq!(
            t.ledger(&pools, &k).await.unwrap(),
            Some(LedgerState::Started { done: 0 })
        );
        t.record_finish(&pools, &k, None).await.unwrap();
    }
    let t = target(engine, url);
    assert_eq!(
        t.ledger(&Pools::default(), &k).await.unwrap(),
        Some(LedgerState::Succeeded)
    );
}

/// Two rollouts on one database: while one runs, the other is told the
/// database is busy and who holds it.
async fn rollouts_serialize(engine: &str, url: &str, sleep: &str) {
    let t = target(engine, url);
    let (pools_a, pools_b) = (Pools::default(), Pools::default());
    let first = key("first", Step::Expand);
    let slow = statements(&[sleep]);
    let running = t.run_inline(&pools_a, &first, &slow);
    let other = async {
        // MySQL: between GET_LOCK and the first rollout's ledger row the
        // holder is only "another connection"; it must be named soon after.
        wait::until(
            "the first rollout named as the lock holder",
            Duration::from_secs(10),
            || async {
                t.lock_holder(&pools_b, "shop", "second")
                    .await
                    .unwrap()
                    .filter(|h| h.contains("shop/first"))
            },
        )
        .await;
        t.run_inline(
            &pools_b,
            &key("second", Step::Expand),
            &statements(&["SELECT 1"]),
        )
        .await
    };
    let (a, b) = tokio::join!(running, other);
    a.unwrap();
    assert!(matches!(b, Err(DbError::Busy(_))), "{b:?}");
    assert_eq!(
        t.lock_holder(&pools_b, "shop", "second").await.unwrap(),
        None,
        "released after the run"
    );
    t.run_inline(
        &pools_b,
        &key("second", Step::Expand),
        &statements(&["SELECT 1"]),
    )
    .await
    .unwrap();

    // A migration Job claims the database under the lock before it exists;
    // another rollout's claim or inline run is then refused, and the Job's
    // rollout is named as the holder until its phase is recorded finished.
    let job = key("jobber", Step::Contract);
    t.claim_job(&pools_a, &job, "jobber-contract-d1", HOUR)
        .await
        .unwrap();
    assert_eq!(
        t.ledger(&pools_a, &job).await.unwrap(),
        Some(LedgerState::Claimed)
    );
    let other = t
        .claim_job(
            &pools_b,
            &key("third", Step::Contract),
            "third-contract-d1",
            HOUR,
        )
        .await;
    assert!(matches!(other, Err(DbError::Busy(_))), "{other:?}");
    let inline = t
        .run_inline(
            &pools_b,
            &key("third", Step::Expand),
            &statements(&["SELECT 1"]),
        )
        .await;
    assert!(matches!(inline, Err(DbError::Busy(_))), "{inline:?}");
    t.record_start(&pools_a, &job, &Runner::Job("jobber-contract-d1".into()))
        .await
        .unwrap();
    assert_eq!(
        t.ledger(&pools_a, &job).await.unwrap(),
        Some(LedgerState::Started { done: 0 })
    );
    let holder = t.lock_holder(&pools_b, "shop", "third").await.unwrap();
    assert_eq!(holder.as_deref(), Some("shop/jobber contract"));
    assert_eq!(
        t.lock_holder(&pools_b, "shop", "jobber").await.unwrap(),
        None,
        "not held against itself"
    );
    t.record_finish(&pools_a, &job, None).await.unwrap();
    assert_eq!(
        t.lock_holder(&pools_b, "shop", "third").await.unwrap(),
        None
    );
    t.claim_job(
        &pools_b,
        &key("third", Step::Contract),
        "third-contract-d1",
        HOUR,
    )
    .await
    .unwrap();

    // A claim whose Job the API server refused is released at once: the
    // next rollout need not wait for it, and the row is gone.
    let refused = key("third", Step::Contract);
    t.release_claim(&pools_b, &refused).await.unwrap();
    assert_eq!(t.ledger(&pools_b, &refused).await.unwrap(), None);
    t.claim_job(
        &pools_a,
        &key("fourth", Step::Expand),
        "fourth-expand-d1",
        HOUR,
    )
    .await
    .unwrap();
    // A claim holds the database only for its lease (its Job's deadline):
    // one whose lease ran out blocks nobody.
    t.release_claim(&pools_a, &key("fourth", Step::Expand))
        .await
        .unwrap();
    t.claim_job(
        &pools_a,
        &key("fourth", Step::Expand),
        "fourth-expand-d1",
        Duration::ZERO,
    )
    .await
    .unwrap();
    assert_eq!(
        t.lock_holder(&pools_b, "shop", "fifth").await.unwrap(),
        None,
        "an expired claim holds nothing"
    );
    t.claim_job(
        &pools_b,
        &key("fifth", Step::Expand),
        "fifth-expand-d1",
        HOUR,
    )
    .await
    .unwrap();
    let busy = t
        .claim_job(
            &pools_a,
            &key("sixth", Step::Expand),
            "sixth-expand-d1",
            HOUR,
        )
        .await;
    assert!(
        matches!(busy, Err(DbError::Busy(_))),
        "a live claim holds: {busy:?}"
    );
    t.release_claim(&pools_b, &key("fifth", Step::Expand))
        .await
        .unwrap();
    // A started row is not a claim: releasing leaves it.
    t.record_start(
        &pools_a,
        &key("fourth", Step::Expand),
        &Runner::Job("fourth-expand-d1".into()),
    )
    .await
    .unwrap();
    t.release_claim(&pools_a, &key("fourth", Step::Expand))
        .await
        .unwrap();
    assert_eq!(
        t.ledger(&pools_a, &key("fourth", Step::Expand))
            .await
            .unwrap(),
        Some(LedgerState::Started { done: 0 })
    );
}

/// Runs a phase whose second statement fails; returns the ledger's message.
async fn failing_phase(engine: &str, url: &str) -> String {
    let t = target(engine, url);
    let pools = Pools::default();
    let k = key("broken", Step::Expand);
    let phase = statements(&[
        "CREATE TABLE applied_first (id int)",
        "ALTER TABLE missing ADD COLUMN x int",
    ]);
    t.run_inline(&pools, &k, &phase).await.unwrap();
    match t.ledger(&pools, &k).await.unwrap() {
        Some(LedgerState::Failed(m)) => m,
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_inline_phases_and_checks() {
    let (_dir, _pg, url) = pg().await;
    inline_phases("postgres", &url).await;
    checks("postgres", &url).await;
}

#[tokio::test]
async fn postgres_failed_statement_applies_nothing() {
    let (_dir, _pg, url) = pg().await;
    let m = failing_phase("postgres", &url).await;
    assert!(
        m.contains("statement 2 of 2") && m.contains("nothing applied"),
        "{m}"
    );
    // Points into the user's statement, not into PostgreSQL's source.
    assert!(
        m.ends_with(": (ALTER TABLE missing ADD COLUMN x int): SQLSTATE 42P01: relation \"missing\" does not exist"),
        "{m}"
    );
    let t = target("postgres", &url);
    let k = key("typo", Step::Expand);
    let pools = Pools::default();
    let phase = statements(&["SELECT 1", "SELECT\n  nope\nFROM pg_class"]);
    t.run_inline(&pools, &k, &phase).await.unwrap();
    let Ok(Some(LedgerState::Failed(m))) = t.ledger(&pools, &k).await else {
        panic!("the typo fails the phase");
    };
    assert!(
        m.ends_with(": (SELECT): SQLSTATE 42703: column \"nope\" does not exist at line 2, column 3 of the statement"),
        "{m}"
    );
    assert_eq!(
        scalar(&url, "SELECT CAST(to_regclass('applied_first') AS text)").await,
        "",
        "rolled back"
    );
}

/// Runs `sql` as phase `rollout` and returns its ledger state.
async fn run_phase(url: &str, rollout: &str, sql: &[&str]) -> Option<LedgerState> {
    let t = target("postgres", url);
    let pools = Pools::default();
    let k = key(rollout, Step::Expand);
    t.run_inline(&pools, &k, &statements(sql)).await.unwrap();
    t.ledger(&pools, &k).await.unwrap()
}

/// A phase whose second group fails: one statement alone between two
/// transactional groups.
const GROUPS: [&str; 4] = [
    "CREATE TABLE g1 (x int)",
    "CREATE INDEX CONCURRENTLY g1_x ON g1 (x)",
    "CREATE TABLE g2 (x int)",
    "SELECT 1/0",
];

#[tokio::test]
async fn postgres_statements_refused_in_a_transaction_run_alone() {
    let (_dir, _pg, url) = pg().await;
    // CREATE INDEX CONCURRENTLY between transactional groups: built, valid.
    let state = run_phase(
        &url,
        "concurrent",
        &[
            "CREATE TABLE t_ci (x int)",
            "INSERT INTO t_ci SELECT generate_series(1, 100)",
            "CREATE INDEX CONCURRENTLY t_ci_x ON t_ci (x)",
            "ANALYZE t_ci",
        ],
    )
    .await;
    assert_eq!(state, Some(LedgerState::Succeeded));
    let valid = "SELECT CAST(bool_and(indisvalid) AS text) FROM pg_index WHERE indexrelid = 't_ci_x'::regclass";
    assert_eq!(scalar(&url, valid).await, "true");
    let progress = "SELECT CAST(progress AS text) FROM bellows.ledger WHERE rollout = 'concurrent'";
    assert_eq!(scalar(&url, progress).await, "4");

    // A failed unique index left INVALID: the message says what to run.
    let Some(LedgerState::Failed(m)) = run_phase(
        &url,
        "dup",
        &[
            "CREATE TABLE t_dup (x int)",
            "INSERT INTO t_dup VALUES (1), (1)",
            "CREATE UNIQUE INDEX CONCURRENTLY t_dup_x ON t_dup (x)",
        ],
    )
    .await
    else {
        panic!("a duplicate key fails the phase");
    };
    assert!(
        m.starts_with("statement 3 of 3 failed after 2 were applied (it ran alone, outside a transaction; it left the INVALID index t_dup_x: run DROP INDEX CONCURRENTLY t_dup_x before the phase runs again): (CREATE UNIQUE INDEX CONCURRENTLY t_dup_x ON t_dup (x)): SQLSTATE 23505"),
        "{m}"
    );

    // A failure in a later group rolls back that group only.
    let Some(LedgerState::Failed(m)) = run_phase(&url, "groups", &GROUPS).await else {
        panic!("division by zero fails the phase");
    };
    assert!(
        m.starts_with("statement 4 of 4 failed after 2 were applied (its group, statements 3-4, was rolled back): (SELECT 1/0): SQLSTATE 22012: division by zero"),
        "{m}"
    );
    let exists = |t: &str| format!("SELECT CAST(to_regclass('{t}') IS NOT NULL AS text)");
    assert_eq!(scalar(&url, &exists("g1_x")).await, "true");
    assert_eq!(scalar(&url, &exists("g2")).await, "false");
    // Never run twice: a second run of the same phase does nothing.
    run_phase(&url, "groups", &GROUPS).await;
    assert_eq!(scalar(&url, &exists("g2")).await, "false");
}

#[tokio::test]
async fn postgres_connection_errors_ledger_and_lock() {
    let (_dir, _pg, url) = pg().await;
    bad_connections("postgres", &url, PG_PASSWORD).await;
    ledger_survives_recreate("postgres", &url).await;
    rollouts_serialize("postgres", &url, "SELECT pg_sleep(2)").await;
}

#[tokio::test]
async fn mariadb_inline_phases_and_checks() {
    let (_dir, _db, url) = maria().await;
    inline_phases("mysql", &url).await;
    checks("mysql", &url).await;
}

#[tokio::test]
async fn mariadb_failed_statement_records_progress() {
    let (_dir, _db, url) = maria().await;
    let m = failing_phase("mysql", &url).await;
    assert!(
        m.contains("statement 2 of 2 failed after 1 were applied"),
        "{m}"
    );
    assert!(
        m.contains(": (ALTER TABLE missing ADD COLUMN x int): SQLSTATE 42S02: Table ")
            && m.contains("doesn't exist"),
        "{m}"
    );
    let progress = scalar(
        &url,
        "SELECT CAST(progress AS CHAR) FROM bellows_ledger WHERE rollout = 'broken'",
    )
    .await;
    assert_eq!(progress, "1");
    let table = scalar(&url, "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.tables WHERE table_name = 'applied_first'").await;
    assert_eq!(
        table, "1",
        "MySQL keeps what it applied; the ledger says how far"
    );
}

#[tokio::test]
async fn mariadb_connection_errors_ledger_and_lock() {
    let (_dir, _db, url) = maria().await;
    bad_connections("mysql", &url, mariadb::PASSWORD).await;
    ledger_survives_recreate("mysql", &url).await;
    rollouts_serialize("mysql", &url, "SELECT SLEEP(2)").await;
}

/// A `MakeWriter` collecting everything logged into one buffer.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn inline_sql_never_reaches_the_log_even_when_slow() {
    // sqlx logs every statement (debug) and slow ones (warn) by default;
    // inline SQL may hold secrets, so bellows turns both off.
    let (_dir, _pg, url) = pg().await;
    let log = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(log.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let t = target("postgres", &url);
    let pools = Pools::default();
    t.run_inline(
        &pools,
        &key("slow", Step::Expand),
        &statements(&[
            "CREATE ROLE app_reader LOGIN PASSWORD 'role-pw-4d1e'",
            "SELECT pg_sleep(1.2) /* slower than sqlx's 1 s slow-statement mark */",
        ]),
    )
    .await
    .unwrap();
    assert_eq!(
        t.ledger(&pools, &key("slow", Step::Expand)).await.unwrap(),
        Some(LedgerState::Succeeded)
    );
    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    assert!(
        !text.contains("role-pw-4d1e") && !text.contains("pg_sleep"),
        "statements in the log:\n{text}"
    );
}

/// Holds a lock on table `table` from another connection for `hold`: an
/// exclusive table lock on PostgreSQL, an open transaction that read it
/// (its metadata lock) on MySQL.
async fn block(url: &str, table: &str, hold: Duration) -> tokio::task::JoinHandle<()> {
    let (url, table) = (url.to_owned(), table.to_owned());
    let (locked, is_locked) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        if url.starts_with("mysql") {
            let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
            let sql = format!("START TRANSACTION; SELECT * FROM {table}");
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
            let _ = locked.send(());
            tokio::time::sleep(hold).await;
            sqlx::raw_sql("COMMIT").execute(&mut c).await.unwrap();
        } else {
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            let sql = format!("BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE");
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut c)
                .await
                .unwrap();
            let _ = locked.send(());
            tokio::time::sleep(hold).await;
            sqlx::raw_sql("COMMIT").execute(&mut c).await.unwrap();
        }
    });
    is_locked.await.expect("the lock was taken");
    task
}

/// A statement that cannot get its lock within `lockTimeout` is tried
/// again with backoff: it passes once the lock is free, and after the
/// last try the phase fails saying how often it was tried.
async fn lock_waits_are_retried(engine: &str, url: &str, lock_timeout: &str) {
    let spec: DatabaseSpec = serde_json::from_value(json!({
        "engine": engine, "secretRef": {"name": "shop-db", "key": "url"}, "lockTimeout": lock_timeout
    }))
    .unwrap();
    let t = build(&spec, Some(url.to_owned()), None, None).unwrap();
    let pools = Pools::default();
    t.run_inline(
        &pools,
        &key("retry", Step::Expand),
        &statements(&["CREATE TABLE t_retry (x int)"]),
    )
    .await
    .unwrap();

    // Held for a little longer than one lock timeout: the second try passes.
    let held = block(url, "t_retry", t.timeouts.lock + Duration::from_millis(500)).await;
    let k = key("retry", Step::Transition);
    succeeds(&t, &pools, &k, &["ALTER TABLE t_retry ADD COLUMN y int"]).await;
    held.await.unwrap();

    // Held throughout: failed after the last try.
    let held = block(url, "t_retry", Duration::from_secs(60)).await;
    let k = key("retry", Step::Contract);
    t.run_inline(
        &pools,
        &k,
        &statements(&["ALTER TABLE t_retry ADD COLUMN z int"]),
    )
    .await
    .unwrap();
    held.abort();
    match t.ledger(&pools, &k).await.unwrap() {
        Some(LedgerState::Failed(m)) => {
            assert!(
                m.contains("statement 1 of 1") && m.contains("(tried 4 times)"),
                "{m}"
            )
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn postgres_lock_waits_are_retried() {
    let (_dir, _pg, url) = pg().await;
    lock_waits_are_retried("postgres", &url, "200ms").await;
}

#[tokio::test]
async fn mariadb_lock_waits_are_retried() {
    let (_dir, _db, url) = maria().await;
    lock_waits_are_retried("mysql", &url, "1s").await;
}

/// A throwaway CA, and a server certificate it signed for 127.0.0.1 and
/// localhost, made with the openssl command: (CA cert, server cert, server
/// key), PEM.
fn certificates(dir: &std::path::Path) -> (String, String, String) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-subj",
        "/CN=bellows test CA",
        "-days",
        "2",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (read("ca.crt"), read("server.crt"), read("server.key"))
}

#[tokio::test]
async fn postgres_tls_modes_and_a_ca_from_a_secret() {
    let dir = tempfile::Builder::new()
        .prefix("bellows-tls-")
        .tempdir()
        .unwrap();
    let path = postgres::shared_dir(dir.path());
    let server = postgres::Postgres::start(&path, None).await;
    server.create_database("shop");
    let (ca, cert, key) = certificates(&path);
    server.enable_tls(&cert, &key);
    server.require_password(PG_PASSWORD);
    let url = format!(
        "postgresql://postgres:{PG_PASSWORD}@127.0.0.1:{}/shop",
        server.port
    );
    let with = |mode: &str, ca: Option<&str>| {
        let spec: DatabaseSpec = serde_json::from_value(json!({
            "engine": "postgres", "secretRef": {"name": "shop-db", "key": "url"}, "sslMode": mode
        }))
        .unwrap();
        build(&spec, Some(url.clone()), None, ca.map(str::to_owned)).unwrap()
    };
    // One cache of pools for all: the key must tell the settings apart.
    let pools = Pools::default();
    let on_tls = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

    // verify-full with the CA from the Secret: a verified TLS connection.
    let verified = with("verify-full", Some(&ca));
    assert_eq!(verified.check(&pools, on_tls).await, Ok(true));
    // The same URL with sslMode disable (the spec wins over the URL): no
    // TLS, and not the TLS pool above.
    let plain = with("disable", None);
    assert_eq!(plain.check(&pools, on_tls).await, Ok(false));
    // verify-full without the CA: refused, and the reason says why.
    let unverified = with("verify-full", None);
    match unverified.check(&pools, "SELECT true").await {
        Err(DbError::Connect { target, reason }) => {
            assert!(target.contains("Secret shop-db/url"), "{target}");
            assert!(
                reason.to_lowercase().contains("certificate"),
                "a reason naming the certificate: {reason}"
            );
            assert!(!reason.contains(PG_PASSWORD), "{reason}");
        }
        other => panic!("expected a refused connection, got {other:?}"),
    }
}

/// A statement that ends the phase's transaction itself (a `ROLLBACK` or
/// `COMMIT` the analyser could not read) stops the phase, recorded
/// failed, and the phase never runs again: the `ROLLBACK` kind applies
/// nothing, the `COMMIT` kind keeps what it committed, and no statement
/// after either is committed (I3; the 212-runs bug).
#[tokio::test]
async fn postgres_a_statement_ending_the_transaction_fails_the_phase_once() {
    let (_dir, _pg, url) = pg().await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE acct (id int PRIMARY KEY, credits int); INSERT INTO acct VALUES (1, 0), (2, 0), (3, 0)")
        .execute(&mut c)
        .await
        .unwrap();
    let credits = async |id: i32| {
        scalar(
            &url,
            &format!("SELECT CAST(credits AS text) FROM acct WHERE id = {id}"),
        )
        .await
    };
    // What stays applied: nothing after a ROLLBACK; statement 1 and the
    // part of 2 before a COMMIT.
    for (rollout, id, end, applied) in [
        ("hidden-rollback", 1, "ROLLBACK", "0"),
        ("hidden-commit", 2, "COMMIT", "11"),
    ] {
        let phase = [
            format!("UPDATE acct SET credits = credits + 1 WHERE id = {id}"),
            format!(
                "UPDATE acct SET credits = credits + 10 WHERE id = {id}; {end}; UPDATE acct SET credits = credits + 100 WHERE id = {id}"
            ),
            format!("UPDATE acct SET credits = credits + 1000 WHERE id = {id}"),
        ];
        let phase: Vec<&str> = phase.iter().map(String::as_str).collect();
        for _ in 0..3 {
            let state = run_phase(&url, rollout, &phase).await;
            let Some(LedgerState::Failed(m)) = state else {
                panic!("{rollout}: {state:?}");
            };
            assert!(
                m.starts_with("statement 2 of 3 ended the phase's transaction itself"),
                "{m}"
            );
        }
        assert_eq!(credits(id).await, applied, "{rollout} ran once");
    }
    // Between groups (a statement that runs alone): the group is stopped
    // the same way, and the phase is not run again.
    let phase = [
        "UPDATE acct SET credits = credits + 1 WHERE id = 3",
        "CREATE INDEX CONCURRENTLY acct_credits ON acct (credits)",
        "UPDATE acct SET credits = credits + 10 WHERE id = 3; ROLLBACK; UPDATE acct SET credits = credits + 100 WHERE id = 3",
    ];
    for _ in 0..2 {
        let Some(LedgerState::Failed(m)) = run_phase(&url, "grouped", &phase).await else {
            panic!("grouped: not failed");
        };
        assert!(m.starts_with("statement 3 of 3 ended"), "{m}");
    }
    assert_eq!(credits(3).await, "1");
}

/// A failing statement is quoted with its string literals hidden, and
/// a server message echoing one loses it (I7).
#[tokio::test]
async fn postgres_a_failed_statement_never_quotes_its_literals() {
    let (_dir, _pg, url) = pg().await;
    let secret = "role-pw-8c2f";
    let role = format!("ALTER ROLE nosuchrole PASSWORD '{secret}'");
    let cast = format!("SELECT CAST('{secret}' AS int)");
    for (rollout, sql, shown) in [
        (
            "role",
            role.as_str(),
            "(ALTER ROLE nosuchrole PASSWORD '…'): SQLSTATE 42704",
        ),
        (
            "cast",
            cast.as_str(),
            "(SELECT CAST('…' AS int)): SQLSTATE 22P02",
        ),
    ] {
        let Some(LedgerState::Failed(m)) = run_phase(&url, rollout, &[sql]).await else {
            panic!("{rollout}: not failed");
        };
        assert!(m.contains(shown) && !m.contains(secret), "{m}");
        let stored = scalar(
            &url,
            &format!("SELECT message FROM bellows.ledger WHERE rollout = '{rollout}'"),
        )
        .await;
        assert!(!stored.contains(secret), "{stored}");
    }
}

/// Builds a target with `extra` fields on the spec.
fn target_with(engine: &str, url: &str, extra: serde_json::Value) -> Target {
    let mut spec = json!({"engine": engine, "secretRef": {"name": "shop-db", "key": "url"}, "lockTimeout": "2s"});
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    build(
        &serde_json::from_value(spec).unwrap(),
        Some(url.to_owned()),
        None,
        None,
    )
    .unwrap()
}

/// A phase that changes its session (search path or current database, a
/// role, a session lock on bellows' own lock) changes nothing for the
/// checks, ledger writes and phases that follow on the same pool: each
/// starts from a known session.
async fn sessions_stay_clean(engine: &str, url: &str, phases: &[(&str, &[&str])]) {
    let t = target_with(engine, url, json!({"statementTimeout": "1s"}));
    let pools = Pools::default();
    for (rollout, sql) in phases {
        let k = key(rollout, Step::Expand);
        t.run_inline(&pools, &k, &statements(sql)).await.unwrap();
        assert_eq!(
            t.ledger(&pools, &k).await.unwrap(),
            Some(LedgerState::Succeeded),
            "{rollout}"
        );
        // Unqualified: found only in the database and schema the target names.
        assert_eq!(
            t.check(&pools, "SELECT COUNT(*) = 0 FROM clean_probe")
                .await,
            Ok(true),
            "{rollout}: the check ran in another session's state"
        );
    }
    // The next phase takes the lock: no session kept it.
    succeeds(&t, &pools, &key("after", Step::Expand), &["SELECT 1"]).await;
    // A check has a server-side timeout: the server stops it.
    let slow = if engine == "mysql" {
        "SELECT SLEEP(30) = 0"
    } else {
        "SELECT pg_sleep(30) IS NOT NULL"
    };
    let started = std::time::Instant::now();
    let err = t.check(&pools, slow).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    let running = if engine == "mysql" {
        "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.processlist WHERE info LIKE 'SELECT SLEEP(30)%'"
    } else {
        "SELECT CAST(COUNT(*) AS text) FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep(30)%'"
    };
    assert_eq!(
        scalar(url, running).await,
        "0",
        "the server still runs the check"
    );
}

#[tokio::test]
async fn postgres_sessions_stay_clean() {
    let (_dir, _pg, url) = pg().await;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "CREATE TABLE clean_probe (x int); CREATE SCHEMA elsewhere; CREATE TABLE elsewhere.clean_probe (x int);
         INSERT INTO elsewhere.clean_probe VALUES (1);
         CREATE ROLE app_owner NOLOGIN; GRANT CREATE ON SCHEMA public TO app_owner",
    )
    .execute(&mut c)
    .await
    .unwrap();
    sessions_stay_clean(
        "postgres",
        &url,
        &[
            ("search-path", &["SET search_path = elsewhere"]),
            // A role that may not write bellows' ledger: the phase's own
            // ledger write is not made as it.
            (
                "role",
                &["SET ROLE app_owner", "CREATE TABLE owned_by_app (x int)"],
            ),
            (
                "lock",
                &["SELECT pg_advisory_lock(hashtext('bellows:' || current_database()))"],
            ),
        ],
    )
    .await;
    assert_eq!(
        scalar(
            &url,
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'owned_by_app'"
        )
        .await,
        "app_owner"
    );
}

#[tokio::test]
async fn mariadb_sessions_stay_clean() {
    let (_dir, db, url) = maria().await;
    let other = db.database("other", mariadb::PASSWORD);
    let mut c = sqlx::MySqlConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("CREATE TABLE clean_probe (x int)")
        .execute(&mut c)
        .await
        .unwrap();
    let mut o = sqlx::MySqlConnection::connect(&other).await.unwrap();
    sqlx::raw_sql("CREATE TABLE clean_probe (x int); INSERT INTO clean_probe VALUES (1)")
        .execute(&mut o)
        .await
        .unwrap();
    sessions_stay_clean(
        "mysql",
        &url,
        &[
            ("use", &["USE other", "CREATE TABLE made_in_other (x int)"]),
            ("lock", &["SELECT GET_LOCK('bellows:shop', 0)"]),
        ],
    )
    .await;
    // The ledger stayed in the database the target names.
    assert_eq!(
        scalar(
            &url,
            "SELECT CAST(COUNT(*) AS CHAR) FROM shop.bellows_ledger WHERE rollout = 'use'"
        )
        .await,
        "1"
    );
    assert_eq!(
        scalar(&url, "SELECT CAST(COUNT(*) AS CHAR) FROM information_schema.tables WHERE table_schema = 'other' AND table_name = 'bellows_ledger'").await,
        "0"
    );
}

/// A SQL-standard function body (`BEGIN ATOMIC ... END`, PostgreSQL 14+)
/// is one statement: it runs, and is not refused as transaction control.
#[tokio::test]
async fn postgres_runs_a_begin_atomic_body() {
    let (_dir, _pg, url) = pg().await;
    let body = "CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END";
    assert_eq!(
        bellows::sql::tokenized(bellows::api::Engine::Postgres, &[body.to_owned()])[0]
            .transaction_control,
        None
    );
    assert_eq!(
        run_phase(&url, "atomic", &[body]).await,
        Some(LedgerState::Succeeded)
    );
    assert_eq!(scalar(&url, "SELECT CAST(one() AS text)").await, "1");
}
