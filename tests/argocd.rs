//! The Argo CD health check and resource actions under `argocd/`: run in Lua
//! 5.1 (what Argo CD's gopher-lua implements) with only the libraries Argo CD
//! opens, on SchemaRollouts the way the controller writes them, and the
//! `argocd-cm.yaml` snippet embeds exactly those files.

use bellows::api::{RolloutPhase, SchemaRollout};
use mlua::{Lua, LuaOptions, LuaSerdeExt, StdLib};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The rollout every sample is named after.
const NAME: &str = "users-split-name";
/// The `metadata.generation` of every sample.
const GENERATION: i64 = 4;
/// The approval key the controller published in status.
const KEY: &str = "uid-1/3fa9c0d1e2";

/// `argocd/<rel>`, found at run time: a build shared between clones (one
/// target dir) must not read the clone that compiled it.
fn argocd_path(rel: &str) -> PathBuf {
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("run through cargo");
    PathBuf::from(root).join("argocd").join(rel)
}

/// The text of `argocd/<rel>`.
fn argocd_file(rel: &str) -> String {
    let path = argocd_path(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Lua numbers are doubles; Argo CD encodes the returned object as JSON, where
/// a whole double prints as an integer. Does the same to `v`.
fn whole_numbers_as_integers(v: Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 2f64.powi(53) => {
                json!(f as i64)
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => items.into_iter().map(whole_numbers_as_integers).collect(),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (k, whole_numbers_as_integers(v)))
                .collect(),
        ),
        other => other,
    }
}

/// Runs the script `argocd/<rel>` as Argo CD does: the resource in the global
/// `obj`, only the base, table, string and math libraries; returns what the
/// script returns, as JSON.
fn run(rel: &str, object: &Value) -> mlua::Result<Value> {
    let lua = Lua::new_with(
        StdLib::TABLE | StdLib::STRING | StdLib::MATH,
        LuaOptions::default(),
    )?;
    lua.globals().set("obj", lua.to_value(object)?)?;
    let out = lua.load(argocd_file(rel)).set_name(rel).eval()?;
    Ok(whole_numbers_as_integers(lua.from_value(out)?))
}

/// What the health check returns.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct Health {
    status: String,
    message: String,
}

/// The health Argo CD shows for `object`.
fn health(object: &Value) -> Health {
    serde_json::from_value(run("health.lua", object).unwrap()).unwrap()
}

/// `Health` from string slices.
fn hs(status: &str, message: &str) -> Health {
    Health {
        status: status.into(),
        message: message.into(),
    }
}

/// The status message of the samples in `phase`.
fn message_of(phase: &str) -> String {
    format!("{phase}: what the controller says")
}

/// A metav1.Condition.
fn cond(kind: &str, status: bool, reason: &str, message: &str) -> Value {
    json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "observedGeneration": GENERATION,
        "lastTransitionTime": "2026-11-25T12:00:00Z",
        "reason": reason,
        "message": message,
    })
}

/// A SchemaRollout at generation 4, not paused, with the status the
/// controller writes for that generation in `phase`: Ready only when
/// Succeeded, Stalled when Failed, Reconciling otherwise.
fn rollout(phase: &str) -> Value {
    let message = message_of(phase);
    let succeeded = phase == "Succeeded";
    let failed = phase == "Failed";
    json!({
        "apiVersion": "bellows.dev/v1alpha1",
        "kind": "SchemaRollout",
        "metadata": {
            "name": NAME,
            "namespace": "shop",
            "generation": GENERATION,
            "annotations": {"team": "payments"},
        },
        "spec": {
            "database": {"engine": "postgres", "secretRef": {"name": "shop-db", "key": "url"}},
            "workloads": [{
                "kind": "Deployment",
                "name": "shop-api",
                "version": {"image": {"container": "api", "tag": "2.0.0"}},
            }],
            "expand": {"sql": ["ALTER TABLE users ADD COLUMN first_name text"]},
            "contract": {
                "sql": ["ALTER TABLE users DROP COLUMN full_name"],
                "after": {"approval": "Manual"},
            },
            "paused": false,
        },
        "status": {
            "observedGeneration": GENERATION,
            "phase": phase,
            "message": message,
            "approvalKey": KEY,
            "conditions": [
                cond("Ready", succeeded, if succeeded { "Succeeded" } else { phase }, &message),
                cond("Reconciling", !succeeded && !failed, phase, &message),
                cond("Stalled", failed, if failed { "ExpandFailed" } else { "NotStalled" },
                     if failed { &message } else { "" }),
            ],
            "workloads": [{"name": "shop-api", "rolledOut": true, "replicas": 2, "newPods": 2, "oldPods": 0}],
            "steps": [{"step": "Expand", "jobName": "users-split-name-expand-4", "digest": "d1", "state": "Succeeded"}],
        },
    })
}

/// `rollout(phase)` after `edit`.
fn rollout_with(phase: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut r = rollout(phase);
    edit(&mut r);
    r
}

/// The health of a current, unpaused rollout in each phase.
fn expected_health(phase: RolloutPhase) -> Health {
    let message = message_of(phase.as_str());
    match phase {
        RolloutPhase::Pending
        | RolloutPhase::Expanding
        | RolloutPhase::Transitioning
        | RolloutPhase::Baking
        | RolloutPhase::Contracting => hs("Progressing", &message),
        RolloutPhase::AwaitingApproval => hs(
            "Suspended",
            &format!(
                "{message}; approve with the approve action or kubectl bellows approve {NAME}"
            ),
        ),
        // Expanded, waiting for the app's own rollout: Healthy, so that an
        // Argo CD sync proceeds to the wave that rolls the Deployments.
        RolloutPhase::AwaitingRollout | RolloutPhase::Succeeded => hs("Healthy", &message),
        RolloutPhase::Failed => hs("Degraded", &message),
    }
}

#[test]
fn samples_are_what_the_api_accepts() {
    for phase in RolloutPhase::ALL {
        let sample = rollout(phase.as_str());
        let typed: SchemaRollout = serde_json::from_value(sample.clone()).unwrap();
        assert_eq!(typed.status.and_then(|s| s.phase), Some(phase));
    }
}

#[test]
fn health_of_every_phase() {
    for phase in RolloutPhase::ALL {
        assert_eq!(
            health(&rollout(phase.as_str())),
            expected_health(phase),
            "phase {phase:?}"
        );
    }
}

#[test]
fn progressing_until_the_controller_observed_the_generation() {
    let waiting = hs(
        "Progressing",
        "waiting for the controller to observe generation 4",
    );
    let no_status = rollout_with("Succeeded", |r| {
        r.as_object_mut().unwrap().remove("status");
    });
    let no_observed_generation = rollout_with("Succeeded", |r| {
        r["status"]
            .as_object_mut()
            .unwrap()
            .remove("observedGeneration");
    });
    let stale = rollout_with("Succeeded", |r| {
        r["status"]["observedGeneration"] = json!(3)
    });
    let stale_paused = rollout_with("Expanding", |r| {
        r["status"]["observedGeneration"] = json!(3);
        r["spec"]["paused"] = json!(true);
    });
    let stale_failed = rollout_with("Failed", |r| r["status"]["observedGeneration"] = json!(3));
    for r in [
        no_status,
        no_observed_generation,
        stale,
        stale_paused,
        stale_failed,
    ] {
        assert_eq!(health(&r), waiting, "{r}");
    }
}

#[test]
fn paused_is_suspended_unless_finished_or_stalled() {
    let paused = |phase: &str| {
        rollout_with(phase, |r| {
            r["spec"]["paused"] = json!(true);
            r["status"]["message"] = json!("paused before contract");
        })
    };
    let suspended = hs(
        "Suspended",
        &format!(
            "paused before contract; resume with the resume action or kubectl bellows resume {NAME}"
        ),
    );
    for phase in [
        "Pending",
        "Expanding",
        "AwaitingRollout",
        "Baking",
        "AwaitingApproval",
    ] {
        assert_eq!(health(&paused(phase)), suspended, "phase {phase}");
    }
    assert_eq!(health(&paused("Succeeded")).status, "Healthy");
    assert_eq!(health(&paused("Failed")).status, "Degraded");
    let without_message = rollout_with("Baking", |r| {
        r["spec"]["paused"] = json!(true);
        r["status"].as_object_mut().unwrap().remove("message");
    });
    assert_eq!(
        health(&without_message).message,
        format!("paused; resume with the resume action or kubectl bellows resume {NAME}")
    );
}

#[test]
fn stalled_is_degraded_with_the_condition_message() {
    let stalled = |message: &str| {
        rollout_with("Expanding", |r| {
            r["status"]["conditions"][2] = cond("Stalled", true, "DatabaseUnavailable", message);
            r["status"]["message"] = json!("cannot connect: secret shop/shop-db has no key url");
        })
    };
    assert_eq!(
        health(&stalled("secret shop/shop-db has no key url")),
        hs("Degraded", "secret shop/shop-db has no key url")
    );
    assert_eq!(
        health(&stalled("")),
        hs(
            "Degraded",
            "cannot connect: secret shop/shop-db has no key url"
        )
    );
    let bare = rollout_with("Expanding", |r| {
        r["status"]["conditions"][2] = cond("Stalled", true, "DatabaseUnavailable", "");
        r["status"].as_object_mut().unwrap().remove("message");
    });
    assert_eq!(
        health(&bare),
        hs("Degraded", "stalled: DatabaseUnavailable")
    );
    // Stalled wins over paused: the rollout needs a human either way.
    let paused = rollout_with("Expanding", |r| {
        r["spec"]["paused"] = json!(true);
        r["status"]["conditions"][2] = cond("Stalled", true, "InvalidSpec", "bad duration");
    });
    assert_eq!(health(&paused), hs("Degraded", "bad duration"));
}

#[test]
fn a_violated_objective_is_degraded_and_names_it() {
    for phase in ["AwaitingRollout", "Baking", "AwaitingApproval"] {
        let violated = rollout_with(phase, |r| {
            r["status"]["holdReason"] = json!("ObjectiveViolated");
            r["status"]["message"] = json!("objective errors: 0.05 is out of bounds (max 0.01)");
        });
        assert_eq!(
            health(&violated),
            hs(
                "Degraded",
                "service level objective violated; contract held: objective errors: 0.05 is out of bounds (max 0.01)"
            ),
            "{phase}"
        );
    }
    // No data is not a violation: the wave that rolls the workloads out
    // must not wait for it.
    let inconclusive = rollout_with("AwaitingRollout", |r| {
        r["status"]["holdReason"] = json!("ObjectiveInconclusive");
    });
    assert_eq!(health(&inconclusive).status, "Healthy");
}

#[test]
fn failed_is_degraded_even_without_a_stalled_condition() {
    let failed = rollout_with("Failed", |r| {
        r["status"]["conditions"] = json!([]);
    });
    assert_eq!(health(&failed), hs("Degraded", &message_of("Failed")));
    let bare = rollout_with("Failed", |r| {
        r["status"].as_object_mut().unwrap().remove("conditions");
        r["status"].as_object_mut().unwrap().remove("message");
    });
    assert_eq!(health(&bare), hs("Degraded", "a phase failed"));
}

#[test]
fn succeeded_is_healthy_only_with_ready_true() {
    let not_ready = rollout_with("Succeeded", |r| {
        r["status"]["conditions"][0] = cond("Ready", false, "Contracting", "");
    });
    assert_eq!(
        health(&not_ready),
        hs(
            "Progressing",
            "phase Succeeded; waiting for the Ready condition"
        )
    );
    let no_conditions = rollout_with("Succeeded", |r| {
        r["status"].as_object_mut().unwrap().remove("conditions");
    });
    assert_eq!(health(&no_conditions).status, "Progressing");
}

#[test]
fn approval_given_for_this_contract_is_progressing() {
    let approved = |value: &str, hold: &str| {
        rollout_with("AwaitingApproval", |r| {
            r["metadata"]["annotations"]["bellows.dev/approve"] = json!(value);
            r["status"]["holdReason"] = json!(hold);
        })
    };
    // The controller has not seen the annotation yet.
    assert_eq!(
        health(&approved(KEY, "AwaitingApproval")),
        hs(
            "Progressing",
            &format!("approved contract {KEY}; waiting for the controller to start contract")
        )
    );
    // Seen, and contract waits for something else.
    assert_eq!(
        health(&approved(KEY, "DatabaseBusy")),
        hs("Progressing", &message_of("AwaitingApproval"))
    );
    // An approval of another contract, or in the old generation format,
    // approves nothing.
    for other in ["uid-1/0000000000", "4"] {
        assert_eq!(
            health(&approved(other, "AwaitingApproval")),
            expected_health(RolloutPhase::AwaitingApproval),
            "{other}"
        );
    }
}

#[test]
fn phase_missing_or_unknown() {
    let no_phase = rollout_with("Pending", |r| {
        r["status"].as_object_mut().unwrap().remove("phase");
    });
    assert_eq!(
        health(&no_phase),
        hs("Progressing", "waiting for the controller to set a phase")
    );
    assert_eq!(
        health(&rollout("Rewinding")),
        hs("Unknown", "unknown phase Rewinding")
    );
}

/// Which of approve, pause and resume discovery disables, in that order.
fn disabled(object: &Value) -> [bool; 3] {
    let actions = run("actions/discovery.lua", object).unwrap();
    let names: BTreeSet<&str> = actions
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(names, BTreeSet::from(["approve", "pause", "resume"]));
    ["approve", "pause", "resume"].map(|a| {
        actions[a]["disabled"]
            .as_bool()
            .unwrap_or_else(|| panic!("{a}: {actions}"))
    })
}

#[test]
fn discovery_by_phase_when_not_paused() {
    for phase in RolloutPhase::ALL {
        let approve = phase == RolloutPhase::AwaitingApproval;
        let finished = matches!(phase, RolloutPhase::Succeeded | RolloutPhase::Failed);
        assert_eq!(
            disabled(&rollout(phase.as_str())),
            [!approve, finished, true],
            "phase {phase:?}"
        );
    }
}

#[test]
fn discovery_when_paused_offers_resume() {
    for phase in RolloutPhase::ALL {
        let paused = rollout_with(phase.as_str(), |r| r["spec"]["paused"] = json!(true));
        let approve = phase == RolloutPhase::AwaitingApproval;
        assert_eq!(
            disabled(&paused),
            [!approve, true, false],
            "phase {phase:?}"
        );
    }
}

#[test]
fn discovery_offers_approve_once_per_observed_contract() {
    let annotated = |value: &str| {
        rollout_with("AwaitingApproval", |r| {
            r["metadata"]["annotations"]["bellows.dev/approve"] = json!(value);
        })
    };
    assert_eq!(disabled(&annotated(KEY)), [true, false, true]);
    assert_eq!(disabled(&annotated("4")), [false, false, true]);
    let no_annotations = rollout_with("AwaitingApproval", |r| {
        r["metadata"].as_object_mut().unwrap().remove("annotations");
    });
    assert_eq!(disabled(&no_annotations), [false, false, true]);
    // A status written for generation 3 waited for generation 3's contract.
    let stale = rollout_with("AwaitingApproval", |r| {
        r["status"]["observedGeneration"] = json!(3);
    });
    assert_eq!(disabled(&stale), [true, false, true]);
    // No key published (an older controller): nothing to approve.
    let no_key = rollout_with("AwaitingApproval", |r| {
        r["status"].as_object_mut().unwrap().remove("approvalKey");
    });
    assert_eq!(disabled(&no_key), [true, false, true]);
    let no_status = rollout_with("Pending", |r| {
        r.as_object_mut().unwrap().remove("status");
    });
    assert_eq!(disabled(&no_status), [true, false, true]);
}

/// Runs `argocd/actions/<action>/action.lua` on `object`.
fn act(action: &str, object: &Value) -> mlua::Result<Value> {
    run(&format!("actions/{action}/action.lua"), object)
}

#[test]
fn approve_sets_the_annotation_to_the_approval_key() {
    let r = rollout("AwaitingApproval");
    let mut want = r.clone();
    want["metadata"]["annotations"]["bellows.dev/approve"] = json!(KEY);
    assert_eq!(act("approve", &r).unwrap(), want);

    let old_format = rollout_with("AwaitingApproval", |r| {
        r["metadata"]["annotations"]["bellows.dev/approve"] = json!("3");
    });
    assert_eq!(act("approve", &old_format).unwrap(), want);

    let no_annotations = rollout_with("AwaitingApproval", |r| {
        r["metadata"].as_object_mut().unwrap().remove("annotations");
    });
    let mut want = no_annotations.clone();
    want["metadata"]["annotations"] = json!({"bellows.dev/approve": KEY});
    assert_eq!(act("approve", &no_annotations).unwrap(), want);
}

#[test]
fn approve_refuses_without_an_approval_key() {
    let r = rollout_with("AwaitingApproval", |r| {
        r["status"].as_object_mut().unwrap().remove("approvalKey");
    });
    let err = act("approve", &r).unwrap_err().to_string();
    assert!(err.contains("status.approvalKey is not set"), "{err}");
}

#[test]
fn pause_and_resume_set_spec_paused_and_nothing_else() {
    for (action, from, to) in [("pause", false, true), ("resume", true, false)] {
        for start in [from, to] {
            let r = rollout_with("Baking", |r| r["spec"]["paused"] = json!(start));
            let mut want = r.clone();
            want["spec"]["paused"] = json!(to);
            assert_eq!(
                act(action, &r).unwrap(),
                want,
                "{action} from paused={start}"
            );
        }
    }
}

/// The `resource.customizations.actions.*` value, in Argo CD's format.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionsConfig {
    #[serde(rename = "discovery.lua")]
    discovery: String,
    definitions: Vec<ActionDefinition>,
}

/// One entry of `definitions`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionDefinition {
    name: String,
    #[serde(rename = "action.lua")]
    action: String,
}

#[test]
fn argocd_cm_embeds_exactly_the_lua_files() {
    let cm: Value = serde_saphyr::from_str(&argocd_file("argocd-cm.yaml")).unwrap();
    assert_eq!(cm["kind"], "ConfigMap");
    assert_eq!(cm["metadata"]["name"], "argocd-cm");
    let data = cm["data"].as_object().unwrap();
    let health_key = "resource.customizations.health.bellows.dev_SchemaRollout";
    let actions_key = "resource.customizations.actions.bellows.dev_SchemaRollout";
    assert_eq!(
        data.keys().map(String::as_str).collect::<Vec<_>>(),
        [actions_key, health_key]
    );
    let stale = "argocd/argocd-cm.yaml is stale: copy the .lua files into it";
    assert!(
        data[health_key] == argocd_file("health.lua"),
        "{stale}: health.lua"
    );

    let actions: ActionsConfig =
        serde_saphyr::from_str(data[actions_key].as_str().unwrap()).unwrap();
    assert!(
        actions.discovery == argocd_file("actions/discovery.lua"),
        "{stale}: discovery.lua"
    );
    let mut on_disk: Vec<String> = std::fs::read_dir(argocd_path("actions"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    on_disk.sort();
    let defined: Vec<String> = actions.definitions.iter().map(|d| d.name.clone()).collect();
    assert_eq!(defined, on_disk, "one definition per argocd/actions/*/");
    for d in &actions.definitions {
        let file = format!("actions/{}/action.lua", d.name);
        assert!(d.action == argocd_file(&file), "{stale}: {file}");
    }
}
