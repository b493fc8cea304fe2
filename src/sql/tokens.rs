//! What the tokenizer alone tells of inline statements (no parse): how
//! each must run, the transaction control it holds, its inline allowances.

use super::{ALLOW_MARKER, Run, dialect};
use crate::api::Engine;
use sqlparser::tokenizer::{Token, Tokenizer, Whitespace};

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
