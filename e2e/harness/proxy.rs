//! A TCP proxy between an operator process and kube-apiserver that a
//! scenario can hold: while held, no byte moves either way and new
//! connections wait, as behind a stalled load balancer or a dead network
//! path; the TLS inside passes through untouched. Released, the held bytes
//! flow on; cut, every open connection is dropped with what it held (as a
//! path that died), so the client reconnects and learns nothing of what it
//! missed but what it asks again.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The proxy; dropping it stops accepting (open connections end with their
/// ends).
pub struct Proxy {
    held: watch::Sender<bool>,
    accept: tokio::task::JoinHandle<()>,
    open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Proxy {
    /// A proxy, passing bytes, to the API server of the kubeconfig `from`;
    /// writes to `to` the same kubeconfig sent through the proxy.
    pub async fn start(from: &Path, to: &Path) -> Proxy {
        let mut config = kube::config::Kubeconfig::read_from(from).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut upstream = None;
        for cluster in &mut config.clusters {
            let c = cluster.cluster.as_mut().unwrap();
            let server: http::Uri = c.server.as_deref().unwrap().parse().unwrap();
            let authority = server.authority().unwrap().as_str();
            upstream = Some(authority.parse::<SocketAddr>().unwrap());
            c.server = Some(format!("https://127.0.0.1:{port}"));
        }
        std::fs::write(to, serde_json::to_string(&config).unwrap()).unwrap();
        let upstream = upstream.expect("a cluster in the kubeconfig");
        let (held, _) = watch::channel(false);
        let gate = held.subscribe();
        let open: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>> = Arc::default();
        let tracked = open.clone();
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut gate = gate.clone();
                let connection = tokio::spawn(async move {
                    if gate.wait_for(|h| !*h).await.is_err() {
                        return;
                    }
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    tokio::join!(pump(cr, sw, gate.clone()), pump(sr, cw, gate));
                });
                let mut open = tracked.lock().unwrap();
                open.retain(|c| !c.is_finished());
                open.push(connection);
            }
        });
        Proxy { held, accept, open }
    }

    /// Stops every byte until [`Proxy::release`].
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Lets bytes move again.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Drops every open connection with the bytes it held, then lets new
    /// ones through.
    pub fn cut(&self) {
        for connection in self.open.lock().unwrap().drain(..) {
            connection.abort();
        }
        self.release();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies `from` to `to`, moving nothing while the gate is held; ends (and
/// closes `to`) when `from` ends, once released.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut gate: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if gate.wait_for(|h| !*h).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if gate.wait_for(|h| !*h).await.is_err() {
            return;
        }
        if n == 0 || to.write_all(&buf[..n]).await.is_err() {
            let _ = to.shutdown().await;
            return;
        }
    }
}
