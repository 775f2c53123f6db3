//! `cargo xtask bench [--quick] [--json FILE]`: the performance figures of issue 6, measured
//! side by side with their baselines on the same machine and the same bytes.
//!
//! Two halves:
//! * [`drive`] (run by `cargo xtask bench`): builds the bench binary `ckpt-bench` with
//!   `--release`, starts the local S3 server when it can, and runs the binary;
//! * [`run`] (the body of `ckpt-bench`): the measurements, a table on stdout, JSON with `--json`.
//!
//! Sections (medians over the repetitions; every figure with its ratio to its baseline):
//! * `fs`: raw std::fs write+fsync of the payload's bytes (file, directory, parent) and read
//!   back (warm cache, and cold after `echo 3 > /proc/sys/vm/drop_caches` where that works),
//!   memcpy of the payload, then ckpt's sync save, restore, async save (time blocked in `save`
//!   with borrowed and moved-in items, and time until committed); and the steady state of a
//!   training loop (issue 14: saves 2–10 of one manager, sync and async with and without the
//!   staging pool, interleaved save by save);
//! * `memory`: the same on the memory store, against a raw opendal put/get of the same bytes;
//! * `s3`: the same on S3 (the local moto server), against a raw opendal put/get;
//! * `orbax`: Orbax's array format beside orbax-checkpoint itself (the interop venv) and the raw
//!   disk: Orbax's StandardSave and restore, ckpt's save in that format and restore of Orbax's
//!   item, raw write+fsync, raw read + zstd decompress, peak RSS ([`orbax`]);
//! * `overhead`: a root of 10,000 committed steps: open (normal, lightweight, cold), `all_steps`,
//!   `should_save`, the retention decision, a whole small save;
//! * `peak`: peak RSS of a save and a restore beyond the items, one child process per case
//!   (also over 50 async saves of borrowed items: the staging pool must not grow).
//! * `multiprocess` (issue 15; needs the `etcd` feature, which `cargo xtask bench` turns on when
//!   it can start the local etcd server): 4 processes of a job each saving its 256 MiB shard
//!   against 1 process saving 256 MiB, and the coordination cost per save (`multiproc.rs`).
//!
//! Payloads: a tensor item of 256 MiB and 1 GiB (`--quick`: 256 MiB, and 64 MiB on S3; 3
//! repetitions instead of 5), as one `float32` array and as 64 arrays of mixed sizes. Files go to `target/bench-tmp` (removed at
//! the end). Absolute figures vary from run to run with the VM's disk: compare the ratios,
//! which are measured in the same run with repetitions interleaved.

pub mod io;
#[cfg(feature = "etcd")]
pub mod multiproc;
pub mod orbax;
pub mod overhead;
pub mod payload;
pub mod peakmem;
pub mod profile;
pub mod raw;
pub mod report;
pub mod sys;
pub mod vs_orbax;

use payload::{Layout, Payload};
use report::Report;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

/// Where the local S3 server is (from the driver's environment).
#[derive(Debug, Clone)]
pub struct S3Env {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region.
    pub region: String,
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
}

impl S3Env {
    /// From `CKPT_TEST_S3_ENDPOINT`, `CKPT_TEST_S3_BUCKET`, `CKPT_TEST_S3_REGION`,
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (what the S3 server helper exports); `None`
    /// when the endpoint or bucket is unset.
    pub fn from_env() -> Option<S3Env> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Some(S3Env {
            endpoint: var("CKPT_TEST_S3_ENDPOINT")?,
            bucket: var("CKPT_TEST_S3_BUCKET")?,
            region: var("CKPT_TEST_S3_REGION").unwrap_or_else(|| "us-east-1".into()),
            access_key: var("AWS_ACCESS_KEY_ID").unwrap_or_else(|| "testing".into()),
            secret_key: var("AWS_SECRET_ACCESS_KEY").unwrap_or_else(|| "testing".into()),
        })
    }
}

/// What a run measures.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--quick`.
    pub quick: bool,
    /// Repetitions per figure.
    pub reps: usize,
    /// Payload sizes in bytes.
    pub sizes: Vec<usize>,
    /// Payload sizes for S3 (smaller on the fake server).
    pub s3_sizes: Vec<usize>,
    /// Layouts.
    pub layouts: Vec<Layout>,
    /// Committed steps of the overhead root.
    pub steps: u64,
    /// Saves per loop in the `vs-orbax` section (`--saves`; default 10, 5 from 1 GiB on).
    pub saves: Option<u64>,
    /// Sections to run.
    pub sections: Vec<String>,
    /// Scratch directory.
    pub tmp: PathBuf,
    /// Whether the page cache can be dropped (cold-cache figures).
    pub cold: bool,
    /// The S3 server, if any.
    pub s3: Option<S3Env>,
    /// `--json FILE`.
    pub json: Option<PathBuf>,
}

/// The running bench: the report being filled.
#[derive(Debug, Default)]
pub struct Bench {
    /// The figures so far.
    pub report: Report,
}

/// `256 MiB`, `1 GiB`.
pub fn size_label(bytes: usize) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// `256MiB`, `1GiB`.
pub fn size_key(bytes: usize) -> String {
    size_label(bytes).replace(' ', "")
}

/// Parses `256M`, `1G`, `4096`.
fn parse_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (num, mul) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1usize << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<usize>().ok().map(|n| n * mul)
}

/// The environment variable fixing glibc's mmap threshold, and its value (bytes).
const MALLOC_ENV: &str = "MALLOC_MMAP_THRESHOLD_";
const MMAP_THRESHOLD: &str = "131072";

/// All sections, in run order.
const SECTIONS: [&str; 8] = [
    "fs",
    "memory",
    "s3",
    "orbax",
    "vs-orbax",
    "overhead",
    "peak",
    "multiprocess",
];

const USAGE: &str = "usage: cargo xtask bench [--quick] [--json FILE] [--only fs,memory,s3,orbax,vs-orbax,overhead,peak,multiprocess] \
[--vs-orbax] [--sizes 256M,1G] [--s3-sizes 256M] [--layouts one,mixed64] [--reps N] [--saves N] [--steps N] [--no-s3] [--no-etcd] [--no-build]";

/// Parses the bench's arguments (the driver passes them through).
///
/// # Errors
/// A usage message.
pub fn parse_args(args: &[String]) -> Result<Ctx, String> {
    let mut quick = false;
    let mut json = None;
    let mut saves = None;
    let (mut only, mut sizes, mut s3_sizes, mut layouts, mut reps, mut steps) =
        (None, None, None, None, None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut val = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        match a.as_str() {
            "--quick" => quick = true,
            "--vs-orbax" => only = Some("vs-orbax".to_string()),
            "--saves" => saves = Some(val("--saves")?),
            "--json" => json = Some(PathBuf::from(val("--json")?)),
            "--only" => only = Some(val("--only")?),
            "--sizes" => sizes = Some(val("--sizes")?),
            "--s3-sizes" => s3_sizes = Some(val("--s3-sizes")?),
            "--layouts" => layouts = Some(val("--layouts")?),
            "--reps" => reps = Some(val("--reps")?),
            "--steps" => steps = Some(val("--steps")?),
            "--no-s3" | "--no-etcd" | "--no-build" => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(String::from)
            .collect()
    };
    let sizes_of = |s: &str| -> Result<Vec<usize>, String> {
        list(s)
            .iter()
            .map(|x| parse_size(x).ok_or_else(|| format!("bad size {x:?}\n{USAGE}")))
            .collect()
    };
    let default_sizes = if quick {
        vec![256 << 20]
    } else {
        vec![256 << 20, 1 << 30]
    };
    let sizes = match sizes {
        Some(s) => sizes_of(&s)?,
        None => default_sizes.clone(),
    };
    let s3_sizes = match s3_sizes {
        Some(s) => sizes_of(&s)?,
        // moto moves about 150 MiB/s: the quick run keeps S3 to 64 MiB.
        None if quick => vec![64 << 20],
        None => default_sizes,
    };
    let layouts = match layouts {
        Some(l) => list(&l)
            .iter()
            .map(|x| Layout::parse(x).ok_or_else(|| format!("bad layout {x:?}\n{USAGE}")))
            .collect::<Result<_, _>>()?,
        None => vec![Layout::One, Layout::Mixed64],
    };
    let sections = match only {
        Some(o) => {
            let v = list(&o);
            if let Some(bad) = v.iter().find(|s| !SECTIONS.contains(&s.as_str())) {
                return Err(format!("unknown section {bad:?}\n{USAGE}"));
            }
            v
        }
        None => SECTIONS.iter().map(|s| s.to_string()).collect(),
    };
    let reps = match reps {
        Some(r) => r
            .parse::<usize>()
            .ok()
            .filter(|r| *r > 0)
            .ok_or_else(|| format!("bad --reps {r:?}"))?,
        None if quick => 3,
        None => 5,
    };
    let steps = match steps {
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|s| *s > 0)
            .ok_or_else(|| format!("bad --steps {s:?}"))?,
        None => 10_000,
    };
    let saves = match saves {
        Some(s) => Some(s.parse::<u64>().ok().filter(|s| *s > 1).ok_or_else(|| {
            format!("bad --saves {s:?}: at least 2 (the first, then the steady state)")
        })?),
        None => None,
    };
    Ok(Ctx {
        quick,
        reps,
        saves,
        sizes,
        s3_sizes,
        layouts,
        steps,
        sections,
        tmp: target_dir().join("bench-tmp"),
        cold: false,
        s3: S3Env::from_env(),
        json,
    })
}

/// The workspace root (the parent of this crate's directory).
pub fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The cargo target directory (`$CARGO_TARGET_DIR`, relative to the workspace, or `target`).
pub fn target_dir() -> PathBuf {
    let ws = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => ws.join(d),
        None => ws.join("target"),
    }
}

/// The body of `ckpt-bench`: every section asked for, then the table (stdout) and the JSON.
///
/// # Errors
/// The first failing measurement (scratch files are removed anyway).
pub fn run(mut cx: Ctx) -> Result<Report, String> {
    let started = Instant::now();
    std::fs::create_dir_all(&cx.tmp).map_err(|e| format!("{}: {e}", cx.tmp.display()))?;
    let biggest = cx
        .sizes
        .iter()
        .chain(&cx.s3_sizes)
        .copied()
        .max()
        .unwrap_or(0) as u64;
    if let Some(free) = sys::free_bytes(&cx.tmp) {
        // At most one copy of the payload is on disk at a time (plus a 10,000-step root of a
        // few MiB); 2 GiB stay free for everyone else sharing the disk.
        let need = 2 * biggest + (2 << 30);
        if free < need {
            return Err(format!(
                "{} has {} MiB free; the bench needs about {} MiB",
                cx.tmp.display(),
                free >> 20,
                need >> 20
            ));
        }
    }
    cx.cold = sys::drop_caches();
    let mut b = Bench::default();
    b.report.notes.push(format!(
        "machine: {} cores ({}), {:.1} GiB RAM; scratch {} on {}",
        sys::cores(),
        sys::cpu_model(),
        sys::mem_total() as f64 / (1u64 << 30) as f64,
        cx.tmp.display(),
        sys::fs_type(&cx.tmp)
    ));
    b.report.notes.push(if cx.cold {
        "page cache dropped with `sync; echo 3 > /proc/sys/vm/drop_caches` before each cold figure"
            .into()
    } else {
        "the page cache cannot be dropped here (not root?): no cold-cache figures".into()
    });
    b.report.notes.push(format!(
        "{} repetitions per figure, median shown; raw and ckpt repetitions interleaved",
        cx.reps
    ));
    b.report.notes.push(io::WARM_UP.to_string());
    b.report.notes.push(format!(
        "{MALLOC_ENV}={} (glibc's mmap threshold fixed: every buffer of 128 KiB or more, in \
         baselines and ckpt alike, is fresh memory, not whatever an earlier figure freed)",
        std::env::var(MALLOC_ENV).unwrap_or_default()
    ));
    let result = run_sections(&mut b, &cx);
    let _ = std::fs::remove_dir_all(&cx.tmp);
    result?;
    b.report.notes.push(format!(
        "whole run: {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    Ok(b.report)
}

fn want(cx: &Ctx, section: &str) -> bool {
    cx.sections.iter().any(|s| s == section)
}

fn run_sections(b: &mut Bench, cx: &Ctx) -> Result<(), String> {
    let mut sizes: Vec<usize> = cx.sizes.clone();
    if want(cx, "s3") && cx.s3.is_some() {
        sizes.extend(&cx.s3_sizes);
    }
    sizes.sort_unstable();
    sizes.dedup();
    for &size in &sizes {
        for &layout in &cx.layouts {
            let needs = |sec: &str| want(cx, sec);
            let in_main = cx.sizes.contains(&size);
            let in_s3 = cx.s3.is_some() && cx.s3_sizes.contains(&size) && needs("s3");
            if !(in_main && (needs("fs") || needs("memory")) || in_s3) {
                continue;
            }
            let t = Instant::now();
            let p = Payload::new(layout, size, 0x5eed ^ size as u64)?;
            eprintln!(
                "bench: payload {} {} built in {:.1} s",
                size_label(size),
                layout.label(),
                t.elapsed().as_secs_f64()
            );
            if in_main && needs("fs") {
                io::fs_section(b, cx, &p)?;
            }
            if in_main && needs("memory") {
                io::memory_section(b, cx, &p)?;
            }
            if in_s3 {
                if let Some(s3) = &cx.s3 {
                    io::s3_section(b, cx, &p, s3)?;
                }
            }
        }
    }
    if want(cx, "s3") && cx.s3.is_none() {
        b.report.notes.push(
            "S3: no local S3 server (CKPT_TEST_S3_ENDPOINT unset): no S3 figures".to_string(),
        );
    }
    if want(cx, "orbax") {
        for &size in &cx.sizes {
            eprintln!("bench: Orbax format beside Orbax, {}", size_label(size));
            orbax::orbax_section(b, cx, size)?;
        }
    }
    if want(cx, "vs-orbax") {
        for &size in &cx.sizes {
            let saves = cx.saves.unwrap_or(if size >= 1 << 30 { 5 } else { 10 });
            eprintln!(
                "bench: ckpt beside Orbax, {}, {saves} saves a loop",
                size_label(size)
            );
            vs_orbax::vs_orbax_section(b, cx, size, saves)?;
        }
    }
    if want(cx, "overhead") {
        eprintln!("bench: overhead with {} steps", cx.steps);
        overhead::overhead_section(b, cx)?;
    }
    if want(cx, "peak") {
        let size = cx.sizes.iter().copied().max().unwrap_or(256 << 20);
        eprintln!("bench: peak memory, {}", size_label(size));
        peakmem::peak_section(b, cx, size)?;
    }
    if want(cx, "multiprocess") {
        #[cfg(feature = "etcd")]
        multiproc::multiprocess_section(b, cx)?;
        #[cfg(not(feature = "etcd"))]
        b.report.notes.push(
            "multiprocess: ckpt-bench was built without the `etcd` feature (no protoc or no \
             etcd server): no multi-process figures"
                .to_string(),
        );
    }
    Ok(())
}

/// The `ckpt-bench` binary's main: `peak-mem MODE LAYOUT BYTES DIR` (a peak-memory child) or a
/// whole run with the bench's arguments.
pub fn bench_main(args: &[String]) -> ExitCode {
    // glibc's malloc raises its mmap threshold after a large block is freed (up to 32 MiB), so
    // whether a 1-32 MiB buffer comes with fresh pages (page faults) or recycled ones (none)
    // depends on what ran before: figures of the same operation varied 4x between sections.
    // Every figure is taken with the threshold fixed at glibc's default 128 KiB, so that every
    // large buffer, the baselines' and ckpt's alike, is fresh memory. glibc reads the setting at
    // start-up: the binary runs itself again with it.
    if std::env::var_os(MALLOC_ENV).is_none() {
        let status = std::env::current_exe().and_then(|exe| {
            Command::new(exe)
                .args(args)
                .env(MALLOC_ENV, MMAP_THRESHOLD)
                .status()
        });
        return match status {
            Ok(s) if s.success() => ExitCode::SUCCESS,
            Ok(s) => ExitCode::from(u8::try_from(s.code().unwrap_or(1)).unwrap_or(1)),
            Err(e) => {
                eprintln!("ckpt-bench: cannot run itself again with {MALLOC_ENV}: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("profile") {
        let parsed = (|| {
            let op = args.get(1)?;
            let layout = Layout::parse(args.get(2)?)?;
            let bytes = parse_size(args.get(3)?)?;
            let reps = args.get(4).map_or(Some(10), |r| r.parse::<usize>().ok())?;
            Some((op.clone(), layout, bytes, reps, args.get(5).cloned()))
        })();
        let Some((op, layout, bytes, reps, root)) = parsed else {
            eprintln!("usage: ckpt-bench profile save|restore|restore-cold|restore-into|restore-mapped|capture|memcpy|raw-read|alternate|sync-loop|moved-loop|pytree-save|pytree-restore|pytree-restore-into one|mixed64 SIZE [REPS [ROOT]]");
            return ExitCode::from(2);
        };
        return match profile::profile(&op, layout, bytes, reps, root.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ckpt-bench profile: {e}");
                ExitCode::FAILURE
            }
        };
    }
    #[cfg(feature = "etcd")]
    if args.first().map(String::as_str) == Some("mp-child") {
        return match multiproc::child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ckpt-bench mp-child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.first().map(String::as_str) == Some("peak-mem") {
        let parsed = (|| {
            let mode = args.get(1)?;
            let layout = Layout::parse(args.get(2)?)?;
            let bytes = args.get(3)?.parse::<usize>().ok()?;
            let dir = PathBuf::from(args.get(4)?);
            Some((mode.clone(), layout, bytes, dir))
        })();
        let Some((mode, layout, bytes, dir)) = parsed else {
            eprintln!("usage: ckpt-bench peak-mem MODE LAYOUT BYTES DIR");
            return ExitCode::from(2);
        };
        return match peakmem::child(&mode, layout, bytes, &dir) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("ckpt-bench peak-mem: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let cx = match parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let json_path = cx.json.clone();
    let meta = serde_json::json!({
        "args": args,
        "quick": cx.quick,
        "reps": cx.reps,
        "sizes": cx.sizes,
        "s3_sizes": cx.s3_sizes,
        "steps": cx.steps,
        "cores": sys::cores(),
        "cpu": sys::cpu_model(),
        "mem_total": sys::mem_total(),
        "git": git_head(),
    });
    let report = match run(cx) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ckpt-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", report.table());
    let missed = report.missed();
    if missed.is_empty() {
        println!("all targets met");
    } else {
        println!("targets missed:");
        for m in &missed {
            println!("- {m}");
        }
    }
    if let Some(path) = json_path {
        let text = match serde_json::to_string_pretty(&report.to_json(meta)) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("ckpt-bench: cannot encode the JSON: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("ckpt-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("bench: figures written to {}", path.display());
    }
    ExitCode::SUCCESS
}

fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(workspace_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// A started local server (the S3 server, or the etcd server of the `multiprocess` section): a
/// guard that stops it when dropped, and the environment the bench binary needs to reach it.
pub type S3Started = (Box<dyn std::any::Any>, Vec<(String, String)>);

/// Starts a local server (S3 or etcd).
pub type S3Starter = dyn Fn() -> Result<S3Started, String>;

/// `cargo xtask bench ARGS`: starts the local etcd server with `start_etcd` when the
/// `multiprocess` section is wanted and not `--no-etcd` (it also makes sure `protoc` is there;
/// when it cannot, the section is skipped with a note), builds `ckpt-bench` in release mode
/// (with the `etcd` feature when etcd started), starts the local S3 server with `start_s3`
/// unless `--no-s3` (or when it cannot start: the S3 figures are then skipped with a note), and
/// runs the binary with `args`. `--no-build` skips the build.
pub fn drive(
    args: &[String],
    start_s3: Option<&S3Starter>,
    start_etcd: Option<&S3Starter>,
) -> ExitCode {
    let Ok(parsed) = parse_args(args).inspect_err(|e| eprintln!("{e}")) else {
        return ExitCode::from(2);
    };
    let ws = workspace_root();
    let mut _etcd = None;
    let mut etcd_env = Vec::new();
    let want_etcd = !args.iter().any(|a| a == "--no-etcd") && want(&parsed, "multiprocess");
    if let (true, Some(start)) = (want_etcd, start_etcd) {
        match start() {
            Ok((guard, env)) => {
                _etcd = Some(guard);
                etcd_env = env;
            }
            Err(e) => eprintln!("xtask bench: no multi-process figures: {e}"),
        }
    }
    if !args.iter().any(|a| a == "--no-build") {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
        let mut build = vec!["build", "--release", "-p", "xtask", "--bin", "ckpt-bench"];
        if _etcd.is_some() {
            build.extend(["--features", "etcd"]);
        }
        eprintln!("xtask bench: cargo {}", build.join(" "));
        let t = Instant::now();
        let ok = Command::new(cargo)
            .args(&build)
            .current_dir(&ws)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("xtask bench: the release build failed");
            return ExitCode::FAILURE;
        }
        eprintln!("xtask bench: built in {:.0} s", t.elapsed().as_secs_f64());
    }
    let exe = target_dir().join("release").join("ckpt-bench");
    let mut cmd = Command::new(&exe);
    cmd.args(
        args.iter()
            .filter(|a| *a != "--no-build" && *a != "--no-s3" && *a != "--no-etcd"),
    )
    .current_dir(&ws)
    .envs(etcd_env);
    let mut _server = None;
    let want_s3 = !args.iter().any(|a| a == "--no-s3") && want(&parsed, "s3");
    if let (true, Some(start)) = (want_s3, start_s3) {
        match start() {
            Ok((guard, env)) => {
                _server = Some(guard);
                cmd.envs(env);
            }
            Err(e) => eprintln!("xtask bench: no S3 figures: {e}"),
        }
    }
    match cmd.status() {
        Ok(s) if s.success() => ExitCode::SUCCESS,
        Ok(s) => {
            eprintln!("xtask bench: {} exited with {s}", exe.display());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("xtask bench: cannot run {}: {e}", exe.display());
            ExitCode::FAILURE
        }
    }
}
