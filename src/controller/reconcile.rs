//! One reconcile: observe, plan, apply the plan's side effects, write
//! status, publish events.

use super::observe::{self, Source};
use super::records::Ledger;
use super::{Context, Error, finalizer, gate, job, kinds};
use crate::api::keys::{FIELD_MANAGER, PAUSED_BY_ANNOTATION};
use crate::api::{GateHold, Reason, RolloutPhase, SchemaRollout, Step};
use crate::db::{self, DbError, Target};
use crate::planner::step;
use crate::planner::writes::StatusWrite;
use crate::planner::{self, Action as PlanAction, EventIntent, EventKind, Plan};
use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Instant;

/// Reconciles one SchemaRollout.
pub async fn reconcile(rollout: Arc<SchemaRollout>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let result = reconcile_once(&rollout, &ctx, started).await;
    ctx.metrics.reconciled(
        started.elapsed(),
        result.as_ref().err().map(Error::metric_label),
    );
    if result.is_ok() {
        ctx.reset_backoff(&rollout);
    }
    result
}

async fn reconcile_once(
    rollout: &SchemaRollout,
    ctx: &Context,
    started: Instant,
) -> Result<Action, Error> {
    let now = Timestamp::now();
    let ns = rollout.namespace().ok_or(Error::MissingNamespace)?;
    // The database's Secrets are read once per reconcile, for observing and
    // for every action alike.
    // A settled rollout sends its database nothing.
    let database = match &rollout.spec.database {
        Some(spec) if !planner::settled(rollout) => Some(db::target(&ctx.client, &ns, spec).await),
        _ => None,
    };
    let source = match &ctx.caches {
        Some(caches) => {
            caches.listed().await;
            if caches.ready() {
                Source::Cached(caches)
            } else {
                Source::Live
            }
        }
        None => Source::Live,
    };
    let observe = |source| observe::observe(ctx, source, rollout, database.as_ref(), now);
    let api: Api<SchemaRollout> = Api::namespaced(ctx.client.clone(), &ns);
    if rollout.metadata.deletion_timestamp.is_some() {
        if !finalizer::present(rollout) {
            return Ok(Action::await_change());
        }
        // Letting go is as final as starting a phase: a Job the cache has
        // not seen yet must not be taken for finished, so read live.
        let observed = observe(Source::Live).await?;
        return clean_up(ctx, rollout, database.as_ref(), &api, &observed).await;
    }
    finalizer::add(&api, rollout).await.map_err(Error::Kube)?;
    let mut observed = observe(source).await?;
    let mut plan = planner::plan(rollout, &observed);
    // Starting a phase cannot be undone: confirm it against the API server,
    // so a cache that lags behind a rollback or a new pod never starts one.
    if matches!(source, Source::Cached(_)) && plan.actions.iter().any(starts_phase) {
        observed = observe(Source::Live).await?;
        plan = planner::plan(rollout, &observed);
    }
    // Nor on a rollout edited, paused, re-approved or deleted since this
    // reconcile began: the SchemaRollout itself is read again, and a
    // change waits for the reconcile it triggers.
    if plan.actions.iter().any(starts_phase) && changed_since(&api, rollout).await? {
        tracing::info!(rollout = %rollout.name_any(), namespace = %ns, "changed since the reconcile began; starting nothing");
        return Ok(Action::requeue(RECHECK));
    }
    if plan.starts_contract_clock {
        ctx.rolled_out(rollout, started);
    }
    for action in &plan.actions {
        match apply(ctx, rollout, database.as_ref(), action).await {
            Ok(()) => {}
            // The planner decides what a refused Job or ledger record means
            // for the rollout (Stalled, tried again later); nothing after it
            // runs.
            Err(e) => match e.rejected() {
                Some(rejected) => {
                    observed.rejected = Some(rejected);
                    plan = planner::plan(rollout, &observed);
                    break;
                }
                None => return Err(e),
            },
        }
    }
    let flush = match write_status(ctx, rollout, &plan).await? {
        // Planned from an older copy: what it would say or count is the
        // newer status's already, or the next reconcile's.
        Written::Stale => return Ok(Action::requeue(RECHECK)),
        Written::Later(after) => Some(after),
        Written::Now | Written::Unchanged => None,
    };
    record(ctx, rollout, &plan, now).await;
    Ok(match plan.requeue_after.into_iter().chain(flush).min() {
        Some(after) => Action::requeue(after),
        None => Action::await_change(),
    })
}

/// How soon a reconcile that found its rollout changed looks again (the
/// change's own watch event usually comes first).
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Whether the SchemaRollout on the API server is no longer the one being
/// reconciled: gone, re-created, or any write since the copy this
/// reconcile planned from (its spec, annotations (approval), deletion, or
/// a status an earlier reconcile wrote that the cache has not delivered
/// yet: objective passes counted from an older status could forget a
/// violation measured since).
async fn changed_since(api: &Api<SchemaRollout>, rollout: &SchemaRollout) -> Result<bool, Error> {
    let Some(live) = api
        .get_opt(&rollout.name_any())
        .await
        .map_err(Error::Kube)?
    else {
        return Ok(true);
    };
    let (now, then) = (&live.metadata, &rollout.metadata);
    Ok(now.uid != then.uid
        || now.generation != then.generation
        || now.annotations != then.annotations
        || now.resource_version != then.resource_version
        || now.deletion_timestamp.is_some())
}

/// How often a deleted rollout looks again at a migration Job it waits for
/// (the Job's own events also wake it).
const CLEANUP_POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// The finalizer's work on a deleted rollout (see `finalizer`): record
/// finished Jobs in the ledger, wait for a running one, resume the
/// Deployments the gate paused, release the rollout.
async fn clean_up(
    ctx: &Context,
    rollout: &SchemaRollout,
    database: Option<&Result<Target, DbError>>,
    api: &Api<SchemaRollout>,
    observed: &planner::Observed,
) -> Result<Action, Error> {
    let name = rollout.name_any();
    let ns = rollout.namespace().unwrap_or_default();
    let plan = planner::plan(rollout, observed);
    for action in &plan.actions {
        if matches!(action, PlanAction::Record { .. }) {
            apply(ctx, rollout, database, action).await?;
        }
    }
    if let Some((step, _)) = observed
        .jobs
        .iter()
        .find(|(_, job)| **job == step::JobObservation::Active)
    {
        tracing::info!(rollout = %name, namespace = %ns, step = step.as_str(), "deleted; waiting for the running migration Job to finish");
        return Ok(Action::requeue(CLEANUP_POLL));
    }
    // What the gate may hold: the listed workloads and those it recorded
    // holding (a workload removed from the spec included).
    let mut held: Vec<GateHold> = rollout
        .spec
        .workloads
        .iter()
        .filter(|w| w.kind.holdable())
        .map(|w| GateHold {
            kind: w.kind,
            name: w.name.clone(),
        })
        .collect();
    for g in rollout.status.iter().flat_map(|s| &s.gated) {
        if let Some(g) = GateHold::parse(g)
            && !held.contains(&g)
        {
            held.push(g);
        }
    }
    // Releasing a gate before its expand succeeded would let the new
    // version roll out on the old schema (I5): such workloads stay held
    // and marked, for a re-created rollout of this name to adopt or a
    // human to release.
    let expanded = step::phase_spec(&rollout.spec, Step::Expand).is_some_and(|phase| {
        step::recorded(&plan.status, Step::Expand, &step::digest(phase))
            == Some(crate::api::StepState::Succeeded)
    });
    let (mut resumed, mut kept) = (vec![], vec![]);
    for w in held {
        let Some((api, lever)) = gate_api(ctx, &ns, w.kind).await? else {
            continue;
        };
        if !expanded {
            if gate::holds(&api, lever, &w.name, &name)
                .await
                .map_err(Error::Kube)?
            {
                kept.push(w.key());
            }
        } else if gate::resume(&api, lever, &w.name, &name)
            .await
            .map_err(Error::Kube)?
            == gate::Gated::Changed
        {
            resumed.push(w.key());
        }
    }
    finalizer::remove(api, rollout).await.map_err(Error::Kube)?;
    ctx.forget(rollout);
    tracing::info!(rollout = %name, namespace = %ns, resumed = ?resumed, kept_paused = ?kept, "deleted; cleaned up");
    let events = [
        (!resumed.is_empty()).then(|| EventIntent {
            kind: EventKind::Normal,
            reason: Reason::WorkloadsResumed,
            note: planner::event_note(&format!(
                "the rollout was deleted; released the workloads its gate had held: {}",
                resumed.join(", ")
            )),
        }),
        (!kept.is_empty()).then(|| EventIntent {
            kind: EventKind::Warning,
            reason: Reason::WorkloadsLeftPaused,
            note: planner::event_note(&format!(
                "the rollout was deleted before its expand succeeded; left held (marked {PAUSED_BY_ANNOTATION}: {name}) so the new version cannot roll out without its expand: {}. Re-create the rollout to continue, or release them by hand (kubectl rollout resume deployment/NAME, unsuspend a CronJob, lower a StatefulSet's partition) once the schema is ready",
                kept.join(", ")
            )),
        }),
    ];
    for event in events.iter().flatten() {
        publish(&ctx.recorder, &reference(rollout), &name, event, "Delete").await;
    }
    Ok(Action::await_change())
}

/// Whether `action` starts a phase's migration.
fn starts_phase(action: &PlanAction) -> bool {
    matches!(action, PlanAction::CreateJob(_) | PlanAction::RunSql(_))
}

/// Carries out one side effect. Creating a Job that already exists counts as
/// success if bellows sealed it: the name is deterministic, so it is the
/// same Job.
async fn apply(
    ctx: &Context,
    rollout: &SchemaRollout,
    database: Option<&Result<Target, DbError>>,
    action: &PlanAction,
) -> Result<(), Error> {
    let ns = rollout.namespace().ok_or(Error::MissingNamespace)?;
    let name = rollout.name_any();
    let ledger = || -> Result<Ledger<'_>, Error> {
        Ok(match database {
            Some(database) => Ledger::Database(usable(database)?, &ctx.pools),
            None => Ledger::Cluster(Box::new(ctx.ledger_home())),
        })
    };
    match action {
        PlanAction::CreateJob(run) => {
            let seal = ctx.seal().await?;
            let (Some(job_name), Some(manifest)) = (&run.job, job::build(rollout, run, seal))
            else {
                return Ok(());
            };
            let step = run.key.step;
            // One phase at a time per database: claim it before the Job
            // exists.
            let ledger = ledger()?;
            ledger.claim(run).await?;
            let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
            let params = PostParams {
                field_manager: Some(FIELD_MANAGER.into()),
                ..Default::default()
            };
            match jobs.create(&params, &manifest).await {
                Ok(_) => {
                    tracing::info!(rollout = %name, namespace = %ns, job = %job_name, step = step.as_str(), "created Job")
                }
                // The same Job if bellows sealed it (a retry after a crash
                // or a lost answer); never a Job someone else created.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    let existing = jobs.get_opt(job_name).await.map_err(Error::Kube)?;
                    let uid = rollout.uid().unwrap_or_default();
                    if !existing.is_some_and(|j| seal.verifies(&j, &uid)) {
                        tracing::warn!(rollout = %name, namespace = %ns, job = %job_name, "a Job bellows did not create holds the name");
                        ledger.release(run).await?;
                        return Err(Error::JobNameTaken {
                            step,
                            message: observe::foreign(job_name),
                        });
                    }
                    tracing::info!(rollout = %name, namespace = %ns, job = %job_name, "Job already exists")
                }
                // Refused for what it is or who asks (RBAC, an invalid spec,
                // a quota, Pod Security admission): no retry helps until a
                // human acts, and the claim must not hold the database.
                Err(kube::Error::Api(e)) if matches!(e.code, 400 | 403 | 422) => {
                    tracing::warn!(rollout = %name, namespace = %ns, job = %job_name, code = e.code, message = %e.message, "Job refused");
                    ledger.release(run).await?;
                    return Err(Error::JobRejected {
                        step,
                        message: e.message,
                    });
                }
                Err(e) => return Err(Error::Kube(e)),
            }
            if step == Step::Contract {
                ctx.contract_started(rollout);
            }
            // Recorded once the Job exists: from here on a re-created rollout
            // finds the phase in the ledger even if the Job is gone (and a
            // crash before this line leaves the Job, which observe finds).
            ledger.started(run).await?;
        }
        PlanAction::RunSql(run) => {
            let target = usable(database.ok_or(Error::NoDatabase)?)?;
            let step = run.key.step;
            tracing::info!(rollout = %name, namespace = %ns, step = step.as_str(), statements = run.statements.len(), "running inline SQL");
            if step == Step::Contract {
                ctx.contract_started(rollout);
            }
            target
                .run_inline(&ctx.pools, &run.key, &run.statements)
                .await?;
        }
        PlanAction::Record { run, failure } => ledger()?.finished(run, failure.as_deref()).await?,
        PlanAction::PauseWorkload(hold) | PlanAction::ResumeWorkload(hold) => {
            let Some((api, lever)) = gate_api(ctx, &ns, hold.kind).await? else {
                return Ok(());
            };
            let pause = matches!(action, PlanAction::PauseWorkload(_));
            let gated = if pause {
                gate::pause(&api, lever, &hold.name, &name).await
            } else {
                gate::resume(&api, lever, &hold.name, &name).await
            }
            .map_err(Error::Kube)?;
            tracing::info!(rollout = %name, namespace = %ns, workload = %hold.key(), paused = pause, outcome = ?gated, "gate");
        }
    }
    Ok(())
}

/// The API and lever the gate holds a workload of `kind` with; `None` for
/// a kind it cannot hold or the cluster does not serve.
async fn gate_api(
    ctx: &Context,
    ns: &str,
    kind: crate::api::WorkloadKind,
) -> Result<Option<(Api<DynamicObject>, gate::Lever)>, Error> {
    let Some(lever) = gate::Lever::of(kind) else {
        return Ok(None);
    };
    let resource = kinds::resource(ctx, kind).await?;
    Ok(resource.map(|r| (Api::namespaced_with(ctx.client.clone(), ns, &r), lever)))
}

/// The resolved database, or why it cannot be used.
fn usable(database: &Result<Target, DbError>) -> Result<&Target, Error> {
    database.as_ref().map_err(|e| Error::Database(e.clone()))
}

/// What became of a plan's status.
#[derive(Debug, PartialEq, Eq)]
enum Written {
    Now,
    /// Nothing new to write.
    Unchanged,
    /// Written later (coalesced), after this long.
    Later(std::time::Duration),
    /// Not written: the object changed since the copy the plan was made
    /// from.
    Stale,
}

/// Writes the planned status with server-side apply (field manager
/// `bellows`) when `planner::writes` says so; returns when to look
/// again for a counter-only change it held back.
async fn write_status(
    ctx: &Context,
    rollout: &SchemaRollout,
    plan: &Plan,
) -> Result<Written, Error> {
    match ctx.status_write(rollout, &plan.status) {
        StatusWrite::Skip => return Ok(Written::Unchanged),
        StatusWrite::Later(after) => return Ok(Written::Later(after)),
        StatusWrite::Now => {}
    }
    let ns = rollout.namespace().ok_or(Error::MissingNamespace)?;
    let api: Api<SchemaRollout> = Api::namespaced(ctx.client.clone(), &ns);
    // Conditional on the copy the plan was made from: a reconcile that read
    // an older copy than the object (a cache that has not delivered the
    // last status yet) never writes status over a newer one.
    let patch = json!({
        "apiVersion": SchemaRollout::api_version(&()),
        "kind": SchemaRollout::kind(&()),
        "metadata": {"resourceVersion": rollout.resource_version()},
        "status": plan.status,
    });
    let written = api
        .patch_status(
            &rollout.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await;
    match written {
        Ok(_) => {}
        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(Written::Stale),
        Err(e) => return Err(Error::Kube(e)),
    }
    ctx.wrote(rollout, plan.status.clone());
    Ok(Written::Now)
}

/// Publishes the plan's events and records phase metrics. A failed event is
/// logged, never retried: events are best effort.
async fn record(ctx: &Context, rollout: &SchemaRollout, plan: &Plan, now: Timestamp) {
    let prev = rollout.status.as_ref();
    let prev_phase = prev.and_then(|s| s.phase);
    let phase = plan.phase();
    if prev_phase != Some(phase) {
        let spent = prev
            .and_then(|s| s.phase_since.as_ref())
            .map(|t| planner::elapsed(now, t.0));
        ctx.metrics.transition(prev_phase.zip(spent), phase);
        tracing::info!(
            rollout = %rollout.name_any(),
            namespace = rollout.namespace().unwrap_or_default(),
            from = prev_phase.map_or("-", RolloutPhase::as_str),
            to = phase.as_str(),
            message = plan.status.message.as_deref().unwrap_or_default(),
            "phase changed"
        );
    }
    if let Some(reason) = plan.newly_held {
        ctx.metrics.contract_held(reason.as_str());
    }
    // Off the critical path: the next reconcile need not wait for events,
    // which are best effort (published in order, by one task).
    if !plan.events.is_empty() {
        let (recorder, target) = (ctx.recorder.clone(), reference(rollout));
        let (events, name) = (plan.events.clone(), rollout.name_any());
        tokio::spawn(async move {
            for e in &events {
                publish(&recorder, &target, &name, e, phase.as_str()).await;
            }
        });
    }
}

/// Publishes `e` about the rollout `target` (named `name`) with `action`;
/// a failure is logged, never retried: events are best effort.
async fn publish(
    recorder: &Recorder,
    target: &ObjectReference,
    name: &str,
    e: &EventIntent,
    action: &str,
) {
    let event = Event {
        type_: match e.kind {
            EventKind::Normal => EventType::Normal,
            EventKind::Warning => EventType::Warning,
        },
        reason: e.reason.as_str().into(),
        note: Some(e.note.clone()),
        action: action.into(),
        secondary: None,
    };
    if let Err(err) = recorder.publish(&event, target).await {
        tracing::warn!(rollout = %name, reason = %e.reason, error = %err, "could not publish event");
    }
}

/// The object reference events are published against.
fn reference(rollout: &SchemaRollout) -> k8s_openapi::api::core::v1::ObjectReference {
    rollout.object_ref(&())
}
