//! A real control plane on loopback: etcd, kube-apiserver and
//! kube-controller-manager v1.20.2 (built from Debian's source package by
//! `e2e/scripts/prepare.sh`), with an admin token and a kubeconfig.

use super::process::{Proc, Service, free_port, run};
use super::wait::until;
use bellows::controller::access::{self, Access};
use jiff::Timestamp;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

const TOKEN: &str = "bellows-e2e-admin-token";

/// A running control plane; every process stops when it is dropped.
pub struct Cluster {
    /// Path of the admin kubeconfig.
    pub kubeconfig: PathBuf,
    /// Admin client.
    pub client: Client,
    /// kube-apiserver, restartable (absent for an existing cluster).
    apiserver: Option<Service>,
    /// From each kill of kube-apiserver until it was ready again.
    restarts: Mutex<Vec<Window>>,
    /// A client of the operator's identity and the permissions its RBAC
    /// grants: a restart is over once they are all granted again.
    rbac_probe: Mutex<Option<RbacProbe>>,
    _procs: Vec<Proc>,
}

/// A span of time (from, to).
pub type Window = (Timestamp, Timestamp);

/// An identity and the permission lists it must hold, each in a namespace
/// (every namespace when `None`).
#[derive(Clone)]
pub struct RbacProbe {
    pub client: Client,
    pub grants: Vec<(&'static [Access], Option<String>)>,
}

/// Runs `e2e/scripts/prepare.sh` (installs packages, builds Kubernetes once)
/// and returns the directory holding the Kubernetes binaries.
pub fn prepare() -> PathBuf {
    let script = super::repo_path("e2e/scripts/prepare.sh");
    let out = run("e2e/scripts/prepare.sh", Command::new("bash").arg(script));
    PathBuf::from(
        out.lines()
            .last()
            .expect("prepare.sh prints the bin dir")
            .trim(),
    )
}

impl Cluster {
    /// Starts etcd, kube-apiserver and kube-controller-manager in `dir`.
    pub async fn start(bin: &Path, dir: &Path) -> Cluster {
        let etcd_port = free_port();
        let peer_port = free_port();
        let api_port = free_port();
        let etcd_data = dir.join("etcd");
        let certs = dir.join("certs");
        std::fs::create_dir_all(&certs).unwrap();

        let mut etcd = Command::new("etcd");
        etcd.args(["--name", "e2e", "--data-dir"])
            .arg(&etcd_data)
            .arg(format!("--listen-client-urls=http://127.0.0.1:{etcd_port}"))
            .arg(format!(
                "--advertise-client-urls=http://127.0.0.1:{etcd_port}"
            ))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer_port}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer_port}"
            ))
            .arg(format!(
                "--initial-cluster=e2e=http://127.0.0.1:{peer_port}"
            ))
            .args(["--log-level", "warn"]);
        let etcd = Proc::spawn("etcd", etcd, &dir.join("etcd.log"));

        let sa_key = dir.join("sa.key");
        run(
            "openssl genrsa",
            Command::new("openssl")
                .args(["genrsa", "-out"])
                .arg(&sa_key)
                .arg("2048"),
        );
        let tokens = dir.join("tokens.csv");
        std::fs::write(&tokens, format!("{TOKEN},admin,admin,system:masters\n")).unwrap();

        let (bin_dir, certs_dir, log_dir) = (bin.to_owned(), certs.clone(), dir.to_owned());
        let (tokens_file, key) = (tokens.clone(), sa_key.clone());
        let apiserver = move || {
            let mut api = Command::new(bin_dir.join("kube-apiserver"));
            api.arg(format!("--etcd-servers=http://127.0.0.1:{etcd_port}"))
                .args([
                    "--bind-address=127.0.0.1",
                    "--advertise-address=127.0.0.1",
                    "--insecure-port=0",
                ])
                .arg(format!("--secure-port={api_port}"))
                .arg(format!("--cert-dir={}", certs_dir.display()))
                .arg(format!("--token-auth-file={}", tokens_file.display()))
                .arg("--authorization-mode=RBAC")
                .arg(format!("--service-account-key-file={}", key.display()))
                .arg(format!(
                    "--service-account-signing-key-file={}",
                    key.display()
                ))
                .arg("--service-account-issuer=https://kubernetes.default.svc")
                .arg("--service-cluster-ip-range=10.0.0.0/24")
                // No kubelet means no service-account tokens to mount.
                .arg("--disable-admission-plugins=ServiceAccount")
                .arg("--profiling=false");
            api
        };
        let api = Service::start("kube-apiserver", &log_dir, apiserver);

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(
            &kubeconfig,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: e2e\n  cluster:\n    server: https://127.0.0.1:{api_port}\n    insecure-skip-tls-verify: true\nusers:\n- name: admin\n  user:\n    token: {TOKEN}\ncontexts:\n- name: e2e\n  context: {{cluster: e2e, user: admin, namespace: default}}\ncurrent-context: e2e\n"
            ),
        )
        .unwrap();
        let client = client_for(&kubeconfig).await;
        until("kube-apiserver ready", Duration::from_secs(60), || async {
            client.apiserver_version().await.ok()
        })
        .await;

        let mut kcm = Command::new(bin.join("kube-controller-manager"));
        kcm.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--service-account-private-key-file={}", sa_key.display()))
            .arg(format!("--root-ca-file={}", certs.join("apiserver.crt").display()))
            .args(["--leader-elect=false", "--use-service-account-credentials=false", "--port=0", "--secure-port=0"])
            .arg("--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-route,-service,-attachdetach,-persistentvolume-binder")
            // A test control plane: kube-controller-manager's default client
            // limit (20 requests/s) would make it, not bellows, what the
            // suite and the scale benchmark wait for.
            .args(["--kube-api-qps=200", "--kube-api-burst=300"])
            .arg("--concurrent-deployment-syncs=10")
            .arg("--concurrent-replicaset-syncs=10");
        let kcm = Proc::spawn(
            "kube-controller-manager",
            kcm,
            &dir.join("kube-controller-manager.log"),
        );

        Cluster {
            kubeconfig,
            client,
            apiserver: Some(api),
            restarts: Mutex::default(),
            rbac_probe: Mutex::default(),
            _procs: vec![kcm, etcd],
        }
    }

    /// After a restart, also wait until the probe's identity holds every
    /// permission it lists again (asked with SelfSubjectAccessReviews, as
    /// the operator asks at start).
    pub fn probe_rbac(&self, probe: RbacProbe) {
        *self.rbac_probe.lock().unwrap() = Some(probe);
    }

    /// Fault injection: kills kube-apiserver (SIGKILL: a crash; a graceful
    /// stop drains watches for a minute), leaves it down for `down`, starts
    /// it again and waits until it is ready (`/readyz`) and, with
    /// [`Self::probe_rbac`], until its RBAC authorizer allows the probe
    /// identity again (`/readyz` can pass seconds before that). The span is
    /// remembered: while a restarted server's authorizer has not synced it
    /// answers 403 to everyone but admins, which says nothing about the
    /// chart's RBAC.
    pub async fn restart_apiserver(&self, down: Duration) {
        let api = self
            .apiserver
            .as_ref()
            .expect("only a local control plane restarts");
        let killed = Timestamp::now();
        api.stop(libc::SIGKILL);
        tokio::time::sleep(down).await;
        api.restart();
        until("kube-apiserver ready", Duration::from_secs(60), || async {
            let request = http::Request::get("/readyz").body(Vec::new()).unwrap();
            self.client
                .request_text(request)
                .await
                .ok()
                .filter(|t| t == "ok")
        })
        .await;
        let probe = self.rbac_probe.lock().unwrap().clone();
        if let Some(probe) = probe {
            until(
                "RBAC grants the operator everything again",
                Duration::from_secs(60),
                || async {
                    for (list, namespace) in &probe.grants {
                        // A review refused or answered "no": not synced yet.
                        match access::missing(&probe.client, list, namespace.as_deref()).await {
                            Ok(missing) if missing.is_empty() => {}
                            _ => return None,
                        }
                    }
                    Some(())
                },
            )
            .await;
        }
        let ready = Timestamp::now() + jiff::SignedDuration::from_secs(1);
        self.restarts.lock().unwrap().push((killed, ready));
    }

    /// The CPU seconds kube-apiserver has used so far (`None` for an
    /// existing cluster).
    pub fn apiserver_cpu_seconds(&self) -> Option<f64> {
        super::process::cpu_seconds(self.apiserver.as_ref()?.pid()?)
    }

    /// From each kill of kube-apiserver until it was ready again.
    pub fn restart_windows(&self) -> Vec<Window> {
        self.restarts.lock().unwrap().clone()
    }

    /// Uses an existing cluster (the kind profile): nothing is started.
    pub async fn existing(kubeconfig: PathBuf) -> Cluster {
        let client = client_for(&kubeconfig).await;
        client
            .apiserver_version()
            .await
            .expect("the cluster in KUBECONFIG answers");
        Cluster {
            kubeconfig,
            client,
            apiserver: None,
            restarts: Mutex::default(),
            rbac_probe: Mutex::default(),
            _procs: vec![],
        }
    }
}

/// A client for the cluster in `kubeconfig`.
pub async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is valid");
    Client::try_from(config).expect("client")
}
