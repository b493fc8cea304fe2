use super::rules::{self, Rule};
use super::*;
use Engine::{Mysql, Postgres};

fn one(engine: Engine, step: Step, sql: &str) -> Statement {
    analyse(engine, step, &[sql.to_owned()], &[]).remove(0)
}

/// The ids of the rules `sql` breaks in `step`.
fn ids(engine: Engine, step: Step, sql: &str) -> Vec<&'static str> {
    let s = one(engine, step, sql);
    assert!(s.parsed, "{engine:?} could not parse {sql}");
    s.findings.iter().map(|f| f.rule.id).collect()
}

/// `sql` breaks `rule` in expand on `engine`, and the rule's own safe
/// alternative `safe` breaks nothing.
fn flags(engine: Engine, rule: &Rule, sql: &str, safe: &str) {
    assert_eq!(
        ids(engine, Step::Expand, sql),
        [rule.id],
        "{engine:?}: {sql}"
    );
    assert_eq!(
        ids(engine, Step::Expand, safe),
        [] as [&str; 0],
        "{engine:?}: {safe}"
    );
}

#[test]
fn drop_table() {
    for e in [Postgres, Mysql] {
        flags(
            e,
            &rules::DROP_TABLE,
            "DROP TABLE users",
            "CREATE VIEW users_v AS SELECT 1",
        );
    }
}

#[test]
fn drop_column() {
    for e in [Postgres, Mysql] {
        flags(
            e,
            &rules::DROP_COLUMN,
            "ALTER TABLE users DROP COLUMN full_name",
            "ALTER TABLE users ADD COLUMN display_name text",
        );
    }
}

#[test]
fn rename_table() {
    flags(
        Postgres,
        &rules::RENAME_TABLE,
        "ALTER TABLE users RENAME TO people",
        "CREATE TABLE people (id int)",
    );
    flags(
        Mysql,
        &rules::RENAME_TABLE,
        "RENAME TABLE users TO people",
        "CREATE TABLE people (id int)",
    );
    flags(
        Mysql,
        &rules::RENAME_TABLE,
        "ALTER TABLE users RENAME TO people",
        "CREATE TABLE people (id int)",
    );
}

#[test]
fn rename_column() {
    for e in [Postgres, Mysql] {
        flags(
            e,
            &rules::RENAME_COLUMN,
            "ALTER TABLE users RENAME COLUMN full_name TO display_name",
            "ALTER TABLE users ADD COLUMN display_name text",
        );
    }
    // MySQL's CHANGE renames and retypes at once.
    assert_eq!(
        ids(
            Mysql,
            Step::Expand,
            "ALTER TABLE users CHANGE full_name display_name varchar(255)"
        ),
        ["change-column-type", "rename-column"]
    );
}

#[test]
fn change_column_type() {
    flags(
        Postgres,
        &rules::CHANGE_COLUMN_TYPE,
        "ALTER TABLE users ALTER COLUMN age TYPE bigint",
        "ALTER TABLE users ADD COLUMN age2 bigint",
    );
    flags(
        Mysql,
        &rules::CHANGE_COLUMN_TYPE,
        "ALTER TABLE users MODIFY COLUMN age bigint",
        "ALTER TABLE users ADD COLUMN age2 bigint",
    );
}

#[test]
fn add_not_null_column() {
    for e in [Postgres, Mysql] {
        flags(
            e,
            &rules::ADD_NOT_NULL_COLUMN,
            "ALTER TABLE users ADD COLUMN tier int NOT NULL",
            "ALTER TABLE users ADD COLUMN tier int NOT NULL DEFAULT 0",
        );
    }
}

#[test]
fn set_not_null() {
    flags(
        Postgres,
        &rules::SET_NOT_NULL,
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL",
        "ALTER TABLE users ALTER COLUMN email DROP NOT NULL",
    );
    // MySQL has no SET NOT NULL: MODIFY ... NOT NULL also retypes.
    assert_eq!(
        ids(
            Mysql,
            Step::Expand,
            "ALTER TABLE users MODIFY email varchar(255) NOT NULL"
        ),
        ["change-column-type", "set-not-null"]
    );
}

#[test]
fn drop_default() {
    for e in [Postgres, Mysql] {
        flags(
            e,
            &rules::DROP_DEFAULT,
            "ALTER TABLE users ALTER COLUMN tier DROP DEFAULT",
            "ALTER TABLE users ALTER COLUMN tier SET DEFAULT 1",
        );
    }
}

#[test]
fn drop_constraint() {
    flags(
        Postgres,
        &rules::DROP_CONSTRAINT,
        "ALTER TABLE users DROP CONSTRAINT users_email_key",
        "ALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org) REFERENCES orgs (id) NOT VALID",
    );
    flags(
        Mysql,
        &rules::DROP_CONSTRAINT,
        "ALTER TABLE users DROP FOREIGN KEY users_org_fk",
        "ALTER TABLE users ADD COLUMN org int",
    );
}

#[test]
fn non_concurrent_index_on_postgres_only() {
    flags(
        Postgres,
        &rules::NON_CONCURRENT_INDEX,
        "CREATE INDEX users_email ON users (email)",
        "CREATE INDEX CONCURRENTLY users_email ON users (email)",
    );
    // MySQL builds indexes online (ALGORITHM=INPLACE) and has no CONCURRENTLY.
    assert_eq!(
        ids(
            Mysql,
            Step::Expand,
            "CREATE INDEX users_email ON users (email)"
        ),
        [] as [&str; 0]
    );
}

#[test]
fn constraint_not_valid_on_postgres_only() {
    flags(
        Postgres,
        &rules::CONSTRAINT_NOT_VALID,
        "ALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org) REFERENCES orgs (id)",
        "ALTER TABLE users ADD CONSTRAINT users_org_fk FOREIGN KEY (org) REFERENCES orgs (id) NOT VALID",
    );
    flags(
        Postgres,
        &rules::CONSTRAINT_NOT_VALID,
        "ALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0)",
        "ALTER TABLE users ADD CONSTRAINT age_positive CHECK (age > 0) NOT VALID",
    );
}

#[test]
fn truncate() {
    for e in [Postgres, Mysql] {
        flags(
            e,
            &rules::TRUNCATE,
            "TRUNCATE TABLE sessions",
            "DELETE FROM sessions WHERE expired",
        );
    }
}

#[test]
fn drop_schema_view_and_type() {
    for e in [Postgres, Mysql] {
        flags(
            e,
            &rules::DROP_SCHEMA,
            "DROP SCHEMA legacy",
            "CREATE SCHEMA next",
        );
        flags(
            e,
            &rules::DROP_VIEW,
            "DROP VIEW users_v",
            "CREATE VIEW users_v2 AS SELECT 1",
        );
    }
    flags(
        Postgres,
        &rules::DROP_VIEW,
        "DROP MATERIALIZED VIEW totals",
        "CREATE MATERIALIZED VIEW totals2 AS SELECT 1",
    );
    flags(
        Postgres,
        &rules::DROP_TYPE,
        "DROP TYPE mood",
        "CREATE TYPE mood2 AS ENUM ('sad', 'ok')",
    );
}

#[test]
fn drop_cascade_drops_what_it_does_not_name() {
    for (sql, also) in [
        ("DROP SCHEMA zz CASCADE", "drop-schema"),
        ("DROP VIEW v CASCADE", "drop-view"),
        ("DROP TYPE mood CASCADE", "drop-type"),
    ] {
        assert_eq!(
            ids(Postgres, Step::Expand, sql),
            [also, "drop-cascade"],
            "{sql}"
        );
    }
    assert_eq!(
        ids(Postgres, Step::Expand, "DROP FUNCTION users_sync() CASCADE"),
        ["drop-cascade"]
    );
    assert_eq!(
        ids(Postgres, Step::Expand, "DROP FUNCTION users_sync()"),
        [] as [&str; 0]
    );
}

#[test]
fn move_table_is_read_from_the_tokens() {
    // sqlparser 0.59 does not parse SET SCHEMA; the tokens say enough.
    for sql in [
        "ALTER TABLE mv SET SCHEMA zz2",
        "ALTER TABLE IF EXISTS ONLY public.mv SET SCHEMA zz2",
        "ALTER MATERIALIZED VIEW totals SET SCHEMA archive",
    ] {
        let s = one(Postgres, Step::Expand, sql);
        assert_eq!(
            s.findings.iter().map(|f| f.rule.id).collect::<Vec<_>>(),
            ["move-table"],
            "{sql}"
        );
    }
    assert!(
        one(Postgres, Step::Contract, "ALTER TABLE mv SET SCHEMA zz2")
            .findings
            .is_empty()
    );
    assert!(
        one(
            Postgres,
            Step::Expand,
            "ALTER TABLE t SET (fillfactor = 70)"
        )
        .findings
        .is_empty()
    );
}

#[test]
fn add_unique_or_primary_key() {
    for e in [Postgres, Mysql] {
        flags(
            e,
            &rules::ADD_UNIQUE,
            "ALTER TABLE users ADD UNIQUE (email)",
            "ALTER TABLE users ADD COLUMN email2 text",
        );
        flags(
            e,
            &rules::ADD_UNIQUE,
            "ALTER TABLE users ADD CONSTRAINT users_pk PRIMARY KEY (id)",
            "CREATE TABLE users2 (id int PRIMARY KEY)",
        );
        // Building the index blocks writes: flagged after expand too.
        assert_eq!(
            ids(e, Step::Contract, "ALTER TABLE users ADD UNIQUE (email)"),
            ["add-unique"]
        );
    }
}

#[test]
fn contract_may_destroy_but_is_flagged_for_write_blocking() {
    for e in [Postgres, Mysql] {
        assert_eq!(
            ids(e, Step::Contract, "ALTER TABLE users DROP COLUMN full_name"),
            [] as [&str; 0]
        );
        assert_eq!(
            ids(e, Step::Contract, "DROP TABLE users_old"),
            [] as [&str; 0]
        );
    }
    assert_eq!(
        ids(Postgres, Step::Contract, "CREATE INDEX i ON users (email)"),
        ["non-concurrent-index"]
    );
    assert_eq!(
        ids(
            Postgres,
            Step::Transition,
            "ALTER TABLE users ALTER COLUMN age TYPE bigint"
        ),
        ["change-column-type"]
    );
}

#[test]
fn every_rule_has_an_id_reason_and_fix_and_is_found_by_id() {
    let mut seen = std::collections::BTreeSet::new();
    for rule in rules::ALL {
        assert!(seen.insert(rule.id), "{} twice", rule.id);
        assert!(
            !rule.reason.is_empty() && !rule.fix.is_empty(),
            "{}",
            rule.id
        );
        assert_eq!(rules::by_id(rule.id), Some(rule));
    }
    assert_eq!(rules::by_id("no-such-rule"), None);
}

#[test]
fn allowances_on_the_phase_or_in_a_comment() {
    let drop = "ALTER TABLE users DROP COLUMN legacy";
    let phase = analyse(
        Postgres,
        Step::Expand,
        &[drop.into()],
        &["drop-column".into()],
    );
    assert!(phase[0].findings[0].allowed);
    assert_eq!(phase[0].violations().count(), 0);
    let inline = format!("-- bellows:allow drop-column\n{drop}");
    let s = one(Mysql, Step::Expand, &inline);
    assert!(s.findings[0].allowed);
    let block = format!("{drop} /* bellows:allow truncate, drop-column */");
    assert!(one(Postgres, Step::Expand, &block).findings[0].allowed);
    // Another rule's allowance does not count.
    let other = format!("-- bellows:allow drop-table\n{drop}");
    assert_eq!(one(Postgres, Step::Expand, &other).violations().count(), 1);
}

#[test]
fn transaction_control_is_found_in_every_form() {
    for (sql, name) in [
        ("COMMIT", "COMMIT"),
        ("commit work", "COMMIT"),
        ("BEGIN", "BEGIN"),
        ("START TRANSACTION", "START TRANSACTION"),
        ("ROLLBACK", "ROLLBACK"),
        ("SAVEPOINT s1", "SAVEPOINT"),
        ("RELEASE SAVEPOINT s1", "RELEASE"),
        (
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET TRANSACTION",
        ),
        ("CREATE TABLE t (x int); COMMIT", "COMMIT"),
    ] {
        for e in [Postgres, Mysql] {
            assert_eq!(
                one(e, Step::Expand, sql).transaction_control.as_deref(),
                Some(name),
                "{e:?}: {sql}"
            );
        }
    }
    assert_eq!(
        one(Postgres, Step::Expand, "END")
            .transaction_control
            .as_deref(),
        Some("END")
    );
    assert_eq!(
        one(Postgres, Step::Expand, "ABORT")
            .transaction_control
            .as_deref(),
        Some("ABORT")
    );
    assert_eq!(
        one(Mysql, Step::Expand, "LOCK TABLES users WRITE")
            .transaction_control
            .as_deref(),
        Some("LOCK TABLES")
    );
    // Not transaction control: PL/pgSQL's BEGIN inside a function body,
    // a MySQL trigger's BEGIN ... END, MariaDB's BEGIN NOT ATOMIC, a
    // column named commit.
    for (e, sql) in [
        (
            Postgres,
            "CREATE FUNCTION f() RETURNS trigger AS $$ BEGIN RETURN NEW; END $$ LANGUAGE plpgsql",
        ),
        (
            Mysql,
            "CREATE TRIGGER t BEFORE INSERT ON users FOR EACH ROW BEGIN SET NEW.a = 1; END",
        ),
        (Mysql, "BEGIN NOT ATOMIC SELECT 1; END"),
        (Postgres, "SELECT \"commit\" FROM t"),
        (Postgres, "UPDATE t SET x = 1 -- then COMMIT"),
    ] {
        assert_eq!(
            one(e, Step::Expand, sql).transaction_control,
            None,
            "{e:?}: {sql}"
        );
    }
}

#[test]
fn statements_postgres_refuses_in_a_transaction_run_alone() {
    for sql in [
        "CREATE INDEX CONCURRENTLY i ON users (email)",
        "create unique index concurrently i on users (email)",
        "DROP INDEX CONCURRENTLY i",
        "REINDEX INDEX CONCURRENTLY i",
        "REINDEX (VERBOSE) TABLE CONCURRENTLY users",
        "VACUUM ANALYZE users",
        "CREATE DATABASE other",
        "ALTER SYSTEM SET work_mem = '64MB'",
    ] {
        assert_eq!(one(Postgres, Step::Expand, sql).run, Run::Alone, "{sql}");
    }
    for sql in [
        "CREATE INDEX i ON users (email)",
        "REINDEX INDEX i",
        "ALTER TABLE users ADD COLUMN x int",
    ] {
        assert_eq!(
            one(Postgres, Step::Expand, sql).run,
            Run::InTransaction,
            "{sql}"
        );
    }
    // MySQL runs every statement alone anyway; nothing to group.
    assert_eq!(one(Mysql, Step::Expand, "VACUUM").run, Run::InTransaction);
}

#[test]
fn a_statement_the_parser_cannot_read_is_not_analysed_but_still_classified() {
    let s = one(
        Postgres,
        Step::Expand,
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY users USING gin (doc jsonb_path_ops) WITH (fastupdate = off) TABLESPACE fast",
    );
    assert_eq!(s.run, Run::Alone);
    let odd = one(
        Postgres,
        Step::Expand,
        "ALTER TABLE users SPLIT PARTITION p INTO (q)",
    );
    assert!(!odd.parsed);
    assert!(odd.findings.is_empty());
}

#[test]
fn the_examples_expand_sql_is_clean() {
    let pg = [
        "ALTER TABLE users ADD COLUMN display_name text",
        "CREATE FUNCTION users_sync_name() RETURNS trigger AS $$\nBEGIN\n  NEW.display_name := coalesce(NEW.display_name, NEW.full_name);\n  RETURN NEW;\nEND $$ LANGUAGE plpgsql",
        "CREATE TRIGGER users_sync_name BEFORE INSERT OR UPDATE ON users FOR EACH ROW EXECUTE FUNCTION users_sync_name()",
        "UPDATE users SET display_name = full_name WHERE display_name IS NULL",
    ];
    let pg: Vec<String> = pg.iter().map(|s| s.to_string()).collect();
    for s in analyse(Postgres, Step::Expand, &pg, &[]) {
        assert_eq!(
            (s.violations().count(), s.transaction_control.clone(), s.run),
            (0, None, Run::InTransaction),
            "{}",
            pg[s.index]
        );
    }
}

#[test]
fn the_rule_table_in_the_design_lists_every_rule() {
    let root = std::env::var_os("CARGO_MANIFEST_DIR").expect("run through cargo");
    let design =
        std::fs::read_to_string(std::path::Path::new(&root).join("docs/design.md")).unwrap();
    for rule in rules::ALL {
        let row = design
            .lines()
            .find(|l| l.starts_with(&format!("| `{}` |", rule.id)))
            .unwrap_or_else(|| panic!("docs/design.md has no row for {}", rule.id));
        assert!(row.contains(rule.reason) && row.contains(rule.fix), "{row}");
    }
}

#[test]
fn statements_are_grouped_around_the_ones_that_run_alone() {
    let statements: Vec<String> = [
        "CREATE TABLE t (x int)",
        "INSERT INTO t VALUES (1)",
        "CREATE INDEX CONCURRENTLY t_x ON t (x)",
        "ANALYZE t",
    ]
    .map(String::from)
    .to_vec();
    let runs = runs(Postgres, &statements);
    assert_eq!(
        groups(&runs),
        [
            (0..2, Run::InTransaction),
            (2..3, Run::Alone),
            (3..4, Run::InTransaction)
        ]
    );
    assert_eq!(
        grouping(Postgres, &statements).as_deref(),
        Some("statements 1-2 in one transaction, 3 alone, 4 in one transaction")
    );
    assert_eq!(
        grouping(Postgres, &statements[..2]),
        None,
        "all in one transaction"
    );
    assert_eq!(grouping(Mysql, &statements), None);
    assert_eq!(created_index(&statements[2]).as_deref(), Some("t_x"));
    assert_eq!(
        created_index("CREATE INDEX CONCURRENTLY \"Odd\" ON t (x)").as_deref(),
        Some("Odd")
    );
    assert_eq!(created_index(&statements[0]), None);
}

#[test]
fn an_item_the_tokenizer_cannot_read_is_unreadable_and_nothing_else() {
    // PostgreSQL reads this E-string (bytes of UTF-8 in \x escapes);
    // sqlparser's tokenizer does not, so the ROLLBACK after it is unseen.
    let item = "UPDATE pn SET n = E'caf\\xC3\\xA9' WHERE id = 1; ROLLBACK";
    let s = one(Postgres, Step::Expand, item);
    let why = s.unreadable.expect("unreadable");
    assert!(why.contains("line 1, column"), "{why}");
    assert!(!s.parsed && s.findings.is_empty());
    let r = report(Postgres, Step::Expand, &[item.into()], &[]);
    assert_eq!(r.unreadable.len(), 1, "{r:?}");
    assert!(r.unreadable[0].starts_with("spec.expand.sql[0] (UPDATE pn SET n = E'"));
    assert!(r.unparsed.is_empty(), "not a second finding: {r:?}");
    // Allowed only by the comment lines the item starts with.
    let allowed = format!("-- bellows:allow unreadable\n{item}");
    assert!(
        report(Postgres, Step::Expand, &[allowed], &[])
            .unreadable
            .is_empty()
    );
    let trailing = format!("{item} -- bellows:allow unreadable");
    assert_eq!(
        report(Postgres, Step::Expand, &[trailing], &[])
            .unreadable
            .len(),
        1
    );
    // Readable items are not.
    assert_eq!(
        one(Postgres, Step::Expand, "SELECT 'café'").unreadable,
        None
    );
}

#[test]
fn a_begin_atomic_body_is_one_statement_not_transaction_control() {
    for sql in [
        "CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
        "CREATE FUNCTION sign_of(x int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN x > 0 THEN 1 ELSE 0 END; SELECT 2; END",
        "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC INSERT INTO t VALUES (1); END; CREATE TABLE u (x int)",
    ] {
        let s = one(Postgres, Step::Expand, sql);
        assert_eq!(s.transaction_control, None, "{sql}");
        assert_eq!(s.unreadable, None, "{sql}");
    }
    // What follows the body is read again.
    assert_eq!(
        one(
            Postgres,
            Step::Expand,
            "CREATE FUNCTION one() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; COMMIT"
        )
        .transaction_control
        .as_deref(),
        Some("COMMIT")
    );
}

#[test]
fn mysql_executable_comments_are_read_as_the_statements_they_hold() {
    let s = one(Mysql, Step::Expand, "/*!50000 DROP TABLE legacy */");
    assert!(s.parsed);
    assert_eq!(
        s.findings.iter().map(|f| f.rule.id).collect::<Vec<_>>(),
        ["drop-table"]
    );
    assert_eq!(
        one(Mysql, Step::Expand, "/*!40000 LOCK TABLES users WRITE */")
            .transaction_control
            .as_deref(),
        Some("LOCK TABLES")
    );
    assert_eq!(
        one(Mysql, Step::Expand, "SELECT 1 /*M!100100 ; COMMIT */")
            .transaction_control
            .as_deref(),
        Some("COMMIT")
    );
    // On PostgreSQL it is a comment.
    let pg = one(
        Postgres,
        Step::Expand,
        "/*!50000 DROP TABLE legacy */ SELECT 1",
    );
    assert!(pg.findings.is_empty());
}

#[test]
fn settings_bellows_owns_are_found_in_every_form() {
    for (e, sql, setting) in [
        (
            Postgres,
            "SET LOCAL statement_timeout = 0",
            "statement_timeout",
        ),
        (Postgres, "set lock_timeout to default", "lock_timeout"),
        (
            Postgres,
            "SET SESSION statement_timeout = '1h'",
            "statement_timeout",
        ),
        (Postgres, "RESET statement_timeout", "statement_timeout"),
        (Postgres, "RESET ALL", "ALL"),
        (
            Postgres,
            "SELECT set_config('statement_timeout', '0', true)",
            "statement_timeout",
        ),
        (
            Postgres,
            "UPDATE t SET x = 1; SET lock_timeout = 0",
            "lock_timeout",
        ),
        (
            Mysql,
            "SET SESSION lock_wait_timeout = 31536000",
            "lock_wait_timeout",
        ),
        (
            Mysql,
            "SET @@session.max_statement_time = 0",
            "max_statement_time",
        ),
        (
            Mysql,
            "SET STATEMENT max_statement_time = 0 FOR SELECT SLEEP(100)",
            "max_statement_time",
        ),
    ] {
        let read = tokenized(e, &[sql.to_owned()]).remove(0);
        assert_eq!(read.owned_setting.as_deref(), Some(setting), "{e:?}: {sql}");
    }
    for (e, sql) in [
        (Postgres, "SET search_path = app"),
        (Postgres, "UPDATE t SET statement_timeout = 1"),
        (Postgres, "SELECT set_config('search_path', 'app', false)"),
        (Mysql, "SET NAMES utf8mb4"),
    ] {
        let read = tokenized(e, &[sql.to_owned()]).remove(0);
        assert_eq!(read.owned_setting, None, "{e:?}: {sql}");
    }
    assert_eq!(
        one(Mysql, Step::Expand, "SET autocommit = 0")
            .transaction_control
            .as_deref(),
        Some("SET autocommit")
    );
}
