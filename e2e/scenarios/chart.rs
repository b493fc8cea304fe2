//! Scenario 15: the Helm chart, rendered for this cluster (its version and
//! API groups) with each values file under `charts/bellows/ci/`, passes
//! server-side dry-run: the API server validates every object (RBAC rules,
//! the Deployment's security context and probes, the CRD, the
//! ServiceMonitor, PrometheusRule and PodDisruptionBudget against their
//! CRDs and API versions).

use crate::harness::{Env, identity, install_crd, repo_path};
use std::process::Command;
use std::sync::Arc;

pub async fn run(env: Arc<Env>) {
    // The Prometheus Operator's kinds, as structural stand-ins.
    install_crd(&env.client, &repo_path("e2e/fixtures/monitoring-crds.yaml")).await;
    // The release namespace exists: the suite installed the chart's
    // identity there (`harness::identity`).
    let release = identity::NAMESPACE;
    let watched = env.namespace("chart-watched").await;
    let also = env.namespace("chart-watched-too").await;
    let version = env.client.apiserver_version().await.unwrap();
    let kube_version = version.git_version.trim_start_matches('v').to_owned();
    let api_versions = String::from_utf8(watched.kubectl(&["api-versions"]).stdout)
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(",");

    let dir = tempfile::tempdir().unwrap();
    let mut values: Vec<_> = std::fs::read_dir(repo_path("charts/bellows/ci"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    values.sort();
    assert!(values.len() >= 3, "charts/bellows/ci has the values sets");
    for file in values {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let out = dir.path().join(format!("{name}.rendered.yaml"));
        let mut render = Command::new("bash");
        render
            .arg(repo_path("scripts/chart.sh"))
            .args(["render", "--namespace", release])
            .args(["--kube-version", &kube_version])
            .args(["--api-versions", &api_versions])
            .arg("-f")
            .arg(&file);
        // Namespaced mode's Roles go into namespaces that exist here.
        let text = std::fs::read_to_string(&file).unwrap();
        if text.contains("watchNamespaces") {
            render.args([
                "--set",
                &format!("watchNamespaces={{{},{}}}", watched.name, also.name),
            ]);
        } else if text.contains("watchNamespace") {
            render.args(["--set", &format!("watchNamespace={}", watched.name)]);
        }
        let rendered = render.arg("-o").arg(&out).output().unwrap();
        assert!(
            rendered.status.success(),
            "{name}: render failed: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let text = std::fs::read_to_string(&out).unwrap();
        let objects = text
            .split("\n---")
            .filter(|doc| doc.contains("kind:"))
            .count();
        // No -n: every namespaced object names its namespace. And
        // --validate=false: kubectl's own check would reject the CRD's CEL
        // rules, which this 1.20 server does not know (it drops them).
        let applied = Command::new("kubectl")
            .env("KUBECONFIG", &env.kubeconfig)
            .args(["apply", "--dry-run=server", "--validate=false", "-f"])
            .arg(&out)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&applied.stdout);
        assert!(
            applied.status.success(),
            "{name}: the API server rejected the chart:\n{}\n{stdout}",
            String::from_utf8_lossy(&applied.stderr)
        );
        let accepted = stdout.matches("(server dry run)").count();
        assert_eq!(
            accepted, objects,
            "{name}: {objects} rendered objects, {accepted} accepted:\n{stdout}"
        );
        println!("e2e:   {name}: {accepted} objects accepted by server-side dry-run");
    }
}
