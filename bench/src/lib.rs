//! Helpers shared by the benchmark binaries (`loadgen`, `xnode`, `ceiling-echo`,
//! `fn-backend`): the WebSocket client ([`ws_client`]), a keep-alive HTTP/1.1 client
//! ([`http1`]) and Pusher request signing ([`pusher`]), fan-out delivery accounting
//! ([`fanout`]), latency histograms ([`stats`]), CPU accounting ([`cpu`]) and the JSON
//! lines the binaries print ([`jsonl`]).

use std::future::Future;
use std::time::Duration;

pub mod cpu;
pub mod fanout;
pub mod http1;
pub mod jsonl;
pub mod pusher;
pub mod stats;
pub mod ws_client;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. Returns the new soft limit.
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(lim.rlim_cur)
    }
}

// The command line of a binary with subcommands: `--threads` and the subcommand. (No doc
// comment: clap would make it the binary's summary.)
#[derive(clap::Parser)]
struct Cli<C: clap::Subcommand> {
    /// Tokio worker threads (default: one per core).
    #[arg(long, global = true)]
    threads: Option<usize>,
    #[command(subcommand)]
    cmd: C,
}

/// The `main` of a binary with subcommands: parses the command line (`about` is the
/// summary its help starts with; `--threads` sets the runtime's workers), raises the
/// open-files limit, runs `run(subcommand, open-files limit)` and exits with the code it
/// returns, without waiting for a blocking stdin reader or lingering tasks.
pub fn main<C, F, Fut>(about: &'static str, run: F) -> !
where
    C: clap::Subcommand,
    F: FnOnce(C, u64) -> Fut,
    Fut: Future<Output = i32>,
{
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::<C>::command().about(about).get_matches();
    let cli = Cli::<C>::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let nofile = raise_nofile_limit().unwrap_or(1024);
    run_and_exit(cli.threads, run(cli.cmd, nofile))
}

/// Runs `main` on a multi-thread runtime with `threads` workers (default: one per core),
/// then exits the process with the code it returned, without waiting for a blocking
/// stdin reader or lingering tasks.
fn run_and_exit(threads: Option<usize>, main: impl Future<Output = i32>) -> ! {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    rt.enable_all();
    if let Some(n) = threads {
        rt.worker_threads(n);
    }
    let rt = rt.build().expect("tokio runtime");
    let code = rt.block_on(main);
    rt.shutdown_timeout(Duration::from_millis(200));
    std::process::exit(code);
}

/// `needle` occurs in `hay`.
pub fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A non-empty run of ASCII digits as a number (no sign, at most 19 digits: no overflow).
pub fn parse_decimal(d: &[u8]) -> Option<u64> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    d.iter().try_fold(0u64, |v, &c| {
        c.is_ascii_digit().then(|| v * 10 + u64::from(c - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"42"), Some(42));
        assert_eq!(parse_decimal(b"0000000042"), Some(42));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"4a"), None);
        assert_eq!(parse_decimal(b"99999999999999999999"), None);
    }

    #[test]
    fn finds_a_needle() {
        assert!(contains(b"{\"joined\":\"g\"}", b"\"joined\""));
        assert!(!contains(b"join", b"joined"));
    }
}
