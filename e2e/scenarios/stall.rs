//! Scenario 30: the leader behind a stalled network path. Two replicas
//! elect on the chart's Lease (8 s, as in scenario 11): `op-stalled` talks
//! to kube-apiserver through a TCP proxy, `op-direct` directly.
//! `op-stalled` leads and runs an inline-SQL expand that takes 12 s; the
//! proxy is held while it runs. The API server is healthy but
//! `op-stalled` hears nothing: it gives up the lead at its renew deadline
//! (about 5 s), starts nothing more, lets the running phase finish and
//! exits; `op-direct` takes over (about 8 s), sees the phase running under
//! the database lock, and goes on to contract once it is done. No phase is ever
//! Failed and each phase's statements committed once: on PostgreSQL (one
//! transaction) and on MariaDB (statements one by one, where a phase cut
//! mid-way could not be told applied or not, and was once left Failed
//! "interrupted").

use super::STEP;
use super::leader::{LEASE_DURATION, wait_leader};
use crate::harness::identity::Identity;
use crate::harness::operator::Operator;
use crate::harness::proxy::Proxy;
use crate::harness::traffic::Db;
use crate::harness::wait::until;
use crate::harness::{Env, Ns, workload};
use bellows::api::RolloutPhase::{self, *};
use bellows::api::SchemaRollout;
use bellows_testkit::mariadb::{self, MariaDb};
use kube::api::{Api, DeleteParams};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Instant;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("stall-pg").await;
    let url = env.pg.local_url(&ns.name);
    let postgres = json!({"engine": "postgres", "secretRef": {"name": "db", "key": "url"}, "sslMode": "disable"});
    handover(
        &env,
        &ns,
        &Db::connect(&url).await,
        postgres,
        "SELECT pg_sleep(12)",
    )
    .await;

    let server = MariaDb::start(&env.dir.join("stall-mariadb")).await;
    let ns = env.namespace("stall-maria").await;
    let url = server.database(&ns.name, mariadb::PASSWORD);
    ns.create_secret("maria", "url", &url).await;
    let maria = json!({"engine": "mysql", "secretRef": {"name": "maria", "key": "url"}});
    handover(
        &env,
        &ns,
        &Db::connect(&url).await,
        maria,
        "SELECT SLEEP(12)",
    )
    .await;
    // Gone before its server: a rollout that still had it would report it
    // unreachable.
    let rollouts: Api<SchemaRollout> = Api::namespaced(ns.client.clone(), &ns.name);
    rollouts
        .delete("r", &DeleteParams::default())
        .await
        .unwrap();
    until("rollout r deleted", STEP, || async {
        rollouts.get_opt("r").await.ok()?.is_none().then_some(())
    })
    .await;
    drop(server);
}

/// One hand-over in `ns` on the database `database` (reached by the test
/// as `db`), expand beginning with `sleep`.
async fn handover(env: &Env, ns: &Ns, db: &Db, database: Value, sleep: &str) {
    db.exec("CREATE TABLE runs (step varchar(20))").await;
    ns.deploy_api(1).await;
    let proxied = env.dir.join(format!("kubeconfig-{}", ns.name));
    let proxy = Proxy::start(&env.identity.kubeconfig, &proxied).await;
    let behind_proxy = Identity {
        kubeconfig: proxied,
        ..env.identity.clone()
    };
    let lease = ["--lease-duration", LEASE_DURATION];
    let mut shared = env.operator.lock().await;
    shared.stop(libc::SIGTERM);
    let name = |n: &str| format!("{n}-{}", ns.name);
    let mut stalled = Operator::named(&behind_proxy, &env.dir, &name("op-stalled"), &lease);
    stalled.start().await;
    wait_leader(ns, &name("op-stalled")).await;
    let mut direct = Operator::named(&env.identity, &env.dir, &name("op-direct"), &lease);
    direct.start().await;

    let log = ns.record_phases("r");
    ns.create_rollout(
        "r",
        json!({
            "workloads": [workload("api", "2.0.0")],
            "database": database,
            "expand": {"sql": [sleep, "INSERT INTO runs (step) VALUES ('expand')"]},
            "contract": {"sql": ["INSERT INTO runs (step) VALUES ('contract')"]},
        }),
    )
    .await
    .unwrap();
    let sleeping = format!(
        "SELECT count(*) FROM information_schema.processlist WHERE info LIKE '{}%'",
        &sleep[..12]
    );
    let sleeping = match db {
        Db::Postgres(_) => format!(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '{}%'",
            &sleep[..12]
        ),
        Db::MariaDb(_) => sleeping,
    };
    until("expand's statements running", STEP, || async {
        (db.text(&sleeping).await == "1").then_some(())
    })
    .await;
    let held = Instant::now();
    proxy.hold();
    wait_leader(ns, &name("op-direct")).await;
    println!(
        "e2e:   {}: op-direct led {:.1}s after the proxy stalled (lease {LEASE_DURATION})",
        ns.name,
        held.elapsed().as_secs_f64()
    );
    ns.wait_phase("r", AwaitingRollout, STEP).await;
    ns.set_image("api", "shop/api:2.0.0").await;
    ns.wait_phase("r", Succeeded, STEP).await;
    let phases = log.phases();
    assert!(
        !phases.contains(&RolloutPhase::Failed),
        "a phase was Failed on the way: {phases:?}"
    );
    for step in ["expand", "contract"] {
        let runs = db
            .text(&format!("SELECT count(*) FROM runs WHERE step = '{step}'"))
            .await;
        assert_eq!(runs, "1", "{step} committed other than once");
    }
    // It exits once its running reconciles are done (a status write it
    // cannot send holds one for up to the shutdown grace, 20 s).
    until("op-stalled exits without its lease", STEP, || {
        let exited = !stalled.running();
        async move { exited.then_some(()) }
    })
    .await;
    assert!(
        stalled.logs().contains("lost the lease"),
        "op-stalled did not say why it stopped"
    );
    proxy.cut();
    direct.stop(libc::SIGTERM);
    stalled.stop(libc::SIGTERM);
    shared.start().await;
}
