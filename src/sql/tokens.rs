//! What the tokenizer alone tells of inline statements (no parse): whether
//! it read the item at all, how it must run, the transaction control and
//! the settings bellows owns that it touches, its inline allowances.
//!
//! An item the tokenizer cannot read is never guessed at: it is
//! [`Tokenized::unreadable`] and refused unless allowed (`-- bellows:allow
//! unreadable` in the comment lines it starts with). MySQL's executable
//! comments (`/*!50000 DROP TABLE t */`) are read as the statements they
//! are; a PostgreSQL `BEGIN ATOMIC ... END` function body is one statement.

use super::rules::{self, Rule};
use super::{ALLOW_MARKER, Run, dialect};
use crate::api::Engine;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Tokenizer, Whitespace};

/// The allowance that lets an item the tokenizer cannot read run anyway,
/// given only in the comment lines the item starts with.
pub const UNREADABLE: &str = "unreadable";

/// How each of `statements` must run on `engine`.
pub fn runs(engine: Engine, statements: &[String]) -> Vec<Run> {
    tokenized(engine, statements)
        .into_iter()
        .map(|t| t.run)
        .collect()
}

/// What the tokenizer alone tells of an item (no parse).
pub struct Tokenized {
    pub run: Run,
    pub transaction_control: Option<String>,
    /// A setting bellows sets for the phase that the item changes or
    /// resets (`statement_timeout`, ...).
    pub owned_setting: Option<String>,
    pub allows: Vec<String>,
    /// Why the tokenizer could not read the item, with the position; then
    /// nothing else here was read from it.
    pub unreadable: Option<String>,
    /// The item as the server reads it, when that differs from its text
    /// (MySQL executable comments opened), for the parser.
    pub effective: Option<String>,
    /// Lint rules read from the tokens, for forms the parser does not
    /// read (`ALTER TABLE ... SET SCHEMA`).
    pub rules: Vec<&'static Rule>,
}

/// [`Tokenized`] for each of `statements`: what validation needs on every
/// reconcile, without the full parse the lint needs.
pub fn tokenized(engine: Engine, statements: &[String]) -> Vec<Tokenized> {
    statements.iter().map(|text| read(engine, text)).collect()
}

fn read(engine: Engine, text: &str) -> Tokenized {
    let (tokens, effective) = match tokens(engine, text) {
        Ok(read) => read,
        Err(why) => {
            return Tokenized {
                run: Run::InTransaction,
                transaction_control: None,
                owned_setting: None,
                allows: leading_allowances(text),
                unreadable: Some(why),
                effective: None,
                rules: vec![],
            };
        }
    };
    let statements = split(&tokens);
    let heads: Vec<Vec<String>> = statements.iter().map(|s| head(s)).collect();
    Tokenized {
        run: run_of(engine, &heads),
        transaction_control: heads
            .iter()
            .zip(&statements)
            .find_map(|(words, s)| transaction_control(engine, words, s)),
        owned_setting: statements.iter().find_map(|s| owned_setting(engine, s)),
        allows: inline_allowances(&tokens),
        unreadable: None,
        effective,
        rules: statements
            .iter()
            .filter(|s| engine == Engine::Postgres && moves_to_a_schema(s))
            .map(|_| &rules::MOVE_TABLE)
            .collect(),
    }
}

/// `ALTER TABLE|VIEW|MATERIALIZED VIEW|SEQUENCE ... SET SCHEMA ...`.
fn moves_to_a_schema(statement: &[&Token]) -> bool {
    let words: Vec<Option<String>> = statement.iter().map(|t| unquoted(t)).collect();
    let word = |i: usize| words.get(i).and_then(|w| w.as_deref());
    word(0) == Some("ALTER")
        && matches!(
            word(1),
            Some("TABLE" | "VIEW" | "MATERIALIZED" | "SEQUENCE")
        )
        && (0..words.len()).any(|i| word(i) == Some("SET") && word(i + 1) == Some("SCHEMA"))
}

/// Every token of `text`, MySQL executable comments opened into the
/// tokens they hold, and the text as the server reads it when that
/// differs; or why the tokenizer could not read it.
fn tokens(engine: Engine, text: &str) -> Result<(Vec<Token>, Option<String>), String> {
    let dialect = dialect(engine);
    let spanned = Tokenizer::new(dialect.as_ref(), text)
        .tokenize_with_location()
        .map_err(|e| {
            format!(
                "the {engine:?} tokenizer cannot read it at line {}, column {}: {}",
                e.location.line, e.location.column, e.message
            )
        })?;
    if engine != Engine::Mysql || !spanned.iter().any(|t| executable(&t.token).is_some()) {
        return Ok((spanned.into_iter().map(|t| t.token).collect(), None));
    }
    let opened = open_executable_comments(text, &spanned);
    let again = Tokenizer::new(dialect.as_ref(), &opened)
        .tokenize()
        .map_err(|e| {
            format!("the MySQL tokenizer cannot read what its executable comments hold: {e}")
        })?;
    if again.iter().any(|t| executable(t).is_some()) {
        return Err("an executable comment inside an executable comment".to_owned());
    }
    Ok((again, Some(opened)))
}

/// The body of a MySQL executable comment (`/*!50000 body */`, MariaDB's
/// `/*M!100100 body */`), which the server runs as SQL.
fn executable(token: &Token) -> Option<&str> {
    let Token::Whitespace(Whitespace::MultiLineComment(c)) = token else {
        return None;
    };
    let rest = c.strip_prefix('!').or_else(|| c.strip_prefix("M!"))?;
    Some(rest.trim_start_matches(|ch: char| ch.is_ascii_digit()))
}

/// `text` with each executable comment replaced by its body.
fn open_executable_comments(text: &str, spanned: &[TokenWithSpan]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for t in spanned {
        if let Some(body) = executable(&t.token) {
            let (start, end) = (offset(text, t.span.start), offset(text, t.span.end));
            out.push_str(&text[from..start]);
            out.push(' ');
            out.push_str(body);
            out.push(' ');
            from = end;
        }
    }
    out.push_str(&text[from..]);
    out
}

/// The byte offset of a tokenizer location (line and column from 1, in
/// characters).
fn offset(text: &str, at: Location) -> usize {
    let mut line = 1;
    let mut column = 1;
    for (i, ch) in text.char_indices() {
        if line == at.line && column == at.column {
            return i;
        }
        if ch == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    text.len()
}

/// Rule ids named by `-- bellows:allow ...` comment lines at the start of
/// an item the tokenizer could not read: the only place such an item can
/// be allowed.
fn leading_allowances(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .take_while(|l| l.is_empty() || l.starts_with("--"))
        .filter_map(|l| l.trim_start_matches('-').trim().strip_prefix(ALLOW_MARKER))
        .flat_map(allowance_ids)
        .collect()
}

fn allowance_ids(ids: &str) -> Vec<String> {
    ids.split([',', ' '])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
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
        .flat_map(allowance_ids)
        .collect()
}

/// The statements of an item (it may hold several, separated by `;`),
/// each as its tokens without whitespace and comments. A PostgreSQL
/// `BEGIN ATOMIC ... END` body (SQL-standard function bodies, 14+) stays
/// inside its statement, `;`s and all, as PostgreSQL's own scanner keeps
/// it: `CASE` and `BEGIN` open a level there, `END` closes one.
fn split(tokens: &[Token]) -> Vec<Vec<&Token>> {
    let mut statements = vec![];
    let mut current: Vec<&Token> = vec![];
    let mut depth = 0usize;
    for token in tokens {
        match token {
            Token::Whitespace(_) => continue,
            Token::SemiColon if depth == 0 => {
                if !current.is_empty() {
                    statements.push(std::mem::take(&mut current));
                }
                continue;
            }
            _ => {}
        }
        let word = unquoted(token);
        if depth > 0 {
            match word.as_deref() {
                Some("CASE" | "BEGIN") => depth += 1,
                Some("END") => depth -= 1,
                _ => {}
            }
        } else if word.as_deref() == Some("ATOMIC")
            && current.len() > 1
            && current.last().and_then(|t| unquoted(t)).as_deref() == Some("BEGIN")
        {
            depth = 1;
        }
        current.push(token);
    }
    if !current.is_empty() {
        statements.push(current);
    }
    statements
}

/// An unquoted word, upper-cased.
fn unquoted(token: &Token) -> Option<String> {
    match token {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_ascii_uppercase()),
        _ => None,
    }
}

/// The leading words of a statement (upper-cased, up to six), options in
/// parentheses skipped (`REINDEX (VERBOSE) ...`).
fn head(statement: &[&Token]) -> Vec<String> {
    statement
        .iter()
        .filter(|t| !matches!(t, Token::LParen | Token::RParen | Token::Comma))
        .map_while(|t| unquoted(t))
        .take(6)
        .collect()
}

/// The transaction-control statement `words` start, if they start one.
fn transaction_control(engine: Engine, words: &[String], statement: &[&Token]) -> Option<String> {
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
        // MySQL: autocommit off leaves every later statement uncommitted.
        ("SET", _)
            if engine == Engine::Mysql && set_names(statement).any(|n| n == "autocommit") =>
        {
            "SET autocommit".into()
        }
        _ => return None,
    };
    Some(name)
}

/// The settings bellows sets for a phase (from `spec.database`): a
/// statement must not change or reset them.
fn owned(engine: Engine) -> &'static [&'static str] {
    match engine {
        Engine::Postgres => &["statement_timeout", "lock_timeout"],
        Engine::Mysql => &[
            "lock_wait_timeout",
            "max_statement_time",
            "max_execution_time",
        ],
    }
}

/// The owned setting `statement` changes: `SET [SESSION|LOCAL] name ...`,
/// `SET @@session.name = ...`, MariaDB's `SET STATEMENT name = ... FOR`,
/// `RESET name`, `RESET ALL`, `set_config('name', ...)`.
fn owned_setting(engine: Engine, statement: &[&Token]) -> Option<String> {
    let owned = owned(engine);
    let first = statement.first().and_then(|t| unquoted(t));
    if let Some(name) = match first.as_deref() {
        Some("SET") => set_names(statement).find(|n| owned.contains(&n.as_str())),
        Some("RESET") if engine == Engine::Postgres => {
            match statement.get(1).and_then(|t| unquoted(t)).as_deref() {
                Some("ALL") => Some("ALL".to_owned()),
                _ => set_names(statement).find(|n| owned.contains(&n.as_str())),
            }
        }
        _ => None,
    } {
        return Some(name);
    }
    statement.windows(3).find_map(|w| match w {
        [
            Token::Word(f),
            Token::LParen,
            Token::SingleQuotedString(name),
        ] if f.value.eq_ignore_ascii_case("set_config")
            && owned.contains(&name.to_ascii_lowercase().as_str()) =>
        {
            Some(name.to_ascii_lowercase())
        }
        _ => None,
    })
}

/// The words of a SET statement as setting names: lower-cased, without
/// `@@`, `@@session.` and the like.
fn set_names<'a>(statement: &'a [&'a Token]) -> impl Iterator<Item = String> + 'a {
    statement.iter().filter_map(|t| match t {
        Token::Word(w) => {
            let name = w.value.to_ascii_lowercase();
            let name = name.trim_start_matches('@');
            let name = ["session.", "local.", "global."]
                .iter()
                .find_map(|p| name.strip_prefix(p))
                .unwrap_or(name);
            Some(name.to_owned())
        }
        _ => None,
    })
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
