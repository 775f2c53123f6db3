//! Writes checkpoint roots whose items are pytrees of arrays in Orbax's format, for
//! `xtask/interop/arrays/check_ckpt_pytrees.py` (run by `cargo xtask interop`), which has
//! orbax-checkpoint 0.12.8 list, restore (with and without args) and prune them.
//!
//! `cargo run -p ckpt-manager --example write_pytree_roots -- OUT_DIR`
//!
//! Roots (item `default`, Orbax's single-item name, unless said otherwise):
//! - `pytree_ocdbt`: steps 0, 10, 20 in Orbax's default layout (OCDBT + zarr v2), every dtype,
//!   0-d to 4-d, nested dicts and lists, scalars, empty leaves, arrays of several chunks
//!   (`chunk_byte_size` 4096) and of one 1 MiB chunk (an out-of-line OCDBT value);
//! - `pytree_zarr`: steps 0 and 1, a zarr v2 directory per leaf;
//! - `pytree_random`: 8 steps, each a proptest-generated random tree (seeded), OCDBT;
//! - `pytree_two_items`: step 3 with items `params` (OCDBT) and `opt` (zarr).
//!
//! `OUT_DIR/pytrees.json` lists, per root and step, every item's leaves: key path (with
//! `dict`/`list` kinds), kind, dtype, shape and the little-endian bytes as hex.

use ckpt_manager::handlers::{
    ArrayLayout, ArrayOptions, DType, KeyEntry, PyTree, StandardHandler, Tensor,
};
use ckpt_manager::{CheckpointManager, CheckpointManagerOptions, Composite, SaveOptions};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::Arc;

fn main() {
    let out = std::env::args().nth(1).unwrap_or_else(|| {
        eprintln!("usage: write_pytree_roots OUT_DIR");
        std::process::exit(2)
    });
    if let Err(e) = run(Path::new(&out)) {
        eprintln!(
            "write_pytree_roots: {}",
            ckpt_manager::core::ErrorChain(&*e)
        );
        std::process::exit(1);
    }
}

/// Deterministic bytes for `n` elements of `dtype` (bool as 0/1; floats finite).
fn fill(dtype: DType, n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::with_capacity(n * dtype.size_in_bytes());
    for _ in 0..n {
        match dtype {
            DType::Bool => out.push((next() & 1) as u8),
            DType::F16 => out.extend(
                ckpt_manager::handlers::half::f16::from_f32((next() % 2000) as f32 / 100.0 - 10.0)
                    .to_le_bytes(),
            ),
            DType::BF16 => out.extend(
                ckpt_manager::handlers::half::bf16::from_f32((next() % 2000) as f32 / 100.0 - 10.0)
                    .to_le_bytes(),
            ),
            DType::F32 => out.extend(((next() % 100_000) as f32 / 1000.0 - 50.0).to_le_bytes()),
            DType::F64 => out.extend(((next() % 1_000_000) as f64 / 1e4 - 50.0).to_le_bytes()),
            DType::C64 => {
                out.extend(((next() % 1000) as f32 / 10.0).to_le_bytes());
                out.extend(((next() % 1000) as f32 / -10.0).to_le_bytes());
            }
            DType::C128 => {
                out.extend(((next() % 1000) as f64 / 10.0).to_le_bytes());
                out.extend(((next() % 1000) as f64 / -10.0).to_le_bytes());
            }
            other => {
                let v = next().to_le_bytes();
                out.extend_from_slice(&v[..other.size_in_bytes()]);
            }
        }
    }
    out
}

fn array(dtype: DType, shape: &[usize], seed: u64) -> PyTree {
    let n = shape.iter().product();
    PyTree::Array(Tensor::new(dtype, shape.to_vec(), fill(dtype, n, seed)).expect("tensor"))
}

/// The fixed tree of `pytree_ocdbt`, varied by `seed`.
fn fixed_tree(seed: u64) -> PyTree {
    let mut dtypes = PyTree::dict();
    for (i, d) in DType::ALL.into_iter().enumerate() {
        dtypes = dtypes.with(d.name(), array(d, &[3, 5], seed + i as u64));
    }
    PyTree::dict()
        .with("dtypes", dtypes)
        .with(
            "shapes",
            PyTree::dict()
                .with("d0", array(DType::F32, &[], seed))
                .with("d1", array(DType::I32, &[7], seed))
                .with("d2", array(DType::F64, &[4, 6], seed))
                .with("d3", array(DType::U8, &[2, 3, 4], seed))
                .with("d4", array(DType::I16, &[2, 3, 2, 5], seed)),
        )
        .with(
            "params",
            PyTree::dict()
                .with(
                    "dense",
                    PyTree::dict().with("kernel", array(DType::F32, &[512, 512], seed)),
                )
                .with("chunked", array(DType::F32, &[48, 40], seed + 1))
                .with("chunked_i64", array(DType::I64, &[8, 12, 10], seed + 2)),
        )
        .with(
            "layers",
            PyTree::List(vec![
                PyTree::dict().with("w", array(DType::BF16, &[4, 4], seed)),
                PyTree::dict().with("w", array(DType::BF16, &[4, 4], seed + 3)),
                PyTree::List(vec![
                    array(DType::I8, &[2], seed),
                    PyTree::Scalar(Tensor::scalar(3.25f64)),
                ]),
            ]),
        )
        .with(
            "scalars",
            PyTree::dict()
                .with(
                    "step",
                    PyTree::Scalar(Tensor::scalar(seed as i64 * 1000 - 7)),
                )
                .with("lr", PyTree::Scalar(Tensor::scalar(0.1f64 + seed as f64)))
                .with("neg_zero", PyTree::Scalar(Tensor::scalar(-0.0f64)))
                .with(
                    "flag",
                    PyTree::Scalar(Tensor::scalar(seed.is_multiple_of(2))),
                ),
        )
        .with(
            "empty",
            PyTree::dict()
                .with("dict", PyTree::dict())
                .with("list", PyTree::List(Vec::new()))
                .with("none", PyTree::None),
        )
        .with(
            "odd keys",
            PyTree::dict()
                .with("it's", array(DType::F32, &[1], seed))
                .with("ünï", array(DType::F32, &[1], seed)),
        )
}

/// A random pytree: nested dicts/lists (depth ≤ 3) of arrays of every dtype, 0-d to 3-d.
fn random_tree() -> impl Strategy<Value = PyTree> {
    let leaf = (
        prop::sample::select(DType::ALL.to_vec()),
        prop::collection::vec(1usize..5, 0..4),
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(d, shape, seed, scalar)| {
            if scalar && shape.is_empty() && matches!(d, DType::I64 | DType::F64 | DType::Bool) {
                let n = fill(d, 1, seed);
                PyTree::Scalar(Tensor::new(d, Vec::new(), n).expect("scalar"))
            } else {
                array(d, &shape, seed)
            }
        });
    let key = "[a-z][a-z0-9_]{0,6}";
    leaf.prop_recursive(3, 24, 4, move |inner| {
        prop_oneof![
            prop::collection::btree_map(key, inner.clone(), 1..4).prop_map(PyTree::Dict),
            prop::collection::vec(inner, 1..4).prop_map(PyTree::List),
        ]
    })
    .prop_map(|t| match t {
        t @ (PyTree::Dict(_) | PyTree::List(_)) => t,
        leaf => PyTree::dict().with("x", leaf),
    })
}

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
                PyTree::Dict(_) => json!({"path": path, "kind": "empty_dict"}),
                PyTree::List(_) => json!({"path": path, "kind": "empty_list"}),
                PyTree::None => json!({"path": path, "kind": "none"}),
                PyTree::String(s) => json!({"path": path, "kind": "string", "value": s}),
            }
        })
        .collect();
    json!(leaves)
}

fn open(root: &Path) -> Result<CheckpointManager, Box<dyn std::error::Error>> {
    Ok(CheckpointManager::open(
        root.to_str().ok_or("non-UTF-8 path")?,
        CheckpointManagerOptions::default(),
    )?)
}

fn run(out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(out)?;
    let mut roots = serde_json::Map::new();

    // pytree_ocdbt: Orbax's default layout; chunked arrays via a registered handler.
    let root = out.join("pytree_ocdbt");
    let mut mngr = open(&root)?;
    let mut steps = serde_json::Map::new();
    for (i, step) in [0u64, 10, 20].into_iter().enumerate() {
        let tree = fixed_tree(i as u64 + 1);
        mngr.save(
            step,
            Composite::new().pytree("default", &tree),
            SaveOptions::default(),
        )?;
        steps.insert(step.to_string(), json!({"default": describe(&tree)}));
    }
    mngr.close()?;
    roots.insert(
        "pytree_ocdbt".into(),
        json!({"steps": steps, "layout": "ocdbt"}),
    );

    // pytree_zarr: zarr v2 directories, chunked.
    let root = out.join("pytree_zarr");
    let handler = StandardHandler {
        options: ArrayOptions {
            layout: ArrayLayout::Zarr,
            chunk_byte_size: Some(4096),
        },
    };
    let mut mngr = CheckpointManager::builder(root.to_str().ok_or("path")?)
        .handler("default", Arc::new(handler))
        .build()?;
    let mut steps = serde_json::Map::new();
    for step in [0u64, 1] {
        let tree = fixed_tree(step + 7);
        mngr.save(
            step,
            Composite::new().pytree("default", &tree),
            SaveOptions::default(),
        )?;
        steps.insert(step.to_string(), json!({"default": describe(&tree)}));
    }
    mngr.close()?;
    roots.insert(
        "pytree_zarr".into(),
        json!({"steps": steps, "layout": "zarr"}),
    );

    // pytree_random: proptest-generated trees, OCDBT, several chunks.
    let root = out.join("pytree_random");
    let handler = StandardHandler {
        options: ArrayOptions {
            layout: ArrayLayout::Ocdbt,
            chunk_byte_size: Some(64),
        },
    };
    let mut mngr = CheckpointManager::builder(root.to_str().ok_or("path")?)
        .handler("default", Arc::new(handler))
        .build()?;
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let strategy = random_tree();
    let mut steps = serde_json::Map::new();
    for step in 0u64..8 {
        let tree = strategy
            .new_tree(&mut runner)
            .map_err(|e| format!("proptest: {e}"))?
            .current();
        mngr.save(
            step,
            Composite::new().pytree("default", &tree),
            SaveOptions::default(),
        )?;
        steps.insert(step.to_string(), json!({"default": describe(&tree)}));
    }
    mngr.close()?;
    roots.insert(
        "pytree_random".into(),
        json!({"steps": steps, "layout": "ocdbt"}),
    );

    // pytree_two_items: two pytree items in one step, one per layout.
    let root = out.join("pytree_two_items");
    let mut mngr = CheckpointManager::builder(root.to_str().ok_or("path")?)
        .handler(
            "opt",
            Arc::new(StandardHandler::with_layout(ArrayLayout::Zarr)),
        )
        .build()?;
    let params = fixed_tree(11);
    let opt = PyTree::dict()
        .with("mu", array(DType::F32, &[16, 8], 3))
        .with("count", PyTree::Scalar(Tensor::scalar(42i64)));
    mngr.save(
        3,
        Composite::new()
            .pytree("params", &params)
            .pytree("opt", &opt),
        SaveOptions::default(),
    )?;
    mngr.close()?;
    let mut steps = serde_json::Map::new();
    steps.insert(
        "3".into(),
        json!({"params": describe(&params), "opt": describe(&opt)}),
    );
    roots.insert(
        "pytree_two_items".into(),
        json!({"steps": steps, "layout": "mixed"}),
    );

    std::fs::write(
        out.join("pytrees.json"),
        serde_json::to_string_pretty(&json!({"roots": roots}))?,
    )?;
    println!("{}", out.join("pytrees.json").display());
    Ok(())
}
