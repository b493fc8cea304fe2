//! `controller::prometheus` against a real Prometheus (Debian's binary,
//! started in a temp dir) scraping a metrics endpoint this test serves:
//! a number, no data in each of its forms, a query Prometheus rejects,
//! and Prometheus gone; and over HTTPS, trusted only with its CA.

use bellows::api::PrometheusSpec;
use bellows::controller::prometheus::{Clients, Prometheus};
use bellows::planner::objective::Problem;
use bellows_testkit::prometheus::{Endpoint, Prometheus as Server};
use bellows_testkit::wait::until;
use serde_json::json;
use std::time::Duration;

/// What the endpoint serves: two series of one metric, one NaN gauge.
const METRICS: &str = "# TYPE shop_error_ratio gauge
shop_error_ratio{version=\"1.0.0\"} 0.2
shop_error_ratio{version=\"2.0.0\"} 0.002
# TYPE shop_nan gauge
shop_nan NaN
";

fn client(address: &str) -> Prometheus {
    let spec: PrometheusSpec =
        serde_json::from_value(json!({"address": address, "timeout": "5s"})).unwrap();
    Clients::default()
        .prometheus(&spec, Some("not-checked-by-this-prometheus".into()), None)
        .unwrap()
}

#[tokio::test]
async fn measures_one_number_and_names_every_reason_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = Endpoint::serve(METRICS).await;
    let mut server = Server::start(dir.path(), std::slice::from_ref(&endpoint.target));
    let prometheus = client(&server.address());
    // Scraped once: the series exists.
    let v2 = "shop_error_ratio{version=\"2.0.0\"}";
    until("the first scrape", Duration::from_secs(60), || async {
        prometheus.measure(v2).await.ok()
    })
    .await;
    assert_eq!(prometheus.measure(v2).await, Ok(0.002));
    assert_eq!(prometheus.measure("scalar(vector(1))").await, Ok(1.0));
    assert_eq!(prometheus.measure("max(shop_error_ratio)").await, Ok(0.2));
    for (query, says) in [
        (
            "shop_error_ratio{version=\"3.0.0\"}",
            "shop_error_ratio{version=\"3.0.0\"} returned no series",
        ),
        ("shop_nan", "shop_nan returned NaN"),
    ] {
        match prometheus.measure(query).await {
            Err(Problem::NoData(why)) => assert!(why.contains(says), "{query}: {why}"),
            other => panic!("{query}: {other:?}"),
        }
    }
    match prometheus.measure("sum(shop_error_ratio").await {
        Err(Problem::Rejected(why)) => assert!(why.contains("parse error"), "{why}"),
        other => panic!("a malformed query: {other:?}"),
    }
    match prometheus.measure("shop_error_ratio").await {
        Err(Problem::Rejected(why)) => assert!(why.contains("2 series"), "{why}"),
        other => panic!("two series: {other:?}"),
    }
    server.stop();
    match prometheus.measure(v2).await {
        Err(Problem::Unreachable(why)) => assert!(why.contains("unreachable"), "{why}"),
        other => panic!("Prometheus stopped: {other:?}"),
    }
}

#[tokio::test]
async fn https_is_trusted_only_with_the_ca_the_spec_names() {
    let dir = tempfile::tempdir().unwrap();
    let (server, ca) = Server::start_tls(dir.path(), &[]);
    let spec: PrometheusSpec =
        serde_json::from_value(json!({"address": server.address(), "timeout": "5s"})).unwrap();
    assert!(server.address().starts_with("https://"));
    let clients = Clients::default();
    let trusting = clients.prometheus(&spec, None, Some(&ca)).unwrap();
    until(
        "Prometheus answers over HTTPS",
        Duration::from_secs(60),
        || async { trusting.measure("scalar(vector(1))").await.ok() },
    )
    .await;
    assert_eq!(trusting.measure("scalar(vector(2))").await, Ok(2.0));
    // The public roots do not know the CA that signed it; the message
    // says so (hyper keeps it in the error's source).
    let public = clients.prometheus(&spec, None, None).unwrap();
    match public.measure("scalar(vector(1))").await {
        Err(Problem::Unreachable(why)) => assert!(
            why.ends_with("invalid peer certificate: UnknownIssuer"),
            "{why}"
        ),
        other => panic!("a certificate no public CA signed: {other:?}"),
    }
    // A CA Secret without a certificate in it is refused before any query.
    match clients.prometheus(&spec, None, Some("password=hunter2")) {
        Err(why) => assert_eq!(why, "no PEM certificate in it"),
        Ok(_) => panic!("a CA without a certificate was taken"),
    }
}
