//! `examples/policies/approvers.yaml`, a ValidatingAdmissionPolicy the local
//! 1.20 control plane does not serve: its CEL expressions are evaluated here
//! (the `cel` crate, as kube's own evaluator uses) against the admission
//! requests it must allow and deny.

use serde_json::{Value, json};

/// The policy's variables and its one validation, from the example file.
fn policy() -> (Vec<(String, String)>, String) {
    let root = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let text = std::fs::read_to_string(root.join("examples/policies/approvers.yaml")).unwrap();
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
    let validations = spec["validations"].as_array().unwrap();
    assert_eq!(validations.len(), 1);
    (
        variables,
        validations[0]["expression"].as_str().unwrap().to_owned(),
    )
}

/// Whether the policy admits `object` replacing `old` (None: a create) by a
/// user in `groups`.
fn admits(old: Option<Value>, object: Value, groups: &[&str]) -> bool {
    let (variables, validation) = policy();
    let mut ctx = cel::Context::default();
    ctx.add_variable("object", object).unwrap();
    ctx.add_variable("oldObject", old.unwrap_or(Value::Null))
        .unwrap();
    ctx.add_variable(
        "request",
        json!({"userInfo": {"username": "someone", "groups": groups}}),
    )
    .unwrap();
    let mut values = serde_json::Map::new();
    for (name, expression) in &variables {
        let program = cel::Program::compile(expression).unwrap();
        let value = program
            .execute(&ctx)
            .unwrap_or_else(|e| panic!("{name}: {e:?}"));
        let cel::Value::String(text) = value else {
            panic!("{name} is not a string: {value:?}");
        };
        values.insert(name.clone(), json!(text.as_str()));
    }
    ctx.add_variable("variables", Value::Object(values))
        .unwrap();
    let result = cel::Program::compile(&validation)
        .unwrap()
        .execute(&ctx)
        .unwrap();
    result == cel::Value::Bool(true)
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
