//! Object stores: the configuration of the S3, GCS and Azure Blob stores ([`S3Config`] in
//! `s3.rs`, [`GcsConfig`] in `gcs.rs`, [`AzblobConfig`] in `azblob.rs`), how each is read from
//! a URI plus the standard environment, and how each becomes an `opendal::Operator` (features
//! `s3`, `gcs`, `azblob`). Here: what the three share, [`UploadOptions`], the environment
//! switches and checks, bucket URIs and locations, the redacting `Debug`, and
//! `ObjectConfig`, the one of them a store was built from.
//!
//! The configuration types are plain data and always compiled (so a URI can be parsed, and a
//! configuration checked, in a build without the service); building a store needs the feature.
//!
//! Credentials: the given ones always win. Configurations read from the environment
//! ([`S3Config::from_env`] and its siblings, what `s3://`, `gs://` and `azblob://` URIs use)
//! have `ambient_credentials` on: without given credentials, each store looks for them the way
//! its cloud's SDKs do (AWS default chain with profile files, web identity, container and
//! instance metadata; Google application default credentials; Azure environment, workload and
//! managed identity), as far as opendal 0.59 / reqsign 3 have them (`credentials.rs`, the
//! types' documentation). A configuration built with `new` has it off and uses only what it is
//! given. When no credential is found, a call fails with `InvalidConfig` saying what was tried.

use crate::path::validate_path;
use ckpt_core::{Error, Result};

/// Implements `Debug` for a configuration struct: every field in the order listed, those marked
/// `: redacted` shown as `Some("<redacted>")` (or `None`) instead of their value. The struct is
/// destructured exhaustively, so a field added to it does not compile until it is listed here
/// (and so cannot leak a secret by being forgotten).
macro_rules! redacting_debug {
    ($ty:ident { $($field:ident $(: $redact:ident)?),* $(,)? }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let $ty { $($field),* } = self;
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &redacting_debug!(@value $field $($redact)?)))*
                    .finish()
            }
        }
    };
    (@value $field:ident) => { $field };
    (@value $field:ident redacted) => { $crate::object::redacted($field) };
}

mod azblob;
mod credentials;
mod gcs;
mod s3;

#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
pub(crate) use credentials::{is_missing_credential, missing_credentials};

pub use azblob::{AzblobConfig, AZURITE_ACCOUNT, AZURITE_KEY};
pub use gcs::GcsConfig;
pub use s3::{S3Config, DEFAULT_S3_REGION};

/// How large writes are uploaded to an object store: data of at least `multipart_threshold`
/// bytes goes up as a multipart upload (S3, GCS) or a block list (Azure) of `chunk_size`-byte
/// parts, `concurrency` parts in flight; smaller data is one PUT.
///
/// [`crate::Store::write_if_absent`] is always one PUT, whatever the size (it writes commit
/// markers, a few hundred bytes); S3 limits one PUT to 5 GiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// Size in bytes from which a write becomes a multipart upload. Default 16 MiB.
    pub multipart_threshold: usize,
    /// Size in bytes of each part. Default 8 MiB; S3 and GCS need at least 5 MiB (all parts but
    /// the last) and allow at most 10,000 parts, so the largest object is `chunk_size * 10_000`
    /// (80 GB at the default).
    pub chunk_size: usize,
    /// Parts uploaded at once. Default 4; memory held is about `chunk_size * (concurrency + 1)`.
    pub concurrency: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            multipart_threshold: 16 << 20,
            chunk_size: 8 << 20,
            concurrency: 4,
        }
    }
}

impl UploadOptions {
    /// Checks the sizes: a threshold and a chunk size of at least 5 MiB (S3's smallest part), a
    /// concurrency of at least 1.
    ///
    /// # Errors
    /// `InvalidConfig` naming the bad value.
    pub fn validate(&self) -> Result<()> {
        const MIN_PART: usize = 5 << 20;
        if self.chunk_size < MIN_PART {
            return Err(Error::invalid_config(format!(
                "upload chunk_size {} bytes is below the 5 MiB smallest multipart part",
                self.chunk_size
            )));
        }
        if self.multipart_threshold < MIN_PART {
            return Err(Error::invalid_config(format!(
                "upload multipart_threshold {} bytes is below 5 MiB",
                self.multipart_threshold
            )));
        }
        if self.concurrency == 0 {
            return Err(Error::invalid_config(
                "upload concurrency must be at least 1",
            ));
        }
        Ok(())
    }
}

/// `Some(value)` of an environment variable that is set and valid UTF-8.
fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

/// What the redacting `Debug` shows of a secret: `Some("<redacted>")` when set.
fn redacted(v: &Option<String>) -> Option<&'static str> {
    v.as_ref().map(|_| "<redacted>")
}

/// A boolean switch from the environment: unset → `None`.
fn switch_opt(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<bool>> {
    let Some(v) = get(name) else {
        return Ok(None);
    };
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(Some(true)),
        "0" | "false" | "no" | "off" => Ok(Some(false)),
        _ => Err(Error::invalid_config(format!(
            "{name}={v:?}: expected 1/0, true/false, yes/no or on/off"
        ))),
    }
}

/// A boolean switch from the environment, false when unset.
fn switch(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<bool> {
    Ok(switch_opt(get, name)?.unwrap_or(false))
}

fn check_bucket(what: &str, name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid_config(format!("the {what} name is empty")));
    }
    if name.contains('/') || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::invalid_config(format!(
            "invalid {what} name {name:?}: no '/', whitespace or control characters"
        )));
    }
    Ok(())
}

fn check_prefix(prefix: &str) -> Result<()> {
    validate_path(prefix).map_err(|e| {
        Error::invalid_argument(format!("invalid prefix inside the bucket: {e}"))
            .with_path(prefix.to_string())
    })
}

fn check_endpoint(e: &str) -> Result<()> {
    let lower = e.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    match rest {
        Some(host) if !host.is_empty() && !host.starts_with('/') => Ok(()),
        _ => Err(Error::invalid_config(format!(
            "invalid endpoint {e:?}: expected http://host[:port][/path] or https://..."
        ))),
    }
}

fn check_page_size(n: Option<usize>) -> Result<()> {
    if n == Some(0) {
        return Err(Error::invalid_config("list_page_size must be at least 1"));
    }
    Ok(())
}

/// The `root` of an opendal object-store operator for `prefix`: `/prefix`.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
fn operator_root(prefix: &str) -> String {
    format!("/{prefix}")
}

/// Splits the part of a bucket URI after `scheme://` into `(bucket, prefix)`:
/// `"bucket"` and `"bucket/"` → `("bucket", "")`, `"bucket/a/b/"` → `("bucket", "a/b")`. The
/// prefix must be a valid store path; no percent-decoding is done, and `?` and `#` are refused
/// (there are no query options).
///
/// # Errors
/// `InvalidArgument` naming `uri` for an empty bucket, a `?` or `#`, or a bad prefix.
pub(crate) fn split_bucket_uri(uri: &str, rest: &str) -> Result<(String, String)> {
    if rest.contains('?') || rest.contains('#') {
        return Err(Error::invalid_argument(format!(
            "{uri:?}: object store URIs take no query or fragment ('?', '#')"
        ))
        .with_path(uri.to_string()));
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{uri:?} names no bucket (expected scheme://bucket/prefix)"
        ))
        .with_path(uri.to_string()));
    }
    let prefix = prefix.trim_end_matches('/');
    validate_path(prefix).map_err(|e| {
        Error::invalid_argument(format!("{uri:?}: bad prefix: {e}")).with_path(uri.to_string())
    })?;
    Ok((bucket.to_string(), prefix.to_string()))
}

/// `scheme://bucket/prefix/path` with empty parts left out.
#[cfg_attr(
    not(any(feature = "s3", feature = "gcs", feature = "azblob")),
    allow(dead_code)
)]
pub(crate) fn object_location(scheme: &str, bucket: &str, prefix: &str, path: &str) -> String {
    let mut s = format!("{scheme}://{bucket}");
    for part in [prefix, path] {
        if !part.is_empty() {
            s.push('/');
            s.push_str(part);
        }
    }
    s
}

/// The configuration of one object store, for [`crate::OpendalStore`].
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
#[derive(Debug, Clone)]
pub(crate) enum ObjectConfig {
    #[cfg(feature = "s3")]
    S3(S3Config),
    #[cfg(feature = "gcs")]
    Gcs(GcsConfig),
    #[cfg(feature = "azblob")]
    Azblob(AzblobConfig),
}

#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
impl ObjectConfig {
    /// The URI scheme of locations: `s3`, `gs`, `azblob`.
    pub(crate) fn scheme(&self) -> &'static str {
        match self {
            #[cfg(feature = "s3")]
            ObjectConfig::S3(_) => "s3",
            #[cfg(feature = "gcs")]
            ObjectConfig::Gcs(_) => "gs",
            #[cfg(feature = "azblob")]
            ObjectConfig::Azblob(_) => "azblob",
        }
    }

    /// The bucket (container) and the prefix inside it.
    pub(crate) fn bucket_prefix(&self) -> (&str, &str) {
        match self {
            #[cfg(feature = "s3")]
            ObjectConfig::S3(c) => (&c.bucket, &c.prefix),
            #[cfg(feature = "gcs")]
            ObjectConfig::Gcs(c) => (&c.bucket, &c.prefix),
            #[cfg(feature = "azblob")]
            ObjectConfig::Azblob(c) => (&c.container, &c.prefix),
        }
    }

    pub(crate) fn upload(&self) -> UploadOptions {
        match self {
            #[cfg(feature = "s3")]
            ObjectConfig::S3(c) => c.upload,
            #[cfg(feature = "gcs")]
            ObjectConfig::Gcs(c) => c.upload,
            #[cfg(feature = "azblob")]
            ObjectConfig::Azblob(c) => c.upload,
        }
    }

    pub(crate) fn list_page_size(&self) -> Option<usize> {
        match self {
            #[cfg(feature = "s3")]
            ObjectConfig::S3(c) => c.list_page_size,
            #[cfg(feature = "gcs")]
            ObjectConfig::Gcs(c) => c.list_page_size,
            #[cfg(feature = "azblob")]
            ObjectConfig::Azblob(c) => c.list_page_size,
        }
    }

    pub(crate) fn location(&self, path: &str) -> String {
        let (bucket, prefix) = self.bucket_prefix();
        object_location(self.scheme(), bucket, prefix, path)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        match self {
            #[cfg(feature = "s3")]
            ObjectConfig::S3(c) => c.validate(),
            #[cfg(feature = "gcs")]
            ObjectConfig::Gcs(c) => c.validate(),
            #[cfg(feature = "azblob")]
            ObjectConfig::Azblob(c) => c.validate(),
        }
    }

    /// The opendal operator (no request is sent). Installs the HTTP transport first.
    pub(crate) fn build(&self) -> std::result::Result<opendal::Operator, opendal::Error> {
        install_http_transport();
        match self {
            #[cfg(feature = "s3")]
            ObjectConfig::S3(c) => s3::operator(c),
            #[cfg(feature = "gcs")]
            ObjectConfig::Gcs(c) => gcs::operator(c),
            #[cfg(feature = "azblob")]
            ObjectConfig::Azblob(c) => azblob::operator(c),
        }
    }
}

/// Installs, once per process, the HTTP transport opendal's object stores send requests with:
/// `ring` as rustls's process-wide crypto provider (unless one is installed already, which then
/// stays), and reqwest as opendal's default transport (notes/dependencies.md G1: with opendal's
/// default features off, nothing installs it, and every request fails with "default HTTP
/// transport is not installed").
///
/// The stores call this themselves; call it before building your own opendal HTTP operator
/// (e.g. a raw S3 baseline in a benchmark) in a process that links ckpt-storage.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
pub fn install_http_transport() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first: it is used instead, which is fine.
        // rustls 0.23.48 deprecates its ring provider (no post-quantum key exchange); ring stays
        // here because the alternative, aws-lc-rs, needs a C and cmake build. A program that
        // wants post-quantum key exchange installs its own provider before the first store.
        #[allow(deprecated)]
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_core::ErrorKind;
    use std::collections::HashMap;

    /// An environment lookup over `pairs` (for the `from_lookup` tests of each backend).
    pub(super) fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn bucket_uris() {
        let s = |r: &str| split_bucket_uri("u", r);
        assert_eq!(s("b").unwrap(), ("b".into(), "".into()));
        assert_eq!(s("b/").unwrap(), ("b".into(), "".into()));
        assert_eq!(s("b/a/c/").unwrap(), ("b".into(), "a/c".into()));
        assert_eq!(s("b/a b/ü").unwrap(), ("b".into(), "a b/ü".into()));
        for bad in ["", "/x", "b//x", "b/../x", "b/x?y=1", "b/x#f", "b/./x"] {
            assert_eq!(
                s(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad:?}"
            );
        }
        assert_eq!(object_location("s3", "b", "", ""), "s3://b");
        assert_eq!(object_location("s3", "b", "p/q", ""), "s3://b/p/q");
        assert_eq!(
            object_location("s3", "b", "p", "3/default"),
            "s3://b/p/3/default"
        );
        assert_eq!(object_location("gs", "b", "", "3"), "gs://b/3");
    }
}
