//! The CRD under `crds/` is what `bellows crd` prints, every field carries a
//! description for `kubectl explain`, and its CEL rules reject what they
//! should (checked with kube's CEL evaluator, since the local 1.20 API server
//! drops CEL rules).

use bellows::api::SchemaRollout;
use kube::CustomResourceExt;
use serde_json::{Value, json};
use std::process::Command;

/// The committed copies of the CRD: `crds/` and the Helm chart's (which its
/// templates/crds.yaml installs). Read at run time: a build shared between
/// clones (one target dir) must not point at the clone that compiled it.
const CRD_COPIES: [&str; 2] = [
    "crds/schemarollouts.bellows.dev.yaml",
    "charts/bellows/files/schemarollouts.bellows.dev.yaml",
];

#[test]
fn crds_dir_and_chart_match_bellows_crd_output() {
    let out = Command::new(env!("CARGO_BIN_EXE_bellows"))
        .arg("crd")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("run through cargo");
    for copy in CRD_COPIES {
        let committed = std::fs::read_to_string(std::path::Path::new(&root).join(copy)).unwrap();
        assert!(
            printed == committed,
            "{copy} is stale: run `cargo run -- crd | tee {} > {}`",
            CRD_COPIES[0],
            CRD_COPIES[1]
        );
    }
}

fn schema() -> Value {
    let crd = serde_json::to_value(SchemaRollout::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Every property below `spec` and `status` has a description, except the
/// internals of embedded Kubernetes types (metav1.Condition documents its
/// own fields) and free-form maps.
fn undocumented(path: &str, node: &Value, out: &mut Vec<String>) {
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            let p = format!("{path}.{name}");
            if child.get("description").is_none() {
                out.push(p.clone());
            }
            undocumented(&p, child, out);
        }
    }
    if let Some(items) = node.get("items") {
        undocumented(&format!("{path}[]"), items, out);
    }
}

#[test]
fn every_field_has_a_description_for_kubectl_explain() {
    let s = schema();
    let mut missing = vec![];
    undocumented("spec", &s["properties"]["spec"], &mut missing);
    undocumented("status", &s["properties"]["status"], &mut missing);
    missing.retain(|p| !p.starts_with("spec.expand.job.template") && !p.contains(".job.template"));
    assert!(
        missing.is_empty(),
        "fields without description: {missing:?}"
    );
}

#[test]
fn crd_has_printer_columns_short_name_category_and_status() {
    let crd = serde_json::to_value(SchemaRollout::crd()).unwrap();
    assert_eq!(crd["spec"]["names"]["shortNames"], json!(["sro"]));
    assert_eq!(crd["spec"]["names"]["categories"], json!(["bellows"]));
    let v = &crd["spec"]["versions"][0];
    assert_eq!(v["subresources"]["status"], json!({}));
    let columns: Vec<&str> = v["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns, ["Phase", "Ready", "Message", "Age"]);
}

/// One row per field below `node` (at `path`): path, type, description.
/// The embedded Kubernetes types (a Job's spec, a metav1.Condition) are
/// named, not expanded: `kubectl explain` documents them.
fn reference_rows(path: &str, node: &Value, out: &mut Vec<String>) {
    let Some(props) = node.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, child) in props {
        let p = format!("{path}.{name}");
        let ty = match (child["type"].as_str(), child.get("items")) {
            (Some("array"), Some(items)) => {
                format!("[]{}", items["type"].as_str().unwrap_or("object"))
            }
            (Some(t), _) => t.to_owned(),
            (None, _) => "object".to_owned(),
        };
        let mut text = child["description"]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(values) = child["enum"].as_array() {
            let values: Vec<String> = values
                .iter()
                .map(|v| format!("`{}`", v.as_str().unwrap_or_default()))
                .collect();
            text.push_str(&format!(" One of {}.", values.join(", ")));
        }
        out.push(format!("| `{p}` | {ty} | {} |", text.replace('|', "\\|")));
        let embedded = name == "job" || name == "conditions";
        if !embedded {
            reference_rows(&p, child, out);
            if let Some(items) = child.get("items") {
                reference_rows(&format!("{p}[]"), items, out);
            }
        }
    }
}

/// `docs/api.md` as generated from the CRD.
fn api_reference() -> String {
    let s = schema();
    let mut rows = vec![];
    reference_rows("spec", &s["properties"]["spec"], &mut rows);
    reference_rows("status", &s["properties"]["status"], &mut rows);
    format!(
        "# SchemaRollout field reference\n\n\
         Generated from the CRD (`bellows crd`, the doc comments of `src/api`) by\n\
         `BELLOWS_BLESS=1 cargo test --test crd api_reference`; a test fails when\n\
         it is stale. The same text is what `kubectl explain schemarollout.spec`\n\
         prints. A Job phase's `job` is a `batch/v1` JobSpec and `conditions` are\n\
         `metav1.Condition`s: `kubectl explain` documents their fields.\n\n\
         | field | type | description |\n| --- | --- | --- |\n{}\n",
        rows.join("\n")
    )
}

#[test]
fn api_reference_in_docs_matches_the_crd() {
    let root = std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let path = root.join("docs/api.md");
    let generated = api_reference();
    if std::env::var_os("BELLOWS_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api.md is stale: run `BELLOWS_BLESS=1 cargo test --test crd api_reference`"
    );
}

fn spec(workloads: Value) -> Value {
    let job =
        json!({"template": {"spec": {"containers": [{"name": "m", "image": "postgres:16"}]}}});
    json!({"workloads": workloads, "expand": {"job": job.clone()}, "contract": {"job": job}})
}

fn cel(spec: &Value) -> Result<(), String> {
    kube::core::cel::Validator::new()
        .validate(&schema()["properties"]["spec"], spec, None)
        .map_err(|e| format!("{e:?}"))
}

#[test]
fn cel_rules_accept_a_valid_spec() {
    let ok = spec(json!([
        {"name": "api", "version": {"image": {"container": "api", "tag": "2.0.0"}}},
        {"name": "worker", "version": {"labels": {"app.kubernetes.io/version": "2.0.0"}}}
    ]));
    assert_eq!(cel(&ok), Ok(()));
}

#[test]
fn cel_rules_reject_what_the_schema_alone_cannot() {
    let cases = [
        (
            json!([{"name": "api", "version": {}}]),
            "exactly one of image or labels",
        ),
        (
            json!([{"name": "api", "version": {"labels": {"v": "2"}, "image": {"container": "api", "tag": "2"}}}]),
            "exactly one of image or labels",
        ),
        (
            json!([{"name": "api", "version": {"image": {"container": "api"}}}]),
            "exactly one of tag or ref",
        ),
        (
            json!([{"name": "api", "version": {"image": {"container": "api", "tag": "2", "ref": "x:2"}}}]),
            "exactly one of tag or ref",
        ),
        (
            json!([{"name": "api", "version": {"labels": {"v": "2"}}}, {"name": "api", "version": {"labels": {"v": "2"}}}]),
            "workloads must be unique by kind and name",
        ),
        (
            json!([{"kind": "Pods", "name": "bare", "version": {"labels": {"v": "2"}}}]),
            "selector is required for kind Pods",
        ),
        (
            json!([{"kind": "StatefulSet", "name": "db", "selector": {"matchLabels": {"a": "b"}}, "version": {"labels": {"v": "2"}}}]),
            "selector is required for kind Pods and allowed for no other kind",
        ),
    ];
    // One name for two kinds is two workloads.
    let two = spec(json!([{"name": "x", "version": {"labels": {"v": "2"}}},
                          {"kind": "StatefulSet", "name": "x", "version": {"labels": {"v": "2"}}}]));
    assert_eq!(cel(&two), Ok(()));
    let both = {
        let mut s = spec(json!([{"name": "api", "version": {"labels": {"v": "2"}}}]));
        s["contract"]["sql"] = json!(["drop table old"]);
        s
    };
    let err = cel(&both).expect_err("job and sql together");
    assert!(err.contains("exactly one of job or sql"), "{err}");
    let mut neither = spec(json!([{"name": "api", "version": {"labels": {"v": "2"}}}]));
    neither["expand"] = json!({});
    assert!(
        cel(&neither)
            .expect_err("neither")
            .contains("exactly one of job or sql")
    );
    let objectives = |list: Value| {
        let mut s = spec(json!([{"name": "api", "version": {"labels": {"v": "2"}}}]));
        s["prometheus"] = json!({"address": "http://prometheus:9090"});
        s["contract"]["after"] = json!({"objectives": list});
        cel(&s)
    };
    assert_eq!(
        objectives(json!([{"name": "errors", "query": "up", "max": 0.01}])),
        Ok(())
    );
    let unbounded = objectives(json!([{"name": "errors", "query": "up"}]));
    assert!(
        unbounded
            .expect_err("no bound")
            .contains("needs max, min or both")
    );
    let twice = objectives(
        json!([{"name": "e", "query": "up", "max": 1}, {"name": "e", "query": "x", "min": 0}]),
    );
    assert!(twice.expect_err("same name").contains("unique names"));
    let mut db = spec(json!([{"name": "api", "version": {"labels": {"v": "2"}}}]));
    db["database"] = json!({"engine": "postgres"});
    assert!(
        cel(&db)
            .expect_err("no connection")
            .contains("exactly one of secretRef or host")
    );
    db["database"] = json!({"engine": "postgres", "host": "db"});
    assert_eq!(cel(&db), Ok(()));
    for (workloads, message) in cases {
        let err = cel(&spec(workloads.clone())).expect_err(&workloads.to_string());
        assert!(err.contains(message), "{workloads}: {err}");
    }
}
