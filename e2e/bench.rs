//! Scale benchmark, run on demand (`bash scripts/bench.sh`, or
//! `cargo bench --bench scale -- 100 500`): on the local control plane of the
//! e2e suite, N SchemaRollouts each gate their own one-replica Deployment;
//! all N Deployments are rolled at once. Each size runs in two profiles:
//! all N in one namespace, and spread over N/10 namespaces as clusters
//! spread them (`BELLOWS_BENCH_PROFILES=one` or `spread` runs one). Prints
//! numbers, asserts none:
//!
//! - contract-start latency: from the stand-in kubelet removing a workload's
//!   last old pod to the bench's watch seeing its contract Job (both on this
//!   machine's clock; a Job's creationTimestamp only has whole seconds);
//! - the operator's own share of it: from the later of that removal and the
//!   bench's watch seeing the Deployment's status complete (updated ==
//!   available == replicas == spec.replicas, generation observed), which
//!   kube-controller-manager writes, to the contract Job;
//! - the floor under the same load: from that removal to a plain pod watch
//!   in this process seeing the pod's DELETE event, and the operator's share
//!   as a ratio to it (p50 / p50);
//! - the operator's peak RSS (VmHWM) and CPU seconds (utime + stime);
//! - API requests per second, from the API server's own
//!   `apiserver_request_total`: over a quiet window with the operator
//!   stopped (kube-controller-manager and the kubelet alone), with it
//!   running idle, and during the rollout (everything, and the excess over
//!   the quiet baseline);
//! - reconciles and API requests per rollout, from the operator's
//!   `/metrics` (`bellows_api_requests_total`: every request it sent while
//!   the Deployments rolled, watches included), by verb, and who answered
//!   the lists of its confirmations (`bellows_fresh_lists_total`: the API
//!   server's watch cache or a quorum read from etcd);
//! - the API server's own CPU seconds while the Deployments rolled.
//!
//! The operator runs as the chart's identity and arguments, without leader
//! election unless `BELLOWS_BENCH_LEADER_ELECT` is set (see `bench`).

// The harness serves the e2e suite too; the bench uses part of it.
#[allow(dead_code, unused_imports)]
mod harness;

use bellows::api::{RolloutPhase, SchemaRollout};
use futures::{StreamExt, TryStreamExt};
use harness::cluster::{self, Cluster};
use harness::identity::Identity;
use harness::kubelet::Kubelet;
use harness::operator::Operator;
use harness::wait::until;
use harness::workload;
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The operator's count of its requests to the API server.
const OPERATOR_REQUESTS: &str = "bellows_api_requests_total";
/// The operator's count of confirmation lists, by who answered them.
const FRESH_LISTS: &str = "bellows_fresh_lists_total";
/// Length of each quiet window over which request rates are measured.
const QUIET: Duration = Duration::from_secs(20);
/// How long any one setup step may take.
const SETUP: Duration = Duration::from_secs(600);

fn main() {
    let sizes: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![100, 500]
    } else {
        sizes
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let profiles: Vec<Profile> = match std::env::var("BELLOWS_BENCH_PROFILES").as_deref() {
        Ok("one") => vec![Profile::One],
        Ok("spread") => vec![Profile::Spread],
        _ => vec![Profile::One, Profile::Spread],
    };
    let mut rows: Vec<Row> = vec![];
    for n in sizes {
        for &profile in &profiles {
            rows.push(runtime.block_on(bench(n, profile)));
            // The table so far after each run: a long last size that is
            // stopped early leaves the others' numbers printed.
            print_table(&rows);
        }
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
}

/// Where the N rollouts and their Deployments live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Profile {
    /// All in one namespace.
    One,
    /// Over N/10 namespaces, ten in each.
    Spread,
}

impl Profile {
    /// How many namespaces N rollouts use.
    fn namespaces(self, n: usize) -> usize {
        match self {
            Profile::One => 1,
            Profile::Spread => n.div_ceil(10),
        }
    }
}

/// The namespace of rollout `i` of `namespaces`.
fn namespace(i: usize, namespaces: usize) -> String {
    format!("bench-{}", i % namespaces)
}

/// One line of the results table.
struct Row {
    n: usize,
    namespaces: usize,
    latency_ms: [f64; 3],
    reaction_ms: [f64; 3],
    floor_ms: [f64; 3],
    rollout_seconds: f64,
    peak_rss_mib: f64,
    cpu_seconds: f64,
    reconciles_per_rollout: f64,
    operator_requests_per_rollout: f64,
    baseline_rps: f64,
    idle_rps: f64,
    after_rps: f64,
    rollout_rps: f64,
    apiserver_cpu_seconds: f64,
    /// Operator requests per rollout by verb, while the Deployments rolled.
    requests_by_verb: BTreeMap<String, f64>,
    /// Confirmation lists per rollout, by who answered.
    fresh_lists: BTreeMap<String, f64>,
}

async fn bench(n: usize, profile: Profile) -> Row {
    let namespaces = profile.namespaces(n);
    let dir = tempfile::Builder::new()
        .prefix("bellows-bench-")
        .tempdir()
        .unwrap();
    let cluster = Cluster::start(&cluster::prepare(), dir.path()).await;
    for entry in std::fs::read_dir(harness::repo_path("crds")).unwrap() {
        harness::install_crd(&cluster.client, &entry.unwrap().path()).await;
    }
    let kubelet = Kubelet::start(cluster.client.clone(), dir.path().join("pods")).await;
    let client = cluster.client.clone();
    for k in 0..namespaces {
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": namespace(k, namespaces)}}))
                .unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap();
    }
    let deployments_of =
        |i| Api::<Deployment>::namespaced(client.clone(), &namespace(i, namespaces));
    let rollouts_of =
        |i| Api::<SchemaRollout>::namespaced(client.clone(), &namespace(i, namespaces));
    let deployments: Api<Deployment> = Api::all(client.clone());
    let rollouts: Api<SchemaRollout> = Api::all(client.clone());

    eprintln!("bench N={n} in {namespaces} namespace(s): creating {n} Deployments");
    for_each(n, |i| {
        let api = deployments_of(i);
        async move {
            let d: Deployment = serde_json::from_value(json!({
                "metadata": {"name": app(i)},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app(i)}},
                    "template": {"metadata": {"labels": {"app": app(i)}},
                        "spec": {"containers": [{"name": "app", "image": "shop/app:1.0.0"}]}}}
            }))
            .unwrap();
            api.create(&PostParams::default(), &d).await.unwrap();
        }
    })
    .await;
    wait_all(
        &deployments,
        n,
        "Deployments available",
        |d: &Deployment| d.status.as_ref().and_then(|s| s.available_replicas) == Some(1),
    )
    .await;

    let mut identity = Identity::install(&cluster.client, &cluster.kubeconfig, dir.path()).await;
    // One replica, as the chart runs with `leaderElection.enabled=false`:
    // at N=500 on 2 cores the setup's burst keeps the API server from
    // answering a lease renewal within 10 s, and a leader that steps down
    // and lists everything again only adds to the load.
    if std::env::var_os("BELLOWS_BENCH_LEADER_ELECT").is_none() {
        identity
            .args
            .retain(|a| !a.starts_with("--leader-elect") && !a.starts_with("--lease-"));
    }
    let operator = Arc::new(tokio::sync::Mutex::new(Operator::new(
        &identity,
        dir.path(),
    )));
    operator.lock().await.start().await;
    // The kubelet's part: the chart's operator exits when it cannot renew
    // its Lease (an API server saturated by the setup) and is started again.
    let restarts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let watchdog = {
        let (operator, restarts) = (operator.clone(), restarts.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if operator.lock().await.revive() {
                    restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    eprintln!("bench N={n}: the operator exited on its own; started again");
                }
            }
        })
    };
    eprintln!("bench N={n}: creating {n} SchemaRollouts");
    let job = json!({"template": {"spec": {"restartPolicy": "Never",
        "containers": [{"name": "migrate", "image": "busybox", "command": ["true"]}]}}});
    for_each(n, |i| {
        let api = rollouts_of(i);
        let job = job.clone();
        async move {
            let r: SchemaRollout = serde_json::from_value(json!({
                "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
                "metadata": {"name": format!("r-{i}")},
                "spec": {"workloads": [workload(&app(i), "2.0.0")],
                         "expand": {"job": job}, "contract": {"job": job}}
            }))
            .unwrap();
            api.create(&PostParams::default(), &r).await.unwrap();
        }
    })
    .await;
    wait_all(&rollouts, n, "rollouts AwaitingRollout", |r| {
        phase(r) == Some(RolloutPhase::AwaitingRollout)
    })
    .await;

    // Request rates with nothing to do: without the operator, then with it.
    operator.lock().await.stop(libc::SIGTERM);
    let baseline_rps = request_rate(&client, QUIET).await;
    operator.lock().await.start().await;
    let idle_rps = request_rate(&client, QUIET).await;

    // The old ReplicaSets, to tell which removed pod belonged to which app.
    let old_hash: HashMap<String, String> = Api::<ReplicaSet>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .filter_map(|rs| {
            let hash = rs.labels().get("pod-template-hash")?.clone();
            Some((hash, rs.labels().get("app")?.clone()))
        })
        .collect();

    // When each rollout's contract Job, and each Deployment's complete
    // status at the new version, were first seen.
    let contract_seen = first_seen(
        Api::<Job>::all(client.clone()),
        watcher::Config::default().labels("bellows.dev/phase=contract"),
        |job| job.owner_references().first().map(|o| o.name.clone()),
    );
    let complete_seen = first_seen(deployments.clone(), watcher::Config::default(), |d| {
        complete_at_new_version(d).then(|| d.name_any())
    });
    let deletion_seen = deletions_seen(Api::<Pod>::all(client.clone()));
    let reconciles_before = operator.lock().await.reconciles().await;
    let operator_requests_before = operator.lock().await.total(OPERATOR_REQUESTS).await;
    let by_verb_before = operator.lock().await.series(OPERATOR_REQUESTS).await;
    let fresh_before = operator.lock().await.series(FRESH_LISTS).await;
    let apiserver_cpu_before = cluster.apiserver_cpu_seconds().unwrap_or_default();
    let restarts_before = restarts.load(std::sync::atomic::Ordering::Relaxed);
    let requests_before = apiserver_requests(&client).await;
    let started = Instant::now();
    eprintln!("bench N={n}: rolling {n} Deployments to 2.0.0");
    for_each(n, |i| {
        let api = deployments_of(i);
        async move {
            let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "shop/app:2.0.0"}]}}}});
            api.patch(&app(i), &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .unwrap();
        }
    })
    .await;
    wait_succeeded(&rollouts, n).await;
    let rollout_seconds = started.elapsed().as_secs_f64();
    let apiserver_cpu_seconds =
        cluster.apiserver_cpu_seconds().unwrap_or_default() - apiserver_cpu_before;
    let per_rollout = |after: BTreeMap<String, u64>, before: BTreeMap<String, u64>| {
        after
            .into_iter()
            .map(|(labels, v)| {
                let delta = v.saturating_sub(before.get(&labels).copied().unwrap_or(0));
                (labels, delta as f64 / n as f64)
            })
            .filter(|(_, v)| *v > 0.0)
            .collect::<BTreeMap<_, _>>()
    };
    let requests_by_verb = per_rollout(
        operator.lock().await.series(OPERATOR_REQUESTS).await,
        by_verb_before,
    );
    let fresh_lists = per_rollout(
        operator.lock().await.series(FRESH_LISTS).await,
        fresh_before,
    );
    let rollout_requests = apiserver_requests(&client).await - requests_before;
    let reconciles_during = operator
        .lock()
        .await
        .reconciles()
        .await
        .saturating_sub(reconciles_before);
    let operator_requests = operator
        .lock()
        .await
        .total(OPERATOR_REQUESTS)
        .await
        .saturating_sub(operator_requests_before);
    let restarted = restarts.load(std::sync::atomic::Ordering::Relaxed) - restarts_before;
    if restarted > 0 {
        eprintln!(
            "bench N={n}: the operator restarted {restarted} times during the rollout; its counters are partial"
        );
    }
    let after_rps = request_rate(&client, QUIET).await;

    // Latency per app: last old pod removed -> contract Job seen.
    let mut last_removed: HashMap<String, Timestamp> = HashMap::new();
    // The floor: each removed old pod -> its DELETE seen by a plain watch.
    let deleted = deletion_seen.lock().unwrap().clone();
    let mut floors = vec![];
    for removed in kubelet.journal.removed.lock().unwrap().iter() {
        let app = removed.template_hash.as_ref().and_then(|h| old_hash.get(h));
        if let Some(app) = app {
            let at = last_removed.entry(app.clone()).or_insert(removed.at);
            *at = (*at).max(removed.at);
            if let Some(seen) = deleted.get(&removed.name) {
                floors.push(seen.duration_since(removed.at).as_secs_f64() * 1000.0);
            }
        }
    }
    floors.sort_by(f64::total_cmp);
    let seen = contract_seen.lock().unwrap().clone();
    let complete = complete_seen.lock().unwrap().clone();
    let (mut latencies, mut reactions): (Vec<f64>, Vec<f64>) = (0..n)
        .filter_map(|i| {
            let removed = *last_removed.get(&app(i))?;
            let seen = seen.get(&format!("r-{i}"))?;
            let ready = removed.max(*complete.get(&app(i))?);
            let ms = |from: Timestamp| seen.duration_since(from).as_secs_f64() * 1000.0;
            Some((ms(removed), ms(ready)))
        })
        .unzip();
    assert_eq!(
        latencies.len(),
        n,
        "a removal, complete Deployment or contract Job was not observed"
    );
    latencies.sort_by(f64::total_cmp);
    reactions.sort_by(f64::total_cmp);
    watchdog.abort();
    let mut operator = operator.lock().await;
    let usage = operator.usage().expect("the operator runs");
    operator.stop(libc::SIGTERM);
    if std::env::var_os("BELLOWS_BENCH_KEEP").is_some() {
        eprintln!("bench N={n}: logs kept in {}", dir.keep().display());
    }
    Row {
        n,
        namespaces,
        latency_ms: percentiles(&latencies),
        reaction_ms: percentiles(&reactions),
        floor_ms: percentiles(&floors),
        rollout_seconds,
        peak_rss_mib: usage.peak_rss_mib,
        cpu_seconds: usage.cpu_seconds,
        reconciles_per_rollout: reconciles_during as f64 / n as f64,
        operator_requests_per_rollout: operator_requests as f64 / n as f64,
        baseline_rps,
        idle_rps,
        after_rps,
        rollout_rps: rollout_requests as f64 / rollout_seconds,
        apiserver_cpu_seconds,
        requests_by_verb,
        fresh_lists,
    }
}

fn app(i: usize) -> String {
    format!("app-{i}")
}

fn phase(r: &SchemaRollout) -> Option<RolloutPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

/// Runs `f(0..n)`, 16 at a time.
async fn for_each<F, Fut>(n: usize, f: F)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    futures::stream::iter(0..n)
        .map(f)
        .buffer_unordered(16)
        .collect::<()>()
        .await;
}

/// Setup only (never inside a measured window): lists until `n` objects
/// pass `check`.
async fn wait_all<K>(api: &Api<K>, n: usize, what: &str, check: impl Fn(&K) -> bool)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    until(what, SETUP, || async {
        let items = api.list(&ListParams::default()).await.ok()?.items;
        (items.iter().filter(|o| check(o)).count() == n).then_some(())
    })
    .await;
}

/// Waits, by watch (no polling inside the measured window), until `n`
/// rollouts have Succeeded.
async fn wait_succeeded(api: &Api<SchemaRollout>, n: usize) {
    let mut done = std::collections::HashSet::new();
    let stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    let deadline = tokio::time::sleep(SETUP);
    tokio::pin!(deadline);
    while done.len() < n {
        tokio::select! {
            r = stream.try_next() => {
                if let Ok(Some(r)) = r
                    && phase(&r) == Some(RolloutPhase::Succeeded)
                {
                    done.insert(r.name_any());
                }
            }
            () = &mut deadline => panic!("only {} of {n} rollouts succeeded", done.len()),
        }
    }
}

/// When this process first saw, by key, an object of `api` (within
/// `config`) for which `key` gives one.
fn first_seen<K>(
    api: Api<K>,
    config: watcher::Config,
    key: impl Fn(&K) -> Option<String> + Send + 'static,
) -> Arc<Mutex<BTreeMap<String, Timestamp>>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(api, config).default_backoff().applied_objects();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(object)) = stream.try_next().await {
            let now = Timestamp::now();
            if let Some(k) = key(&object) {
                out.lock().unwrap().entry(k).or_insert(now);
            }
        }
    });
    seen
}

/// When this process saw each pod's DELETE event, by pod name: what any
/// watcher of pods learns, and when.
fn deletions_seen(api: Api<Pod>) -> Arc<Mutex<BTreeMap<String, Timestamp>>> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(stream);
        while let Ok(Some(event)) = stream.try_next().await {
            if let watcher::Event::Delete(pod) = event {
                out.lock().unwrap().insert(pod.name_any(), Timestamp::now());
            }
        }
    });
    seen
}

fn complete_at_new_version(d: &Deployment) -> bool {
    let (Some(spec), Some(status)) = (&d.spec, &d.status) else {
        return false;
    };
    let image = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers[0].image.as_deref());
    let want = spec.replicas.unwrap_or(1);
    image == Some("shop/app:2.0.0")
        && status.observed_generation >= d.metadata.generation
        && [
            status.updated_replicas,
            status.available_replicas,
            status.replicas,
        ]
        .iter()
        .all(|n| *n == Some(want))
}

/// The sum of the API server's `apiserver_request_total`.
async fn apiserver_requests(client: &Client) -> u64 {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.unwrap();
    text.lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Requests per second over `window` (the bench's own two scrapes
/// excluded).
async fn request_rate(client: &Client, window: Duration) -> f64 {
    let before = apiserver_requests(client).await;
    tokio::time::sleep(window).await;
    let after = apiserver_requests(client).await;
    after.saturating_sub(before + 1) as f64 / window.as_secs_f64()
}

/// p50, p95 and p99 of sorted values (nearest rank).
fn percentiles(sorted: &[f64]) -> [f64; 3] {
    [50.0, 95.0, 99.0].map(|p| {
        let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    })
}

fn print_table(rows: &[Row]) {
    println!(
        "\n| N | namespaces | contract-start p50 / p95 / p99 (ms) | of which the operator's (ms) | floor: pod DELETE to a watcher (ms) | operator / floor (p50) | all rolled in (s) | peak RSS (MiB) | CPU (s) | API server CPU while rolling (s) | reconciles / rollout | operator requests / rollout | API req/s: quiet, no operator | operator idle | after all done | during rollout (all clients) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} / {:.0} / {:.0} | {:.0} / {:.0} / {:.0} | {:.1} / {:.1} / {:.1} | {:.0} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {:.0} |",
            r.n,
            r.namespaces,
            r.latency_ms[0],
            r.latency_ms[1],
            r.latency_ms[2],
            r.reaction_ms[0],
            r.reaction_ms[1],
            r.reaction_ms[2],
            r.floor_ms[0],
            r.floor_ms[1],
            r.floor_ms[2],
            r.reaction_ms[0] / r.floor_ms[0].max(0.1),
            r.rollout_seconds,
            r.peak_rss_mib,
            r.cpu_seconds,
            r.apiserver_cpu_seconds,
            r.reconciles_per_rollout,
            r.operator_requests_per_rollout,
            r.baseline_rps,
            r.idle_rps,
            r.after_rps,
            r.rollout_rps,
        );
    }
    println!(
        "\n| N | namespaces | operator requests / rollout, by verb | confirmation lists / rollout, by who answered |"
    );
    println!("|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} |",
            r.n,
            r.namespaces,
            shown(&r.requests_by_verb),
            shown(&r.fresh_lists)
        );
    }
}

/// Label sets and values as `verb="get" 9.1, ...`.
fn shown(values: &BTreeMap<String, f64>) -> String {
    let parts: Vec<String> = values
        .iter()
        .map(|(labels, v)| format!("{labels} {v:.1}"))
        .collect();
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}
