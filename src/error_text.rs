//! Errors as one readable text: transport errors (hyper's, kube's) hide
//! the useful part, e.g. "connection refused" or an unknown certificate
//! issuer, in a source.

/// `err` and its sources, joined with `: ` (transport errors hide the
/// useful part, e.g. "connection refused", in a source).
pub fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let msg = s.to_string();
        if !text.contains(&msg) {
            text = format!("{text}: {msg}");
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_chains_keep_the_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
        let err = kube::Error::ReadEvents(io);
        assert_eq!(
            chain(&err),
            "Error reading events stream: connection refused"
        );
        #[derive(Debug, thiserror::Error)]
        #[error("outer")]
        struct Outer(#[source] std::io::Error);
        let nested = Outer(std::io::Error::other("inner cause"));
        assert_eq!(chain(&nested), "outer: inner cause");
    }
}
