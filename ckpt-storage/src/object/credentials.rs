//! Where the object stores' credentials come from when the configuration holds none (issue 16),
//! and the error that says what was tried when nothing was found.
//!
//! * S3 (`ambient_credentials`, set by [`super::S3Config::from_env`]): [`s3_chain`], the AWS
//!   default credential chain built from reqsign 3's providers (the ones opendal 0.59 uses
//!   itself): the given keys, the variables, the profile files, SSO, web identity, ECS
//!   container credentials, EC2 IMDSv2, the last two bounded in time ([`Bounded`]). A
//!   profile's `credential_process` is left out: opendal's signing context has no command
//!   runner, so reqsign could only fail on it.
//! * Azure (`ambient_credentials`): [`azblob_chain`], reqsign-azure-storage's default chain
//!   without the Azure CLI (no command runner either), the managed-identity lookup bounded.
//! * GCS: opendal's own chain (see `gcs.rs`), Google's application default credentials as far
//!   as reqsign-google has them.
//! * The profile's `region` for [`super::S3Config::from_env`]: [`profile_region`].
//!
//! When signing fails for want of a credential (reqsign's "failed to load signing credential",
//! [`is_missing_credential`]), [`missing_credentials`] turns opendal's error into an
//! `InvalidConfig` error listing, in order, what the chain looked at (each with what it found
//! in the environment and the files, read again when the error is made) and what to set;
//! opendal's error stays its source.

#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
use super::ObjectConfig;
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
use ckpt_core::{Error, ErrorKind};
use std::collections::HashMap;

/// The keys of section `[section]` of an INI text as the AWS config files use it: `key = value`
/// lines, `#` and `;` comments, indented lines (sub-properties such as `s3 =` blocks) skipped.
/// `None` when there is no such section.
fn ini_section(content: &str, section: &str) -> Option<HashMap<String, String>> {
    let mut found = None::<HashMap<String, String>>;
    let mut inside = false;
    for raw in content.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = name.trim() == section;
            if inside {
                found.get_or_insert_with(HashMap::new);
            }
            continue;
        }
        if !inside || raw.starts_with([' ', '\t']) {
            continue;
        }
        if let (Some(map), Some((k, v))) = (found.as_mut(), line.split_once('=')) {
            map.insert(k.trim().to_string(), v.trim().to_string());
        }
    }
    found
}

/// `path` with a leading `~/` replaced by `home` (as reqsign and the AWS CLI do).
fn expand_home(path: String, home: Option<&str>) -> String {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(h)) => format!("{}/{rest}", h.trim_end_matches('/')),
        _ => path,
    }
}

/// The AWS shared config file: `AWS_CONFIG_FILE`, else `$HOME/.aws/config`.
fn aws_config_file(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let home = get("HOME");
    get("AWS_CONFIG_FILE")
        .or_else(|| home.as_ref().map(|_| "~/.aws/config".to_string()))
        .map(|p| expand_home(p, home.as_deref()))
}

/// The AWS shared credentials file: `AWS_SHARED_CREDENTIALS_FILE`, else
/// `$HOME/.aws/credentials`.
#[cfg(feature = "s3")]
fn aws_credentials_file(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let home = get("HOME");
    get("AWS_SHARED_CREDENTIALS_FILE")
        .or_else(|| home.as_ref().map(|_| "~/.aws/credentials".to_string()))
        .map(|p| expand_home(p, home.as_deref()))
}

/// The section of `profile` in the AWS config file: `[default]` or `[profile <name>]`.
fn config_section(profile: &str) -> String {
    if profile == "default" {
        "default".to_string()
    } else {
        format!("profile {profile}")
    }
}

/// The `region` of the profile (`profile`, else `default`) in the AWS config file named through
/// `get` (`AWS_CONFIG_FILE`, else `$HOME/.aws/config`), as the AWS CLI reads it when neither
/// `AWS_REGION` nor `AWS_DEFAULT_REGION` is set. `None` when there is no file, no such profile
/// or no region; a file that cannot be read counts as absent. (opendal 0.59 itself reads the
/// region only from the variables.)
pub(super) fn profile_region(
    get: &dyn Fn(&str) -> Option<String>,
    profile: Option<&str>,
) -> Option<String> {
    let path = aws_config_file(get)?;
    let content = std::fs::read_to_string(path).ok()?;
    let section = config_section(profile.unwrap_or("default"));
    ini_section(&content, &section)?
        .remove("region")
        .filter(|r| !r.is_empty())
}

/// A variable of the process environment, `None` when unset or empty.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

/// How long a metadata-service credential lookup (ECS, EC2) may take: the SDKs'
/// `AWS_METADATA_SERVICE_TIMEOUT` (seconds per request, default 1) times 3 (IMDSv2 makes three
/// requests: token, role, credentials).
#[cfg(feature = "s3")]
fn metadata_timeout(setting: Option<String>) -> std::time::Duration {
    let per_request = setting
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .unwrap_or(1.0)
        .min(600.0);
    std::time::Duration::from_secs_f64(per_request * 3.0)
}

/// A credential provider that gives up (with an error, so the chain goes on) after `limit`:
/// reqsign's metadata-service providers (AWS ECS and IMDS, Azure IMDS) send their requests
/// without a timeout, and outside the cloud the metadata address may swallow packets until the
/// TCP timeout (minutes).
#[cfg(any(feature = "s3", feature = "azblob"))]
#[derive(Debug)]
struct Bounded<P> {
    what: &'static str,
    limit: std::time::Duration,
    inner: P,
}

#[cfg(any(feature = "s3", feature = "azblob"))]
impl<P: reqsign_core::ProvideCredential> reqsign_core::ProvideCredential for Bounded<P> {
    type Credential = P::Credential;

    async fn provide_credential(
        &self,
        ctx: &reqsign_core::Context,
    ) -> reqsign_core::Result<Option<Self::Credential>> {
        match tokio::time::timeout(self.limit, self.inner.provide_credential(ctx)).await {
            Ok(found) => found,
            Err(_) => Err(reqsign_core::Error::unexpected(format!(
                "{} gave no answer within {:?}",
                self.what, self.limit
            ))
            .set_retryable(true)),
        }
    }
}

/// How long the Azure managed-identity lookup may take (Azure's SDKs probe the metadata service
/// with a short timeout too).
#[cfg(feature = "azblob")]
pub(crate) const AZURE_IMDS_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The credential chain of an Azure store with `ambient_credentials`: the configuration's SAS
/// token and shared key (when given, in opendal's order), then the Azure default chain of
/// reqsign-azure-storage 3 without the Azure CLI (which opendal's signing context cannot run):
/// environment, client certificate, client secret, Azure Pipelines, workload identity,
/// managed identity through IMDS ([`Bounded`] by [`AZURE_IMDS_TIMEOUT`]).
#[cfg(feature = "azblob")]
pub(super) fn azblob_chain(
    c: &super::AzblobConfig,
) -> reqsign_core::ProvideCredentialChain<reqsign_azure_storage::Credential> {
    use reqsign_azure_storage::{
        AzurePipelinesCredentialProvider, ClientCertificateCredentialProvider,
        ClientSecretCredentialProvider, EnvCredentialProvider, ImdsCredentialProvider,
        StaticCredentialProvider, WorkloadIdentityCredentialProvider,
    };
    let mut chain = reqsign_core::ProvideCredentialChain::new();
    if let Some(sas) = &c.sas_token {
        chain = chain.push(StaticCredentialProvider::new_sas_token(sas));
    }
    if let (Some(name), Some(key)) = (&c.account_name, &c.account_key) {
        chain = chain.push(StaticCredentialProvider::new_shared_key(name, key));
    }
    chain
        .push(EnvCredentialProvider::new())
        .push(ClientCertificateCredentialProvider::new())
        .push(ClientSecretCredentialProvider::new())
        .push(AzurePipelinesCredentialProvider::new())
        .push(WorkloadIdentityCredentialProvider::new())
        .push(Bounded {
            what: "the Azure instance metadata service",
            limit: AZURE_IMDS_TIMEOUT,
            inner: ImdsCredentialProvider::new(),
        })
}

/// The credential chain of an S3 store with `ambient_credentials`: the configuration's keys
/// (when given), then the AWS default chain in the SDKs' order: environment variables, the
/// profile (`c.profile`, else `AWS_PROFILE`, else `default`) in the shared credentials file then
/// the config file, SSO of that profile, web identity, ECS container credentials and EC2
/// IMDSv2 (both [`Bounded`] by [`metadata_timeout`] of `AWS_METADATA_SERVICE_TIMEOUT` as set
/// when the store is opened). The first provider that finds a credential wins; one that fails
/// is passed over (reqsign's chain).
#[cfg(feature = "s3")]
pub(super) fn s3_chain(
    c: &super::S3Config,
) -> reqsign_core::ProvideCredentialChain<reqsign_aws_v4::Credential> {
    use reqsign_aws_v4::{
        AssumeRoleWithWebIdentityCredentialProvider, ECSCredentialProvider, EnvCredentialProvider,
        IMDSv2CredentialProvider, ProfileCredentialProvider, SSOCredentialProvider,
        StaticCredentialProvider,
    };
    let mut chain = reqsign_core::ProvideCredentialChain::new();
    if let (Some(id), Some(secret)) = (&c.access_key_id, &c.secret_access_key) {
        let mut keys = StaticCredentialProvider::new(id, secret);
        if let Some(t) = &c.session_token {
            keys = keys.with_session_token(t);
        }
        chain = chain.push(keys);
    }
    let limit = metadata_timeout(env("AWS_METADATA_SERVICE_TIMEOUT"));
    let mut profile = ProfileCredentialProvider::new();
    let mut sso = SSOCredentialProvider::new();
    if let Some(p) = &c.profile {
        profile = profile.with_profile(p);
        sso = sso.with_profile(p);
    }
    chain
        .push(EnvCredentialProvider::new())
        .push(profile)
        .push(sso)
        .push(AssumeRoleWithWebIdentityCredentialProvider::new())
        .push(Bounded {
            what: "the ECS container credentials endpoint",
            limit,
            inner: ECSCredentialProvider::new(),
        })
        .push(Bounded {
            what: "the EC2 instance metadata service",
            limit,
            inner: IMDSv2CredentialProvider::new(),
        })
}

/// Whether `e` is reqsign's "failed to load signing credential": every provider of the chain
/// found nothing (S3, GCS and Azure sign through the same reqsign `Signer`).
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
pub(crate) fn is_missing_credential(e: &opendal::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<reqsign_core::Error>() {
            if r.kind() == reqsign_core::ErrorKind::CredentialInvalid
                && r.to_string() == "failed to load signing credential"
            {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// The error of a call (`what`, at `location`) that could not be signed because no credential
/// was found: `InvalidConfig`, saying what was tried in order and what to set, with opendal's
/// error as the source. Not temporary (retrying finds nothing new).
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
pub(crate) fn missing_credentials(
    config: &ObjectConfig,
    e: opendal::Error,
    what: &str,
    location: String,
) -> Error {
    let explanation = match config {
        #[cfg(feature = "s3")]
        ObjectConfig::S3(c) => s3_tried(c),
        #[cfg(feature = "gcs")]
        ObjectConfig::Gcs(c) => gcs_tried(c),
        #[cfg(feature = "azblob")]
        ObjectConfig::Azblob(c) => azblob_tried(c),
    };
    Error::new(
        ErrorKind::InvalidConfig,
        format!("{what} failed: {explanation}"),
    )
    .with_path(location)
    .with_source(e)
}

/// `"1) a; 2) b; ..."`.
#[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
fn numbered(steps: &[String]) -> String {
    steps
        .iter()
        .enumerate()
        .map(|(i, s)| format!("{}) {s}", i + 1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// What a file of credentials holds for `section`: `Err(why not)` when it cannot be used.
#[cfg(feature = "s3")]
fn read_section(path: &str, section: &str) -> Result<HashMap<String, String>, String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no such file".into()),
        Err(e) => Err(format!("unreadable: {e}")),
        Ok(content) => ini_section(&content, section).ok_or(format!("no [{section}] section")),
    }
}

/// Which variables of `names` are set, as `"A, B set"`, or `"not set"`.
#[cfg(any(feature = "s3", feature = "azblob"))]
fn set_among(names: &[&str]) -> String {
    let set: Vec<&str> = names.iter().copied().filter(|n| env(n).is_some()).collect();
    if set.is_empty() {
        "not set".into()
    } else {
        format!("{} set, but no credential came of it", set.join(", "))
    }
}

#[cfg(feature = "s3")]
fn s3_tried(c: &super::S3Config) -> String {
    if !c.ambient_credentials {
        return "no S3 credentials: the configuration has no access_key_id/secret_access_key and \
                its ambient_credentials (the AWS default chain: variables, ~/.aws files, web \
                identity, container and instance metadata) is off, so only opendal's web-identity, \
                SSO, credential-process and ECS providers were tried, each only when its \
                variables are set. Set the keys, or ambient_credentials (s3:// URIs have it), or \
                allow_anonymous for a public bucket"
            .into();
    }
    let get = |k: &str| env(k);
    let mut steps = Vec::new();
    let keys = match (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        (None, None) => "not set",
        (Some(_), None) => "AWS_SECRET_ACCESS_KEY not set",
        (None, Some(_)) => "AWS_ACCESS_KEY_ID not set",
        (Some(_), Some(_)) => "set, but not when the store was opened",
    };
    steps.push(format!(
        "the variables AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY ({keys})"
    ));
    let (profile, from) = match (&c.profile, env("AWS_PROFILE")) {
        (Some(p), Some(e)) if *p == e => (e, "from AWS_PROFILE"),
        (Some(p), _) => (p.clone(), "from S3Config::profile"),
        (None, Some(p)) => (p, "from AWS_PROFILE"),
        (None, None) => ("default".to_string(), "AWS_PROFILE not set"),
    };
    let has_keys = |m: &HashMap<String, String>| {
        m.contains_key("aws_access_key_id") && m.contains_key("aws_secret_access_key")
    };
    let creds = match aws_credentials_file(&get) {
        None => "no path: neither AWS_SHARED_CREDENTIALS_FILE nor HOME is set".to_string(),
        Some(path) => match read_section(&path, &profile) {
            Err(why) => format!("{path}: {why}"),
            Ok(m) if has_keys(&m) => {
                format!("{path}: [{profile}] has keys, but they were not used")
            }
            Ok(_) => {
                format!("{path}: [{profile}] has no aws_access_key_id + aws_secret_access_key")
            }
        },
    };
    let section = config_section(&profile);
    let mut config_notes = Vec::new();
    let config = match aws_config_file(&get) {
        None => "no path: neither AWS_CONFIG_FILE nor HOME is set".to_string(),
        Some(path) => match read_section(&path, &section) {
            Err(why) => format!("{path}: {why}"),
            Ok(m) => {
                if m.contains_key("credential_process") {
                    config_notes.push("its credential_process is not supported by ckpt (opendal 0.59 cannot run commands)");
                }
                if m.contains_key("role_arn") {
                    config_notes.push("its role_arn (assuming a role from a profile) is not supported by ckpt (opendal 0.59)");
                }
                let sso = m.keys().any(|k| k.starts_with("sso_"));
                if has_keys(&m) {
                    format!("{path}: [{section}] has keys, but they were not used")
                } else if sso {
                    format!("{path}: [{section}] has no keys but SSO settings")
                } else {
                    format!("{path}: [{section}] has no aws_access_key_id + aws_secret_access_key")
                }
            }
        },
    };
    let mut profile_step = format!(
        "profile \"{profile}\" ({from}) in the shared credentials file (AWS_SHARED_CREDENTIALS_FILE; {creds}), then in the config file (AWS_CONFIG_FILE; {config})"
    );
    for n in config_notes {
        profile_step.push_str("; ");
        profile_step.push_str(n);
    }
    steps.push(profile_step);
    steps.push(format!(
        "IAM Identity Center (SSO) of profile \"{profile}\" (sso_* settings in the config file and a token cached by `aws sso login`)"
    ));
    let web = match (env("AWS_ROLE_ARN"), env("AWS_WEB_IDENTITY_TOKEN_FILE")) {
        (None, None) => "not set".to_string(),
        (Some(_), None) => "AWS_WEB_IDENTITY_TOKEN_FILE not set".to_string(),
        (None, Some(_)) => "AWS_ROLE_ARN not set".to_string(),
        (Some(_), Some(f)) => match std::fs::metadata(&f) {
            Err(e) => format!("token file {f}: {e}"),
            Ok(_) => "set, but STS AssumeRoleWithWebIdentity gave no credentials".to_string(),
        },
    };
    steps.push(format!(
        "web identity, e.g. IRSA on EKS (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE: {web})"
    ));
    let limit = metadata_timeout(env("AWS_METADATA_SERVICE_TIMEOUT"));
    let ecs = set_among(&[
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]);
    steps.push(format!(
        "ECS/container credentials (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or AWS_CONTAINER_CREDENTIALS_FULL_URI: {ecs}; at most {limit:?})"
    ));
    let imds = match env("AWS_EC2_METADATA_DISABLED") {
        Some(v) if v == "true" => "skipped: AWS_EC2_METADATA_DISABLED=true".to_string(),
        other => {
            let endpoint = env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
                .unwrap_or_else(|| "http://169.254.169.254".into());
            let note = match other {
                Some(v) => format!(" (AWS_EC2_METADATA_DISABLED={v:?} is not \"true\")"),
                None => String::new(),
            };
            format!(
                "{endpoint}: no credentials within {limit:?}: not on EC2, no instance profile, or unreachable{note}"
            )
        }
    };
    steps.push(format!("EC2 instance metadata, IMDSv2 ({imds})"));
    format!(
        "no S3 credentials found. Tried, in order: {}. Set AWS_ACCESS_KEY_ID and \
         AWS_SECRET_ACCESS_KEY; or put aws_access_key_id/aws_secret_access_key under [name] in \
         ~/.aws/credentials and set AWS_PROFILE=name (AWS_SHARED_CREDENTIALS_FILE and \
         AWS_CONFIG_FILE name other files); or run with a role (EKS IRSA, an ECS task role, an \
         EC2 instance profile); or CKPT_S3_ALLOW_ANONYMOUS=1 for a public bucket",
        numbered(&steps)
    )
}

#[cfg(feature = "gcs")]
fn gcs_tried(c: &super::GcsConfig) -> String {
    if !c.ambient_credentials {
        return "no GCS credentials: the configuration has no credential_path, credential or token \
                and its ambient_credentials (application default credentials) is off. Set one of \
                them, or ambient_credentials (gs:// URIs have it), or allow_anonymous for a \
                public bucket"
            .into();
    }
    let usable = |path: &str| match std::fs::read(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "no such file".to_string(),
        Err(e) => format!("unreadable: {e}"),
        Ok(_) => "present, but not a usable credentials file".to_string(),
    };
    let mut steps = Vec::new();
    let mut given = Vec::new();
    if let Some(p) = &c.credential_path {
        given.push(format!("credential_path {p}: {}", usable(p)));
    }
    if c.credential.is_some() {
        given.push("credential: not a usable key".into());
    }
    if c.token.is_some() {
        given.push("token".into());
    }
    if given.is_empty() {
        given.push("none given".into());
    }
    steps.push(format!("the configuration ({})", given.join(", ")));
    let adc = match env("GOOGLE_APPLICATION_CREDENTIALS") {
        None => "not set".to_string(),
        Some(p) => format!("{p}: {}", usable(&p)),
    };
    steps.push(format!("GOOGLE_APPLICATION_CREDENTIALS ({adc})"));
    let dir = env("APPDATA")
        .or_else(|| env("XDG_CONFIG_HOME"))
        .or_else(|| env("HOME").map(|h| format!("{h}/.config")));
    let well_known = match dir {
        None => "no path: none of APPDATA, XDG_CONFIG_HOME, HOME is set".to_string(),
        Some(d) => {
            let p = format!("{d}/gcloud/application_default_credentials.json");
            let status = usable(&p);
            format!("{p}: {status}")
        }
    };
    steps.push(format!(
        "gcloud's application default credentials file, written by `gcloud auth application-default login` ({well_known})"
    ));
    let host = env("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".into());
    steps.push(format!(
        "the GCE metadata server ({host}: no token: not on Google Cloud, no service account, or unreachable)"
    ));
    format!(
        "no GCS credentials found. Tried, in order: {}. Set GOOGLE_APPLICATION_CREDENTIALS to a \
         service-account key (or other credentials) file, or run `gcloud auth \
         application-default login`, or set GOOGLE_OAUTH_ACCESS_TOKEN, or run on Google Cloud \
         with a service account; or CKPT_GCS_ALLOW_ANONYMOUS=1 for a public bucket",
        numbered(&steps)
    )
}

#[cfg(feature = "azblob")]
fn azblob_tried(c: &super::AzblobConfig) -> String {
    if !c.ambient_credentials {
        return "no Azure credentials: the configuration has no account key or SAS token and its \
                ambient_credentials (environment, workload and managed identity) is off. Set \
                them, or ambient_credentials (azblob:// URIs have it), or allow_anonymous"
            .into();
    }
    let steps = [
        "the configuration (no account key, no SAS token)".to_string(),
        format!(
            "AZURE_STORAGE_ACCOUNT_NAME + AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_TOKEN, AZURE_STORAGE_BEARER_TOKEN ({})",
            set_among(&["AZURE_STORAGE_ACCOUNT_KEY", "AZURE_STORAGE_SAS_TOKEN", "AZURE_STORAGE_BEARER_TOKEN"])
        ),
        format!(
            "a service principal's certificate (AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_CERTIFICATE_PATH: {})",
            set_among(&["AZURE_CLIENT_CERTIFICATE_PATH"])
        ),
        format!(
            "a service principal's secret (AZURE_TENANT_ID + AZURE_CLIENT_ID + AZURE_CLIENT_SECRET: {})",
            set_among(&["AZURE_CLIENT_SECRET"])
        ),
        format!(
            "Azure Pipelines (SYSTEM_OIDCREQUESTURI + SYSTEM_ACCESSTOKEN + AZURE_SERVICE_CONNECTION_ID: {})",
            set_among(&["SYSTEM_OIDCREQUESTURI"])
        ),
        format!(
            "workload identity, e.g. on AKS (AZURE_FEDERATED_TOKEN_FILE + AZURE_CLIENT_ID + AZURE_TENANT_ID: {})",
            set_among(&["AZURE_FEDERATED_TOKEN_FILE"])
        ),
        format!(
            "managed identity through the instance metadata service ({}: no token within {AZURE_IMDS_TIMEOUT:?}: not on Azure, no identity, or unreachable)",
            env("AZURE_IMDS_ENDPOINT").unwrap_or_else(|| "http://169.254.169.254".into())
        ),
    ];
    format!(
        "no Azure credentials found. Tried, in order: {}. Set AZURE_STORAGE_CONNECTION_STRING, or \
         AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY or AZURE_STORAGE_SAS_TOKEN, or a service \
         principal (AZURE_TENANT_ID, AZURE_CLIENT_ID, AZURE_CLIENT_SECRET), or run with a \
         workload or managed identity; or CKPT_AZBLOB_ALLOW_ANONYMOUS=1 for a public container. \
         (`az login` credentials are not used: opendal 0.59 cannot run the Azure CLI)",
        numbered(&steps)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections() {
        let text = "# c\n[default]\nregion = eu-west-1\ns3 =\n  region = no\n\n\
                    [profile dev]\nregion=us-west-2\n; x\naws_access_key_id = AK\n[other]\n";
        let d = ini_section(text, "default").unwrap();
        assert_eq!(d.get("region").map(String::as_str), Some("eu-west-1"));
        assert_eq!(d.len(), 2, "{d:?}");
        let p = ini_section(text, "profile dev").unwrap();
        assert_eq!(p.get("region").map(String::as_str), Some("us-west-2"));
        assert_eq!(p.get("aws_access_key_id").map(String::as_str), Some("AK"));
        assert!(ini_section(text, "other").unwrap().is_empty());
        assert!(ini_section(text, "dev").is_none());
    }

    #[test]
    fn region_of_the_profile() {
        let dir = tempfile::tempdir().unwrap();
        let aws = dir.path().join(".aws");
        std::fs::create_dir(&aws).unwrap();
        std::fs::write(
            aws.join("config"),
            "[default]\nregion = eu-central-1\n[profile dev]\nregion = ap-south-1\n",
        )
        .unwrap();
        let home = dir.path().to_string_lossy().into_owned();
        let get = |k: &str| (k == "HOME").then(|| home.clone());
        assert_eq!(profile_region(&get, None).as_deref(), Some("eu-central-1"));
        assert_eq!(
            profile_region(&get, Some("dev")).as_deref(),
            Some("ap-south-1")
        );
        assert_eq!(profile_region(&get, Some("none")), None);
        let nothing = |_: &str| None;
        assert_eq!(profile_region(&nothing, None), None);
        let missing = |k: &str| (k == "AWS_CONFIG_FILE").then(|| "/nonexistent/x".to_string());
        assert_eq!(profile_region(&missing, None), None);
        assert_eq!(
            expand_home("~/.aws/config".into(), Some("/h/")),
            "/h/.aws/config"
        );
    }

    /// `needles` all occur in `text`, in this order.
    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    fn assert_in_order(text: &str, needles: &[&str]) {
        let mut from = 0;
        for n in needles {
            match text[from..].find(n) {
                Some(i) => from += i + n.len(),
                None => panic!("{n:?} missing (or out of order) in:\n{text}"),
            }
        }
    }

    #[cfg(any(feature = "s3", feature = "gcs", feature = "azblob"))]
    #[test]
    fn missing_credential_is_recognised() {
        let reqsign = |m: &str| {
            opendal::Error::new(opendal::ErrorKind::Unexpected, "signing http request")
                .set_source(reqsign_core::Error::credential_invalid(m.to_string()))
        };
        assert!(is_missing_credential(&reqsign(
            "failed to load signing credential"
        )));
        assert!(!is_missing_credential(&reqsign("something else")));
        assert!(!is_missing_credential(&opendal::Error::new(
            opendal::ErrorKind::PermissionDenied,
            "failed to load signing credential"
        )));
    }

    #[cfg(feature = "s3")]
    #[test]
    fn s3_explanations() {
        let mut c = crate::S3Config::new("b", "");
        let t = s3_tried(&c);
        assert!(
            t.contains("ambient_credentials") && t.contains("allow_anonymous"),
            "{t}"
        );
        c.ambient_credentials = true;
        assert_in_order(
            &s3_tried(&c),
            &[
                "1) the variables AWS_ACCESS_KEY_ID",
                "2) profile",
                "3) IAM Identity Center (SSO)",
                "4) web identity",
                "5) ECS/container credentials",
                "6) EC2 instance metadata, IMDSv2",
                "CKPT_S3_ALLOW_ANONYMOUS=1",
            ],
        );
    }

    #[cfg(feature = "gcs")]
    #[test]
    fn gcs_explanations() {
        let mut c = crate::GcsConfig::new("b", "");
        let t = gcs_tried(&c);
        assert!(
            t.contains("ambient_credentials") && t.contains("allow_anonymous"),
            "{t}"
        );
        c.ambient_credentials = true;
        c.credential_path = Some("/nonexistent/key.json".into());
        assert_in_order(
            &gcs_tried(&c),
            &[
                "1) the configuration (credential_path /nonexistent/key.json: no such file)",
                "2) GOOGLE_APPLICATION_CREDENTIALS",
                "3) gcloud's application default credentials file",
                "application_default_credentials.json",
                "4) the GCE metadata server",
                "gcloud auth application-default login",
                "CKPT_GCS_ALLOW_ANONYMOUS=1",
            ],
        );
    }

    #[cfg(feature = "azblob")]
    #[test]
    fn azblob_explanations() {
        let mut c = crate::AzblobConfig::new("c", "");
        let t = azblob_tried(&c);
        assert!(
            t.contains("ambient_credentials") && t.contains("allow_anonymous"),
            "{t}"
        );
        c.ambient_credentials = true;
        assert_in_order(
            &azblob_tried(&c),
            &[
                "1) the configuration",
                "2) AZURE_STORAGE_ACCOUNT_NAME + AZURE_STORAGE_ACCOUNT_KEY",
                "3) a service principal's certificate",
                "4) a service principal's secret",
                "5) Azure Pipelines",
                "6) workload identity",
                "7) managed identity through the instance metadata service",
                "within 3s",
                "AZURE_STORAGE_CONNECTION_STRING",
                "`az login` credentials are not used",
            ],
        );
    }

    #[cfg(feature = "s3")]
    #[test]
    fn metadata_timeouts() {
        use std::time::Duration;
        assert_eq!(metadata_timeout(None), Duration::from_secs(3));
        assert_eq!(metadata_timeout(Some("2".into())), Duration::from_secs(6));
        assert_eq!(
            metadata_timeout(Some("0.5".into())),
            Duration::from_millis(1500)
        );
        for bad in ["", "x", "-1", "0", "NaN", "inf"] {
            assert_eq!(
                metadata_timeout(Some(bad.into())),
                Duration::from_secs(3),
                "{bad}"
            );
        }
    }
}
