//! String literals kept out of messages: a statement quoted in status, an
//! event, the ledger or a log shows its literals as `'…'` (they can hold
//! passwords: `ALTER ROLE app PASSWORD '...'`), and a server message that
//! echoes one (`invalid input syntax for type integer: "..."`) loses it.
//!
//! A plain scan, not the tokenizer: it must work on items the tokenizer
//! cannot read, and it errs towards hiding too much (an unclosed quote
//! hides the rest of the text; double-quoted text is hidden too, a string
//! on MySQL and an identifier on PostgreSQL).

use std::ops::Range;

/// What a literal's content is replaced with.
const HIDDEN: &str = "…";

/// Echoed literals shorter than this are left in a server message, which
/// they would otherwise mangle (a `'a'` would hide every letter a).
const MIN_ECHOED: usize = 4;

/// `text` with the content of every string literal replaced by `…`.
pub fn redacted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut from = 0;
    for range in literals(text) {
        out.push_str(&text[from..range.start]);
        out.push_str(HIDDEN);
        from = range.end;
    }
    out.push_str(&text[from..]);
    out
}

/// `message` (a server's, about `statement`) without any literal of
/// `statement` it echoes.
pub fn scrubbed(message: &str, statement: &str) -> String {
    let mut secrets: Vec<&str> = literals(statement)
        .into_iter()
        .map(|r| statement[r].trim())
        .filter(|s| s.chars().count() >= MIN_ECHOED)
        .collect();
    // Longest first, so a literal inside another leaves no tail behind.
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets
        .into_iter()
        .fold(message.to_owned(), |m, s| m.replace(s, HIDDEN))
}

/// The byte ranges of the contents of `text`'s string literals:
/// `'...'` (with `''` and backslash escapes), `"..."` and dollar-quoted
/// `$tag$...$tag$`, skipping `--` and `/* */` comments. An unclosed
/// literal runs to the end.
fn literals(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = vec![];
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = text[i + 2..]
                    .find("*/")
                    .map_or(bytes.len(), |n| i + 2 + n + 2);
            }
            quote @ (b'\'' | b'"') => {
                let start = i + 1;
                let mut j = start;
                while j < bytes.len() {
                    match bytes[j] {
                        b'\\' => j += 2,
                        b if b == quote && bytes.get(j + 1) == Some(&quote) => j += 2,
                        b if b == quote => break,
                        _ => j += 1,
                    }
                }
                let end = j.min(bytes.len());
                found.push(start..end);
                i = end + 1;
            }
            b'$' => match dollar_tag(&text[i..]) {
                Some(tag) => {
                    let start = i + tag.len();
                    let end = text[start..].find(tag).map_or(bytes.len(), |n| start + n);
                    found.push(start..end);
                    i = end + tag.len();
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    found
}

/// The dollar-quote tag `text` starts with (`$$`, `$body$`), if any.
fn dollar_tag(text: &str) -> Option<&str> {
    let rest = &text[1..];
    let len = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
    (rest[len..].starts_with('$') && !rest[..len].starts_with(|c: char| c.is_ascii_digit()))
        .then(|| &text[..len + 2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_hidden_in_every_quoting() {
        for (text, shown) in [
            (
                "ALTER ROLE app PASSWORD 'hunter2-secret'",
                "ALTER ROLE app PASSWORD '…'",
            ),
            ("SELECT 'it''s', 'a\\'b'", "SELECT '…', '…'"),
            ("SELECT E'caf\\xC3\\xA9' x", "SELECT E'…' x"),
            (
                "CREATE FUNCTION f() AS $b$ pw $b$",
                "CREATE FUNCTION f() AS $b$…$b$",
            ),
            ("DO $$ x $$; SELECT $1", "DO $$…$$; SELECT $1"),
            ("SET x = \"secret\"", "SET x = \"…\""),
            ("SELECT 'unclosed", "SELECT '…"),
            ("SELECT 1 -- it's a comment", "SELECT 1 -- it's a comment"),
            ("SELECT /* don't */ 1", "SELECT /* don't */ 1"),
        ] {
            assert_eq!(redacted(text), shown, "{text}");
        }
    }

    #[test]
    fn a_server_message_loses_the_literals_it_echoes() {
        let statement = "INSERT INTO t VALUES ('hunter2-secret', 'ab')";
        assert_eq!(
            scrubbed(
                "invalid input syntax for type integer: \"hunter2-secret\" (ab)",
                statement
            ),
            "invalid input syntax for type integer: \"…\" (ab)"
        );
    }
}
