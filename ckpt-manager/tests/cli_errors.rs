//! `ckpt ls/show` on bad input: a one-line error on stderr, nothing on stdout, exit status 1,
//! and nothing in the root changed.
// These tests run the `ckpt` binary, which needs the `cli` feature.
#![cfg(feature = "cli")]

use std::path::Path;
use std::process::Command;

fn ckpt(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let (code, out, err) = ckpt(args);
    assert_eq!(code, Some(1), "{args:?}: exit status; stderr {err}");
    assert!(out.is_empty(), "{args:?}: nothing on stdout, got {out}");
    // One error line; anything else on stderr is a log line (warnings are on by default).
    let (errors, logs): (Vec<&str>, Vec<&str>) = err
        .trim_end()
        .lines()
        .partition(|l| l.starts_with("ckpt: "));
    assert_eq!(errors.len(), 1, "{args:?}: one error line, got {err:?}");
    assert!(
        logs.iter()
            .all(|l| l.contains(" WARN ") || l.contains(" ERROR ")),
        "{args:?}: the other lines are log lines: {err:?}"
    );
    assert!(
        errors[0].contains(needle),
        "{args:?}: {err:?} should mention {needle:?}"
    );
    // With -q only the error line is left.
    let mut quiet = vec!["-q"];
    quiet.extend_from_slice(args);
    let (_, _, err_q) = ckpt(&quiet);
    assert_eq!(err_q.trim_end(), errors[0], "{quiet:?}");
}

/// A root with one good step written by ckpt.
fn good_root(dir: &Path) -> String {
    let root = dir.join("root");
    let mut m = ckpt_manager::CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap();
    m.save(
        1,
        ckpt_manager::Composite::new().json_value("state", serde_json::json!({"a": 1})),
        Default::default(),
    )
    .unwrap();
    root.to_str().unwrap().to_string()
}

#[test]
fn no_such_root() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing");
    let m = missing.to_str().unwrap();
    assert_one_line_error(&["ls", m], "NotFound");
    assert_one_line_error(&["show", m, "1"], "NotFound");
    assert!(!missing.exists(), "nothing created");
}

#[test]
fn root_is_a_file() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("file");
    std::fs::write(&f, b"not a root").unwrap();
    assert_one_line_error(&["ls", f.to_str().unwrap()], "not a directory");
    assert_one_line_error(&["show", f.to_str().unwrap(), "0"], "not a directory");
    assert_eq!(std::fs::read(&f).unwrap(), b"not a root");
}

#[test]
fn junk_step_arguments() {
    let d = tempfile::tempdir().unwrap();
    let root = good_root(d.path());
    // A step that is not a number is a usage error (exit status 2), caught by the parser.
    for junk in ["abc", "-1", "1e3", "", "01x", "18446744073709551616"] {
        let (code, out, err) = ckpt(&["show", &root, junk]);
        assert_eq!(code, Some(2), "{junk:?}: {err}");
        assert!(out.is_empty(), "{junk:?}: {out}");
        assert!(
            err.contains("a step is a non-negative integer"),
            "{junk:?}: {err}"
        );
    }
    assert_one_line_error(&["show", &root, "7"], "NotFound");
}

/// `watch --until` at or below `--after` could never be reached by a printed step: refused at
/// once instead of waiting silently (found by a fresh-user review).
#[test]
fn watch_until_not_above_after_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let root = good_root(d.path());
    for (after, until) in [("10", "5"), ("10", "10")] {
        assert_one_line_error(
            &[
                "watch",
                &root,
                "--after",
                after,
                "--until",
                until,
                "--timeout",
                "0",
            ],
            "--until",
        );
    }
}

#[test]
fn junk_directory_names_are_not_steps() {
    let d = tempfile::tempdir().unwrap();
    let root = good_root(d.path());
    for junk in ["abc", "007", "-1", "1e3", "5.orbax-checkpoint-tmp", "10a"] {
        std::fs::create_dir(Path::new(&root).join(junk)).unwrap();
    }
    let (code, out, _) = ckpt(&["ls", "--json", &root]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let steps: Vec<u64> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, vec![1]);
    assert_one_line_error(&["show", &root, "7"], "NotFound");
}

#[test]
fn broken_metadata() {
    let d = tempfile::tempdir().unwrap();
    let root = good_root(d.path());
    let meta = Path::new(&root).join("1/_CHECKPOINT_METADATA");
    let good = std::fs::read(&meta).unwrap();
    for broken in [
        &b"{\"item_handlers\": "[..],
        b"[1, 2]",
        b"{\"init_timestamp_nsecs\": \"soon\"}",
        b"\xff\xfe",
    ] {
        std::fs::write(&meta, broken).unwrap();
        assert_one_line_error(&["show", &root, "1"], "Corrupt");
        // Listing still works: a broken metadata file is treated as no metadata (spec §1.5).
        let (code, _, err) = ckpt(&["ls", &root]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(std::fs::read(&meta).unwrap(), broken, "unchanged");
    }
    std::fs::write(Path::new(&root).join("1/state/metadata"), b"{not json").unwrap();
    std::fs::write(&meta, &good).unwrap();
    assert_one_line_error(&["show", &root, "1"], "Corrupt");
}

#[test]
fn broken_metrics_file() {
    let d = tempfile::tempdir().unwrap();
    let root = good_root(d.path());
    std::fs::create_dir_all(Path::new(&root).join("1/metrics")).unwrap();
    std::fs::write(
        Path::new(&root).join("1/metrics/metrics"),
        b"[\"not an object\"]",
    )
    .unwrap();
    assert_one_line_error(&["show", &root, "1"], "Corrupt");
}

#[test]
fn human_output_marks_latest() {
    let d = tempfile::tempdir().unwrap();
    let root = good_root(d.path());
    let (code, out, err) = ckpt(&["ls", &root]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("1 (latest)"), "{out}");
    assert!(out.contains("state"), "{out}");
    let (code, out, _) = ckpt(&["show", &root, "1"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("{\"a\":1}"), "{out}");
}

/// `ckpt ls`: every column starts at the same place on every line, whatever the length of the
/// step names, item lists and metrics (the widest cell sets each column's width).
#[test]
fn ls_columns_line_up_with_long_item_lists() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut m = ckpt_manager::CheckpointManager::builder(root.to_str().unwrap())
        .enable_async_checkpointing(false)
        .build()
        .unwrap();
    let mut metrics = ckpt_manager::Metrics::new();
    metrics.insert("loss".into(), serde_json::json!(0.5));
    m.save(
        7,
        ckpt_manager::Composite::new().json_value("s", serde_json::json!(1)),
        ckpt_manager::SaveOptions::default().metrics(metrics.clone()),
    )
    .unwrap();
    let mut many = ckpt_manager::Composite::new();
    for i in 0..12 {
        many = many.json_value(format!("a_rather_long_item_name_{i}"), serde_json::json!(i));
    }
    // Wide characters take two terminal cells each.
    many = many.json_value("模型参数_größe", serde_json::json!(0));
    m.save(
        123_456_789_012,
        many,
        ckpt_manager::SaveOptions::default().metrics(metrics),
    )
    .unwrap();
    m.close().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["ls", root.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let header = lines[0];
    // Columns in terminal cells: a CJK character is two cells wide.
    let cells_before = |line: &str, byte: usize| {
        line[..byte]
            .chars()
            .map(|c| {
                if ('\u{4e00}'..='\u{9fff}').contains(&c) {
                    2
                } else {
                    1
                }
            })
            .sum::<usize>()
    };
    let col = |name: &str| cells_before(header, header.find(name).unwrap());
    for line in &lines[1..] {
        // The commit time, the items and the metrics each start under their heading.
        let at = |needle: &str| cells_before(line, line.find(needle).unwrap());
        assert_eq!(at("20"), col("COMMIT TIME"), "{text}");
        assert_eq!(at("loss=0.5"), col("METRICS"), "{text}");
        let items_at = line
            .find(" metrics")
            .or_else(|| line.find(" a_rather"))
            .unwrap()
            + 1;
        assert_eq!(cells_before(line, items_at), col("ITEMS"), "{text}");
    }
    assert!(lines[2].contains("123456789012 (latest)"), "{text}");
}
