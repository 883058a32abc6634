//! Schedules of `trigger.schedule`: cron (croner) or rate expressions, with a timezone.
//!
//! Parameters (one of `cron` / `rate`, plus an optional `timezone`):
//! - `cron`: 5 fields (`min hour dom month dow`) or 6 (`sec min hour dom month dow`), or a
//!   nickname (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`). Day of week 0-7
//!   (0 and 7 are Sunday) or `SUN`-`SAT`. When both day of month and day of week are
//!   restricted, a day matching either fires (Vixie cron).
//! - `rate`: `"5 minutes"`, `"1 hour"`, `"30 seconds"`, `"2 days"`, also `"rate(5 minutes)"`.
//!   Ticks are aligned to the Unix epoch (a 5-minute rate fires at :00, :05, …, UTC).
//! - `timezone`: an IANA name (`Europe/Paris`), `UTC`, or a fixed offset (`+02:00`, `-0530`).
//!   Cron fields are read in that timezone (daylight saving handled by croner).
//!
//! EventBridge rules (the production scheduler) always run in UTC: see
//! [`Schedule::eventbridge_expression`].

use crate::model::Timestamp;
use chrono::{DateTime, FixedOffset, TimeZone, Timelike, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::{Map, Value};
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    kind: Kind,
    zone: Zone,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Cron(Box<Cron>),
    Rate { value: u64, unit: RateUnit },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RateUnit {
    Second,
    Minute,
    Hour,
    Day,
}

impl RateUnit {
    fn seconds(self) -> u64 {
        match self {
            Self::Second => 1,
            Self::Minute => 60,
            Self::Hour => 3_600,
            Self::Day => 86_400,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Second => "second",
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Zone {
    Utc,
    Fixed(FixedOffset),
    Named(chrono_tz::Tz),
}

/// The longest rate: a year.
const MAX_RATE_SECONDS: u64 = 366 * 86_400;

// croner's component bits (croner 3, `component.rs`; the module is private, the values are
// checked by `croner_bits_are_what_we_expect` below).
const ALL_BIT: u8 = 1;
const NTH_BITS: [u8; 5] = [1 << 1, 1 << 2, 1 << 3, 1 << 4, 1 << 5];
const LAST_BIT: u8 = 1 << 6;
const CLOSEST_WEEKDAY_BIT: u8 = 1 << 7;

impl Schedule {
    /// From a `trigger.schedule` node's parameters (`cron` or `rate`, optional `timezone`).
    /// The message names the bad parameter.
    pub fn parse(params: &Map<String, Value>) -> Result<Schedule, String> {
        let present = |k: &str| params.get(k).filter(|v| !v.is_null());
        let kind = match (present("cron"), present("rate")) {
            (Some(_), Some(_)) | (None, None) => {
                return Err("exactly one of parameters `cron` and `rate` is required".into());
            }
            (Some(cron), None) => {
                let text = cron.as_str().ok_or("parameter `cron` must be a string")?;
                Kind::Cron(Box::new(parse_cron(text)?))
            }
            (None, Some(rate)) => {
                let text = rate
                    .as_str()
                    .ok_or("parameter `rate` must be a string like \"5 minutes\"")?;
                let (value, unit) = parse_rate(text)?;
                Kind::Rate { value, unit }
            }
        };
        let zone = match present("timezone") {
            None => Zone::Utc,
            Some(v) => {
                let text = v.as_str().ok_or("parameter `timezone` must be a string")?;
                parse_zone(text)?
            }
        };
        // A cron that can never fire (e.g. 30 February) is a mistake, not a schedule.
        if let Kind::Cron(cron) = &kind
            && !can_match_a_date(cron)
        {
            return Err("parameter `cron` never matches a date".into());
        }
        Ok(Schedule { kind, zone })
    }

    /// The first tick strictly after `after`.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.kind {
            Kind::Rate { value, unit } => {
                let interval = i64::try_from(value * unit.seconds() * 1000).ok()?;
                let next = after
                    .millis()
                    .div_euclid(interval)
                    .checked_add(1)?
                    .checked_mul(interval)?;
                Some(Timestamp::from_millis(next))
            }
            Kind::Cron(cron) => {
                // croner works in whole seconds: start from the second `after` falls in.
                let start = after.datetime().with_nanosecond(0)?;
                let next = match &self.zone {
                    Zone::Utc => next_in(cron, start)?,
                    Zone::Fixed(offset) => next_in(cron, start.with_timezone(offset))?,
                    Zone::Named(tz) => next_in(cron, start.with_timezone(tz))?,
                };
                Some(Timestamp::from(next))
            }
        }
    }

    /// The same schedule as an EventBridge rule expression: `rate(…)` or
    /// `cron(min hour day-of-month month day-of-week year)`, in UTC.
    ///
    /// EventBridge rules have minute precision, always run in UTC, need `?` in one of
    /// day-of-month/day-of-week and number weekdays 1-7 from Sunday. `Err` (with the reason)
    /// for what they cannot express: seconds, a timezone with daylight saving, both day
    /// fields restricted (croner fires on either), a fixed offset that moves the days of a
    /// schedule restricted by day of month or month.
    pub fn eventbridge_expression(&self) -> Result<String, String> {
        match &self.kind {
            Kind::Rate { value, unit } => {
                let (value, unit) = match unit {
                    RateUnit::Second if value % 60 == 0 => (value / 60, RateUnit::Minute),
                    RateUnit::Second => {
                        return Err(format!(
                            "EventBridge rates have minute precision; {value} seconds is not a whole number of minutes"
                        ));
                    }
                    other => (*value, *other),
                };
                let plural = if value == 1 { "" } else { "s" };
                Ok(format!("rate({value} {}{plural})", unit.name()))
            }
            Kind::Cron(cron) => {
                let offset_seconds = match &self.zone {
                    Zone::Utc => 0,
                    Zone::Fixed(offset) => offset.local_minus_utc(),
                    Zone::Named(tz) => {
                        return Err(format!(
                            "EventBridge rules run in UTC and cannot follow timezone {} (it observes daylight saving or changed offsets); use UTC or a fixed offset such as +02:00",
                            tz.name()
                        ));
                    }
                };
                cron_to_eventbridge(cron, offset_seconds)
            }
        }
    }
}

fn next_in<Tz: TimeZone>(cron: &Cron, start: DateTime<Tz>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&start, false)
        .ok()
        .and_then(|d| d.with_timezone(&Utc).with_nanosecond(0))
}

/// Whether some month of the pattern has one of its days of the month (when the days of
/// the month alone decide: with a restricted day of week, some weekday always comes).
fn can_match_a_date(cron: &Cron) -> bool {
    let fields: Vec<&str> = cron.as_str().split_whitespace().collect();
    let n = fields.len();
    let star = |f: &str| f == "*" || f == "?";
    if n < 5 || star(fields[n - 3]) || !star(fields[n - 1]) {
        return true;
    }
    let p = &cron.pattern;
    if p.days.is_feature_enabled(LAST_BIT) || !p.days.get_set_values(CLOSEST_WEEKDAY_BIT).is_empty()
    {
        return true;
    }
    let longest = |month: u16| match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let days = p.days.get_set_values(ALL_BIT);
    p.months
        .get_set_values(ALL_BIT)
        .into_iter()
        .any(|m| days.iter().any(|d| *d <= longest(m)))
}

fn parse_cron(text: &str) -> Result<Cron, String> {
    let text = text.trim();
    let fields = text.split_whitespace().count();
    let nickname = fields == 1 && text.starts_with('@');
    if !nickname && !(5..=6).contains(&fields) {
        return Err(format!(
            "parameter `cron` must have 5 fields (minute hour day-of-month month day-of-week) or 6 (with seconds first), got {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(text)
        .map_err(|e| format!("parameter `cron` is not a valid cron expression: {e}"))
}

fn parse_rate(text: &str) -> Result<(u64, RateUnit), String> {
    let bad = || {
        format!(
            "parameter `rate` must look like \"5 minutes\" (seconds, minutes, hours or days), got {text:?}"
        )
    };
    let mut body = text.trim();
    if let Some(inner) = body
        .strip_prefix("rate(")
        .and_then(|rest| rest.strip_suffix(')'))
    {
        body = inner.trim();
    }
    let mut parts = body.split_whitespace();
    let (Some(number), Some(unit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let value: u64 = number.parse().map_err(|_| bad())?;
    let unit = match unit.to_ascii_lowercase().as_str() {
        "second" | "seconds" | "sec" | "secs" => RateUnit::Second,
        "minute" | "minutes" | "min" | "mins" => RateUnit::Minute,
        "hour" | "hours" => RateUnit::Hour,
        "day" | "days" => RateUnit::Day,
        _ => return Err(bad()),
    };
    if value == 0 {
        return Err("parameter `rate` must be at least 1".into());
    }
    if value.saturating_mul(unit.seconds()) > MAX_RATE_SECONDS {
        return Err("parameter `rate` must be at most 366 days".into());
    }
    Ok((value, unit))
}

fn parse_zone(text: &str) -> Result<Zone, String> {
    let text = text.trim();
    if let Some(offset) = parse_fixed_offset(text) {
        return Ok(if offset.local_minus_utc() == 0 {
            Zone::Utc
        } else {
            Zone::Fixed(offset)
        });
    }
    if matches!(text, "UTC" | "utc" | "Z") {
        return Ok(Zone::Utc);
    }
    let tz = chrono_tz::Tz::from_str(text).map_err(|_| {
        format!("parameter `timezone` must be an IANA timezone name (e.g. Europe/Paris), UTC or an offset like +02:00, got {text:?}")
    })?;
    let name = tz.name();
    if matches!(
        name,
        "UTC" | "UCT" | "GMT" | "Zulu" | "Universal" | "Greenwich" | "GMT0" | "GMT+0" | "GMT-0"
    ) || (name.starts_with("Etc/")
        && matches!(
            &name[4..],
            "UTC" | "UCT" | "GMT" | "Zulu" | "Universal" | "Greenwich" | "GMT0" | "GMT+0" | "GMT-0"
        ))
    {
        return Ok(Zone::Utc);
    }
    // `Etc/GMT+5` is UTC-5 (the POSIX sign): a fixed offset.
    if let Some(rest) = name.strip_prefix("Etc/GMT")
        && let Ok(hours) = rest.parse::<i32>()
        && let Some(offset) = FixedOffset::east_opt(-hours * 3_600)
    {
        return Ok(Zone::Fixed(offset));
    }
    Ok(Zone::Named(tz))
}

/// `+02:00`, `-05:30`, `+0200`, `+02`.
fn parse_fixed_offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || rest.matches(':').count() > 1 {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 23 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3_600 + minutes * 60))
}

/// `*` when every value of `min..=max` is there; `a/s` for a full arithmetic progression;
/// else a list of values and ranges.
fn compress(values: &[u16], min: u16, max: u16) -> String {
    let mut v: Vec<u16> = values.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.len() == usize::from(max - min + 1) {
        return "*".into();
    }
    if v.len() >= 3 {
        let step = v[1] - v[0];
        if step >= 2 && v.windows(2).all(|w| w[1] - w[0] == step) && v[v.len() - 1] + step > max {
            return format!("{}/{step}", v[0]);
        }
    }
    let mut parts = Vec::new();
    let mut i = 0;
    while i < v.len() {
        let mut j = i;
        while j + 1 < v.len() && v[j + 1] == v[j] + 1 {
            j += 1;
        }
        match j - i {
            0 => parts.push(v[i].to_string()),
            1 => {
                parts.push(v[i].to_string());
                parts.push(v[j].to_string());
            }
            _ => parts.push(format!("{}-{}", v[i], v[j])),
        }
        i = j + 1;
    }
    parts.join(",")
}

fn cron_to_eventbridge(cron: &Cron, offset_seconds: i32) -> Result<String, String> {
    let p = &cron.pattern;
    if p.seconds.get_set_values(ALL_BIT) != [0] {
        return Err("EventBridge cron has minute precision; the seconds field must be 0".into());
    }
    if offset_seconds % 3_600 != 0 {
        return Err(
            "EventBridge rules run in UTC; only whole-hour offsets can be converted".into(),
        );
    }
    let offset_hours = offset_seconds / 3_600;

    // Star-ness of the day fields, as croner decides it: the field's text is `*` (or `?`).
    let text = cron.as_str();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let n = fields.len();
    if n < 5 {
        return Err("unexpected cron pattern".into());
    }
    let star = |f: &str| f == "*" || f == "?";
    let (dom_star, dow_star) = (star(fields[n - 3]), star(fields[n - 1]));
    if !dom_star && !dow_star {
        return Err("EventBridge cron cannot restrict both day-of-month and day-of-week (this schedule fires on a day matching either); restrict only one".into());
    }

    // Hours, moved to UTC; every hour must move by the same number of days.
    let mut day_shift: Option<i32> = None;
    let mut hours = Vec::new();
    for h in p.hours.get_set_values(ALL_BIT) {
        let utc = i32::from(h) - offset_hours;
        let shift = utc.div_euclid(24);
        if day_shift.is_some_and(|s| s != shift) {
            return Err("EventBridge rules run in UTC; this schedule's hours fall on different UTC days and cannot be converted".into());
        }
        day_shift = Some(shift);
        hours.push(utc.rem_euclid(24) as u16);
    }
    let day_shift = day_shift.unwrap_or(0);
    let months_all = p.months.get_set_values(ALL_BIT).len() == 12;
    if day_shift != 0 && (!dom_star || !months_all) {
        return Err("EventBridge rules run in UTC; the offset moves this schedule to other days of the month, which cannot be converted".into());
    }

    let minutes = compress(&p.minutes.get_set_values(ALL_BIT), 0, 59);
    let hours = compress(&hours, 0, 23);
    let months = compress(&p.months.get_set_values(ALL_BIT), 1, 12);

    let dom = if dom_star {
        if dow_star {
            "*".to_string()
        } else {
            "?".to_string()
        }
    } else {
        let values = p.days.get_set_values(ALL_BIT);
        let last = p.days.is_feature_enabled(LAST_BIT);
        let weekdays = p.days.get_set_values(CLOSEST_WEEKDAY_BIT);
        match (values.is_empty(), last, weekdays.as_slice()) {
            (true, true, []) => "L".to_string(),
            (true, false, [d]) => format!("{d}W"),
            (false, false, []) => compress(&values, 1, 31),
            _ => {
                return Err(
                    "EventBridge cron cannot combine L or W with other days of the month".into(),
                );
            }
        }
    };

    let dow = if dow_star {
        "?".to_string()
    } else {
        if p.days_of_week.is_feature_enabled(LAST_BIT) {
            return Err("a bare L in day-of-week is not supported".into());
        }
        // croner numbers 0-6 from Sunday (7 folded into 0); EventBridge 1-7 from Sunday.
        let eb = |d: u16| -> u16 {
            let moved = (i32::from(d % 7) + day_shift).rem_euclid(7);
            moved as u16 + 1
        };
        let plain: Vec<u16> = p
            .days_of_week
            .get_set_values(ALL_BIT)
            .into_iter()
            .map(eb)
            .collect();
        let mut special = Vec::new();
        for (i, bit) in NTH_BITS.iter().enumerate() {
            for d in p.days_of_week.get_set_values(*bit) {
                special.push(format!("{}#{}", eb(d), i + 1));
            }
        }
        for d in p.days_of_week.get_set_values(LAST_BIT) {
            special.push(format!("{}L", eb(d)));
        }
        if special.is_empty() {
            compress(&plain, 1, 7)
        } else if special.len() == 1 && plain.is_empty() {
            if day_shift != 0 {
                return Err("EventBridge rules run in UTC; the offset moves an nth/last weekday to another day, which cannot be converted".into());
            }
            special.remove(0)
        } else {
            return Err("EventBridge cron allows # or L in day-of-week only alone".into());
        }
    };

    Ok(format!("cron({minutes} {hours} {dom} {months} {dow} *)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sched(v: Value) -> Result<Schedule, String> {
        Schedule::parse(v.as_object().unwrap())
    }
    fn eb(v: Value) -> Result<String, String> {
        sched(v).unwrap().eventbridge_expression()
    }
    fn ts(text: &str) -> Timestamp {
        Timestamp::parse(text).unwrap()
    }

    #[test]
    fn croner_bits_are_what_we_expect() {
        let c = parse_cron("0 0 L * 5#2").unwrap();
        assert!(c.pattern.days.is_feature_enabled(LAST_BIT));
        assert_eq!(c.pattern.days_of_week.get_set_values(NTH_BITS[1]), vec![5]);
        let c = parse_cron("0 0 15W * 5L").unwrap();
        assert_eq!(c.pattern.days.get_set_values(CLOSEST_WEEKDAY_BIT), vec![15]);
        assert_eq!(c.pattern.days_of_week.get_set_values(LAST_BIT), vec![5]);
        let c = parse_cron("*/20 * * * *").unwrap();
        assert_eq!(c.pattern.minutes.get_set_values(ALL_BIT), vec![0, 20, 40]);
    }

    #[test]
    fn needs_exactly_one_of_cron_and_rate() {
        assert!(sched(json!({})).unwrap_err().contains("exactly one"));
        assert!(
            sched(json!({"cron": "* * * * *", "rate": "5 minutes"}))
                .unwrap_err()
                .contains("exactly one")
        );
        assert!(sched(json!({"cron": 5})).unwrap_err().contains("`cron`"));
        assert!(sched(json!({"rate": 5})).unwrap_err().contains("`rate`"));
        assert!(sched(json!({"cron": "* * * * *", "rate": null})).is_ok());
    }

    #[test]
    fn cron_needs_five_or_six_fields() {
        assert!(
            sched(json!({"cron": "* * * *"}))
                .unwrap_err()
                .contains("5 fields")
        );
        assert!(sched(json!({"cron": "0 * * * * * 2030"})).is_err());
        assert!(sched(json!({"cron": "*/5 * * * *"})).is_ok());
        assert!(sched(json!({"cron": "30 */5 * * * *"})).is_ok());
        assert!(sched(json!({"cron": "@daily"})).is_ok());
        assert!(
            sched(json!({"cron": "61 * * * *"}))
                .unwrap_err()
                .contains("`cron`")
        );
        assert!(sched(json!({"cron": "nonsense here x y z"})).is_err());
        for never in ["0 0 30 2 *", "0 0 31 4,6,9,11 *", "* * * 31 2 *"] {
            assert!(
                sched(json!({"cron": never})).unwrap_err().contains("never"),
                "{never}"
            );
        }
        // Leap days exist; restricted weekdays always come.
        let leap = sched(json!({"cron": "0 0 29 2 *"})).unwrap();
        assert_eq!(
            leap.next_after(ts("2026-01-01T00:00:00Z")),
            Some(ts("2028-02-29T00:00:00Z"))
        );
        assert!(sched(json!({"cron": "0 0 30 2 MON"})).is_ok());
    }

    #[test]
    fn rates_parse_in_every_spelling() {
        for (text, value, unit) in [
            ("5 minutes", 5, RateUnit::Minute),
            ("1 minute", 1, RateUnit::Minute),
            ("1 hour", 1, RateUnit::Hour),
            ("30 seconds", 30, RateUnit::Second),
            ("rate(5 minutes)", 5, RateUnit::Minute),
            ("rate( 2 days )", 2, RateUnit::Day),
            ("3 Hours", 3, RateUnit::Hour),
        ] {
            assert_eq!(parse_rate(text), Ok((value, unit)), "{text}");
        }
        for bad in [
            "",
            "5",
            "minutes",
            "0 minutes",
            "-1 minutes",
            "5 fortnights",
            "1.5 hours",
            "400 days",
            "5 minutes later",
        ] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rate_ticks_are_aligned_and_strictly_after() {
        let s = sched(json!({"rate": "5 minutes"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T10:02:30Z")),
            Some(ts("2026-01-01T10:05:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-01-01T10:05:00Z")),
            Some(ts("2026-01-01T10:10:00Z"))
        );
        let s = sched(json!({"rate": "30 seconds"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T10:00:29.999Z")),
            Some(ts("2026-01-01T10:00:30Z"))
        );
    }

    #[test]
    fn cron_next_after_in_utc() {
        let s = sched(json!({"cron": "*/15 * * * *"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T10:00:00Z")),
            Some(ts("2026-01-01T10:15:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-01-01T10:14:59.500Z")),
            Some(ts("2026-01-01T10:15:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-01-01T10:15:00.500Z")),
            Some(ts("2026-01-01T10:30:00Z"))
        );
        // 6 fields: seconds first.
        let s = sched(json!({"cron": "30 0 12 * * *"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-01T12:00:00Z")),
            Some(ts("2026-01-01T12:00:30Z"))
        );
        // Weekdays: 2026-01-03 is a Saturday; MON-FRI 9:00 → Monday 5th.
        let s = sched(json!({"cron": "0 9 * * MON-FRI"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-03T00:00:00Z")),
            Some(ts("2026-01-05T09:00:00Z"))
        );
        // 7 is Sunday too.
        let s = sched(json!({"cron": "0 9 * * 7"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-03T00:00:00Z")),
            Some(ts("2026-01-04T09:00:00Z"))
        );
    }

    #[test]
    fn cron_reads_fields_in_its_timezone() {
        // 09:00 in Paris is 08:00 UTC in winter, 07:00 UTC in summer.
        let s = sched(json!({"cron": "0 9 * * *", "timezone": "Europe/Paris"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-10T00:00:00Z")),
            Some(ts("2026-01-10T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(ts("2026-07-10T00:00:00Z")),
            Some(ts("2026-07-10T07:00:00Z"))
        );
        let s = sched(json!({"cron": "0 9 * * *", "timezone": "+02:00"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-10T00:00:00Z")),
            Some(ts("2026-01-10T07:00:00Z"))
        );
        let s = sched(json!({"cron": "0 9 * * *", "timezone": "Etc/GMT+5"})).unwrap();
        assert_eq!(
            s.next_after(ts("2026-01-10T00:00:00Z")),
            Some(ts("2026-01-10T14:00:00Z"))
        );
        assert!(
            sched(json!({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}))
                .unwrap_err()
                .contains("`timezone`")
        );
        assert!(sched(json!({"cron": "0 9 * * *", "timezone": "+25:00"})).is_err());
    }

    #[test]
    fn eventbridge_rates() {
        assert_eq!(eb(json!({"rate": "5 minutes"})).unwrap(), "rate(5 minutes)");
        assert_eq!(eb(json!({"rate": "1 minutes"})).unwrap(), "rate(1 minute)");
        assert_eq!(eb(json!({"rate": "rate(1 hour)"})).unwrap(), "rate(1 hour)");
        assert_eq!(eb(json!({"rate": "2 hours"})).unwrap(), "rate(2 hours)");
        assert_eq!(eb(json!({"rate": "1 day"})).unwrap(), "rate(1 day)");
        assert_eq!(
            eb(json!({"rate": "120 seconds"})).unwrap(),
            "rate(2 minutes)"
        );
        assert_eq!(eb(json!({"rate": "60 seconds"})).unwrap(), "rate(1 minute)");
        assert!(
            eb(json!({"rate": "30 seconds"}))
                .unwrap_err()
                .contains("minute precision")
        );
        // A rate does not depend on the timezone.
        assert_eq!(
            eb(json!({"rate": "5 minutes", "timezone": "Europe/Paris"})).unwrap(),
            "rate(5 minutes)"
        );
    }

    #[test]
    fn eventbridge_crons() {
        for (cron, expected) in [
            ("* * * * *", "cron(* * * * ? *)"),
            ("*/5 * * * *", "cron(0/5 * * * ? *)"),
            ("0 12 * * *", "cron(0 12 * * ? *)"),
            ("15,45 8-17 * * *", "cron(15,45 8-17 * * ? *)"),
            // day-of-week: croner 0-6 (SUN=0), EventBridge 1-7 (SUN=1)
            ("0 9 * * 1-5", "cron(0 9 ? * 2-6 *)"),
            ("0 9 * * MON-FRI", "cron(0 9 ? * 2-6 *)"),
            ("0 9 * * 0", "cron(0 9 ? * 1 *)"),
            ("0 9 * * 7", "cron(0 9 ? * 1 *)"),
            ("0 9 * * SUN", "cron(0 9 ? * 1 *)"),
            ("0 9 * * 6", "cron(0 9 ? * 7 *)"),
            ("0 9 * * 5-7", "cron(0 9 ? * 1,6,7 *)"),
            ("0 9 * * 6,0", "cron(0 9 ? * 1,7 *)"),
            ("0 9 * * */2", "cron(0 9 ? * 1/2 *)"),
            ("0 9 * * 5#2", "cron(0 9 ? * 6#2 *)"),
            ("0 9 * * 5L", "cron(0 9 ? * 6L *)"),
            // day-of-month
            ("0 0 1 * *", "cron(0 0 1 * ? *)"),
            ("0 0 1,15 * *", "cron(0 0 1,15 * ? *)"),
            ("0 0 L * *", "cron(0 0 L * ? *)"),
            ("0 0 15W * *", "cron(0 0 15W * ? *)"),
            ("0 0 1 1 *", "cron(0 0 1 1 ? *)"),
            ("0 0 1 JAN,JUL *", "cron(0 0 1 1,7 ? *)"),
            ("0 0 ? * MON", "cron(0 0 ? * 2 *)"),
            ("0 0 1 * ?", "cron(0 0 1 * ? *)"),
            // six fields with seconds 0
            ("0 30 6 * * *", "cron(30 6 * * ? *)"),
            ("@daily", "cron(0 0 * * ? *)"),
            ("@weekly", "cron(0 0 ? * 1 *)"),
            ("@hourly", "cron(0 * * * ? *)"),
        ] {
            assert_eq!(eb(json!({"cron": cron})).unwrap(), expected, "{cron}");
        }
    }

    #[test]
    fn eventbridge_refuses_what_it_cannot_express() {
        // Both day fields restricted: croner fires on either; EventBridge needs a `?`.
        assert!(
            eb(json!({"cron": "0 0 1 * MON"}))
                .unwrap_err()
                .contains("both")
        );
        // Seconds.
        assert!(
            eb(json!({"cron": "30 * * * * *"}))
                .unwrap_err()
                .contains("seconds")
        );
        // Daylight-saving timezone.
        let err = eb(json!({"cron": "0 9 * * *", "timezone": "Europe/Paris"})).unwrap_err();
        assert!(err.contains("UTC") && err.contains("Europe/Paris"), "{err}");
        // Half-hour offset.
        assert!(eb(json!({"cron": "0 9 * * *", "timezone": "+05:30"})).is_err());
        // Offset moving some hours to another day.
        assert!(eb(json!({"cron": "0 1,12 * * *", "timezone": "+02:00"})).is_err());
        // Offset moving a day-of-month schedule to another day.
        assert!(eb(json!({"cron": "0 1 1 * *", "timezone": "+02:00"})).is_err());
    }

    #[test]
    fn eventbridge_converts_fixed_offsets() {
        for (cron, tz, expected) in [
            ("0 9 * * *", "UTC", "cron(0 9 * * ? *)"),
            ("0 9 * * *", "Etc/UTC", "cron(0 9 * * ? *)"),
            ("0 9 * * *", "+00:00", "cron(0 9 * * ? *)"),
            ("0 9 * * *", "+02:00", "cron(0 7 * * ? *)"),
            ("0 9 * * MON-FRI", "+02:00", "cron(0 7 ? * 2-6 *)"),
            ("0 9 1 * *", "-0300", "cron(0 12 1 * ? *)"),
            ("0 9 * * *", "Etc/GMT-3", "cron(0 6 * * ? *)"),
            // 01:00 at +02:00 is 23:00 UTC the day before: Monday → Sunday.
            ("0 1 * * MON", "+02:00", "cron(0 23 ? * 1 *)"),
            ("0 1 * * SUN", "+02:00", "cron(0 23 ? * 7 *)"),
            ("0 22 * * SAT", "-03:00", "cron(0 1 ? * 1 *)"),
            ("30 1 * * *", "+02:00", "cron(30 23 * * ? *)"),
        ] {
            assert_eq!(
                eb(json!({"cron": cron, "timezone": tz})).unwrap(),
                expected,
                "{cron} at {tz}"
            );
        }
    }

    #[test]
    fn eventbridge_conversion_matches_croner_in_utc() {
        // The converted weekday fields name the same days croner fires on.
        let s = sched(json!({"cron": "0 9 * * 1-5"})).unwrap();
        let mut t = ts("2026-03-01T00:00:00Z"); // a Sunday
        let mut weekdays = Vec::new();
        for _ in 0..5 {
            t = s.next_after(t).unwrap();
            weekdays.push(t.datetime().format("%a").to_string());
        }
        assert_eq!(weekdays, ["Mon", "Tue", "Wed", "Thu", "Fri"]);
        assert_eq!(s.eventbridge_expression().unwrap(), "cron(0 9 ? * 2-6 *)");
    }

    #[test]
    fn compress_forms() {
        assert_eq!(compress(&[0, 1, 2, 3, 4, 5, 6], 0, 6), "*");
        assert_eq!(compress(&[0, 15, 30, 45], 0, 59), "0/15");
        assert_eq!(compress(&[5, 20, 35, 50], 0, 59), "5/15");
        assert_eq!(compress(&[0, 30], 0, 59), "0,30");
        assert_eq!(compress(&[1, 2, 3, 7, 9, 10], 0, 59), "1-3,7,9,10");
        // A progression that stops early is not a step.
        assert_eq!(compress(&[0, 10, 20], 0, 59), "0,10,20");
    }
}
