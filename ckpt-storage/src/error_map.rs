//! How the errors of the backends become ckpt's [`Error`]: opendal's ([`from_opendal`], for
//! [`crate::OpendalStore`]) and std's io errors ([`from_io`], for [`crate::LocalStore`] and the
//! streams), each with the location it concerns and the original error as its source.

use ckpt_core::{Error, ErrorKind};

/// Maps an opendal error to ours: NotFound → NotFound, AlreadyExists and ConditionNotMatch (a
/// lost conditional create) → AlreadyExists, Unsupported → Unsupported, ConfigInvalid →
/// InvalidConfig, anything else → Storage; the message says in our words what failed and, for
/// the common causes (no answer from the endpoint, access refused, throttling, a bad
/// configuration), why; the location, and the opendal error as the source.
pub(crate) fn from_opendal(e: opendal::Error, what: &str, location: String) -> Error {
    let kind = match e.kind() {
        opendal::ErrorKind::NotFound => ErrorKind::NotFound,
        opendal::ErrorKind::AlreadyExists | opendal::ErrorKind::ConditionNotMatch => {
            ErrorKind::AlreadyExists
        }
        opendal::ErrorKind::Unsupported => ErrorKind::Unsupported,
        opendal::ErrorKind::ConfigInvalid if no_bucket(&e) => ErrorKind::NotFound,
        opendal::ErrorKind::ConfigInvalid => ErrorKind::InvalidConfig,
        _ => ErrorKind::Storage,
    };
    let temporary = e.is_temporary();
    Error::new(kind, format!("{what} failed{}", why(&e)))
        .with_path(location)
        .with_temporary(temporary)
        .with_source(e)
}

/// Whether the store answered that the bucket or container does not exist (S3 `NoSuchBucket`,
/// GCS's and Azure's equivalents), which opendal reports as a configuration error.
fn no_bucket(e: &opendal::Error) -> bool {
    let text = e.to_string();
    ["NoSuchBucket", "ContainerNotFound", "bucket does not exist"]
        .iter()
        .any(|t| text.contains(t))
}

/// Why an opendal error happened, in our words (`": …"`), for the causes a user can act on;
/// empty for the rest (the source says it in opendal's).
fn why(e: &opendal::Error) -> &'static str {
    match e.kind() {
        opendal::ErrorKind::PermissionDenied => {
            ": the store refused access (the credentials lack permission for this bucket or prefix)"
        }
        opendal::ErrorKind::RateLimited => ": the store is throttling requests",
        opendal::ErrorKind::ConfigInvalid if no_bucket(e) => {
            ": the bucket (or container) does not exist"
        }
        opendal::ErrorKind::ConfigInvalid => ": the store's configuration is invalid",
        opendal::ErrorKind::Unexpected if e.to_string().contains("send http request") => {
            ": the store's endpoint could not be reached (is it up, is the address right?)"
        }
        _ => "",
    }
}

/// Maps a std io error as [`from_opendal`] does.
pub(crate) fn from_io(e: std::io::Error, what: &str, location: String) -> Error {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        std::io::ErrorKind::AlreadyExists => ErrorKind::AlreadyExists,
        std::io::ErrorKind::Unsupported => ErrorKind::Unsupported,
        _ => ErrorKind::Storage,
    };
    Error::new(kind, format!("{what} failed"))
        .with_path(location)
        .with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapped(kind: opendal::ErrorKind, msg: &str) -> Error {
        from_opendal(opendal::Error::new(kind, msg), "list", "s3://b/p".into())
    }

    #[test]
    fn common_causes_are_said_in_our_words_with_opendal_as_the_source() {
        let e = mapped(opendal::ErrorKind::PermissionDenied, "403");
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(
            e.message()
                .starts_with("list failed: the store refused access"),
            "{e}"
        );
        assert_eq!(e.path(), Some("s3://b/p"));
        assert!(std::error::Error::source(&e).is_some_and(|s| s.to_string().contains("403")));
        let e = mapped(opendal::ErrorKind::ConfigInvalid, "region is missing");
        assert_eq!(e.kind(), ErrorKind::InvalidConfig);
        assert!(e.message().contains("configuration is invalid"), "{e}");
        let e = mapped(
            opendal::ErrorKind::ConfigInvalid,
            "S3Error { code: \"NoSuchBucket\" }",
        );
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(
            e.message().contains("bucket (or container) does not exist"),
            "{e}"
        );
        let e = mapped(opendal::ErrorKind::RateLimited, "SlowDown");
        assert!(e.message().contains("throttling"), "{e}");
        let e = mapped(opendal::ErrorKind::Unexpected, "send http request");
        assert!(e.message().contains("could not be reached"), "{e}");
        // Others keep the plain "… failed", the source telling why.
        let e = mapped(opendal::ErrorKind::Unexpected, "something else");
        assert_eq!(e.message(), "list failed");
        assert_eq!(
            mapped(opendal::ErrorKind::NotFound, "").kind(),
            ErrorKind::NotFound
        );
        let e = mapped(opendal::ErrorKind::ConditionNotMatch, "");
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
    }
}
