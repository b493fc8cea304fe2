//! A stand-in kubelet (there is no container runtime here): it binds every
//! pod to one fake node, runs Job pods' first container command as a local
//! process with the pod's resolved environment, marks other pods Running and
//! Ready, and removes Terminating pods.
//!
//! An app pod (not a Job's) whose first container has a `command` runs it
//! too, as a real kubelet would: the process keeps running while the pod is
//! Terminating (that delay is the app's drain time, when real pods still
//! serve), gets SIGTERM when the kubelet stops the pod, SIGKILL after the
//! pod's grace period, and only then is the pod removed from the API. An app
//! that stopped at the first sign of deletion would hide an early contract.
//!
//! Knobs, as pod (template) annotations:
//! - `e2e.bellows.dev/never-ready: "true"`: the pod never becomes Ready;
//! - `e2e.bellows.dev/ready-after-ms`: delay before Ready (default 300);
//! - `e2e.bellows.dev/terminate-after-ms`: how long a Terminating pod stays
//!   before it is removed (default 0).
//!
//! The delays simulate a slow node; tests never wait on them blindly.

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NODE: &str = "e2e-node";
pub const NEVER_READY: &str = "e2e.bellows.dev/never-ready";
pub const READY_AFTER_MS: &str = "e2e.bellows.dev/ready-after-ms";
pub const TERMINATE_AFTER_MS: &str = "e2e.bellows.dev/terminate-after-ms";

/// A pod the kubelet removed after it was Terminating.
#[derive(Clone, Debug)]
pub struct Removed {
    pub namespace: String,
    /// The pod's name.
    pub name: String,
    /// The pod's `pod-template-hash` label.
    pub template_hash: Option<String>,
    /// When the removal was acknowledged by the API server.
    pub at: Timestamp,
}

/// A Job pod the kubelet ran.
#[derive(Clone, Debug)]
pub struct JobRun {
    pub namespace: String,
    pub job: String,
    pub exit_code: i32,
}

/// What the kubelet did, for assertions.
#[derive(Default)]
pub struct Journal {
    pub removed: Mutex<Vec<Removed>>,
    pub job_runs: Mutex<Vec<JobRun>>,
}

#[derive(Clone)]
pub struct Kubelet {
    client: Client,
    logs: PathBuf,
    pub journal: Arc<Journal>,
    seen: Arc<Mutex<HashSet<(String, &'static str)>>>,
    /// Running app containers by pod uid (killed when dropped).
    apps: Arc<Mutex<HashMap<String, tokio::process::Child>>>,
}

impl Kubelet {
    /// Registers the fake node and starts handling pods in the background.
    pub async fn start(client: Client, logs: PathBuf) -> Kubelet {
        std::fs::create_dir_all(&logs).unwrap();
        let nodes: Api<Node> = Api::all(client.clone());
        let node: Node = serde_json::from_value(json!({"metadata": {"name": NODE}})).unwrap();
        match nodes.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("register node: {e}"),
        }
        let kubelet = Kubelet {
            client,
            logs,
            journal: Arc::default(),
            seen: Arc::default(),
            apps: Arc::default(),
        };
        let k = kubelet.clone();
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(k.client.clone());
            let mut stream = watcher(pods, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => {
                        k.handle(pod)
                    }
                    Ok(_) => {}
                    // The watcher retries by itself; errors are transient.
                    Err(_) => {}
                }
            }
        });
        kubelet
    }

    /// Whether this is the first time `what` happens to `pod`.
    fn first(&self, pod: &Pod, what: &'static str) -> bool {
        self.seen
            .lock()
            .unwrap()
            .insert((pod.uid().unwrap_or_default(), what))
    }

    fn handle(&self, pod: Pod) {
        let k = self.clone();
        if pod.metadata.deletion_timestamp.is_some() {
            if self.first(&pod, "remove") {
                tokio::spawn(async move { k.remove(pod).await });
            }
            return;
        }
        let phase = pod
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let bound = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_ref())
            .is_some();
        if !bound {
            if self.first(&pod, "bind") {
                tokio::spawn(async move { k.bind(pod).await });
            }
        } else if (phase == "Pending" || phase.is_empty()) && self.first(&pod, "start") {
            tokio::spawn(async move { k.start_pod(pod).await });
        }
    }

    fn api(&self, pod: &Pod) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default())
    }

    async fn bind(&self, pod: Pod) {
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod.name_any()},
                             "target": {"apiVersion": "v1", "kind": "Node", "name": NODE}});
        if let Err(e) = self
            .api(&pod)
            .create_subresource::<_, serde_json::Value>(
                "binding",
                &pod.name_any(),
                &PostParams::default(),
                &binding,
            )
            .await
        {
            eprintln!("kubelet: bind {}: {e}", pod.name_any());
        }
    }

    async fn remove(&self, pod: Pod) {
        let delay = annotation_ms(&pod, TERMINATE_AFTER_MS).unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        self.stop_app(&pod).await;
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        // Retried while the API server cannot be reached (fault injection
        // restarts it): a pod left Terminating would hold contract forever.
        for attempt in 0.. {
            match self.api(&pod).delete(&pod.name_any(), &dp).await {
                Ok(_) | Err(kube::Error::Api(_)) => break,
                Err(e) if attempt == 300 => {
                    eprintln!("kubelet: remove {}: {e}", pod.name_any());
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        self.journal.removed.lock().unwrap().push(Removed {
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            template_hash: pod.labels().get("pod-template-hash").cloned(),
            at: Timestamp::now(),
        });
    }

    async fn start_pod(&self, pod: Pod) {
        let job = pod
            .owner_references()
            .iter()
            .find(|o| o.kind == "Job")
            .map(|o| o.name.clone());
        match job {
            Some(job) => self.run_job_pod(pod, job).await,
            None => {
                if let Err(message) = self.start_app(&pod).await {
                    eprintln!("kubelet: app {}: {message}", pod.name_any());
                    self.patch_status(&pod, running_status(&pod, false)).await;
                    return;
                }
                if pod.annotations().get(NEVER_READY).map(String::as_str) == Some("true") {
                    self.patch_status(&pod, running_status(&pod, false)).await;
                    return;
                }
                let delay = annotation_ms(&pod, READY_AFTER_MS).unwrap_or(300);
                tokio::time::sleep(Duration::from_millis(delay)).await;
                self.patch_status(&pod, running_status(&pod, true)).await;
            }
        }
    }

    /// Starts an app pod's first container if it has a command (an image's
    /// entrypoint cannot run here: such pods only report Running).
    async fn start_app(&self, pod: &Pod) -> Result<(), String> {
        let ns = pod.namespace().unwrap_or_default();
        let container = first_container(pod);
        if container.command.is_none() {
            return Ok(());
        }
        let env = match self.resolve_env_waiting(pod, &ns, &container).await {
            Ok(env) => env,
            Err(EnvError::Api(m) | EnvError::Config(m)) => return Err(m),
        };
        let log = self.logs.join(format!("{ns}_{}.log", pod.name_any()));
        let (program, args) = argv(&container, &env).ok_or("no command")?;
        let out = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let child = tokio::process::Command::new(&program)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let uid = pod.uid().unwrap_or_default();
        let mut apps = self.apps.lock().unwrap();
        // Deleted while starting: stop_app may have looked already. The
        // child is killed when dropped.
        if !self.seen.lock().unwrap().contains(&(uid.clone(), "remove")) {
            apps.insert(uid, child);
        }
        Ok(())
    }

    /// Stops a pod's app process the way a kubelet stops a container:
    /// SIGTERM, then SIGKILL once the pod's grace period is over.
    async fn stop_app(&self, pod: &Pod) {
        let child = self
            .apps
            .lock()
            .unwrap()
            .remove(&pod.uid().unwrap_or_default());
        let Some(mut child) = child else { return };
        if let Some(pid) = child.id() {
            // SAFETY: plain kill(2) on our own child's pid.
            unsafe {
                libc::kill(pid as i32, libc::SIGTERM);
            }
        }
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
            .unwrap_or(30);
        let grace = Duration::from_secs(grace.max(0) as u64);
        if tokio::time::timeout(grace, child.wait()).await.is_err() {
            child.kill().await.ok();
        }
    }

    /// Writes the pod's status. Like a real kubelet's status manager it
    /// retries while the API server cannot be reached (fault injection
    /// restarts it), for up to a minute.
    async fn patch_status(&self, pod: &Pod, status: serde_json::Value) {
        let patch = json!({"status": status});
        for attempt in 0.. {
            let result = self
                .api(pod)
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await;
            match result {
                Ok(_) => return,
                Err(kube::Error::Api(e)) => {
                    eprintln!("kubelet: status of {}: {e}", pod.name_any());
                    return;
                }
                Err(e) if attempt == 300 => {
                    eprintln!("kubelet: status of {}: {e}", pod.name_any());
                    return;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    async fn run_job_pod(&self, pod: Pod, job: String) {
        let ns = pod.namespace().unwrap_or_default();
        let container = first_container(&pod);
        self.patch_status(&pod, running_status(&pod, true)).await;
        let log = self.logs.join(format!("{ns}_{}.log", pod.name_any()));
        let resolved = self.resolve_env_waiting(&pod, &ns, &container).await;
        let exit_code = match resolved {
            Err(EnvError::Api(message) | EnvError::Config(message)) => {
                std::fs::write(&log, &message).ok();
                1
            }
            Ok(env) => run_container(&container, &env, &log).await,
        };
        self.journal.job_runs.lock().unwrap().push(JobRun {
            namespace: ns,
            job,
            exit_code,
        });
        let now = Timestamp::now().to_string();
        let (phase, reason) = if exit_code == 0 {
            ("Succeeded", "Completed")
        } else {
            ("Failed", "Error")
        };
        self.patch_status(
            &pod,
            json!({
                "phase": phase,
                "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": now, "reason": "PodCompleted"}],
                "containerStatuses": [{"name": container.name, "ready": false, "restartCount": 0,
                    "image": container.image.clone().unwrap_or_default(), "imageID": "",
                    "state": {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": now, "finishedAt": now}}}]
            }),
        )
        .await;
    }

    /// [`Self::resolve_env`], asked again while the API server does not
    /// answer, as a kubelet does (the container waits); only a missing
    /// object fails it.
    async fn resolve_env_waiting(
        &self,
        pod: &Pod,
        ns: &str,
        container: &Container,
    ) -> Result<Vec<(String, String)>, EnvError> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.resolve_env(pod, ns, container).await {
                Err(EnvError::Api(_)) if tries < ENV_TRIES => {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                other => return other,
            }
        }
    }

    /// The container's environment: `value`, `secretKeyRef`,
    /// `configMapKeyRef` and `fieldRef` (`metadata.name`,
    /// `metadata.namespace`), with `$(VAR)` expanded against earlier entries.
    async fn resolve_env(
        &self,
        pod: &Pod,
        ns: &str,
        c: &Container,
    ) -> Result<Vec<(String, String)>, EnvError> {
        let mut env: Vec<(String, String)> = vec![];
        for var in c.env.iter().flatten() {
            let value = if let Some(v) = &var.value {
                expand(v, &env)
            } else if let Some(from) = &var.value_from {
                if let Some(f) = &from.field_ref {
                    match f.field_path.as_str() {
                        "metadata.name" => pod.name_any(),
                        "metadata.namespace" => ns.to_owned(),
                        other => {
                            return Err(EnvError::Config(format!(
                                "the stand-in kubelet does not resolve fieldRef {other}"
                            )));
                        }
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let secret = Api::<Secret>::namespaced(self.client.clone(), ns)
                        .get_opt(&r.name)
                        .await
                        .map_err(|e| EnvError::Api(e.to_string()))?
                        .ok_or_else(|| {
                            EnvError::Config(format!(
                                "CreateContainerConfigError: secret {:?} not found",
                                r.name
                            ))
                        })?;
                    let bytes = secret
                        .data
                        .and_then(|d| d.get(&r.key).cloned())
                        .ok_or_else(|| {
                            EnvError::Config(format!(
                                "CreateContainerConfigError: key {:?} not in secret {:?}",
                                r.key, r.name
                            ))
                        })?;
                    String::from_utf8_lossy(&bytes.0).into_owned()
                } else if let Some(r) = &from.config_map_key_ref {
                    let cm = Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                        .get_opt(&r.name)
                        .await
                        .map_err(|e| EnvError::Api(e.to_string()))?
                        .ok_or_else(|| {
                            EnvError::Config(format!(
                                "CreateContainerConfigError: configmap {:?} not found",
                                r.name
                            ))
                        })?;
                    cm.data
                        .and_then(|d| d.get(&r.key).cloned())
                        .ok_or_else(|| {
                            EnvError::Config(format!(
                                "CreateContainerConfigError: key {:?} not in configmap {:?}",
                                r.key, r.name
                            ))
                        })?
                } else {
                    String::new()
                }
            } else {
                String::new()
            };
            env.push((var.name.clone(), value));
        }
        Ok(env)
    }
}

/// Why a container's environment could not be resolved.
enum EnvError {
    /// The API server did not answer: ask again.
    Api(String),
    /// A referenced object or key is missing: the container fails.
    Config(String),
}

/// How often the environment is asked for while the API server does not
/// answer (500 ms apart: a minute).
const ENV_TRIES: u32 = 120;

/// A pod's first container.
fn first_container(pod: &Pod) -> Container {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .cloned()
        .unwrap_or_default()
}

/// The container's `command` + `args` with `$(VAR)` expanded: program and
/// arguments.
fn argv(c: &Container, env: &[(String, String)]) -> Option<(String, Vec<String>)> {
    let mut argv = c
        .command
        .iter()
        .flatten()
        .chain(c.args.iter().flatten())
        .map(|a| expand(a, env));
    Some((argv.next()?, argv.collect()))
}

async fn run_container(c: &Container, env: &[(String, String)], log: &std::path::Path) -> i32 {
    let Some((program, args)) = argv(c, env) else {
        std::fs::write(
            log,
            "no command: the stand-in kubelet cannot run an image entrypoint",
        )
        .ok();
        return 127;
    };
    let out = tokio::process::Command::new(&program)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .kill_on_drop(true)
        .output()
        .await;
    match out {
        Ok(out) => {
            let mut text = out.stdout;
            text.extend_from_slice(&out.stderr);
            std::fs::write(log, text).ok();
            out.status.code().unwrap_or(137)
        }
        Err(e) => {
            std::fs::write(log, format!("cannot start {program}: {e}")).ok();
            127
        }
    }
}

/// Kubernetes' `$(VAR)` expansion: defined variables are replaced, unknown
/// references stay as written, `$$` is a literal `$`.
pub fn expand(input: &str, env: &[(String, String)]) -> String {
    let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut out = String::new();
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        if let Some(t) = tail.strip_prefix('$') {
            out.push('$');
            rest = t;
        } else if let Some(inner) = tail.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&format!("$({name})")),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

fn annotation_ms(pod: &Pod, key: &str) -> Option<u64> {
    pod.annotations().get(key).and_then(|v| v.parse().ok())
}

fn running_status(pod: &Pod, ready: bool) -> serde_json::Value {
    let now = Timestamp::now().to_string();
    let ready_s = if ready { "True" } else { "False" };
    let containers: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .map(|c| {
            json!({"name": c.name, "ready": ready, "started": true, "restartCount": 0,
                        "image": c.image.clone().unwrap_or_default(), "imageID": "",
                        "state": {"running": {"startedAt": now}}})
        })
        .collect();
    json!({
        "phase": "Running",
        "hostIP": "127.0.0.1",
        "podIP": "127.0.0.1",
        "startTime": now,
        "conditions": [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": ready_s, "lastTransitionTime": now},
            {"type": "Ready", "status": ready_s, "lastTransitionTime": now}
        ],
        "containerStatuses": containers
    })
}
