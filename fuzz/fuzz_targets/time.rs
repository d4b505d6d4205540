//! The time parsing and printing of the core (`core::time`): `restorePointInTime`
//! (`PointInTime::parse`: RFC 3339 or the kbcli layout), a Backup's status times
//! (`parse_status_time`), the normal form (M2), and Go-style durations of the messages.
//!
//! The bytes as text:
//! - `PointInTime::parse` accepts exactly what an independent reference reading of the two
//!   layouts of SPEC.md accepts (Go's `time.RFC3339`: `T`, `Z` or `±hh:mm`, an optional `.`
//!   fraction, fields in range, no leap second; kbcli's `Jan 02,2006 15:04:05 UTC-0700`), at the
//!   same instant; and `parse_status_time` is the RFC 3339 one, to the whole second.
//! - The normal form (what M2 writes into the object) is UTC whole seconds and parses back to
//!   the same second; `is_normal_form` says of a text exactly whether it is its own normal form; `display` parses back to the exact instant; a fraction is reported
//!   exactly when the instant has one.
//!
//! The first 12 bytes as a duration and an instant (seconds, nanoseconds):
//! - `go_duration` prints Go's layout, and reading it back gives the duration's magnitude.
//! - `format_time` writes what chrono's `%Y-%m-%dT%H:%M:%SZ` writes, and a time of years
//!   0..=9999 so written parses back (status time and point in time) to the same second.

#![no_main]

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use libfuzzer_sys::fuzz_target;
use pitrguard::core::time::{PointInTime, display_time, format_time, go_duration, is_normal_form, parse_status_time};

/// (seconds since the epoch, nanoseconds) of a valid civil time, by the proleptic Gregorian calendar.
fn civil(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64, offset_secs: i64) -> Option<(i64, u32)> {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let days_in = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&mo) || d < 1 || d > days_in[(mo - 1) as usize] || h > 23 || mi > 59 || s > 59 {
        return None;
    }
    // Days from 1970-01-01 (Howard Hinnant's days_from_civil).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset_secs, 0))
}

fn num(b: &[u8]) -> Option<i64> {
    b.iter().all(u8::is_ascii_digit).then(|| b.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
}

/// `2006-01-02T15:04:05[.fraction](Z|±07:00)`; the fraction is cut after nine digits.
fn reference_rfc3339(s: &str) -> Option<(i64, u32)> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (num(&b[0..4])?, num(&b[5..7])?, num(&b[8..10])?);
    let (h, mi, sec) = (num(&b[11..13])?, num(&b[14..16])?, num(&b[17..19])?);
    let mut rest = &b[19..];
    let mut nanos = 0u32;
    if rest.first() == Some(&b'.') {
        let digits = rest[1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        for i in 0..9 {
            nanos = nanos * 10 + rest.get(1 + i).filter(|_| i < digits).map_or(0, |c| u32::from(c - b'0'));
        }
        rest = &rest[1 + digits..];
    }
    let offset = match rest {
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let (oh, om) = (num(&[*h1, *h2])?, num(&[*m1, *m2])?);
            if oh > 23 || om > 59 {
                return None;
            }
            (oh * 3600 + om * 60) * if *sign == b'-' { -1 } else { 1 }
        }
        _ => return None,
    };
    civil(y, mo, d, h, mi, sec, offset).map(|(t, _)| (t, nanos))
}

/// `Jan 02,2006 15:04:05 UTC-0700`.
fn reference_kbcli(s: &str) -> Option<(i64, u32)> {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let b = s.as_bytes();
    if b.len() != 29 || b[3] != b' ' || b[6] != b',' || b[11] != b' ' || b[14] != b':' || b[17] != b':' {
        return None;
    }
    if &b[20..24] != b" UTC" || !matches!(b[24], b'+' | b'-') {
        return None;
    }
    let mo = MONTHS.iter().position(|m| m.as_bytes() == &b[0..3])? as i64 + 1;
    let (d, y) = (num(&b[4..6])?, num(&b[7..11])?);
    let (h, mi, sec) = (num(&b[12..14])?, num(&b[15..17])?, num(&b[18..20])?);
    let (oh, om) = (num(&b[25..27])?, num(&b[27..29])?);
    if oh > 23 || om > 59 {
        return None;
    }
    let offset = (oh * 3600 + om * 60) * if b[24] == b'-' { -1 } else { 1 };
    civil(y, mo, d, h, mi, sec, offset)
}

fn instant(t: DateTime<Utc>) -> (i64, u32) {
    (t.timestamp(), t.timestamp_subsec_nanos())
}

/// Reads Go's `time.Duration.String` layout back, in nanoseconds.
fn read_go_duration(s: &str) -> u128 {
    let body = s.strip_suffix('s').unwrap_or_else(|| panic!("{s:?} does not end in s"));
    let (body, scale) = if let Some(b) = body.strip_suffix('m') {
        (b, 1_000_000u128)
    } else if let Some(b) = body.strip_suffix('µ') {
        (b, 1_000)
    } else if let Some(b) = body.strip_suffix('n') {
        (b, 1)
    } else {
        // [Nh][Nm]N[.frac]
        let (hours, rest) = body.split_once('h').map_or((0, body), |(h, r)| (h.parse::<u128>().unwrap(), r));
        let (minutes, rest) = rest.split_once('m').map_or((0, rest), |(m, r)| (m.parse::<u128>().unwrap(), r));
        assert!(minutes < 60 || body.find('h').is_none(), "{s:?}");
        let seconds = decimal(rest, 1_000_000_000, s);
        return (hours * 3600 + minutes * 60) * 1_000_000_000 + seconds;
    };
    decimal(body, scale, s)
}

/// `N[.frac]` times `scale`, exactly; the fraction has no trailing zero and fits the scale.
fn decimal(text: &str, scale: u128, whole: &str) -> u128 {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    assert!(!int.is_empty() && int.bytes().all(|b| b.is_ascii_digit()), "{whole:?}");
    assert!(frac.bytes().all(|b| b.is_ascii_digit()) && !frac.ends_with('0'), "{whole:?}");
    let digits = scale.ilog10() as usize;
    assert!(frac.len() <= digits, "{whole:?}");
    let frac_value =
        if frac.is_empty() { 0 } else { frac.parse::<u128>().unwrap() * 10u128.pow((digits - frac.len()) as u32) };
    int.parse::<u128>().unwrap() * scale + frac_value
}

fn check_text(s: &str) {
    let parsed = PointInTime::parse(s);
    let raw = s.trim();
    let reference = reference_kbcli(raw).or_else(|| reference_rfc3339(raw));
    assert_eq!(parsed.map(|p| instant(p.instant)), reference, "PointInTime::parse({s:?})");
    let status = parse_status_time(s);
    assert_eq!(status.map(instant), reference_rfc3339(raw).map(|(t, _)| (t, 0)), "parse_status_time({s:?})");
    let Some(p) = parsed else {
        assert!(!is_normal_form(s), "is_normal_form({s:?}) of a text that is not a time");
        return;
    };
    let normal = p.normal_form();
    assert_eq!(is_normal_form(s), s == normal, "is_normal_form({s:?}), normal form {normal:?}");
    let again =
        PointInTime::parse(&normal).unwrap_or_else(|| panic!("the normal form {normal:?} of {s:?} does not parse"));
    assert_eq!(again.instant, p.instant.trunc_subsecs(0), "{s:?} -> {normal:?}");
    assert!(normal.len() == 20 && normal.ends_with('Z') && !again.has_fraction(), "{normal:?}");
    assert_eq!(again.normal_form(), normal, "the normal form is a fixed point");
    let shown = p.display();
    let back = PointInTime::parse(&shown).unwrap_or_else(|| panic!("display {shown:?} of {s:?} does not parse"));
    assert_eq!(back.instant, p.instant, "{s:?} -> {shown:?}");
    assert_eq!(p.has_fraction(), p.instant.timestamp_subsec_nanos() != 0);
    assert_eq!(p.has_fraction(), shown != normal, "{shown:?} vs {normal:?}");
}

fn check_numbers(data: &[u8]) {
    let secs = i64::from_le_bytes(data[0..8].try_into().unwrap());
    let nanos = u32::from_le_bytes(data[8..12].try_into().unwrap()) % 1_000_000_000;
    if let Some(d) = TimeDelta::new(secs, nanos) {
        let printed = go_duration(d);
        let magnitude = (i128::from(d.num_seconds()) * 1_000_000_000 + i128::from(d.subsec_nanos())).unsigned_abs();
        assert_eq!(read_go_duration(&printed), magnitude, "go_duration({d:?}) = {printed:?}");
    }
    // Seconds that chrono can hold: about ±262 000 years.
    let Some(t) = DateTime::<Utc>::from_timestamp(secs % 8_000_000_000_000, nanos) else { return };
    let written = format_time(t);
    assert_eq!(written, t.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    use chrono::Datelike;
    if (0..=9999).contains(&t.year()) {
        let whole = t.trunc_subsecs(0);
        assert_eq!(parse_status_time(&written), Some(whole), "{written:?}");
        let p = PointInTime::parse(&written).unwrap_or_else(|| panic!("{written:?} does not parse"));
        assert_eq!((p.instant, p.normal_form()), (whole, written.clone()));
        let shown = display_time(t);
        assert_eq!(PointInTime::parse(&shown).map(|p| p.instant), Some(t), "{shown:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        check_text(s);
    }
    if data.len() >= 12 {
        check_numbers(data);
    }
});
