//! `ckpt gc ROOT --policy FILE [--dry-run] [--json]` on real temporary roots: a dry run changes
//! nothing, a real run deletes exactly the steps the policy does not keep and nothing that is not
//! a step, and bad input gives a one-line error, exit status 1 and an unchanged root.

use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::{json, Value};
use std::collections::BTreeSet;
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

/// Every path below `dir`, relative, with each file's content: a snapshot to compare.
fn snapshot(dir: &Path) -> BTreeSet<(String, Vec<u8>)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
            if p.is_dir() {
                out.insert((rel + "/", Vec::new()));
                walk(base, &p, out);
            } else {
                out.insert((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// The directory names directly in `dir`.
fn names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A root with steps 10, 20, …, 60 (loss 0.6, 0.1, 0.5, 0.4, 0.3, 0.2: step 20 is the best)
/// named with `prefix`, plus a foreign directory, a foreign file and a directory whose name
/// looks like a step of another format.
fn make_root(dir: &Path, prefix: Option<&str>) -> String {
    let root = dir.join("root");
    let mut b = CheckpointManager::builder(root.to_str().unwrap());
    if let Some(p) = prefix {
        b = b.step_prefix(p);
    }
    let mut m = b.build().unwrap();
    for (step, loss) in [
        (10, 0.6),
        (20, 0.1),
        (30, 0.5),
        (40, 0.4),
        (50, 0.3),
        (60, 0.2),
    ] {
        let mut metrics = serde_json::Map::new();
        metrics.insert("loss".into(), json!(loss));
        assert!(m
            .save(
                step,
                Composite::new().json_value("state", json!({ "step": step })),
                SaveOptions::default().metrics(metrics),
            )
            .unwrap());
    }
    m.close().unwrap();
    std::fs::create_dir_all(root.join("notes/7")).unwrap();
    std::fs::write(root.join("notes/7/keep.txt"), b"mine").unwrap();
    std::fs::write(root.join("README"), b"not a step").unwrap();
    std::fs::create_dir_all(root.join("x_70")).unwrap();
    root.to_str().unwrap().to_string()
}

const POLICY_JSON: &str = r#"{"type": "AnyPreservationPolicy", "policies": [
    {"type": "LatestN", "n": 2},
    {"type": "BestN", "metric": "loss", "mode": "min", "n": 1}
]}"#;

const POLICY_TOML: &str = r#"
type = "AnyPreservationPolicy"
policies = [
    { type = "LatestN", n = 2 },
    { type = "BestN", metric = "loss", mode = "min", n = 1 },
]
"#;

fn write_policies(dir: &Path) -> (String, String) {
    let json = dir.join("policy.json");
    let toml = dir.join("policy.toml");
    std::fs::write(&json, POLICY_JSON).unwrap();
    std::fs::write(&toml, POLICY_TOML).unwrap();
    (
        json.to_str().unwrap().to_string(),
        toml.to_str().unwrap().to_string(),
    )
}

#[test]
fn dry_run_changes_nothing_and_reports_the_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), None);
    let (policy, _) = write_policies(dir.path());
    let before = snapshot(Path::new(&root));

    let (code, out, err) = ckpt(&["gc", &root, "--policy", &policy, "--dry-run", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        snapshot(Path::new(&root)),
        before,
        "a dry run changed the root"
    );
    let decisions: Value = serde_json::from_str(&out).unwrap();
    let decisions = decisions.as_array().unwrap();
    let steps: Vec<u64> = decisions
        .iter()
        .map(|d| d["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, [10, 20, 30, 40, 50, 60]);
    let kept: Vec<u64> = decisions
        .iter()
        .filter(|d| d["keep"] == json!(true))
        .map(|d| d["step"].as_u64().unwrap())
        .collect();
    assert_eq!(kept, [20, 50, 60]);
    for d in decisions {
        assert_eq!(d["deleted"], json!(false), "{d}");
        assert!(!d["reason"].as_str().unwrap().is_empty(), "{d}");
        assert_eq!(d.as_object().unwrap().len(), 4, "{d}");
    }

    // The text form says the same, one line per step, with the reasons.
    let (code, out, err) = ckpt(&["gc", &root, "--policy", &policy, "--dry-run"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(snapshot(Path::new(&root)), before);
    let line = |step: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(step))
            .unwrap_or_else(|| panic!("no line for step {step} in {out}"))
            .to_string()
    };
    assert!(line("10").contains("would delete"), "{out}");
    assert!(line("20").contains("kept"), "{out}");
    assert!(line("20").contains("best 1 by loss (min)"), "{out}");
    assert!(line("60").contains("newest 2"), "{out}");
    assert!(out.contains("dry run: 3 kept, 3 would be deleted"), "{out}");
}

#[test]
fn real_run_deletes_exactly_the_steps_not_kept() {
    for toml in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let root = make_root(dir.path(), None);
        let (json_policy, toml_policy) = write_policies(dir.path());
        let policy = if toml { toml_policy } else { json_policy };
        let foreign_before: BTreeSet<_> = snapshot(Path::new(&root))
            .into_iter()
            .filter(|(p, _)| p.starts_with("notes") || p == "README" || p.starts_with("x_70"))
            .collect();

        let (code, out, err) = ckpt(&["gc", &root, "--policy", &policy, "--json"]);
        assert_eq!(code, Some(0), "{err}");
        let decisions: Vec<Value> = serde_json::from_str(&out).unwrap();
        for d in &decisions {
            assert_eq!(d["deleted"], json!(d["keep"] == json!(false)), "{d}");
        }
        let left = names(Path::new(&root));
        let expected: BTreeSet<String> = ["20", "50", "60", "notes", "README", "x_70"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(left, expected, "toml={toml}");
        let foreign_after: BTreeSet<_> = snapshot(Path::new(&root))
            .into_iter()
            .filter(|(p, _)| p.starts_with("notes") || p == "README" || p.starts_with("x_70"))
            .collect();
        assert_eq!(foreign_after, foreign_before, "foreign entries changed");

        // The root still opens, with the survivors; a second run deletes nothing.
        let m = CheckpointManager::builder(root.as_str())
            .read_only(true)
            .build()
            .unwrap();
        assert_eq!(m.all_steps(), [20, 50, 60]);
        drop(m);
        let (code, out, err) = ckpt(&["gc", &root, "--policy", &policy]);
        assert_eq!(code, Some(0), "{err}");
        assert!(out.contains("3 kept, 0 deleted"), "{out}");
        assert_eq!(names(Path::new(&root)), expected);
    }
}

#[test]
fn step_prefix_and_fixed_length_name_the_steps() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), Some("ckpt"));
    let policy = dir.path().join("latest.toml");
    std::fs::write(&policy, "type = \"LatestN\"\nn = 1\n").unwrap();
    let policy = policy.to_str().unwrap();

    // Without the prefix no directory is a step: nothing to decide, nothing deleted.
    let before = snapshot(Path::new(&root));
    let (code, out, err) = ckpt(&["gc", &root, "--policy", policy, "--json"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), json!([]));
    assert_eq!(snapshot(Path::new(&root)), before);

    let (code, _, err) = ckpt(&["gc", &root, "--policy", policy, "--step-prefix", "ckpt"]);
    assert_eq!(code, Some(0), "{err}");
    let left = names(Path::new(&root));
    assert!(left.contains("ckpt_60"), "{left:?}");
    assert!(
        !left
            .iter()
            .any(|n| n.starts_with("ckpt_") && n != "ckpt_60"),
        "{left:?}"
    );
    assert!(left.contains("x_70") && left.contains("notes"), "{left:?}");
}

fn assert_one_line_error(args: &[&str], needle: &str) {
    let (code, out, err) = ckpt(args);
    assert_eq!(code, Some(1), "{args:?}: exit status; stderr {err}");
    assert!(out.is_empty(), "{args:?}: nothing on stdout, got {out}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "{args:?}: one line, got {err:?}"
    );
    assert!(err.starts_with("ckpt: "), "{args:?}: {err}");
    assert!(
        err.contains(needle),
        "{args:?}: {err:?} should mention {needle:?}"
    );
}

#[test]
fn bad_input_is_one_line_exit_1_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = make_root(dir.path(), None);
    let (policy, _) = write_policies(dir.path());
    let before = snapshot(Path::new(&root));
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };

    let unknown_type = file("unknown.json", r#"{"type": "KeepEverythingForever"}"#);
    assert_one_line_error(
        &["gc", &root, "--policy", &unknown_type],
        "KeepEverythingForever",
    );
    let unknown_field = file("field.json", "{\"type\": \"LatestN\",\n \"nn\": 2}");
    assert_one_line_error(&["gc", &root, "--policy", &unknown_field], "nn");
    let bad_toml = file("bad.toml", "type = \"LatestN\"\nn = \n");
    assert_one_line_error(&["gc", &root, "--policy", &bad_toml], "line 2");
    let zero = file(
        "zero.json",
        r#"{"type": "EveryNSteps", "interval_steps": 0}"#,
    );
    assert_one_line_error(&["gc", &root, "--policy", &zero], "InvalidConfig");
    let yaml = file("policy.yaml", "type: LatestN");
    assert_one_line_error(&["gc", &root, "--policy", &yaml], ".json or .toml");
    let missing = dir.path().join("missing.json");
    assert_one_line_error(
        &["gc", &root, "--policy", missing.to_str().unwrap()],
        "missing.json",
    );
    let no_root = dir.path().join("no-such-root");
    assert_one_line_error(
        &["gc", no_root.to_str().unwrap(), "--policy", &policy],
        "no such checkpoint root",
    );
    assert!(!no_root.exists(), "gc created the root it was pointed at");
    assert_eq!(
        snapshot(Path::new(&root)),
        before,
        "bad input changed the root"
    );
}
