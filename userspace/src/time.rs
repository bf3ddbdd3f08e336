//! Clocks and durations.
//!
//! The kernel stamps flows and samples with `CLOCK_BOOTTIME` (it keeps
//! counting through suspend and is never set back); people and the database
//! use wall-clock Unix time. [`Clock`] converts between them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

fn clock_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid out-pointer.
    unsafe { libc::clock_gettime(id, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Nanoseconds on the kernel's boot clock (`bpf_ktime_get_boot_ns`).
pub fn boot_ns() -> u64 {
    clock_ns(libc::CLOCK_BOOTTIME)
}

/// Nanoseconds on the monotonic clock (the flows' coarse timestamps).
pub fn mono_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

/// Nanoseconds since the Unix epoch.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

pub fn unix_secs() -> u64 {
    unix_ns() / 1_000_000_000
}

/// Converts boot-clock stamps to Unix time, as of when it was made.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    boot_offset_ns: i128,
    mono_offset_ns: i128,
}

impl Clock {
    pub fn now() -> Self {
        let unix = unix_ns() as i128;
        Clock {
            boot_offset_ns: unix - boot_ns() as i128,
            mono_offset_ns: unix - mono_ns() as i128,
        }
    }

    /// Samples' stamps (`bpf_ktime_get_boot_ns`) to Unix time.
    pub fn boot_to_unix_ns(&self, boot: u64) -> u64 {
        (boot as i128 + self.boot_offset_ns).max(0) as u64
    }

    /// Flows' stamps (`bpf_ktime_get_coarse_ns`, monotonic) to Unix time.
    pub fn mono_to_unix_ns(&self, mono: u64) -> u64 {
        (mono as i128 + self.mono_offset_ns).max(0) as u64
    }
}

/// Parses `30s`, `20m`, `1h`, `7d`, `2w` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 20m, 1h, 7d)"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 7 * 86400,
        _ => {
            return Err(format!(
                "`{s}` has an unknown unit `{unit}` (use s, m, h, d or w)"
            ));
        }
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("`{s}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20m").unwrap(), Duration::from_secs(1200));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604800));
        assert_eq!(parse_duration("45").unwrap(), Duration::from_secs(45));
        assert!(parse_duration("5x").unwrap_err().contains("unknown unit"));
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn boot_clock_maps_to_now() {
        let c = Clock::now();
        let diff = c.boot_to_unix_ns(boot_ns()) as i128 - unix_ns() as i128;
        assert!(diff.abs() < 1_000_000_000, "{diff}");
        let diff = c.mono_to_unix_ns(mono_ns()) as i128 - unix_ns() as i128;
        assert!(diff.abs() < 1_000_000_000, "{diff}");
    }
}
