//! Issue 15: arrays sharded across processes (`ArrayShard`, `Composite::array_shard`,
//! `CheckpointManager::restore_array_slice`), here with every shard saved by one process (the
//! files are the same as when 4 processes save one shard each: tests/multiprocess does that):
//! any box restores bit-exactly, whole or in the slices of another process count, reading the
//! data of the overlapping shards only.

use ckpt_manager::handlers::Tensor;
use ckpt_manager::storage::{CountingStore, Store};
use ckpt_manager::{ArrayShard, CheckpointManager, Composite, ErrorKind, SaveOptions};
use std::sync::Arc;

/// Element (r, c) of the 32x6 global array at `step`.
fn w(step: u64, r: usize, c: usize) -> f32 {
    (step as f32 * 1000.0 + r as f32 * 10.0 + c as f32) * 0.5
}

fn box_of(step: u64, rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> Vec<f32> {
    rows.flat_map(|r| cols.clone().map(move |c| w(step, r, c)))
        .collect()
}

/// The shard of process `i` of `n`: rows `32/n * i ..`, all columns.
fn shard(step: u64, i: usize, n: usize) -> ArrayShard {
    let rows = 32 / n;
    let data =
        Tensor::from_slice([rows, 6], &box_of(step, rows * i..rows * (i + 1), 0..6)).unwrap();
    ArrayShard::new(vec![32, 6], vec![rows * i, 0], data).unwrap()
}

#[test]
fn any_slice_of_a_sharded_array_restores_bit_exactly_reading_only_overlapping_shards() {
    let dir = tempfile::tempdir().unwrap();
    let local: Arc<dyn Store> = ckpt_manager::storage::open(dir.path().to_str().unwrap()).unwrap();
    let counting = Arc::new(CountingStore::new(local));
    let mut m = CheckpointManager::builder_with_store(counting.clone())
        .enable_async_checkpointing(false)
        .build()
        .unwrap();
    let mut items = Composite::new();
    for i in 0..4 {
        items = items.array_shard("w", i, &shard(7, i, 4));
    }
    assert!(m.save(7, items, SaveOptions::default()).unwrap());
    // 1 process: the whole array; 2 processes: a half each; a box across shard borders.
    let whole = m.restore_array_slice(None, "w", &[0, 0], &[32, 6]).unwrap();
    assert_eq!(whole.to_vec::<f32>().unwrap(), box_of(7, 0..32, 0..6));
    for half in 0..2 {
        let t = m
            .restore_array_slice(Some(7), "w", &[16 * half, 0], &[16, 6])
            .unwrap();
        assert_eq!(t.shape(), &[16, 6]);
        assert_eq!(
            t.to_vec::<f32>().unwrap(),
            box_of(7, 16 * half..16 * (half + 1), 0..6)
        );
    }
    let t = m
        .restore_array_slice(Some(7), "w", &[5, 2], &[22, 3])
        .unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), box_of(7, 5..27, 2..5));
    // Only the overlapping shards' data is read: rows 0..8 read 3 shards' data (3 x 8 x 6 f32)
    // less than the whole array.
    counting.reset();
    m.restore_array_slice(None, "w", &[0, 0], &[32, 6]).unwrap();
    let all = counting.counts().bytes_read;
    counting.reset();
    m.restore_array_slice(None, "w", &[0, 0], &[8, 6]).unwrap();
    let first = counting.counts().bytes_read;
    assert_eq!(all - first, 3 * 8 * 6 * 4, "{all} {first}");
    // Errors: a box outside the array, an unknown array, shards that do not cover the box.
    let e = m
        .restore_array_slice(None, "w", &[30, 0], &[4, 6])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = m
        .restore_array_slice(None, "v", &[0, 0], &[1, 1])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let items = Composite::new()
        .array_shard("w", 0, &shard(8, 0, 4))
        .array_shard("w", 2, &shard(8, 2, 4));
    assert!(m.save(8, items, SaveOptions::default()).unwrap());
    let e = m
        .restore_array_slice(None, "w", &[0, 0], &[32, 6])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("cover 96 of the 192"), "{e}");
    // The rows the two shards hold restore.
    let t = m.restore_array_slice(None, "w", &[16, 1], &[8, 4]).unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), box_of(8, 16..24, 1..5));
    // A shard outside its global shape is refused when built.
    let data = Tensor::from_slice([2, 6], &[0f32; 12]).unwrap();
    let e = ArrayShard::new(vec![32, 6], vec![31, 0], data).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

#[test]
fn a_three_dimensional_array_sharded_on_its_last_axis_restores_any_box() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = CheckpointManager::builder(dir.path().to_str().unwrap())
        .enable_async_checkpointing(false)
        .build()
        .unwrap();
    let v = |a: usize, b: usize, c: usize| (a * 100 + b * 10 + c) as i32;
    let mut items = Composite::new();
    for i in 0..3 {
        // Shard i holds the last-axis columns 3i..3i+3 of a 4x5x9 array.
        let vals: Vec<i32> = (0..4)
            .flat_map(|a| (0..5).flat_map(move |b| (3 * i..3 * i + 3).map(move |c| v(a, b, c))))
            .collect();
        let t = Tensor::from_slice([4, 5, 3], &vals).unwrap();
        items = items.array_shard(
            "x",
            i,
            &ArrayShard::new(vec![4, 5, 9], vec![0, 0, 3 * i], t).unwrap(),
        );
    }
    assert!(m.save(1, items, SaveOptions::default()).unwrap());
    let t = m
        .restore_array_slice(None, "x", &[1, 2, 2], &[2, 3, 5])
        .unwrap();
    let expected: Vec<i32> = (1..3)
        .flat_map(|a| (2..5).flat_map(move |b| (2..7).map(move |c| v(a, b, c))))
        .collect();
    assert_eq!(t.to_vec::<i32>().unwrap(), expected);
    let whole = m
        .restore_array_slice(None, "x", &[0, 0, 0], &[4, 5, 9])
        .unwrap();
    assert_eq!(whole.shape(), &[4, 5, 9]);
    assert_eq!(whole.to_vec::<i32>().unwrap()[4 * 5 * 9 - 1], v(3, 4, 8));
}
