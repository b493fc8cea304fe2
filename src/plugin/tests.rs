//! The plugin's pure parts: name dispatch, reports, settling, error text.

use super::*;
use serde_json::Value;

/// Rollout `shop/gated` at generation 2 with `approval` and `status`.
fn rollout(approval: &str, status: Value) -> SchemaRollout {
    let job = json!({"template": {"spec": {"containers": [{"name": "m", "image": "pg"}]}}});
    serde_json::from_value(json!({
        "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
        "metadata": {"name": "gated", "namespace": "shop", "generation": 2, "uid": "uid-7"},
        "spec": {
            "workloads": [{"name": "api", "version": {"labels": {"v": "2"}}}],
            "expand": {"job": job},
            "contract": {"job": job, "after": {"approval": approval}},
        },
        "status": status,
    }))
    .unwrap()
}

#[test]
fn the_plugin_is_recognised_by_its_file_name_only() {
    assert!(invoked_as_plugin("kubectl-bellows"));
    assert!(invoked_as_plugin("/usr/local/bin/kubectl-bellows"));
    assert!(!invoked_as_plugin("bellows"));
    assert!(!invoked_as_plugin("/opt/kubectl-bellows/bellows"));
    assert!(!invoked_as_plugin("kubectl-bellows-old"));
}

#[test]
fn approving_while_awaiting_approval_says_only_what_was_done() {
    let r = rollout("Manual", json!({"phase": "AwaitingApproval"}));
    assert_eq!(
        approval_report(&r, "shop"),
        format!(
            "schemarollout shop/gated approved: bellows.dev/approve=\"{}\"",
            crate::planner::approval_key(&r)
        )
    );
}

#[test]
fn approving_early_notes_the_other_gates() {
    let r = rollout("Manual", json!({"phase": "AwaitingRollout"}));
    let text = approval_report(&r, "shop");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "schemarollout shop/gated approved: bellows.dev/approve=\"{}\"",
            crate::planner::approval_key(&r)
        )
    );
    assert!(
        lines[1].starts_with(
            "note: phase is AwaitingRollout, not AwaitingApproval; contract still waits"
        ),
        "{text}"
    );
    let fresh = rollout("Manual", Value::Null);
    assert!(approval_report(&fresh, "shop").contains("note: phase is unknown"));
}

#[test]
fn approving_an_automatic_rollout_says_it_changes_nothing() {
    let r = rollout("Automatic", json!({"phase": "AwaitingRollout"}));
    let text = approval_report(&r, "shop");
    assert_eq!(
        text.lines().nth(1),
        Some("note: its approval is Automatic, so contract does not wait for this annotation")
    );
}

#[test]
fn pause_reports_say_whether_anything_changed() {
    assert_eq!(
        pause_report("shop", "gated", false, true),
        "schemarollout shop/gated paused"
    );
    assert_eq!(
        pause_report("shop", "gated", true, true),
        "schemarollout shop/gated paused (already paused)"
    );
    assert_eq!(
        pause_report("shop", "gated", true, false),
        "schemarollout shop/gated resumed"
    );
    assert_eq!(
        pause_report("shop", "gated", false, false),
        "schemarollout shop/gated resumed (was not paused)"
    );
}

#[test]
fn only_a_terminal_phase_of_the_current_generation_is_settled() {
    let settled_with = |status: Value| watch::settled(&rollout("Manual", status));
    assert_eq!(
        settled_with(json!({"phase": "Succeeded", "observedGeneration": 2})),
        Some(RolloutPhase::Succeeded)
    );
    assert_eq!(
        settled_with(json!({"phase": "Failed", "observedGeneration": 2})),
        Some(RolloutPhase::Failed)
    );
    assert_eq!(
        settled_with(json!({"phase": "Succeeded", "observedGeneration": 1})),
        None
    );
    assert_eq!(settled_with(json!({"phase": "Succeeded"})), None);
    assert_eq!(
        settled_with(json!({"phase": "Contracting", "observedGeneration": 2})),
        None
    );
    assert_eq!(settled_with(Value::Null), None);
}

#[test]
fn errors_are_one_line() {
    let not_found = Error::NotFound {
        namespace: "shop".into(),
        name: "nope".into(),
    };
    assert_eq!(
        not_found.to_string(),
        "schemarollout \"nope\" not found in namespace \"shop\""
    );

    let status = kube::core::Status::failure("a\nmultiline   answer", "Forbidden").with_code(403);
    let err = Error::api(
        "pause schemarollout shop/x",
        &kube::Error::Api(status.boxed()),
    );
    assert_eq!(
        err.to_string(),
        "pause schemarollout shop/x: a multiline answer"
    );
}
