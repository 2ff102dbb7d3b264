//! Summaries of measured durations.

use std::time::Duration;

/// Median, p99 and max of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    pub median: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Spread {
    /// `None` for an empty set.
    pub fn of(samples: &[Duration]) -> Option<Spread> {
        if samples.is_empty() {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_unstable();
        let at = |q: f64| s[((s.len() as f64 * q).ceil() as usize).clamp(1, s.len()) - 1];
        Some(Spread {
            median: at(0.5),
            p99: at(0.99),
            max: s[s.len() - 1],
        })
    }
}

impl std::fmt::Display for Spread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "median {}, p99 {}, max {}",
            human(self.median),
            human(self.p99),
            human(self.max)
        )
    }
}

/// A duration in the unit that reads best.
pub fn human(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = Spread::of(&samples).unwrap();
        assert_eq!(s.median, Duration::from_millis(50));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(Spread::of(&[]), None);
        let one = Spread::of(&[Duration::from_micros(7)]).unwrap();
        assert_eq!(
            (one.median, one.p99),
            (Duration::from_micros(7), Duration::from_micros(7))
        );
    }
}
