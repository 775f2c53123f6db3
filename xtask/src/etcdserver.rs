//! A local etcd server for the coordination tests (issue 15): Debian's `etcd-server` package
//! (etcd 3.4; installed with `apt-get` when `/usr/bin/etcd` is missing), on 127.0.0.1 at a free
//! port, with a fresh data directory under `target/`. [`start`] sets it up and returns a guard
//! that stops the server (and removes its data) when dropped; [`EtcdServer::env`] is what the
//! tests need in their environment (`CKPT_TEST_ETCD`).
//!
//! [`ensure_protoc`] installs Debian's `protobuf-compiler` when `protoc` is missing: building
//! ckpt-manager's `etcd` feature needs it (etcd-client generates its gRPC code at build time).
//!
//! Timings on the project's machine kind (2 cores): the package install ~10 s the first time,
//! the server healthy ~1 s after it is spawned.
//!
//! A small shell watchdog beside the server stops it when this xtask is gone, so a killed
//! `cargo xtask` leaves no server behind. The server's log is `target/etcd-server-<port>.log`.
//! Nothing here sends traffic anywhere but 127.0.0.1.

use crate::s3server::{free_port, http, log_tail, target_dir};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The etcd binary of Debian's `etcd-server` package.
const ETCD: &str = "/usr/bin/etcd";

/// How long the server may take to become healthy after it is spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running local etcd server; dropping it stops the server and removes its data directory.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    watchdog: Option<Child>,
    endpoint: String,
    log: PathBuf,
    data_dir: PathBuf,
}

impl EtcdServer {
    /// The server's client URL, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The environment the tests need: `CKPT_TEST_ETCD` (the endpoint, read by
    /// ckpt-manager/tests/coordination) and `CKPT_TEST_ETCD_BIN` (the binary, for the test
    /// that starts and stops a server of its own).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("CKPT_TEST_ETCD".to_string(), self.endpoint.clone()),
            ("CKPT_TEST_ETCD_BIN".to_string(), ETCD.to_string()),
        ]
    }

    /// The server's log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Stops the server (as dropping it does).
    pub fn stop(self) {}
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(w) = &mut self.watchdog {
            let _ = w.kill();
            let _ = w.wait();
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// Makes sure `binary` exists, installing Debian's `package` with apt-get if it does not
/// (`apt-get update` first when the first install attempt fails).
///
/// # Errors
/// A message saying what to install by hand when apt-get is missing or fails.
pub(crate) fn ensure_debian_package(binary: &str, package: &str) -> Result<(), String> {
    if Path::new(binary).exists() {
        return Ok(());
    }
    eprintln!("xtask: {binary} is missing: apt-get install -y {package}");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let ok = install()
        || (Command::new("apt-get")
            .args(["update", "-q"])
            .stdin(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            && install());
    if ok && Path::new(binary).exists() {
        Ok(())
    } else {
        Err(format!(
            "{binary} is missing and `apt-get install -y {package}` did not provide it (needs \
             root and Debian's package lists); install {package} by hand"
        ))
    }
}

/// Makes sure `protoc` exists (Debian's `protobuf-compiler`), which building ckpt-manager's
/// `etcd` feature needs. `PROTOC` set in the environment is taken as given.
///
/// # Errors
/// As [`ensure_debian_package`].
pub fn ensure_protoc() -> Result<(), String> {
    if std::env::var_os("PROTOC").is_some() {
        return Ok(());
    }
    ensure_debian_package("/usr/bin/protoc", "protobuf-compiler")
}

/// Installs etcd if needed, starts it on a free loopback port with a fresh data directory, and
/// waits until it reports itself healthy.
///
/// # Errors
/// A message saying which step failed and why (the package could not be installed, the server
/// exited or was not healthy within 60 s), with the tail of the server's log where there is one.
pub fn start() -> Result<EtcdServer, String> {
    ensure_debian_package(ETCD, "etcd-server")?;
    let t = Instant::now();
    // A port that was free a moment ago may be taken by the time etcd binds it: try a few.
    let mut last_err = String::new();
    for _ in 0..3 {
        let (client, peer) = (free_port()?, free_port()?);
        if client == peer {
            continue;
        }
        match spawn_etcd(client, peer) {
            Ok(server) => {
                eprintln!(
                    "xtask etcd: etcd healthy at {} after {:.1} s",
                    server.endpoint,
                    t.elapsed().as_secs_f64()
                );
                return Ok(server);
            }
            Err(e) => last_err = e,
        }
    }
    Err(format!("cannot start the local etcd server: {last_err}"))
}

fn spawn_etcd(client: u16, peer: u16) -> Result<EtcdServer, String> {
    let log = target_dir().join(format!("etcd-server-{client}.log"));
    let data_dir = target_dir().join(format!("etcd-data-{client}"));
    let _ = std::fs::remove_dir_all(&data_dir);
    let out =
        std::fs::File::create(&log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let err = out
        .try_clone()
        .map_err(|e| format!("cannot open {}: {e}", log.display()))?;
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let child = Command::new(ETCD)
        .arg("--name=ckpt-test")
        .arg(format!("--data-dir={}", data_dir.display()))
        .arg(format!("--listen-client-urls={client_url}"))
        .arg(format!("--advertise-client-urls={client_url}"))
        .arg(format!("--listen-peer-urls={peer_url}"))
        .arg(format!("--initial-advertise-peer-urls={peer_url}"))
        .arg(format!("--initial-cluster=ckpt-test={peer_url}"))
        .arg("--logger=zap")
        .arg("--log-level=warn")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {ETCD}: {e}"))?;
    // Stops etcd when this process is gone (Drop does it otherwise).
    let watchdog = Command::new("sh")
        .args([
            "-c",
            "while kill -0 \"$1\" 2>/dev/null && kill -0 \"$2\" 2>/dev/null; do sleep 1; done; \
             kill \"$2\" 2>/dev/null",
            "ckpt-etcd-watchdog",
            &std::process::id().to_string(),
            &child.id().to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok();
    let mut server = EtcdServer {
        child,
        watchdog,
        endpoint: client_url,
        log,
        data_dir,
    };
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            return Err(format!(
                "etcd exited with {status} before it was healthy{}",
                log_tail(&server.log)
            ));
        }
        if let Ok((200, body)) = http(client, "GET", "/health") {
            if body.contains("\"health\":\"true\"") {
                return Ok(server);
            }
        }
        if Instant::now() > deadline {
            return Err(format!(
                "etcd was not healthy on 127.0.0.1:{client} within {} s{}",
                READY_TIMEOUT.as_secs(),
                log_tail(&server.log)
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `cargo xtask etcd-server`: starts the server, prints the environment to export, and serves
/// until interrupted (Ctrl-C stops this task and, with it, the server).
pub fn serve() -> std::process::ExitCode {
    let server = match start() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("xtask etcd-server: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "# local etcd server at {}; log {}",
        server.endpoint(),
        server.log().display()
    );
    println!(
        "# export these, then run e.g. \
         `cargo test -p ckpt-manager --features etcd --test coordination`:"
    );
    for (k, v) in server.env() {
        println!("export {k}={v}");
    }
    println!("# Ctrl-C stops the server");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
