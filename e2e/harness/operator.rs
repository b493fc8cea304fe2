//! `bellows run` as a separate process with the chart's identity and
//! arguments (see `identity`) and the image's environment (the
//! Dockerfile's `ENV`), its metrics/probe port on loopback. Its
//! `POD_NAME` is its name, as a pod's is: a restarted process keeps its
//! leader-election identity, as a restarted container does.

use super::cluster::Window;
use super::identity::{self, Identity};
use super::process::{Proc, free_port};
use super::wait::until;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Resource use of an operator process.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Peak resident set size (VmHWM).
    pub peak_rss_mib: f64,
    /// User plus system CPU time.
    pub cpu_seconds: f64,
}

pub struct Operator {
    identity: Identity,
    dir: PathBuf,
    /// Names its log files and is its `POD_NAME`.
    name: String,
    /// Arguments after the chart's.
    args: Vec<String>,
    pub port: u16,
    proc: Option<Proc>,
    starts: u32,
    /// Times [`Operator::revive`] started it again after it exited on its own.
    pub restarts: u32,
}

impl Operator {
    pub fn new(identity: &Identity, dir: &Path) -> Operator {
        Operator::named(identity, dir, "operator", &[])
    }

    /// An operator with its own name (log files, `POD_NAME`) and `bellows
    /// run` arguments after the chart's (timing knobs only: never more
    /// rights).
    pub fn named(identity: &Identity, dir: &Path, name: &str, args: &[&str]) -> Operator {
        Operator {
            identity: identity.clone(),
            dir: dir.join(LOG_DIR),
            name: name.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            port: free_port(),
            proc: None,
            starts: 0,
            restarts: 0,
        }
    }

    /// Starts the operator without waiting for it to be ready.
    pub fn spawn(&mut self) {
        self.starts += 1;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_bellows"));
        cmd.args(["run", "--metrics-addr", &format!("127.0.0.1:{}", self.port)])
            .args(&self.identity.args)
            .args(&self.args)
            .envs(image_env())
            .env("KUBECONFIG", &self.identity.kubeconfig)
            .env("POD_NAME", &self.name)
            .env("POD_NAMESPACE", identity::NAMESPACE)
            .env("RUST_LOG", "info,bellows=debug");
        // A heap profile on demand (the bench's BELLOWS_BENCH_HEAP): the
        // heaptrack preload library records every allocation to the file.
        if let Some(file) = std::env::var_os("BELLOWS_BENCH_HEAP") {
            cmd.env("LD_PRELOAD", "/usr/lib/heaptrack/libheaptrack_preload.so")
                .env("DUMP_HEAPTRACK_OUTPUT", file);
        }
        let log = self.log_file(self.starts);
        self.proc = Some(Proc::spawn("bellows", cmd, &log));
    }

    /// Starts the operator and waits for `/readyz`.
    pub async fn start(&mut self) {
        self.spawn();
        let port = self.port;
        let ready = tokio::time::timeout(
            Duration::from_secs(30),
            until("bellows /readyz", Duration::from_secs(30), || async move {
                get(port, "/readyz").await.filter(|(code, _)| *code == 200)
            }),
        )
        .await;
        assert!(
            ready.is_ok(),
            "bellows did not become ready; its log:\n{}",
            self.logs()
        );
    }

    /// Sends `signal` and waits for the process to exit; its exit status
    /// (`None` if it was not running).
    pub fn stop(&mut self, signal: i32) -> Option<std::process::ExitStatus> {
        self.proc.take().and_then(|mut p| p.stop(signal))
    }

    /// Starts the process again if it exited on its own (not through
    /// [`Operator::stop`]), as the kubelet restarts the chart's container:
    /// a leader that cannot renew its Lease through an API server outage
    /// exits by design. Whether it did.
    pub fn revive(&mut self) -> bool {
        if !self.proc.as_mut().is_some_and(|p| p.exited()) {
            return false;
        }
        self.restarts += 1;
        self.spawn();
        true
    }

    /// Peak memory and CPU time of the running process so far.
    pub fn usage(&self) -> Option<Usage> {
        let pid = self.proc.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let hwm_kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(Usage {
            peak_rss_mib: hwm_kib / 1024.0,
            cpu_seconds: super::process::cpu_seconds(pid)?,
        })
    }

    /// Finished reconciles, from `/metrics` (0 while unreachable).
    pub async fn reconciles(&self) -> u64 {
        self.total("controller_runtime_reconcile_total").await
    }

    /// The sum of the counter `name` over its labels, from `/metrics` (0
    /// while unreachable).
    pub async fn total(&self, name: &str) -> u64 {
        self.metrics()
            .await
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// The counter `name` by label set (`verb="get"`), from `/metrics`
    /// (empty while unreachable).
    pub async fn series(&self, name: &str) -> std::collections::BTreeMap<String, u64> {
        let prefix = format!("{name}{{");
        self.metrics()
            .await
            .lines()
            .filter_map(|l| {
                let (labels, value) = l.strip_prefix(&prefix)?.rsplit_once("} ")?;
                Some((labels.to_owned(), value.parse().ok()?))
            })
            .collect()
    }

    /// Whether the operator process is running (started and not exited).
    pub fn running(&mut self) -> bool {
        self.proc.as_mut().is_some_and(|p| !p.exited())
    }

    /// The `/metrics` text.
    pub async fn metrics(&self) -> String {
        get(self.port, "/metrics")
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// Every log line the operator wrote, across restarts.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| std::fs::read_to_string(self.log_file(i)).unwrap_or_default())
            .collect()
    }

    fn log_file(&self, start: u32) -> PathBuf {
        std::fs::create_dir_all(&self.dir).unwrap();
        self.dir.join(format!("{}-{start}.log", self.name))
    }
}

/// Where under the run's directory every operator process logs.
const LOG_DIR: &str = "operators";

/// The line the operator logs for every request the API server refused
/// with 403 (`bellows::telemetry::requests`).
const FORBIDDEN: &str = "API request forbidden";

/// Every `API request forbidden` line of every operator process started
/// under `dir`, prefixed with its log file's name, except those logged
/// within one of `excused` (a restarted API server not yet ready); and how
/// many were excused.
pub fn forbidden(dir: &Path, excused: &[Window]) -> (Vec<String>, usize) {
    let Ok(entries) = std::fs::read_dir(dir.join(LOG_DIR)) else {
        return (vec![], 0);
    };
    let mut lines = vec![];
    let mut skipped = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        for line in text.lines().filter(|l| l.contains(FORBIDDEN)) {
            // The chart logs JSON with a timestamp; a line without one is
            // never excused.
            let at = serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["timestamp"].as_str()?.parse::<jiff::Timestamp>().ok());
            if at.is_some_and(|at| excused.iter().any(|(from, to)| *from <= at && at <= *to)) {
                skipped += 1;
            } else {
                lines.push(format!("{name}: {line}"));
            }
        }
    }
    (lines, skipped)
}

/// A plain HTTP/1.0 GET on loopback: status code and body.
pub async fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let code = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// The environment the image sets: the `ENV KEY=VALUE` lines of the
/// Dockerfile's last stage.
fn image_env() -> Vec<(String, String)> {
    let dockerfile =
        std::fs::read_to_string(super::repo_path("Dockerfile")).expect("the Dockerfile reads");
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap_or_default();
    last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("ENV ")?.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}
