//! This machine: its cores, the limits and CPU affinity of processes, and the CPU time and memory
//! that /proc reports.

use std::time::Duration;

/// Number of cores this process may use.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pin the calling thread (and the threads it starts later) to one CPU.
pub fn pin_to(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET and sched_setaffinity only touch it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            eprintln!("mediator-bench: cannot pin to CPU {cpu}");
        }
    }
}

/// Lift the soft descriptor limit to the hard one (children inherit it); returns the new limit.
pub fn raise_nofile() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Clock ticks of /proc as a duration.
fn ticks(n: u64) -> Duration {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_micros(n * 1_000_000 / hz)
}

/// User + system CPU time of a process, from its /proc/PID/stat.
fn cpu_of_stat(stat: &str) -> Duration {
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15 (1-based).
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    ticks(fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap())
}

/// User + system CPU time of process `pid` so far.
pub fn process_cpu(pid: u32) -> Duration {
    cpu_of_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap())
}

/// User + system CPU time of this process so far.
pub fn own_cpu() -> Duration {
    cpu_of_stat(&std::fs::read_to_string("/proc/self/stat").unwrap())
}

/// CPU time all processes spent busy (user, nice, system, irq, softirq, steal), from /proc/stat.
pub fn machine_busy() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap();
    let fields: Vec<u64> = stat
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect();
    ticks(fields[0] + fields[1] + fields[2] + fields[5] + fields[6] + fields[7])
}

/// The value in KiB of a "Name:  N kB" line of a /proc text file, if it has one.
fn kib_field(text: &str, field: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A memory figure of process `pid` (a field of /proc/PID/status such as `VmRSS:`), in KiB.
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    kib_field(&status, field).unwrap()
}

/// Kernel slab memory (socket structures live there), from /proc/meminfo.
pub fn slab_kib() -> u64 {
    kib_field(&std::fs::read_to_string("/proc/meminfo").unwrap(), "Slab:").unwrap_or(0)
}
