//! Samples a process's memory from `/proc/PID/status` once a second.

use serde::Serialize;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// `VmRSS` and `VmHWM` (peak RSS as the kernel saw it), in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mem {
    pub rss_kb: u64,
    pub hwm_kb: u64,
}

/// Reads `VmRSS` and `VmHWM` out of a `/proc/PID/status` text.
pub fn parse_status(text: &str) -> Option<Mem> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Mem {
        rss_kb: field("VmRSS:")?,
        hwm_kb: field("VmHWM:")?,
    })
}

pub fn read(pid: u32) -> std::io::Result<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status(&text).ok_or_else(|| std::io::Error::other("no VmRSS/VmHWM in /proc/PID/status"))
}

/// User + system CPU time of `pid` in clock ticks, from `/proc/PID/stat` (fields 14, 15).
pub fn parse_stat_ticks(text: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// [`parse_stat_ticks`] plus the CPU of the process's exited and reaped children (fields
/// 16, 17): a server's finished workers (PostgreSQL's backends) stay counted in their parent.
pub fn parse_stat_ticks_with_children(text: &str) -> Option<u64> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum()
}

/// CPU seconds used so far by every process named `comm` on this machine, their exited
/// children included (e.g. `postgres`: the server and all its backends).
pub fn comm_cpu_seconds(comm: &str) -> Option<f64> {
    let mut total = 0u64;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        if !entry
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if parse_stat_comm(&text) == Some(comm) {
            found = true;
            total += parse_stat_ticks_with_children(&text).unwrap_or(0);
        }
    }
    found.then_some(total as f64 / TICKS_PER_SEC)
}

/// Linux's USER_HZ: `/proc/PID/stat` counts CPU time in hundredths of a second.
pub const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat_ticks(&text).map(|t| t as f64 / TICKS_PER_SEC)
}

/// Write calls and bytes a process has made, from `/proc/PID/io` (`syscw`, `write_bytes`):
/// machine-speed-independent counts of what the store writes per message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Io {
    pub write_syscalls: u64,
    /// Bytes sent to the storage layer (WAL and database file writes, not the page cache).
    pub write_bytes: u64,
}

pub fn parse_io(text: &str) -> Option<Io> {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    Some(Io {
        write_syscalls: field("syscw:")?,
        write_bytes: field("write_bytes:")?,
    })
}

/// `pid`'s write counts so far (needs the same user or CAP_SYS_PTRACE).
pub fn io(pid: u32) -> Option<Io> {
    parse_io(&std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?)
}

/// CPU seconds this process has used so far.
pub fn own_cpu_seconds() -> Option<f64> {
    cpu_seconds(std::process::id())
}

/// The thread name (`comm`) in a `/proc/PID/task/TID/stat` text.
pub fn parse_stat_comm(text: &str) -> Option<&str> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    text.get(open + 1..close)
}

/// CPU seconds used so far by this process's threads whose name starts with `prefix`
/// (tokio names its workers; the baseline server's are `baseline-server`).
pub fn own_threads_cpu_seconds(prefix: &str) -> Option<f64> {
    let mut total = 0u64;
    for entry in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if parse_stat_comm(&text).is_some_and(|c| c.starts_with(prefix)) {
            total += parse_stat_ticks(&text).unwrap_or(0);
        }
    }
    Some(total as f64 / TICKS_PER_SEC)
}

/// The 1-minute load average (other work on the machine skews results).
pub fn loadavg_1m() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// What the sampler saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RssReport {
    pub pid: u32,
    /// Highest `VmRSS` sampled, KiB.
    pub peak_rss_kb: u64,
    /// The last `VmHWM` read (the kernel's own peak), KiB.
    pub hwm_kb: u64,
    /// The last `VmRSS` read, KiB.
    pub last_rss_kb: u64,
    /// `(seconds since start, VmRSS KiB)`, one a second.
    pub samples: Vec<(f64, u64)>,
    /// CPU seconds (user + system) the process used while sampled.
    pub cpu_s: Option<f64>,
    /// Write calls and bytes the process made while sampled.
    pub io: Option<Io>,
    /// Set when the process could not be read (e.g. it exited).
    pub error: Option<String>,
}

impl RssReport {
    fn add(&mut self, t: f64, m: Mem) {
        self.peak_rss_kb = self.peak_rss_kb.max(m.rss_kb);
        self.hwm_kb = self.hwm_kb.max(m.hwm_kb);
        self.last_rss_kb = m.rss_kb;
        self.samples.push((t, m.rss_kb));
    }
}

/// A running sampler; [`RssSampler::finish`] stops it and takes a last sample.
pub struct RssSampler {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<RssReport>,
}

impl RssSampler {
    pub fn start(pid: u32) -> RssSampler {
        let (stop, mut stopped) = oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let start = Instant::now();
            let cpu0 = cpu_seconds(pid);
            let io0 = io(pid);
            let mut report = RssReport {
                pid,
                ..RssReport::default()
            };
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                let last = tokio::select! {
                    _ = tick.tick() => false,
                    _ = &mut stopped => true,
                };
                match read(pid) {
                    Ok(m) => report.add(start.elapsed().as_secs_f64(), m),
                    Err(e) => {
                        report
                            .error
                            .get_or_insert_with(|| format!("/proc/{pid}/status: {e}"));
                    }
                }
                if last {
                    if let (Some(a), Some(b)) = (cpu0, cpu_seconds(pid)) {
                        report.cpu_s = Some(((b - a) * 100.0).round() / 100.0);
                    }
                    if let (Some(a), Some(b)) = (io0, io(pid)) {
                        report.io = Some(Io {
                            write_syscalls: b.write_syscalls.saturating_sub(a.write_syscalls),
                            write_bytes: b.write_bytes.saturating_sub(a.write_bytes),
                        });
                    }
                    return report;
                }
            }
        });
        RssSampler { stop, handle }
    }

    pub async fn finish(self) -> RssReport {
        let _ = self.stop.send(());
        self.handle.await.unwrap_or_default()
    }
}

/// Starts a sampler when a pid was given.
pub fn maybe_start(pid: Option<u32>) -> Option<RssSampler> {
    pid.map(RssSampler::start)
}

pub async fn maybe_finish(s: Option<RssSampler>) -> Option<RssReport> {
    match s {
        Some(s) => Some(s.finish().await),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tweft\nUmask:\t0022\nState:\tS (sleeping)\nPid:\t4242\n\
VmPeak:\t 1234568 kB\nVmSize:\t 1200000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   65432 kB\n\
RssAnon:\t   60000 kB\nThreads:\t8\n";

    #[test]
    fn parses_proc_status() {
        assert_eq!(
            parse_status(STATUS),
            Some(Mem {
                rss_kb: 65432,
                hwm_kb: 81234
            })
        );
        // Kernel threads have no Vm* lines.
        assert_eq!(parse_status("Name:\tkthreadd\nState:\tS\n"), None);
    }

    #[test]
    fn parses_proc_io() {
        let text = "rchar: 10\nwchar: 20\nsyscr: 3\nsyscw: 4\nread_bytes: 0\nwrite_bytes: 8192\ncancelled_write_bytes: 0\n";
        assert_eq!(
            parse_io(text),
            Some(Io {
                write_syscalls: 4,
                write_bytes: 8192
            })
        );
        assert_eq!(parse_io("rchar: 1\n"), None);
        assert!(io(std::process::id()).is_some());
    }

    #[test]
    fn parses_proc_stat() {
        let stat = "4242 (weft serve) S 1 4242 4242 0 -1 4194560 1234 0 0 0 750 250 0 0 20 0 8 0 100 1000000 5000 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(1000));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks_with_children(stat), Some(1000));
        let parent = "7 (postgres) S 1 7 7 0 -1 4194560 1 0 0 0 10 5 300 200 20 0 1 0 100 1 5";
        assert_eq!(parse_stat_ticks_with_children(parent), Some(515));
        assert_eq!(parse_stat_ticks_with_children("8 (x) S 1"), None);
        let own = parse_stat_comm(&std::fs::read_to_string("/proc/self/stat").expect("stat"))
            .expect("comm")
            .to_string();
        assert!(comm_cpu_seconds(&own).is_some_and(|s| s >= 0.0));
        assert_eq!(comm_cpu_seconds("no such program here"), None);
        assert_eq!(parse_stat_comm(stat), Some("weft serve"));
        assert!(own_threads_cpu_seconds("").is_some_and(|s| s >= 0.0));
        assert!(own_cpu_seconds().is_some());
        assert!(loadavg_1m().is_some());
    }

    #[tokio::test]
    async fn samples_this_process() {
        let me = std::process::id();
        let m = read(me).expect("own /proc status");
        assert!(m.rss_kb > 0 && m.hwm_kb >= m.rss_kb / 2);
        let s = RssSampler::start(me);
        let r = s.finish().await;
        assert!(!r.samples.is_empty());
        assert!(r.peak_rss_kb > 0);
        assert!(r.error.is_none());
    }
}
