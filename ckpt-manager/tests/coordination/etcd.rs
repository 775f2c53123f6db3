//! `EtcdCoordinator` against a real etcd server, in real child processes.
//!
//! Timing: every wait that must pass has [`PASS`] (120 s); the waits that must fail are
//! checked by the error's kind and text, never by how tight their timing was.

use crate::conformance::{self, PASS};
use crate::support::{
    all_succeed, env, etcd_endpoint, fresh_job, say, spawn_children, wait_all, ChildSpec, OwnEtcd,
};
use ckpt_manager::coordination::{Coordinator, EtcdCoordinator, EtcdOptions, Report};
use ckpt_manager::{Error, ErrorKind};
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

/// How long a whole multi-process test may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(300);

/// The child role: does nothing unless `CKPT_COORD_CHILD` is set (this binary started by a
/// test below); then runs that role and exits the process (0: the role's checks passed).
#[test]
fn child_process_entry() {
    let Some((role, c)) = crate::support::join_as_child(PASS) else {
        return;
    };
    say("JOINED");
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match role.as_str() {
        "conformance" => conformance::run_all(&c, "conf"),
        "timeout" => role_timeout(&c),
        "sigkill" => role_sigkill(&c),
        "etcd_down" => role_etcd_down(&c),
        "etcd_back" => role_etcd_back(&c),
        "bench" => role_bench(&c),
        other => panic!("unknown child role {other}"),
    }))
    .is_ok();
    if role == "etcd_down" {
        // etcd is gone: do not wait for the revoke on the way out.
        std::mem::forget(c);
    } else {
        drop(c);
    }
    crate::support::end_child(ok)
}

/// 0 and 1 wait at barrier "late" for 2 and 3, which never come there (they wait, alive, at
/// "after"): a Timeout naming the barrier and processes 2 and 3. Then all meet at "after".
fn role_timeout(c: &EtcdCoordinator) {
    if c.process_index() < 2 {
        let e = c.barrier("late", Duration::from_secs(3)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        let text = e.to_string();
        assert!(text.contains("barrier \"late\""), "{text}");
        assert!(
            text.contains("processes [2, 3] of 4 did not arrive"),
            "{text}"
        );
        say(&format!("TIMEOUT {text}"));
    }
    c.barrier("after", PASS).unwrap();
}

/// Everyone meets at "ready"; then process 3 SIGKILLs itself, and the others' barrier
/// "after-kill" (timeout 120 s) fails through 3's ended lease, naming it.
fn role_sigkill(c: &EtcdCoordinator) {
    c.barrier("ready", PASS).unwrap();
    if c.process_index() == 3 {
        say("KILLING-MYSELF");
        // SAFETY: kill(2) with this process's own pid and a valid signal number.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::thread::sleep(Duration::from_secs(3600));
    }
    let t = Instant::now();
    let e = c.barrier("after-kill", PASS).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Coordination, "{e}");
    let text = e.to_string();
    assert!(text.contains("barrier \"after-kill\""), "{text}");
    assert!(text.contains("process 3 of 4 is gone"), "{text}");
    say(&format!("NOTICED {:.1} {text}", t.elapsed().as_secs_f64()));
}

/// Everyone meets at "first"; then 0-2 wait at barrier "second" and 3 waits for a value that is
/// never published, while the parent kills etcd: every process gets Coordination or Timeout
/// naming its phase, and ends (no hang).
fn role_etcd_down(c: &EtcdCoordinator) {
    c.barrier("first", PASS).unwrap();
    say("WAITING");
    let (result, phase) = if c.process_index() == 3 {
        (
            c.await_published("never-published", ETCD_DOWN_TIMEOUT)
                .map(drop),
            "await_published \"never-published\"",
        )
    } else {
        (c.barrier("second", ETCD_DOWN_TIMEOUT), "barrier \"second\"")
    };
    let e = result.unwrap_err();
    // etcd stopped answering: tried again until the phase's timeout, then Timeout naming it.
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    let text = e.to_string();
    assert!(text.contains(phase), "{text}");
    assert!(text.contains("stopped answering"), "{text}");
    say(&format!("ETCD-DOWN {text}"));
}

/// Meets at "first", says WAITING; then processes 0-2 wait at barrier "second" (and agree
/// after it) while the parent stops etcd and starts it again; process 3 arrives only after the
/// restart (when the file CKPT_ETCD_BACK exists). Every wait passes: an etcd back within the
/// timeout is ridden out.
fn role_etcd_back(c: &EtcdCoordinator) {
    c.barrier("first", PASS).unwrap();
    say("WAITING");
    if c.process_index() == 3 {
        let back = env("CKPT_ETCD_BACK");
        let started = Instant::now();
        while !std::path::Path::new(&back).exists() {
            assert!(started.elapsed() < PASS, "etcd never came back");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    c.barrier("second", PASS).unwrap();
    let a = c.agree("after", Report::Ok, PASS).unwrap();
    a.check().unwrap();
    say("RODE-OUT");
}

/// The timeout of the waits etcd stops answering in: they end with `Timeout` after it.
const ETCD_DOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// ROUNDS rounds of one barrier and one agreement (as a save's "written" and "committed"
/// phases would be); process 0 prints the times.
fn role_bench(c: &EtcdCoordinator) {
    const ROUNDS: usize = 100;
    c.barrier("bench-start", PASS).unwrap();
    let mut ms = Vec::with_capacity(ROUNDS);
    for r in 0..ROUNDS {
        let t = Instant::now();
        c.barrier(&format!("bench-{r}-barrier"), PASS).unwrap();
        c.agree(&format!("bench-{r}-agree"), Report::Ok, PASS)
            .unwrap()
            .check()
            .unwrap();
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    if c.process_index() == 0 {
        ms.sort_by(f64::total_cmp);
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        say(&format!(
            "BENCH rounds={ROUNDS} mean_ms={mean:.2} median_ms={:.2} p90_ms={:.2} max_ms={:.2}",
            ms[ms.len() / 2],
            ms[ms.len() * 9 / 10],
            ms[ms.len() - 1]
        ));
    }
}

fn spec(role: &'static str, endpoint: &str, count: usize) -> ChildSpec {
    ChildSpec::new("etcd::child_process_entry", role, endpoint, count, &[])
}

#[test]
fn four_processes_pass_the_conformance_functions() {
    let Some(endpoint) = etcd_endpoint("four_processes_pass_the_conformance_functions") else {
        return;
    };
    let children = spawn_children(&spec("conformance", &endpoint, 4));
    all_succeed(&wait_all(children, HANG));
}

#[test]
fn one_process_on_etcd_passes_the_conformance_functions() {
    let Some(endpoint) = etcd_endpoint("one_process_on_etcd_passes_the_conformance_functions")
    else {
        return;
    };
    let c =
        EtcdCoordinator::connect(EtcdOptions::new([endpoint], 0, 1).job(fresh_job("one"))).unwrap();
    conformance::run_all(&c, "one");
    c.close().unwrap();
}

#[test]
fn a_barrier_times_out_naming_the_missing_processes() {
    let Some(endpoint) = etcd_endpoint("a_barrier_times_out_naming_the_missing_processes") else {
        return;
    };
    let done = wait_all(spawn_children(&spec("timeout", &endpoint, 4)), HANG);
    all_succeed(&done);
    for f in &done[..2] {
        let line = f.line("TIMEOUT").unwrap();
        eprintln!("process {}: {line}", f.index);
    }
}

#[test]
fn a_sigkilled_process_is_noticed_through_its_lease() {
    let Some(endpoint) = etcd_endpoint("a_sigkilled_process_is_noticed_through_its_lease") else {
        return;
    };
    let mut s = spec("sigkill", &endpoint, 4);
    s.lease_ttl_secs = 5;
    let done = wait_all(spawn_children(&s), HANG);
    for f in &done {
        if f.index == 3 {
            assert_eq!(f.status.signal(), Some(libc::SIGKILL), "{:?}", f.lines);
        } else {
            f.assert_success();
            let line = f.line("NOTICED").unwrap();
            eprintln!("process {}: {line}", f.index);
        }
    }
}

#[test]
fn etcd_stopped_mid_barrier_times_out_every_process_naming_its_phase() {
    let test = "etcd_stopped_mid_barrier_times_out_every_process_naming_its_phase";
    if etcd_endpoint(test).is_none() {
        return;
    }
    let Some(mut server) = OwnEtcd::start(test) else {
        return;
    };
    let mut s = spec("etcd_down", &server.endpoint, 4);
    s.request_timeout_secs = 5.0;
    let mut children = spawn_children(&s);
    for c in &mut children {
        c.expect_line("WAITING", PASS);
    }
    // Let them enter their waits, then take etcd away.
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let done = wait_all(children, HANG);
    all_succeed(&done);
    for f in &done {
        eprintln!("process {}: {}", f.index, f.line("ETCD-DOWN").unwrap());
    }
}

#[test]
fn etcd_restarted_within_the_timeout_is_ridden_out_by_every_wait() {
    let test = "etcd_restarted_within_the_timeout_is_ridden_out_by_every_wait";
    if etcd_endpoint(test).is_none() {
        return;
    }
    let Some(mut server) = OwnEtcd::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("back");
    let mut s = spec("etcd_back", &server.endpoint, 4);
    s.env
        .push(("CKPT_ETCD_BACK".into(), back.to_str().unwrap().to_string()));
    let mut children = spawn_children(&s);
    for c in &mut children {
        c.expect_line("WAITING", PASS);
    }
    // Let 0-2 enter their wait, take etcd away for a moment, bring it back, then let 3 come.
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    std::thread::sleep(Duration::from_secs(1));
    server.restart();
    std::fs::write(&back, b"back").unwrap();
    let done = wait_all(children, HANG);
    all_succeed(&done);
    for f in &done {
        assert!(f.line("RODE-OUT").is_some(), "{}", f.describe());
    }
}

#[test]
fn a_process_index_held_by_a_live_process_is_refused() {
    let Some(endpoint) = etcd_endpoint("a_process_index_held_by_a_live_process_is_refused") else {
        return;
    };
    let job = fresh_job("dup");
    // Process 1 first, waiting for a primary that joins a second later (the join's watch must
    // see the primary's registration arrive).
    let (e1, j1) = (endpoint.clone(), job.clone());
    let second =
        std::thread::spawn(move || EtcdCoordinator::connect(EtcdOptions::new([e1], 1, 2).job(j1)));
    std::thread::sleep(Duration::from_secs(1));
    let first =
        EtcdCoordinator::connect(EtcdOptions::new([endpoint.clone()], 0, 2).job(job.clone()))
            .unwrap();
    let second = second.join().unwrap().unwrap();
    let mut dup = EtcdOptions::new([endpoint], 1, 2).job(job);
    dup.join_timeout_secs = 2.0;
    let e = EtcdCoordinator::connect(dup).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    assert!(e.to_string().contains("process index 1"), "{e}");
    // The two real ones still work together.
    let t = std::thread::spawn(move || first.barrier("still-fine", PASS));
    second.barrier("still-fine", PASS).unwrap();
    t.join().unwrap().unwrap();
}

#[test]
fn a_closed_process_is_noticed_at_once_and_a_rerun_starts_clean() {
    let Some(endpoint) =
        etcd_endpoint("a_closed_process_is_noticed_at_once_and_a_rerun_starts_clean")
    else {
        return;
    };
    let job = fresh_job("rerun");
    let connect = |i: usize| {
        let mut o = EtcdOptions::new([endpoint.clone()], i, 2).job(job.clone());
        o.lease_ttl_secs = 60; // closing must be noticed without waiting for the TTL
        o
    };
    let o1 = connect(1);
    let other = std::thread::spawn(move || EtcdCoordinator::connect(o1));
    let primary = EtcdCoordinator::connect(connect(0)).unwrap();
    let other = other.join().unwrap().unwrap();
    let failing = Report::failed(&Error::storage("run 1 failed"));
    let t = std::thread::spawn(move || {
        let a = other.agree("phase", Report::Ok, PASS);
        other.close().unwrap();
        a
    });
    let a = primary.agree("phase", failing.clone(), PASS).unwrap();
    assert_eq!(t.join().unwrap().unwrap(), a);
    assert_eq!(a.failed_processes(), vec![0]);
    // The name was used in this run with another report.
    let e = primary.agree("phase", Report::Ok, PASS).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    // Process 1 closed: a barrier waiting for it fails at once, long before the TTL.
    let started = Instant::now();
    let e = primary.barrier("after-close", PASS).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Coordination, "{e}");
    assert!(e.to_string().contains("process 1 of 2 is gone"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "{:?}",
        started.elapsed()
    );
    primary.close().unwrap();
    // A second run of the same job: the first run's keys do not leak into it.
    let o1 = connect(1);
    let other = std::thread::spawn(move || EtcdCoordinator::connect(o1));
    let primary = EtcdCoordinator::connect(connect(0)).unwrap();
    let other = other.join().unwrap().unwrap();
    let t = std::thread::spawn(move || other.agree("phase", Report::Ok, PASS));
    let a = primary.agree("phase", Report::Ok, PASS).unwrap();
    assert!(a.is_ok(), "{a:?}");
    assert!(t.join().unwrap().unwrap().is_ok());
}

#[test]
fn etcd_unreachable_is_a_coordination_error() {
    // A port nothing listens on (no server needed): connect fails, temporary, naming the step.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut o = EtcdOptions::new([format!("http://127.0.0.1:{port}")], 0, 1).job(fresh_job("down"));
    o.request_timeout_secs = 5.0;
    o.join_timeout_secs = 5.0;
    let e = EtcdCoordinator::connect(o).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Coordination | ErrorKind::Timeout),
        "{e}"
    );
    assert!(e.is_temporary(), "{e}");
}

#[test]
fn barrier_and_agreement_cost_among_four_processes() {
    let Some(endpoint) = etcd_endpoint("barrier_and_agreement_cost_among_four_processes") else {
        return;
    };
    let done = wait_all(spawn_children(&spec("bench", &endpoint, 4)), HANG);
    all_succeed(&done);
    // Reported, not asserted: the figure depends on the machine (etcd fsyncs every write).
    eprintln!(
        "one barrier + one agreement, 4 processes: {}",
        done[0].line("BENCH").unwrap()
    );
}
