//! Issue 11, item 2: object-store roots took no writer lock, so a second manager opened with
//! `cleanup_tmp_directories` while the first was mid-save deleted the first's unfinished step;
//! the first then committed a listed step whose restore said `NotFound`. Now a manager on an
//! object store holds a writer lease (`<root>/.ckpt-writer.lease`): a second writer — here in
//! another process — gets `Locked` naming the holder and the expiry, and removes nothing; a
//! writer that died blocks the root only until its lease expires.
//!
//! The child processes are this test binary run again with one test selected
//! (`child_holds_a_writer_lease`) and what to do in `CKPT_TEST_LEASE_CHILD`.

use crate::s3_common;
use ckpt_manager::core::ErrorKind;
use ckpt_manager::storage::{Gate, LatencyStore, Store};
use ckpt_manager::{CheckpointManager, Composite, SaveOptions};
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHILD: &str = "CKPT_TEST_LEASE_CHILD";

/// In the child: `save PREFIX` saves step 10 with its blob held at a gate until a line comes on
/// stdin; `hold PREFIX` opens a writer with a 10 s lease and waits to be killed.
#[test]
fn child_holds_a_writer_lease() {
    let Ok(what) = std::env::var(CHILD) else {
        return;
    };
    let (mode, prefix) = what.split_once(' ').unwrap();
    let (_, mut config) = s3_common::fresh_root("lease-child").unwrap();
    config.prefix = prefix.to_string();
    let s3 = s3_common::store(&config);
    let mut out = std::io::stdout();
    match mode {
        "save" => {
            let gate = Gate::closed();
            let store: Arc<dyn Store> = Arc::new(
                LatencyStore::new(s3, Duration::ZERO)
                    .only_paths("10/blob/")
                    .with_gate(gate.clone()),
            );
            let mut m = CheckpointManager::builder_with_store(store)
                .build()
                .unwrap();
            let items = Composite::new()
                .json_value("state", json!({"from": "child"}))
                .bytes_owned("blob", vec![7u8; 1 << 16]);
            assert!(m.save(10, items, SaveOptions::default()).unwrap());
            assert!(gate.wait_for_waiting(1, Duration::from_secs(60)));
            writeln!(out, "saving {}", std::process::id()).unwrap();
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            gate.open();
            m.close().unwrap();
            writeln!(out, "committed").unwrap();
        }
        "hold" => {
            let m = CheckpointManager::builder_with_store(s3)
                .writer_lease_ttl_secs(Some(10))
                .build()
                .unwrap();
            writeln!(out, "holding {}", std::process::id()).unwrap();
            std::thread::sleep(Duration::from_secs(600));
            drop(m);
        }
        other => panic!("unknown child mode {other:?}"),
    }
}

fn spawn_child(mode: &str, prefix: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "second_writer_breaks_live_save::child_holds_a_writer_lease",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{mode} {prefix}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// The rest of the next line of the child holding `word`, from `word` on, within two minutes
/// (the test harness prints the test's name before its first line).
fn expect_line(rx: &mpsc::Receiver<String>, word: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("the child never printed {word:?}: {e}"));
        if let Some(at) = line.find(word) {
            return line[at..].to_string();
        }
    }
}

#[test]
fn a_second_writer_on_s3_is_locked_out_and_cannot_break_a_live_save() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let Some((_, config)) = s3_common::fresh_root("lease") else {
        return;
    };
    let store = s3_common::store(&config);
    let (mut child, rx) = spawn_child("save", &config.prefix);
    let pid = expect_line(&rx, "saving")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();

    // The child is mid-save (its JSON item written, its blob held): a second writer that would
    // clean tmp directories is refused, naming the holder, and removes nothing.
    let err = CheckpointManager::builder_with_store(Arc::clone(&store))
        .cleanup_tmp_directories(true)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("process {pid}")),
        "names the holder: {msg}"
    );
    assert!(
        msg.contains("expires at"),
        "says when the lease expires: {msg}"
    );
    assert!(
        !store.list_dir("10").unwrap().is_empty(),
        "the child's unfinished step is still there"
    );

    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    expect_line(&rx, "committed");
    assert!(child.wait().unwrap().success());
    let reader = CheckpointManager::builder_with_store(Arc::clone(&store))
        .read_only(true)
        .build()
        .unwrap();
    let restored = reader.restore(Some(10)).unwrap();
    assert_eq!(
        restored.json_value("state").unwrap(),
        &json!({"from": "child"})
    );
    assert_eq!(restored.bytes("blob").unwrap(), &vec![7u8; 1 << 16][..]);
    // Released at close: the next writer opens at once.
    let next = CheckpointManager::builder_with_store(Arc::clone(&store))
        .build()
        .unwrap();
    next.close().unwrap();
}

#[test]
fn a_dead_writer_on_s3_blocks_the_root_only_until_its_lease_expires() {
    if std::env::var(CHILD).is_ok() {
        return;
    }
    let Some((_, config)) = s3_common::fresh_root("lease-dead") else {
        return;
    };
    let store = s3_common::store(&config);
    let (mut child, rx) = spawn_child("hold", &config.prefix);
    let pid = expect_line(&rx, "holding")
        .split(' ')
        .nth(1)
        .unwrap()
        .to_string();
    // While the child lives (its 10 s lease just taken), a second writer is refused.
    let err = CheckpointManager::builder_with_store(Arc::clone(&store))
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Locked, "{err}");
    assert!(err.to_string().contains(&format!("process {pid}")), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The lease the dead writer left, as last renewed.
    let lease = store.read(".ckpt-writer.lease").unwrap();
    let lease: serde_json::Value = serde_json::from_slice(&lease).unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(lease["expires_at"].as_str().unwrap())
        .unwrap()
        .with_timezone(&chrono::Utc);
    let killed = Instant::now();
    let opened = loop {
        match CheckpointManager::builder_with_store(Arc::clone(&store)).build() {
            Ok(m) => break m,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
                assert!(e.to_string().contains(&format!("process {pid}")), "{e}");
            }
        }
        assert!(
            killed.elapsed() < Duration::from_secs(90),
            "the dead writer's 10 s lease never expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    // Taken over only once it had expired, never before.
    assert!(
        chrono::Utc::now() >= expires_at,
        "the lease was taken before it expired at {expires_at}"
    );
    opened.close().unwrap();
}
