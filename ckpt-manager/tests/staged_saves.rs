//! Asynchronous saves of *borrowed* items on a local disk (issue 6): `save` writes them into the
//! step's tmp directory before returning, without fsync (about one copy of the bytes, into the
//! page cache), and leaves the fsync and the commit to the background thread. So: the caller may
//! change its tensors as soon as `save` returns; nothing is committed before its files are
//! synced; a failed fsync fails the save (reported once, nothing listed, no tmp left); a failed
//! write fails `save` itself. Real files on disk; a test layer holds or fails `sync_file`.

use ckpt_manager::core::Result;
use ckpt_manager::handlers::{Tensor, TensorMap};
use ckpt_manager::storage::{
    CountingStore, FaultRule, FaultStore, Gate, LocalStore, OpKind, Store,
};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Passes everything through (a `StoreLayer`), except that `sync_file` first waits at a gate.
#[derive(Debug)]
struct HeldSyncs {
    inner: Arc<dyn Store>,
    gate: Gate,
}

impl ckpt_manager::storage::StoreLayer for HeldSyncs {
    fn inner(&self) -> &dyn Store {
        self.inner.as_ref()
    }
    fn sync_file(&self, path: &str) -> Result<()> {
        self.gate.pass();
        self.inner.sync_file(path)
    }
}

/// Two arrays, 6 MiB in all (big enough for the parallel checksum path), values from `seed`.
fn params(seed: f32) -> TensorMap {
    let mut t = TensorMap::new();
    let w: Vec<f32> = (0..1_048_576).map(|i| seed + i as f32).collect();
    let b: Vec<f32> = (0..524_288).map(|i| seed - i as f32).collect();
    t.insert("w".into(), Tensor::from_slice([1024, 1024], &w).unwrap());
    t.insert("b".into(), Tensor::from_slice([524_288], &b).unwrap());
    t
}

fn local(root: &Path) -> Arc<dyn Store> {
    Arc::new(LocalStore::open(root).unwrap())
}

fn names(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock")
        })
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "metadata")
        .collect();
    v.sort();
    v
}

/// Every file below `dir`, with its contents.
fn files_below(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().filter(|e| {
            !e.as_ref()
                .is_ok_and(|e| e.file_name() == ".ckpt-writer.lock")
        }) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn borrowed_items_are_written_before_save_returns_and_committed_after_their_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let gate = Gate::closed();
    let counting = Arc::new(CountingStore::new(local(dir.path())));
    let held: Arc<dyn Store> = Arc::new(HeldSyncs {
        inner: counting.clone(),
        gate: gate.clone(),
    });
    let mut m = CheckpointManager::builder_with_store(held)
        .enable_async_checkpointing(true)
        .build()
        .unwrap();
    let mut p = params(1.0);
    let original = p.clone();
    let blob = vec![7u8; 3 << 20];
    assert!(m
        .save(
            1,
            Composite::new()
                .tensors("params", &p)
                .bytes("blob", &blob)
                .json_value("state", serde_json::json!({"step": 1})),
            SaveOptions::default(),
        )
        .unwrap());
    // `save` returned with every fsync of the items still held at the gate.
    assert!(
        gate.wait_for_waiting(1, Duration::from_secs(20)),
        "no fsync"
    );
    assert_eq!(counting.counts().sync_file, 0, "the first fsync is held");
    let tmp: Vec<String> = names(dir.path());
    assert_eq!(tmp.len(), 1, "only a tmp directory: {tmp:?}");
    assert!(tmp[0].starts_with("1.orbax-checkpoint-tmp"), "{tmp:?}");
    assert!(m.all_steps().is_empty(), "nothing committed yet");
    // The borrowed items are on disk already, whole: the caller's memory is free again.
    let staged = files_below(&dir.path().join(&tmp[0]));
    let staged_names: Vec<&str> = staged.iter().map(|(n, _)| n.as_str()).collect();
    let tensors_file = staged
        .iter()
        .find(|(n, _)| n.starts_with("params") && n.ends_with(".safetensors"))
        .unwrap_or_else(|| panic!("no tensor file in {staged_names:?}"));
    assert!(tensors_file.1.len() > 6 << 20, "the whole tensor file");
    let blob_file = staged
        .iter()
        .find(|(n, _)| n.starts_with("blob"))
        .unwrap_or_else(|| panic!("no bytes file in {staged_names:?}"));
    assert_eq!(blob_file.1, blob);
    // The caller reuses its memory at once.
    p = params(99.0);
    drop(blob);
    gate.open();
    m.wait_until_finished().unwrap();
    assert_eq!(m.all_steps(), vec![1]);
    // One fsync per file written without one: the tensor file and the bytes file.
    assert_eq!(counting.counts().sync_file, 2);
    let r = m.restore(Some(1)).unwrap();
    assert_eq!(r.tensors("params").unwrap(), &original);
    assert_ne!(p, original);
    assert_eq!(r.bytes("blob").unwrap(), &vec![7u8; 3 << 20][..]);
    m.close().unwrap();
}

#[test]
fn a_failed_fsync_fails_the_save_in_the_background_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let faulty: Arc<dyn Store> =
        Arc::new(FaultStore::new(local(dir.path())).with_rule(FaultRule::op(OpKind::SyncFile)));
    let mut m = CheckpointManager::builder_with_store(faulty)
        .enable_async_checkpointing(true)
        .build()
        .unwrap();
    let p = params(2.0);
    assert!(m
        .save(
            3,
            Composite::new().tensors("params", &p),
            SaveOptions::default()
        )
        .unwrap());
    let e = m.wait_until_finished().unwrap_err();
    assert_eq!(e.step(), Some(3), "{e}");
    assert!(e.to_string().contains("sync_file"), "{e}");
    assert!(m.all_steps().is_empty());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    m.wait_until_finished().unwrap();
    m.close().unwrap();
}

#[test]
fn a_failed_write_of_a_borrowed_item_fails_save_itself() {
    let dir = tempfile::tempdir().unwrap();
    let faulty: Arc<dyn Store> = Arc::new(
        FaultStore::new(local(dir.path()))
            .with_rule(FaultRule::op(OpKind::Write).and_path("*.safetensors")),
    );
    let mut m = CheckpointManager::builder_with_store(faulty)
        .enable_async_checkpointing(true)
        .build()
        .unwrap();
    let p = params(3.0);
    let t = Instant::now();
    let e = m
        .save(
            4,
            Composite::new().tensors("params", &p),
            SaveOptions::default(),
        )
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(20));
    assert_eq!(e.step(), Some(4), "{e}");
    assert!(
        e.chain().to_string().contains("injected fault"),
        "{}",
        e.chain()
    );
    assert!(m.all_steps().is_empty());
    assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
    // Nothing is in flight: the next save works.
    m.wait_until_finished().unwrap();
    m.close().unwrap();
}
