//! Points in time: the two layouts KubeBlocks accepts for `restorePointInTime`,
//! the normal form it writes back, and durations as Go prints them.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime, SubsecRound, TimeZone, Utc};

/// What R8 tells the user when `restorePointInTime` does not parse.
pub const ACCEPTED_LAYOUTS: &str = "RFC 3339 (2024-05-07T10:07:45Z, 2024-05-07T18:07:45+08:00, \
optional fraction) or the kbcli layout \"Jan 02,2006 15:04:05 UTC-0700\" (May 07,2024 18:07:45 UTC+0800)";

/// A parsed `restorePointInTime`: the exact instant, as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PointInTime {
    pub instant: DateTime<Utc>,
}

impl PointInTime {
    /// Parses RFC 3339 (any offset, optional fraction) or the kbcli layout.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let parsed = parse_kbcli_strict(raw).or_else(|| parse_rfc3339_strict(raw))?;
        // chrono reads a leap second (`:60`) as a nanosecond count past 10^9; Go refuses it,
        // and a normal form carrying it would leave the restore stuck.
        if parsed.timestamp_subsec_nanos() >= 1_000_000_000 {
            return None;
        }
        Some(Self { instant: parsed.with_timezone(&Utc) })
    }

    /// UTC, whole seconds: what KubeBlocks writes into the Restore.
    pub fn normal_form(&self) -> String {
        format_time(self.instant.trunc_subsecs(0))
    }

    /// True when the instant carries a fraction of a second that the normal form drops.
    pub fn has_fraction(&self) -> bool {
        self.instant.timestamp_subsec_nanos() != 0
    }

    /// The instant for messages: the normal form, or with its fraction when it has one.
    pub fn display(&self) -> String {
        display_time(self.instant)
    }

    /// [`Self::display`] appended to `out`.
    pub fn push_display(&self, out: &mut String) {
        if self.has_fraction() {
            out.push_str(&display_time(self.instant));
        } else {
            push_time(out, self.instant);
        }
    }
}

/// The kbcli layout exactly as Go reads it: `Jan 02,2006 15:04:05 UTC-0700`
/// (chrono alone would also take a lowercase month, one-digit day, extra spaces or `+08:00`).
fn parse_kbcli_strict(raw: &str) -> Option<DateTime<FixedOffset>> {
    let b = raw.as_bytes();
    let digits = |at: usize, n: usize| b[at..at + n].iter().all(u8::is_ascii_digit);
    let shape = b.len() == 29
        && b[0].is_ascii_uppercase()
        && b[1..3].iter().all(u8::is_ascii_lowercase)
        && b[3] == b' '
        && digits(4, 2)
        && b[6] == b','
        && digits(7, 4)
        && b[11] == b' '
        && digits(12, 2)
        && b[14] == b':'
        && digits(15, 2)
        && b[17] == b':'
        && digits(18, 2)
        && &b[20..24] == b" UTC"
        && matches!(b[24], b'+' | b'-')
        && digits(25, 4);
    if !shape {
        return None;
    }
    // By hand: chrono's parse_from_str reads its pattern on every call, and the shape is known.
    const MONTHS: [&[u8]; 12] =
        [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];
    let number = |at: usize, n: usize| b[at..at + n].iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    let month = MONTHS.iter().position(|m| *m == &b[0..3])? as u32 + 1;
    let date = NaiveDate::from_ymd_opt(number(7, 4) as i32, month, number(4, 2))?;
    // A leap second (`:60`) is refused, as Go refuses it.
    let time = NaiveTime::from_hms_opt(number(12, 2), number(15, 2), number(18, 2))?;
    let (hours, minutes) = (number(25, 2), number(27, 2));
    if minutes >= 60 {
        return None;
    }
    let seconds = (hours * 3600 + minutes * 60) as i32;
    let offset = FixedOffset::east_opt(if b[24] == b'-' { -seconds } else { seconds })?;
    offset.from_local_datetime(&date.and_time(time)).single()
}

/// RFC 3339 as Go's `time.RFC3339` reads it: chrono also takes a space or a
/// lowercase `t`/`z`, which KubeBlocks would refuse, so those are rejected here.
fn parse_rfc3339_strict(raw: &str) -> Option<DateTime<FixedOffset>> {
    if let Some(read) = utc_whole_seconds(raw.as_bytes()) {
        return read;
    }
    let strict = raw.bytes().all(|b| b.is_ascii_digit() || b"-:.+TZ".contains(&b));
    if !strict {
        return None;
    }
    DateTime::parse_from_rfc3339(raw).ok()
}

/// Whether `raw` is already the normal form of the time it holds (M2 leaves it alone): the layout
/// [`format_time`] writes, whose every field is fixed-width, so no other text is that time's normal form.
pub fn is_normal_form(raw: &str) -> bool {
    matches!(utc_whole_seconds(raw.as_bytes()), Some(Some(_)))
}

/// `2006-01-02T15:04:05Z`, the layout the API server writes its times in and most Restores use,
/// read by hand (chrono's RFC 3339 reader costs a decision more than its rules do). `None`: not
/// this layout; `Some(None)`: this layout, with a field out of range (a leap second included).
fn utc_whole_seconds(b: &[u8]) -> Option<Option<DateTime<FixedOffset>>> {
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let shape = b.len() == 20
        && (b[4], b[7], b[10], b[13], b[16], b[19]) == (b'-', b'-', b'T', b':', b':', b'Z')
        && DIGITS.iter().all(|&i| b[i].is_ascii_digit());
    if !shape {
        return None;
    }
    let number = |at: usize, n: usize| b[at..at + n].iter().fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    let date = NaiveDate::from_ymd_opt(number(0, 4) as i32, number(5, 2), number(8, 2));
    let time = NaiveTime::from_hms_opt(number(11, 2), number(14, 2), number(17, 2));
    Some(date.zip(time).map(|(date, time)| date.and_time(time).and_utc().fixed_offset()))
}

/// Formats an instant as UTC RFC 3339 with whole seconds.
pub fn format_time(t: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(20);
    push_time(&mut out, t);
    out
}

/// [`format_time`] appended to `out`.
pub fn push_time(out: &mut String, t: DateTime<Utc>) {
    // By hand, from the Unix time: chrono's format() re-parses its pattern on every call, and each
    // of its calendar accessors works the date out again; a denial prints up to eight times.
    let secs = t.timestamp();
    let (days, of_day) = (secs.div_euclid(86_400), secs.rem_euclid(86_400) as u32);
    let (year, month, day) = civil_from_days(days);
    if !(0..=9999).contains(&year) {
        out.push_str(&t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        return;
    }
    let mut b = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year as u32);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, of_day / 3600);
    put(14, 2, of_day / 60 % 60);
    put(17, 2, of_day % 60);
    out.push_str(std::str::from_utf8(&b).expect("ASCII digits"));
}

/// The proleptic Gregorian (year, month, day) of a count of days since 1970-01-01
/// (H. Hinnant's `civil_from_days`, http://howardhinnant.github.io/date_algorithms.html).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Formats an instant as UTC RFC 3339, keeping a fraction only when there is one.
pub fn display_time(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_nanos() == 0 {
        format_time(t)
    } else {
        t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    }
}

/// Parses a timestamp of a Backup's status (metav1.Time: RFC 3339). The API server stores it in whole
/// seconds, so a fraction in a hand-written file is dropped as the API server would drop it.
pub fn parse_status_time(raw: &str) -> Option<DateTime<Utc>> {
    // A leap second (`:60`) is refused as in `PointInTime::parse` (Go refuses it; chrono would keep
    // a nanosecond count past 10^9 that truncating leaves in place; found by fuzz/fuzz_targets/time.rs).
    let t = parse_rfc3339_strict(raw.trim())?;
    (t.timestamp_subsec_nanos() < 1_000_000_000).then(|| t.with_timezone(&Utc).trunc_subsecs(0))
}

/// A non-negative duration as Go's `time.Duration.String` prints it: `12m46s`, `1h0m5s`, `1.5s`, `250ms`.
pub fn go_duration(d: chrono::TimeDelta) -> String {
    let mut out = String::with_capacity(16);
    push_go_duration(&mut out, d);
    out
}

/// [`go_duration`] appended to `out`.
pub fn push_go_duration(out: &mut String, d: chrono::TimeDelta) {
    let total_nanos = d
        .num_nanoseconds()
        .map(i128::from)
        .unwrap_or_else(|| i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos()));
    let nanos = total_nanos.unsigned_abs();
    if nanos == 0 {
        out.push_str("0s");
        return;
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = if nanos >= 1_000_000 {
            ("ms", 1_000_000)
        } else if nanos >= 1_000 {
            ("µs", 1_000)
        } else {
            ("ns", 1)
        };
        push_decimal(out, nanos / scale, nanos % scale, scale.ilog10());
        out.push_str(unit);
        return;
    }
    let secs = nanos / 1_000_000_000;
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        push_uint(out, h);
        out.push('h');
    }
    if h > 0 || m > 0 {
        push_uint(out, m);
        out.push('m');
    }
    push_decimal(out, s, nanos % 1_000_000_000, 9);
    out.push('s');
}

/// `whole`, then `.` and the `width` digits of `frac` without trailing zeros, when `frac` is not 0.
fn push_decimal(out: &mut String, whole: u128, frac: u128, width: u32) {
    push_uint(out, whole);
    if frac == 0 {
        return;
    }
    out.push('.');
    let (mut frac, mut width) = (frac, width);
    while frac % 10 == 0 {
        frac /= 10;
        width -= 1;
    }
    let mut digits = [b'0'; 39];
    let digits = &mut digits[..width as usize];
    for d in digits.iter_mut().rev() {
        *d = b'0' + (frac % 10) as u8;
        frac /= 10;
    }
    out.push_str(std::str::from_utf8(digits).expect("ASCII digits"));
}

fn push_uint(out: &mut String, mut v: u128) {
    let mut digits = [0u8; 39];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(&digits[at..]).expect("ASCII digits"));
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    #[test]
    fn a_text_is_its_own_normal_form_only_in_the_layout_m2_writes() {
        for raw in ["2024-05-07T10:07:45Z", "0000-01-01T00:00:00Z", "2024-02-29T23:59:59Z"] {
            assert_eq!(PointInTime::parse(raw).unwrap().normal_form(), raw);
            assert!(is_normal_form(raw), "{raw}");
        }
        for raw in [
            " 2024-05-07T10:07:45Z",
            "2024-05-07T10:07:45.0Z",
            "2024-05-07T10:07:45+00:00",
            "May 07,2024 10:07:45 UTC+0000",
            "2024-05-07T10:07:60Z",
            "2023-02-29T10:07:45Z",
            "2024-05-07t10:07:45Z",
        ] {
            let normal = PointInTime::parse(raw).map(|t| t.normal_form());
            assert_ne!(normal.as_deref(), Some(raw));
            assert!(!is_normal_form(raw), "{raw}");
        }
    }

    #[test]
    fn format_time_writes_what_chrono_would() {
        let mut t = DateTime::<Utc>::MIN_UTC;
        let mut checked = 0;
        while t < DateTime::<Utc>::MAX_UTC - TimeDelta::days(400 * 365) {
            assert_eq!(format_time(t), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            t += TimeDelta::seconds(7_777_777_777) + TimeDelta::nanoseconds(123_456_789);
            checked += 1;
        }
        for raw in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z", "2024-02-29T10:07:45.5Z"] {
            let t: DateTime<Utc> = raw.parse().unwrap();
            assert_eq!(format_time(t), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
        assert!(checked > 1000);
    }

    #[test]
    fn format_time_knows_every_day_of_the_leap_year_rules() {
        // Every day from 1 Jan 1599 to 31 Dec 2401: the centuries that are and are not leap years.
        let mut t: DateTime<Utc> = "1599-01-01T23:59:59Z".parse().unwrap();
        while t.format("%Y").to_string() != "2402" {
            assert_eq!(format_time(t), t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
            t += TimeDelta::days(1) + TimeDelta::seconds(7);
        }
    }

    /// The layout kbcli prints and KubeBlocks parses first (Go `Jan 02,2006 15:04:05 UTC-0700`), as chrono reads it.
    const KBCLI_LAYOUT: &str = "%b %d,%Y %H:%M:%S UTC%z";

    #[test]
    fn the_kbcli_layout_is_read_as_chrono_reads_it() {
        use proptest::prelude::*;
        let shapes = "(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec|Foo) [0-3][0-9],[0-9]{4} [0-2][0-9]:[0-6][0-9]:[0-6][0-9] UTC[+-][0-9]{4}";
        proptest!(ProptestConfig::with_cases(20_000), |(raw in shapes)| {
            let chrono = DateTime::parse_from_str(&raw, KBCLI_LAYOUT).ok().filter(|t| t.timestamp_subsec_nanos() < 1_000_000_000);
            prop_assert_eq!(parse_kbcli_strict(&raw), chrono, "{}", raw);
        });
        for raw in [
            "Feb 29,2024 23:59:59 UTC+2359",
            "Feb 29,2023 00:00:00 UTC+0000",
            "Dec 31,9999 23:59:59 UTC-2359",
            "Jan 01,0000 00:00:00 UTC+2359",
            "May 07,2024 18:07:45 UTC+2400",
            "May 07,2024 18:07:45 UTC+0060",
        ] {
            assert_eq!(parse_kbcli_strict(raw), DateTime::parse_from_str(raw, KBCLI_LAYOUT).ok(), "{raw}");
        }
    }

    #[test]
    fn accepts_every_documented_layout() {
        let cases = [
            ("2024-05-07T10:07:45Z", "2024-05-07T10:07:45Z", false),
            ("2024-05-07T18:07:45+08:00", "2024-05-07T10:07:45Z", false),
            ("2024-05-07T05:07:45-05:00", "2024-05-07T10:07:45Z", false),
            ("2024-05-07T10:07:45.999Z", "2024-05-07T10:07:45Z", true),
            ("2024-05-07T18:07:45.5+08:00", "2024-05-07T10:07:45Z", true),
            ("2024-05-07T10:07:45.000000001Z", "2024-05-07T10:07:45Z", true),
            ("May 07,2024 18:07:45 UTC+0800", "2024-05-07T10:07:45Z", false),
            ("May 07,2024 10:07:45 UTC+0000", "2024-05-07T10:07:45Z", false),
            ("May 07,2024 05:07:45 UTC-0500", "2024-05-07T10:07:45Z", false),
            ("Jan 01,2025 00:30:00 UTC+0100", "2024-12-31T23:30:00Z", false),
        ];
        for (raw, normal, fraction) in cases {
            let t = PointInTime::parse(raw).unwrap_or_else(|| panic!("{raw} should parse"));
            assert_eq!(t.normal_form(), normal, "{raw}");
            assert_eq!(t.has_fraction(), fraction, "{raw}");
        }
    }

    #[test]
    fn rejects_other_layouts() {
        for raw in [
            "",
            "now",
            "2024-05-07",
            "2024-05-07 10:07:45",
            "2024-05-07t10:07:45z",
            "May 07,2024 18:07:45",
            "1715076465",
            "2024-13-07T10:07:45Z",
            // Go refuses what chrono alone would take:
            "2024-05-07T10:30:60Z",
            "May 07,2024 18:30:60 UTC+0800",
            "may 07,2024 18:07:45 UTC+0800",
            "May 7,2024 18:07:45 UTC+0800",
            "May 07,2024  18:07:45 UTC+0800",
            "May 07,2024 18:07:45 UTC+08:00",
            "Foo 07,2024 18:07:45 UTC+0800",
        ] {
            assert!(PointInTime::parse(raw).is_none(), "{raw} should not parse");
        }
    }

    #[test]
    fn a_status_time_is_rfc3339_in_whole_seconds_without_a_leap_second() {
        let t = parse_status_time("2024-05-07T10:30:59.75Z").unwrap();
        assert_eq!(format_time(t), "2024-05-07T10:30:59Z");
        assert_eq!(t.timestamp_subsec_nanos(), 0);
        // Found by fuzz/fuzz_targets/time.rs: chrono keeps `:60` as 10^9 nanoseconds.
        assert_eq!(parse_status_time("2024-05-07T10:30:60Z"), None);
        assert_eq!(parse_status_time("2024-05-07T10:30:60.5+08:00"), None);
    }

    #[test]
    fn the_instant_keeps_its_fraction() {
        let t = PointInTime::parse("2024-05-07T10:07:45.25Z").unwrap();
        assert_eq!(t.display(), "2024-05-07T10:07:45.250Z");
        assert_eq!(t.instant.timestamp_subsec_millis(), 250);
    }

    #[test]
    fn durations_print_like_go() {
        let cases = [
            (TimeDelta::seconds(766), "12m46s"),
            (TimeDelta::seconds(45), "45s"),
            (TimeDelta::seconds(3605), "1h0m5s"),
            (TimeDelta::seconds(-60), "1m0s"),
            (TimeDelta::milliseconds(1500), "1.5s"),
            (TimeDelta::milliseconds(250), "250ms"),
            (TimeDelta::zero(), "0s"),
            (TimeDelta::days(2), "48h0m0s"),
            (TimeDelta::nanoseconds(1), "1ns"),
            (TimeDelta::nanoseconds(1_500), "1.5µs"),
            (TimeDelta::nanoseconds(1_000_001), "1.000001ms"),
            (TimeDelta::nanoseconds(3_600_000_000_010), "1h0m0.00000001s"),
            (TimeDelta::seconds(59) + TimeDelta::nanoseconds(120_000_000), "59.12s"),
            (TimeDelta::MAX, "2562047788015h12m55.807s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
    }
}
