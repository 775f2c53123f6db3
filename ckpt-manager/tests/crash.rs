//! Crash consistency (issue 4, "What it must show" 1): a child process saves checkpoints in a
//! loop (asynchronous saves, several items, retention on) and is killed with SIGKILL at random
//! moments, again and again in the same root; after every kill a fresh manager (with
//! `cleanup_tmp_directories`) must find
//!
//! - only steps that restore completely, each holding exactly what the writer derives from its
//!   step number, with a checksum manifest and no bad file (`ckpt_manager::verify_step`);
//! - the latest step the child reported as committed, unless retention legitimately deleted it
//!   (`max_to_keep` 3: only once three newer steps are listed), and every `keep_period` step ever
//!   listed;
//! - no `*.orbax-checkpoint-tmp` entry left in the root;
//! - foreign entries in the root (`notes/`, `300.bak/`, `handpicked`, a symbolic link to a
//!   directory outside) and everything outside the root unchanged.
//!
//! The writer is `examples/crash_writer.rs`, included here as a module. The child process is this
//! test binary itself, running the ignored test `crash_writer_child` with the root in
//! `CKPT_CRASH_WRITER_ROOT`: no `cargo build` of the example from inside the test (which would
//! wait on cargo's lock, and could rebuild the crate under different features or profile), the
//! same code, features and profile as the test, and no start-up cost beyond `exec`.
//!
//! `cargo test -p ckpt-manager --test crash` runs 100 kills; `CKPT_CRASH_ITERATIONS=N` changes the
//! number, `CKPT_CRASH_SEED` the seed of the kill delays (uniform 5–150 ms after the child is
//! started), and `CKPT_CRASH_SUMMARY=FILE` writes the summary as JSON (`cargo xtask crash` runs
//! this test with 2,000 iterations and reads it).
//!
//! Longer than ~600 lines on purpose: one experiment (the kill loop, its checks of every
//! recovered root and its summary) whose parts only make sense together.
#![cfg(all(feature = "latest", feature = "interval"))]

#[allow(dead_code)] // its `main` is the example's, unused here
#[path = "../examples/crash_writer.rs"]
mod crash_writer;

use ckpt_manager::core::TMP_DIR_SUFFIX;
use ckpt_manager::handlers::RestoredItem;
use ckpt_manager::{CheckpointManager, Step};
use crash_writer::{KEEP_PERIOD, MAX_TO_KEEP};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "CKPT_CRASH_WRITER_ROOT";
const CHILD_TEST: &str = "crash_writer_child";
const DEFAULT_ITERATIONS: u64 = 100;
const DEFAULT_SEED: u64 = 0xC4A5_4E57;
/// Kill delays, in ms after the child is spawned.
const DELAY_MS: (u64, u64) = (5, 150);

/// The crash writer, run as a child process by `crash_kill_loop` (does nothing without
/// `CKPT_CRASH_WRITER_ROOT`).
#[test]
#[ignore = "the crash writer; crash_kill_loop runs it in a child process"]
fn crash_writer_child() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let max_steps = std::env::var("CKPT_CRASH_WRITER_MAX_STEPS")
        .ok()
        .and_then(|n| n.parse().ok());
    if let Err(e) = crash_writer::run(&root, max_steps) {
        eprintln!("crash_writer: {e}");
        std::process::exit(1);
    }
}

#[test]
fn crash_kill_loop() {
    let iterations = env_u64("CKPT_CRASH_ITERATIONS").unwrap_or(DEFAULT_ITERATIONS);
    let seed = env_u64("CKPT_CRASH_SEED").unwrap_or(DEFAULT_SEED);
    let summary = run_crash_loop(iterations, seed).unwrap_or_else(|e| panic!("{e}"));
    println!("{}", summary.line());
    if let Ok(path) = std::env::var("CKPT_CRASH_SUMMARY") {
        std::fs::write(&path, summary.json().to_string())
            .unwrap_or_else(|e| panic!("cannot write the summary to {path}: {e}"));
    }
    assert_eq!(
        summary.kills, iterations,
        "every iteration kills the writer"
    );
    assert!(
        summary.final_latest.is_some(),
        "the writer never committed a step in {iterations} runs: {}",
        summary.line()
    );
}

/// A clean run of the writer (no kill) commits and reports every step, and a fresh manager
/// restores them; so the crash test's expectations match what the writer really writes.
#[test]
fn writer_runs_to_completion() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("root");
    let root_str = root.to_str().expect("utf-8 temp path");
    let out = Command::new(this_exe().expect("this test binary"))
        .args(child_args())
        .env(CHILD_ENV, root_str)
        .env("CKPT_CRASH_WRITER_MAX_STEPS", "7")
        .output()
        .expect("run the writer");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "writer failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let events = parse_events(&stdout).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    assert_eq!(events.open, Some(None));
    assert_eq!(events.committed, (1..=7).collect::<Vec<_>>());
    let mngr = crash_writer::manager_builder(root_str)
        .build()
        .expect("open");
    // max_to_keep 3: 5, 6, 7 (no step of 1..=7 is a multiple of keep_period).
    assert_eq!(mngr.all_steps(), vec![5, 6, 7]);
    for step in mngr.all_steps() {
        check_step(&mngr, step).unwrap_or_else(|e| panic!("{e}"));
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}")),
    )
}

fn child_args() -> [&'static str; 6] {
    [
        CHILD_TEST,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
        "--quiet",
    ]
}

/// SplitMix64, for the kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        crash_writer::mix(self.0.wrapping_sub(0x9E37_79B9_7F4A_7C15))
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[derive(Debug, Default)]
struct Summary {
    iterations: u64,
    seed: u64,
    kills: u64,
    /// Kills after which a tmp directory was found (a save, or a cleanup, was cut short).
    kills_leaving_tmp: u64,
    /// Kills before the writer had opened the root (no `OPEN` line).
    kills_before_open: u64,
    /// Steps the writers reported committed.
    steps_reported: u64,
    /// Listed steps restored, compared and verified, summed over all iterations.
    steps_verified: u64,
    final_latest: Option<Step>,
    final_listed: usize,
    wall: Duration,
}

impl Summary {
    fn line(&self) -> String {
        format!(
            "crash summary: {} iterations (seed {:#x}), {} kills ({} left a tmp dir, {} before the root was open), \
             {} steps reported committed, {} steps verified, latest step {}, {} steps listed at the end, wall time {:.1} s",
            self.iterations,
            self.seed,
            self.kills,
            self.kills_leaving_tmp,
            self.kills_before_open,
            self.steps_reported,
            self.steps_verified,
            self.final_latest.map_or_else(|| "none".to_string(), |s| s.to_string()),
            self.final_listed,
            self.wall.as_secs_f64()
        )
    }

    fn json(&self) -> Value {
        json!({
            "iterations": self.iterations,
            "seed": self.seed,
            "kills": self.kills,
            "kills_leaving_tmp": self.kills_leaving_tmp,
            "kills_before_open": self.kills_before_open,
            "steps_reported": self.steps_reported,
            "steps_verified": self.steps_verified,
            "final_latest": self.final_latest,
            "final_listed": self.final_listed,
            "wall_secs": self.wall.as_secs_f64(),
        })
    }
}

/// What one writer process printed.
#[derive(Debug, Default)]
struct Events {
    /// `Some(latest)` once `OPEN` was printed.
    open: Option<Option<Step>>,
    committed: Vec<Step>,
}

fn parse_events(stdout: &str) -> Result<Events, String> {
    let mut ev = Events::default();
    // The last line may be cut short by the kill; libtest's own lines are ignored.
    let complete = match stdout.rfind('\n') {
        Some(i) => &stdout[..i],
        None => "",
    };
    for line in complete.lines() {
        if let Some(rest) = line.strip_prefix("OPEN ") {
            if ev.open.is_some() {
                return Err("OPEN printed twice".into());
            }
            ev.open = Some(match rest {
                "none" => None,
                s => Some(s.parse().map_err(|_| format!("bad OPEN line {line:?}"))?),
            });
        } else if let Some(rest) = line.strip_prefix("COMMITTED ") {
            let step: Step = rest
                .parse()
                .map_err(|_| format!("bad COMMITTED line {line:?}"))?;
            if ev.open.is_none() {
                return Err(format!("{line:?} before OPEN"));
            }
            if ev.committed.last().is_some_and(|&l| step <= l) {
                return Err(format!("COMMITTED steps out of order: {line:?}"));
            }
            ev.committed.push(step);
        }
    }
    Ok(ev)
}

/// One snapshot entry: a directory, a file with its contents, or a symbolic link with its target.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File(Vec<u8>),
    Link(PathBuf),
}

/// Everything below `dir` (not following links), except the subtree `skip`.
fn snapshot(dir: &Path, skip: Option<&Path>) -> Result<BTreeMap<PathBuf, Node>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).map_err(|e| format!("cannot list {}: {e}", d.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", d.display()))?;
            let path = entry.path();
            if Some(path.as_path()) == skip {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path)
                .map_err(|e| format!("cannot stat {}: {e}", path.display()))?;
            let node = if meta.file_type().is_symlink() {
                Node::Link(
                    std::fs::read_link(&path)
                        .map_err(|e| format!("cannot read link {}: {e}", path.display()))?,
                )
            } else if meta.is_dir() {
                stack.push(path.clone());
                Node::Dir
            } else {
                Node::File(
                    std::fs::read(&path)
                        .map_err(|e| format!("cannot read {}: {e}", path.display()))?,
                )
            };
            out.insert(path, node);
        }
    }
    Ok(out)
}

/// The test's directory layout: `base/root` is the checkpoint root, with foreign entries in it;
/// `base/outside/` and `base/sibling.txt` are outside it.
struct Layout {
    base: tempfile::TempDir,
    root: PathBuf,
    foreign: Vec<PathBuf>,
}

impl Layout {
    fn new() -> Result<Layout, String> {
        let base = tempfile::tempdir().map_err(|e| format!("cannot create a temp dir: {e}"))?;
        let root = base.path().join("root");
        let outside = base.path().join("outside");
        let w = |p: &Path, data: &[u8]| {
            if let Some(parent) = p.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
            }
            std::fs::write(p, data).map_err(|e| format!("cannot write {}: {e}", p.display()))
        };
        w(&outside.join("a.txt"), b"outside the root")?;
        w(&outside.join("sub/b.bin"), &[7u8; 1000])?;
        w(&base.path().join("sibling.txt"), b"beside the root")?;
        w(&root.join("notes/readme.txt"), b"not a step")?;
        w(&root.join("300.bak/data"), b"not a step either")?;
        w(&root.join("handpicked"), b"a file")?;
        let link = root.join("escape");
        std::os::unix::fs::symlink(&outside, &link)
            .map_err(|e| format!("cannot create the link {}: {e}", link.display()))?;
        let foreign = ["notes", "300.bak", "handpicked", "escape"]
            .iter()
            .map(|n| root.join(n))
            .collect();
        Ok(Layout {
            base,
            root,
            foreign,
        })
    }

    /// Everything outside the root, plus the foreign entries inside it.
    fn untouchable(&self) -> Result<BTreeMap<PathBuf, Node>, String> {
        let mut all = snapshot(self.base.path(), Some(&self.root))?;
        for f in &self.foreign {
            let meta = std::fs::symlink_metadata(f)
                .map_err(|e| format!("foreign entry {} is gone: {e}", f.display()))?;
            if meta.is_dir() {
                all.insert(f.clone(), Node::Dir);
                all.extend(snapshot(f, None)?);
            } else if meta.file_type().is_symlink() {
                all.insert(
                    f.clone(),
                    Node::Link(std::fs::read_link(f).map_err(|e| e.to_string())?),
                );
            } else {
                all.insert(
                    f.clone(),
                    Node::File(std::fs::read(f).map_err(|e| e.to_string())?),
                );
            }
        }
        Ok(all)
    }

    fn tmp_entries(&self) -> Result<Vec<String>, String> {
        let entries = std::fs::read_dir(&self.root)
            .map_err(|e| format!("cannot list {}: {e}", self.root.display()))?;
        let mut tmp = Vec::new();
        for e in entries {
            let e = e.map_err(|e| e.to_string())?;
            let name = e.file_name().to_string_lossy().into_owned();
            if name.contains(TMP_DIR_SUFFIX) {
                tmp.push(name);
            }
        }
        Ok(tmp)
    }
}

/// Collects a child's pipe on a thread.
fn collect(mut pipe: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = BufReader::new(&mut pipe).read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// This test binary, to run as the writer. `/proc/self/exe` where there is one: it stays valid
/// when cargo replaces the file on disk while the loop runs (another build of the workspace
/// rebuilding this test), which the path from `current_exe` does not.
fn this_exe() -> Result<PathBuf, String> {
    let proc_exe = Path::new("/proc/self/exe");
    if proc_exe.exists() {
        return Ok(proc_exe.to_path_buf());
    }
    std::env::current_exe().map_err(|e| format!("current_exe: {e}"))
}

fn spawn_writer(root: &str) -> Result<Child, String> {
    Command::new(this_exe()?)
        .args(child_args())
        .env(CHILD_ENV, root)
        .env_remove("CKPT_CRASH_WRITER_MAX_STEPS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the writer: {e}"))
}

/// Restores `step` and checks that it holds exactly what the writer derives from the step
/// number, and that its files match its checksum manifest.
fn check_step(mngr: &CheckpointManager, step: Step) -> Result<(), String> {
    let restored = mngr
        .restore(Some(step))
        .map_err(|e| format!("listed step {step} does not restore: {e}"))?;
    let names = restored.names();
    if names != ["blob", "metrics", "params", "state"] {
        return Err(format!("step {step} holds items {names:?}"));
    }
    let params = restored.tensors("params").map_err(|e| e.to_string())?;
    if *params != crash_writer::params(step) {
        return Err(format!(
            "step {step}: item params differs from what was saved"
        ));
    }
    let state = restored.json_value("state").map_err(|e| e.to_string())?;
    if *state != crash_writer::state(step) {
        return Err(format!("step {step}: item state is {state}"));
    }
    let blob = restored.bytes("blob").map_err(|e| e.to_string())?;
    if blob != crash_writer::blob(step).as_slice() {
        return Err(format!(
            "step {step}: item blob differs from what was saved"
        ));
    }
    let want_metrics = crash_writer::metrics(step);
    match restored.get("metrics") {
        Some(RestoredItem::Json(Value::Object(m))) if *m == want_metrics => {}
        other => return Err(format!("step {step}: metrics item is {other:?}")),
    }
    match mngr.metrics(step) {
        Ok(Some(m)) if m == want_metrics => {}
        other => return Err(format!("step {step}: metrics(step) is {other:?}")),
    }
    let dir = mngr.step_dir_name(step);
    let report = ckpt_manager::verify_step(mngr.store().as_ref(), &dir)
        .map_err(|e| format!("step {step}: verify_step fails: {e}"))?;
    if !report.has_checksums {
        return Err(format!("step {step} has no checksum manifest"));
    }
    if !report.is_ok() {
        return Err(format!("step {step} has bad files:\n{report}"));
    }
    Ok(())
}

/// Runs `iterations` kill-and-check rounds in one fresh root. On a failure the temp directory is
/// kept for inspection and its path is part of the error.
fn run_crash_loop(iterations: u64, seed: u64) -> Result<Summary, String> {
    let layout = Layout::new()?;
    match crash_rounds(&layout, iterations, seed) {
        Ok(s) => Ok(s),
        Err(e) => {
            let kept = layout.base.keep();
            Err(format!("{e}\n(the root is kept in {})", kept.display()))
        }
    }
}

fn crash_rounds(layout: &Layout, iterations: u64, seed: u64) -> Result<Summary, String> {
    let started = Instant::now();
    let root = layout
        .root
        .to_str()
        .ok_or("the temp dir path is not UTF-8")?
        .to_string();
    let untouchable = layout.untouchable()?;
    let mut rng = Rng(seed);
    let mut summary = Summary {
        iterations,
        seed,
        ..Summary::default()
    };
    // The latest step any writer reported as committed.
    let mut latest_reported: Option<Step> = None;
    // The latest step listed by the previous check (what the next writer must find on open).
    let mut listed_latest: Option<Step> = None;
    // Every keep_period step ever listed: each must stay listed for ever.
    let mut period_steps: BTreeSet<Step> = BTreeSet::new();

    for it in 0..iterations {
        let delay = rng.range(DELAY_MS.0, DELAY_MS.1);
        let mut child = spawn_writer(&root)?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err("the writer has no stdout or stderr pipe".into());
        };
        let (out, err) = (collect(stdout), collect(stderr));
        std::thread::sleep(Duration::from_millis(delay));
        let early = child
            .try_wait()
            .map_err(|e| format!("cannot poll the writer: {e}"))?;
        if early.is_none() {
            child
                .kill()
                .map_err(|e| format!("cannot kill the writer: {e}"))?;
        }
        let status = child
            .wait()
            .map_err(|e| format!("cannot wait for the writer: {e}"))?;
        let stdout = out.join().map_err(|_| "stdout reader panicked")?;
        let stderr = err.join().map_err(|_| "stderr reader panicked")?;
        let ctx = |msg: String| {
            format!(
                "iteration {it} (seed {seed:#x}, killed after {delay} ms, {status}): {msg}\n\
                 --- writer stdout ---\n{stdout}\n--- writer stderr ---\n{stderr}"
            )
        };
        if let Some(s) = early {
            return Err(ctx(format!("the writer exited by itself with {s}")));
        }
        summary.kills += 1;
        let events = parse_events(&stdout).map_err(ctx)?;
        match events.open {
            None => summary.kills_before_open += 1,
            Some(open) => {
                if open != listed_latest {
                    return Err(ctx(format!(
                        "the writer opened the root at latest step {open:?}, the check before it listed {listed_latest:?}"
                    )));
                }
            }
        }
        if let (Some(&first), Some(prev)) = (events.committed.first(), listed_latest) {
            if first <= prev {
                return Err(ctx(format!(
                    "the writer committed step {first}, not after the latest step {prev}"
                )));
            }
        }
        summary.steps_reported += events.committed.len() as u64;
        if let Some(&last) = events.committed.last() {
            latest_reported = Some(last);
        }

        // A fresh manager, as a restarted job would open the root.
        if !layout.tmp_entries().map_err(ctx)?.is_empty() {
            summary.kills_leaving_tmp += 1;
        }
        let mngr = crash_writer::manager_builder(&root)
            .build()
            .map_err(|e| ctx(format!("a fresh manager cannot open the root: {e}")))?;
        let tmp = layout.tmp_entries().map_err(ctx)?;
        if !tmp.is_empty() {
            return Err(ctx(format!("tmp entries remain after cleanup: {tmp:?}")));
        }
        let listed = mngr.all_steps();
        for &step in &listed {
            check_step(&mngr, step).map_err(ctx)?;
            summary.steps_verified += 1;
        }
        match mngr.restore(None) {
            Ok(r) if Some(r.step()) == listed.last().copied() => {}
            Ok(r) => {
                return Err(ctx(format!(
                    "restore(None) gave step {}, latest listed is {:?}",
                    r.step(),
                    listed.last()
                )))
            }
            Err(_) if listed.is_empty() => {}
            Err(e) => return Err(ctx(format!("restore(None) fails: {e}"))),
        }
        if let Some(s) = latest_reported {
            let newer = listed.iter().filter(|&&x| x > s).count() as u64;
            let may_be_gone = !s.is_multiple_of(KEEP_PERIOD) && newer >= MAX_TO_KEEP;
            if !listed.contains(&s) && !may_be_gone {
                return Err(ctx(format!(
                    "step {s}, reported committed, is not listed (listed: {listed:?})"
                )));
            }
        }
        for &p in &period_steps {
            if !listed.contains(&p) {
                return Err(ctx(format!(
                    "keep_period step {p} was listed before and is gone (listed: {listed:?})"
                )));
            }
        }
        period_steps.extend(listed.iter().filter(|&&s| s.is_multiple_of(KEEP_PERIOD)));
        let now = layout.untouchable().map_err(ctx)?;
        if now != untouchable {
            let changed: Vec<String> = untouchable
                .keys()
                .chain(now.keys())
                .collect::<BTreeSet<_>>()
                .into_iter()
                .filter(|k| untouchable.get(*k) != now.get(*k))
                .map(|k| k.display().to_string())
                .collect();
            return Err(ctx(format!(
                "entries outside the root or foreign to it changed: {changed:?}"
            )));
        }
        listed_latest = listed.last().copied();
        summary.final_listed = listed.len();
        drop(mngr);
    }
    summary.final_latest = listed_latest;
    summary.wall = started.elapsed();
    Ok(summary)
}

#[test]
fn events_are_parsed_strictly() {
    let ev = parse_events("\nrunning 1 test\nOPEN 4\nCOMMITTED 5\nCOMMITTED 6\nCOMMI").unwrap();
    assert_eq!(ev.open, Some(Some(4)));
    assert_eq!(ev.committed, vec![5, 6]);
    assert!(
        parse_events("COMMITTED 5\n").is_err(),
        "COMMITTED before OPEN"
    );
    assert!(parse_events("OPEN none\nCOMMITTED 5\nCOMMITTED 5\n").is_err());
    assert!(parse_events("OPEN 1\nOPEN 2\n").is_err());
    assert_eq!(parse_events("OPEN none").unwrap().open, None, "cut short");
}

/// A JSON item's floats restore bit for bit (found by the crash test, whose writer first stored
/// `1 / (step + 3)`: step 8 came back as 0.09090909090909093 instead of 0.09090909090909091).
///
/// The writer side is right (`python_float_repr` gives the shortest digits that round-trip); the
/// reader is not: `ckpt_core::pyjson::from_slice` parses with `serde_json::from_str`, and
/// serde_json without its `float_roundtrip` feature parses numbers of 16–17 significant digits
/// only approximately (up to 1 ULP off). Fix: enable `float_roundtrip` on the workspace's
/// serde_json dependency (Cargo.toml).
#[test]
fn json_floats_restore_bit_exactly() {
    let floats: Vec<f64> = (1..200u32)
        .map(|k| 1.0 / f64::from(k))
        .chain([0.1 + 0.2, std::f64::consts::PI, 1e-300 / 3.0, 2.0f64.sqrt()])
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_str().expect("utf-8 temp path");
    let mut mngr = CheckpointManager::builder(root)
        .enable_async_checkpointing(false)
        .build()
        .expect("open");
    let value = json!({ "floats": floats });
    mngr.save(
        1,
        ckpt_manager::Composite::new().json_value("state", value),
        ckpt_manager::SaveOptions::default(),
    )
    .expect("save");
    let restored = mngr.restore(Some(1)).expect("restore");
    let back = restored.json_value("state").expect("state")["floats"].clone();
    let back: Vec<f64> = serde_json::from_value(back).expect("floats");
    let wrong: Vec<String> = floats
        .iter()
        .zip(&back)
        .filter(|(a, b)| a.to_bits() != b.to_bits())
        .map(|(a, b)| format!("{a:?} came back as {b:?}"))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} floats differ: {wrong:#?}",
        wrong.len(),
        floats.len()
    );
}
