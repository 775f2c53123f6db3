//! Developer tasks of the ckpt workspace, run as `cargo xtask <task>`.
//!
//! - `scenario CASE.json`: replays one differential case of `testdata/orbax/cases/` against the
//!   real manager on a temporary root and prints the output JSON (the folder's README is the
//!   contract; `python3 testdata/orbax/compare.py --all testdata/orbax/cases cargo xtask scenario`).
//! - `ci`: everything CI checks, in order: formatting, clippy (warnings are errors), the whole
//!   test suite, ckpt-policy tested and ckpt-manager linted (every target) with their default
//!   features off, the object-store backends and ckpt-handlers' `ndarray` feature linted, the
//!   lean-library check
//!   (`ckpt-manager --no-default-features` pulls no CLI or HTTP crate), the API docs without a
//!   warning, and last the Orbax
//!   interoperability check below. Stops at the first failure. The test steps run against a
//!   local S3 server (below) started first and stopped after them; CI fails, with the reason,
//!   if it cannot be started.
//! - `test [CARGO TEST ARGS]`: the one command for developers: starts the local S3 server, runs
//!   `cargo test --workspace` (or `cargo test ARGS`) with its environment, stops it.
//! - `etcd-server`: starts a local etcd (Debian's `etcd-server`, installed if missing; see
//!   `xtask/src/etcdserver.rs`) for the coordination tests, prints `CKPT_TEST_ETCD=…` to export,
//!   and serves until Ctrl-C. `ci` starts one beside the S3 server and runs
//!   `cargo test -p ckpt-manager --features etcd --test coordination` (and `--test multiprocess`,
//!   which also needs the S3 server, `--test multiprocess_pytrees`, one Orbax pytree item
//!   sharded over 4 processes, and `--test train_multiprocess`, the main job in several
//!   processes) against it.
//! - `s3-server`: starts the local S3 server (moto from PyPI, in `target/s3-venv`, on a free
//!   127.0.0.1 port; see `xtask/src/s3server.rs`), prints the variables to export for
//!   `cargo test`, and serves until Ctrl-C.
//! - `azurite-test`: the conformance suite against Azure Blob Storage's emulator Azurite (npm
//!   `azurite`, in `target/azurite-npm`; see `xtask/src/azurite.rs`); not part of `ci`.
//! - `gcs-test`: the conformance suite, less conditional creates and multipart uploads, against
//!   `gcp-storage-emulator` from PyPI (see `xtask/src/gcs.rs`); not part of `ci`.
//! - `interop [--keep]`: checks that orbax-checkpoint 0.12.8 itself reads roots written by ckpt
//!   (docs/design.md, "On-disk format"). It
//!   1. creates or reuses the Python virtual environment `target/interop-venv` and pip-installs
//!      into it the pinned wheels of `xtask/interop/requirements.txt` (orbax-checkpoint 0.12.8,
//!      `jax[cpu]` and their dependencies: about 170 MB of wheels from PyPI, 730 MB installed, 25 s
//!      the first time; reused while that file is unchanged and orbax-checkpoint 0.12.8 is
//!      installed). It needs
//!      `python3` (3.10 or later) with the `venv` module and network access to PyPI; set
//!      `CKPT_INTEROP_PYTHON` to use another interpreter;
//!   2. writes five roots with ckpt into a fresh directory under the system temp dir, with
//!      `cargo run -p ckpt-manager --example write_interop_root -- DIR`, plus `DIR/manifest.json`
//!      saying what each holds: one unnamed JSON item with metrics, best metric, max_to_keep and
//!      root metadata; named JSON items plus a tensor item (type string `ckpt.tensors`) under
//!      `step_prefix`/`step_format_fixed_length`; a deleted step; a `.orbax-checkpoint-tmp`
//!      leftover; the commit-file protocol with an uncommitted step;
//!   3. runs `xtask/interop/check_orbax.py DIR/manifest.json` with the venv's Python. It checks
//!      the files (layout, `commit_success.txt` in every step and item directory,
//!      `_CHECKPOINT_METADATA` and `_ROOT_METADATA` parsed by Orbax's own deserializers and byte
//!      for byte what Orbax serializes, JSON item and metrics files byte for byte `json.dumps`),
//!      then opens each root with a read-only `ocp.CheckpointManager` and checks `all_steps`,
//!      `latest_step`, `best_step`, `metrics(step)`, `metadata()`, `metadata(step)`,
//!      `restore(step, args=...)` of every JSON item, and `restore()` without args (it must fail
//!      with Orbax's "could not be restored" error for the root holding a `ckpt.tensors` item,
//!      which Orbax cannot know), and that reading changed no file;
//!   4. the array roots both ways (`xtask/src/interop.rs`): Orbax's, read by ckpt; ckpt's pytree
//!      roots, restored by Orbax;
//!   5. multi-process (issue 15): 4 local JAX processes (`jax.distributed` on 127.0.0.1) save a
//!      sharded pytree with Orbax (`gen_orbax_multiprocess.py`) and ckpt's `orbax_multiprocess`
//!      test reads it; 4 ckpt processes on a local etcd save one sharded pytree item
//!      (`multiprocess_pytrees`) and Orbax restores it (`check_ckpt_pytrees.py`), in one
//!      process and in 4 JAX processes, sharded (`check_ckpt_multiprocess_jax.py`).
//!
//!   Prints one PASS/FAIL line per check and `N passed, M failed`; exits non-zero when anything
//!   fails. The roots are removed after a pass and kept (path printed) after a failure, or always
//!   with `--keep`.
//! - `crash [--iterations N] [--seed S]`: the crash-consistency test of issue 4 at scale: runs
//!   `ckpt-manager/tests/crash.rs`'s kill loop (a child saving checkpoints, killed with SIGKILL at
//!   random moments, the root checked after every kill) 2,000 times by default and prints a
//!   summary (iterations, kills, steps verified, wall time). See `xtask/src/crash.rs`.
//! - `bench [--quick] [--json FILE]`: the performance figures of issue 6 (save/restore against
//!   raw std::fs and opendal baselines, async saves, 10,000-step overhead, peak memory), built
//!   and run in release mode. See `xtask/src/bench/mod.rs`.

mod azurite;
mod crash;
mod etcdserver;
mod gcs;
mod interop;
mod s3server;
mod venv;

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("scenario") => scenario(args.get(1).map(String::as_str)),
        Some("interop") => interop::main(&args[1..]),
        Some("test") => s3server::test_main(&args[1..]),
        Some("s3-server") => s3server::serve(),
        Some("etcd-server") => etcdserver::serve(),
        Some("azurite-test") => azurite::main(&args[1..]),
        Some("gcs-test") => gcs::main(&args[1..]),
        Some("crash") => crash::main(&args[1..]),
        Some("bench") => {
            // The `orbax` section compares with orbax-checkpoint in the interop venv.
            let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            let venv_dir = xtask::bench::target_dir().join("interop-venv");
            if let Err(e) =
                venv::ensure(&venv_dir, &workspace.join("xtask/interop/requirements.txt"))
            {
                eprintln!("xtask bench: no Orbax venv ({e}); the orbax section will be skipped");
            }
            xtask::bench::drive(&args[1..], Some(&bench_s3), Some(&bench_etcd))
        }
        other => {
            eprintln!(
                "usage: cargo xtask ci | scenario CASE.json | interop [--keep] | crash [--iterations N] [--seed S] | bench [--quick] [--json FILE]"
            );
            eprintln!(
                "       cargo xtask test [CARGO TEST ARGS] | s3-server | etcd-server | azurite-test | gcs-test"
            );
            if let Some(t) = other {
                eprintln!("xtask: unknown task {t:?}");
            }
            ExitCode::from(2)
        }
    }
}

/// Starts the local S3 server for `cargo xtask bench`: a guard that stops it, and its environment.
fn bench_s3() -> Result<xtask::bench::S3Started, String> {
    let server = s3server::start()?;
    let env = server.env();
    Ok((Box::new(server), env))
}

/// Starts the local etcd server for the `multiprocess` section of `cargo xtask bench` (and
/// makes sure `protoc` is there to build the `etcd` feature): a guard that stops it, and its
/// environment (`CKPT_TEST_ETCD`).
fn bench_etcd() -> Result<xtask::bench::S3Started, String> {
    etcdserver::ensure_protoc()?;
    let server = etcdserver::start()?;
    let env = server.env();
    Ok((Box::new(server), env))
}

/// Runs `cmd`, turning a failure to start it or a non-zero exit into an error naming `what`.
pub(crate) fn run_status(cmd: &mut Command, what: &str) -> Result<(), String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    match cmd.status() {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => Err(format!("{what} failed: `{program}` exited with {s}")),
        Err(e) => Err(format!("{what} failed: cannot run `{program}`: {e}")),
    }
}

/// Prints the free space of the file system holding the current directory (`df -h .`), so a
/// CI log that ends in "No space left on device" shows how much there was at the start.
fn report_free_disk() {
    match Command::new("df").args(["-h", "."]).output() {
        Ok(out) => eprint!(
            "xtask: disk at the start:\n{}",
            String::from_utf8_lossy(&out.stdout)
        ),
        Err(e) => eprintln!("xtask: cannot run df: {e}"),
    }
}

fn cargo(args: &[&str]) -> bool {
    eprintln!("xtask: cargo {}", args.join(" "));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    match Command::new(cargo).args(args).status() {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            false
        }
    }
}

fn ci() -> ExitCode {
    // Incremental caches are of no use to a one-off clean-clone build and cost gigabytes of
    // disk; every cargo this process starts inherits the setting.
    std::env::set_var("CARGO_INCREMENTAL", "0");
    report_free_disk();
    let steps: &[&[&str]] = &[
        &["fmt", "--all", "--", "--check"],
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &["test", "--workspace"],
        &["test", "-p", "ckpt-policy", "--no-default-features"],
        // ckpt-manager without its default features (policy families, SIGTERM source): every
        // target builds (tests needing a feature declare it) and is lint-clean.
        &[
            "clippy",
            "-p",
            "ckpt-manager",
            "--no-default-features",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[
            "test",
            "-p",
            "ckpt-manager",
            "--no-default-features",
            "--lib",
        ],
        // The etcd coordinator (feature `etcd`, off in the workspace build, so that building it
        // needs protoc here only) and its multi-process tests against the etcd started below.
        &[
            "clippy",
            "-p",
            "ckpt-manager",
            "--features",
            "etcd",
            "--lib",
            "--tests",
            "--",
            "-D",
            "warnings",
        ],
        &[
            "test",
            "-p",
            "ckpt-manager",
            "--features",
            "etcd",
            "--test",
            "coordination",
        ],
        // Managers of a 4-process job on that etcd, on local disk and on the S3 server below.
        &[
            "test",
            "-p",
            "ckpt-manager",
            "--features",
            "etcd",
            "--test",
            "multiprocess",
        ],
        // One Orbax pytree item sharded over a 4-process job on that etcd (each process its
        // `ocdbt.process_<i>/`, merged by the primary), restored on 2 and on 1 process.
        &[
            "test",
            "-p",
            "ckpt-manager",
            "--features",
            "etcd",
            "--test",
            "multiprocess_pytrees",
        ],
        // The main job in 4, then 2 processes on that etcd (`train --processes`, a SIGTERM,
        // a resume with another process count), bit-exact against one process.
        &[
            "test",
            "-p",
            "ckpt-manager",
            "--features",
            "etcd",
            "--test",
            "train_multiprocess",
        ],
    ];
    // The local S3 server of the S3 tests (xtask/src/s3server.rs); stopped after the steps.
    let s3 = match s3server::start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "xtask ci: FAILED: {e}\n  (the S3 tests need this server; CI never skips them)"
            );
            return ExitCode::FAILURE;
        }
    };
    // The etcd server of the coordination tests (xtask/src/etcdserver.rs), and protoc to build
    // the `etcd` feature; stopped after the steps.
    let etcd = match etcdserver::ensure_protoc().and_then(|()| etcdserver::start()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "xtask ci: FAILED: {e}\n  (the coordination tests need it; CI never skips them)"
            );
            return ExitCode::FAILURE;
        }
    };
    let env: Vec<(String, String)> = s3.env().into_iter().chain(etcd.env()).collect();
    for step in steps {
        if !s3server::cargo_with_env(step, &env) {
            eprintln!("xtask ci: FAILED at `cargo {}`", step.join(" "));
            return ExitCode::FAILURE;
        }
    }
    s3.stop();
    etcd.stop();
    // The GCS and Azure stores (off by default) must keep compiling.
    let all_features = [
        "clippy",
        "-p",
        "ckpt-storage",
        "--all-targets",
        "--all-features",
        "--",
        "-D",
        "warnings",
    ];
    if !cargo(&all_features) {
        eprintln!("xtask ci: FAILED at `cargo {}`", all_features.join(" "));
        return ExitCode::FAILURE;
    }
    // ckpt-handlers' optional ndarray conversions must keep compiling, warning-free.
    let ndarray = [
        "clippy",
        "-p",
        "ckpt-handlers",
        "--all-targets",
        "--features",
        "ndarray",
        "--",
        "-D",
        "warnings",
    ];
    if !cargo(&ndarray) {
        eprintln!("xtask ci: FAILED at `cargo {}`", ndarray.join(" "));
        return ExitCode::FAILURE;
    }
    // The API docs build without a warning (broken or private intra-doc links).
    eprintln!("xtask: RUSTDOCFLAGS=\"-D warnings\" cargo doc --no-deps --workspace");
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let docs_ok = Command::new(&cargo_bin)
        .args(["doc", "--no-deps", "--workspace"])
        .env("RUSTDOCFLAGS", "-D warnings")
        .status()
        .is_ok_and(|s| s.success());
    if !docs_ok {
        eprintln!("xtask ci: FAILED at `cargo doc --no-deps --workspace` (warnings are errors)");
        return ExitCode::FAILURE;
    }
    // The published crates package (issue 16): manifests, READMEs and dependency versions in
    // order. `--no-verify`: verifying builds every crate again from its .crate (about 7 minutes
    // on 2 cores); `cargo package --workspace --exclude xtask` without it is the full check. Run
    // that with a fresh CARGO_TARGET_DIR: cargo takes the packaged crates as registry crates and
    // reuses one it built (or unpacked into ~/.cargo/registry/src) before under the same name and
    // version, so a second run verifies stale sources.
    // `--allow-dirty`: a local run with uncommitted work checks that work too.
    if let Err(e) = license_copies() {
        eprintln!("xtask ci: FAILED: {e}");
        return ExitCode::FAILURE;
    }
    let package = [
        "package",
        "--workspace",
        "--exclude",
        "xtask",
        "--no-verify",
        "--allow-dirty",
    ];
    if !cargo(&package) {
        eprintln!("xtask ci: FAILED at `cargo {}`", package.join(" "));
        return ExitCode::FAILURE;
    }
    if let Err(e) = lean_library() {
        eprintln!("xtask ci: FAILED: {e}");
        return ExitCode::FAILURE;
    }
    eprintln!("xtask: interop");
    if !interop::run_ok(false) {
        eprintln!("xtask ci: FAILED at `cargo xtask interop`");
        return ExitCode::FAILURE;
    }
    eprintln!("xtask ci: all checks passed");
    ExitCode::SUCCESS
}

/// The crates published to crates.io, in dependency order.
const PUBLISHED: [&str; 5] = [
    "ckpt-core",
    "ckpt-policy",
    "ckpt-storage",
    "ckpt-handlers",
    "ckpt-manager",
];

/// Each published crate carries the license text in its package: a copy of the root `LICENSE`
/// in its directory (cargo packages only files below the crate; no symlinks). Checks that every
/// copy is there and equal to the root's.
fn license_copies() -> Result<(), String> {
    let workspace = s3server::workspace_root();
    let root = std::fs::read(workspace.join("LICENSE"))
        .map_err(|e| format!("cannot read LICENSE: {e}"))?;
    for krate in PUBLISHED {
        let path = format!("{krate}/LICENSE");
        match std::fs::read(workspace.join(&path)) {
            Ok(copy) if copy == root => {}
            Ok(_) => {
                return Err(format!(
                    "{path} differs from LICENSE (copy it: cp LICENSE {path})"
                ))
            }
            Err(e) => {
                return Err(format!(
                    "cannot read {path}: {e} (copy it: cp LICENSE {path})"
                ))
            }
        }
    }
    Ok(())
}

/// Crates that only the `ckpt` tool (feature `cli`) or an object-store backend may bring in.
const NOT_IN_THE_LEAN_LIBRARY: [&str; 7] = [
    "clap",
    "indicatif",
    "toml",
    "unicode-width",
    "reqwest",
    "rustls",
    "hyper",
];

/// Checks that `ckpt-manager` used as a library (`--no-default-features`) pulls none of
/// [`NOT_IN_THE_LEAN_LIBRARY`] (issue 12): reads `cargo tree -e normal`.
fn lean_library() -> Result<(), String> {
    let args = [
        "tree",
        "-p",
        "ckpt-manager",
        "--no-default-features",
        "-e",
        "normal",
        "--prefix",
        "none",
    ];
    eprintln!("xtask: cargo {}", args.join(" "));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let found: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| NOT_IN_THE_LEAN_LIBRARY.contains(name))
        .collect();
    if found.is_empty() {
        eprintln!(
            "xtask: ckpt-manager --no-default-features: {} crates, none of {:?}",
            text.lines().count(),
            NOT_IN_THE_LEAN_LIBRARY
        );
        Ok(())
    } else {
        Err(format!(
            "ckpt-manager --no-default-features pulls {found:?} (only the `cli` feature or a backend may)"
        ))
    }
}

fn scenario(path: Option<&str>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("usage: cargo xtask scenario CASE.json");
        return ExitCode::from(2);
    };
    let case = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()))
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("xtask scenario: cannot read {path}: {e}");
            return ExitCode::from(2);
        }
    };
    match xtask::scenario::run_case(&case) {
        Ok(out) => {
            println!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask scenario: {path}: {e}");
            ExitCode::FAILURE
        }
    }
}
