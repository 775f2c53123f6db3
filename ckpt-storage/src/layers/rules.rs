//! [`OpKind`] names the operations of a [`crate::Store`] and [`PathPattern`] selects paths: the
//! rules of the test layers (`FaultStore`, `LatencyStore`, `CountingStore`).

use std::fmt;

/// One kind of [`crate::Store`] call. `capabilities` and `location` are not operations: they
/// touch no storage, and no layer counts, delays or fails them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKind {
    /// [`crate::Store::write`].
    Write,
    /// [`crate::Store::write_if_absent`].
    WriteIfAbsent,
    /// [`crate::Store::read`].
    Read,
    /// [`crate::Store::read_range`].
    ReadRange,
    /// [`crate::Store::stat`].
    Stat,
    /// [`crate::Store::list_dir`].
    ListDir,
    /// [`crate::Store::create_dir`].
    CreateDir,
    /// [`crate::Store::delete`].
    Delete,
    /// [`crate::Store::delete_prefix`].
    DeletePrefix,
    /// [`crate::Store::rename`].
    Rename,
    /// [`crate::Store::sync_dir`].
    SyncDir,
    /// [`crate::Store::sync_file`] (a [`crate::Store::write_parts_unsynced`] counts as a
    /// [`OpKind::Write`]).
    SyncFile,
}

impl OpKind {
    /// Every operation kind, in the order of the [`crate::Store`] trait.
    pub const ALL: [OpKind; 12] = [
        OpKind::Write,
        OpKind::WriteIfAbsent,
        OpKind::Read,
        OpKind::ReadRange,
        OpKind::Stat,
        OpKind::ListDir,
        OpKind::CreateDir,
        OpKind::Delete,
        OpKind::DeletePrefix,
        OpKind::Rename,
        OpKind::SyncDir,
        OpKind::SyncFile,
    ];

    /// The name of the [`crate::Store`] method, e.g. `"write_if_absent"`.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Write => "write",
            OpKind::WriteIfAbsent => "write_if_absent",
            OpKind::Read => "read",
            OpKind::ReadRange => "read_range",
            OpKind::Stat => "stat",
            OpKind::ListDir => "list_dir",
            OpKind::CreateDir => "create_dir",
            OpKind::Delete => "delete",
            OpKind::DeletePrefix => "delete_prefix",
            OpKind::Rename => "rename",
            OpKind::SyncDir => "sync_dir",
            OpKind::SyncFile => "sync_file",
        }
    }

    /// Whether the operation changes the store: `write`, `write_if_absent`, `create_dir`,
    /// `delete`, `delete_prefix`, `rename`.
    pub fn is_mutation(self) -> bool {
        matches!(
            self,
            OpKind::Write
                | OpKind::WriteIfAbsent
                | OpKind::CreateDir
                | OpKind::Delete
                | OpKind::DeletePrefix
                | OpKind::Rename
        )
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Selects store paths, for the rules of [`FaultStore`] and [`LatencyStore`].
///
/// Kept deliberately simple:
/// * a pattern without `*` matches every path that *contains* it as a substring
///   (`"state/"` matches `"3.orbax-checkpoint-tmp/state/t.bin"`);
/// * a pattern with one or more `*` is a glob over the *whole* path, where `*` matches any run of
///   characters, `/` included (`"3*/commit_success.txt"` matches every commit file below a
///   directory whose name starts with `3`); there is no `?`, no character class and no escape;
/// * the empty pattern matches every path.
///
/// Matching is by characters, case-sensitive, on the store path as given to the call (relative
/// to the store root, no leading `/`). For `rename` a rule matches when either path matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(String);

impl PathPattern {
    /// A pattern (see the type's docs for the syntax).
    pub fn new(pattern: impl Into<String>) -> Self {
        PathPattern(pattern.into())
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &str) -> bool {
        if self.0.contains('*') {
            glob_match(&self.0, path)
        } else {
            path.contains(self.0.as_str())
        }
    }
}

impl From<&str> for PathPattern {
    fn from(s: &str) -> Self {
        PathPattern::new(s)
    }
}

impl From<String> for PathPattern {
    fn from(s: String) -> Self {
        PathPattern::new(s)
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whole-string match of `pattern`, where `*` matches any run of characters: the classic
/// linear-time two-pointer algorithm with one backtrack point.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // Where the last `*` was in the pattern, and the text position it is currently matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` swallow one more character and retry from there.
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substring_patterns() {
        let p = PathPattern::new("state/");
        assert!(p.matches("3.orbax-checkpoint-tmp/state/t.bin"));
        assert!(!p.matches("3/statex"));
        assert!(PathPattern::new("").matches("anything"));
        assert!(PathPattern::new("").matches(""));
    }

    #[test]
    fn glob_patterns() {
        let cases = [
            ("*", "", true),
            ("*", "a/b/c", true),
            ("a*", "abc", true),
            ("a*", "ba", false),
            ("*c", "abc", true),
            ("*c", "abcd", false),
            (
                "3*/commit_success.txt",
                "3.orbax-checkpoint-tmp/commit_success.txt",
                true,
            ),
            ("3*/commit_success.txt", "3/state/commit_success.txt", true),
            ("3*/commit_success.txt", "13/commit_success.txt", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
            ("a**b", "ab", true),
            ("*.bin", "x/y.bin", true),
            ("*ü*", "dir/ünï", true),
        ];
        for (pat, text, want) in cases {
            assert_eq!(
                PathPattern::new(pat).matches(text),
                want,
                "{pat:?} vs {text:?}"
            );
        }
    }

    #[test]
    fn op_names_are_method_names() {
        let names: Vec<&str> = OpKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(
            names,
            [
                "write",
                "write_if_absent",
                "read",
                "read_range",
                "stat",
                "list_dir",
                "create_dir",
                "delete",
                "delete_prefix",
                "rename",
                "sync_dir",
                "sync_file"
            ]
        );
        assert_eq!(OpKind::Rename.to_string(), "rename");
    }
}
