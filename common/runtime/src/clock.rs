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
pub fn format_iso(at: OffsetDateTime) -> String {
    let format = format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    at.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .expect("a UTC date with a 4-digit year always formats")
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
