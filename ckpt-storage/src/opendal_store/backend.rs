//! Which opendal service an [`OpendalStore`](super::OpendalStore) talks to: process memory or an
//! object store, and what each can do.

#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
use crate::object::ObjectConfig;
use crate::Capabilities;

/// Which opendal service a store uses, and what it needs to know beyond the operator.
// One per store, so the size of the object-store variant costs nothing worth a Box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(super) enum Backend {
    /// Process memory: nothing survives the store.
    Memory,
    /// An object store (S3, GCS, Azure Blob) below a prefix of a bucket. `write_if_absent` is
    /// whether the service honours conditional creates (from opendal's capability).
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    Object {
        config: ObjectConfig,
        write_if_absent: bool,
    },
}

impl Backend {
    pub(super) fn capabilities(&self) -> Capabilities {
        match self {
            Backend::Memory => Capabilities {
                rename: false,
                write_if_absent: true,
                directories: false,
                durable: false,
                local: true,
                retries: false,
            },
            // Not `durable` in the fsync sense (there is nothing to sync): a write is durable
            // once it has returned.
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
            Backend::Object {
                write_if_absent, ..
            } => Capabilities {
                rename: false,
                write_if_absent: *write_if_absent,
                directories: false,
                durable: false,
                local: false,
                retries: false,
            },
        }
    }

    pub(super) fn location(&self, path: &str) -> String {
        match self {
            Backend::Memory => format!("memory:///{path}"),
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
            Backend::Object { config, .. } => config.location(path),
        }
    }

    /// The object store's configuration, `None` for the memory store.
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    pub(super) fn object(&self) -> Option<&ObjectConfig> {
        match self {
            Backend::Object { config, .. } => Some(config),
            _ => None,
        }
    }

    /// Objects per listing page, where configured.
    pub(super) fn list_page_size(&self) -> Option<usize> {
        match self {
            #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
            Backend::Object { config, .. } => config.list_page_size(),
            _ => None,
        }
    }
}
