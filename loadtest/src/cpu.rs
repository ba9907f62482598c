//! Server CPU per thread from /proc/<pid>/task/*/stat, as % of one core.

use std::collections::HashMap;
use std::fs;
use std::time::Instant;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct ThreadCpu {
    pub pid: u32,
    pub tid: u32,
    pub name: String,
    /// Percent of one core over the measured interval.
    pub percent: f64,
}

pub struct Snapshot {
    at: Instant,
    /// (pid, tid) → (name, utime + stime ticks)
    ticks: HashMap<(u32, u32), (String, u64)>,
}

/// The pids to watch: those given, or the one listening on `port`, plus their children
/// (mediasoup runs its workers as child processes).
pub fn server_pids(given: &[u32], port: Option<u16>) -> Vec<u32> {
    let mut pids: Vec<u32> = given.to_vec();
    if pids.is_empty() {
        if let Some(pid) = port.and_then(listening_pid) {
            pids.push(pid);
        }
    }
    let parents = pids.clone();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Some((_, fields)) = read_stat(&format!("/proc/{pid}/stat")) {
            let ppid = fields.get(1).and_then(|f| f.parse::<u32>().ok());
            if ppid.is_some_and(|p| parents.contains(&p)) && !pids.contains(&pid) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// The pid owning the TCP socket listening on `port` (needs permission to read its fds).
fn listening_pid(port: u16) -> Option<u32> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let local_port = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if local_port == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(link) = fs::read_link(fd.path()) {
                if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// (comm, fields after comm) of a stat file; comm may contain spaces.
fn read_stat(path: &str) -> Option<(String, Vec<String>)> {
    let text = fs::read_to_string(path).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text[open + 1..close].to_owned();
    let rest = text[close + 1..]
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Some((name, rest))
}

pub fn snapshot(pids: &[u32]) -> Snapshot {
    let mut ticks = HashMap::new();
    for &pid in pids {
        for entry in fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            if let Some((name, f)) = read_stat(&format!("/proc/{pid}/task/{tid}/stat")) {
                // After comm: state is f[0]; utime and stime are stat fields 14 and 15.
                let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0);
                let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
                ticks.insert((pid, tid), (name, utime + stime));
            }
        }
    }
    Snapshot {
        at: Instant::now(),
        ticks,
    }
}

/// Per-thread CPU between two snapshots: sfu-worker threads always, others above 1%.
pub fn usage(before: &Snapshot, after: &Snapshot) -> Vec<ThreadCpu> {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let secs = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let mut out: Vec<ThreadCpu> = after
        .ticks
        .iter()
        .filter_map(|(&(pid, tid), (name, t1))| {
            let t0 = before.ticks.get(&(pid, tid)).map_or(0, |(_, t)| *t);
            let percent = (t1.saturating_sub(t0)) as f64 / hz / secs * 100.0;
            let keep = name.starts_with("sfu-worker") || percent >= 1.0;
            keep.then(|| ThreadCpu {
                pid,
                tid,
                name: name.clone(),
                percent: (percent * 10.0).round() / 10.0,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.tid.cmp(&b.tid)));
    out
}
