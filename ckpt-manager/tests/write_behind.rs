//! `write_behind_min_bytes` (issue 14): durable files of at least that size (default 8 MiB) start
//! their writeback piece by piece and leave the page cache; saves (sync and async, tensors and
//! pytree items) restore bit for bit and verify, with it at its default, on every file, and off.
use ckpt_manager::handlers::{DType, PyTree, Tensor, TensorMap};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};

#[test]
fn saves_written_behind_restore_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = TensorMap::new();
    // 36 MiB: four whole 8 MiB pieces and a part, so pieces are waited for and dropped.
    let w: Vec<f32> = (0..(9 << 20)).map(|i| i as f32 * 0.25).collect();
    t.insert("w".into(), Tensor::from_slice([9, 1 << 20], &w).unwrap());
    t.insert(
        "b".into(),
        Tensor::from_slice([2], &[1.0f32, -2.0]).unwrap(),
    );
    let tree = PyTree::dict().with(
        "k",
        Tensor::new(
            DType::U8,
            [20 << 20],
            (0..20u32 << 20).map(|i| (i % 17) as u8).collect(),
        )
        .unwrap(),
    );
    let settings = [
        ("default", ckpt_storage::WRITE_BEHIND_MIN_BYTES.into()),
        ("every-file", Some(1)),
        ("off", None),
    ];
    for (name, min) in settings {
        for async_saves in [false, true] {
            let root = dir.path().join(format!("{name}-{async_saves}"));
            let mut m = CheckpointManager::builder(root.to_str().unwrap())
                .enable_async_checkpointing(async_saves)
                .write_behind_min_bytes(min)
                .build()
                .unwrap();
            m.save(
                1,
                Composite::new()
                    .tensors("params", &t)
                    .pytree("state", &tree),
                SaveOptions::default(),
            )
            .unwrap();
            m.wait_until_finished().unwrap();
            let r = m.restore(Some(1)).unwrap();
            assert_eq!(
                r.tensors("params").unwrap(),
                &t,
                "{name}, async {async_saves}"
            );
            assert_eq!(
                r.pytree("state").unwrap(),
                &tree,
                "{name}, async {async_saves}"
            );
            let report =
                ckpt_manager::verify_step(m.store().as_ref(), &m.step_dir_name(1)).unwrap();
            assert!(report.is_ok(), "{name}, async {async_saves}: {report}");
            m.close().unwrap();
        }
    }
}
