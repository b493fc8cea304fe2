//! Scenario 32: the service level objective and the downtime budget on
//! live traffic. A real Prometheus (Debian's binary) finds every traffic
//! pod through the `file_sd` target the app writes and scrapes its
//! `traffic_requests_total{version,result}` every second. The rename of
//! `examples/inline-sql.yaml` runs twice, with an objective (version
//! 2.0.0's error ratio over 10 s at most 1%, 3 passes 2 s apart) and a
//! downtime budget (99% over 1h, floor 50%):
//!
//! - **healthy**: version 2 fails nothing; contract runs after the
//!   objective held, and the budget this rollout spent is zero.
//! - **failing**: version 2 fails 5% of its requests on purpose; contract
//!   is held `ObjectiveViolated` (named in the message, a Warning event)
//!   and never runs, and the error ratio bellows measured for the budget
//!   since expand started matches the share the traffic app itself counted
//!   in that time within the tolerance below.

use super::STEP;
use super::traffic::{
    PG, assert_clean, create, example_rollout, finish, print_tallies, start_traffic, wait_gate,
};
use crate::harness::traffic::{Tally, tallies, tally_dir, targets_dir};
use crate::harness::{Env, Ns};
use bellows::api::RolloutPhase::*;
use bellows::api::{BudgetStatus, SchemaRollout};
use bellows_testkit::prometheus::Prometheus;
use serde_json::{Value, json};
use std::sync::Arc;

/// How far bellows' error ratio may be from the app's own count: 25% of it
/// plus 0.3 points (Prometheus sees the counters up to a scrape, 1 s, late,
/// and the test's snapshot of the tallies is taken up to a poll later).
fn tolerance(expected: f64) -> f64 {
    0.25 * expected + 0.003
}

/// The example's rename with the objective and the budget, contracting
/// without approval after a 5 s bake.
fn rollout(ns: &Ns, address: &str) -> Value {
    let mut r = example_rollout(PG, ns, "5s");
    r["spec"]["contract"]["after"]["approval"] = json!("Automatic");
    with_service_level(&mut r, address);
    r
}

/// Adds to the example rollout `r` the objective (version 2.0.0's error
/// ratio over 10 s at most 1%, 3 passes 2 s apart) and the downtime budget
/// (99% over 1h, floor 50%, measured every 2 s) of the traffic app, both
/// measured by the Prometheus at `address`.
pub fn with_service_level(r: &mut Value, address: &str) {
    let of = |result: &str| {
        format!(
            "sum(rate(traffic_requests_total{{namespace=\"{{{{namespace}}}}\",version=\"{{{{version}}}}\"{result}}}[10s]))"
        )
    };
    r["spec"]["prometheus"] = json!({"address": address, "timeout": "5s"});
    r["spec"]["contract"]["after"]["objectives"] = json!([{
        "name": "errors",
        "query": format!("{} / {}", of(",result=\"failed\""), of("")),
        "max": 0.01, "interval": "2s", "successes": 3,
    }]);
    let window = |result: &str| {
        format!(
            "sum(rate(traffic_requests_total{{namespace=\"{{{{namespace}}}}\"{result}}}[{{{{window}}}}]))"
        )
    };
    r["spec"]["budget"] = json!({
        "objective": 0.99, "period": "1h", "floor": 0.5, "interval": "2s",
        "errorRatio": format!("{} / {}", window(",result=\"failed\""), window("")),
    });
}

/// Waits until the Prometheus at `address` has scraped `ns`'s traffic
/// often enough for a rate (two samples): a Prometheus that has just
/// started has no budget to tell, and bellows rightly waits for one.
pub async fn wait_scraped(address: &str, ns: &str) {
    let spec = serde_json::from_value(json!({"address": address})).unwrap();
    let client = bellows::controller::prometheus::Clients::default()
        .prometheus(&spec, None, None)
        .unwrap();
    let query = format!("sum(rate(traffic_requests_total{{namespace=\"{ns}\"}}[1m]))");
    crate::harness::wait::until("Prometheus has a rate of the traffic", STEP, || async {
        client.measure(&query).await.ok()
    })
    .await;
}

/// Every version's tallies summed.
fn total(dir: &std::path::Path) -> Tally {
    tallies(dir)
        .into_values()
        .fold(Tally::default(), |mut sum, t| {
            sum.ok += t.ok;
            sum.failed += t.failed;
            sum
        })
}

fn budget_of(r: &SchemaRollout) -> BudgetStatus {
    r.status
        .as_ref()
        .and_then(|s| s.budget.clone())
        .unwrap_or_default()
}

pub async fn run(env: Arc<Env>) {
    let ns = env.namespace("slo-healthy").await;
    let targets = targets_dir(&tally_dir(&env, &ns));
    let prometheus = Prometheus::discovering(&env.dir.join("prometheus-slo"), &targets);
    prometheus.ready().await;
    let address = prometheus.address();

    // Healthy: version 2 meets the objective, contract runs, nothing spent.
    let (pod_url, local_url) = (env.pg.url(&ns.name), env.pg.local_url(&ns.name));
    let (db, dir) = start_traffic(&env, &ns, &pod_url, &local_url).await;
    wait_scraped(&address, &ns.name).await;
    let r = rollout(&ns, &address);
    let name = r["metadata"]["name"].as_str().unwrap().to_owned();
    create(&ns, r).await;
    wait_gate(&ns, &name).await;
    ns.deploy_traffic_v2(&dir).await;
    let done = ns.wait_phase(&name, Succeeded, STEP * 2).await;
    let status = done.status.clone().unwrap();
    assert!(status.objectives[0].passes >= 3, "{:?}", status.objectives);
    let healthy = budget_of(&done);
    let run = finish(&ns, &db, &dir).await;
    print_tallies("PostgreSQL with objectives", &[(&run, "bellows")]);
    assert_clean("objectives, healthy", &run);
    println!("e2e:   healthy: budget {healthy:?}");
    assert_eq!(healthy.error_ratio, Some(0.0), "{healthy:?}");
    assert_eq!(healthy.consumed_seconds, Some(0.0), "{healthy:?}");

    // Failing: 5% of version 2's requests fail; contract never runs.
    let ns = env.namespace("slo-failing").await;
    let (pod_url, local_url) = (env.pg.url(&ns.name), env.pg.local_url(&ns.name));
    let (db, dir) = start_traffic(&env, &ns, &pod_url, &local_url).await;
    wait_scraped(&address, &ns.name).await;
    let r = rollout(&ns, &address);
    let before = total(&dir);
    create(&ns, r).await;
    wait_gate(&ns, &name).await;
    ns.deploy_traffic_v2_failing(&dir, 0.05).await;
    let held = ns.wait_held(&name, "ObjectiveViolated", STEP * 2).await;
    let message = held.status.clone().unwrap().message.unwrap_or_default();
    assert!(message.contains("objective errors: 0.0"), "{message}");
    assert!(message.contains("is out of bounds (max 0.01)"), "{message}");
    let note = ns.wait_event(&name, "Warning", "ContractHeld", STEP).await;
    assert!(note.contains("ObjectiveViolated"), "{note}");
    // Let it hold through more measurements, then compare a fresh one
    // with what the app counted since the rollout began.
    let seen = budget_of(&held).measured_at;
    let later = ns
        .wait_rollout(&name, "three more budget measurements", STEP, |r| {
            let at = budget_of(r).measured_at;
            at.zip(seen.clone())
                .is_some_and(|(a, s)| a.0.duration_since(s.0).as_secs_f64() >= 6.0)
        })
        .await;
    let after = total(&dir);
    let measured = budget_of(&later);
    let failed = (after.failed - before.failed) as f64;
    let all = (after.queries() - before.queries()) as f64;
    let expected = failed / all;
    let ratio = measured.error_ratio.expect("an error ratio since expand");
    println!(
        "e2e:   failing: the app counted {failed} of {all} requests failed since the rollout began ({:.2}%); bellows measured {:.2}%, {:.1} s of downtime, {:.1}% of the budget, {:.1}% left",
        expected * 100.0,
        ratio * 100.0,
        measured.consumed_seconds.unwrap_or_default(),
        measured.consumed.unwrap_or_default() * 100.0,
        measured.remaining.unwrap_or_default() * 100.0,
    );
    assert!(
        (ratio - expected).abs() <= tolerance(expected),
        "bellows measured {ratio}, the app counted {expected} (tolerance {})",
        tolerance(expected)
    );
    let objective = &later.status.as_ref().unwrap().objectives[0];
    let v2 = objective.value.expect("version 2's error ratio");
    assert!(
        (0.03..=0.07).contains(&v2),
        "version 2's error ratio {v2}, injected 5%"
    );
    assert_eq!(
        later.status.as_ref().unwrap().hold_reason.as_deref(),
        Some("ObjectiveViolated")
    );
    assert!(
        db.user_columns().await.contains("full_name"),
        "contract ran: full_name is gone"
    );
    ns.stop_traffic().await;
}
