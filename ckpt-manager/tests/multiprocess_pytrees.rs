//! Issue 15: ONE Orbax pytree item whose array leaves are sharded across the 4 processes of a job
//! (`Composite::pytree_shard`), in Orbax 0.12.8's multi-process layout — each process writes
//! `<item>/ocdbt.process_<i>/`, the primary `_METADATA`, every `.zarray` and the replicated
//! leaves, and merges the per-process databases into the item's `manifest.ocdbt` before the
//! commit — coordinated through a real etcd server, in real child processes (this test binary
//! started again in a child role, as tests/multiprocess does):
//!
//! - 4 processes save 3 steps of a tree of sharded arrays (f32, i32, f64, u16, bf16; 1-d to 3-d;
//!   one leaf with uneven shards 3, 3, 3, 1) and replicated leaves (scalars, a small array);
//! - 2 processes restore each their half of every sharded leaf (`restore_leaf_slice`), 1 process
//!   every whole array (`restore`, `restore_leaf_slice`), bit-exactly; `verify_step` passes;
//! - with `CKPT_MP_PYTREES_OUT` set (by `cargo xtask interop`), the root is kept there with a
//!   `pytrees.json` for `xtask/interop/arrays/check_ckpt_pytrees.py` (Orbax restores it).
//!
//! - a shard item the primary gives as a plain pytree fails on every process, naming it.
//!
//! Without etcd: one process saving a `PyTreeShard` whose shards cover every array gives a
//! restorable item; one whose shard leaves part of an array unwritten commits nothing; a slice
//! inside one chunk reads far fewer bytes than the whole leaf (a counting store).
//!
//! The same 4-process save and restores run on local disk and on S3 (moto, commit-file protocol).
//!
//! Needs `CKPT_TEST_ETCD` (`cargo xtask etcd-server`, or `cargo xtask ci`) and, for the S3 test,
//! the moto server of `cargo xtask s3-server`.
//! Run: `cargo test -p ckpt-manager --features etcd --test multiprocess_pytrees`.

#[path = "s3_common/mod.rs"]
mod s3_common;
#[path = "coordination/support.rs"]
mod support;

use ckpt_manager::coordination::Coordinator;
use ckpt_manager::handlers::orbax_array::PyTreeShard;
use ckpt_manager::handlers::{DType, KeyEntry, PyTree, Tensor};
use ckpt_manager::{CheckpointManager, Composite, ErrorKind, SaveOptions};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use support::{all_succeed, env, etcd_endpoint, say, spawn_children, wait_all, ChildSpec};

/// A timeout for waits that must pass.
const PASS: Duration = Duration::from_secs(300);
/// How long a whole multi-process test may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(1200);
/// The processes of the saving job.
const PROCESSES: usize = 4;
/// The steps saved.
const STEPS: u64 = 3;

// ------------------------------------------------------------------------- the data

/// A sharded leaf: its param name, dtype, global shape, the axis it is split along and the
/// shard extent along it (the last shard may be shorter: uneven shards).
struct Sharded {
    name: &'static str,
    dtype: DType,
    global: &'static [usize],
    axis: usize,
    extent: usize,
}

const SHARDED: &[Sharded] = &[
    Sharded {
        name: "params.w1",
        dtype: DType::F32,
        global: &[16],
        axis: 0,
        extent: 4,
    },
    Sharded {
        name: "params.w2",
        dtype: DType::I32,
        global: &[8, 6],
        axis: 0,
        extent: 2,
    },
    Sharded {
        name: "params.w3",
        dtype: DType::F64,
        global: &[3, 4, 5],
        axis: 1,
        extent: 1,
    },
    Sharded {
        name: "opt.mu",
        dtype: DType::BF16,
        global: &[2, 8],
        axis: 1,
        extent: 2,
    },
    // Uneven: 10 rows over 4 processes, 3 + 3 + 3 + 1, chunks of 3 rows.
    Sharded {
        name: "params.uneven",
        dtype: DType::U16,
        global: &[10, 3],
        axis: 0,
        extent: 3,
    },
];

/// The value of element `flat` (C-order index in the global array) of leaf `leaf` at `step`.
fn value(leaf: usize, step: u64, flat: usize) -> f64 {
    let v = (flat as f64) * 0.5 + (step as f64) * 100.0 + (leaf as f64) * 7.0;
    if leaf.is_multiple_of(2) {
        -v
    } else {
        v
    }
}

fn encode(dtype: DType, v: f64) -> Vec<u8> {
    match dtype {
        DType::F32 => (v as f32).to_le_bytes().to_vec(),
        DType::F64 => v.to_le_bytes().to_vec(),
        DType::I32 => ((v * 2.0) as i32).to_le_bytes().to_vec(),
        DType::U16 => ((v.abs() * 2.0) as u16).to_le_bytes().to_vec(),
        DType::BF16 => ckpt_manager::handlers::half::bf16::from_f64(v)
            .to_bits()
            .to_le_bytes()
            .to_vec(),
        other => panic!("no test values for {other}"),
    }
}

/// The box at `offset` of `shape` of leaf `leaf` of `step`'s global array.
fn block(leaf: usize, step: u64, offset: &[usize], shape: &[usize]) -> Tensor {
    let s = &SHARDED[leaf];
    let mut bytes = Vec::new();
    let n: usize = shape.iter().product();
    for k in 0..n {
        // The box index of element k (C order), then its global flat index.
        let mut rem = k;
        let mut idx = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        let mut flat = 0;
        for d in 0..shape.len() {
            flat = flat * s.global[d] + offset[d] + idx[d];
        }
        bytes.extend(encode(s.dtype, value(leaf, step, flat)));
    }
    Tensor::new(s.dtype, shape.to_vec(), bytes).unwrap()
}

/// Process `i`'s shard of leaf `leaf`: (offset, shape).
fn shard_box(leaf: usize, i: usize) -> (Vec<usize>, Vec<usize>) {
    let s = &SHARDED[leaf];
    let mut offset = vec![0; s.global.len()];
    let mut shape = s.global.to_vec();
    offset[s.axis] = i * s.extent;
    shape[s.axis] = s.extent.min(s.global[s.axis] - i * s.extent);
    (offset, shape)
}

/// The half of leaf `leaf` process `i` of 2 restores: split along its shard axis.
fn half_box(leaf: usize, i: usize) -> (Vec<usize>, Vec<usize>) {
    let s = &SHARDED[leaf];
    let g = s.global[s.axis];
    let mut offset = vec![0; s.global.len()];
    let mut shape = s.global.to_vec();
    offset[s.axis] = i * (g / 2);
    shape[s.axis] = if i == 0 { g / 2 } else { g - g / 2 };
    (offset, shape)
}

fn scalar_i64(v: i64) -> PyTree {
    PyTree::Scalar(Tensor::from_slice(Vec::<usize>::new(), &[v]).unwrap())
}

fn scalar_f64(v: f64) -> PyTree {
    PyTree::Scalar(Tensor::from_slice(Vec::<usize>::new(), &[v]).unwrap())
}

fn replicated(step: u64) -> Tensor {
    Tensor::from_slice([5], &[1u8, 2, 3, 4, step as u8]).unwrap()
}

/// Puts `value` at param name `name` (keys joined by `.`) of dict tree `tree`.
fn put(tree: PyTree, name: &str, value: PyTree) -> PyTree {
    let (head, rest) = match name.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (name, None),
    };
    let PyTree::Dict(mut m) = tree else {
        panic!("not a dict")
    };
    let inner = match rest {
        None => value,
        Some(r) => put(m.remove(head).unwrap_or_else(PyTree::dict), r, value),
    };
    m.insert(head.to_string(), inner);
    PyTree::Dict(m)
}

/// The whole tree of `step` (what one process would save).
fn global_tree(step: u64) -> PyTree {
    let mut t = PyTree::dict()
        .with("step", scalar_i64(step as i64))
        .with("lr", scalar_f64(0.001 * step as f64));
    t = put(t, "emb", PyTree::Array(replicated(step)));
    for (leaf, s) in SHARDED.iter().enumerate() {
        let zeros = vec![0; s.global.len()];
        t = put(
            t,
            s.name,
            PyTree::Array(block(leaf, step, &zeros, s.global)),
        );
    }
    t
}

/// Process `i`'s part of `step`: its shard of every sharded leaf, the replicated leaves.
fn part(step: u64, i: usize) -> PyTreeShard {
    let mut t = PyTree::dict()
        .with("step", scalar_i64(step as i64))
        .with("lr", scalar_f64(0.001 * step as f64));
    t = put(t, "emb", PyTree::Array(replicated(step)));
    for (leaf, s) in SHARDED.iter().enumerate() {
        let (offset, shape) = shard_box(leaf, i);
        t = put(t, s.name, PyTree::Array(block(leaf, step, &offset, &shape)));
    }
    let mut shard = PyTreeShard::new(t);
    for (leaf, s) in SHARDED.iter().enumerate() {
        let (offset, _) = shard_box(leaf, i);
        let mut chunks = s.global.to_vec();
        chunks[s.axis] = s.extent;
        shard = shard
            .shard_chunked(s.name, s.global, &offset, &chunks)
            .unwrap();
    }
    shard
}

fn same_bits(got: &Tensor, want: &Tensor, what: &str) {
    assert_eq!(got.dtype(), want.dtype(), "{what}");
    assert_eq!(got.shape(), want.shape(), "{what}");
    assert!(got.as_bytes() == want.as_bytes(), "{what}: bytes differ");
}

// ------------------------------------------------------------------------- the children

/// The child role: does nothing unless `CKPT_COORD_CHILD` is set (this binary started by a
/// test below); then joins the job on etcd, runs the role and exits (0: its checks passed).
#[test]
fn child_process_entry() {
    let Some((role, c)) = support::join_as_child(PASS) else {
        return;
    };
    let c: Arc<dyn Coordinator> = Arc::new(c);
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match role.as_str() {
        "save" => role_save(&c),
        "restore" => role_restore(&c),
        "mismatch" => role_mismatch(&c),
        "dtype_mismatch" => role_dtype_mismatch(&c),
        other => panic!("unknown child role {other}"),
    }))
    .is_ok();
    drop(c);
    support::end_child(ok)
}

fn manager(c: &Arc<dyn Coordinator>) -> CheckpointManager {
    CheckpointManager::builder(env("CKPT_MP_ROOT"))
        .coordinator(Arc::clone(c))
        .build()
        .unwrap()
}

/// Saves steps 1..=STEPS, each process its part of item `default`.
fn role_save(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let mut m = manager(c);
    for step in 1..=STEPS {
        let shard = part(step, i);
        let saved = m
            .save(
                step,
                Composite::new().pytree_shard("default", &shard),
                SaveOptions::default(),
            )
            .unwrap_or_else(|e| panic!("process {i}, step {step}: {e:#}"));
        assert!(saved);
    }
    m.close().unwrap();
}

/// Each of 2 processes restores its half of every sharded leaf, at every step, bit-exactly.
fn role_restore(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let m = manager(c);
    for step in 1..=STEPS {
        for (leaf, s) in SHARDED.iter().enumerate() {
            let (offset, shape) = half_box(leaf, i);
            let got = m
                .restore_leaf_slice(Some(step), "default", s.name, &offset, &shape)
                .unwrap();
            same_bits(
                &got,
                &block(leaf, step, &offset, &shape),
                &format!("step {step}, {}", s.name),
            );
        }
    }
    say("RESTORED");
}

/// Processes 1..3 give item `default` as a pytree shard, the primary (0) as a plain pytree:
/// every process's save fails with `InvalidArgument` naming the item, nothing is committed.
fn role_mismatch(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let mut m = manager(c);
    let shard = part(1, i);
    let whole = global_tree(1);
    let items = if i == 0 {
        Composite::new().pytree("default", &whole)
    } else {
        Composite::new().pytree_shard("default", &shard)
    };
    let e = m.save(1, items, SaveOptions::default()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:#}");
    assert!(
        e.to_string().contains("pytree shard item \"default\""),
        "{e:#}"
    );
    assert_eq!(m.all_steps(), Vec::<u64>::new());
    m.close().unwrap();
}

/// Process 1 gives its rows of leaf `w` (global [4, 2]) as i32 where every other process gives
/// f32: every process fails with `InvalidArgument` naming the leaf and process 1; nothing is
/// committed (the chunks would have been merged into one array of mixed dtypes).
fn role_dtype_mismatch(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let n = c.process_count();
    let mut m = manager(c);
    let rows = 4 / n.min(4);
    let data = if i == 1 {
        Tensor::from_slice([rows, 2], &vec![7i32; rows * 2]).unwrap()
    } else {
        Tensor::from_slice([rows, 2], &vec![1.5f32; rows * 2]).unwrap()
    };
    let shard = PyTreeShard::new(PyTree::dict().with("w", PyTree::Array(data)))
        .shard("w", &[rows * n, 2], &[rows * i, 0])
        .unwrap();
    let e = m
        .save(
            1,
            Composite::new().pytree_shard("default", &shard),
            SaveOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:#}");
    let text = e.to_string();
    assert!(
        text.contains("\"w\"") && text.contains("process 1"),
        "{e:#}"
    );
    assert!(text.contains("dtype"), "{e:#}");
    assert_eq!(m.all_steps(), Vec::<u64>::new());
    m.close().unwrap();
}

// ------------------------------------------------------------------------- the parent

fn spec(role: &'static str, endpoint: &str, count: usize, env: &[(&str, String)]) -> ChildSpec {
    ChildSpec::new("child_process_entry", role, endpoint, count, env)
}

/// The leaves of `tree` as `check_ckpt_pytrees.py` reads them (as `write_pytree_roots` writes).
fn describe(tree: &PyTree) -> Value {
    let leaves: Vec<Value> = tree
        .leaves()
        .into_iter()
        .map(|(path, v)| {
            let path: Vec<Value> = path
                .iter()
                .map(|k| match k {
                    KeyEntry::Key(s) => json!({"dict": s}),
                    KeyEntry::Index(i) => json!({"list": i}),
                })
                .collect();
            match v {
                PyTree::Array(t) | PyTree::Scalar(t) => json!({
                    "path": path,
                    "kind": if matches!(v, PyTree::Scalar(_)) { "scalar" } else { "array" },
                    "dtype": t.dtype().name(),
                    "shape": t.shape(),
                    "data_hex": t.as_bytes().iter().map(|b| format!("{b:02x}")).collect::<String>(),
                }),
                other => panic!("unexpected leaf {other:?}"),
            }
        })
        .collect();
    json!(leaves)
}

#[test]
fn a_pytree_sharded_over_4_processes_is_one_orbax_item_restored_on_2_and_on_1() {
    let test = "a_pytree_sharded_over_4_processes_is_one_orbax_item_restored_on_2_and_on_1";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // Kept for Orbax when `cargo xtask interop` asks (CKPT_MP_PYTREES_OUT), else temporary.
    let out = std::env::var("CKPT_MP_PYTREES_OUT")
        .ok()
        .filter(|s| !s.is_empty())
        .map(std::path::PathBuf::from);
    let root = match &out {
        Some(o) => {
            std::fs::create_dir_all(o).unwrap();
            o.join("sharded_4_processes")
        }
        None => dir.path().join("root"),
    };
    let steps = save_and_restore(&endpoint, root.to_str().unwrap(), Some(&root));
    if let Some(o) = out {
        let spec = json!({"roots": {"sharded_4_processes": {"steps": steps, "layout": "ocdbt"}}});
        std::fs::write(
            o.join("pytrees.json"),
            serde_json::to_string_pretty(&spec).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn a_pytree_sharded_over_4_processes_on_s3_is_one_item_restored_on_2_and_on_1() {
    let test = "a_pytree_sharded_over_4_processes_on_s3_is_one_item_restored_on_2_and_on_1";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let Some((root, _)) = s3_common::fresh_root("mp-pytrees") else {
        return;
    };
    save_and_restore(&endpoint, &root, None);
}

/// 4 processes save STEPS steps into `root` (a path or URI), 2 restore halves, then this
/// process checks every step whole, bit-exactly, and with `verify_step` (and, on a local disk
/// `local`, the files of Orbax's layout). Returns per step what `check_ckpt_pytrees.py` reads.
fn save_and_restore(
    endpoint: &str,
    root: &str,
    local: Option<&std::path::Path>,
) -> serde_json::Map<String, Value> {
    let env = [("CKPT_MP_ROOT", root.to_string())];
    all_succeed(&wait_all(
        spawn_children(&spec("save", endpoint, PROCESSES, &env)),
        HANG,
    ));
    all_succeed(&wait_all(
        spawn_children(&spec("restore", endpoint, 2, &env)),
        HANG,
    ));

    // One process: the whole tree, every whole leaf, the files and their checksums.
    let m = CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), (1..=STEPS).collect::<Vec<_>>());
    let mut steps = serde_json::Map::new();
    for step in 1..=STEPS {
        let want = global_tree(step);
        let r = m.restore(Some(step)).unwrap();
        let got = r.pytree("default").unwrap();
        let (got_leaves, want_leaves) = (got.leaves(), want.leaves());
        assert_eq!(got_leaves.len(), want_leaves.len(), "step {step}");
        for ((gp, g), (wp, w)) in got_leaves.iter().zip(&want_leaves) {
            assert_eq!(gp, wp, "step {step}");
            match (g, w) {
                (PyTree::Array(g), PyTree::Array(w)) | (PyTree::Scalar(g), PyTree::Scalar(w)) => {
                    same_bits(g, w, &format!("step {step}, {gp:?}"))
                }
                other => panic!("step {step}, {gp:?}: {other:?}"),
            }
        }
        for (leaf, s) in SHARDED.iter().enumerate() {
            let zeros = vec![0; s.global.len()];
            let whole = m
                .restore_leaf_slice(Some(step), "default", s.name, &zeros, s.global)
                .unwrap();
            same_bits(
                &whole,
                &block(leaf, step, &zeros, s.global),
                &format!("step {step}, whole {}", s.name),
            );
        }
        let name = m.step_dir_name(step);
        let report = ckpt_manager::verify_step(m.store().as_ref(), &name).unwrap();
        assert!(report.is_ok(), "step {step}: {report:?}");
        // Orbax's layout: one database per process, merged at the item's top.
        for i in 0..PROCESSES {
            if let Some(local) = local {
                let item = local.join(&name).join("default");
                for f in ["_METADATA", "manifest.ocdbt", "commit_success.txt"] {
                    assert!(item.join(f).is_file(), "step {step}: {f}");
                }
                assert!(
                    item.join(format!("ocdbt.process_{i}/manifest.ocdbt"))
                        .is_file(),
                    "step {step}: process {i}'s database"
                );
                assert!(
                    item.join(format!("array_metadatas/process_{i}")).is_file(),
                    "step {step}: process {i}'s array metadata"
                );
            }
            // Every file a process wrote is in the checksum manifest.
            assert!(
                report
                    .files
                    .iter()
                    .any(|(f, _)| f.contains(&format!("ocdbt.process_{i}/"))),
                "step {step}: no checksum of process {i}'s files: {report:?}"
            );
        }
        steps.insert(step.to_string(), json!({"default": describe(&want)}));
    }
    steps
}

/// Runs `role` (whose children each assert their own failure) on 4 processes and checks that
/// the root holds no step, committed or not.
fn every_process_fails_and_nothing_is_written(test: &str, role: &'static str) {
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let env = [("CKPT_MP_ROOT", root.to_str().unwrap().to_string())];
    all_succeed(&wait_all(
        spawn_children(&spec(role, &endpoint, PROCESSES, &env)),
        HANG,
    ));
    let names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "metadata" && !n.starts_with('.') && !n.starts_with('_'))
        .collect();
    assert!(names.is_empty(), "{role}: {names:?}");
}

#[test]
fn a_shard_item_the_primary_gives_as_a_plain_pytree_fails_on_every_process() {
    every_process_fails_and_nothing_is_written(
        "a_shard_item_the_primary_gives_as_a_plain_pytree_fails_on_every_process",
        "mismatch",
    );
}

#[test]
fn shards_of_one_leaf_with_different_dtypes_fail_on_every_process() {
    every_process_fails_and_nothing_is_written(
        "shards_of_one_leaf_with_different_dtypes_fail_on_every_process",
        "dtype_mismatch",
    );
}

#[test]
fn one_process_saving_shards_that_cover_every_array_gives_a_whole_item() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::builder(dir.path().to_str().unwrap())
        .build()
        .unwrap();
    let t = Tensor::from_slice([4, 2], &[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]).unwrap();
    let tree = PyTree::dict()
        .with("w", PyTree::Array(t.clone()))
        .with("n", scalar_i64(3));
    let whole = PyTreeShard::new(tree.clone())
        .shard_chunked("w", &[4, 2], &[0, 0], &[2, 2])
        .unwrap();
    assert!(m
        .save(
            1,
            Composite::new().pytree_shard("default", &whole),
            SaveOptions::default()
        )
        .unwrap());
    let got = m.restore(Some(1)).unwrap();
    assert_eq!(got.pytree("default").unwrap(), &tree);
    let row = m
        .restore_leaf_slice(Some(1), "default", "w", &[2, 1], &[1, 1])
        .unwrap();
    assert_eq!(row.to_vec::<f32>().unwrap(), vec![6.0]);
    let root = dir.path().join(m.step_dir_name(1)).join("default");
    assert!(root.join("ocdbt.process_0/manifest.ocdbt").is_file());
    assert!(root.join("manifest.ocdbt").is_file());

    // Half of the array only: the merge counts 1 of its 2 chunks written.
    let half = Tensor::from_slice([2, 2], &[1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let part = PyTreeShard::new(PyTree::dict().with("w", PyTree::Array(half)))
        .shard("w", &[4, 2], &[0, 0])
        .unwrap();
    let e = m
        .save(
            2,
            Composite::new().pytree_shard("default", &part),
            SaveOptions::default(),
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:#}");
    assert!(
        e.to_string().contains("do not cover the global array"),
        "{e:#}"
    );
    assert_eq!(m.all_steps(), vec![1]);
    let e = m
        .restore_leaf_slice(Some(1), "default", "w", &[3, 0], &[2, 2])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e:#}");
}

#[test]
fn a_leaf_slice_reads_only_the_chunks_it_overlaps() {
    use ckpt_manager::storage::{CountingStore, Store};
    let dir = tempfile::tempdir().unwrap();
    let counting = Arc::new(CountingStore::new(
        ckpt_manager::storage::open(dir.path().to_str().unwrap()).unwrap(),
    ));
    let mut m = CheckpointManager::builder_with_store(Arc::clone(&counting) as Arc<dyn Store>)
        .build()
        .unwrap();
    // 8 rows of 1024 f32 that zstd cannot shrink much: each 4 KiB row chunk is stored out of
    // line (over 1024 bytes).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let values: Vec<f32> = (0..8 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32
        })
        .collect();
    let t = Tensor::from_slice([8, 1024], &values).unwrap();
    let tree = PyTree::dict().with("w", PyTree::Array(t));
    let part = PyTreeShard::new(tree)
        .shard_chunked("w", &[8, 1024], &[0, 0], &[1, 1024])
        .unwrap();
    m.save(
        1,
        Composite::new().pytree_shard("default", &part),
        SaveOptions::default(),
    )
    .unwrap();
    counting.reset();
    let row = m
        .restore_leaf_slice(Some(1), "default", "w", &[5, 100], &[1, 8])
        .unwrap();
    assert_eq!(
        row.to_vec::<f32>().unwrap(),
        values[5 * 1024 + 100..5 * 1024 + 108]
    );
    let one = counting.counts().bytes_read;
    counting.reset();
    let whole = m
        .restore_leaf_slice(Some(1), "default", "w", &[0, 0], &[8, 1024])
        .unwrap();
    assert_eq!(whole.to_vec::<f32>().unwrap(), values);
    let all = counting.counts().bytes_read;
    eprintln!("a one-chunk slice read {one} bytes, the whole array {all}");
    // One chunk of 8 (plus the same manifest and node reads): well under half of the whole.
    assert!(
        one * 2 < all,
        "a one-chunk slice read {one} bytes, the whole array {all}"
    );
}
