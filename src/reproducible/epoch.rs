//! `SOURCE_DATE_EPOCH`: the one time a build may write into the image. Given by the user, or
//! taken from the inputs: the `Date:` of the mirror's Release file, which only changes when the
//! mirror's content does.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where the build's time came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "from")]
pub enum EpochOrigin {
    /// `--source-date-epoch` or the `SOURCE_DATE_EPOCH` variable.
    Given,
    /// The `Date:` field of this Release file.
    MirrorRelease(String),
    /// No input dates the build: the clock was used and the image is NOT reproducible.
    Clock,
}

/// Seconds since 1970 and where they came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceDateEpoch {
    pub seconds: i64,
    pub origin: EpochOrigin,
}

impl fmt::Display for SourceDateEpoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            EpochOrigin::Given => write!(f, "{} (given)", self.seconds),
            EpochOrigin::MirrorRelease(url) => write!(f, "{} (Date: of {url})", self.seconds),
            EpochOrigin::Clock => write!(f, "{} (the clock: no input dates this build)", self.seconds),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EpochError {
    #[error("cannot date the build from the mirror: {url}: {reason} (set SOURCE_DATE_EPOCH to build anyway)")]
    Mirror { url: String, reason: String },
}

/// Decide the build's epoch: the given one, else the mirror's Release date, else the clock
/// (with the origin saying so, so the manifest does not claim reproducibility it lacks).
pub fn decide(given: Option<i64>, mirror: Option<&str>, release: &str) -> Result<SourceDateEpoch, EpochError> {
    if let Some(seconds) = given {
        return Ok(SourceDateEpoch { seconds, origin: EpochOrigin::Given });
    }
    if let Some(mirror) = mirror {
        let (url, seconds) = fetch_release_date(mirror, release)?;
        return Ok(SourceDateEpoch { seconds, origin: EpochOrigin::MirrorRelease(url) });
    }
    let now = crate::clock::now();
    Ok(SourceDateEpoch { seconds: i64::try_from(now).unwrap_or(i64::MAX), origin: EpochOrigin::Clock })
}

/// The `Date:` of `<mirror>/dists/<release>/InRelease`, or of `Release` where a repository
/// has no InRelease. curl, like the root stage's downloads, so proxies and file:// work alike.
fn fetch_release_date(mirror: &str, release: &str) -> Result<(String, i64), EpochError> {
    let base = format!("{}/dists/{release}", mirror.trim_end_matches('/'));
    let mut last_error = String::new();
    for name in ["InRelease", "Release"] {
        let url = format!("{base}/{name}");
        match fetch(&url) {
            Ok(text) => {
                let seconds = release_date(&text).ok_or_else(|| EpochError::Mirror {
                    url: url.clone(),
                    reason: "no readable `Date:` field".into(),
                })?;
                return Ok((url, seconds));
            }
            Err(reason) => last_error = reason,
        }
    }
    Err(EpochError::Mirror { url: format!("{base}/InRelease"), reason: last_error })
}

fn fetch(url: &str) -> Result<String, String> {
    crate::mirror::fetch(url, 60).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
}

/// The `Date:` field of a Release or InRelease file as seconds since 1970.
pub fn release_date(text: &str) -> Option<i64> {
    text.lines().find_map(|line| line.strip_prefix("Date:")).and_then(parse_rfc2822)
}

/// `Sat, 09 Nov 2024 10:44:43 UTC` (the form apt's Release files use; the weekday and the
/// zone name are optional, a numeric zone offset is applied).
pub fn parse_rfc2822(text: &str) -> Option<i64> {
    let mut fields: Vec<&str> = text.split_whitespace().collect();
    if fields.first().is_some_and(|f| f.ends_with(',')) {
        fields.remove(0);
    }
    let [day, month, year, time, rest @ ..] = fields.as_slice() else { return None };
    let day: i64 = day.parse().ok()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m.eq_ignore_ascii_case(month))? as i64
        + 1;
    let year: i64 = year.parse().ok()?;
    let mut clock = time.split(':').map(|part| part.parse::<i64>().ok());
    let (hour, minute, second) = (clock.next()??, clock.next()??, clock.next().flatten().unwrap_or(0));
    let offset = match rest.first() {
        Some(zone) if zone.starts_with(['+', '-']) && zone.len() == 5 => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let hours: i64 = zone[1..3].parse().ok()?;
            let minutes: i64 = zone[3..5].parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
        _ => 0,
    };
    if !(1..=31).contains(&day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_date_is_read_as_utc_seconds() {
        let release =
            "Origin: Debian\nLabel: Debian\nSuite: stable\nDate: Sat, 09 Nov 2024 10:44:43 UTC\nValid-Until: x\n";
        // date -u -d 'Sat, 09 Nov 2024 10:44:43 UTC' +%s
        assert_eq!(release_date(release), Some(1_731_149_083));
        assert_eq!(parse_rfc2822("Thu, 01 Jan 1970 00:00:00 UTC"), Some(0));
        assert_eq!(parse_rfc2822("29 Feb 2024 12:00:00 +0100"), Some(1_709_204_400));
        assert_eq!(release_date("Origin: x\n"), None);
        assert_eq!(parse_rfc2822("Sat, 09 Foo 2024 10:44:43 UTC"), None);
    }

    #[test]
    fn given_epoch_wins_and_bad_ones_are_named() {
        let epoch = decide(Some(42), Some("http://unused.invalid/debian"), "bookworm").unwrap();
        assert_eq!(epoch, SourceDateEpoch { seconds: 42, origin: EpochOrigin::Given });
    }

    #[test]
    fn mirror_release_file_dates_the_build() {
        let mirror = tempfile::tempdir().unwrap();
        let dists = mirror.path().join("dists/bookworm");
        std::fs::create_dir_all(&dists).unwrap();
        std::fs::write(dists.join("Release"), "Date: Sat, 09 Nov 2024 10:44:43 UTC\n").unwrap();
        let url = format!("file://{}", mirror.path().display());
        let epoch = decide(None, Some(&url), "bookworm").unwrap();
        assert_eq!(epoch.seconds, 1_731_149_083);
        assert_eq!(epoch.origin, EpochOrigin::MirrorRelease(format!("{url}/dists/bookworm/Release")));
        let err = decide(None, Some(&url), "trixie").unwrap_err().to_string();
        assert!(err.contains("dists/trixie/InRelease"), "{err}");
    }

    #[test]
    fn without_any_input_date_the_origin_says_clock() {
        assert_eq!(decide(None, None, "bookworm").unwrap().origin, EpochOrigin::Clock);
    }
}
