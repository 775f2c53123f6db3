//! The Azure Blob Storage store's configuration, [`AzblobConfig`]: its fields, connection
//! strings, its reading from the `AZURE_STORAGE_*` environment, its checks, and the opendal
//! operator built from it (feature `azblob`).

#[cfg(feature = "azblob")]
use super::operator_root;
use super::UploadOptions;
use super::{check_bucket, check_endpoint, check_page_size, check_prefix, env_var, switch};
use ckpt_core::{Error, Result};

/// An Azure Blob Storage store: blobs below `prefix` in `container`
/// ([`crate::OpendalStore::azblob`], feature `azblob`). Locations are
/// `azblob://<container>/<prefix>/<path>`.
///
/// Credentials: a shared key (`account_name` + `account_key`), a SAS token, or none with
/// `allow_anonymous`. Without them, with `ambient_credentials` (set by
/// [`AzblobConfig::from_env`]), the Azure default chain as opendal 0.59 (reqsign-azure-storage
/// 3) has it, in order:
/// 1. `AZURE_STORAGE_ACCOUNT_NAME` with `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_SAS_TOKEN`,
///    `AZURE_STORAGE_BEARER_TOKEN`;
/// 2. a service principal's certificate (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
///    `AZURE_CLIENT_CERTIFICATE_PATH`), then its secret (`AZURE_CLIENT_SECRET`);
/// 3. Azure Pipelines OIDC (`SYSTEM_OIDCREQUESTURI`, `AZURE_SERVICE_CONNECTION_ID`);
/// 4. workload identity, e.g. on AKS (`AZURE_FEDERATED_TOKEN_FILE`, `AZURE_CLIENT_ID`,
///    `AZURE_TENANT_ID`);
/// 5. managed identity through the instance metadata service (`AZURE_IMDS_ENDPOINT`, else
///    `169.254.169.254`; `AZURE_CLIENT_ID`, `AZURE_OBJECT_ID` or `AZURE_MSI_RESOURCE_ID` pick a
///    user-assigned identity).
///
/// Deviations from Azure's SDKs: the Azure CLI (`az login`) is in reqsign's chain but cannot run
/// (opendal's signing context has no command runner); App Service's `IDENTITY_ENDPOINT` is not
/// read; the metadata service lookup gives up after 3 s. Without
/// `ambient_credentials` (what [`AzblobConfig::new`] gives) building a store without credentials
/// is an error.
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
    /// Without a key or SAS token, look for credentials along the Azure default chain (see the
    /// type's documentation). On with [`AzblobConfig::from_env`], off with [`AzblobConfig::new`].
    pub ambient_credentials: bool,
    /// Blobs per page of a listing (`maxresults`); `None` for the server's default. (opendal
    /// 0.59's azblob service does not take a page size; it is then ignored.)
    pub list_page_size: Option<usize>,
    /// How large writes are uploaded (as blocks of a block blob).
    pub upload: UploadOptions,
}

redacting_debug!(AzblobConfig {
    container,
    prefix,
    endpoint,
    account_name,
    account_key: redacted,
    sas_token: redacted,
    allow_anonymous,
    ambient_credentials,
    list_page_size,
    upload,
});

/// Azurite's (and the Azure Storage Emulator's) well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The well-known key of [`AZURITE_ACCOUNT`] (public, documented by Microsoft).
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

impl AzblobConfig {
    /// A configuration for `container` and `prefix` with no account, endpoint or credentials,
    /// and `ambient_credentials` off.
    pub fn new(container: impl Into<String>, prefix: impl Into<String>) -> Self {
        AzblobConfig {
            container: container.into(),
            prefix: prefix.into(),
            endpoint: None,
            account_name: None,
            account_key: None,
            sas_token: None,
            allow_anonymous: false,
            ambient_credentials: false,
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
    /// `CKPT_AZBLOB_ALLOW_ANONYMOUS` = `1`/... → unsigned requests; `ambient_credentials` on
    /// (the Azure default chain when no key or SAS token is given, see [`AzblobConfig`]).
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
        c.ambient_credentials = true;
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
    /// there is no endpoint and no account, or no credential, not `allow_anonymous` and not
    /// `ambient_credentials`.
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
        if !(shared_key
            || self.sas_token.is_some()
            || self.allow_anonymous
            || self.ambient_credentials)
        {
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

/// The opendal operator of `c` (no request is sent); `ObjectConfig::build` installs the HTTP
/// transport first. With `ambient_credentials` the credential chain is ours
/// (`credentials::azblob_chain`: the given SAS token and key, then the Azure default chain with
/// a bounded managed-identity lookup); without, opendal's (the given credentials, which
/// `validate` requires, come first and always answer).
#[cfg(feature = "azblob")]
pub(super) fn operator(c: &AzblobConfig) -> std::result::Result<opendal::Operator, opendal::Error> {
    let mut b = opendal::services::Azblob::default()
        .container(&c.container)
        .root(&operator_root(&c.prefix));
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
    if c.ambient_credentials {
        b = b.credential_provider_chain(super::credentials::azblob_chain(c));
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
        assert!(bare.ambient_credentials);
        bare.validate().unwrap();
        let mut explicit = AzblobConfig::new("c", "");
        explicit.account_name = Some("a".into());
        let e = explicit.validate().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.to_string().contains("credentials"), "{e}");
        assert!(format!("{c:?}").contains("<redacted>"));
        assert!(!format!("{c:?}").contains("a2V5"));
    }
}
