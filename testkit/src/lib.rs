//! Test support shared by bellows' database tests (`tests/database.rs`) and
//! its end-to-end suite (`e2e/`): child processes that die with the test
//! process, waiting for a condition with a deadline (never a blind sleep),
//! and throwaway PostgreSQL, MariaDB and Prometheus servers from the system
//! binaries.
//! Never part of the operator's build: a dev-dependency only.

pub mod mariadb;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod wait;
