//! The `multiprocess` section (issue 15): saves of one step by 4 processes of a job meeting on
//! the local etcd server (`CKPT_TEST_ETCD`, started by `cargo xtask bench`), each process its
//! shard of one global `float32` array ([`ArrayShard`]), against 1 process saving 256 MiB; and
//! what the coordination costs per save.
//!
//! Every process is a child of this binary (`ckpt-bench mp-child …`), the 1-process baseline
//! too, so that each case starts alike. Each repetition starts at a barrier (not timed) and is
//! timed from there to the return of `save` (synchronous: a job's save returns after the
//! primary committed); a repetition's time is the slowest process's. Each case starts after a
//! `sync`, the small cases first (the large ones leave gigabytes to write back, which slowed
//! the next case's fsyncs by an order of magnitude). Rows:
//!
//! - `1 process × 256 MiB` (baseline; no coordinator);
//! - `4 processes × 256 MiB each` (a 1 GiB array; target ≤ 1.3× the baseline, issue 15) and
//!   `4 processes × 64 MiB each` (the same 256 MiB in 4 shards);
//! - one exchange alone: a `Coordinator::gather` of 8 bytes among the 4 processes (the slowest
//!   process's time from a common barrier); a save makes 4 of them (the agreed decision, then
//!   the phases `prepared`, `written`, `committed`, see `job_save.rs`), so the *coordination cost
//!   per save* is 4 × its median (target ≤ 10 ms, issue 15), noted with the etcd requests a
//!   tiny 4-process save makes, all processes together (`EtcdCoordinator::requests_sent`);
//! - a tiny save (4 KiB per process) by 1 process and by 4, and the difference: what a save by
//!   a job costs beyond one process's, exchanges and the phases' serialized disk work (each
//!   process syncs its own files; the primary's commit waits for all) together.

use super::report::{median, Cmp, RatioKind};
use super::{size_key, size_label, Bench, Ctx};
use ckpt_manager::coordination::{Coordinator, EtcdCoordinator, EtcdOptions};
use ckpt_manager::handlers::Tensor;
use ckpt_manager::{ArrayShard, CheckpointManager, Composite, SaveOptions};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The processes of the multi-process cases.
const PROCESSES: usize = 4;
/// Bytes per process of the tiny saves.
const TINY: usize = 4096;
/// Repetitions of the tiny saves and of the lone exchange.
const TINY_REPS: usize = 20;

/// One case: how many processes save how many bytes each, how many times.
struct Case {
    processes: usize,
    bytes_each: usize,
    reps: usize,
    /// Whether the processes also time lone exchanges.
    exchanges: bool,
}

/// Runs the section.
///
/// # Errors
/// A child that fails (its output in the message), a scratch directory that cannot be made.
pub fn multiprocess_section(b: &mut Bench, cx: &Ctx) -> Result<(), String> {
    let Some(endpoint) = std::env::var("CKPT_TEST_ETCD")
        .ok()
        .filter(|e| !e.is_empty())
    else {
        b.report.notes.push(
            "multiprocess: no local etcd server (CKPT_TEST_ETCD unset): no multi-process figures"
                .to_string(),
        );
        return Ok(());
    };
    let size = 256usize << 20;
    let load_before = loadavg();
    let section = format!(
        "multiprocess, local disk, etcd on loopback, {}",
        size_label(size)
    );
    let run = |case: &Case, tag: &str| -> Result<(Vec<f64>, f64), String> {
        let each = if case.bytes_each >= 1 << 20 {
            size_label(case.bytes_each)
        } else {
            format!("{} KiB", case.bytes_each >> 10)
        };
        eprintln!(
            "bench: multiprocess: {} process(es) × {each} …",
            case.processes
        );
        // Each case starts with nothing left to write back from the one before.
        super::sys::sync_all();
        run_case(cx, &endpoint, case, tag)
    };
    // The small cases first: the large ones leave gigabytes for the kernel to write back,
    // which would slow their fsyncs.
    let tiny_one = run(
        &Case {
            processes: 1,
            bytes_each: TINY,
            reps: TINY_REPS,
            exchanges: false,
        },
        "tiny-one",
    )?
    .0;
    // The 4-process tiny case also times lone exchanges: its samples are the saves' and then
    // the exchanges'.
    let (tiny_four_all, requests_per_save) = run(
        &Case {
            processes: PROCESSES,
            bytes_each: TINY,
            reps: TINY_REPS,
            exchanges: true,
        },
        "tiny-four",
    )?;
    let (tiny_four, exchanges) = tiny_four_all.split_at(TINY_REPS.min(tiny_four_all.len()));
    let one = run(
        &Case {
            processes: 1,
            bytes_each: size,
            reps: cx.reps,
            exchanges: false,
        },
        "one",
    )?
    .0;
    let four_big = run(
        &Case {
            processes: PROCESSES,
            bytes_each: size,
            reps: cx.reps,
            exchanges: false,
        },
        "four-big",
    )?
    .0;
    let four_split = run(
        &Case {
            processes: PROCESSES,
            bytes_each: size / PROCESSES,
            reps: cx.reps,
            exchanges: false,
        },
        "four-split",
    )?
    .0;

    let k = size_key(size);
    let r = &mut b.report;
    r.notes.push(format!(
        "multiprocess: load average (1, 5, 15 min) before the section {load_before}, after {}; \
         {} cores: 4 processes and the etcd server share them with whatever else runs",
        loadavg(),
        super::sys::cores()
    ));
    let base = r.time(
        &section,
        &format!("mp/{k}/one_process_save"),
        &format!("1 process × {}: save", size_label(size)),
        one,
        Some(size as u64),
    );
    let big = r.time(
        &section,
        &format!("mp/{k}/four_processes_256MiB_each_save"),
        &format!(
            "{PROCESSES} processes × {} each ({} array): save",
            size_label(size),
            size_label(size * PROCESSES)
        ),
        four_big,
        Some((size * PROCESSES) as u64),
    );
    r.compare(big, base, RatioKind::Time, Some((Cmp::Le, 1.3)));
    r.note(
        big,
        format!(
            "{PROCESSES}× the bytes of the baseline on one machine's disk and {} cores",
            super::sys::cores()
        ),
    );
    let split = r.time(
        &section,
        &format!("mp/{k}/four_processes_quarter_each_save"),
        &format!(
            "{PROCESSES} processes × {} each ({} array): save",
            size_label(size / PROCESSES),
            size_label(size)
        ),
        four_split,
        Some(size as u64),
    );
    r.compare(split, base, RatioKind::Time, None);
    let t1 = r.time(
        &section,
        "mp/tiny/one_process_save",
        "1 process × 4 KiB: save",
        tiny_one.clone(),
        None,
    );
    let t4 = r.time(
        &section,
        "mp/tiny/four_processes_save",
        &format!("{PROCESSES} processes × 4 KiB each: save"),
        tiny_four.to_vec(),
        None,
    );
    r.compare(t4, t1, RatioKind::Time, None);
    let m1 = median(&tiny_one);
    let extra: Vec<f64> = tiny_four.iter().map(|t| t - m1).collect();
    let d = r.time(
        &section,
        "mp/tiny_save_overhead",
        "4-process tiny save − 1-process tiny save",
        extra,
        None,
    );
    r.note(
        d,
        "exchanges plus the phases' serialized disk work (each process syncs its own files)",
    );
    let x = r.time(
        &section,
        "mp/one_exchange",
        &format!("one exchange (gather of 8 bytes, {PROCESSES} processes)"),
        exchanges.to_vec(),
        None,
    );
    r.note(
        x,
        "one transaction per process (its put and a read), the others' puts seen through its \
         long-lived watch; the slowest process's time from a common barrier",
    );
    let per_save: Vec<f64> = exchanges.iter().map(|t| 4.0 * t).collect();
    let c = r.time(
        &section,
        "mp/coordination_cost_per_save",
        "coordination cost per save (4 exchanges)",
        per_save,
        None,
    );
    r.compare_to(
        c,
        "target 10 ms",
        0.010,
        RatioKind::Time,
        Some((Cmp::Le, 1.0)),
    );
    r.note(
        c,
        format!(
            "the agreed decision, prepared, written, committed: 4 × one exchange; \
             {requests_per_save:.1} etcd requests per 4-process tiny save, all processes \
             together (EtcdCoordinator::requests_sent)"
        ),
    );
    Ok(())
}

/// `/proc/loadavg`'s first three fields, or `?`.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_string())
}

/// Runs one case in child processes; the per-repetition times of the slowest process (then,
/// with `exchanges`, the lone exchanges' likewise), and the etcd requests per save of all the
/// processes together.
fn run_case(cx: &Ctx, endpoint: &str, case: &Case, tag: &str) -> Result<(Vec<f64>, f64), String> {
    let exe = std::env::current_exe().map_err(|e| format!("this binary: {e}"))?;
    let root = cx.tmp.join(format!("mp-{tag}"));
    let _ = std::fs::remove_dir_all(&root);
    let job = format!(
        "bench-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().subsec_nanos()
    );
    let mut children = Vec::with_capacity(case.processes);
    for i in 0..case.processes {
        let child = Command::new(&exe)
            .args([
                "mp-child",
                if case.processes == 1 { "-" } else { endpoint },
                &job,
                &i.to_string(),
                &case.processes.to_string(),
                &case.bytes_each.to_string(),
                &case.reps.to_string(),
                &root.to_string_lossy(),
                if case.exchanges { "1" } else { "0" },
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
        children.push(child);
    }
    let mut per_process: Vec<Vec<f64>> = Vec::new();
    let mut requests = 0.0;
    let mut failures = Vec::new();
    for (i, c) in children.into_iter().enumerate() {
        let out = c
            .wait_with_output()
            .map_err(|e| format!("waiting for process {i}: {e}"))?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            failures.push(format!(
                "process {i} of {} exited with {}: {}{}",
                case.processes,
                out.status,
                text,
                String::from_utf8_lossy(&out.stderr)
            ));
            continue;
        }
        let times: Result<Vec<f64>, _> = text
            .lines()
            .filter_map(|l| l.strip_prefix("MP-TIME "))
            .map(|t| t.trim().parse::<f64>())
            .collect();
        per_process.push(times.map_err(|e| format!("process {i}: bad output {text:?}: {e}"))?);
        requests += text
            .lines()
            .filter_map(|l| l.strip_prefix("MP-REQUESTS "))
            .filter_map(|t| t.trim().parse::<f64>().ok())
            .sum::<f64>();
    }
    let _ = std::fs::remove_dir_all(&root);
    if !failures.is_empty() {
        return Err(format!("multiprocess bench: {}", failures.join("; ")));
    }
    let n = per_process.iter().map(Vec::len).min().unwrap_or(0);
    let times = (0..n)
        .map(|k| per_process.iter().map(|p| p[k]).fold(0.0, f64::max))
        .collect();
    Ok((times, requests))
}

/// The body of `ckpt-bench mp-child ENDPOINT|- JOB INDEX COUNT BYTES REPS ROOT EXCHANGES`:
/// one process of a case; prints `MP-TIME <seconds>` per timed save (then per lone exchange)
/// and `MP-REQUESTS <n>`, the etcd requests this process sent per save.
///
/// # Errors
/// Bad arguments, a coordinator that cannot join, a failing save.
pub fn child(args: &[String]) -> Result<(), String> {
    let arg = |i: usize| {
        args.get(i).cloned().ok_or_else(|| {
            "usage: ckpt-bench mp-child ENDPOINT|- JOB INDEX COUNT BYTES REPS ROOT EXCHANGES"
                .to_string()
        })
    };
    let num = |i: usize| -> Result<usize, String> {
        arg(i)?
            .parse::<usize>()
            .map_err(|e| format!("argument {i}: {e}"))
    };
    let (endpoint, job) = (arg(0)?, arg(1)?);
    let (index, count, bytes, reps) = (num(2)?, num(3)?, num(4)?, num(5)?);
    let root = arg(6)?;
    let exchanges = arg(7)? == "1";
    let coordinator: Option<Arc<dyn Coordinator>> = if endpoint == "-" {
        None
    } else {
        let options = EtcdOptions::new([endpoint], index, count).job(job);
        Some(Arc::new(
            EtcdCoordinator::connect(options).map_err(|e| e.chain().to_string())?,
        ))
    };
    let mut builder = CheckpointManager::builder(root.as_str())
        .max_to_keep(1)
        .enable_async_checkpointing(false);
    if let Some(c) = &coordinator {
        builder = builder.coordinator(Arc::clone(c));
    }
    let mut mngr = builder.build().map_err(|e| e.chain().to_string())?;
    let timeout = Duration::from_secs(300);
    let n = bytes / 4;
    let mut requests = 0u64;
    for rep in 0..reps {
        let step = rep as u64 + 1;
        let values: Vec<f32> = (0..n).map(|k| (k ^ rep ^ index) as f32).collect();
        let data = Tensor::from_slice([n], &values).map_err(|e| e.to_string())?;
        drop(values);
        let shard =
            ArrayShard::new(vec![n * count], vec![n * index], data).map_err(|e| e.to_string())?;
        let items = Composite::new().array_shard("x", index, &shard);
        drop(shard);
        if let Some(c) = &coordinator {
            c.barrier(&format!("rep-{rep}"), timeout)
                .map_err(|e| e.chain().to_string())?;
        }
        let sent = EtcdCoordinator::requests_sent();
        let t = Instant::now();
        let saved = mngr
            .save(step, items, SaveOptions::default())
            .map_err(|e| e.chain().to_string())?;
        mngr.wait_until_finished()
            .map_err(|e| e.chain().to_string())?;
        let secs = t.elapsed().as_secs_f64();
        requests += EtcdCoordinator::requests_sent() - sent;
        if !saved {
            return Err(format!("step {step} was not saved"));
        }
        println!("MP-TIME {secs}");
    }
    if reps > 0 {
        println!("MP-REQUESTS {}", requests as f64 / reps as f64);
    }
    if let (true, Some(c)) = (exchanges, &coordinator) {
        for k in 0..reps {
            c.barrier(&format!("x-{k}-start"), timeout)
                .map_err(|e| e.chain().to_string())?;
            let t = Instant::now();
            c.gather(&format!("x-{k}"), &(k as u64).to_le_bytes(), timeout)
                .map_err(|e| e.chain().to_string())?;
            println!("MP-TIME {}", t.elapsed().as_secs_f64());
        }
    }
    mngr.close().map_err(|e| e.chain().to_string())?;
    Ok(())
}
