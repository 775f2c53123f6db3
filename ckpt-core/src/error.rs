//! The one error type of ckpt.

use crate::Step;
use std::fmt;

/// What kind of failure an [`Error`] is. Match on this, not on messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A step, item, file or root that was asked for does not exist (Orbax `FileNotFoundError`).
    NotFound,
    /// The step already exists (Orbax `StepAlreadyExistsError`), or a conditional create lost.
    AlreadyExists,
    /// A call got an argument it cannot use (Orbax `ValueError` from a call).
    InvalidArgument,
    /// Options that cannot work together or a bad value, found when a manager or policy is built.
    InvalidConfig,
    /// A write or delete was asked of a read-only manager (deviation D3).
    ReadOnly,
    /// Data on disk is broken: unparsable metadata, a truncated file, a checksum mismatch.
    Corrupt,
    /// The operation or format is not supported, e.g. restoring an Orbax tensorstore item.
    Unsupported,
    /// The storage backend failed (I/O, network, permissions).
    Storage,
    /// A handler failed to save or restore an item.
    Handler,
    /// A bounded wait ran out of time.
    Timeout,
    /// Another live writer holds the root (ckpt's single-writer lock; Orbax has none).
    Locked,
    /// The processes of a multi-process job could not coordinate (issue 15): the coordination
    /// service (etcd) could not be reached or refused a request (then also
    /// [`Error::is_temporary`]), another process of the job is gone (its lease ran out: it died,
    /// closed its coordinator or lost the service) before it arrived where this one waits, or
    /// this process itself lost its lease. Deviation: Orbax has no such error (JAX's
    /// coordination service aborts the job); a wait that merely runs out of time is `Timeout`.
    Coordination,
}

impl ErrorKind {
    /// The kind's name as written in error strings, e.g. `"NotFound"`.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotFound => "NotFound",
            ErrorKind::AlreadyExists => "AlreadyExists",
            ErrorKind::InvalidArgument => "InvalidArgument",
            ErrorKind::InvalidConfig => "InvalidConfig",
            ErrorKind::ReadOnly => "ReadOnly",
            ErrorKind::Corrupt => "Corrupt",
            ErrorKind::Unsupported => "Unsupported",
            ErrorKind::Storage => "Storage",
            ErrorKind::Handler => "Handler",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Locked => "Locked",
            ErrorKind::Coordination => "Coordination",
        }
    }

    /// The kind written as `name` by [`ErrorKind::name`]; `None` for any other string (e.g. a
    /// kind a newer ckpt added, read from another process).
    pub fn from_name(name: &str) -> Option<ErrorKind> {
        const ALL: [ErrorKind; 12] = [
            ErrorKind::NotFound,
            ErrorKind::AlreadyExists,
            ErrorKind::InvalidArgument,
            ErrorKind::InvalidConfig,
            ErrorKind::ReadOnly,
            ErrorKind::Corrupt,
            ErrorKind::Unsupported,
            ErrorKind::Storage,
            ErrorKind::Handler,
            ErrorKind::Timeout,
            ErrorKind::Locked,
            ErrorKind::Coordination,
        ];
        ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error of every fallible ckpt call: a [`ErrorKind`], a message, and where it happened
/// (the step and the path, when known), with the underlying cause as its `source()`.
///
/// Displays as `Kind: message (step N, path P)`, on one line, without the cause: as std's and
/// anyhow's convention has it, the cause is only `source()`, so a report that walks the sources
/// (anyhow, eyre, [`ErrorChain`]) shows it once. To print an error with its causes, display
/// [`Error::chain`]: `Kind: message (step N, path P): cause: cause of the cause`.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    step: Option<Step>,
    path: Option<String>,
    temporary: bool,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with ckpt's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with a message saying what went wrong.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            step: None,
            path: None,
            temporary: false,
            source: None,
        }
    }

    /// Attaches the step the error concerns.
    pub fn with_step(mut self, step: Step) -> Self {
        self.step = Some(step);
        self
    }

    /// Attaches the path (relative to the root, or a full path/URI) the error concerns.
    pub fn with_path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// Marks the error as temporary (or not): the same request may succeed if tried again (a
    /// 500, 503 or `SlowDown` from an object store, a timed-out connection), as the backend
    /// reported it. Retry layers retry only temporary errors.
    pub fn with_temporary(mut self, temporary: bool) -> Self {
        self.temporary = temporary;
        self
    }

    /// Whether the backend said trying again may succeed (see [`Error::with_temporary`]).
    pub fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// This error with `prefix` put before its message (e.g. `item "state": `, to say which
    /// item it concerns); kind, step, path and source unchanged.
    pub fn prefixed(mut self, prefix: &str) -> Self {
        self.message.insert_str(0, prefix);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without kind, step or path.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The step the error concerns, if known.
    pub fn step(&self) -> Option<Step> {
        self.step
    }

    /// The path the error concerns, if known.
    pub fn path(&self) -> Option<&str> {
        self.path.as_deref()
    }

    /// This error followed by its causes (the `source()` chain), for printing: see
    /// [`ErrorChain`].
    pub fn chain(&self) -> ErrorChain<'_> {
        ErrorChain(self)
    }

    /// Shorthand for `Error::new(ErrorKind::NotFound, message)`.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    /// Shorthand for `Error::new(ErrorKind::InvalidArgument, message)`.
    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }

    /// Shorthand for `Error::new(ErrorKind::InvalidConfig, message)`.
    pub fn invalid_config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidConfig, message)
    }

    /// Shorthand for `Error::new(ErrorKind::Corrupt, message)`.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }

    /// Shorthand for `Error::new(ErrorKind::Storage, message)`.
    pub fn storage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Storage, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        match (&self.step, &self.path) {
            (Some(s), Some(p)) => write!(f, " (step {s}, path {p})")?,
            (Some(s), None) => write!(f, " (step {s})")?,
            (None, Some(p)) => write!(f, " (path {p})")?,
            (None, None) => {}
        }
        Ok(())
    }
}

/// Displays an error followed by each of its causes (the `source()` chain), separated by `": "`,
/// on one line, each cause once: a cause whose text the line already holds (an error that
/// prints its own source, as some libraries' errors do) is not repeated. Newlines in the texts
/// become spaces.
///
/// What a program prints for an error it reports to a person (`ckpt: {}`), where anyhow would
/// print `{:#}`. [`Error::chain`] gives one for a ckpt [`Error`]; any other error can be wrapped
/// directly.
///
/// ```
/// use ckpt_core::{Error, ErrorChain};
///
/// let e = Error::storage("write failed")
///     .with_path("/r/7/state")
///     .with_source(std::io::Error::other("disk full"));
/// assert_eq!(e.to_string(), "Storage: write failed (path /r/7/state)");
/// assert_eq!(e.chain().to_string(), "Storage: write failed (path /r/7/state): disk full");
/// let io = std::io::Error::other("disk full");
/// assert_eq!(ErrorChain(&io).to_string(), "disk full");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut line = self.0.to_string().replace('\n', " ");
        let mut cause = self.0.source();
        // A cycle of sources would loop forever: no real chain is this deep.
        let mut depth = 0;
        while let Some(c) = cause {
            depth += 1;
            if depth > 64 {
                break;
            }
            let text = c.to_string().replace('\n', " ");
            if !text.is_empty() && !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = c.source();
        }
        f.write_str(&line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_kind_step_path_and_the_cause_is_the_source() {
        let io = std::io::Error::other("disk on fire");
        let e = Error::not_found("no such step")
            .with_step(7)
            .with_path("/r/7")
            .with_source(io);
        assert_eq!(e.to_string(), "NotFound: no such step (step 7, path /r/7)");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.step(), Some(7));
        let source = std::error::Error::source(&e).map(ToString::to_string);
        assert_eq!(source.as_deref(), Some("disk on fire"));
        assert_eq!(
            e.chain().to_string(),
            "NotFound: no such step (step 7, path /r/7): disk on fire"
        );
    }

    /// What anyhow/eyre print for a chain: each error's Display, then each source's. The cause
    /// must appear once (issue 16: it appeared twice when Display also printed the source).
    fn walk(e: &(dyn std::error::Error + 'static)) -> String {
        let mut out = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            out.push_str(": ");
            out.push_str(&c.to_string());
            cause = c.source();
        }
        out
    }

    #[test]
    fn a_chain_shows_each_cause_once() {
        let inner = Error::corrupt("bad checksum")
            .with_path("7/state/x")
            .with_source(std::io::Error::other("crc32c 0xdead"));
        let outer = Error::new(ErrorKind::Corrupt, "cannot restore item \"state\"")
            .with_step(7)
            .with_source(inner);
        for text in [walk(&outer), outer.chain().to_string()] {
            assert_eq!(text.matches("crc32c 0xdead").count(), 1, "{text}");
            assert_eq!(text.matches("bad checksum").count(), 1, "{text}");
            assert_eq!(
                text,
                "Corrupt: cannot restore item \"state\" (step 7): Corrupt: bad checksum (path 7/state/x): crc32c 0xdead"
            );
        }
    }

    /// An error whose own message already holds its source's text (a library that prints its
    /// source itself): the chain does not repeat it.
    #[test]
    fn a_chain_skips_a_cause_already_printed() {
        let io = std::io::Error::other("permission denied");
        let e = Error::storage(format!("cannot lock: {io}")).with_source(io);
        assert_eq!(
            e.chain().to_string(),
            "Storage: cannot lock: permission denied"
        );
        let multi_line = Error::storage("a\nb").with_source(std::io::Error::other("c\nd"));
        assert_eq!(multi_line.chain().to_string(), "Storage: a b: c d");
    }

    #[test]
    fn kind_names_round_trip() {
        for kind in [
            ErrorKind::NotFound,
            ErrorKind::Locked,
            ErrorKind::Coordination,
        ] {
            assert_eq!(ErrorKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(ErrorKind::from_name("NoSuchKind"), None);
    }
}
