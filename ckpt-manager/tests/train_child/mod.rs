//! Runs the `train` example in a child process, for the tests that stop it from outside
//! (SIGTERM, SIGKILL): the test binary re-runs itself with only its
//! `child_runs_the_train_program` test selected and the example's command line in an
//! environment variable. That needs no separately built example binary and no cargo call
//! inside a test. Each such test file includes the example's `main.rs` itself (its modules name
//! each other as `crate::…`) and defines that test as a call of [`run_if_child`].

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable holding the child's `train` arguments, separated by `\x1f`.
const CHILD_ARGS: &str = "CKPT_TEST_TRAIN_CHILD_ARGS";

/// In the child process: runs `run_main` (the example's) with the arguments from
/// [`CHILD_ARGS`] and exits with its status (0, 2, or 1 for any other). In a normal test run
/// (no such variable) it does nothing.
pub fn run_if_child(run_main: impl FnOnce(Vec<OsString>) -> ExitCode) {
    let Ok(args) = std::env::var(CHILD_ARGS) else {
        return;
    };
    let argv = std::iter::once("train".to_string())
        .chain(args.split('\x1f').map(String::from))
        .map(Into::into)
        .collect();
    let code = run_main(argv);
    // `ExitCode` has no getter: the statuses `train` uses (0, 1, 2 for usage errors).
    let status = if code == ExitCode::SUCCESS {
        0
    } else if code == ExitCode::from(2) {
        2
    } else {
        1
    };
    std::process::exit(status);
}

/// Starts `train` with `args` in a child process, its stdout piped.
pub fn spawn_train(args: &[&str]) -> Child {
    spawn_train_env(args, &[])
}

/// Starts `train` with `args` and the environment variables `env` added in a child process,
/// its stdout piped (e.g. `RANK` and `WORLD_SIZE`, as a job launcher starts each process).
pub fn spawn_train_env(args: &[&str], env: &[(&str, String)]) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_runs_the_train_program",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ARGS, args.join("\x1f"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The child's stdout lines, as they come, on a channel.
pub fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for the child to end (killing it after `limit`) and returns its status and stderr.
pub fn finish(mut child: Child, limit: Duration) -> (std::process::ExitStatus, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            return (status, err);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the train child did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
