//! The crash-loop breaker: a plugin that fails again and again (traps,
//! timeouts, memory limit, broken contract) is disabled for a while instead of
//! being rebuilt for every batch. After `cooldown` one call is let through:
//! if it succeeds the plugin is back, if it fails it is disabled again.
//! Errors the plugin returns itself are answers, not crashes: they do not count.

use crate::config::BreakerSettings;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A change of state, for the alert the engine raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerEvent {
    /// Disabled after this many failures within the window.
    Opened {
        /// The failures counted.
        failures: u32,
    },
    /// A try after the cooldown succeeded: enabled again.
    Closed,
}

/// One plugin's breaker.
#[derive(Debug)]
pub struct Breaker {
    settings: BreakerSettings,
    failures: VecDeque<Instant>,
    open_until: Option<Instant>,
    /// Times it opened.
    pub trips: u64,
    events: Vec<BreakerEvent>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(settings: BreakerSettings) -> Breaker {
        Breaker {
            settings,
            failures: VecDeque::new(),
            open_until: None,
            trips: 0,
            events: Vec::new(),
        }
    }

    /// Whether a call may go ahead at `now`; if not, how long until the next try.
    pub fn allow(&self, now: Instant) -> Result<(), Duration> {
        match self.open_until {
            Some(until) if now < until => Err(until - now),
            _ => Ok(()),
        }
    }

    /// True while disabled (including a pending try after the cooldown).
    pub fn is_open(&self) -> bool {
        self.open_until.is_some()
    }

    /// A call succeeded (or the plugin answered with its own error).
    pub fn success(&mut self) {
        if self.open_until.take().is_some() {
            self.failures.clear();
            self.events.push(BreakerEvent::Closed);
        }
    }

    /// A call failed at `now`.
    pub fn failure(&mut self, now: Instant) {
        let s = &self.settings;
        if s.max_failures == 0 {
            return;
        }
        if self.open_until.is_some() {
            // The try after the cooldown failed: another cooldown.
            self.open_until = Some(now + s.cooldown);
            return;
        }
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > s.window)
        {
            self.failures.pop_front();
        }
        if self.failures.len() >= s.max_failures as usize {
            let failures = self.failures.len() as u32;
            self.failures.clear();
            self.open_until = Some(now + s.cooldown);
            self.trips += 1;
            self.events.push(BreakerEvent::Opened { failures });
        }
    }

    /// State changes since the last call.
    pub fn take_events(&mut self) -> Vec<BreakerEvent> {
        std::mem::take(&mut self.events)
    }

    /// The settings.
    pub fn settings(&self) -> &BreakerSettings {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::BreakerPolicy;

    fn breaker() -> Breaker {
        Breaker::new(BreakerSettings {
            max_failures: 3,
            window: Duration::from_secs(10),
            cooldown: Duration::from_secs(60),
            policy: BreakerPolicy::Bypass,
        })
    }

    #[test]
    fn opens_after_n_failures_within_the_window_and_not_before() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.failure(t0);
        b.failure(t0 + Duration::from_secs(20)); // the first is out of the window
        b.failure(t0 + Duration::from_secs(21));
        assert!(!b.is_open());
        b.failure(t0 + Duration::from_secs(22));
        assert!(b.is_open());
        assert_eq!(b.take_events(), vec![BreakerEvent::Opened { failures: 3 }]);
        assert_eq!(b.trips, 1);
        assert!(b.allow(t0 + Duration::from_secs(30)).is_err());
    }

    #[test]
    fn a_try_after_the_cooldown_closes_or_reopens_it() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..3 {
            b.failure(t0);
        }
        let later = t0 + Duration::from_secs(61);
        assert!(b.allow(later).is_ok(), "one try after the cooldown");
        b.failure(later);
        assert!(
            b.allow(later + Duration::from_secs(1)).is_err(),
            "disabled again"
        );
        assert_eq!(b.trips, 1, "a failed try is not a new trip");
        let again = later + Duration::from_secs(61);
        assert!(b.allow(again).is_ok());
        b.success();
        assert!(!b.is_open());
        assert_eq!(
            b.take_events(),
            vec![BreakerEvent::Opened { failures: 3 }, BreakerEvent::Closed]
        );
    }

    #[test]
    fn zero_max_failures_never_opens() {
        let mut b = Breaker::new(BreakerSettings {
            max_failures: 0,
            ..BreakerSettings::default()
        });
        for _ in 0..100 {
            b.failure(Instant::now());
        }
        assert!(!b.is_open());
    }
}
