//! CPU time and disk bytes of the broker process, from `/proc`.
//!
//! The broker is given by pid (`--node-pid`) or found from its listening
//! port: `/proc/net/tcp{,6}` maps the port to a socket inode, and the process
//! holding that inode in `/proc/*/fd` is the broker. Samples add up the process
//! and all its descendants, so a launcher (`weir dev`) that forks the node and
//! the controller is measured as a whole.

use std::collections::HashMap;
use std::fs;

/// One reading of a process tree's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcSample {
    /// User + system CPU seconds, summed over the tree.
    pub cpu_s: f64,
    /// Bytes the tree caused to be sent to the storage layer (`write_bytes`).
    pub write_bytes: u64,
    /// Bytes the tree caused to be fetched from the storage layer (`read_bytes`).
    pub read_bytes: u64,
    /// Seconds the tree's threads were runnable but waited for a CPU (the
    /// run-queue delay of `/proc/PID/task/TID/schedstat`). Near `cpu_s` or
    /// above it, the machine's cores, not the process, set the pace.
    pub cpu_wait_s: f64,
}

impl ProcSample {
    /// Counter growth from `earlier` to `self` (saturating: processes may exit).
    pub fn since(&self, earlier: &ProcSample) -> ProcSample {
        ProcSample {
            cpu_s: (self.cpu_s - earlier.cpu_s).max(0.0),
            write_bytes: self.write_bytes.saturating_sub(earlier.write_bytes),
            read_bytes: self.read_bytes.saturating_sub(earlier.read_bytes),
            cpu_wait_s: (self.cpu_wait_s - earlier.cpu_wait_s).max(0.0),
        }
    }
}

fn clock_ticks_per_s() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// `(ppid, utime + stime in ticks)` from `/proc/PID/stat`.
fn read_stat(pid: u32) -> Option<(u32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&s)
}

/// Parses a `/proc/PID/stat` line: the fields after the command name (which
/// may itself hold spaces and parentheses) start with the state (field 3).
pub fn parse_stat(s: &str) -> Option<(u32, u64)> {
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] = state (3), f[1] = ppid (4), f[11] = utime (14), f[12] = stime (15).
    let ppid = f.get(1)?.parse().ok()?;
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, utime + stime))
}

/// `(read_bytes, write_bytes)` from `/proc/PID/io`.
fn read_io(pid: u32) -> Option<(u64, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    parse_io(&s)
}

pub fn parse_io(s: &str) -> Option<(u64, u64)> {
    let mut read = None;
    let mut write = None;
    for line in s.lines() {
        if let Some(v) = line.strip_prefix("read_bytes:") {
            read = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("write_bytes:") {
            write = v.trim().parse().ok();
        }
    }
    Some((read?, write?))
}

/// Run-queue delay in ns of the thread whose `schedstat` line this is:
/// `<ns on CPU> <ns waiting for a CPU> <time slices>`.
pub fn parse_schedstat_wait_ns(s: &str) -> Option<u64> {
    s.split_whitespace().nth(1)?.parse().ok()
}

/// Run-queue delay summed over the process's live threads, in seconds.
fn read_cpu_wait_s(pid: u32) -> f64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return 0.0 };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| parse_schedstat_wait_ns(&s))
        .sum();
    ns as f64 / 1e9
}

fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// The pid and all its descendants.
pub fn process_tree(root: u32) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in all_pids() {
        if let Some((ppid, _)) = read_stat(pid) {
            children.entry(ppid).or_default().push(pid);
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        if let Some(c) = children.get(&out[i]) {
            out.extend(c.iter().copied().filter(|p| *p != root));
        }
        i += 1;
    }
    out
}

/// The state letter of a `/proc/PID/stat` line (field 3: R, S, D, Z, ...).
pub fn parse_state(s: &str) -> Option<char> {
    s[s.rfind(')')? + 1..].split_whitespace().next()?.chars().next()
}

/// Samples the process tree rooted at `pid`; `None` when the root is gone,
/// or has exited and waits to be reaped (a zombie: a broker started by a
/// parent that has not yet waited for it would otherwise look alive forever).
pub fn sample(pid: u32) -> Option<ProcSample> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    if matches!(parse_state(&stat), Some('Z' | 'X') | None) {
        return None;
    }
    let ticks = clock_ticks_per_s();
    let mut s = ProcSample::default();
    for p in process_tree(pid) {
        if let Some((_, t)) = read_stat(p) {
            s.cpu_s += t as f64 / ticks;
        }
        if let Some((r, w)) = read_io(p) {
            s.read_bytes += r;
            s.write_bytes += w;
        }
        s.cpu_wait_s += read_cpu_wait_s(p);
    }
    Some(s)
}

/// Socket inodes listening on `port` (TCP state 0A), from `/proc/net/tcp{,6}`.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(s) = fs::read_to_string(table) else { continue };
        out.extend(parse_listening_inodes(&s, port));
    }
    out
}

pub fn parse_listening_inodes(table: &str, port: u16) -> Vec<u64> {
    let mut out = Vec::new();
    for line in table.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let (Some(local), Some(st), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
            continue;
        };
        let Some(p) = local.rsplit(':').next().and_then(|h| u16::from_str_radix(h, 16).ok()) else {
            continue;
        };
        if p == port
            && *st == "0A"
            && let Ok(i) = inode.parse()
        {
            out.push(i);
        }
    }
    out
}

/// The process that listens on TCP `port` on this machine, if it can be seen.
pub fn find_pid_by_port(port: u16) -> Option<u32> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut found: Vec<u32> = Vec::new();
    for pid in all_pids() {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        for fd in fds.flatten() {
            if let Ok(link) = fs::read_link(fd.path())
                && wanted.iter().any(|w| link.as_os_str() == w.as_str())
            {
                found.push(pid);
                break;
            }
        }
    }
    // With fd inheritance several processes may hold the socket: take the
    // outermost one, so the sample covers the whole tree.
    found.iter().copied().find(|p| read_stat(*p).is_none_or(|(pp, _)| !found.contains(&pp)))
}

/// Total memory of this machine in bytes (`MemTotal` in /proc/meminfo).
pub fn mem_total_bytes() -> Option<u64> {
    let s = fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_command_name() {
        let s = "1234 (we ir) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0 1 2 3";
        assert_eq!(parse_stat(s), Some((1, 300)));
        assert_eq!(parse_state(s), Some('S'));
    }

    #[test]
    fn io_fields() {
        let s = "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 4096\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io(s), Some((4096, 8192)));
    }

    #[test]
    fn schedstat_run_queue_delay() {
        assert_eq!(parse_schedstat_wait_ns("2570000000 3590000000 22864\n"), Some(3_590_000_000));
        assert_eq!(parse_schedstat_wait_ns("12"), None);
    }

    #[test]
    fn tcp_table() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5555 1 0 100 0 0 10 0\n   1: 0100007F:2384 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 6666 1 0 100 0 0 10 0\n";
        assert_eq!(parse_listening_inodes(t, 9092), vec![5555]);
    }

    #[test]
    fn exited_child_is_gone_before_it_is_reaped() {
        let mut child = std::process::Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        let stat = || fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while parse_state(&stat()) != Some('Z') && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(parse_state(&stat()), Some('Z'), "not reaped yet, so a zombie");
        assert_eq!(sample(pid), None);
        child.wait().expect("reap");
    }

    #[test]
    fn own_process_is_sampled() {
        let s = sample(std::process::id()).expect("self");
        assert!(s.cpu_s >= 0.0);
    }
}
