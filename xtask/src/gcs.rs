//! `cargo xtask gcs-test`: ckpt-storage's conformance suite (all but conditional creates and
//! multipart uploads, which the emulator lacks) against `gcp-storage-emulator` from PyPI
//! (pinned), through the `gcs` store.
//!
//! 1. a Python venv `target/gcs-venv` holding the emulator (~5 s the first time, a few MB);
//! 2. the emulator on a free 127.0.0.1 port, in memory, with the bucket `ckpt-test`, through the
//!    wrapper of `xtask/src/azurite.rs` (stopped if this task dies);
//! 3. `cargo test -p ckpt-storage --features gcs --test gcs_conformance` with
//!    `CKPT_TEST_GCS_ENDPOINT` and `CKPT_TEST_GCS_BUCKET` set; then the emulator is stopped.
//!
//! Not part of `cargo xtask ci` (it covers less than the S3 suite and adds the `gcs` feature's
//! build); CI compiles the `gcs` feature (clippy) instead.

use crate::azurite::{spawn_guarded, wait_http};
use crate::s3server::{ensure_venv, free_port, target_dir};
use std::process::ExitCode;
use std::time::Instant;

/// The pinned emulator.
const REQUIREMENTS: &[&str] = &["gcp-storage-emulator==2026.7.19"];
/// The bucket the tests use (created by the emulator at start).
const BUCKET: &str = "ckpt-test";

/// The task; `args` must be empty.
pub fn main(args: &[String]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("usage: cargo xtask gcs-test");
        return ExitCode::from(2);
    }
    match run() {
        Ok(()) => {
            eprintln!("xtask gcs-test: passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask gcs-test: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let t = Instant::now();
    let venv = target_dir().join("gcs-venv");
    let python = ensure_venv(&venv, REQUIREMENTS, "gcp_storage_emulator")?;
    let port = free_port()?;
    let log = target_dir().join(format!("gcs-emulator-{port}.log"));
    let bin = venv.join("bin").join("gcp-storage-emulator");
    let bin_s = bin.to_string_lossy();
    let port_s = port.to_string();
    let mut guard = spawn_guarded(
        &python,
        &[
            bin_s.as_ref(),
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            &port_s,
            "--default-bucket",
            BUCKET,
            "--in-memory",
        ],
        &log,
    )?;
    let bucket_path = format!("/storage/v1/b/{BUCKET}");
    wait_http(&mut guard, port, &bucket_path, "gcp-storage-emulator", &log)?;
    let endpoint = format!("http://127.0.0.1:{port}");
    eprintln!(
        "xtask gcs-test: emulator answering at {endpoint} after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let env = [
        ("CKPT_TEST_GCS_ENDPOINT".to_string(), endpoint),
        ("CKPT_TEST_GCS_BUCKET".to_string(), BUCKET.to_string()),
    ];
    let args = [
        "test",
        "-p",
        "ckpt-storage",
        "--features",
        "gcs",
        "--test",
        "gcs_conformance",
    ];
    let ok = crate::s3server::cargo_with_env(&args, &env);
    drop(guard);
    if ok {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed", args.join(" ")))
    }
}
