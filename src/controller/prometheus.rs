//! A small client of the Prometheus HTTP API: one instant query
//! (`GET <address>/api/v1/query`) answering one number, over the hyper
//! stack the operator already has (no second HTTP client; HTTPS verified
//! against the webpki roots, or against the CA the spec names). What it
//! cannot turn into a number is either no data (never a pass) or
//! Prometheus's own refusal of the query.

use crate::api::{PrometheusSpec, parse_duration};
use crate::error_text::chain;
use crate::planner::objective::Problem;
use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a query may take when the spec does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

type Https = hyper_rustls::HttpsConnector<HttpConnector>;
type Http = Client<Https, Empty<Bytes>>;

/// A Prometheus to query.
pub struct Prometheus {
    client: Http,
    address: String,
    token: Option<String>,
    timeout: Duration,
}

/// How many distinct CAs keep a client; past it, every client is let go
/// (a CA rotated many times must not grow the process).
const MAX_CLIENTS: usize = 16;

/// HTTP clients to Prometheus, one per CA trusted (the public roots, or a
/// rollout's CA), kept for the process's life: each pools its connections
/// and TLS sessions across rollouts and measurement rounds.
#[derive(Default)]
pub struct Clients {
    by_ca: Mutex<HashMap<Option<String>, Http>>,
}

impl Clients {
    /// The Prometheus of `spec`, sending `token` (read from its Secret) as
    /// a bearer token and trusting the CA certificates in `ca` (PEM, read
    /// from its Secret) instead of the public roots; or why `ca` cannot be
    /// trusted.
    pub fn prometheus(
        &self,
        spec: &PrometheusSpec,
        token: Option<String>,
        ca: Option<&str>,
    ) -> Result<Prometheus, String> {
        let mut by_ca = self.by_ca.lock().unwrap_or_else(|e| e.into_inner());
        let key = ca.map(str::to_owned);
        let client = match by_ca.get(&key) {
            Some(client) => client.clone(),
            None => {
                let client = Client::builder(TokioExecutor::new()).build(connector(ca)?);
                if by_ca.len() >= MAX_CLIENTS {
                    by_ca.clear();
                }
                by_ca.insert(key, client.clone());
                client
            }
        };
        Ok(Prometheus {
            client,
            address: spec.address.trim_end_matches('/').to_owned(),
            token,
            timeout: spec
                .timeout
                .as_deref()
                .and_then(|t| parse_duration(t).ok())
                .unwrap_or(DEFAULT_TIMEOUT),
        })
    }
}

/// HTTP(S) connections trusting `ca` (PEM), or the public roots.
fn connector(ca: Option<&str>) -> Result<Https, String> {
    let https = hyper_rustls::HttpsConnectorBuilder::new();
    let https = match ca {
        None => https.with_webpki_roots(),
        Some(pem) => https.with_tls_config(trusting(pem)?),
    };
    Ok(https.https_or_http().enable_http1().build())
}

impl Prometheus {
    /// The value of `query` now.
    pub async fn measure(&self, query: &str) -> Result<f64, Problem> {
        let uri = format!("{}/api/v1/query?query={}", self.address, encode(query));
        let mut request = Request::get(&uri);
        if let Some(token) = &self.token {
            request = request.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::new())
            .map_err(|e| Problem::NoData(format!("bad request: {e}")))?;
        let answer = async {
            let response = self.client.request(request).await.map_err(|e| {
                Problem::Unreachable(format!(
                    "Prometheus at {} unreachable: {}",
                    self.address,
                    chain(&e)
                ))
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| Problem::NoData(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok::<_, Problem>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, answer)
            .await
            .map_err(|_| {
                Problem::Unreachable(format!(
                    "Prometheus at {} gave no answer within {:?}",
                    self.address, self.timeout
                ))
            })??;
        value(status, &body, query)
    }
}

/// A TLS configuration trusting exactly the CA certificates in `pem`.
fn trusting(pem: &str) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let cert = cert.map_err(|e| format!("not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("a certificate bellows cannot trust: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no PEM certificate in it".into());
    }
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|c| c.with_root_certificates(roots).with_no_client_auth())
}

/// The query string's value, percent-encoded.
fn encode(query: &str) -> String {
    query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

/// The one number an answer of HTTP `status` with `body` to `query` holds.
fn value(status: StatusCode, body: &[u8], query: &str) -> Result<f64, Problem> {
    let answer: Answer = serde_json::from_slice(body)
        .map_err(|_| Problem::NoData(format!("HTTP {status} without a Prometheus API answer")))?;
    if answer.status != "success" {
        let kind = answer.error_type.unwrap_or_default();
        let error = answer.error.unwrap_or_default();
        // bad_data: the query itself (a parse error); anything else
        // (timeout, canceled, execution, unavailable) may pass next time.
        return Err(if kind == "bad_data" {
            Problem::Rejected(error)
        } else {
            Problem::NoData(format!("{kind}: {error}"))
        });
    }
    let unreadable =
        |e: serde_json::Error| Problem::NoData(format!("an answer bellows cannot read: {e}"));
    let text = match answer.data {
        Some(Data {
            result_type,
            result,
        }) if result_type == "scalar" => {
            serde_json::from_value::<(f64, String)>(result)
                .map_err(unreadable)?
                .1
        }
        Some(Data {
            result_type,
            result,
        }) if result_type == "vector" => {
            let samples: Vec<Sample> = serde_json::from_value(result).map_err(unreadable)?;
            match samples.as_slice() {
                [] => return Err(Problem::NoData(format!("{query} returned no series"))),
                [one] => one.value.1.clone(),
                many => {
                    return Err(Problem::Rejected(format!(
                        "the query returned {} series; aggregate it to one number",
                        many.len()
                    )));
                }
            }
        }
        _ => {
            return Err(Problem::Rejected(
                "the query must return a number (a scalar or one sample), not a range or a string"
                    .into(),
            ));
        }
    };
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Problem::NoData(format!("{query} returned {text}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(body: serde_json::Value) -> Result<f64, Problem> {
        value(StatusCode::OK, body.to_string().as_bytes(), "q")
    }

    #[test]
    fn one_number_or_why_there_is_none() {
        let vector = |values: &[&str]| {
            let result: Vec<_> = values
                .iter()
                .map(|v| serde_json::json!({"metric": {}, "value": [1.5, v]}))
                .collect();
            serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}})
        };
        assert_eq!(answer(vector(&["0.01"])), Ok(0.01));
        assert_eq!(
            answer(
                serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [1.5, "2"]}})
            ),
            Ok(2.0)
        );
        for (what, body) in [
            ("empty", vector(&[])),
            ("NaN", vector(&["NaN"])),
            ("Inf", vector(&["+Inf"])),
        ] {
            assert!(matches!(answer(body), Err(Problem::NoData(_))), "{what}");
        }
        assert!(matches!(
            answer(vector(&["1", "2"])),
            Err(Problem::Rejected(_))
        ));
        let bad = serde_json::json!({"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected"});
        assert_eq!(
            value(StatusCode::BAD_REQUEST, bad.to_string().as_bytes(), "q"),
            Err(Problem::Rejected("1:5: parse error: unexpected".into()))
        );
        let busy = serde_json::json!({"status": "error", "errorType": "timeout", "error": "query timed out"});
        assert!(matches!(
            value(
                StatusCode::SERVICE_UNAVAILABLE,
                busy.to_string().as_bytes(),
                "q"
            ),
            Err(Problem::NoData(_))
        ));
        assert!(matches!(
            value(StatusCode::BAD_GATEWAY, b"<html>bad gateway</html>", "q"),
            Err(Problem::NoData(_))
        ));
    }

    #[test]
    fn one_client_per_ca_reused_across_rollouts() {
        let spec: PrometheusSpec =
            serde_json::from_value(serde_json::json!({"address": "http://p:9090/"})).unwrap();
        let clients = Clients::default();
        let a = clients.prometheus(&spec, None, None).unwrap();
        let b = clients.prometheus(&spec, Some("t".into()), None).unwrap();
        assert_eq!(clients.by_ca.lock().unwrap().len(), 1);
        assert_eq!(
            (a.address.as_str(), b.token.as_deref()),
            ("http://p:9090", Some("t"))
        );
        assert!(clients.prometheus(&spec, None, Some("no PEM")).is_err());
        assert_eq!(clients.by_ca.lock().unwrap().len(), 1);
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            encode("sum(rate(x{a=\"b\"}[5m]))"),
            "sum%28rate%28x%7Ba%3D%22b%22%7D%5B5m%5D%29%29"
        );
    }
}
