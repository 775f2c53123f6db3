//! `cargo xtask azurite-test`: ckpt-storage's conformance suite against Azurite, the Azure
//! Storage emulator (npm `azurite`, pinned), through the `azblob` store.
//!
//! 1. `npm install azurite@3.37.0` into `target/azurite-npm` (~30 s and 360 MB the first time;
//!    reused while that version is installed) and a Python venv `target/azurite-venv` holding
//!    `azure-storage-blob` (~6 s; opendal has no call to create a container, so the container is
//!    created with Microsoft's client);
//! 2. starts `azurite-blob` on a free 127.0.0.1 port, in memory, with `--disableTelemetry` (the
//!    network here is closed), through a small Python wrapper that stops it if this task dies;
//! 3. creates the container `ckpt-test` and runs
//!    `cargo test -p ckpt-storage --features azblob --test azblob_conformance` with
//!    `CKPT_TEST_AZBLOB_ENDPOINT`, `CKPT_TEST_AZBLOB_CONTAINER`, `AZURE_STORAGE_ACCOUNT`,
//!    `AZURE_STORAGE_KEY`, `AZURE_STORAGE_ENDPOINT` set;
//! 4. stops Azurite.
//!
//! Not part of `cargo xtask ci`: the npm install alone is 360 MB and ~30 s, and compiling the
//! `azblob` feature's test binary adds another opendal/reqwest build; CI compiles the `azblob`
//! and `gcs` features (clippy) instead.

use crate::s3server::{ensure_venv, free_port, http, log_tail, target_dir};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// The pinned Azurite release.
const AZURITE_VERSION: &str = "3.37.0";
/// The Python package used to create the container.
const REQUIREMENTS: &[&str] = &["azure-storage-blob==12.31.1"];
/// The container the tests use.
const CONTAINER: &str = "ckpt-test";
/// Azurite's well-known development account and key (public; as in `ckpt_storage`).
const ACCOUNT: &str = "devstoreaccount1";
const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Runs the command given as arguments and stops it when the parent process (this xtask) is gone.
pub(crate) const WRAPPER: &str = r#"
import os, subprocess, sys, time
parent = os.getppid()
child = subprocess.Popen(sys.argv[1:])
while child.poll() is None:
    if os.getppid() != parent:
        child.kill()
        break
    time.sleep(0.5)
sys.exit(child.wait())
"#;

const CREATE_CONTAINER: &str = r#"
import sys
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient
svc = BlobServiceClient.from_connection_string(sys.argv[1])
try:
    svc.create_container(sys.argv[2])
except ResourceExistsError:
    pass
"#;

/// A server run through [`WRAPPER`] in its own process group; dropping it ends the group.
pub(crate) struct Guarded {
    pub(crate) child: Child,
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // The wrapper leads its own process group: end the group (wrapper and node) by its id.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `argv` through [`WRAPPER`] with `python`, in a new process group, output to `log`.
pub(crate) fn spawn_guarded(python: &Path, argv: &[&str], log: &Path) -> Result<Guarded, String> {
    let out =
        std::fs::File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let child = Command::new(python)
        .arg("-c")
        .arg(WRAPPER)
        .args(argv)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    Ok(Guarded { child })
}

/// A running Azurite; dropping it stops it.
struct Azurite {
    guard: Guarded,
    endpoint: String,
}

/// The task; `args` must be empty.
pub fn main(args: &[String]) -> ExitCode {
    if !args.is_empty() {
        eprintln!("usage: cargo xtask azurite-test");
        return ExitCode::from(2);
    }
    match run() {
        Ok(()) => {
            eprintln!("xtask azurite-test: passed");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask azurite-test: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let t = Instant::now();
    let bin = ensure_azurite(&target_dir().join("azurite-npm"))?;
    let python = ensure_venv(
        &target_dir().join("azurite-venv"),
        REQUIREMENTS,
        "azure.storage.blob",
    )?;
    eprintln!(
        "xtask azurite-test: azurite {AZURITE_VERSION} and azure-storage-blob ready in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let server = start(&bin, &python)?;
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};",
        server.endpoint
    );
    crate::run_status(
        Command::new(&python).args(["-c", CREATE_CONTAINER, &conn, CONTAINER]),
        "creating the Azurite container",
    )?;
    eprintln!(
        "xtask azurite-test: Azurite answering at {} (container {CONTAINER}) after {:.1} s",
        server.endpoint,
        t.elapsed().as_secs_f64()
    );
    let env = [
        ("CKPT_TEST_AZBLOB_ENDPOINT", server.endpoint.as_str()),
        ("CKPT_TEST_AZBLOB_CONTAINER", CONTAINER),
        ("AZURE_STORAGE_ACCOUNT", ACCOUNT),
        ("AZURE_STORAGE_KEY", KEY),
        ("AZURE_STORAGE_ENDPOINT", server.endpoint.as_str()),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let args = [
        "test",
        "-p",
        "ckpt-storage",
        "--features",
        "azblob",
        "--test",
        "azblob_conformance",
    ];
    let ok = crate::s3server::cargo_with_env(&args, &env);
    drop(server);
    if ok {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed", args.join(" ")))
    }
}

/// Installs the pinned Azurite into `dir` unless it is there; returns its `azurite-blob`.
fn ensure_azurite(dir: &Path) -> Result<PathBuf, String> {
    let bin = dir.join("node_modules").join(".bin").join("azurite-blob");
    let manifest = dir
        .join("node_modules")
        .join("azurite")
        .join("package.json");
    let installed = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["version"].as_str().map(str::to_string));
    if bin.exists() && installed.as_deref() == Some(AZURITE_VERSION) {
        return Ok(bin);
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let pkg = format!("azurite@{AZURITE_VERSION}");
    eprintln!("xtask azurite-test: npm install {pkg} in {}", dir.display());
    crate::run_status(
        Command::new("npm").current_dir(dir).args([
            "install",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
            &pkg,
        ]),
        "npm install of Azurite",
    )
    .map_err(|e| format!("{e}\n  (needs node and npm, and the npm registry reachable)"))?;
    if bin.exists() {
        Ok(bin)
    } else {
        Err(format!("after npm install, {} is missing", bin.display()))
    }
}

fn start(bin: &Path, python: &Path) -> Result<Azurite, String> {
    let port = free_port()?;
    let log = target_dir().join(format!("azurite-{port}.log"));
    let bin_s = bin.to_string_lossy();
    let port_s = port.to_string();
    let guard = spawn_guarded(
        python,
        &[
            bin_s.as_ref(),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            &port_s,
            "--inMemoryPersistence",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
        ],
        &log,
    )?;
    let mut server = Azurite {
        guard,
        endpoint: format!("http://127.0.0.1:{port}/{ACCOUNT}"),
    };
    wait_http(
        &mut server.guard,
        port,
        &format!("/{ACCOUNT}?comp=list"),
        "Azurite",
        &log,
    )?;
    Ok(server)
}

/// Waits up to 60 s until 127.0.0.1:`port` answers `GET path` with any HTTP status.
///
/// # Errors
/// When the server exits first or does not answer in time (with its log's tail).
pub(crate) fn wait_http(
    guard: &mut Guarded,
    port: u16,
    path: &str,
    what: &str,
    log: &Path,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = guard.child.try_wait() {
            return Err(format!(
                "{what} exited with {status} before answering{}",
                log_tail(log)
            ));
        }
        if http(port, "GET", path).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{what} did not answer on 127.0.0.1:{port} within 60 s{}",
                log_tail(log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
