//! Table-driven tests of the planner, one or more per safety invariant of
//! docs/design.md (I1-I7) and per phase transition. One file: the tests
//! share the small builders at the top, and each names its invariant.

use super::objective::{Measurement, Problem as NoNumber};
use super::step::JobObservation;
use super::workload::{Assessment, Problem, Verdict, Wait};
use super::*;
use crate::api::keys::APPROVE_ANNOTATION;
use crate::api::{
    Reason, RolloutPhase, SchemaRolloutSpec, Step, StepState, WorkloadKind, condition,
};
use crate::planner::ledger::LedgerState;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;
use std::collections::BTreeMap;

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

fn spec(extra: serde_json::Value) -> SchemaRolloutSpec {
    let job = json!({"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "migrate", "image": "postgres:16"}]}}});
    let mut base = json!({
        "workloads": [
            {"name": "api", "version": {"image": {"container": "api", "tag": "2.0.0"}}},
            {"name": "worker", "version": {"labels": {"version": "2"}}}
        ],
        "expand": {"job": job.clone()},
        "contract": {"job": job},
    });
    let obj = base.as_object_mut().unwrap();
    for (k, v) in extra.as_object().unwrap() {
        obj.insert(k.clone(), v.clone());
    }
    serde_json::from_value(base).unwrap()
}

fn transition_job() -> serde_json::Value {
    json!({"job": {"template": {"spec": {"containers": [{"name": "backfill", "image": "x:1"}]}}}})
}

fn rollout(spec: SchemaRolloutSpec) -> SchemaRollout {
    let mut r = SchemaRollout::new("users", spec);
    r.metadata.namespace = Some("shop".into());
    r.metadata.generation = Some(1);
    r.metadata.uid = Some("uid-1".into());
    r
}

/// How the gate names Deployment `name`.
fn deployment(name: &str) -> crate::api::GateHold {
    crate::api::GateHold {
        kind: WorkloadKind::Deployment,
        name: name.into(),
    }
}

fn rolled_out(name: &str) -> Assessment {
    Assessment {
        kind: WorkloadKind::Deployment,
        name: name.into(),
        problem: None,
        verdict: Verdict::RolledOut,
        replicas: 2,
        new_pods: 2,
        old_pods: 0,
        paused: false,
        paused_by_us: false,
        note: None,
    }
}

fn waiting(name: &str, wait: Wait) -> Assessment {
    Assessment {
        verdict: Verdict::Waiting(wait, format!("{name} waits: {}", wait.reason())),
        new_pods: 1,
        old_pods: 1,
        ..rolled_out(name)
    }
}

fn both_rolled_out() -> Vec<Assessment> {
    vec![rolled_out("api"), rolled_out("worker")]
}

fn observed(workloads: Vec<Assessment>, jobs: &[(Step, JobObservation)], now: i64) -> Observed {
    Observed {
        workloads,
        jobs: jobs.iter().cloned().collect(),
        missing: vec![],
        ledger: BTreeMap::new(),
        checks: None,
        database_error: None,
        lock_holder: None,
        rejected: None,
        measurements: vec![],
        budget: None,
        now: at(now),
    }
}

/// Plans once and feeds the status back, as the controller does.
fn step(r: &mut SchemaRollout, o: &Observed) -> Plan {
    let p = plan(r, o);
    r.status = Some(p.status.clone());
    p
}

/// The run of `step` for `r` the plan's actions must carry.
fn run(r: &SchemaRollout, step: Step) -> crate::planner::PhaseRun {
    crate::planner::phase_run(r, step).expect("the rollout has the phase")
}

fn creates(p: &Plan, step: Step) -> bool {
    p.actions
        .iter()
        .any(|a| matches!(a, Action::CreateJob(run) if run.key.step == step))
}

fn creates_any(p: &Plan) -> bool {
    p.actions.iter().any(|a| matches!(a, Action::CreateJob(_)))
}

fn cond<'a>(
    p: &'a Plan,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    p.status
        .condition(type_)
        .unwrap_or_else(|| panic!("no {type_} condition"))
}

fn reasons(p: &Plan) -> Vec<&'static str> {
    p.events.iter().map(|e| e.reason.as_str()).collect()
}

use JobObservation::{Active, Failed, Succeeded};

/// Drives a rollout through expand to the point where contract may start.
/// The new version is not deployed yet.
fn expanded(r: &mut SchemaRollout) {
    let before = || {
        vec![
            waiting("api", Wait::TemplateNotUpdated),
            rolled_out("worker"),
        ]
    };
    step(r, &observed(before(), &[], 0));
    let p = step(r, &observed(before(), &[(Step::Expand, Succeeded)], 1));
    assert_eq!(p.phase(), RolloutPhase::AwaitingRollout);
}

#[test]
fn happy_path_walks_every_phase_in_order() {
    let mut r = rollout(spec(json!({
        "transition": transition_job(),
        "contract": {"job": spec(json!({})).contract.run.job, "after": {"bakeTime": "10m", "approval": "Manual"}},
    })));
    let mut seen = vec![];
    let old = vec![
        waiting("api", Wait::TemplateNotUpdated),
        rolled_out("worker"),
    ];

    let p = step(&mut r, &observed(old.clone(), &[], 0));
    assert!(creates(&p, Step::Expand));
    seen.push(p.phase());
    let p = step(&mut r, &observed(old.clone(), &[(Step::Expand, Active)], 5));
    assert!(!creates_any(&p));
    seen.push(p.phase());
    let p = step(&mut r, &observed(old, &[(Step::Expand, Succeeded)], 10));
    assert!(!creates_any(&p));
    seen.push(p.phase());
    let p = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 100),
    );
    assert!(creates(&p, Step::Transition));
    seen.push(p.phase());
    let jobs = [(Step::Expand, Succeeded), (Step::Transition, Succeeded)];
    let p = step(&mut r, &observed(both_rolled_out(), &jobs, 200));
    assert_eq!(
        p.requeue_after,
        Some(Duration::from_secs(500)),
        "bake counts from t=100"
    );
    seen.push(p.phase());
    let p = step(&mut r, &observed(both_rolled_out(), &jobs, 700));
    seen.push(p.phase());
    let key = crate::planner::approval_key(&r);
    r.annotations_mut().insert(APPROVE_ANNOTATION.into(), key);
    let p = step(&mut r, &observed(both_rolled_out(), &jobs, 710));
    assert!(creates(&p, Step::Contract));
    seen.push(p.phase());
    let all = [
        (Step::Expand, Succeeded),
        (Step::Transition, Succeeded),
        (Step::Contract, Succeeded),
    ];
    let p = step(&mut r, &observed(both_rolled_out(), &all, 720));
    seen.push(p.phase());

    {
        use RolloutPhase::*;
        assert_eq!(
            seen,
            [
                Expanding,
                Expanding,
                AwaitingRollout,
                Transitioning,
                Baking,
                AwaitingApproval,
                Contracting,
                Succeeded
            ]
        );
    }
    assert_eq!(cond(&p, condition::READY).status, "True");
    assert_eq!(cond(&p, condition::CONTRACTED).status, "True");
    assert_eq!(cond(&p, condition::RECONCILING).status, "False");
    assert!(reasons(&p).contains(&"Succeeded"));
    assert_eq!(p.status.observed_generation, Some(1));
}

#[test]
fn i1_contract_never_starts_before_expand_succeeds() {
    for expand in [
        None,
        Some(Active),
        Some(Failed("BackoffLimitExceeded".into())),
    ] {
        let mut r = rollout(spec(json!({})));
        let jobs: Vec<_> = expand
            .clone()
            .map(|e| (Step::Expand, e))
            .into_iter()
            .collect();
        // Pretend expand was created earlier so an absent Job is not "new".
        step(&mut r, &observed(both_rolled_out(), &[], 0));
        let p = step(&mut r, &observed(both_rolled_out(), &jobs, 1));
        assert!(
            !creates(&p, Step::Contract),
            "expand {expand:?} must not lead to contract"
        );
    }
}

#[test]
fn i1_contract_waits_for_transition() {
    let mut r = rollout(spec(json!({"transition": transition_job()})));
    expanded(&mut r);
    for t in [Active, Failed("DeadlineExceeded".into())] {
        let jobs = [(Step::Expand, Succeeded), (Step::Transition, t.clone())];
        let p = plan(&r, &observed(both_rolled_out(), &jobs, 5));
        assert!(
            !creates(&p, Step::Contract),
            "transition {t:?} must hold contract"
        );
    }
}

#[test]
fn i2_contract_held_while_any_workload_is_not_rolled_out() {
    for wait in [
        Wait::TemplateNotUpdated,
        Wait::GenerationNotObserved,
        Wait::ReplicasNotReady,
        Wait::NewReplicaSetNotFound,
        Wait::OldPodsRemain,
        Wait::ProgressDeadlineExceeded,
        Wait::RolledBack,
    ] {
        let mut r = rollout(spec(json!({})));
        expanded(&mut r);
        let p = plan(
            &r,
            &observed(
                vec![rolled_out("api"), waiting("worker", wait)],
                &[(Step::Expand, Succeeded)],
                5,
            ),
        );
        assert!(!creates_any(&p), "{wait:?} must hold contract");
        assert_eq!(p.phase(), RolloutPhase::AwaitingRollout);
        let rolled = cond(&p, condition::ROLLED_OUT);
        assert_eq!(
            (rolled.status.as_str(), rolled.reason.as_str()),
            ("False", wait.reason().as_str())
        );
    }
}

#[test]
fn i2_contract_starts_once_the_last_old_pod_is_gone() {
    let mut r = rollout(spec(json!({})));
    expanded(&mut r);
    let p = step(
        &mut r,
        &observed(
            vec![rolled_out("api"), waiting("worker", Wait::OldPodsRemain)],
            &[(Step::Expand, Succeeded)],
            2,
        ),
    );
    assert!(!creates_any(&p));
    let p = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 3),
    );
    assert!(creates(&p, Step::Contract));
    assert!(reasons(&p).contains(&"ContractStarted"));
}

#[test]
fn i2_bake_time_counts_from_the_last_workload_becoming_rolled_out() {
    let mut r = rollout(spec(
        json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"bakeTime": "10m"}}}),
    ));
    expanded(&mut r);
    let e = [(Step::Expand, Succeeded)];
    // api rolled out at t=10, worker only at t=300.
    step(
        &mut r,
        &observed(
            vec![rolled_out("api"), waiting("worker", Wait::OldPodsRemain)],
            &e,
            10,
        ),
    );
    let p = step(&mut r, &observed(both_rolled_out(), &e, 300));
    assert_eq!(p.phase(), RolloutPhase::Baking);
    assert_eq!(p.status.rolled_out_at, Some(Time(at(300))));
    let p = step(&mut r, &observed(both_rolled_out(), &e, 899));
    assert!(
        !creates_any(&p),
        "600s after api but 599s after worker: still baking"
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(1)));
    let p = step(&mut r, &observed(both_rolled_out(), &e, 900));
    assert!(creates(&p, Step::Contract));
}

#[test]
fn i2_a_rolled_out_time_from_a_clock_15_minutes_fast_never_shortens_bake_time() {
    let mut r = rollout(spec(
        json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"bakeTime": "10m"}}}),
    ));
    expanded(&mut r);
    let e = [(Step::Expand, Succeeded)];
    // A replica whose clock ran 15 minutes ahead saw both rolled out at its
    // t=1000 + 900; this replica's clock reads t=1000.
    step(&mut r, &observed(both_rolled_out(), &e, 1900));
    assert_eq!(
        r.status.as_ref().unwrap().rolled_out_at,
        Some(Time(at(1900)))
    );
    let p = step(&mut r, &observed(both_rolled_out(), &e, 1000));
    assert_eq!(
        p.phase(),
        RolloutPhase::Baking,
        "future time counts as zero elapsed"
    );
    assert!(!creates_any(&p));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(600)));
    // Bake time ends 10 minutes after the recorded time, on any clock.
    assert!(!creates_any(&step(
        &mut r,
        &observed(both_rolled_out(), &e, 2499)
    )));
    assert!(creates(
        &step(&mut r, &observed(both_rolled_out(), &e, 2500)),
        Step::Contract
    ));
}

#[test]
fn elapsed_is_zero_for_a_time_in_the_future() {
    assert_eq!(
        crate::planner::elapsed(at(100), at(40)),
        Duration::from_secs(60)
    );
    assert_eq!(crate::planner::elapsed(at(100), at(1000)), Duration::ZERO);
}

#[test]
fn i2_bake_time_restarts_when_a_workload_stops_being_rolled_out() {
    let mut r = rollout(spec(
        json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"bakeTime": "60s"}}}),
    ));
    expanded(&mut r);
    let e = [(Step::Expand, Succeeded)];
    step(&mut r, &observed(both_rolled_out(), &e, 10));
    step(
        &mut r,
        &observed(
            vec![rolled_out("api"), waiting("worker", Wait::RolledBack)],
            &e,
            40,
        ),
    );
    step(&mut r, &observed(both_rolled_out(), &e, 50));
    let p = step(&mut r, &observed(both_rolled_out(), &e, 80));
    assert!(!creates_any(&p), "bake restarted at t=50");
    let p = step(&mut r, &observed(both_rolled_out(), &e, 110));
    assert!(creates(&p, Step::Contract));
}

#[test]
fn i2_manual_approval_waits_for_the_annotation_naming_this_object_and_contract() {
    let manual = |sql: &str| {
        spec(
            json!({"contract": {"sql": [sql], "after": {"approval": "Manual"}}, "database": {"engine": "postgres", "secretRef": {"name": "db", "key": "url"}}}),
        )
    };
    let mut r = rollout(manual("ALTER TABLE users DROP COLUMN full_name"));
    expanded(&mut r);
    let e = [(Step::Expand, Succeeded)];
    let p = step(&mut r, &observed(both_rolled_out(), &e, 5));
    assert_eq!(p.phase(), RolloutPhase::AwaitingApproval);
    assert!(!creates_any(&p) && !p.actions.contains(&Action::RunSql(run(&r, Step::Contract))));
    assert!(reasons(&p).contains(&"ContractHeld"));
    let key = p.status.approval_key.clone().expect("status shows the key");
    assert_eq!(key, crate::planner::approval_key(&r));
    assert!(key.starts_with("uid-1/"), "{key}");
    assert!(p.status.message.as_deref().unwrap().contains(&key));

    // The old generation format approves nothing, and says so.
    r.annotations_mut()
        .insert(APPROVE_ANNOTATION.into(), "1".into());
    let p = step(&mut r, &observed(both_rolled_out(), &e, 6));
    assert_eq!(p.phase(), RolloutPhase::AwaitingApproval);
    assert!(
        p.status
            .message
            .as_deref()
            .unwrap()
            .contains("old generation format"),
        "{:?}",
        p.status.message
    );

    // Approved, then the contract is edited: the approval was for the old
    // contract and does not carry over.
    r.annotations_mut()
        .insert(APPROVE_ANNOTATION.into(), key.clone());
    r.spec = manual("ALTER TABLE users DROP COLUMN full_name CASCADE");
    r.metadata.generation = Some(2);
    let p = step(&mut r, &observed(both_rolled_out(), &e, 7));
    assert_eq!(
        p.phase(),
        RolloutPhase::AwaitingApproval,
        "an edited contract needs its own approval"
    );
    assert!(
        p.status
            .message
            .as_deref()
            .unwrap()
            .contains("approves another contract")
    );

    // The same contract on a re-created object (`kubectl replace --force`:
    // a new uid, generation 1 again) is not approved by the old key.
    let mut recreated = rollout(manual("ALTER TABLE users DROP COLUMN full_name"));
    recreated.metadata.uid = Some("uid-2".into());
    expanded(&mut recreated);
    recreated
        .annotations_mut()
        .insert(APPROVE_ANNOTATION.into(), key);
    let p = step(&mut recreated, &observed(both_rolled_out(), &e, 8));
    assert_eq!(p.phase(), RolloutPhase::AwaitingApproval);

    let key = crate::planner::approval_key(&r);
    r.annotations_mut().insert(APPROVE_ANNOTATION.into(), key);
    let p = step(&mut r, &observed(both_rolled_out(), &e, 9));
    assert!(
        p.actions.contains(&Action::RunSql(run(&r, Step::Contract))),
        "{:?}",
        p.actions
    );
}

#[test]
fn i3_a_started_or_finished_contract_is_never_created_again() {
    let mut r = rollout(spec(json!({})));
    expanded(&mut r);
    let e = [(Step::Expand, Succeeded)];
    let p = step(&mut r, &observed(both_rolled_out(), &e, 2));
    assert!(creates(&p, Step::Contract));
    // The Job is not visible yet (or a watch lags): no second create.
    let p = step(&mut r, &observed(both_rolled_out(), &e, 3));
    assert!(!creates_any(&p));
    assert_eq!(cond(&p, condition::STALLED).reason, "JobDeleted");
    assert_eq!(p.phase(), RolloutPhase::Failed);
    let done = [(Step::Expand, Succeeded), (Step::Contract, Succeeded)];
    let p = step(&mut r, &observed(both_rolled_out(), &done, 4));
    assert_eq!(p.phase(), RolloutPhase::Succeeded);
    // The finished Job is deleted and a workload rolls back: still done.
    let p = step(
        &mut r,
        &observed(
            vec![waiting("api", Wait::RolledBack), rolled_out("worker")],
            &[],
            5,
        ),
    );
    assert!(!creates_any(&p));
    assert_eq!(p.phase(), RolloutPhase::Succeeded);
}

#[test]
fn i3_a_finished_expand_job_deleted_later_does_not_run_again() {
    let mut r = rollout(spec(
        json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"approval": "Manual"}}}),
    ));
    expanded(&mut r);
    let p = step(&mut r, &observed(both_rolled_out(), &[], 5));
    assert!(!creates_any(&p));
    assert_eq!(p.phase(), RolloutPhase::AwaitingApproval);
}

#[test]
fn i3_an_existing_job_is_adopted_when_status_was_lost() {
    let r = rollout(spec(json!({})));
    let p = plan(
        &r,
        &observed(both_rolled_out(), &[(Step::Expand, Active)], 0),
    );
    assert!(!creates_any(&p));
    assert_eq!(p.phase(), RolloutPhase::Expanding);
    assert_eq!(
        p.status.step(Step::Expand).unwrap().state,
        StepState::Running
    );
}

#[test]
fn i4_rollback_after_expand_holds_contract_until_rolled_forward() {
    let mut r = rollout(spec(
        json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"bakeTime": "5m"}}}),
    ));
    expanded(&mut r);
    let e = [(Step::Expand, Succeeded)];
    step(&mut r, &observed(both_rolled_out(), &e, 10));
    let p = step(
        &mut r,
        &observed(
            vec![waiting("api", Wait::RolledBack), rolled_out("worker")],
            &e,
            20,
        ),
    );
    assert_eq!(p.phase(), RolloutPhase::AwaitingRollout);
    assert_eq!(p.status.hold_reason.as_deref(), Some("RolledBack"));
    assert!(
        p.events
            .iter()
            .any(|e| e.reason.as_str() == "ContractHeld" && e.kind == EventKind::Warning)
    );
    let p = step(
        &mut r,
        &observed(
            vec![waiting("api", Wait::RolledBack), rolled_out("worker")],
            &e,
            1000,
        ),
    );
    assert!(!creates_any(&p), "held however long the rollback lasts");
    assert!(p.events.is_empty(), "no event per requeue");
    step(&mut r, &observed(both_rolled_out(), &e, 1010));
    let p = step(&mut r, &observed(both_rolled_out(), &e, 1310));
    assert!(creates(&p, Step::Contract));
}

#[test]
fn i5_failed_expand_fails_the_rollout_and_never_contracts() {
    let mut r = rollout(spec(json!({})));
    step(&mut r, &observed(both_rolled_out(), &[], 0));
    let failed = [(
        Step::Expand,
        Failed("BackoffLimitExceeded: Job has reached the specified backoff limit".into()),
    )];
    let p = step(&mut r, &observed(both_rolled_out(), &failed, 1));
    assert_eq!(p.phase(), RolloutPhase::Failed);
    assert_eq!(cond(&p, condition::STALLED).status, "True");
    assert_eq!(cond(&p, condition::STALLED).reason, "ExpandFailed");
    assert!(
        p.events
            .iter()
            .any(|e| e.reason.as_str() == "ExpandFailed" && e.kind == EventKind::Warning)
    );
    // Even when the failed Job is later deleted.
    let p = step(&mut r, &observed(both_rolled_out(), &[], 2));
    assert_eq!(p.phase(), RolloutPhase::Failed);
    assert!(!creates_any(&p));
    assert!(p.events.is_empty());
}

#[test]
fn i5_gate_keeps_workloads_paused_until_expand_succeeds_and_after_it_fails() {
    let mut r = rollout(spec(json!({"gate": {"pauseWorkloads": true}})));
    let p = step(&mut r, &observed(both_rolled_out(), &[], 0));
    assert_eq!(
        p.actions,
        [
            Action::PauseWorkload(deployment("api")),
            Action::PauseWorkload(deployment("worker")),
            Action::CreateJob(run(&r, Step::Expand)),
        ]
    );
    let paused: Vec<_> = [
        waiting("api", Wait::ReplicasNotReady),
        waiting("worker", Wait::ReplicasNotReady),
    ]
    .into_iter()
    .map(|a| Assessment {
        paused: true,
        paused_by_us: true,
        ..a
    })
    .collect();
    let p = plan(
        &r,
        &observed(
            paused.clone(),
            &[(Step::Expand, Failed("DeadlineExceeded".into()))],
            1,
        ),
    );
    assert_eq!(p.phase(), RolloutPhase::Failed);
    // Only the cluster ledger learns of the failure; nothing is resumed.
    assert_eq!(
        p.actions,
        [Action::Record {
            run: run(&r, Step::Expand),
            failure: Some("DeadlineExceeded".into())
        }],
        "a failed expand never resumes the workloads"
    );
    let p = plan(&r, &observed(paused, &[(Step::Expand, Succeeded)], 1));
    assert_eq!(
        p.actions,
        [
            Action::Record {
                run: run(&r, Step::Expand),
                failure: None
            },
            Action::ResumeWorkload(deployment("api")),
            Action::ResumeWorkload(deployment("worker"))
        ]
    );
}

#[test]
fn gate_never_resumes_a_workload_someone_else_paused() {
    let mut r = rollout(spec(json!({"gate": {"pauseWorkloads": true}})));
    expanded(&mut r);
    let p = plan(
        &r,
        &observed(
            vec![
                Assessment {
                    paused: true,
                    ..rolled_out("api")
                },
                rolled_out("worker"),
            ],
            &[(Step::Expand, Succeeded)],
            2,
        ),
    );
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ResumeWorkload(_)))
    );
}

#[test]
fn paused_stops_advancing_without_losing_place() {
    let mut r = rollout(spec(json!({"paused": true})));
    let p = step(&mut r, &observed(both_rolled_out(), &[], 0));
    assert!(!creates_any(&p));
    assert_eq!(p.phase(), RolloutPhase::Pending);
    assert_eq!(cond(&p, condition::RECONCILING).reason, "Paused");

    let mut r = rollout(spec(json!({})));
    expanded(&mut r);
    r.spec.paused = true;
    let p = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 5),
    );
    assert!(!creates_any(&p));
    assert_eq!(p.phase(), RolloutPhase::AwaitingRollout);
    assert_eq!(p.status.hold_reason.as_deref(), Some("Paused"));
    assert_eq!(
        p.status.step(Step::Expand).unwrap().state,
        StepState::Succeeded,
        "place kept"
    );
    r.spec.paused = false;
    let p = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 6),
    );
    assert!(creates(&p, Step::Contract));
}

#[test]
fn paused_lets_a_running_job_finish() {
    let mut r = rollout(spec(json!({})));
    step(&mut r, &observed(both_rolled_out(), &[], 0));
    r.spec.paused = true;
    let p = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 1),
    );
    assert_eq!(
        p.status.step(Step::Expand).unwrap().state,
        StepState::Succeeded
    );
    assert!(!creates_any(&p));
}

#[test]
fn i6_invalid_spec_stalls_without_creating_jobs() {
    let cases = [
        json!({"workloads": []}),
        json!({"workloads": [{"name": "api", "version": {}}]}),
        json!({"workloads": [{"name": "api", "version": {"image": {"container": "api", "tag": "1", "ref": "x:1"}}}]}),
        json!({"workloads": [{"name": "api", "version": {"labels": {}}}]}),
        json!({"workloads": [
            {"name": "api", "version": {"labels": {"v": "2"}}},
            {"name": "api", "version": {"labels": {"v": "2"}}}]}),
        json!({"expand": {"job": {"template": {"spec": {"containers": []}}}}}),
        json!({"timeouts": {"expand": "-5m"}}),
        json!({"expand": {"job": {"backoffLimit": 2, "template": {"spec": {"containers": [{"name": "m"}]}}}}}),
        json!({"expand": {"job": {"template": {"spec": {"restartPolicy": "OnFailure", "containers": [{"name": "m"}]}}}}}),
        json!({"timeouts": {"contract": "0s"}}),
        json!({"timeouts": {"rollout": "0s"}}),
        json!({"timeouts": {"expand": "3000000000000000h"}}),
        json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"bakeTime": "10 minutes"}}}),
    ];
    for case in cases {
        let mut r = rollout(spec(case.clone()));
        let p = step(&mut r, &observed(both_rolled_out(), &[], 0));
        assert!(!creates_any(&p), "{case}");
        assert_eq!(cond(&p, condition::STALLED).status, "True", "{case}");
        assert_eq!(cond(&p, condition::STALLED).reason, "InvalidSpec", "{case}");
        assert_eq!(p.events.len(), 1, "{case}: one Warning event");
        assert_eq!(p.events[0].kind, EventKind::Warning);
        let again = plan(&r, &observed(both_rolled_out(), &[], 1));
        assert!(again.events.is_empty(), "{case}: no event per requeue");
    }
}

#[test]
fn i6_unknown_workload_or_container_stalls_before_expand() {
    for problem in [Problem::NotFound, Problem::ContainerNotFound("api".into())] {
        let r = rollout(spec(json!({})));
        let bad = Assessment {
            problem: Some(problem.clone()),
            ..waiting("api", Wait::Unavailable)
        };
        let p = plan(&r, &observed(vec![bad, rolled_out("worker")], &[], 0));
        assert!(p.actions.is_empty(), "{problem:?}");
        assert_eq!(
            cond(&p, condition::STALLED).reason,
            problem.reason().as_str()
        );
        assert_eq!(p.phase(), RolloutPhase::Pending);
    }
}

#[test]
fn progress_deadline_exceeded_stalls_with_a_warning_and_holds_contract() {
    let mut r = rollout(spec(json!({})));
    expanded(&mut r);
    let p = step(
        &mut r,
        &observed(
            vec![
                waiting("api", Wait::ProgressDeadlineExceeded),
                rolled_out("worker"),
            ],
            &[(Step::Expand, Succeeded)],
            5,
        ),
    );
    assert!(!creates_any(&p));
    assert_eq!(
        cond(&p, condition::STALLED).reason,
        "ProgressDeadlineExceeded"
    );
    assert!(
        p.events.iter().any(
            |e| e.reason.as_str() == "ProgressDeadlineExceeded" && e.kind == EventKind::Warning
        )
    );
}

#[test]
fn rollout_timeout_stalls_but_still_holds_contract() {
    let mut r = rollout(spec(json!({"timeouts": {"rollout": "1h"}})));
    expanded(&mut r);
    let slow = || vec![waiting("api", Wait::ReplicasNotReady), rolled_out("worker")];
    let e = [(Step::Expand, Succeeded)];
    let p = step(&mut r, &observed(slow(), &e, 100));
    assert_eq!(p.requeue_after, Some(Duration::from_secs(3600 - 99)));
    let p = step(&mut r, &observed(slow(), &e, 3601));
    assert_eq!(cond(&p, condition::STALLED).reason, "RolloutTimedOut");
    assert!(!creates_any(&p));
    let p = step(&mut r, &observed(both_rolled_out(), &e, 3700));
    assert!(
        creates(&p, Step::Contract),
        "a late rollout still contracts"
    );
}

#[test]
fn conditions_keep_their_transition_time_and_events_fire_once() {
    let mut r = rollout(spec(json!({})));
    let p1 = step(&mut r, &observed(both_rolled_out(), &[], 0));
    assert_eq!(reasons(&p1), ["ExpandStarted"]);
    let p2 = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Active)], 50),
    );
    assert!(p2.events.is_empty());
    let ready = |p: &Plan| cond(p, condition::READY).last_transition_time.clone();
    assert_eq!(ready(&p1), ready(&p2));
    assert_eq!(cond(&p2, condition::READY).status, "False");
    assert_eq!(cond(&p2, condition::RECONCILING).status, "True");
    let p3 = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 60),
    );
    assert_eq!(
        reasons(&p3),
        ["ExpandSucceeded", "ContractStarted", "RolloutObserved"]
    );
    assert_eq!(cond(&p3, condition::EXPANDED).status, "True");
}

#[test]
fn i6_a_missing_secret_stalls_before_any_job() {
    let r = rollout(spec(json!({})));
    let mut o = observed(both_rolled_out(), &[], 0);
    o.missing = vec![super::step::Reference::Secret("shop-db".into())];
    let p = plan(&r, &o);
    assert!(p.actions.is_empty());
    assert_eq!(cond(&p, condition::STALLED).reason, "SecretNotFound");
    assert!(cond(&p, condition::STALLED).message.contains("shop-db"));
    assert_eq!(p.events[0].kind, EventKind::Warning);
}

fn with_database(extra: serde_json::Value) -> SchemaRolloutSpec {
    let mut s = spec(extra);
    s.database = Some(serde_json::from_value(json!({"engine": "postgres", "host": "db"})).unwrap());
    s
}

/// Plans `s` with every workload rolled out, asserts it stalls with
/// InvalidSpec and runs nothing, and returns the stall's message.
fn invalid_spec_message(s: SchemaRolloutSpec) -> String {
    let p = plan(
        &rollout(s),
        &observed(vec![rolled_out("api"), rolled_out("worker")], &[], 0),
    );
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let stalled = cond(&p, condition::STALLED);
    assert_eq!(stalled.reason, "InvalidSpec");
    stalled.message.clone()
}

fn sql_phase(statement: &str) -> crate::api::PhaseSpec {
    crate::api::PhaseSpec {
        sql: Some(vec![statement.into()]),
        ..crate::api::PhaseSpec::default()
    }
}

#[test]
fn inline_sql_runs_in_the_reconcile_and_reads_its_outcome_from_the_ledger() {
    let mut s = with_database(json!({}));
    s.expand = sql_phase("alter table users add column x int");
    let mut r = rollout(s);
    let before = || {
        vec![
            waiting("api", Wait::TemplateNotUpdated),
            rolled_out("worker"),
        ]
    };
    let p = step(&mut r, &observed(before(), &[], 0));
    assert_eq!(p.actions, [Action::RunSql(run(&r, Step::Expand))]);
    assert_eq!(
        p.requeue_after,
        Some(Duration::ZERO),
        "look at the ledger right away"
    );
    assert_eq!(p.status.step(Step::Expand).unwrap().statements, Some(1));
    // The run never committed (no ledger row): it may run again.
    let p = plan(&r, &observed(before(), &[], 1));
    assert_eq!(p.actions, [Action::RunSql(run(&r, Step::Expand))]);
    let mut o = observed(before(), &[], 2);
    o.ledger.insert(Step::Expand, LedgerState::Succeeded);
    let p = step(&mut r, &o);
    assert!(p.actions.is_empty());
    assert_eq!(p.phase(), RolloutPhase::AwaitingRollout);
    assert!(reasons(&p).contains(&"ExpandSucceeded"));
}

#[test]
fn a_failed_or_interrupted_inline_phase_fails_and_never_reruns() {
    for ledger in [
        LedgerState::Failed("statement 2 of 2 failed".into()),
        LedgerState::Started { done: 1 },
    ] {
        let mut s = with_database(json!({}));
        s.expand = sql_phase("select 1");
        let r = rollout(s);
        let mut o = observed(both_rolled_out(), &[], 0);
        o.ledger.insert(Step::Expand, ledger.clone());
        let p = plan(&r, &o);
        assert_eq!(p.phase(), RolloutPhase::Failed, "{ledger:?}");
        assert!(p.actions.is_empty(), "{ledger:?}");
        assert_eq!(cond(&p, condition::STALLED).reason, "ExpandFailed");
    }
}

#[test]
fn i3_an_inline_phase_a_session_still_runs_under_its_lock_is_running_not_interrupted() {
    // A replica that lost the lead finishes the statements it began; the
    // new leader sees their progress and the database lock held for them.
    let mut s = with_database(json!({}));
    s.expand = sql_phase("select 1");
    let r = rollout(s);
    for (holder, running) in [
        (Some("shop/users expand"), true),
        (Some("shop/users contract"), false),
        (Some("shop/other expand"), false),
        (Some("another connection"), false),
        (None, false),
    ] {
        let mut o = observed(both_rolled_out(), &[], 0);
        o.ledger
            .insert(Step::Expand, LedgerState::Started { done: 1 });
        o.lock_holder = holder.map(str::to_owned);
        let p = plan(&r, &o);
        if running {
            assert_eq!(p.phase(), RolloutPhase::Expanding, "{holder:?}");
            assert!(p.actions.is_empty(), "nothing starts: {:?}", p.actions);
            assert_eq!(p.requeue_after, Some(RETRY_DATABASE), "looked at again");
        } else {
            assert_eq!(p.phase(), RolloutPhase::Failed, "{holder:?}");
        }
    }
}

#[test]
fn i3_the_ledger_keeps_a_recreated_rollout_from_rerunning_phases() {
    // A fresh object (no status), but the database remembers both phases.
    let r = rollout(with_database(json!({})));
    let mut o = observed(both_rolled_out(), &[], 0);
    o.ledger.insert(Step::Expand, LedgerState::Succeeded);
    o.ledger.insert(Step::Contract, LedgerState::Succeeded);
    let p = plan(&r, &o);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    assert_eq!(p.phase(), RolloutPhase::Succeeded);
}

#[test]
fn finished_jobs_are_recorded_in_the_ledger_once() {
    let mut r = rollout(with_database(json!({})));
    let before = || {
        vec![
            waiting("api", Wait::TemplateNotUpdated),
            rolled_out("worker"),
        ]
    };
    step(&mut r, &observed(before(), &[], 0));
    let p = step(&mut r, &observed(before(), &[(Step::Expand, Succeeded)], 1));
    assert_eq!(
        p.actions,
        [Action::Record {
            run: run(&r, Step::Expand),
            failure: None
        }]
    );
    let mut o = observed(before(), &[(Step::Expand, Succeeded)], 2);
    o.ledger.insert(Step::Expand, LedgerState::Succeeded);
    assert!(plan(&r, &o).actions.is_empty());
}

#[test]
fn i2_checks_hold_contract_until_all_are_true() {
    let checks = json!([{"name": "backfill-done", "sql": "select true"}, {"name": "no-nulls", "sql": "select true"}]);
    let mut r = rollout(with_database(
        json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"checks": checks}}}),
    ));
    expanded(&mut r);
    let e = [(Step::Expand, Succeeded)];
    let failed = |m: &str| CheckProblem::Failed(m.into());
    let result = |a: Result<bool, CheckProblem>, b: Result<bool, CheckProblem>| {
        let mut o = observed(both_rolled_out(), &e, 5);
        o.checks = Some(vec![
            CheckResult {
                name: "backfill-done".into(),
                result: a,
            },
            CheckResult {
                name: "no-nulls".into(),
                result: b,
            },
        ]);
        o
    };
    let p = step(&mut r, &observed(both_rolled_out(), &e, 4));
    assert_eq!(p.status.hold_reason.as_deref(), Some("ChecksPending"));
    assert!(!creates_any(&p));
    let p = step(&mut r, &result(Ok(true), Ok(false)));
    assert!(!creates_any(&p));
    assert_eq!(p.status.hold_reason.as_deref(), Some("CheckFailed"));
    assert!(cond(&p, condition::READY).message.contains("no-nulls"));
    assert_eq!(p.requeue_after, Some(RETRY_CHECKS));
    let p = step(
        &mut r,
        &result(Err(failed("relation does not exist")), Ok(true)),
    );
    assert!(!creates_any(&p));
    assert_eq!(p.status.hold_reason.as_deref(), Some("CheckError"));
    assert!(cond(&p, condition::READY).message.contains("backfill-done"));
    let invalid = CheckProblem::Invalid("returned NULL; a check must say true or false".into());
    let p = step(&mut r, &result(Ok(true), Err(invalid)));
    assert!(!creates_any(&p));
    assert_eq!(p.status.hold_reason.as_deref(), Some("CheckInvalid"));
    assert!(
        cond(&p, condition::READY)
            .message
            .contains("check no-nulls returned NULL"),
        "{}",
        cond(&p, condition::READY).message
    );
    let p = step(&mut r, &result(Ok(true), Ok(true)));
    assert!(creates(&p, Step::Contract));
}

#[test]
fn database_problems_stall_and_a_busy_lock_holds_inline_sql() {
    let mut s = with_database(json!({}));
    s.expand = sql_phase("select 1");
    let r = rollout(s);
    let mut o = observed(both_rolled_out(), &[], 0);
    o.database_error = Some((
        crate::api::Reason::DatabaseUnavailable,
        "cannot connect to postgres database (Secret db/url): refused".into(),
    ));
    let p = plan(&r, &o);
    assert!(p.actions.is_empty());
    assert_eq!(cond(&p, condition::STALLED).reason, "DatabaseUnavailable");
    assert_eq!(p.requeue_after, Some(RETRY_DATABASE));
    let mut o = observed(both_rolled_out(), &[], 0);
    o.lock_holder = Some("shop/other expand".into());
    let p = plan(&r, &o);
    assert!(p.actions.is_empty());
    assert_eq!(p.status.hold_reason.as_deref(), Some("DatabaseBusy"));
    assert!(p.status.message.unwrap().contains("shop/other expand"));
}

#[test]
fn sql_and_checks_need_a_database() {
    let mut s = spec(json!({}));
    s.expand = sql_phase("select 1");
    let p = plan(&rollout(s), &observed(both_rolled_out(), &[], 0));
    assert_eq!(cond(&p, condition::STALLED).reason, "InvalidSpec");
    assert!(
        cond(&p, condition::STALLED)
            .message
            .contains("spec.expand.sql needs spec.database")
    );
}

#[test]
fn another_rollouts_active_job_holds_every_phase_kind() {
    let r = rollout(with_database(json!({})));
    let mut o = observed(both_rolled_out(), &[], 0);
    o.lock_holder = Some("shop/other contract".into());
    let p = plan(&r, &o);
    assert!(!creates_any(&p), "a Job phase waits for the database too");
    assert_eq!(p.status.hold_reason.as_deref(), Some("DatabaseBusy"));
    assert_eq!(p.phase(), RolloutPhase::Pending);
}

#[test]
fn i3_a_job_the_ledger_knows_is_never_created_again_when_it_is_gone() {
    // Re-created rollout (no status); the ledger says the contract Job was
    // created, and the Job is gone (garbage-collected with the old object).
    let r = rollout(with_database(json!({})));
    let mut o = observed(both_rolled_out(), &[], 0);
    o.ledger.insert(Step::Expand, LedgerState::Succeeded);
    o.ledger
        .insert(Step::Contract, LedgerState::Started { done: 0 });
    let mut r = r;
    let p = step(&mut r, &o);
    assert!(!creates_any(&p), "{:?}", p.actions);
    assert_eq!(cond(&p, condition::STALLED).reason, "JobDeleted");
    assert_eq!(p.phase(), RolloutPhase::Failed);
    // The ledger row fails (releasing the database for other rollouts).
    assert!(
        p.actions.contains(&Action::Record {
            run: run(&r, Step::Contract),
            failure: Some(crate::planner::step::JOB_DELETED.into())
        }),
        "{:?}",
        p.actions
    );
    // And stays JobDeleted once status and the ledger say so.
    o.ledger.insert(
        Step::Contract,
        LedgerState::Failed(crate::planner::step::JOB_DELETED.into()),
    );
    let p = step(&mut r, &o);
    assert_eq!(cond(&p, condition::STALLED).reason, "JobDeleted");
    assert!(!creates_any(&p));
}

#[test]
fn a_claim_whose_job_was_never_created_may_still_start() {
    let mut r = rollout(with_database(json!({})));
    expanded(&mut r);
    let mut o = observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 5);
    o.ledger.insert(Step::Expand, LedgerState::Succeeded);
    o.ledger.insert(Step::Contract, LedgerState::Claimed);
    assert!(creates(&plan(&r, &o), Step::Contract));
}

#[test]
fn i6_database_needs_exactly_one_of_secret_ref_or_host() {
    let both =
        json!({"engine": "postgres", "host": "db", "secretRef": {"name": "db", "key": "url"}});
    let neither = json!({"engine": "postgres"});
    for database in [both, neither] {
        let mut s = spec(json!({}));
        s.database = Some(serde_json::from_value(database.clone()).unwrap());
        let p = plan(&rollout(s), &observed(both_rolled_out(), &[], 0));
        assert!(!creates_any(&p), "{database}");
        let stalled = cond(&p, condition::STALLED);
        assert_eq!(stalled.reason, "InvalidSpec", "{database}");
        assert_eq!(
            stalled.message, "spec.database needs exactly one of secretRef or host",
            "{database}"
        );
    }
}

#[test]
fn timeouts_must_fit_a_job_deadline_and_not_be_zero() {
    let messages = |timeouts: serde_json::Value| {
        validate::validate(&spec(json!({"timeouts": timeouts}))).unwrap_err()
    };
    assert_eq!(
        messages(json!({"rollout": "0s"})),
        ["spec.timeouts.rollout must be at least 1s"]
    );
    assert_eq!(
        messages(json!({"transition": "500ms"})),
        ["spec.timeouts.transition must be at least 1s"]
    );
    let huge = messages(json!({"expand": "3000000000000000h"}));
    assert_eq!(huge.len(), 1);
    assert!(
        huge[0].starts_with("spec.timeouts.expand: duration \"3000000000000000h\" is too large"),
        "{huge:?}"
    );
    // A year is the longest deadline; an hour more is refused.
    let max = json!({"timeouts": {"expand": "8760h", "rollout": "8760h"}});
    assert!(validate::validate(&spec(max)).is_ok());
    assert_eq!(
        messages(json!({"rollout": "8761h"})),
        ["spec.timeouts.rollout: duration \"8761h\" is too large (at most 31536000s)"]
    );
    let bake = |t: &str| {
        spec(
            json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"bakeTime": t}}}),
        )
    };
    assert!(validate::validate(&bake("8760h")).is_ok());
    assert_eq!(
        validate::validate(&bake("99999999999h")).unwrap_err(),
        [
            "spec.contract.after.bakeTime: duration \"99999999999h\" is too large (at most 31536000s)"
        ]
    );
    // A zero bake time is no bake at all, not a problem.
    let s = spec(
        json!({"contract": {"job": spec(json!({})).contract.run.job, "after": {"bakeTime": "0s"}}}),
    );
    assert!(validate::validate(&s).is_ok());
}

#[test]
fn sql_timeouts_are_between_a_millisecond_and_24_days() {
    let messages = |field: &str, value: &str| {
        let database =
            json!({"engine": "postgres", "secretRef": {"name": "db", "key": "url"}, field: value});
        validate::validate(&spec(json!({"database": database}))).err()
    };
    for (value, problem) in [
        ("0s", "spec.database.lockTimeout must be at least 1ms"),
        ("500us", "spec.database.lockTimeout must be at least 1ms"),
        (
            "100000h",
            "spec.database.lockTimeout: duration \"100000h\" is too large (at most 2073600s)",
        ),
    ] {
        assert_eq!(
            messages("lockTimeout", value),
            Some(vec![problem.to_owned()]),
            "{value}"
        );
    }
    assert!(messages("statementTimeout", "0s").is_some());
    for ok in ["1ms", "5s", "576h"] {
        assert_eq!(messages("lockTimeout", ok), None, "{ok}");
        assert_eq!(messages("statementTimeout", ok), None, "{ok}");
    }
}

#[test]
fn a_huge_timeout_never_asks_for_a_wake_up_further_than_an_hour() {
    let mut r = rollout(spec(json!({"timeouts": {"rollout": "8760h"}})));
    expanded(&mut r);
    let p = step(
        &mut r,
        &observed(
            vec![rolled_out("api"), waiting("worker", Wait::OldPodsRemain)],
            &[(Step::Expand, Succeeded)],
            10,
        ),
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(3600)));
}

#[test]
fn a_long_stall_message_is_cut_to_fit_an_event_note() {
    let workloads: Vec<_> = (0..40)
        .map(|i| json!({"name": format!("w{i}"), "version": {"labels": {}}}))
        .collect();
    let mut r = rollout(spec(json!({"workloads": workloads})));
    let p = step(&mut r, &observed(vec![], &[], 0));
    let message = &cond(&p, condition::STALLED).message;
    assert!(message.len() > EVENT_NOTE_LIMIT, "the full message is kept");
    assert!(message.ends_with("spec.workloads[39].version.labels must not be empty"));
    let note = &p.events[0].note;
    assert!(note.len() <= EVENT_NOTE_LIMIT, "{} bytes", note.len());
    assert!(note.ends_with('…'));
    assert!(message.starts_with(note.trim_end_matches('…')));
}

#[test]
fn event_notes_are_cut_at_a_character_boundary() {
    assert_eq!(event_note("short"), "short");
    let exact = "x".repeat(EVENT_NOTE_LIMIT);
    assert_eq!(event_note(&exact), exact);
    // Two-byte characters: the cut must not split one.
    let cut = event_note(&"é".repeat(EVENT_NOTE_LIMIT));
    assert!(cut.len() <= EVENT_NOTE_LIMIT);
    assert_eq!(cut.chars().filter(|&c| c == 'é').count(), 510);
    assert!(cut.ends_with('…'));
}

#[test]
fn a_settled_rollout_needs_no_database_and_records_nothing() {
    let mut r = rollout(with_database(json!({})));
    assert!(!crate::planner::settled(&r), "no status yet");
    expanded(&mut r);
    let p = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 4),
    );
    assert!(creates(&p, Step::Contract));
    let failed = [
        (Step::Expand, Succeeded),
        (Step::Contract, Failed("BackoffLimitExceeded".into())),
    ];
    let mut o = observed(both_rolled_out(), &failed, 5);
    let p = step(&mut r, &o);
    assert_eq!(p.phase(), RolloutPhase::Failed);
    assert!(
        p.actions.iter().any(|a| matches!(
            a,
            Action::Record { run, .. } if run.key.step == Step::Contract
        )),
        "the failure goes into the ledger before status says Failed"
    );
    assert!(crate::planner::settled(&r));
    // Observed without the database (nothing read from it): still Failed,
    // and no ledger write for the finished Job.
    o.now = at(6);
    let p = step(&mut r, &o);
    assert_eq!(p.phase(), RolloutPhase::Failed);
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    // A new generation (the spec changed) is not settled.
    r.metadata.generation = Some(2);
    assert!(!crate::planner::settled(&r));
}

#[test]
fn a_ca_is_only_accepted_with_a_verifying_tls_mode() {
    let with = |extra: serde_json::Value| {
        let mut database = json!({"engine": "postgres", "secretRef": {"name": "db", "key": "url"}, "caSecretRef": {"name": "db-ca", "key": "ca.crt"}});
        database
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        validate::validate(&spec(json!({"database": database})))
    };
    let problem = "spec.database.caSecretRef needs sslMode verify-ca or verify-full (a CA is only used to verify the server)";
    assert_eq!(with(json!({})).unwrap_err(), [problem]);
    assert_eq!(with(json!({"sslMode": "require"})).unwrap_err(), [problem]);
    assert!(with(json!({"sslMode": "verify-ca"})).is_ok());
    assert!(with(json!({"sslMode": "verify-full"})).is_ok());
}

#[test]
fn checks_are_due_when_confirming_or_stale_never_on_every_event() {
    use crate::planner::reads::checks_due;
    assert!(checks_due(None, at(100), false), "never evaluated");
    assert!(!checks_due(Some(at(98)), at(100), false), "2 s old: reused");
    assert!(checks_due(Some(at(95)), at(100), false), "5 s old: due");
    assert!(
        checks_due(Some(at(100)), at(100), true),
        "starting contract: always fresh (I2)"
    );
    assert!(
        !checks_due(Some(at(200)), at(100), false),
        "a future time is not stale"
    );
}

#[test]
fn an_unsafe_expand_statement_holds_before_anything_runs_unless_allowed() {
    let mut s = with_database(json!({"gate": {"pauseWorkloads": true}}));
    s.expand = sql_phase("ALTER TABLE users DROP COLUMN full_name");
    let r = rollout(s.clone());
    let before = || {
        vec![
            waiting("api", Wait::TemplateNotUpdated),
            rolled_out("worker"),
        ]
    };
    let p = plan(&r, &observed(before(), &[], 0));
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::RunSql(_) | Action::CreateJob(_))),
        "{:?}",
        p.actions
    );
    // The gate still holds (I5): the Deployments are paused, not resumed.
    assert!(
        p.actions
            .iter()
            .all(|a| matches!(a, Action::PauseWorkload(_)))
    );
    let stalled = cond(&p, condition::STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "UnsafeExpand")
    );
    assert!(
        stalled.message.contains("spec.expand.sql[0]"),
        "{}",
        stalled.message
    );
    assert!(
        stalled.message.contains("drop-column"),
        "{}",
        stalled.message
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.kind == EventKind::Warning && e.reason == Reason::UnsafeExpand)
    );

    // Allowed on the phase: it runs, and status and an event say so.
    s.expand.allow = vec!["drop-column".into()];
    let p = plan(&rollout(s), &observed(before(), &[], 0));
    assert!(p.actions.contains(&Action::RunSql(run(&r, Step::Expand))));
    assert_eq!(
        p.status.step(Step::Expand).unwrap().allowed,
        ["statement 1: drop-column"]
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.reason == Reason::UnsafeAllowed && e.note.contains("drop-column"))
    );
}

#[test]
fn transaction_control_in_inline_sql_is_an_invalid_spec() {
    let mut s = with_database(json!({}));
    s.expand = crate::api::PhaseSpec {
        sql: Some(vec![
            "CREATE TABLE t_commit (x int)".into(),
            "COMMIT".into(),
            "SELECT 1/0".into(),
        ]),
        ..crate::api::PhaseSpec::default()
    };
    let message = invalid_spec_message(s);
    assert!(
        message.contains("spec.expand.sql[1] (COMMIT): COMMIT is transaction control"),
        "{message}"
    );
}

#[test]
fn contract_may_drop_but_a_write_blocking_statement_is_flagged() {
    let mut s = with_database(json!({}));
    s.expand = sql_phase("ALTER TABLE users ADD COLUMN display_name text");
    s.contract.run = sql_phase("CREATE INDEX users_name ON users (display_name)");
    let mut r = rollout(s);
    let mut o = observed(vec![rolled_out("api"), rolled_out("worker")], &[], 0);
    o.ledger.insert(Step::Expand, LedgerState::Succeeded);
    let p = step(&mut r, &o);
    assert!(
        p.actions.contains(&Action::RunSql(run(&r, Step::Contract))),
        "{:?}",
        p.actions
    );
    assert!(p.events.iter().any(|e| e.kind == EventKind::Warning
        && e.reason == Reason::BlocksWrites
        && e.note.contains("non-concurrent-index")));
}

#[test]
fn the_started_event_says_which_statements_run_alone() {
    let mut s = with_database(json!({}));
    s.expand = crate::api::PhaseSpec {
        sql: Some(vec![
            "ALTER TABLE users ADD COLUMN email text".into(),
            "CREATE INDEX CONCURRENTLY users_email ON users (email)".into(),
        ]),
        ..crate::api::PhaseSpec::default()
    };
    let p = plan(
        &rollout(s),
        &observed(
            vec![
                waiting("api", Wait::TemplateNotUpdated),
                rolled_out("worker"),
            ],
            &[],
            0,
        ),
    );
    let started = p
        .events
        .iter()
        .find(|e| e.reason == Reason::ExpandStarted)
        .unwrap();
    assert_eq!(
        started.note,
        "started 2 SQL statement(s) (statements 1 in one transaction, 2 alone)"
    );
}

#[test]
fn i3_an_unreadable_inline_item_stalls_before_anything_runs_unless_allowed_per_statement() {
    // The item that made expand run 212 times: the tokenizer cannot read
    // the E-string, so the ROLLBACK after it would go unseen.
    let hidden = "UPDATE pn SET n = E'caf\\xC3\\xA9' WHERE id = 1; ROLLBACK";
    let mut s = with_database(json!({}));
    s.contract.run = sql_phase(hidden);
    let r = rollout(s.clone());
    let o = observed(vec![rolled_out("api"), rolled_out("worker")], &[], 0);
    let p = plan(&r, &o);
    // Held before expand: nothing of the rollout runs.
    assert!(p.actions.is_empty(), "{:?}", p.actions);
    let stalled = cond(&p, condition::STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "SqlUnreadable")
    );
    assert!(
        stalled.message.contains("spec.contract.sql[0]")
            && stalled.message.contains("line 1, column"),
        "{}",
        stalled.message
    );
    assert!(
        p.events
            .iter()
            .any(|e| e.kind == EventKind::Warning && e.reason == Reason::SqlUnreadable)
    );
    // A check bellows cannot read holds the same way.
    let mut c = with_database(json!({}));
    c.contract.after = Some(
        serde_json::from_value(json!({"checks": [{"name": "n", "sql": "SELECT E'\\xC3' = 'x'"}]}))
            .unwrap(),
    );
    assert_eq!(
        cond(&plan(&rollout(c), &o), condition::STALLED).reason,
        "SqlUnreadable"
    );
    // The phase's allow list cannot allow it; only the statement itself.
    s.contract.run.allow = vec!["unreadable".into()];
    let p = plan(&rollout(s.clone()), &o);
    assert_eq!(cond(&p, condition::STALLED).reason, "InvalidSpec");
    assert!(
        cond(&p, condition::STALLED)
            .message
            .contains("per statement only")
    );
    s.contract.run = sql_phase(&format!("-- bellows:allow unreadable\n{hidden}"));
    let p = plan(&rollout(s), &o);
    assert!(creates(&p, Step::Expand), "{:?}", p.actions);
}

#[test]
fn i6_a_statement_that_changes_a_timeout_bellows_sets_is_an_invalid_spec() {
    let mut s = with_database(json!({}));
    s.expand = sql_phase("SET LOCAL statement_timeout = 0");
    let message = invalid_spec_message(s);
    assert!(
        message.contains(
            "spec.expand.sql[0] (SET LOCAL statement_timeout = 0): it changes statement_timeout"
        ),
        "{message}"
    );
}

#[test]
fn the_contract_clock_starts_with_the_first_plan_to_see_every_workload_rolled_out() {
    for (after, unattended) in [
        (json!({}), true),
        (json!({"bakeTime": "10m"}), false),
        (json!({"approval": "Manual"}), false),
    ] {
        let mut r = rollout(spec(json!({
            "contract": {"job": spec(json!({})).contract.run.job, "after": after},
        })));
        expanded(&mut r);
        let p = step(
            &mut r,
            &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 100),
        );
        assert_eq!(p.starts_contract_clock, unattended, "{after}");
        let p = step(
            &mut r,
            &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 101),
        );
        assert!(!p.starts_contract_clock, "only the first plan: {after}");
    }
}

#[test]
fn i3_a_job_spec_that_could_run_the_migration_twice_is_an_invalid_spec() {
    let job = |extra: serde_json::Value| {
        let mut j = json!({"template": {"spec": {"containers": [{"name": "m"}]}}});
        j.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"expand": {"job": j}})
    };
    for (extra, field) in [
        (
            json!({"completions": 3, "parallelism": 3}),
            "spec.expand.job.completions must be 1",
        ),
        (
            json!({"parallelism": 2}),
            "spec.expand.job.parallelism must be 1",
        ),
        (
            json!({"suspend": true}),
            "spec.expand.job.suspend must not be true",
        ),
        (
            json!({"backoffLimitPerIndex": 2}),
            "spec.expand.job.backoffLimitPerIndex must be 0",
        ),
        (
            json!({"podFailurePolicy": {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}}),
            "spec.expand.job.podFailurePolicy must not Ignore",
        ),
        (
            json!({"managedBy": "kueue.x-k8s.io/multikueue"}),
            "spec.expand.job.managedBy must be unset",
        ),
    ] {
        let r = rollout(spec(job(extra.clone())));
        let p = plan(&r, &observed(both_rolled_out(), &[], 0));
        assert!(!creates_any(&p), "{extra}");
        let stalled = cond(&p, condition::STALLED);
        assert_eq!(stalled.reason, "InvalidSpec", "{extra}");
        assert!(
            stalled.message.contains(field),
            "{extra}: {}",
            stalled.message
        );
    }
    // What runs once is accepted.
    let r = rollout(spec(job(
        json!({"completions": 1, "parallelism": 1, "suspend": false,
        "podFailurePolicy": {"rules": [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [42]}}]}}),
    )));
    assert!(creates(
        &plan(&r, &observed(both_rolled_out(), &[], 0)),
        Step::Expand
    ));
}

#[test]
fn i2_an_approval_covers_the_contract_its_checks_the_database_and_the_workloads() {
    let base = with_database(
        json!({"contract": {"sql": ["ALTER TABLE users DROP COLUMN full_name"],
        "after": {"approval": "Manual", "checks": [{"name": "c", "sql": "SELECT true"}]}}}),
    );
    let key = |s: &SchemaRolloutSpec| crate::planner::approval_key(&rollout(s.clone()));
    let approved = key(&base);
    let mut edits: Vec<(&str, SchemaRolloutSpec)> = vec![];
    let mut checks = base.clone();
    checks.contract.after.as_mut().unwrap().checks[0].sql = "SELECT 1 = 1".into();
    edits.push(("a check", checks));
    let mut database = base.clone();
    database.database.as_mut().unwrap().statement_timeout = Some("1m".into());
    edits.push(("the database", database));
    let mut workloads = base.clone();
    workloads.workloads.pop();
    edits.push(("the workloads", workloads));
    let mut contract = base.clone();
    contract.contract.run = sql_phase("ALTER TABLE users DROP COLUMN email");
    edits.push(("the contract", contract));
    for (what, edited) in &edits {
        assert_ne!(
            key(edited),
            approved,
            "an edit to {what} needs a new approval"
        );
    }
    // Allowances and the bake time do not change what was approved.
    let mut allowed = base.clone();
    allowed.contract.run.allow = vec!["truncate".into()];
    assert_eq!(key(&allowed), approved);
}

#[test]
fn i5_the_gate_records_what_it_holds_and_releases_a_workload_removed_from_the_spec() {
    let mut r = rollout(spec(json!({"gate": {"pauseWorkloads": true}})));
    let p = step(&mut r, &observed(both_rolled_out(), &[], 0));
    assert_eq!(p.status.gated, ["api", "worker"]);
    let held = |names: &[&str]| -> Vec<Assessment> {
        names
            .iter()
            .map(|n| Assessment {
                paused: true,
                paused_by_us: true,
                ..waiting(n, Wait::ReplicasNotReady)
            })
            .collect()
    };
    let running = [(Step::Expand, Active)];
    let p = step(&mut r, &observed(held(&["api", "worker"]), &running, 1));
    assert_eq!(p.status.gated, ["api", "worker"]);
    // worker leaves the spec while expand runs: released at once, and
    // no longer recorded as held.
    r.spec.workloads.retain(|w| w.name != "worker");
    let p = step(&mut r, &observed(held(&["api"]), &running, 2));
    assert!(
        p.actions
            .contains(&Action::ResumeWorkload(deployment("worker"))),
        "{:?}",
        p.actions
    );
    assert!(
        !p.actions
            .contains(&Action::ResumeWorkload(deployment("api")))
    );
    assert_eq!(p.status.gated, ["api"]);
    // Had the rollout been stalled, nothing would have been released.
    let mut stalled = r.clone();
    let mut status = stalled.status.clone().unwrap();
    status.gated = vec!["api".into(), "worker".into()];
    stalled.status = Some(status);
    stalled.spec.timeouts = Some(serde_json::from_value(json!({"expand": "0s"})).unwrap());
    let p = plan(&stalled, &observed(held(&["api"]), &running, 3));
    assert_eq!(cond(&p, condition::STALLED).reason, "InvalidSpec");
    assert!(
        !p.actions
            .iter()
            .any(|a| matches!(a, Action::ResumeWorkload(_)))
    );
    assert_eq!(p.status.gated, ["api", "worker"]);
}

#[test]
fn i2_every_kind_s_own_holds_keep_contract_and_unwatched_kinds_are_polled() {
    for (kind, wait) in [
        (WorkloadKind::StatefulSet, Wait::PartitionHolds),
        (WorkloadKind::StatefulSet, Wait::OnDeleteHolds),
        (WorkloadKind::CronJob, Wait::CronJobSuspended),
        (WorkloadKind::CronJob, Wait::OldJobsActive),
        (WorkloadKind::Pods, Wait::NoPodsSelected),
        (WorkloadKind::DaemonSet, Wait::OldPodsRemain),
        (WorkloadKind::Rollout, Wait::RolloutAborted),
        (WorkloadKind::Rollout, Wait::RolloutPaused),
    ] {
        let mut r = rollout(spec(json!({})));
        expanded(&mut r);
        let worker = Assessment {
            kind,
            ..waiting("worker", wait)
        };
        let p = plan(
            &r,
            &observed(
                vec![rolled_out("api"), worker],
                &[(Step::Expand, Succeeded)],
                5,
            ),
        );
        assert!(!creates_any(&p), "{kind} {wait:?} must hold contract");
        assert_eq!(
            cond(&p, condition::ROLLED_OUT).reason,
            wait.reason().as_str()
        );
        assert_eq!(
            p.requeue_after,
            Some(crate::planner::POLL_UNWATCHED),
            "{kind}"
        );
    }
    // Not served or not found: stalled, and looked for again soon.
    let r = rollout(spec(json!({})));
    let missing = Assessment {
        kind: WorkloadKind::Rollout,
        problem: Some(Problem::NotServed("no Argo Rollouts".into())),
        ..waiting("worker", Wait::Unavailable)
    };
    let p = plan(&r, &observed(vec![rolled_out("api"), missing], &[], 0));
    assert!(!creates_any(&p));
    assert_eq!(cond(&p, condition::STALLED).reason, "WorkloadKindNotServed");
    assert_eq!(p.requeue_after, Some(crate::planner::POLL_UNWATCHED));
    // A Deployment is watched: no polling.
    let mut r = rollout(spec(json!({})));
    expanded(&mut r);
    let p = plan(
        &r,
        &observed(
            vec![rolled_out("api"), waiting("worker", Wait::OldPodsRemain)],
            &[(Step::Expand, Succeeded)],
            5,
        ),
    );
    assert!(p.requeue_after > Some(crate::planner::POLL_UNWATCHED));
}

#[test]
fn workloads_of_every_kind_are_refused_where_their_spec_cannot_work() {
    let with = |workloads: serde_json::Value, extra: serde_json::Value| {
        let mut s = spec(extra);
        s.workloads = serde_json::from_value(workloads).unwrap();
        s
    };
    let version = json!({"image": {"container": "app", "tag": "2"}});
    for (case, workloads, extra, mentions) in [
        (
            "gate on a DaemonSet",
            json!([{"kind": "DaemonSet", "name": "agent", "version": version}]),
            json!({"gate": {"pauseWorkloads": true}}),
            "spec.gate.pauseWorkloads cannot hold spec.workloads[0], a DaemonSet",
        ),
        (
            "Pods without a selector",
            json!([{"kind": "Pods", "name": "bare", "version": version}]),
            json!({}),
            "spec.workloads[0].selector is required for kind Pods",
        ),
        (
            "Pods selecting everything",
            json!([{"kind": "Pods", "name": "bare", "selector": {}, "version": version}]),
            json!({}),
            "spec.workloads[0].selector selects every pod",
        ),
        (
            "a selector on a StatefulSet",
            json!([{"kind": "StatefulSet", "name": "db", "selector": {"matchLabels": {"a": "b"}}, "version": version}]),
            json!({}),
            "spec.workloads[0].selector is for kind Pods only",
        ),
        (
            "the same kind and name twice",
            json!([{"kind": "CronJob", "name": "x", "version": version}, {"kind": "CronJob", "name": "x", "version": version}]),
            json!({}),
            "spec.workloads[1]: CronJob \"x\" is listed twice",
        ),
    ] {
        let message = invalid_spec_message(with(workloads, extra));
        assert!(message.contains(mentions), "{case}: {message}");
    }
    // One name for two kinds is two workloads.
    let s = with(
        json!([{"kind": "Deployment", "name": "x", "version": version},
               {"kind": "StatefulSet", "name": "x", "version": version}]),
        json!({}),
    );
    assert!(validate::validate(&s).is_ok());
}

#[test]
fn i5_the_gate_holds_every_holdable_kind_under_its_own_key() {
    let mut s = spec(json!({"gate": {"pauseWorkloads": true}}));
    s.workloads = serde_json::from_value(json!([
        {"kind": "StatefulSet", "name": "db", "version": {"labels": {"v": "2"}}},
        {"kind": "CronJob", "name": "report", "version": {"labels": {"v": "2"}}},
        {"kind": "Rollout", "name": "web", "version": {"labels": {"v": "2"}}},
    ]))
    .unwrap();
    let mut r = rollout(s);
    let of = |kind, name: &str| Assessment {
        kind,
        ..waiting(name, Wait::TemplateNotUpdated)
    };
    let found = || {
        vec![
            of(WorkloadKind::StatefulSet, "db"),
            of(WorkloadKind::CronJob, "report"),
            of(WorkloadKind::Rollout, "web"),
        ]
    };
    let p = step(&mut r, &observed(found(), &[], 0));
    let held: Vec<String> = p
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::PauseWorkload(h) => Some(h.key()),
            _ => None,
        })
        .collect();
    assert_eq!(held, ["StatefulSet/db", "CronJob/report", "Rollout/web"]);
    assert_eq!(
        p.status.gated,
        ["StatefulSet/db", "CronJob/report", "Rollout/web"]
    );
    // The StatefulSet leaves the spec while expand runs: released at once.
    r.spec.workloads.remove(0);
    let marked = |a: Assessment| Assessment {
        paused: true,
        paused_by_us: true,
        ..a
    };
    let p = step(
        &mut r,
        &observed(
            found().into_iter().skip(1).map(marked).collect(),
            &[(Step::Expand, Active)],
            1,
        ),
    );
    assert!(
        p.actions
            .contains(&Action::ResumeWorkload(crate::api::GateHold {
                kind: WorkloadKind::StatefulSet,
                name: "db".into(),
            }))
    );
    assert_eq!(p.status.gated, ["CronJob/report", "Rollout/web"]);
    for key in ["api", "StatefulSet/db", "Rollout/web"] {
        assert_eq!(crate::api::GateHold::parse(key).unwrap().key(), key);
    }
    assert_eq!(crate::api::GateHold::parse("Nonsense/x"), None);
}

#[test]
fn i6_a_refused_job_or_ledger_record_or_a_taken_name_stalls_the_phase_with_its_own_reason() {
    for (what, reason, says) in [
        (
            crate::planner::Refused::Job,
            "JobRejected",
            "create the expand Job",
        ),
        (
            crate::planner::Refused::Ledger,
            "LedgerRejected",
            "record in the cluster ledger the expand Job",
        ),
        (
            crate::planner::Refused::NameTaken,
            "JobNameTaken",
            "a Job bellows did not create holds the name of the expand Job",
        ),
    ] {
        let r = rollout(spec(json!({})));
        let mut o = observed(both_rolled_out(), &[], 0);
        o.rejected = Some(crate::planner::Rejected {
            step: Step::Expand,
            what,
            message: "exceeded quota: count/configmaps=1".into(),
        });
        let p = plan(&r, &o);
        assert!(!creates_any(&p), "{reason}");
        let stalled = cond(&p, condition::STALLED);
        assert_eq!(stalled.reason, reason);
        assert!(stalled.message.contains(says), "{}", stalled.message);
        assert!(
            stalled
                .message
                .ends_with("exceeded quota: count/configmaps=1")
        );
        assert_eq!(p.requeue_after, Some(RETRY_REJECTED));
    }
}

/// A rollout whose contract waits for `objectives`, measured with a
/// Prometheus, expand done and every workload rolled out; the plan that
/// got it there.
fn with_objectives(objectives: serde_json::Value) -> (SchemaRollout, Plan) {
    let mut s = spec(json!({"prometheus": {"address": "http://prometheus:9090"}}));
    s.contract.after = Some(serde_json::from_value(json!({"objectives": objectives})).unwrap());
    let mut r = rollout(s);
    step(&mut r, &observed(both_rolled_out(), &[], 0));
    let p = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 1),
    );
    (r, p)
}

/// Observed at `now`, expand done, every workload rolled out, with the
/// objective `name` measured as `result`.
fn measured(name: &str, result: Result<f64, NoNumber>, now: i64) -> Observed {
    let mut o = observed(both_rolled_out(), &[(Step::Expand, Succeeded)], now);
    o.measurements = vec![Measurement {
        name: name.into(),
        workload: None,
        at: at(now),
        result,
    }];
    o
}

fn error_ratio(extra: serde_json::Value) -> serde_json::Value {
    let mut o =
        json!({"name": "errors", "query": "sum(rate(failed[1m]))", "max": 0.01, "successes": 2});
    for (k, v) in extra.as_object().unwrap() {
        o[k] = v.clone();
    }
    json!([o])
}

#[test]
fn i2_contract_waits_until_every_objective_passed_enough_times_in_a_row() {
    let (mut r, p) = with_objectives(error_ratio(json!({})));
    assert_eq!(
        p.hold_reason,
        Some(Reason::ObjectivesPending),
        "{:?}",
        p.status.message
    );
    assert!(!creates(&p, Step::Contract));
    assert_eq!(
        p.requeue_after,
        Some(Duration::from_secs(1)),
        "measured at once"
    );
    let p = step(&mut r, &measured("errors", Ok(0.001), 2));
    assert_eq!(p.hold_reason, Some(Reason::ObjectivesPending));
    assert_eq!(p.status.objectives[0].passes, 1);
    assert_eq!(
        p.requeue_after,
        Some(Duration::from_secs(30)),
        "the default interval"
    );
    // A violation starts the count again.
    let p = step(&mut r, &measured("errors", Ok(0.05), 32));
    assert_eq!(p.hold_reason, Some(Reason::ObjectiveViolated));
    assert!(
        p.status
            .message
            .as_deref()
            .unwrap()
            .contains("0.05 is out of bounds (max 0.01)")
    );
    assert_eq!(p.status.objectives[0].passes, 0);
    step(&mut r, &measured("errors", Ok(0.0), 62));
    let p = step(&mut r, &measured("errors", Ok(0.0), 92));
    assert!(creates(&p, Step::Contract), "{:?}", p.status.message);
}

#[test]
fn i2_no_data_never_passes_an_objective_however_long_it_lasts() {
    let (mut r, _) = with_objectives(error_ratio(json!({"successes": 1})));
    for n in 0..20 {
        let t = 2 + n * 30;
        let p = step(
            &mut r,
            &measured(
                "errors",
                Err(NoNumber::NoData("the query returned no series".into())),
                t,
            ),
        );
        assert_eq!(p.hold_reason, Some(Reason::ObjectiveInconclusive), "at {t}");
        assert!(!creates_any(&p));
        assert!(
            p.status
                .message
                .as_deref()
                .unwrap()
                .contains("no data: the query returned no series")
        );
    }
    // Between measurements the status still says why.
    let p = step(
        &mut r,
        &observed(both_rolled_out(), &[(Step::Expand, Succeeded)], 700),
    );
    assert_eq!(p.hold_reason, Some(Reason::ObjectiveInconclusive));
}

#[test]
fn a_query_prometheus_rejects_stalls_and_a_failing_objective_fails_the_rollout() {
    let (mut r, _) = with_objectives(error_ratio(json!({})));
    let p = step(
        &mut r,
        &measured(
            "errors",
            Err(NoNumber::Rejected("1:5: parse error".into())),
            2,
        ),
    );
    let stalled = cond(&p, condition::STALLED);
    assert_eq!(
        (stalled.status.as_str(), stalled.reason.as_str()),
        ("True", "ObjectiveQueryRejected")
    );
    assert!(
        stalled
            .message
            .ends_with("Prometheus rejected the query: 1:5: parse error")
    );
    assert!(!creates_any(&p));

    let (mut r, _) = with_objectives(error_ratio(json!({"onViolation": "Fail"})));
    let p = step(&mut r, &measured("errors", Ok(0.2), 2));
    assert_eq!(p.phase(), RolloutPhase::Failed);
    assert_eq!(cond(&p, condition::STALLED).reason, "ObjectiveViolated");
    let p = step(&mut r, &measured("errors", Ok(0.0), 40));
    assert!(!creates_any(&p), "a failed rollout never contracts");
}

#[test]
fn expand_waits_for_a_prometheus_that_answers_and_queries_it_accepts() {
    let mut s = spec(json!({"prometheus": {"address": "http://prometheus:9090"}}));
    s.contract.after =
        Some(serde_json::from_value(json!({"objectives": error_ratio(json!({}))})).unwrap());
    let mut r = rollout(s);
    assert!(
        crate::planner::reads::objectives_wanted(&r, true),
        "sent before expand"
    );
    assert!(
        !crate::planner::reads::objectives_wanted(&r, false),
        "only in the live round"
    );
    let before = |result| {
        let mut o = observed(both_rolled_out(), &[], 0);
        o.measurements = vec![Measurement {
            name: "errors".into(),
            workload: None,
            at: at(0),
            result,
        }];
        o
    };
    for (result, reason, says) in [
        (
            NoNumber::Rejected("1:5: parse error".into()),
            "ObjectiveQueryRejected",
            "objective errors: Prometheus rejected the query: 1:5: parse error",
        ),
        (
            NoNumber::Unreachable(
                "Prometheus at http://prometheus:9090 unreachable: dns error".into(),
            ),
            "PrometheusUnreachable",
            "objective errors: Prometheus at http://prometheus:9090 unreachable: dns error",
        ),
    ] {
        let p = step(&mut r, &before(Err(result)));
        let stalled = cond(&p, condition::STALLED);
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", reason)
        );
        assert_eq!(stalled.message, says);
        assert!(!creates_any(&p), "{reason}: nothing runs");
        assert_eq!(p.requeue_after, Some(RETRY_REJECTED));
    }
    // The new version has no series yet: that does not hold expand.
    let p = step(
        &mut r,
        &before(Err(NoNumber::NoData("the query returned no series".into()))),
    );
    assert!(creates(&p, Step::Expand), "{:?}", p.status.message);
}

#[test]
fn objective_passes_count_only_while_every_workload_is_rolled_out() {
    let (mut r, _) = with_objectives(error_ratio(json!({})));
    step(&mut r, &measured("errors", Ok(0.0), 2));
    let mut o = measured("errors", Ok(0.0), 32);
    o.workloads = vec![rolled_out("api"), waiting("worker", Wait::RolledBack)];
    let p = step(&mut r, &o);
    assert_eq!(p.status.objectives[0].passes, 0);
    assert_eq!(p.hold_reason, Some(Reason::RolledBack));
}

#[test]
fn objective_queries_fill_their_placeholders_or_the_spec_is_refused() {
    let targets = |query: &str| {
        let (r, _) = with_objectives(json!([{"name": "q", "query": query, "max": 1}]));
        crate::planner::objective::targets(&r)
    };
    let per_workload =
        targets("up{ns=\"{{namespace}}\",app=\"{{workload}}\",v=\"{{version}}\"}").unwrap();
    let queries: Vec<_> = per_workload
        .iter()
        .map(|t| (t.workload.as_deref(), t.query.as_str()))
        .collect();
    assert_eq!(
        queries,
        [
            (Some("api"), "up{ns=\"shop\",app=\"api\",v=\"2.0.0\"}"),
            (Some("worker"), "up{ns=\"shop\",app=\"worker\",v=\"2\"}"),
        ]
    );
    // The two workloads' versions differ: `{{version}}` alone is ambiguous.
    assert!(
        targets("up{v=\"{{version}}\"}")
            .unwrap_err()
            .contains("versions differ")
    );
    let mut s = spec(json!({"prometheus": {"address": "http://p:9090"}}));
    for (objective, says) in [
        (
            json!({"name": "q", "query": "up{x=\"{{pod}}\"}", "max": 1}),
            "unknown placeholder {{pod}}",
        ),
        (
            json!({"name": "q", "query": "up", "min": 2, "max": 1}),
            "min 2 is above max 1",
        ),
        (
            json!({"name": "q", "query": "up", "max": 1, "interval": "0s"}),
            "interval",
        ),
    ] {
        s.contract.after =
            Some(serde_json::from_value(json!({"objectives": [objective]})).unwrap());
        let stalled = invalid_spec_message(s.clone());
        assert!(stalled.contains(says), "{stalled}");
    }
    s.prometheus = None;
    let stalled = invalid_spec_message(s);
    assert!(stalled.contains("need spec.prometheus"), "{stalled}");
}

/// A rollout with a downtime budget of 99% over an hour (36 s of
/// downtime), a floor of 25% and no objectives.
fn with_budget() -> SchemaRollout {
    let mut s = spec(json!({"prometheus": {"address": "http://prometheus:9090"}}));
    s.budget = Some(
        serde_json::from_value(json!({
            "objective": 0.99, "period": "1h", "floor": 0.25, "interval": "10s",
            "errorRatio": "sum(rate(failed[{{window}}])) / sum(rate(all[{{window}}]))",
        }))
        .unwrap(),
    );
    rollout(s)
}

/// `o` with the budget measured at `now`: `left` the period's error
/// ratio, `spent` the rollout's since expand started.
fn budget_measured(mut o: Observed, period: Result<f64, NoNumber>, spent: Option<f64>) -> Observed {
    o.budget = Some(crate::planner::budget::Measurement {
        at: o.now,
        period,
        rollout: spent.map(|r| (Ok(r), Duration::from_secs(20))),
    });
    o
}

#[test]
fn expand_waits_while_less_budget_is_left_than_the_floor() {
    let mut r = with_budget();
    // Never measured: no number is never a pass.
    let p = step(&mut r, &observed(both_rolled_out(), &[], 0));
    assert_eq!(p.hold_reason, Some(Reason::BudgetUnknown));
    assert!(!creates_any(&p));
    // 0.9% of requests failed over the period: 10% of the budget left.
    let p = step(
        &mut r,
        &budget_measured(observed(both_rolled_out(), &[], 1), Ok(0.009), None),
    );
    assert_eq!(p.hold_reason, Some(Reason::BudgetExhausted));
    assert_eq!(
        p.status.message.as_deref(),
        Some("downtime budget: 10.0% of the 1h budget left (3s of 36s), below the floor of 25.0%")
    );
    assert_eq!(p.requeue_after, Some(Duration::from_secs(10)));
    assert!(!creates_any(&p));
    // Prometheus refuses the query: stalled before anything runs.
    let p = step(
        &mut r,
        &budget_measured(
            observed(both_rolled_out(), &[], 2),
            Err(NoNumber::Rejected("1:5: parse error".into())),
            None,
        ),
    );
    assert_eq!(
        cond(&p, condition::STALLED).reason,
        "ObjectiveQueryRejected"
    );
    // Half of it left: expand starts.
    let p = step(
        &mut r,
        &budget_measured(observed(both_rolled_out(), &[], 12), Ok(0.005), None),
    );
    assert!(creates(&p, Step::Expand), "{:?}", p.status.message);
    let left = p.status.budget.as_ref().unwrap().remaining.unwrap();
    assert!((left - 0.5).abs() < 1e-9, "{left}");
}

#[test]
fn contract_waits_for_the_budget_and_status_keeps_what_the_rollout_spent() {
    let mut r = with_budget();
    step(
        &mut r,
        &budget_measured(observed(both_rolled_out(), &[], 0), Ok(0.0), None),
    );
    // After expand the budget was spent by someone else's outage.
    let after = |now| observed(both_rolled_out(), &[(Step::Expand, Succeeded)], now);
    let p = step(&mut r, &budget_measured(after(20), Ok(0.008), Some(0.05)));
    assert_eq!(p.hold_reason, Some(Reason::BudgetExhausted));
    assert!(!creates(&p, Step::Contract));
    let b = p.status.budget.clone().unwrap();
    // 5% of requests for 20 s cost 1 s of the 36 s budget.
    assert_eq!(b.error_ratio, Some(0.05));
    assert!((b.consumed_seconds.unwrap() - 1.0).abs() < 1e-9, "{b:?}");
    assert!((b.consumed.unwrap() - 1.0 / 36.0).abs() < 1e-9, "{b:?}");
    // Prometheus gone: no number, no contract.
    let p = step(
        &mut r,
        &budget_measured(
            after(30),
            Err(NoNumber::Unreachable("Prometheus unreachable".into())),
            None,
        ),
    );
    assert_eq!(p.hold_reason, Some(Reason::BudgetUnknown));
    assert!(!creates(&p, Step::Contract));
    let p = step(&mut r, &budget_measured(after(40), Ok(0.001), Some(0.0)));
    assert!(creates(&p, Step::Contract), "{:?}", p.status.message);
    assert_eq!(
        p.status.budget.as_ref().unwrap().consumed_seconds,
        Some(0.0)
    );
}

#[test]
fn a_budget_without_prometheus_or_window_is_refused() {
    let mut r = with_budget();
    let mut s = r.spec.clone();
    s.budget.as_mut().unwrap().error_ratio = "sum(rate(failed[5m]))".into();
    assert!(invalid_spec_message(s.clone()).contains("must name its range {{window}}"));
    s.budget.as_mut().unwrap().error_ratio = "x[{{window}}]{{pod}}".into();
    assert!(invalid_spec_message(s.clone()).contains("unknown placeholder {{pod}}"));
    s.budget.as_mut().unwrap().objective = 1.0;
    assert!(invalid_spec_message(s.clone()).contains("between 0 and 1"));
    r.spec.prometheus = None;
    assert!(invalid_spec_message(r.spec).contains("spec.budget needs spec.prometheus"));
}
