//! `cargo xtask interop`: roots written by ckpt, read by orbax-checkpoint 0.12.8 itself.
//!
//! 1. Set up the Python virtual environment `target/interop-venv` ([`crate::venv`]).
//! 2. Write the roots into a fresh directory under the system temp dir with the example
//!    `ckpt-manager/examples/write_interop_root.rs`, which also writes `manifest.json`.
//! 3. Run `xtask/interop/check_orbax.py` on the manifest with the venv's Python: one PASS/FAIL
//!    line per check, then `N passed, M failed`.
//!
//! The directory of roots is removed when every check passes and kept (its path printed) when
//! one fails, or always with `--keep`.

use crate::venv;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Options of the task: `--keep` keeps the written roots.
pub fn main(args: &[String]) -> ExitCode {
    let mut keep = false;
    for a in args {
        match a.as_str() {
            "--keep" => keep = true,
            other => {
                eprintln!("xtask interop: unknown argument {other:?} (usage: cargo xtask interop [--keep])");
                return ExitCode::from(2);
            }
        }
    }
    if run_ok(keep) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs the whole check and reports its outcome on stderr; true when every check passed.
pub fn run_ok(keep: bool) -> bool {
    match run(keep) {
        Ok(()) => {
            eprintln!(
                "xtask interop: orbax-checkpoint {} reads ckpt's roots: all checks passed",
                venv::ORBAX_VERSION
            );
            true
        }
        Err(e) => {
            eprintln!("xtask interop: FAILED: {e}");
            false
        }
    }
}

fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

fn target_dir(workspace: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => workspace.join(d), // an absolute CARGO_TARGET_DIR replaces the whole path
        None => workspace.join("target"),
    }
}

fn run(keep: bool) -> Result<(), String> {
    let workspace = workspace_root();
    let interop = workspace.join("xtask").join("interop");
    let venv_dir = target_dir(&workspace).join("interop-venv");

    let t = Instant::now();
    venv::ensure(&venv_dir, &interop.join("requirements.txt"))?;
    eprintln!(
        "xtask interop: python environment ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let out = fresh_dir()?;
    let t = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out_arg = out.to_string_lossy();
    let args = [
        "run",
        "--quiet",
        "-p",
        "ckpt-manager",
        "--example",
        "write_interop_root",
        "--",
        out_arg.as_ref(),
    ];
    eprintln!("xtask interop: cargo {}", args.join(" "));
    crate::run_status(
        Command::new(&cargo)
            .args(args)
            .current_dir(&workspace)
            .stdout(Stdio::null()),
        "writing the roots with ckpt",
    )?;
    eprintln!(
        "xtask interop: roots written in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let manifest = out.join("manifest.json");
    let py = venv::python(&venv_dir);
    let checked = crate::run_status(
        Command::new(&py)
            .arg(interop.join("check_orbax.py"))
            .arg(&manifest),
        "the Orbax check (see the FAIL lines above)",
    );
    eprintln!(
        "xtask interop: Orbax checks ran in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let checked = checked
        .and_then(|()| arrays(&workspace, &interop, &py, &out, &cargo))
        .and_then(|()| multiprocess(&workspace, &interop, &py, &out, &cargo));
    match (&checked, keep) {
        (Ok(()), false) => {
            if let Err(e) = std::fs::remove_dir_all(&out) {
                eprintln!("xtask interop: could not remove {}: {e}", out.display());
            }
        }
        _ => eprintln!(
            "xtask interop: the roots and manifest.json are kept in {}",
            out.display()
        ),
    }
    checked
}

/// The array part (issue 13): Orbax writes roots of every layout with
/// `xtask/interop/arrays/gen_orbax_arrays.py` and ckpt's reader test reads them bit-exactly
/// (`CKPT_ORBAX_ARRAYS_DIR`); ckpt writes pytree roots with the example `write_pytree_roots` and
/// `check_ckpt_pytrees.py` has Orbax list, restore and prune them.
fn arrays(
    workspace: &Path,
    interop: &Path,
    py: &Path,
    out: &Path,
    cargo: &str,
) -> Result<(), String> {
    let arrays = interop.join("arrays");
    let orbax_out = out.join("orbax-arrays");
    let t = Instant::now();
    crate::run_status(
        Command::new(py)
            .arg(arrays.join("gen_orbax_arrays.py"))
            .arg(&orbax_out)
            .stdout(Stdio::null()),
        "Orbax writing the array roots",
    )?;
    eprintln!(
        "xtask interop: Orbax wrote the array roots in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    crate::run_status(
        Command::new(cargo)
            .args([
                "test",
                "--quiet",
                "-p",
                "ckpt-handlers",
                "--test",
                "orbax_arrays",
            ])
            .env("CKPT_ORBAX_ARRAYS_DIR", &orbax_out)
            .current_dir(workspace),
        "ckpt reading the roots Orbax just wrote",
    )?;
    let pytrees = out.join("ckpt-pytrees");
    let out_arg = pytrees.to_string_lossy();
    crate::run_status(
        Command::new(cargo)
            .args([
                "run",
                "--quiet",
                "-p",
                "ckpt-manager",
                "--example",
                "write_pytree_roots",
                "--",
                out_arg.as_ref(),
            ])
            .current_dir(workspace)
            .stdout(Stdio::null()),
        "ckpt writing the pytree roots",
    )?;
    crate::run_status(
        Command::new(py)
            .arg(arrays.join("check_ckpt_pytrees.py"))
            .arg(pytrees.join("pytrees.json")),
        "Orbax reading ckpt's pytree roots (see the FAIL lines above)",
    )
}

/// The multi-process part (issue 15), both directions:
/// 1. a 4-process JAX job (`jax.distributed` on 127.0.0.1, CPU) saves with Orbax
///    (`xtask/interop/arrays/gen_orbax_multiprocess.py`) and ckpt's test `orbax_multiprocess`
///    reads that root (`CKPT_ORBAX_MULTIPROCESS_DIR`) bit-exactly and writes the same keys;
/// 2. 4 ckpt processes on a local etcd save one pytree item sharded across them (the test
///    `multiprocess_pytrees`, keeping its root in `CKPT_MP_PYTREES_OUT`), and
///    `check_ckpt_pytrees.py` has Orbax list and restore it (no args, `StandardRestore` with an
///    abstract tree, `Composite`) bit-exactly, and so does a 4-process JAX job restoring it with
///    `NamedSharding`s (`check_ckpt_multiprocess_jax.py`: each process checks its shards).
fn multiprocess(
    workspace: &Path,
    interop: &Path,
    py: &Path,
    out: &Path,
    cargo: &str,
) -> Result<(), String> {
    let arrays = interop.join("arrays");
    let jax_out = out.join("orbax-multiprocess");
    let t = Instant::now();
    crate::run_status(
        Command::new(py)
            .arg(arrays.join("gen_orbax_multiprocess.py"))
            .arg(&jax_out)
            .stdout(Stdio::null()),
        "a 4-process JAX job saving with Orbax",
    )?;
    eprintln!(
        "xtask interop: 4 JAX processes wrote a root with Orbax in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    crate::run_status(
        Command::new(cargo)
            .args([
                "test",
                "--quiet",
                "-p",
                "ckpt-handlers",
                "--test",
                "orbax_multiprocess",
            ])
            .env("CKPT_ORBAX_MULTIPROCESS_DIR", &jax_out)
            .current_dir(workspace),
        "ckpt reading the root the JAX processes just wrote",
    )?;
    let etcd = crate::etcdserver::ensure_protoc().and_then(|()| crate::etcdserver::start())?;
    let ckpt_out = out.join("ckpt-multiprocess");
    let written = crate::run_status(
        Command::new(cargo)
            .args([
                "test",
                "--quiet",
                "-p",
                "ckpt-manager",
                "--features",
                "etcd",
                "--test",
                "multiprocess_pytrees",
                "--",
                "--exact",
                "a_pytree_sharded_over_4_processes_is_one_orbax_item_restored_on_2_and_on_1",
            ])
            .envs(etcd.env())
            .env("CKPT_MP_PYTREES_OUT", &ckpt_out)
            .current_dir(workspace),
        "4 ckpt processes saving a sharded pytree item",
    );
    etcd.stop();
    written?;
    crate::run_status(
        Command::new(py)
            .arg(arrays.join("check_ckpt_pytrees.py"))
            .arg(ckpt_out.join("pytrees.json")),
        "Orbax reading the pytree item 4 ckpt processes saved (see the FAIL lines above)",
    )?;
    let t = Instant::now();
    crate::run_status(
        Command::new(py)
            .arg(arrays.join("check_ckpt_multiprocess_jax.py"))
            .arg(ckpt_out.join("pytrees.json")),
        "4 JAX processes restoring, sharded, the item 4 ckpt processes saved (see above)",
    )?;
    eprintln!(
        "xtask interop: 4 JAX processes restored ckpt's sharded item in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A new, empty directory for the roots.
fn fresh_dir() -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!("ckpt-interop-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}
