//! A small app that keeps a database busy the way a web service does, for
//! the traffic scenarios and the demo: version 1 reads and writes
//! `users.full_name`, version 2 `users.display_name`.
//!
//! Each process runs one steady loop (by default 80 queries/s): read a
//! random seeded row, update one, insert one, each in its own autocommit
//! statement with bound parameters. Every query is counted as ok or failed
//! (with its error); a read returning NULL for a row that has a name counts
//! as a data gap. The tally is written as JSON to `--tally` every 200 ms and
//! on SIGTERM, after which the process exits 0. A query that fails is never
//! retried: a failed request is what a user would have seen.
//!
//! With `--metrics <addr>` it serves Prometheus metrics per version
//! (`traffic_requests_total{version,result}`, a latency histogram
//! `traffic_request_seconds{version}`) and, with `--metrics-target`,
//! writes a Prometheus `file_sd` target for that address (the tests'
//! Prometheus finds pods that way). `--fail-share 0.05` fails that share
//! of requests on purpose (`injected failure`, no query sent): a version
//! that misses its service level objective, for the demo and the tests.
//!
//! `cargo run --example traffic -- --version 1 --tally /tmp/v1.json`, with
//! `DATABASE_URL` a `postgres://` or `mysql://` URL and table `users (id,
//! full_name)` holding rows 1..=`--rows`.

use clap::Parser;
use serde::Serialize;
use sqlx::{AssertSqlSafe, MySqlPool, PgPool};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Parser)]
struct Args {
    /// 1 uses `full_name`, 2 uses `display_name`.
    #[arg(long, value_parser = ["1", "2"])]
    version: String,
    /// Where the tally is written (replaced atomically).
    #[arg(long)]
    tally: PathBuf,
    /// Queries per second.
    #[arg(long, default_value_t = 80)]
    qps: u32,
    /// Rows 1..=rows exist and have a name.
    #[arg(long, default_value_t = 500)]
    rows: u32,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Serve `/metrics` on this address (`127.0.0.1:0`: any free port).
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
    /// Write a Prometheus `file_sd` target for the metrics address here
    /// (removed on SIGTERM), labelled with `POD_NAMESPACE` and `POD_NAME`.
    #[arg(long, requires = "metrics")]
    metrics_target: Option<PathBuf>,
    /// The `version` label of the metrics (the release, e.g. `2.0.0`;
    /// default: `--version`).
    #[arg(long)]
    release: Option<String>,
    /// Share of requests (0 to 1) that fail on purpose.
    #[arg(long, env = "FAIL_SHARE", default_value_t = 0.0)]
    fail_share: f64,
}

/// Latency buckets of `traffic_request_seconds`, in seconds.
const BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

/// What `/metrics` serves: counts and latencies of this process's requests.
#[derive(Default)]
struct Stats {
    ok: u64,
    failed: u64,
    /// Requests at or under each of [`BUCKETS`].
    buckets: [u64; BUCKETS.len()],
    seconds: f64,
}

impl Stats {
    fn observe(&mut self, ok: bool, took: Duration) {
        if ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        let s = took.as_secs_f64();
        self.seconds += s;
        for (n, le) in self.buckets.iter_mut().zip(BUCKETS) {
            if s <= le {
                *n += 1;
            }
        }
    }

    /// The Prometheus text format of the stats, labelled `version`.
    fn text(&self, version: &str) -> String {
        let v = format!("version=\"{version}\"");
        let mut out = String::from("# TYPE traffic_requests_total counter\n");
        out.push_str(&format!(
            "traffic_requests_total{{{v},result=\"ok\"}} {}\n",
            self.ok
        ));
        out.push_str(&format!(
            "traffic_requests_total{{{v},result=\"failed\"}} {}\n",
            self.failed
        ));
        out.push_str("# TYPE traffic_request_seconds histogram\n");
        for (n, le) in self.buckets.iter().zip(BUCKETS) {
            out.push_str(&format!(
                "traffic_request_seconds_bucket{{{v},le=\"{le}\"}} {n}\n"
            ));
        }
        let count = self.ok + self.failed;
        out.push_str(&format!(
            "traffic_request_seconds_bucket{{{v},le=\"+Inf\"}} {count}\n"
        ));
        out.push_str(&format!(
            "traffic_request_seconds_sum{{{v}}} {}\n",
            self.seconds
        ));
        out.push_str(&format!("traffic_request_seconds_count{{{v}}} {count}\n"));
        out
    }
}

/// Serves `/metrics` from `stats` on `addr`; writes the `file_sd` target
/// to `target` when given. Returns the address bound.
async fn serve_metrics(
    addr: std::net::SocketAddr,
    target: Option<&std::path::Path>,
    stats: Arc<Mutex<Stats>>,
    version: String,
) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let text = stats.lock().unwrap().text(&version);
            async move { ([("content-type", "text/plain; version=0.0.4")], text) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    if let Some(path) = target {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let json = serde_json::json!([{
            "targets": [bound.to_string()],
            "labels": {"namespace": var("POD_NAMESPACE"), "pod": var("POD_NAME")},
        }]);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, json.to_string())?;
        std::fs::rename(&tmp, path)?;
    }
    Ok(bound)
}

/// What the process saw, as the tests read it.
#[derive(Default, Serialize)]
struct Tally {
    version: String,
    ok: u64,
    failed: u64,
    /// Reads of a named row that returned NULL.
    null_reads: u64,
    /// Failed queries by error message (the first 5 distinct messages).
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn record<T>(&mut self, result: Result<T, sqlx::Error>) -> Option<T> {
        match result {
            Ok(v) => {
                self.ok += 1;
                Some(v)
            }
            Err(e) => {
                self.failed += 1;
                let message = e.to_string();
                if self.errors.len() < 5 || self.errors.contains_key(&message) {
                    *self.errors.entry(message).or_default() += 1;
                }
                None
            }
        }
    }

    fn write(&self, path: &std::path::Path) {
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec(self).expect("tally serializes");
        if std::fs::write(&tmp, json).is_ok() {
            std::fs::rename(&tmp, path).ok();
        }
    }
}

enum Db {
    Pg(PgPool),
    My(MySqlPool),
}

impl Db {
    async fn connect(url: &str) -> Result<Db, sqlx::Error> {
        Ok(
            if url.starts_with("mysql:") || url.starts_with("mariadb:") {
                Db::My(MySqlPool::connect(url).await?)
            } else {
                Db::Pg(PgPool::connect(url).await?)
            },
        )
    }

    /// `sql` with `{}` replaced by the engine's placeholders (`$1`.. or `?`).
    fn sql(&self, template: &str) -> String {
        let mut out = String::new();
        for (i, part) in template.split("{}").enumerate() {
            if i > 0 {
                match self {
                    Db::Pg(_) => out.push_str(&format!("${i}")),
                    Db::My(_) => out.push('?'),
                }
            }
            out.push_str(part);
        }
        out
    }

    async fn read(&self, sql: String, id: i32) -> Result<Option<Option<String>>, sqlx::Error> {
        match self {
            Db::Pg(p) => {
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(p)
                    .await
            }
            Db::My(p) => {
                sqlx::query_scalar(AssertSqlSafe(sql))
                    .bind(id)
                    .fetch_optional(p)
                    .await
            }
        }
    }

    /// Runs a write with a name and an optional id.
    async fn write(&self, sql: String, name: &str, id: Option<i32>) -> Result<(), sqlx::Error> {
        match self {
            Db::Pg(p) => {
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(name);
                if let Some(id) = id {
                    q = q.bind(id);
                }
                q.execute(p).await.map(|_| ())
            }
            Db::My(p) => {
                let mut q = sqlx::query(AssertSqlSafe(sql)).bind(name);
                if let Some(id) = id {
                    q = q.bind(id);
                }
                q.execute(p).await.map(|_| ())
            }
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let column = if args.version == "1" {
        "full_name"
    } else {
        "display_name"
    };
    let mut tally = Tally {
        version: args.version.clone(),
        ..Tally::default()
    };
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    // Connecting is the pod starting, not a request: wait for the database.
    let db = loop {
        match Db::connect(&args.database_url).await {
            Ok(db) => break db,
            Err(e) => eprintln!("traffic: connect: {e}"),
        }
        tokio::select! {
            _ = term.recv() => return,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
    };
    let stats = Arc::new(Mutex::new(Stats::default()));
    if let Some(addr) = args.metrics {
        let version = args.release.clone().unwrap_or_else(|| args.version.clone());
        match serve_metrics(addr, args.metrics_target.as_deref(), stats.clone(), version).await {
            Ok(bound) => println!("traffic: metrics on http://{bound}/metrics"),
            Err(e) => eprintln!("traffic: metrics: {e}"),
        }
    }
    let read = db.sql(&format!("SELECT {column} FROM users WHERE id = {{}}"));
    let update = db.sql(&format!("UPDATE users SET {column} = {{}} WHERE id = {{}}"));
    let insert = db.sql(&format!("INSERT INTO users ({column}) VALUES ({{}})"));
    println!("traffic: version {} on {column}", args.version);

    let mut pace = tokio::time::interval(Duration::from_secs(1) / args.qps.max(1));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut report = tokio::time::interval(Duration::from_millis(200));
    for n in 0u64.. {
        tokio::select! {
            _ = term.recv() => break,
            _ = report.tick() => tally.write(&args.tally),
            _ = pace.tick() => {
                let id = 1 + random_below(args.rows as u64) as i32;
                let name = format!("v{}-{n}", args.version);
                let started = Instant::now();
                let failed_before = tally.failed;
                if (random_below(1_000_000) as f64) < args.fail_share * 1_000_000.0 {
                    tally.record::<()>(Err(sqlx::Error::Protocol("injected failure".into())));
                } else {
                    match n % 3 {
                        0 => {
                            let row = tally.record(db.read(read.clone(), id).await);
                            if let Some(Some(None)) = row {
                                tally.null_reads += 1;
                            }
                        }
                        1 => { tally.record(db.write(update.clone(), &name, Some(id)).await); }
                        _ => { tally.record(db.write(insert.clone(), &name, None).await); }
                    }
                }
                let ok = tally.failed == failed_before;
                stats.lock().unwrap().observe(ok, started.elapsed());
            }
        }
    }
    tally.write(&args.tally);
    if let Some(target) = &args.metrics_target {
        std::fs::remove_file(target).ok();
    }
    println!(
        "traffic: stopped: {} ok, {} failed, {} NULL reads",
        tally.ok, tally.failed, tally.null_reads
    );
}

/// A random number below `n`, from the standard library's randomly keyed
/// hasher: enough to spread reads and writes over the rows.
fn random_below(n: u64) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(n);
    hasher.finish() % n.max(1)
}
