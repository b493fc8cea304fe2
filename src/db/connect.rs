//! From `spec.database` and the Secrets it names to connect options, and a
//! small pool per database, reused across reconciles.

use super::{DbError, Timeouts};
use crate::api::{DatabaseSpec, Engine, SecretKeyRef, SslMode, parse_duration};
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use sha2::{Digest, Sha256};
use sqlx::ConnectOptions;
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgSslMode};
use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long to wait for a connection (connect included).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections per database: one for a phase, one for checks and ledger.
const MAX_CONNECTIONS: u32 = 2;

/// A resolved database: how to connect, and how to name it in messages.
#[derive(Clone)]
pub struct Target {
    /// Engine-specific connect options (hold the credentials).
    options: Options,
    /// Pool cache key: a digest of everything that identifies the login.
    key: String,
    /// Human name, e.g. `postgres database "shop" (Secret shop-db/url)`.
    pub label: String,
    /// Timeouts of inline SQL and checks.
    pub timeouts: Timeouts,
    /// Credential strings to scrub from any message.
    secrets: Vec<String>,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
enum Options {
    Postgres(PgConnectOptions),
    Mysql(MySqlConnectOptions),
}

/// A connection pool of either engine.
#[derive(Clone)]
pub(super) enum Pool {
    Postgres(PgPool),
    Mysql(MySqlPool),
}

/// Pools by database, shared by every reconcile, each with a flag set once
/// its ledger table is known to exist.
#[derive(Default)]
pub struct Pools(Mutex<HashMap<String, Entry>>);

/// A pool and whether its ledger table is known to exist.
type Entry = (Pool, Arc<OnceCell<()>>);

impl Pools {
    /// The pool of `target`, created (lazily connecting) on first use.
    pub(super) fn get(&self, target: &Target) -> Pool {
        self.entry(target).0
    }

    /// The pool of `target`, its ledger table created if absent: once per
    /// pool, not on every call.
    pub(super) async fn with_ledger(&self, target: &Target) -> Result<Pool, sqlx::Error> {
        let (pool, ready) = self.entry(target);
        ready
            .get_or_try_init(|| async {
                match &pool {
                    Pool::Postgres(p) => super::postgres::ensure_ledger(p).await,
                    Pool::Mysql(p) => super::mysql::ensure_ledger(p).await,
                }
            })
            .await?;
        Ok(pool)
    }

    fn entry(&self, target: &Target) -> Entry {
        let mut pools = self.0.lock().expect("pool cache lock");
        pools
            .entry(target.key.clone())
            .or_insert_with(|| {
                let pool = match &target.options {
                    Options::Postgres(o) => Pool::Postgres(
                        PgPoolOptions::new()
                            .max_connections(MAX_CONNECTIONS)
                            .acquire_timeout(ACQUIRE_TIMEOUT)
                            .idle_timeout(Duration::from_secs(300))
                            .connect_lazy_with(quiet(o)),
                    ),
                    Options::Mysql(o) => Pool::Mysql(
                        MySqlPoolOptions::new()
                            .max_connections(MAX_CONNECTIONS)
                            .acquire_timeout(ACQUIRE_TIMEOUT)
                            .idle_timeout(Duration::from_secs(300))
                            .connect_lazy_with(quiet(o)),
                    ),
                };
                (pool, Arc::default())
            })
            .clone()
    }
}

/// `options` with sqlx's statement logging off, slow statements included:
/// it would print inline SQL, which can hold secrets (`ALTER ROLE ...
/// PASSWORD`).
fn quiet<O: ConnectOptions>(options: &O) -> O {
    options.clone().disable_statement_logging()
}

impl Target {
    /// `text` with every credential string replaced by `***`.
    pub(super) fn scrub(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_owned(), |t, s| t.replace(s.as_str(), "***"))
    }
}

/// Reads the Secrets `spec` names and builds the target.
pub async fn target(
    client: &Client,
    namespace: &str,
    spec: &DatabaseSpec,
) -> Result<Target, DbError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let url = match &spec.secret_ref {
        Some(r) => Some(secret_value(&secrets, r).await?),
        None => None,
    };
    let password = match &spec.password_secret_ref {
        Some(r) => Some(secret_value(&secrets, r).await?),
        None => None,
    };
    let ca = match &spec.ca_secret_ref {
        Some(r) => Some(secret_value(&secrets, r).await?),
        None => None,
    };
    build(spec, url, password, ca)
}

async fn secret_value(secrets: &Api<Secret>, r: &SecretKeyRef) -> Result<String, DbError> {
    crate::secrets::value(secrets, r)
        .await
        .map_err(DbError::Config)
}

/// Builds the target from the spec and the Secret values. Pure.
pub fn build(
    spec: &DatabaseSpec,
    url: Option<String>,
    password: Option<String>,
    ca: Option<String>,
) -> Result<Target, DbError> {
    let duration = |field: &str, value: &Option<String>, default| match value {
        None => Ok(default),
        Some(v) => {
            parse_duration(v).map_err(|e| DbError::Config(format!("spec.database.{field}: {e}")))
        }
    };
    let timeouts = Timeouts {
        lock: duration("lockTimeout", &spec.lock_timeout, DEFAULT_LOCK_TIMEOUT)?,
        statement: duration(
            "statementTimeout",
            &spec.statement_timeout,
            DEFAULT_STATEMENT_TIMEOUT,
        )?,
    };
    let source = match (&spec.secret_ref, &spec.password_secret_ref) {
        (Some(r), _) => format!("Secret {}/{}", r.name, r.key),
        (None, Some(r)) => format!("password in Secret {}/{}", r.name, r.key),
        (None, None) => "no password".to_owned(),
    };
    if let Some(url) = &url {
        check_scheme(spec.engine, &source, url)?;
    }
    let mut secrets: Vec<String> = url.iter().chain(password.iter()).cloned().collect();
    let (options, identity) = match (&url, spec.engine) {
        (Some(url), Engine::Postgres) => {
            let o = PgConnectOptions::from_str(url).map_err(|_| {
                DbError::Config(format!("{source} does not hold a valid postgres URL"))
            })?;
            if let Some(p) = url_password(url) {
                secrets.push(p);
            }
            let id = format!(
                "{}:{}/{}@{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default(),
                o.get_username()
            );
            (Options::Postgres(o), id)
        }
        (Some(url), Engine::Mysql) => {
            let o = MySqlConnectOptions::from_str(url).map_err(|_| {
                DbError::Config(format!("{source} does not hold a valid mysql URL"))
            })?;
            if let Some(p) = url_password(url) {
                secrets.push(p);
            }
            let id = format!(
                "{}:{}/{}@{}",
                o.get_host(),
                o.get_port(),
                o.get_database().unwrap_or_default(),
                o.get_username()
            );
            (Options::Mysql(o), id)
        }
        (None, engine) => {
            let host = spec
                .host
                .as_deref()
                .ok_or_else(|| DbError::Config("spec.database needs secretRef or host".into()))?;
            let user = spec.user.as_deref().unwrap_or(match engine {
                Engine::Postgres => "postgres",
                Engine::Mysql => "root",
            });
            let database = spec.database.as_deref().unwrap_or_default();
            let id = format!("{host}:{}/{database}@{user}", spec.port.unwrap_or_default());
            let options = match engine {
                Engine::Postgres => {
                    let mut o = PgConnectOptions::new_without_pgpass()
                        .host(host)
                        .username(user)
                        .ssl_mode(pg_ssl(spec.ssl_mode));
                    if let Some(port) = spec.port {
                        o = o.port(port);
                    }
                    if !database.is_empty() {
                        o = o.database(database);
                    }
                    if let Some(p) = &password {
                        o = o.password(p);
                    }
                    Options::Postgres(o)
                }
                Engine::Mysql => {
                    let mut o = MySqlConnectOptions::new()
                        .host(host)
                        .username(user)
                        .ssl_mode(mysql_ssl(spec.ssl_mode));
                    if let Some(port) = spec.port {
                        o = o.port(port);
                    }
                    if !database.is_empty() {
                        o = o.database(database);
                    }
                    if let Some(p) = &password {
                        o = o.password(p);
                    }
                    Options::Mysql(o)
                }
            };
            (options, id)
        }
    };
    // The spec's TLS settings win over the URL's, and the pool key covers
    // them: two rollouts with different TLS settings never share a pool.
    let options = match options {
        Options::Postgres(mut o) => {
            if let Some(mode) = spec.ssl_mode {
                o = o.ssl_mode(pg_ssl(Some(mode)));
            }
            if let Some(ca) = &ca {
                o = o.ssl_root_cert_from_pem(ca.as_bytes().to_vec());
            }
            Options::Postgres(o)
        }
        Options::Mysql(mut o) => {
            // The ledger table and the lock are named from it (never from
            // the session's current database, which a phase can change).
            if o.get_database().is_none_or(str::is_empty) {
                return Err(DbError::Config(format!(
                    "the mysql database ({source}) names no database; bellows keeps its ledger in the one it migrates"
                )));
            }
            if let Some(mode) = spec.ssl_mode {
                o = o.ssl_mode(mysql_ssl(Some(mode)));
            }
            if let Some(ca) = &ca {
                o = o.ssl_ca_from_pem(ca.as_bytes().to_vec());
            }
            Options::Mysql(o)
        }
    };
    let engine = match spec.engine {
        Engine::Postgres => "postgres",
        Engine::Mysql => "mysql",
    };
    let mut hasher = Sha256::new();
    hasher.update(identity.as_bytes());
    hasher.update(format!("\0{:?}\0", spec.ssl_mode).as_bytes());
    hasher.update(ca.as_deref().unwrap_or_default().as_bytes());
    for s in &secrets {
        hasher.update(s.as_bytes());
    }
    let key = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let label = format!("{engine} database ({source})");
    Ok(Target {
        options,
        key,
        label,
        timeouts,
        secrets,
    })
}

/// A URL of the other engine (a `mysql://` URL for `engine: postgres`)
/// would be dialled as this engine and time out after a minute with
/// nothing said; refused at once with both named. Only the scheme is
/// shown, never the URL.
fn check_scheme(engine: Engine, source: &str, url: &str) -> Result<(), DbError> {
    let scheme = url
        .split_once("://")
        .map_or("", |(s, _)| s)
        .to_ascii_lowercase();
    let (name, schemes) = match engine {
        Engine::Postgres => ("postgres", ["postgres", "postgresql"]),
        Engine::Mysql => ("mysql", ["mysql", "mariadb"]),
    };
    if schemes.contains(&scheme.as_str()) {
        return Ok(());
    }
    let held = if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric()) {
        "a URL without a scheme".to_owned()
    } else {
        format!("a {scheme}:// URL")
    };
    Err(DbError::Config(format!(
        "spec.database.engine is {name} but {source} holds {held}; use a {}:// URL or change the engine",
        schemes[0]
    )))
}

/// The password part of a URL, for scrubbing.
fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p.to_owned())
        .filter(|p| !p.is_empty())
}

fn pg_ssl(mode: Option<SslMode>) -> PgSslMode {
    match mode.unwrap_or(SslMode::Prefer) {
        SslMode::Disable => PgSslMode::Disable,
        SslMode::Prefer => PgSslMode::Prefer,
        SslMode::Require => PgSslMode::Require,
        SslMode::VerifyCa => PgSslMode::VerifyCa,
        SslMode::VerifyFull => PgSslMode::VerifyFull,
    }
}

fn mysql_ssl(mode: Option<SslMode>) -> MySqlSslMode {
    match mode.unwrap_or(SslMode::Prefer) {
        SslMode::Disable => MySqlSslMode::Disabled,
        SslMode::Prefer => MySqlSslMode::Preferred,
        SslMode::Require => MySqlSslMode::Required,
        SslMode::VerifyCa => MySqlSslMode::VerifyCa,
        SslMode::VerifyFull => MySqlSslMode::VerifyIdentity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(v: serde_json::Value) -> DatabaseSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_bad_url_names_the_secret_not_the_url() {
        let s = spec(json!({"engine": "postgres", "secretRef": {"name": "shop-db", "key": "url"}}));
        let err = build(&s, Some("postgres://u:hunter2@[bad".into()), None, None).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("shop-db/url"), "{text}");
        assert!(
            !text.contains("hunter2") && !text.contains("[bad"),
            "{text}"
        );
    }

    #[test]
    fn a_url_of_the_other_engine_is_refused_naming_both() {
        let s = spec(json!({"engine": "postgres", "secretRef": {"name": "db", "key": "url"}}));
        let err = build(
            &s,
            Some("mysql://app:pw-77@db:3306/shop".into()),
            None,
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "spec.database.engine is postgres but Secret db/url holds a mysql:// URL; use a postgres:// URL or change the engine"
        );
        let s = spec(json!({"engine": "mysql", "secretRef": {"name": "db", "key": "url"}}));
        let err = build(&s, Some("mysql://app:pw-77@db:3306".into()), None, None).unwrap_err();
        assert!(err.to_string().contains("names no database"), "{err}");
        let err = build(&s, Some("pw-77@db/shop".into()), None, None).unwrap_err();
        assert!(
            err.to_string().contains("holds a URL without a scheme"),
            "{err}"
        );
        assert!(!err.to_string().contains("pw-77"), "{err}");
        for url in ["postgresql://db/shop", "POSTGRES://db/shop"] {
            let s = spec(json!({"engine": "postgres", "secretRef": {"name": "db", "key": "url"}}));
            assert!(build(&s, Some(url.into()), None, None).is_ok(), "{url}");
        }
    }

    #[test]
    fn scrub_removes_url_and_password() {
        let s = spec(json!({"engine": "mysql", "secretRef": {"name": "db", "key": "url"}}));
        let t = build(
            &s,
            Some("mysql://app:s3cret@db:3306/shop".into()),
            None,
            None,
        )
        .unwrap();
        assert_eq!(
            t.scrub("denied for mysql://app:s3cret@db:3306/shop, pw s3cret"),
            "denied for ***, pw ***"
        );
        assert!(!format!("{t:?}").contains("s3cret"));
    }

    #[test]
    fn discrete_fields_and_durations() {
        let s = spec(
            json!({"engine": "postgres", "host": "db", "port": 6543, "database": "shop", "user": "app",
                            "passwordSecretRef": {"name": "pw", "key": "p"}, "lockTimeout": "2s", "statementTimeout": "1m"}),
        );
        let t = build(&s, None, Some("pa55".into()), None).unwrap();
        assert_eq!(
            t.timeouts,
            Timeouts {
                lock: Duration::from_secs(2),
                statement: Duration::from_secs(60)
            }
        );
        assert_eq!(t.scrub("pa55"), "***");
        assert!(t.label.contains("pw/p") && !t.label.contains("pa55"));
        let bad = spec(json!({"engine": "postgres", "host": "db", "lockTimeout": "soon"}));
        assert!(
            matches!(build(&bad, None, None, None), Err(DbError::Config(m)) if m.contains("lockTimeout"))
        );
    }
}
