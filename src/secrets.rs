//! Reading one key of a Secret a SchemaRollout names: the database's
//! credentials (`db::connect`) and Prometheus's bearer token
//! (`controller::observe`). A message names the Secret and key, never the
//! value.

use crate::api::SecretKeyRef;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

/// The UTF-8 value of key `r.key` of Secret `r.name` in `secrets`, or why
/// there is none.
pub async fn value(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<String, String> {
    let secret = secrets
        .get_opt(&r.name)
        .await
        .map_err(|e| format!("cannot read Secret {}: {e}", r.name))?
        .ok_or_else(|| format!("Secret {} not found", r.name))?;
    let bytes = secret
        .data
        .and_then(|d| d.get(&r.key).cloned())
        .ok_or_else(|| format!("Secret {} has no key {}", r.name, r.key))?;
    String::from_utf8(bytes.0).map_err(|_| format!("Secret {} key {} is not UTF-8", r.name, r.key))
}
