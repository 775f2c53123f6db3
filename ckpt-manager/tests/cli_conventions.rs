//! Issue 16, the `ckpt` tool's command-line conventions and inspection, on the real binary:
//! one-line command summaries and the exit statuses in `--help`, `cp SRC DST`, distinct exit
//! statuses (0 ok, 1 error, 2 usage, 3 corrupt data found by `verify`), JSON errors with
//! `--json`, `show ROOT latest|best`, a missing step listing the steps there are, step sizes and
//! the best step in `ls`, and `ls` on a step directory, a file or a root of prefixed step names
//! saying what it found and what to pass.
// These tests run the `ckpt` binary, which needs the `cli` feature.
#![cfg(feature = "cli")]

use ckpt_manager::{CheckpointManager, Composite, Metrics, SaveOptions};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

fn ckpt(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A root at `dir/name` with one JSON item per step and the metric `loss` = `loss(step)`.
fn root_with(dir: &Path, name: &str, steps: &[u64], loss: impl Fn(u64) -> f64) -> String {
    let root = dir.join(name);
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .enable_async_checkpointing(false)
        .build()
        .unwrap();
    for &step in steps {
        let mut metrics = Metrics::new();
        metrics.insert("loss".into(), json!(loss(step)));
        m.save(
            step,
            Composite::new().json_value("state", json!({"step": step, "pad": "x".repeat(3000)})),
            SaveOptions::default().metrics(metrics),
        )
        .unwrap();
    }
    m.close().unwrap();
    root.to_str().unwrap().to_string()
}

/// The sum of the sizes of the files below `dir`.
fn du(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                du(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

/// The one line of stderr that is not a log line, parsed as JSON.
fn json_error(err: &str) -> Value {
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with('{')).collect();
    assert_eq!(lines.len(), 1, "one JSON error line: {err:?}");
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {err:?}"))
}

#[test]
fn help_has_one_line_per_command_and_the_exit_statuses() {
    let (code, out, err) = ckpt(&["--help"]);
    assert_eq!(code, Some(0), "{err}");
    // The tool writes too (gc, rm, cp, import): not just "Inspect".
    let first = out.lines().next().unwrap();
    assert!(first.contains("manage"), "{first}");
    let commands: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 10, "{out}"); // nine commands and `help`
    for line in &commands {
        assert!(line.len() <= 100, "one short line per command: {line:?}");
    }
    let cp = commands
        .iter()
        .find(|l| l.trim_start().starts_with("cp "))
        .unwrap();
    assert!(
        !cp.contains("commit protocol"),
        "cp's long text stays in cp --help: {cp}"
    );
    for status in [
        "0  success",
        "1  error: one line on stderr; with --json one JSON object",
        "2  usage error",
        "3  `verify` found corrupt data",
    ] {
        assert!(out.contains(status), "--help lacks {status:?}: {out}");
    }
    // cp's positionals are SRC and DST, as the README writes them; its long text is in cp --help.
    let (code, out, _) = ckpt(&["cp", "--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("ckpt cp [OPTIONS] <SRC> <DST>"), "{out}");
    assert!(!out.contains("<ROOT>"), "{out}");
    assert!(out.contains("commit protocol"), "{out}");
}

#[test]
fn exit_statuses_tell_usage_errors_and_corrupt_data_apart() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1, 2], |s| s as f64);
    // 0: fine.
    assert_eq!(ckpt(&["verify", &root]).0, Some(0));
    // 2: clap's usage errors.
    for args in [
        &["frobnicate"][..],
        &["ls"],
        &["show", &root],
        &["ls", &root, "--nope"],
    ] {
        let (code, out, err) = ckpt(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}");
        assert!(err.contains("Usage:"), "{args:?}: {err}");
    }
    // 1: an error (verify cannot check: no such root, no such step).
    let missing = d.path().join("missing");
    assert_eq!(ckpt(&["verify", missing.to_str().unwrap()]).0, Some(1));
    let (code, _, err) = ckpt(&["verify", &root, "9"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(ckpt(&["ls", missing.to_str().unwrap()]).0, Some(1));
    // 3: verify found corrupt data (a flipped byte).
    let file = Path::new(&root).join("2/state/metadata");
    let mut bytes = std::fs::read(&file).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let (code, out, err) = ckpt(&["verify", &root]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("step 2: BAD"), "{out}");
    assert!(err.contains("Corrupt"), "{err}");
    assert_eq!(ckpt(&["verify", &root, "1"]).0, Some(0));
    assert_eq!(ckpt(&["verify", "--checksums-only", &root, "2"]).0, Some(3));
}

#[test]
fn verify_finds_stray_items_and_an_emptied_manifest() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1, 2, 3], |s| s as f64);
    // A stray, empty item directory: not restorable, not vouched for.
    std::fs::create_dir(Path::new(&root).join("1/stray")).unwrap();
    // Every entry of step 2's manifest lost.
    std::fs::write(
        Path::new(&root).join("2/_CKPT_CHECKSUMS"),
        br#"{"algorithm": "crc32c", "files": {}}"#,
    )
    .unwrap();
    let (code, out, err) = ckpt(&["verify", &root]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("step 1: BAD"), "{out}");
    assert!(out.contains("item \"stray\" has no file recorded"), "{out}");
    assert!(out.contains("step 2: BAD"), "{out}");
    assert!(
        out.contains("not in the checksum manifest, though inside an item"),
        "{out}"
    );
    assert!(out.contains("step 3: ok"), "{out}");
    let (code, out, _) = ckpt(&["verify", "--json", &root, "1"]);
    assert_eq!(code, Some(3));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let problems = report.to_string();
    assert!(problems.contains("has no file recorded"), "{problems}");
}

#[test]
fn with_json_errors_are_json_on_stderr() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1], |_| 0.5);
    let missing = d.path().join("missing");
    let (code, out, err) = ckpt(&["ls", "--json", missing.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "{out}");
    let e = json_error(&err);
    assert_eq!(e["error"]["kind"], "NotFound", "{e}");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such checkpoint root"),
        "{e}"
    );
    assert!(!err.contains("ckpt: "), "no text error line as well: {err}");

    let (code, _, err) = ckpt(&["show", "--json", &root, "7"]);
    assert_eq!(code, Some(1));
    let e = json_error(&err);
    assert_eq!(e["error"]["kind"], "NotFound");
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("its steps are 1"),
        "{e}"
    );

    // A usage error with --json: JSON too, exit status 2.
    let (code, _, err) = ckpt(&["show", "--json", &root]);
    assert_eq!(code, Some(2), "{err}");
    let e = json_error(&err);
    assert_eq!(e["error"]["usage"], true, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("<STEP>"),
        "{e}"
    );

    // verify's findings: JSON report on stdout, JSON error on stderr, exit status 3.
    let file = Path::new(&root).join("1/state/metadata");
    std::fs::write(&file, b"{").unwrap();
    let (code, out, err) = ckpt(&["verify", "--json", &root]);
    assert_eq!(code, Some(3), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report[0]["ok"], false);
    assert_eq!(json_error(&err)["error"]["kind"], "Corrupt");
}

#[test]
fn show_latest_and_best() {
    let d = tempfile::tempdir().unwrap();
    // loss is lowest at step 20.
    let root = root_with(d.path(), "root", &[10, 20, 30], |s| {
        ((s as f64) - 20.0).abs()
    });
    let step_of = |args: &[&str]| {
        let (code, out, err) = ckpt(args);
        assert_eq!(code, Some(0), "{args:?}: {err}");
        serde_json::from_str::<Value>(&out).unwrap()["step"].clone()
    };
    assert_eq!(step_of(&["show", "--json", &root, "latest"]), 30);
    assert_eq!(
        step_of(&[
            "show",
            "--json",
            &root,
            "best",
            "--best-metric",
            "loss",
            "--best-mode",
            "min"
        ]),
        20
    );
    assert_eq!(
        step_of(&[
            "show",
            "--json",
            &root,
            "best",
            "--best-metric",
            "loss",
            "--best-mode",
            "max"
        ]),
        30
    );
    let (code, out, _) = ckpt(&["show", &root, "latest"]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("step 30 (30)"), "{out}");
    // No metric given: `best` says what to pass and which metrics there are.
    let (code, out, err) = ckpt(&["show", &root, "best"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert!(
        err.contains("--best-metric NAME") && err.contains("metrics loss"),
        "{err}"
    );
    // A metric no step has is refused, naming those there are.
    let (code, _, err) = ckpt(&["show", &root, "best", "--best-metric", "los"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("los") && err.contains("loss"), "{err}");
    // An empty root has no latest step.
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = ckpt(&["show", empty.to_str().unwrap(), "latest"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("NotFound") && err.contains("no committed steps"),
        "{err}"
    );
}

#[test]
fn show_of_a_missing_step_lists_the_steps_there_are() {
    let d = tempfile::tempdir().unwrap();
    let few = root_with(d.path(), "few", &[10, 20, 30], |_| 1.0);
    let (code, out, err) = ckpt(&["show", &few, "7"]);
    assert_eq!(code, Some(1));
    assert!(out.is_empty());
    assert!(
        err.contains("NotFound: no step 7 in ") && err.contains("its steps are 10, 20, 30"),
        "{err}"
    );
    let steps: Vec<u64> = (1..=25).map(|i| i * 10).collect();
    let many = root_with(d.path(), "many", &steps, |_| 1.0);
    let (code, _, err) = ckpt(&["show", &many, "7"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("its steps are 10, 20, 30, 40, 50, …, 210, 220, 230, 240, 250 (25 steps)"),
        "{err}"
    );
}

#[test]
fn ls_shows_step_sizes_and_marks_the_best_step() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1, 2, 3], |s| {
        [0.0, 0.9, 0.1, 0.5][s as usize]
    });
    let (code, out, err) = ckpt(&["ls", "--json", &root]);
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    for s in v["steps"].as_array().unwrap() {
        let dir = Path::new(&root).join(s["name"].as_str().unwrap());
        let bytes = du(&dir);
        assert!(bytes > 3000, "{bytes}");
        assert_eq!(s["bytes"], bytes, "{s}");
    }
    assert!(
        v.get("best_step").is_none(),
        "no best without --best-metric: {v}"
    );
    let (code, out, _) = ckpt(&["ls", &root]);
    assert_eq!(code, Some(0));
    assert!(out.lines().next().unwrap().contains("SIZE"), "{out}");
    let size = |bytes: u64| format!("{:.1} KiB", bytes as f64 / 1024.0);
    let line2 = out.lines().find(|l| l.starts_with("2 ")).unwrap();
    assert!(
        line2.contains(&size(du(&Path::new(&root).join("2")))),
        "{out}"
    );
    assert!(!out.contains("best"), "{out}");

    let (code, out, err) = ckpt(&["ls", &root, "--best-metric", "loss", "--best-mode", "min"]);
    assert_eq!(code, Some(0), "{err}");
    let marked: Vec<&str> = out.lines().filter(|l| l.contains("best")).collect();
    assert_eq!(marked.len(), 2, "{out}");
    assert!(marked[0].starts_with("2 (best)"), "{out}");
    assert_eq!(marked[1], "best: step 2 by loss (min)");
    assert!(out.contains("3 (latest)"), "{out}");
    let (_, out, _) = ckpt(&["ls", "--json", &root, "--best-metric", "loss"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["best_step"], 1, "max by default: {v}");
    assert_eq!(v["best_mode"], "max");
}

#[test]
fn ls_on_the_wrong_directory_says_what_it_found_and_what_to_pass() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[100, 200], |_| 1.0);
    let one_error = |args: &[&str], needles: &[&str]| {
        let (code, out, err) = ckpt(args);
        assert_eq!(code, Some(1), "{args:?}: {out}{err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        for n in needles {
            assert!(err.contains(n), "{args:?}: {err:?} lacks {n:?}");
        }
    };
    // A step directory.
    let step_dir = format!("{root}/200");
    one_error(
        &["ls", &step_dir],
        &[
            "looks like a step directory (it holds _CHECKPOINT_METADATA)",
            &format!("name its root: ckpt ls {root}"),
        ],
    );
    one_error(
        &["verify", &step_dir],
        &[
            "looks like a step directory",
            &format!("ckpt verify {root} 200"),
        ],
    );
    // watch on a step directory or a prefixed root: said at once, not a silent wait.
    one_error(
        &["watch", &step_dir, "--timeout", "0"],
        &[&format!("ckpt watch {root}")],
    );
    // A file of a step.
    let file = format!("{root}/200/_CHECKPOINT_METADATA");
    one_error(
        &["ls", &file],
        &["is a file, not a directory", &format!("ckpt ls {root}")],
    );
    // Step directories with a prefix, listed without --step-prefix.
    let prefixed = d.path().join("prefixed");
    std::fs::create_dir(&prefixed).unwrap();
    for s in ["100", "200"] {
        std::fs::rename(Path::new(&root).join(s), prefixed.join(format!("ckpt_{s}"))).unwrap();
    }
    let prefixed = prefixed.to_str().unwrap();
    one_error(
        &["ls", prefixed],
        &["found", "ckpt_100, ckpt_200", "pass --step-prefix ckpt"],
    );
    one_error(&["verify", prefixed], &["pass --step-prefix ckpt"]);
    one_error(
        &["watch", prefixed, "--timeout", "0"],
        &["pass --step-prefix ckpt"],
    );
    one_error(
        &["rm", prefixed, "100", "--yes"],
        &["pass --step-prefix ckpt"],
    );
    let (code, out, err) = ckpt(&["ls", prefixed, "--step-prefix", "ckpt"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("200 (latest)"), "{out}");
    // Zero-padded names.
    std::fs::rename(
        Path::new(prefixed).join("ckpt_100"),
        Path::new(prefixed).join("ckpt_00100"),
    )
    .unwrap();
    std::fs::remove_dir_all(Path::new(prefixed).join("ckpt_200")).unwrap();
    one_error(
        &["ls", prefixed],
        &[
            "ckpt_00100",
            "--step-prefix ckpt and --step-format-fixed-length 5",
        ],
    );
    // A root that is really empty is no error.
    let (code, out, _) = ckpt(&["ls", &root]);
    assert_eq!(code, Some(0));
    assert!(out.contains("(no committed steps in"), "{out}");
}

/// `ckpt cp` off a terminal counts the whole job first (steps, files, bytes, as on disk), then
/// prints progress lines whose byte counts grow to that total (`--progress-every 0`: after
/// every file); steps already at the destination are not counted.
#[test]
fn cp_counts_the_whole_job_first_then_reports_progress_against_it() {
    let dir = tempfile::tempdir().unwrap();
    let src = root_with(dir.path(), "src", &[1, 2, 3], |s| s as f64);
    let dst = dir.path().join("dst");
    let step_bytes: u64 = [1, 2, 3]
        .iter()
        .map(|s| du(&Path::new(&src).join(s.to_string())))
        .sum();
    // Commit files are not copied as files (the destination's protocol commits).
    let commit_files: u64 = [1, 2, 3]
        .iter()
        .map(|s| {
            std::fs::metadata(Path::new(&src).join(format!("{s}/commit_success.txt")))
                .map(|m| m.len())
                .unwrap_or(0)
        })
        .sum();
    let total = step_bytes - commit_files;
    let (code, out, err) = ckpt(&["cp", &src, dst.to_str().unwrap(), "--progress-every", "0"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let first = out.lines().next().unwrap_or("");
    assert!(
        first.starts_with("copying 3 step(s): ") && first.contains(&format!("({total} bytes)")),
        "the plan comes first, with the whole job's bytes ({total}):\n{out}"
    );
    let progress: Vec<&str> = out.lines().filter(|l| l.starts_with("  step ")).collect();
    assert!(progress.len() >= 3, "a progress line per file:\n{out}");
    let last = progress.last().unwrap();
    assert!(
        last.contains("(100%)"),
        "the last line reaches the total: {last}\n{out}"
    );
    // A second copy skips every step and counts nothing.
    let (code, out, _) = ckpt(&["cp", &src, dst.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(out.contains("copying 0 step(s): 0 files"), "{out}");
    // A bad interval is refused before anything is copied.
    let (code, _, err) = ckpt(&[
        "cp",
        &src,
        dir.path().join("d2").to_str().unwrap(),
        "--progress-every",
        "nan",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--progress-every"), "{err}");
    assert!(!dir.path().join("d2").exists());
}

#[test]
fn bad_step_arguments_are_usage_errors_and_json_errors_name_step_and_path() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1, 2], |s| s as f64);
    for args in [
        &["show", &root, "abc"][..],
        &["show", &root, "-1"],
        &["verify", &root, "x"],
        &["rm", &root, "2x", "--yes"],
        &["export", &root, "latest", "out.safetensors"],
        &["watch", &root, "--after", "soon"],
    ] {
        let (code, out, err) = ckpt(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.contains("a step is a non-negative integer"),
            "{args:?}: {err}"
        );
    }
    // Seconds that are not a usable number: usage errors too.
    for args in [
        &["watch", &root, "--interval", "0"][..],
        &["watch", &root, "--timeout", "nan"],
        &["watch", &root, "--timeout=-1"],
    ] {
        let (code, _, err) = ckpt(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains("seconds"), "{args:?}: {err}");
    }
    // verify of a step that is not there lists the steps there are.
    let (code, _, err) = ckpt(&["verify", &root, "99"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("its steps are 1, 2"), "{err}");
    // show and rm of a step that is not there: JSON errors with the step and the root's path.
    for args in [
        &["show", "--json", &root, "7"][..],
        &["rm", "--json", &root, "7", "--yes"],
    ] {
        let (code, _, err) = ckpt(args);
        assert_eq!(code, Some(1), "{args:?}: {err}");
        let e = json_error(&err);
        assert_eq!(e["error"]["kind"], "NotFound", "{e}");
        assert_eq!(e["error"]["step"], 7, "{e}");
        assert_eq!(e["error"]["path"], root.as_str(), "{e}");
        // The message has no "(step …, path …)" tail: those have fields of their own.
        let message = e["error"]["message"].as_str().unwrap();
        assert!(!message.contains("(step 7"), "{message}");
    }
}

#[test]
fn ls_with_a_metric_no_step_has_is_an_error_naming_the_metrics() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1, 2], |s| s as f64);
    let (code, out, err) = ckpt(&["ls", &root, "--best-metric", "los"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("\"los\""), "{err}");
    assert!(err.contains("loss"), "{err}");
    let (code, out, _) = ckpt(&["ls", &root, "--best-metric", "loss", "--best-mode", "min"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("1 (best)"), "{out}");
}

#[test]
fn export_never_replaces_a_file_unless_forced() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let mut t = ckpt_manager::handlers::TensorMap::new();
    t.insert(
        "w".into(),
        ckpt_manager::handlers::Tensor::from_slice([2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap(),
    );
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap();
    m.save(
        1,
        Composite::new().tensors("params", &t),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
    // show lists each tensor with its dtype, shape and bytes.
    let (code, shown, _) = ckpt(&["show", root.to_str().unwrap(), "1"]);
    assert_eq!(code, Some(0));
    assert!(shown.contains("w: float32[2, 2] 16 bytes"), "{shown}");
    let out = d.path().join("w.safetensors");
    std::fs::write(&out, b"precious").unwrap();
    let (code, _, err) = ckpt(&["export", root.to_str().unwrap(), "1", out.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("AlreadyExists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&out).unwrap(), b"precious");
    let (code, _, err) = ckpt(&[
        "export",
        root.to_str().unwrap(),
        "1",
        out.to_str().unwrap(),
        "--force",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert_ne!(std::fs::read(&out).unwrap(), b"precious");
}

#[test]
fn a_symlinked_step_is_not_listed_and_says_why() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1], |s| s as f64);
    let other = root_with(d.path(), "other", &[5], |s| s as f64);
    std::os::unix::fs::symlink(Path::new(&other).join("5"), Path::new(&root).join("5")).unwrap();
    let (code, out, err) = ckpt(&["ls", &root]);
    assert_eq!(code, Some(0), "{err}");
    assert!(!out.lines().any(|l| l.starts_with("5 ")), "{out}");
    assert!(err.contains("WARN"), "{err}");
    assert!(err.contains("step directory 5 is a symbolic link"), "{err}");
}

/// Runs `ckpt args` with stdout a pipe whose reader is already gone (`ckpt … | head -0`):
/// every write to it fails with a broken pipe.
fn ckpt_closed_stdout(args: &[&str]) -> (Option<i32>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_or_full_stdout_never_cuts_a_command_short() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1, 2, 3, 4], |s| s as f64);
    // cp and rm do all their work (the old behaviour: exit 0 after the first line).
    let dst = d.path().join("copy");
    let (code, err) = ckpt_closed_stdout(&["cp", &root, dst.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{err}");
    let copied = CheckpointManager::builder(dst.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap()
        .all_steps();
    assert_eq!(copied, vec![1, 2, 3, 4]);
    let (code, err) = ckpt_closed_stdout(&["rm", dst.to_str().unwrap(), "1", "2", "3", "--yes"]);
    assert_eq!(code, Some(0), "{err}");
    let left = CheckpointManager::builder(dst.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap()
        .all_steps();
    assert_eq!(left, vec![4]);
    // verify's findings keep their exit status.
    let file = Path::new(&root).join("2/state/metadata");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let (code, err) = ckpt_closed_stdout(&["verify", &root]);
    assert_eq!(code, Some(3), "{err}");
    // A full device is an error, not a silent success.
    if Path::new("/dev/full").exists() {
        let full = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ckpt"))
            .args(["ls", &root])
            .stdout(full)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("cannot write the output"), "{err}");
    }
}

#[test]
fn verify_reports_an_empty_step_and_goes_on_past_a_broken_manifest() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1, 2, 3], |s| s as f64);
    // An empty directory named as a step: listed (a local root commits by rename), no items.
    std::fs::create_dir(Path::new(&root).join("9999")).unwrap();
    // Step 2's manifest is not JSON any more; step 3 has a flipped byte.
    std::fs::write(Path::new(&root).join("2/_CKPT_CHECKSUMS"), b"").unwrap();
    let file = Path::new(&root).join("3/state/metadata");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&file, &bytes).unwrap();
    let (code, out, err) = ckpt(&["verify", &root]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(out.contains("step 1: ok"), "{out}");
    assert!(out.contains("step 2: BAD"), "{out}");
    assert!(out.contains("step 3: BAD"), "{out}");
    assert!(out.contains("step 9999: BAD"), "{out}");
    assert!(out.contains("the step holds no items"), "{out}");
}

#[test]
fn cp_leaves_nothing_for_a_missing_step_and_refuses_unparsable_step_metadata() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with(d.path(), "root", &[1, 2], |s| s as f64);
    let dst = d.path().join("dst");
    let (code, _, err) = ckpt(&["cp", &root, dst.to_str().unwrap(), "--step", "999"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("NotFound"), "{err}");
    assert!(!dst.exists(), "a failed copy created the destination");
    std::fs::write(Path::new(&root).join("2/_CHECKPOINT_METADATA"), b"garbage").unwrap();
    let (code, _, err) = ckpt(&["cp", &root, dst.to_str().unwrap(), "--step", "2"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("step 2 is not copied"), "{err}");
    let (code, _, err) = ckpt(&["cp", &root, dst.to_str().unwrap(), "--step", "1"]);
    assert_eq!(code, Some(0), "{err}");
}
