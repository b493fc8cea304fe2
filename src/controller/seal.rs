//! The seal on every Job bellows creates: an HMAC-SHA256 of the Job's
//! namespace, name and owning rollout's uid, under a key kept in a Secret
//! of the operator's namespace (`bellows-job-seal`, made on first use).
//!
//! A Job's name is deterministic, so anyone who can create Jobs in a
//! rollout's namespace could create one under that name before bellows
//! does (labels, owner reference and all): a Job that runs `true` would
//! pass for a succeeded phase. Only a Job whose annotation
//! `bellows.dev/seal` verifies is taken for a phase's Job; the key never
//! leaves the operator's namespace. A lost key (the Secret deleted) makes
//! every running phase Job foreign: bellows then stops rather than guess.

use crate::api::keys::{MANAGED_BY, SEAL_ANNOTATION};
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::{Resource, ResourceExt};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use std::collections::BTreeMap;

/// The Secret holding the key, in the operator's namespace.
pub const SECRET: &str = "bellows-job-seal";
/// Its data key.
const KEY: &str = "key";
/// The key's length in bytes.
const KEY_LEN: usize = 32;

/// Why the key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Reading or creating the Secret failed.
    #[error("the Job seal key (Secret {SECRET}): {0}")]
    Kube(#[from] kube::Error),
    /// The Secret exists but holds no usable key.
    #[error("the Job seal key (Secret {SECRET}) holds no {KEY_LEN}-byte `{KEY}`")]
    Unusable,
    /// The system's random source failed.
    #[error("no random bytes for a new Job seal key")]
    Random,
}

/// Signs and verifies phase Jobs.
pub struct Seal(hmac::Key);

impl Seal {
    /// A seal with the key `key`.
    pub fn new(key: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, key))
    }

    /// The seal whose key `secrets` (the operator's namespace) holds,
    /// making the key first if there is none. Two replicas racing to make
    /// it both end with the one the API server kept.
    pub async fn load(secrets: &Api<Secret>) -> Result<Self, SealError> {
        if let Some(secret) = secrets.get_opt(SECRET).await? {
            return key_of(&secret);
        }
        let mut key = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SealError::Random)?;
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(SECRET.into()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.0.to_owned(),
                    MANAGED_BY.1.to_owned(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(KEY.to_owned(), ByteString(key.to_vec()))])),
            type_: Some("Opaque".into()),
            ..Secret::default()
        };
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(made) => key_of(&made),
            Err(kube::Error::Api(e)) if e.code == 409 => key_of(&secrets.get(SECRET).await?),
            Err(e) => Err(e.into()),
        }
    }

    /// The seal of the Job `job` in `namespace` for the rollout `uid`.
    pub fn sign(&self, namespace: &str, job: &str, uid: &str) -> String {
        let tag = hmac::sign(&self.0, message(namespace, job, uid).as_bytes());
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Whether `job` carries the seal bellows made for it and the rollout
    /// `uid`.
    pub fn verifies(&self, job: &Job, uid: &str) -> bool {
        let Some(tag) = job
            .annotations()
            .get(SEAL_ANNOTATION)
            .and_then(|t| unhex(t))
        else {
            return false;
        };
        let namespace = job.meta().namespace.as_deref().unwrap_or_default();
        let message = message(namespace, &job.name_any(), uid);
        hmac::verify(&self.0, message.as_bytes(), &tag).is_ok()
    }
}

/// What a seal signs: no part can hold a `/`.
fn message(namespace: &str, job: &str, uid: &str) -> String {
    format!("{namespace}/{job}/{uid}")
}

fn key_of(secret: &Secret) -> Result<Seal, SealError> {
    match secret.data.as_ref().and_then(|d| d.get(KEY)) {
        Some(key) if key.0.len() == KEY_LEN => Ok(Seal::new(&key.0)),
        _ => Err(SealError::Unusable),
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(name: &str, seal: Option<String>) -> Job {
        let mut job = Job::default();
        job.metadata.name = Some(name.into());
        job.metadata.namespace = Some("shop".into());
        job.metadata.annotations = seal.map(|s| BTreeMap::from([(SEAL_ANNOTATION.to_owned(), s)]));
        job
    }

    #[test]
    fn only_the_job_it_was_made_for_verifies() {
        let seal = Seal::new(&[7; KEY_LEN]);
        let tag = seal.sign("shop", "users-expand-abc", "uid-1");
        assert!(seal.verifies(&job("users-expand-abc", Some(tag.clone())), "uid-1"));
        for (what, j, uid) in [
            ("no seal", job("users-expand-abc", None), "uid-1"),
            (
                "another rollout",
                job("users-expand-abc", Some(tag.clone())),
                "uid-2",
            ),
            (
                "another Job's seal",
                job("users-contract-abc", Some(tag.clone())),
                "uid-1",
            ),
            (
                "a made-up seal",
                job("users-expand-abc", Some("ab".repeat(32))),
                "uid-1",
            ),
            (
                "not hex",
                job("users-expand-abc", Some("zz".into())),
                "uid-1",
            ),
            (
                "odd length",
                job("users-expand-abc", Some("abc".into())),
                "uid-1",
            ),
        ] {
            assert!(!seal.verifies(&j, uid), "{what}");
        }
        let other = Seal::new(&[8; KEY_LEN]);
        assert!(
            !other.verifies(&job("users-expand-abc", Some(tag)), "uid-1"),
            "another key"
        );
    }

    #[test]
    fn a_secret_without_a_whole_key_is_unusable() {
        let secret = |data: Option<Vec<u8>>| Secret {
            data: data.map(|d| BTreeMap::from([(KEY.to_owned(), ByteString(d))])),
            ..Secret::default()
        };
        assert!(key_of(&secret(Some(vec![1; KEY_LEN]))).is_ok());
        for s in [secret(None), secret(Some(vec![1; 16]))] {
            assert!(matches!(key_of(&s), Err(SealError::Unusable)));
        }
    }
}
