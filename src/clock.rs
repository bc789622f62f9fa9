//! The wall clock read as a number, in one place: cache entry times and age cut-offs, and the
//! time of a build that nothing else dates (`reproducible::epoch`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch (0 if the clock is before it).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_the_system_clock_in_seconds() {
        let before = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let now = super::now();
        assert!(now >= before && now <= before + 5, "{now} vs {before}");
    }
}
