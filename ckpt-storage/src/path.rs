//! Store paths: validation and the few joins and splits the commit protocols and callers need.
//!
//! A store path is relative to the store's root, `/`-separated, with no leading or trailing `/`,
//! no empty, `.` or `..` component, no component that begins or ends with whitespace (opendal
//! trims paths, so `"x "` would silently name `"x"`), and no NUL or backslash; `""` is the root.

use ckpt_core::layout::component_problem;
use ckpt_core::{Error, Result};

/// Checks that `path` is a valid store path (see the crate docs); `""`, the root, is valid.
///
/// The path-level rules are checked here (relative, no trailing `/`); each component is checked
/// by ckpt-core's one name validator, [`ckpt_core::layout::component_problem`], and the first
/// problem in its order (NUL, backslash, empty, `.`/`..`, edge whitespace) found in any
/// component is reported.
///
/// # Errors
/// [`ckpt_core::ErrorKind::InvalidArgument`] naming the path and saying what is wrong with it.
pub fn validate_path(path: &str) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    let problem = if path.starts_with('/') {
        Some("it must be relative (no leading '/')")
    } else if path.ends_with('/') {
        Some("it must not end with '/'")
    } else {
        path.split('/')
            .filter_map(component_problem)
            .min()
            .map(|p| p.rule())
    };
    match problem {
        None => Ok(()),
        Some(why) => Err(
            Error::invalid_argument(format!("invalid store path {path:?}: {why}"))
                .with_path(path.to_string()),
        ),
    }
}

/// Joins a directory path and a relative path below it: `join_path("", "a") == "a"`,
/// `join_path("a/b", "c/d") == "a/b/c/d"`. Does not validate; an empty `name` gives `dir`.
pub fn join_path(dir: &str, name: &str) -> String {
    match (dir.is_empty(), name.is_empty()) {
        (true, _) => name.to_string(),
        (false, true) => dir.to_string(),
        (false, false) => format!("{dir}/{name}"),
    }
}

/// The parent directory of `path`: `parent_path("a/b") == Some("a")`, `parent_path("a") ==
/// Some("")` (the root), `parent_path("") == None` (the root has no parent).
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(path.rsplit_once('/').map_or("", |(parent, _)| parent))
}

/// The last component of `path`: `file_name("a/b") == "b"`, `file_name("a") == "a"`,
/// `file_name("") == ""`.
pub fn file_name(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, name)| name)
}

/// Rejects the root where a call needs a path below it.
pub(crate) fn not_root(path: &str, what: &str) -> Result<()> {
    if path.is_empty() {
        return Err(Error::invalid_argument(format!(
            "{what} needs a path below the root, not the root itself"
        ))
        .with_path(path.to_string()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckpt_core::ErrorKind;

    #[test]
    fn good_paths() {
        for p in [
            "",
            "a",
            "a/b",
            "3.orbax-checkpoint-tmp/state",
            "a b/ü.txt",
            "...",
            ".a",
            "a.",
        ] {
            validate_path(p).unwrap_or_else(|e| panic!("{p:?} rejected: {e}"));
        }
    }

    #[test]
    fn bad_paths_name_the_path() {
        for p in [
            "/", "/a", "a/", "a//b", " a", "a ", "a/ b", "a /b", "a\t", "//", "./a", "a/.",
            "a/./b", "..", "../x", "a/../b", "a\\b", "a\0b",
        ] {
            let e = validate_path(p).expect_err(p);
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{p:?}");
            assert_eq!(e.path(), Some(p));
            assert!(e.to_string().contains(&format!("{p:?}")), "{e}");
        }
    }

    #[test]
    fn bad_paths_say_what_is_wrong() {
        for (p, why) in [
            ("/a", "it must be relative (no leading '/')"),
            ("a/", "it must not end with '/'"),
            ("a\0b", "it must not contain NUL"),
            ("a\\b", "it must not contain a backslash"),
            ("a//b", "it must not contain an empty component ('//')"),
            ("a/../b", "it must not contain a '.' or '..' component"),
            ("a /b", "no component may begin or end with whitespace"),
            // The first problem in component_problem's order wins, whichever component has it.
            (" a/b\\c", "it must not contain a backslash"),
            ("./a\0", "it must not contain NUL"),
        ] {
            let e = validate_path(p).expect_err(p);
            assert_eq!(
                e.message(),
                format!("invalid store path {p:?}: {why}"),
                "{p:?}"
            );
        }
    }

    #[test]
    fn joins_and_splits() {
        assert_eq!(join_path("", "a"), "a");
        assert_eq!(join_path("a/b", "c/d"), "a/b/c/d");
        assert_eq!(join_path("a", ""), "a");
        assert_eq!(parent_path("a/b/c"), Some("a/b"));
        assert_eq!(parent_path("a"), Some(""));
        assert_eq!(parent_path(""), None);
        assert_eq!(file_name("a/b"), "b");
        assert_eq!(file_name("a"), "a");
        assert_eq!(file_name(""), "");
    }
}
