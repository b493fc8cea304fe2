//! Reads what the planner needs: the workloads (with their ReplicaSets and
//! the pods they select, not just their counters), the Job of each phase
//! under its deterministic name, the referenced Secrets and ConfigMaps, and
//! the database. Workloads and Jobs come from the watch caches or, to
//! confirm a decision to start a phase, from the API server.

use super::cache::Caches;
use super::fresh::Freshness;
use super::prometheus::Prometheus;
use super::{Context, Error};
use super::{cluster_ledger, kinds};
use crate::api::{PrometheusSpec, SchemaRollout, SecretKeyRef, Step, WorkloadKind};
use crate::db::{DbError, LedgerState, Target};
use crate::planner::budget;
use crate::planner::objective::{self, Measurement, Problem};
use crate::planner::step::{JobObservation, Reference, observe_job};
use crate::planner::workload::deployment;
use crate::planner::{self, CheckProblem, CheckResult, Observed, Refused, Rejected};
use jiff::Timestamp;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::{Api, ListParams};
use kube::core::Selector;
use kube::{Client, ResourceExt};
use std::collections::BTreeMap;

/// Where observe reads Deployments, ReplicaSets, pods and Jobs from.
/// Referenced Secrets and ConfigMaps and the database are always read live.
#[derive(Clone, Copy)]
pub enum Source<'a> {
    /// The API server.
    Live,
    /// The controller's watch caches.
    Cached(&'a Caches),
}

impl<'a> Source<'a> {
    /// How fresh the lists of the kinds no cache holds are: as the
    /// API server's watch cache has them, or confirmed as of now.
    fn freshness(self) -> Freshness {
        match self {
            Source::Live => Freshness::Now,
            Source::Cached(_) => Freshness::Cached,
        }
    }

    /// Object `name` in `read`'s namespace, from the API server or as
    /// `cached` reads it from the caches.
    async fn get<K: kinds::Namespaced>(
        self,
        read: &kinds::Read<'_>,
        cached: fn(&Caches, &str, &str) -> Option<K>,
        name: &str,
    ) -> Result<Option<K>, Error> {
        match self {
            Source::Live => read.get(name).await,
            Source::Cached(c) => Ok(cached(c, read.ns, name)),
        }
    }

    /// The ReplicaSets of `deploy`: live, those its selector matches;
    /// cached, those it controls (all that assessment reads of the former).
    async fn replica_sets(
        self,
        read: &kinds::Read<'_>,
        deploy: &Deployment,
        selector: &Selector,
    ) -> Result<Vec<ReplicaSet>, Error> {
        match self {
            Source::Live => {
                read.list(&ListParams::default().labels_from(selector))
                    .await
            }
            Source::Cached(c) => Ok(c.replica_sets_of(&deploy.uid().unwrap_or_default())),
        }
    }

    /// The pods `deploy`'s selector matches, metadata only (all that
    /// rollout assessment reads).
    async fn pods(
        self,
        read: &kinds::Read<'_>,
        deploy: &Deployment,
        selector: &Selector,
    ) -> Result<Vec<Pod>, Error> {
        let metas = match self {
            Source::Live => {
                read.list_metadata(&ListParams::default().labels_from(selector))
                    .await?
            }
            Source::Cached(c) => {
                let pair = deploy
                    .spec
                    .as_ref()
                    .and_then(|s| s.selector.match_labels.as_ref())
                    .and_then(|l| l.iter().next());
                c.pods_selected(read.ns, selector, pair)
            }
        };
        Ok(kinds::metadata_only(metas))
    }
}

/// Observes everything `rollout` depends on. Contract checks are evaluated
/// only when due (`planner::checks_due`), else the recent results are
/// reused.
pub async fn observe(
    ctx: &Context,
    source: Source<'_>,
    rollout: &SchemaRollout,
    database: Option<&Result<Target, DbError>>,
    now: Timestamp,
) -> Result<Observed, Error> {
    let client = &ctx.client;
    let ns = rollout.namespace().ok_or(Error::MissingNamespace)?;
    // Live, the workloads are read concurrently (one round trip for all,
    // then one for each one's ReplicaSets and pods together), along with
    // everything else below: what a confirmation costs before a phase
    // starts.
    let read = kinds::Read {
        ctx,
        ns: &ns,
        freshness: source.freshness(),
    };
    let rollout_name = rollout.name_any();
    let workloads = futures::future::try_join_all(rollout.spec.workloads.iter().map(|w| async {
        match w.kind {
            WorkloadKind::Deployment => {}
            WorkloadKind::StatefulSet => return read.stateful_set(&rollout_name, w).await,
            WorkloadKind::DaemonSet => return read.daemon_set(w).await,
            WorkloadKind::CronJob => return read.cron_job(&rollout_name, w).await,
            WorkloadKind::Pods => return read.selected_pods(w).await,
            WorkloadKind::Rollout => return read.argo_rollout(&rollout_name, w).await,
        }
        let deploy = source.get(&read, Caches::deployment, &w.name).await?;
        let (sets, selected) = match deploy.as_ref().zip(deploy.as_ref().and_then(selector_of)) {
            Some((d, selector)) => futures::try_join!(
                source.replica_sets(&read, d, &selector),
                source.pods(&read, d, &selector),
            )?,
            None => (vec![], vec![]),
        };
        Ok::<_, Error>(deployment::assess(
            w,
            &rollout.name_any(),
            deploy.as_ref(),
            &sets,
            &selected,
        ))
    }));

    // What to read is the planner's to say.
    let planner::reads::Reads {
        jobs: job_names,
        references,
        cluster_ledger: read_cluster_ledger,
    } = planner::reads::reads(rollout, matches!(source, Source::Live));
    let jobs = futures::future::try_join_all(
        job_names
            .iter()
            .map(|(s, name)| observe_phase_job(ctx, source, rollout, &ns, *s, name)),
    );
    let missing = futures::future::try_join_all(
        references
            .into_iter()
            .map(|r| async { Ok::<_, Error>((!exists(client, &ns, &r).await?).then_some(r)) }),
    );
    // Without a database, the cluster ledger says which Job phases already
    // ran for this spec.
    let cluster = async {
        let mut ledger = BTreeMap::new();
        if read_cluster_ledger {
            let jobs: Vec<&str> = job_names.values().map(String::as_str).collect();
            let entries = cluster_ledger::read(&ctx.ledger_home(), &ns, &jobs)
                .await
                .map_err(Error::Kube)?;
            for (s, name) in &job_names {
                if let Some(state) = entries.get(name) {
                    ledger.insert(*s, state.clone());
                }
            }
        }
        Ok::<_, Error>(ledger)
    };
    let database = async {
        match database {
            Some(Ok(target)) => {
                let confirming = matches!(source, Source::Live);
                Some(observe_database(ctx, target, confirming, rollout, now).await)
            }
            Some(Err(e)) => Some(Err(e.clone())),
            None => None,
        }
    };
    let measurements = measure(ctx, rollout, now, matches!(source, Source::Live));
    // One round: every read at once (live, the workloads' ReplicaSets and
    // pods follow their Deployment).
    let (workloads, jobs, missing, ledger, database, (measurements, budget)) =
        futures::join!(workloads, jobs, missing, cluster, database, measurements);
    let mut foreign = None;
    let mut observed_jobs = BTreeMap::new();
    for (s, found) in jobs?.into_iter().flatten() {
        match found {
            Ok(job) => {
                observed_jobs.insert(s, job);
            }
            Err(message) => {
                foreign.get_or_insert(Rejected {
                    step: s,
                    what: Refused::NameTaken,
                    message,
                });
            }
        }
    }
    let mut observed = Observed {
        workloads: workloads?,
        jobs: observed_jobs,
        missing: missing?.into_iter().flatten().collect(),
        ledger: ledger?,
        checks: None,
        database_error: None,
        lock_holder: None,
        rejected: foreign,
        measurements,
        budget,
        now,
    };
    match database {
        Some(Ok(view)) => {
            observed.ledger.extend(view.ledger);
            observed.lock_holder = view.lock_holder;
            observed.checks = view.checks;
        }
        Some(Err(e)) => observed.database_error = Some((e.reason(), e.to_string())),
        None => {}
    }
    Ok(observed)
}

/// The objectives and the downtime budget due now (every objective in the
/// live round before a phase starts), measured concurrently; nothing
/// unless they concern the planner.
async fn measure(
    ctx: &Context,
    rollout: &SchemaRollout,
    now: Timestamp,
    confirming: bool,
) -> (Vec<Measurement>, Option<budget::Measurement>) {
    let Some(spec) = rollout.spec.prometheus.as_ref() else {
        return (vec![], None);
    };
    let due = if planner::reads::objectives_wanted(rollout, confirming) {
        objective::targets(rollout)
            .map(|targets| objective::due(rollout, targets, now, confirming))
            .unwrap_or_default()
    } else {
        vec![]
    };
    let budget = budget::due(rollout, now, confirming);
    if due.is_empty() && budget.is_none() {
        return (vec![], None);
    }
    let prometheus = prometheus(ctx, rollout, spec).await;
    let ask = |query: String| {
        let prometheus = &prometheus;
        async move {
            match prometheus {
                Ok(p) => p.measure(&query).await,
                Err(why) => Err(why.clone()),
            }
        }
    };
    let objectives = futures::future::join_all(due.into_iter().map(|t| async {
        let result = ask(t.query).await;
        Measurement {
            name: t.name,
            workload: t.workload,
            at: Timestamp::now(),
            result,
        }
    }));
    let budget = async {
        let queries = budget?;
        let rollout = async {
            let (query, window) = queries.rollout?;
            Some((ask(query).await, window))
        };
        let (period, rollout) = futures::join!(ask(queries.period), rollout);
        Some(budget::Measurement {
            at: Timestamp::now(),
            period,
            rollout,
        })
    };
    futures::join!(objectives, budget)
}

/// The Prometheus of `spec`, with the bearer token and the CA of its
/// Secrets; or why bellows cannot talk to it as the spec says (a Secret it
/// cannot read, a CA it cannot trust): unreachable, a spec to fix.
async fn prometheus(
    ctx: &Context,
    rollout: &SchemaRollout,
    spec: &PrometheusSpec,
) -> Result<Prometheus, Problem> {
    let ns = rollout.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let (token, ca) = futures::join!(
        credential(
            &secrets,
            spec.bearer_token_secret_ref.as_ref(),
            "bearer token"
        ),
        credential(&secrets, spec.ca_secret_ref.as_ref(), "CA")
    );
    let (token, ca) = (token?.map(|t| t.trim().to_owned()), ca?);
    ctx.prometheus
        .prometheus(spec, token, ca.as_deref())
        .map_err(|why| {
            let r = spec.ca_secret_ref.as_ref();
            let (name, key) = r
                .map(|r| (r.name.as_str(), r.key.as_str()))
                .unwrap_or_default();
            Problem::Unreachable(format!("Prometheus CA: Secret {name} key {key}: {why}"))
        })
}

/// The value of Secret key `r` among `secrets`, if the spec names one; or
/// why Prometheus's `what` cannot be read.
async fn credential(
    secrets: &Api<Secret>,
    r: Option<&SecretKeyRef>,
    what: &str,
) -> Result<Option<String>, Problem> {
    let Some(r) = r else { return Ok(None) };
    crate::secrets::value(secrets, r)
        .await
        .map(Some)
        .map_err(|why| Problem::Unreachable(format!("Prometheus {what}: {why}")))
}

/// The Job of phase `s` under its deterministic `name`, as the planner sees
/// it, or `None` when there is none. Only a Job bellows sealed for this
/// rollout (`seal`) counts: another one under the name is `Err` with what
/// to do, or, where status records the phase's Job under that name (it
/// was replaced, or made by a release before seals), a failed phase.
async fn observe_phase_job(
    ctx: &Context,
    source: Source<'_>,
    rollout: &SchemaRollout,
    ns: &str,
    s: Step,
    name: &str,
) -> Result<Option<(Step, Result<JobObservation, String>)>, Error> {
    let read = kinds::Read {
        ctx,
        ns,
        freshness: source.freshness(),
    };
    let mut job = source.get(&read, Caches::job, name).await?;
    // A Job this rollout recorded but the cache does not hold yet (its
    // watch lags) must not look deleted: ask the API server.
    let recorded = rollout
        .status
        .as_ref()
        .and_then(|st| st.step(s))
        .is_some_and(|st| st.job_name.as_deref() == Some(name));
    if job.is_none() && recorded && matches!(source, Source::Cached(_)) {
        job = Source::Live.get(&read, Caches::job, name).await?;
    }
    let Some(job) = job else {
        return Ok(None);
    };
    let uid = rollout.uid().unwrap_or_default();
    let observation = if ctx.seal().await?.verifies(&job, &uid) {
        Ok(observe_job(&job))
    } else if recorded {
        Ok(JobObservation::Failed(format!(
            "Job {name} carries no seal bellows made for this rollout: it was replaced by someone else, or created by a bellows release before Job seals; bellows does not take it for the phase"
        )))
    } else {
        Err(foreign(name))
    };
    Ok(Some((s, observation)))
}

/// What to say of the Job `name` that bellows did not create.
pub(super) fn foreign(name: &str) -> String {
    format!(
        "Job {name} exists without the seal bellows puts on the Jobs it creates; delete it, and bellows creates its own"
    )
}

/// What the rollout's database says: the ledger of every phase, the lock
/// holder and the contract checks.
struct DatabaseView {
    ledger: BTreeMap<Step, LedgerState>,
    lock_holder: Option<String>,
    checks: Option<Vec<CheckResult>>,
}

/// The ledger of every phase, the lock holder, and (once expand succeeded and
/// until contract started) the contract checks.
async fn observe_database(
    ctx: &Context,
    target: &Target,
    confirming: bool,
    rollout: &SchemaRollout,
    now: Timestamp,
) -> Result<DatabaseView, DbError> {
    let mut view = DatabaseView {
        ledger: BTreeMap::new(),
        lock_holder: None,
        checks: None,
    };
    for s in [Step::Expand, Step::Transition, Step::Contract] {
        if let Some(key) = planner::phase_run(rollout, s).map(|run| run.key)
            && let Some(state) = target.ledger(&ctx.pools, &key).await?
        {
            view.ledger.insert(s, state);
        }
    }
    view.lock_holder = target
        .lock_holder(
            &ctx.pools,
            &rollout.namespace().unwrap_or_default(),
            &rollout.name_any(),
        )
        .await?;
    if planner::reads::checks_wanted(rollout, &view.ledger) {
        let last = ctx.recent_checks(rollout);
        if !planner::reads::checks_due(last.as_ref().map(|l| l.0), now, confirming) {
            view.checks = last.map(|l| l.1);
            return Ok(view);
        }
        let checks = rollout.spec.checks();
        let mut results = Vec::with_capacity(checks.len());
        for c in checks {
            let result = target.check(&ctx.pools, &c.sql).await.map_err(|e| match e {
                DbError::CheckInvalid(why) => CheckProblem::Invalid(why),
                other => CheckProblem::Failed(other.to_string()),
            });
            results.push(CheckResult {
                name: c.name.clone(),
                result,
            });
        }
        ctx.keep_checks(rollout, now, results.clone());
        view.checks = Some(results);
    }
    Ok(view)
}

/// Whether the referenced object exists. Only metadata is read: a Secret's
/// content never reaches the operator.
async fn exists(client: &Client, ns: &str, r: &Reference) -> Result<bool, Error> {
    let found = match r {
        Reference::Secret(name) => Api::<Secret>::namespaced(client.clone(), ns)
            .get_metadata_opt(name)
            .await
            .map(|o| o.is_some()),
        Reference::ConfigMap(name) => Api::<ConfigMap>::namespaced(client.clone(), ns)
            .get_metadata_opt(name)
            .await
            .map(|o| o.is_some()),
    };
    found.map_err(Error::Kube)
}

/// The Deployment's selector, or `None` when it selects nothing (or cannot
/// be parsed).
fn selector_of(deploy: &Deployment) -> Option<Selector> {
    kinds::selecting(&deploy.spec.as_ref()?.selector)
}
