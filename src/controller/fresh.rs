//! Lists at least as fresh as a quorum read issued now, without making
//! etcd read a whole namespace: the current revision R of the kind is
//! learned with one cheap quorum request (a `limit=1` LIST, one key read),
//! then the list is asked for with `resourceVersion=R` and
//! `resourceVersionMatch=NotOlderThan`, which the API server answers from
//! its watch cache once that cache has caught up to R. A label-selected
//! quorum LIST, on Kubernetes before 1.31, reads and decodes every object
//! of the kind in the namespace from etcd; the watch cache filters in
//! memory.
//!
//! Why this is as safe as the quorum read (docs/design.md, "Fresh
//! reads"): R is read after the decision began, so every write to the kind
//! committed before then has a revision at most R; the answer is the
//! kind's state at a revision S >= R, so every object that existed then
//! and still exists at S is in it, Terminating ones included. A server
//! that cannot answer so (the cache not caught up in time, a
//! refusal, no revision) gets the quorum read instead, counted in
//! `bellows_fresh_lists_total`.

use crate::telemetry::metrics::Metrics;
use kube::Resource;
use kube::api::{Api, ListParams, ObjectList, PartialObjectMeta, VersionMatch};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

/// How long the watch cache may take to catch up to R before the quorum
/// read is sent instead, on a server that answers at once. A busy kind
/// catches up in milliseconds (its own writes advance the cache); on
/// Kubernetes before 1.28 a quiet kind's cache does not advance without a
/// write to it, and there the quorum read is cheap.
const CATCH_UP: Duration = Duration::from_millis(250);

/// The longest wait: the API server itself gives up after 3 s ("Too large
/// resource version").
const MAX_WAIT: Duration = Duration::from_secs(3);

/// How long to wait for the watch cache's answer when the request for R
/// took `r_took`: [`CATCH_UP`] plus twice that, at most [`MAX_WAIT`]. A
/// loaded server (or a client queueing its requests) is slow for every
/// request, and that is no sign of a cache behind R: without this, every
/// list under load would be sent twice, the costlier way last.
fn wait_for_cache(r_took: Duration) -> Duration {
    (CATCH_UP + 2 * r_took).min(MAX_WAIT)
}

/// How fresh a list must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Whatever the API server's watch cache holds now
    /// (`resourceVersion=0`): for a plan that starts nothing, since
    /// whatever would start a phase is read again [`Freshness::Now`].
    Cached,
    /// At least as fresh as now: the confirmation before a phase starts.
    Now,
}

/// The objects of `api` that `params` selects, as fresh as `freshness`.
pub async fn list<K>(
    metrics: &Metrics,
    api: &Api<K>,
    params: &ListParams,
    freshness: Freshness,
) -> Result<ObjectList<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let list = |p: ListParams| async move { api.list(&p).await };
    read(metrics, api, params, freshness, list).await
}

/// [`list`], metadata only.
pub async fn list_metadata<K>(
    metrics: &Metrics,
    api: &Api<K>,
    params: &ListParams,
    freshness: Freshness,
) -> Result<ObjectList<PartialObjectMeta<K>>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let list = |p: ListParams| async move { api.list_metadata(&p).await };
    read(metrics, api, params, freshness, list).await
}

/// `list` with `params` from the watch cache as it is, or not older than
/// the revision `api`'s kind has now, or as a quorum read where the server
/// cannot serve that.
async fn read<K, T, F, Fut>(
    metrics: &Metrics,
    api: &Api<K>,
    params: &ListParams,
    freshness: Freshness,
    list: F,
) -> Result<T, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    F: Fn(ListParams) -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    if freshness == Freshness::Cached {
        return list(params.clone().match_any()).await;
    }
    let asked = Instant::now();
    let revision = api
        .list_metadata(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .filter(|r| !r.is_empty());
    let why = match revision {
        None => "no_revision",
        Some(r) => {
            let at = params.clone().at(&r).matching(VersionMatch::NotOlderThan);
            match tokio::time::timeout(wait_for_cache(asked.elapsed()), list(at)).await {
                Ok(Ok(answer)) => {
                    metrics.fresh_list("watch_cache", "caught_up");
                    return Ok(answer);
                }
                Ok(Err(e)) => refusal(&e),
                Err(_) => "slow",
            }
        }
    };
    metrics.fresh_list("quorum", why);
    list(params.clone()).await
}

/// Why the API server did not answer a not-older-than list.
fn refusal(e: &kube::Error) -> &'static str {
    match e {
        // "Too large resource version": the cache did not catch up in the
        // server's own wait.
        kube::Error::Api(s) if s.code == 504 => "too_large",
        kube::Error::Api(s) if s.code == 410 => "expired",
        _ => "refused",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_server_gets_longer_to_answer_from_its_cache() {
        let ms = Duration::from_millis;
        assert_eq!(wait_for_cache(ms(2)), ms(254));
        assert_eq!(wait_for_cache(ms(400)), ms(1050));
        assert_eq!(wait_for_cache(ms(5000)), ms(3000));
    }
}
