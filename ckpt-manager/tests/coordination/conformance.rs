//! The conformance functions of a `Coordinator` (issue 15), in the style of
//! `ckpt_storage::testkit`: each takes the coordinator of one process and a tag that makes its
//! names unique in the run, and panics with a message when the coordinator breaks the trait's
//! contract. In a multi-process job every process calls the same functions in the same order
//! with the same tag.
#![allow(dead_code)]

use ckpt_manager::coordination::{
    validate_name, Coordinator, Report, MAX_NAME_LEN, MAX_PUBLISHED_LEN,
};
use ckpt_manager::{Error, ErrorKind};
use std::time::Duration;

/// A timeout for waits that must pass: far longer than any of them takes on a loaded machine.
pub const PASS: Duration = Duration::from_secs(120);

/// Every conformance function, in order; the agreement failure comes from the last participant.
pub fn run_all(c: &dyn Coordinator, tag: &str) {
    identity(c);
    bad_names(c, tag);
    barriers_pass(c, tag);
    agreement_all_ok(c, tag);
    let last = c.participants().last().copied().unwrap_or(0);
    agreement_one_fails(c, tag, last);
    gather_all(c, tag);
    publish_and_await(c, tag);
    await_unpublished_times_out(c, tag, Duration::from_secs(1));
    barriers_pass(c, &format!("{tag}-end"));
}

/// Index, count, primary and participants are consistent.
pub fn identity(c: &dyn Coordinator) {
    let (i, n, p) = (c.process_index(), c.process_count(), c.primary_index());
    assert!(n >= 1, "process_count {n}");
    assert!(i < n, "process_index {i} of {n}");
    let parts = c.participants();
    assert!(!parts.is_empty(), "no participants");
    assert!(
        parts.windows(2).all(|w| w[0] < w[1]),
        "participants {parts:?} not ascending"
    );
    assert!(
        parts.iter().all(|&j| j < n),
        "participants {parts:?} of {n}"
    );
    assert!(parts.contains(&p), "primary {p} not among {parts:?}");
    assert_eq!(c.is_primary(), i == p);
}

/// A name the trait refuses is `InvalidArgument` in every call, before anything waits.
pub fn bad_names(c: &dyn Coordinator, tag: &str) {
    let long = "x".repeat(MAX_NAME_LEN + 1);
    for bad in ["", "a/b", "with space", "new\nline", long.as_str()] {
        assert!(validate_name(bad).is_err());
        let kind = |r: Result<(), Error>| r.map_err(|e| e.kind()).err();
        let inv = Some(ErrorKind::InvalidArgument);
        assert_eq!(kind(c.barrier(bad, PASS)), inv, "barrier {bad:?}");
        assert_eq!(
            kind(c.agree(bad, Report::Ok, PASS).map(drop)),
            inv,
            "agree {bad:?}"
        );
        assert_eq!(
            kind(c.await_published(bad, PASS).map(drop)),
            inv,
            "await {bad:?}"
        );
        if c.is_primary() {
            assert_eq!(kind(c.publish(bad, b"v")), inv, "publish {bad:?}");
        }
    }
    if c.is_primary() {
        let big = vec![0u8; MAX_PUBLISHED_LEN + 1];
        let e = c.publish(&format!("{tag}-big"), &big).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
}

/// Barriers with distinct names (one per step, as a save would use them) pass when every
/// participant arrives.
pub fn barriers_pass(c: &dyn Coordinator, tag: &str) {
    for step in 0..5 {
        let name = format!("{tag}-step-{step}");
        // Any timeout is accepted, the longest included.
        let timeout = if step == 4 { Duration::MAX } else { PASS };
        if let Err(e) = c.barrier(&name, timeout) {
            panic!("process {}: barrier {name}: {e}", c.process_index());
        }
    }
}

/// An agreement in which everyone reports Ok: every participant's result comes back, Ok.
pub fn agreement_all_ok(c: &dyn Coordinator, tag: &str) {
    let name = format!("{tag}-agree-ok");
    let a = match c.agree(&name, Report::Ok, PASS) {
        Ok(a) => a,
        Err(e) => panic!("process {}: agree {name}: {e}", c.process_index()),
    };
    assert_eq!(a.name(), name);
    let indices: Vec<usize> = a.results().iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, c.participants());
    assert!(a.is_ok(), "{a:?}");
    a.check().unwrap();
}

/// An agreement in which process `failing` reports a Storage error: every participant sees that
/// process's failure, and `check` is that kind, naming the phase and the process.
pub fn agreement_one_fails(c: &dyn Coordinator, tag: &str, failing: usize) {
    let name = format!("{tag}-agree-fail");
    let n = c.process_count();
    let mine = if c.process_index() == failing {
        Report::failed(&Error::storage(format!("disk full on process {failing}")).with_step(7))
    } else {
        Report::Ok
    };
    let a = match c.agree(&name, mine, PASS) {
        Ok(a) => a,
        Err(e) => panic!("process {}: agree {name}: {e}", c.process_index()),
    };
    assert_eq!(a.results().len(), c.participants().len());
    assert_eq!(a.failed_processes(), vec![failing], "{a:?}");
    assert_eq!(
        a.report_of(failing),
        Some(&Report::Failed {
            kind: ErrorKind::Storage,
            message: format!("Storage: disk full on process {failing} (step 7)"),
        })
    );
    let e = a.check().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
    let text = e.to_string();
    for part in [
        format!("agreement \"{name}\""),
        format!("process {failing} of {n} failed"),
        format!("disk full on process {failing}"),
    ] {
        assert!(text.contains(&part), "{text:?} lacks {part:?}");
    }
}

/// A gather returns every participant's bytes (of different lengths, one empty), ascending by
/// index, the same on every process; bytes larger than the limit are InvalidArgument.
pub fn gather_all(c: &dyn Coordinator, tag: &str) {
    let name = format!("{tag}-gather");
    let mine = |i: usize| vec![i as u8; i * 100];
    let all = match c.gather(&name, &mine(c.process_index()), PASS) {
        Ok(a) => a,
        Err(e) => panic!("process {}: gather {name}: {e}", c.process_index()),
    };
    let expected: Vec<(usize, Vec<u8>)> =
        c.participants().into_iter().map(|i| (i, mine(i))).collect();
    assert_eq!(all, expected);
    let big = vec![0u8; MAX_PUBLISHED_LEN + 1];
    let e = c
        .gather(&format!("{tag}-gather-big"), &big, PASS)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
}

/// The primary publishes a value every process reads (waiting for it where needed);
/// publishing it again with the same value is fine, with another value AlreadyExists; a
/// non-primary may not publish.
pub fn publish_and_await(c: &dyn Coordinator, tag: &str) {
    let name = format!("{tag}-preempt-step");
    if c.is_primary() {
        c.publish(&name, b"step 4711").unwrap();
        c.publish(&name, b"step 4711").unwrap();
        let e = c.publish(&name, b"step 1").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    } else {
        let e = c.publish(&name, b"step 1").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{e}");
    }
    match c.await_published(&name, PASS) {
        Ok(v) => assert_eq!(v, b"step 4711"),
        Err(e) => panic!("process {}: await {name}: {e}", c.process_index()),
    }
    // An empty value is a value.
    let empty = format!("{tag}-empty");
    if c.is_primary() {
        c.publish(&empty, b"").unwrap();
    }
    assert_eq!(c.await_published(&empty, PASS).unwrap(), b"");
}

/// Waiting for a value nobody publishes is a Timeout naming it (the kind is asserted, not how
/// long it took).
pub fn await_unpublished_times_out(c: &dyn Coordinator, tag: &str, timeout: Duration) {
    let name = format!("{tag}-never-published");
    let e = c.await_published(&name, timeout).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.to_string().contains(&name), "{e}");
}
