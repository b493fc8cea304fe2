//! The operator's client of the Kubernetes API server: kube's stack (base
//! URI, credentials, TLS from the kubeconfig or the ServiceAccount), with
//! every request counted (`telemetry::requests`) and HTTP/2 when the
//! server offers it, as kube-apiserver does: every request and watch over
//! one connection (kube's own client speaks HTTP/1.1, one connection per
//! request in flight). With a proxy or a TLS server name configured,
//! kube's own client is used.

use crate::telemetry::requests::RequestsLayer;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use kube::client::{ClientBuilder, ConfigExt};
use kube::{Client, Config};
use std::time::Duration;
use tower::ServiceBuilder;

/// How often an idle HTTP/2 connection is pinged, so a dead one is noticed
/// (a watch would otherwise wait on it until its timeout).
const KEEP_ALIVE: Duration = Duration::from_secs(30);

/// The client for `config`, its requests counted by `requests`.
pub fn build(config: Config, requests: RequestsLayer) -> Result<Client, kube::Error> {
    if config.proxy_url.is_some() || config.tls_server_name.is_some() {
        return Ok(ClientBuilder::try_from(config)?
            .with_layer(&requests)
            .build());
    }
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config.rustls_client_config()?)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    let hyper = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .http2_keep_alive_interval(KEEP_ALIVE)
        .http2_keep_alive_while_idle(true)
        .build(https);
    let service = ServiceBuilder::new()
        .layer(requests)
        .layer(config.base_uri_layer())
        .option_layer(config.auth_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(Client::new(service, config.default_namespace))
}
