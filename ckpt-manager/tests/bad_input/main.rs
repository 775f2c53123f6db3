//! Issue 4, "What it must show" 3: a corpus of broken roots and bad arguments.
//!
//! Every case builds its broken root in code, inside a fresh temp dir (so the case documents
//! itself), and asserts the precise outcome: an error of the right [`ErrorKind`] whose text names
//! what was wrong and where (file, step, item), or "ignored as the spec says" (spec §1.2: a name
//! that does not parse is not a step and is never touched; §1.5: broken step metadata is treated
//! as no metadata when listing). Nothing may panic, and nothing outside the root may be read,
//! written or deleted: every case runs in a [`Sandbox`] whose root has siblings (a sentinel
//! directory `outside/` holding the targets of the symlinks the cases plant in the root, a
//! `root_sibling/`, and a `root.orbax-checkpoint-tmp/` named like the root's tmp dir). Their
//! contents and their mtime, ctime and atime are recorded before the case and compared after it
//! (atimes are set an hour in the past first, so under `relatime` any read of a file or listing
//! of a directory out there shows up; [`sandbox_detects_reads_writes_and_deletes`] checks that the
//! file system really does report them).
//!
//! Cases marked `#[ignore = "bug: ..."]` assert the behaviour the docs, the spec or issue 4 ask for
//! and fail today; each says why in its doc comment.
// These tests run the `ckpt` binary, which needs the `cli` feature.
#![cfg(feature = "cli")]

use ckpt_manager::core::{ErrorKind, Result, Step};
use ckpt_manager::handlers::{Tensor, TensorMap, ORBAX_JSON_HANDLER, ORBAX_TENSORSTORE_HANDLERS};
use ckpt_manager::policy::LatestN;
use ckpt_manager::storage::AtomicityMode;
use ckpt_manager::{
    BestMode, CheckpointManager, CheckpointManagerBuilder, Composite, Error, SaveOptions,
};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::fs::{self, File, FileTimes};
use std::os::unix::fs::{symlink, MetadataExt};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

// ===================================================================================== sandbox

/// One entry of a directory tree, as read (never following symlinks).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
    Link(PathBuf),
}

/// Reads every entry below `dir` (not `dir` itself), skipping `skip` and what is below it.
fn read_tree(dir: &Path, skip: Option<&Path>, out: &mut BTreeMap<PathBuf, Node>) {
    let mut paths: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for p in paths {
        if Some(p.as_path()) == skip {
            continue;
        }
        let m = fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            out.insert(p.clone(), Node::Link(fs::read_link(&p).unwrap()));
        } else if m.is_dir() {
            out.insert(p.clone(), Node::Dir);
            read_tree(&p, skip, out);
        } else {
            out.insert(p.clone(), Node::File(fs::read(&p).unwrap()));
        }
    }
}

/// What `lstat` says of a path: enough to see a read (atime), a write (mtime) or any other
/// change (ctime, inode, link count).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    atime: (i64, i64),
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
    nlink: u64,
}

fn stamp(p: &Path) -> Option<Stamp> {
    fs::symlink_metadata(p).ok().map(|m| Stamp {
        atime: (m.atime(), m.atime_nsec()),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        nlink: m.nlink(),
    })
}

/// A temp dir holding the root (`base/root` unless a case says otherwise) and, next to it, things
/// no manager may touch:
///
/// ```text
/// base/outside/victim.txt               a plain file
/// base/outside/file.json                valid step metadata, custom_metadata {"from": "outside"}
/// base/outside/stepdir/                 a complete committed step (item "state", loss -1000)
/// base/outside/metrics_dir/metrics      {"loss": -1000.0}
/// base/outside/metadir/                 empty (target of a `metadata` symlink)
/// base/outside/trash/                   empty (target of a `todelete_subdir` symlink)
/// base/outside/nested/deeper/file.txt
/// base/root_sibling/keep.txt            a sibling whose name starts like the root's
/// base/root.orbax-checkpoint-tmp/keep.txt   a sibling named like the root's own tmp dir
/// ```
struct Sandbox {
    _tmp: tempfile::TempDir,
    base: PathBuf,
    root: PathBuf,
    outside: PathBuf,
    /// The first component of the root below `base`: excluded from the snapshot.
    skip: PathBuf,
    tree: BTreeMap<PathBuf, Node>,
    stamps: BTreeMap<PathBuf, Stamp>,
}

const OUTSIDE_LOSS: f64 = -1000.0;

impl Sandbox {
    fn new(root_rel: &str) -> Sandbox {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let outside = base.join("outside");
        fs::create_dir_all(outside.join("nested/deeper")).unwrap();
        fs::write(
            outside.join("victim.txt"),
            b"outside the root: never touched",
        )
        .unwrap();
        fs::write(
            outside.join("file.json"),
            step_metadata_json(&["state"], r#"{"from": "outside"}"#),
        )
        .unwrap();
        fake_step(&outside.join("stepdir"), &json!({"from": "outside"}));
        fs::create_dir_all(outside.join("metrics_dir")).unwrap();
        fs::write(
            outside.join("metrics_dir/metrics"),
            format!("{{\"loss\": {OUTSIDE_LOSS:?}}}"),
        )
        .unwrap();
        fs::create_dir_all(outside.join("metadir")).unwrap();
        fs::create_dir_all(outside.join("trash")).unwrap();
        fs::write(outside.join("nested/deeper/file.txt"), b"deep").unwrap();
        fs::create_dir_all(base.join("root_sibling")).unwrap();
        fs::write(base.join("root_sibling/keep.txt"), b"sibling").unwrap();
        fs::create_dir_all(base.join("root.orbax-checkpoint-tmp")).unwrap();
        fs::write(
            base.join("root.orbax-checkpoint-tmp/keep.txt"),
            b"named like the root's tmp",
        )
        .unwrap();

        let root = base.join(root_rel);
        let first = Path::new(root_rel).components().next().unwrap();
        let skip = base.join(first);
        let mut tree = BTreeMap::new();
        read_tree(&base, Some(&skip), &mut tree);
        // Age every file and directory: atime an hour ago (so that under relatime the next read
        // updates it), mtime two hours ago.
        let now = SystemTime::now();
        let times = FileTimes::new()
            .set_accessed(now - Duration::from_secs(3600))
            .set_modified(now - Duration::from_secs(7200));
        for (p, n) in &tree {
            if !matches!(n, Node::Link(_)) {
                File::open(p).unwrap().set_times(times).unwrap();
            }
        }
        let stamps = tree
            .keys()
            .map(|p| (p.clone(), stamp(p).unwrap()))
            .collect();
        Sandbox {
            _tmp: tmp,
            base,
            root,
            outside,
            skip,
            tree,
            stamps,
        }
    }

    fn root_str(&self) -> &str {
        self.root.to_str().unwrap()
    }

    /// What changed outside the root since the sandbox was made.
    fn outside_changes(&self) -> Vec<String> {
        let mut problems = Vec::new();
        // Stamps first: reading a file to compare it would itself update its atime.
        for (p, before) in &self.stamps {
            match stamp(p) {
                None => problems.push(format!("{} was deleted", p.display())),
                Some(now) => {
                    if now.atime != before.atime {
                        problems.push(format!("{} was read (atime changed)", p.display()));
                    }
                    if now.mtime != before.mtime {
                        problems.push(format!("{} was written (mtime changed)", p.display()));
                    }
                    if (now.ctime, now.ino, now.nlink) != (before.ctime, before.ino, before.nlink) {
                        problems.push(format!("{} was changed (ctime/inode/links)", p.display()));
                    }
                }
            }
        }
        let mut tree = BTreeMap::new();
        read_tree(&self.base, Some(&self.skip), &mut tree);
        for (p, n) in &tree {
            match self.tree.get(p) {
                None => problems.push(format!("{} was created", p.display())),
                Some(b) if b != n => problems.push(format!("{} has new content", p.display())),
                Some(_) => {}
            }
        }
        problems
    }
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else {
        "(non-string panic)".to_string()
    }
}

/// Runs one case in a fresh sandbox whose root is `base/<root_rel>`: the body's assertions, no
/// panic (caught and reported with the case name), and nothing outside the root touched.
fn case_at(name: &str, root_rel: &str, body: impl FnOnce(&Sandbox)) {
    let sb = Sandbox::new(root_rel);
    let result = catch_unwind(AssertUnwindSafe(|| body(&sb)));
    let outside = sb.outside_changes();
    let mut problems = Vec::new();
    if let Err(p) = result {
        problems.push(panic_text(p.as_ref()));
    }
    if !outside.is_empty() {
        problems.push(format!("touched outside the root: {}", outside.join("; ")));
    }
    assert!(
        problems.is_empty(),
        "case {name:?}: {}",
        problems.join(" | ")
    );
}

fn case(name: &str, body: impl FnOnce(&Sandbox)) {
    case_at(name, "root", body);
}

/// Runs one case per row (each in its own sandbox) and fails naming every row that failed.
fn table<T>(rows: &[(&str, T)], body: impl Fn(&Sandbox, &T)) {
    let mut failures = Vec::new();
    for (name, row) in rows {
        let r = catch_unwind(AssertUnwindSafe(|| case(name, |sb| body(sb, row))));
        if let Err(p) = r {
            failures.push(panic_text(p.as_ref()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// Every entry of a tree with its mtime (seconds, nanoseconds).
type TreeMtimes = BTreeMap<PathBuf, (Node, Option<(i64, i64)>)>;

/// The tree below `dir` with every entry's mtime, and `dir`'s own mtime: "nothing written".
fn tree_with_mtimes(dir: &Path) -> TreeMtimes {
    let mut out = BTreeMap::new();
    out.insert(dir.to_path_buf(), (Node::Dir, stamp(dir).map(|s| s.mtime)));
    if !dir.exists() {
        return out;
    }
    let mut tree = BTreeMap::new();
    read_tree(dir, None, &mut tree);
    for (p, n) in tree {
        let m = stamp(&p).map(|s| s.mtime);
        out.insert(p, (n, m));
    }
    out
}

#[track_caller]
fn assert_unchanged(before: &TreeMtimes, dir: &Path, what: &str) {
    let after = tree_with_mtimes(dir);
    if &after != before {
        let mut diff = Vec::new();
        for (p, n) in &after {
            if before.get(p) != Some(n) {
                diff.push(format!("changed/created {}", p.display()));
            }
        }
        for p in before.keys() {
            if !after.contains_key(p) {
                diff.push(format!("deleted {}", p.display()));
            }
        }
        panic!("{what}: the root changed: {}", diff.join("; "));
    }
}

// ===================================================================================== helpers

/// The error of `r`, which must be of `kind` and whose text (`Kind: message (step N, path P):
/// cause`) must contain every needle.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(r: Result<T>, kind: ErrorKind, needles: &[&str]) -> Error {
    let e = match r {
        Ok(v) => {
            let mut v = format!("{v:?}");
            v.truncate(300);
            panic!("expected a {kind:?} error naming {needles:?}, got Ok({v}…)")
        }
        Err(e) => e,
    };
    // What a person is shown: the error and its causes (the file's reason is often a cause).
    let text = e.chain().to_string();
    assert_eq!(e.kind(), kind, "wrong kind of error: {text}");
    for n in needles {
        assert!(text.contains(n), "error {text:?} should name {n:?}");
    }
    e
}

/// Step metadata as ckpt and Orbax write it, with a JSON handler for each of `items`.
fn step_metadata_json(items: &[&str], custom: &str) -> String {
    let handlers: Vec<String> = items
        .iter()
        .map(|i| format!("\"{i}\": \"{ORBAX_JSON_HANDLER}\""))
        .collect();
    format!(
        "{{\"item_handlers\": {{{}}}, \"metrics\": {{}}, \"performance_metrics\": {{}}, \
         \"init_timestamp_nsecs\": 1700000000000000000, \"commit_timestamp_nsecs\": 1700000001000000000, \
         \"custom_metadata\": {custom}}}",
        handlers.join(", ")
    )
}

/// A complete committed step directory written by hand: JSON item `state` holding `value`,
/// metrics `{"loss": -1000.0}`, commit files. Anything that mistook it for a step would list it
/// (and rank it best under `min`).
fn fake_step(dir: &Path, value: &Value) {
    fs::create_dir_all(dir.join("state")).unwrap();
    fs::create_dir_all(dir.join("metrics")).unwrap();
    fs::write(
        dir.join("_CHECKPOINT_METADATA"),
        step_metadata_json(&["state", "metrics"], "{}"),
    )
    .unwrap();
    fs::write(
        dir.join("commit_success.txt"),
        format!("Checkpoint commit was successful to {}", dir.display()),
    )
    .unwrap();
    fs::write(dir.join("state/metadata"), value.to_string()).unwrap();
    fs::write(dir.join("state/commit_success.txt"), "ok").unwrap();
    fs::write(
        dir.join("metrics/metrics"),
        format!("{{\"loss\": {OUTSIDE_LOSS:?}}}"),
    )
    .unwrap();
    fs::write(dir.join("metrics/commit_success.txt"), "ok").unwrap();
}

/// A writing manager with synchronous saves (deterministic: errors come back from `save`).
fn writer(root: &Path) -> CheckpointManagerBuilder {
    CheckpointManager::builder(root.to_str().unwrap()).enable_async_checkpointing(false)
}

fn reader(root: &Path) -> Result<CheckpointManager> {
    CheckpointManager::builder(root.to_str().unwrap())
        .read_only(true)
        .build()
}

fn loss(v: f64) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("loss".into(), Value::from(v));
    m
}

/// Saves `step` with item `state` = `{"step": step}` and metrics `{"loss": step / 10}`.
fn save_step(m: &mut CheckpointManager, step: Step) {
    let saved = m
        .save(
            step,
            Composite::new().json_value("state", json!({ "step": step })),
            SaveOptions::default().metrics(loss(step as f64 / 10.0)),
        )
        .unwrap();
    assert!(saved, "step {step} was not saved");
    m.wait_until_finished().unwrap();
}

/// A root holding committed steps `steps`, written by ckpt.
fn good_root(root: &Path, steps: &[Step]) {
    let mut m = writer(root).build().unwrap();
    for s in steps {
        save_step(&mut m, *s);
    }
    m.close().unwrap();
}

fn mtime_nanos(p: &Path) -> i64 {
    let m = fs::symlink_metadata(p).unwrap();
    m.mtime() * 1_000_000_000 + m.mtime_nsec()
}

/// Removes a step's checksum manifest, as if it had been written by Orbax (which has none).
fn drop_checksums(step_dir: &Path) {
    fs::remove_file(step_dir.join(ckpt_manager::storage::MANIFEST_FILE)).unwrap();
}

/// A valid committed step that ckpt would write, for the metadata tests: `{"state": ...}`,
/// metrics `{"loss": 0.5}`.
fn root_with_step_1(sb: &Sandbox) -> PathBuf {
    let mut m = writer(&sb.root).build().unwrap();
    m.save(
        1,
        Composite::new().json_value("state", json!({"a": 1})),
        SaveOptions::default().metrics(loss(0.5)),
    )
    .unwrap();
    m.close().unwrap();
    sb.root.join("1")
}

fn ckpt_cli(args: &[&str]) -> (Option<i32>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

// ============================================================================ 0: the sandbox

/// The sandbox sees a read through a symlink, a write, a creation and a deletion outside the
/// root; otherwise "nothing outside was read" would prove nothing on this file system.
#[test]
fn sandbox_detects_reads_writes_and_deletes() {
    let quiet = Sandbox::new("root");
    fs::create_dir_all(&quiet.root).unwrap();
    symlink(quiet.outside.join("victim.txt"), quiet.root.join("link")).unwrap();
    let _ = fs::symlink_metadata(quiet.root.join("link")).unwrap();
    assert!(quiet.outside_changes().is_empty());

    let read = Sandbox::new("root");
    fs::create_dir_all(&read.root).unwrap();
    symlink(read.outside.join("victim.txt"), read.root.join("link")).unwrap();
    let _ = fs::read(read.root.join("link")).unwrap();
    let c = read.outside_changes();
    assert_eq!(
        c,
        vec![format!(
            "{} was read (atime changed)",
            read.outside.join("victim.txt").display()
        )]
    );

    let sb = Sandbox::new("root");
    let _ = fs::read_dir(sb.outside.join("nested")).unwrap().count();
    fs::write(sb.outside.join("nested/deeper/file.txt"), b"x").unwrap();
    fs::write(sb.base.join("new.txt"), b"x").unwrap();
    fs::remove_file(sb.base.join("root_sibling/keep.txt")).unwrap();
    let c = sb.outside_changes().join("\n");
    for want in [
        "nested was read",
        "file.txt was written",
        "new.txt was created",
        "keep.txt was deleted",
    ] {
        assert!(c.contains(want), "{want:?} not in {c}");
    }
}

// One module per kind of bad input, numbered as in issue 4.
mod arguments;
mod checksum_manifests;
mod cli;
mod handler_strings;
mod item_names;
mod json_items;
mod metrics;
mod options;
mod root;
mod root_metadata;
mod safetensors;
mod step_metadata;
mod step_names;
mod symlinks;
