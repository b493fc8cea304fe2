//! What inline SQL statements are, read before anything runs: transaction
//! control (refused), settings bellows owns (refused), statements
//! PostgreSQL cannot run in a transaction (run alone), and the lint rules
//! each statement breaks in its phase.
//!
//! Pure: text in, findings out. Statements are read with `sqlparser`
//! (PostgreSQL or MySQL dialect). Its tokenizer must read every item
//! (quotes, dollar quotes, comments): an item it cannot read is refused
//! unless allowed, since what runs alone or ends a transaction cannot be
//! known of it. The lint needs the full parse, and a statement the parser
//! cannot read is reported as not analysed, never refused for that alone.

mod redact;
pub mod rules;
mod tokens;

pub use redact::{redacted, scrubbed};
pub use tokens::{Tokenized, UNREADABLE, runs, tokenized};

use crate::api::{Engine, Step};
use rules::Rule;
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;

/// How a statement must run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// With the phase's other statements, in one transaction on PostgreSQL.
    InTransaction,
    /// On its own, outside any transaction (PostgreSQL refuses it in one:
    /// `CREATE INDEX CONCURRENTLY`, `VACUUM`, ...).
    Alone,
}

/// A lint rule a statement breaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub rule: &'static Rule,
    /// Allowed by `allow` on the phase or a `-- bellows:allow` comment.
    pub allowed: bool,
}

/// One inline statement, analysed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// Position in the phase's `sql` list, from 0.
    pub index: usize,
    pub run: Run,
    /// The transaction-control statement it holds (`COMMIT`, ...), if any.
    pub transaction_control: Option<String>,
    /// Whether the parser read it (the lint ran).
    pub parsed: bool,
    /// Why the tokenizer could not read it, if it could not.
    pub unreadable: Option<String>,
    pub findings: Vec<Finding>,
    /// Rule ids its `-- bellows:allow` comments name.
    pub allows: Vec<String>,
}

impl Statement {
    /// Findings not allowed.
    pub fn violations(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| !f.allowed)
    }
}

/// Marker of an inline allowance: `-- bellows:allow rule-id[, rule-id]`.
pub const ALLOW_MARKER: &str = "bellows:allow";

fn dialect(engine: Engine) -> Box<dyn Dialect> {
    match engine {
        Engine::Postgres => Box::new(PostgreSqlDialect {}),
        Engine::Mysql => Box::new(MySqlDialect {}),
    }
}

/// Analyses the statements of `step` on `engine`; `allow` is the phase's
/// allowance list.
pub fn analyse(
    engine: Engine,
    step: Step,
    statements: &[String],
    allow: &[String],
) -> Vec<Statement> {
    let dialect = dialect(engine);
    statements
        .iter()
        .zip(tokenized(engine, statements))
        .enumerate()
        .map(|(index, (text, read))| {
            let Tokenized {
                run,
                transaction_control,
                allows,
                unreadable,
                effective,
                rules: read_rules,
                ..
            } = read;
            let parsed = unreadable
                .is_none()
                .then(|| Parser::parse_sql(dialect.as_ref(), effective.as_deref().unwrap_or(text)))
                .and_then(Result::ok);
            let mut broken: Vec<&'static Rule> = parsed
                .iter()
                .flatten()
                .flat_map(|s| rules::broken(engine, step, s))
                .chain(read_rules.into_iter().filter(|r| r.applies_in(step)))
                .collect();
            broken.dedup();
            let findings = broken
                .into_iter()
                .map(|rule| Finding {
                    rule,
                    allowed: allow.iter().chain(&allows).any(|a| a == rule.id),
                })
                .collect();
            Statement {
                index,
                run,
                transaction_control,
                parsed: parsed.is_some(),
                unreadable,
                findings,
                allows,
            }
        })
        .collect()
}

/// What the lint says about one phase's statements, as messages naming
/// `spec.<phase>.sql[i]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Findings not allowed, in expand: they hold the rollout.
    pub violations: Vec<String>,
    /// Findings not allowed, in transition or contract: flagged only.
    pub flagged: Vec<String>,
    /// Allowed findings, as `statement N: rule-id`.
    pub allowed: Vec<String>,
    /// Statements the parser could not read.
    pub unparsed: Vec<String>,
    /// Items the tokenizer could not read and that are not allowed to
    /// run anyway: they hold the rollout.
    pub unreadable: Vec<String>,
}

/// The lint's [`Report`] on `step`'s statements.
pub fn report(engine: Engine, step: Step, statements: &[String], allow: &[String]) -> Report {
    let mut report = Report::default();
    for s in analyse(engine, step, statements, allow) {
        let at = format!(
            "spec.{}.sql[{}] ({})",
            step.as_str(),
            s.index,
            first_line(&statements[s.index])
        );
        if let Some(why) = &s.unreadable {
            if !s.allows.iter().any(|a| a == UNREADABLE) {
                report.unreadable.push(unreadable_note(&at, why));
            }
        } else if !s.parsed {
            report.unparsed.push(format!(
                "{at}: the {engine:?} parser could not read it; the lint did not check it"
            ));
        }
        for f in &s.findings {
            let (rule, n) = (f.rule, s.index + 1);
            if f.allowed {
                report.allowed.push(format!("statement {n}: {}", rule.id));
                continue;
            }
            let line = format!(
                "{at}: {}: {}; fix: {} (or allow it: allow: [{}])",
                rule.id, rule.reason, rule.fix, rule.id
            );
            match step {
                Step::Expand => report.violations.push(line),
                Step::Transition | Step::Contract => report.flagged.push(line),
            }
        }
    }
    report
}

/// The items of `step` the tokenizer cannot read and that are not allowed
/// to run anyway, as messages naming `spec.<step>.sql[i]`: what
/// [`report`] says of them, from the tokenizer alone (no parse), for the
/// validation every reconcile makes.
pub fn unreadable(engine: Engine, step: Step, statements: &[String]) -> Vec<String> {
    tokenized(engine, statements)
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.allows.iter().any(|a| a == UNREADABLE))
        .filter_map(|(i, t)| {
            let at = format!(
                "spec.{}.sql[{i}] ({})",
                step.as_str(),
                first_line(&statements[i])
            );
            t.unreadable.as_ref().map(|why| unreadable_note(&at, why))
        })
        .collect()
}

/// Why the item at `at` is refused, the tokenizer having said `why`.
fn unreadable_note(at: &str, why: &str) -> String {
    format!(
        "{at}: {why}; bellows cannot tell how it runs or whether it ends the phase's transaction (rewrite it, or start it with the line -- {ALLOW_MARKER} {UNREADABLE})"
    )
}

/// The statement's first non-empty line, cut at 60 characters, its
/// string literals hidden: what messages quote of a statement.
pub fn first_line(statement: &str) -> String {
    let statement = redacted(statement);
    let line = statement
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    match line.char_indices().nth(60) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line.to_owned(),
    }
}

/// Consecutive statements that run together: each run of
/// [`Run::InTransaction`] statements is one group (one transaction on
/// PostgreSQL), each [`Run::Alone`] statement a group of its own.
pub fn groups(runs: &[Run]) -> Vec<(std::ops::Range<usize>, Run)> {
    let mut groups: Vec<(std::ops::Range<usize>, Run)> = vec![];
    for (i, run) in runs.iter().enumerate() {
        match groups.last_mut() {
            Some((range, Run::InTransaction)) if *run == Run::InTransaction => range.end = i + 1,
            _ => groups.push((i..i + 1, *run)),
        }
    }
    groups
}

/// How a phase runs, for its Started event, when it is not simply all in
/// one transaction: `statements 1-2 in one transaction, 3 alone, 4 in one
/// transaction`.
pub fn grouping(engine: Engine, statements: &[String]) -> Option<String> {
    let groups = groups(&runs(engine, statements));
    if engine != Engine::Postgres || groups.iter().all(|g| g.1 == Run::InTransaction) {
        return None;
    }
    let parts: Vec<String> = groups
        .iter()
        .map(|(range, run)| {
            let numbers = if range.len() == 1 {
                format!("{}", range.start + 1)
            } else {
                format!("{}-{}", range.start + 1, range.end)
            };
            match run {
                Run::Alone => format!("{numbers} alone"),
                Run::InTransaction => format!("{numbers} in one transaction"),
            }
        })
        .collect();
    Some(format!("statements {}", parts.join(", ")))
}

/// The name of the index a PostgreSQL `CREATE INDEX` statement creates,
/// if it names one.
pub fn created_index(statement: &str) -> Option<String> {
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, statement).ok()?;
    match parsed.as_slice() {
        [sqlparser::ast::Statement::CreateIndex(index)] => {
            let name = index.name.as_ref()?;
            name.0
                .last()
                .map(|part| part.to_string().trim_matches('"').to_owned())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
