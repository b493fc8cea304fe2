//! Deployments, pods and Secrets of a scenario's namespace.

use super::wait::until;
use super::{App, Ns};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::time::Duration;

impl Ns {
    /// Creates Secret `name` holding `value` under `key`.
    pub async fn create_secret(&self, name: &str, key: &str, value: &str) {
        let secret: Secret = serde_json::from_value(json!({
            "metadata": {"name": name}, "stringData": {key: value}
        }))
        .unwrap();
        self.api::<Secret>()
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }

    /// Creates Deployment `name` running `image` in container `app` (or
    /// `app.container`) and waits until it is available.
    pub async fn deploy(&self, name: &str, image: &str, app: App<'_>) {
        let annotations: serde_json::Map<String, Value> = app
            .annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {
                "replicas": app.replicas,
                "progressDeadlineSeconds": app.progress_deadline_seconds.unwrap_or(600),
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}, "annotations": annotations},
                    "spec": {"terminationGracePeriodSeconds": 30,
                             "containers": [{"name": app.container.unwrap_or("app"), "image": image}]}
                }
            }
        }))
        .unwrap();
        self.api::<Deployment>()
            .create(&PostParams::default(), &d)
            .await
            .unwrap();
        self.wait_available(name, app.replicas).await;
    }

    /// Deployment `api` running `shop/api:1.0.0` with `replicas` plain pods,
    /// the version most scenarios start from; waits until it is available.
    pub async fn deploy_api(&self, replicas: i32) {
        self.deploy(
            "api",
            "shop/api:1.0.0",
            App {
                replicas,
                ..App::default()
            },
        )
        .await;
    }

    /// Waits until Deployment `name` has `replicas` updated, available replicas.
    pub async fn wait_available(&self, name: &str, replicas: i32) {
        let api = self.api::<Deployment>();
        until(
            &format!("deployment {name} available"),
            Duration::from_secs(60),
            || async {
                let d = api.get(name).await.ok()?;
                let s = d.status?;
                (s.observed_generation >= d.metadata.generation
                    && s.updated_replicas == Some(replicas)
                    && s.available_replicas == Some(replicas)
                    && s.replicas == Some(replicas))
                .then_some(())
            },
        )
        .await;
    }

    /// Changes the image of container `app` (a deploy of a new version).
    pub async fn set_image(&self, deploy: &str, image: &str) {
        self.set_container_image(deploy, "app", image).await;
    }

    /// Changes the image of `container` (a deploy of a new version).
    pub async fn set_container_image(&self, deploy: &str, container: &str, image: &str) {
        self.patch_template(
            deploy,
            json!({"spec": {"containers": [{"name": container, "image": image}]}}),
        )
        .await;
    }

    /// Strategic-merge patches the pod template of `deploy`.
    pub async fn patch_template(&self, deploy: &str, template: Value) {
        self.api::<Deployment>()
            .patch(
                deploy,
                &PatchParams::default(),
                &Patch::Strategic(json!({"spec": {"template": template}})),
            )
            .await
            .unwrap();
    }

    pub async fn deployment(&self, name: &str) -> Deployment {
        self.api::<Deployment>().get(name).await.unwrap()
    }

    pub async fn pods(&self) -> Vec<Pod> {
        self.api::<Pod>()
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
    }
}
