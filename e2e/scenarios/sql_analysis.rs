//! Scenario 21: inline SQL is read before it runs (the tries of issue 15,
//! with their new outcomes; the `COMMIT` one is a bad-input row of 8).
//!
//! 1. PostgreSQL: `CREATE INDEX CONCURRENTLY` inline, while three replicas
//!    of the traffic app query the table: it runs alone (the Started event
//!    says so), the index is valid, and no query failed.
//! 2. PostgreSQL: a typo on the second line of a statement fails expand
//!    with a message pointing at line 2, column 3 of that statement, its
//!    SQLSTATE, and no line of PostgreSQL's own source.
//! 3. MariaDB: an expand dropping a column old pods read is held with
//!    `Stalled=True UnsafeExpand` naming statement and rule, runs nothing;
//!    allowed on the phase, it runs and status and an event say so.

use super::STEP;
use super::traffic::{create, start_traffic};
use crate::harness::traffic::{Db, tallies, wait_queries};
use crate::harness::wait::until;
use crate::harness::{App, Env, Ns};
use bellows::api::{RolloutPhase::*, SchemaRollout, Step};
use bellows_testkit::mariadb::{self, MariaDb};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    concurrent_index_under_traffic(&env).await;
    error_points_into_the_statement(&env).await;
    unsafe_expand_on_mariadb(&env).await;
}

/// A SchemaRollout document gating `shop-api` on `tag` with inline phases.
fn rollout(name: &str, tag: &str, engine: &str, expand: Value) -> Value {
    json!({
        "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
        "metadata": {"name": name},
        "spec": {
            "workloads": [{"kind": "Deployment", "name": "shop-api",
                           "version": {"image": {"container": "api", "tag": tag}}}],
            "database": {"engine": engine, "secretRef": {"name": "shop-db", "key": "url"}},
            "expand": expand,
            "contract": {"sql": ["SELECT 1"]},
        }
    })
}

async fn concurrent_index_under_traffic(env: &Arc<Env>) {
    let ns = env.namespace("sql-concurrent").await;
    let (pod_url, local_url) = (env.pg.url(&ns.name), env.pg.local_url(&ns.name));
    let (db, dir) = start_traffic(env, &ns, &pod_url, &local_url).await;
    let expand = json!({"sql": [
        "ALTER TABLE users ADD COLUMN email text",
        "CREATE INDEX CONCURRENTLY users_full_name ON users (full_name)",
    ]});
    // Gated on the running 1.0.0: expand, then contract right away.
    create(&ns, rollout("index", "1.0.0", "postgres", expand)).await;
    ns.wait_phase("index", Succeeded, STEP).await;
    let before = tallies(&dir).get("1").map_or(0, |t| t.queries());
    wait_queries(&dir, "1", before + 500).await;
    ns.stop_traffic().await;

    let started = ns
        .wait_event("index", "Normal", "ExpandStarted", STEP)
        .await;
    assert!(
        started.contains("(statements 1 in one transaction, 2 alone)"),
        "{started}"
    );
    let valid =
        "SELECT bool_and(indisvalid) FROM pg_index WHERE indexrelid = 'users_full_name'::regclass";
    assert_eq!(db.text(valid).await, "true");
    let t = tallies(&dir).remove("1").unwrap_or_default();
    println!(
        "e2e:   CREATE INDEX CONCURRENTLY under traffic: {} queries ok, {} failed",
        t.ok, t.failed
    );
    assert_eq!((t.failed, t.null_reads), (0, 0), "{t:?}");
}

async fn error_points_into_the_statement(env: &Arc<Env>) {
    let ns = env.namespace("sql-typo").await;
    ns.create_secret("shop-db", "url", &env.pg.url(&ns.name))
        .await;
    deploy_shop_api(&ns).await;
    let expand = json!({"sql": ["SELECT 1", "SELECT\n  nope\nFROM pg_class"]});
    create(&ns, rollout("typo", "2.0.0", "postgres", expand)).await;
    let r = ns.wait_phase("typo", Failed, STEP).await;
    let message = r
        .status
        .as_ref()
        .and_then(|s| s.step(Step::Expand))
        .and_then(|s| s.message.clone())
        .unwrap_or_default();
    println!("e2e:   typo: {message}");
    assert!(
        message.ends_with(
            "(SELECT): SQLSTATE 42703: column \"nope\" does not exist at line 2, column 3 of the statement"
        ),
        "{message}"
    );
}

async fn unsafe_expand_on_mariadb(env: &Arc<Env>) {
    let server = MariaDb::start(&env.dir.join("sql-mariadb")).await;
    let ns = env.namespace("sql-unsafe").await;
    let url = server.database(&ns.name, mariadb::PASSWORD);
    let db = Db::connect(&url).await;
    db.seed_users().await;
    ns.create_secret("shop-db", "url", &url).await;
    deploy_shop_api(&ns).await;
    let drop = json!({"sql": ["ALTER TABLE users ADD COLUMN display_name varchar(255)", "ALTER TABLE users DROP COLUMN full_name"]});
    create(&ns, rollout("unsafe", "2.0.0", "mysql", drop.clone())).await;
    let r = ns
        .wait_condition("unsafe", "Stalled", "True", Some("UnsafeExpand"), STEP)
        .await;
    let stalled = r
        .status
        .as_ref()
        .and_then(|s| s.condition("Stalled"))
        .unwrap();
    assert!(
        stalled
            .message
            .contains("spec.expand.sql[1] (ALTER TABLE users DROP COLUMN full_name): drop-column"),
        "{}",
        stalled.message
    );
    ns.wait_event("unsafe", "Warning", "UnsafeExpand", STEP)
        .await;
    assert_eq!(db.user_columns().await, "full_name,id", "nothing ran");

    // Allowed on the phase: expand runs; status and an event show it.
    let mut allowed = drop;
    allowed["allow"] = json!(["drop-column"]);
    let patch = json!({"spec": {"expand": allowed}});
    rollouts(&ns)
        .patch("unsafe", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let r = ns.wait_phase("unsafe", AwaitingRollout, STEP).await;
    let step = r
        .status
        .as_ref()
        .and_then(|s| s.step(Step::Expand))
        .unwrap();
    assert_eq!(step.allowed, ["statement 2: drop-column"]);
    let note = ns
        .wait_event("unsafe", "Normal", "UnsafeAllowed", STEP)
        .await;
    assert!(note.contains("drop-column"), "{note}");
    assert_eq!(db.user_columns().await, "display_name,id");
    drop_server(server, &ns).await;
}

/// Removes the scenario's rollout before its server goes away (the
/// operator would otherwise report the database unreachable from then on).
async fn drop_server(server: MariaDb, ns: &Ns) {
    rollouts(ns)
        .delete("unsafe", &DeleteParams::default())
        .await
        .unwrap();
    until("rollout unsafe deleted", STEP, || async {
        rollouts(ns)
            .get_opt("unsafe")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    drop(server);
}

fn rollouts(ns: &Ns) -> Api<SchemaRollout> {
    Api::namespaced(ns.client.clone(), &ns.name)
}

/// Deployment `shop-api`, one plain pod of 1.0.0 (container `api`).
async fn deploy_shop_api(ns: &Ns) {
    let app = App {
        replicas: 1,
        container: Some("api"),
        ..App::default()
    };
    ns.deploy("shop-api", "shop/api:1.0.0", app).await;
}
