//! `ckpt-bench profile OP LAYOUT BYTES [REPS [ROOT]]`: one operation repeated on the local file
//! system (or the root ROOT, e.g. `memory://`), for `perf record` (the README's profiles come
//! from it). OP is `save` (sync), `restore`,
//! `restore-cold` (page cache dropped before each), `capture` (async save of borrowed items,
//! waited for), `memcpy` (a clone of the payload) or `raw-read`; each repetition's seconds are printed.

use super::payload::{Layout, Payload};
use super::{sys, target_dir};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use std::time::Instant;

/// Runs the profile loop.
///
/// # Errors
/// The first failing operation.
pub fn profile(
    op: &str,
    layout: Layout,
    bytes: usize,
    reps: usize,
    root: Option<&str>,
) -> Result<(), String> {
    let dir = target_dir().join("bench-tmp").join("profile");
    let _ = std::fs::remove_dir_all(&dir);
    let p = Payload::new(layout, bytes, 5)?;
    let e = |e: ckpt_manager::Error| e.to_string();
    let root = root.map_or_else(|| dir.to_string_lossy().into_owned(), str::to_string);
    let mut m = CheckpointManager::builder(root)
        .enable_async_checkpointing(op == "capture")
        .build()
        .map_err(e)?;
    let item = || Composite::new().tensors("params", &p.tensors);
    if op != "save" && op != "capture" {
        m.save(1, item(), SaveOptions::default()).map_err(e)?;
        m.wait_until_finished().map_err(e)?;
    }
    let file = dir.join("1/params/tensors.safetensors");
    for rep in 0..reps {
        let step = rep as u64 + 2;
        if op == "restore-cold" {
            sys::drop_caches();
        }
        let t = Instant::now();
        match op {
            "save" | "capture" => {
                m.save(step, item(), SaveOptions::default()).map_err(e)?;
                if op == "capture" {
                    print!("blocked {:.1} ms, ", t.elapsed().as_secs_f64() * 1e3);
                }
                m.wait_until_finished().map_err(e)?;
            }
            "restore" | "restore-cold" => {
                std::hint::black_box(m.restore(Some(1)).map_err(e)?);
            }
            "memcpy" => {
                std::hint::black_box(p.tensors.clone());
            }
            "raw-read" => {
                std::hint::black_box(std::fs::read(&file).map_err(|e| e.to_string())?);
            }
            other => return Err(format!("unknown profile op {other:?}")),
        }
        println!(
            "{op} {}: {:.1} ms",
            rep + 1,
            t.elapsed().as_secs_f64() * 1e3
        );
        if op == "save" || op == "capture" {
            m.delete(step).map_err(e)?;
        }
    }
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
