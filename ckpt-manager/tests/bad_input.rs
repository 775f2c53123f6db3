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
    let text = e.to_string();
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

// ==================================================================== 1: step metadata files

/// Broken `_CHECKPOINT_METADATA` files (truncated, not JSON, not an object, every field with a
/// wrong JSON type, unknown keys beside a non-empty custom_metadata). Spec §1.5: when listing,
/// the step is still a step, with no metadata (its time is the directory's mtime); asked for
/// explicitly, `step_metadata` is a `Corrupt` error naming the file, the step and the field;
/// `item_handlers` is empty (its documented outcome); nothing in the root changes.
#[test]
fn broken_step_metadata_is_no_metadata_when_listing_and_corrupt_when_asked() {
    let rows: &[(&str, (&[u8], &str))] = &[
        (
            "truncated",
            (
                b"{\"item_handlers\": {\"state\": \"orbax.checkpoint._src.han",
                "step metadata",
            ),
        ),
        ("not JSON", (b"this is not json", "step metadata")),
        ("binary junk", (b"\xff\xfe\x00\x01garbage", "not UTF-8")),
        ("empty file", (b"", "step metadata")),
        ("top level is an array", (b"[1, 2]", "not a JSON object")),
        ("top level is a string", (b"\"hello\"", "not a JSON object")),
        ("top level is null", (b"null", "not a JSON object")),
        ("top level is NaN", (b"NaN", "not a JSON object")),
        (
            "item_handlers a number",
            (b"{\"item_handlers\": 3}", "item_handlers"),
        ),
        (
            "item_handlers a list",
            (b"{\"item_handlers\": [\"state\"]}", "item_handlers"),
        ),
        (
            "item_handlers a bool",
            (b"{\"item_handlers\": true}", "item_handlers"),
        ),
        (
            "item_handlers value a number",
            (b"{\"item_handlers\": {\"state\": 3}}", "item_handlers"),
        ),
        ("metrics a list", (b"{\"metrics\": []}", "metrics")),
        ("metrics a string", (b"{\"metrics\": \"x\"}", "metrics")),
        (
            "performance_metrics a number",
            (b"{\"performance_metrics\": 1}", "performance_metrics"),
        ),
        (
            "init timestamp a string",
            (
                b"{\"init_timestamp_nsecs\": \"soon\"}",
                "init_timestamp_nsecs",
            ),
        ),
        (
            "init timestamp a float",
            (b"{\"init_timestamp_nsecs\": 1.5}", "init_timestamp_nsecs"),
        ),
        (
            "commit timestamp a string",
            (
                b"{\"commit_timestamp_nsecs\": \"x\"}",
                "commit_timestamp_nsecs",
            ),
        ),
        (
            "commit timestamp a float",
            (
                b"{\"commit_timestamp_nsecs\": 1.7e18}",
                "commit_timestamp_nsecs",
            ),
        ),
        (
            "commit timestamp a bool",
            (
                b"{\"commit_timestamp_nsecs\": true}",
                "commit_timestamp_nsecs",
            ),
        ),
        (
            "commit timestamp beyond i64",
            (
                b"{\"commit_timestamp_nsecs\": 18446744073709551615}",
                "commit_timestamp_nsecs",
            ),
        ),
        (
            "custom_metadata a list",
            (b"{\"custom_metadata\": [1]}", "custom_metadata"),
        ),
        (
            "custom_metadata a string",
            (b"{\"custom_metadata\": \"x\"}", "custom_metadata"),
        ),
        (
            "unknown key beside non-empty custom_metadata",
            (b"{\"extra\": 1, \"custom_metadata\": {\"a\": 2}}", "extra"),
        ),
    ];
    table(rows, |sb, (bytes, needle)| {
        let step = root_with_step_1(sb);
        let meta = step.join("_CHECKPOINT_METADATA");
        fs::write(&meta, bytes).unwrap();
        let before = tree_with_mtimes(&sb.root);

        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1], "still a step (spec §1.5)");
        let c = &m.checkpoints()[0];
        assert_eq!(
            c.time.timestamp_nanos_opt(),
            Some(mtime_nanos(&step)),
            "time falls back to the directory's mtime"
        );
        assert_eq!(
            c.metrics,
            Some(loss(0.5)),
            "metrics come from metrics/metrics"
        );
        expect_err(
            m.step_metadata(1),
            ErrorKind::Corrupt,
            &["1/_CHECKPOINT_METADATA", "step 1", needle],
        );
        assert!(m.item_handlers(1).unwrap().is_empty());
        assert_eq!(m.metrics(1).unwrap(), Some(loss(0.5)));
        drop(m);
        assert_unchanged(&before, &sb.root, "opening and reading");
        // A writing manager opens the root too (creating its lock file there), and its
        // retention may delete the step.
        let mut w = writer(&sb.root).max_to_keep(1).build().unwrap();
        assert_eq!(w.all_steps(), vec![1]);
        save_step(&mut w, 2);
        assert_eq!(w.all_steps(), vec![2]);
        assert!(!step.exists());
    });
}

/// Restoring a step whose `_CHECKPOINT_METADATA` is broken: `restore`'s docs promise `Corrupt`
/// "when a file is broken", and DESIGN.md a message naming what was wrong and where.
///
/// Bug: `Core::restore` (ckpt-manager/src/shared.rs, `recorded_handlers`) swallows the parse
/// error and treats the file as absent, so the restore fails with `InvalidArgument: item "state"
/// has no registered handler and the checkpoint records no handler type for it` — the wrong
/// kind, and a message that hides the broken file.
#[test]
fn restore_with_broken_step_metadata_is_corrupt_naming_the_file() {
    let rows: &[(&str, &[u8])] = &[
        ("truncated", b"{\"item_handlers\": {\"sta"),
        ("item_handlers a number", b"{\"item_handlers\": 3}"),
        ("not JSON", b"garbage"),
    ];
    table(rows, |sb, bytes| {
        let step = root_with_step_1(sb);
        fs::write(step.join("_CHECKPOINT_METADATA"), bytes).unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Corrupt,
            &["_CHECKPOINT_METADATA", "step 1"],
        );
    });
}

/// Metadata Orbax accepts: unknown keys move into an empty `custom_metadata` (spec §1.5), null
/// means default, negative and extreme timestamps are integers like any other.
#[test]
fn unusual_but_valid_step_metadata_is_read() {
    case("unknown keys, custom_metadata absent or empty", |sb| {
        let step = root_with_step_1(sb);
        for custom in [
            "",
            ", \"custom_metadata\": {}",
            ", \"custom_metadata\": null",
        ] {
            let text = format!(
                "{{\"item_handlers\": {{\"state\": \"{ORBAX_JSON_HANDLER}\"}}, \"extra\": [1, 2], \"note\": \"x\"{custom}}}"
            );
            fs::write(step.join("_CHECKPOINT_METADATA"), text).unwrap();
            let m = reader(&sb.root).unwrap();
            let meta = m.step_metadata(1).unwrap();
            let want: Map<String, Value> =
                serde_json::from_value(json!({"extra": [1, 2], "note": "x"})).unwrap();
            assert_eq!(meta.custom_metadata, want, "{custom}");
            assert_eq!(
                m.restore(Some(1)).unwrap().json_value("state").unwrap(),
                &json!({"a": 1})
            );
        }
    });
    case("every field null", |sb| {
        let step = root_with_step_1(sb);
        fs::write(
            step.join("_CHECKPOINT_METADATA"),
            "{\"item_handlers\": null, \"metrics\": null, \"performance_metrics\": null, \
             \"init_timestamp_nsecs\": null, \"commit_timestamp_nsecs\": null, \"custom_metadata\": null}",
        )
        .unwrap();
        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1]);
        let meta = m.step_metadata(1).unwrap();
        assert_eq!(meta.item_handlers, None);
        assert_eq!(meta.commit_timestamp_nsecs, None);
        // No handler recorded for the item: an InvalidArgument naming it (registry docs).
        expect_err(
            m.restore(Some(1)),
            ErrorKind::InvalidArgument,
            &["\"state\"", "no registered handler", "step 1"],
        );
    });
    case(
        "commit timestamp NaN reads as null (pyjson deviation)",
        |sb| {
            let step = root_with_step_1(sb);
            fs::write(
            step.join("_CHECKPOINT_METADATA"),
            format!(
                "{{\"item_handlers\": {{\"state\": \"{ORBAX_JSON_HANDLER}\"}}, \"commit_timestamp_nsecs\": NaN}}"
            ),
        )
        .unwrap();
            let m = reader(&sb.root).unwrap();
            assert_eq!(m.step_metadata(1).unwrap().commit_timestamp_nsecs, None);
            assert_eq!(
                m.checkpoints()[0].time.timestamp_nanos_opt(),
                Some(mtime_nanos(&step))
            );
        },
    );
    for (name, ts) in [
        ("negative commit timestamp", i64::MIN),
        ("largest commit timestamp", i64::MAX),
        ("zero commit timestamp", 0),
    ] {
        case(name, |sb| {
            let step = root_with_step_1(sb);
            fs::write(
                step.join("_CHECKPOINT_METADATA"),
                format!(
                    "{{\"item_handlers\": {{\"state\": \"{ORBAX_JSON_HANDLER}\"}}, \"commit_timestamp_nsecs\": {ts}}}"
                ),
            )
            .unwrap();
            let m = reader(&sb.root).unwrap();
            assert_eq!(m.checkpoints()[0].time.timestamp_nanos_opt(), Some(ts));
            assert_eq!(m.step_metadata(1).unwrap().commit_timestamp_nsecs, Some(ts));
            let mut w = writer(&sb.root).max_to_keep(1).build().unwrap();
            save_step(&mut w, 2);
            assert_eq!(w.all_steps(), vec![2]);
        });
    }
}

// ==================================================================== 2: root metadata

/// Broken `metadata/_ROOT_METADATA`: opening (read-only or for writing, with root metadata given)
/// works and lists the steps; `metadata()` is `Corrupt` naming the file; the broken file is never
/// overwritten (spec §1.6: written once, never overwritten).
#[test]
fn broken_root_metadata_is_corrupt_and_never_overwritten() {
    let rows: &[(&str, (&[u8], &str))] = &[
        (
            "truncated",
            (
                b"{\"internal_metadata\": {}, \"custom_metad",
                "root metadata",
            ),
        ),
        ("not JSON", (b"<xml/>", "root metadata")),
        ("empty file", (b"", "root metadata")),
        ("binary junk", (b"\x00\x9f\x92\x96", "root metadata")),
        ("top level is an array", (b"[]", "not a JSON object")),
        ("top level is NaN", (b"NaN", "not a JSON object")),
        (
            "custom_metadata a list",
            (b"{\"custom_metadata\": [1]}", "custom_metadata"),
        ),
        (
            "internal_metadata a string",
            (b"{\"internal_metadata\": \"x\"}", "internal_metadata"),
        ),
        (
            "unknown key beside non-empty custom_metadata",
            (
                b"{\"version\": 2, \"custom_metadata\": {\"a\": 1}}",
                "version",
            ),
        ),
    ];
    table(rows, |sb, (bytes, needle)| {
        good_root(&sb.root, &[1]);
        let file = sb.root.join("metadata/_ROOT_METADATA");
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, bytes).unwrap();
        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1]);
        expect_err(
            m.metadata(),
            ErrorKind::Corrupt,
            &["metadata/_ROOT_METADATA", needle],
        );
        let w = writer(&sb.root).root_metadata(loss(1.0)).build().unwrap();
        expect_err(w.metadata(), ErrorKind::Corrupt, &["_ROOT_METADATA"]);
        assert_eq!(&fs::read(&file).unwrap(), bytes, "never overwritten");
    });
}

#[test]
fn root_metadata_edge_cases() {
    case("legacy metadata/metadata broken", |sb| {
        good_root(&sb.root, &[1]);
        fs::create_dir_all(sb.root.join("metadata")).unwrap();
        fs::write(sb.root.join("metadata/metadata"), b"{\"blah\": ").unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(m.metadata(), ErrorKind::Corrupt, &["metadata/metadata"]);
    });
    case(
        "unknown keys with empty custom_metadata move into it",
        |sb| {
            good_root(&sb.root, &[1]);
            fs::create_dir_all(sb.root.join("metadata")).unwrap();
            fs::write(
                sb.root.join("metadata/_ROOT_METADATA"),
                b"{\"internal_metadata\": {}, \"lang\": \"en\"}",
            )
            .unwrap();
            let m = reader(&sb.root).unwrap();
            assert_eq!(
                Value::Object(m.metadata().unwrap().custom_metadata),
                json!({"lang": "en"})
            );
        },
    );
    case("empty metadata directory", |sb| {
        good_root(&sb.root, &[1]);
        fs::create_dir_all(sb.root.join("metadata")).unwrap();
        let m = reader(&sb.root).unwrap();
        // Spec §1.6 [verified]: an empty metadata/ dir makes metadata() raise.
        expect_err(m.metadata(), ErrorKind::NotFound, &["metadata"]);
    });
    case("metadata is a file", |sb| {
        good_root(&sb.root, &[1]);
        fs::write(sb.root.join("metadata"), b"not a directory").unwrap();
        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1]);
        // Orbax raises here too (`metadata` exists, its file cannot be read): a clear error
        // naming the path and the cause.
        expect_err(
            m.metadata(),
            ErrorKind::Storage,
            &["metadata/_ROOT_METADATA", "not a directory"],
        );
    });
}

/// A file named `metadata` in the root, and a writer given root metadata: the metadata cannot be
/// written, and the caller must be told (Orbax: `mkdir(exist_ok=True)` raises
/// `FileExistsError`); the file stays as it is.
///
/// Bug: `Core::write_root_metadata_once` (ckpt-manager/src/shared.rs) maps every
/// `AlreadyExists` from `write_if_absent("metadata/_ROOT_METADATA")` to "someone else wrote it";
/// here the store's `AlreadyExists` comes from creating the parent directory over the file, so
/// `build()` returns `Ok` and the root metadata is silently dropped.
#[test]
fn root_metadata_blocked_by_a_file_is_an_error() {
    case("metadata is a file, writer with root metadata", |sb| {
        good_root(&sb.root, &[1]);
        fs::write(sb.root.join("metadata"), b"not a directory").unwrap();
        let r = writer(&sb.root).root_metadata(loss(1.0)).build();
        let e = r.err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("metadata")),
            "expected an error naming `metadata`, got {e:?}"
        );
        assert_eq!(
            fs::read(sb.root.join("metadata")).unwrap(),
            b"not a directory"
        );
    });
}

// ==================================================================== 3: metrics files

/// Broken `<step>/metrics/metrics`: listing treats it as no metrics (so the step never ranks
/// best); `metrics(step)` is `Corrupt` naming the file and the step.
#[test]
fn broken_metrics_file_is_no_metrics_when_listing_and_corrupt_when_asked() {
    let rows: &[(&str, (&[u8], &str))] = &[
        ("truncated", (b"{\"loss\": 0.", "cannot read metrics")),
        ("not JSON", (b"loss=0.1", "cannot read metrics")),
        ("binary junk", (b"\xc3\x28", "not UTF-8")),
        ("empty file", (b"", "cannot read metrics")),
        ("a list", (b"[0.1]", "not a JSON object")),
        ("a number", (b"0.1", "not a JSON object")),
        ("null", (b"null", "not a JSON object")),
    ];
    table(rows, |sb, (bytes, needle)| {
        good_root(&sb.root, &[1, 2]);
        fs::write(sb.root.join("1/metrics/metrics"), bytes).unwrap();
        let m = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .best_metric("loss", BestMode::Max)
            .build()
            .unwrap();
        assert_eq!(m.all_steps(), vec![1, 2]);
        assert_eq!(m.checkpoints()[0].metrics, None);
        assert_eq!(m.best_step(), Some(2));
        expect_err(
            m.metrics(1),
            ErrorKind::Corrupt,
            &["1/metrics/metrics", "step 1", needle],
        );
        expect_err(m.step_metadata(1), ErrorKind::Corrupt, &["metrics/metrics"]);
        assert_eq!(m.metrics(2).unwrap(), Some(loss(0.2)));
    });
}

/// Hand-written `{"loss": NaN}`, `Infinity`, `-Infinity` (what Python's json.dumps writes): read
/// as null, never the best step under either mode, no panic, and retention by best metric keeps
/// the real best.
#[test]
fn nan_and_infinite_metrics_read_as_null_and_never_best() {
    for mode in [BestMode::Min, BestMode::Max] {
        case(&format!("non-finite metrics, best mode {mode}"), |sb| {
            good_root(&sb.root, &[1, 2, 3, 4]);
            for (step, token) in [(1, "NaN"), (2, "Infinity"), (3, "-Infinity")] {
                fs::write(
                    sb.root.join(format!("{step}/metrics/metrics")),
                    format!("{{\"loss\": {token}, \"acc\": [NaN, 1]}}"),
                )
                .unwrap();
            }
            let m = CheckpointManager::builder(sb.root_str())
                .read_only(true)
                .best_metric("loss", mode)
                .build()
                .unwrap();
            assert_eq!(m.all_steps(), vec![1, 2, 3, 4]);
            for s in 1..=3 {
                assert_eq!(
                    m.metrics(s).unwrap().map(Value::Object),
                    Some(json!({"loss": null, "acc": [null, 1]}))
                );
            }
            assert_eq!(m.best_step(), Some(4));
            drop(m);
            let mut w = writer(&sb.root)
                .best_metric("loss", mode)
                .max_to_keep(1)
                .keep_checkpoints_without_metrics(false)
                .build()
                .unwrap();
            w.save(
                5,
                Composite::new().json_value("state", json!(5)),
                SaveOptions::default().metrics(loss(if mode == BestMode::Min { 0.9 } else { 0.1 })),
            )
            .unwrap();
            assert_eq!(w.all_steps(), vec![4], "only the real best survives");
            assert_eq!(w.best_step(), Some(4));
        });
    }
}

/// Metrics holding `f64::NAN` / infinities given to `save`: serde_json turns them into null, the
/// file holds `null`, and the step is never best.
#[test]
fn saving_nan_metrics_writes_null() {
    case("save with f64::NAN metrics", |sb| {
        let mut m = writer(&sb.root)
            .best_metric("loss", BestMode::Min)
            .build()
            .unwrap();
        for (step, v) in [(1, f64::NAN), (2, f64::INFINITY), (3, f64::NEG_INFINITY)] {
            let mut metrics = loss(v);
            metrics.insert("other".into(), json!([v, 1.0]));
            assert!(m
                .save(
                    step,
                    Composite::new().json_value("state", json!(step)),
                    SaveOptions::default().metrics(metrics),
                )
                .unwrap());
            assert_eq!(
                fs::read_to_string(sb.root.join(format!("{step}/metrics/metrics"))).unwrap(),
                "{\"loss\": null, \"other\": [null, 1.0]}",
                "step {step}"
            );
        }
        assert_eq!(m.best_step(), None, "no step has a usable loss");
        save_step(&mut m, 4);
        assert_eq!(m.best_step(), Some(4));
        let r = reader(&sb.root).unwrap();
        assert_eq!(
            r.metrics(1).unwrap().map(Value::Object),
            Some(json!({"loss": null, "other": [null, 1.0]}))
        );
    });
}

/// Metrics lacking `best_metric` (deviation D5): `InvalidArgument` naming the metric and the
/// step before anything is written, for synchronous and asynchronous saves; the next save works.
#[test]
fn metrics_lacking_the_best_metric_are_refused_before_writing() {
    for async_save in [false, true] {
        case(&format!("missing best metric, async {async_save}"), |sb| {
            let mut m = CheckpointManager::builder(sb.root_str())
                .enable_async_checkpointing(async_save)
                .best_metric("val_loss", BestMode::Min)
                .max_to_keep(1)
                .build()
                .unwrap();
            save_metrics_step(&mut m, 1, "val_loss");
            let before = tree_with_mtimes(&sb.root);
            expect_err(
                m.save(
                    2,
                    Composite::new().json_value("state", json!(2)),
                    SaveOptions::default().metrics(loss(0.1)),
                ),
                ErrorKind::InvalidArgument,
                &["\"val_loss\"", "step 2"],
            );
            m.wait_until_finished().unwrap();
            assert_unchanged(&before, &sb.root, "refused save");
            assert_eq!(m.all_steps(), vec![1]);
            save_metrics_step(&mut m, 3, "val_loss");
            assert_eq!(m.all_steps(), vec![3]);
        });
    }
}

fn save_metrics_step(m: &mut CheckpointManager, step: Step, key: &str) {
    let mut metrics = Map::new();
    metrics.insert(key.into(), json!(1.0 / step as f64));
    assert!(m
        .save(
            step,
            Composite::new().json_value("state", json!(step)),
            SaveOptions::default().metrics(metrics),
        )
        .unwrap());
    m.wait_until_finished().unwrap();
}

// ==================================================================== 4: JSON item files

/// A broken JSON item file: restore is `Corrupt` naming the file and the step — caught by the
/// checksum manifest when the step has one, by the JSON parser when it has none (a step written
/// by Orbax, or by ckpt before checksums); the other items still restore one by one.
#[test]
fn broken_json_item_file_is_corrupt_naming_it() {
    let rows: &[(&str, (&[u8], &str))] = &[
        ("truncated", (b"{\"a\": [1, 2", "invalid JSON")),
        ("not JSON", (b"a = 1", "invalid JSON")),
        ("binary junk", (b"\xff\x00\xfe", "not UTF-8")),
        ("empty file", (b"", "invalid JSON")),
        ("two documents", (b"{} {}", "invalid JSON")),
    ];
    table(rows, |sb, (bytes, parse_error)| {
        let mut m = writer(&sb.root).build().unwrap();
        m.save(
            1,
            Composite::new()
                .json_value("state", json!({"a": 1}))
                .json_value("other", json!("fine")),
            SaveOptions::default(),
        )
        .unwrap();
        fs::write(sb.root.join("1/state/metadata"), bytes).unwrap();
        for manifest in [true, false] {
            if !manifest {
                drop_checksums(&sb.root.join("1"));
            }
            let why = if manifest {
                "does not match its checksum"
            } else {
                parse_error
            };
            expect_err(
                m.restore(Some(1)),
                ErrorKind::Corrupt,
                &["1/state/metadata", "step 1", why],
            );
            expect_err(
                m.restore(None),
                ErrorKind::Corrupt,
                &["1/state/metadata", why],
            );
            let r = m.restore_items(Some(1), &["other"]).unwrap();
            assert_eq!(r.json_value("other").unwrap(), &json!("fine"));
            assert_eq!(m.all_steps(), vec![1], "a failed restore changes nothing");
        }
    });
}

#[test]
fn json_item_file_missing_or_replaced() {
    case("item file missing", |sb| {
        good_root(&sb.root, &[1]);
        fs::remove_file(sb.root.join("1/state/metadata")).unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::NotFound,
            &["1/state/metadata", "step 1", "not found"],
        );
    });
    case("item file is a directory", |sb| {
        good_root(&sb.root, &[1]);
        fs::remove_file(sb.root.join("1/state/metadata")).unwrap();
        fs::create_dir(sb.root.join("1/state/metadata")).unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::NotFound,
            &["1/state/metadata", "step 1"],
        );
    });
    case("item file with NaN and Infinity", |sb| {
        good_root(&sb.root, &[1]);
        fs::write(
            sb.root.join("1/state/metadata"),
            b"{\"a\": NaN, \"b\": [Infinity, -Infinity], \"c\": \"NaN\"}",
        )
        .unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Corrupt,
            &["1/state/metadata", "does not match its checksum"],
        );
        // As Python's json.dumps writes it (no manifest): read leniently.
        drop_checksums(&sb.root.join("1"));
        let r = m.restore(Some(1)).unwrap();
        assert_eq!(
            r.json_value("state").unwrap(),
            &json!({"a": null, "b": [null, null], "c": "NaN"})
        );
    });
}

// ==================================================================== 5: handler type strings

/// An item recorded with a handler type string nothing in this program registers: restore is
/// `Unsupported` naming the item and the string; listing, `item_metadata` (None for it) and the
/// other items are unaffected.
#[test]
fn unknown_handler_strings_are_unsupported_naming_item_and_string() {
    let rows: &[(&str, &str)] = &[
        ("third-party class", "my_project.handlers.FancyHandler"),
        ("empty string", ""),
        (
            "json handler with a suffix",
            "orbax.checkpoint._src.handlers.json_checkpoint_handler.JsonCheckpointHandlerV2",
        ),
        ("ckpt-like name", "ckpt.tensors2"),
        ("whitespace around a known name", " ckpt.bytes "),
        ("unicode", "orbax.\u{441}heckpoint.Handler"),
    ];
    table(rows, |sb, type_string| {
        good_two_item_step(sb);
        set_handler(sb, "state", type_string);
        let m = reader(&sb.root).unwrap();
        assert_eq!(m.all_steps(), vec![1]);
        let quoted = format!("{type_string:?}");
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Unsupported,
            &["\"state\"", &quoted, "step 1"],
        );
        let r = m.restore_items(Some(1), &["other"]).unwrap();
        assert_eq!(r.json_value("other").unwrap(), &json!("fine"));
        let meta = m.item_metadata(1).unwrap();
        assert_eq!(meta.get("state"), Some(&None));
        assert_eq!(
            m.item_handlers(1).unwrap().get("state").map(String::as_str),
            Some(*type_string)
        );
    });
}

/// Orbax's handlers ckpt cannot read (Array, Proto): `Unsupported` naming the item,
/// the string, the class and the format.
#[test]
fn orbax_tensorstore_handlers_are_unsupported() {
    let rows: Vec<(&str, &str)> = ORBAX_TENSORSTORE_HANDLERS
        .iter()
        .map(|ts| (ts.rsplit('.').next().unwrap(), *ts))
        .collect();
    table(&rows, |sb, type_string| {
        good_two_item_step(sb);
        set_handler(sb, "state", type_string);
        let class = type_string.rsplit('.').next().unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Unsupported,
            &["\"state\"", *type_string, class, "tensorstore", "step 1"],
        );
        expect_err(
            m.restore_items(Some(1), &["state"]),
            ErrorKind::Unsupported,
            &["\"state\"", class],
        );
        assert_eq!(m.item_metadata(1).unwrap().get("state"), Some(&None));
    });
}

#[test]
fn item_handlers_edge_cases() {
    case("single (non-composite) unknown handler string", |sb| {
        good_root(&sb.root, &[1]);
        fs::rename(sb.root.join("1/state"), sb.root.join("1/default")).unwrap();
        fs::write(
            sb.root.join("1/_CHECKPOINT_METADATA"),
            b"{\"item_handlers\": \"some.module.SomeHandler\", \"metrics\": {}}",
        )
        .unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::Unsupported,
            &["\"default\"", "some.module.SomeHandler"],
        );
    });
    case("item directory not in item_handlers", |sb| {
        good_root(&sb.root, &[1]);
        fs::create_dir(sb.root.join("1/stray")).unwrap();
        fs::write(sb.root.join("1/stray/metadata"), b"{}").unwrap();
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::InvalidArgument,
            &["\"stray\"", "no registered handler", "step 1"],
        );
        let r = m.restore_items(Some(1), &["state"]).unwrap();
        assert_eq!(r.json_value("state").unwrap(), &json!({"step": 1}));
    });
    case("tensor handler recorded for a JSON item", |sb| {
        good_root(&sb.root, &[1]);
        set_handler(sb, "state", "ckpt.tensors");
        let m = reader(&sb.root).unwrap();
        expect_err(
            m.restore(Some(1)),
            ErrorKind::NotFound,
            &["1/state/tensors.safetensors", "step 1"],
        );
    });
}

/// Step 1 with items `state` = `{"a": 1}` and `other` = `"fine"`.
fn good_two_item_step(sb: &Sandbox) {
    let mut m = writer(&sb.root).build().unwrap();
    m.save(
        1,
        Composite::new()
            .json_value("state", json!({"a": 1}))
            .json_value("other", json!("fine")),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
}

/// Rewrites step 1's `_CHECKPOINT_METADATA` so that `item` is recorded with `type_string`.
fn set_handler(sb: &Sandbox, item: &str, type_string: &str) {
    let path = sb.root.join("1/_CHECKPOINT_METADATA");
    let mut v: Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    v["item_handlers"][item] = Value::String(type_string.to_string());
    fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

// ==================================================================== 6: safetensors files

/// A broken `tensors.safetensors`: restore and `item_metadata` are `Corrupt` naming the file and
/// the step — never wrong data, never a panic, never a huge allocation.
#[test]
fn broken_safetensors_file_is_corrupt_naming_it() {
    type Break = fn(Vec<u8>) -> Vec<u8>;
    let rows: &[(&str, Break)] = &[
        ("truncated in the data", |b| b[..b.len() - 3].to_vec()),
        ("truncated in the header", |b| b[..12].to_vec()),
        ("shorter than the length prefix", |b| b[..3].to_vec()),
        ("empty", |_| Vec::new()),
        ("header length u64::MAX", |mut b| {
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
        ("header length past the end", |mut b| {
            let n = b.len() as u64;
            b[..8].copy_from_slice(&n.to_le_bytes());
            b
        }),
        ("garbage header", |mut b| {
            let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            for x in &mut b[8..8 + n] {
                *x = b'#';
            }
            b
        }),
        ("header not UTF-8", |mut b| {
            b[9] = 0xff;
            b
        }),
        ("appended bytes", |mut b| {
            b.extend_from_slice(b"trailing junk");
            b
        }),
        ("offsets beyond the data", |b| {
            let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
            let header = String::from_utf8(b[8..8 + n].to_vec()).unwrap();
            let header = header.replace("[0,8]", "[0,800]");
            let mut out = (header.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(header.as_bytes());
            out.extend_from_slice(&b[8 + n..]);
            out
        }),
    ];
    table(rows, |sb, brk| {
        let mut tensors = TensorMap::new();
        tensors.insert(
            "w".into(),
            Tensor::from_slice(vec![2], &[1.0f32, 2.0]).unwrap(),
        );
        let mut m = writer(&sb.root).build().unwrap();
        m.save(
            1,
            Composite::new().tensors_owned("params", tensors),
            SaveOptions::default(),
        )
        .unwrap();
        let file = sb.root.join("1/params/tensors.safetensors");
        let good = fs::read(&file).unwrap();
        assert!(
            String::from_utf8_lossy(&good).contains("[0,8]"),
            "layout assumed by a row"
        );
        fs::write(&file, brk(good)).unwrap();
        for manifest in [true, false] {
            if !manifest {
                drop_checksums(&sb.root.join("1"));
                // A ckpt-written step without its manifest is refused as such; to reach the
                // safetensors parser, read it with verification off.
                let e = expect_err(m.restore(Some(1)), ErrorKind::Corrupt, &["_CKPT_CHECKSUMS"]);
                assert!(e.to_string().contains("missing"), "{e}");
                drop(m);
                m = writer(&sb.root).verify_checksums(false).build().unwrap();
            }
            let e = expect_err(
                m.restore(Some(1)),
                ErrorKind::Corrupt,
                &["1/params/tensors.safetensors", "step 1"],
            );
            assert_eq!(e.step(), Some(1));
            assert_eq!(
                e.to_string().contains("does not match its checksum"),
                manifest,
                "{e}"
            );
            expect_err(
                m.item_metadata(1),
                ErrorKind::Corrupt,
                &["1/params/tensors.safetensors", "step 1"],
            );
        }
    });
}

// ==================================================================== 6b: checksum manifests

/// A broken `_CKPT_CHECKSUMS` (ckpt's own file; Orbax ignores it): restore is `Corrupt` (or
/// `Unsupported` for an algorithm this ckpt does not know) naming the manifest and the step,
/// before any item is read — a manifest key that points outside the step is refused, never
/// followed; listing is unaffected, and with `verify_checksums(false)` the step restores.
#[test]
fn broken_checksum_manifest_is_corrupt_naming_it() {
    type Row<'a> = (&'a [u8], ErrorKind, &'a str);
    let rows: &[(&str, Row)] = &[
        ("truncated", (b"{\"algorithm\": \"crc32c\", \"fi", ErrorKind::Corrupt, "not valid JSON")),
        ("not JSON", (b"crc32c 0a1b2c3d", ErrorKind::Corrupt, "not valid JSON")),
        ("a list", (b"[]", ErrorKind::Corrupt, "not a JSON object")),
        ("no files", (b"{\"algorithm\": \"crc32c\"}", ErrorKind::Corrupt, "files")),
        ("unknown algorithm", (b"{\"algorithm\": \"md5\", \"files\": {}}", ErrorKind::Unsupported, "md5")),
        (
            "key escaping the step",
            (
                b"{\"algorithm\": \"crc32c\", \"files\": {\"../../outside/victim.txt\": {\"size\": 1, \"crc32c\": \"00000000\"}}}",
                ErrorKind::Corrupt,
                "../../outside/victim.txt",
            ),
        ),
        (
            "absolute key",
            (
                b"{\"algorithm\": \"crc32c\", \"files\": {\"/etc/passwd\": {\"size\": 1, \"crc32c\": \"00000000\"}}}",
                ErrorKind::Corrupt,
                "/etc/passwd",
            ),
        ),
        (
            "negative size",
            (
                b"{\"algorithm\": \"crc32c\", \"files\": {\"state/metadata\": {\"size\": -1, \"crc32c\": \"00000000\"}}}",
                ErrorKind::Corrupt,
                "size",
            ),
        ),
        (
            "crc not hex",
            (
                b"{\"algorithm\": \"crc32c\", \"files\": {\"state/metadata\": {\"size\": 11, \"crc32c\": \"zzzzzzzz\"}}}",
                ErrorKind::Corrupt,
                "crc32c",
            ),
        ),
    ];
    table(rows, |sb, (bytes, kind, needle)| {
        good_root(&sb.root, &[1]);
        fs::write(
            sb.root.join("1").join(ckpt_manager::storage::MANIFEST_FILE),
            bytes,
        )
        .unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        assert_eq!(r.metrics(1).unwrap(), Some(loss(0.1)));
        expect_err(
            r.restore(Some(1)),
            *kind,
            &["1/_CKPT_CHECKSUMS", "step 1", needle],
        );
        let unchecked = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .verify_checksums(false)
            .build()
            .unwrap();
        assert_eq!(
            unchecked
                .restore(Some(1))
                .unwrap()
                .json_value("state")
                .unwrap(),
            &json!({"step": 1})
        );
    });
}

// ==================================================================== 7: step directory names

/// Directory names that are not step names of the default format (spec §1.2: anchored
/// `0|[1-9]\d*`), each holding a complete committed step written by hand: never listed, never
/// restored, and never touched by retention (max_to_keep=1), `delete`, `apply_preservation`,
/// cleanup of tmp directories (atomic rename and commit file), nor by the step they look like
/// being saved.
#[test]
fn junk_step_names_are_not_steps_and_never_touched() {
    let rows: &[(&str, (&str, Option<Step>))] = &[
        ("leading zeros", ("007", Some(7))),
        ("double zero", ("00", Some(0))),
        ("plus sign", ("+5", Some(5))),
        ("minus sign", ("-1", None)),
        ("exponent", ("1e3", Some(1000))),
        ("hex", ("0x10", Some(16))),
        ("decimal point", ("5.0", Some(5))),
        ("leading space", (" 5", Some(5))),
        ("trailing space", ("5 ", Some(5))),
        ("trailing newline", ("5\n", Some(5))),
        ("junk suffix", ("5x", Some(5))),
        ("backup suffix", ("5.bak", Some(5))),
        ("underscore suffix", ("5_", Some(5))),
        ("underscore prefix", ("_5", Some(5))),
        ("prefix without a configured prefix", ("step_5", Some(5))),
        ("arabic-indic digit", ("\u{663}", Some(3))),
        ("fullwidth digit", ("\u{ff15}", Some(5))),
        ("zero-width space", ("5\u{200b}", Some(5))),
        ("u64::MAX + 1", ("18446744073709551616", None)),
        ("huge number", ("99999999999999999999999999999", None)),
    ];
    table(rows, |sb, (name, looks_like)| {
        junk_name_case(sb, name, *looks_like, AtomicityMode::AtomicRename);
    });
}

/// The same in commit-file mode, where every uncommitted directory whose name is a step name
/// counts as tmp: names that are not step names must survive the cleanup, and so must the root's
/// `metadata/` (spec §1.3 "Caution").
#[test]
fn junk_step_names_survive_commit_file_cleanup() {
    let rows: &[(&str, (&str, Option<Step>))] = &[
        ("leading zeros", ("007", Some(7))),
        ("junk suffix", ("5x", Some(5))),
        ("plus sign", ("+5", Some(5))),
        ("exponent", ("1e3", Some(1000))),
        ("metadata dir", ("metadata", None)),
    ];
    table(rows, |sb, (name, looks_like)| {
        junk_name_case(sb, name, *looks_like, AtomicityMode::CommitFile);
    });
}

fn junk_name_case(sb: &Sandbox, name: &str, looks_like: Option<Step>, mode: AtomicityMode) {
    let open = || writer(&sb.root).atomicity(mode);
    let mut m = open().build().unwrap();
    save_step(&mut m, 1);
    save_step(&mut m, 2);
    m.close().unwrap();
    let junk = sb.root.join(name);
    fake_step(&junk, &json!({"junk": name}));
    if mode == AtomicityMode::CommitFile {
        // Uncommitted in this mode: only a commit file makes a step.
        for f in ["commit_success.txt", "state/commit_success.txt"] {
            fs::remove_file(junk.join(f)).unwrap();
        }
    }
    let before = tree_with_mtimes(&junk);

    let r = CheckpointManager::builder(sb.root_str())
        .read_only(true)
        .atomicity(mode)
        .build()
        .unwrap();
    assert_eq!(r.all_steps(), vec![1, 2], "{name:?} is not a step");
    if let Some(s) = looks_like {
        if s != 1 && s != 2 {
            expect_err(
                r.restore(Some(s)),
                ErrorKind::NotFound,
                &[&format!("step {s}")],
            );
            expect_err(r.metrics(s), ErrorKind::NotFound, &[&format!("step {s}")]);
        }
    }
    assert_eq!(r.restore(None).unwrap().step(), 2);

    let mut w = open()
        .max_to_keep(1)
        .cleanup_tmp_directories(true)
        .build()
        .unwrap();
    assert_eq!(w.all_steps(), vec![1, 2]);
    save_step(&mut w, 3);
    assert_eq!(w.all_steps(), vec![3], "retention ran");
    if let Some(s) = looks_like.filter(|s| *s > 3) {
        save_step(&mut w, s);
        assert_eq!(w.all_steps(), vec![s]);
        w.delete(s).unwrap();
    } else {
        w.delete(3).unwrap();
    }
    expect_err(w.delete(5), ErrorKind::NotFound, &["step 5"]);
    save_step(&mut w, 20_000);
    let decisions = w.apply_preservation(&LatestN::new(Some(0)), false).unwrap();
    assert_eq!(decisions.len(), 1);
    assert!(decisions[0].deleted);
    w.close().unwrap();
    // Reopening with cleanup again.
    let w = open().cleanup_tmp_directories(true).build().unwrap();
    assert!(w.all_steps().is_empty());
    assert_unchanged(&before, &junk, name);
}

/// With a prefix and a fixed length (spec §1.2 fixed-length rules), near misses are not steps.
#[test]
fn near_miss_names_with_prefix_and_fixed_length() {
    case("prefix step, fixed length 3", |sb| {
        let open = || {
            writer(&sb.root)
                .step_prefix("step")
                .step_format_fixed_length(3)
        };
        let mut m = open().build().unwrap();
        save_step(&mut m, 7);
        m.close().unwrap();
        assert!(sb.root.join("step_007").is_dir());
        let junk = [
            "step_07",
            "step_0007",
            "step__007",
            "Step_007",
            "step_007x",
            "step-007",
            "step007",
            "007",
            "7",
            "step_",
            "step_ 007",
            "xstep_008",
            "step_1000.bak",
        ];
        for j in junk {
            fake_step(&sb.root.join(j), &json!(j));
        }
        let before = tree_with_mtimes(&sb.root);
        let r = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .step_prefix("step")
            .step_format_fixed_length(3)
            .build()
            .unwrap();
        assert_eq!(r.all_steps(), vec![7]);
        drop(r);
        assert_unchanged(&before, &sb.root, "read-only open");
        let mut w = open()
            .max_to_keep(1)
            .cleanup_tmp_directories(true)
            .build()
            .unwrap();
        save_step(&mut w, 1000);
        assert_eq!(w.all_steps(), vec![1000]);
        assert!(!sb.root.join("step_007").exists());
        for j in junk {
            assert!(sb.root.join(j).join("state/metadata").is_file(), "{j} kept");
        }
    });
}

/// `u64::MAX` is a valid step name: listed, restored; saving it again is `AlreadyExists`, and no
/// arithmetic on it overflows.
#[test]
fn largest_step_is_a_step() {
    case("step u64::MAX", |sb| {
        good_root(&sb.root, &[1]);
        let mut w = writer(&sb.root).max_to_keep(2).build().unwrap();
        save_step(&mut w, u64::MAX);
        assert_eq!(w.all_steps(), vec![1, u64::MAX]);
        assert!(sb.root.join("18446744073709551615").is_dir());
        assert_eq!(w.latest_step(), Some(u64::MAX));
        assert!(!w.should_save(u64::MAX));
        assert!(!w
            .save(
                u64::MAX,
                Composite::new().json_value("s", json!(1)),
                SaveOptions::default()
            )
            .unwrap());
        expect_err(
            w.save(
                u64::MAX,
                Composite::new().json_value("s", json!(1)),
                SaveOptions::default().force(true),
            ),
            ErrorKind::AlreadyExists,
            &["step 18446744073709551615"],
        );
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.restore(None).unwrap().step(), u64::MAX);
    });
}

/// A step directory that is a file, and step directories that are not committed.
#[test]
fn step_entries_that_are_not_committed_directories() {
    case("step name is a file", |sb| {
        good_root(&sb.root, &[1]);
        fs::write(sb.root.join("5"), b"a file named like a step").unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        expect_err(r.restore(Some(5)), ErrorKind::NotFound, &["step 5"]);
        expect_err(r.metrics(5), ErrorKind::NotFound, &["step 5"]);
        expect_err(r.step_metadata(5), ErrorKind::NotFound, &["step 5"]);
        let mut w = writer(&sb.root)
            .max_to_keep(1)
            .cleanup_tmp_directories(true)
            .build()
            .unwrap();
        expect_err(w.delete(5), ErrorKind::NotFound, &["step 5"]);
        expect_err(
            w.save(
                5,
                Composite::new().json_value("s", json!(5)),
                SaveOptions::default(),
            ),
            ErrorKind::AlreadyExists,
            &["step 5", "/5"],
        );
        save_step(&mut w, 6);
        assert_eq!(w.all_steps(), vec![6]);
        assert_eq!(
            fs::read(sb.root.join("5")).unwrap(),
            b"a file named like a step"
        );
        assert!(!sb.root.join("5.orbax-checkpoint-tmp").exists());
    });
    case("uncommitted tmp directory (atomic rename)", |sb| {
        good_root(&sb.root, &[1]);
        fake_step(&sb.root.join("5.orbax-checkpoint-tmp"), &json!("tmp"));
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        expect_err(r.restore(Some(5)), ErrorKind::NotFound, &["step 5"]);
        assert_eq!(r.restore(None).unwrap().step(), 1, "latest committed");
        assert!(sb.root.join("5.orbax-checkpoint-tmp").is_dir(), "read-only");
    });
    case("uncommitted step directory (commit file)", |sb| {
        let open = || writer(&sb.root).atomicity(AtomicityMode::CommitFile);
        let mut m = open().build().unwrap();
        save_step(&mut m, 1);
        save_step(&mut m, 5);
        fs::remove_file(sb.root.join("5/commit_success.txt")).unwrap();
        let r = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .atomicity(AtomicityMode::CommitFile)
            .build()
            .unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        // The documented outcome: InvalidArgument "incomplete checkpoint".
        expect_err(
            r.restore(Some(5)),
            ErrorKind::InvalidArgument,
            &["incomplete", "step 5"],
        );
        assert_eq!(r.restore(None).unwrap().step(), 1);
    });
    case("uncommitted item directory inside a committed step", |sb| {
        good_root(&sb.root, &[1]);
        fs::create_dir(sb.root.join("1/half.orbax-checkpoint-tmp")).unwrap();
        fs::write(sb.root.join("1/half.orbax-checkpoint-tmp/metadata"), b"{}").unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(
            r.restore(Some(1)).unwrap().names(),
            vec!["metrics", "state"]
        );
        expect_err(
            r.restore_items(Some(1), &["half.orbax-checkpoint-tmp"]),
            ErrorKind::NotFound,
            &["half.orbax-checkpoint-tmp", "step 1"],
        );
    });
    case("committed step without items", |sb| {
        good_root(&sb.root, &[1]);
        fs::remove_dir_all(sb.root.join("1/state")).unwrap();
        fs::remove_dir_all(sb.root.join("1/metrics")).unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        expect_err(
            r.restore(Some(1)),
            ErrorKind::InvalidArgument,
            &["holds no items", "step 1"],
        );
    });
}

// ==================================================================== 8: item names

/// Item names that are not one plain path component, or are reserved: `save` refuses them with
/// `InvalidArgument` naming the item and the step, before anything is written (the root, even
/// its mtime, is unchanged), synchronously and asynchronously; the manager still saves after.
#[test]
fn bad_item_names_are_refused_before_writing() {
    let rows: &[(&str, &str)] = &[
        ("slash", "a/b"),
        ("trailing slash", "a/"),
        ("parent", ".."),
        ("parent traversal", "../escape"),
        ("deep traversal", "a/../../escape"),
        ("current dir", "."),
        ("empty", ""),
        ("absolute", "/abs"),
        ("absolute outside", "/tmp/ckpt-bad-input-evil"),
        ("backslash", "a\\b"),
        ("NUL", "nul\0byte"),
        ("tmp suffix", "x.orbax-checkpoint-tmp"),
        ("legacy tmp suffix", "x.orbax-checkpoint-tmp-123"),
        ("step metadata file", "_CHECKPOINT_METADATA"),
        ("commit file", "commit_success.txt"),
        ("checksum manifest", "_CKPT_CHECKSUMS"),
        ("metrics item with metrics", "metrics"),
    ];
    table(rows, |sb, name| bad_item_name_case(sb, name));
}

/// Item names beginning or ending with whitespace: the store cannot represent them (opendal trims
/// paths, `validate_path` rejects such components), so `save` must refuse them up front like the
/// other unusable names.
///
/// Bug: `ckpt_core::validate_item_name` (ckpt-core/src/lib.rs) accepts them, so the refusal comes
/// from the store only once writing has begun: a synchronous save creates and removes
/// `1.orbax-checkpoint-tmp` (the root's mtime changes) and fails with `InvalidArgument: invalid
/// store path "1.orbax-checkpoint-tmp/ lead"`; an asynchronous save returns `Ok(true)` and the
/// error only comes back from the next call.
#[test]
fn item_names_with_edge_whitespace_are_refused_before_writing() {
    let rows: &[(&str, &str)] = &[
        ("leading space", " lead"),
        ("trailing space", "trail "),
        ("trailing newline", "x\n"),
        ("only spaces", "   "),
    ];
    table(rows, |sb, name| bad_item_name_case(sb, name));
}

fn bad_item_name_case(sb: &Sandbox, name: &str) {
    for async_save in [false, true] {
        let mut m = CheckpointManager::builder(sb.root_str())
            .enable_async_checkpointing(async_save)
            .build()
            .unwrap();
        let before = tree_with_mtimes(&sb.root);
        let metrics = (name == "metrics").then(|| loss(0.1));
        let opts = SaveOptions {
            metrics,
            ..Default::default()
        };
        let quoted = format!("{name:?}");
        let items = Composite::new()
            .json_value(name, json!({"evil": true}))
            .json_value("ok", json!(1));
        expect_err(
            m.save(1, items, opts),
            ErrorKind::InvalidArgument,
            &[&quoted, "step 1"],
        );
        m.wait_until_finished().unwrap();
        assert_unchanged(&before, &sb.root, &format!("async {async_save}"));
        assert!(m.all_steps().is_empty());
        // Nothing was left behind that blocks the step: it saves now.
        save_step(&mut m, 1);
        m.delete(1).unwrap();
    }
}

/// An empty item set: `InvalidArgument` naming the step, nothing written, sync and async.
#[test]
fn empty_item_set_is_refused() {
    for async_save in [false, true] {
        case(&format!("empty item set, async {async_save}"), |sb| {
            let mut m = CheckpointManager::builder(sb.root_str())
                .enable_async_checkpointing(async_save)
                .build()
                .unwrap();
            let before = tree_with_mtimes(&sb.root);
            expect_err(
                m.save(1, Composite::new(), SaveOptions::default()),
                ErrorKind::InvalidArgument,
                &["empty", "step 1"],
            );
            expect_err(
                m.save(
                    2,
                    Composite::new(),
                    SaveOptions::default().metrics(loss(1.0)).force(true),
                ),
                ErrorKind::InvalidArgument,
                &["empty", "step 2"],
            );
            m.wait_until_finished().unwrap();
            assert_unchanged(&before, &sb.root, "empty item set");
            assert!(m.all_steps().is_empty());
        });
    }
}

/// A handler registered in the options for an item name that cannot be one: a bad option found
/// when the manager is built, which `ErrorKind::InvalidConfig` is for ("options that cannot work
/// together or a bad value, found when a manager or policy is built"); nothing created.
///
/// Bug: `Core::open` (ckpt-manager/src/shared.rs, `validate_item_name(item)?` in the handler
/// loop) returns the item-name check's `InvalidArgument` unchanged.
#[test]
fn handler_option_with_bad_item_name_is_invalid_config() {
    let rows: &[(&str, &str)] = &[
        ("traversal", "../x"),
        ("slash", "a/b"),
        ("empty", ""),
        ("tmp suffix", "x.orbax-checkpoint-tmp"),
    ];
    table(rows, |sb, name| {
        let r = writer(&sb.root)
            .handler(*name, Arc::new(ckpt_manager::handlers::BytesHandler))
            .build();
        expect_err(r, ErrorKind::InvalidConfig, &[&format!("{name:?}")]);
        assert!(!sb.root.exists(), "nothing created");
    });
}

// ==================================================================== 9: the root itself

#[test]
fn root_is_a_file() {
    case_at("root is a file", "rootfile", |sb| {
        fs::write(&sb.root, b"I am a file").unwrap();
        for read_only in [false, true] {
            let r = CheckpointManager::builder(sb.root_str())
                .read_only(read_only)
                .cleanup_tmp_directories(true)
                .root_metadata(loss(1.0))
                .build();
            expect_err(r, ErrorKind::InvalidArgument, &["rootfile", "file"]);
        }
        assert_eq!(fs::read(&sb.root).unwrap(), b"I am a file");
    });
}

#[test]
fn root_does_not_exist() {
    case_at("missing root, read-only", "missing/deeper", |sb| {
        let mut m = reader(&sb.root).unwrap();
        assert!(m.all_steps().is_empty());
        assert_eq!(m.latest_step(), None);
        assert_eq!(m.best_step(), None);
        expect_err(m.restore(None), ErrorKind::NotFound, &["missing/deeper"]);
        expect_err(m.restore(Some(3)), ErrorKind::NotFound, &["step 3"]);
        expect_err(m.metrics(3), ErrorKind::NotFound, &["step 3"]);
        expect_err(m.step_metadata(3), ErrorKind::NotFound, &["step 3"]);
        expect_err(m.item_metadata(3), ErrorKind::NotFound, &["step 3"]);
        assert!(m.metadata().unwrap().custom_metadata.is_empty());
        assert!(!m
            .save(
                3,
                Composite::new().json_value("s", json!(1)),
                SaveOptions::default()
            )
            .unwrap());
        expect_err(
            m.save(
                3,
                Composite::new().json_value("s", json!(1)),
                SaveOptions::default().force(true),
            ),
            ErrorKind::ReadOnly,
            &["step 3"],
        );
        expect_err(m.delete(3), ErrorKind::ReadOnly, &["step 3"]);
        m.reload().unwrap();
        m.close().unwrap();
        assert!(
            !sb.base.join("missing").exists(),
            "a read-only open created the root"
        );
    });
    case_at("missing root, create=false", "missing", |sb| {
        let m = writer(&sb.root).create(false).build().unwrap();
        assert!(m.all_steps().is_empty());
        expect_err(
            m.restore(None),
            ErrorKind::NotFound,
            &["no committed steps"],
        );
        drop(m);
        assert!(!sb.root.exists());
    });
}

#[test]
fn unusable_root_locations() {
    case_at("root below a file", "pfile/sub", |sb| {
        fs::write(sb.base.join("pfile"), b"parent is a file").unwrap();
        expect_err(writer(&sb.root).build(), ErrorKind::Storage, &["pfile/sub"]);
        expect_err(reader(&sb.root), ErrorKind::Storage, &["pfile/sub"]);
        assert_eq!(
            fs::read(sb.base.join("pfile")).unwrap(),
            b"parent is a file"
        );
    });
    case("unknown scheme", |_| {
        expect_err(
            CheckpointManager::builder("s4://bucket/run").build(),
            ErrorKind::InvalidArgument,
            &["\"s4\""],
        );
    });
    case("empty root string", |_| {
        expect_err(
            CheckpointManager::builder("").build(),
            ErrorKind::InvalidArgument,
            &["empty"],
        );
    });
    case("relative file URI", |_| {
        expect_err(
            CheckpointManager::builder("file://relative/path").build(),
            ErrorKind::InvalidArgument,
            &["file:///abs/path"],
        );
    });
    case("atomic rename on a store that cannot rename", |_| {
        expect_err(
            CheckpointManager::builder("memory://")
                .atomicity(AtomicityMode::AtomicRename)
                .build(),
            ErrorKind::InvalidConfig,
            &["atomic_rename"],
        );
    });
}

// ==================================================================== 10: symlinks

/// Root entries named like steps (or tmp dirs) that are symlinks — to a complete committed step
/// outside the root, to a file, dangling, or a loop: never listed, never restored, never deleted
/// or written through by retention (max_to_keep=1), `delete`, `apply_preservation` or
/// `cleanup_tmp_directories`; saving the step they name is refused (`AlreadyExists`).
#[test]
fn step_named_symlinks_are_not_steps_and_never_followed() {
    let rows: &[(&str, (&str, &str))] = &[
        ("link to an outside step", ("7", "outside/stepdir")),
        ("link to an outside file", ("7", "outside/victim.txt")),
        ("dangling link", ("7", "nowhere")),
        ("link to itself", ("7", "root/7")),
        (
            "tmp-named link to an outside step",
            ("7.orbax-checkpoint-tmp", "outside/stepdir"),
        ),
    ];
    table(rows, |sb, (name, target)| {
        good_root(&sb.root, &[1, 2]);
        let link = sb.root.join(name);
        symlink(sb.base.join(target), &link).unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1, 2]);
        expect_err(r.restore(Some(7)), ErrorKind::NotFound, &["step 7"]);
        expect_err(r.metrics(7), ErrorKind::NotFound, &["step 7"]);
        expect_err(r.item_metadata(7), ErrorKind::NotFound, &["step 7"]);
        let mut w = writer(&sb.root)
            .max_to_keep(1)
            .cleanup_tmp_directories(true)
            .build()
            .unwrap();
        save_step(&mut w, 3);
        assert_eq!(w.all_steps(), vec![3]);
        expect_err(w.delete(7), ErrorKind::NotFound, &["step 7"]);
        let d = w.apply_preservation(&LatestN::new(Some(0)), false).unwrap();
        assert_eq!(d.len(), 1);
        if name.contains("tmp") {
            // The leftover "tmp dir" of step 7 is replaced (the link removed, not followed).
            save_step(&mut w, 7);
            assert!(sb.root.join("7").is_dir());
        } else {
            expect_err(
                w.save(
                    7,
                    Composite::new().json_value("s", json!(7)),
                    SaveOptions::default(),
                ),
                ErrorKind::AlreadyExists,
                &["step 7", "root/7"],
            );
            assert!(fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink());
        }
        w.close().unwrap();
    });
}

/// An item directory that is a symlink to a directory outside the root, recorded in the step's
/// `item_handlers`: not an item (never read), so `restore` gives the real items only and
/// `restore_items` of it is `NotFound`; deleting the step removes the link, not its target.
#[test]
fn item_dir_symlink_is_not_an_item() {
    case("item dir symlink", |sb| {
        good_root(&sb.root, &[1, 2]);
        symlink(sb.outside.join("stepdir/state"), sb.root.join("1/evil")).unwrap();
        let meta = sb.root.join("1/_CHECKPOINT_METADATA");
        fs::write(
            &meta,
            step_metadata_json(&["state", "metrics", "evil"], "{}"),
        )
        .unwrap();
        let r = reader(&sb.root).unwrap();
        let restored = r.restore(Some(1)).unwrap();
        assert_eq!(restored.names(), vec!["metrics", "state"]);
        expect_err(
            r.restore_items(Some(1), &["evil"]),
            ErrorKind::NotFound,
            &["\"evil\"", "step 1"],
        );
        assert!(!r.item_metadata(1).unwrap().contains_key("evil"));
        let mut w = writer(&sb.root).max_to_keep(1).build().unwrap();
        w.delete(1).unwrap();
        assert!(!sb.root.join("1").exists());
        save_step(&mut w, 3);
        assert_eq!(w.all_steps(), vec![3]);
    });
}

/// Symlinks inside step and tmp directories pointing outside: deleting the step (delete,
/// retention, `apply_preservation`) or cleaning the tmp dir removes the links, never their
/// targets.
#[test]
fn links_inside_deleted_directories_are_removed_not_followed() {
    case("links inside steps and tmp dirs", |sb| {
        good_root(&sb.root, &[1, 2, 3]);
        fake_step(&sb.root.join("9.orbax-checkpoint-tmp"), &json!("dead save"));
        for dir in ["1/state", "2", "3/metrics", "9.orbax-checkpoint-tmp/state"] {
            let d = sb.root.join(dir);
            symlink(sb.outside.join("victim.txt"), d.join("file_link")).unwrap();
            symlink(sb.outside.join("nested"), d.join("dir_link")).unwrap();
        }
        let mut w = writer(&sb.root)
            .max_to_keep(2)
            .cleanup_tmp_directories(true)
            .build()
            .unwrap();
        assert!(!sb.root.join("9.orbax-checkpoint-tmp").exists(), "cleaned");
        w.delete(2).unwrap();
        save_step(&mut w, 4);
        save_step(&mut w, 5);
        assert_eq!(w.all_steps(), vec![4, 5]);
        w.apply_preservation(&LatestN::new(Some(0)), false).unwrap();
        assert!(w.all_steps().is_empty());
        assert_eq!(
            fs::read_dir(&sb.root)
                .unwrap()
                .filter(|e| !e
                    .as_ref()
                    .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock"))
                .count(),
            0,
            "only steps (and the live writer's lock file) were in the root"
        );
    });
}

/// Root entries with the names ckpt itself uses while deleting (`<step>.orbax-checkpoint-tmp-del`)
/// or saving, planted as symlinks to outside: deleting the step (now, or on the background
/// deleter) and cleanup remove the links, never their targets.
#[test]
fn own_tmp_names_as_symlinks_are_removed_not_followed() {
    for background in [false, true] {
        case(
            &format!("tmp-name symlinks, background delete {background}"),
            |sb| {
                good_root(&sb.root, &[1, 2, 3]);
                for name in [
                    "1.orbax-checkpoint-tmp-del",
                    "2.orbax-checkpoint-tmp-del",
                    "4.orbax-checkpoint-tmp",
                ] {
                    symlink(sb.outside.join("stepdir"), sb.root.join(name)).unwrap();
                }
                let mut w = CheckpointManager::builder(sb.root_str())
                    .enable_background_delete(background)
                    .max_to_keep(2)
                    .build()
                    .unwrap();
                w.delete(1).unwrap();
                save_step(&mut w, 4);
                save_step(&mut w, 5);
                assert_eq!(w.all_steps(), vec![4, 5]);
                w.close().unwrap();
                let mut left: Vec<String> = fs::read_dir(&sb.root)
                    .unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap())
                    .collect();
                left.sort();
                assert_eq!(left, vec!["4", "5"]);
            },
        );
    }
}

/// `todelete_subdir` that is a symlink to a directory outside the root: deleting a step must not
/// move it out of the root (a write outside).
///
/// Bug: `remove_dir` (ckpt-manager/src/deleter.rs, the `todelete_subdir` branch) does
/// `create_dir(sub)` (a no-op: the link resolves to a directory), then `rename("1", "trash/1")`,
/// which rename(2) resolves through the link: step 1 (and later, by retention, step 2) lands in
/// `outside/trash/`.
#[test]
fn todelete_subdir_symlink_outside_is_not_written_through() {
    case("todelete_subdir symlink", |sb| {
        good_root(&sb.root, &[1, 2]);
        symlink(sb.outside.join("trash"), sb.root.join("trash")).unwrap();
        let mut w = writer(&sb.root)
            .todelete_subdir("trash")
            .max_to_keep(1)
            .build()
            .unwrap();
        let _ = w.delete(1);
        save_step(&mut w, 3);
        assert!(!sb.outside.join("trash/1").exists());
        assert!(!sb.outside.join("trash/2").exists());
    });
}

/// The root's `metadata` entry is a symlink to a directory outside the root: writing the root
/// metadata must not write through it.
///
/// Bug: `Core::write_root_metadata_once` (ckpt-manager/src/shared.rs) stats
/// `metadata/_ROOT_METADATA` (absent) and `write_if_absent`s it; the store's `write` goes through
/// links, so the file is created as `outside/metadir/_ROOT_METADATA`.
#[test]
fn metadata_dir_symlink_outside_is_not_written_through() {
    case("metadata symlink", |sb| {
        good_root(&sb.root, &[1]);
        symlink(sb.outside.join("metadir"), sb.root.join("metadata")).unwrap();
        let _ = writer(&sb.root).root_metadata(loss(1.0)).build();
        assert!(!sb.outside.join("metadir/_ROOT_METADATA").exists());
    });
}

/// A step's `metrics` item directory is a symlink to an outside directory holding a `metrics`
/// file: issue 4 says nothing outside the root is ever read; listing must not take the step's
/// metrics (loss -1000, which would make it best) from outside.
///
/// Bug: `listing::read_metrics` (ckpt-manager/src/listing.rs) reads `1/metrics/metrics` with
/// `Store::read`, which follows links (documented in OpendalStore), so opening any manager reads
/// the outside file and ranks step 1 best by it.
#[test]
fn metrics_dir_symlink_outside_is_not_read() {
    case("metrics dir symlink", |sb| {
        good_root(&sb.root, &[1, 2]);
        fs::remove_dir_all(sb.root.join("1/metrics")).unwrap();
        symlink(sb.outside.join("metrics_dir"), sb.root.join("1/metrics")).unwrap();
        let r = CheckpointManager::builder(sb.root_str())
            .read_only(true)
            .best_metric("loss", BestMode::Min)
            .build()
            .unwrap();
        assert_eq!(r.all_steps(), vec![1, 2]);
        assert_eq!(r.checkpoints()[0].metrics, None, "{:?}", r.checkpoints());
        assert_eq!(r.best_step(), Some(2));
        assert_ne!(r.metrics(1).ok().flatten(), Some(loss(OUTSIDE_LOSS)));
    });
}

/// A step's `_CHECKPOINT_METADATA` that is a symlink to a file outside the root: its content
/// must not come from outside.
///
/// Bug: as above — `Store::read` follows links, so opening a manager reads the outside file (its
/// commit time becomes the step's time) and `step_metadata` returns it.
#[test]
fn metadata_file_symlink_outside_is_not_read() {
    case("_CHECKPOINT_METADATA symlink", |sb| {
        good_root(&sb.root, &[1]);
        let meta = sb.root.join("1/_CHECKPOINT_METADATA");
        fs::remove_file(&meta).unwrap();
        symlink(sb.outside.join("file.json"), &meta).unwrap();
        let r = reader(&sb.root).unwrap();
        assert_eq!(r.all_steps(), vec![1]);
        let custom = r.step_metadata(1).map(|m| m.custom_metadata);
        assert!(
            !matches!(&custom, Ok(c) if c.get("from") == Some(&json!("outside"))),
            "{custom:?}"
        );
    });
}

/// As [`metadata_file_symlink_outside_is_not_read`], for a JSON item file: `restore` must not
/// return the outside file as the item.
///
/// Bug: `JsonHandler::restore` reads `1/state/metadata` through the store, which follows the
/// link: without a checksum manifest (a step written by Orbax) the outside file comes back as
/// the item; with one, the restore fails `Corrupt` only because the outside file's size differs,
/// and the outside file has been read either way.
#[test]
fn item_file_symlink_outside_is_not_read() {
    case("item file symlink", |sb| {
        good_root(&sb.root, &[1]);
        let item = sb.root.join("1/state/metadata");
        fs::remove_file(&item).unwrap();
        symlink(sb.outside.join("file.json"), &item).unwrap();
        drop_checksums(&sb.root.join("1"));
        let r = reader(&sb.root).unwrap();
        let restored = r.restore(Some(1));
        assert!(
            !matches!(&restored, Ok(x) if x.json_value("state").is_ok_and(|v| v["custom_metadata"]["from"] == json!("outside"))),
            "{restored:?}"
        );
    });
}

// ==================================================================== 11: restore and delete args

#[test]
fn bad_restore_and_delete_arguments() {
    case("restore of a step that does not exist", |sb| {
        good_root(&sb.root, &[1]);
        let r = reader(&sb.root).unwrap();
        expect_err(r.restore(Some(404)), ErrorKind::NotFound, &["step 404"]);
        expect_err(
            r.restore(Some(u64::MAX)),
            ErrorKind::NotFound,
            &["step 18446744073709551615"],
        );
    });
    case("restore of the latest step of an empty root", |sb| {
        let m = writer(&sb.root).build().unwrap();
        expect_err(
            m.restore(None),
            ErrorKind::NotFound,
            &["no committed steps"],
        );
    });
    case("restore_items with traversing and unknown names", |sb| {
        good_root(&sb.root, &[1]);
        let r = reader(&sb.root).unwrap();
        for name in [
            "../outside",
            "../../outside/stepdir/state",
            "/abs",
            "",
            ".",
            "state/../state",
            "state/",
            "nope",
        ] {
            expect_err(
                r.restore_items(Some(1), &[name]),
                ErrorKind::NotFound,
                &[&format!("{name:?}"), "step 1", "available items"],
            );
        }
        assert_eq!(
            r.restore_items(Some(1), &["state"])
                .unwrap()
                .json_value("state")
                .unwrap(),
            &json!({"step": 1})
        );
    });
    case("delete of a step that does not exist", |sb| {
        good_root(&sb.root, &[1]);
        let mut w = writer(&sb.root).build().unwrap();
        expect_err(w.delete(2), ErrorKind::NotFound, &["step 2"]);
        assert_eq!(w.all_steps(), vec![1]);
    });
    case(
        "save of a step that exists on disk but was not listed",
        |sb| {
            let mut w = writer(&sb.root).build().unwrap();
            // Written behind the manager's back (a second writer would be Locked out).
            fake_step(&sb.root.join("5"), &json!({"step": 5}));
            expect_err(
                w.save(
                    5,
                    Composite::new().json_value("s", json!(5)),
                    SaveOptions::default().force(true),
                ),
                ErrorKind::AlreadyExists,
                &["step 5", "reload"],
            );
            w.reload().unwrap();
            assert_eq!(w.all_steps(), vec![5]);
            expect_err(
                w.save(
                    5,
                    Composite::new().json_value("s", json!(5)),
                    SaveOptions::default().force(true),
                ),
                ErrorKind::AlreadyExists,
                &["step 5"],
            );
            assert_eq!(
                w.restore(Some(5)).unwrap().json_value("state").unwrap(),
                &json!({"step": 5}),
                "the existing step is untouched"
            );
        },
    );
}

// ==================================================================== 12: invalid options

/// Options that cannot work: `InvalidConfig` naming the option when the manager is built, and
/// nothing created (deviation D4).
#[test]
fn invalid_options_are_invalid_config_and_create_nothing() {
    type Opt = fn(CheckpointManagerBuilder) -> CheckpointManagerBuilder;
    let rows: &[(&str, (Opt, &str))] = &[
        (
            "save_interval_steps 0",
            (|b| b.save_interval_steps(0), "save_interval_steps"),
        ),
        ("keep_period 0", (|b| b.keep_period(0), "keep_period")),
        (
            "step_prefix with /",
            (|b| b.step_prefix("a/b"), "step_prefix"),
        ),
        (
            "step_prefix with backslash",
            (|b| b.step_prefix("a\\b"), "step_prefix"),
        ),
        (
            "step_prefix with NUL",
            (|b| b.step_prefix("a\0b"), "step_prefix"),
        ),
        (
            "step_prefix with tmp suffix",
            (|b| b.step_prefix("x.orbax-checkpoint-tmp"), "step_prefix"),
        ),
        (
            "todelete_subdir a/b",
            (|b| b.todelete_subdir("a/b"), "todelete_subdir"),
        ),
        (
            "todelete_subdir ..",
            (|b| b.todelete_subdir(".."), "todelete_subdir"),
        ),
        (
            "todelete_subdir .",
            (|b| b.todelete_subdir("."), "todelete_subdir"),
        ),
        (
            "todelete_subdir empty",
            (|b| b.todelete_subdir(""), "todelete_subdir"),
        ),
        (
            "todelete_subdir absolute",
            (|b| b.todelete_subdir("/tmp/trash"), "todelete_subdir"),
        ),
        (
            "todelete_subdir step-like",
            (|b| b.todelete_subdir("7"), "todelete_subdir"),
        ),
        (
            "todelete_subdir step-like with prefix",
            (
                |b| b.step_prefix("run").todelete_subdir("run_7"),
                "todelete_subdir",
            ),
        ),
        (
            "todelete_subdir tmp name",
            (
                |b| b.todelete_subdir("t.orbax-checkpoint-tmp"),
                "todelete_subdir",
            ),
        ),
        (
            "preservation_policy and max_to_keep",
            (
                |b| {
                    b.preservation_policy(Arc::new(LatestN::new(Some(2))))
                        .max_to_keep(3)
                },
                "preservation_policy",
            ),
        ),
        (
            "preservation_policy and keep_period",
            (
                |b| {
                    b.preservation_policy(Arc::new(LatestN::new(Some(2))))
                        .keep_period(10)
                },
                "preservation_policy",
            ),
        ),
        (
            "preservation_policy and keep_time_interval",
            (
                |b| {
                    b.preservation_policy(Arc::new(LatestN::new(Some(2))))
                        .keep_time_interval_secs(60)
                },
                "preservation_policy",
            ),
        ),
        (
            "empty best_metric",
            (|b| b.best_metric("", BestMode::Min), "best_metric"),
        ),
    ];
    table(rows, |sb, (opt, needle)| {
        for cleanup in [false, true] {
            let b = opt(writer(&sb.root))
                .cleanup_tmp_directories(cleanup)
                .root_metadata(loss(1.0));
            expect_err(b.build(), ErrorKind::InvalidConfig, &[needle]);
            assert!(!sb.root.exists(), "nothing created");
        }
        // On an existing root: nothing written either.
        good_root(&sb.root, &[1]);
        let before = tree_with_mtimes(&sb.root);
        expect_err(
            opt(writer(&sb.root)).cleanup_tmp_directories(true).build(),
            ErrorKind::InvalidConfig,
            &[needle],
        );
        assert_unchanged(&before, &sb.root, "refused options");
    });
}

/// A step prefix or todelete_subdir beginning or ending with whitespace builds names the store
/// cannot represent (opendal trims them; `validate_path` rejects them), so every save (or every
/// delete) would fail later: D4 ("fail early, before anything is written") asks for
/// `InvalidConfig` when the manager is built.
///
/// Bug: `StandardNameFormat::new` (ckpt-core/src/name_format.rs) and
/// `CheckpointManagerOptions::validate` (ckpt-manager/src/options.rs, via `validate_item_name`)
/// accept them: the manager builds, and the first save (or delete) fails with `InvalidArgument:
/// invalid store path`.
#[test]
fn whitespace_prefix_and_todelete_subdir_are_invalid_config() {
    type Opt = fn(CheckpointManagerBuilder) -> CheckpointManagerBuilder;
    let rows: &[(&str, (Opt, &str))] = &[
        (
            "step_prefix leading space",
            (|b| b.step_prefix(" run"), "step_prefix"),
        ),
        (
            "step_prefix trailing newline",
            (|b| b.step_prefix("run\n"), "step_prefix"),
        ),
        (
            "todelete_subdir trailing space",
            (|b| b.todelete_subdir("trash "), "todelete_subdir"),
        ),
    ];
    table(rows, |sb, (opt, needle)| {
        expect_err(
            opt(writer(&sb.root)).build(),
            ErrorKind::InvalidConfig,
            &[needle],
        );
        assert!(!sb.root.exists());
    });
}

// ==================================================================== 13: the `ckpt` tool

/// `ckpt show` of a step whose item was written by a handler this program does not have: the
/// handler string is shown, the value is null, exit status 0 (show is an inspector, not a
/// restore).
#[test]
fn cli_show_with_unknown_and_tensorstore_handlers() {
    let handlers = [
        "my_project.handlers.FancyHandler",
        ORBAX_TENSORSTORE_HANDLERS[0],
    ];
    for ts in handlers {
        case(&format!("ckpt show, handler {ts}"), |sb| {
            good_two_item_step(sb);
            set_handler(sb, "state", ts);
            let before = tree_with_mtimes(&sb.root);
            let (code, out, err) = ckpt_cli(&["show", sb.root_str(), "1", "--json"]);
            assert_eq!(code, Some(0), "stderr: {err}");
            let v: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(v["items"]["state"]["handler"], json!(ts));
            assert_eq!(v["items"]["state"]["value"], Value::Null);
            assert_eq!(v["items"]["other"]["value"], json!("fine"));
            let (code, out, _) = ckpt_cli(&["show", sb.root_str(), "1"]);
            assert_eq!(code, Some(0));
            assert!(out.contains(ts), "{out}");
            assert_unchanged(&before, &sb.root, "ckpt show");
        });
    }
}

/// `ckpt ls` of a root holding everything at once — broken metadata, NaN metrics, junk names,
/// a file named like a step, step-named symlinks to outside — lists the real steps only, with
/// null metrics where they are not numbers, exits 0 and changes nothing; `ckpt gc` with a policy
/// keeping nothing deletes the real steps only.
#[test]
fn cli_ls_and_gc_on_a_root_full_of_bad_input() {
    case("ckpt ls / gc on a messy root", |sb| {
        good_root(&sb.root, &[1, 2, 3]);
        fs::write(sb.root.join("1/_CHECKPOINT_METADATA"), b"{\"item_han").unwrap();
        fs::write(sb.root.join("2/metrics/metrics"), b"{\"loss\": NaN}").unwrap();
        for j in ["007", "5x", "+5", "1e3", "\u{663}"] {
            fake_step(&sb.root.join(j), &json!(j));
        }
        fs::write(sb.root.join("8"), b"file").unwrap();
        symlink(sb.outside.join("stepdir"), sb.root.join("9")).unwrap();
        symlink(
            sb.outside.join("stepdir"),
            sb.root.join("10.orbax-checkpoint-tmp"),
        )
        .unwrap();
        let before = tree_with_mtimes(&sb.root);
        let (code, out, err) = ckpt_cli(&["ls", "--json", sb.root_str()]);
        assert_eq!(code, Some(0), "stderr: {err}");
        let v: Value = serde_json::from_str(&out).unwrap();
        let steps: Vec<u64> = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, vec![1, 2, 3]);
        assert_eq!(v["steps"][0]["items"], json!([]), "unreadable metadata");
        assert_eq!(v["steps"][1]["metrics"], json!({"loss": null}));
        assert_eq!(v["latest_step"], json!(3));
        let (code, _, err) = ckpt_cli(&["ls", sb.root_str()]);
        assert_eq!(code, Some(0), "stderr: {err}");
        let (code, _, err) = ckpt_cli(&["show", sb.root_str(), "1"]);
        assert_eq!(code, Some(1));
        assert!(
            err.contains("Corrupt") && err.contains("_CHECKPOINT_METADATA"),
            "{err}"
        );
        let (code, _, err) = ckpt_cli(&["show", sb.root_str(), "9"]);
        assert_eq!(code, Some(1));
        assert!(err.contains("NotFound"), "{err}");
        assert_unchanged(&before, &sb.root, "ckpt ls/show");

        let policy = sb.base.join("keep_none.json");
        fs::write(&policy, r#"{"type": "LatestN", "n": 0}"#).unwrap();
        // A policy keeping nothing needs --allow-empty (issue 11, item 9).
        let (code, out, err) = ckpt_cli(&[
            "gc",
            sb.root_str(),
            "--policy",
            policy.to_str().unwrap(),
            "--json",
            "--allow-empty",
        ]);
        fs::remove_file(&policy).unwrap();
        assert_eq!(code, Some(0), "stderr: {err}");
        let d: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(d.as_array().unwrap().len(), 3, "{d}");
        for s in ["1", "2", "3"] {
            assert!(!sb.root.join(s).exists(), "step {s} deleted");
        }
        for j in [
            "007",
            "5x",
            "+5",
            "1e3",
            "\u{663}",
            "8",
            "9",
            "10.orbax-checkpoint-tmp",
        ] {
            assert!(fs::symlink_metadata(sb.root.join(j)).is_ok(), "{j} kept");
        }
    });
}

#[test]
fn cli_junk_arguments() {
    case("ckpt with junk arguments", |sb| {
        good_root(&sb.root, &[1]);
        let before = tree_with_mtimes(&sb.root);
        let one_line = |args: &[&str], needle: &str| {
            let (code, out, err) = ckpt_cli(args);
            assert_eq!(code, Some(1), "{args:?}: {err}");
            assert!(out.is_empty(), "{args:?}: {out}");
            assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
            assert!(err.starts_with("ckpt: "), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            assert!(err.contains(needle), "{args:?}: {err:?} lacks {needle:?}");
        };
        one_line(
            &["ls", sb.root_str(), "--step-prefix", "a/b"],
            "InvalidConfig",
        );
        one_line(
            &["show", sb.root_str(), "1", "--step-prefix", "a/b"],
            "step_prefix",
        );
        one_line(&["show", sb.root_str(), " 1"], "InvalidArgument");
        one_line(&["show", sb.root_str(), "\u{661}"], "InvalidArgument");
        one_line(&["ls", "s4://bucket/x"], "\"s4\"");
        one_line(&["ls", ""], "InvalidArgument");
        // clap's own errors: usage on stderr, exit 2, no panic.
        for args in [
            &["frobnicate"][..],
            &["ls"],
            &["show", sb.root_str()],
            &["ls", sb.root_str(), "--step-format-fixed-length", "x"],
        ] {
            let (code, _, err) = ckpt_cli(args);
            assert_eq!(code, Some(2), "{args:?}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
        assert_unchanged(&before, &sb.root, "ckpt with junk arguments");
        fs::write(sb.root.join("1/state/metadata"), b"{\"trunc").unwrap();
        let broken = tree_with_mtimes(&sb.root);
        one_line(&["show", sb.root_str(), "1"], "1/state/metadata");
        assert_unchanged(&broken, &sb.root, "ckpt show of a corrupt item");
    });
}
