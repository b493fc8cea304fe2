//! The Grafana dashboard and the alert rules shipped with the Helm chart
//! query only metrics the operator exports, and the dashboard shows every
//! metric family. The exported names come from the real
//! `bellows::telemetry::metrics::Metrics`.

use bellows::api::RolloutPhase;
use bellows::telemetry::metrics::Metrics;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

/// A file of the chart, read at run time (a shared target dir must not
/// point at another clone).
fn chart_file(path: &str) -> String {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("run through cargo"));
    std::fs::read_to_string(root.join("charts/bellows").join(path)).unwrap()
}

/// Series name → metric family, from the `# TYPE` lines of the encoded
/// metrics. prometheus-client prints nothing for a family without samples,
/// so every recording method runs once first.
fn exported() -> BTreeMap<String, String> {
    let metrics = Metrics::new();
    metrics.reconciled(Duration::from_millis(5), Some("kube"));
    metrics.transition(
        Some((RolloutPhase::Expanding, Duration::from_secs(1))),
        RolloutPhase::AwaitingRollout,
    );
    metrics.contract_held("RolledBack");
    metrics.count_rollouts([]);
    let waiting: bellows::api::SchemaRollout = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "users", "namespace": "shop"},
        "spec": {"workloads": [], "expand": {"sql": ["x"]}, "contract": {"sql": ["y"]}},
        "status": {"objectives": [{"name": "errors", "value": 0.001, "passes": 1}],
                   "budget": {"consumed": 0.01, "consumedSeconds": 26.0, "remaining": 0.9}},
    }))
    .unwrap();
    metrics.objectives([&waiting]);
    metrics.budgets([&waiting]);
    let text = metrics.encode();
    let mut names = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (family, kind) = rest.split_once(' ').unwrap();
        let suffixes: &[&str] = match kind {
            "counter" => &["_total"],
            "histogram" => &["_bucket", "_sum", "_count"],
            "gauge" => &[""],
            other => panic!("unexpected metric type {other} in {line}"),
        };
        for suffix in suffixes {
            names.insert(format!("{family}{suffix}"), family.to_owned());
        }
    }
    assert!(!names.is_empty(), "no # TYPE lines in\n{text}");
    names
}

/// PromQL words that are not metric names where they stand without `(`
/// (besides [`LABEL_LISTS`]).
const KEYWORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects. Helm template actions
/// (`{{ ... }}`), strings, label matchers (`{...}`), ranges (`[...]`),
/// label lists (`by (...)`), functions (a name before `(`), keywords,
/// numbers and Grafana variables (`$x`) are not metric names.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut text = expr.to_owned();
    while let Some(start) = text.find("{{") {
        let end = text[start..].find("}}").expect("unclosed {{") + start + 2;
        text.replace_range(start..end, " ");
    }
    let chars: Vec<char> = text.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    let skip_to = |i: usize, close: char| skip(&chars, i, close);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' | '`' => i = skip_to(i, c),
            '{' => i = skip_to(i, '}'),
            '[' => i = skip_to(i, ']'),
            '$' | '0'..='9' | '.' => {
                i += 1;
                while i < chars.len() && (chars[i].is_alphanumeric() || "_.".contains(chars[i])) {
                    i += 1;
                }
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let mut next = i;
                while next < chars.len() && chars[next].is_whitespace() {
                    next += 1;
                }
                let call = chars.get(next) == Some(&'(');
                if call && LABEL_LISTS.contains(&word.as_str()) {
                    i = skip_to(next, ')');
                } else if !call && ![KEYWORDS, LABEL_LISTS].concat().contains(&word.as_str()) {
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    names
}

/// The index after the `close` that ends what opens at `chars[i]`: a
/// string (with escapes) or a bracketed part (with strings inside).
fn skip(chars: &[char], i: usize, close: char) -> usize {
    let quoted = "\"'`".contains(close);
    let mut j = i + 1;
    while j < chars.len() && chars[j] != close {
        j = match chars[j] {
            '\\' if quoted => j + 2,
            q @ ('"' | '\'' | '`') if !quoted => skip(chars, j, q),
            _ => j + 1,
        };
    }
    j + 1
}

#[test]
fn metric_names_finds_selectors_and_nothing_else() {
    let expr = r#"histogram_quantile(0.95, sum by (le, phase) (rate(a_bucket{job=~"$job", x="b{c}", y='it"s'}[$__rate_interval])))
        / on (phase) group_left(reason) max without (pod) (b_total offset 5m) > bool 1e3
        or vector(0) and c:recorded > {{ .Values.x.threshold }} unless topk(3, d)"#;
    let found: Vec<String> = metric_names(expr).into_iter().collect();
    assert_eq!(found, ["a_bucket", "b_total", "c:recorded", "d"]);
}

/// Every PromQL query of the dashboard: panel targets and the `label_values`
/// selectors of template variables.
fn dashboard_queries() -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (key, child) in map {
                    match (key.as_str(), child) {
                        ("expr", Value::String(q)) => out.push(q.clone()),
                        ("query" | "definition", Value::String(q))
                            if q.starts_with("label_values(") =>
                        {
                            let inner = &q["label_values(".len()..q.rfind(',').unwrap()];
                            out.push(inner.to_owned());
                        }
                        _ => walk(child, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let dashboard: Value = serde_json::from_str(&chart_file("dashboards/bellows.json")).unwrap();
    let mut out = vec![];
    walk(&dashboard, &mut out);
    out
}

/// The `expr` of every rule in files/alerts.yaml.
fn alert_queries() -> Vec<String> {
    let alerts: Value = serde_saphyr::from_str(&chart_file("files/alerts.yaml")).unwrap();
    alerts["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["expr"]
                .as_str()
                .expect("every rule has an expr")
                .to_owned()
        })
        .collect()
}

/// Asserts every query selects at least one metric and only exported ones;
/// returns the families queried.
fn assert_exported(source: &str, queries: &[String]) -> BTreeSet<String> {
    let exported = exported();
    assert!(!queries.is_empty(), "no queries in {source}");
    let mut families = BTreeSet::new();
    for query in queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "{source}: no metric in {query}");
        for name in names {
            let family = exported.get(&name).unwrap_or_else(|| {
                panic!(
                    "{source} queries {name}, which bellows does not export ({:?}): {query}",
                    exported.keys()
                )
            });
            families.insert(family.clone());
        }
    }
    families
}

#[test]
fn dashboard_queries_exported_metrics_and_shows_every_family() {
    let families = assert_exported("dashboards/bellows.json", &dashboard_queries());
    let all: BTreeSet<String> = exported().into_values().collect();
    assert_eq!(families, all, "the dashboard leaves metric families out");
}

#[test]
fn alert_rules_query_exported_metrics() {
    let queries = alert_queries();
    assert_eq!(queries.len(), 4, "{queries:?}");
    assert_exported("files/alerts.yaml", &queries);
}

#[test]
fn dashboard_takes_its_datasource_from_a_variable() {
    let dashboard: Value = serde_json::from_str(&chart_file("dashboards/bellows.json")).unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(variables.iter().any(|v| v["name"] == "datasource"
        && v["type"] == "datasource"
        && v["query"] == "prometheus"));
    for panel in dashboard["panels"].as_array().unwrap() {
        assert_eq!(
            panel["datasource"]["uid"], "${datasource}",
            "{}",
            panel["title"]
        );
        for target in panel["targets"].as_array().unwrap() {
            assert_eq!(
                target["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
        }
    }
}
