//! The Google Cloud Storage store's configuration, [`GcsConfig`]: its fields, its reading from
//! the environment (`GCS_ENDPOINT`, `STORAGE_EMULATOR_HOST`, `GOOGLE_*`), its checks, and the
//! opendal operator built from it (feature `gcs`).

#[cfg(feature = "gcs")]
use super::operator_root;
use super::UploadOptions;
use super::{check_bucket, check_endpoint, check_page_size, check_prefix, env_var, switch_opt};
use ckpt_core::Result;

/// A Google Cloud Storage store: objects below `prefix` in `bucket`
/// ([`crate::OpendalStore::gcs`], feature `gcs`). Locations are `gs://<bucket>/<prefix>/<path>`.
///
/// Credentials: a credentials file (`credential_path`), a service-account key base64-encoded
/// (`credential`), an OAuth2 access token (`token`), or none with `allow_anonymous`. After the
/// given ones, with `ambient_credentials` (set by [`GcsConfig::from_env`]), Google's
/// application default credentials as opendal 0.59 (reqsign-google 3) has them: the file named
/// by `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's file
/// `application_default_credentials.json` (in `$APPDATA/gcloud`, else
/// `$XDG_CONFIG_HOME/gcloud`, else `$HOME/.config/gcloud`; written by `gcloud auth
/// application-default login`), then the GCE metadata server (`GCE_METADATA_HOST`, else
/// `metadata.google.internal`). A file may hold a service-account key, authorized-user
/// (gcloud login), external-account (workload identity federation) or impersonated
/// service-account credentials. Deviations from Google's libraries: `CLOUDSDK_CONFIG` is not
/// looked at, and the metadata server is asked without a probe or timeout of its own (outside
/// Google Cloud the name does not resolve and the step fails at once). Without
/// `ambient_credentials` (what [`GcsConfig::new`] gives) only the given credentials are used.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GcsConfig {
    /// The bucket. Must not be empty or contain `/`.
    pub bucket: String,
    /// The store's root inside the bucket (a store path, `""` for the whole bucket).
    pub prefix: String,
    /// The endpoint URL; `None` for `https://storage.googleapis.com`.
    pub endpoint: Option<String>,
    /// Path of a service-account JSON key file.
    pub credential_path: Option<String>,
    /// A service-account JSON key, base64-encoded.
    pub credential: Option<String>,
    /// An OAuth2 access token.
    pub token: Option<String>,
    /// Send requests unsigned (public buckets, emulators).
    pub allow_anonymous: bool,
    /// After the given credentials, look for Google's application default credentials (see the
    /// type's documentation). On with [`GcsConfig::from_env`], off with [`GcsConfig::new`].
    pub ambient_credentials: bool,
    /// Objects per page of a listing (`maxResults`); `None` for the server's default.
    pub list_page_size: Option<usize>,
    /// How large writes are uploaded.
    pub upload: UploadOptions,
}

redacting_debug!(GcsConfig {
    bucket,
    prefix,
    endpoint,
    credential_path,
    credential: redacted,
    token: redacted,
    allow_anonymous,
    ambient_credentials,
    list_page_size,
    upload,
});

impl GcsConfig {
    /// A configuration for `bucket` and `prefix`: Google's endpoint, no credentials, no
    /// application default credentials (`ambient_credentials` off).
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        GcsConfig {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            credential_path: None,
            credential: None,
            token: None,
            allow_anonymous: false,
            ambient_credentials: false,
            list_page_size: None,
            upload: UploadOptions::default(),
        }
    }

    /// [`GcsConfig::new`] completed from the process environment (empty values count as unset):
    /// * `GCS_ENDPOINT`, else `STORAGE_EMULATOR_HOST` (the variable Google's client libraries
    ///   use for an emulator; `http://` is added when it has no scheme) → `endpoint`;
    /// * `GOOGLE_APPLICATION_CREDENTIALS` → `credential_path`; `GOOGLE_OAUTH_ACCESS_TOKEN` →
    ///   `token`;
    /// * `CKPT_GCS_ALLOW_ANONYMOUS` = `1`/... → unsigned requests; also on by default when
    ///   `STORAGE_EMULATOR_HOST` is set and no credential is;
    /// * `ambient_credentials` on: application default credentials after the given ones (see
    ///   [`GcsConfig`]).
    ///
    /// # Errors
    /// `InvalidConfig` for a switch that is not a boolean word.
    pub fn from_env(bucket: impl Into<String>, prefix: impl Into<String>) -> Result<Self> {
        Self::from_lookup(bucket, prefix, env_var)
    }

    /// As [`GcsConfig::from_env`], reading variables through `lookup`.
    ///
    /// # Errors
    /// As [`GcsConfig::from_env`].
    pub fn from_lookup(
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let mut c = GcsConfig::new(bucket, prefix);
        let emulator = get("STORAGE_EMULATOR_HOST").map(|h| {
            if h.contains("://") {
                h
            } else {
                format!("http://{h}")
            }
        });
        c.endpoint = get("GCS_ENDPOINT").or_else(|| emulator.clone());
        c.credential_path = get("GOOGLE_APPLICATION_CREDENTIALS");
        c.token = get("GOOGLE_OAUTH_ACCESS_TOKEN");
        let explicit = switch_opt(&get, "CKPT_GCS_ALLOW_ANONYMOUS")?;
        c.allow_anonymous = explicit
            .unwrap_or(emulator.is_some() && c.credential_path.is_none() && c.token.is_none());
        c.ambient_credentials = true;
        Ok(c)
    }

    /// Checks the configuration without building anything.
    ///
    /// # Errors
    /// `InvalidConfig` (`InvalidArgument` for a bad prefix) saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        check_bucket("GCS bucket", &self.bucket)?;
        check_prefix(&self.prefix)?;
        if let Some(e) = &self.endpoint {
            check_endpoint(e)?;
        }
        check_page_size(self.list_page_size)?;
        self.upload.validate()
    }
}

/// The opendal operator of `c` (no request is sent); `ObjectConfig::build` installs the HTTP
/// transport first. opendal's application-default-credentials chain (environment, gcloud's
/// file, metadata server) is turned off unless `ambient_credentials`.
#[cfg(feature = "gcs")]
pub(super) fn operator(c: &GcsConfig) -> std::result::Result<opendal::Operator, opendal::Error> {
    let mut b = opendal::services::Gcs::default()
        .bucket(&c.bucket)
        .root(&operator_root(&c.prefix));
    if !c.ambient_credentials {
        b = b.disable_config_load().disable_vm_metadata();
    }
    if let Some(e) = &c.endpoint {
        b = b.endpoint(e.trim_end_matches('/'));
    }
    if let Some(p) = &c.credential_path {
        b = b.credential_path(p);
    }
    if let Some(k) = &c.credential {
        b = b.credential(k);
    }
    if let Some(t) = &c.token {
        b = b.token(t.clone());
    }
    if c.allow_anonymous {
        b = b.skip_signature();
    }
    opendal::Operator::new(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::tests::lookup;

    #[test]
    fn gcs_from_env() {
        let c = GcsConfig::from_lookup(
            "b",
            "",
            lookup(&[("STORAGE_EMULATOR_HOST", "localhost:9023")]),
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://localhost:9023"));
        assert!(c.allow_anonymous);
        c.validate().unwrap();
        let c = GcsConfig::from_lookup(
            "b",
            "",
            lookup(&[
                ("GCS_ENDPOINT", "http://127.0.0.1:4443"),
                ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:4443"));
        assert_eq!(c.credential_path.as_deref(), Some("/k.json"));
        assert!(!c.allow_anonymous);
    }
}
