//! Time arithmetic the rest of the core shares. Nothing here reads a clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `t + d`, saturating: durations come from the application (a timeout of
/// `Duration::MAX` means "never"), and `Instant` addition panics on
/// overflow.
pub(crate) fn later(t: Instant, d: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    t.checked_add(d.min(CENTURY))
        .or_else(|| t.checked_add(Duration::from_secs(365 * 24 * 3600)))
        .unwrap_or(t)
}

/// The earlier of two optional deadlines.
pub(crate) fn earliest<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// 64-bit NTP time (32.32 fixed point) of a system time. str0m reports the
/// remote's sender reports with a `SystemTime`; this is no clock read.
pub(crate) fn ntp_of_system_time(t: SystemTime) -> u64 {
    const NTP_UNIX_OFFSET: u64 = 2_208_988_800;
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_picks_the_first() {
        assert_eq!(earliest(Some(2), Some(1)), Some(1));
        assert_eq!(earliest(None, Some(2)), Some(2));
        assert_eq!(earliest::<u32>(None, None), None);
    }

    #[test]
    fn ntp_of_the_unix_epoch() {
        assert_eq!(ntp_of_system_time(UNIX_EPOCH), 2_208_988_800u64 << 32);
    }
}
