//! The S3 (and S3-compatible) store's configuration, [`S3Config`]: its fields, its reading from
//! the `AWS_*` environment, its checks, and the opendal operator built from it (feature `s3`).

#[cfg(feature = "s3")]
use super::operator_root;
use super::UploadOptions;
use super::{check_bucket, check_endpoint, check_page_size, check_prefix, env_var, switch};
use ckpt_core::{Error, Result};

/// An S3 or S3-compatible store: objects below `prefix` in `bucket`
/// ([`crate::OpendalStore::s3`], feature `s3`). Locations are `s3://<bucket>/<prefix>/<path>`.
///
/// Build one with [`S3Config::new`] and set the fields, or read it from the environment with
/// [`S3Config::from_env`] (what [`crate::open`] does for `s3://bucket/prefix`).
///
/// Credentials: the given keys always win. Without them, what happens depends on
/// `ambient_credentials`:
/// * on (what [`S3Config::from_env`] sets): the AWS default credential chain, as AWS's SDKs
///   walk it (reqsign 3's providers, the ones opendal 0.59 uses): the variables
///   `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`); the profile
///   (`profile`, else `AWS_PROFILE`, else `default`) in the shared credentials file
///   (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`), then in the config file
///   (`AWS_CONFIG_FILE`, default `~/.aws/config`); IAM Identity Center (SSO) of that profile
///   (the token cached by `aws sso login`); web identity (`AWS_ROLE_ARN` +
///   `AWS_WEB_IDENTITY_TOKEN_FILE`, e.g. IRSA on EKS: STS `AssumeRoleWithWebIdentity`); ECS /
///   container credentials (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`); the EC2
///   instance metadata service (IMDSv2; off with `AWS_EC2_METADATA_DISABLED=true`). Deviations
///   from the SDKs: a profile's `credential_process` and its `role_arn` + `source_profile`
///   (assuming a role from a profile) are not supported by reqsign/opendal 0.59 and are
///   skipped; web identity asks the global STS endpoint (`sts.amazonaws.com`; the regional one
///   with `AWS_STS_REGIONAL_ENDPOINTS=regional` and `AWS_REGION`), and `AWS_ENDPOINT_URL_STS`
///   is not read; the ECS and EC2 metadata lookups each give up after
///   `AWS_METADATA_SERVICE_TIMEOUT` seconds × 3 (default 1 s × 3) so that a machine outside AWS
///   does not wait for a TCP timeout.
/// * off (what [`S3Config::new`] gives): only the keys; without them, what opendal 0.59 keeps
///   with its config loading off: SSO of the profile (its settings in `~/.aws/config`), web
///   identity and ECS container credentials, each only when configured; not the key
///   variables, not the profiles' keys, not the EC2 metadata service (as before issue 16).
///
/// With `allow_anonymous` requests are sent unsigned. When no credential is found, a call fails
/// with `InvalidConfig` listing what was tried and what to set.
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
    /// Without keys, look for credentials along the AWS default chain (environment, profile
    /// files, SSO, web identity, container and instance metadata; see the type's
    /// documentation). On with [`S3Config::from_env`], off with [`S3Config::new`].
    pub ambient_credentials: bool,
    /// The profile of the shared config files the chain uses (`None`: `AWS_PROFILE`, else
    /// `default`). Used only with `ambient_credentials`.
    pub profile: Option<String>,
    /// Objects per page of a listing (S3 `max-keys`); `None` for the server's default (1,000 on
    /// AWS). Every page is fetched; a smaller page only means more requests.
    pub list_page_size: Option<usize>,
    /// How large writes are uploaded.
    pub upload: UploadOptions,
}

redacting_debug!(S3Config {
    bucket,
    prefix,
    endpoint,
    region,
    access_key_id,
    secret_access_key: redacted,
    session_token: redacted,
    virtual_host_style,
    allow_anonymous,
    ambient_credentials,
    profile,
    list_page_size,
    upload,
});

/// The default region of [`S3Config`].
pub const DEFAULT_S3_REGION: &str = "us-east-1";

impl S3Config {
    /// A configuration for `bucket` and `prefix` with everything else at its default: AWS's
    /// endpoint, region `us-east-1`, no credentials and no credential chain
    /// (`ambient_credentials` off), path-style requests.
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
            ambient_credentials: false,
            profile: None,
            list_page_size: None,
            upload: UploadOptions::default(),
        }
    }

    /// [`S3Config::new`] completed from the process environment (empty values count as unset):
    /// * `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL` → `endpoint`;
    /// * `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` → the credentials;
    /// * `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the `region` of the profile in the config
    ///   file (`AWS_CONFIG_FILE`, else `$HOME/.aws/config`; section `[default]` or
    ///   `[profile <name>]`) → `region` (default `us-east-1`), as the AWS CLI;
    /// * `AWS_PROFILE` → `profile`;
    /// * `ambient_credentials` on: without the keys above, the AWS default credential chain is
    ///   walked when a request is signed (see [`S3Config`]);
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
    /// environment (for tests and for callers with their own settings source). The profile's
    /// config file is read (for its region) only when `lookup` names it (`AWS_CONFIG_FILE` or
    /// `HOME`) and no region variable is set; an unreadable or missing file is ignored. The
    /// credential chain itself reads the process environment when it runs.
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
        c.profile = get("AWS_PROFILE");
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .or_else(|| super::credentials::profile_region(&get, c.profile.as_deref()));
        if let Some(r) = region {
            c.region = r;
        }
        c.ambient_credentials = true;
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

/// The opendal operator of `c` (no request is sent); `ObjectConfig::build` installs the HTTP
/// transport first. opendal's own reading of the environment and of `~/.aws` is always off
/// (`disable_config_load`, `disable_ec2_metadata`): with `ambient_credentials` the credential
/// chain is ours (`credentials::s3_chain`: the given keys, then the AWS default chain), which
/// keeps the endpoint and region those of `c` and bounds the metadata lookups.
#[cfg(feature = "s3")]
pub(super) fn operator(c: &S3Config) -> std::result::Result<opendal::Operator, opendal::Error> {
    let mut b = opendal::services::S3::default()
        .bucket(&c.bucket)
        .root(&operator_root(&c.prefix))
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
    if c.ambient_credentials {
        b = b.credential_provider_chain(super::credentials::s3_chain(c));
    }
    if c.virtual_host_style {
        b = b.enable_virtual_host_style();
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
    use ckpt_core::ErrorKind;

    #[test]
    fn s3_from_env() {
        let c = S3Config::from_lookup("b", "p", lookup(&[])).unwrap();
        let mut want = S3Config::new("b", "p");
        want.ambient_credentials = true;
        assert_eq!(c, want);
        assert!(!S3Config::new("b", "p").ambient_credentials);
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
    fn debug_redacts_secrets() {
        let mut c = S3Config::new("b", "p");
        c.access_key_id = Some("id".into());
        c.secret_access_key = Some("secret".into());
        assert_eq!(
            format!("{c:?}"),
            "S3Config { bucket: \"b\", prefix: \"p\", endpoint: None, region: \"us-east-1\", \
             access_key_id: Some(\"id\"), secret_access_key: Some(\"<redacted>\"), \
             session_token: None, virtual_host_style: false, allow_anonymous: false, \
             ambient_credentials: false, profile: None, list_page_size: None, \
             upload: UploadOptions { multipart_threshold: 16777216, chunk_size: 8388608, \
             concurrency: 4 } }"
        );
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
}
