//! Sources of spans: JSONL files and stdin, and the OTLP receivers (HTTP and gRPC).

pub mod jsonl;
pub mod otlp;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Spans read or received but not yet taken by the batcher, at most: the
/// bound that keeps memory flat when sources outrun the pipeline. Counted in
/// spans, not requests, because one request may carry one span or forty
/// thousand.
#[derive(Debug)]
pub struct SpanBudget {
    queued: AtomicUsize,
    max: usize,
}

impl SpanBudget {
    /// A budget of `max` spans (at least 1).
    pub fn new(max: usize) -> SpanBudget {
        SpanBudget {
            queued: AtomicUsize::new(0),
            max: max.max(1),
        }
    }

    /// Takes room for `n` spans; false when there is none. When nothing is
    /// queued any size fits, so a request larger than the budget still
    /// goes through on its own.
    pub fn try_take(&self, n: usize) -> bool {
        self.queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued == 0 || queued + n <= self.max).then_some(queued + n)
            })
            .is_ok()
    }

    /// Takes room for `n` spans, waiting for it (file readers).
    pub fn take(&self, n: usize) {
        while !self.try_take(n) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Gives room for `n` spans back (they left the queue, or were refused).
    pub fn give_back(&self, n: usize) {
        let _ = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                Some(queued.saturating_sub(n))
            });
    }

    /// Spans queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_bounds_spans_but_lets_one_large_request_through() {
        let b = SpanBudget::new(100);
        assert!(b.try_take(60));
        assert!(b.try_take(40));
        assert!(!b.try_take(1), "full");
        b.give_back(100);
        assert!(b.try_take(5000), "alone, a large request fits");
        assert!(!b.try_take(1));
        b.give_back(5000);
        assert_eq!(b.queued(), 0);
    }
}
