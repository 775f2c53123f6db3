//! Object stores: the configuration of the S3, GCS and Azure Blob stores ([`S3Config`],
//! [`GcsConfig`], [`AzblobConfig`], [`UploadOptions`]), how they are read from a URI plus the
//! standard environment, and how each becomes an `opendal::Operator` (features `s3`, `gcs`,
//! `azblob`).
//!
//! The configuration types are plain data and always compiled (so a URI can be parsed, and a
//! configuration checked, in a build without the service); building a store needs the feature.
//!
//! Nothing here reads `~/.aws`, `~/.config/gcloud` or any other file of the host's cloud tools,
//! and nothing asks an instance metadata service (EC2 IMDS, GCE metadata, Azure IMDS) for
//! credentials: those live on non-loopback addresses, and a checkpoint store should use the
//! credentials it is given. Credentials come from the configuration, which [`S3Config::from_env`]
//! and its siblings fill from the standard environment variables.

use crate::path::validate_path;
use ckpt_core::{Error, Result};
use std::fmt;

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

/// An S3 or S3-compatible store: objects below `prefix` in `bucket`
/// ([`crate::OpendalStore::s3`], feature `s3`). Locations are `s3://<bucket>/<prefix>/<path>`.
///
/// Build one with [`S3Config::new`] and set the fields, or read it from the environment with
/// [`S3Config::from_env`] (what [`crate::open`] does for `s3://bucket/prefix`). Requests are
/// signed with the given keys; without keys they are signed with whatever opendal's remaining
/// credential providers find (web identity, SSO, credential process, ECS: each only when its
/// environment variables are set), or sent unsigned with `allow_anonymous`. `~/.aws/*` and the
/// EC2 instance metadata service are never used.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Config {
    /// The bucket. Must not be empty or contain `/`.
    pub bucket: String,
    /// The store's root inside the bucket: a store path (`""` for the whole bucket, `"a/b"`),
    /// see [`crate::validate_path`].
    pub prefix: String,
    /// The endpoint URL, `http://` or `https://` (e.g. `http://127.0.0.1:9000` for a local
    /// server); `None` for AWS itself (`https://s3.<region>.amazonaws.com`).
    pub endpoint: Option<String>,
    /// The region; `us-east-1` by default. Local servers accept any.
    pub region: String,
    /// Access key id; used only together with `secret_access_key`.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// Virtual-host-style requests (`https://<bucket>.<endpoint>/key`) instead of path-style
    /// (`https://<endpoint>/<bucket>/key`, the default, which local servers need).
    pub virtual_host_style: bool,
    /// Send requests unsigned (public buckets, servers without authentication).
    pub allow_anonymous: bool,
    /// Objects per page of a listing (S3 `max-keys`); `None` for the server's default (1,000 on
    /// AWS). Every page is fetched; a smaller page only means more requests.
    pub list_page_size: Option<usize>,
    /// How large writes are uploaded.
    pub upload: UploadOptions,
}

impl fmt::Debug for S3Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("virtual_host_style", &self.virtual_host_style)
            .field("allow_anonymous", &self.allow_anonymous)
            .field("list_page_size", &self.list_page_size)
            .field("upload", &self.upload)
            .finish()
    }
}

/// The default region of [`S3Config`].
pub const DEFAULT_S3_REGION: &str = "us-east-1";

impl S3Config {
    /// A configuration for `bucket` and `prefix` with everything else at its default: AWS's
    /// endpoint, region `us-east-1`, no credentials, path-style requests.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        S3Config {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            region: DEFAULT_S3_REGION.to_string(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            virtual_host_style: false,
            allow_anonymous: false,
            list_page_size: None,
            upload: UploadOptions::default(),
        }
    }

    /// [`S3Config::new`] completed from the process environment (empty values count as unset):
    /// * `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` → `endpoint`;
    /// * `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` → the credentials;
    /// * `AWS_REGION`, else `AWS_DEFAULT_REGION` → `region` (default `us-east-1`);
    /// * `CKPT_S3_VIRTUAL_HOST_STYLE` = `1`/`true`/`yes`/`on` → virtual-host style (path style
    ///   otherwise);
    /// * `CKPT_S3_ALLOW_ANONYMOUS` = `1`/... → unsigned requests.
    ///
    /// # Errors
    /// `InvalidConfig` when a switch holds something other than `1`, `0`, `true`, `false`,
    /// `yes`, `no`, `on`, `off`.
    pub fn from_env(bucket: impl Into<String>, prefix: impl Into<String>) -> Result<Self> {
        Self::from_lookup(bucket, prefix, env_var)
    }

    /// As [`S3Config::from_env`], reading variables through `lookup` instead of the process
    /// environment (for tests and for callers with their own settings source).
    ///
    /// # Errors
    /// As [`S3Config::from_env`].
    pub fn from_lookup(
        bucket: impl Into<String>,
        prefix: impl Into<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let mut c = S3Config::new(bucket, prefix);
        c.endpoint = get("AWS_ENDPOINT_URL_S3").or_else(|| get("AWS_ENDPOINT_URL"));
        c.access_key_id = get("AWS_ACCESS_KEY_ID");
        c.secret_access_key = get("AWS_SECRET_ACCESS_KEY");
        c.session_token = get("AWS_SESSION_TOKEN");
        if let Some(r) = get("AWS_REGION").or_else(|| get("AWS_DEFAULT_REGION")) {
            c.region = r;
        }
        c.virtual_host_style = switch(&get, "CKPT_S3_VIRTUAL_HOST_STYLE")?;
        c.allow_anonymous = switch(&get, "CKPT_S3_ALLOW_ANONYMOUS")?;
        Ok(c)
    }

    /// Checks the configuration without building anything: bucket, prefix, endpoint, region,
    /// upload sizes, page size.
    ///
    /// # Errors
    /// `InvalidConfig` (`InvalidArgument` for a bad prefix) saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        check_bucket("S3 bucket", &self.bucket)?;
        check_prefix(&self.prefix)?;
        if let Some(e) = &self.endpoint {
            check_endpoint(e)?;
        }
        if self.region.trim().is_empty() {
            return Err(Error::invalid_config("the S3 region is empty"));
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err(Error::invalid_config(
                "S3 credentials need both an access key id and a secret access key",
            ));
        }
        check_page_size(self.list_page_size)?;
        self.upload.validate()
    }
}

/// A Google Cloud Storage store: objects below `prefix` in `bucket`
/// ([`crate::OpendalStore::gcs`], feature `gcs`). Locations are `gs://<bucket>/<prefix>/<path>`.
///
/// Credentials: a service-account key file (`credential_path`), its content base64-encoded
/// (`credential`), an OAuth2 access token (`token`), or none with `allow_anonymous`. The GCE
/// metadata server and gcloud's well-known files are never used.
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
    /// Objects per page of a listing (`maxResults`); `None` for the server's default.
    pub list_page_size: Option<usize>,
    /// How large writes are uploaded.
    pub upload: UploadOptions,
}

impl fmt::Debug for GcsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GcsConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("credential_path", &self.credential_path)
            .field("credential", &redacted(&self.credential))
            .field("token", &redacted(&self.token))
            .field("allow_anonymous", &self.allow_anonymous)
            .field("list_page_size", &self.list_page_size)
            .field("upload", &self.upload)
            .finish()
    }
}

impl GcsConfig {
    /// A configuration for `bucket` and `prefix`: Google's endpoint, no credentials.
    pub fn new(bucket: impl Into<String>, prefix: impl Into<String>) -> Self {
        GcsConfig {
            bucket: bucket.into(),
            prefix: prefix.into(),
            endpoint: None,
            credential_path: None,
            credential: None,
            token: None,
            allow_anonymous: false,
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
    ///   `STORAGE_EMULATOR_HOST` is set and no credential is.
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

/// An Azure Blob Storage store: blobs below `prefix` in `container`
/// ([`crate::OpendalStore::azblob`], feature `azblob`). Locations are
/// `azblob://<container>/<prefix>/<path>`.
///
/// Credentials: a shared key (`account_name` + `account_key`), a SAS token, or none with
/// `allow_anonymous`; building a store without any of them is an error, because opendal would
/// otherwise go on to Azure's instance metadata service and the Azure CLI.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AzblobConfig {
    /// The container. Must not be empty or contain `/`.
    pub container: String,
    /// The store's root inside the container (a store path, `""` for the whole container).
    pub prefix: String,
    /// The blob endpoint, e.g. `https://<account>.blob.core.windows.net` or, for Azurite,
    /// `http://127.0.0.1:10000/devstoreaccount1`; `None` means
    /// `https://<account_name>.blob.core.windows.net`.
    pub endpoint: Option<String>,
    /// The storage account name.
    pub account_name: Option<String>,
    /// The account key (base64), for shared-key signing.
    pub account_key: Option<String>,
    /// A SAS token (without the leading `?`).
    pub sas_token: Option<String>,
    /// Send requests unsigned (public containers).
    pub allow_anonymous: bool,
    /// Blobs per page of a listing (`maxresults`); `None` for the server's default. (opendal
    /// 0.59's azblob service does not take a page size; it is then ignored.)
    pub list_page_size: Option<usize>,
    /// How large writes are uploaded (as blocks of a block blob).
    pub upload: UploadOptions,
}

impl fmt::Debug for AzblobConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AzblobConfig")
            .field("container", &self.container)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("account_name", &self.account_name)
            .field("account_key", &redacted(&self.account_key))
            .field("sas_token", &redacted(&self.sas_token))
            .field("allow_anonymous", &self.allow_anonymous)
            .field("list_page_size", &self.list_page_size)
            .field("upload", &self.upload)
            .finish()
    }
}

/// Azurite's (and the Azure Storage Emulator's) well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The well-known key of [`AZURITE_ACCOUNT`] (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl AzblobConfig {
    /// A configuration for `container` and `prefix` with no account, endpoint or credentials.
    pub fn new(container: impl Into<String>, prefix: impl Into<String>) -> Self {
        AzblobConfig {
            container: container.into(),
            prefix: prefix.into(),
            endpoint: None,
            account_name: None,
            account_key: None,
            sas_token: None,
            allow_anonymous: false,
            list_page_size: None,
            upload: UploadOptions::default(),
        }
    }

    /// Fills the account, key, SAS token and endpoint from an Azure Storage connection string
    /// (`Key=Value` pairs separated by `;`): `AccountName`, `AccountKey`,
    /// `SharedAccessSignature`, `BlobEndpoint`, else `DefaultEndpointsProtocol` (default
    /// `https`) + `EndpointSuffix` (default `core.windows.net`);
    /// `UseDevelopmentStorage=true` means Azurite at `http://127.0.0.1:10000/devstoreaccount1`
    /// with its well-known key.
    ///
    /// # Errors
    /// `InvalidConfig` for a pair without `=`.
    pub fn apply_connection_string(&mut self, conn: &str) -> Result<()> {
        let mut protocol = "https".to_string();
        let mut suffix = "core.windows.net".to_string();
        let mut blob_endpoint = None;
        for part in conn.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                // The part is not shown: it may hold a secret.
                return Err(Error::invalid_config(
                    "malformed Azure connection string: a part is not Key=Value",
                ));
            };
            match k.trim() {
                "AccountName" => self.account_name = Some(v.to_string()),
                "AccountKey" => self.account_key = Some(v.to_string()),
                "SharedAccessSignature" => {
                    self.sas_token = Some(v.trim_start_matches('?').to_string())
                }
                "BlobEndpoint" => blob_endpoint = Some(v.trim_end_matches('/').to_string()),
                "DefaultEndpointsProtocol" => protocol = v.to_string(),
                "EndpointSuffix" => suffix = v.to_string(),
                "UseDevelopmentStorage" if v.eq_ignore_ascii_case("true") => {
                    self.account_name = Some(AZURITE_ACCOUNT.to_string());
                    self.account_key = Some(AZURITE_KEY.to_string());
                    blob_endpoint = Some(format!("http://127.0.0.1:10000/{AZURITE_ACCOUNT}"));
                }
                _ => {}
            }
        }
        self.endpoint = match (blob_endpoint, &self.account_name) {
            (Some(e), _) => Some(e),
            (None, Some(a)) => Some(format!("{protocol}://{a}.blob.{suffix}")),
            (None, None) => self.endpoint.take(),
        };
        Ok(())
    }

    /// [`AzblobConfig::new`] completed from the process environment (empty values count as
    /// unset): first `AZURE_STORAGE_CONNECTION_STRING` (see
    /// [`AzblobConfig::apply_connection_string`]), then, each overriding it,
    /// `AZURE_STORAGE_ACCOUNT` (or `AZURE_STORAGE_ACCOUNT_NAME`), `AZURE_STORAGE_KEY` (or
    /// `AZURE_STORAGE_ACCOUNT_KEY`), `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_ENDPOINT`;
    /// `CKPT_AZBLOB_ALLOW_ANONYMOUS` = `1`/... → unsigned requests.
    ///
    /// # Errors
    /// `InvalidConfig` for a malformed connection string or a switch that is not a boolean word.
    pub fn from_env(container: impl Into<String>, prefix: impl Into<String>) -> Result<Self> {
        Self::from_lookup(container, prefix, env_var)
    }

    /// As [`AzblobConfig::from_env`], reading variables through `lookup`.
    ///
    /// # Errors
    /// As [`AzblobConfig::from_env`].
    pub fn from_lookup(
        container: impl Into<String>,
        prefix: impl Into<String>,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let get = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let mut c = AzblobConfig::new(container, prefix);
        if let Some(conn) = get("AZURE_STORAGE_CONNECTION_STRING") {
            c.apply_connection_string(&conn)?;
        }
        if let Some(a) = get("AZURE_STORAGE_ACCOUNT").or_else(|| get("AZURE_STORAGE_ACCOUNT_NAME"))
        {
            c.account_name = Some(a);
        }
        if let Some(k) = get("AZURE_STORAGE_KEY").or_else(|| get("AZURE_STORAGE_ACCOUNT_KEY")) {
            c.account_key = Some(k);
        }
        if let Some(s) = get("AZURE_STORAGE_SAS_TOKEN") {
            c.sas_token = Some(s.trim_start_matches('?').to_string());
        }
        if let Some(e) = get("AZURE_STORAGE_ENDPOINT") {
            c.endpoint = Some(e.trim_end_matches('/').to_string());
        }
        c.allow_anonymous = switch(&get, "CKPT_AZBLOB_ALLOW_ANONYMOUS")?;
        Ok(c)
    }

    /// The endpoint the store uses: `endpoint`, else the one of `account_name`.
    pub fn effective_endpoint(&self) -> Option<String> {
        self.endpoint.clone().or_else(|| {
            self.account_name
                .as_ref()
                .map(|a| format!("https://{a}.blob.core.windows.net"))
        })
    }

    /// Checks the configuration without building anything.
    ///
    /// # Errors
    /// `InvalidConfig` (`InvalidArgument` for a bad prefix) saying what is wrong: also when
    /// there is no endpoint and no account, or no credential and not `allow_anonymous`.
    pub fn validate(&self) -> Result<()> {
        check_bucket("Azure container", &self.container)?;
        check_prefix(&self.prefix)?;
        match self.effective_endpoint() {
            Some(e) => check_endpoint(&e)?,
            None => {
                return Err(Error::invalid_config(
                    "an Azure Blob store needs an endpoint or an account name \
                     (AZURE_STORAGE_ENDPOINT, AZURE_STORAGE_ACCOUNT or AZURE_STORAGE_CONNECTION_STRING)",
                ))
            }
        }
        let shared_key = self.account_key.is_some() && self.account_name.is_some();
        if !(shared_key || self.sas_token.is_some() || self.allow_anonymous) {
            return Err(Error::invalid_config(
                "an Azure Blob store needs credentials: an account name and key \
                 (AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY), a SAS token (AZURE_STORAGE_SAS_TOKEN), \
                 a connection string (AZURE_STORAGE_CONNECTION_STRING), or CKPT_AZBLOB_ALLOW_ANONYMOUS=1",
            ));
        }
        check_page_size(self.list_page_size)?;
        self.upload.validate()
    }
}

/// `Some(value)` of an environment variable that is set and valid UTF-8.
fn env_var(k: &str) -> Option<String> {
    std::env::var(k).ok()
}

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
        let root = |prefix: &str| format!("/{prefix}");
        match self {
            #[cfg(feature = "s3")]
            ObjectConfig::S3(c) => {
                let mut b = opendal::services::S3::default()
                    .bucket(&c.bucket)
                    .root(&root(&c.prefix))
                    .region(&c.region)
                    .disable_config_load()
                    .disable_ec2_metadata();
                if let Some(e) = &c.endpoint {
                    b = b.endpoint(e.trim_end_matches('/'));
                }
                if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
                    b = b.access_key_id(id).secret_access_key(secret);
                    if let Some(t) = &c.session_token {
                        b = b.session_token(t);
                    }
                }
                if c.virtual_host_style {
                    b = b.enable_virtual_host_style();
                }
                if c.allow_anonymous {
                    b = b.skip_signature();
                }
                opendal::Operator::new(b)
            }
            #[cfg(feature = "gcs")]
            ObjectConfig::Gcs(c) => {
                let mut b = opendal::services::Gcs::default()
                    .bucket(&c.bucket)
                    .root(&root(&c.prefix))
                    .disable_config_load()
                    .disable_vm_metadata();
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
            #[cfg(feature = "azblob")]
            ObjectConfig::Azblob(c) => {
                let mut b = opendal::services::Azblob::default()
                    .container(&c.container)
                    .root(&root(&c.prefix));
                if let Some(e) = c.effective_endpoint() {
                    b = b.endpoint(&e);
                }
                if let Some(a) = &c.account_name {
                    b = b.account_name(a);
                }
                if let Some(k) = &c.account_key {
                    b = b.account_key(k);
                }
                if let Some(s) = &c.sas_token {
                    b = b.sas_token(s);
                }
                if c.allow_anonymous {
                    b = b.skip_signature();
                }
                opendal::Operator::new(b)
            }
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
        let _ = rustls::crypto::ring::default_provider().install_default();
        opendal_http_transport_reqwest::install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_core::ErrorKind;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
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

    #[test]
    fn s3_from_env() {
        let c = S3Config::from_lookup("b", "p", lookup(&[])).unwrap();
        assert_eq!(c, S3Config::new("b", "p"));
        assert_eq!(c.region, "us-east-1");
        assert!(!c.virtual_host_style);
        let c = S3Config::from_lookup(
            "b",
            "p",
            lookup(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
                ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:2"),
                ("AWS_ACCESS_KEY_ID", "id"),
                ("AWS_SECRET_ACCESS_KEY", "secret"),
                ("AWS_SESSION_TOKEN", "tok"),
                ("AWS_DEFAULT_REGION", "eu-west-1"),
                ("CKPT_S3_VIRTUAL_HOST_STYLE", "on"),
            ]),
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:2"));
        assert_eq!(c.access_key_id.as_deref(), Some("id"));
        assert_eq!(c.secret_access_key.as_deref(), Some("secret"));
        assert_eq!(c.session_token.as_deref(), Some("tok"));
        assert_eq!(c.region, "eu-west-1");
        assert!(c.virtual_host_style);
        c.validate().unwrap();
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("secret\"") && !dbg.contains("tok\""), "{dbg}");
        let c = S3Config::from_lookup(
            "b",
            "",
            lookup(&[
                ("AWS_ENDPOINT_URL", "http://127.0.0.1:1"),
                ("AWS_REGION", "r1"),
                ("AWS_DEFAULT_REGION", "r2"),
                ("AWS_SESSION_TOKEN", ""),
            ]),
        )
        .unwrap();
        assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(c.region, "r1");
        assert_eq!(c.session_token, None);
        let e = S3Config::from_lookup("b", "", lookup(&[("CKPT_S3_VIRTUAL_HOST_STYLE", "maybe")]))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.to_string().contains("CKPT_S3_VIRTUAL_HOST_STYLE"), "{e}");
    }

    #[test]
    fn s3_validate() {
        let ok = S3Config::new("b", "a/b");
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.endpoint = Some("127.0.0.1:9000".into());
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        let mut c = ok.clone();
        c.access_key_id = Some("id".into());
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        let mut c = ok.clone();
        c.upload.chunk_size = 1 << 20;
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        let mut c = ok.clone();
        c.list_page_size = Some(0);
        assert_eq!(c.validate().unwrap_err().kind(), ErrorKind::InvalidConfig);
        assert_eq!(
            S3Config::new("", "").validate().unwrap_err().kind(),
            ErrorKind::InvalidConfig
        );
        assert_eq!(
            S3Config::new("b", "/x").validate().unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
    }

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

    #[test]
    fn azblob_from_env() {
        let conn = format!(
            "DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};\
             BlobEndpoint=http://127.0.0.1:10000/{AZURITE_ACCOUNT};"
        );
        let c = AzblobConfig::from_lookup(
            "c",
            "p",
            lookup(&[("AZURE_STORAGE_CONNECTION_STRING", conn.as_str())]),
        )
        .unwrap();
        assert_eq!(c.account_name.as_deref(), Some(AZURITE_ACCOUNT));
        assert_eq!(c.account_key.as_deref(), Some(AZURITE_KEY));
        assert_eq!(
            c.endpoint.as_deref(),
            Some("http://127.0.0.1:10000/devstoreaccount1")
        );
        c.validate().unwrap();
        let c = AzblobConfig::from_lookup(
            "c",
            "",
            lookup(&[
                ("AZURE_STORAGE_ACCOUNT", "acct"),
                ("AZURE_STORAGE_KEY", "a2V5"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.effective_endpoint().as_deref(),
            Some("https://acct.blob.core.windows.net")
        );
        c.validate().unwrap();
        let mut dev = AzblobConfig::new("c", "");
        dev.apply_connection_string("UseDevelopmentStorage=true")
            .unwrap();
        assert_eq!(dev.account_key.as_deref(), Some(AZURITE_KEY));
        dev.validate().unwrap();
        let bare =
            AzblobConfig::from_lookup("c", "", lookup(&[("AZURE_STORAGE_ACCOUNT", "a")])).unwrap();
        let e = bare.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.to_string().contains("credentials"), "{e}");
        assert!(format!("{c:?}").contains("<redacted>"));
        assert!(!format!("{c:?}").contains("a2V5"));
    }
}
