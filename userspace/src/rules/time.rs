//! The router's local time: a POSIX TZ string (OpenWrt's `/etc/TZ`, e.g.
//! `CET-1CEST,M3.5.0,M10.5.0/3`) turned into offsets with `tz-rs`, and the
//! calendar arithmetic the schedules need (local date of an instant, the
//! instant of a local wall-clock time on a date, across DST gaps and folds).
//!
//! Every function takes the instant as a parameter: nothing here reads the
//! system clock, so tests (and the daemon after boot) control time.

use std::fmt;

use tz::{TimeZone, TimeZoneSettings};

/// Seconds since the Unix epoch (UTC).
pub type UnixTime = i64;

/// Before this instant (2024-01-01T00:00:00Z) the router's clock is taken as
/// not set yet: routers without an RTC boot at their build date or at 1970
/// until NTP answers.
pub const CLOCK_SET_AFTER: UnixTime = 1_704_067_200;

/// True if `now` is plausibly a real wall-clock time.
pub fn clock_is_set(now: UnixTime) -> bool {
    now >= CLOCK_SET_AFTER
}

/// A local time zone from a POSIX TZ string.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalZone {
    zone: TimeZone,
    posix: String,
}

/// A TZ string that did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneError(pub String);

impl fmt::Display for ZoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for ZoneError {}

impl LocalZone {
    /// Parses a POSIX TZ string (`UTC0`, `EST5EDT,M3.2.0,M11.1.0`,
    /// `<+0330>-3:30`). Never reads zoneinfo files: on OpenWrt there are
    /// usually none, and a host's files must not change what a string means.
    pub fn from_posix(tz: &str) -> Result<Self, ZoneError> {
        let tz = tz.trim();
        if tz.len() > 128 {
            return Err(ZoneError("TZ string longer than 128 characters".into()));
        }
        if tz.starts_with(':') || tz.starts_with('/') {
            return Err(ZoneError(format!(
                "'{tz}' names a zoneinfo file; a POSIX TZ rule like CET-1CEST,M3.5.0,M10.5.0/3 is needed"
            )));
        }
        let settings = TimeZoneSettings::new(&[], |_| Err("zoneinfo files are not used".into()));
        let zone = settings
            .parse_posix_tz(tz)
            .map_err(|e| ZoneError(format!("'{tz}' is not a POSIX TZ string: {e}")))?;
        Ok(LocalZone {
            zone,
            posix: tz.to_owned(),
        })
    }

    /// Reads OpenWrt's `/etc/TZ` (or another file holding one TZ string).
    pub fn from_file(path: &std::path::Path) -> Result<Self, ZoneError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ZoneError(format!("{}: {e}", path.display())))?;
        Self::from_posix(text.lines().next().unwrap_or(""))
    }

    pub fn utc() -> Self {
        LocalZone {
            zone: TimeZone::utc(),
            posix: "UTC0".into(),
        }
    }

    /// The TZ string this zone was made from.
    pub fn posix(&self) -> &str {
        &self.posix
    }

    /// Seconds east of UTC in force at `t`.
    pub fn offset(&self, t: UnixTime) -> i64 {
        self.zone
            .find_local_time_type(t)
            .map(|l| i64::from(l.ut_offset()))
            .unwrap_or(0)
    }

    /// The local calendar date and wall-clock time at `t`.
    pub fn local(&self, t: UnixTime) -> LocalTime {
        let local = t.saturating_add(self.offset(t));
        let day = local.div_euclid(86_400);
        let secs = local.rem_euclid(86_400);
        LocalTime {
            date: Date(day),
            minute_of_day: (secs / 60) as u32,
            second: (secs % 60) as u32,
        }
    }

    /// The instant at which the local clock shows `minute_of_day` (0..1440)
    /// on `date`. In a fold (clocks going back) the first such instant; in a
    /// gap (clocks going forward, the time never shows) the first valid
    /// instant after it, i.e. the transition itself — a window starting at
    /// 02:30 on the spring-forward night starts at 03:00.
    pub fn instant(&self, date: Date, minute_of_day: u32) -> UnixTime {
        let local = date.0 * 86_400 + i64::from(minute_of_day) * 60;
        // Offsets a day either side bracket any transition near `local`
        // (real zones change at most twice a year).
        let before = self.offset(local - 86_400 - 14 * 3600);
        let after = self.offset(local + 86_400 + 14 * 3600);
        let mut candidates = [local - before, local - after];
        candidates.sort_unstable();
        for u in candidates {
            if u + self.offset(u) == local {
                return u;
            }
        }
        // A gap: `local` is skipped. The clock jumps at the transition, the
        // one instant in [local - after, local - before] where the offset
        // changes from `before` to `after`; find it by bisection.
        let (mut lo, mut hi) = (local - after.max(before), local - after.min(before));
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if self.offset(mid) == self.offset(lo) {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        hi
    }

    /// `2026-11-26 07:00` in local time.
    pub fn format(&self, t: UnixTime) -> String {
        let l = self.local(t);
        let (y, m, d) = l.date.ymd();
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}",
            l.minute_of_day / 60,
            l.minute_of_day % 60
        )
    }

    /// `07:00` if `t` is within a day after `now`, else the full date.
    pub fn format_near(&self, t: UnixTime, now: UnixTime) -> String {
        if t >= now && t - now < 86_400 {
            let l = self.local(t);
            format!("{:02}:{:02}", l.minute_of_day / 60, l.minute_of_day % 60)
        } else {
            self.format(t)
        }
    }
}

/// A local calendar date, as days since 1970-01-01.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Date(pub i64);

impl Date {
    /// The date for a year, month (1-12) and day (1-31); `None` if invalid.
    pub fn from_ymd(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return None;
        }
        // Howard Hinnant's days_from_civil.
        let y = i64::from(year) - i64::from(month <= 2);
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let m = i64::from(month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        Some(Date(era * 146_097 + doe - 719_468))
    }

    /// (year, month 1-12, day 1-31).
    pub fn ymd(self) -> (i32, u32, u32) {
        let z = self.0 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let y = yoe + era * 400 + i64::from(m <= 2);
        (y as i32, m, d)
    }

    /// Day of the week, Monday = 0 … Sunday = 6.
    pub fn weekday(self) -> usize {
        // 1970-01-01 was a Thursday.
        (self.0 + 3).rem_euclid(7) as usize
    }

    pub fn add_days(self, days: i64) -> Date {
        Date(self.0 + days)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// A local date and wall-clock time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub date: Date,
    /// Minutes since local midnight, 0..1440.
    pub minute_of_day: u32,
    pub second: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    const CET: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

    fn utc(y: i32, mo: u32, d: u32, h: i64, mi: i64) -> UnixTime {
        Date::from_ymd(y, mo, d).unwrap().0 * 86_400 + h * 3600 + mi * 60
    }

    #[test]
    fn calendar_round_trips_and_weekdays() {
        for day in [-800_000i64, -1, 0, 1, 59, 365, 11_016, 20_000, 2_932_896] {
            let (y, m, d) = Date(day).ymd();
            assert_eq!(Date::from_ymd(y, m, d), Some(Date(day)), "{day}");
        }
        assert_eq!(Date::from_ymd(1970, 1, 1), Some(Date(0)));
        assert_eq!(Date::from_ymd(2026, 3, 29).unwrap().weekday(), 6); // a Sunday
        assert_eq!(Date::from_ymd(2024, 2, 29).unwrap().ymd(), (2024, 2, 29));
        assert_eq!(Date::from_ymd(2025, 2, 29), None);
        assert_eq!(Date::from_ymd(2025, 13, 1), None);
        assert_eq!(Date::from_ymd(2025, 4, 31), None);
    }

    #[test]
    fn posix_zones_give_the_expected_offsets() {
        let cet = LocalZone::from_posix(CET).unwrap();
        assert_eq!(cet.offset(utc(2026, 1, 15, 12, 0)), 3600);
        assert_eq!(cet.offset(utc(2026, 7, 15, 12, 0)), 7200);
        // Europe switches at 01:00 UTC on the last Sunday of March/October.
        assert_eq!(cet.offset(utc(2026, 3, 29, 0, 59)), 3600);
        assert_eq!(cet.offset(utc(2026, 3, 29, 1, 0)), 7200);
        assert_eq!(cet.offset(utc(2026, 10, 25, 0, 59)), 7200);
        assert_eq!(cet.offset(utc(2026, 10, 25, 1, 0)), 3600);

        let est = LocalZone::from_posix("EST5EDT,M3.2.0,M11.1.0").unwrap();
        assert_eq!(est.offset(utc(2026, 1, 15, 12, 0)), -5 * 3600);
        // Second Sunday of March 2026 is the 8th, at 02:00 local (07:00 UTC).
        assert_eq!(est.offset(utc(2026, 3, 8, 6, 59)), -5 * 3600);
        assert_eq!(est.offset(utc(2026, 3, 8, 7, 0)), -4 * 3600);

        let tehran = LocalZone::from_posix("<+0330>-3:30").unwrap();
        assert_eq!(tehran.offset(utc(2026, 6, 1, 0, 0)), 3 * 3600 + 1800);
        assert_eq!(LocalZone::from_posix("UTC0").unwrap().offset(0), 0);

        for bad in [
            "",
            "garbage",
            ":Europe/Berlin",
            "/etc/localtime",
            "CET-1CEST,M13.5.0",
        ] {
            assert!(LocalZone::from_posix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_time_and_instants_across_dst() {
        let cet = LocalZone::from_posix(CET).unwrap();
        let sun_march = Date::from_ymd(2026, 3, 29).unwrap();
        // 02:30 does not exist that night: the first valid time is 03:00 CEST = 01:00 UTC.
        assert_eq!(cet.instant(sun_march, 150), utc(2026, 3, 29, 1, 0));
        assert_eq!(cet.instant(sun_march, 120), utc(2026, 3, 29, 1, 0));
        assert_eq!(cet.instant(sun_march, 180), utc(2026, 3, 29, 1, 0));
        assert_eq!(cet.instant(sun_march, 119), utc(2026, 3, 29, 0, 59));
        // 02:30 happens twice on the last Sunday of October: the first is CEST (00:30 UTC).
        let sun_oct = Date::from_ymd(2026, 10, 25).unwrap();
        assert_eq!(cet.instant(sun_oct, 150), utc(2026, 10, 25, 0, 30));
        assert_eq!(cet.instant(sun_oct, 7 * 60), utc(2026, 10, 25, 6, 0));
        // local() inverts instant() away from transitions.
        let t = utc(2026, 7, 1, 19, 0);
        let l = cet.local(t);
        assert_eq!(l.date.ymd(), (2026, 7, 1));
        assert_eq!(l.minute_of_day, 21 * 60);
        assert_eq!(cet.instant(l.date, l.minute_of_day), t);
        assert_eq!(cet.format(t), "2026-07-01 21:00");
        assert_eq!(cet.format_near(t, t - 3600), "21:00");
    }

    #[test]
    fn clock_set_threshold() {
        assert!(!clock_is_set(0));
        assert!(!clock_is_set(utc(2023, 12, 31, 23, 59)));
        assert!(clock_is_set(utc(2024, 1, 1, 0, 0)));
    }
}
