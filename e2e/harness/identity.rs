//! The operator's identity and flags as the Helm chart installs them: the
//! chart is rendered for this cluster's version (`scripts/chart.sh`, Helm's
//! Go SDK), its ServiceAccount, ClusterRole, Role and bindings are applied,
//! and every operator process the suite starts authenticates with that
//! ServiceAccount's token and runs the rendered container's arguments. The
//! admin kubeconfig is for the test itself, never for the operator.

use super::process::run;
use super::repo_path;
use super::wait::until;
use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, PostParams};
use kube::config::{AuthInfo, Kubeconfig};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The release namespace (`helm install bellows -n bellows-system`).
pub const NAMESPACE: &str = "bellows-system";
/// The release name.
const RELEASE: &str = "bellows";
/// The kinds that make up the operator's identity.
const IDENTITY_KINDS: [&str; 5] = [
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
];

/// What an operator process runs with.
#[derive(Clone, Debug)]
pub struct Identity {
    /// A kubeconfig authenticating as the chart's ServiceAccount.
    pub kubeconfig: PathBuf,
    /// The chart container's arguments after `run`, without
    /// `--metrics-addr` (each process gets its own loopback port).
    pub args: Vec<String>,
}

impl Identity {
    /// Renders the chart, applies its identity objects with the admin
    /// `kubeconfig`, and writes a kubeconfig for its ServiceAccount into
    /// `dir`.
    pub async fn install(client: &Client, kubeconfig: &Path, dir: &Path) -> Identity {
        Self::install_release(client, kubeconfig, dir, RELEASE, &[]).await
    }

    /// The same for a second release `release` in the release namespace,
    /// rendered with the chart's `values` flags (`--set ...`) added.
    pub async fn install_release(
        client: &Client,
        kubeconfig: &Path,
        dir: &Path,
        release: &str,
        values: &[&str],
    ) -> Identity {
        let version = client.apiserver_version().await.unwrap();
        let rendered = dir.join(format!("chart-rendered-{release}.yaml"));
        run(
            "scripts/chart.sh render",
            Command::new("bash")
                .arg(repo_path("scripts/chart.sh"))
                .args(["render", "--namespace", NAMESPACE, "--name", release])
                .args([
                    "--kube-version",
                    version.git_version.trim_start_matches('v'),
                ])
                .args(values)
                .arg("-o")
                .arg(&rendered),
        );
        let docs: Vec<Value> =
            serde_saphyr::from_multiple(&std::fs::read_to_string(&rendered).unwrap()).unwrap();
        let ns: Namespace =
            serde_json::from_value(json!({"metadata": {"name": NAMESPACE}})).unwrap();
        match Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("creating {NAMESPACE}: {e}"),
        }

        let objects: Vec<&Value> = docs
            .iter()
            .filter(|d| IDENTITY_KINDS.iter().any(|k| d["kind"] == *k))
            .collect();
        let list = dir.join(format!("chart-identity-{release}.json"));
        std::fs::write(
            &list,
            json!({"apiVersion": "v1", "kind": "List", "items": objects}).to_string(),
        )
        .unwrap();
        run(
            "kubectl apply the chart's identity",
            Command::new("kubectl")
                .env("KUBECONFIG", kubeconfig)
                .args(["apply", "-f"])
                .arg(&list),
        );

        let account = objects
            .iter()
            .find(|d| d["kind"] == "ServiceAccount")
            .and_then(|d| d["metadata"]["name"].as_str())
            .expect("the chart renders a ServiceAccount");
        let token = token(client, account).await;
        let mut config = Kubeconfig::read_from(kubeconfig).unwrap();
        for user in &mut config.auth_infos {
            user.auth_info = Some(AuthInfo {
                token: Some(token.clone().into()),
                ..AuthInfo::default()
            });
        }
        let operator_kubeconfig = dir.join(format!("kubeconfig-{release}"));
        std::fs::write(
            &operator_kubeconfig,
            serde_json::to_string(&config).unwrap(),
        )
        .unwrap();

        let deployment = docs
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .expect("the chart renders a Deployment");
        let args: Vec<String> = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .expect("the operator container has args")
            .iter()
            .map(|a| a.as_str().unwrap().to_owned())
            .collect();
        assert_eq!(args.first().map(String::as_str), Some("run"));
        Identity {
            kubeconfig: operator_kubeconfig,
            args: args
                .into_iter()
                .skip(1)
                .filter(|a| !a.starts_with("--metrics-addr"))
                .collect(),
        }
    }
}

/// The token of ServiceAccount `name`, from the Secret that
/// kube-controller-manager's token controller creates for it.
async fn token(client: &Client, name: &str) -> String {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    until(
        &format!("a token for ServiceAccount {name}"),
        Duration::from_secs(30),
        || async {
            let account = accounts.get_opt(name).await.ok()??;
            for s in account.secrets.iter().flatten() {
                let secret = secrets.get_opt(s.name.as_deref()?).await.ok()??;
                if secret.type_.as_deref() == Some("kubernetes.io/service-account-token")
                    && let Some(token) = secret.data.as_ref()?.get("token")
                {
                    return String::from_utf8(token.0.clone()).ok();
                }
            }
            None
        },
    )
    .await
}
