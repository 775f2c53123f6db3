//! `direct_io_min_bytes` (issue 14): durable files of at least that size are written with
//! `O_DIRECT`; saves (sync and async, tensors and pytree items) restore bit for bit and verify.
use ckpt_manager::handlers::{DType, PyTree, Tensor, TensorMap};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};

#[test]
fn saves_written_with_o_direct_restore_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let mut t = TensorMap::new();
    let w: Vec<f32> = (0..(3 << 20)).map(|i| i as f32 * 0.5).collect();
    t.insert("w".into(), Tensor::from_slice([3, 1 << 20], &w).unwrap());
    t.insert(
        "b".into(),
        Tensor::from_slice([3], &[1.0f32, 2.0, 3.0]).unwrap(),
    );
    let tree = PyTree::dict().with(
        "k",
        Tensor::new(
            DType::U8,
            [5 << 20],
            (0..5u32 << 20).map(|i| (i % 13) as u8).collect(),
        )
        .unwrap(),
    );
    for async_saves in [false, true] {
        let mut m = CheckpointManager::builder(root.to_str().unwrap())
            .enable_async_checkpointing(async_saves)
            .direct_io_min_bytes(4096)
            .build()
            .unwrap();
        let step = if async_saves { 2 } else { 1 };
        m.save(
            step,
            Composite::new()
                .tensors("params", &t)
                .pytree("state", &tree),
            SaveOptions::default(),
        )
        .unwrap();
        m.wait_until_finished().unwrap();
        let r = m.restore(Some(step)).unwrap();
        assert_eq!(r.tensors("params").unwrap(), &t);
        assert_eq!(r.pytree("state").unwrap(), &tree);
        let report = ckpt_manager::verify_step(m.store().as_ref(), &m.step_dir_name(step)).unwrap();
        assert!(report.is_ok(), "{report}");
        m.close().unwrap();
    }
}
