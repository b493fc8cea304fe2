//! Scenario 14: the files under `examples/` are what they claim to be.
//!
//! 1. Every YAML document under `examples/` (all `.yaml` files, recursively) is
//!    accepted by the API server in a server-side dry run, in a fresh
//!    namespace; SchemaRollouts also pass the CRD's CEL rules, which the
//!    local 1.20 server drops, through kube's CEL evaluator. The approvers
//!    policy (ValidatingAdmissionPolicy) is dry-run where the cluster serves
//!    it (1.30+, the kind profile) and named as skipped on 1.20.
//! 2. `examples/rename-column.yaml` (psql Jobs) and
//!    `examples/inline-sql.yaml` (inline SQL, backfill, check) run for
//!    real, each in its own namespace: they rename `users.full_name` in the
//!    namespace's PostgreSQL while shop-api rolls from 1.0.0 to 2.0.0, with
//!    a manual approval, and contract never runs while a 1.0.0 pod exists.

use super::{ContractGuard, STEP, in_order};
use crate::harness::{App, Env, Ns, install_crd, repo_path};
use bellows::api::{RolloutPhase::*, SchemaRollout};
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::{Scope, pinned_kind};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("examples").await;
    dry_run_every_example(&ns).await;
    rename_for_real(&env, &ns, "examples/rename-column.yaml").await;
    let ns = env.namespace("examples-inline").await;
    rename_for_real(&env, &ns, "examples/inline-sql.yaml").await;
}

/// Every file below `dir`, sorted, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The YAML documents of `path`, with `metadata.namespace` (where set)
/// rewritten to `namespace`.
pub fn documents(path: &Path, namespace: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text)
        .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()));
    docs.into_iter()
        .filter(|d| !d.is_null())
        .map(|mut d| {
            if d["metadata"].get("namespace").is_some() {
                d["metadata"]["namespace"] = json!(namespace);
            }
            d
        })
        .collect()
}

/// Kinds an example may use that this suite's 1.20 control plane does not
/// serve (ValidatingAdmissionPolicy is GA in 1.30).
const NEWER_KUBERNETES: [(&str, &str); 2] = [
    ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy"),
    (
        "admissionregistration.k8s.io",
        "ValidatingAdmissionPolicyBinding",
    ),
];

async fn dry_run_every_example(ns: &Ns) {
    // The e2e cluster has no Argo CD; a stand-in CRD lets the Application
    // of examples/argocd/ be dry-run (it checks kind and scope, not spec).
    install_crd(
        &ns.client,
        &repo_path("e2e/fixtures/applications.argoproj.io.yaml"),
    )
    .await;
    let crd_text =
        std::fs::read_to_string(repo_path("crds/schemarollouts.bellows.dev.yaml")).unwrap();
    let crd: Value = serde_saphyr::from_str(&crd_text).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];

    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let mut accepted = 0;
    let mut rejected = vec![];
    let manifests = files_under(&repo_path("examples"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"));
    for path in manifests {
        let file = path.strip_prefix(repo_path("")).unwrap().display();
        for doc in documents(&path, &ns.name) {
            let obj: DynamicObject = serde_json::from_value(doc.clone()).unwrap();
            let what = format!("{file}: {} {}", doc["kind"], doc["metadata"]["name"]);
            let types = obj.types.clone().expect("apiVersion and kind");
            let gvk = GroupVersionKind::try_from(&types).unwrap();
            let (resource, caps) = match pinned_kind(&ns.client, &gvk).await {
                Ok(found) => found,
                // Documented as needing a newer Kubernetes: dry-run where
                // the API exists (e.g. the kind profile), named otherwise.
                Err(_) if NEWER_KUBERNETES.contains(&(gvk.group.as_str(), gvk.kind.as_str())) => {
                    println!(
                        "e2e: examples: {what}: not served by this cluster (needs Kubernetes 1.30)"
                    );
                    continue;
                }
                Err(e) => panic!("{what}: unknown kind: {e}"),
            };
            let api: Api<DynamicObject> = match caps.scope {
                Scope::Namespaced => Api::namespaced_with(ns.client.clone(), &ns.name, &resource),
                Scope::Cluster => Api::all_with(ns.client.clone(), &resource),
            };
            let mut outcome = api
                .create(&dry_run, &obj)
                .await
                .map(|_| ())
                .map_err(|e| e.to_string());
            if gvk.kind == "SchemaRollout" {
                outcome = outcome.and_then(|()| {
                    kube::core::cel::Validator::new()
                        .validate(schema, &doc, None)
                        .map_err(|e| format!("CEL: {e:?}"))
                });
            }
            match outcome {
                Ok(()) => accepted += 1,
                Err(e) => rejected.push(format!("{what}: {e}")),
            }
        }
    }
    println!("e2e: examples: {accepted} documents accepted by a server-side dry run");
    assert!(rejected.is_empty(), "rejected examples: {rejected:#?}");
    // examples/ holds far more than this; an empty walk must not pass.
    assert!(accepted >= 10, "only {accepted} documents under examples/");
}

/// Runs the rename example `file` (users.full_name to display_name, Manual
/// approval) for real in `ns`: the table, the Secret `shop-db` and
/// Deployment `shop-api` (container `api`, 1.0.0) it expects, then expand,
/// a roll to 2.0.0, the approval and contract, checking the schema after
/// each step.
async fn rename_for_real(env: &Env, ns: &Ns, file: &str) {
    ns.sql(
        "CREATE TABLE users (id serial PRIMARY KEY, full_name text NOT NULL);
            INSERT INTO users (full_name) VALUES ('Ada Lovelace'), ('Alan Turing');",
    );
    ns.create_secret("shop-db", "url", &env.pg.url(&ns.name))
        .await;
    ns.deploy(
        "shop-api",
        "shop/api:1.0.0",
        App {
            replicas: 2,
            container: Some("api"),
            ..App::default()
        },
    )
    .await;

    let [mut rollout]: [Value; 1] = documents(&repo_path(file), &ns.name)
        .try_into()
        .unwrap_or_else(|_| panic!("{file} holds one document"));
    // The only test overrides: the namespace (rewritten above) and a bake
    // time of 1s instead of 10m. Everything else (Secret shop-db/url,
    // container api, the SQL, Manual approval) is the example as written;
    // the stand-in kubelet runs a Job's psql on this machine.
    rollout["spec"]["contract"]["after"]["bakeTime"] = json!("1s");
    let job_phases: Vec<&str> = ["expand", "transition", "contract"]
        .into_iter()
        .filter(|p| rollout["spec"][p].get("job").is_some())
        .collect();
    let mut expected = vec![Expanding, AwaitingRollout];
    if rollout["spec"].get("transition").is_some() {
        expected.push(Transitioning);
    }
    expected.extend([AwaitingApproval, Contracting, Succeeded]);
    let rollout: SchemaRollout = serde_json::from_value(rollout).expect("a SchemaRollout");
    let name = rollout.metadata.name.clone().unwrap();
    let phases = ns.record_phases(&name);
    // Watches contract Jobs (inline SQL has none; there the schema checks
    // below before the approval stand in for it).
    let guard = ContractGuard::start(ns, &[("shop-api", "shop/api:2.0.0")]);
    Api::<SchemaRollout>::namespaced(ns.client.clone(), &ns.name)
        .create(&PostParams::default(), &rollout)
        .await
        .unwrap();

    ns.wait_phase(&name, AwaitingRollout, STEP).await;
    let columns = "SELECT string_agg(column_name, ',' ORDER BY column_name) \
                   FROM information_schema.columns WHERE table_name = 'users'";
    assert_eq!(ns.sql(columns), "display_name,full_name,id", "{file}");
    assert_eq!(
        ns.sql("SELECT count(*) FROM pg_trigger WHERE tgname = 'users_sync_name'"),
        "1",
        "{file}"
    );
    // 1.0.0 writes full_name only, 2.0.0 display_name only: the trigger
    // fills the other column both ways.
    ns.sql("INSERT INTO users (full_name) VALUES ('Grace Hopper')");
    ns.sql("INSERT INTO users (display_name) VALUES ('Edsger Dijkstra')");
    assert_eq!(
        ns.sql("SELECT count(*) FROM users WHERE full_name = display_name AND id > 2"),
        "2",
        "{file}"
    );

    ns.set_container_image("shop-api", "api", "shop/api:2.0.0")
        .await;
    ns.wait_phase(&name, AwaitingApproval, STEP).await;
    assert_eq!(
        ns.sql(columns),
        "display_name,full_name,id",
        "{file}: no contract before the approval"
    );
    ns.approve(&name).await;
    ns.wait_phase(&name, Succeeded, STEP).await;
    guard.finish().await;

    let seen = phases.phases();
    assert!(in_order(&seen, &expected), "{file}: phases: {seen:?}");
    assert_eq!(ns.sql(columns), "display_name,id", "{file}");
    assert_eq!(
        ns.sql("SELECT string_agg(display_name, ',' ORDER BY id) FROM users"),
        "Ada Lovelace,Alan Turing,Grace Hopper,Edsger Dijkstra",
        "{file}"
    );
    assert_eq!(
        ns.sql("SELECT count(*) FROM pg_proc WHERE proname = 'users_sync_name'"),
        "0",
        "{file}"
    );
    for phase in &job_phases {
        assert_eq!(ns.jobs_of(phase).await.len(), 1, "{file}: {phase} Jobs");
    }
    assert_eq!(ns.jobs().await.len(), job_phases.len(), "{file}: Jobs");
}
