//! Cron math: a 5-field cron expression read in an IANA time zone, and the UTC slots it
//! yields. DST-correct because croner walks local wall-clock time in the zone: a time that a
//! spring-forward skips runs at the first instant after the gap, a time that fall-back
//! repeats runs once (the earlier instant). Invariant: pure functions, no IO.

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// A parsed schedule: when, in which zone.
#[derive(Debug, Clone)]
pub struct Spec {
    cron: Cron,
    tz: Tz,
}

/// Parses a time zone name (IANA, like `Europe/Berlin`).
pub fn zone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>().map_err(|_| {
        format!("timezone {name:?} is not an IANA time zone name (like Europe/Berlin)")
    })
}

/// `t` without its fraction of a second (croner carries a start time's fraction into the
/// slots it finds; slots are whole seconds).
fn whole_second(t: DateTime<Utc>) -> DateTime<Utc> {
    t.with_nanosecond(0).unwrap_or(t)
}

impl Spec {
    /// Parses `expr` (minute hour day-of-month month day-of-week) in zone `tz`.
    pub fn parse(expr: &str, tz: &str) -> Result<Spec, String> {
        let tz = zone(tz)?;
        if expr.len() > 100 {
            return Err("cron expression is longer than 100 characters".into());
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr.trim())
            .map_err(|e| {
                format!(
                    "cron {expr:?} is not valid ({e}); use 5 fields: minute hour day month weekday, like \"0 20 * * *\""
                )
            })?;
        let spec = Spec { cron, tz };
        // A pattern that never matches (like 30 February) would stall the ticker.
        if spec.next_after(Utc::now()).is_none() {
            return Err(format!("cron {expr:?} never fires"));
        }
        Ok(spec)
    }

    /// The zone the expression is read in.
    pub fn tz(&self) -> Tz {
        self.tz
    }

    /// The first slot strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&whole_second(t).with_timezone(&self.tz), false)
            .ok()
            .map(|d| whole_second(d.with_timezone(&Utc)))
    }

    /// The last slot at or before `t`.
    pub fn latest_until(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_previous_occurrence(&whole_second(t).with_timezone(&self.tz), true)
            .ok()
            .map(|d| whole_second(d.with_timezone(&Utc)))
    }

    /// An English description (for the API).
    pub fn describe(&self) -> String {
        self.cron.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeZone};

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Slots from `start` for `days` days.
    fn slots(spec: &Spec, start: &str, days: i64) -> Vec<DateTime<Utc>> {
        let (mut t, end) = (utc(start), utc(start) + chrono::Duration::days(days));
        let mut out = Vec::new();
        while let Some(n) = spec.next_after(t).filter(|n| *n < end) {
            out.push(n);
            t = n;
        }
        out
    }

    #[test]
    fn daily_slot_keeps_local_time_across_both_dst_changes() {
        for (zone, spring, autumn) in [
            ("Europe/Berlin", "2026-03-29", "2026-10-25"),
            ("America/New_York", "2026-03-08", "2026-11-01"),
        ] {
            let spec = Spec::parse("0 20 * * *", zone).unwrap();
            for change in [spring, autumn] {
                let day: NaiveDate = change.parse().unwrap();
                let start = format!("{}T12:00:00Z", day - chrono::Duration::days(3));
                let got = slots(&spec, &start, 7);
                assert_eq!(got.len(), 7, "{zone} around {change}: {got:?}");
                let local: Vec<_> = got.iter().map(|s| s.with_timezone(&spec.tz())).collect();
                assert!(local.iter().all(|l| l.hour() == 20 && l.minute() == 0));
                let dates: Vec<_> = local.iter().map(|l| l.date_naive()).collect();
                let mut unique = dates.clone();
                unique.dedup();
                assert_eq!(unique, dates, "one slot per local day");
                // The UTC hour moves by one across the change: no fixed offset.
                assert_ne!(got[0].hour(), got[6].hour(), "{zone} {change}");
            }
        }
    }

    #[test]
    fn skipped_and_repeated_local_times() {
        // 02:30 does not exist in Berlin on 29 March 2026: runs at 03:00 local.
        let spec = Spec::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let next = spec.next_after(utc("2026-03-29T00:00:00Z")).unwrap();
        assert_eq!(next, utc("2026-03-29T01:00:00Z"));
        // 02:30 happens twice on 25 October 2026: runs once, at the first.
        let got = slots(&spec, "2026-10-24T12:00:00Z", 2);
        assert_eq!(
            got,
            vec![utc("2026-10-25T00:30:00Z"), utc("2026-10-26T01:30:00Z")]
        );
    }

    #[test]
    fn hourly_and_twice_daily_patterns() {
        let hourly = Spec::parse("0 * * * *", "America/New_York").unwrap();
        // 23 distinct hours on the spring-forward day.
        let day = chrono_tz::America::New_York
            .with_ymd_and_hms(2026, 3, 8, 0, 0, 0)
            .unwrap()
            .with_timezone(&Utc);
        let got = slots(&hourly, &day.to_rfc3339(), 1);
        assert_eq!(got.len(), 23);
        let twice = Spec::parse("0 9,15 * * *", "Asia/Kolkata").unwrap();
        let got = slots(&twice, "2026-11-22T00:00:00Z", 1);
        assert_eq!(
            got,
            vec![utc("2026-11-22T03:30:00Z"), utc("2026-11-22T09:30:00Z")]
        );
        assert_eq!(
            twice.latest_until(utc("2026-11-22T09:30:00Z")),
            Some(utc("2026-11-22T09:30:00Z"))
        );
    }

    #[test]
    fn slots_are_whole_seconds_whatever_the_instant_asked_about() {
        let spec = Spec::parse("49 5 * * *", "UTC").unwrap();
        let now = utc("2026-11-22T05:59:10.332Z");
        assert_eq!(spec.latest_until(now), Some(utc("2026-11-22T05:49:00Z")));
        assert_eq!(spec.next_after(now), Some(utc("2026-11-23T05:49:00Z")));
        assert_eq!(
            spec.latest_until(utc("2026-11-22T05:49:00.900Z")),
            Some(utc("2026-11-22T05:49:00Z"))
        );
    }

    #[test]
    fn bad_expressions_and_zones_are_refused() {
        assert!(
            Spec::parse("0 20 * *", "UTC")
                .unwrap_err()
                .contains("5 fields")
        );
        assert!(Spec::parse("0 25 * * *", "UTC").is_err());
        assert!(
            Spec::parse("0 0 0 * * *", "UTC").is_err(),
            "no seconds field"
        );
        assert!(
            Spec::parse("0 20 * * *", "Mars/Olympus")
                .unwrap_err()
                .contains("IANA")
        );
        assert!(
            Spec::parse("0 0 30 2 *", "UTC")
                .unwrap_err()
                .contains("never")
        );
    }
}
