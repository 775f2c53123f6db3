//! What each step of a fault case holds, and the checks that a listed step restores to it and
//! that nothing is left behind.

use super::*;

pub(super) fn tensors(step: Step) -> TensorMap {
    let w: Vec<f32> = (0..2048u32)
        .map(|i| (i as f32) * 0.25 + step as f32)
        .collect();
    let mut t = TensorMap::new();
    t.insert(
        "w".into(),
        Tensor::from_slice(vec![32, 64], &w).expect("shape"),
    );
    t
}

/// An Orbax array item: an array in an OCDBT data file (written on the handler's writer
/// thread), a small one inline in the B+tree node, a scalar.
pub(super) fn tree(step: Step) -> PyTree {
    let w: Vec<f32> = (0..3072u32).map(|i| i as f32 * 0.5 - step as f32).collect();
    let b: Vec<i64> = (0..5).map(|i| i * step as i64).collect();
    PyTree::dict()
        .with("w", Tensor::from_slice(vec![48, 64], &w).expect("shape"))
        .with("b", Tensor::from_slice(vec![5], &b).expect("shape"))
        .with("n", PyTree::Scalar(Tensor::scalar(step as i64)))
}

pub(super) fn state(step: Step) -> Value {
    json!({"step": step, "name": format!("step {step}"), "xs": [step, step * 2, step * 3]})
}

pub(super) fn blob(step: Step) -> Vec<u8> {
    (0..777u32)
        .map(|i| (i as u8).wrapping_mul(31) ^ step as u8)
        .collect()
}

pub(super) fn metrics(step: Step) -> Metrics {
    let mut m = Metrics::new();
    m.insert("loss".into(), json!(step as f64 * 0.5));
    m
}

pub(super) fn items(step: Step) -> Composite<'static> {
    Composite::new()
        .tensors_owned("params", tensors(step))
        .json_value("state", state(step))
        .bytes_owned("blob", blob(step))
        .pytree_owned("tree", tree(step))
}

pub(super) fn opts(step: Step) -> SaveOptions {
    SaveOptions::default().metrics(metrics(step))
}

/// Restores `step` through `mngr` and checks every item and the checksum manifest.
pub(super) fn check_step(mngr: &CheckpointManager, step: Step) -> std::result::Result<(), String> {
    let r = mngr
        .restore(Some(step))
        .map_err(|e| format!("listed step {step} does not restore: {e}"))?;
    if r.names() != ["blob", "metrics", "params", "state", "tree"] {
        return Err(format!("step {step} holds items {:?}", r.names()));
    }
    let ok = r.tensors("params").map_err(|e| e.to_string())? == &tensors(step)
        && r.json_value("state").map_err(|e| e.to_string())? == &state(step)
        && r.bytes("blob").map_err(|e| e.to_string())? == blob(step).as_slice()
        && r.pytree("tree").map_err(|e| e.to_string())? == &tree(step)
        && matches!(r.get("metrics"), Some(RestoredItem::Json(Value::Object(m))) if *m == metrics(step));
    if !ok {
        return Err(format!(
            "step {step} restores other contents than were saved"
        ));
    }
    let report = ckpt_manager::verify_step(mngr.store().as_ref(), &mngr.step_dir_name(step))
        .map_err(|e| format!("verify_step({step}): {e}"))?;
    if !report.has_checksums || !report.is_ok() {
        return Err(format!("step {step} fails verification:\n{report}"));
    }
    Ok(())
}

/// The invariant: every step a fresh (read-only) manager lists restores completely; returns the
/// listing.
pub(super) fn fresh_listing(local: &Arc<dyn Store>) -> std::result::Result<Vec<Step>, String> {
    let fresh = CheckpointManager::builder_with_store(Arc::clone(local))
        .read_only(true)
        .build()
        .map_err(|e| format!("a fresh manager cannot open the root: {e}"))?;
    let steps = fresh.all_steps();
    for &s in &steps {
        check_step(&fresh, s)?;
    }
    Ok(steps)
}

/// What an unfinished save or delete left in the root: tmp-named entries, and (commit-file
/// protocol) step directories without `commit_success.txt`.
pub(super) fn leftovers(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(root).expect("list root") {
        let e = e.expect("entry");
        let name = e.file_name().to_string_lossy().into_owned();
        let uncommitted_step = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_digit())
            && !e.path().join("commit_success.txt").exists();
        if name.contains(TMP_DIR_SUFFIX) || uncommitted_step {
            out.push(name);
        }
    }
    out
}

/// A scratch directory: in `/dev/shm` where there is one (these tests check what is visible and
/// restorable, not durability, and a memory file system keeps the hundreds of fsyncs of a run
/// cheap), else in the default temp dir.
pub(super) fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().expect("tempdir")
}
