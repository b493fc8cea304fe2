//! Snapshot-like checks of the rendered text: key lines, exactly.

use super::*;
use serde_json::{Value, json};

/// 2026-01-01T00:10:00Z, "now" in every test.
fn now() -> Timestamp {
    "2026-01-01T00:10:00Z".parse().unwrap()
}

/// A time `secs` seconds before [`now`], as the API writes it.
fn ago(secs: i64) -> String {
    now()
        .checked_sub(SignedDuration::from_secs(secs))
        .unwrap()
        .to_string()
}

/// The spec of rollout `shop/gated`: one workload `api` at image tag
/// 2.0.0, Job expand and contract, Manual approval.
fn spec() -> Value {
    let job = json!({"template": {"spec": {"containers": [{"name": "m", "image": "pg"}]}}});
    json!({
        "workloads": [{"kind": "Deployment", "name": "api",
                       "version": {"image": {"container": "app", "tag": "2.0.0"}}}],
        "expand": {"job": job},
        "contract": {"job": job, "after": {"approval": "Manual"}},
    })
}

/// Rollout `shop/gated` (uid u-1, generation 2) with `status`.
fn rollout(spec: Value, status: Value) -> SchemaRollout {
    serde_json::from_value(json!({
        "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
        "metadata": {"name": "gated", "namespace": "shop", "uid": "u-1", "generation": 2,
                     "creationTimestamp": ago(600)},
        "spec": spec, "status": status,
    }))
    .unwrap()
}

fn condition(type_: &str, status: &str, reason: &str, secs: i64, message: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason, "message": message,
           "lastTransitionTime": ago(secs)})
}

/// Awaiting approval: expanded 4 s after it started, rolled out 6 s after
/// expand finished.
fn awaiting_approval() -> SchemaRollout {
    rollout(
        spec(),
        json!({
            "observedGeneration": 2, "phase": "AwaitingApproval", "phaseSince": ago(75),
            "message": "waiting for approval:\n annotate bellows.dev/approve=\"uid-1/d\"",
            "holdReason": "AwaitingApproval", "approvalKey": "uid-1/d",
            "rolledOutAt": ago(80),
            "steps": [{"step": "Expand", "jobName": "gated-expand-1a2b", "digest": "d",
                       "state": "Succeeded", "startedAt": ago(90), "finishedAt": ago(86)}],
            "workloads": [{"name": "api", "rolledOut": true, "replicas": 2, "newPods": 2, "oldPods": 0}],
            "conditions": [
                condition("Ready", "False", "AwaitingApproval", 75, "waiting for approval"),
                condition("RolledOut", "True", "RolledOut", 80, ""),
            ],
        }),
    )
}

/// An event about `name` (uid `uid`) of kind `kind`, `secs` ago.
fn event(kind: &str, name: &str, uid: &str, reason: &str, secs: i64) -> Event {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}.{reason}"), "namespace": "shop"},
        "eventTime": now().checked_sub(SignedDuration::from_secs(secs)).unwrap().to_string(),
        "regarding": {"kind": kind, "name": name, "namespace": "shop", "uid": uid},
        "type": "Normal", "reason": reason, "note": format!("note of {reason}"),
        "reportingController": "bellows", "reportingInstance": "b", "action": "Reconcile",
    }))
    .unwrap()
}

/// The first word of a line, tree branches and indent aside.
fn first_word(line: &str) -> &str {
    line.trim_start_matches(['├', '└', '─', ' '])
        .split_whitespace()
        .next()
        .unwrap_or_default()
}

/// Asserts that, for each of `want`, the first line of `text` with the same
/// first word is exactly that line.
fn assert_lines(text: &str, want: &[&str]) {
    for w in want {
        let got = text
            .lines()
            .find(|l| first_word(l) == first_word(w))
            .unwrap_or_else(|| panic!("no line like {w:?} in:\n{text}"));
        assert_eq!(got, *w, "in:\n{text}");
    }
}

#[test]
fn header_shows_name_generations_phase_age_message_and_hold() {
    let text = status(&awaiting_approval(), &[], now());
    assert_lines(
        &text,
        &[
            "SchemaRollout:   shop/gated",
            "Generation:      2 (observed 2)",
            "Phase:           AwaitingApproval for 75s",
            "Message:         waiting for approval: annotate bellows.dev/approve=\"uid-1/d\"",
            "Contract held:   AwaitingApproval",
            "Approval:        uid-1/d (not approved: kubectl bellows approve)",
        ],
    );
    assert!(!text.contains("Paused:"), "{text}");
}

#[test]
fn phases_show_jobs_states_and_durations() {
    let text = status(&awaiting_approval(), &[], now());
    let phases: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "Phases:")
        .skip(1)
        .take(4)
        .collect();
    assert_eq!(
        phases,
        [
            "├─ expand       Succeeded   job gated-expand-1a2b      took 4s",
            "├─ rollout      Succeeded   1/1 workloads rolled out   took 6s",
            "├─ transition   -           not set",
            "└─ contract     Pending     held: AwaitingApproval",
        ]
    );
}

#[test]
fn running_and_failed_steps_show_elapsed_time_and_the_failure() {
    let r = rollout(
        spec(),
        json!({"phase": "Expanding", "steps": [{"step": "Expand", "jobName": "gated-expand-1a2b",
               "digest": "d", "state": "Running", "startedAt": ago(200)}]}),
    );
    let text = status(&r, &[], now());
    assert_lines(
        &text,
        &[
            "├─ expand       Running   job gated-expand-1a2b   running for 3m20s",
            "├─ rollout      Pending",
            "Generation:      2 (not yet observed)",
        ],
    );

    let r = rollout(
        spec(),
        json!({"phase": "Failed", "observedGeneration": 1, "steps": [{"step": "Expand",
               "statements": 2, "digest": "d", "state": "Failed", "startedAt": ago(30),
               "finishedAt": ago(28), "message": "statement 2 of 2\nfailed"}]}),
    );
    let text = status(&r, &[], now());
    assert_lines(
        &text,
        &[
            "├─ expand       Failed    sql, 2 statements: statement 2 of 2 failed   took 2s",
            "Generation:      2 (observed 1, status not yet updated for this generation)",
        ],
    );
}

#[test]
fn rollout_in_progress_counts_workloads_and_time_since_expand() {
    let mut spec = spec();
    spec["transition"] = json!({"sql": ["UPDATE t SET a = b"]});
    spec["workloads"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "worker", "version": {"labels": {"v": "2", "app": "w"}}}));
    let r = rollout(
        spec,
        json!({"phase": "AwaitingRollout",
               "steps": [{"step": "Expand", "jobName": "j", "digest": "d", "state": "Succeeded",
                          "startedAt": ago(70), "finishedAt": ago(65)}],
               "workloads": [{"name": "api", "rolledOut": false, "replicas": 3, "newPods": 1,
                              "oldPods": 2, "reason": "RolloutInProgress",
                              "message": "1 of 3 pods\nupdated"}]}),
    );
    let text = status(&r, &[], now());
    assert_lines(
        &text,
        &[
            "├─ rollout      Running     0/2 workloads rolled out   running for 65s",
            "├─ transition   Pending",
            "├─ Deployment/api      image app:2.0.0    new 1/3   old 2   not rolled out (RolloutInProgress: 1 of 3 pods updated)",
            "└─ Deployment/worker   labels app=w,v=2                     no status yet",
        ],
    );
}

#[test]
fn workloads_show_version_counts_and_rolled_out() {
    let text = status(&awaiting_approval(), &[], now());
    assert_lines(
        &text,
        &["└─ Deployment/api   image app:2.0.0   new 2/2   old 0   rolled out"],
    );
}

#[test]
fn conditions_are_a_table() {
    let text = status(&awaiting_approval(), &[], now());
    assert_lines(
        &text,
        &[
            "  TYPE        STATUS   REASON             AGE   MESSAGE",
            "  Ready       False    AwaitingApproval   75s   waiting for approval",
            "  RolledOut   True     RolledOut          80s",
        ],
    );
}

#[test]
fn events_are_this_objects_last_ones_oldest_first() {
    let mut events: Vec<Event> = (0..12)
        .map(|i| event("SchemaRollout", "gated", "u-1", &format!("R{i}"), 100 - i))
        .collect();
    events.reverse();
    // Not about this rollout: another kind, another name, a deleted namesake.
    events.push(event("Job", "gated", "u-1", "JobEvent", 1));
    events.push(event("SchemaRollout", "other", "u-2", "Other", 1));
    events.push(event("SchemaRollout", "gated", "u-0", "Namesake", 1));
    let mut repeated = event("SchemaRollout", "gated", "u-1", "ContractHeld", 500);
    repeated.series =
        Some(serde_json::from_value(json!({"count": 3, "lastObservedTime": ago(5)})).unwrap());
    events.push(repeated);

    let text = status(&awaiting_approval(), &events, now());
    let shown: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Events"))
        .collect();
    assert_eq!(shown[0], "Events (last 10 of 13):");
    assert_eq!(shown[1], "  TYPE     REASON         AGE       NOTE");
    assert_eq!(shown[2], "  Normal   R3             97s       note of R3");
    assert_eq!(shown[10], "  Normal   R11            89s       note of R11");
    assert_eq!(
        shown[11],
        "  Normal   ContractHeld   5s (x3)   note of ContractHeld"
    );
    assert_eq!(shown.len(), 12);
}

#[test]
fn a_fresh_object_renders_without_status() {
    let r = rollout(spec(), Value::Null);
    let mut paused = r.clone();
    paused.spec.paused = true;
    let text = status(&paused, &[], now());
    assert_lines(
        &text,
        &[
            "Phase:           -",
            "Paused:          yes (kubectl bellows resume to continue)",
            "├─ expand       Pending",
            "└─ Deployment/api   image app:2.0.0         no status yet",
        ],
    );
    assert!(text.contains("Conditions:\n  <none>\n"), "{text}");
    assert!(
        text.ends_with("Events (last 0 of 0):\n  <none>\n"),
        "{text}"
    );
}

#[test]
fn list_is_a_table_with_namespace_only_for_all_namespaces() {
    let rollouts = [awaiting_approval(), rollout(spec(), Value::Null)];
    assert_eq!(
        list(&rollouts, Some("shop"), now()),
        "NAME    PHASE              READY   AGE   MESSAGE\n\
         gated   AwaitingApproval   False   10m   waiting for approval: annotate bellows.dev/approve=\"uid-1/d\"\n\
         gated   -                  -       10m\n"
    );
    let all = list(&rollouts[..1], None, now());
    assert_eq!(
        all.lines().next(),
        Some("NAMESPACE   NAME    PHASE              READY   AGE   MESSAGE")
    );
    assert!(
        all.lines()
            .nth(1)
            .unwrap()
            .starts_with("shop        gated   AwaitingApproval")
    );
    assert_eq!(
        list(&[], Some("shop"), now()),
        "No SchemaRollouts found in namespace shop.\n"
    );
    assert_eq!(list(&[], None, now()), "No SchemaRollouts found.\n");
}

#[test]
fn ages_read_like_kubectl() {
    let cases = [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (192, "3m12s"),
        (600, "10m"),
        (3 * 3600 - 1, "179m"),
        (3 * 3600 + 300, "3h5m"),
        (8 * 3600, "8h"),
        (48 * 3600, "2d"),
        (76 * 3600, "3d4h"),
        (90 * 86400, "90d"),
        (2 * 365 * 86400 + 10 * 86400, "2y10d"),
        (9 * 365 * 86400, "9y"),
    ];
    for (secs, want) in cases {
        assert_eq!(human(SignedDuration::from_secs(secs)), want, "{secs}s");
    }
}

#[test]
fn objectives_show_their_bound_last_value_and_passes() {
    let mut s = spec();
    s["prometheus"] = json!({"address": "http://prometheus:9090"});
    s["contract"]["after"]["objectives"] = json!([
        {"name": "errors", "query": "x", "max": 0.01},
        {"name": "latency", "query": "y", "max": 0.3, "successes": 5},
    ]);
    let r = rollout(
        s,
        json!({"phase": "AwaitingRollout", "objectives": [
            {"name": "errors", "value": 0.05, "passes": 0, "measuredAt": ago(5),
             "message": "0.05 is out of bounds (max 0.01)"},
        ]}),
    );
    let text = status(&r, &[], now());
    assert_lines(
        &text,
        &[
            "├─ errors    <= 0.01   0.05               0/3 passes   5s   0.05 is out of bounds (max 0.01)",
            "└─ latency   <= 0.3    not measured yet",
        ],
    );
}

#[test]
fn the_downtime_budget_shows_what_the_rollout_spent_and_what_is_left() {
    let mut s = spec();
    s["prometheus"] = json!({"address": "http://prometheus:9090"});
    s["budget"] = json!({"objective": 0.999, "errorRatio": "x[{{window}}]", "floor": 0.25});
    let r = rollout(
        s,
        json!({"phase": "AwaitingRollout", "budget": {
            "errorRatio": 0.05, "consumedSeconds": 3.0, "consumed": 0.0011574, "remaining": 0.8,
            "measuredAt": ago(5)}}),
    );
    let text = status(&r, &[], now());
    assert_lines(
        &text,
        &[
            "├─ objective      99.9% over 720h",
            "├─ this rollout   0.1% of the budget (3.0s of downtime, error ratio 5.0%)",
            "├─ left           80.0% (floor 25.0%)",
            "└─ measured       5s",
        ],
    );
}
