//! The one timestamp format tarn writes: RFC 3339 in UTC with milliseconds
//! (`2026-11-27T04:46:23.123Z`). Invariant: every stored or returned instant is formatted
//! here, so stamps sort as text and compare across tables.

use chrono::{DateTime, SecondsFormat, Utc};

/// An instant in the one format.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now, in the one format.
pub fn now() -> String {
    stamp(Utc::now())
}

/// `d` from now, in the one format (a retry's or an expiry's time).
pub fn after(d: std::time::Duration) -> String {
    stamp(Utc::now() + chrono::Duration::from_std(d).unwrap_or_default())
}
