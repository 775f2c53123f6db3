//! A local S3-compatible server for the tests: moto (`moto[s3]` from PyPI, pinned) in the Python
//! virtual environment `target/s3-venv`, on 127.0.0.1 at a free port, with the test bucket
//! created. [`start`] sets it all up and returns a guard that stops the server when dropped;
//! [`S3Server::env`] is what the tests need in their environment.
//!
//! Timings on the project's machine kind (2 cores): creating the venv and installing the pins
//! ~10-25 s the first time (140 MB; reused afterwards while the pins are unchanged), server ready
//! ~1 s after it is spawned.
//!
//! The server is moto's Flask server, run by a small Python wrapper that also exits when its
//! parent process (this xtask) is gone, so a killed `cargo xtask` leaves no server behind. Its
//! log is `target/s3-server-<port>.log`. Nothing here sends traffic anywhere but 127.0.0.1.

use crate::run_status;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bucket the tests use (each test works below its own random prefix in it).
pub const BUCKET: &str = "ckpt-test";
/// The region given to the tests (moto accepts any).
pub const REGION: &str = "us-east-1";
/// Credentials given to the tests (moto accepts any).
const ACCESS_KEY: &str = "testing";
const SECRET_KEY: &str = "testing";

/// The pinned packages of the venv: moto's S3 backend and its server (Flask; `moto[server]`
/// would also pull in every other AWS service, 317 MB and 75 s instead of 140 MB and ~20 s).
const REQUIREMENTS: &[&str] = &["moto[s3]==5.2.5", "flask==3.1.3", "flask-cors==6.0.5"];

/// How long the server may take to answer after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs moto's server and exits as soon as the parent process is gone (the parent id changes);
/// makes its conditional creates atomic, as S3's are.
const WRAPPER: &str = r#"
import os, sys, threading, time
parent = os.getppid()
def watch():
    while True:
        if os.getppid() != parent:
            os._exit(0)
        time.sleep(0.5)
threading.Thread(target=watch, daemon=True).start()
# moto checks If-None-Match and then stores the object in two steps, so under its threaded server
# two conditional creates of one key can both succeed; S3 makes a conditional create atomic (the
# commit protocol's step claims rely on it). Do the same: conditional PUTs run one at a time.
import moto.s3.responses as _responses
_create_lock = threading.Lock()
_put_object = _responses.S3Response.put_object
def _atomic_put_object(self):
    if self.headers.get("If-None-Match"):
        with _create_lock:
            return _put_object(self)
    return _put_object(self)
_responses.S3Response.put_object = _atomic_put_object
from moto.server import main
sys.exit(main(sys.argv[1:]))
"#;

/// A running local S3 server; dropping it stops the server.
#[derive(Debug)]
pub struct S3Server {
    child: Child,
    endpoint: String,
    log: PathBuf,
}

impl S3Server {
    /// The server's endpoint URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The environment the tests need: `CKPT_TEST_S3_ENDPOINT`, `CKPT_TEST_S3_BUCKET`,
    /// `CKPT_TEST_S3_REGION` (read by ckpt-storage's S3 tests), and the standard
    /// `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION` so that
    /// `ckpt_storage::open("s3://ckpt-test/…")` in any test or child process reaches this server;
    /// `AWS_EC2_METADATA_DISABLED=true` so that the AWS credential chain of `s3://` URIs (issue
    /// 16) never asks the EC2 metadata address (not loopback) in a test that has no keys.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("CKPT_TEST_S3_ENDPOINT", self.endpoint.as_str()),
            ("CKPT_TEST_S3_BUCKET", BUCKET),
            ("CKPT_TEST_S3_REGION", REGION),
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY),
            ("AWS_REGION", REGION),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            // The Azure and GCS suites compile into `cargo test --workspace` now that the ckpt
            // tool turns every backend on; they run against their emulators with `cargo xtask
            // azurite-test` / `gcs-test` (which set their endpoints, so these do not skip them).
            ("CKPT_SKIP_AZBLOB", "1"),
            ("CKPT_SKIP_GCS", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Stops the server (as dropping it does).
    pub fn stop(self) {}
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The workspace root (the parent of this crate's directory).
pub(crate) fn workspace_root() -> PathBuf {
    let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
    xtask.parent().unwrap_or(xtask).to_path_buf()
}

/// The cargo target directory (`$CARGO_TARGET_DIR`, relative to the workspace, or `target`).
pub(crate) fn target_dir() -> PathBuf {
    let ws = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => ws.join(d),
        None => ws.join("target"),
    }
}

/// Sets up the venv, starts moto on a free loopback port, waits until it answers, creates the
/// bucket [`BUCKET`].
///
/// # Errors
/// A message saying which step failed and why (no `python3`/venv module, PyPI unreachable, the
/// server exited or did not answer within 60 s, the bucket could not be created), with the tail
/// of the server's log where there is one.
pub fn start() -> Result<S3Server, String> {
    let venv = target_dir().join("s3-venv");
    let t = Instant::now();
    let python = ensure_venv(&venv, REQUIREMENTS, "moto")?;
    eprintln!(
        "xtask s3: venv {} ready in {:.1} s",
        venv.display(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    // A port that was free a moment ago may be taken by the time moto binds it: try a few.
    let mut last_err = String::new();
    for _ in 0..3 {
        let port = free_port()?;
        match spawn_moto(&python, port) {
            Ok(server) => {
                create_bucket(port).map_err(|e| format!("{e}{}", log_tail(&server.log)))?;
                eprintln!(
                    "xtask s3: moto answering at {} (bucket {BUCKET}) after {:.1} s",
                    server.endpoint,
                    t.elapsed().as_secs_f64()
                );
                return Ok(server);
            }
            Err(e) => last_err = e,
        }
    }
    Err(format!(
        "cannot start the local S3 server (moto): {last_err}"
    ))
}

/// Makes `venv` hold `requirements` (reused when its stamp file lists exactly them and
/// `import <module>` works); returns its Python.
///
/// # Errors
/// When the venv cannot be created or pip fails (a message saying what to check).
pub(crate) fn ensure_venv(
    venv: &Path,
    requirements: &[&str],
    module: &str,
) -> Result<PathBuf, String> {
    let python = venv.join("bin").join("python");
    let stamp = venv.join("ckpt-requirements.txt");
    let wanted = requirements.join("\n");
    if python.exists()
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted)
        && Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    {
        return Ok(python);
    }
    let system = std::env::var("CKPT_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let v = venv.to_string_lossy();
    eprintln!("xtask: {system} -m venv --clear {v}");
    run_status(
        Command::new(&system).args(["-m", "venv", "--clear", v.as_ref()]),
        "creating the virtual environment",
    )
    .map_err(|e| {
        format!(
            "{e}\n  (needs a Python 3 interpreter `{system}` with the venv module and ensurepip, \
             e.g. Debian's python3-venv; set CKPT_PYTHON to use another interpreter)"
        )
    })?;
    let mut args = vec![
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--no-input",
        "--progress-bar",
        "off",
        "--quiet",
    ];
    args.extend_from_slice(requirements);
    eprintln!("xtask: {} {}", python.display(), args.join(" "));
    run_status(Command::new(&python).args(&args), "pip install").map_err(|e| {
        format!(
            "{e}\n  (PyPI must be reachable to install {})",
            requirements.join(", ")
        )
    })?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))?;
    Ok(python)
}

/// A TCP port on 127.0.0.1 that is free right now.
pub(crate) fn free_port() -> Result<u16, String> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

fn spawn_moto(python: &Path, port: u16) -> Result<S3Server, String> {
    let log = target_dir().join(format!("s3-server-{port}.log"));
    let out =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let child = Command::new(python)
        .args(["-c", WRAPPER, "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", python.display()))?;
    let mut server = S3Server {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        log,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "moto exited with {status} before answering{}",
                log_tail(&server.log)
            ));
        }
        if let Ok((code, _)) = http(port, "GET", "/moto-api/") {
            if code < 500 {
                return Ok(server);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "moto did not answer on 127.0.0.1:{port} within {} s{}",
                READY_TIMEOUT.as_secs(),
                log_tail(&server.log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Creates [`BUCKET`] (an unsigned PUT, which moto accepts); an existing bucket is fine.
fn create_bucket(port: u16) -> Result<(), String> {
    match http(port, "PUT", &format!("/{BUCKET}")) {
        Ok((200, _)) => Ok(()),
        Ok((409, body)) if body.contains("BucketAlreadyOwnedByYou") => Ok(()),
        Ok((code, body)) => Err(format!(
            "creating bucket {BUCKET} on moto answered HTTP {code}: {}",
            body.chars().take(300).collect::<String>()
        )),
        Err(e) => Err(format!("creating bucket {BUCKET} on moto: {e}")),
    }
}

/// One HTTP/1.1 request without a body to 127.0.0.1:`port`; returns the status and the body.
pub(crate) fn http(port: u16, method: &str, path: &str) -> Result<(u16, String), String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&resp);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| {
            format!(
                "not an HTTP response: {:?}",
                text.chars().take(80).collect::<String>()
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    Ok((code, body))
}

/// The last lines of a log file, as a suffix for an error message.
pub(crate) fn log_tail(log: &Path) -> String {
    match std::fs::read_to_string(log) {
        Ok(t) if !t.trim().is_empty() => {
            let lines: Vec<&str> = t.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n    ");
            format!("\n  last lines of {}:\n    {tail}", log.display())
        }
        _ => String::new(),
    }
}

/// `cargo xtask s3-server`: starts the server, prints the environment to export, and serves
/// until interrupted (Ctrl-C stops this task and, with it, the server).
pub fn serve() -> std::process::ExitCode {
    let server = match start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xtask s3-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "# local S3 server (moto) at {}; log {}",
        server.endpoint(),
        server.log().display()
    );
    println!("# export these, then run e.g. `cargo test -p ckpt-storage --test s3_conformance`:");
    for (k, v) in server.env() {
        println!("export {k}={v}");
    }
    println!("# Ctrl-C stops the server");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Runs `cargo ARGS` with `env` added to the environment; false (with a message) on failure.
pub(crate) fn cargo_with_env(args: &[&str], env: &[(String, String)]) -> bool {
    eprintln!("xtask: cargo {}", args.join(" "));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    match Command::new(cargo)
        .args(args)
        .envs(env.iter().cloned())
        .status()
    {
        Ok(s) => s.success(),
        Err(e) => {
            eprintln!("xtask: cannot run cargo: {e}");
            false
        }
    }
}

/// `cargo xtask test [ARGS]`: starts the local S3 server, runs `cargo test --workspace` (or
/// `cargo test ARGS` when arguments are given) with the server's environment, stops it.
pub fn test_main(args: &[String]) -> std::process::ExitCode {
    let server = match start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xtask test: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut cargo_args = vec!["test"];
    if args.is_empty() {
        cargo_args.push("--workspace");
    } else {
        cargo_args.extend(args.iter().map(String::as_str));
    }
    let ok = cargo_with_env(&cargo_args, &server.env());
    server.stop();
    if ok {
        std::process::ExitCode::SUCCESS
    } else {
        eprintln!("xtask test: FAILED: `cargo {}`", cargo_args.join(" "));
        std::process::ExitCode::FAILURE
    }
}
