//! `kubectl bellows lint FILE...`: the checks bellows makes before it runs
//! anything (the spec's rules, transaction control, the inline-SQL lint),
//! on manifests, without a cluster: for CI pipelines. Exit 1 when a
//! SchemaRollout would stall (`InvalidSpec`, `UnsafeExpand`).

use crate::api::{Engine, SchemaRollout, Step};
use crate::planner::{step, validate};
use crate::sql;
use kube::ResourceExt;
use std::path::PathBuf;
use std::process::ExitCode;

/// Lints every SchemaRollout in `files`, printing one line per finding.
pub fn run(files: &[PathBuf]) -> ExitCode {
    let (mut rollouts, mut errors, mut warnings) = (0, 0, 0);
    for file in files {
        let shown = file.display();
        let docs = std::fs::read_to_string(file)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                serde_saphyr::from_multiple::<serde_json::Value>(&t).map_err(|e| e.to_string())
            });
        let docs = match docs {
            Ok(docs) => docs,
            Err(e) => {
                println!("{shown}: error: {e}");
                errors += 1;
                continue;
            }
        };
        for doc in docs.into_iter().filter(|d| d["kind"] == "SchemaRollout") {
            rollouts += 1;
            let rollout: SchemaRollout = match serde_json::from_value(doc) {
                Ok(r) => r,
                Err(e) => {
                    println!("{shown}: error: not a valid SchemaRollout: {e}");
                    errors += 1;
                    continue;
                }
            };
            let at = format!("{shown}: {}", rollout.name_any());
            if let Err(problems) = validate::validate(&rollout.spec) {
                for p in problems {
                    println!("{at}: error: {p}");
                    errors += 1;
                }
            }
            for u in validate::unreadable(&rollout.spec) {
                println!("{at}: error: {u}");
                errors += 1;
            }
            let engine = rollout
                .spec
                .database
                .as_ref()
                .map_or(Engine::Postgres, |d| d.engine);
            for s in [Step::Expand, Step::Transition, Step::Contract] {
                let Some(phase) = step::phase_spec(&rollout.spec, s) else {
                    continue;
                };
                let Some(statements) = &phase.sql else {
                    continue;
                };
                let report = sql::report(engine, s, statements, &phase.allow);
                for v in &report.violations {
                    println!("{at}: error: {v}");
                }
                for f in report.flagged.iter().chain(&report.unparsed) {
                    println!("{at}: warning: {f}");
                }
                for a in &report.allowed {
                    println!("{at}: allowed: {}: {a}", s.as_str());
                }
                errors += report.violations.len();
                warnings += report.flagged.len() + report.unparsed.len();
            }
        }
    }
    println!("{rollouts} SchemaRollout(s): {errors} error(s), {warnings} warning(s)");
    if errors > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
