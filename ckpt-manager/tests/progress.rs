//! Progress reports of long saves and restores (issue 16): a caller's observer hears bytes and
//! items done, the totals where known, and one `finished` report, for synchronous and
//! asynchronous saves and for restores, on real files.
use ckpt_manager::handlers::{DType, PyTree, Tensor, TensorMap};
use ckpt_manager::storage::{ChecksumManifest, LocalStore, Store};
use ckpt_manager::{CheckpointManager, Composite, Operation, Progress, SaveOptions};
use std::sync::{Arc, Mutex};

type Reports = Arc<Mutex<Vec<Progress>>>;

fn manager(dir: &std::path::Path, async_saves: bool) -> (CheckpointManager, Reports) {
    let reports: Reports = Arc::default();
    let sink = Arc::clone(&reports);
    let m = CheckpointManager::builder(dir.to_str().unwrap())
        .enable_async_checkpointing(async_saves)
        .on_progress(move |p| sink.lock().unwrap().push(p.clone()))
        .build()
        .unwrap();
    (m, reports)
}

fn tensors() -> TensorMap {
    let mut t = TensorMap::new();
    let w: Vec<f32> = (0..262_144).map(|i| i as f32).collect();
    t.insert("w".into(), Tensor::from_slice([512, 512], &w).unwrap());
    t.insert(
        "b".into(),
        Tensor::from_slice([3], &[1.0f32, 2.0, 3.0]).unwrap(),
    );
    t
}

fn tree() -> PyTree {
    PyTree::dict().with(
        "kernel",
        Tensor::new(
            DType::U8,
            [3 << 20],
            (0..3u32 << 20).map(|i| (i % 251) as u8).collect(),
        )
        .unwrap(),
    )
}

/// The bytes of the files a step's checksum manifest lists (every file the handlers wrote).
fn manifest_bytes(dir: &std::path::Path, step_dir: &str) -> u64 {
    let store = LocalStore::open(dir).unwrap();
    let m = ChecksumManifest::read_from(&store as &dyn Store, step_dir)
        .unwrap()
        .unwrap();
    m.files.values().map(|c| c.size).sum()
}

/// Checks the sequence of one operation's reports: monotonic, totals fixed, one finished
/// report at the end; returns the last.
fn check_sequence(reports: &[Progress], op: Operation, step: u64) -> Progress {
    assert!(!reports.is_empty(), "no progress reports");
    let mut last_bytes = 0;
    let mut last_items = 0;
    for (i, p) in reports.iter().enumerate() {
        assert_eq!((p.operation, p.step), (op, step), "{p:?}");
        assert!(p.bytes_done >= last_bytes, "bytes went back: {reports:?}");
        assert!(p.items_done >= last_items, "items went back: {reports:?}");
        assert_eq!(p.items_total, reports[0].items_total, "items total changed");
        assert_eq!(p.bytes_total, reports[0].bytes_total, "bytes total changed");
        assert_eq!(
            p.finished,
            i == reports.len() - 1,
            "finished only last: {p:?}"
        );
        last_bytes = p.bytes_done;
        last_items = p.items_done;
    }
    reports.last().unwrap().clone()
}

#[test]
fn saves_report_every_byte_written_and_every_item() {
    for async_saves in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (mut m, reports) = manager(dir.path(), async_saves);
        let (t, tr) = (tensors(), tree());
        let mut metrics = ckpt_manager::Metrics::new();
        metrics.insert("loss".into(), 0.5.into());
        m.save(
            7,
            Composite::new()
                .tensors("params", &t)
                .pytree("state", &tr)
                .json_value("config", serde_json::json!({"lr": 0.1})),
            SaveOptions::default().metrics(metrics),
        )
        .unwrap();
        m.wait_until_finished().unwrap();
        let got = reports.lock().unwrap().clone();
        let last = check_sequence(&got, Operation::Save, 7);
        // Three items and the metrics item; every byte of every file the handlers wrote.
        assert_eq!(
            (last.items_done, last.items_total),
            (4, 4),
            "async {async_saves}"
        );
        assert_eq!(last.bytes_total, None);
        assert_eq!(last.bytes_done, manifest_bytes(dir.path(), "7"));
        // The 1 MiB of tensors as they are, the 3 MiB array compressed (zstd).
        assert!(last.bytes_done > (1 << 20), "{}", last.bytes_done);
        // Progress moved in more than one report before the end (one per file at least).
        let moving = got
            .iter()
            .filter(|p| p.bytes_done > 0 && !p.finished)
            .count();
        assert!(moving >= 3, "async {async_saves}: {got:?}");
        // Each item was named while it was written.
        for item in ["params", "state", "config", "metrics"] {
            assert!(
                got.iter().any(|p| p.item.as_deref() == Some(item)),
                "no report names {item}"
            );
        }
        m.close().unwrap();
    }
}

#[test]
fn restores_report_bytes_against_the_manifest_total() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut m, _) = manager(dir.path(), false);
        let (t, tr) = (tensors(), tree());
        m.save(
            3,
            Composite::new().tensors("params", &t).pytree("state", &tr),
            SaveOptions::default(),
        )
        .unwrap();
        m.close().unwrap();
    }
    let (m, reports) = manager(dir.path(), false);
    let restored = m.restore(Some(3)).unwrap();
    assert_eq!(restored.tensors("params").unwrap(), &tensors());
    let got = reports.lock().unwrap().clone();
    let last = check_sequence(&got, Operation::Restore, 3);
    assert_eq!((last.items_done, last.items_total), (2, 2));
    let total = manifest_bytes(dir.path(), "3");
    assert_eq!(last.bytes_total, Some(total));
    // Every file was read, each byte once or more (headers may be read twice), none past.
    assert!(last.bytes_done >= total, "{} < {total}", last.bytes_done);
    assert!(
        last.bytes_done < total + total / 10,
        "{} vs {total}",
        last.bytes_done
    );
    assert!(got.iter().filter(|p| !p.finished).count() >= 3, "{got:?}");

    // A restore of one item counts that item's files only.
    reports.lock().unwrap().clear();
    m.restore_items(Some(3), &["params"]).unwrap();
    let got = reports.lock().unwrap().clone();
    let last = check_sequence(&got, Operation::Restore, 3);
    assert_eq!((last.items_done, last.items_total), (1, 1));
    let store = LocalStore::open(dir.path()).unwrap();
    let manifest = ChecksumManifest::read_from(&store as &dyn Store, "3")
        .unwrap()
        .unwrap();
    let params: u64 = manifest
        .files
        .iter()
        .filter(|(p, _)| p.starts_with("params/"))
        .map(|(_, c)| c.size)
        .sum();
    assert_eq!(last.bytes_total, Some(params));
    assert!(last.bytes_done >= params && last.bytes_done < params + params / 10);
}

#[test]
fn a_failed_restore_sends_no_finished_report() {
    let dir = tempfile::tempdir().unwrap();
    let (mut m, reports) = manager(dir.path(), false);
    let t = tensors();
    m.save(
        1,
        Composite::new().tensors("params", &t),
        SaveOptions::default(),
    )
    .unwrap();
    // Flip one byte of the tensors file: the restore fails Corrupt.
    let file = std::fs::read_dir(dir.path().join("1/params"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .unwrap();
    let mut data = std::fs::read(&file).unwrap();
    let n = data.len();
    data[n - 1] ^= 0x40;
    std::fs::write(&file, data).unwrap();
    reports.lock().unwrap().clear();
    assert!(m.restore(Some(1)).is_err());
    assert!(reports.lock().unwrap().iter().all(|p| !p.finished));
}

#[test]
fn tensor_restores_without_fresh_memory_report_the_file() {
    // restore_tensors_into counts each byte read (the file, header included); the mapped
    // restore counts the file once mapped.
    let d = tempfile::tempdir().unwrap();
    let (mut m, reports) = manager(d.path(), false);
    let t = tensors();
    m.save(
        1,
        Composite::new().tensors("params", &t),
        SaveOptions::default(),
    )
    .unwrap();
    let file = std::fs::metadata(d.path().join("1/params/tensors.safetensors"))
        .unwrap()
        .len();
    reports.lock().unwrap().clear();
    let mut mine = t.clone();
    m.restore_tensors_into(Some(1), "params", &mut mine)
        .unwrap();
    let last = check_sequence(&reports.lock().unwrap(), Operation::Restore, 1);
    assert_eq!((last.items_done, last.items_total), (1, 1));
    assert_eq!(last.bytes_total, Some(file));
    assert_eq!(last.bytes_done, file);
    reports.lock().unwrap().clear();
    let (_, mapped) = m.restore_tensors_mapped(Some(1), "params").unwrap();
    assert_eq!(mapped.len(), 2);
    let last = check_sequence(&reports.lock().unwrap(), Operation::Restore, 1);
    assert_eq!((last.items_done, last.items_total), (1, 1));
    assert_eq!((last.bytes_done, last.bytes_total), (file, Some(file)));
    // A failed restore sends no finished report.
    reports.lock().unwrap().clear();
    let mut wrong = Tensor::new(DType::F32, [1], vec![0; 4]).unwrap();
    assert!(m
        .restore_tensors_into(Some(1), "params", [("w", &mut wrong)])
        .is_err());
    assert!(reports.lock().unwrap().iter().all(|p| !p.finished));
}
