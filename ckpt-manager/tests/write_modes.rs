//! How large files are written (issue 14): with write-behind (`write_behind_min_bytes`, default
//! 8 MiB: each piece's writeback started as it is written, its pages dropped from the page cache)
//! or with `O_DIRECT` (`direct_io_min_bytes`). Saves (sync and async, tensors and pytree items)
//! restore bit for bit and verify, whichever way their files were written.
use ckpt_manager::handlers::{DType, PyTree, Tensor, TensorMap};
use ckpt_manager::{CheckpointManager, CheckpointManagerBuilder, Composite, SaveOptions};

/// A tensors item of `rows` × 1 Mi float32 plus a small tensor, and a pytree of one u8 leaf of
/// `tree_mib` MiB of pseudo-random bytes (zstd leaves them as large as they are, so the pytree's
/// data files are as large as the leaf's chunks).
fn items(rows: usize, tree_mib: u32) -> (TensorMap, PyTree) {
    let mut t = TensorMap::new();
    let w: Vec<f32> = (0..rows << 20).map(|i| i as f32 * 0.25).collect();
    t.insert("w".into(), Tensor::from_slice([rows, 1 << 20], &w).unwrap());
    t.insert(
        "b".into(),
        Tensor::from_slice([2], &[1.0f32, -2.0]).unwrap(),
    );
    let tree = PyTree::dict().with(
        "k",
        Tensor::new(
            DType::U8,
            [(tree_mib as usize) << 20],
            xorshift_bytes((tree_mib as usize) << 20),
        )
        .unwrap(),
    );
    (t, tree)
}

/// `n` pseudo-random bytes (xorshift64), which zstd cannot shrink.
fn xorshift_bytes(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes()[..(n - out.len()).min(8)]);
    }
    out
}

/// Saves `t` and `tree` as step 1 through the manager `builder` makes (sync, then async on a
/// second root), restores and verifies each; `what` names the case in failures.
fn saves_restore_and_verify(
    builder: impl Fn(&str, bool) -> CheckpointManagerBuilder,
    dir: &std::path::Path,
    t: &TensorMap,
    tree: &PyTree,
    what: &str,
) {
    for async_saves in [false, true] {
        let root = dir.join(format!("{what}-{async_saves}"));
        let mut m = builder(root.to_str().unwrap(), async_saves)
            .build()
            .unwrap();
        let item = Composite::new().tensors("params", t).pytree("state", tree);
        m.save(1, item, SaveOptions::default()).unwrap();
        m.wait_until_finished().unwrap();
        let r = m.restore(Some(1)).unwrap();
        assert_eq!(
            r.tensors("params").unwrap(),
            t,
            "{what}, async {async_saves}"
        );
        assert_eq!(
            r.pytree("state").unwrap(),
            tree,
            "{what}, async {async_saves}"
        );
        let report = ckpt_manager::verify_step(m.store().as_ref(), &m.step_dir_name(1)).unwrap();
        assert!(report.is_ok(), "{what}, async {async_saves}: {report}");
        m.close().unwrap();
    }
}

#[test]
fn saves_written_with_o_direct_restore_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    let (t, tree) = items(3, 5);
    let builder = |root: &str, async_saves: bool| {
        CheckpointManager::builder(root)
            .enable_async_checkpointing(async_saves)
            .direct_io_min_bytes(4096)
    };
    saves_restore_and_verify(builder, dir.path(), &t, &tree, "direct");
}

#[test]
fn saves_written_behind_restore_and_verify() {
    let dir = tempfile::tempdir().unwrap();
    // A 48 MiB tensors file: six whole 8 MiB pieces, so the first two are waited for and
    // dropped while the writer goes on (from the fifth piece on). A sync save's pytree data
    // file of 16 MiB or more is written behind too, without reaching that point (an async
    // save writes a borrowed pytree before `save` returns, without fsync: plainly).
    let (t, tree) = items(12, 24);
    let settings = [
        ("default", ckpt_storage::WRITE_BEHIND_MIN_BYTES.into()),
        ("every-file", Some(1)),
        ("off", None),
    ];
    for (what, min) in settings {
        let builder = move |root: &str, async_saves: bool| {
            CheckpointManager::builder(root)
                .enable_async_checkpointing(async_saves)
                .write_behind_min_bytes(min)
        };
        saves_restore_and_verify(builder, dir.path(), &t, &tree, what);
    }
}
