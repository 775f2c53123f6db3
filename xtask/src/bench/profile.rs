//! `ckpt-bench profile OP LAYOUT BYTES [REPS [ROOT]]`: one operation repeated on the local file
//! system (or the root ROOT, e.g. `memory://`), for `perf record` (the README's profiles come
//! from it). OP is `save` (sync), `restore`,
//! `restore-cold` (page cache dropped before each), `restore-into` (`restore_tensors_into` a
//! copy of the payload), `restore-mapped` (`restore_tensors_mapped`, verified; unmapping
//! untimed), `capture` (async save of borrowed items, waited for), `memcpy` (a clone of the
//! payload), `raw-read`, `alternate` (a sync save and an async save, in turn: see
//! `alternate` below), `sync-loop` or `moved-loop` (see below), or `pytree-save` / `pytree-restore` / `pytree-restore-into` (the same
//! arrays as one pytree item in Orbax's OCDBT format; `restore_pytree_into` the loop's own
//! tree); each repetition's seconds are printed. With `CKPT_BENCH_DIRECT_IO` set, saves write
//! with `O_DIRECT` (`direct_io_min_bytes` = 1 MiB); with `CKPT_BENCH_PLAIN`, plainly into the
//! page cache (`write_behind_min_bytes(None)`; the default is write-behind).

use super::payload::{Layout, Payload};
use super::{sys, target_dir};
use ckpt_manager::handlers::PyTree;
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
    if op == "sync-loop" {
        let r = sync_loop(&dir, &p.tensors, reps).map_err(e);
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    if op == "moved-loop" {
        let r = moved_loop(&dir, &p.tensors, reps).map_err(e);
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    if op == "alternate" {
        let r = alternate(&dir, &p.tensors, reps).map_err(e);
        let _ = std::fs::remove_dir_all(&dir);
        return r;
    }
    let root = root.map_or_else(|| dir.to_string_lossy().into_owned(), str::to_string);
    let builder = CheckpointManager::builder(root).enable_async_checkpointing(op == "capture");
    let mut m = writes_from_env(builder).build().map_err(e)?;
    let pytree = op.starts_with("pytree-");
    let mut my_tree: Option<PyTree> = None;
    // A root that already holds step 1 (e.g. one Orbax wrote, whose item is `default`) is
    // restored as it is, and its tree is what `pytree-save` saves.
    let existing = m.all_steps().contains(&1);
    let name = if existing && pytree {
        "default"
    } else {
        "params"
    };
    let tree = if existing && pytree {
        let restored = m.restore_items(Some(1), &[name]).map_err(e)?;
        restored.pytree(name).map_err(e)?.clone()
    } else {
        p.tensors
            .iter()
            .fold(PyTree::dict(), |t, (k, v)| t.with(k.clone(), v.clone()))
    };
    let item = || {
        if pytree {
            Composite::new().pytree("params", &tree)
        } else {
            Composite::new().tensors("params", &p.tensors)
        }
    };
    if existing {
        if op == "pytree-restore-into" {
            my_tree = Some(tree.clone());
        }
    } else if op != "save" && op != "capture" && op != "pytree-save" {
        m.save(1, item(), SaveOptions::default()).map_err(e)?;
        m.wait_until_finished().map_err(e)?;
    }
    if op == "pytree-restore-into" && my_tree.is_none() {
        my_tree = Some(tree.clone());
    }
    let file = dir.join("1/params/tensors.safetensors");
    let mut mine = (op == "restore-into").then(|| p.tensors.clone());
    let mut mapped = None;
    for rep in 0..reps {
        let step = rep as u64 + 2;
        if op == "restore-cold" {
            sys::drop_caches();
        }
        let t = Instant::now();
        match op {
            "save" | "capture" | "pytree-save" => {
                m.save(step, item(), SaveOptions::default()).map_err(e)?;
                if op == "capture" {
                    print!("blocked {:.1} ms, ", t.elapsed().as_secs_f64() * 1e3);
                }
                m.wait_until_finished().map_err(e)?;
            }
            "restore" | "restore-cold" | "pytree-restore" => {
                std::hint::black_box(m.restore_items(Some(1), &[name]).map_err(e)?);
            }
            "restore-into" => {
                if let Some(mine) = mine.as_mut() {
                    m.restore_tensors_into(Some(1), "params", mine).map_err(e)?;
                }
            }
            "pytree-restore-into" => {
                if let Some(t) = my_tree.as_mut() {
                    m.restore_pytree_into(Some(1), name, t).map_err(e)?;
                }
            }
            "restore-mapped" => {
                mapped = Some(m.restore_tensors_mapped(Some(1), "params").map_err(e)?);
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
        if op == "save" || op == "capture" || op == "pytree-save" {
            m.delete(step).map_err(e)?;
        }
        // Unmapped outside the timed part.
        drop(mapped.take());
    }
    drop(m);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `alternate`: per repetition, a synchronous save into root `sync/` then an async save of the
/// same borrowed tensors into root `async/` (waited for), both managers keeping 2 steps as the
/// `vs-orbax` loops do (ROOT is ignored); prints their wall times, the CPU time the process
/// used during each (every thread, user + system: the kernel's copy into the page cache is
/// most of it), and the ratios. Interleaving the two at the finest grain lets a loaded machine
/// slow both alike, and CPU time is what a busy machine's other processes do not add to
/// (issue 14: the async save's time to committed beside the sync save's).
fn alternate(
    dir: &std::path::Path,
    tensors: &ckpt_manager::handlers::TensorMap,
    reps: usize,
) -> ckpt_manager::Result<()> {
    let mut sync = open_loop_manager(dir, "sync", false)?;
    let mut background = open_loop_manager(dir, "async", true)?;
    for rep in 0..reps {
        let step = rep as u64 + 1;
        let item = || Composite::new().tensors("params", tensors);
        let (t, c) = (Instant::now(), cpu_secs());
        sync.save(step, item(), SaveOptions::default())?;
        let (s, s_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
        let (t, c) = (Instant::now(), cpu_secs());
        background.save(step, item(), SaveOptions::default())?;
        let blocked = t.elapsed().as_secs_f64();
        background.wait_until_finished()?;
        let (a, a_cpu) = (t.elapsed().as_secs_f64(), cpu_secs() - c);
        println!(
            "alternate {}: sync {:.1} ms (cpu {:.0} ms), async blocked {:.1} ms, to committed {:.1} ms (cpu {:.0} ms), async/sync {:.2} (cpu {:.2})",
            rep + 1,
            s * 1e3,
            s_cpu * 1e3,
            blocked * 1e3,
            a * 1e3,
            a_cpu * 1e3,
            a / s,
            a_cpu / s_cpu
        );
    }
    sync.close()?;
    background.close()
}

/// `moved-loop`: async saves of moved-in tensors (a clone made before the clock starts, as the
/// `fs` section does), each followed by a delete; per save the time blocked, to committed and
/// the CPU time used.
fn moved_loop(
    dir: &std::path::Path,
    tensors: &ckpt_manager::handlers::TensorMap,
    reps: usize,
) -> ckpt_manager::Result<()> {
    let mut m = open_loop_manager(dir, "moved", true)?;
    for rep in 0..reps {
        let step = rep as u64 + 1;
        let owned = tensors.clone();
        let (t, c) = (Instant::now(), cpu_secs());
        m.save(
            step,
            Composite::new().tensors_owned("params", owned),
            SaveOptions::default(),
        )?;
        let blocked = t.elapsed().as_secs_f64();
        m.wait_until_finished()?;
        println!(
            "moved-loop {}: blocked {:.2} ms, to committed {:.1} ms (cpu {:.0} ms)",
            rep + 1,
            blocked * 1e3,
            t.elapsed().as_secs_f64() * 1e3,
            (cpu_secs() - c) * 1e3
        );
        m.delete(step)?;
    }
    m.close()
}

/// `sync-loop`: synchronous saves keeping 2 steps (as the `vs-orbax` sync loop), each one's
/// wall and CPU time (with `CKPT_BENCH_DIRECT_IO`, written with `O_DIRECT`).
fn sync_loop(
    dir: &std::path::Path,
    tensors: &ckpt_manager::handlers::TensorMap,
    reps: usize,
) -> ckpt_manager::Result<()> {
    let mut m = open_loop_manager(dir, "sync", false)?;
    for rep in 0..reps {
        let (t, c) = (Instant::now(), cpu_secs());
        m.save(
            rep as u64 + 1,
            Composite::new().tensors("params", tensors),
            SaveOptions::default(),
        )?;
        println!(
            "sync-loop {}: {:.1} ms (cpu {:.0} ms)",
            rep + 1,
            t.elapsed().as_secs_f64() * 1e3,
            (cpu_secs() - c) * 1e3
        );
    }
    m.close()
}

/// Whether the environment variable `name` is set to something (not empty).
fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// `builder` writing as the environment says: `O_DIRECT` from 1 MiB with `CKPT_BENCH_DIRECT_IO`,
/// plain buffered writes (write-behind off) with `CKPT_BENCH_PLAIN`, else the default.
fn writes_from_env(
    mut builder: ckpt_manager::CheckpointManagerBuilder,
) -> ckpt_manager::CheckpointManagerBuilder {
    if env_flag("CKPT_BENCH_DIRECT_IO") {
        builder = builder.direct_io_min_bytes(1 << 20);
    }
    if env_flag("CKPT_BENCH_PLAIN") {
        builder = builder.write_behind_min_bytes(None);
    }
    builder
}

/// The manager of a save loop (`alternate`, `sync-loop`) on root `dir/name`, async or not,
/// keeping 2 steps as the `vs-orbax` loops do; with `CKPT_BENCH_BG_DELETE` set, deleting on
/// the background deleter; writing as [`writes_from_env`] says.
fn open_loop_manager(
    dir: &std::path::Path,
    name: &str,
    background: bool,
) -> ckpt_manager::Result<CheckpointManager> {
    let b = CheckpointManager::builder(dir.join(name).to_string_lossy())
        .enable_async_checkpointing(background)
        .max_to_keep(2)
        .enable_background_delete(std::env::var_os("CKPT_BENCH_BG_DELETE").is_some());
    writes_from_env(b).build()
}

/// CPU time (user + system, every thread) this process has used, in seconds
/// (`/proc/self/stat`, 10 ms ticks); 0 where it cannot be read.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The fields after the command name (which ends with the last ')'): utime and stime are
    // the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0
}
