//! The etcd server of the tests (from `CKPT_TEST_ETCD`, or one of a test's own), and child
//! processes: this test binary started again with `CKPT_COORD_CHILD` naming a role.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

const HOW_TO_RUN: &str = "the etcd tests need a local etcd server: run them under `cargo xtask \
ci`, or start one with `cargo xtask etcd-server` and export the CKPT_TEST_ETCD it prints";

/// Whether this is a CI run (`CI=true`), where the etcd tests never skip.
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The endpoint of the shared test server; `None` (the test is skipped, with a message) when
/// `CKPT_TEST_ETCD` is unset outside CI. Under `CI=true` an unset variable fails the test.
pub fn etcd_endpoint(test: &str) -> Option<String> {
    match std::env::var("CKPT_TEST_ETCD") {
        Ok(url) if !url.trim().is_empty() => {
            assert_loopback(&url);
            Some(url)
        }
        _ if under_ci() => panic!("CKPT_TEST_ETCD is not set under CI=true: {HOW_TO_RUN}"),
        _ => {
            eprintln!("SKIPPED {test}: CKPT_TEST_ETCD is not set ({HOW_TO_RUN})");
            None
        }
    }
}

/// Tests talk to a server on this machine only.
fn assert_loopback(url: &str) {
    let host = url
        .split_once("://")
        .map_or(url, |(_, r)| r)
        .split(['/', '?'])
        .next()
        .unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
    assert!(
        host == "localhost" || host.starts_with("127.") || host == "[::1]",
        "CKPT_TEST_ETCD={url:?} is not a loopback address; the tests only talk to a local server"
    );
}

/// A job name no other test (in this or another run) uses.
pub fn fresh_job(name: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t-{name}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// An etcd server of one test's own (to stop it mid-test), from `CKPT_TEST_ETCD_BIN` or
/// `/usr/bin/etcd`; killed when dropped.
pub struct OwnEtcd {
    child: Option<Child>,
    pub endpoint: String,
    /// The binary and arguments it was started with (for [`OwnEtcd::restart`]).
    command: Option<(String, Vec<String>)>,
    client_port: u16,
    _data: tempfile::TempDir,
}

impl OwnEtcd {
    /// Starts one; `None` (skipped, with a message) when there is no etcd binary outside CI.
    pub fn start(test: &str) -> Option<OwnEtcd> {
        let bin = std::env::var("CKPT_TEST_ETCD_BIN").unwrap_or_else(|_| "/usr/bin/etcd".into());
        if !std::path::Path::new(&bin).exists() {
            if under_ci() {
                panic!("no etcd binary at {bin} under CI=true: {HOW_TO_RUN}");
            }
            eprintln!("SKIPPED {test}: no etcd binary at {bin} ({HOW_TO_RUN})");
            return None;
        }
        let data = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let (client, peer) = (free_port(), free_port());
            if client == peer {
                continue;
            }
            let (c, p) = (
                format!("http://127.0.0.1:{client}"),
                format!("http://127.0.0.1:{peer}"),
            );
            let args = vec![
                "--name=own".to_string(),
                format!("--data-dir={}", data.path().join("data").display()),
                format!("--listen-client-urls={c}"),
                format!("--advertise-client-urls={c}"),
                format!("--listen-peer-urls={p}"),
                format!("--initial-advertise-peer-urls={p}"),
                format!("--initial-cluster=own={p}"),
                "--logger=zap".to_string(),
                "--log-level=error".to_string(),
            ];
            let mut child = spawn_etcd(&bin, &args, data.path());
            let deadline = Instant::now() + Duration::from_secs(60);
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break; // e.g. the port was taken: try others
                }
                if healthy(client) {
                    return Some(OwnEtcd {
                        child: Some(child),
                        endpoint: c,
                        command: Some((bin, args)),
                        client_port: client,
                        _data: data,
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start an etcd server of this test's own");
    }

    /// Starts the killed server again on the same ports and data (its keys and leases kept),
    /// and waits (at most 60 s) until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the server is running");
        let (bin, args) = self.command.clone().unwrap();
        let mut child = spawn_etcd(&bin, &args, self._data.path());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !healthy(self.client_port) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the restarted etcd exited; log in {}",
                self._data.path().display()
            );
            assert!(
                Instant::now() < deadline,
                "the restarted etcd is not healthy"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.child = Some(child);
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for OwnEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `bin args`, its output appended to `dir/etcd.log`.
fn spawn_etcd(bin: &str, args: &[String], dir: &std::path::Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("etcd.log"))
        .unwrap();
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

fn healthy(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    resp.starts_with("HTTP/1.1 200") && resp.contains("\"health\":\"true\"")
}

/// The settings a child process reads.
#[derive(Clone, Debug)]
pub struct ChildSpec {
    /// The test of this binary the child runs (its entry point), e.g.
    /// `etcd::child_process_entry`.
    pub entry: &'static str,
    /// More environment for the child.
    pub env: Vec<(String, String)>,
    pub role: &'static str,
    pub endpoint: String,
    pub job: String,
    pub count: usize,
    pub lease_ttl_secs: u64,
    pub request_timeout_secs: f64,
}

impl ChildSpec {
    /// `count` children running this binary's test `entry` in `role`, on a fresh job (named
    /// after the role) at `endpoint`, with `env` added; leases of 10 s, requests of 10 s.
    pub fn new(
        entry: &'static str,
        role: &'static str,
        endpoint: &str,
        count: usize,
        env: &[(&str, String)],
    ) -> ChildSpec {
        ChildSpec {
            entry,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
            role,
            endpoint: endpoint.to_string(),
            job: fresh_job(role),
            count,
            lease_ttl_secs: 10,
            request_timeout_secs: 10.0,
        }
    }
}

/// One running child: its output lines arrive on `lines` (the `CKPT-CHILD ` lines of stdout,
/// prefix removed) as it prints them.
pub struct ChildProc {
    pub index: usize,
    pub child: Child,
    pub lines: Receiver<String>,
    stderr: std::thread::JoinHandle<String>,
    pub seen: Vec<String>,
}

/// Starts `spec.count` children, indices `0..count`.
pub fn spawn_children(spec: &ChildSpec) -> Vec<ChildProc> {
    (0..spec.count).map(|i| spawn_child(spec, i)).collect()
}

/// Starts child `index` of `spec`.
pub fn spawn_child(spec: &ChildSpec, index: usize) -> ChildProc {
    let exe: PathBuf = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            spec.entry,
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env("CKPT_COORD_CHILD", spec.role)
        .env("CKPT_COORD_ENDPOINT", &spec.endpoint)
        .env("CKPT_COORD_JOB", &spec.job)
        .env("CKPT_COORD_INDEX", index.to_string())
        .env("CKPT_COORD_COUNT", spec.count.to_string())
        .env("CKPT_COORD_TTL", spec.lease_ttl_secs.to_string())
        .env(
            "CKPT_COORD_REQUEST_TIMEOUT",
            spec.request_timeout_secs.to_string(),
        )
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("CKPT-CHILD ") {
                if tx.send(rest.to_string()).is_err() {
                    break;
                }
            }
        }
    });
    let mut err = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    ChildProc {
        index,
        child,
        lines: rx,
        stderr,
        seen: Vec::new(),
    }
}

impl ChildProc {
    /// Waits (at most `timeout`) for a line starting with `prefix`; the line.
    pub fn expect_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "child {} printed no {prefix:?} line within {timeout:?}; lines so far: {:?}",
                    self.index, self.seen
                ),
            }
        }
    }
}

/// What became of one child.
pub struct Finished {
    pub index: usize,
    pub status: ExitStatus,
    pub lines: Vec<String>,
    pub stderr: String,
}

impl Finished {
    /// The line starting with `prefix`, if the child printed one.
    pub fn line(&self, prefix: &str) -> Option<&str> {
        self.lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .map(String::as_str)
    }

    /// The child's status, lines and stderr, for a failure message.
    pub fn describe(&self) -> String {
        format!(
            "child {} ended with {}; lines {:?}; stderr:\n{}",
            self.index, self.status, self.lines, self.stderr
        )
    }

    /// Panics, showing the child's output, unless it exited 0.
    pub fn assert_success(&self) {
        assert!(
            self.status.success(),
            "child {} ended with {}; lines {:?}; stderr:\n{}",
            self.index,
            self.status,
            self.lines,
            self.stderr
        );
    }
}

/// Waits for every child to end, at most `timeout` in all; a child still running then is
/// killed and the test fails (a hang).
pub fn wait_all(children: Vec<ChildProc>, timeout: Duration) -> Vec<Finished> {
    let deadline = Instant::now() + timeout;
    let mut done = Vec::new();
    for mut c in children {
        let status = loop {
            if let Some(s) = c.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > deadline {
                let _ = c.child.kill();
                let _ = c.child.wait();
                panic!(
                    "child {} did not end within {timeout:?} (a hang); lines {:?}",
                    c.index, c.seen
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut lines = c.seen;
        // The reader thread ends with the child's stdout; collect what it still holds.
        while let Ok(l) = c.lines.recv_timeout(Duration::from_secs(10)) {
            lines.push(l);
        }
        let stderr = c.stderr.join().unwrap_or_default();
        done.push(Finished {
            index: c.index,
            status,
            lines,
            stderr,
        });
    }
    done
}

/// Prints one protocol line for the parent (`CKPT-CHILD …`).
pub fn say(line: &str) {
    println!("CKPT-CHILD {line}");
}

/// A variable the parent set for this child; a panic (the child fails) when it is unset.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("child: {name} is not set"))
}

/// In a child process (this test binary started again by [`spawn_child`] with
/// `CKPT_COORD_CHILD` naming its role): the role, and this process joined to the job on etcd as
/// the `CKPT_COORD_*` variables say (endpoint, index, count, job, lease TTL and request timeout
/// in seconds), waiting up to `join_timeout` for the others. A join that fails prints
/// `CONNECT-FAILED …` and exits with status 3. `None` in the test harness's own process.
pub fn join_as_child(
    join_timeout: Duration,
) -> Option<(String, ckpt_manager::coordination::EtcdCoordinator)> {
    use ckpt_manager::coordination::{EtcdCoordinator, EtcdOptions};
    let role = std::env::var("CKPT_COORD_CHILD").ok()?;
    let index: usize = env("CKPT_COORD_INDEX").parse().unwrap();
    let count: usize = env("CKPT_COORD_COUNT").parse().unwrap();
    let mut options =
        EtcdOptions::new([env("CKPT_COORD_ENDPOINT")], index, count).job(env("CKPT_COORD_JOB"));
    options.lease_ttl_secs = env("CKPT_COORD_TTL").parse().unwrap();
    options.request_timeout_secs = env("CKPT_COORD_REQUEST_TIMEOUT").parse().unwrap();
    options.join_timeout_secs = join_timeout.as_secs_f64();
    match EtcdCoordinator::connect(options) {
        Ok(c) => Some((role, c)),
        Err(e) => {
            say(&format!("CONNECT-FAILED {e}"));
            std::process::exit(3);
        }
    }
}

/// Ends a child process: `PASS` or `FAIL` for the parent, exit status 0 or 1.
pub fn end_child(ok: bool) -> ! {
    say(if ok { "PASS" } else { "FAIL" });
    std::process::exit(if ok { 0 } else { 1 });
}

/// Every child exited 0 after printing PASS; otherwise a panic showing every child's output.
pub fn all_succeed(done: &[Finished]) {
    let bad: Vec<String> = done
        .iter()
        .filter(|f| !f.status.success() || f.line("PASS").is_none())
        .map(|f| f.describe())
        .collect();
    if !bad.is_empty() {
        let all: Vec<String> = done.iter().map(Finished::describe).collect();
        panic!(
            "{} of {} children failed:\n{}",
            bad.len(),
            done.len(),
            all.join("\n")
        );
    }
}
