//! bellows: a Kubernetes operator for phased (expand/contract) database
//! schema rollouts.

pub mod api;
pub mod planner;
