//! CPU time per benchmark point, by process: the benchmark itself and the processes named in
//! `BENCH_WATCH` (`name=pid,name=pid`), read from Linux's `/proc`. When client, server and
//! provider share a machine, this says which of them a point's time went to.

use std::time::Instant;

/// Clock ticks per second of the times in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

/// The processes a benchmark watches; empty (and silent) without `BENCH_WATCH`.
pub struct CpuWatch {
    procs: Vec<(String, String)>,
}

/// CPU seconds of each watched process at one moment.
pub struct Sample {
    at: Instant,
    seconds: Vec<f64>,
}

impl CpuWatch {
    /// The benchmark itself (`client`) and the processes `BENCH_WATCH` names; none when unset.
    pub fn from_env() -> Self {
        let Ok(watch) = std::env::var("BENCH_WATCH") else {
            return Self { procs: Vec::new() };
        };
        let mut procs = vec![("client".to_owned(), "/proc/self/stat".to_owned())];
        for entry in watch.split(',').filter(|e| !e.is_empty()) {
            let (name, pid) = entry
                .split_once('=')
                .unwrap_or_else(|| panic!("BENCH_WATCH entry {entry:?} is not name=pid"));
            procs.push((name.to_owned(), format!("/proc/{pid}/stat")));
        }
        Self { procs }
    }

    /// The CPU seconds (user and system) each watched process has used so far.
    pub fn sample(&self) -> Sample {
        Sample {
            at: Instant::now(),
            seconds: self
                .procs
                .iter()
                .map(|(_, path)| cpu_seconds(path))
                .collect(),
        }
    }

    /// Prints `cpu_<point>_<name> <seconds> s/GiB` per process: CPU time used since `before`
    /// per GiB moved, the point having moved `mib_per_s` since then.
    pub fn report(&self, point: &str, before: &Sample, mib_per_s: f64) {
        let after = self.sample();
        let gib = mib_per_s * after.at.duration_since(before.at).as_secs_f64() / 1024.0;
        for (i, (name, _)) in self.procs.iter().enumerate() {
            let used = after.seconds[i] - before.seconds[i];
            println!("cpu_{point}_{name} {:.3} s/GiB", used / gib);
        }
    }
}

/// User plus system time of a process from its `stat` file (fields 14 and 15).
fn cpu_seconds(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // The command name (field 2) may hold spaces; the fields after it are counted from ')'.
    let rest = &stat[stat.rfind(')').expect("a stat line") + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields[i].parse::<f64>().expect("a tick count");
    (ticks(11) + ticks(12)) / TICKS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = cpu_seconds("/proc/self/stat");
        let start = Instant::now();
        let mut x = 0u64;
        while cpu_seconds("/proc/self/stat") - before < 0.05 && start.elapsed().as_secs() < 10 {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let used = cpu_seconds("/proc/self/stat") - before;
        assert!(used >= 0.05, "{used} s of CPU counted for 10 s of spinning");
    }
}
