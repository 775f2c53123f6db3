//! Who the processes of a multi-process run are and how they start (issue 15).
//!
//! - `train --processes N` (no `RANK` in the environment) is a *launcher*: it starts N copies of
//!   itself (the same executable and arguments) with `RANK=i`, `WORLD_SIZE=N` and
//!   [`ETCD_ENV`] set, forwards a SIGTERM it receives to each of them once, waits for all, and
//!   exits 0 only when all did.
//! - With `RANK` and `WORLD_SIZE` set (by that launcher, or by any launcher that sets them, e.g.
//!   a job scheduler's), the process is a *worker*: it joins the job on etcd ([`ETCD_ENV`] or
//!   `--etcd`) under a job name derived from `--dir` ([`job_name`]), and trains its share
//!   ([`crate::distributed`]).

use crate::trainer::MICRO_BATCHES;
use std::ffi::OsString;
use std::process::{Child, Command, ExitCode};
use std::time::Duration;

/// The environment variable holding this process's index in the job (as torchrun's).
pub const RANK_ENV: &str = "RANK";
/// The environment variable holding the number of processes of the job (as torchrun's).
pub const WORLD_SIZE_ENV: &str = "WORLD_SIZE";
/// The environment variable holding the etcd endpoints (comma-separated URLs) when `--etcd` is
/// not given.
pub const ETCD_ENV: &str = "CKPT_ETCD_ENDPOINTS";
/// Set by the launcher in its workers (its pid): such a worker takes a second SIGTERM as the
/// same preemption (a signal sent to the whole process group reaches it twice: directly and
/// forwarded by the launcher) instead of ending at once.
pub const LAUNCHER_ENV: &str = "CKPT_TRAIN_LAUNCHER";
/// What this process is in a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    /// The whole job (no `--processes`, no `RANK`).
    Single,
    /// `--processes N`: starts N workers.
    Launcher {
        /// How many workers.
        processes: usize,
        /// The etcd endpoints the workers use.
        endpoints: Vec<String>,
    },
    /// One process of a job.
    Worker {
        /// This process's index.
        rank: usize,
        /// The number of processes.
        size: usize,
        /// The etcd endpoints.
        endpoints: Vec<String>,
        /// Whether the launcher of `--processes` started it.
        launched: bool,
    },
}

/// The role given by `--processes`, `--etcd` and the environment.
///
/// # Errors
/// A message when `RANK`/`WORLD_SIZE` are not numbers, only one of them is set, the rank is not
/// below the size, the size disagrees with `--processes`, the count is 0 or above
/// [`MICRO_BATCHES`], or no etcd endpoint is given.
pub fn role(processes: Option<usize>, etcd: Option<&str>) -> Result<Role, String> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let number = |name: &str, v: String| {
        v.trim()
            .parse::<usize>()
            .map_err(|e| format!("{name}={v:?}: {e} (a whole number)"))
    };
    let world = match (var(RANK_ENV), var(WORLD_SIZE_ENV)) {
        (None, None) => None,
        (Some(r), Some(s)) => Some((number(RANK_ENV, r)?, number(WORLD_SIZE_ENV, s)?)),
        _ => {
            return Err(format!(
                "{RANK_ENV} and {WORLD_SIZE_ENV} must be set together (one process of a job) or not at all"
            ))
        }
    };
    if world.is_none() && processes.is_none() {
        return Ok(Role::Single);
    }
    let size = world.map_or(processes.unwrap_or(1), |w| w.1);
    if size == 0 || size > MICRO_BATCHES {
        return Err(format!(
            "{size} processes: give 1 to {MICRO_BATCHES} (each process computes at least one of \
             the {MICRO_BATCHES} micro-batches of a mini-batch)"
        ));
    }
    if let (Some(p), Some((_, s))) = (processes, world) {
        if p != s {
            return Err(format!(
                "--processes {p} but {WORLD_SIZE_ENV}={s}: a launcher sets {WORLD_SIZE_ENV}; give \
                 one or the other"
            ));
        }
    }
    let endpoints: Vec<String> = etcd
        .map(str::to_string)
        .or_else(|| var(ETCD_ENV))
        .map(|e| {
            e.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if endpoints.is_empty() {
        return Err(format!(
            "a multi-process run needs an etcd server: give --etcd URL (e.g. http://127.0.0.1:2379) \
             or set {ETCD_ENV}"
        ));
    }
    Ok(match world {
        None => Role::Launcher {
            processes: size,
            endpoints,
        },
        Some((rank, size)) => {
            if rank >= size {
                return Err(format!(
                    "{RANK_ENV}={rank} is not below {WORLD_SIZE_ENV}={size}"
                ));
            }
            Role::Worker {
                rank,
                size,
                endpoints,
                launched: var(LAUNCHER_ENV).is_some(),
            }
        }
    })
}

/// The job's name on the etcd server for checkpoint root `dir`: `train-<64-bit FNV-1a of dir
/// in hex>`, the same on every process given the same `--dir`.
pub fn job_name(dir: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("train-{h:016x}")
}

/// The launcher of `--processes N`: starts `processes` copies of this executable with its own
/// arguments and `RANK`, `WORLD_SIZE`, [`ETCD_ENV`] and [`LAUNCHER_ENV`] set; forwards SIGTERM
/// (once `preempted` says it came) to each running worker, once; waits for all. Exit status 0
/// when every worker exited 0, else 1 (each failure named on stderr).
pub fn launch(processes: usize, endpoints: &[String], preempted: &dyn Fn() -> bool) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!(
                "train: error: cannot find this program's executable to start the processes: {e}"
            );
            return ExitCode::FAILURE;
        }
    };
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(processes);
    for rank in 0..processes {
        let spawned = Command::new(&exe)
            .args(&args)
            .env(RANK_ENV, rank.to_string())
            .env(WORLD_SIZE_ENV, processes.to_string())
            .env(ETCD_ENV, endpoints.join(","))
            .env(LAUNCHER_ENV, std::process::id().to_string())
            .spawn();
        match spawned {
            Ok(c) => children.push((rank, c)),
            Err(e) => {
                eprintln!(
                    "train: error: cannot start process {rank} of {processes} ({}): {e}",
                    exe.display()
                );
                // The ones started wait for it at their join and time out; stop them now.
                for (_, c) in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return ExitCode::FAILURE;
            }
        }
    }
    let mut forwarded = false;
    let mut failed = false;
    while !children.is_empty() {
        if !forwarded && preempted() {
            forwarded = true;
            for (_, c) in &children {
                if let Ok(pid) = i32::try_from(c.id()) {
                    // SAFETY: kill(2) of a child process this launcher started and has not
                    // reaped yet (so the pid is still its), with a valid signal number.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
        }
        let mut running = Vec::with_capacity(children.len());
        for (rank, mut c) in children {
            match c.try_wait() {
                Ok(Some(status)) if status.success() => {}
                Ok(Some(status)) => {
                    failed = true;
                    eprintln!("train: process {rank} of {processes} ended with {status}");
                }
                Ok(None) => running.push((rank, c)),
                Err(e) => {
                    failed = true;
                    eprintln!("train: cannot wait for process {rank} of {processes}: {e}");
                }
            }
        }
        children = running;
        if !children.is_empty() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_names_are_valid_and_differ_by_dir() {
        let a = job_name("runs/a");
        assert_ne!(a, job_name("runs/b"));
        assert!(ckpt_manager::coordination::validate_name(&a).is_ok());
    }
}
