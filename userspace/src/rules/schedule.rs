//! Weekly blocked windows such as `mon-fri 21:00-07:00`, evaluated in the
//! router's local time.
//!
//! A window starts on each of its days at the start time and ends at the end
//! time, on the next day when the end is not after the start (so
//! `mon-fri 21:00-07:00` blocks Friday night into Saturday morning, not
//! Sunday night). Both ends are wall-clock times: across the spring-forward
//! night a 21:00–07:00 window lasts 9 h, across the fall-back night 11 h. A
//! time the clock skips starts or ends the window at the first valid instant.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::time::{Date, LocalZone, UnixTime};

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const DAY_LABELS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// One weekly window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Days the window starts on, Monday = 0.
    pub days: [bool; 7],
    /// Start, minutes after local midnight (0..1440).
    pub start: u32,
    /// End, minutes after local midnight (1..=1440; 1440 is `24:00`).
    pub end: u32,
}

impl Window {
    /// Parses `DAYS HH:MM-HH:MM`; DAYS is `daily`, `weekdays`, `weekends`, or
    /// a comma list of days and day ranges (`mon-fri`, `fri-mon`, `sat,sun`).
    pub fn parse(text: &str) -> Result<Window, String> {
        let text = text.trim();
        let (days_text, times) = text
            .rsplit_once(|c: char| c.is_ascii_whitespace())
            .ok_or_else(|| "expected 'DAYS HH:MM-HH:MM', e.g. 'mon-fri 21:00-07:00'".to_string())?;
        let days = parse_days(days_text.trim())?;
        let (start, end) = times
            .split_once('-')
            .ok_or_else(|| format!("'{times}' is not a time range like 21:00-07:00"))?;
        let start = parse_hhmm(start, false)?;
        let end = parse_hhmm(end, true)?;
        if end == start {
            return Err(format!(
                "the window starts and ends at the same time ({}); use 00:00-24:00 for a whole day",
                hhmm(start)
            ));
        }
        Ok(Window { days, start, end })
    }

    /// The window's occurrence that starts on `date` (if `date` is one of
    /// its days), as `[start, end)` instants.
    pub fn occurrence(&self, zone: &LocalZone, date: Date) -> Option<(UnixTime, UnixTime)> {
        if !self.days[date.weekday()] {
            return None;
        }
        let start = zone.instant(date, self.start);
        let end_date = if self.end <= self.start || self.end == 1440 {
            date.add_days(1)
        } else {
            date
        };
        let end = zone.instant(end_date, self.end % 1440);
        // A window lying wholly inside a skipped hour has no duration.
        (end > start).then_some((start, end))
    }
}

impl fmt::Display for Window {
    /// `Mon–Fri 21:00–07:00`, `Sat, Sun 00:00–08:00`, `daily 22:00–06:00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}–{}",
            describe_days(&self.days),
            hhmm(self.start),
            hhmm(self.end)
        )
    }
}

fn hhmm(m: u32) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

fn parse_hhmm(s: &str, allow_24: bool) -> Result<u32, String> {
    let s = s.trim();
    let (h, m) = s
        .split_once(':')
        .ok_or_else(|| format!("'{s}' is not a time like 07:00"))?;
    let digits = |x: &str| !x.is_empty() && x.len() <= 2 && x.bytes().all(|b| b.is_ascii_digit());
    if !digits(h) || m.len() != 2 || !digits(m) {
        return Err(format!("'{s}' is not a time like 07:00"));
    }
    let (h, m): (u32, u32) = (h.parse().unwrap_or(99), m.parse().unwrap_or(99));
    if allow_24 && h == 24 && m == 0 {
        return Ok(1440);
    }
    if h > 23 {
        return Err(format!("'{s}': hour {h} is not 00-23"));
    }
    if m > 59 {
        return Err(format!("'{s}': minute {m} is not 00-59"));
    }
    Ok(h * 60 + m)
}

fn day_index(s: &str) -> Result<usize, String> {
    let s = s.trim().to_ascii_lowercase();
    let key = s.get(..3).unwrap_or("");
    // Accept `mon`, `monday`, but not `mo` or `moose`.
    DAY_NAMES
        .iter()
        .position(|d| *d == key)
        .filter(|&i| {
            let full = [
                "monday",
                "tuesday",
                "wednesday",
                "thursday",
                "friday",
                "saturday",
                "sunday",
            ][i];
            s.len() == 3 || s == full
        })
        .ok_or_else(|| format!("'{s}' is not a day (mon, tue, wed, thu, fri, sat, sun)"))
}

fn parse_days(s: &str) -> Result<[bool; 7], String> {
    let mut days = [false; 7];
    match s.to_ascii_lowercase().as_str() {
        "daily" | "*" => return Ok([true; 7]),
        "weekdays" => return Ok([true, true, true, true, true, false, false]),
        "weekends" => return Ok([false, false, false, false, false, true, true]),
        _ => {}
    }
    for part in s.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (day_index(a)?, day_index(b)?);
                let mut i = a;
                loop {
                    days[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days[day_index(part)?] = true,
        }
    }
    if !days.contains(&true) {
        return Err("empty day set: name at least one day (e.g. mon-fri, sat,sun, daily)".into());
    }
    Ok(days)
}

fn describe_days(days: &[bool; 7]) -> String {
    if days.iter().all(|d| *d) {
        return "daily".into();
    }
    // Runs of consecutive days (Monday-based, no wrap) become ranges.
    let mut parts = Vec::new();
    let mut i = 0;
    while i < 7 {
        if !days[i] {
            i += 1;
            continue;
        }
        let start = i;
        while i + 1 < 7 && days[i + 1] {
            i += 1;
        }
        parts.push(match i - start {
            0 => DAY_LABELS[start].to_string(),
            1 => format!("{}, {}", DAY_LABELS[start], DAY_LABELS[i]),
            _ => format!("{}–{}", DAY_LABELS[start], DAY_LABELS[i]),
        });
        i += 1;
    }
    parts.join(", ")
}

/// Where `now` stands against a set of windows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleState {
    /// The window `now` is in, if any.
    pub inside: Option<usize>,
    /// When that changes (the end of the merged blocked span, or the start
    /// of the next window); `None` if no window occurs within a week.
    pub next_change: Option<UnixTime>,
}

/// Evaluates windows at `now`. Occurrences are taken from two days before
/// (a window started yesterday may still run) to eight days after today,
/// merged where they overlap or touch, so back-to-back windows are one span.
pub fn evaluate(windows: &[Window], zone: &LocalZone, now: UnixTime) -> ScheduleState {
    let today = zone.local(now).date;
    let mut spans: Vec<(UnixTime, UnixTime, usize)> = Vec::new();
    for d in -2..=8 {
        let date = today.add_days(d);
        for (i, w) in windows.iter().enumerate() {
            if let Some((s, e)) = w.occurrence(zone, date) {
                spans.push((s, e, i));
            }
        }
    }
    spans.sort_unstable();
    let inside = spans
        .iter()
        .find(|(s, e, _)| *s <= now && now < *e)
        .map(|(_, _, i)| *i);
    let next_change = match inside {
        Some(_) => {
            // Extend through every span overlapping or touching the current end.
            let mut end = now;
            for (s, e, _) in &spans {
                if *s <= end && *e > end {
                    end = *e;
                }
            }
            Some(end)
        }
        None => spans.iter().map(|(s, _, _)| *s).find(|s| *s > now),
    };
    ScheduleState {
        inside,
        next_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CET: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

    fn zone() -> LocalZone {
        LocalZone::from_posix(CET).unwrap()
    }

    /// The instant of a local wall-clock time in CET/CEST.
    fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> UnixTime {
        zone().instant(Date::from_ymd(y, mo, d).unwrap(), h * 60 + mi)
    }

    #[test]
    fn parses_and_describes_windows() {
        let w = Window::parse("mon-fri 21:00-07:00").unwrap();
        assert_eq!(w.days, [true, true, true, true, true, false, false]);
        assert_eq!((w.start, w.end), (21 * 60, 7 * 60));
        assert_eq!(w.to_string(), "Mon–Fri 21:00–07:00");
        assert_eq!(
            Window::parse("sat,sun 0:00-24:00").unwrap().to_string(),
            "Sat, Sun 00:00–24:00"
        );
        assert_eq!(
            Window::parse("fri-mon 22:00-06:00").unwrap().to_string(),
            "Mon, Fri–Sun 22:00–06:00"
        );
        assert_eq!(
            Window::parse("Daily 22:00-06:00").unwrap().to_string(),
            "daily 22:00–06:00"
        );
        assert_eq!(
            Window::parse("wednesday 08:15-09:45").unwrap().to_string(),
            "Wed 08:15–09:45"
        );
    }

    #[test]
    fn rejects_bad_windows_with_the_reason() {
        for (text, needle) in [
            ("mon-fri 25:00-07:00", "hour 25"),
            ("mon-fri 21:60-07:00", "minute 60"),
            ("mon-fri 21:00-24:01", "hour 24"),
            (", 21:00-07:00", "empty day set"),
            ("21:00-07:00", "expected 'DAYS"),
            ("mon-fry 21:00-07:00", "'fry' is not a day"),
            ("mo 21:00-07:00", "'mo' is not a day"),
            ("mon 21:00-21:00", "same time"),
            ("mon 21:00", "not a time range"),
            ("mon 2100-0700", "not a time"),
            ("mon 21:0-07:00", "not a time"),
            ("mon -1:00-07:00", "not a time"),
        ] {
            let e = Window::parse(text).expect_err(text);
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn window_crossing_midnight() {
        let z = zone();
        let w = [Window::parse("mon-fri 21:00-07:00").unwrap()];
        // Wednesday 2026-07-01 20:59: allowed, next change 21:00.
        let s = evaluate(&w, &z, at(2026, 7, 1, 20, 59));
        assert_eq!(s.inside, None);
        assert_eq!(s.next_change, Some(at(2026, 7, 1, 21, 0)));
        // 23:30 and Thursday 06:59 are inside; the window ends Thursday 07:00.
        for t in [
            at(2026, 7, 1, 21, 0),
            at(2026, 7, 1, 23, 30),
            at(2026, 7, 2, 6, 59),
        ] {
            let s = evaluate(&w, &z, t);
            assert_eq!(s.inside, Some(0));
            assert_eq!(s.next_change, Some(at(2026, 7, 2, 7, 0)));
        }
        // Friday night runs into Saturday morning; then nothing until Monday 21:00.
        let s = evaluate(&w, &z, at(2026, 7, 4, 3, 0));
        assert_eq!(s.inside, Some(0));
        let s = evaluate(&w, &z, at(2026, 7, 4, 7, 0));
        assert_eq!(s.inside, None);
        assert_eq!(s.next_change, Some(at(2026, 7, 6, 21, 0)));
        // Sunday night is not blocked (the window starts on Mon-Fri only).
        assert_eq!(evaluate(&w, &z, at(2026, 7, 5, 23, 0)).inside, None);
    }

    #[test]
    fn dst_nights_give_nine_and_eleven_hour_windows() {
        let z = zone();
        let w = [Window::parse("sat 21:00-07:00").unwrap()];
        // Spring: Saturday 2026-03-28 21:00 CET to Sunday 07:00 CEST = 9 h.
        let s = evaluate(&w, &z, at(2026, 3, 28, 22, 0));
        assert_eq!(s.inside, Some(0));
        let end = s.next_change.unwrap();
        assert_eq!(end - at(2026, 3, 28, 21, 0), 9 * 3600);
        assert_eq!(z.format(end), "2026-03-29 07:00");
        // Autumn: Saturday 2026-10-24 21:00 CEST to Sunday 07:00 CET = 11 h.
        let s = evaluate(&w, &z, at(2026, 10, 24, 22, 0));
        assert_eq!(s.next_change.unwrap() - at(2026, 10, 24, 21, 0), 11 * 3600);
        // Still inside at 02:30 the second time round (CET).
        let second_0230 = at(2026, 10, 25, 2, 30) + 3600;
        assert_eq!(z.format(second_0230), "2026-10-25 02:30");
        assert_eq!(evaluate(&w, &z, second_0230).inside, Some(0));
    }

    #[test]
    fn window_starting_in_the_skipped_hour_starts_at_the_first_valid_time() {
        let z = zone();
        let w = [Window::parse("sun 02:30-05:00").unwrap()];
        let before = evaluate(&w, &z, at(2026, 3, 29, 1, 59));
        // 02:00-03:00 does not exist: the window starts at 03:00 CEST.
        assert_eq!(z.format(before.next_change.unwrap()), "2026-03-29 03:00");
        assert_eq!(before.next_change.unwrap() - at(2026, 3, 29, 1, 59), 60);
        assert_eq!(evaluate(&w, &z, at(2026, 3, 29, 3, 0)).inside, Some(0));
    }

    #[test]
    fn touching_windows_merge_into_one_span() {
        let z = zone();
        let w = [
            Window::parse("mon 20:00-22:00").unwrap(),
            Window::parse("mon 22:00-23:00").unwrap(),
        ];
        let s = evaluate(&w, &z, at(2026, 7, 6, 21, 0));
        assert_eq!(s.next_change, Some(at(2026, 7, 6, 23, 0)));
    }
}
