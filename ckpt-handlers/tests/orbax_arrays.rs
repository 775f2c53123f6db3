//! Orbax's array items read by ckpt, bit for bit: the roots orbax-checkpoint 0.12.8 wrote with
//! `xtask/interop/arrays/gen_orbax_arrays.py` (copied into `testdata/orbax/arrays/`), every layout
//! (OCDBT + zarr v2/v3, zarr v2/v3 directories), sync and async, compared leaf by leaf with the
//! values Python wrote (`values.json`); and ckpt's own writes read back.

mod common;

use ckpt_handlers::ocdbt::{Database, DbFiles};
use ckpt_handlers::orbax_array::{restore_tree, restore_tree_into, save_item, tree_metadata};
use ckpt_handlers::{
    handler_for_type_string, ArrayLayout, ArrayOptions, DType, ItemDir, KeyEntry, PyTree,
    RestoredItem, SaveItem, Tensor,
};
use ckpt_storage::{LocalStore, Store};
use serde_json::Value as Json;
use std::borrow::Cow;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The roots: `testdata/orbax/arrays`, or the directory `CKPT_ORBAX_ARRAYS_DIR` names (where
/// `cargo xtask interop` has Orbax write them afresh).
fn arrays_dir() -> PathBuf {
    match std::env::var_os("CKPT_ORBAX_ARRAYS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/orbax/arrays"),
    }
}

fn load(name: &str) -> Json {
    let bytes = std::fs::read(arrays_dir().join(name)).unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Checks every leaf of `tree` against the Python values of tree `id`.
fn check_tree(tree: &PyTree, values: &Json, id: &str, context: &str) {
    let leaves = values["trees"][id].as_array().unwrap();
    let mut seen = 0;
    for leaf in leaves {
        let path: Vec<&str> = leaf["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        let name = path.join(".");
        let got = tree
            .get(&name)
            .unwrap_or_else(|| panic!("{context}: leaf {name} missing"));
        seen += 1;
        match leaf["kind"].as_str().unwrap() {
            "np.ndarray" | "jax.Array" | "scalar" => {
                let t = match (got, leaf["kind"].as_str().unwrap()) {
                    (PyTree::Scalar(t), "scalar") => t,
                    (PyTree::Array(t), "np.ndarray" | "jax.Array") => t,
                    other => panic!("{context}: leaf {name} is {other:?}"),
                };
                assert_eq!(
                    t.dtype().name(),
                    leaf["dtype"].as_str().unwrap(),
                    "{context} {name}"
                );
                let shape: Vec<usize> = leaf["shape"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|d| d.as_u64().unwrap() as usize)
                    .collect();
                assert_eq!(t.shape(), shape.as_slice(), "{context} {name}");
                assert_eq!(
                    t.as_bytes(),
                    hex(leaf["data_hex"].as_str().unwrap()).as_slice(),
                    "{context}: bytes of {name}"
                );
            }
            "empty" => {
                let ok = match (leaf["python"].as_str().unwrap(), got) {
                    ("dict", PyTree::Dict(m)) => m.is_empty(),
                    ("list", PyTree::List(l)) => l.is_empty(),
                    ("NoneType", PyTree::None) => true,
                    _ => false,
                };
                assert!(ok, "{context}: empty leaf {name} is {got:?}");
            }
            "string" => {
                assert!(matches!(got, PyTree::String(_)), "{context}: {name}");
            }
            other => panic!("unknown kind {other}"),
        }
    }
    assert_eq!(tree.leaves().len(), seen, "{context}: leaf count");
}

fn item_store(root: &str, step: &str) -> LocalStore {
    LocalStore::open(arrays_dir().join(root).join(step)).unwrap()
}

#[test]
fn orbax_written_roots_restore_bit_exactly() {
    let values = load("values.json");
    let roots = [
        "ocdbt_sync",
        "ocdbt_async",
        "ocdbt_multifile",
        "ocdbt_zarr3",
        "zarr2_sync",
        "zarr2_async",
        "zarr3_sync",
        "zarr3_async",
    ];
    let mut checked = 0;
    for root in roots {
        let expected = load(&format!("{root}.expected.json"));
        for (step, info) in expected["steps"].as_object().unwrap() {
            let store = item_store(root, step);
            let handlers = std::fs::read(
                arrays_dir()
                    .join(root)
                    .join(step)
                    .join("_CHECKPOINT_METADATA"),
            )
            .unwrap();
            let handlers: Json = serde_json::from_slice(&handlers).unwrap();
            let type_string = handlers["item_handlers"]["default"].as_str().unwrap();
            let handler = handler_for_type_string(type_string).unwrap();
            assert_eq!(handler.type_string(), type_string);
            let dir = ItemDir::new(&store, "default");
            let RestoredItem::PyTree(tree) = handler.restore(&dir).unwrap() else {
                panic!("{root}/{step}: not a pytree");
            };
            let context = format!("{root}/{step}");
            check_tree(&tree, &values, info["tree"].as_str().unwrap(), &context);
            // The metadata lists every array with dtype and shape, without reading chunks.
            let meta = tree_metadata(&dir).unwrap();
            let leaves = meta["leaves"].as_array().unwrap();
            assert_eq!(leaves.len(), tree.leaves().len(), "{context}");
            for l in leaves.iter().filter(|l| l.get("dtype").is_some()) {
                let t = tree.tensor(l["key"].as_str().unwrap()).unwrap();
                assert_eq!(l["dtype"], t.dtype().name(), "{context}");
                assert_eq!(l["bytes"], t.as_bytes().len(), "{context}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 9, "only {checked} steps checked");
}

#[test]
fn a_subset_of_leaves_reads_only_their_chunks() {
    let values = load("values.json");
    let store = item_store("ocdbt_sync", "0");
    let dir = ItemDir::new(&store, "default");
    let only: BTreeSet<String> = ["big.f32_48x40".to_string(), "scalars.py_int".to_string()].into();
    let tree = restore_tree(&dir, Some(&only)).unwrap();
    assert_eq!(tree.leaves().len(), 2);
    let full = values["trees"]["A"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["param_name"] == "big.f32_48x40")
        .unwrap();
    assert_eq!(
        tree.tensor("big.f32_48x40").unwrap().as_bytes(),
        hex(full["data_hex"].as_str().unwrap()).as_slice()
    );
    let missing: BTreeSet<String> = ["no.such".to_string()].into();
    assert!(restore_tree(&dir, Some(&missing)).is_err());
}

/// The raw tensorstore database (interior nodes, version tree nodes, no compression).
#[test]
fn raw_tensorstore_database_reads_every_key() {
    struct Files(PathBuf);
    impl DbFiles for Files {
        fn size(&self, path: &str) -> ckpt_core::Result<u64> {
            Ok(std::fs::metadata(self.0.join(path)).unwrap().len())
        }
        fn read_range(&self, path: &str, r: std::ops::Range<u64>) -> ckpt_core::Result<Vec<u8>> {
            let all = std::fs::read(self.0.join(path)).unwrap();
            Ok(all[r.start as usize..r.end as usize].to_vec())
        }
    }
    let expected = load("raw_ocdbt_deep.expected.json");
    let dir = arrays_dir().join("raw_ocdbt_deep");
    let manifest = std::fs::read(dir.join("manifest.ocdbt")).unwrap();
    let files = Files(dir);
    let db = Database::open(&files, &manifest, "raw manifest").unwrap();
    let keys = expected["keys"].as_object().unwrap();
    assert_eq!(db.entries().len(), keys.len());
    for (k, v) in keys {
        assert_eq!(
            db.read(&files, k.as_bytes()).unwrap(),
            hex(v.as_str().unwrap()),
            "{k}"
        );
    }
}

fn sample_tree() -> PyTree {
    let big: Vec<f32> = (0..3000).map(|i| i as f32 * 0.5).collect();
    PyTree::dict()
        .with(
            "params",
            PyTree::dict()
                .with("w", Tensor::from_slice([60, 50], &big).unwrap())
                .with("b", Tensor::from_slice([3], &[1i64, -2, 3]).unwrap()),
        )
        .with("step", PyTree::Scalar(Tensor::scalar(7i64)))
        .with("lr", PyTree::Scalar(Tensor::scalar(0.25f64)))
        .with(
            "layers",
            PyTree::List(vec![
                Tensor::from_slice([2, 2], &[true, false, true, true])
                    .unwrap()
                    .into(),
                PyTree::None,
                PyTree::dict(),
                Tensor::new(DType::C64, [1], vec![1; 8]).unwrap().into(),
            ]),
        )
        .with("name", PyTree::String("run-1".into()))
}

#[test]
fn ckpt_written_items_read_back_in_every_layout() {
    for (layout, chunk) in [
        (ArrayLayout::Ocdbt, None),
        (ArrayLayout::Ocdbt, Some(1000)),
        (ArrayLayout::Zarr, None),
        (ArrayLayout::Zarr, Some(512)),
    ] {
        let (_tmp, store) = common::local();
        let dir = ItemDir::new(&store, "item");
        let tree = sample_tree();
        let options = ArrayOptions {
            layout,
            chunk_byte_size: chunk,
        };
        save_item(&dir, &SaveItem::PyTree(Cow::Borrowed(&tree)), &options).unwrap();
        let back = restore_tree(&dir, None).unwrap();
        assert_eq!(back, tree, "{layout:?} {chunk:?}");
        let has_manifest = store.stat("item/manifest.ocdbt").unwrap().is_some();
        assert_eq!(has_manifest, layout == ArrayLayout::Ocdbt);
    }
}

#[test]
fn bad_trees_are_refused() {
    let (_tmp, store) = common::local();
    let dir = ItemDir::new(&store, "item");
    let o = ArrayOptions::default();
    let save = |t: PyTree| save_item(&dir, &SaveItem::PyTree(Cow::Owned(t)), &o);
    assert!(save(PyTree::Array(Tensor::scalar(1u8))).is_err());
    assert!(save(PyTree::dict().with("a/b", Tensor::scalar(1u8))).is_err());
    assert!(save(PyTree::dict().with("z", Tensor::new(DType::F32, [0], vec![]).unwrap())).is_err());
    let clash = PyTree::dict()
        .with("a.b", Tensor::scalar(1u8))
        .with("a", PyTree::dict().with("b", Tensor::scalar(2u8)));
    let e = save(clash).unwrap_err();
    assert!(e.message().contains("a.b"), "{e}");
    assert!(save(PyTree::dict().with(
        "s",
        PyTree::Scalar(Tensor::from_slice([2], &[1u8, 2]).unwrap())
    ))
    .is_err());
    let _ = KeyEntry::Index(0);
}

/// Large arrays: several chunks and data files (ckpt's writer), and large values sharing one
/// data file (as Orbax writes them), which are decoded as a stream.
#[test]
fn large_arrays_chunked_and_streamed() {
    use ckpt_handlers::ocdbt::{layout, Entry, Stored};
    let rnd = |seed| common::random_bytes(20 << 20, seed);
    let a = Tensor::new(DType::U8, [20 << 20], rnd(0x9e37_79b9_7f4a_7c15)).unwrap();
    let b = Tensor::new(DType::U8, [5, 4 << 20], rnd(0x2545_f491_4f6c_dd1d)).unwrap();
    let tree = PyTree::dict().with("a", a).with("b", b);
    let (tmp, store) = common::local();
    let dir = ItemDir::new(&store, "item");
    save_item(
        &dir,
        &SaveItem::PyTree(Cow::Borrowed(&tree)),
        &ArrayOptions::default(),
    )
    .unwrap();
    let data_files = std::fs::read_dir(tmp.path().join("item/d"))
        .unwrap()
        .count();
    // Four 10 MiB chunks in groups of at most DATA_FILE_BYTES (32 MiB): two files of values
    // (3 chunks, 1 chunk) and the leaf node's.
    assert!(data_files >= 3, "{data_files} data files");
    assert_eq!(restore_tree(&dir, None).unwrap(), tree);

    // One chunk per array, both in one data file: each value is a 20 MiB part of the file.
    let one = ArrayOptions {
        layout: ArrayLayout::Ocdbt,
        chunk_byte_size: Some(1 << 30),
    };
    let (tmp2, store2) = common::local();
    let dir2 = ItemDir::new(&store2, "item");
    save_item(&dir2, &SaveItem::PyTree(Cow::Borrowed(&tree)), &one).unwrap();
    // Each 20 MiB value is its own file: streamed whole, through the store's open_read.
    assert_eq!(restore_tree(&dir2, None).unwrap(), tree);
    let mut into = zeroed(&tree);
    restore_tree_into(&dir2, &mut into).unwrap();
    assert_eq!(into, tree);
    struct Files(std::path::PathBuf);
    impl DbFiles for Files {
        fn size(&self, p: &str) -> ckpt_core::Result<u64> {
            Ok(std::fs::metadata(self.0.join(p)).unwrap().len())
        }
        fn read_range(&self, p: &str, r: std::ops::Range<u64>) -> ckpt_core::Result<Vec<u8>> {
            Ok(std::fs::read(self.0.join(p)).unwrap()[r.start as usize..r.end as usize].to_vec())
        }
    }
    let item = tmp2.path().join("item");
    let files = Files(item.clone());
    let db = Database::open(
        &files,
        &std::fs::read(item.join("manifest.ocdbt")).unwrap(),
        "m",
    )
    .unwrap();
    let values: Vec<(Vec<u8>, Vec<u8>)> = db
        .entries()
        .keys()
        .map(|k| (k.clone(), db.read(&files, k).unwrap()))
        .collect();
    let mut shared = Vec::new();
    let mut entries = Vec::new();
    for (k, v) in &values {
        let value = if v.len() > 1024 {
            let offset = shared.len() as u64;
            shared.extend_from_slice(v);
            Stored::Indirect {
                file: 0,
                offset,
                len: v.len() as u64,
            }
        } else {
            Stored::Inline(v)
        };
        entries.push(Entry { key: k, value });
    }
    assert!(shared.len() > 40 << 20);
    std::fs::remove_dir_all(item.join("d")).unwrap();
    std::fs::create_dir_all(item.join("d")).unwrap();
    std::fs::write(item.join("d/shared"), &shared).unwrap();
    let l = layout(&entries, &["d/shared"], "d/node", [1; 16], 0).unwrap();
    std::fs::write(item.join("d/node"), &l.node).unwrap();
    std::fs::write(item.join("manifest.ocdbt"), &l.manifest).unwrap();
    assert_eq!(restore_tree(&dir2, None).unwrap(), tree);
    // Values sharing a file: streamed by ranged reads, into the caller's tree too.
    let mut into = zeroed(&tree);
    restore_tree_into(&dir2, &mut into).unwrap();
    assert_eq!(into, tree);
}

/// `tree` with every array and scalar zeroed (same dtypes and shapes) and every string empty.
fn zeroed(tree: &PyTree) -> PyTree {
    let leaves = tree
        .leaves()
        .into_iter()
        .map(|(p, l)| {
            let z = match l {
                PyTree::Array(t) => PyTree::Array(
                    Tensor::new(t.dtype(), t.shape().to_vec(), vec![0; t.as_bytes().len()])
                        .unwrap(),
                ),
                PyTree::Scalar(t) => PyTree::Scalar(
                    Tensor::new(t.dtype(), t.shape().to_vec(), vec![0; t.as_bytes().len()])
                        .unwrap(),
                ),
                PyTree::String(_) => PyTree::String(String::new()),
                other => other.clone(),
            };
            (p, z)
        })
        .collect();
    PyTree::from_leaves(leaves).unwrap()
}

#[test]
fn restore_into_fills_the_callers_tree_in_every_layout() {
    for root in ["ocdbt_sync", "ocdbt_zarr3", "zarr2_sync", "zarr3_sync"] {
        let store = item_store(root, "0");
        let dir = ItemDir::new(&store, "default");
        let full = restore_tree(&dir, None).unwrap();
        let mut into = zeroed(&full);
        assert_ne!(into, full, "{root}: the zeroed tree differs");
        restore_tree_into(&dir, &mut into).unwrap();
        assert_eq!(into, full, "{root}: every leaf filled in place");
    }
    let store = item_store("ocdbt_sync", "0");
    let dir = ItemDir::new(&store, "default");
    // A subset of the leaves: only those are read and filled.
    let mut part = PyTree::dict().with(
        "big",
        PyTree::dict().with(
            "f32_48x40",
            Tensor::new(DType::F32, [48, 40], vec![0; 48 * 40 * 4]).unwrap(),
        ),
    );
    restore_tree_into(&dir, &mut part).unwrap();
    let full = restore_tree(&dir, None).unwrap();
    assert_eq!(
        part.tensor("big.f32_48x40").unwrap(),
        full.tensor("big.f32_48x40").unwrap()
    );
    // A leaf of another shape, or one the item does not have: InvalidArgument naming it.
    let mut wrong = PyTree::dict().with(
        "big",
        PyTree::dict().with(
            "f32_48x40",
            Tensor::new(DType::F32, [40, 48], vec![0; 48 * 40 * 4]).unwrap(),
        ),
    );
    let e = restore_tree_into(&dir, &mut wrong).unwrap_err();
    assert_eq!(e.kind(), ckpt_core::ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("big.f32_48x40"), "{e}");
    let mut extra = PyTree::dict().with("no_such", Tensor::scalar(1.0f32));
    let e = restore_tree_into(&dir, &mut extra).unwrap_err();
    assert_eq!(e.kind(), ckpt_core::ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("no_such"), "{e}");
}

/// Chunks of one leaf that fill a data file between them are decoded in one pass over the
/// file, which a checking store verifies during that pass: the file is read once, not once to
/// check it and again for its values (regression: a 1 GiB item ckpt wrote read ~1.5x its
/// bytes); a damaged file is still `Corrupt`.
#[test]
fn chunks_filling_a_data_file_are_read_and_verified_in_one_pass() {
    use ckpt_storage::{ChecksumManifest, CountingStore, FileChecksum, VerifyingStore};
    use std::sync::Arc;
    let data = common::random_bytes(64 << 20, 0x9e37_79b9_7f4a_7c15);
    // Cut along the leading dimension: [16384, 1024] chunks of 16 MiB, each a contiguous run
    // of the array, two to a data file (ckpt's 32 MiB groups): two files, two runs.
    let a = Tensor::new(DType::U8, [65536, 1024], data).unwrap();
    let tree = PyTree::dict().with("a", a);
    let (tmp, store) = common::local();
    let options = ArrayOptions::default();
    save_item(
        &ItemDir::new(&store, "s/item"),
        &SaveItem::PyTree(Cow::Borrowed(&tree)),
        &options,
    )
    .unwrap();
    let mut manifest = ChecksumManifest::new();
    let mut stored = 0u64;
    let mut biggest = (0u64, PathBuf::new());
    let mut walk = vec![tmp.path().join("s")];
    while let Some(d) = walk.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk.push(p);
                continue;
            }
            let bytes = std::fs::read(&p).unwrap();
            let rel = p.strip_prefix(tmp.path().join("s")).unwrap();
            manifest.insert(rel.to_str().unwrap(), FileChecksum::of(&bytes));
            stored += bytes.len() as u64;
            if bytes.len() as u64 > biggest.0 {
                biggest = (bytes.len() as u64, p.clone());
            }
        }
    }
    let counting = Arc::new(CountingStore::new(Arc::new(
        LocalStore::open(tmp.path()).unwrap(),
    )));
    let verifying = VerifyingStore::new(counting.clone(), "s", manifest.clone());
    let dir = ItemDir::new(&verifying, "s/item");
    assert_eq!(restore_tree(&dir, None).unwrap(), tree);
    let read = counting.counts().bytes_read;
    assert!(
        read <= stored + (64 << 10),
        "{read} bytes read for an item of {stored} bytes"
    );
    let verifying = VerifyingStore::new(counting.clone(), "s", manifest.clone());
    let dir = ItemDir::new(&verifying, "s/item");
    counting.reset();
    let mut into = zeroed(&tree);
    restore_tree_into(&dir, &mut into).unwrap();
    assert_eq!(into, tree);
    let read = counting.counts().bytes_read;
    assert!(
        read <= stored + (64 << 10),
        "{read} bytes read into the tree for an item of {stored} bytes"
    );
    // A flipped byte in the data file: Corrupt, naming the file, with and without a tree.
    let (size, data_file) = biggest;
    let mut bytes = std::fs::read(&data_file).unwrap();
    bytes[(size / 2) as usize] ^= 0x40;
    std::fs::write(&data_file, &bytes).unwrap();
    let name = data_file.file_name().unwrap().to_str().unwrap().to_string();
    let verifying = VerifyingStore::new(counting.clone(), "s", manifest.clone());
    let dir = ItemDir::new(&verifying, "s/item");
    let e = restore_tree(&dir, None).unwrap_err();
    assert_eq!(e.kind(), ckpt_core::ErrorKind::Corrupt, "{e}");
    assert!(e.chain().to_string().contains(&name), "{}", e.chain());
    let verifying = VerifyingStore::new(counting, "s", manifest);
    let dir = ItemDir::new(&verifying, "s/item");
    let e = restore_tree_into(&dir, &mut zeroed(&tree)).unwrap_err();
    assert_eq!(e.kind(), ckpt_core::ErrorKind::Corrupt, "{e}");
}
