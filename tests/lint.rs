//! `kubectl bellows lint`: the shipped binary on the examples (clean) and
//! on manifests that would stall, without a cluster.

use std::process::Command;

fn lint(files: &[&std::path::Path]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bellows"))
        .arg("lint")
        .args(files)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn repo(path: &str) -> std::path::PathBuf {
    std::path::Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("run through cargo"))
        .join(path)
}

#[test]
fn every_example_passes_the_lint() {
    let examples: Vec<_> = std::fs::read_dir(repo("examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let paths: Vec<&std::path::Path> = examples.iter().map(|p| p.as_path()).collect();
    let (code, out) = lint(&paths);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(" 0 error(s), 0 warning(s)"), "{out}");
    let rollouts: usize = out
        .split(" SchemaRollout(s)")
        .next()
        .unwrap()
        .rsplit('\n')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rollouts >= 6, "{out}");
}

#[test]
fn an_unsafe_expand_a_commit_and_a_flagged_contract_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rollouts.yaml");
    std::fs::write(
        &file,
        r#"
apiVersion: bellows.dev/v1alpha1
kind: SchemaRollout
metadata: {name: unsafe}
spec:
  workloads: [{kind: Deployment, name: api, version: {image: {container: api, tag: "2"}}}]
  database: {engine: postgres, secretRef: {name: db, key: url}}
  expand:
    sql:
      - ALTER TABLE users ADD COLUMN display_name text
      - ALTER TABLE users RENAME COLUMN full_name TO name
      - |
        -- bellows:allow drop-column
        ALTER TABLE users DROP COLUMN legacy
  contract:
    sql: [CREATE INDEX users_name ON users (display_name)]
---
apiVersion: bellows.dev/v1alpha1
kind: SchemaRollout
metadata: {name: commits}
spec:
  workloads: [{kind: Deployment, name: api, version: {image: {container: api, tag: "2"}}}]
  database: {engine: mysql, secretRef: {name: db, key: url}}
  expand:
    sql: [CREATE TABLE t_commit (x int), COMMIT, SELECT 1/0]
  contract:
    sql: [DROP TABLE t_commit]
"#,
    )
    .unwrap();
    let (code, out) = lint(&[&file]);
    assert_eq!(code, Some(1), "{out}");
    for line in [
        "unsafe: error: spec.expand.sql[1] (ALTER TABLE users RENAME COLUMN full_name TO name): rename-column:",
        "unsafe: allowed: expand: statement 3: drop-column",
        "unsafe: warning: spec.contract.sql[0] (CREATE INDEX users_name ON users (display_name)): non-concurrent-index:",
        "commits: error: spec.expand.sql[1] (COMMIT): COMMIT is transaction control",
        "2 SchemaRollout(s): 2 error(s), 1 warning(s)",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}
