//! A throwaway PostgreSQL from the system binaries: initdb into a temp dir,
//! a free loopback port, trust authentication. As root it runs as the
//! `postgres` user (PostgreSQL refuses root).

use crate::process::{Service, free_port, run};
use crate::wait::until;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Postgres {
    pub port: u16,
    data: PathBuf,
    /// Host in the URLs handed to Jobs (127.0.0.1 unless pods run elsewhere).
    host: String,
    server: Service,
}

/// uid and gid of the `postgres` user when running as root.
fn postgres_user() -> Option<(u32, u32)> {
    // SAFETY: getuid has no preconditions; getpwnam returns a pointer into
    // static storage that is read before any other call.
    unsafe {
        if libc::getuid() != 0 {
            return None;
        }
        let pw = libc::getpwnam(c"postgres".as_ptr());
        assert!(
            !pw.is_null(),
            "user postgres missing: install the postgresql package"
        );
        Some(((*pw).pw_uid, (*pw).pw_gid))
    }
}

fn as_postgres(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(program);
    if let Some((uid, gid)) = postgres_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

impl Postgres {
    /// initdb and start a server under `dir`. With `external_host`, it also
    /// listens on every address and trusts every client, for pods of an
    /// existing cluster that reach it at that host.
    pub async fn start(dir: &Path, external_host: Option<String>) -> Postgres {
        let data = dir.join("pgdata");
        let sock = dir.join("pgsock");
        for d in [&data, &sock] {
            std::fs::create_dir_all(d).unwrap();
            if let Some((uid, gid)) = postgres_user() {
                std::os::unix::fs::chown(d, Some(uid), Some(gid)).unwrap();
            }
        }
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).unwrap();
        run(
            "initdb",
            as_postgres(format!("{BIN}/initdb"))
                .arg("-D")
                .arg(&data)
                .args(["-A", "trust", "-U", "postgres", "--no-sync"]),
        );
        let listen = if external_host.is_some() {
            let hba = data.join("pg_hba.conf");
            let mut rules = std::fs::read_to_string(&hba).unwrap();
            rules.push_str("host all all 0.0.0.0/0 trust\n");
            std::fs::write(&hba, rules).unwrap();
            "listen_addresses=*"
        } else {
            "listen_addresses=127.0.0.1"
        };
        let port = free_port();
        let datadir = data.clone();
        let server = Service::start("postgres", dir, move || {
            let mut server = as_postgres(format!("{BIN}/postgres"));
            server
                .arg("-D")
                .arg(&datadir)
                .args(["-p", &port.to_string(), "-k"])
                .arg(&sock)
                .args(["-c", listen, "-c", "fsync=off", "-c", "max_connections=200"]);
            server
        });
        let host = external_host.unwrap_or_else(|| "127.0.0.1".into());
        let pg = Postgres {
            port,
            data,
            host,
            server,
        };
        pg.wait_ready().await;
        pg
    }

    async fn wait_ready(&self) {
        let port = self.port.to_string();
        until(
            "PostgreSQL accepting connections",
            Duration::from_secs(30),
            || async {
                Command::new(format!("{BIN}/pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
            },
        )
        .await;
    }

    /// Fault injection: a fast shutdown (SIGINT: open transactions are
    /// rolled back, clients disconnected).
    pub fn stop(&self) {
        self.server.stop(libc::SIGINT);
    }

    /// Starts the server again after [`Postgres::stop`] and waits until it
    /// accepts connections.
    pub async fn start_again(&self) {
        self.server.restart();
        self.wait_ready().await;
    }

    /// A URL for `database` as the superuser, as Jobs reach it.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://postgres@{}:{}/{database}",
            self.host, self.port
        )
    }

    /// A URL for `database` as this process reaches it.
    pub fn local_url(&self, database: &str) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database`.
    pub fn create_database(&self, database: &str) {
        self.query("postgres", &format!("CREATE DATABASE \"{database}\""));
    }

    /// From now on, TCP logins need `password` (scram-sha-256).
    pub fn require_password(&self, password: &str) {
        self.query(
            "postgres",
            &format!("ALTER USER postgres PASSWORD '{password}'"),
        );
        let hba = self.data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        let rules: String = rules
            .lines()
            .map(|l| {
                if l.starts_with("host") {
                    l.replace("trust", "scram-sha-256")
                } else {
                    l.to_owned()
                }
            })
            .map(|l| l + "\n")
            .collect();
        std::fs::write(&hba, rules).unwrap();
        self.query("postgres", "SELECT pg_reload_conf()");
    }

    /// From now on the server also speaks TLS, with certificate `cert` and
    /// key `key` (PEM).
    pub fn enable_tls(&self, cert: &str, key: &str) {
        for (name, pem, mode) in [("server.crt", cert, 0o644), ("server.key", key, 0o600)] {
            let path = self.data.join(name);
            std::fs::write(&path, pem).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            if let Some((uid, gid)) = postgres_user() {
                std::os::unix::fs::chown(&path, Some(uid), Some(gid)).unwrap();
            }
        }
        self.query("postgres", "ALTER SYSTEM SET ssl = on");
        self.query("postgres", "SELECT pg_reload_conf()");
    }

    /// Runs `sql` in `database` and returns its unaligned, tuples-only output.
    pub fn query(&self, database: &str, sql: &str) -> String {
        run(
            "psql",
            Command::new("psql").arg(self.local_url(database)).args([
                "-v",
                "ON_ERROR_STOP=1",
                "-tAc",
                sql,
            ]),
        )
        .trim()
        .to_owned()
    }
}

/// The directory for a run's files, traversable by the postgres user.
pub fn shared_dir(dir: &Path) -> PathBuf {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}
