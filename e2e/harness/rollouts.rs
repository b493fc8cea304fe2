//! SchemaRollouts of a scenario's namespace: create, approve, wait for a
//! phase or condition, read their events, record the phases they pass.

use super::wait::until;
use super::{Ns, phase_of, select_one_spec, workload};
use bellows::api::{RolloutPhase, SchemaRollout};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

impl Ns {
    /// Creates a SchemaRollout from its spec.
    pub async fn create_rollout(
        &self,
        name: &str,
        spec: Value,
    ) -> Result<SchemaRollout, kube::Error> {
        let r: SchemaRollout = serde_json::from_value(json!({
            "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
            "metadata": {"name": name}, "spec": spec
        }))
        .expect("a well-typed spec");
        self.api::<SchemaRollout>()
            .create(&PostParams::default(), &r)
            .await
    }

    /// Creates a SchemaRollout and waits until its expand phase succeeded
    /// (phase AwaitingRollout).
    pub async fn create_and_expand(&self, name: &str, spec: Value) {
        self.create_rollout(name, spec).await.unwrap();
        self.wait_phase(name, RolloutPhase::AwaitingRollout, Duration::from_secs(90))
            .await;
    }

    /// Deploys `api` (image `shop/api:1.0.0`, `replicas` replicas) and
    /// creates rollout `name` gating it on tag `2.0.0` with Manual approval
    /// and `SELECT 1` Jobs, then waits until its expand succeeded.
    pub async fn manual_api_rollout(&self, name: &str, replicas: i32) {
        self.deploy_api(replicas).await;
        self.create_and_expand(
            name,
            select_one_spec(
                json!([workload("api", "2.0.0")]),
                Some(json!({"approval": "Manual"})),
            ),
        )
        .await;
    }

    /// Creates a SchemaRollout from raw JSON, bypassing the Rust types (for
    /// input the types would refuse).
    pub async fn create_raw(&self, name: &str, spec: Value) -> Result<(), kube::Error> {
        let gvk = kube::api::GroupVersionKind::gvk("bellows.dev", "v1alpha1", "SchemaRollout");
        let ar = kube::api::ApiResource::from_gvk_with_plural(&gvk, "schemarollouts");
        let api: Api<kube::api::DynamicObject> =
            Api::namespaced_with(self.client.clone(), &self.name, &ar);
        let obj: kube::api::DynamicObject = serde_json::from_value(json!({
            "apiVersion": "bellows.dev/v1alpha1", "kind": "SchemaRollout",
            "metadata": {"name": name}, "spec": spec
        }))
        .unwrap();
        api.create(&PostParams::default(), &obj).await.map(|_| ())
    }

    pub async fn rollout(&self, name: &str) -> SchemaRollout {
        self.api::<SchemaRollout>().get(name).await.unwrap()
    }

    /// Sets annotation `key` on the rollout.
    pub async fn annotate_rollout(&self, name: &str, key: &str, value: &str) {
        self.api::<SchemaRollout>()
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
            )
            .await
            .unwrap();
    }

    /// Approves the rollout's contract the way a user does without the
    /// plugin: waits for `status.approvalKey` and sets the annotation
    /// `bellows.dev/approve` to it. Returns the key.
    pub async fn approve(&self, name: &str) -> String {
        let r = self
            .wait_rollout(name, "status.approvalKey", Duration::from_secs(90), |r| {
                r.status.as_ref().is_some_and(|s| s.approval_key.is_some())
            })
            .await;
        let key = r.status.unwrap().approval_key.unwrap();
        self.annotate_rollout(name, bellows::api::keys::APPROVE_ANNOTATION, &key)
            .await;
        key
    }

    /// Waits until the rollout satisfies `check`, returning it.
    pub async fn wait_rollout(
        &self,
        name: &str,
        what: &str,
        timeout: Duration,
        check: impl Fn(&SchemaRollout) -> bool,
    ) -> SchemaRollout {
        let api = self.api::<SchemaRollout>();
        let check = &check;
        let api = &api;
        until(
            &format!("{}/{name}: {what}", self.name),
            timeout,
            || async move { api.get(name).await.ok().filter(|r| check(r)) },
        )
        .await
    }

    /// Waits for `phase`.
    pub async fn wait_phase(
        &self,
        name: &str,
        phase: RolloutPhase,
        timeout: Duration,
    ) -> SchemaRollout {
        self.wait_rollout(name, &format!("phase {}", phase.as_str()), timeout, |r| {
            phase_of(r) == Some(phase)
        })
        .await
    }

    /// Waits until contract is held for `reason` (`status.holdReason`).
    pub async fn wait_held(&self, name: &str, reason: &str, timeout: Duration) -> SchemaRollout {
        self.wait_rollout(name, &format!("held: {reason}"), timeout, |r| {
            r.status.as_ref().and_then(|s| s.hold_reason.as_deref()) == Some(reason)
        })
        .await
    }

    /// Waits for condition `type_` with `status` and, if given, `reason`.
    pub async fn wait_condition(
        &self,
        name: &str,
        type_: &str,
        status: &str,
        reason: Option<&str>,
        timeout: Duration,
    ) -> SchemaRollout {
        self.wait_rollout(
            name,
            &format!("{type_}={status} {reason:?}"),
            timeout,
            |r| {
                r.status
                    .as_ref()
                    .and_then(|s| s.condition(type_))
                    .is_some_and(|c| c.status == status && reason.is_none_or(|x| c.reason == x))
            },
        )
        .await
    }

    /// Events about the rollout `name`: (type, reason, note).
    pub async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let mut events: Vec<Event> = self
            .api::<Event>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items;
        events.retain(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name));
        events.sort_by_key(|e| e.event_time.as_ref().map(|t| t.0));
        events
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for an event with `reason` (and `type_`) about `name`.
    pub async fn wait_event(
        &self,
        name: &str,
        type_: &str,
        reason: &str,
        timeout: Duration,
    ) -> String {
        until(
            &format!("{type_} event {reason} on {name}"),
            timeout,
            || async {
                self.events(name)
                    .await
                    .into_iter()
                    .find(|(t, r, _)| t == type_ && r == reason)
                    .map(|e| e.2)
            },
        )
        .await
    }

    /// Records every phase the rollout passes through, in order, and every
    /// workload message its status showed.
    pub fn record_phases(&self, name: &str) -> PhaseLog {
        let log = PhaseLog::default();
        let seen = log.clone();
        let api = self.api::<SchemaRollout>();
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut stream = watcher(api, config).default_backoff().boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let watcher::Event::Apply(r) | watcher::Event::InitApply(r) = event {
                    seen.record(&r);
                }
            }
        });
        log
    }
}

/// Phases a rollout went through and the workload messages it showed.
#[derive(Clone, Default)]
pub struct PhaseLog {
    /// Each phase and when the watch saw it begin.
    phases: Arc<Mutex<Vec<(RolloutPhase, Instant)>>>,
    messages: Arc<Mutex<Vec<String>>>,
}

impl PhaseLog {
    fn record(&self, r: &SchemaRollout) {
        if let Some(p) = phase_of(r) {
            let mut phases = self.phases.lock().unwrap();
            if phases.last().map(|l| l.0) != Some(p) {
                phases.push((p, Instant::now()));
            }
        }
        let mut messages = self.messages.lock().unwrap();
        for m in r
            .status
            .iter()
            .flat_map(|s| &s.workloads)
            .filter_map(|w| w.message.clone())
        {
            if !messages.contains(&m) {
                messages.push(m);
            }
        }
    }

    pub fn phases(&self) -> Vec<RolloutPhase> {
        self.timeline().into_iter().map(|p| p.0).collect()
    }

    /// Each phase with when the watch saw it begin.
    pub fn timeline(&self) -> Vec<(RolloutPhase, Instant)> {
        self.phases.lock().unwrap().clone()
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().unwrap().clone()
    }
}
