//! The traffic app (`examples/traffic`) as the pods of Deployment (or
//! StatefulSet) `shop-api`, the database it talks to, and the tallies its processes
//! write: what the rename-under-traffic scenarios and the demo measure.

use super::kubelet::{READY_AFTER_MS, TERMINATE_AFTER_MS};
use super::wait::until;
use super::{Env, Ns};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde::Deserialize;
use serde_json::json;
use sqlx::AssertSqlSafe;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The workload the rename examples gate.
pub const APP: &str = "shop-api";
/// Rows `users` is seeded with (ids 1..=ROWS, all named).
const ROWS: u32 = 500;
/// How long an old pod keeps serving while Terminating (its drain time).
pub const DRAIN_MS: &str = "3000";

/// Builds the traffic app (a no-op after `cargo test --all-targets`) and
/// returns its path.
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // Cargo gives a test its package's variables (CARGO_PKG_NAME, ...);
        // build scripts that watch them would rerun and rebuild half the
        // dependency tree. Only the target dir and home carry over.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if (key.starts_with("CARGO_") || key == "OUT_DIR")
                && key != "CARGO_HOME"
                && key != "CARGO_TARGET_DIR"
            {
                build.env_remove(key.as_ref());
            }
        }
        // The test profile: what `cargo test --all-targets` built it with.
        let out = build
            .args([
                "build",
                "--locked",
                "--profile",
                "test",
                "--example",
                "traffic",
            ])
            .arg("--message-format=json-render-diagnostics")
            .current_dir(super::repo_path(""))
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "cargo build --example traffic failed");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["target"]["name"] == "traffic")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo names the traffic executable")
    })
}

/// The database of a scenario: PostgreSQL or MariaDB, reached by the
/// test over its own connection.
pub enum Db {
    Postgres(sqlx::PgPool),
    MariaDb(sqlx::MySqlPool),
}

impl Db {
    pub async fn connect(url: &str) -> Db {
        if url.starts_with("mysql:") {
            Db::MariaDb(sqlx::MySqlPool::connect(url).await.expect("connect"))
        } else {
            Db::Postgres(sqlx::PgPool::connect(url).await.expect("connect"))
        }
    }

    /// Runs one statement (as sent: MySQL's compound statements need no
    /// DELIMITER).
    pub async fn exec(&self, sql: &str) {
        let result = match self {
            Db::Postgres(p) => sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(|_| ()),
            Db::MariaDb(p) => sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(p)
                .await
                .map(|_| ()),
        };
        result.unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The first column of the first row of `sql`, as text.
    pub async fn text(&self, sql: &str) -> String {
        let sql = format!("SELECT CAST(({sql}) AS {})", self.text_type());
        let result: Result<Option<String>, _> = match self {
            Db::Postgres(p) => {
                sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
                    .fetch_one(p)
                    .await
            }
            Db::MariaDb(p) => {
                sqlx::query_scalar(AssertSqlSafe(sql.as_str()))
                    .fetch_one(p)
                    .await
            }
        };
        result
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_default()
    }

    fn text_type(&self) -> &'static str {
        match self {
            Db::Postgres(_) => "text",
            Db::MariaDb(_) => "char",
        }
    }

    /// Creates `users (id, full_name NOT NULL)` with [`ROWS`] named rows.
    pub async fn seed_users(&self) {
        match self {
            Db::Postgres(_) => {
                self.exec("CREATE TABLE users (id serial PRIMARY KEY, full_name text NOT NULL)")
                    .await;
                self.exec(&format!(
                    "INSERT INTO users (full_name) SELECT 'user-' || g FROM generate_series(1, {ROWS}) g"
                ))
                .await;
            }
            Db::MariaDb(_) => {
                self.exec(
                    "CREATE TABLE users (id int AUTO_INCREMENT PRIMARY KEY, full_name varchar(255) NOT NULL)",
                )
                .await;
                self.exec(&format!(
                    "INSERT INTO users (full_name) SELECT concat('user-', seq) FROM seq_1_to_{ROWS}"
                ))
                .await;
            }
        }
    }

    /// The columns of `users`, sorted, comma-separated.
    pub async fn user_columns(&self) -> String {
        self.text(match self {
            Db::Postgres(_) => {
                "SELECT string_agg(column_name::text, ',' ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'users' AND table_schema = current_schema()"
            }
            Db::MariaDb(_) => {
                "SELECT group_concat(column_name ORDER BY column_name) FROM information_schema.columns WHERE table_name = 'users' AND table_schema = database()"
            }
        })
        .await
    }

    /// Triggers on `users`.
    pub async fn user_triggers(&self) -> String {
        self.text(match self {
            Db::Postgres(_) => {
                "SELECT count(*) FROM information_schema.triggers WHERE event_object_table = 'users'"
            }
            Db::MariaDb(_) => {
                "SELECT count(*) FROM information_schema.triggers WHERE event_object_table = 'users' AND trigger_schema = database()"
            }
        })
        .await
    }
}

/// One version's share of the traffic, summed over its pods.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Tally {
    pub ok: u64,
    pub failed: u64,
    pub null_reads: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Tally {
    pub fn queries(&self) -> u64 {
        self.ok + self.failed
    }
}

#[derive(Deserialize)]
struct PodTally {
    version: String,
    #[serde(flatten)]
    tally: Tally,
}

/// Where a namespace's pods write their tallies.
pub fn tally_dir(env: &Env, ns: &Ns) -> PathBuf {
    let dir = env.dir.join("traffic").join(&ns.name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The tallies in `dir` by version ("1", "2"), summed over pods.
pub fn tallies(dir: &Path) -> BTreeMap<String, Tally> {
    let mut sum: BTreeMap<String, Tally> = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let Ok(text) = std::fs::read(&path) else {
            continue;
        };
        let pod: PodTally =
            serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let t = sum.entry(pod.version).or_default();
        t.ok += pod.tally.ok;
        t.failed += pod.tally.failed;
        t.null_reads += pod.tally.null_reads;
        for (message, n) in pod.tally.errors {
            *t.errors.entry(message).or_default() += n;
        }
    }
    sum
}

/// Where every traffic pod writes its Prometheus `file_sd` target (the
/// directory a [`bellows_testkit::prometheus::Prometheus::discovering`]
/// watches): beside the namespaces' tally directories.
pub fn targets_dir(tallies: &Path) -> PathBuf {
    let dir = tallies
        .parent()
        .expect("a tally dir has a parent")
        .join("_targets");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The container's arguments for `version` writing into `dir`, one file
/// per pod and version (a StatefulSet's new pod has its predecessor's
/// name); metrics on a free port, labelled with the release
/// (`<version>.0.0`, the image tag), found through a `file_sd` target.
fn args(version: &str, dir: &Path) -> serde_json::Value {
    json!([
        "--version",
        version,
        "--tally",
        format!("{}/$(POD_NAME)-v{version}.json", dir.display()),
        "--metrics",
        "127.0.0.1:0",
        "--metrics-target",
        format!(
            "{}/$(POD_NAMESPACE)-$(POD_NAME)-v{version}.json",
            targets_dir(dir).display()
        ),
        "--release",
        format!("{version}.0.0"),
    ])
}

/// The traffic app's pod template at `version` (1 or 2): image
/// shop/api:<version>.0.0, container `api`, against Secret `shop-db`,
/// old pods draining for [`DRAIN_MS`].
fn traffic_template(version: &str, tallies: &Path) -> serde_json::Value {
    failing_template(version, tallies, 0.0)
}

/// [`traffic_template`] failing `fail_share` of its requests on purpose.
fn failing_template(version: &str, tallies: &Path, fail_share: f64) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": APP},
                     "annotations": {TERMINATE_AFTER_MS: DRAIN_MS, READY_AFTER_MS: "500"}},
        "spec": {"terminationGracePeriodSeconds": 30, "containers": [{
            "name": "api", "image": format!("shop/api:{version}.0.0"),
            "command": [binary()],
            "args": args(version, tallies),
            "env": [
                {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "FAIL_SHARE", "value": fail_share.to_string()},
                {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "url"}}}
            ]
        }]}
    })
}

/// What runs the traffic app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    /// Deployment `shop-api`, rolling one surge pod at a time.
    Deployment,
    /// StatefulSet `shop-api`, replacing one pod at a time (highest
    /// ordinal first), each old pod gone before its successor starts.
    StatefulSet,
}

impl Ns {
    /// `kind` `shop-api`: 3 replicas of traffic version 1; waits until
    /// version 1 serves from every replica.
    pub async fn deploy_traffic(&self, kind: AppKind, tallies: &Path) {
        let template = traffic_template("1", tallies);
        let selector = json!({"matchLabels": {"app": APP}});
        match kind {
            AppKind::Deployment => {
                let d: Deployment = serde_json::from_value(json!({
                    "metadata": {"name": APP},
                    "spec": {
                        "replicas": 3,
                        "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                        "selector": selector,
                        "template": template,
                    }
                }))
                .unwrap();
                self.api::<Deployment>()
                    .create(&PostParams::default(), &d)
                    .await
                    .unwrap();
                self.wait_available(APP, 3).await;
            }
            AppKind::StatefulSet => {
                let set: StatefulSet = serde_json::from_value(json!({
                    "metadata": {"name": APP},
                    "spec": {"replicas": 3, "serviceName": APP, "selector": selector, "template": template}
                }))
                .unwrap();
                let sets = self.api::<StatefulSet>();
                sets.create(&PostParams::default(), &set).await.unwrap();
                until("StatefulSet ready", Duration::from_secs(90), || async {
                    let s = sets.get(APP).await.ok()?.status?;
                    (s.ready_replicas == Some(3)).then_some(())
                })
                .await;
            }
        }
    }

    /// Deploys traffic version 2 to Deployment `shop-api`.
    pub async fn deploy_traffic_v2(&self, tallies: &Path) {
        self.deploy_traffic_v2_failing(tallies, 0.0).await;
    }

    /// Deploys traffic version 2 to Deployment `shop-api`, failing
    /// `fail_share` of its requests on purpose.
    pub async fn deploy_traffic_v2_failing(&self, tallies: &Path, fail_share: f64) {
        self.patch_template(APP, failing_template("2", tallies, fail_share))
            .await;
    }

    /// Deploys traffic version 2 to StatefulSet `shop-api`, to the pods
    /// from ordinal `partition` up (the others keep version 1).
    pub async fn deploy_traffic_v2_set(&self, tallies: &Path, partition: i32) {
        let patch = json!({"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}},
            "template": traffic_template("2", tallies),
        }});
        self.api::<StatefulSet>()
            .patch(APP, &PatchParams::default(), &Patch::Strategic(patch))
            .await
            .unwrap();
    }

    /// Deletes the traffic app (Deployment or StatefulSet) and waits until
    /// every pod is gone (each process stopped with SIGTERM and wrote its
    /// last tally).
    pub async fn stop_traffic(&self) {
        let dp = DeleteParams::foreground();
        let gone = |r: Result<_, kube::Error>| match r {
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            other => {
                other.unwrap();
            }
        };
        gone(self.api::<Deployment>().delete(APP, &dp).await.map(|_| ()));
        gone(self.api::<StatefulSet>().delete(APP, &dp).await.map(|_| ()));
        let pods = self.api::<Pod>();
        until("traffic pods gone", Duration::from_secs(90), || async {
            pods.list(&ListParams::default())
                .await
                .ok()?
                .items
                .is_empty()
                .then_some(())
        })
        .await;
    }
}

/// Waits until version `version` has run at least `n` queries in `dir`.
pub async fn wait_queries(dir: &Path, version: &str, n: u64) {
    until(
        &format!("{n} queries from traffic version {version}"),
        Duration::from_secs(90),
        || async { (tallies(dir).get(version).map_or(0, Tally::queries) >= n).then_some(()) },
    )
    .await;
}
