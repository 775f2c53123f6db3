//! Manager overhead on a root holding many committed steps (10,000 by default): open (normal and
//! lightweight, warm and cold cache), `all_steps`, `should_save`, the retention decision, and a
//! whole small save at that size against the same save on a nearly empty root.
//!
//! The root is generated quickly: one step is saved by ckpt into a template root, then copied
//! with std::fs as every other step (each with its own `val_loss` metric, its checksum manifest
//! and commit files adjusted), so every step is exactly what ckpt writes.

use super::report::{Cmp, RatioKind};
use super::{sys, Bench, Ctx};
use ckpt_manager::policy::{legacy_preservation, BestMode, LegacyRetention};
use ckpt_manager::storage::{ChecksumManifest, FileChecksum, MANIFEST_FILE};
use ckpt_manager::{CheckpointManager, CheckpointManagerBuilder, Composite, SaveOptions, Step};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The metric the generated steps carry and the retention ranks by.
const METRIC: &str = "val_loss";
/// `keep_period` of the configuration measured.
const KEEP_PERIOD: u64 = 1000;

/// The val_loss of generated step `s`: pseudo-random in [0, 1).
fn loss(s: Step) -> f64 {
    ((s * 7919) % 10007) as f64 / 10007.0
}

fn metrics(v: f64) -> ckpt_manager::Metrics {
    let mut m = ckpt_manager::Metrics::new();
    m.insert(METRIC.into(), json!(v));
    m
}

/// The manager configuration measured: best `n` steps by val_loss (min) plus every 1000th step,
/// sync saves.
fn builder(root: &Path, n: u64) -> CheckpointManagerBuilder {
    CheckpointManager::builder(root.to_string_lossy())
        .best_metric(METRIC, BestMode::Min)
        .max_to_keep(n)
        .keep_period(KEEP_PERIOD)
        .enable_async_checkpointing(false)
}

/// One file or directory of the template step, relative to the step directory.
struct TemplateEntry {
    rel: PathBuf,
    /// `None` for a directory.
    data: Option<Vec<u8>>,
}

fn collect(base: &Path, rel: &Path, out: &mut Vec<TemplateEntry>) -> Result<(), String> {
    let dir = base.join(rel);
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("listing {}: {e}", dir.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("listing {}: {e}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let r = rel.join(e.file_name());
        let ft = e
            .file_type()
            .map_err(|err| format!("{}: {err}", e.path().display()))?;
        if ft.is_dir() {
            out.push(TemplateEntry {
                rel: r.clone(),
                data: None,
            });
            collect(base, &r, out)?;
        } else {
            let data =
                std::fs::read(e.path()).map_err(|err| format!("{}: {err}", e.path().display()))?;
            out.push(TemplateEntry {
                rel: r,
                data: Some(data),
            });
        }
    }
    Ok(())
}

/// Writes steps `1..=n` into `root` from the template step at `template_step` (no fsync).
fn generate(root: &Path, template_step: &Path, n: u64) -> Result<(), String> {
    let mut entries = Vec::new();
    collect(template_step, Path::new(""), &mut entries)?;
    let template_loc = template_step.to_string_lossy().into_owned();
    let metrics_rel = Path::new("metrics").join("metrics");
    let manifest = entries
        .iter()
        .find(|e| e.rel == Path::new(MANIFEST_FILE))
        .and_then(|e| e.data.as_deref())
        .map(ChecksumManifest::from_json_bytes)
        .transpose()
        .map_err(|e| format!("template manifest: {e}"))?;
    std::fs::create_dir_all(root).map_err(|e| format!("{}: {e}", root.display()))?;
    for s in 1..=n {
        let step_dir = root.join(s.to_string());
        std::fs::create_dir(&step_dir).map_err(|e| format!("{}: {e}", step_dir.display()))?;
        let metrics_bytes = format!("{{\"{METRIC}\": {}}}", loss(s)).into_bytes();
        let loc = step_dir.to_string_lossy().into_owned();
        for e in &entries {
            let path = step_dir.join(&e.rel);
            let Some(data) = &e.data else {
                std::fs::create_dir(&path).map_err(|err| format!("{}: {err}", path.display()))?;
                continue;
            };
            let bytes: Vec<u8> = if e.rel == metrics_rel {
                metrics_bytes.clone()
            } else if e.rel == Path::new(MANIFEST_FILE) {
                let mut m = manifest.clone().unwrap_or_default();
                m.insert("metrics/metrics", FileChecksum::of(&metrics_bytes));
                m.to_json_bytes()
            } else if e.rel.file_name().is_some_and(|f| f == "commit_success.txt") {
                String::from_utf8_lossy(data)
                    .replace(&template_loc, &loc)
                    .into_bytes()
            } else {
                data.clone()
            };
            std::fs::write(&path, bytes).map_err(|err| format!("{}: {err}", path.display()))?;
        }
    }
    Ok(())
}

/// The minimal I/O of a normal open, with std::fs: list the root, then read every step's
/// `_CHECKPOINT_METADATA` and `metrics/metrics`; seconds.
fn raw_listing(root: &Path) -> Result<f64, String> {
    let t = Instant::now();
    let mut bytes = 0usize;
    for e in std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))? {
        let e = e.map_err(|e| format!("{}: {e}", root.display()))?;
        for f in ["_CHECKPOINT_METADATA", "metrics/metrics"] {
            if let Ok(data) = std::fs::read(e.path().join(f)) {
                bytes += data.len();
            }
        }
    }
    std::hint::black_box(bytes);
    Ok(t.elapsed().as_secs_f64())
}

/// Mean seconds per call of `f` over `calls` calls.
fn per_call(calls: usize, mut f: impl FnMut(usize)) -> f64 {
    let t = Instant::now();
    for i in 0..calls {
        f(i);
    }
    t.elapsed().as_secs_f64() / calls as f64
}

/// The overhead figures.
///
/// # Errors
/// The first failing operation.
pub fn overhead_section(b: &mut Bench, cx: &Ctx) -> Result<(), String> {
    let n = cx.steps;
    let sec = format!("manager overhead, {n} committed steps (fs)");
    let key = format!("steps{n}");
    let dir = cx.tmp.join("steps");
    let _ = std::fs::remove_dir_all(&dir);
    let template = dir.join("template");
    let root = dir.join("root");
    let small = dir.join("small");
    let state = json!({"epoch": 1, "lr": 0.001, "note": "bench"});
    {
        let mut m = builder(&template, n)
            .build()
            .map_err(|e| format!("template root: {e}"))?;
        m.save(
            1,
            Composite::new().json_value("state", state.clone()),
            SaveOptions::default().metrics(metrics(0.5)),
        )
        .map_err(|e| format!("template save: {e}"))?;
    }
    let t = Instant::now();
    generate(&root, &template.join("1"), n)?;
    sys::sync_all();
    b.report.notes.push(format!(
        "{n}-step root generated from one ckpt-written step in {:.1} s (std::fs copies, metrics \
         and checksum manifest per step)",
        t.elapsed().as_secs_f64()
    ));

    // Open: warm cache (one untimed open first), normal and lightweight; cold when possible.
    let open = |light: bool| -> Result<(f64, CheckpointManager), String> {
        let t = Instant::now();
        let m = builder(&root, n)
            .lightweight_initialize(light)
            .build()
            .map_err(|e| format!("opening the {n}-step root: {e}"))?;
        Ok((t.elapsed().as_secs_f64(), m))
    };
    let (_, m) = open(false)?;
    if m.all_steps().len() as u64 != n {
        return Err(format!(
            "the generated root lists {} steps, expected {n}",
            m.all_steps().len()
        ));
    }
    drop(m);
    let (mut normal, mut light, mut cold, mut raw) = (vec![], vec![], vec![], vec![]);
    for _ in 0..cx.reps {
        raw.push(raw_listing(&root)?);
        normal.push(open(false)?.0);
        light.push(open(true)?.0);
    }
    if cx.cold {
        for _ in 0..cx.reps.min(3) {
            sys::drop_caches();
            cold.push(open(false)?.0);
        }
    }
    let r = &mut b.report;
    let rl = r.time(
        &sec,
        &format!("{key}/raw_listing"),
        "raw list + read 2 files/step",
        raw,
        None,
    );
    r.note(
        rl,
        "std::fs: read_dir of the root, read _CHECKPOINT_METADATA and metrics/metrics of each step",
    );
    let on = r.time(
        &sec,
        &format!("{key}/open_normal"),
        "open (normal)",
        normal,
        None,
    );
    r.compare(on, rl, RatioKind::Time, None);
    r.note(on, "Orbax 0.12.8 needs 9-13 s for this (issue 6)");
    let ol = r.time(
        &sec,
        &format!("{key}/open_lightweight"),
        "open (lightweight)",
        light,
        None,
    );
    r.compare_to(
        ol,
        "target 50 ms",
        0.05,
        RatioKind::Time,
        Some((Cmp::Le, 1.0)),
    );
    if cx.cold {
        let oc = r.time(
            &sec,
            &format!("{key}/open_normal_cold"),
            "open (normal, cold cache)",
            cold,
            None,
        );
        r.compare(oc, on, RatioKind::Time, None);
    }

    // The retention decision with the best half kept (so BestN ranks every step and about
    // half would go; nothing is deleted), then queries on a normally opened manager.
    let half = builder(&root, n / 2)
        .lightweight_initialize(false)
        .build()
        .map_err(|e| format!("opening the {n}-step root: {e}"))?;
    let calls = 200;
    let (mut all, mut should, mut decide, mut gc) = (vec![], vec![], vec![], vec![]);
    let policy = legacy_preservation(&LegacyRetention {
        max_to_keep: Some(n / 2),
        keep_period: Some(KEEP_PERIOD),
        keep_time_interval_secs: None,
        best: Some((METRIC.to_string(), BestMode::Min)),
        keep_checkpoints_without_metrics: true,
    })
    .map_err(|e| format!("policy: {e}"))?;
    let mut half = half;
    for _ in 0..cx.reps {
        let mut deleted = 0;
        decide.push(per_call(calls, |_| {
            deleted = half.steps_to_delete().len();
        }));
        if deleted == 0 {
            return Err(format!(
                "retention of the best {} would delete none of the {n} steps",
                n / 2
            ));
        }
        let mut failed = None;
        gc.push(per_call(5, |_| {
            if let Err(e) = half.apply_preservation(policy.as_ref(), true) {
                failed = Some(e);
            }
        }));
        if let Some(e) = failed {
            return Err(format!("retention decision: {e}"));
        }
    }
    drop(half);
    let (_, mut m) = open(false)?;
    for _ in 0..cx.reps {
        all.push(per_call(calls, |_| {
            std::hint::black_box(m.all_steps());
        }));
        should.push(per_call(calls, |i| {
            std::hint::black_box(m.should_save(n + 1 + i as Step));
        }));
    }
    // A whole small save at n steps (retention deletes the worst step each time) against the
    // same save on a root of two steps (where retention also deletes one).
    let (mut big, mut tiny) = (vec![], vec![]);
    let mut sm = builder(&small, 2)
        .build()
        .map_err(|e| format!("small root: {e}"))?;
    for s in 1..=2 {
        sm.save(
            s,
            Composite::new().json_value("state", state.clone()),
            SaveOptions::default().metrics(metrics(loss(s))),
        )
        .map_err(|e| format!("small root save: {e}"))?;
    }
    for rep in 0..cx.reps as Step {
        let save = |m: &mut CheckpointManager, step: Step| -> Result<f64, String> {
            sys::sync_all();
            let t = Instant::now();
            m.save(
                step,
                Composite::new().json_value("state", state.clone()),
                SaveOptions::default().metrics(metrics(0.25)),
            )
            .map_err(|e| format!("save of step {step}: {e}"))?;
            Ok(t.elapsed().as_secs_f64())
        };
        big.push(save(&mut m, n + 1 + rep)?);
        tiny.push(save(&mut sm, 3 + rep)?);
    }
    drop(m);
    drop(sm);
    let r = &mut b.report;
    let a = r.time(
        &sec,
        &format!("{key}/all_steps"),
        "all_steps (per call)",
        all,
        None,
    );
    r.compare_to(a, "target 1 ms", 1e-3, RatioKind::Time, None);
    let s = r.time(
        &sec,
        &format!("{key}/should_save"),
        "should_save (per call)",
        should,
        None,
    );
    r.compare_to(
        s,
        "target 1 ms",
        1e-3,
        RatioKind::Time,
        Some((Cmp::Le, 1.0)),
    );
    let d = r.time(
        &sec,
        &format!("{key}/retention_decision"),
        "retention decision (per save)",
        decide,
        None,
    );
    r.compare_to(
        d,
        "target 1 ms",
        1e-3,
        RatioKind::Time,
        Some((Cmp::Le, 1.0)),
    );
    r.note(
        d,
        "steps_to_delete(): the decision a save makes after committing, policy EveryNSteps(1000) | BestN(val_loss, min, n/2): every step ranked, about half dropped",
    );
    let g = r.time(
        &sec,
        &format!("{key}/gc_dry_run"),
        "gc dry run with reasons (per call)",
        gc,
        None,
    );
    r.compare(g, d, RatioKind::Time, None);
    r.note(
        g,
        "apply_preservation(policy, dry_run): the same decision plus a reason per step (what `ckpt gc --dry-run` prints)",
    );
    let tb = r.time(
        &sec,
        &format!("{key}/tiny_save_small_root"),
        "small save, 2-step root",
        tiny,
        None,
    );
    let ts = r.time(
        &sec,
        &format!("{key}/tiny_save"),
        &format!("small save, {n}-step root"),
        big,
        None,
    );
    r.compare(ts, tb, RatioKind::Time, None);
    r.note(
        ts,
        "a sync save of one small JSON item + metrics, incl. fsyncs, commit and retention deleting one step",
    );
    std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", dir.display()))?;
    Ok(())
}
