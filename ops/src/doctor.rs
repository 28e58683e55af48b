//! `weir doctor`: checks that this host can run a node well.
//!
//! Each check reports ok, warn or fail with a hint. The exit status is 1 only
//! when a check fails (the node could not run or could not keep its
//! guarantees); warnings are things that cost performance.
//!
//! Checks: kernel version, io_uring available, memlock limit and
//! CAP_IPC_LOCK against the registered-buffer memory (glommio registers
//! `io_memory` per executor; when it cannot lock that much it falls back to
//! unregistered buffers without saying so), O_DIRECT on each data dir,
//! filesystem type, free space, file-descriptor limit, clock source.

use crate::Ctx;
use crate::output::{Format, Table, human_bytes, print_json};
use anyhow::Result;
use serde_json::json;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Oldest kernel glommio runs on (io_uring features it needs).
const KERNEL_MIN: (u32, u32) = (5, 8);
/// File descriptors Kafka operators start from.
const NOFILE_RECOMMENDED: u64 = 100_000;
/// Free space below which a data dir gets a warning.
const FREE_BYTES_WARN: u64 = 1 << 30;
/// O_DIRECT block: writes and reads must be aligned to it.
const BLOCK_BYTES: usize = 4096;
/// io_uring rings per glommio executor (main, latency, poll), each of which
/// registers the executor's io_memory.
const GLOMMIO_RINGS: u64 = 3;
/// glommio's executor fails to start below this memlock limit.
const GLOMMIO_MEMLOCK_MIN_BYTES: u64 = 512 << 10;
/// CAP_IPC_LOCK's bit in the capability sets.
const CAP_IPC_LOCK: u32 = 14;

#[derive(clap::Args)]
pub struct DoctorArgs {
    /// Node config file (TOML, as `weir-node --config`): data dirs, shards
    /// and io memory are taken from it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory to check; repeatable (default: from --config, else ./weir-data).
    #[arg(long = "data-dir")]
    data_dirs: Vec<PathBuf>,
    /// Shards (executors) the node will run; 0: one per core.
    #[arg(long)]
    shards: Option<usize>,
    /// Registered io_uring buffer memory per shard.
    #[arg(long)]
    io_memory_bytes_per_shard: Option<u64>,
}

/// Returned when a check failed: the report is printed, exit status 1.
#[derive(Debug)]
pub struct ChecksFailed;

impl std::fmt::Display for ChecksFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("some checks failed")
    }
}

impl std::error::Error for ChecksFailed {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        }
    }
}

struct Check {
    name: String,
    status: Status,
    value: String,
    hint: String,
}

fn check(
    name: impl Into<String>,
    status: Status,
    value: impl Into<String>,
    hint: impl Into<String>,
) -> Check {
    Check { name: name.into(), status, value: value.into(), hint: hint.into() }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn check_kernel() -> Check {
    let release = kernel_release();
    match parse_kernel(&release) {
        Some(v) if v >= KERNEL_MIN => check("kernel", Status::Ok, release, ""),
        Some(_) => check(
            "kernel",
            Status::Fail,
            release,
            format!("glommio needs Linux {}.{} or newer", KERNEL_MIN.0, KERNEL_MIN.1),
        ),
        None => check("kernel", Status::Warn, release, "could not read the kernel version"),
    }
}

fn check_io_uring() -> Check {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    // io_uring_setup(2) with 1 entry: the fd proves the kernel serves it here
    // (seccomp profiles of container runtimes often refuse it).
    let mut params = [0u8; 120]; // struct io_uring_params
    // SAFETY: io_uring_setup writes at most sizeof(struct io_uring_params)
    // (120 bytes) into `params`, which lives across the call.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: closing the fd the syscall just returned to us.
        unsafe { libc::close(fd as i32) };
        let note =
            if disabled == 1 { " (io_uring_disabled=1: allowed for privileged)" } else { "" };
        return check("io_uring", Status::Ok, format!("available{note}"), "");
    }
    let err = std::io::Error::last_os_error();
    let hint = match err.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel was built without io_uring".to_string(),
        Some(libc::EPERM) => format!(
            "refused (kernel.io_uring_disabled={disabled}, or a seccomp profile); \
             set sysctl kernel.io_uring_disabled=0 or allow io_uring in the container"
        ),
        _ => "io_uring_setup failed".to_string(),
    };
    check("io_uring", Status::Fail, format!("unavailable: {err}"), hint)
}

fn has_cap_ipc_lock() -> Option<bool> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("CapEff:"))?;
    let caps = u64::from_str_radix(line["CapEff:".len()..].trim(), 16).ok()?;
    Some(caps & (1 << CAP_IPC_LOCK) != 0)
}

fn memlock_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one struct rlimit into `lim`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

fn nofile_limit() -> Option<u64> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one struct rlimit into `lim`.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Fail below glommio's minimum; ok with CAP_IPC_LOCK or a limit that
/// covers every registration; else a warning (the silent fallback).
fn memlock_status(cap: Option<bool>, limit: Option<u64>, needed: u64) -> Status {
    if limit.is_some_and(|l| l < GLOMMIO_MEMLOCK_MIN_BYTES) {
        Status::Fail
    } else if cap == Some(true) || limit.is_some_and(|l| l == libc::RLIM_INFINITY || l >= needed) {
        Status::Ok
    } else {
        Status::Warn
    }
}

fn check_memlock(shards: usize, io_memory: u64) -> Check {
    // glommio rounds io_memory up to 4 KiB (at least 64 KiB) and registers
    // the same buffer with each of its rings; the kernel charges every
    // registration to the user's locked memory unless it has CAP_IPC_LOCK.
    let per_shard = io_memory.div_ceil(4096).saturating_mul(4096).max(64 << 10);
    let needed = per_shard.saturating_mul(GLOMMIO_RINGS).saturating_mul(shards as u64);
    let cap = has_cap_ipc_lock();
    let limit = memlock_limit();
    let unlimited = limit == Some(libc::RLIM_INFINITY);
    let limit_text = match limit {
        Some(_) if unlimited => "unlimited".to_string(),
        Some(l) => human_bytes(l as f64),
        None => "unknown".to_string(),
    };
    let value = format!(
        "limit {limit_text}, CAP_IPC_LOCK {}, registers {} ({shards} shards x {GLOMMIO_RINGS} rings x {})",
        match cap {
            Some(true) => "yes",
            Some(false) => "no",
            None => "unknown",
        },
        human_bytes(needed as f64),
        human_bytes(per_shard as f64)
    );
    let status = memlock_status(cap, limit, needed);
    if status == Status::Fail {
        return check(
            "memlock",
            Status::Fail,
            value,
            "glommio refuses to start below a 512 KiB memlock limit: raise it \
             (LimitMEMLOCK= in the systemd unit, /etc/security/limits.conf)",
        );
    }
    if status == Status::Ok {
        check("memlock", Status::Ok, value, "")
    } else {
        check(
            "memlock",
            Status::Warn,
            value,
            "registering the buffers will fail and glommio silently falls back to \
             unregistered buffers (slower I/O): set LimitMEMLOCK=infinity in the systemd \
             unit, raise memlock in /etc/security/limits.conf, or grant CAP_IPC_LOCK",
        )
    }
}

fn check_nofile() -> Check {
    match nofile_limit() {
        Some(l) if l >= NOFILE_RECOMMENDED => {
            check("open files", Status::Ok, format!("limit {l}"), "")
        }
        Some(l) => check(
            "open files",
            Status::Warn,
            format!("limit {l}"),
            format!(
                "each segment holds files open; raise it to {NOFILE_RECOMMENDED} or more \
                 (LimitNOFILE= in the systemd unit, ulimit -n)"
            ),
        ),
        None => check("open files", Status::Warn, "unknown", "getrlimit failed"),
    }
}

fn check_clocksource() -> Check {
    let path = "/sys/devices/system/clocksource/clocksource0/current_clocksource";
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let s = s.trim().to_string();
            match s.as_str() {
                "tsc" | "kvm-clock" | "arch_sys_counter" => {
                    check("clock source", Status::Ok, s, "")
                }
                _ => check(
                    "clock source",
                    Status::Warn,
                    s,
                    "clock reads are slow with this source (every request is timed); prefer tsc",
                ),
            }
        }
        Err(e) => {
            check("clock source", Status::Warn, "unknown", format!("cannot read {path}: {e}"))
        }
    }
}

/// statfs of `path`: (filesystem magic, free bytes for unprivileged users).
fn statfs(path: &Path) -> std::io::Result<(i64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("path holds a NUL byte"))?;
    // SAFETY: an all-zero struct statfs is a valid value to be overwritten.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a struct statfs we own.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Ok((st.f_type as i64, (st.f_bavail as u64).saturating_mul(st.f_bsize as u64)))
}

fn fs_name(magic: i64) -> &'static str {
    match magic {
        0xEF53 => "ext4",
        0x5846_5342 => "xfs",
        0x9123_683E => "btrfs",
        0x0102_1994 => "tmpfs",
        0x794C_7630 => "overlayfs",
        0x2FC1_2FC1 => "zfs",
        0x6969 => "nfs",
        0x6573_5546 => "fuse",
        0x0102_1997 => "9p",
        0xF2F5_2010 => "f2fs",
        _ => "unknown",
    }
}

/// Writes a 4 KiB aligned block with O_DIRECT, reads it back and compares.
fn o_direct_roundtrip(dir: &Path) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let path = dir.join(format!(".weir-doctor-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(&path)?;
        // An aligned block inside a larger Vec: no unsafe allocation needed.
        let mut storage = vec![0u8; BLOCK_BYTES * 3];
        let at = storage.as_ptr().align_offset(BLOCK_BYTES);
        let (write_buf, read_buf) = storage[at..at + 2 * BLOCK_BYTES].split_at_mut(BLOCK_BYTES);
        for (i, b) in write_buf.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        file.write_all(write_buf)?;
        file.sync_data()?;
        file.seek(SeekFrom::Start(0))?;
        file.read_exact(read_buf)?;
        if read_buf != write_buf {
            return Err(std::io::Error::other("the block read back differs from the one written"));
        }
        Ok(())
    })();
    let _ = std::fs::remove_file(&path);
    result
}

fn check_dir(dir: &Path) -> Vec<Check> {
    let label = |what: &str| format!("{what} {}", dir.display());
    if !dir.is_dir() {
        return vec![check(
            label("data dir"),
            Status::Warn,
            "does not exist",
            "the node creates it; create it now to check O_DIRECT and the filesystem",
        )];
    }
    let mut out = Vec::new();
    match o_direct_roundtrip(dir) {
        Ok(()) => out.push(check(label("O_DIRECT"), Status::Ok, "4 KiB aligned write+read ok", "")),
        Err(e) => out.push(check(
            label("O_DIRECT"),
            Status::Fail,
            format!("failed: {e}"),
            "the node writes segments with O_DIRECT; use ext4 or xfs on a local disk",
        )),
    }
    match statfs(dir) {
        Ok((magic, free)) => {
            let name = fs_name(magic);
            let (status, hint) = match name {
                "ext4" | "xfs" => (Status::Ok, ""),
                "tmpfs" => (Status::Warn, "tmpfs is memory: data is lost on reboot"),
                _ => (Status::Warn, "ext4 or xfs on a local disk is what the node is tested on"),
            };
            out.push(check(label("filesystem"), status, format!("{name} (0x{magic:x})"), hint));
            let (status, hint) = if free >= FREE_BYTES_WARN {
                (Status::Ok, String::new())
            } else {
                (Status::Warn, "the node refuses appends below its min free bytes".to_string())
            };
            out.push(check(label("free space"), status, human_bytes(free as f64), hint));
        }
        Err(e) => {
            out.push(check(label("filesystem"), Status::Warn, format!("statfs failed: {e}"), ""))
        }
    }
    out
}

pub fn run(ctx: &Ctx, a: DoctorArgs) -> Result<()> {
    let config = match &a.config {
        Some(path) => weir_node::config::NodeConfig::load(path)?,
        None => weir_node::config::NodeConfig::default(),
    };
    let dirs = if !a.data_dirs.is_empty() {
        a.data_dirs.clone()
    } else if a.config.is_some() {
        config.data_dirs.clone()
    } else {
        vec![PathBuf::from("./weir-data")]
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let shards = match a.shards.unwrap_or(config.shards) {
        0 => cores,
        n => n,
    };
    let io_memory = a.io_memory_bytes_per_shard.unwrap_or(config.io_memory_bytes_per_shard as u64);
    let mut checks =
        vec![check_kernel(), check_io_uring(), check_memlock(shards, io_memory), check_nofile()];
    for d in &dirs {
        checks.extend(check_dir(d));
    }
    checks.push(check_clocksource());
    let worst = checks.iter().map(|c| c.status).max().unwrap_or(Status::Ok);
    match ctx.output {
        Format::Json => print_json(&json!({
            "ok": worst != Status::Fail,
            "checks": checks.iter().map(|c| json!({
                "name": c.name,
                "status": c.status.name().to_lowercase(),
                "value": c.value,
                "hint": (!c.hint.is_empty()).then_some(&c.hint),
            })).collect::<Vec<_>>(),
        })),
        Format::Table => {
            let mut t = Table::new(&["CHECK", "STATUS", "VALUE", "HINT"]);
            for c in &checks {
                t.row(vec![
                    c.name.clone(),
                    c.status.name().into(),
                    c.value.clone(),
                    c.hint.clone(),
                ]);
            }
            print!("{}", t.render());
        }
    }
    if worst == Status::Fail {
        return Err(ChecksFailed.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memlock_without_the_capability_must_cover_every_ring() {
        let mib = 1u64 << 20;
        // The common default: 8 MiB, no CAP_IPC_LOCK, 2 shards x 3 rings x 16 MiB.
        assert_eq!(memlock_status(Some(false), Some(8 * mib), 96 * mib), Status::Warn);
        assert_eq!(memlock_status(Some(true), Some(8 * mib), 96 * mib), Status::Ok);
        assert_eq!(memlock_status(Some(false), Some(libc::RLIM_INFINITY), 96 * mib), Status::Ok);
        assert_eq!(memlock_status(Some(false), Some(128 * mib), 96 * mib), Status::Ok);
        assert_eq!(memlock_status(Some(true), Some(64 << 10), 96 * mib), Status::Fail);
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(super::parse_kernel("6.8.0-45-generic"), Some((6, 8)));
        assert_eq!(super::parse_kernel("5.15.167.4-microsoft-standard-WSL2"), Some((5, 15)));
        assert_eq!(super::parse_kernel("garbage"), None);
    }
}
