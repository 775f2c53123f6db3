//! Opening a store from a string: [`open`] and [`open_with_retries`] take a plain path or a URI
//! (`file://`, `memory://`, `s3://`, `gs://`, `azblob://`) and give the store it names, the
//! object stores behind a retry layer.

use crate::{LocalStore, OpendalStore, Store};
use ckpt_core::{Error, Result};
use std::sync::Arc;

/// Opens a store from a URI or a plain path:
/// * a plain path, relative (to the current directory) or absolute → [`LocalStore::open`];
/// * `file:///abs/path` (an empty or `localhost` host; no percent-decoding) → the same;
/// * `memory://` (or `memory:///`) → a fresh [`OpendalStore::memory`] each call;
/// * `s3://bucket[/prefix]` → [`OpendalStore::s3`] with [`crate::S3Config::from_env`] (feature
///   `s3`, on by default): `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, ...;
/// * `gs://bucket[/prefix]` (or `gcs://`) → [`OpendalStore::gcs`] with
///   [`crate::GcsConfig::from_env`] (feature `gcs`);
/// * `azblob://container[/prefix]` (or `az://`) → [`OpendalStore::azblob`] with
///   [`crate::AzblobConfig::from_env`] (feature `azblob`).
///
/// The object stores come wrapped in a [`crate::RetryStore`] (default [`crate::RetryPolicy`]:
/// up to 10 attempts, exponential backoff with full jitter, 60 s at most), which retries the
/// temporary errors (500, 503, `SlowDown`, lost connections) that every SDK retries.
///
/// A string is taken as a URI when it starts with `<scheme>://`, the scheme being a letter then
/// letters, digits, `+`, `-` or `.`. Bucket URIs are not percent-decoded and take no query; a
/// trailing `/` is ignored; the prefix must be a valid store path.
///
/// # Errors
/// `InvalidArgument` for an empty string, an unknown scheme (the message names it), a `file://`
/// URI with another host or a relative path, `memory://` followed by a path, a bucket URI
/// without a bucket or with a bad prefix; `Unsupported` for an object-store scheme whose Cargo
/// feature is off (the message names the feature); `InvalidConfig` for a bad setting in the
/// environment; else as the constructors.
pub fn open(uri: &str) -> Result<Arc<dyn Store>> {
    open_with_retries(uri, Some(crate::RetryPolicy::default()))
}

/// The [`LocalStore`] of `uri` when it names a local directory (a path, or `file:///abs/path`),
/// for a caller that configures it further (e.g. [`LocalStore::with_direct_io`]); `None` for
/// every other scheme.
///
/// # Errors
/// As [`open`] for a local `uri`.
pub fn open_local(uri: &str) -> Result<Option<LocalStore>> {
    if uri.is_empty() {
        return Err(Error::invalid_argument("empty store location"));
    }
    match split_scheme(uri) {
        None => Ok(Some(LocalStore::open(uri)?)),
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("file") => {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(Error::invalid_argument(format!(
                    "a file URI needs an absolute path and no host (file:///abs/path), got {uri:?}"
                ))
                .with_path(uri.to_string()));
            }
            Ok(Some(LocalStore::open(path)?))
        }
        Some(_) => Ok(None),
    }
}

/// As [`open`], with the object stores behind a [`crate::RetryStore`] of `retry`, or of none
/// (`None`: the bare [`OpendalStore`], for a caller that puts its own retry layer on top).
///
/// # Errors
/// As [`open`].
pub fn open_with_retries(uri: &str, retry: Option<crate::RetryPolicy>) -> Result<Arc<dyn Store>> {
    #[cfg(not(any(feature = "s3", feature = "gcs", feature = "azblob")))]
    let _ = retry;
    if uri.is_empty() {
        return Err(Error::invalid_argument("empty store location"));
    }
    if let Some(local) = open_local(uri)? {
        return Ok(Arc::new(local));
    }
    let Some((scheme, rest)) = split_scheme(uri) else {
        return Err(Error::invalid_argument(format!("no scheme in {uri:?}")));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "memory" => {
            if !rest.is_empty() && rest != "/" {
                return Err(Error::invalid_argument(format!(
                    "a memory store has no path: use \"memory://\", got {uri:?}"
                ))
                .with_path(uri.to_string()));
            }
            Ok(Arc::new(OpendalStore::memory()?))
        }
        "s3" => {
            let (bucket, prefix) = crate::object::split_bucket_uri(uri, rest)?;
            #[cfg(feature = "s3")]
            return Ok(retrying(
                retry,
                OpendalStore::s3(crate::S3Config::from_env(bucket, prefix)?)?,
            ));
            #[cfg(not(feature = "s3"))]
            return Err(feature_off(uri, "s3", (bucket, prefix)));
        }
        "gs" | "gcs" => {
            let (bucket, prefix) = crate::object::split_bucket_uri(uri, rest)?;
            #[cfg(feature = "gcs")]
            return Ok(retrying(
                retry,
                OpendalStore::gcs(crate::GcsConfig::from_env(bucket, prefix)?)?,
            ));
            #[cfg(not(feature = "gcs"))]
            return Err(feature_off(uri, "gcs", (bucket, prefix)));
        }
        "azblob" | "az" => {
            let (container, prefix) = crate::object::split_bucket_uri(uri, rest)?;
            #[cfg(feature = "azblob")]
            return Ok(retrying(
                retry,
                OpendalStore::azblob(crate::AzblobConfig::from_env(container, prefix)?)?,
            ));
            #[cfg(not(feature = "azblob"))]
            return Err(feature_off(uri, "azblob", (container, prefix)));
        }
        other => Err(Error::invalid_argument(format!(
            "unknown store scheme {other:?} in {uri:?} (supported: file://, memory://, s3://, \
             gs://, azblob://, or a plain path)"
        ))
        .with_path(uri.to_string())),
    }
}

/// An object store behind a [`crate::RetryStore`] of `retry` (when given): object stores answer
/// 500, 503 and `SlowDown` now and then, and every SDK retries them.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
fn retrying(retry: Option<crate::RetryPolicy>, store: OpendalStore) -> Arc<dyn Store> {
    match retry {
        Some(policy) => Arc::new(crate::RetryStore::new(Arc::new(store), policy)),
        None => Arc::new(store),
    }
}

/// The error for a bucket URI whose service was not compiled in.
#[cfg(not(all(feature = "s3", feature = "gcs", feature = "azblob")))]
fn feature_off(uri: &str, feature: &str, _parsed: (String, String)) -> Error {
    Error::new(
        ckpt_core::ErrorKind::Unsupported,
        format!(
            "{uri:?} needs the `{feature}` Cargo feature of ckpt-storage, which this build does not have"
        ),
    )
    .with_path(uri.to_string())
}

/// `Some((scheme, rest))` when `s` is `<scheme>://<rest>`.
fn split_scheme(s: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = s.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    let ok = first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    ok.then_some((scheme, rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_core::ErrorKind;

    #[test]
    fn schemes() {
        assert_eq!(split_scheme("memory://"), Some(("memory", "")));
        assert_eq!(split_scheme("file:///a/b"), Some(("file", "/a/b")));
        assert_eq!(split_scheme("s3://bucket/p"), Some(("s3", "bucket/p")));
        assert_eq!(split_scheme("runs/exp1"), None);
        assert_eq!(split_scheme("a b://x"), None);
        assert_eq!(split_scheme("://x"), None);
    }

    #[test]
    fn unknown_scheme_is_named() {
        let e = open("s4://bucket/prefix").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().contains("\"s4\""), "{e}");
        for bad in [
            "s3://",
            "s3:///x",
            "gs://b//x",
            "azblob://c/../x",
            "s3://b/x?versionId=1",
        ] {
            assert_eq!(
                open(bad).unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{bad}"
            );
        }
        assert_eq!(open("").unwrap_err().kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            open("file://host/x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        assert_eq!(
            open("memory://x").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }
}
