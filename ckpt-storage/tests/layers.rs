//! The test layers (FaultStore, CountingStore, LatencyStore and Gate) on real stores.

use ckpt_core::{ErrorKind, COMMIT_SUCCESS_FILE};
use ckpt_storage::testkit;
use ckpt_storage::{
    AtomicRenameProtocol, ChecksumManifest, CommitFileProtocol, CommitProtocol, CountingStore,
    FaultRule, FaultStore, Gate, LatencyStore, LocalStore, LoggedOp, OpCounts, OpKind,
    OpendalStore, RecordingStore, Store, VerifyingStore,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn memory() -> Arc<dyn Store> {
    Arc::new(OpendalStore::memory().expect("memory store"))
}

/// A local store in a fresh temporary directory (kept alive by the returned guard).
fn local() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = LocalStore::open(dir.path().join("root")).expect("local store");
    (dir, Arc::new(store))
}

/// Runs `check` on a fresh memory store and a fresh local store.
fn on_both(check: impl Fn(Arc<dyn Store>)) {
    check(memory());
    let (_dir, fs) = local();
    check(fs);
}

// ---------------------------------------------------------------------------------------------
// Every layer that injects nothing passes the conformance suite.

#[test]
fn fault_store_disarmed_passes_conformance() {
    on_both(|inner| {
        let s = FaultStore::new(inner);
        testkit::run_all(&s);
        assert!(s.ops_seen() > 100, "{}", s.ops_seen());
        assert_eq!(s.faults_injected(), 0);
    });
}

#[test]
fn fault_store_with_spent_and_disarmed_rules_passes_conformance() {
    on_both(|inner| {
        let s = FaultStore::new(inner)
            .with_rule(FaultRule::nth(1))
            .with_rule(FaultRule::op(OpKind::Rename));
        assert!(s.read("nothing").is_err());
        s.disarm();
        assert!(!s.is_armed());
        testkit::run_all(&s);
        assert_eq!(s.faults_injected(), 1);
    });
}

#[test]
fn counting_store_passes_conformance() {
    on_both(|inner| {
        let s = CountingStore::new(inner);
        testkit::run_all(&s);
        let c = s.counts();
        assert!(c.total() > 100 && c.write > 10 && c.read > 10, "{c:?}");
        assert!(c.bytes_written >= 20 << 20, "{c:?}");
        assert!(c.bytes_read >= 20 << 20, "{c:?}");
    });
}

#[test]
fn latency_store_with_zero_delay_passes_conformance() {
    on_both(|inner| {
        let gate = Gate::new();
        let s = LatencyStore::new(inner, Duration::ZERO).with_gate(gate.clone());
        testkit::run_all(&s);
        assert!(gate.passed() > 10, "{}", gate.passed());
    });
}

#[test]
fn recording_store_passes_conformance() {
    on_both(|inner| {
        let s = RecordingStore::new(inner, "", "");
        testkit::run_all(&s);
        assert!(!s.manifest().is_empty());
    });
}

#[test]
fn verifying_store_with_empty_manifest_passes_conformance() {
    on_both(|inner| {
        let s = VerifyingStore::new(inner, "", ChecksumManifest::new());
        testkit::run_all(&s);
    });
}

#[test]
fn stacked_layers_pass_conformance() {
    on_both(|inner| {
        let counting = Arc::new(CountingStore::new(inner));
        let fault = Arc::new(FaultStore::new(counting.clone()));
        let s = LatencyStore::new(fault.clone(), Duration::ZERO);
        testkit::run_all(&s);
        assert_eq!(fault.ops_seen(), counting.counts().total());
    });
}

// ---------------------------------------------------------------------------------------------
// FaultStore

/// A fixed sequence of operations; each returns whether it succeeded and the error if not.
fn script(s: &dyn Store) -> Vec<(OpKind, &'static str, ckpt_core::Result<()>)> {
    vec![
        (OpKind::Write, "d/a.bin", s.write("d/a.bin", b"0123456789")),
        (
            OpKind::WriteIfAbsent,
            "d/b.txt",
            s.write_if_absent("d/b.txt", b"b"),
        ),
        (OpKind::Read, "d/a.bin", s.read("d/a.bin").map(drop)),
        (
            OpKind::ReadRange,
            "d/a.bin",
            s.read_range("d/a.bin", 1..3).map(drop),
        ),
        (OpKind::Stat, "d/a.bin", s.stat("d/a.bin").map(drop)),
        (OpKind::ListDir, "d", s.list_dir("d").map(drop)),
        (OpKind::CreateDir, "e", s.create_dir("e")),
        (OpKind::SyncDir, "d", s.sync_dir("d")),
        (OpKind::Delete, "d/b.txt", s.delete("d/b.txt")),
        (OpKind::DeletePrefix, "e", s.delete_prefix("e")),
        (OpKind::Write, "d/c.bin", s.write("d/c.bin", b"c")),
    ]
}

#[test]
fn fails_exactly_the_kth_operation() {
    let n = script(&FaultStore::new(memory())).len() as u64;
    for k in 1..=n {
        on_both(|inner| {
            let s = FaultStore::new(inner.clone());
            s.fail_nth(k);
            let results = script(&s);
            assert_eq!(s.ops_seen(), n);
            assert_eq!(s.faults_injected(), 1, "k={k}");
            for (i, (op, path, r)) in results.iter().enumerate() {
                let i = i as u64 + 1;
                if i == k {
                    let e = r.as_ref().expect_err("the k-th op must fail");
                    assert_eq!(e.kind(), ErrorKind::Storage, "{e}");
                    let msg = e.to_string();
                    assert!(msg.contains("injected fault"), "{msg}");
                    assert!(msg.contains(op.name()), "{msg}");
                    assert!(msg.contains(path), "{msg}");
                    assert!(msg.contains(&format!("#{k}")), "{msg}");
                    assert_eq!(e.path(), Some(*path));
                } else {
                    // Everything after a failed write of d/a.bin may see it missing; the
                    // script is built so that no later op depends on an earlier one failing,
                    // except reads of d/a.bin when k == 1.
                    if k == 1 && *path == "d/a.bin" {
                        continue;
                    }
                    assert!(r.is_ok(), "k={k}, op #{i} {op} {path}: {:?}", r);
                }
            }
            // A failed write wrote nothing.
            if k == 1 {
                assert_eq!(inner.stat("d/a.bin").unwrap(), None);
            }
            if k == n {
                assert_eq!(inner.stat("d/c.bin").unwrap(), None);
            }
        });
    }
}

#[test]
fn fails_by_kind_and_by_path() {
    on_both(|inner| {
        let s = FaultStore::new(inner.clone());
        s.fail_op(OpKind::Stat);
        s.write("x/a.bin", b"a").unwrap();
        let e = s.stat("x/a.bin").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(
            e.to_string()
                .contains("injected fault: stat of \"x/a.bin\""),
            "{e}"
        );
        assert!(s.stat("x/other").is_err(), "every stat fails");
        s.read("x/a.bin").unwrap();
        s.disarm();
        assert!(s.stat("x/a.bin").unwrap().is_some());

        // Substring pattern: any op on a matching path.
        s.fail_path("tmp/");
        assert!(s.write("a/tmp/f", b"1").is_err());
        assert!(s.read("a/tmp/f").is_err());
        s.write("a/tmpx/f", b"1").unwrap();
        assert_eq!(inner.stat("a/tmp/f").unwrap(), None, "failed write wrote");
        s.disarm();

        // Glob pattern, narrowed to one kind, once.
        s.add_rule(FaultRule::path("*.bin").and_op(OpKind::Write).once());
        let e = s.write("g/x.bin", b"x").unwrap_err();
        assert!(
            e.message().contains("injected fault: write of \"g/x.bin\""),
            "{e}"
        );
        s.write("g/x.bin", b"x").unwrap();
        s.write("g/y.bin", b"y").unwrap();
        assert!(!s.is_armed(), "a once rule is spent after firing");

        // Glob anchors to the whole path.
        s.add_rule(FaultRule::path("g/*.txt"));
        assert!(s.write("g/a.txt", b"").is_err());
        s.write("h/g/a.txt", b"").unwrap();
        s.write("g/a.txt.bak", b"").unwrap();
    });
}

#[test]
fn rename_matches_either_path() {
    let (_dir, inner) = local();
    let s = FaultStore::new(inner.clone());
    s.write("a/f", b"f").unwrap();
    s.fail_path("final");
    let e = s.rename("a", "final").unwrap_err();
    assert!(
        e.to_string().contains("rename of \"a\" to \"final\""),
        "{e}"
    );
    assert!(
        inner.stat("a/f").unwrap().is_some(),
        "rename must not have happened"
    );
    s.disarm();
    s.fail_path("a");
    assert!(s.rename("a", "b").is_err());
    s.reset();
    assert_eq!((s.ops_seen(), s.faults_injected()), (0, 0));
    s.rename("a", "b").unwrap();
    assert_eq!(s.ops_seen(), 1);
}

#[test]
fn capabilities_and_location_are_not_operations() {
    let s = FaultStore::new(memory()).with_rule(FaultRule::always());
    let _ = s.capabilities();
    assert_eq!(s.location("a"), "memory:///a");
    assert_eq!(s.ops_seen(), 0);
    assert!(s.list_dir("").is_err());
    assert_eq!(s.ops_seen(), 1);
}

#[test]
fn torn_write_leaves_half_a_file() {
    on_both(|inner| {
        let s = FaultStore::new(inner.clone());
        s.add_rule(FaultRule::op(OpKind::Write).and_path("step/").torn().once());
        let e = s.write("step/t.bin", b"0123456789").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Storage);
        assert!(
            e.to_string().contains("torn write: 5 of 10 bytes written"),
            "{e}"
        );
        assert_eq!(inner.read("step/t.bin").unwrap(), b"01234");
        // Odd length rounds down; once is spent, so this one goes through.
        s.write("step/t.bin", b"abc").unwrap();
        assert_eq!(inner.read("step/t.bin").unwrap(), b"abc");
        // A torn rule on a non-write op fails it plainly.
        s.add_rule(FaultRule::op(OpKind::WriteIfAbsent).torn());
        assert!(s.write_if_absent("step/u.bin", b"0123").is_err());
        assert_eq!(inner.stat("step/u.bin").unwrap(), None);
    });
}

#[test]
fn fault_store_is_shared_across_threads() {
    let s = Arc::new(FaultStore::new(memory()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    s.write(&format!("t{t}/{i}"), b"x").unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.ops_seen(), 100);
}

// ---------------------------------------------------------------------------------------------
// CountingStore

#[test]
fn counts_calls_bytes_and_logs_changes() {
    on_both(|inner| {
        let s = CountingStore::new(inner);
        s.write("a/x", b"12345").unwrap();
        s.write_if_absent("a/y", b"12").unwrap();
        assert!(s.write_if_absent("a/y", b"999").is_err());
        assert_eq!(s.read("a/x").unwrap(), b"12345");
        assert_eq!(s.read_range("a/x", 1..4).unwrap(), b"234");
        assert!(s.read("a/missing").is_err());
        s.stat("a/x").unwrap();
        s.list_dir("a").unwrap();
        s.create_dir("b").unwrap();
        s.sync_dir("a").unwrap();
        s.delete("a/y").unwrap();
        let renamed = s.rename("a/x", "a/z");
        s.delete_prefix("a").unwrap();
        let c = s.counts();
        assert_eq!(
            c,
            OpCounts {
                write: 1,
                write_if_absent: 2,
                read: 2,
                read_range: 1,
                stat: 1,
                list_dir: 1,
                create_dir: 1,
                delete: 1,
                delete_prefix: 1,
                rename: 1,
                sync_dir: 1,
                sync_file: 0,
                bytes_written: 7,
                bytes_read: 8,
                temporary_failures: 0,
            }
        );
        assert_eq!(c.total(), 13);
        assert_eq!(c.writes(), 3);
        assert_eq!(c.get(OpKind::Read), 2);
        let log = s.log();
        let ops: Vec<(OpKind, &str, bool)> =
            log.iter().map(|l| (l.op, l.path.as_str(), l.ok)).collect();
        assert_eq!(
            ops,
            [
                (OpKind::Write, "a/x", true),
                (OpKind::WriteIfAbsent, "a/y", true),
                (OpKind::WriteIfAbsent, "a/y", false),
                (OpKind::CreateDir, "b", true),
                (OpKind::Delete, "a/y", true),
                (OpKind::Rename, "a/x", renamed.is_ok()),
                (OpKind::DeletePrefix, "a", true),
            ]
        );
        assert_eq!(log[5].to.as_deref(), Some("a/z"));
        assert_eq!(log[0].to, None);
        assert_eq!(s.written_paths(), ["a/x", "a/y"]);
        s.reset();
        assert_eq!(s.counts(), OpCounts::default());
        assert!(s.log().is_empty());
    });
}

/// A write without fsync counts as a write of its parts' size; its `sync_file` as one
/// `SyncFile`; a fault rule on `SyncFile` fails exactly that call, naming the file.
#[test]
fn unsynced_writes_and_file_syncs_are_counted_and_faulted() {
    on_both(|inner| {
        let s = CountingStore::new(inner);
        s.write_parts_unsynced("a/w", &[b"ab", b"cde"]).unwrap();
        s.sync_file("a/w").unwrap();
        let c = s.counts();
        assert_eq!((c.write, c.sync_file, c.bytes_written), (1, 1, 5));
        assert_eq!(c.get(OpKind::SyncFile), 1);
        assert_eq!(s.read("a/w").unwrap(), b"abcde");
        assert_eq!(s.written_paths(), ["a/w"]);

        let f = FaultStore::new(std::sync::Arc::new(s)).with_rule(FaultRule::op(OpKind::SyncFile));
        f.write_parts_unsynced("b/v", &[b"x"]).unwrap();
        let e = f.sync_file("b/v").unwrap_err();
        assert!(e.to_string().contains("sync_file"), "{e}");
        assert!(e.to_string().contains("b/v"), "{e}");
    });
}

#[test]
fn commit_file_writes_commit_success_last_and_never_renames() {
    on_both(|inner| {
        let s = CountingStore::new(inner);
        let proto = CommitFileProtocol;
        let working = proto.prepare(&s, "7").unwrap();
        s.write(&format!("{working}/state/t.bin"), b"t").unwrap();
        s.write(&format!("{working}/_CHECKPOINT_METADATA"), b"{}")
            .unwrap();
        proto.commit(&s, &working, "7").unwrap();
        assert_eq!(s.counts().rename, 0);
        let written = s.written_paths();
        assert_eq!(
            written.last().map(String::as_str),
            Some("7/commit_success.txt"),
            "{written:?}"
        );
    });
}

#[test]
fn atomic_rename_logs_commit_file_then_one_rename() {
    let (_dir, inner) = local();
    let s = CountingStore::new(inner);
    let proto = AtomicRenameProtocol;
    let working = proto.prepare(&s, "7").unwrap();
    s.write(&format!("{working}/data"), b"d").unwrap();
    s.reset();
    proto.commit(&s, &working, "7").unwrap();
    let log = s.log();
    let last_write = log
        .iter()
        .rposition(|l| l.op == OpKind::Write || l.op == OpKind::WriteIfAbsent)
        .unwrap();
    assert!(log[last_write]
        .path
        .ends_with(&format!("/{COMMIT_SUCCESS_FILE}")));
    let renames: Vec<&LoggedOp> = log.iter().filter(|l| l.op == OpKind::Rename).collect();
    assert_eq!(renames.len(), 1, "{log:?}");
    assert_eq!(renames[0].to.as_deref(), Some("7"));
    assert!(log
        .iter()
        .position(|l| l.op == OpKind::Rename)
        .is_some_and(|r| r > last_write));
}

// ---------------------------------------------------------------------------------------------
// LatencyStore and Gate

#[test]
fn delay_applies_to_matching_paths() {
    let s = LatencyStore::new(memory(), Duration::from_millis(40)).only_paths("slow/");
    assert_eq!(s.delay(), Duration::from_millis(40));
    let t = Instant::now();
    s.write("slow/a", b"a").unwrap();
    s.read("slow/a").unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(80),
        "{:?}",
        t.elapsed()
    );
    // A path outside the pattern gets no delay (not timed: only checked to work).
    s.write("fast/a", b"a").unwrap();
}

#[test]
fn gate_blocks_a_writer_until_opened() {
    on_both(|inner| {
        let gate = Gate::closed();
        assert!(!gate.is_open());
        let s = Arc::new(LatencyStore::new(inner.clone(), Duration::ZERO).with_gate(gate.clone()));
        let writer = {
            let s = s.clone();
            std::thread::spawn(move || s.write("held/t.bin", b"payload"))
        };
        assert!(
            gate.wait_for_waiting(1, Duration::from_secs(30)),
            "the writer never reached the gate"
        );
        // Held: nothing is written, and reads are not held.
        assert_eq!(s.stat("held/t.bin").unwrap(), None);
        assert!(s.read("held/t.bin").is_err());
        assert!(!writer.is_finished());
        assert_eq!(gate.waiting(), 1);
        gate.open();
        writer.join().unwrap().unwrap();
        assert_eq!(inner.read("held/t.bin").unwrap(), b"payload");
        assert_eq!((gate.waiting(), gate.passed()), (0, 1));
        // An open gate lets writes through at once.
        s.write_if_absent("held/u", b"u").unwrap();
        assert_eq!(gate.passed(), 2);
    });
}

#[test]
fn gate_with_pattern_holds_only_matching_writes() {
    let inner = memory();
    let gate = Gate::closed();
    let s = Arc::new(
        LatencyStore::new(inner, Duration::ZERO)
            .only_paths("20/*")
            .with_gate(gate.clone()),
    );
    s.write("10/x", b"x").unwrap();
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || s.write("20/x", b"x"))
    };
    assert!(gate.wait_for_waiting(1, Duration::from_secs(30)));
    assert!(!gate.wait_for_waiting(2, Duration::from_millis(10)));
    gate.open();
    writer.join().unwrap().unwrap();
    assert!(s.stat("20/x").unwrap().is_some());
}
