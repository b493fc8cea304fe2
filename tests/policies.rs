//! `examples/policies/`, ValidatingAdmissionPolicies the local 1.20 control
//! plane does not serve: their CEL expressions are evaluated here (the
//! `cel` crate, as kube's own evaluator uses) against the admission
//! requests they must allow and deny.

use serde_json::{Value, json};

/// The variables and validations of the policy in `file`
/// (`examples/policies/`).
fn policy(file: &str) -> (Vec<(String, String)>, Vec<String>) {
    let root = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let text = std::fs::read_to_string(root.join("examples/policies").join(file)).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    let spec = &docs[0]["spec"];
    let variables = spec["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_owned();
            (name, v["expression"].as_str().unwrap().to_owned())
        })
        .collect();
    let validations = spec["validations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["expression"].as_str().unwrap().to_owned())
        .collect();
    (variables, validations)
}

/// Whether the policy in `file` admits `object` replacing `old` (None: a
/// create) by `user` in `groups`: every validation holds.
fn admits_as(file: &str, old: Option<Value>, object: Value, user: &str, groups: &[&str]) -> bool {
    let (variables, validations) = policy(file);
    let mut ctx = cel::Context::default();
    ctx.add_variable("object", object).unwrap();
    ctx.add_variable("oldObject", old.unwrap_or(Value::Null))
        .unwrap();
    ctx.add_variable(
        "request",
        json!({"userInfo": {"username": user, "groups": groups}}),
    )
    .unwrap();
    let mut values = serde_json::Map::new();
    for (name, expression) in &variables {
        let program = cel::Program::compile(expression).unwrap();
        let value = program
            .execute(&ctx)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let value = match value {
            cel::Value::String(text) => json!(text.as_str()),
            cel::Value::Bool(b) => json!(b),
            other => panic!("{name} is neither a string nor a bool: {other:?}"),
        };
        values.insert(name.clone(), value);
        // Later variables may use earlier ones.
        ctx.add_variable("variables", Value::Object(values.clone()))
            .unwrap();
    }
    ctx.add_variable("variables", Value::Object(values))
        .unwrap();
    validations.iter().all(|validation| {
        let result = cel::Program::compile(validation)
            .unwrap()
            .execute(&ctx)
            .unwrap_or_else(|e| panic!("{validation}: {e:?}"));
        result == cel::Value::Bool(true)
    })
}

/// Whether approvers.yaml admits the change by a user in `groups`.
fn admits(old: Option<Value>, object: Value, groups: &[&str]) -> bool {
    admits_as("approvers.yaml", old, object, "someone", groups)
}

fn rollout(approval: Option<&str>, paused: bool) -> Value {
    let mut r = json!({"metadata": {"name": "users", "annotations": {"team": "shop"}}, "spec": {"paused": paused}});
    if let Some(a) = approval {
        r["metadata"]["annotations"]["bellows.dev/approve"] = json!(a);
    }
    r
}

#[test]
fn only_approvers_set_change_or_remove_the_approval() {
    let editor: &[&str] = &["system:authenticated", "shop-devs"];
    let approver: &[&str] = &["system:authenticated", "schema-approvers"];
    let unapproved = rollout(None, false);
    let approved = rollout(Some("uid-1/3fa9c0d1e2"), false);
    // Setting, changing or removing the annotation needs the group.
    assert!(!admits(Some(unapproved.clone()), approved.clone(), editor));
    assert!(admits(Some(unapproved.clone()), approved.clone(), approver));
    let other = rollout(Some("uid-1/0000000000"), false);
    assert!(!admits(Some(approved.clone()), other, editor));
    assert!(!admits(Some(approved.clone()), unapproved.clone(), editor));
    // Everything else stays open to editors, approved or not.
    assert!(admits(
        Some(unapproved.clone()),
        rollout(None, true),
        editor
    ));
    assert!(admits(
        Some(approved.clone()),
        rollout(Some("uid-1/3fa9c0d1e2"), true),
        editor
    ));
    // A create: only approvers may create one approved.
    assert!(admits(None, unapproved, editor));
    assert!(!admits(None, approved.clone(), editor));
    assert!(admits(None, approved, approver));
}

/// A rollout last edited by `editor`, its `spec` and its approval.
fn edited(editor: Option<&str>, paused: bool, approval: Option<&str>) -> Value {
    let mut r = rollout(approval, paused);
    if let Some(e) = editor {
        r["metadata"]["annotations"]["bellows.dev/spec-editor"] = json!(e);
    }
    r
}

#[test]
fn the_last_editor_of_the_spec_cannot_approve_it() {
    let admits = |old: Option<Value>, new: Value, user: &str| {
        admits_as("four-eyes.yaml", old, new, user, &["system:authenticated"])
    };
    let by_alice = edited(Some("alice"), false, None);
    // A spec change names its editor, and only its editor.
    assert!(admits(None, by_alice.clone(), "alice"));
    assert!(!admits(None, edited(Some("bob"), false, None), "alice"));
    assert!(!admits(None, edited(None, false, None), "alice"));
    let alice_pauses = edited(Some("alice"), true, None);
    assert!(admits(
        Some(by_alice.clone()),
        alice_pauses.clone(),
        "alice"
    ));
    assert!(!admits(
        Some(by_alice.clone()),
        edited(Some("alice"), true, None),
        "bob"
    ));
    // The annotation moves only with the spec: nobody hands it on.
    assert!(!admits(
        Some(by_alice.clone()),
        edited(Some("bob"), false, None),
        "bob"
    ));
    // Alice cannot approve her change; Bob can, and Alice keeps the rest.
    let approved = edited(Some("alice"), false, Some("uid-1/3fa9c0d1e2"));
    assert!(!admits(Some(by_alice.clone()), approved.clone(), "alice"));
    assert!(admits(Some(by_alice.clone()), approved.clone(), "bob"));
    assert!(
        !admits(None, approved.clone(), "alice"),
        "created approved by its author"
    );
    let mut labelled = approved.clone();
    labelled["metadata"]["annotations"]["team"] = json!("payments");
    assert!(admits(Some(approved.clone()), labelled, "alice"));
    // Removing an approval is not approving.
    assert!(admits(Some(approved), by_alice, "alice"));
}
