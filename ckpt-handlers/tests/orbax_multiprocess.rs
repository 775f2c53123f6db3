//! Issue 15: the root a 4-process JAX job wrote with orbax-checkpoint 0.12.8
//! (`testdata/orbax/multiprocess/`, made by `xtask/interop/arrays/gen_orbax_multiprocess.py`:
//! `jax.Array` leaves sharded over the processes, each process writing
//! `default/ocdbt.process_<i>/`, process 0 merging), read by ckpt without Python:
//!
//! `cargo xtask interop` runs these tests again on a root JAX writes there and then
//! (`CKPT_ORBAX_MULTIPROCESS_DIR`).
//!
//! - every leaf restores bit-exactly against `values.json`, and every box a process held
//!   (`restore_leaf_box`) equals that box of the global array;
//! - ckpt writing the same shards as 4 processes (`save_shard` per process, then
//!   `merge_process_databases`) gives the same keys in every process's database and in the
//!   merged one as Orbax wrote, the same `.zarray` bytes, and chunks that decode to the same
//!   bytes.

use ckpt_handlers::ocdbt::{Database, DbFiles};
use ckpt_handlers::orbax_array::{
    merge_process_databases, restore_leaf_box, restore_tree, save_shard, zarr, ArrayOptions,
    PyTreeShard, ShardRole,
};
use ckpt_handlers::{ItemDir, PyTree, Tensor};
use ckpt_storage::LocalStore;
use serde_json::Value as Json;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The committed root, or the one `cargo xtask interop` just had JAX write
/// (`CKPT_ORBAX_MULTIPROCESS_DIR`).
fn data_dir() -> PathBuf {
    match std::env::var("CKPT_ORBAX_MULTIPROCESS_DIR") {
        Ok(d) if !d.is_empty() => PathBuf::from(d),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/orbax/multiprocess"),
    }
}

fn values() -> Json {
    serde_json::from_slice(&std::fs::read(data_dir().join("values.json")).unwrap()).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn usizes(v: &Json) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

/// The global arrays of `step`: param name → (dtype name, shape, bytes, is scalar).
fn globals(values: &Json, step: &str) -> BTreeMap<String, (String, Vec<usize>, Vec<u8>, bool)> {
    values["steps"][step]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["param_name"].as_str().unwrap().to_string(),
                (
                    l["dtype"].as_str().unwrap().to_string(),
                    usizes(&l["shape"]),
                    unhex(l["data_hex"].as_str().unwrap()),
                    l["kind"] == "scalar",
                ),
            )
        })
        .collect()
}

/// The box at `offset` of `shape` of a C-order array of `global` shape (`esize`-byte elements).
fn cut(bytes: &[u8], global: &[usize], offset: &[usize], shape: &[usize], esize: usize) -> Vec<u8> {
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n * esize);
    for k in 0..n {
        let mut rem = k;
        let mut idx = vec![0; shape.len()];
        for d in (0..shape.len()).rev() {
            idx[d] = rem % shape[d];
            rem /= shape[d];
        }
        let mut flat = 0;
        for d in 0..shape.len() {
            flat = flat * global[d] + offset[d] + idx[d];
        }
        out.extend_from_slice(&bytes[flat * esize..(flat + 1) * esize]);
    }
    out
}

#[test]
fn a_root_written_by_4_jax_processes_restores_bit_exactly_whole_and_by_box() {
    let values = values();
    let mut checked = 0;
    for step in ["0", "1"] {
        let store = LocalStore::open(data_dir().join("root").join(step)).unwrap();
        let dir = ItemDir::new(&store, "default");
        let tree = restore_tree(&dir, None).unwrap();
        let want = globals(&values, step);
        assert_eq!(tree.leaves().len(), want.len(), "step {step}");
        for (param, (dtype, shape, bytes, scalar)) in &want {
            let got = match tree.get(param) {
                Some(PyTree::Array(t)) if !scalar => t,
                Some(PyTree::Scalar(t)) if *scalar => t,
                other => panic!("step {step}, {param}: {other:?}"),
            };
            assert_eq!(got.dtype().name(), dtype, "step {step}, {param}");
            assert_eq!(got.shape(), shape.as_slice(), "step {step}, {param}");
            assert!(got.as_bytes() == bytes.as_slice(), "step {step}, {param}");
            checked += 1;
        }
        // Every box any process held, read alone.
        for (process, held) in values["held"].as_object().unwrap() {
            for (param, shards) in held.as_object().unwrap() {
                let (_, global, bytes, _) = &want[param];
                for s in shards.as_array().unwrap() {
                    let (offset, shape): (Vec<usize>, Vec<usize>) = s["index"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| {
                            let r = usizes(r);
                            (r[0], r[1] - r[0])
                        })
                        .unzip();
                    let got = restore_leaf_box(&dir, param, &offset, &shape).unwrap();
                    let esize = got.dtype().size_in_bytes();
                    assert!(
                        got.as_bytes() == cut(bytes, global, &offset, &shape, esize).as_slice(),
                        "step {step}, {param}, process {process}'s box {offset:?}+{shape:?}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 40, "{checked}");
}

/// A sharded leaf as one process holds it: param name, global shape, offset, chunk shape.
type ShardBox = (String, Vec<usize>, Vec<usize>, Vec<usize>);

/// A database's files on local disk below `dir`.
struct Files(PathBuf);

impl DbFiles for Files {
    fn size(&self, path: &str) -> ckpt_core::Result<u64> {
        Ok(std::fs::metadata(self.0.join(path)).unwrap().len())
    }
    fn read_range(&self, path: &str, range: std::ops::Range<u64>) -> ckpt_core::Result<Vec<u8>> {
        let all = std::fs::read(self.0.join(path)).unwrap();
        Ok(all[range.start as usize..range.end as usize].to_vec())
    }
}

/// Every key of the database in `dir` and its value's bytes.
fn database(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let files = Files(dir.to_path_buf());
    let manifest = std::fs::read(dir.join("manifest.ocdbt")).unwrap();
    let db = Database::open(&files, &manifest, "manifest").unwrap();
    db.entries()
        .keys()
        .map(|k| {
            (
                String::from_utf8(k.clone()).unwrap(),
                db.read(&files, k).unwrap(),
            )
        })
        .collect()
}

/// The chunk's raw bytes (zstd-decoded, `len` bytes).
fn decoded(stored: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    zarr::decode_plain(stored, true, &mut out, "chunk").unwrap();
    out
}

#[test]
fn ckpt_writes_the_keys_and_bytes_orbax_wrote_for_the_same_shards() {
    let values = values();
    let orbax_item = data_dir().join("root/0/default");
    let want = globals(&values, "0");
    let merged = database(&orbax_item);
    // The chunk shape of every array, from Orbax's merged `.zarray`s.
    let mut metas = BTreeMap::new();
    for (k, v) in &merged {
        if let Some(p) = k.strip_suffix("/.zarray") {
            metas.insert(p.to_string(), zarr::parse_zarray(v, k).unwrap());
        }
    }
    let out = tempfile::tempdir().unwrap();
    let store = LocalStore::open(out.path()).unwrap();
    let dir = ItemDir::new(&store, "default");
    let processes = values["processes"].as_u64().unwrap() as usize;
    for i in 0..processes {
        let orbax_keys: BTreeSet<String> = database(&orbax_item.join(format!("ocdbt.process_{i}")))
            .into_keys()
            .collect();
        // What process i wrote, as ckpt is told it: the one chunk of each sharded leaf it wrote
        // (its shard, Orbax's write_shape), the whole arrays on process 0.
        let mut tree = PyTree::dict();
        let mut shards: Vec<ShardBox> = Vec::new();
        for (param, (dtype, global, bytes, scalar)) in &want {
            let meta = &metas[param];
            let esize = meta.dtype.size_in_bytes();
            let written: Vec<&String> = orbax_keys
                .iter()
                .filter(|k| {
                    k.strip_prefix(param.as_str())
                        .and_then(|r| r.strip_prefix('/'))
                        .is_some_and(|r| r != ".zarray")
                })
                .collect();
            let whole = meta.chunks == *global;
            let leaf = if *scalar {
                PyTree::Scalar(Tensor::new(meta.dtype, Vec::<usize>::new(), bytes.clone()).unwrap())
            } else if whole || written.is_empty() {
                PyTree::Array(Tensor::new(meta.dtype, global.clone(), bytes.clone()).unwrap())
            } else {
                assert_eq!(written.len(), 1, "{param} on process {i}");
                let key = written[0].rsplit_once('/').unwrap().1;
                let index: Vec<usize> = key.split('.').map(|x| x.parse().unwrap()).collect();
                let offset: Vec<usize> =
                    index.iter().zip(&meta.chunks).map(|(a, c)| a * c).collect();
                let data = cut(bytes, global, &offset, &meta.chunks, esize);
                shards.push((param.clone(), global.clone(), offset, meta.chunks.clone()));
                PyTree::Array(Tensor::new(meta.dtype, meta.chunks.clone(), data).unwrap())
            };
            assert_eq!(meta.dtype.name(), dtype);
            tree = put(tree, param, leaf);
        }
        let mut part = PyTreeShard::new(tree);
        for (param, global, offset, chunks) in &shards {
            part = part.shard_chunked(param, global, offset, chunks).unwrap();
        }
        let role = ShardRole {
            process: i,
            primary: i == 0,
            merge: false,
        };
        save_shard(&dir, &part, role, &ArrayOptions::default()).unwrap();
        let ours = database(&out.path().join(format!("default/ocdbt.process_{i}")));
        let ours_keys: BTreeSet<String> = ours.keys().cloned().collect();
        assert_eq!(ours_keys, orbax_keys, "process {i}'s database");
    }
    merge_process_databases(&dir, &(0..processes).collect::<Vec<_>>()).unwrap();
    let ours = database(&out.path().join("default"));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        merged.keys().collect::<Vec<_>>(),
        "merged database"
    );
    for (k, v) in &merged {
        if k.ends_with("/.zarray") {
            assert_eq!(
                String::from_utf8_lossy(&ours[k]),
                String::from_utf8_lossy(v),
                "{k}"
            );
        } else {
            let meta = &metas[k.rsplit_once('/').unwrap().0];
            let len = meta.chunks.iter().product::<usize>().max(1) * meta.dtype.size_in_bytes();
            assert_eq!(decoded(&ours[k], len), decoded(v, len), "{k}");
        }
    }
    // And ckpt's item restores as Orbax's does.
    let a = restore_tree(&dir, None).unwrap();
    let orbax_store = LocalStore::open(data_dir().join("root/0")).unwrap();
    let b = restore_tree(&ItemDir::new(&orbax_store, "default"), None).unwrap();
    assert_eq!(a, b);
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

#[test]
fn a_box_of_a_leaf_the_item_lacks_names_the_leaf() {
    let store = LocalStore::open(data_dir().join("root").join("1")).unwrap();
    let dir = ItemDir::new(&store, "default");
    let e = restore_leaf_box(&dir, "nope", &[0], &[1]).unwrap_err();
    assert_eq!(e.kind(), ckpt_core::ErrorKind::NotFound, "{e:#}");
    assert!(e.to_string().contains("no array leaf \"nope\""), "{e:#}");
}

#[test]
fn shard_placements_whose_sizes_cannot_be_had_are_invalid_arguments() {
    let w = || PyTree::dict().with("w", Tensor::from_slice([2], &[1.5f32, 2.5]).unwrap());
    // The global array's size overflows.
    let e = PyTreeShard::new(w())
        .shard("w", &[usize::MAX], &[0])
        .unwrap_err();
    assert_eq!(e.kind(), ckpt_core::ErrorKind::InvalidArgument, "{e:#}");
    assert!(e.to_string().contains("overflows"), "{e:#}");
    // A chunk of 2^40 elements (it once overflowed a product, or aborted padding the edge chunk).
    let e = PyTreeShard::new(w())
        .shard_chunked("w", &[2], &[0], &[1 << 40])
        .unwrap_err();
    assert_eq!(e.kind(), ckpt_core::ErrorKind::InvalidArgument, "{e:#}");
    assert!(e.to_string().contains("larger than"), "{e:#}");
    let e = PyTreeShard::new(w())
        .shard_chunked("w", &[2], &[0], &[usize::MAX])
        .unwrap_err();
    assert_eq!(e.kind(), ckpt_core::ErrorKind::InvalidArgument, "{e:#}");
    // A chunk larger than the array but within the limit is fine (an edge chunk).
    assert!(PyTreeShard::new(w())
        .shard_chunked("w", &[2], &[0], &[8])
        .is_ok());
}

#[test]
fn the_merge_refuses_shards_that_disagree_or_leave_gaps() {
    let f32s = |n: usize| Tensor::from_slice([n], &vec![1.5f32; n]).unwrap();
    let part = |data: Tensor, offset: usize, chunk: usize, leaf: &str| {
        PyTreeShard::new(PyTree::dict().with(leaf, PyTree::Array(data)))
            .shard_chunked(leaf, &[8], &[offset], &[chunk])
            .unwrap()
    };
    // Process i saves parts[i] into a fresh item; the merge of `processes` must refuse with
    // InvalidArgument naming `needle`, and write no manifest.
    let refused = |parts: &[&PyTreeShard], processes: &[usize], needle: &str| {
        let out = tempfile::tempdir().unwrap();
        let store = LocalStore::open(out.path()).unwrap();
        let dir = ItemDir::new(&store, "item");
        for (i, p) in parts.iter().enumerate() {
            let role = ShardRole {
                process: i,
                primary: i == 0,
                merge: false,
            };
            save_shard(&dir, p, role, &ArrayOptions::default()).unwrap();
        }
        let e = merge_process_databases(&dir, processes).unwrap_err();
        assert_eq!(e.kind(), ckpt_core::ErrorKind::InvalidArgument, "{e:#}");
        assert!(e.to_string().contains(needle), "{e:#}");
        assert!(!out.path().join("item/manifest.ocdbt").exists());
    };
    // Chunk shapes 4 and 2: the processes disagree.
    refused(
        &[&part(f32s(4), 0, 4, "w"), &part(f32s(4), 4, 2, "w")],
        &[0, 1],
        "chunk",
    );
    // Process 1 gives nothing: chunk [1] is missing.
    refused(
        &[&part(f32s(4), 0, 4, "w")],
        &[0, 1],
        "do not cover the global array",
    );
    // A global shape of 2^40 elements of which one shard of 4 is given: refused by counting
    // the chunks written, without walking a grid of 2^38 chunks (it once reserved memory for
    // every chunk index and aborted).
    let huge = PyTreeShard::new(PyTree::dict().with("w", PyTree::Array(f32s(4))))
        .shard("w", &[1 << 40], &[0])
        .unwrap();
    refused(&[&huge], &[0], "do not cover the global array");
    // Process 1 gives a leaf the primary's tree lacks.
    refused(
        &[&part(f32s(8), 0, 8, "w"), &part(f32s(4), 4, 4, "v")],
        &[0, 1],
        "same tree",
    );
}
