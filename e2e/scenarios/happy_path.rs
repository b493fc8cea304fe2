//! Scenario 1: rename a column the EDD way, from app v1 to v2.

use super::{STEP, in_order};
use crate::harness::{App, Env, cond, condition_of, psql_job, workload};
use bellows::api::RolloutPhase::*;
use serde_json::json;
use std::sync::Arc;

/// Adds `display_name`, copies the data and keeps both columns in sync while
/// v1 (writes full_name) and v2 (writes display_name) pods share the table.
/// `$fn$` quoting: a `$$` would be unescaped to `$` by Kubernetes.
pub const EXPAND: &str = "ALTER TABLE users ADD COLUMN display_name text;
UPDATE users SET display_name = full_name;
ALTER TABLE users ALTER COLUMN full_name DROP NOT NULL;
CREATE FUNCTION users_sync_name() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.display_name IS NULL THEN NEW.display_name := NEW.full_name; END IF;
  IF NEW.full_name IS NULL THEN NEW.full_name := NEW.display_name; END IF;
  RETURN NEW;
END $fn$;
CREATE TRIGGER users_sync_name BEFORE INSERT OR UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION users_sync_name();";

/// Drops the trigger and the old column once only v2 runs.
pub const CONTRACT: &str = "DROP TRIGGER users_sync_name ON users;
DROP FUNCTION users_sync_name();
ALTER TABLE users DROP COLUMN full_name;";

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("happy").await;
    ns.sql(
        "CREATE TABLE users (id serial PRIMARY KEY, full_name text NOT NULL);
            INSERT INTO users (full_name) VALUES ('Ada Lovelace'), ('Alan Turing');",
    );
    ns.deploy(
        "shop-api",
        "shop/api:1.0.0",
        App {
            replicas: 2,
            ..App::default()
        },
    )
    .await;
    let phases = ns.record_phases("rename");
    ns.create_rollout(
        "rename",
        json!({
            "workloads": [workload("shop-api", "2.0.0")],
            "expand": {"job": psql_job(EXPAND)},
            "contract": {"job": psql_job(CONTRACT)},
        }),
    )
    .await
    .unwrap();

    ns.wait_phase("rename", AwaitingRollout, STEP).await;
    // v1 still writes full_name only; the trigger fills display_name.
    ns.sql("INSERT INTO users (full_name) VALUES ('Grace Hopper')");
    assert_eq!(
        ns.sql("SELECT display_name FROM users WHERE full_name = 'Grace Hopper'"),
        "Grace Hopper"
    );
    assert!(
        ns.jobs_of("contract").await.is_empty(),
        "no contract before the deploy"
    );

    ns.set_image("shop-api", "shop/api:2.0.0").await;
    let out = ns.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "sro/rename",
        "--timeout=120s",
    ]);
    assert!(
        out.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let r = ns.rollout("rename").await;
    let seen = phases.phases();
    assert!(
        in_order(&seen, &[Expanding, AwaitingRollout, Contracting, Succeeded]),
        "phases: {seen:?}"
    );
    for (t, want) in [
        (cond::READY, "True"),
        (cond::EXPANDED, "True"),
        (cond::ROLLED_OUT, "True"),
        (cond::CONTRACTED, "True"),
        (cond::STALLED, "False"),
        (cond::RECONCILING, "False"),
    ] {
        assert_eq!(condition_of(&r, t).0, want, "{t}");
    }
    let status = r.status.clone().unwrap();
    assert_eq!(status.observed_generation, r.metadata.generation);
    assert_eq!(status.steps.len(), 2);
    assert!(
        status
            .workloads
            .iter()
            .all(|w| w.rolled_out && w.old_pods == 0 && w.new_pods == 2)
    );

    let columns = ns.sql("SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'users'");
    assert_eq!(columns, "display_name,id");
    assert_eq!(
        ns.sql("SELECT count(*) FROM users WHERE display_name IS NOT NULL"),
        "3"
    );

    // Events are published after the status write, off the reconcile's
    // path: wait for the last one before reading the sequence.
    ns.wait_event("rename", "Normal", "Succeeded", STEP).await;
    let events: Vec<String> = ns.events("rename").await.into_iter().map(|e| e.1).collect();
    assert!(
        in_order(
            &events,
            &[
                "ExpandStarted".into(),
                "ExpandSucceeded".into(),
                "ContractStarted".into(),
                "Succeeded".into()
            ]
        ),
        "events: {events:?}"
    );
    assert!(
        events.contains(&"RolloutObserved".to_string()),
        "events: {events:?}"
    );
    assert_eq!(ns.jobs_of("expand").await.len(), 1);
    assert_eq!(ns.jobs_of("contract").await.len(), 1);

    let metrics = env.operator.lock().await.metrics().await;
    for line in [
        "bellows_phase_transitions_total{phase=\"Succeeded\"}",
        "bellows_rollouts{phase=\"Succeeded\"}",
        "controller_runtime_reconcile_total{controller=\"schemarollout\",result=\"success\"}",
    ] {
        assert!(metrics.contains(line), "/metrics lacks {line}");
    }

    let out = ns.kubectl(&["explain", "schemarollout.spec.workloads.version"]);
    let explain = String::from_utf8_lossy(&out.stdout);
    assert!(
        explain.contains("What \"the new version\" of this workload means"),
        "kubectl explain: {explain}"
    );

    let out = ns.kubectl(&["get", "sro", "rename"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("PHASE") && table.contains("Succeeded"),
        "kubectl get sro: {table}"
    );
}
