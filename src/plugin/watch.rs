//! `status --watch`: re-renders a rollout whenever it or its events change,
//! from two watches (the rollout by `metadata.name`, the namespace's
//! events), until it settles as Succeeded or Failed.

use super::{Error, render};
use crate::api::{RolloutPhase, SchemaRollout};
use futures::{StreamExt, stream};
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use kube::runtime::reflector::store::Writer;
use kube::runtime::{WatchStreamExt, watcher};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

/// One item of either watch (boxed: watch items are large).
enum Change {
    Rollout(Box<watcher::Result<watcher::Event<SchemaRollout>>>),
    Event(Box<watcher::Result<watcher::Event<Event>>>),
}

/// Prints the status of `name` on every change until it settles (exit 0
/// for Succeeded, 1 for Failed) or Ctrl-C (130).
pub(super) async fn follow(
    rollouts: Api<SchemaRollout>,
    events: Api<Event>,
    ns: &str,
    name: &str,
) -> Result<ExitCode, Error> {
    let by_name = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let rollout_changes = watcher(rollouts, by_name)
        .default_backoff()
        .map(|change| Change::Rollout(Box::new(change)))
        .boxed();
    let event_changes = watcher(events, watcher::Config::default())
        .default_backoff()
        .map(|change| Change::Event(Box::new(change)))
        .boxed();
    let mut changes = stream::select(rollout_changes, event_changes);

    let mut rollout_store = Writer::<SchemaRollout>::new(());
    let mut event_store = Writer::<Event>::new(());
    let (rollout_view, event_view) = (rollout_store.as_reader(), event_store.as_reader());
    let (mut rollouts_synced, mut events_synced) = (false, false);
    let mut last_seen: Option<String> = None;
    let tty = std::io::stdout().is_terminal();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let change = tokio::select! {
            change = changes.next() => change,
            _ = &mut interrupted => return Ok(ExitCode::from(130)),
        };
        let Some(change) = change else {
            return Err(Error::Api {
                action: format!("watch schemarollout {ns}/{name}"),
                detail: "the watch ended".into(),
            });
        };
        let failure = match change {
            Change::Rollout(result) => match *result {
                Ok(watcher::Event::Delete(_)) => {
                    return Err(Error::Deleted {
                        namespace: ns.into(),
                        name: name.into(),
                    });
                }
                Ok(event) => {
                    rollouts_synced |= matches!(event, watcher::Event::InitDone);
                    rollout_store.apply_watcher_event(&event);
                    None
                }
                Err(e) => Some(e),
            },
            Change::Event(result) => match *result {
                Ok(event) => {
                    events_synced |= matches!(event, watcher::Event::InitDone);
                    event_store.apply_watcher_event(&event);
                    None
                }
                Err(e) => Some(e),
            },
        };
        if let Some(e) = failure {
            // The watches back off and retry on their own.
            eprintln!("warning: watch failed, retrying: {e}");
            continue;
        }
        if !(rollouts_synced && events_synced) {
            continue;
        }
        let Some(rollout) = rollout_view.state().pop() else {
            return Err(Error::NotFound {
                namespace: ns.into(),
                name: name.into(),
            });
        };
        let events: Vec<Event> = event_view
            .state()
            .iter()
            .filter(|e| render::regards(e, &rollout))
            .map(|e| Event::clone(e))
            .collect();
        // What the view shows, with ages left out (all are measured from
        // the same fixed instant): printed again only when that changes,
        // not on every status write that changes nothing shown.
        let seen = render::status(&rollout, &events, jiff::Timestamp::UNIX_EPOCH);
        if last_seen.as_ref() == Some(&seen) {
            continue;
        }
        let text = render::status(&rollout, &events, jiff::Timestamp::now());
        let mut out = std::io::stdout().lock();
        // A terminal shows the latest view only; a pipe gets every view,
        // separated by a blank line.
        let lead = match (tty, last_seen.is_some()) {
            (true, _) => "\x1b[H\x1b[2J",
            (false, true) => "\n",
            (false, false) => "",
        };
        let _ = write!(out, "{lead}{text}").and_then(|()| out.flush());
        last_seen = Some(seen);
        match settled(&rollout) {
            Some(RolloutPhase::Succeeded) => return Ok(ExitCode::SUCCESS),
            Some(_) => return Ok(ExitCode::FAILURE),
            None => {}
        }
    }
}

/// The terminal phase (Succeeded or Failed) the rollout reached for its
/// current generation, if any. A terminal phase recorded for an older
/// generation is not final: the controller has yet to act on the new spec.
pub(super) fn settled(rollout: &SchemaRollout) -> Option<RolloutPhase> {
    let status = rollout.status.as_ref()?;
    let current = status.observed_generation.is_some()
        && status.observed_generation == rollout.metadata.generation;
    status
        .phase
        .filter(|p| current && matches!(p, RolloutPhase::Succeeded | RolloutPhase::Failed))
}
