//! Reconciler tests against a mocked API server (the kube-rs `tower-test`
//! pattern): each test scripts the requests the reconciler must make, in
//! order, and the answers it gets.

use bellows::api::{SchemaRollout, Step};
use bellows::controller::cache::{self, Caches, Synced};
use bellows::controller::index::Index;
use bellows::controller::seal::Seal;
use bellows::controller::{Context, reconcile};
use bellows::planner::step;
use bellows::telemetry::metrics::Metrics;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::{reflector, watcher};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tower_test::mock::{Handle, pair};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn rollout() -> SchemaRollout {
    let job = json!({"template": {"spec": {"containers": [{"name": "migrate", "image": "postgres:16"}]}}});
    serde_json::from_value(json!({
        "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
        "metadata": {"name": "users", "namespace": "shop", "uid": "uid-1", "generation": 1,
                     "resourceVersion": "1", "finalizers": ["bellows.dev/cleanup"]},
        "spec": {
            "workloads": [{"name": "api", "version": {"image": {"container": "api", "tag": "2.0.0"}}}],
            "expand": {"job": job.clone()}, "contract": {"job": job}
        }
    }))
    .unwrap()
}

/// The app still runs v1, so expand is next.
fn deployment_v1() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop", "uid": "d-1", "generation": 1,
                     "annotations": {"deployment.kubernetes.io/revision": "1"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api"}},
                 "template": {"metadata": {"labels": {"app": "api"}},
                              "spec": {"containers": [{"name": "api", "image": "shop/api:1.0.0"}]}}},
        "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    })
}

fn list(kind: &str) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": "1"}, "items": []})
}

fn not_found() -> (StatusCode, Value) {
    (
        StatusCode::NOT_FOUND,
        json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
    )
}

/// Expects one request, checks it, answers it; returns its body.
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path: &str,
    answer: (StatusCode, Value),
) -> (String, Value) {
    let (request, send) = handle
        .next_request()
        .await
        .expect("the reconciler made no further request");
    assert_eq!(request.method(), method, "{}", request.uri());
    let uri = request.uri().to_string();
    assert!(uri.starts_with(path), "expected {method} {path}, got {uri}");
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let value = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    respond(send, answer);
    (uri, value)
}

fn respond(send: tower_test::mock::SendResponse<Response<Body>>, answer: (StatusCode, Value)) {
    let bytes = serde_json::to_vec(&answer.1).unwrap();
    send.send_response(
        Response::builder()
            .status(answer.0)
            .body(Body::from(bytes))
            .unwrap(),
    );
}

fn ok(v: Value) -> (StatusCode, Value) {
    (StatusCode::OK, v)
}

/// Answers the reads of one reconcile: the Deployment, its ReplicaSets and
/// pods, the (absent) Jobs of both phases, and an empty cluster ledger.
async fn observe_fresh_rollout(h: &mut ApiHandle) {
    observe_with_ledger(h, not_found()).await;
}

/// Where the cluster ledger lives: the operator's namespace.
const HOME: &str = "/api/v1/namespaces/bellows-system/configmaps/bellows-ledger.shop.users";

/// [`observe_fresh_rollout`] with `ledger` as the cluster ledger's answers;
/// returns the expand Job's name.
async fn observe_with_ledger(h: &mut ApiHandle, ledger: (StatusCode, Value)) -> String {
    observe_live(h, not_found(), ledger).await
}

/// The reads of one live observation (with the Deployment at v1), `expand`
/// answering the expand Job's GET and `ledger` the cluster ledger's read of
/// the expand run (the contract run has no record); returns the expand
/// Job's name. Nothing is read from ConfigMaps of the rollout's namespace,
/// where its editors could forge a record.
async fn observe_live(
    h: &mut ApiHandle,
    expand: (StatusCode, Value),
    ledger: (StatusCode, Value),
) -> String {
    // No database: the cluster ledger says which phases ran, each phase
    // run in its own ConfigMap.
    let expand_record = format!("{HOME}-expand-");
    let contract_record = format!("{HOME}-contract-");
    let uris = expect_round(
        h,
        vec![
            (
                "/apis/apps/v1/namespaces/shop/deployments/api",
                ok(deployment_v1()),
            ),
            (
                "/apis/apps/v1/namespaces/shop/replicasets?",
                ok(list("ReplicaSet")),
            ),
            ("/api/v1/namespaces/shop/pods?", ok(list("Pod"))),
            ("/apis/batch/v1/namespaces/shop/jobs/users-expand-", expand),
            (
                "/apis/batch/v1/namespaces/shop/jobs/users-contract-",
                not_found(),
            ),
            (&expand_record, ledger),
            (&contract_record, not_found()),
            // The revision each list must be at least as fresh as: a
            // quorum read of one key.
            (
                "/apis/apps/v1/namespaces/shop/replicasets?&limit=1",
                ok(list("ReplicaSet")),
            ),
            ("/api/v1/namespaces/shop/pods?&limit=1", ok(list("Pod"))),
        ],
    )
    .await;
    for list in [&uris[1], &uris[2]] {
        assert!(
            list.ends_with(
                "labelSelector=app%3Dapi&resourceVersion=1&resourceVersionMatch=NotOlderThan"
            ),
            "{list}"
        );
    }
    let expand_name = uris[3].rsplit('/').next().unwrap().to_owned();
    assert!(uris[5].contains(&expand_name), "{}", uris[5]);
    expand_name
}

/// Expects the GETs of one concurrent round of reads, in any order: each
/// request is matched to the expectation with the longest path it starts
/// with, and answered. Returns the URIs in the order of `expected`.
async fn expect_round(
    h: &mut ApiHandle,
    expected: Vec<(&str, (StatusCode, Value))>,
) -> Vec<String> {
    let mut open: Vec<Option<(&str, (StatusCode, Value))>> =
        expected.into_iter().map(Some).collect();
    let mut uris = vec![String::new(); open.len()];
    for _ in 0..open.len() {
        let (request, send) = h
            .next_request()
            .await
            .expect("the reconciler made no further request");
        assert_eq!(request.method(), Method::GET, "{}", request.uri());
        let uri = request.uri().to_string();
        let i = open
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e.as_ref()?.0)))
            .filter(|(_, path)| uri.starts_with(path))
            .max_by_key(|(_, path)| path.len())
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("unexpected GET {uri}"));
        let (_, answer) = open[i].take().unwrap();
        respond(send, answer);
        uris[i] = uri;
    }
    uris
}

/// Expects expand to start without a database: the ledger claim, the Job,
/// the ledger's `started`, then the status.
async fn starts_expand(h: &mut ApiHandle) {
    creates_expand_job(h).await;
    expect(
        h,
        Method::PATCH,
        "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?",
        ok(serde_json::to_value(rollout()).unwrap()),
    )
    .await;
}

/// Expects the live re-read, the ledger claim, the sealed expand Job and
/// the ledger's `started`: everything of an expand start before its
/// status.
async fn creates_expand_job(h: &mut ApiHandle) {
    rereads_rollout(h, rollout()).await;
    ledger_write(h, "expand", "claimed").await;
    let (_, job) = expect(
        h,
        Method::POST,
        "/apis/batch/v1/namespaces/shop/jobs?",
        (StatusCode::CREATED, json!({})),
    )
    .await;
    let job: k8s_openapi::api::batch::v1::Job = serde_json::from_value(job).unwrap();
    assert!(seal().verifies(&job, "uid-1"), "the Job is sealed");
    ledger_write(h, "expand", "started").await;
}

/// Expects the live read of the SchemaRollout before a phase starts,
/// answering it with `live`.
async fn rereads_rollout(h: &mut ApiHandle, live: SchemaRollout) {
    expect(
        h,
        Method::GET,
        "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users",
        ok(serde_json::to_value(live).unwrap()),
    )
    .await;
}

/// Expects the cluster ledger's entry for the Job `users-<step>-...` to be
/// written with `state`.
async fn ledger_write(h: &mut ApiHandle, step: &str, state: &str) {
    let (uri, patch) = expect(
        h,
        Method::PATCH,
        &format!("{HOME}-{step}-"),
        ok(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bellows-ledger.shop.x"}})),
    )
    .await;
    // Server-side apply: one request creates or updates the run's own
    // ConfigMap.
    assert!(uri.contains("fieldManager=bellows"), "{uri}");
    assert_eq!(patch["kind"], "ConfigMap", "{patch}");
    assert_eq!(patch["data"]["state"], state, "{patch}");
    assert_eq!(patch["data"]["step"], step);
    assert_eq!(patch["data"]["namespace"], "shop");
    assert_eq!(patch["metadata"]["labels"]["bellows.dev/phase"], step);
}

/// Expects an event to be published; returns it.
async fn expect_event(h: &mut ApiHandle) -> Value {
    let created = (StatusCode::CREATED, json!({}));
    let (_, event) = expect(
        h,
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/shop/events?",
        created,
    )
    .await;
    event
}

/// The reconcile stalled a phase the API server refused, to try again in
/// 30 s.
fn assert_retried_in_30s(result: &Result<Action, bellows::controller::Error>) {
    assert!(
        matches!(result, Ok(a) if *a == Action::requeue(Duration::from_secs(30))),
        "{result:?}"
    );
}

/// The condition `type_` of a status patch.
fn condition(patch: &Value, type_: &str) -> Value {
    patch["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .unwrap_or_else(|| panic!("no {type_} condition: {patch}"))
        .clone()
}

async fn run(
    script: impl FnOnce(ApiHandle) -> tokio::task::JoinHandle<()>,
) -> (Result<Action, bellows::controller::Error>, Arc<Metrics>) {
    run_with(rollout(), None, script).await
}

/// Reconciles `rollout` (reading `caches`, if any) against the script.
async fn run_with(
    rollout: SchemaRollout,
    caches: Option<Caches>,
    script: impl FnOnce(ApiHandle) -> tokio::task::JoinHandle<()>,
) -> (Result<Action, bellows::controller::Error>, Arc<Metrics>) {
    let (service, handle) = pair::<Request<Body>, Response<Body>>();
    let verifier = script(handle);
    let client = kube::Client::new(service, "default");
    let metrics = Arc::new(Metrics::new());
    let mut ctx = Context::new(client, metrics.clone(), "bellows-system").with_seal(seal());
    if let Some(caches) = caches {
        ctx = ctx.with_caches(caches);
    }
    let result = reconcile(Arc::new(rollout), Arc::new(ctx)).await;
    tokio::time::timeout(Duration::from_secs(5), verifier)
        .await
        .expect("the script timed out")
        .expect("the script failed");
    (result, metrics)
}

#[tokio::test]
async fn creates_the_expand_job_then_writes_status_then_publishes_an_event() {
    let (result, metrics) = run(|mut h| {
        tokio::spawn(async move {
            observe_fresh_rollout(&mut h).await;
            rereads_rollout(&mut h, rollout()).await;
            ledger_write(&mut h, "expand", "claimed").await;
            let (_, job) = expect(
                &mut h,
                Method::POST,
                "/apis/batch/v1/namespaces/shop/jobs?",
                (StatusCode::CREATED, json!({})),
            )
            .await;
            ledger_write(&mut h, "expand", "started").await;
            assert!(
                job["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("users-expand-")
            );
            assert_eq!(job["metadata"]["ownerReferences"][0]["uid"], "uid-1");
            assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
            assert_eq!(job["spec"]["backoffLimit"], 0);
            assert_eq!(job["spec"]["activeDeadlineSeconds"], 1800);
            assert!(job["spec"].get("ttlSecondsAfterFinished").is_none());

            let (uri, status) = expect(
                &mut h,
                Method::PATCH,
                "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?",
                ok(serde_json::to_value(rollout()).unwrap()),
            )
            .await;
            assert!(
                uri.contains("fieldManager=bellows") && uri.contains("force=true"),
                "server-side apply: {uri}"
            );
            assert_eq!(status["status"]["phase"], "Expanding");
            assert_eq!(status["status"]["observedGeneration"], 1);
            let ready = condition(&status, "Ready");
            assert_eq!(ready["status"], "False");

            let event = expect_event(&mut h).await;
            assert_eq!(event["reason"], "ExpandStarted");
            assert_eq!(event["type"], "Normal");
            assert_eq!(event["regarding"]["name"], "users");
            assert!(h.next_request().await.is_none() || panic!("unexpected extra request"));
        })
    })
    .await;
    assert!(matches!(result, Ok(a) if a == Action::await_change()));
    assert!(
        metrics
            .encode()
            .contains("bellows_phase_transitions_total{phase=\"Expanding\"} 1")
    );
}

#[tokio::test]
async fn an_existing_job_bellows_sealed_counts_as_created() {
    // A retry after a crash or a lost answer: the Job is bellows' own.
    let (result, _) = run(|mut h| {
        tokio::spawn(async move {
            observe_fresh_rollout(&mut h).await;
            let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists", "code": 409, "message": "exists"});
            rereads_rollout(&mut h, rollout()).await;
            ledger_write(&mut h, "expand", "claimed").await;
            expect(&mut h, Method::POST, "/apis/batch/v1/namespaces/shop/jobs?", (StatusCode::CONFLICT, conflict)).await;
            let own = ok(running_job(&expand_job_name()));
            expect(&mut h, Method::GET, "/apis/batch/v1/namespaces/shop/jobs/users-expand-", own).await;
            ledger_write(&mut h, "expand", "started").await;
            let (_, status) = expect(&mut h, Method::PATCH, "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?", ok(serde_json::to_value(rollout()).unwrap())).await;
            assert_eq!(status["status"]["phase"], "Expanding");
            expect_event(&mut h).await;
        })
    })
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_transient_job_create_failure_writes_no_status_and_reports_an_error() {
    let (result, metrics) = run(|mut h| {
        tokio::spawn(async move {
            observe_fresh_rollout(&mut h).await;
            let unavailable = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "ServiceUnavailable", "code": 503, "message": "etcd"});
            rereads_rollout(&mut h, rollout()).await;
            ledger_write(&mut h, "expand", "claimed").await;
            expect(&mut h, Method::POST, "/apis/batch/v1/namespaces/shop/jobs?", (StatusCode::SERVICE_UNAVAILABLE, unavailable)).await;
        })
    })
    .await;
    let err = result.expect_err("a failed create must fail the reconcile");
    assert_eq!(err.metric_label(), "kube");
    assert!(metrics.encode().contains(
        "controller_runtime_reconcile_errors_total{controller=\"schemarollout\",error=\"kube\"} 1"
    ));
}

#[tokio::test]
async fn a_job_the_api_server_refuses_stalls_the_rollout_with_its_message() {
    for (code, status, message) in [
        (
            403,
            StatusCode::FORBIDDEN,
            "exceeded quota: jobs, requested: count/jobs.batch=1",
        ),
        (
            422,
            StatusCode::UNPROCESSABLE_ENTITY,
            "Job.batch is invalid: spec.template.spec.containers[0].image: Required value",
        ),
    ] {
        let (result, _) = run(|mut h| {
            tokio::spawn(async move {
                observe_fresh_rollout(&mut h).await;
                let refused = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message});
                rereads_rollout(&mut h, rollout()).await;
            ledger_write(&mut h, "expand", "claimed").await;
                expect(&mut h, Method::POST, "/apis/batch/v1/namespaces/shop/jobs?", (status, refused)).await;
                let (_, patch) = expect(&mut h, Method::PATCH, "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?", ok(serde_json::to_value(rollout()).unwrap())).await;
                let stalled = condition(&patch, "Stalled");
                assert_eq!((stalled["status"].as_str(), stalled["reason"].as_str()), (Some("True"), Some("JobRejected")));
                assert!(stalled["message"].as_str().unwrap().ends_with(message), "{stalled}");
                assert!(patch["status"]["steps"].as_array().is_none_or(|s| s.is_empty()), "no step recorded as started: {patch}");
                let event = expect_event(&mut h).await;
                assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Warning"), Some("JobRejected")));
            })
        })
        .await;
        assert_retried_in_30s(&result);
    }
}

/// The expand Job's name for `rollout()`.
fn expand_job_name() -> String {
    let r = rollout();
    step::job_name("users", Step::Expand, &step::digest(&r.spec.expand))
}

/// Expects the status to say expand stalled with `JobNameTaken`, and its
/// event.
async fn stalls_name_taken(h: &mut ApiHandle) {
    let (_, patch) = expect(
        h,
        Method::PATCH,
        "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?",
        ok(serde_json::to_value(rollout()).unwrap()),
    )
    .await;
    let stalled = condition(&patch, "Stalled");
    assert_eq!(
        (stalled["status"].as_str(), stalled["reason"].as_str()),
        (Some("True"), Some("JobNameTaken"))
    );
    let text = stalled["message"].as_str().unwrap();
    assert!(
        text.contains(&expand_job_name()) && text.contains("without the seal"),
        "{text}"
    );
    assert!(
        patch["status"]["steps"]
            .as_array()
            .is_none_or(|s| s.is_empty()),
        "no step recorded: {patch}"
    );
    let event = expect_event(h).await;
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("JobNameTaken"))
    );
}

#[tokio::test]
async fn a_succeeded_job_bellows_did_not_create_is_never_taken_for_the_phase() {
    // Someone who may create Jobs in the namespace made one under the
    // expand Job's name, with the rollout's uid label, and it succeeded.
    // Before: expand was recorded as done without running.
    let done = json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
    let (result, _) = run(|mut h| {
        tokio::spawn(async move {
            observe_live(
                &mut h,
                ok(unsealed_job(&expand_job_name(), done)),
                not_found(),
            )
            .await;
            // No claim, no Job, no ledger record: the stall comes next.
            stalls_name_taken(&mut h).await;
        })
    })
    .await;
    assert_retried_in_30s(&result);
}

#[tokio::test]
async fn a_create_that_meets_a_job_bellows_did_not_create_stalls_and_keeps_nothing() {
    // The Job appears between the read and the create: the create meets
    // it (409). Before: taken for the phase's own Job.
    let (result, _) = run(|mut h| {
        tokio::spawn(async move {
            observe_fresh_rollout(&mut h).await;
            rereads_rollout(&mut h, rollout()).await;
            ledger_write(&mut h, "expand", "claimed").await;
            let exists = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 409, "reason": "AlreadyExists", "message": "jobs.batch already exists"});
            expect(&mut h, Method::POST, "/apis/batch/v1/namespaces/shop/jobs?", (StatusCode::CONFLICT, exists)).await;
            let (uri, _) = expect(
                &mut h,
                Method::GET,
                "/apis/batch/v1/namespaces/shop/jobs/users-expand-",
                ok(unsealed_job(&expand_job_name(), json!({"active": 1}))),
            )
            .await;
            assert!(uri.contains(&expand_job_name()), "{uri}");
            // No `started` record: the claim stays a claim.
            stalls_name_taken(&mut h).await;
        })
    })
    .await;
    assert_retried_in_30s(&result);
}

#[tokio::test]
async fn a_ledger_record_the_api_server_refuses_stalls_before_the_job_exists() {
    let message = "exceeded quota: bellows, requested: count/configmaps=1, used: count/configmaps=50, limited: count/configmaps=50";
    let (result, _) = run(|mut h| {
        tokio::spawn(async move {
            observe_fresh_rollout(&mut h).await;
            rereads_rollout(&mut h, rollout()).await;
            let refused = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 403, "message": message});
            expect(
                &mut h,
                Method::PATCH,
                &format!("{HOME}-expand-"),
                (StatusCode::FORBIDDEN, refused),
            )
            .await;
            // No Job: the status comes next.
            let (_, patch) = expect(&mut h, Method::PATCH, "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?", ok(serde_json::to_value(rollout()).unwrap())).await;
            let stalled = condition(&patch, "Stalled");
            assert_eq!((stalled["status"].as_str(), stalled["reason"].as_str()), (Some("True"), Some("LedgerRejected")));
            let text = stalled["message"].as_str().unwrap();
            assert!(text.contains("ConfigMap bellows-ledger.shop.users-expand-") && text.ends_with(message), "{stalled}");
            let event = expect_event(&mut h).await;
            assert_eq!((event["type"].as_str(), event["reason"].as_str()), (Some("Warning"), Some("LedgerRejected")));
        })
    })
    .await;
    assert_retried_in_30s(&result);
}

/// Synced caches holding `deployments` and nothing else.
fn caches(deployments: Vec<Value>) -> Caches {
    let synced = Synced::default();
    fn listed<K>(synced: &Synced, objects: Vec<K>) -> reflector::Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let (store, mut writer) = reflector::store();
        let mut done = synced.track::<K>();
        writer.apply_watcher_event(&watcher::Event::Init);
        for o in objects {
            writer.apply_watcher_event(&watcher::Event::InitApply(o));
        }
        writer.apply_watcher_event(&watcher::Event::InitDone);
        done(&Ok(watcher::Event::InitDone));
        store
    }
    let deployments = deployments
        .into_iter()
        .map(|d| serde_json::from_value(d).unwrap())
        .collect();
    Caches::new(
        listed(&synced, deployments),
        listed(&synced, vec![]),
        Index::new(cache::controller_uids),
        listed(&synced, vec![]),
        Index::new(cache::label_pairs),
        listed(&synced, vec![]),
        synced,
    )
}

#[tokio::test]
async fn a_plan_from_the_caches_that_starts_a_phase_is_remade_from_live_reads() {
    let cached = caches(vec![deployment_v1()]);
    assert!(cached.ready());
    let (result, _) = run_with(rollout(), Some(cached), |mut h| {
        tokio::spawn(async move {
            // The cached plan says "create the expand Job": nothing is
            // created before the same reads come back from the API server.
            observe_fresh_rollout(&mut h).await;
            starts_expand(&mut h).await;
            expect_event(&mut h).await;
        })
    })
    .await;
    assert!(result.is_ok(), "{result:?}");
}

/// The rollout with its expand Job recorded as running in status (`gate`
/// on or off), and that Job's name.
fn expanding(gate: bool) -> (SchemaRollout, String) {
    let mut r = rollout();
    if gate {
        r.spec.gate = Some(serde_json::from_value(json!({"pauseWorkloads": true})).unwrap());
    }
    let phase = step::phase_spec(&r.spec, Step::Expand).unwrap();
    let digest = step::digest(phase);
    let job_name = step::job_name("users", Step::Expand, &digest);
    r.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": 1, "phase": "Expanding",
            "steps": [{"step": "Expand", "jobName": job_name, "digest": digest, "state": "Running"}]
        }))
        .unwrap(),
    );
    (r, job_name)
}

/// The seal the reconciler under test puts on its Jobs.
fn seal() -> Seal {
    Seal::new(&[9; 32])
}

/// The running Job `name` bellows created for the rollout.
fn running_job(name: &str) -> Value {
    let mut job = unsealed_job(name, json!({"active": 1}));
    job["metadata"]["annotations"] =
        json!({"bellows.dev/seal": seal().sign("shop", name, "uid-1")});
    job
}

/// A Job `name` with `status`, labelled as the rollout's, without a seal:
/// what anyone who may create Jobs in the namespace can make.
fn unsealed_job(name: &str, status: Value) -> Value {
    json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "shop", "labels": {"bellows.dev/rollout-uid": "uid-1"}},
        "status": status
    })
}

#[tokio::test]
async fn the_gate_never_takes_over_a_pause_the_cache_has_not_seen() {
    // The cache still shows the Deployment running; a user paused it a
    // moment ago. The gate decides on the live object: it is paused, not by
    // bellows, so bellows neither marks nor (later) resumes it.
    let (r, job_name) = expanding(true);
    let (result, _) = run_with(r, Some(caches(vec![deployment_v1()])), |mut h| {
        tokio::spawn(async move {
            expect(
                &mut h,
                Method::GET,
                "/apis/batch/v1/namespaces/shop/jobs/users-expand-",
                ok(running_job(&job_name)),
            )
            .await;
            let mut paused = deployment_v1();
            paused["spec"]["paused"] = json!(true);
            paused["metadata"]["resourceVersion"] = json!("7");
            expect(
                &mut h,
                Method::GET,
                "/apis/apps/v1/namespaces/shop/deployments/api",
                ok(paused),
            )
            .await;
            while let Some((request, send)) = h.next_request().await {
                let uri = request.uri().to_string();
                assert!(
                    !(request.method() == Method::PATCH && uri.contains("/deployments/")),
                    "the gate wrote a Deployment paused by someone else: {uri}"
                );
                let body = serde_json::to_vec(&rollout()).unwrap();
                send.send_response(
                    Response::builder()
                        .status(StatusCode::OK)
                        .body(Body::from(body))
                        .unwrap(),
                );
            }
        })
    })
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn the_gate_pauses_only_on_the_live_object_it_read() {
    let (r, job_name) = expanding(true);
    let (result, _) = run_with(r, Some(caches(vec![deployment_v1()])), |mut h| {
        tokio::spawn(async move {
            expect(&mut h, Method::GET, "/apis/batch/v1/namespaces/shop/jobs/users-expand-", ok(running_job(&job_name))).await;
            let mut live = deployment_v1();
            live["metadata"]["resourceVersion"] = json!("7");
            expect(&mut h, Method::GET, "/apis/apps/v1/namespaces/shop/deployments/api", ok(live.clone())).await;
            let (_, patch) = expect(&mut h, Method::PATCH, "/apis/apps/v1/namespaces/shop/deployments/api?", ok(live)).await;
            assert_eq!(
                patch,
                json!({"metadata": {"resourceVersion": "7", "annotations": {"bellows.dev/paused-by": "users"}}, "spec": {"paused": true}}),
                "conditional on the resourceVersion read"
            );
            expect(&mut h, Method::PATCH, "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?", ok(serde_json::to_value(rollout()).unwrap())).await;
        })
    })
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn the_cleanup_finalizer_is_added_before_anything_else() {
    let mut r = rollout();
    r.metadata.finalizers = Some(vec!["example.com/other".into()]);
    let (result, _) = run_with(r, None, |mut h| {
        tokio::spawn(async move {
            let (_, patch) = expect(
                &mut h,
                Method::PATCH,
                "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users?",
                ok(serde_json::to_value(rollout()).unwrap()),
            )
            .await;
            assert_eq!(
                patch,
                json!([
                    {"op": "test", "path": "/metadata/finalizers", "value": ["example.com/other"]},
                    {"op": "add", "path": "/metadata/finalizers/-", "value": "bellows.dev/cleanup"},
                ])
            );
            // Then the ordinary reconcile.
            observe_fresh_rollout(&mut h).await;
            starts_expand(&mut h).await;
        })
    })
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_deleted_rollout_waits_for_its_running_job_and_starts_nothing() {
    let (mut r, job_name) = expanding(true);
    r.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        jiff::Timestamp::UNIX_EPOCH,
    ));
    let (result, _) = run_with(r, Some(caches(vec![deployment_v1()])), |mut h| {
        tokio::spawn(async move {
            // It reads live (a Job the cache lags on must not look done),
            // sees the Job running, and writes nothing: no pause, no
            // finalizer change.
            observe_live(&mut h, ok(running_job(&job_name)), not_found()).await;
            assert!(
                h.next_request().await.is_none(),
                "a deleted rollout wrote while its Job runs"
            );
        })
    })
    .await;
    assert!(
        matches!(&result, Ok(a) if *a == Action::requeue(Duration::from_secs(5))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_deleted_rollout_resumes_what_its_gate_paused_only_after_its_expand_succeeded() {
    // Its expand Job ended (succeeded, or failed) while it was deleted.
    for succeeded in [true, false] {
        let (mut r, job_name) = expanding(true);
        r.metadata.deletion_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::UNIX_EPOCH,
        ));
        let mut paused = deployment_v1();
        paused["spec"]["paused"] = json!(true);
        paused["metadata"]["annotations"]["bellows.dev/paused-by"] = json!("users");
        paused["metadata"]["resourceVersion"] = json!("9");
        let (result, _) = run_with(r, Some(caches(vec![paused.clone()])), |mut h| {
            tokio::spawn(async move {
                let mut ended = running_job(&job_name);
                ended["status"] = if succeeded {
                    json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
                } else {
                    json!({"failed": 1, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
                };
                observe_live(&mut h, ok(ended), not_found()).await;
                // The finished Job goes into the ledger first.
                let state = if succeeded { "succeeded" } else { "failed" };
                ledger_write(&mut h, "expand", state).await;
                expect(&mut h, Method::GET, "/apis/apps/v1/namespaces/shop/deployments/api", ok(paused.clone())).await;
                if succeeded {
                    let (_, resume) = expect(&mut h, Method::PATCH, "/apis/apps/v1/namespaces/shop/deployments/api?", ok(paused)).await;
                    assert_eq!(
                        resume,
                        json!({"metadata": {"resourceVersion": "9", "annotations": {"bellows.dev/paused-by": null}}, "spec": {"paused": false}})
                    );
                }
                // A failed expand leaves the Deployment paused (I5): the
                // rollout is released without a write to it.
                let (_, release) = expect(&mut h, Method::PATCH, "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users?", ok(serde_json::to_value(rollout()).unwrap())).await;
                assert_eq!(
                    release,
                    json!([
                        {"op": "test", "path": "/metadata/finalizers/0", "value": "bellows.dev/cleanup"},
                        {"op": "remove", "path": "/metadata/finalizers/0"},
                    ])
                );
                let event = expect_event(&mut h).await;
                let reason = if succeeded { "WorkloadsResumed" } else { "WorkloadsLeftPaused" };
                assert_eq!(event["reason"], reason);
            })
        })
        .await;
        assert!(
            matches!(&result, Ok(a) if *a == Action::await_change()),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn a_recreated_rollout_skips_a_phase_the_cluster_ledger_says_succeeded() {
    // No database, no status, no Job (deleted with the old rollout): the
    // record of this spec's expand run, in the operator's namespace, says
    // it succeeded.
    let entry = json!({"state": "succeeded", "namespace": "shop", "rollout": "users", "step": "expand", "digest": "x", "at": "2026-12-01T00:00:00Z"});
    skips_expand(ok(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bellows-ledger.shop.x"}, "data": entry}),
    ))
    .await;
}

/// A fresh rollout whose cluster ledger answers `ledger`, saying expand
/// succeeded: nothing is created, status adopts the phase, an event says so.
async fn skips_expand(ledger: (StatusCode, Value)) {
    let (result, _) = run(|mut h| {
        tokio::spawn(async move {
            observe_with_ledger(&mut h, ledger).await;
            // Nothing is created: status adopts the phase, an event says so.
            let (_, status) = expect(
                &mut h,
                Method::PATCH,
                "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?",
                ok(serde_json::to_value(rollout()).unwrap()),
            )
            .await;
            assert_eq!(status["status"]["phase"], "AwaitingRollout", "{status}");
            assert_eq!(status["status"]["steps"][0]["state"], "Succeeded");
            let mut reasons = vec![];
            while let Some((request, send)) = h.next_request().await {
                assert!(
                    request.uri().path().ends_with("/events"),
                    "{}",
                    request.uri()
                );
                let body = request.into_body().collect().await.unwrap().to_bytes();
                let event: Value = serde_json::from_slice(&body).unwrap();
                reasons.push(event["reason"].as_str().unwrap().to_owned());
                send.send_response(
                    Response::builder()
                        .status(StatusCode::CREATED)
                        .body(Body::from(b"{}".to_vec()))
                        .unwrap(),
                );
            }
            assert!(
                reasons.contains(&"PhaseAlreadyDone".to_owned()),
                "{reasons:?}"
            );
        })
    })
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_recorded_job_missing_from_the_caches_is_read_live_not_declared_vanished() {
    // Status records a running expand Job that the Job cache has not seen.
    let (r, job_name) = expanding(false);
    let (result, _) = run_with(r, Some(caches(vec![deployment_v1()])), |mut h| {
        tokio::spawn(async move {
            let (uri, _) = expect(
                &mut h,
                Method::GET,
                "/apis/batch/v1/namespaces/shop/jobs/users-expand-",
                ok(running_job(&job_name)),
            )
            .await;
            assert!(uri.contains(&job_name), "{uri}");
            let (_, status) = expect(
                &mut h,
                Method::PATCH,
                "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?",
                ok(serde_json::to_value(rollout()).unwrap()),
            )
            .await;
            let stalled = condition(&status, "Stalled");
            assert_eq!(stalled["status"], "False", "{stalled}");
            assert_eq!(status["status"]["phase"], "Expanding");
        })
    })
    .await;
    assert!(result.is_ok(), "{result:?}");
}

#[tokio::test]
async fn a_rollout_changed_since_the_reconcile_began_starts_nothing() {
    // Paused by its user (a new generation), its approval revoked (an
    // annotation), a status written since that the cache has not delivered
    // (a newer resourceVersion), deleted, or gone: the phase the plan would
    // start is not.
    let mut paused = rollout();
    paused.spec.paused = true;
    paused.metadata.generation = Some(2);
    let mut annotated = rollout();
    annotated.metadata.annotations =
        Some([("bellows.dev/approve".to_owned(), "x".to_owned())].into());
    let mut deleting = rollout();
    deleting.metadata.deletion_timestamp = Some(
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
    );
    let mut written = rollout();
    written.metadata.resource_version = Some("2".into());
    for live in [
        Some(paused),
        Some(annotated),
        Some(written),
        Some(deleting),
        None,
    ] {
        let (result, _) = run(|mut h| {
            tokio::spawn(async move {
                observe_fresh_rollout(&mut h).await;
                match live {
                    Some(live) => rereads_rollout(&mut h, live).await,
                    None => {
                        expect(
                            &mut h,
                            Method::GET,
                            "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users",
                            not_found(),
                        )
                        .await;
                    }
                }
                // Nothing after the read: no ledger claim, no Job, no status.
                let next = tokio::time::timeout(Duration::from_millis(300), h.next_request()).await;
                if let Ok(Some((request, _))) = next {
                    panic!(
                        "{} {} after the rollout was found changed",
                        request.method(),
                        request.uri()
                    );
                }
            })
        })
        .await;
        assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(1)));
    }
}

#[tokio::test]
async fn a_status_planned_from_an_older_copy_is_never_written_over_a_newer_one() {
    let (result, _) = run(|mut h| {
        tokio::spawn(async move {
            observe_fresh_rollout(&mut h).await;
            creates_expand_job(&mut h).await;
            // The object moved on between the re-read and the write.
            let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409,
                                  "message": "the object has been modified"});
            let (_, patch) = expect(
                &mut h,
                Method::PATCH,
                "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?",
                (StatusCode::CONFLICT, conflict),
            )
            .await;
            assert_eq!(
                patch["metadata"]["resourceVersion"], "1",
                "conditional on the copy the plan was made from"
            );
            // No event, no metric of a phase change the newer status owns.
            let next = tokio::time::timeout(Duration::from_millis(300), h.next_request()).await;
            if let Ok(Some((request, _))) = next {
                panic!("{} {} after a stale status write", request.method(), request.uri());
            }
        })
    })
    .await;
    assert_eq!(result.unwrap(), Action::requeue(Duration::from_secs(1)));
}

/// The rollout with expand recorded as succeeded: contract is next once
/// no pod of the old version is left.
fn expanded() -> SchemaRollout {
    let mut r = rollout();
    let digest = step::digest(step::phase_spec(&r.spec, Step::Expand).unwrap());
    let job_name = step::job_name("users", Step::Expand, &digest);
    r.status = Some(
        serde_json::from_value(json!({
            "observedGeneration": 1, "phase": "AwaitingRollout",
            "steps": [{"step": "Expand", "jobName": job_name, "digest": digest, "state": "Succeeded"}]
        }))
        .unwrap(),
    );
    r
}

/// The Deployment rolled out to v2: its ReplicaSet of revision 2 (pods
/// labelled `pod-template-hash: v2`) has every replica.
fn deployment_v2() -> Value {
    let mut d = deployment_v1();
    d["metadata"]["generation"] = json!(2);
    d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = json!("2");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("shop/api:2.0.0");
    d["status"] = json!({"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1,
                         "readyReplicas": 1, "availableReplicas": 1});
    d
}

fn replica_set_v2() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "api-v2", "namespace": "shop",
                     "labels": {"app": "api", "pod-template-hash": "v2"},
                     "annotations": {"deployment.kubernetes.io/revision": "2"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "api",
                                          "uid": "d-1", "controller": true}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "api", "pod-template-hash": "v2"}},
                 "template": {"metadata": {"labels": {"app": "api", "pod-template-hash": "v2"}},
                              "spec": {"containers": [{"name": "api", "image": "shop/api:2.0.0"}]}}},
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1}
    })
}

/// A pod of the Deployment (metadata only), of ReplicaSet `hash`.
fn pod(name: &str, hash: &str, terminating: bool) -> Value {
    let mut p = json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
                       "metadata": {"name": name, "namespace": "shop",
                                    "labels": {"app": "api", "pod-template-hash": hash}}});
    if terminating {
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
    }
    p
}

/// A list of `items` at revision `rv`.
fn list_at(kind: &str, rv: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": format!("{kind}List"), "metadata": {"resourceVersion": rv}, "items": items})
}

/// Requests held open, never answered while the test runs.
type Held = Vec<tower_test::mock::SendResponse<Response<Body>>>;

/// Answers the GETs of `expanded()`'s reconcile with the Deployment at v2:
/// the current revision of ReplicaSets and pods is 7, ReplicaSets read not
/// older than it hold revision 2's, and `pods` answers each pods list
/// (`None`: held open). Returns the first request that is not a GET, the
/// pods lists' URIs and what is held.
async fn serve_contract_reads(
    h: &mut ApiHandle,
    pods: impl Fn(&str) -> Option<(StatusCode, Value)>,
) -> (Request<Body>, Vec<String>, Held) {
    let (mut pod_lists, mut held) = (vec![], vec![]);
    loop {
        let (request, send) = h.next_request().await.expect("no further request");
        if request.method() != Method::GET {
            return (request, pod_lists, held);
        }
        let uri = request.uri().to_string();
        let path = uri.split('?').next().unwrap();
        let answer = match path {
            "/apis/apps/v1/namespaces/shop/deployments/api" => Some(ok(deployment_v2())),
            "/apis/apps/v1/namespaces/shop/replicasets" if uri.ends_with("limit=1") => {
                Some(ok(list_at("ReplicaSet", "7", vec![replica_set_v2()])))
            }
            "/apis/apps/v1/namespaces/shop/replicasets" => {
                assert!(
                    uri.contains("resourceVersion=7&resourceVersionMatch=NotOlderThan"),
                    "{uri}"
                );
                Some(ok(list_at("ReplicaSet", "7", vec![replica_set_v2()])))
            }
            "/api/v1/namespaces/shop/pods" if uri.ends_with("limit=1") => {
                Some(ok(list_at("Pod", "7", vec![pod("api-v2-a", "v2", false)])))
            }
            "/api/v1/namespaces/shop/pods" => {
                pod_lists.push(uri.clone());
                pods(&uri)
            }
            "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users" => {
                Some(ok(serde_json::to_value(expanded()).unwrap()))
            }
            p if p.starts_with("/apis/batch/v1/namespaces/shop/jobs/") || p.starts_with(HOME) => {
                Some(not_found())
            }
            _ => panic!("unexpected GET {uri}"),
        };
        match answer {
            Some(answer) => respond(send, answer),
            None => held.push(send),
        }
    }
}

/// Whether `uri` lists pods not older than revision 7 (the watch cache's
/// answer), not as a quorum read.
fn from_watch_cache(uri: &str) -> bool {
    uri.contains("resourceVersion=7&resourceVersionMatch=NotOlderThan")
}

/// What a list the watch cache served says: revision 2's pod only (its
/// old pod is gone).
fn only_new_pods() -> (StatusCode, Value) {
    ok(list_at("Pod", "7", vec![pod("api-v2-a", "v2", false)]))
}

/// What a quorum read says: the old version's pod is still Terminating.
fn old_pod_terminating() -> (StatusCode, Value) {
    ok(list_at(
        "Pod",
        "8",
        vec![pod("api-v2-a", "v2", false), pod("api-v1-a", "v1", true)],
    ))
}

/// The count of `bellows_fresh_lists_total` with `labels`.
fn fresh_lists(metrics: &Metrics, labels: &str) -> String {
    let line = format!("bellows_fresh_lists_total{{{labels}}} ");
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&line).map(str::to_owned))
        .unwrap_or_else(|| "0".into())
}

#[tokio::test]
async fn contract_starts_on_a_watch_cache_answer_not_older_than_now() {
    let (result, metrics) = run_with(expanded(), None, |mut h| {
        tokio::spawn(async move {
            let (first, lists, _held) = serve_contract_reads(&mut h, |uri| {
                assert!(from_watch_cache(uri), "{uri}");
                Some(only_new_pods())
            })
            .await;
            assert_eq!(lists.len(), 1, "{lists:?}");
            // Contract starts: its ledger claim comes first.
            let uri = first.uri().to_string();
            assert!(uri.starts_with(&format!("{HOME}-contract-")), "{uri}");
        })
    })
    .await;
    drop(result);
    assert_eq!(
        fresh_lists(&metrics, "served=\"watch_cache\",reason=\"caught_up\""),
        "2"
    );
}

/// Expects `expanded()`'s reconcile to fall back to a quorum read of the
/// pods after the watch cache's answer `cached` (`None`: none in time),
/// see the old pod there, and start nothing: the next request is its
/// status, saying what it waits for.
async fn holds_contract_after_the_quorum_read(cached: Option<(StatusCode, Value)>, reason: &str) {
    let (result, metrics) = run_with(expanded(), None, |mut h| {
        tokio::spawn(async move {
            let (first, lists, _held) = serve_contract_reads(&mut h, |uri| {
                if from_watch_cache(uri) {
                    cached.clone()
                } else {
                    assert!(uri.ends_with("pods?&labelSelector=app%3Dapi"), "{uri}");
                    Some(old_pod_terminating())
                }
            })
            .await;
            assert_eq!(
                lists.len(),
                2,
                "the watch cache, then a quorum read: {lists:?}"
            );
            assert!(!from_watch_cache(&lists[1]), "{lists:?}");
            let uri = first.uri().to_string();
            assert!(
                uri.starts_with(
                    "/apis/bellows.dev/v1alpha1/namespaces/shop/schemarollouts/users/status?"
                ),
                "contract must not start: {} {uri}",
                first.method()
            );
            let status: Value =
                serde_json::from_slice(&first.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            assert_eq!(status["status"]["phase"], "AwaitingRollout", "{status}");
            assert_eq!(
                status["status"]["message"],
                "Deployment api: 1 pod(s) of an older version remain (1 terminating)",
                "{status}"
            );
        })
    })
    .await;
    drop(result);
    let labels = format!("served=\"quorum\",reason=\"{reason}\"");
    assert_eq!(fresh_lists(&metrics, &labels), "1", "{}", metrics.encode());
}

#[tokio::test]
async fn a_watch_cache_behind_the_revision_falls_back_to_a_quorum_read() {
    // The server gave up waiting for its cache: "Too large resource
    // version" (504).
    let too_large = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Timeout", "code": 504,
                           "message": "Too large resource version: 7, current: 6",
                           "details": {"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]}});
    holds_contract_after_the_quorum_read(
        Some((StatusCode::GATEWAY_TIMEOUT, too_large)),
        "too_large",
    )
    .await;
}

#[tokio::test]
async fn a_watch_cache_that_does_not_catch_up_in_time_falls_back_to_a_quorum_read() {
    holds_contract_after_the_quorum_read(None, "slow").await;
}
