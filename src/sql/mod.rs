//! What inline SQL statements are, read before anything runs: transaction
//! control (refused), statements PostgreSQL cannot run in a transaction
//! (run alone), and the lint rules each statement breaks in its phase.
//!
//! Pure: text in, findings out. Statements are read with `sqlparser`
//! (PostgreSQL or MySQL dialect). Its tokenizer handles every statement
//! (quotes, dollar quotes, comments), so how a statement must run never
//! depends on the grammar; the lint needs the full parse, and a statement
//! the parser cannot read is reported as not analysed, never refused for
//! that alone.

pub mod rules;

use crate::api::{Engine, Step};
use rules::Rule;
use sqlparser::dialect::{Dialect, MySqlDialect, PostgreSqlDialect};
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

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
            } = read;
            let parsed = Parser::parse_sql(dialect.as_ref(), text).ok();
            let findings = parsed
                .iter()
                .flatten()
                .flat_map(|s| rules::broken(engine, step, s))
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
        if !s.parsed {
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

/// The statement's first non-empty line, cut at 60 characters.
pub fn first_line(statement: &str) -> String {
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

/// How each of `statements` must run on `engine`.
pub fn runs(engine: Engine, statements: &[String]) -> Vec<Run> {
    tokenized(engine, statements)
        .into_iter()
        .map(|t| t.run)
        .collect()
}

/// What the tokenizer alone tells of a statement (no parse): how it must
/// run, the transaction control it holds, its inline allowances.
pub struct Tokenized {
    pub run: Run,
    pub transaction_control: Option<String>,
    pub allows: Vec<String>,
}

/// [`Tokenized`] for each of `statements`: what validation needs on every
/// reconcile, without the full parse the lint needs.
pub fn tokenized(engine: Engine, statements: &[String]) -> Vec<Tokenized> {
    let dialect = dialect(engine);
    statements
        .iter()
        .map(|text| {
            let tokens = Tokenizer::new(dialect.as_ref(), text)
                .tokenize()
                .unwrap_or_default();
            let heads = heads(&tokens);
            Tokenized {
                run: run_of(engine, &heads),
                transaction_control: heads
                    .iter()
                    .find_map(|words| transaction_control(engine, words)),
                allows: inline_allowances(&tokens),
            }
        })
        .collect()
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

fn run_of(engine: Engine, heads: &[Vec<String>]) -> Run {
    if engine == Engine::Postgres && heads.iter().any(|w| runs_alone(w)) {
        Run::Alone
    } else {
        Run::InTransaction
    }
}

/// Rule ids named by `-- bellows:allow ...` comments.
fn inline_allowances(tokens: &[Token]) -> Vec<String> {
    tokens
        .iter()
        .filter_map(|t| match t {
            Token::Whitespace(Whitespace::SingleLineComment { comment, .. }) => {
                Some(comment.as_str())
            }
            Token::Whitespace(Whitespace::MultiLineComment(comment)) => Some(comment.as_str()),
            _ => None,
        })
        .filter_map(|c| c.trim().strip_prefix(ALLOW_MARKER))
        .flat_map(|ids| {
            ids.split([',', ' '])
                .map(str::trim)
                .filter(|s| !s.is_empty())
        })
        .map(str::to_owned)
        .collect()
}

/// The leading words (upper-cased, up to six) of each statement in the
/// token stream (an item may hold several, separated by `;`).
fn heads(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut heads = vec![];
    let mut current: Option<Vec<String>> = Some(vec![]);
    for token in tokens {
        match token {
            Token::Whitespace(_) => {}
            Token::SemiColon => {
                heads.extend(current.take().filter(|h| !h.is_empty()));
                current = Some(vec![]);
            }
            Token::Word(w) if w.quote_style.is_none() => {
                if let Some(h) = current.as_mut() {
                    if h.len() < 6 {
                        h.push(w.value.to_ascii_uppercase());
                    } else {
                        heads.extend(current.take());
                    }
                }
            }
            // `REINDEX (VERBOSE) ...`: options in parentheses are skipped.
            Token::LParen | Token::RParen | Token::Comma => {}
            _ => heads.extend(current.take().filter(|h| !h.is_empty())),
        }
    }
    heads.extend(current.filter(|h| !h.is_empty()));
    heads
}

/// The transaction-control statement `words` start, if they start one.
fn transaction_control(engine: Engine, words: &[String]) -> Option<String> {
    let w = |i: usize| words.get(i).map(String::as_str);
    let name = match (w(0)?, w(1)) {
        // MariaDB's compound statement, not a transaction.
        ("BEGIN", Some("NOT")) if engine == Engine::Mysql => return None,
        ("BEGIN" | "COMMIT" | "ROLLBACK" | "SAVEPOINT" | "RELEASE", _) => words[0].clone(),
        ("END" | "ABORT", _) if engine == Engine::Postgres => words[0].clone(),
        ("START" | "SET" | "PREPARE", Some("TRANSACTION")) => format!("{} TRANSACTION", words[0]),
        ("SET", Some("SESSION")) if w(2) == Some("CHARACTERISTICS") => {
            "SET SESSION CHARACTERISTICS".into()
        }
        ("XA", _) | ("LOCK" | "UNLOCK", Some("TABLES" | "TABLE")) if engine == Engine::Mysql => {
            words[..2.min(words.len())].join(" ")
        }
        _ => return None,
    };
    Some(name)
}

/// Whether PostgreSQL refuses the statement `words` start inside a
/// transaction block.
fn runs_alone(words: &[String]) -> bool {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    match w.as_slice() {
        ["CREATE", "INDEX", "CONCURRENTLY", ..]
        | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..]
        | ["DROP", "INDEX", "CONCURRENTLY", ..]
        | ["VACUUM", ..]
        | ["CREATE" | "DROP", "DATABASE" | "TABLESPACE", ..]
        | ["ALTER", "SYSTEM", ..]
        | ["REINDEX", "DATABASE" | "SYSTEM", ..] => true,
        ["REINDEX", rest @ ..] => rest.contains(&"CONCURRENTLY"),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
