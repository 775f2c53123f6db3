//! Every differential case in `testdata/orbax/cases/` (the repository's copy of the shared
//! folder) replayed through the scenario runner and compared with its `"ckpt"` expectation by
//! `xtask::scenario::compare`, which follows the folder's README and `compare.py`.

use std::path::Path;

#[test]
fn every_orbax_case_passes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/orbax/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 58,
        "the cases are all there ({} found)",
        files.len()
    );
    let mut failures = Vec::new();
    for path in &files {
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let actual = xtask::scenario::run_case(&case).unwrap();
        let diffs = xtask::scenario::compare(&case["ckpt"], &actual);
        if !diffs.is_empty() {
            failures.push(format!(
                "{} ({}):\n  {}",
                case["name"],
                path.display(),
                diffs.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn the_comparison_catches_a_wrong_answer() {
    // A runner output that differs from the expectation in one result must be reported.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/orbax/cases/013.json");
    let case: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir).unwrap()).unwrap();
    let mut actual = xtask::scenario::run_case(&case).unwrap();
    actual["results"][3] = serde_json::json!({"saved": true});
    actual["final_steps"] = serde_json::json!([4, 6, 7]);
    let diffs = xtask::scenario::compare(&case["ckpt"], &actual);
    assert_eq!(diffs.len(), 2, "{diffs:?}");
}

/// The same cases on an S3 root (the local moto server `cargo xtask ci` / `cargo xtask test`
/// start), through the commit-file protocol; see `xtask::scenario` for how `pre_existing`
/// entries and disk steps map onto an object store. Fails with instructions without a server,
/// unless `CKPT_SKIP_S3=1`.
#[test]
fn every_orbax_case_passes_on_s3() {
    let endpoint = std::env::var("CKPT_TEST_S3_ENDPOINT").unwrap_or_default();
    if endpoint.is_empty() {
        if std::env::var("CKPT_SKIP_S3").as_deref() == Ok("1") {
            eprintln!("CKPT_SKIP_S3=1: skipping the S3 run of the Orbax cases");
            return;
        }
        panic!("CKPT_TEST_S3_ENDPOINT is not set: run the tests with `cargo xtask test` or `cargo xtask ci` (they start a local S3 server), or set CKPT_SKIP_S3=1");
    }
    let host = endpoint
        .split_once("://")
        .map_or(endpoint.as_str(), |(_, r)| r);
    assert!(
        host.starts_with("127.") || host.starts_with("localhost"),
        "not loopback: {endpoint}"
    );
    let bucket = std::env::var("CKPT_TEST_S3_BUCKET").unwrap_or_else(|_| "ckpt-test".into());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/orbax/cases");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut failures = Vec::new();
    for path in &files {
        let case: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let stem = path.file_stem().unwrap().to_string_lossy();
        let root = format!("s3://{bucket}/cases-{run}/{stem}");
        let actual = xtask::scenario::run_case_at(&case, &root).unwrap();
        let diffs = xtask::scenario::compare(&case["ckpt"], &actual);
        if !diffs.is_empty() {
            failures.push(format!(
                "{} ({}):\n  {}",
                case["name"],
                path.display(),
                diffs.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed on S3:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}
