//! A root of a few hundred steps (issue 6): opening reads every step's metadata and metrics on
//! several threads and must give exactly what a sequential read gives, in step order; the
//! async-save bookkeeping reports a finished save once, and frees its items afterwards.

use ckpt_manager::{BestMode, CheckpointManager, Composite, Metrics, SaveOptions};
use serde_json::json;

fn loss(step: u64) -> Metrics {
    let mut m = Metrics::new();
    m.insert("loss".into(), json!(((step * 37) % 101) as f64 / 101.0));
    m
}

#[test]
fn opening_a_root_of_300_steps_reads_each_once_in_order() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().to_str().unwrap();
    let n = 300u64;
    {
        let mut m = CheckpointManager::builder(root)
            .enable_async_checkpointing(false)
            .build()
            .unwrap();
        for s in 1..=n {
            m.save(
                s * 3,
                Composite::new().json_value("s", json!(s)),
                SaveOptions::default().metrics(loss(s)),
            )
            .unwrap();
        }
    }
    let m = CheckpointManager::builder(root)
        .best_metric("loss", BestMode::Min)
        .build()
        .unwrap();
    let cps = m.checkpoints();
    assert_eq!(cps.len() as u64, n);
    for (i, c) in cps.iter().enumerate() {
        let s = i as u64 + 1;
        assert_eq!(c.step, s * 3);
        assert_eq!(c.metrics.as_ref(), Some(&loss(s)), "step {}", c.step);
        assert!(c.time.timestamp() > 0, "step {} has no commit time", c.step);
    }
    // Best by loss: the smallest (s * 37) % 101 over s in 1..=300 is 0 (s = 101, 202): the
    // higher step wins ties.
    assert_eq!(m.best_step(), Some(202 * 3));
    drop(m);
    let light = CheckpointManager::builder(root)
        .lightweight_initialize(true)
        .build()
        .unwrap();
    assert_eq!(
        light.all_steps(),
        cps.iter().map(|c| c.step).collect::<Vec<_>>()
    );
    assert!(light.checkpoints().iter().all(|c| c.metrics.is_none()));
}

#[test]
fn a_finished_async_save_is_no_longer_in_progress_and_is_listed() {
    let d = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
    let big = vec![7u8; 8 << 20];
    for step in 1..=3 {
        m.save(
            step,
            Composite::new().bytes_owned("b", big.clone()),
            SaveOptions::default(),
        )
        .unwrap();
        m.wait_until_finished().unwrap();
        assert!(!m.is_saving_in_progress());
        assert_eq!(m.latest_step(), Some(step));
    }
    assert_eq!(m.restore(Some(3)).unwrap().bytes("b").unwrap(), &big[..]);
    m.close().unwrap();
    // The writer lock went with the manager, though the save threads may still be freeing.
    CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
}

#[test]
fn borrowed_tensors_are_copied_exactly_by_a_capture() {
    use ckpt_manager::handlers::{DType, Tensor, TensorMap};
    let d = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::builder(d.path().to_str().unwrap())
        .build()
        .unwrap();
    // Above the parallel-copy threshold in all, with arrays of every size around a piece.
    let mut t = TensorMap::new();
    for (i, n) in [1usize, 3, (8 << 20) - 1, 8 << 20, (8 << 20) + 5, 21 << 20]
        .into_iter()
        .enumerate()
    {
        let data: Vec<u8> = (0..n).map(|j| (j * 31 + i) as u8).collect();
        t.insert(format!("u{i}"), Tensor::new(DType::U8, [n], data).unwrap());
    }
    t.insert(
        "flags".into(),
        Tensor::from_slice([3], &[true, false, true]).unwrap(),
    );
    m.save(1, Composite::new().tensors("t", &t), SaveOptions::default())
        .unwrap();
    m.wait_until_finished().unwrap();
    assert_eq!(m.restore(Some(1)).unwrap().tensors("t").unwrap(), &t);
    let bytes: Vec<u8> = (0..(40usize << 20)).map(|j| (j % 253) as u8).collect();
    m.save(
        2,
        Composite::new().bytes("b", &bytes),
        SaveOptions::default(),
    )
    .unwrap();
    m.wait_until_finished().unwrap();
    assert!(m.restore(Some(2)).unwrap().bytes("b").unwrap() == &bytes[..]);
}
