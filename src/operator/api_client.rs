//! The operator's client of the Kubernetes API server: kube's stack (base
//! URI, credentials, impersonation and extra headers, TLS from the
//! kubeconfig or the ServiceAccount, a connect timeout that covers the TLS
//! handshake, retries of 429, 503 and 504) with every request counted
//! (`telemetry::requests`) and HTTP/2 when the server offers it, as
//! kube-apiserver does: every request and watch of one client over one
//! connection (kube's own client speaks HTTP/1.1, one connection per
//! request in flight). With a proxy or a TLS server name configured,
//! kube's own client is used.

use crate::telemetry::requests::RequestsLayer;
use hyper_timeout::TimeoutConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::retry::RetryPolicy;
use kube::client::{ClientBuilder, ConfigExt};
use kube::{Client, Config};
use std::time::Duration;
use tower::ServiceBuilder;
use tower::retry::RetryLayer;

/// How often an idle HTTP/2 connection is pinged, so a dead one is noticed
/// (a watch would otherwise wait on it until its timeout).
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// How long a connection may take, TCP and TLS handshake together, when
/// the kubeconfig sets no timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Retries of a request the server answered 429, 503 or 504 (its
/// `Retry-After` respected): a few, within seconds, so a reconcile never
/// waits long on a busy server and its own backoff takes over.
fn retries() -> RetryPolicy {
    RetryPolicy::new(Duration::from_millis(200), Duration::from_secs(5), 4, true)
        .expect("the retry backoff is valid")
}

/// The client for `config`, its requests counted by `requests`.
pub fn build(config: Config, requests: RequestsLayer) -> Result<Client, kube::Error> {
    if config.proxy_url.is_some() || config.tls_server_name.is_some() {
        return Ok(ClientBuilder::try_from(config)?
            .with_layer(&requests)
            .build());
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    let mut connector = TimeoutConnector::new(https);
    connector.set_connect_timeout(config.connect_timeout.or(Some(CONNECT_TIMEOUT)));
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(KEEP_ALIVE)
        .http2_keep_alive_while_idle(true)
        .build(connector);
    let service = ServiceBuilder::new()
        .layer(requests)
        .layer(config.base_uri_layer())
        .option_layer(config.default_retry.then(|| RetryLayer::new(retries())))
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::metrics::Metrics;
    use k8s_openapi::api::core::v1::Namespace;
    use kube::Api;
    use std::sync::{Arc, Mutex};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A plain-HTTP server answering each request with the next of
    /// `statuses` (then 200), recording each request's head.
    async fn server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(vec![]));
        let log = seen.clone();
        tokio::spawn(async move {
            let mut statuses = statuses.into_iter();
            while let Ok((mut socket, _)) = listener.accept().await {
                let log = log.clone();
                let status = statuses.next().unwrap_or(200);
                tokio::spawn(async move {
                    let mut buf = vec![0; 16 * 1024];
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf[..n]).into_owned());
                    let body =
                        r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}}"#;
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        (url, seen)
    }

    fn client(config: Config) -> Client {
        build(config, RequestsLayer::new(Arc::new(Metrics::new()))).unwrap()
    }

    #[tokio::test]
    async fn a_busy_server_is_retried_and_impersonation_is_sent() {
        let (url, seen) = server(vec![503, 429]).await;
        let mut config = Config::new(url.parse().unwrap());
        config.auth_info.impersonate = Some("alice".into());
        config.auth_info.impersonate_groups = Some(vec!["team-a".into()]);
        let ns = Api::<Namespace>::all(client(config)).get("shop").await;
        assert_eq!(ns.unwrap().metadata.name.as_deref(), Some("shop"));
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3, "503, 429, then 200");
        for head in seen.iter() {
            let head = head.to_ascii_lowercase();
            assert!(head.contains("impersonate-user: alice"), "{head}");
            assert!(head.contains("impersonate-group: team-a"), "{head}");
        }
    }

    #[tokio::test]
    async fn a_server_that_never_finishes_the_tls_handshake_fails_the_request() {
        // Accepts TCP, never answers the TLS client hello.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}", listener.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = vec![];
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let mut config = Config::new(url.parse().unwrap());
        config.accept_invalid_certs = true;
        config.connect_timeout = Some(Duration::from_millis(300));
        let namespaces = Api::<Namespace>::all(client(config));
        let outcome = tokio::time::timeout(Duration::from_secs(30), namespaces.get("shop")).await;
        assert!(
            matches!(outcome, Ok(Err(_))),
            "the request must fail, not hang: {outcome:?}"
        );
        held.abort();
    }
}
