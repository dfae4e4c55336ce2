//! HAProxy's rise/fall logic as a pure state machine: only *consecutive* results count; a
//! backend goes down after `fall` failures in a row and up after `rise` successes in a row.
//! The interval to the next check follows HAProxy too: `inter` while steady and up,
//! `fastinter` while a change is pending, `downinter` while steady and down.

use std::time::Duration;

/// What the checks say about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Passing (or not yet failed `fall` times since the start).
    Up,
    /// Failing.
    Down,
}

/// Thresholds and intervals of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Successes in a row that bring a down backend up.
    pub rise: u32,
    /// Failures in a row that bring an up backend down.
    pub fall: u32,
    /// Interval while up and steady.
    pub inter: Duration,
    /// Interval while a change is pending.
    pub fastinter: Duration,
    /// Interval while down and steady.
    pub downinter: Duration,
}

/// One backend's standing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracker {
    verdict: Verdict,
    /// Results in a row that disagree with `verdict`.
    against: u32,
}

impl Tracker {
    /// A backend starts up, as in HAProxy: traffic flows at start-up, and `fall` failures take
    /// it out.
    pub fn new() -> Self {
        Tracker {
            verdict: Verdict::Up,
            against: 0,
        }
    }

    /// A backend whose verdict is already known (kept across a reload).
    pub fn starting(verdict: Verdict) -> Self {
        Tracker {
            verdict,
            against: 0,
        }
    }

    /// The current verdict.
    pub fn verdict(&self) -> Verdict {
        self.verdict
    }

    /// Counts one result; returns the new verdict if it changed.
    pub fn record(&mut self, passed: bool, timing: &Timing) -> Option<Verdict> {
        let agrees = passed == (self.verdict == Verdict::Up);
        if agrees {
            self.against = 0;
            return None;
        }
        self.against += 1;
        let needed = match self.verdict {
            Verdict::Up => timing.fall,
            Verdict::Down => timing.rise,
        };
        if self.against < needed {
            return None;
        }
        self.verdict = match self.verdict {
            Verdict::Up => Verdict::Down,
            Verdict::Down => Verdict::Up,
        };
        self.against = 0;
        Some(self.verdict)
    }

    /// How long to wait before the next check.
    pub fn next_interval(&self, timing: &Timing) -> Duration {
        match (self.verdict, self.against) {
            (_, 1..) => timing.fastinter,
            (Verdict::Up, 0) => timing.inter,
            (Verdict::Down, 0) => timing.downinter,
        }
    }
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMING: Timing = Timing {
        rise: 2,
        fall: 3,
        inter: Duration::from_secs(2),
        fastinter: Duration::from_millis(500),
        downinter: Duration::from_secs(5),
    };

    #[test]
    fn goes_down_after_fall_consecutive_failures_only() {
        let mut t = Tracker::new();
        assert_eq!(t.record(false, &TIMING), None);
        assert_eq!(t.record(false, &TIMING), None);
        // A success in between resets the count: results must be consecutive.
        assert_eq!(t.record(true, &TIMING), None);
        assert_eq!(t.record(false, &TIMING), None);
        assert_eq!(t.record(false, &TIMING), None);
        assert_eq!(t.record(false, &TIMING), Some(Verdict::Down));
        assert_eq!(t.verdict(), Verdict::Down);
    }

    #[test]
    fn comes_back_after_rise_consecutive_successes() {
        let mut t = Tracker::new();
        for _ in 0..3 {
            t.record(false, &TIMING);
        }
        assert_eq!(t.record(true, &TIMING), None);
        assert_eq!(t.record(false, &TIMING), None);
        assert_eq!(t.record(true, &TIMING), None);
        assert_eq!(t.record(true, &TIMING), Some(Verdict::Up));
    }

    #[test]
    fn intervals_follow_haproxy() {
        let mut t = Tracker::new();
        assert_eq!(t.next_interval(&TIMING), TIMING.inter);
        t.record(false, &TIMING);
        assert_eq!(
            t.next_interval(&TIMING),
            TIMING.fastinter,
            "a fall is pending"
        );
        t.record(false, &TIMING);
        t.record(false, &TIMING);
        assert_eq!(
            t.next_interval(&TIMING),
            TIMING.downinter,
            "down and steady"
        );
        t.record(true, &TIMING);
        assert_eq!(
            t.next_interval(&TIMING),
            TIMING.fastinter,
            "a rise is pending"
        );
    }

    #[test]
    fn rise_and_fall_of_one_flip_at_once() {
        let timing = Timing {
            rise: 1,
            fall: 1,
            ..TIMING
        };
        let mut t = Tracker::new();
        assert_eq!(t.record(false, &timing), Some(Verdict::Down));
        assert_eq!(t.record(true, &timing), Some(Verdict::Up));
    }
}
