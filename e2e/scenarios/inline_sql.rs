//! Scenario 10 (database issue): inline SQL phases with a contract check,
//! against the namespace's PostgreSQL; the ledger keeps a deleted and
//! re-applied rollout from running anything again; an unreachable database
//! stalls with a condition naming the Secret; the password never shows in
//! logs, events or status, neither the URL's nor one in a failing
//! statement.

use super::STEP;
use crate::harness::{Env, workload};
use bellows::api::RolloutPhase::*;
use kube::api::{Api, DeleteParams};
use serde_json::json;
use std::sync::Arc;

/// Travels through the operator (the server trusts local logins, so any
/// password connects); it must never come out.
const PASSWORD: &str = "e2e-inline-pw-5150";

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("inline-sql").await;
    ns.sql(
        "CREATE TABLE users (id serial PRIMARY KEY, full_name text);
            CREATE TABLE runs (step text NOT NULL);
            INSERT INTO users (full_name) VALUES ('Ada'), ('Alan');",
    );
    let url = env
        .pg
        .url("inline-sql")
        .replace("postgres@", &format!("postgres:{PASSWORD}@"));
    ns.create_secret("app-db", "url", &url).await;
    ns.deploy_api(1).await;
    let spec = json!({
        "workloads": [workload("api", "2.0.0")],
        "database": {"engine": "postgres", "secretRef": {"name": "app-db", "key": "url"}, "sslMode": "disable"},
        "expand": {"sql": ["ALTER TABLE users ADD COLUMN display_name text", "INSERT INTO runs VALUES ('expand')"]},
        "contract": {
            "sql": ["ALTER TABLE users DROP COLUMN full_name", "INSERT INTO runs VALUES ('contract')"],
            "after": {"checks": [{"name": "backfill-done", "sql": "SELECT count(*) = 0 FROM users WHERE display_name IS NULL"}]}
        },
    });
    ns.create_rollout("inline", spec.clone()).await.unwrap();
    ns.wait_phase("inline", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;

    // Rolled out, but the backfill has not run: the check holds contract.
    let r = ns.wait_held("inline", "CheckFailed", STEP).await;
    assert!(r.status.unwrap().message.unwrap().contains("backfill-done"));
    assert_eq!(
        ns.sql("SELECT count(*) FROM runs WHERE step = 'contract'"),
        "0"
    );
    ns.sql("UPDATE users SET display_name = full_name");
    ns.wait_phase("inline", Succeeded, STEP).await;
    let columns = ns.sql("SELECT string_agg(column_name, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'users'");
    assert_eq!(columns, "display_name,id");
    assert_eq!(
        ns.sql("SELECT count(*) FROM bellows.ledger WHERE state = 'succeeded' AND statements = 2"),
        "2"
    );
    assert!(ns.jobs().await.is_empty(), "inline phases create no Job");

    // The GitOps accident: delete and re-apply the same SchemaRollout.
    let api: Api<bellows::api::SchemaRollout> = Api::namespaced(ns.client.clone(), &ns.name);
    api.delete("inline", &DeleteParams::default())
        .await
        .unwrap();
    crate::harness::wait::until("rollout deleted", STEP, || async {
        api.get_opt("inline").await.unwrap().is_none().then_some(())
    })
    .await;
    ns.create_rollout("inline", spec).await.unwrap();
    ns.wait_phase("inline", Succeeded, STEP).await;
    assert_eq!(
        ns.sql("SELECT string_agg(step, ',' ORDER BY step) FROM runs"),
        "contract,expand",
        "each phase ran once"
    );

    // A database that cannot be reached: a specific condition and Warning
    // that name the Secret, never its content, and nothing runs.
    ns.create_secret("app-pw", "password", PASSWORD).await;
    let unreachable = json!({
        "workloads": [workload("api", "2.0.0")],
        "database": {"engine": "postgres", "host": "127.0.0.1", "port": crate::harness::process::free_port(),
                     "user": "app", "passwordSecretRef": {"name": "app-pw", "key": "password"}, "sslMode": "disable"},
        "expand": {"sql": ["INSERT INTO runs VALUES ('unreachable')"]},
        "contract": {"sql": ["SELECT 1"]},
    });
    ns.create_rollout("unreachable", unreachable).await.unwrap();
    let r = ns
        .wait_condition(
            "unreachable",
            crate::harness::cond::STALLED,
            "True",
            Some("DatabaseUnavailable"),
            STEP,
        )
        .await;
    let message = &r
        .status
        .as_ref()
        .unwrap()
        .condition(crate::harness::cond::STALLED)
        .unwrap()
        .message;
    assert!(message.contains("app-pw/password"), "{message}");
    ns.wait_event("unreachable", "Warning", "DatabaseUnavailable", STEP)
        .await;
    assert_eq!(
        ns.sql("SELECT count(*) FROM runs WHERE step = 'unreachable'"),
        "0"
    );

    // A failing statement holding a password: quoted with its literal
    // hidden, in status, the event and the log.
    let role = json!({
        "workloads": [workload("api", "2.0.0")],
        "database": {"engine": "postgres", "secretRef": {"name": "app-db", "key": "url"}, "sslMode": "disable"},
        "expand": {"sql": [format!("ALTER ROLE nosuchrole PASSWORD '{PASSWORD}'")]},
        "contract": {"sql": ["SELECT 1"]},
    });
    ns.create_rollout("role-pw", role).await.unwrap();
    let failed = ns.wait_phase("role-pw", Failed, STEP).await;
    let note = ns
        .wait_event("role-pw", "Warning", "ExpandFailed", STEP)
        .await;
    assert!(
        note.contains("(ALTER ROLE nosuchrole PASSWORD '…'): SQLSTATE 42704"),
        "{note}"
    );

    let status = format!(
        "{}{}{}",
        serde_json::to_string(&ns.rollout("inline").await.status).unwrap(),
        serde_json::to_string(&r.status).unwrap(),
        serde_json::to_string(&failed.status).unwrap()
    );
    let events = format!(
        "{:?}{:?}{:?}",
        ns.events("inline").await,
        ns.events("unreachable").await,
        ns.events("role-pw").await
    );
    let logs = env.operator.lock().await.logs();
    for (what, text) in [
        ("status", &status),
        ("events", &events),
        ("operator logs", &logs),
    ] {
        assert!(!text.contains(PASSWORD), "the password leaked into {what}");
    }
}
