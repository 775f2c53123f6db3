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
