//! Timestamps as the API shows them: ISO-8601 UTC with milliseconds (`2026-01-01T00:00:00.000Z`).
//! Fixed width, so they sort as strings in both stores.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Now, formatted.
pub fn now_iso() -> String {
    format_iso(OffsetDateTime::now_utc())
}

/// A time, formatted.
///
/// The one hand-written formatter left, on purpose: the reveal path stamps every request, and
/// `time`'s formatter with the same description costs ~160–220 ns more per call (40–48 against
/// 206–258 ns/op, `cargo run --release -p ttscm-runtime --example timestamp_bench`, 2-core host
/// under load). The tests hold it equal to `time`'s output (`format_iso_generic`) over leap
/// days, year and century boundaries and thousands of other instants.
pub fn format_iso(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    let Ok(year) = u32::try_from(at.year()) else {
        return format_iso_generic(at);
    };
    if year > 9999 {
        return format_iso_generic(at);
    }
    // Digits written in place: the general formatter walks its description item by item.
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for slot in text[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, u32::from(u8::from(at.month())));
    put(8, 2, u32::from(at.day()));
    put(11, 2, u32::from(at.hour()));
    put(14, 2, u32::from(at.minute()));
    put(17, 2, u32::from(at.second()));
    put(20, 3, u32::from(at.millisecond()));
    String::from_utf8(text.to_vec()).expect("digits and separators are ASCII")
}

/// [`format_iso`] through `time`'s formatter (years outside 0–9999).
fn format_iso_generic(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.format(&format)
        .expect("a UTC date with a 4-digit year always formats")
}

/// `seconds` from now (negative: ago), formatted.
pub fn now_offset(seconds: i64) -> String {
    format_iso(OffsetDateTime::now_utc() + time::Duration::seconds(seconds))
}

/// Parses an RFC 3339 timestamp.
pub fn parse_iso(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    u64::try_from(OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_millis() -> i64 {
    i64::try_from(OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leap_days_and_year_boundaries_format_as_the_general_formatter_does() {
        let mut checked = 0;
        for year in (1970..=2100).chain([0, 1, 1600, 1900, 2400, 9998, 9999]) {
            let day = |month: time::Month, day: u8| {
                time::Date::from_calendar_date(year, month, day).expect("a real date")
            };
            let mut days = vec![
                day(time::Month::January, 1),
                day(time::Month::February, 28),
                day(time::Month::March, 1),
                day(time::Month::December, 31),
            ];
            if time::util::is_leap_year(year) {
                days.push(day(time::Month::February, 29));
            }
            for date in days {
                for (hour, minute, second, milli) in [(0, 0, 0, 0), (23, 59, 59, 999), (12, 34, 56, 7)] {
                    let at = date
                        .with_hms_milli(hour, minute, second, milli)
                        .expect("a real time")
                        .assume_utc();
                    assert_eq!(format_iso(at), format_iso_generic(at), "{at}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 1600, "{checked}");
        assert_eq!(
            format_iso(time::macros::datetime!(2024-02-29 23:59:59.999 UTC)),
            "2024-02-29T23:59:59.999Z"
        );
        assert_eq!(
            format_iso(time::macros::datetime!(1999-12-31 23:59:59.9999 UTC)),
            "1999-12-31T23:59:59.999Z",
            "milliseconds are cut, not rounded"
        );
    }

    #[test]
    fn timestamps_format_as_the_general_formatter_does() {
        let mut checked = 0;
        for seconds in [
            0i64,
            59,
            951_782_400,
            1_709_164_799,
            1_798_761_599,
            253_402_300_799,
        ]
        .into_iter()
        .chain((0..2000).map(|i| i * 126_230_401 % 253_402_300_799))
        {
            for nanos in [0i128, 1_000_000, 999_999_999, 123_456_789] {
                let at =
                    OffsetDateTime::from_unix_timestamp_nanos(i128::from(seconds) * 1_000_000_000 + nanos)
                        .expect("in range");
                assert_eq!(format_iso(at), format_iso_generic(at), "{seconds}.{nanos}");
                checked += 1;
            }
        }
        assert_eq!(checked, 2006 * 4);
        let offset = OffsetDateTime::from_unix_timestamp(0)
            .expect("in range")
            .to_offset(time::UtcOffset::from_hms(5, 30, 0).expect("valid"));
        assert_eq!(format_iso(offset), "1970-01-01T00:00:00.000Z");
    }
}
