//! Leader election on a `coordination.k8s.io/v1` Lease, so that of several
//! operator replicas only one reconciles.
//!
//! The rules are client-go's: a candidate takes the Lease when nobody holds
//! it, when it holds it itself, or when the record has not changed for
//! `leaseDurationSeconds` as measured on the candidate's own clock (never the
//! holder's `renewTime`, so clock skew between nodes cannot cut a lease
//! short). Writes are optimistic (`resourceVersion`): of two candidates that
//! race, one gets a Conflict and goes back to waiting. The leader renews every
//! third of the lease duration and gives up when it could not renew for two
//! thirds of it, before any standby may take over.
//!
//! Leader election narrows the window in which two replicas act at once; it
//! is not what keeps a phase from running twice. Deterministic Job names,
//! create-if-absent and the database ledger do that (invariant I3).

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use std::time::Duration;
use tokio::time::Instant;

/// Where the Lease lives and who this candidate is.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// Name of the Lease object.
    pub name: String,
    /// This replica's identity, written to `holderIdentity`.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
}

impl LeaseConfig {
    /// How often the leader renews.
    fn renew_every(&self) -> Duration {
        self.duration / 3
    }

    /// How long the leader keeps leading without a successful renewal.
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    /// How often a standby looks at a Lease that someone else holds.
    fn retry_every(&self) -> Duration {
        self.duration / 5
    }
}

/// Why a leader stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum LeaseLost {
    /// Another replica wrote itself into the Lease.
    #[error("lease {lease} is now held by {holder}")]
    TakenOver {
        /// Name of the Lease.
        lease: String,
        /// Its new holder.
        holder: String,
    },
    /// No renewal succeeded within the renew deadline.
    #[error("could not renew lease {lease} for {elapsed:?}: {reason}")]
    RenewFailed {
        /// Name of the Lease.
        lease: String,
        /// Time since the last successful renewal.
        elapsed: Duration,
        /// The last renewal's error.
        reason: String,
    },
}

/// A version of the Lease record, and when this candidate first saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct Sighting {
    /// `holderIdentity`.
    pub holder: Option<String>,
    /// `leaseDurationSeconds`.
    pub duration: Duration,
    /// Tells versions of the record apart.
    pub resource_version: Option<String>,
    /// When this candidate first saw this version (its own clock).
    pub seen_at: Instant,
}

/// What a candidate does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Write the Lease with itself as holder.
    Take,
    /// Look again at this instant.
    WaitUntil(Instant),
}

/// The pure election rule: what `me` does about `lease` at `now`.
pub fn next(me: &str, lease: Option<&Sighting>, now: Instant, retry: Duration) -> Next {
    let Some(lease) = lease else {
        return Next::Take;
    };
    let expires = lease.seen_at + lease.duration;
    match lease.holder.as_deref() {
        None | Some("") => Next::Take,
        Some(holder) if holder == me => Next::Take,
        _ if now >= expires => Next::Take,
        _ => Next::WaitUntil(expires.min(now + retry)),
    }
}

/// One replica's side of the election.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The last version of the Lease read or written.
    last: Option<(Lease, Sighting)>,
}

impl Elector {
    /// A candidate for the Lease in `api`'s namespace.
    pub fn new(api: Api<Lease>, config: LeaseConfig) -> Self {
        Self {
            api,
            config,
            last: None,
        }
    }

    /// Returns once this replica holds the Lease. API errors are logged and
    /// retried: a standby has nothing better to do.
    pub async fn acquire(&mut self) {
        loop {
            let round = tokio::time::timeout(self.config.duration, self.try_acquire()).await;
            match round.unwrap_or_else(|_| {
                Err(kube::Error::Service("no answer from the API server".into()))
            }) {
                Ok(None) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "became leader");
                    return;
                }
                Ok(Some(at)) => tokio::time::sleep_until(at).await,
                Err(e) => {
                    tracing::warn!(lease = %self.config.name, error = %e, "leader election failed; retrying");
                    tokio::time::sleep(self.config.retry_every()).await;
                }
            }
        }
    }

    /// One round: `None` once leading, otherwise when to look again.
    async fn try_acquire(&mut self) -> Result<Option<Instant>, kube::Error> {
        let current = self.api.get_opt(&self.config.name).await?;
        let now = Instant::now();
        let sighting = current.as_ref().map(|l| self.sight(l, now));
        match next(
            &self.config.identity,
            sighting.as_ref(),
            now,
            self.config.retry_every(),
        ) {
            Next::WaitUntil(at) => {
                self.last = current.zip(sighting);
                Ok(Some(at))
            }
            Next::Take => match self.take(current).await {
                Ok(()) => Ok(None),
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    Ok(Some(now + self.config.retry_every()))
                }
                Err(e) => Err(e),
            },
        }
    }

    /// The Sighting of `lease`: unchanged records keep their first sighting
    /// time, so expiry is measured from when the record last changed.
    fn sight(&self, lease: &Lease, now: Instant) -> Sighting {
        let spec = lease.spec.clone().unwrap_or_default();
        let seen = Sighting {
            holder: spec.holder_identity,
            duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64),
            resource_version: lease.metadata.resource_version.clone(),
            seen_at: now,
        };
        match &self.last {
            Some((_, prev)) if prev.resource_version == seen.resource_version => Sighting {
                seen_at: prev.seen_at,
                ..seen
            },
            _ => seen,
        }
    }

    /// Writes the Lease with this replica as holder (create or optimistic
    /// replace).
    async fn take(&mut self, current: Option<Lease>) -> Result<(), kube::Error> {
        let now = MicroTime(Timestamp::now());
        let me = &self.config.identity;
        let written = match current {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.config.name.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me.clone()),
                        lease_duration_seconds: Some(self.duration_seconds()),
                        acquire_time: Some(now.clone()),
                        renew_time: Some(now),
                        lease_transitions: Some(0),
                        ..LeaseSpec::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await?
            }
            Some(mut lease) => {
                let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
                if spec.holder_identity.as_deref() != Some(me) {
                    spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                    spec.acquire_time = Some(now.clone());
                    spec.holder_identity = Some(me.clone());
                }
                spec.lease_duration_seconds = Some(self.duration_seconds());
                spec.renew_time = Some(now);
                self.api
                    .replace(&self.config.name, &PostParams::default(), &lease)
                    .await?
            }
        };
        self.remember(written);
        Ok(())
    }

    fn remember(&mut self, lease: Lease) {
        let sighting = self.sight(&lease, Instant::now());
        self.last = Some((lease, sighting));
    }

    fn duration_seconds(&self) -> i32 {
        self.config.duration.as_secs().clamp(1, i32::MAX as u64) as i32
    }

    /// Renews the Lease until it is lost; returns why. Call only after
    /// [`Elector::acquire`]. A renewal that gets no answer counts as failed
    /// at the renew deadline, so a leader cut off from the API server stops
    /// before a standby may take over.
    pub async fn keep(&mut self) -> LeaseLost {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.renew_every()).await;
            let deadline = renewed + self.config.renew_deadline();
            // A renewal counts from when it was sent: the API server may
            // have written it (and a standby seen it) any time after that,
            // so timing it from the answer would stretch the lease.
            let sent = Instant::now();
            let reason = match tokio::time::timeout_at(deadline, self.renew()).await {
                Ok(Ok(None)) => {
                    renewed = sent;
                    continue;
                }
                Ok(Ok(Some(holder))) => {
                    return LeaseLost::TakenOver {
                        lease: self.config.name.clone(),
                        holder,
                    };
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => "no answer from the API server".to_owned(),
            };
            let elapsed = renewed.elapsed();
            tracing::warn!(lease = %self.config.name, %reason, ?elapsed, "lease renewal failed");
            if Instant::now() >= deadline {
                return LeaseLost::RenewFailed {
                    lease: self.config.name.clone(),
                    elapsed,
                    reason,
                };
            }
        }
    }

    /// One renewal: an optimistic replace of the last written version; on a
    /// Conflict, re-read and renew only if this replica still holds it.
    /// `Some(holder)` when another replica holds it now.
    async fn renew(&mut self) -> Result<Option<String>, kube::Error> {
        let last = self.last.as_ref().map(|(l, _)| l.clone());
        match self.take(last).await {
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            other => return other.map(|()| None),
        }
        let current = self.api.get_opt(&self.config.name).await?;
        match holder(current.as_ref()) {
            Some(h) if h == self.config.identity => self.take(current).await.map(|()| None),
            other => Ok(Some(other.unwrap_or_default())),
        }
    }

    /// Gives the Lease up (on shutdown) so a standby takes over at once
    /// instead of waiting for it to expire. Best effort: on a Conflict it
    /// re-reads the Lease and releases it only if this replica still holds
    /// it.
    pub async fn release(&mut self) {
        let mut lease = self.last.take().map(|(l, _)| l);
        for _ in 0..2 {
            let Some(mut held) = lease.take() else {
                return;
            };
            if holder(Some(&held)).as_deref() != Some(self.config.identity.as_str()) {
                return;
            }
            let spec = held.spec.get_or_insert_with(LeaseSpec::default);
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(Timestamp::now()));
            let released = self
                .api
                .replace(&self.config.name, &PostParams::default(), &held)
                .await;
            match released {
                Ok(_) => {
                    tracing::info!(lease = %self.config.name, "released the lease");
                    return;
                }
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    lease = self.api.get_opt(&self.config.name).await.ok().flatten();
                }
                Err(e) => {
                    tracing::warn!(lease = %self.config.name, error = %e, "could not release the lease");
                    return;
                }
            }
        }
    }
}

/// Who holds `lease`, if anyone.
fn holder(lease: Option<&Lease>) -> Option<String> {
    lease?.spec.as_ref()?.holder_identity.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RETRY: Duration = Duration::from_secs(2);

    fn held_by(holder: Option<&str>, seen_at: Instant) -> Sighting {
        Sighting {
            holder: holder.map(str::to_owned),
            duration: Duration::from_secs(15),
            resource_version: Some("7".into()),
            seen_at,
        }
    }

    #[test]
    fn a_missing_or_unheld_lease_is_taken() {
        let now = Instant::now();
        assert_eq!(next("a", None, now, RETRY), Next::Take);
        assert_eq!(next("a", Some(&held_by(None, now)), now, RETRY), Next::Take);
        assert_eq!(
            next("a", Some(&held_by(Some(""), now)), now, RETRY),
            Next::Take
        );
    }

    #[test]
    fn the_holder_renews_its_own_lease() {
        let now = Instant::now();
        assert_eq!(
            next("a", Some(&held_by(Some("a"), now)), now, RETRY),
            Next::Take
        );
    }

    #[test]
    fn a_live_lease_of_another_holder_is_left_alone_until_it_expires() {
        let seen = Instant::now();
        let lease = held_by(Some("b"), seen);
        // Early on: look again after the retry period.
        assert_eq!(
            next("a", Some(&lease), seen + Duration::from_secs(1), RETRY),
            Next::WaitUntil(seen + Duration::from_secs(3))
        );
        // Close to expiry: look again exactly at expiry, not later.
        assert_eq!(
            next("a", Some(&lease), seen + Duration::from_secs(14), RETRY),
            Next::WaitUntil(seen + Duration::from_secs(15))
        );
        // Unchanged for the whole lease duration: take it over.
        assert_eq!(
            next("a", Some(&lease), seen + Duration::from_secs(15), RETRY),
            Next::Take
        );
    }

    #[test]
    fn the_standby_retry_is_shorter_than_the_renew_deadline() {
        let c = LeaseConfig {
            name: "l".into(),
            identity: "a".into(),
            duration: Duration::from_secs(15),
        };
        assert!(c.renew_every() < c.renew_deadline());
        assert!(c.renew_deadline() < c.duration);
        assert!(c.retry_every() < c.renew_every());
    }
}
