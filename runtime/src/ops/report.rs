//! How the binaries print the error that stops them: once, without a
//! backtrace.
//!
//! Returning an error from `main` prints its `Debug` form: the message,
//! then each cause again under `Caused by:` (most of this workspace's
//! errors already name their cause in their own message), and a backtrace
//! when `RUST_BACKTRACE` is set. For a wrong flag or a bad config file
//! that is noise around one sentence. [`message`] gives the sentence.

use std::error::Error;

/// The error and its causes on one line, `: `-separated as anyhow's `{:#}`
/// does, leaving out a cause whose text the line already holds. Multi-line
/// messages (a config file's list of problems) keep their lines.
pub fn message(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let said = cause.to_string();
        if !said.is_empty() && !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot listen on 127.0.0.1:7700: {source}")]
    struct SaysItsCause {
        source: std::io::Error,
    }

    #[derive(Debug, thiserror::Error)]
    #[error("cannot start")]
    struct LeavesItsCause {
        source: std::io::Error,
    }

    fn in_use() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use")
    }

    #[test]
    fn a_cause_the_message_already_names_is_not_repeated() {
        let e = SaysItsCause { source: in_use() };
        assert_eq!(
            message(&e),
            "cannot listen on 127.0.0.1:7700: address in use"
        );
    }

    #[test]
    fn a_cause_the_message_leaves_out_is_appended() {
        let e = LeavesItsCause { source: in_use() };
        assert_eq!(message(&e), "cannot start: address in use");
    }
}
