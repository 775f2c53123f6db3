//! How the errors of the backends become ckpt's [`Error`]: opendal's ([`from_opendal`], for
//! [`crate::OpendalStore`]) and std's io errors ([`from_io`], for [`crate::LocalStore`] and the
//! streams), each with the location it concerns and the original error as its source.

use ckpt_core::{Error, ErrorKind};

/// Maps an opendal error to ours: NotFound → NotFound, AlreadyExists and ConditionNotMatch (a
/// lost conditional create) → AlreadyExists, Unsupported → Unsupported, anything else → Storage;
/// with the location and the opendal error as the source.
pub(crate) fn from_opendal(e: opendal::Error, what: &str, location: String) -> Error {
    let kind = match e.kind() {
        opendal::ErrorKind::NotFound => ErrorKind::NotFound,
        opendal::ErrorKind::AlreadyExists | opendal::ErrorKind::ConditionNotMatch => {
            ErrorKind::AlreadyExists
        }
        opendal::ErrorKind::Unsupported => ErrorKind::Unsupported,
        _ => ErrorKind::Storage,
    };
    let temporary = e.is_temporary();
    Error::new(kind, format!("{what} failed"))
        .with_path(location)
        .with_temporary(temporary)
        .with_source(e)
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
