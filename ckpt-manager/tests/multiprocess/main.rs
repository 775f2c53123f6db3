//! Issue 15: one `CheckpointManager` per process of a multi-process job, coordinated through a
//! real etcd server (`EtcdCoordinator`), in real child processes (this test binary started
//! again in a child role, as tests/coordination does):
//!
//! - 4 processes save 100 steps (each its own part of every step, the primary also a JSON item
//!   and the metrics) and restore every step right after saving it, on local disk and on S3
//!   (moto); the root they leave holds the same steps and the same files, byte for byte (but
//!   for the times in `_CHECKPOINT_METADATA` and the writer tokens), as a single-process run
//!   saving the same data;
//! - a write that fails on one process (a fault layer) commits nothing, and every process's
//!   error names that process and the phase; the job goes on saving the next steps;
//! - a second job on a root a first job holds gets `Locked` on every one of its processes;
//! - with `single_host_load_and_broadcast`, only the primary reads the store during restores and
//!   the other processes restore the same items from the bytes it broadcasts.
//!
//! Needs `CKPT_TEST_ETCD` (`cargo xtask etcd-server`, or `cargo xtask ci`) and, for the S3
//! test, the moto server of `cargo xtask s3-server`. Timing: no wait is asserted to be short;
//! every wait that must pass has minutes.
//!
//! Run: `cargo test -p ckpt-manager --features etcd --test multiprocess`.

#[path = "../s3_common/mod.rs"]
mod s3_common;
#[path = "../coordination/support.rs"]
mod support;

use ckpt_manager::coordination::Coordinator;
use ckpt_manager::storage::{FaultRule, FaultStore, OpKind, Store};
use ckpt_manager::{CheckpointManager, Composite, ErrorKind, Metrics, SaveOptions};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    all_succeed, env, etcd_endpoint, say, spawn_children, wait_all, ChildSpec, Finished, OwnEtcd,
};

/// A timeout for waits that must pass.
const PASS: Duration = Duration::from_secs(300);
/// How long a whole multi-process test may take before it counts as a hang.
const HANG: Duration = Duration::from_secs(1200);
/// The processes of a job.
const PROCESSES: usize = 4;
/// The managers' `coordination_timeout_secs` in the 200-save SIGKILL test: the survivors of a
/// kill must fail within it (they notice the dead process by its lease, TTL 5 s, well before).
const KILL_COORDINATION_TIMEOUT: Duration = Duration::from_secs(60);

// ------------------------------------------------------------------------- the data

/// Process `i`'s part of `step`: 4 KiB that differ by step and process.
fn part(step: u64, i: usize) -> Vec<u8> {
    (0..4096u64)
        .map(|k| ((step * 31 + i as u64 * 7 + k * 13) % 251) as u8)
        .collect()
}

fn state(step: u64) -> Value {
    json!({"step": step, "lr": 0.001 * step as f64})
}

fn metrics(step: u64) -> Metrics {
    let mut m = Metrics::new();
    m.insert("loss".into(), json!(1.0 / (step as f64 + 1.0)));
    m
}

/// The items process `i` gives at `step`: its part, and on the primary (0) the state.
fn items_of(step: u64, i: usize) -> Composite<'static> {
    let c = Composite::new().bytes_owned(format!("part_{i}"), part(step, i));
    if i == 0 {
        c.json_value("state", state(step))
    } else {
        c
    }
}

/// Every process's items at `step`: what a single process saves.
fn all_items(step: u64) -> Composite<'static> {
    let mut c = Composite::new().json_value("state", state(step));
    for i in 0..PROCESSES {
        c = c.bytes_owned(format!("part_{i}"), part(step, i));
    }
    c
}

/// The manager of `root` (a path or `s3://` URI) over `store`.
fn builder(store: Arc<dyn Store>) -> ckpt_manager::CheckpointManagerBuilder {
    CheckpointManager::builder_with_store(store)
        .max_to_keep(5)
        .keep_period(20)
}

/// Checks that `restored` is every process's data of `step`.
fn check_restored(r: &ckpt_manager::Restored, step: u64) {
    assert_eq!(r.step(), step);
    assert_eq!(r.json_value("state").unwrap(), &state(step), "step {step}");
    for i in 0..PROCESSES {
        assert_eq!(
            r.bytes(&format!("part_{i}")).unwrap(),
            part(step, i).as_slice(),
            "step {step}, part {i}"
        );
    }
}

// ------------------------------------------------------------------------- the children

/// The child role: does nothing unless `CKPT_COORD_CHILD` is set (this binary started by a
/// test below); then joins the job on etcd, runs the role and exits (0: its checks passed).
#[test]
fn child_process_entry() {
    let Some((role, c)) = support::join_as_child(PASS) else {
        return;
    };
    let c: Arc<dyn Coordinator> = Arc::new(c);
    let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match role.as_str() {
        "save" => role_save(&c),
        "fail" => role_fail(&c),
        "hold" => role_hold(&c),
        "second" => role_second(&c),
        "preempt" => role_preempt(&c),
        "until_killed" => role_until_killed(&c),
        "resume" => role_resume(&c),
        "rounds" => role_rounds(&c),
        "shards_save" => role_shards_save(&c),
        "shards_restore" => role_shards_restore(&c),
        "broadcast" => role_broadcast(&c),
        other => panic!("unknown child role {other}"),
    }))
    .is_ok();
    drop(c);
    support::end_child(ok)
}

fn child_store() -> Arc<dyn Store> {
    ckpt_manager::storage::open(&env("CKPT_MP_ROOT")).unwrap()
}

/// Saves steps 1..=CKPT_MP_STEPS, each process its part, restoring each step on every process
/// right after; prints the steps listed at the end.
fn role_save(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let steps: u64 = env("CKPT_MP_STEPS").parse().unwrap();
    let mut m = builder(child_store())
        .coordinator(Arc::clone(c))
        .build()
        .unwrap();
    assert_eq!(m.process(), Some((i, 0)));
    for step in 1..=steps {
        assert!(m.should_save(step), "step {step}");
        let saved = m
            .save(
                step,
                items_of(step, i),
                SaveOptions::default().metrics(metrics(step)),
            )
            .unwrap_or_else(|e| panic!("process {i}, step {step}: {e:#}"));
        assert!(saved);
        assert_eq!(m.latest_step(), Some(step));
        check_restored(&m.restore(Some(step)).unwrap(), step);
    }
    // Every step still listed restores on every process.
    for step in m.all_steps() {
        check_restored(&m.restore(Some(step)).unwrap(), step);
    }
    say(&format!("STEPS {}", json!(m.all_steps())));
    m.close().unwrap();
}

/// Steps 1..=8; process 2's writes of its part of step 5 fail: every process's save(5) fails
/// naming process 2 and the phase, nothing of step 5 is committed, and steps 6-8 save.
fn role_fail(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let store = child_store();
    let store: Arc<dyn Store> = if i == 2 {
        Arc::new(
            FaultStore::new(store).with_rule(FaultRule::op(OpKind::Write).and_path("5*/part_2*")),
        )
    } else {
        store
    };
    let mut m = builder(store).coordinator(Arc::clone(c)).build().unwrap();
    for step in 1..=8u64 {
        let r = m.save(
            step,
            items_of(step, i),
            SaveOptions::default().metrics(metrics(step)),
        );
        if step == 5 {
            let e = r.unwrap_err();
            say(&format!("FAILED {} | {}", e.kind().name(), e.chain()));
            assert!(!m.all_steps().contains(&5));
        } else {
            assert!(r.unwrap(), "step {step}");
            check_restored(&m.restore(Some(step)).unwrap(), step);
        }
    }
    say(&format!("STEPS {}", json!(m.all_steps())));
    m.close().unwrap();
}

/// Opens the root (the job holds it), says so, waits for the file CKPT_MP_RELEASE, then saves
/// one step.
fn role_hold(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let mut m = builder(child_store())
        .coordinator(Arc::clone(c))
        .build()
        .unwrap();
    say("OPENED");
    let release = env("CKPT_MP_RELEASE");
    let started = Instant::now();
    while !std::path::Path::new(&release).exists() {
        assert!(started.elapsed() < PASS, "never released");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(m.save(1, items_of(1, i), SaveOptions::default()).unwrap());
    check_restored(&m.restore(None).unwrap(), 1);
    m.close().unwrap();
}

/// A second job on the held root: opening fails with Locked on every process.
fn role_second(c: &Arc<dyn Coordinator>) {
    let e = builder(child_store())
        .coordinator(Arc::clone(c))
        .build()
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Locked, "{e:#}");
    say(&format!("LOCKED {}", e.chain()));
}

/// Trains with a save every 10 steps and SIGTERM as the preemption source; says READY at step
/// 25, then goes on (a few ms per step) until a preemption is agreed: saves that step (whatever
/// the interval says), says which, and stops.
fn role_preempt(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let sigterm = Arc::new(ckpt_manager::SigtermPreemption::install().unwrap());
    let mut m = builder(child_store())
        .save_interval_steps(10)
        .preemption(sigterm.clone())
        .coordinator(Arc::clone(c))
        .build()
        .unwrap();
    for step in 1..=1_000_000u64 {
        if step == 25 {
            say("READY");
        }
        let preempted = m.reached_preemption(step);
        if m.should_save(step) {
            let saved = m
                .save(
                    step,
                    items_of(step, i),
                    SaveOptions::default().metrics(metrics(step)),
                )
                .unwrap();
            assert!(saved, "step {step}");
        }
        if preempted {
            assert_eq!(m.latest_step(), Some(step));
            check_restored(&m.restore(None).unwrap(), step);
            say(&format!(
                "PREEMPTED {step} signalled_here={}",
                sigterm.is_triggered()
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    m.close().unwrap();
}

/// Saves steps 1, 2, … (a few ms apart), saying STEP n after each, until one fails (the parent
/// SIGKILLs one process, or stops etcd, at some moment): says FAILED with the error, and exits.
/// `CKPT_MP_COORD_TIMEOUT`, if set: the manager's `coordination_timeout_secs`.
fn role_until_killed(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let mut b = builder(child_store()).coordinator(Arc::clone(c));
    if let Ok(secs) = std::env::var("CKPT_MP_COORD_TIMEOUT") {
        b = b.coordination_timeout_secs(secs.parse().unwrap());
    }
    let mut m = b.build().unwrap();
    for step in 1..=1_000_000u64 {
        let r = m.save(
            step,
            items_of(step, i),
            SaveOptions::default().metrics(metrics(step)),
        );
        match r {
            Ok(saved) => {
                assert!(saved, "step {step}");
                say(&format!("STEP {step}"));
            }
            Err(e) => {
                say(&format!(
                    "FAILED {step} {} | {}",
                    e.kind().name(),
                    e.chain()
                ));
                // The manager's root may hold a step this process did not see commit: it is
                // left to the next run (the primary's lock ends with this process).
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A restarted job: resumes from the latest committed step (restoring it), saves 3 more.
fn role_resume(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let mut m = builder(child_store())
        .cleanup_tmp_directories(true)
        .wait_for_writer_secs(60)
        .coordinator(Arc::clone(c))
        .build()
        .unwrap();
    let latest = m.latest_step().unwrap();
    check_restored(&m.restore(None).unwrap(), latest);
    for step in latest + 1..=latest + 3 {
        assert!(m
            .save(
                step,
                items_of(step, i),
                SaveOptions::default().metrics(metrics(step))
            )
            .unwrap());
    }
    say(&format!("RESUMED {latest}"));
    m.close().unwrap();
}

/// One run of the job of the 200-save SIGKILL test: resumes from the latest committed step
/// (restoring it; none: from 0), says `RESUMED <latest>`, then saves the steps after it up to
/// CKPT_MP_STEPS, saying `STEP n` after each, until one fails (the parent SIGKILLs one process
/// at some moment): says `FAILED <step> <ms> <kind> | <error>` (`ms`: how long the failing save
/// took) and exits. A run no process is killed in says `STEPS [...]` at the end.
fn role_rounds(c: &Arc<dyn Coordinator>) {
    let i = c.process_index();
    let steps: u64 = env("CKPT_MP_STEPS").parse().unwrap();
    let mut m = builder(child_store())
        .cleanup_tmp_directories(true)
        .wait_for_writer_secs(60)
        .coordination_timeout_secs(KILL_COORDINATION_TIMEOUT.as_secs())
        .coordinator(Arc::clone(c))
        .build()
        .unwrap();
    let latest = m.latest_step().unwrap_or(0);
    if latest > 0 {
        check_restored(&m.restore(None).unwrap(), latest);
    }
    say(&format!("RESUMED {latest}"));
    for step in latest + 1..=steps {
        let started = Instant::now();
        match m.save(
            step,
            items_of(step, i),
            SaveOptions::default().metrics(metrics(step)),
        ) {
            Ok(saved) => {
                assert!(saved, "step {step}");
                say(&format!("STEP {step}"));
            }
            Err(e) => {
                say(&format!(
                    "FAILED {step} {} {} | {}",
                    started.elapsed().as_millis(),
                    e.kind().name(),
                    e.chain()
                ));
                return;
            }
        }
    }
    say(&format!("STEPS {}", json!(m.all_steps())));
    m.close().unwrap();
}

/// Element (r, c) of the 32x6 global array `w` at `step`.
fn w_at(step: u64, r: usize, c: usize) -> f32 {
    (step as f32 * 1000.0 + r as f32 * 10.0 + c as f32) * 0.5
}

/// Rows `rows` of `w` at `step`.
fn w_rows(step: u64, rows: std::ops::Range<usize>) -> Vec<f32> {
    rows.flat_map(|r| (0..6).map(move |c| w_at(step, r, c)))
        .collect()
}

/// Saves steps 1..=3 of the global array `w` (32x6 f32), each of the processes its rows.
fn role_shards_save(c: &Arc<dyn Coordinator>) {
    let (i, n) = (c.process_index(), c.process_count());
    let mut m = builder(child_store())
        .coordinator(Arc::clone(c))
        .build()
        .unwrap();
    let rows = 32 / n;
    for step in 1..=3u64 {
        let data = ckpt_manager::handlers::Tensor::from_slice(
            [rows, 6],
            &w_rows(step, rows * i..rows * (i + 1)),
        )
        .unwrap();
        let shard = ckpt_manager::ArrayShard::new(vec![32, 6], vec![rows * i, 0], data).unwrap();
        let items = Composite::new().array_shard("w", i, &shard);
        assert!(m.save(step, items, SaveOptions::default()).unwrap());
    }
    m.close().unwrap();
}

/// Each process restores its rows of `w` as a job of this many processes holds them, at every
/// step, bit-exactly.
fn role_shards_restore(c: &Arc<dyn Coordinator>) {
    let (i, n) = (c.process_index(), c.process_count());
    let m = builder(child_store())
        .coordinator(Arc::clone(c))
        .build()
        .unwrap();
    let rows = 32 / n;
    for step in 1..=3u64 {
        let t = m
            .restore_array_slice(Some(step), "w", &[rows * i, 0], &[rows, 6])
            .unwrap();
        let got: Vec<u32> = t
            .to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|x| x.to_bits())
            .collect();
        let want: Vec<u32> = w_rows(step, rows * i..rows * (i + 1))
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(got, want, "step {step}");
    }
    say("RESTORED");
}

/// Saves steps 1..=3, then restores them with `single_host_load_and_broadcast`: says how many
/// reads this process made of the store during the restores (`READS <calls> <bytes>`).
fn role_broadcast(c: &Arc<dyn Coordinator>) {
    use ckpt_manager::storage::CountingStore;
    let i = c.process_index();
    let counting = Arc::new(CountingStore::new(child_store()));
    let mut m = builder(Arc::clone(&counting) as Arc<dyn Store>)
        .single_host_load_and_broadcast(true)
        .coordinator(Arc::clone(c))
        .build()
        .unwrap();
    for step in 1..=3u64 {
        let saved = m
            .save(
                step,
                items_of(step, i),
                SaveOptions::default().metrics(metrics(step)),
            )
            .unwrap();
        assert!(saved, "step {step}");
    }
    counting.reset();
    for step in 1..=3u64 {
        check_restored(&m.restore(Some(step)).unwrap(), step);
    }
    let r = m.restore_items(None, &["state"]).unwrap();
    assert_eq!(r.json_value("state").unwrap(), &state(3));
    // An error is the same on every process (the primary's listing says the item is not there).
    let e = m.restore_items(Some(2), &["nope"]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e:#}");
    let n = counting.counts();
    let reads = n.read + n.read_range + n.stat + n.list_dir;
    say(&format!("READS {reads} {}", n.bytes_read));
    m.close().unwrap();
}

// ------------------------------------------------------------------------- the parent

fn spec(role: &'static str, endpoint: &str, count: usize, env: &[(&str, String)]) -> ChildSpec {
    ChildSpec::new("child_process_entry", role, endpoint, count, env)
}

/// The steps a child listed at the end.
fn steps_listed(f: &Finished) -> Vec<u64> {
    let line = f
        .line("STEPS ")
        .unwrap_or_else(|| panic!("{}", f.describe()));
    serde_json::from_str(&line["STEPS ".len()..]).unwrap()
}

/// Every file of a root, by path, for comparing two roots: the step metadata without its
/// times, and files whose text names the writer or the place (commit files, the claim files
/// of commit-file mode) by their presence only; the writer guard is left out.
fn tree(store: &dyn Store) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for path in store.list_recursive("").unwrap() {
        let name = path.rsplit('/').next().unwrap_or(&path);
        if name.starts_with(".ckpt-writer") {
            continue;
        }
        let bytes = store.read(&path).unwrap();
        let bytes = match name {
            "_CHECKPOINT_METADATA" => {
                let mut v: Value = serde_json::from_slice(&bytes).unwrap();
                let o = v.as_object_mut().unwrap();
                o.remove("init_timestamp_nsecs");
                o.remove("commit_timestamp_nsecs");
                serde_json::to_vec(&v).unwrap()
            }
            "commit_success.txt" | "_CKPT_WRITER" => Vec::new(),
            _ => bytes,
        };
        out.insert(path, bytes);
    }
    out
}

/// The single-process run of the same data on `store`: the steps it lists.
fn single_process_run(store: Arc<dyn Store>, steps: u64) -> Vec<u64> {
    let mut m = builder(store).build().unwrap();
    for step in 1..=steps {
        let saved = m
            .save(
                step,
                all_items(step),
                SaveOptions::default().metrics(metrics(step)),
            )
            .unwrap();
        assert!(saved, "step {step}");
    }
    m.wait_until_finished().unwrap();
    let listed = m.all_steps();
    m.close().unwrap();
    listed
}

/// 4 processes save and restore 100 steps on `multi` (a root URI); the same data saved by one
/// process on `single`: the same steps, the same files.
fn save_100_steps_like_one_process(endpoint: &str, multi: &str, single: Arc<dyn Store>) {
    const STEPS: u64 = 100;
    let started = Instant::now();
    let env = [
        ("CKPT_MP_ROOT", multi.to_string()),
        ("CKPT_MP_STEPS", STEPS.to_string()),
    ];
    let done = wait_all(
        spawn_children(&spec("save", endpoint, PROCESSES, &env)),
        HANG,
    );
    all_succeed(&done);
    eprintln!(
        "{PROCESSES} processes saved and restored {STEPS} steps on {multi} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let expected = single_process_run(Arc::clone(&single), STEPS);
    assert_eq!(expected, vec![20, 40, 60, 80, 96, 97, 98, 99, 100]);
    for f in &done {
        assert_eq!(steps_listed(f), expected, "process {}", f.index);
    }
    let multi_store = ckpt_manager::storage::open(multi).unwrap();
    let (a, b) = (tree(multi_store.as_ref()), tree(single.as_ref()));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the roots hold different files"
    );
    for (path, bytes) in &a {
        assert!(
            b.get(path) == Some(bytes),
            "{path} differs: {:?} vs {:?}",
            String::from_utf8_lossy(bytes),
            b.get(path).map(|b| String::from_utf8_lossy(b).into_owned())
        );
    }
    // The manifest covers every process's files.
    let manifest = String::from_utf8(a["100/_CKPT_CHECKSUMS"].clone()).unwrap();
    for i in 0..PROCESSES {
        assert!(manifest.contains(&format!("part_{i}/")), "{manifest}");
    }
    // And a fresh single-process manager restores what the job wrote.
    let m = CheckpointManager::builder_with_store(multi_store)
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), expected);
    for step in expected {
        check_restored(&m.restore(Some(step)).unwrap(), step);
    }
}

#[test]
fn four_processes_save_and_restore_100_steps_on_local_disk_as_one_process_would() {
    let test = "four_processes_save_and_restore_100_steps_on_local_disk_as_one_process_would";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let multi = dir.path().join("multi");
    let single = ckpt_manager::storage::open(dir.path().join("single").to_str().unwrap()).unwrap();
    save_100_steps_like_one_process(&endpoint, multi.to_str().unwrap(), single);
}

#[test]
fn four_processes_save_and_restore_100_steps_on_s3_as_one_process_would() {
    let test = "four_processes_save_and_restore_100_steps_on_s3_as_one_process_would";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let Some((multi, _)) = s3_common::fresh_root("mp-multi") else {
        return;
    };
    let Some((_, single)) = s3_common::fresh_root("mp-single") else {
        return;
    };
    save_100_steps_like_one_process(&endpoint, &multi, s3_common::store(&single));
}

#[test]
fn a_failing_write_on_one_process_commits_nothing_and_every_process_names_it() {
    let test = "a_failing_write_on_one_process_commits_nothing_and_every_process_names_it";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let env = [("CKPT_MP_ROOT", root.to_str().unwrap().to_string())];
    let done = wait_all(
        spawn_children(&spec("fail", &endpoint, PROCESSES, &env)),
        HANG,
    );
    all_succeed(&done);
    for f in &done {
        let line = f.line("FAILED ").unwrap();
        eprintln!("process {}: {line}", f.index);
        assert!(line.starts_with("FAILED Storage"), "{line}");
        assert!(line.contains("process 2 of 4 failed"), "{line}");
        assert!(line.contains(".save-5.0.written"), "{line}");
        assert!(line.contains("step 5"), "{line}");
        assert_eq!(steps_listed(f), vec![3, 4, 6, 7, 8]);
    }
    // Nothing of step 5 is left: no step, no tmp directory.
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect();
    names.sort();
    assert_eq!(names, vec!["3", "4", "6", "7", "8"]);
}

#[test]
fn a_second_job_on_a_held_root_is_locked_on_every_process() {
    let test = "a_second_job_on_a_held_root_is_locked_on_every_process";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let release = dir.path().join("release");
    let env = [
        ("CKPT_MP_ROOT", root.to_str().unwrap().to_string()),
        ("CKPT_MP_RELEASE", release.to_str().unwrap().to_string()),
    ];
    let mut first = spawn_children(&spec("hold", &endpoint, PROCESSES, &env));
    for c in &mut first {
        c.expect_line("OPENED", PASS);
    }
    // The processes of the first job opened it without Locked; a second job gets it on all.
    let second = wait_all(spawn_children(&spec("second", &endpoint, 2, &env)), HANG);
    all_succeed(&second);
    for f in &second {
        let line = f.line("LOCKED ").unwrap();
        assert!(line.contains("process 0 of 2 failed"), "{line}");
        eprintln!("second job, process {}: {line}", f.index);
    }
    std::fs::write(&release, b"go").unwrap();
    all_succeed(&wait_all(first, HANG));
}

#[test]
fn a_sigterm_reaching_one_process_makes_every_process_save_the_same_step() {
    let test = "a_sigterm_reaching_one_process_makes_every_process_save_the_same_step";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let env = [("CKPT_MP_ROOT", root.to_str().unwrap().to_string())];
    let mut children = spawn_children(&spec("preempt", &endpoint, PROCESSES, &env));
    for c in &mut children {
        c.expect_line("READY", PASS);
    }
    let pid = i32::try_from(children[2].child.id()).unwrap();
    // SAFETY: kill(2) of a child process of this test, with a valid signal number.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let done = wait_all(children, HANG);
    all_succeed(&done);
    let lines: Vec<&str> = done.iter().map(|f| f.line("PREEMPTED ").unwrap()).collect();
    eprintln!("{lines:?}");
    let step = |l: &str| -> u64 { l.split(' ').nth(1).unwrap().parse().unwrap() };
    let saved = step(lines[0]);
    assert!(saved >= 25, "{lines:?}");
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(step(l), saved, "{lines:?}");
        assert!(
            l.ends_with(&format!("signalled_here={}", i == 2)),
            "{lines:?}"
        );
    }
    let m = CheckpointManager::builder(root.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.latest_step(), Some(saved));
    check_restored(&m.restore(None).unwrap(), saved);
}

#[test]
fn a_sigkilled_process_fails_the_others_naming_it_and_a_restarted_job_resumes() {
    let test = "a_sigkilled_process_fails_the_others_naming_it_and_a_restarted_job_resumes";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let env = [("CKPT_MP_ROOT", root.to_str().unwrap().to_string())];
    let mut s = spec("until_killed", &endpoint, PROCESSES, &env);
    s.lease_ttl_secs = 5;
    let mut children = spawn_children(&s);
    // A moment that differs from run to run: after step 5..=12 of process 3.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let after = 5 + nanos % 8;
    children[3].expect_line(&format!("STEP {after}"), PASS);
    std::thread::sleep(Duration::from_millis(nanos % 40));
    children[3].child.kill().unwrap();
    let done = wait_all(children, HANG);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&done[3].status),
        Some(libc::SIGKILL),
        "{}",
        done[3].describe()
    );
    for f in &done[..3] {
        assert!(f.status.success(), "{}", f.describe());
        let line = f
            .line("FAILED ")
            .unwrap_or_else(|| panic!("{}", f.describe()));
        eprintln!("process {}: {line}", f.index);
        assert!(line.contains("process 3 of 4"), "{line}");
    }
    // Every step listed is whole: verified and restored by a fresh manager.
    let m = CheckpointManager::builder(root.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    let steps = m.all_steps();
    assert!(!steps.is_empty());
    for &step in &steps {
        let report = ckpt_manager::verify_step(m.store().as_ref(), &m.step_dir_name(step)).unwrap();
        assert!(report.is_ok(), "step {step}: {report:?}");
        assert!(report.files.len() > PROCESSES, "step {step}: {report:?}");
        check_restored(&m.restore(Some(step)).unwrap(), step);
    }
    let latest = m.latest_step().unwrap();
    drop(m);
    // The job restarted (a new etcd session): resumes from the last committed step.
    let done = wait_all(
        spawn_children(&spec("resume", &endpoint, PROCESSES, &env)),
        HANG,
    );
    all_succeed(&done);
    for f in &done {
        assert_eq!(f.line("RESUMED ").unwrap(), format!("RESUMED {latest}"));
    }
}

/// Issue 15, "etcd stopped mid-save → `Timeout` naming the phase, nothing committed": etcd is
/// SIGKILLed while 4 processes save step after step. Every process's save fails with `Timeout`
/// naming the phase (the decision or a phase of a save) and the step, after trying etcd again
/// for the coordination timeout (10 s here); the step it failed at is committed only when the
/// failure was in its last phase (`committed`, after the primary's commit), and every step
/// listed is whole.
#[test]
fn etcd_stopped_mid_saves_times_out_every_process_naming_the_phase_and_commits_nothing() {
    let test =
        "etcd_stopped_mid_saves_times_out_every_process_naming_the_phase_and_commits_nothing";
    if etcd_endpoint(test).is_none() {
        return;
    }
    let Some(mut server) = OwnEtcd::start(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let env = [
        ("CKPT_MP_ROOT", root.to_str().unwrap().to_string()),
        ("CKPT_MP_COORD_TIMEOUT", "10".to_string()),
    ];
    let mut s = spec("until_killed", &server.endpoint, PROCESSES, &env);
    s.request_timeout_secs = 5.0;
    let mut children = spawn_children(&s);
    children[0].expect_line("STEP 5", PASS);
    server.kill();
    let done = wait_all(children, HANG);
    let m = CheckpointManager::builder(root.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    let listed = m.all_steps();
    for f in &done {
        assert!(f.status.success(), "{}", f.describe());
        let line = f
            .line("FAILED ")
            .unwrap_or_else(|| panic!("{}", f.describe()));
        eprintln!("process {}: {line}", f.index);
        let fields: Vec<&str> = line.splitn(4, ' ').collect();
        let step: u64 = fields[1].parse().unwrap();
        assert_eq!(fields[2], "Timeout", "{line}");
        assert!(line.contains("stopped answering"), "{line}");
        assert!(line.contains(&format!("(step {step})")), "{line}");
        let phase = [
            format!("ckpt.m0.decide-{step}\""),
            format!("ckpt.m0.save-{step}.0.prepared\""),
            format!("ckpt.m0.save-{step}.0.written\""),
            format!("ckpt.m0.save-{step}.0.committed\""),
        ]
        .into_iter()
        .position(|p| line.contains(&p))
        .unwrap_or_else(|| panic!("no phase of step {step} named: {line}"));
        if phase < 3 {
            assert!(
                !listed.contains(&step),
                "step {step} failed before its commit but is listed: {listed:?}"
            );
        }
    }
    assert!(listed.len() >= 5, "{listed:?}");
    for step in listed {
        let report = ckpt_manager::verify_step(m.store().as_ref(), &m.step_dir_name(step)).unwrap();
        assert!(
            report.is_ok() && report.files.len() > PROCESSES,
            "step {step}: {report:?}"
        );
        check_restored(&m.restore(Some(step)).unwrap(), step);
    }
}

#[test]
fn an_array_sharded_over_4_processes_restores_bit_exactly_on_2_and_on_1() {
    let test = "an_array_sharded_over_4_processes_restores_bit_exactly_on_2_and_on_1";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let env = [("CKPT_MP_ROOT", root.to_str().unwrap().to_string())];
    all_succeed(&wait_all(
        spawn_children(&spec("shards_save", &endpoint, PROCESSES, &env)),
        HANG,
    ));
    all_succeed(&wait_all(
        spawn_children(&spec("shards_restore", &endpoint, 2, &env)),
        HANG,
    ));
    let m = CheckpointManager::builder(root.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    assert_eq!(m.all_steps(), vec![1, 2, 3]);
    for step in 1..=3 {
        let t = m
            .restore_array_slice(Some(step), "w", &[0, 0], &[32, 6])
            .unwrap();
        assert_eq!(t.to_vec::<f32>().unwrap(), w_rows(step, 0..32));
        assert_eq!(
            m.item_names(step).unwrap(),
            vec!["w.shard-0", "w.shard-1", "w.shard-2", "w.shard-3"]
        );
    }
}

#[test]
fn with_single_host_load_and_broadcast_only_the_primary_reads_and_every_process_restores() {
    let test =
        "with_single_host_load_and_broadcast_only_the_primary_reads_and_every_process_restores";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let env = [("CKPT_MP_ROOT", root.to_str().unwrap().to_string())];
    let done = wait_all(
        spawn_children(&spec("broadcast", &endpoint, PROCESSES, &env)),
        HANG,
    );
    all_succeed(&done);
    for f in &done {
        let line = f.line("READS ").unwrap();
        eprintln!("process {}: {line}", f.index);
        let n: Vec<u64> = line
            .split(' ')
            .skip(1)
            .map(|x| x.parse().unwrap())
            .collect();
        if f.index == 0 {
            assert!(n[0] > 0 && n[1] > 3 * 4096 * PROCESSES as u64, "{line}");
        } else {
            assert_eq!(n, vec![0, 0], "process {}: {line}", f.index);
        }
    }
}

/// splitmix64: the kill schedule of the SIGKILL test from its seed (no dependency, the same
/// sequence everywhere).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Waits (at most `timeout`) for the line `line` exactly from `child`.
fn expect_exact(child: &mut support::ChildProc, line: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let got = child.expect_line("", deadline.saturating_duration_since(Instant::now()));
        if got == line {
            return;
        }
        assert!(
            !got.starts_with("FAILED"),
            "child {} failed before {line:?}: {:?}",
            child.index,
            child.seen
        );
    }
}

/// Every step a fresh read-only manager lists on `root` is whole: `verify_step` finds every
/// file of its manifest intact, and it restores to every process's data of that step. The
/// steps, ascending.
fn every_listed_step_is_whole(root: &std::path::Path) -> Vec<u64> {
    let m = CheckpointManager::builder(root.to_str().unwrap())
        .read_only(true)
        .build()
        .unwrap();
    let steps = m.all_steps();
    for &step in &steps {
        let report = ckpt_manager::verify_step(m.store().as_ref(), &m.step_dir_name(step)).unwrap();
        assert!(
            report.is_ok() && report.files.len() > PROCESSES,
            "step {step}: {report:?}"
        );
        check_restored(&m.restore(Some(step)).unwrap(), step);
    }
    steps
}

/// Issue 15, "SIGKILL of one process at random moments during 200 saves": a 4-process job
/// saves steps 1..=200; 4 times, one process (chosen from the seed) is SIGKILLed at a moment
/// chosen from the seed (after its save of some step, plus 0-29 ms: anywhere in the next save
/// or between two). Each time: the survivors' save fails with `Coordination` naming the killed
/// process, within the coordination timeout; every step listed verifies and restores; the job
/// is restarted (same job name, a new etcd session) and resumes from the last committed step;
/// until step 200 is saved. The seed is printed (`SEED n`); `CKPT_TEST_SEED=n` replays its
/// schedule (where the kill lands within a save still depends on timing, not on what is
/// asserted).
#[test]
fn two_hundred_saves_with_processes_sigkilled_at_random_moments_list_only_whole_steps_and_resume() {
    let test = "two_hundred_saves_with_processes_sigkilled_at_random_moments_list_only_whole_steps_and_resume";
    let Some(endpoint) = etcd_endpoint(test) else {
        return;
    };
    const STEPS: u64 = 200;
    const KILLS: u64 = 4;
    let seed: u64 = match std::env::var("CKPT_TEST_SEED") {
        Ok(s) => s.parse().expect("CKPT_TEST_SEED: a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    };
    println!("SEED {seed} (replay the schedule with CKPT_TEST_SEED={seed})");
    eprintln!("SEED {seed} (replay the schedule with CKPT_TEST_SEED={seed})");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let env = [
        ("CKPT_MP_ROOT", root.to_str().unwrap().to_string()),
        ("CKPT_MP_STEPS", STEPS.to_string()),
    ];
    // One job name for every run: each run after a kill is a restart of the same job.
    let mut s = spec("rounds", &endpoint, PROCESSES, &env);
    s.lease_ttl_secs = 5;
    let mut committed = 0u64;
    for round in 0..=KILLS {
        let mut children = spawn_children(&s);
        for c in &mut children {
            let line = c.expect_line("RESUMED ", PASS);
            assert_eq!(line, format!("RESUMED {committed}"), "round {round}");
        }
        if round == KILLS {
            let done = wait_all(children, HANG);
            all_succeed(&done);
            let listed = every_listed_step_is_whole(&root);
            assert_eq!(listed.last(), Some(&STEPS));
            for f in &done {
                assert_eq!(steps_listed(f), listed, "process {}", f.index);
            }
            break;
        }
        // Spread the kills over what is left: the victim's step `after` is within the next
        // (left / kills left + 1) steps.
        let window = ((STEPS - committed) / (KILLS - round + 1)).max(1);
        let victim = rng.below(PROCESSES as u64) as usize;
        let after = committed + 1 + rng.below(window);
        let delay = Duration::from_millis(rng.below(30));
        eprintln!(
            "round {round}: from step {committed}; SIGKILL process {victim} {delay:?} after its \
             save of step {after}"
        );
        expect_exact(&mut children[victim], &format!("STEP {after}"), PASS);
        std::thread::sleep(delay);
        children[victim].child.kill().unwrap();
        let done = wait_all(children, HANG);
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&done[victim].status),
            Some(libc::SIGKILL),
            "{}",
            done[victim].describe()
        );
        let mut reached = after;
        for f in done.iter().filter(|f| f.index != victim) {
            assert!(f.status.success(), "{}", f.describe());
            let line = f
                .line("FAILED ")
                .unwrap_or_else(|| panic!("{}", f.describe()));
            eprintln!("  process {}: {line}", f.index);
            let fields: Vec<&str> = line.splitn(5, ' ').collect();
            let (step, ms): (u64, u64) = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
            assert!(step > after, "{line}");
            reached = reached.max(step);
            assert_eq!(fields[3], "Coordination", "{line}");
            assert!(
                line.contains(&format!("process {victim} of {PROCESSES}")) && line.contains("gone"),
                "{line}"
            );
            assert!(
                Duration::from_millis(ms) < KILL_COORDINATION_TIMEOUT,
                "the failing save took {ms} ms: {line}"
            );
        }
        // Not one partial or unrestorable step listed; the step in flight is committed or not
        // at all.
        let listed = every_listed_step_is_whole(&root);
        let latest = *listed.last().unwrap();
        assert!(latest >= after && latest <= reached, "{listed:?}");
        committed = latest;
    }
    eprintln!(
        "{STEPS} saves with {KILLS} SIGKILLs in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
