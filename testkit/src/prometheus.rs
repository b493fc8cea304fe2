//! A throwaway Prometheus from the system binary (Debian's `prometheus`):
//! its data in a temp dir, a free loopback port, scraping the given
//! targets every second, over HTTP or HTTPS with a throwaway CA; and a
//! metrics endpoint for it to scrape whose text a test sets.

use crate::process::{Proc, free_port, run};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub struct Prometheus {
    pub port: u16,
    dir: std::path::PathBuf,
    /// Whether it serves HTTPS (`web.yml` in `dir`).
    tls: bool,
    proc: Proc,
}

impl Prometheus {
    /// Starts Prometheus in `dir` scraping `targets` (`host:port`, path
    /// `/metrics`) every second. It answers queries a moment later: wait
    /// for [`Prometheus::ready`].
    pub fn start(dir: &Path, targets: &[String]) -> Prometheus {
        Self::with_jobs(dir, &static_job(targets), false)
    }

    /// Starts Prometheus in `dir` scraping every second the targets of the
    /// `file_sd` files `*.json` in `targets` (read again as they change:
    /// apps write and remove their own).
    pub fn discovering(dir: &Path, targets: &Path) -> Prometheus {
        Self::with_jobs(
            dir,
            &format!(
                "- job_name: discovered\n  file_sd_configs:\n  - files: ['{}/*.json']\n    refresh_interval: 1s\n",
                targets.display()
            ),
            false,
        )
    }

    /// Starts Prometheus like [`Prometheus::start`], serving HTTPS only,
    /// with a certificate for 127.0.0.1 that a throwaway CA (made with
    /// `openssl`) signed; returns it and the CA's certificate (PEM).
    /// [`Prometheus::ready`] speaks HTTP: wait for an answer instead.
    pub fn start_tls(dir: &Path, targets: &[String]) -> (Prometheus, String) {
        std::fs::create_dir_all(dir).unwrap();
        // Each line one `openssl` command, its words split at spaces.
        let openssl = |line: &str| {
            run(
                "openssl",
                Command::new("openssl")
                    .current_dir(dir)
                    .args(line.split_whitespace()),
            )
        };
        let key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
        openssl(&format!(
            "req -x509 {key} -keyout ca.key -out ca.crt -days 2 -subj /CN=bellows-test-ca"
        ));
        openssl(&format!(
            "req {key} -keyout server.key -out server.csr -subj /CN=127.0.0.1"
        ));
        std::fs::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        openssl(
            "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
             -out server.crt -days 2 -extfile server.ext",
        );
        std::fs::write(
            dir.join("web.yml"),
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
        )
        .unwrap();
        let prometheus = Self::with_jobs(dir, &static_job(targets), true);
        let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
        (prometheus, ca)
    }

    fn with_jobs(dir: &Path, jobs: &str, tls: bool) -> Prometheus {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"
            ),
        )
        .unwrap();
        let port = free_port();
        let proc = spawn(dir, port, tls);
        Prometheus {
            port,
            dir: dir.to_owned(),
            tls,
            proc,
        }
    }

    /// Starts it again after [`Prometheus::stop`], on the same port and
    /// data.
    pub fn start_again(&mut self) {
        self.proc = spawn(&self.dir, self.port, self.tls);
    }

    /// Its HTTP API's base URL.
    pub fn address(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Waits until it says it is ready to answer queries.
    pub async fn ready(&self) {
        let port = self.port;
        crate::wait::until(
            "Prometheus ready",
            std::time::Duration::from_secs(60),
            || async move {
                let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .ok()?;
                conn.write_all(b"GET /-/ready HTTP/1.0\r\n\r\n")
                    .await
                    .ok()?;
                let mut answer = String::new();
                conn.read_to_string(&mut answer).await.ok()?;
                answer
                    .split_whitespace()
                    .nth(1)
                    .filter(|code| *code == "200")
                    .map(|_| ())
            },
        )
        .await;
    }

    /// Stops it (SIGTERM).
    pub fn stop(&mut self) {
        self.proc.stop(libc::SIGTERM);
    }
}

/// A scrape job of `targets` (`host:port`, path `/metrics`).
fn static_job(targets: &[String]) -> String {
    let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    format!(
        "- job_name: test\n  static_configs:\n  - targets: [{}]\n",
        list.join(", ")
    )
}

fn spawn(dir: &Path, port: u16, tls: bool) -> Proc {
    let mut cmd = Command::new("prometheus");
    if tls {
        cmd.arg(format!(
            "--web.config.file={}",
            dir.join("web.yml").display()
        ));
    }
    cmd.arg(format!(
        "--config.file={}",
        dir.join("prometheus.yml").display()
    ))
    .arg(format!(
        "--storage.tsdb.path={}",
        dir.join("data").display()
    ))
    .arg(format!("--web.listen-address=127.0.0.1:{port}"));
    Proc::spawn("prometheus", cmd, &dir.join("prometheus.log"))
}

/// A `/metrics` endpoint on a loopback port serving the text last set.
pub struct Endpoint {
    /// `127.0.0.1:port`, a scrape target.
    pub target: String,
    text: Arc<Mutex<String>>,
}

impl Endpoint {
    /// Serves `text` (Prometheus text format) until the test ends.
    pub async fn serve(text: &str) -> Endpoint {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        let text = Arc::new(Mutex::new(text.to_owned()));
        let served = text.clone();
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let body = served.lock().unwrap().clone();
                tokio::spawn(async move {
                    let mut request = [0u8; 4096];
                    let _ = conn.read(&mut request).await;
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(answer.as_bytes()).await;
                });
            }
        });
        Endpoint { target, text }
    }

    /// Serves `text` from now on.
    pub fn set(&self, text: &str) {
        *self.text.lock().unwrap() = text.to_owned();
    }
}
