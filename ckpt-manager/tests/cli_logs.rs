//! Issue 16, "Logs nobody sees": the `ckpt` tool installs a log subscriber writing to stderr,
//! filtered by `-v`/`-q` or `RUST_LOG`. Runs the real binary on a real root: `gc` deleting a
//! step logs it (with the policy's reason) at INFO, which `-v` or `RUST_LOG=info` shows and the
//! default (warnings and errors) does not.
#![cfg(feature = "cli")]

use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::process::Command;

fn ckpt(args: &[&str], rust_log: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ckpt"));
    cmd.args(args).env_remove("RUST_LOG");
    if let Some(v) = rust_log {
        cmd.env("RUST_LOG", v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A root with steps 1, 2, 3 and a policy file keeping the latest one; returns the root's path
/// and the policy's.
fn root_and_policy(dir: &std::path::Path) -> (String, String) {
    let root = dir.join("root");
    let mut m = CheckpointManager::builder(root.to_string_lossy())
        .enable_async_checkpointing(false)
        .build()
        .unwrap();
    for step in 1..=3 {
        m.save(
            step,
            Composite::new().json_value("state", json!({"step": step})),
            SaveOptions::default(),
        )
        .unwrap();
    }
    m.close().unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(&policy, r#"{"type": "LatestN", "n": 1}"#).unwrap();
    (
        root.to_string_lossy().into_owned(),
        policy.to_string_lossy().into_owned(),
    )
}

#[test]
fn gc_logs_each_deletion_at_info_with_v_or_rust_log() {
    for (flags, rust_log, shown) in [
        (&[][..], None, false),
        (&["-v"][..], None, true),
        (&["-vv"][..], None, true),
        (&[][..], Some("info"), true),
        (&[][..], Some("ckpt_manager=info"), true),
        (&["-v", "-q"][..], None, false),
        (&["-v"][..], Some("error"), false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (root, policy) = root_and_policy(dir.path());
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["gc", root.as_str(), "--policy", policy.as_str()]);
        let (code, _, err) = ckpt(&args, rust_log);
        assert_eq!(code, Some(0), "{args:?} {rust_log:?}: {err}");
        assert_eq!(
            err.matches("deleting step").count(),
            if shown { 2 } else { 0 },
            "{args:?} RUST_LOG={rust_log:?}: stderr {err:?}"
        );
        if shown {
            assert!(err.contains("INFO"), "{err}");
        }
    }
}

#[test]
fn a_bad_rust_log_is_named_and_the_default_used() {
    let dir = tempfile::tempdir().unwrap();
    let (root, _) = root_and_policy(dir.path());
    let (code, out, err) = ckpt(&["ls", &root], Some("ckpt=loud"));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains('3'), "{out}");
    assert!(
        err.contains("RUST_LOG=\"ckpt=loud\" is not a log filter"),
        "{err}"
    );
}
