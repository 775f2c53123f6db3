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

/// Metrics from `(name, value)` pairs.
pub fn metrics(pairs: &[(&str, f64)]) -> ckpt_manager::Metrics {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), serde_json::json!(v)))
        .collect()
}

/// A root at `dir/root` with steps 10, 20, …, 10 × `n`, each with a `val_loss` (step 20 best)
/// and a JSON item; returns its path.
pub fn root_with_losses(dir: &Path, n: u64) -> String {
    let root = dir.join("root");
    let mut m = ckpt_manager::CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap();
    for i in 1..=n {
        let step = 10 * i;
        let loss = if step == 20 { 0.01 } else { 1.0 / i as f64 };
        m.save(
            step,
            ckpt_manager::Composite::new().json_value("state", serde_json::json!({ "step": step })),
            ckpt_manager::SaveOptions::default().metrics(metrics(&[("val_loss", loss)])),
        )
        .unwrap();
    }
    m.close().unwrap();
    root.to_str().unwrap().to_string()
}

/// The committed steps of the root at `root`, read by a read-only manager.
pub fn steps_of(root: &str) -> Vec<u64> {
    ckpt_manager::CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap()
        .all_steps()
}
