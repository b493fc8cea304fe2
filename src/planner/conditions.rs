//! metav1.Condition bookkeeping: `lastTransitionTime` changes only when a
//! condition's status does.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// Builds the condition list from the previous one.
pub struct Builder<'a> {
    prev: &'a [Condition],
    generation: Option<i64>,
    now: Timestamp,
    out: Vec<Condition>,
}

impl<'a> Builder<'a> {
    pub fn new(prev: &'a [Condition], generation: Option<i64>, now: Timestamp) -> Self {
        Self {
            prev,
            generation,
            now,
            out: vec![],
        }
    }

    /// Sets condition `type_`, keeping its transition time if its status is
    /// unchanged. An empty message is replaced by the reason: some API
    /// servers' server-side apply turns an empty string into null, which a
    /// required string field rejects.
    pub fn set(&mut self, type_: &str, status: bool, reason: &str, message: &str) {
        let message = if message.is_empty() { reason } else { message };
        let status = if status { "True" } else { "False" };
        let last_transition_time = self
            .prev
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map_or(Time(self.now), |c| c.last_transition_time.clone());
        self.out.push(Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: message.to_owned(),
            observed_generation: self.generation,
            last_transition_time,
        });
    }

    pub fn into_conditions(self) -> Vec<Condition> {
        self.out
    }
}
