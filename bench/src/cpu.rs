//! CPU accounting from `/proc`: the CPU seconds of named processes (the servers under
//! test, their engines) and of this process over a measurement, and the machine's busy
//! share meanwhile.

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};
use tokio::time::Instant;

use crate::stats::{round1, round2};

/// The processes a run reports on.
pub struct Cpu {
    names: Vec<String>,
    pids: Vec<u32>,
    /// Clock ticks per second.
    tck: f64,
    /// This process's name in the report.
    own_name: String,
}

/// The counters at the start of a measurement.
pub struct CpuMark {
    per: Vec<u64>,
    own: u64,
    busy: u64,
    at: Instant,
}

impl Cpu {
    /// Parses `name=PID,...` (empty: no process); this process is reported as `own_name`.
    pub fn parse(spec: &str, own_name: &str) -> Result<Self> {
        let mut names = Vec::new();
        let mut pids = Vec::new();
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            let (n, p) = item
                .split_once('=')
                .ok_or_else(|| anyhow!("--pids: expected name=PID, got {item}"))?;
            names.push(n.to_string());
            pids.push(p.parse().with_context(|| format!("--pids: bad pid {p}"))?);
        }
        // SAFETY: sysconf has no preconditions.
        let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok(Self {
            names,
            pids,
            tck,
            own_name: own_name.to_string(),
        })
    }

    /// User + system clock ticks of `pid` so far (0 when it cannot be read).
    fn ticks(pid: u32) -> u64 {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return 0;
        };
        let Some(i) = s.rfind(')') else { return 0 };
        let f: Vec<&str> = s[i + 2..].split_whitespace().collect();
        // After ") ": state is field 0, utime 11, stime 12.
        let g = |k: usize| f.get(k).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        g(11) + g(12)
    }

    /// The machine's busy clock ticks so far, all cores.
    fn busy() -> u64 {
        let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = s.lines().next().unwrap_or("");
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal
        let g = |k: usize| v.get(k).copied().unwrap_or(0);
        g(0) + g(1) + g(2) + g(5) + g(6) + g(7)
    }

    /// Starts a measurement.
    pub fn mark(&self) -> CpuMark {
        let own = Self::ticks(std::process::id());
        CpuMark {
            per: self.pids.iter().map(|&p| Self::ticks(p)).collect(),
            own,
            busy: Self::busy(),
            at: Instant::now(),
        }
    }

    /// Waits until the watched processes together use less than 10 % of one core over
    /// two consecutive 250 ms windows (work left behind by the setup, such as registry
    /// writes, has ended), at most `max`. Returns the seconds waited.
    pub async fn settle(&self, max: Duration) -> f64 {
        let t0 = Instant::now();
        if self.pids.is_empty() {
            return 0.0;
        }
        let sum = || self.pids.iter().map(|&p| Self::ticks(p)).sum::<u64>();
        let mut prev = sum();
        let mut quiet = 0;
        while t0.elapsed() < max {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = sum();
            if ((now - prev) as f64) / self.tck < 0.025 {
                quiet += 1;
                if quiet >= 2 {
                    break;
                }
            } else {
                quiet = 0;
            }
            prev = now;
        }
        round1(t0.elapsed().as_secs_f64())
    }

    /// CPU seconds per process, our own, and the machine's busy share since `m`:
    /// `{"cpu_s": {NAME: s, ...}, "wall_s": s, "machine_busy_pct": pct}`.
    pub fn since(&self, m: &CpuMark) -> Value {
        let now = self.mark();
        let mut per = serde_json::Map::new();
        for (i, n) in self.names.iter().enumerate() {
            per.insert(
                n.clone(),
                json!(round2(
                    (now.per[i].saturating_sub(m.per[i])) as f64 / self.tck
                )),
            );
        }
        let own = now.own.saturating_sub(m.own);
        per.insert(self.own_name.clone(), json!(round2(own as f64 / self.tck)));
        let wall = now.at.duration_since(m.at).as_secs_f64().max(1e-9);
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        json!({
            "cpu_s": per,
            "wall_s": round2(wall),
            "machine_busy_pct": round1(100.0 * (now.busy.saturating_sub(m.busy)) as f64 / self.tck / wall / ncpu),
        })
    }
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` writes them.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_specs() {
        let own = std::process::id();
        let cpu = Cpu::parse(&format!("me={own}"), "bench").unwrap();
        assert_eq!(cpu.names, ["me"]);
        let v = cpu.since(&cpu.mark());
        assert!(v["cpu_s"]["me"].is_number());
        assert!(v["cpu_s"]["bench"].is_number());
        assert!(Cpu::parse("", "bench").unwrap().pids.is_empty());
        assert!(Cpu::parse("x", "bench").is_err());
        assert!(Cpu::parse("x=y", "bench").is_err());
    }
}
