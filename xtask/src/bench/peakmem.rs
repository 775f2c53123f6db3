//! Peak memory of a save (and of a restore): each case runs in a fresh child process (this bench
//! binary, `peak-mem` mode) under `/usr/bin/time -v` when it exists. The child builds the
//! payload, resets its peak RSS (`/proc/self/clear_refs`), notes its RSS with the items in memory,
//! runs the operation and reports the peak (`VmHWM`): what the operation needed beyond the
//! items themselves.

use super::payload::{Layout, Payload};
use super::report::{fmt_bytes, Cmp, RatioKind, MIB};
use super::{sys, Bench, Ctx};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

/// Saves of the `async-borrowed-50` case (issue 14: the pool must not grow with the saves).
const STEADY_SAVES_RSS: u64 = 50;

/// The cases: `(mode, label)`.
const MODES: [(&str, &str); 5] = [
    ("sync", "sync save"),
    ("async-borrowed", "async save (borrowed)"),
    (
        "async-borrowed-50",
        "50 async saves (borrowed, staging pool, max_to_keep 2)",
    ),
    ("async-moved", "async save (moved in)"),
    ("restore", "restore"),
];

/// Runs one case in this process (the child side) and prints one JSON line:
/// `{"mode", "payload", "base", "hwm", "reset"}` (bytes; `base` is the RSS just before the
/// operation, `hwm` the peak RSS during it, `reset` whether the peak could be reset first).
///
/// # Errors
/// When the payload cannot be built or an operation fails.
pub fn child(mode: &str, layout: Layout, bytes: usize, dir: &Path) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    let root = dir.to_string_lossy().into_owned();
    let payload = Payload::new(layout, bytes, 11)?;
    let total = payload.bytes;
    let asynchronous = mode.starts_with("async");
    let mut m = CheckpointManager::builder(root.clone())
        .enable_async_checkpointing(asynchronous)
        .max_to_keep(2)
        .build()
        .map_err(|e| format!("opening {root}: {e}"))?;
    let measure = |f: &mut dyn FnMut() -> Result<(), String>| -> Result<(bool, u64, u64), String> {
        let reset = sys::reset_peak_rss();
        let base = sys::proc_status_bytes("VmRSS").unwrap_or(0);
        f()?;
        let hwm = sys::proc_status_bytes("VmHWM").unwrap_or(0);
        Ok((reset, base, hwm))
    };
    let (reset, base, hwm) = match mode {
        "sync" | "async-borrowed" => measure(&mut || {
            m.save(
                1,
                Composite::new().tensors("params", &payload.tensors),
                SaveOptions::default(),
            )
            .and_then(|_| m.wait_until_finished())
            .map_err(|e| e.to_string())
        })?,
        "async-borrowed-50" => measure(&mut || {
            for step in 1..=STEADY_SAVES_RSS {
                m.save(
                    step,
                    Composite::new().tensors("params", &payload.tensors),
                    SaveOptions::default(),
                )
                .map_err(|e| e.to_string())?;
            }
            m.wait_until_finished().map_err(|e| e.to_string())
        })?,
        "async-moved" => {
            let mut items = Some(payload.tensors);
            measure(&mut || {
                let map = items.take().unwrap_or_default();
                m.save(
                    1,
                    Composite::new().tensors_owned("params", map),
                    SaveOptions::default(),
                )
                .and_then(|_| m.wait_until_finished())
                .map_err(|e| e.to_string())
            })?
        }
        "restore" => {
            m.save(
                1,
                Composite::new().tensors("params", &payload.tensors),
                SaveOptions::default(),
            )
            .map_err(|e| e.to_string())?;
            drop(payload);
            measure(&mut || {
                let r = m.restore(Some(1)).map_err(|e| e.to_string())?;
                std::hint::black_box(&r);
                Ok(())
            })?
        }
        other => return Err(format!("unknown peak-mem mode {other:?}")),
    };
    drop(m);
    let _ = std::fs::remove_dir_all(dir);
    println!(
        "{}",
        json!({"mode": mode, "payload": total, "base": base, "hwm": hwm, "reset": reset})
    );
    Ok(())
}

/// The peak-memory figures, one child process per case.
///
/// # Errors
/// When a child cannot be run or reports nothing.
pub fn peak_section(b: &mut Bench, cx: &Ctx, bytes: usize) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the bench binary: {e}"))?;
    let layout = Layout::Mixed64;
    let sec = format!(
        "peak memory, fs, {}, {} (separate process per case)",
        super::size_label(bytes),
        layout.label()
    );
    let time_v = Path::new("/usr/bin/time").exists();
    let dir = cx.tmp.join("peak");
    let mut first_note = true;
    for (mode, label) in MODES {
        let mut cmd = if time_v {
            let mut c = Command::new("/usr/bin/time");
            c.arg("-v").arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(["peak-mem", mode, layout.key(), &bytes.to_string()])
            .arg(&dir);
        let out = cmd
            .output()
            .map_err(|e| format!("running {}: {e}", exe.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!("peak-mem {mode} failed ({}): {stderr}", out.status));
        }
        let v: Value = stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .ok_or_else(|| format!("peak-mem {mode} printed no result: {stdout}"))?;
        let get = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (payload, base, hwm) = (get("payload"), get("base"), get("hwm"));
        let reset = v.get("reset").and_then(Value::as_bool).unwrap_or(false);
        let max_rss = stderr
            .lines()
            .find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):"))
            .and_then(|x| x.trim().parse::<u64>().ok())
            .map(|kb| kb * 1024);
        // What the operation needed beyond the items themselves; a restore's result is its
        // items, so they are not counted as overhead either.
        let items_made = if mode == "restore" { payload } else { 0 };
        let over = hwm.saturating_sub(base).saturating_sub(items_made) as f64;
        // An async save of borrowed items holds one copy of them: the staging pool.
        let copy_allowed = if mode.starts_with("async-borrowed") {
            payload
        } else {
            0
        };
        let limit = copy_allowed as f64 + 64.0 * MIB;
        let r = &mut b.report;
        let row = r.bytes(
            &sec,
            &format!("peak/{mode}"),
            &format!("{label}: peak RSS over items"),
            vec![over],
        );
        let limit_name = if copy_allowed > 0 {
            "payload + 64 MiB"
        } else {
            "64 MiB"
        };
        r.compare_to(
            row,
            limit_name,
            limit,
            RatioKind::Bytes,
            Some((Cmp::Le, 1.0)),
        );
        r.note(
            row,
            format!(
                "payload {}, RSS before {}, peak {}{}{}",
                fmt_bytes(payload as f64),
                fmt_bytes(base as f64),
                fmt_bytes(hwm as f64),
                max_rss
                    .map(|m| format!(", /usr/bin/time max RSS {}", fmt_bytes(m as f64)))
                    .unwrap_or_default(),
                if reset {
                    ""
                } else {
                    ", peak not reset: includes building the payload"
                }
            ),
        );
        if first_note {
            first_note = false;
            r.notes.push(format!(
                "peak memory: VmHWM after resetting it with /proc/self/clear_refs ({}), /usr/bin/time -v {}",
                if reset { "works" } else { "failed" },
                if time_v { "present" } else { "absent" }
            ));
        }
    }
    Ok(())
}
