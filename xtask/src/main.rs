//! Developer tasks of the ckpt workspace, run as `cargo xtask <task>`.
//!
//! - `scenario CASE.json`: replays one differential case of `testdata/orbax/cases/` against the
//!   real manager on a temporary root and prints the output JSON (the folder's README is the
//!   contract; `python3 testdata/orbax/compare.py --all testdata/orbax/cases cargo xtask scenario`).
//! - `ci`: everything CI checks, in order: formatting, clippy (warnings are errors), the whole
//!   test suite, and ckpt-policy built with its default features off. Stops at the first failure.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        Some("scenario") => scenario(args.get(1).map(String::as_str)),
        other => {
            eprintln!("usage: cargo xtask ci | scenario CASE.json");
            if let Some(t) = other {
                eprintln!("xtask: unknown task {t:?}");
            }
            ExitCode::from(2)
        }
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
    let steps: [&[&str]; 4] = [
        &["fmt", "--all", "--", "--check"],
        &["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"],
        &["test", "--workspace"],
        &["test", "-p", "ckpt-policy", "--no-default-features"],
    ];
    for step in steps {
        if !cargo(step) {
            eprintln!("xtask ci: FAILED at `cargo {}`", step.join(" "));
            return ExitCode::FAILURE;
        }
    }
    eprintln!("xtask ci: all checks passed");
    ExitCode::SUCCESS
}

fn scenario(path: Option<&str>) -> ExitCode {
    let Some(path) = path else {
        eprintln!("usage: cargo xtask scenario CASE.json");
        return ExitCode::from(2);
    };
    let case = match std::fs::read_to_string(path).map_err(|e| e.to_string()).and_then(|t| {
        serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string())
    }) {
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
