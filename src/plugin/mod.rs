//! `kubectl bellows`: the kubectl plugin verbs (`status`, `approve`,
//! `pause`, `resume`, `list`, `lint`) of the `bellows` binary.
//!
//! Installed as `kubectl-bellows` (a symlink to or copy of `bellows`) on
//! PATH, kubectl runs it for `kubectl bellows VERB ...`. It uses the same
//! kubeconfig as kubectl (`KUBECONFIG`, `~/.kube/config`) and the
//! context's namespace unless `-n` says otherwise.

mod lint;
pub mod render;
mod watch;

use crate::api::keys::APPROVE_ANNOTATION;
use crate::api::{Approval, RolloutPhase, SchemaRollout};
use crate::error_text::chain;
use crate::planner::approval_key;
use clap::{Args, Subcommand};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use render::one_line;
use serde_json::json;
use std::path::Path;
use std::process::ExitCode;

/// File name under which kubectl finds the plugin on PATH.
pub const PLUGIN_FILE_NAME: &str = "kubectl-bellows";

/// Whether the binary was started as the kubectl plugin (its `argv[0]`
/// file name is [`PLUGIN_FILE_NAME`]), so help should read `kubectl bellows`.
pub fn invoked_as_plugin(argv0: &str) -> bool {
    Path::new(argv0).file_name().and_then(|n| n.to_str()) == Some(PLUGIN_FILE_NAME)
}

/// The plugin verbs.
#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Show a rollout: phases, workloads, conditions and recent events.
    Status {
        #[command(flatten)]
        target: Target,
        /// Print again on every change until the rollout Succeeded (exit 0)
        /// or Failed (exit 1).
        #[arg(short, long)]
        watch: bool,
    },
    /// Approve the contract phase of a rollout with Manual approval, for
    /// its current generation.
    Approve(Target),
    /// Pause a rollout in place: start nothing new until resumed.
    Pause(Target),
    /// Resume a paused rollout.
    Resume(Target),
    /// List rollouts with their phase, readiness and message.
    List {
        /// Namespace to list (default: the kubeconfig context's).
        #[arg(short, long)]
        namespace: Option<String>,
        /// List rollouts in every namespace.
        #[arg(short = 'A', long, conflicts_with = "namespace")]
        all_namespaces: bool,
    },
    /// Check SchemaRollout manifests without a cluster: the spec's rules,
    /// transaction control and the inline-SQL lint (exit 1 on an error).
    Lint {
        /// YAML files (several documents each are fine).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
    },
}

/// One rollout, by name and namespace.
#[derive(Args, Debug)]
pub struct Target {
    /// Name of the SchemaRollout.
    pub name: String,
    /// Namespace of the SchemaRollout (default: the kubeconfig context's,
    /// else `default`).
    #[arg(short, long)]
    pub namespace: Option<String>,
}

/// Why a verb could not do its job; each renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable kubeconfig or in-cluster config.
    #[error("cannot load a kubeconfig (KUBECONFIG, ~/.kube/config or in-cluster config): {0}")]
    Config(String),
    /// The rollout does not exist.
    #[error("schemarollout {name:?} not found in namespace {namespace:?}")]
    NotFound {
        /// Namespace looked in.
        namespace: String,
        /// Name looked for.
        name: String,
    },
    /// The rollout was deleted while being watched.
    #[error("schemarollout {namespace}/{name} was deleted")]
    Deleted {
        /// Namespace of the rollout.
        namespace: String,
        /// Name of the rollout.
        name: String,
    },
    /// Any other failed API call.
    #[error("{action}: {detail}")]
    Api {
        /// What was being done.
        action: String,
        /// The API's answer or the transport error.
        detail: String,
    },
}

impl Error {
    /// An API failure while doing `action`, on one line.
    fn api(action: impl Into<String>, err: &kube::Error) -> Error {
        let detail = match err {
            kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
            other => chain(other),
        };
        Error::Api {
            action: action.into(),
            detail: one_line(&detail),
        }
    }
}

/// Runs `verb`, printing its output to stdout and any error as one line on
/// stderr. Exit status: 0 on success, 1 on error or (for `status --watch`)
/// a Failed rollout, 130 on Ctrl-C while watching.
pub fn run(verb: Verb) -> ExitCode {
    // The one verb that needs no cluster.
    if let Verb::Lint { files } = &verb {
        return lint::run(files);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(verb)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Connects and dispatches one verb.
async fn execute(verb: Verb) -> Result<ExitCode, Error> {
    let client = Client::try_default()
        .await
        .map_err(|e| Error::Config(one_line(&chain(&e))))?;
    let ns = |given: Option<String>| given.unwrap_or_else(|| client.default_namespace().into());
    match verb {
        Verb::Status { target, watch } => {
            let ns = ns(target.namespace);
            let api = Api::<SchemaRollout>::namespaced(client.clone(), &ns);
            let events = Api::<Event>::namespaced(client.clone(), &ns);
            let rollout = get(&api, &ns, &target.name).await?;
            if watch {
                return watch::follow(api, events, &ns, &target.name).await;
            }
            let events = events
                .list(&ListParams::default())
                .await
                .map_err(|e| Error::api(format!("list events in namespace {ns}"), &e))?;
            print!(
                "{}",
                render::status(&rollout, &events.items, jiff::Timestamp::now())
            );
        }
        Verb::Approve(target) => {
            let ns = ns(target.namespace);
            println!("{}", approve(&client, &ns, &target.name).await?);
        }
        Verb::Pause(target) => {
            let ns = ns(target.namespace);
            println!("{}", set_paused(&client, &ns, &target.name, true).await?);
        }
        Verb::Resume(target) => {
            let ns = ns(target.namespace);
            println!("{}", set_paused(&client, &ns, &target.name, false).await?);
        }
        Verb::Lint { .. } => unreachable!("lint runs in `run`, without a cluster"),
        Verb::List {
            namespace,
            all_namespaces,
        } => {
            let (api, scope) = if all_namespaces {
                (Api::<SchemaRollout>::all(client.clone()), None)
            } else {
                let ns = ns(namespace);
                (Api::namespaced(client.clone(), &ns), Some(ns))
            };
            let mut rollouts = api
                .list(&ListParams::default())
                .await
                .map_err(|e| Error::api("list schemarollouts", &e))?
                .items;
            rollouts.sort_by_key(|r| (r.namespace(), r.name_any()));
            print!(
                "{}",
                render::list(&rollouts, scope.as_deref(), jiff::Timestamp::now())
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads rollout `name`, turning a 404 into [`Error::NotFound`].
async fn get(api: &Api<SchemaRollout>, ns: &str, name: &str) -> Result<SchemaRollout, Error> {
    api.get(name).await.map_err(|e| match &e {
        kube::Error::Api(s) if s.is_not_found() => Error::NotFound {
            namespace: ns.into(),
            name: name.into(),
        },
        _ => Error::api(format!("get schemarollout {ns}/{name}"), &e),
    })
}

/// Sets the approval annotation to the approval key of the rollout just
/// read (its uid and its contract's digest, see
/// `planner::approval_key`). A contract edited in between is not approved
/// unseen: the controller honours only the key of the current contract.
async fn approve(client: &Client, ns: &str, name: &str) -> Result<String, Error> {
    let api = Api::<SchemaRollout>::namespaced(client.clone(), ns);
    let rollout = get(&api, ns, name).await?;
    let key = approval_key(&rollout);
    let patch = json!({"metadata": {
        "annotations": {APPROVE_ANNOTATION: key},
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::api(format!("approve schemarollout {ns}/{name}"), &e))?;
    Ok(approval_report(&rollout, ns))
}

/// What `approve` did, with a note when the approval cannot take effect
/// right away.
fn approval_report(rollout: &SchemaRollout, ns: &str) -> String {
    let name = rollout.name_any();
    let mut text = format!(
        "schemarollout {ns}/{name} approved: {APPROVE_ANNOTATION}={:?}",
        approval_key(rollout)
    );
    let approval = rollout
        .spec
        .contract
        .after
        .as_ref()
        .map_or(Approval::default(), |a| a.approval);
    let phase = rollout.status.as_ref().and_then(|s| s.phase);
    if approval == Approval::Automatic {
        text.push_str(
            "\nnote: its approval is Automatic, so contract does not wait for this annotation",
        );
    } else if phase != Some(RolloutPhase::AwaitingApproval) {
        text.push_str(&format!(
            "\nnote: phase is {}, not AwaitingApproval; contract still waits for its other gates \
             (expand, rollout, transition, bake time, checks)",
            phase.map_or("unknown", RolloutPhase::as_str)
        ));
    }
    text
}

/// Merge-patches `spec.paused`.
async fn set_paused(client: &Client, ns: &str, name: &str, paused: bool) -> Result<String, Error> {
    let api = Api::<SchemaRollout>::namespaced(client.clone(), ns);
    let before = get(&api, ns, name).await?;
    let verb = if paused { "pause" } else { "resume" };
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"paused": paused}})),
    )
    .await
    .map_err(|e| Error::api(format!("{verb} schemarollout {ns}/{name}"), &e))?;
    Ok(pause_report(ns, name, before.spec.paused, paused))
}

/// What `pause` / `resume` did.
fn pause_report(ns: &str, name: &str, was: bool, now: bool) -> String {
    let state = if now { "paused" } else { "resumed" };
    let already = if now {
        "already paused"
    } else {
        "was not paused"
    };
    if was == now {
        format!("schemarollout {ns}/{name} {state} ({already})")
    } else {
        format!("schemarollout {ns}/{name} {state}")
    }
}

#[cfg(test)]
mod tests;
