//! Pytree items through the manager: saved with `Composite::pytree` (async and sync, both
//! layouts), restored whole and by leaf, read from a root Orbax wrote, exported to safetensors
//! and imported back (issue 13).

use ckpt_manager::export::{export_safetensors, import_safetensors, ImportFormat};
use ckpt_manager::handlers::{ArrayLayout, DType, PyTree, StandardHandler, Tensor, TensorHandler};
use ckpt_manager::{
    CheckpointManager, CheckpointManagerOptions, Composite, ErrorKind, SaveOptions,
};
use std::path::Path;
use std::sync::Arc;

fn tree(seed: f32) -> PyTree {
    let w: Vec<f32> = (0..2048).map(|i| i as f32 * seed).collect();
    PyTree::dict()
        .with(
            "params",
            PyTree::dict()
                .with(
                    "dense",
                    PyTree::dict().with("kernel", Tensor::from_slice([32, 64], &w).unwrap()),
                )
                .with("bias", Tensor::from_slice([4], &[seed; 4]).unwrap()),
        )
        .with("step", PyTree::Scalar(Tensor::scalar(12i64)))
        .with(
            "layers",
            PyTree::List(vec![Tensor::new(
                DType::BF16,
                [2],
                vec![0x80, 0x3f, 0, 0x40],
            )
            .unwrap()
            .into()]),
        )
}

#[test]
fn pytrees_save_and_restore_in_both_layouts() {
    for (layout, asynchronous) in [(ArrayLayout::Ocdbt, true), (ArrayLayout::Zarr, false)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let mut m = CheckpointManager::builder(root.to_string_lossy())
            .enable_async_checkpointing(asynchronous)
            .handler("state", Arc::new(StandardHandler::with_layout(layout)))
            .build()
            .unwrap();
        for step in [1u64, 2] {
            let t = tree(step as f32);
            m.save(
                step,
                Composite::new().pytree("state", &t),
                SaveOptions::default(),
            )
            .unwrap();
            // A borrowed tree may change as soon as save returns.
            drop(t);
        }
        m.wait_until_finished().unwrap();
        let got = m.restore(Some(2)).unwrap();
        assert_eq!(got.pytree("state").unwrap(), &tree(2.0), "{layout:?}");
        let one = m
            .restore_leaves(Some(1), "state", &["params.bias", "step"])
            .unwrap();
        assert_eq!(one.leaves().len(), 2);
        assert_eq!(
            one.tensor("params.bias").unwrap().to_vec::<f32>().unwrap(),
            [1.0; 4]
        );
        let e = m.restore_leaves(Some(1), "state", &["nope"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        // item_metadata lists the arrays without reading chunks.
        let meta = m.item_metadata(2).unwrap()["state"].clone().unwrap();
        let leaves = meta["leaves"].as_array().unwrap();
        let kernel = leaves
            .iter()
            .find(|l| l["key"] == "params.dense.kernel")
            .unwrap();
        assert_eq!(kernel["shape"], serde_json::json!([32, 64]));
        assert_eq!(kernel["bytes"], 32 * 64 * 4);
        // Into the caller's tree: every leaf filled in place, as restore gives it.
        let mut into = tree(0.0);
        assert_ne!(into, tree(1.0));
        assert_eq!(
            m.restore_pytree_into(Some(1), "state", &mut into).unwrap(),
            1
        );
        assert_eq!(into, tree(1.0), "{layout:?}");
        let mut wrong = PyTree::dict().with("step", Tensor::scalar(1.0f32));
        let e = m
            .restore_pytree_into(Some(1), "state", &mut wrong)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
        m.close().unwrap();
    }
}

/// A large array (20 MiB, one chunk in a data file of its own) is streamed through the store's
/// checking reader: restored into the caller's tree bit-exactly, and a flipped byte in its data
/// file is `Corrupt` — for `restore` and `restore_pytree_into` alike.
#[test]
fn a_streamed_array_is_verified_into_the_callers_tree() {
    use ckpt_manager::handlers::ArrayOptions;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let one_chunk = StandardHandler {
        options: ArrayOptions {
            layout: ArrayLayout::Ocdbt,
            chunk_byte_size: Some(1 << 30),
        },
    };
    let mut m = CheckpointManager::builder(root.to_string_lossy())
        .enable_async_checkpointing(false)
        .handler("state", Arc::new(one_chunk))
        .build()
        .unwrap();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..20 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let big = PyTree::dict().with("w", Tensor::new(DType::U8, [20 << 20], data).unwrap());
    m.save(
        1,
        Composite::new().pytree("state", &big),
        SaveOptions::default(),
    )
    .unwrap();
    let mut into = PyTree::dict().with(
        "w",
        Tensor::new(DType::U8, [20 << 20], vec![0; 20 << 20]).unwrap(),
    );
    m.restore_pytree_into(None, "state", &mut into).unwrap();
    assert_eq!(into, big);
    // Flip one byte in the middle of the largest data file.
    let d = root.join("1/state/d");
    let largest = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    assert!(bytes.len() > 16 << 20);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(&largest, &bytes).unwrap();
    let e = m.restore(Some(1)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let e = m
        .restore_pytree_into(Some(1), "state", &mut into)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    m.close().unwrap();
}

#[test]
fn an_orbax_root_restores_and_exports() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/orbax/arrays/ocdbt_sync");
    let m = CheckpointManager::builder(src.to_string_lossy())
        .options(CheckpointManagerOptions {
            read_only: true,
            create: false,
            ..Default::default()
        })
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), vec![0, 1]);
    let restored = m.restore(None).unwrap();
    let t = restored.pytree("default").unwrap();
    assert_eq!(t.tensor("big.f32_48x40").unwrap().shape(), &[48, 40]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("w.safetensors");
    let (item, n) = export_safetensors(&m, 1, None, &out, &mut |_, _| {}).unwrap();
    assert_eq!((item.as_str(), n), ("default", 5));
    let file = TensorHandler::decode(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(&file["big.f32_48x40"], t.tensor("big.f32_48x40").unwrap());
    assert_eq!(file["scalars.py_int"].shape(), &[] as &[usize]);
    // Step 0 holds a complex128 leaf, which safetensors cannot hold.
    let e = export_safetensors(&m, 0, None, &out, &mut |_, _| {}).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("complex128"), "{e}");

    // Import as an Orbax pytree and as ckpt.tensors: the arrays come back under the same names.
    for (format, step) in [(ImportFormat::Orbax, 5u64), (ImportFormat::Ckpt, 6)] {
        let root = dir.path().join("imported");
        let mut w = CheckpointManager::builder(root.to_string_lossy())
            .build()
            .unwrap();
        assert_eq!(
            import_safetensors(&mut w, &out, step, "weights", format).unwrap(),
            5
        );
        let got = w.restore(Some(step)).unwrap();
        let arrays = match format {
            ImportFormat::Orbax => {
                let tree = got.pytree("weights").unwrap();
                assert!(
                    matches!(tree, PyTree::Dict(m) if m.contains_key("big")),
                    "nested"
                );
                tree.tensors()
                    .into_iter()
                    .map(|(k, v)| (k, v.clone()))
                    .collect()
            }
            ImportFormat::Ckpt => got.tensors("weights").unwrap().clone(),
        };
        assert_eq!(arrays, file);
        let again = import_safetensors(&mut w, &out, step, "weights", format).unwrap_err();
        assert_eq!(again.kind(), ErrorKind::AlreadyExists);
        w.close().unwrap();
    }
}
