//! A throwaway MariaDB from the system binaries (Debian's mariadb-server):
//! install-db into a temp dir, a free loopback port, and a user `app` with a
//! password for TCP logins.

use crate::process::{Proc, free_port, run};
use crate::wait::until;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Password of the `app` user.
pub const PASSWORD: &str = "mariadb-test-pw-7f3a";

pub struct MariaDb {
    pub port: u16,
    socket: String,
    _proc: Proc,
}

impl MariaDb {
    pub async fn start(dir: &Path) -> MariaDb {
        let data = dir.join("mariadb");
        // A private tmpdir: concurrent servers sharing /tmp collide on the
        // names of their internal temporary tables.
        let tmp = dir.join("mariadb-tmp");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::create_dir_all(&tmp).unwrap();
        run(
            "mariadb-install-db",
            Command::new("mariadb-install-db")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--user=root",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    // Plain I/O: several servers at once can exhaust the
                    // kernel's AIO contexts.
                    "--innodb-use-native-aio=0",
                ])
                .arg(format!("--tmpdir={}", tmp.display())),
        );
        let port = free_port();
        let socket = dir.join("mariadb.sock").display().to_string();
        let mut server = Command::new("/usr/sbin/mariadbd");
        server
            .arg(format!("--datadir={}", data.display()))
            .args([
                "--user=root",
                "--bind-address=127.0.0.1",
                "--skip-name-resolve",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--socket={socket}"))
            .arg(format!("--pid-file={}", dir.join("mariadb.pid").display()))
            .arg("--innodb-flush-log-at-trx-commit=0")
            .arg("--innodb-use-native-aio=0")
            .arg(format!("--tmpdir={}", tmp.display()));
        let proc = Proc::spawn("mariadbd", server, &dir.join("mariadb.log"));
        let db = MariaDb {
            port,
            socket,
            _proc: proc,
        };
        until(
            "MariaDB accepting connections",
            Duration::from_secs(60),
            || async {
                Command::new("mariadb")
                    .args(["--socket", &db.socket, "-uroot", "-e", "SELECT 1"])
                    .output()
                    .ok()
                    .filter(|o| o.status.success())
            },
        )
        .await;
        db.root_sql(&format!(
            "CREATE USER 'app'@'%' IDENTIFIED BY '{PASSWORD}'; GRANT ALL ON *.* TO 'app'@'%';"
        ));
        db
    }

    /// Runs `sql` as root over the socket.
    pub fn root_sql(&self, sql: &str) -> String {
        run(
            "mariadb",
            Command::new("mariadb").args([
                "--socket",
                &self.socket,
                "-uroot",
                "-N",
                "-B",
                "-e",
                sql,
            ]),
        )
        .trim()
        .to_owned()
    }

    /// Creates `database` and returns its URL for `app` with `password`.
    pub fn database(&self, database: &str, password: &str) -> String {
        self.root_sql(&format!("CREATE DATABASE `{database}`"));
        format!("mysql://app:{password}@127.0.0.1:{}/{database}", self.port)
    }
}
