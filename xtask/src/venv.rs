//! The Python virtual environment of `cargo xtask interop`: `target/interop-venv`, holding the
//! pinned packages of `xtask/interop/requirements.txt` (orbax-checkpoint 0.12.8, CPU JAX).

use crate::run_status as run;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The orbax-checkpoint version the check needs (the one ckpt's on-disk format follows).
pub const ORBAX_VERSION: &str = "0.12.8";

/// Copy of the requirements the venv was last installed from, kept inside the venv.
const STAMP: &str = "ckpt-interop-requirements.txt";

/// The venv's Python interpreter.
pub fn python(venv: &Path) -> PathBuf {
    if cfg!(windows) {
        venv.join("Scripts").join("python.exe")
    } else {
        venv.join("bin").join("python")
    }
}

/// Makes `venv` hold exactly the packages of `requirements`: reuses it when it was installed from
/// the same file and has orbax-checkpoint [`ORBAX_VERSION`], otherwise creates it (with the
/// interpreter `$CKPT_INTEROP_PYTHON`, default `python3`) and pip-installs the pinned wheels.
pub fn ensure(venv: &Path, requirements: &Path) -> Result<(), String> {
    let wanted = std::fs::read_to_string(requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    let py = python(venv);
    let stamp = venv.join(STAMP);
    if py.exists() {
        let same = std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted);
        match orbax_version(&py) {
            Some(v) if v == ORBAX_VERSION && same => {
                eprintln!(
                    "xtask interop: reusing {} (orbax-checkpoint {v})",
                    venv.display()
                );
                return Ok(());
            }
            Some(v) => eprintln!(
                "xtask interop: {} has orbax-checkpoint {v}; installing the pinned set",
                venv.display()
            ),
            None => eprintln!(
                "xtask interop: {} has no orbax-checkpoint; installing",
                venv.display()
            ),
        }
    } else {
        create(venv)?;
    }
    // A stale stamp must not survive a failed install.
    let _ = std::fs::remove_file(&stamp);
    let req = requirements.to_string_lossy();
    let args = [
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--only-binary=:all:",
        "-r",
        req.as_ref(),
    ];
    eprintln!("xtask interop: {} {}", py.display(), args.join(" "));
    run(
        Command::new(&py).args(args),
        "pip install of the interop requirements",
    )
    .map_err(|e| {
        format!(
            "{e}\n  (PyPI must be reachable; the pins are in {})",
            requirements.display()
        )
    })?;
    match orbax_version(&py) {
        Some(v) if v == ORBAX_VERSION => {}
        other => {
            return Err(format!(
                "after pip install, orbax-checkpoint is {other:?} in {}, expected {ORBAX_VERSION}",
                venv.display()
            ))
        }
    }
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// Creates (or re-creates, `--clear`) the venv with the system interpreter.
fn create(venv: &Path) -> Result<(), String> {
    let system = std::env::var("CKPT_INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let v = venv.to_string_lossy();
    eprintln!("xtask interop: {system} -m venv --clear {v}");
    run(Command::new(&system).args(["-m", "venv", "--clear", v.as_ref()]), "creating the virtual environment")
        .map_err(|e| {
            format!(
                "{e}\n  (needs a Python 3.10+ interpreter `{system}` with the venv module and ensurepip, \
                 e.g. Debian's python3-venv; set CKPT_INTEROP_PYTHON to use another interpreter)"
            )
        })
}

/// The installed orbax-checkpoint version, `None` when it is not installed or Python fails.
fn orbax_version(py: &Path) -> Option<String> {
    let out = Command::new(py)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('orbax-checkpoint'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}
