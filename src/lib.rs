//! bellows: a Kubernetes operator for phased (expand/contract) database
//! schema rollouts.

pub mod api;
pub mod controller;
pub mod db;
pub mod error_text;
pub mod operator;
pub mod planner;
pub mod plugin;
pub mod secrets;
pub mod sql;
pub mod telemetry;
