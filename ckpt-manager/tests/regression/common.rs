//! Helpers shared by the regression tests: running the `ckpt` binary, listing a root.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs the real `ckpt` binary with `args`, stdin closed (not a terminal); returns its exit
/// status, stdout and stderr.
pub fn ckpt(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The names directly in `dir`.
pub fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}
