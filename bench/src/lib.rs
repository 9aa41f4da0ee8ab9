//! Helpers shared by the benchmark binaries (`loadgen`, `ceiling-echo`).

pub mod http1;
pub mod pusher;

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
