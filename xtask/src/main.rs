//! Developer tasks of the ckpt workspace, run as `cargo xtask <task>`.
//!
//! - `ci`: everything CI checks, in order: formatting, clippy (warnings are errors), the whole
//!   test suite, and ckpt-policy built with its default features off. Stops at the first failure.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci(),
        other => {
            eprintln!("usage: cargo xtask ci");
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
