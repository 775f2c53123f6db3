//! Save and restore figures: the raw baselines (std::fs write+fsync and read, memcpy, raw opendal
//! put/get) and ckpt's sync save, async save (blocked and total) and restore, on the local file
//! system, the memory store and S3.

use super::payload::Payload;
use super::report::{Cmp, RatioKind, Report};
use super::{sys, Bench, Ctx};
use ckpt_manager::handlers::TensorMap;
use ckpt_manager::{CheckpointManager, Composite, SaveOptions, Step};
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// The item name the bench saves its tensors under.
const ITEM: &str = "params";

/// Seconds since `t`.
fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Writes `parts` one after another to `dir/data.bin` with std::fs, then fsyncs the file, `dir`
/// and `dir`'s parent (the minimum a durable save of these bytes needs).
fn raw_write(dir: &Path, parts: &[&[u8]]) -> std::io::Result<()> {
    std::fs::create_dir(dir)?;
    let mut f = File::create(dir.join("data.bin"))?;
    for p in parts {
        f.write_all(p)?;
    }
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    if let Some(parent) = dir.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// One copy of the payload into fresh memory, as a clone of its `TensorMap` (allocation and page
/// faults included): what capturing borrowed items costs at least, done the same way.
fn memcpy_fresh(p: &Payload) -> f64 {
    let t = Instant::now();
    let copy = p.tensors.clone();
    let s = secs(t);
    std::hint::black_box(&copy);
    drop(copy);
    s
}

/// Copies every array into a buffer that is already allocated and touched (a pure memcpy).
fn memcpy_warm(p: &Payload, dst: &mut [u8]) -> f64 {
    let t = Instant::now();
    let mut off = 0;
    for b in p.parts() {
        dst[off..off + b.len()].copy_from_slice(b);
        off += b.len();
    }
    let s = secs(t);
    std::hint::black_box(&dst);
    s
}

/// The four ckpt figures of one repetition on one store.
#[derive(Debug, Default)]
struct CkptSamples {
    sync_save: Vec<f64>,
    restore: Vec<f64>,
    restore_cold: Vec<f64>,
    blocked_borrowed: Vec<f64>,
    total_borrowed: Vec<f64>,
    blocked_moved: Vec<f64>,
    total_moved: Vec<f64>,
}

/// A sync save of the payload (borrowed) as `step`; seconds.
fn sync_save(m: &mut CheckpointManager, p: &Payload, step: Step) -> Result<f64, String> {
    let t = Instant::now();
    let saved = m
        .save(
            step,
            Composite::new().tensors(ITEM, &p.tensors),
            SaveOptions::default(),
        )
        .map_err(|e| format!("sync save of step {step}: {e}"))?;
    let s = secs(t);
    if !saved {
        return Err(format!("step {step} was not saved (policy said no)"));
    }
    Ok(s)
}

/// Restores `step`; seconds. With `check`, compares the restored tensors with it (untimed).
fn restore(m: &CheckpointManager, step: Step, check: Option<&TensorMap>) -> Result<f64, String> {
    let t = Instant::now();
    let r = m
        .restore(Some(step))
        .map_err(|e| format!("restore of step {step}: {e}"))?;
    let s = secs(t);
    if let Some(want) = check {
        let got = r
            .tensors(ITEM)
            .map_err(|e| format!("restored step {step}: {e}"))?;
        if got != want {
            return Err(format!("restored step {step} differs from what was saved"));
        }
    }
    drop(r);
    Ok(s)
}

/// An async save as `step`, borrowed (`owned` `None`) or moved in; (seconds blocked in `save`,
/// seconds until committed).
fn async_save(
    m: &mut CheckpointManager,
    p: &Payload,
    owned: Option<TensorMap>,
    step: Step,
) -> Result<(f64, f64), String> {
    let t = Instant::now();
    let items = match owned {
        Some(map) => Composite::new().tensors_owned(ITEM, map),
        None => Composite::new().tensors(ITEM, &p.tensors),
    };
    let saved = m
        .save(step, items, SaveOptions::default())
        .map_err(|e| format!("async save of step {step}: {e}"))?;
    let blocked = secs(t);
    m.wait_until_finished()
        .map_err(|e| format!("async save of step {step}: {e}"))?;
    let total = secs(t);
    if !saved {
        return Err(format!("step {step} was not saved (policy said no)"));
    }
    Ok((blocked, total))
}

/// Deletes `step` (untimed clean-up between repetitions).
fn delete(m: &mut CheckpointManager, step: Step) -> Result<(), String> {
    m.delete(step)
        .map_err(|e| format!("deleting step {step}: {e}"))
}

/// One repetition of the ckpt figures on a pair of managers (sync and async) of one store.
/// `cold` drops the page cache before an extra restore (local file system only). With
/// `warm_up` (the local disk), each timed operation is run once untimed just before (a save then
/// deleted), so that it runs on recycled memory, as in a training loop that saves every few
/// minutes: see [`WARM_UP`].
#[allow(clippy::too_many_arguments)]
fn ckpt_rep(
    sync_m: &mut CheckpointManager,
    async_m: &mut CheckpointManager,
    p: &Payload,
    step: Step,
    check: bool,
    cold: bool,
    warm_up: bool,
    out: &mut CkptSamples,
) -> Result<(), String> {
    let owned = p.tensors.clone();
    sys::sync_all();
    if warm_up {
        sync_save(sync_m, p, step)?;
        delete(sync_m, step)?;
    }
    out.sync_save.push(sync_save(sync_m, p, step)?);
    if warm_up {
        restore(sync_m, step, None)?;
    }
    out.restore
        .push(restore(sync_m, step, check.then_some(&p.tensors))?);
    if cold {
        sys::drop_caches();
        out.restore_cold.push(restore(sync_m, step, None)?);
    }
    delete(sync_m, step)?;
    sys::sync_all();
    if warm_up {
        async_save(async_m, p, None, step)?;
        delete(async_m, step)?;
    }
    let (b, t) = async_save(async_m, p, None, step)?;
    out.blocked_borrowed.push(b);
    out.total_borrowed.push(t);
    delete(async_m, step)?;
    sys::sync_all();
    if warm_up {
        async_save(async_m, p, Some(p.tensors.clone()), step + 1)?;
        delete(async_m, step + 1)?;
    }
    let (b, t) = async_save(async_m, p, Some(owned), step + 1)?;
    out.blocked_moved.push(b);
    out.total_moved.push(t);
    delete(async_m, step + 1)?;
    sys::sync_all();
    Ok(())
}

/// Why the local-disk figures run each operation once untimed first. This VM hands memory freed
/// a while ago back to its host (virtio-balloon free page reporting): a page taken fresh from
/// it costs a fault in the host too. A 256 MiB `write()` into the page cache measured 60 ms on
/// pages just freed and 530-830 ms on fresh ones (C, `write` then `fsync`, ten files kept: every
/// `write` 530-830 ms, every `fsync` 116-132 ms), so without a warm-up each figure measured
/// mostly which pages the kernel happened to hand out. Raw and ckpt figures alike are warmed up.
pub const WARM_UP: &str =
    "fs and memory: each timed operation (raw or ckpt) runs right after the same \
     operation untimed (a save then deleted, a read, a copy): this VM returns freed memory to \
     its host, and a 256 MiB write into the page cache costs 60 ms on recycled pages but \
     530-830 ms on pages the host must fault in again";

/// Adds the ckpt rows of one section and compares them with their baselines. `write_base` and
/// `read_base` are the rows of the raw write and read, `memcpy` of the fresh-buffer memcpy.
#[allow(clippy::too_many_arguments)]
fn ckpt_rows(
    r: &mut Report,
    sec: &str,
    key: &str,
    p: &Payload,
    s: CkptSamples,
    write_base: usize,
    read_base: usize,
    read_cold_base: Option<usize>,
    memcpy: usize,
    speed_target: f64,
) {
    let bytes = Some(p.bytes as u64);
    let target = Some((Cmp::Ge, speed_target));
    let save = r.time(
        sec,
        &format!("{key}/ckpt_sync_save"),
        "ckpt sync save",
        s.sync_save,
        bytes,
    );
    r.compare(save, write_base, RatioKind::Speed, target);
    let rest = r.time(
        sec,
        &format!("{key}/ckpt_restore"),
        "ckpt restore",
        s.restore,
        bytes,
    );
    r.compare(rest, read_base, RatioKind::Speed, target);
    if let Some(cold) = read_cold_base {
        let rc = r.time(
            sec,
            &format!("{key}/ckpt_restore_cold"),
            "ckpt restore (cold cache)",
            s.restore_cold,
            bytes,
        );
        r.compare(rc, cold, RatioKind::Speed, target);
    }
    let bb = r.time(
        sec,
        &format!("{key}/async_blocked_borrowed"),
        "async save: blocked (borrowed)",
        s.blocked_borrowed,
        None,
    );
    r.compare(bb, memcpy, RatioKind::Time, Some((Cmp::Le, 1.2)));
    let bm = r.time(
        sec,
        &format!("{key}/async_blocked_moved"),
        "async save: blocked (moved in)",
        s.blocked_moved,
        None,
    );
    r.compare_to(
        bm,
        "target 1 ms",
        1e-3,
        RatioKind::Time,
        Some((Cmp::Le, 1.0)),
    );
    let tb = r.time(
        sec,
        &format!("{key}/async_total_borrowed"),
        "async save: to commit (borrowed)",
        s.total_borrowed,
        bytes,
    );
    r.compare(tb, save, RatioKind::Time, Some((Cmp::Le, 1.1)));
    let tm = r.time(
        sec,
        &format!("{key}/async_total_moved"),
        "async save: to commit (moved in)",
        s.total_moved,
        bytes,
    );
    r.compare(tm, save, RatioKind::Time, Some((Cmp::Le, 1.1)));
}

/// Raw and ckpt figures on the local file system for payload `p`.
///
/// # Errors
/// The first failing operation.
pub fn fs_section(b: &mut Bench, cx: &Ctx, p: &Payload) -> Result<(), String> {
    let sec = format!("fs, {}, {}", super::size_label(p.bytes), p.layout.label());
    let key = format!("fs/{}/{}", super::size_key(p.bytes), p.layout.key());
    let dir = cx.tmp.join(format!("fs-{}", p.layout.key()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let root_s = dir.join("ckpt-sync");
    let root_a = dir.join("ckpt-async");
    let raw_dir = dir.join("raw");
    std::fs::create_dir_all(&raw_dir).map_err(|e| format!("{}: {e}", raw_dir.display()))?;
    let mut sync_m = CheckpointManager::builder(root_s.to_string_lossy())
        .enable_async_checkpointing(false)
        .build()
        .map_err(|e| format!("opening {}: {e}", root_s.display()))?;
    let mut async_m = CheckpointManager::builder(root_a.to_string_lossy())
        .build()
        .map_err(|e| format!("opening {}: {e}", root_a.display()))?;

    let parts = p.parts();
    let (mut w, mut rd, mut rdc, mut mf, mut mw) = (vec![], vec![], vec![], vec![], vec![]);
    let mut ck = CkptSamples::default();
    let mut warm = vec![1u8; p.bytes];
    for rep in 0..cx.reps {
        let step = 10 * (rep as Step + 1);
        // Alternate which goes first, so slow phases of the disk hit both alike.
        let raw_first = rep % 2 == 0;
        let raw = |w: &mut Vec<f64>, rd: &mut Vec<f64>, rdc: &mut Vec<f64>| {
            let d = raw_dir.join(format!("r{rep}"));
            // Warm-up (see WARM_UP): the same write, untimed, then removed.
            raw_write(&d, &parts).map_err(|e| format!("raw write {}: {e}", d.display()))?;
            std::fs::remove_dir_all(&d).map_err(|e| format!("removing {}: {e}", d.display()))?;
            sys::sync_all();
            let t = Instant::now();
            raw_write(&d, &parts).map_err(|e| format!("raw write {}: {e}", d.display()))?;
            w.push(secs(t));
            let f = d.join("data.bin");
            drop(std::fs::read(&f).map_err(|e| format!("raw read {}: {e}", f.display()))?);
            let t = Instant::now();
            let data = std::fs::read(&f).map_err(|e| format!("raw read {}: {e}", f.display()))?;
            rd.push(secs(t));
            if data.len() != p.bytes {
                return Err(format!(
                    "raw read of {} returned {} bytes",
                    f.display(),
                    data.len()
                ));
            }
            drop(data);
            if cx.cold {
                sys::drop_caches();
                let t = Instant::now();
                let data =
                    std::fs::read(&f).map_err(|e| format!("raw read {}: {e}", f.display()))?;
                rdc.push(secs(t));
                drop(data);
            }
            std::fs::remove_dir_all(&d).map_err(|e| format!("removing {}: {e}", d.display()))?;
            Ok::<(), String>(())
        };
        if raw_first {
            raw(&mut w, &mut rd, &mut rdc)?;
        }
        ckpt_rep(
            &mut sync_m,
            &mut async_m,
            p,
            step,
            rep == 0,
            cx.cold,
            true,
            &mut ck,
        )?;
        if !raw_first {
            raw(&mut w, &mut rd, &mut rdc)?;
        }
        memcpy_fresh(p);
        mf.push(memcpy_fresh(p));
        mw.push(memcpy_warm(p, &mut warm));
        eprintln!("bench: {sec}: repetition {} of {} done", rep + 1, cx.reps);
    }
    drop(warm);
    let bytes = Some(p.bytes as u64);
    let r = &mut b.report;
    let wb = r.time(
        &sec,
        &format!("{key}/raw_write"),
        "raw write+fsync (std::fs)",
        w,
        bytes,
    );
    let rb = r.time(
        &sec,
        &format!("{key}/raw_read"),
        "raw read (warm cache)",
        rd,
        bytes,
    );
    let rcb = if cx.cold {
        Some(r.time(
            &sec,
            &format!("{key}/raw_read_cold"),
            "raw read (cold cache)",
            rdc,
            bytes,
        ))
    } else {
        None
    };
    let mfb = r.time(
        &sec,
        &format!("{key}/memcpy"),
        "memcpy (fresh buffers)",
        mf,
        bytes,
    );
    let mwb = r.time(
        &sec,
        &format!("{key}/memcpy_warm"),
        "memcpy (touched buffer)",
        mw,
        bytes,
    );
    r.compare(mwb, mfb, RatioKind::Time, None);
    ckpt_rows(r, &sec, &key, p, ck, wb, rb, rcb, mfb, 0.9);
    drop(sync_m);
    drop(async_m);
    steady_state(b, &sec, &key, p, &dir, mwb)?;
    std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    Ok(())
}

/// Saves in a steady training loop (issue 14).
pub const STEADY_SAVES: u64 = 10;

/// The steady-state figures (issue 14): three managers of their own roots, each saving the
/// payload (borrowed) as steps 1..=[`STEADY_SAVES`] with `max_to_keep(2)`, interleaved save by
/// save — synchronous, async with the staging pool (the default), async without it
/// (`async_staging_max_bytes(None)`: the page-cache path of before issue 14); the medians of
/// saves 2–10 (the first allocates the pool). No warm-up: this is what a training loop sees.
/// `memcpy_warm` is the row of the copy into a touched buffer.
///
/// # Errors
/// The first failing save.
fn steady_state(
    b: &mut Bench,
    sec: &str,
    key: &str,
    p: &Payload,
    dir: &Path,
    memcpy_warm: usize,
) -> Result<(), String> {
    let open = |name: &str, asynchronous: bool, pool: bool| {
        let root = dir.join(name);
        let mut builder = CheckpointManager::builder(root.to_string_lossy())
            .max_to_keep(2)
            .enable_async_checkpointing(asynchronous);
        if !pool {
            builder = builder.async_staging_max_bytes(None);
        }
        builder
            .build()
            .map_err(|e| format!("opening {}: {e}", root.display()))
    };
    let mut sync_m = open("steady-sync", false, false)?;
    let mut pool_m = open("steady-pool", true, true)?;
    let mut nopool_m = open("steady-nopool", true, false)?;
    let (mut sync, mut pb, mut pt, mut nb, mut nt) = (vec![], vec![], vec![], vec![], vec![]);
    for step in 1..=STEADY_SAVES {
        sys::sync_all();
        let s = sync_save(&mut sync_m, p, step)?;
        sys::sync_all();
        let (b1, t1) = async_save(&mut pool_m, p, None, step)?;
        sys::sync_all();
        let (b2, t2) = async_save(&mut nopool_m, p, None, step)?;
        if step >= 2 {
            sync.push(s);
            pb.push(b1);
            pt.push(t1);
            nb.push(b2);
            nt.push(t2);
        }
    }
    let stats = pool_m.staging_stats();
    drop((sync_m, pool_m, nopool_m));
    let bytes = Some(p.bytes as u64);
    let r = &mut b.report;
    let ss = r.time(
        sec,
        &format!("{key}/steady_sync_save"),
        "steady state (saves 2-10): sync save",
        sync,
        bytes,
    );
    let npb = r.time(
        sec,
        &format!("{key}/steady_blocked_nopool"),
        "steady state: async blocked, borrowed, no pool",
        nb,
        None,
    );
    r.compare(npb, memcpy_warm, RatioKind::Time, None);
    let ppb = r.time(
        sec,
        &format!("{key}/steady_blocked_pool"),
        "steady state: async blocked, borrowed, pool",
        pb,
        None,
    );
    r.compare(ppb, memcpy_warm, RatioKind::Time, Some((Cmp::Le, 1.5)));
    let vs_nopool = r.rows[ppb].median() / r.rows[npb].median();
    r.note(
        ppb,
        format!(
            "{vs_nopool:.2}x the time blocked without the pool; pool after {STEADY_SAVES} saves: \
             {} in {} buffers, {} allocations, {} reuses",
            super::report::fmt_bytes(stats.held_bytes as f64),
            stats.held_buffers,
            stats.allocations,
            stats.reuses
        ),
    );
    let npt = r.time(
        sec,
        &format!("{key}/steady_total_nopool"),
        "steady state: async to commit, borrowed, no pool",
        nt,
        bytes,
    );
    r.compare(npt, ss, RatioKind::Time, None);
    let ppt = r.time(
        sec,
        &format!("{key}/steady_total_pool"),
        "steady state: async to commit, borrowed, pool",
        pt,
        bytes,
    );
    r.compare(ppt, ss, RatioKind::Time, Some((Cmp::Le, 1.1)));
    Ok(())
}

/// Raw opendal memory put/get and ckpt figures on the memory store for payload `p`.
///
/// # Errors
/// The first failing operation.
pub fn memory_section(b: &mut Bench, cx: &Ctx, p: &Payload) -> Result<(), String> {
    let sec = format!(
        "memory, {}, {}",
        super::size_label(p.bytes),
        p.layout.label()
    );
    let key = format!("memory/{}/{}", super::size_key(p.bytes), p.layout.key());
    let raw = super::raw::RawStore::memory()?;
    let mut sync_m = CheckpointManager::builder("memory://")
        .enable_async_checkpointing(false)
        .build()
        .map_err(|e| format!("opening memory://: {e}"))?;
    let mut async_m = CheckpointManager::builder("memory://")
        .build()
        .map_err(|e| format!("opening memory://: {e}"))?;
    let (mut put, mut get, mut mf) = (vec![], vec![], vec![]);
    let mut ck = CkptSamples::default();
    for rep in 0..cx.reps {
        let step = 10 * (rep as Step + 1);
        // Warm-up, as on the local disk (see WARM_UP): the same put and get, untimed.
        raw.put_get(&format!("raw/{rep}"), p)?;
        let (tp, tg) = raw.put_get(&format!("raw/{rep}"), p)?;
        put.push(tp);
        get.push(tg);
        ckpt_rep(
            &mut sync_m,
            &mut async_m,
            p,
            step,
            rep == 0,
            false,
            true,
            &mut ck,
        )?;
        mf.push(memcpy_fresh(p));
        eprintln!("bench: {sec}: repetition {} of {} done", rep + 1, cx.reps);
    }
    let bytes = Some(p.bytes as u64);
    let r = &mut b.report;
    let pb = r.time(
        &sec,
        &format!("{key}/raw_put"),
        "raw opendal put",
        put,
        bytes,
    );
    let gb = r.time(
        &sec,
        &format!("{key}/raw_get"),
        "raw opendal get",
        get,
        bytes,
    );
    let mfb = r.time(
        &sec,
        &format!("{key}/memcpy"),
        "memcpy (fresh buffers)",
        mf,
        bytes,
    );
    ckpt_rows(r, &sec, &key, p, ck, pb, gb, None, mfb, 0.9);
    Ok(())
}

/// Raw opendal S3 put/get and ckpt figures on S3 (the local server) for payload `p`, below
/// a fresh prefix of the bench bucket.
///
/// ckpt's object stores upload a file of 16 MiB or more as a multipart upload (8 MiB parts, 4
/// at a time: `UploadOptions::default()`), which on real S3 beats one PUT; on moto one PUT is
/// faster. So the sync save is compared twice, each time with the raw upload done the same way:
/// ckpt with its default options against a raw opendal multipart upload of the same parts, and
/// ckpt configured for one PUT (`multipart_threshold` above the file) against a raw PUT.
///
/// # Errors
/// The first failing operation.
pub fn s3_section(b: &mut Bench, cx: &Ctx, p: &Payload, s3: &super::S3Env) -> Result<(), String> {
    let sec = format!(
        "s3 (moto, loopback), {}, {}",
        super::size_label(p.bytes),
        p.layout.label()
    );
    let key = format!("s3/{}/{}", super::size_key(p.bytes), p.layout.key());
    let prefix = format!(
        "bench-{}-{}-{}",
        std::process::id(),
        p.layout.key(),
        p.bytes
    );
    let raw = super::raw::RawStore::s3(s3, &format!("{prefix}/raw"))?;
    let up = ckpt_manager::storage::UploadOptions::default();
    let store = |name: &str,
                 one_put: bool|
     -> Result<std::sync::Arc<dyn ckpt_manager::storage::Store>, String> {
        let mut cfg =
            ckpt_manager::storage::S3Config::from_env(&s3.bucket, format!("{prefix}/{name}"))
                .map_err(|e| format!("S3 configuration: {e}"))?;
        if one_put {
            cfg.upload.multipart_threshold = usize::MAX;
        }
        let st =
            ckpt_manager::storage::OpendalStore::s3(cfg).map_err(|e| format!("S3 store: {e}"))?;
        Ok(std::sync::Arc::new(st))
    };
    let open =
        |name: &str, one_put: bool, asynchronous: bool| -> Result<CheckpointManager, String> {
            CheckpointManager::builder_with_store(store(name, one_put)?)
                .enable_async_checkpointing(asynchronous)
                .build()
                .map_err(|e| format!("opening s3://{}/{prefix}/{name}: {e}", s3.bucket))
        };
    let mut sync_m = open("sync", false, false)?;
    let mut async_m = open("async", false, true)?;
    let mut one_put_m = open("oneput", true, false)?;
    let (mut put, mut get, mut mput, mut mget, mut mf, mut one) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut ck = CkptSamples::default();
    for rep in 0..cx.reps {
        let step = 10 * (rep as Step + 1);
        let (tp, tg) = raw.put_get(&format!("r{rep}"), p)?;
        put.push(tp);
        get.push(tg);
        let (tp, tg) =
            raw.multipart_put_get(&format!("m{rep}"), p, up.chunk_size, up.concurrency)?;
        mput.push(tp);
        mget.push(tg);
        ckpt_rep(
            &mut sync_m,
            &mut async_m,
            p,
            step,
            rep == 0,
            false,
            false,
            &mut ck,
        )?;
        one.push(sync_save(&mut one_put_m, p, step)?);
        delete(&mut one_put_m, step)?;
        mf.push(memcpy_fresh(p));
        eprintln!("bench: {sec}: repetition {} of {} done", rep + 1, cx.reps);
    }
    let bytes = Some(p.bytes as u64);
    let r = &mut b.report;
    let pb = r.time(
        &sec,
        &format!("{key}/raw_put"),
        "raw opendal put (one PUT)",
        put,
        bytes,
    );
    let mpb = r.time(
        &sec,
        &format!("{key}/raw_multipart_put"),
        &format!(
            "raw opendal multipart put ({} MiB x {})",
            up.chunk_size >> 20,
            up.concurrency
        ),
        mput,
        bytes,
    );
    let gb = r.time(
        &sec,
        &format!("{key}/raw_get"),
        "raw opendal get",
        get,
        bytes,
    );
    drop(mget);
    let mfb = r.time(
        &sec,
        &format!("{key}/memcpy"),
        "memcpy (fresh buffers)",
        mf,
        bytes,
    );
    ckpt_rows(r, &sec, &key, p, ck, mpb, gb, None, mfb, 0.8);
    let o = r.time(
        &sec,
        &format!("{key}/ckpt_sync_save_one_put"),
        "ckpt sync save, one PUT",
        one,
        bytes,
    );
    r.compare(o, pb, RatioKind::Speed, Some((Cmp::Ge, 0.8)));
    r.note(
        o,
        "UploadOptions { multipart_threshold: usize::MAX, .. }: the file as one PUT, like the raw put",
    );
    Ok(())
}
