//! Item 12: with a corrupt latest step the main job stopped (exit 1) and could not resume from
//! the previous step, and there was no command to delete one step. Now `train` says what is
//! wrong and how to go on, `--resume-from STEP` resumes from an older step (the later ones
//! stay), and `ckpt rm ROOT STEP... [--yes]` deletes steps, asking first on a terminal.

use crate::common::{ckpt, root_with_losses, steps_of};
use crate::train_child::{finish, lines_of, spawn_train};
use ckpt_manager::CheckpointManager;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Runs `train` with `args` in a child process; returns whether it succeeded, its stdout and
/// its stderr.
fn train(args: &[&str]) -> (bool, String, String) {
    let mut child = spawn_train(args);
    let rx = lines_of(&mut child);
    let (status, err) = finish(child, Duration::from_secs(600));
    let out: Vec<String> = rx.iter().collect();
    (status.success(), out.join("\n"), err)
}

/// Flips the last byte of step `step`'s parameters: a checksum mismatch, so restore is `Corrupt`.
fn corrupt(root: &Path, step: u64) {
    let f = root.join(format!("{step}/params/tensors.safetensors"));
    let mut bytes = std::fs::read(&f).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x55;
    std::fs::write(&f, bytes).unwrap();
}

/// The bytes of every tensor of item `item` of `step`.
fn tensor_bytes(root: &str, step: u64, item: &str) -> Vec<(String, Vec<u8>)> {
    let m = CheckpointManager::builder(root)
        .read_only(true)
        .build()
        .unwrap();
    let r = m.restore(Some(step)).unwrap();
    r.tensors(item)
        .unwrap()
        .iter()
        .map(|(k, t)| (k.clone(), t.as_bytes().to_vec()))
        .collect()
}

#[test]
fn train_with_a_corrupt_latest_step_says_so_and_resumes_with_resume_from() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let r = root.to_str().unwrap();
    let (ok, out, err) = train(&["--dir", r, "--steps", "30", "--save-every", "10"]);
    assert!(ok, "{out}\n{err}");
    assert_eq!(steps_of(r), [10, 20, 30]);
    corrupt(&root, 30);

    // Without --resume-from: stops, naming the step and the way out, and changes nothing.
    let (ok, out, err) = train(&["--dir", r, "--steps", "40", "--save-every", "10"]);
    assert!(!ok, "resumed from a corrupt step: {out}");
    assert!(
        err.contains("step 30")
            && err.contains("corrupt")
            && err.contains("--resume-from 20")
            && err.contains(&format!("ckpt rm {r} 30")),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert_eq!(steps_of(r), [10, 20, 30]);

    // A step that is not there: refused, listing the steps there are.
    let (ok, _, err) = train(&[
        "--dir",
        r,
        "--steps",
        "40",
        "--save-every",
        "10",
        "--resume-from",
        "25",
    ]);
    assert!(!ok);
    assert!(
        err.contains("no checkpoint 25") && err.contains("[10, 20, 30]"),
        "{err}"
    );

    // --resume-from 20: resumes there; step 30 stays; step 40 is saved.
    let (ok, out, err) = train(&[
        "--dir",
        r,
        "--steps",
        "40",
        "--save-every",
        "10",
        "--resume-from",
        "20",
    ]);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("resumed from step 20"), "{out}");
    assert!(out.contains("the later checkpoints [30] stay"), "{out}");
    let steps = steps_of(r);
    assert!(steps.contains(&30) && steps.contains(&40), "{steps:?}");

    // Resuming from 20 is exact: step 40 equals that of a straight run to 40.
    let data = crate::data::Data::wine_quality();
    let straight = d.path().join("straight");
    let cfg = crate::checkpoint::RunConfig {
        dir: straight.to_str().unwrap().to_string(),
        steps: 40,
        save_every: 10,
        max_to_keep: 3,
        best_n: 1,
        keep_period: Some(250),
        seed: 0,
        config_file: None,
        preemption: None,
        resume_from: None,
        ignore_other_steps: false,
    };
    crate::checkpoint::run(&cfg, &data, &mut Vec::new()).unwrap();
    for item in ["params", "opt_state"] {
        assert_eq!(
            tensor_bytes(r, 40, item),
            tensor_bytes(straight.to_str().unwrap(), 40, item),
            "{item} of step 40 differs from a straight run's"
        );
    }
}

#[test]
fn rm_with_yes_deletes_exactly_that_step() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_losses(d.path(), 6);
    let (code, out, err) = ckpt(&["rm", &root, "30", "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out.trim(), "deleted step 30");
    assert_eq!(steps_of(&root), [10, 20, 40, 50, 60]);
    assert!(!Path::new(&root).join("30").exists());
    // Several at once, in one call.
    let (code, out, err) = ckpt(&["rm", &root, "10", "60", "--yes"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(steps_of(&root), [20, 40, 50]);
}

#[test]
fn rm_without_yes_off_a_terminal_refuses_and_deletes_nothing() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_losses(d.path(), 3);
    let (code, out, err) = ckpt(&["rm", &root, "20"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("not a terminal") && err.contains("--yes"),
        "{err}"
    );
    assert_eq!(steps_of(&root), [10, 20, 30]);

    // A step that is not there: nothing deleted, not even the ones that are.
    let (code, _, err) = ckpt(&["rm", &root, "20", "25", "--yes"]);
    assert_eq!(code, Some(1));
    assert!(err.contains("NotFound") && err.contains("[25]"), "{err}");
    assert_eq!(steps_of(&root), [10, 20, 30]);
}

#[test]
fn rm_on_a_terminal_asks_for_each_step() {
    let d = tempfile::tempdir().unwrap();
    let root = root_with_losses(d.path(), 3);
    let (mut master, slave) = {
        let (mut m, mut s) = (-1, -1);
        // SAFETY: openpty writes two new descriptors into `m` and `s`; the null pointers ask for
        // no name, default terminal settings and no window size.
        let rc = unsafe {
            libc::openpty(
                &mut m,
                &mut s,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty failed: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened and are owned by nobody else.
        unsafe {
            (
                std::fs::File::from(OwnedFd::from_raw_fd(m)),
                OwnedFd::from_raw_fd(s),
            )
        }
    };
    let child = Command::new(env!("CARGO_BIN_EXE_ckpt"))
        .args(["rm", &root, "10", "30"])
        .stdin(Stdio::from(slave))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // "y" for step 10, "n" for step 30.
    master.write_all(b"y\nn\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("delete step 10 of {root}? [y/N]"))
            && stderr.contains(&format!("delete step 30 of {root}? [y/N]")),
        "{stderr}"
    );
    assert!(
        stdout.contains("deleted step 10") && stdout.contains("kept step 30"),
        "{stdout}"
    );
    assert_eq!(steps_of(&root), [20, 30]);
    // Drain what the terminal echoed, so nothing is left blocking.
    let mut echoed = [0u8; 64];
    let _ = master.read(&mut echoed);
}

/// From the fresh-user review of issue 16: an empty directory named as a step (`9999`) became the
/// latest step and stopped `train` with "holds no items to restore" and no way on; a stray
/// directory inside the latest step, with a misleading "no registered handler". Both now get the
/// same hint as a corrupt latest step.
#[test]
fn train_with_an_unrestorable_latest_step_names_the_way_on() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    let r = root.to_str().unwrap();
    let (ok, out, err) = train(&["--dir", r, "--steps", "20", "--save-every", "10"]);
    assert!(ok, "{out}\n{err}");
    std::fs::create_dir(root.join("9999")).unwrap();
    let (ok, out, err) = train(&["--dir", r, "--steps", "40", "--save-every", "10"]);
    assert!(!ok, "{out}");
    assert!(err.contains("step 9999, cannot be resumed from"), "{err}");
    assert!(err.contains("--resume-from 20"), "{err}");
    std::fs::remove_dir(root.join("9999")).unwrap();
    std::fs::create_dir(root.join("20/stray")).unwrap();
    let (ok, out, err) = train(&["--dir", r, "--steps", "40", "--save-every", "10"]);
    assert!(!ok, "{out}");
    assert!(err.contains("--resume-from 10"), "{err}");
    assert!(err.contains("\"stray\""), "{err}");
}
