//! The wall clock read as a number, in one place: cache entry times and age cut-offs, and the
//! time of a build that nothing else dates (`reproducible::epoch`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch (0 if the clock is before it).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A Unix time as UTC calendar fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: i64,
    pub day: i64,
    pub hour: i64,
    pub minute: i64,
    pub second: i64,
}

/// `seconds` since the epoch in UTC.
pub fn utc(seconds: i64) -> Utc {
    let rest = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    Utc { year, month, day, hour: rest / 3600, minute: rest % 3600 / 60, second: rest % 60 }
}

/// Howard Hinnant's inverse of days-from-civil.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    (year_of_era + era * 400 + i64::from(month <= 2), month, day)
}

/// The time as disk-image-create's log prefixes each line (outfilter.py:
/// `%Y-%m-%d %H:%M:%S.` and milliseconds, UTC).
pub fn log_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let t = utc(i64::try_from(since.as_secs()).unwrap_or(0));
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:03}",
        t.year,
        t.month,
        t.day,
        t.hour,
        t.minute,
        t.second,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_timestamps_are_dibs_utc_with_milliseconds() {
        let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_042);
        assert_eq!(super::log_timestamp(time), "2023-11-14 22:13:20.042");
        assert_eq!(super::utc(951_782_400).day, 29, "2000-02-29");
    }

    #[test]
    fn now_is_the_system_clock_in_seconds() {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let now = super::now();
        assert!(now >= before && now <= before + 5, "{now} vs {before}");
    }
}
