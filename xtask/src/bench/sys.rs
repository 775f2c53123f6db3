//! Machine facts and controls the bench needs: flushing and dropping the page cache, process
//! memory (VmRSS / VmHWM), free disk space, core count.

use std::path::Path;
use std::process::Command;

/// Flushes dirty pages of every file system (`sync(1)`), so that one measurement's write-back
/// does not run into the next one's.
pub fn sync_all() {
    // A failure only makes the next figure noisier.
    let _ = Command::new("sync").status();
}

/// Drops the page cache (`sync; echo 3 > /proc/sys/vm/drop_caches`, needs root): the next read
/// of any file comes from the disk. Returns whether it worked.
pub fn drop_caches() -> bool {
    sync_all();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`), or `None`.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Resets this process's peak RSS (`VmHWM`) to its current RSS (`echo 5 > /proc/self/clear_refs`,
/// Linux ≥ 4.0). Returns whether it worked.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// Free bytes on the file system holding `path` (`df -Pk`), or `None` when unknown.
pub fn free_bytes(path: &Path) -> Option<u64> {
    let out = Command::new("df").arg("-Pk").arg(path).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().nth(1)?;
    let kb: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    Some(kb * 1024)
}

/// Online CPUs.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU model name from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// Total RAM in bytes (`MemTotal`), or 0.
pub fn mem_total() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            let l = s.lines().find(|l| l.starts_with("MemTotal"))?;
            l.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// The file system type and device of `path` (`df -PT`), e.g. `ext4 /dev/vda`.
pub fn fs_type(path: &Path) -> String {
    Command::new("df")
        .arg("-PT")
        .arg(path)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            let line = text.lines().nth(1)?.to_string();
            let mut f = line.split_whitespace();
            let dev = f.next()?.to_string();
            let ty = f.next()?.to_string();
            Some(format!("{ty} {dev}"))
        })
        .unwrap_or_else(|| "unknown".to_string())
}
