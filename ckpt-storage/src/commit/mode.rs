//! [`AtomicityMode`], Orbax's choice between the two protocols, and [`protocol_for`], which
//! resolves it for a store.

use super::{AtomicRenameProtocol, CommitFileProtocol, CommitProtocol};
use crate::Capabilities;
use ckpt_core::{Error, Result};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// How a step becomes visible, as Orbax's `AtomicityMode` (spec §1.3); written and parsed as
/// `"auto"`, `"atomic_rename"`, `"commit_file"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AtomicityMode {
    /// Atomic rename where the store can rename (local file systems), commit file elsewhere.
    /// Orbax's AUTO picks by URI (commit file for `gs://` only); ckpt picks by
    /// [`Capabilities::rename`], which gives the same answer for local paths and GCS and the only
    /// workable one for S3 and Azure.
    #[default]
    Auto,
    /// Write `<name>.orbax-checkpoint-tmp/`, then `commit_success.txt`, then rename it to `<name>`
    /// (Orbax `AtomicRenameTemporaryPath`).
    AtomicRename,
    /// Write `<name>/` in place, `commit_success.txt` last (Orbax `CommitFileTemporaryPath`).
    CommitFile,
}

impl AtomicityMode {
    /// The mode's name as Orbax writes it: `"auto"`, `"atomic_rename"` or `"commit_file"`.
    pub fn as_str(self) -> &'static str {
        match self {
            AtomicityMode::Auto => "auto",
            AtomicityMode::AtomicRename => "atomic_rename",
            AtomicityMode::CommitFile => "commit_file",
        }
    }
}

impl fmt::Display for AtomicityMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AtomicityMode {
    type Err = Error;

    /// Parses `"auto"`, `"atomic_rename"` or `"commit_file"` (exactly, as Orbax's enum values).
    ///
    /// # Errors
    /// `InvalidArgument` naming the string for anything else.
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(AtomicityMode::Auto),
            "atomic_rename" => Ok(AtomicityMode::AtomicRename),
            "commit_file" => Ok(AtomicityMode::CommitFile),
            other => Err(Error::invalid_argument(format!(
                "unknown atomicity mode {other:?} (expected \"auto\", \"atomic_rename\" or \"commit_file\")"
            ))),
        }
    }
}

/// The commit protocol for `mode` on a store with `caps`: [`AtomicityMode::Auto`] gives
/// [`AtomicRenameProtocol`] when `caps.rename`, else [`CommitFileProtocol`].
///
/// # Errors
/// `InvalidConfig` when [`AtomicityMode::AtomicRename`] is asked of a store that cannot rename.
pub fn protocol_for(mode: AtomicityMode, caps: Capabilities) -> Result<Arc<dyn CommitProtocol>> {
    match mode {
        AtomicityMode::Auto if caps.rename => Ok(Arc::new(AtomicRenameProtocol)),
        AtomicityMode::Auto | AtomicityMode::CommitFile => Ok(Arc::new(CommitFileProtocol)),
        AtomicityMode::AtomicRename if caps.rename => Ok(Arc::new(AtomicRenameProtocol)),
        AtomicityMode::AtomicRename => Err(Error::invalid_config(
            "atomicity mode atomic_rename needs a store that can rename directories; \
             use commit_file (or auto) on this store",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_core::ErrorKind;

    #[test]
    fn mode_names_round_trip() {
        for m in [
            AtomicityMode::Auto,
            AtomicityMode::AtomicRename,
            AtomicityMode::CommitFile,
        ] {
            assert_eq!(m.to_string().parse::<AtomicityMode>().unwrap(), m);
        }
        let e = "Atomic".parse::<AtomicityMode>().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("\"Atomic\""));
    }

    #[test]
    fn auto_follows_rename_capability() {
        let fs = Capabilities {
            rename: true,
            write_if_absent: true,
            directories: true,
            durable: true,
            local: true,
            retries: false,
        };
        let mem = Capabilities {
            write_if_absent: true,
            ..Default::default()
        };
        assert_eq!(
            protocol_for(AtomicityMode::Auto, fs).unwrap().mode(),
            AtomicityMode::AtomicRename
        );
        assert_eq!(
            protocol_for(AtomicityMode::Auto, mem).unwrap().mode(),
            AtomicityMode::CommitFile
        );
        assert_eq!(
            protocol_for(AtomicityMode::CommitFile, fs).unwrap().mode(),
            AtomicityMode::CommitFile
        );
        assert_eq!(
            protocol_for(AtomicityMode::AtomicRename, mem)
                .unwrap_err()
                .kind(),
            ErrorKind::InvalidConfig
        );
    }
}
