//! Restores of a `ckpt.tensors` item without fresh memory (issue 14), on real files:
//! `restore_tensors_into` (the caller's tensors, filled in place) and `restore_tensors_mapped`
//! (the file mapped read-only), both with the step's checksums verified.

use ckpt_manager::core::ErrorKind;
use ckpt_manager::handlers::{half, DType, Tensor, TensorMap};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::path::{Path, PathBuf};

/// Mixed dtypes, a scalar, an empty tensor, and one tensor above 16 MiB (its checksum is
/// computed on a second thread while it streams).
fn params() -> TensorMap {
    let mut m = TensorMap::new();
    let big: Vec<f32> = (0..(5 << 20)).map(|i| (i % 977) as f32 * 0.5).collect();
    m.insert(
        "big".into(),
        Tensor::from_slice([5 << 10, 1024], &big).unwrap(),
    );
    m.insert(
        "w".into(),
        Tensor::from_slice([3, 4], &(0..12).map(|i| i as f32).collect::<Vec<_>>()).unwrap(),
    );
    m.insert(
        "ids".into(),
        Tensor::from_slice([5], &[1i64, -2, 3, i64::MAX, 0]).unwrap(),
    );
    m.insert(
        "mask".into(),
        Tensor::from_slice([4], &[true, false, true, true]).unwrap(),
    );
    m.insert(
        "h".into(),
        Tensor::from_slice([2], &[half::bf16::from_f32(1.5), half::bf16::MIN]).unwrap(),
    );
    m.insert("step".into(), Tensor::scalar(7u64));
    m.insert(
        "empty".into(),
        Tensor::new(DType::I32, [0, 3], vec![]).unwrap(),
    );
    m
}

/// Tensors of the same dtypes and shapes as `m`, all bytes zero.
fn zeros_like(m: &TensorMap) -> TensorMap {
    m.iter()
        .map(|(n, t)| {
            let z = Tensor::new(t.dtype(), t.shape(), vec![0; t.as_bytes().len()]).unwrap();
            (n.clone(), z)
        })
        .collect()
}

/// A root with step 1: tensors item `params` and a JSON item `state`.
fn saved_root(root: &Path, p: &TensorMap) {
    let mut m = CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap();
    m.save(
        1,
        Composite::new()
            .tensors("params", p)
            .json_value("state", json!({"epoch": 3})),
        SaveOptions::default(),
    )
    .unwrap();
    m.close().unwrap();
}

fn open(root: &Path) -> CheckpointManager {
    CheckpointManager::builder(root.to_str().unwrap())
        .build()
        .unwrap()
}

fn file(root: &Path) -> PathBuf {
    root.join("1/params/tensors.safetensors")
}

/// Flips one bit of the file's byte `at` bytes before its end.
fn flip_from_end(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    let n = bytes.len();
    bytes[n - at] ^= 0x10;
    std::fs::write(path, &bytes).unwrap();
}

#[test]
fn restore_tensors_into_fills_the_callers_tensors_in_place() {
    let d = tempfile::tempdir().unwrap();
    let p = params();
    saved_root(d.path(), &p);
    let m = open(d.path());
    let mut mine = zeros_like(&p);
    let before: Vec<*const u8> = mine.values().map(|t| t.as_bytes().as_ptr()).collect();
    assert_eq!(
        m.restore_tensors_into(None, "params", &mut mine).unwrap(),
        1
    );
    assert_eq!(mine, p);
    // The same memory, filled in place: no tensor got a new buffer.
    let after: Vec<*const u8> = mine.values().map(|t| t.as_bytes().as_ptr()).collect();
    assert_eq!(before, after);

    // A subset, named by &str: the other tensors are not kept (the file is still read whole).
    let mut w = Tensor::new(DType::F32, [3, 4], vec![0; 48]).unwrap();
    let mut mask = Tensor::new(DType::Bool, [4], vec![0; 4]).unwrap();
    m.restore_tensors_into(Some(1), "params", [("w", &mut w), ("mask", &mut mask)])
        .unwrap();
    assert_eq!((&w, &mask), (&p["w"], &p["mask"]));

    // Without checksum verification the result is the same.
    let unverified = CheckpointManager::builder(d.path().to_str().unwrap())
        .verify_checksums(false)
        .read_only(true)
        .build()
        .unwrap();
    let mut again = zeros_like(&p);
    unverified
        .restore_tensors_into(Some(1), "params", &mut again)
        .unwrap();
    assert_eq!(again, p);
}

#[test]
fn restore_tensors_into_refuses_what_does_not_match_naming_the_tensor() {
    let d = tempfile::tempdir().unwrap();
    let p = params();
    saved_root(d.path(), &p);
    let m = open(d.path());
    let untouched = |t: &Tensor| t.as_bytes().iter().all(|&b| b == 0);

    let mut missing = Tensor::new(DType::F32, [3, 4], vec![0; 48]).unwrap();
    let e = m
        .restore_tensors_into(Some(1), "params", [("nope", &mut missing)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("\"nope\""), "{e}");
    assert!(
        e.to_string().contains("\"w\""),
        "names what the item has: {e}"
    );

    let mut wrong_dtype = Tensor::new(DType::I32, [3, 4], vec![0; 48]).unwrap();
    let mut w = Tensor::new(DType::F32, [3, 4], vec![0; 48]).unwrap();
    let e = m
        .restore_tensors_into(
            Some(1),
            "params",
            [("w", &mut w), ("ids", &mut wrong_dtype)],
        )
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("\"ids\""), "{e}");
    assert!(e.to_string().contains("int64"), "{e}");
    assert!(
        untouched(&w),
        "nothing is read when a target does not match"
    );

    let mut wrong_shape = Tensor::new(DType::F32, [4, 3], vec![0; 48]).unwrap();
    let e = m
        .restore_tensors_into(Some(1), "params", [("w", &mut wrong_shape)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("[3, 4]"), "{e}");

    let (mut a, mut b) = (w.clone(), w.clone());
    let e = m
        .restore_tensors_into(Some(1), "params", [("w", &mut a), ("w", &mut b)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");

    // Not a tensors item; no such item; no such step.
    let e = m
        .restore_tensors_into(Some(1), "state", [("w", &mut a)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    assert!(e.to_string().contains("not a tensors item"), "{e}");
    let e = m
        .restore_tensors_into(Some(1), "other", [("w", &mut a)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = m
        .restore_tensors_into(Some(2), "params", [("w", &mut a)])
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}

#[test]
fn restore_tensors_into_reports_a_corrupted_byte() {
    let d = tempfile::tempdir().unwrap();
    let p = params();
    saved_root(d.path(), &p);
    // Near the end of the data (small tensors, read last), then inside the big tensor.
    for at in [3, 8 << 20] {
        flip_from_end(&file(d.path()), at);
        let m = open(d.path());
        let mut mine = zeros_like(&p);
        let e = m
            .restore_tensors_into(Some(1), "params", &mut mine)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("params/tensors.safetensors"), "{e}");
        assert!(format!("{e:?}").contains("crc32c"), "{e:?}");
        // Restoring only a tensor the flip is not in still checks the whole file.
        let mut w = Tensor::new(DType::F32, [3, 4], vec![0; 48]).unwrap();
        let e = m
            .restore_tensors_into(Some(1), "params", [("w", &mut w)])
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        flip_from_end(&file(d.path()), at);
    }
    // A flipped bit in the header: Corrupt (the checksum), not a misleading mismatch.
    let f = file(d.path());
    let mut bytes = std::fs::read(&f).unwrap();
    let at = bytes.windows(3).position(|w| w == b"\"w\"").unwrap() + 1;
    bytes[at] = b'v';
    std::fs::write(&f, &bytes).unwrap();
    let mut mine = zeros_like(&p);
    let e = open(d.path())
        .restore_tensors_into(Some(1), "params", &mut mine)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    // A truncated file: Corrupt before anything is read.
    std::fs::write(&f, &bytes[..bytes.len() - 1]).unwrap();
    let e = open(d.path())
        .restore_tensors_into(Some(1), "params", &mut mine)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

#[test]
fn restore_tensors_mapped_serves_the_files_bytes() {
    let d = tempfile::tempdir().unwrap();
    let p = params();
    saved_root(d.path(), &p);
    let mut m = open(d.path());
    let (step, mapped) = m.restore_tensors_mapped(None, "params").unwrap();
    assert_eq!(step, 1);
    assert_eq!(mapped.len(), p.len());
    assert_eq!(
        mapped.names().collect::<Vec<_>>(),
        p.keys().map(String::as_str).collect::<Vec<_>>()
    );
    for (name, t) in mapped.iter() {
        assert_eq!(t, p[name], "{name}");
        assert_eq!(t.dtype(), p[name].dtype());
        assert_eq!(t.shape(), p[name].shape());
        // Aligned to its element size in a file ckpt wrote.
        assert_eq!(
            t.as_bytes().as_ptr() as usize % t.dtype().size_in_bytes(),
            0,
            "{name}"
        );
    }
    assert_eq!(
        mapped.get("ids").unwrap().to_vec::<i64>().unwrap(),
        p["ids"].to_vec::<i64>().unwrap()
    );
    assert!(mapped.get("nope").is_none());
    assert_eq!(mapped.to_tensor_map(), p);
    assert!(mapped.location().ends_with("1/params/tensors.safetensors"));
    // Deleting the step while it is mapped is harmless: the mapping keeps the data.
    m.delete(1).unwrap();
    assert!(!d.path().join("1").exists());
    assert_eq!(mapped.get("big").unwrap(), p["big"]);
    assert_eq!(mapped.to_tensor_map(), p);
}

#[test]
fn restore_tensors_mapped_verifies_checksums_over_the_mapping() {
    let d = tempfile::tempdir().unwrap();
    let p = params();
    saved_root(d.path(), &p);
    flip_from_end(&file(d.path()), 5);
    let m = open(d.path());
    let e = m.restore_tensors_mapped(Some(1), "params").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("params/tensors.safetensors"), "{e}");
    assert!(format!("{e:?}").contains("wrong crc32c"), "{e:?}");
    // Opted out of verification, the damaged bytes are served as they are.
    let unverified = CheckpointManager::builder(d.path().to_str().unwrap())
        .verify_checksums(false)
        .read_only(true)
        .build()
        .unwrap();
    let (_, mapped) = unverified
        .restore_tensors_mapped(Some(1), "params")
        .unwrap();
    assert_ne!(mapped.to_tensor_map(), p);
    drop(mapped);
    // Truncated: Corrupt.
    let f = file(d.path());
    let bytes = std::fs::read(&f).unwrap();
    std::fs::write(&f, &bytes[..bytes.len() - 2]).unwrap();
    let e = m.restore_tensors_mapped(Some(1), "params").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

#[test]
fn restore_tensors_mapped_refuses_other_items_and_roots() {
    let d = tempfile::tempdir().unwrap();
    let p = params();
    saved_root(d.path(), &p);
    let m = open(d.path());
    let e = m.restore_tensors_mapped(Some(1), "state").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    let e = m.restore_tensors_mapped(Some(1), "other").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // A root in memory has no file to map: Unsupported, saying why.
    let mut mem = CheckpointManager::builder("memory://").build().unwrap();
    mem.save(
        1,
        Composite::new().tensors("params", &p),
        SaveOptions::default(),
    )
    .unwrap();
    mem.wait_until_finished().unwrap();
    let e = mem.restore_tensors_mapped(Some(1), "params").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains("local file system"), "{e}");
    // restore_tensors_into works there.
    let mut mine = zeros_like(&p);
    mem.restore_tensors_into(Some(1), "params", &mut mine)
        .unwrap();
    assert_eq!(mine, p);
}

#[test]
fn with_single_host_load_and_broadcast_into_works_and_mapped_is_refused() {
    use ckpt_manager::coordination::{Coordinator, SingleProcess};
    use std::sync::Arc;
    let d = tempfile::tempdir().unwrap();
    let p = params();
    saved_root(d.path(), &p);
    let job: Arc<dyn Coordinator> = Arc::new(SingleProcess::new());
    let m = CheckpointManager::builder(d.path().to_str().unwrap())
        .coordinator(job)
        .single_host_load_and_broadcast(true)
        .build()
        .unwrap();
    let mut mine = zeros_like(&p);
    m.restore_tensors_into(Some(1), "params", &mut mine)
        .unwrap();
    assert_eq!(mine, p);
    let e = m.restore_tensors_mapped(Some(1), "params").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(
        e.to_string().contains("single_host_load_and_broadcast"),
        "{e}"
    );
}
