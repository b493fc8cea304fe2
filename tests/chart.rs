//! The Helm chart under `charts/bellows`: it lints (strict, every
//! `ci/*-values.yaml`), its schema rejects unknown keys, and what it renders
//! is hardened, leader-elected and holds exactly the RBAC the controller
//! needs. Rendering goes through `scripts/chart.sh` (Helm's Go SDK from PyPI
//! helm-python-sdk, no helm binary).

use bellows::controller::access::{Access, CONTROLLER, LEADER_ELECTION, OPERATOR_NAMESPACE};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Command, Output};

/// The release namespace every render uses.
const NAMESPACE: &str = "bellows-system";

/// The repository root, read at run time (a shared target dir must not
/// point at another clone).
fn root() -> PathBuf {
    PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run through cargo"))
}

/// Runs `bash scripts/chart.sh ARGS`.
fn chart_sh(args: &[&str]) -> Output {
    Command::new("bash")
        .arg("scripts/chart.sh")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run bash scripts/chart.sh")
}

/// The objects `chart.sh render --namespace bellows-system ARGS` prints.
fn render(args: &[&str]) -> Vec<Value> {
    let out = chart_sh(&[&["render", "--namespace", NAMESPACE], args].concat());
    assert!(
        out.status.success(),
        "render {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
    docs.into_iter().filter(|d| !d.is_null()).collect()
}

/// Renders with `charts/bellows/ci/NAME-values.yaml` and then `extra`.
fn render_ci(name: &str, extra: &[&str]) -> Vec<Value> {
    let file = format!("charts/bellows/ci/{name}-values.yaml");
    render(&[&["-f", file.as_str()], extra].concat())
}

/// Every rendered object of `kind`.
fn all<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

/// The one rendered object of `kind`.
fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    match all(docs, kind)[..] {
        [doc] => doc,
        ref found => panic!("expected one {kind}, found {}", found.len()),
    }
}

/// The Role or ClusterRole named `name`.
fn role<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all(docs, kind)
        .into_iter()
        .find(|r| r["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

/// The operator container.
fn container(docs: &[Value]) -> &Value {
    &one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

/// The operator's command-line arguments.
fn args(docs: &[Value]) -> Vec<&str> {
    container(docs)["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect()
}

/// Rules as sorted `(apiGroup, resource, sorted verbs)` triples, one per
/// group and resource, so that equal access compares equal however the
/// rules are grouped.
fn access(rules: &Value) -> Vec<(String, String, Vec<String>)> {
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_owned())
            .collect()
    };
    let mut out = vec![];
    for rule in rules.as_array().unwrap() {
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                let mut verbs = strings(&rule["verbs"]);
                verbs.sort();
                out.push((group.clone(), resource, verbs));
            }
        }
    }
    out.sort();
    out
}

/// `list` as `(apiGroup, resource, sorted verbs)` triples, sorted: the
/// operator's own list of the calls it makes (`bellows::controller::access`).
fn required(list: &[Access]) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<_> = list
        .iter()
        .map(|a| {
            let verbs = a.verbs.iter().map(|v| v.to_string()).collect();
            (a.group.to_owned(), a.resource.to_owned(), verbs)
        })
        .collect();
    out.sort();
    out
}

/// The access the controller needs, exactly (the lease is separate).
fn controller_access() -> Vec<(String, String, Vec<String>)> {
    required(CONTROLLER)
}

/// No rule of any Role or ClusterRole grants a wildcard.
fn assert_no_wildcards(docs: &[Value]) {
    for r in [all(docs, "Role"), all(docs, "ClusterRole")].concat() {
        let text = r["rules"].to_string();
        assert!(
            !text.contains('*'),
            "wildcard in {}: {text}",
            r["metadata"]["name"]
        );
    }
}

/// The lease Role in the release namespace, bound to the operator.
fn assert_lease_access(docs: &[Value]) {
    assert_own_role(docs, "bellows-leader-election", LEADER_ELECTION);
}

/// The Role for the operator's records in the release namespace, bound to
/// the operator.
fn assert_records_access(docs: &[Value]) {
    assert_own_role(docs, "bellows-records", OPERATOR_NAMESPACE);
}

/// Role `name` in the release namespace grants exactly `list`, bound to
/// the operator.
fn assert_own_role(docs: &[Value], name: &str, list: &[Access]) {
    let own = role(docs, "Role", name);
    assert_eq!(own["metadata"]["namespace"], NAMESPACE);
    assert_eq!(access(&own["rules"]), required(list));
    let binding = all(docs, "RoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["name"] == name)
        .unwrap_or_else(|| panic!("{name} RoleBinding"));
    assert_eq!(binding["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "bellows", "namespace": NAMESPACE}])
    );
}

#[test]
fn chart_lints_strictly_and_its_schema_rejects_unknown_keys() {
    let out = chart_sh(&["lint"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "chart.sh lint failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for values in [
        "default values",
        "ci/full-values.yaml",
        "ci/namespaced-values.yaml",
        "ci/namespaces-values.yaml",
    ] {
        assert!(stdout.contains(&format!("lint {values}: ok")), "{stdout}");
    }
    assert_eq!(stdout.matches("rejects unknown key").count(), 2, "{stdout}");
    // A render refuses an unknown key too, naming it, with exit status 1.
    let out = chart_sh(&["render", "--set", "image.tagg=1"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("'tagg' not allowed"), "{stderr}");
    assert!(out.stdout.is_empty());
    // A retention the operator could not parse is refused at install.
    let out = chart_sh(&["render", "--set", "ledgerRetention=30d"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ledgerRetention"), "{stderr}");
    // So is a concurrency the operator would read as "no bound".
    let out = chart_sh(&["render", "--set", "concurrency=0"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("concurrency"), "{stderr}");
}

#[test]
fn operator_pods_are_hardened_probed_and_leader_elected() {
    let docs = render(&[]);
    let deployment = one(&docs, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "bellows");
    let pod_security = &pod["securityContext"];
    let c = container(&docs);
    let security = &c["securityContext"];
    for s in [pod_security, security] {
        assert_eq!(s["runAsNonRoot"], true);
        assert_eq!(s["runAsUser"], 65532);
        assert_eq!(s["runAsGroup"], 65532);
        assert_eq!(s["seccompProfile"]["type"], "RuntimeDefault");
    }
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["image"], "ghcr.io/bellows-dev/bellows:0.1.0");
    assert_eq!(
        c["ports"],
        json!([{"name": "metrics", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        c["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "metrics"})
    );
    assert_eq!(
        c["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "metrics"})
    );
    assert_eq!(
        c["resources"]["requests"],
        json!({"cpu": "50m", "memory": "64Mi"})
    );
    assert_eq!(c["resources"]["limits"], json!({"memory": "128Mi"}));
    let a = args(&docs);
    assert_eq!(a[0], "run");
    for flag in [
        "--log-format=json",
        "--leader-elect",
        "--lease-name=bellows-leader",
        &format!("--lease-namespace={NAMESPACE}"),
        &format!("--operator-namespace={NAMESPACE}"),
        "--ledger-retention=720h",
        "--concurrency=64",
    ] {
        assert!(a.contains(&flag), "{flag} missing from {a:?}");
    }
    assert!(
        !a.iter().any(|f| f.starts_with("--watch-namespace")),
        "{a:?}"
    );
    for (var, field) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let env = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == var);
        assert_eq!(env.expect(var)["valueFrom"]["fieldRef"]["fieldPath"], field);
    }
    let service = one(&docs, "Service");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(
        service["spec"]["ports"],
        json!([{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}])
    );
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    // The optional objects are off by default.
    for kind in [
        "ServiceMonitor",
        "PrometheusRule",
        "PodDisruptionBudget",
        "ConfigMap",
    ] {
        assert!(all(&docs, kind).is_empty(), "{kind} rendered by default");
    }
}

#[test]
fn cluster_rbac_is_exactly_least_privilege() {
    let docs = render(&[]);
    let cluster_role = role(&docs, "ClusterRole", "bellows");
    assert_eq!(access(&cluster_role["rules"]), controller_access());
    let binding = one(&docs, "ClusterRoleBinding");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "bellows"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "bellows", "namespace": NAMESPACE}])
    );
    // The only namespaced Roles are the lease's and the records'.
    assert_eq!(all(&docs, "Role").len(), 2);
    assert_lease_access(&docs);
    assert_records_access(&docs);
    assert_no_wildcards(&docs);
}

#[test]
fn users_get_schemarollouts_through_the_built_in_roles() {
    let docs = render(&[]);
    let edit = role(&docs, "ClusterRole", "bellows-schemarollouts-edit");
    for label in ["aggregate-to-admin", "aggregate-to-edit"] {
        assert_eq!(
            edit["metadata"]["labels"][format!("rbac.authorization.k8s.io/{label}")],
            "true"
        );
    }
    let manage = [
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    ];
    assert_eq!(
        access(&edit["rules"]),
        access(&json!([
            {"apiGroups": ["bellows.dev"], "resources": ["schemarollouts"], "verbs": manage},
            {"apiGroups": ["bellows.dev"], "resources": ["schemarollouts/status"], "verbs": ["get"]},
        ]))
    );
    let view = role(&docs, "ClusterRole", "bellows-schemarollouts-view");
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-view"],
        "true"
    );
    assert_eq!(
        access(&view["rules"]),
        access(
            &json!([{"apiGroups": ["bellows.dev"], "resources": ["schemarollouts", "schemarollouts/status"], "verbs": ["get", "list", "watch"]}])
        )
    );
    // No binding: the built-in roles carry them.
    assert_eq!(all(&docs, "ClusterRoleBinding").len(), 1);
    let off = render(&["--set", "rbac.aggregateToDefaultRoles=false"]);
    assert_eq!(all(&off, "ClusterRole").len(), 1, "only the controller's");
}

#[test]
fn namespaced_mode_has_no_cluster_rbac_and_watches_one_namespace() {
    let docs = render_ci("namespaced", &[]);
    assert!(all(&docs, "ClusterRole").is_empty());
    assert!(all(&docs, "ClusterRoleBinding").is_empty());
    let controller = role(&docs, "Role", "bellows");
    assert_eq!(controller["metadata"]["namespace"], "shop");
    assert_eq!(access(&controller["rules"]), controller_access());
    let binding = all(&docs, "RoleBinding")
        .into_iter()
        .find(|b| b["roleRef"]["name"] == "bellows")
        .expect("controller RoleBinding");
    assert_eq!(binding["metadata"]["namespace"], "shop");
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "bellows", "namespace": NAMESPACE}])
    );
    assert!(args(&docs).contains(&"--watch-namespace=shop"));
    assert_lease_access(&docs);
    assert_records_access(&docs);
    assert_no_wildcards(&docs);
}

#[test]
fn a_list_of_namespaces_gets_a_role_in_each_and_nothing_cluster_wide() {
    let docs = render_ci("namespaces", &["--set", "watchNamespace=shop"]);
    assert!(all(&docs, "ClusterRole").is_empty());
    assert!(all(&docs, "ClusterRoleBinding").is_empty());
    let controllers: Vec<&Value> = all(&docs, "Role")
        .into_iter()
        .filter(|r| r["metadata"]["name"] == "bellows")
        .collect();
    let namespaces: Vec<&str> = controllers
        .iter()
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(
        namespaces,
        ["shop", "billing"],
        "watchNamespace already listed"
    );
    for role in &controllers {
        assert_eq!(access(&role["rules"]), controller_access());
    }
    let bindings: Vec<&Value> = all(&docs, "RoleBinding")
        .into_iter()
        .filter(|b| b["roleRef"]["name"] == "bellows")
        .collect();
    assert_eq!(bindings.len(), 2);
    for b in &bindings {
        assert_eq!(b["roleRef"]["kind"], "Role");
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "bellows", "namespace": NAMESPACE}])
        );
    }
    assert!(args(&docs).contains(&"--watch-namespace=shop,billing"));
    assert_lease_access(&docs);
    assert_records_access(&docs);
    assert_no_wildcards(&docs);
    let out = chart_sh(&["render", "--set", "watchNamespaces={Shop}"]);
    assert_eq!(out.status.code(), Some(1), "an invalid namespace name");
}

#[test]
fn without_leader_election_there_is_no_lease_access() {
    let docs = render(&["--set", "leaderElection.enabled=false,replicaCount=1"]);
    assert_eq!(all(&docs, "Role").len(), 1, "the records' Role only");
    assert_eq!(all(&docs, "RoleBinding").len(), 1);
    assert_records_access(&docs);
    assert!(
        !args(&docs)
            .iter()
            .any(|a| a.contains("lease") || a.contains("leader"))
    );
}

#[test]
fn crd_is_the_committed_one_kept_on_uninstall_and_optional() {
    let docs = render(&[]);
    let crd = one(&docs, "CustomResourceDefinition");
    assert_eq!(
        crd["metadata"]["annotations"]["helm.sh/resource-policy"],
        "keep"
    );
    let committed: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("crds/schemarollouts.bellows.dev.yaml")).unwrap(),
    )
    .unwrap();
    assert_eq!(crd["metadata"]["name"], committed["metadata"]["name"]);
    assert!(
        crd["spec"] == committed["spec"],
        "the rendered CRD's spec differs from crds/"
    );
    let docs = render(&["--set", "crds.install=false"]);
    assert!(all(&docs, "CustomResourceDefinition").is_empty());
    assert_eq!(all(&docs, "Deployment").len(), 1);
}

#[test]
fn full_values_render_monitoring_dashboard_and_pdb() {
    let docs = render_ci("full", &[]);
    let service = one(&docs, "Service");
    let monitor = one(&docs, "ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        monitor["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"]
    );
    assert_eq!(
        monitor["spec"]["namespaceSelector"]["matchNames"],
        json!([NAMESPACE])
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");

    let rules = &one(&docs, "PrometheusRule")["spec"]["groups"][0]["rules"];
    let rule = |name: &str| {
        rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["alert"] == name)
            .unwrap_or_else(|| panic!("no alert {name} in {rules}"))
    };
    let alerts: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(root().join("charts/bellows/files/alerts.yaml")).unwrap(),
    )
    .unwrap();
    let names: Vec<&Value> = alerts["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["alert"])
        .collect();
    let rendered: Vec<&Value> = rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["alert"])
        .collect();
    assert_eq!(
        rendered, names,
        "every rule of files/alerts.yaml is rendered"
    );
    // Values reach `for` and the expression; Prometheus' templates pass through.
    assert_eq!(rule("BellowsContractHeld")["for"], "24h");
    assert_eq!(rule("BellowsRolloutStuck")["for"], "1h");
    assert!(
        rule("BellowsReconcileErrors")["expr"]
            .as_str()
            .unwrap()
            .ends_with("> 0.25")
    );
    assert!(!rules.to_string().contains(".Values"));
    assert!(
        rule("BellowsRolloutStuck")["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("{{ $labels.phase }}")
    );
    let docs_off = render_ci(
        "full",
        &[
            "--set",
            "prometheusRule.alerts.BellowsRolloutFailed.enabled=false",
        ],
    );
    let rules_off = &one(&docs_off, "PrometheusRule")["spec"]["groups"][0]["rules"];
    assert_eq!(rules_off.as_array().unwrap().len(), names.len() - 1);
    assert!(!rules_off.to_string().contains("BellowsRolloutFailed"));

    let dashboard = one(&docs, "ConfigMap");
    assert_eq!(dashboard["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("charts/bellows/dashboards/bellows.json")).unwrap(),
    )
    .unwrap();
    let embedded: Value =
        serde_json::from_str(dashboard["data"]["bellows.json"].as_str().unwrap()).unwrap();
    assert_eq!(embedded, shipped);

    let pdb = one(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["minAvailable"], 1);
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"],
        one(&docs, "Deployment")["spec"]["selector"]["matchLabels"]
    );
}

#[test]
fn pdb_api_version_follows_the_cluster() {
    let pdb_version = |extra: &[&str]| {
        let docs = render(&[&["--set", "podDisruptionBudget.enabled=true"], extra].concat());
        one(&docs, "PodDisruptionBudget")["apiVersion"].clone()
    };
    // Kubernetes 1.20 (the e2e cluster) serves only policy/v1beta1.
    assert_eq!(
        pdb_version(&[
            "--kube-version",
            "1.20.2",
            "--api-versions",
            "v1,policy/v1beta1"
        ]),
        "policy/v1beta1"
    );
    // A cluster that lists policy/v1 PodDisruptionBudget gets it.
    assert_eq!(
        pdb_version(&[
            "--kube-version",
            "1.20.2",
            "--api-versions",
            "policy/v1/PodDisruptionBudget"
        ]),
        "policy/v1"
    );
    // Offline without flags: the SDK's current Kubernetes version.
    assert_eq!(pdb_version(&[]), "policy/v1");
}
