//! A rolling window of DDSketches: 12 sub-windows of time, or 10 of counts.

use serde::{Deserialize, Serialize};
use sketches_ddsketch::{Config, DDSketch};
use std::collections::VecDeque;

const TIME_SLICES: u64 = 12;
const COUNT_SLICES: u64 = 10;

/// How a window rolls.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum WindowKind {
    /// The last `ns` of event time.
    Time(u64),
    /// The last N spans.
    Spans(u64),
}

/// One group's window.
#[derive(Serialize, Deserialize)]
pub struct Rolling {
    kind: WindowKind,
    /// (slice id, sketch), oldest first. Slice id: start time for time
    /// windows, a sequence number for count windows.
    slices: VecDeque<(u64, DDSketch)>,
    /// Spans in the newest slice (count windows).
    in_newest: u64,
    /// Latest event time seen (time windows).
    latest: u64,
}

fn sketch() -> DDSketch {
    // 1% relative accuracy, at most 2048 bins: bounded memory per sketch.
    DDSketch::new(Config::new(0.01, 2048, 1.0e-9))
}

impl Rolling {
    /// An empty window.
    pub fn new(kind: WindowKind) -> Self {
        Rolling {
            kind,
            slices: VecDeque::new(),
            in_newest: 0,
            latest: 0,
        }
    }

    /// Adds a latency (ms) observed at event time `at`; false when it is
    /// older than the window (too late to count).
    pub fn add(&mut self, at: u64, ms: f64) -> bool {
        match self.kind {
            WindowKind::Time(window) => {
                let width = (window / TIME_SLICES).max(1);
                let slice = at / width * width;
                if slice + width + window <= self.latest {
                    return false;
                }
                match self.slices.iter_mut().find(|(id, _)| *id == slice) {
                    Some((_, s)) => s.add(ms),
                    None => {
                        let mut s = sketch();
                        s.add(ms);
                        let pos = self
                            .slices
                            .iter()
                            .position(|(id, _)| *id > slice)
                            .unwrap_or(self.slices.len());
                        self.slices.insert(pos, (slice, s));
                    }
                }
                self.expire(at);
                true
            }
            WindowKind::Spans(n) => {
                let per_slice = (n / COUNT_SLICES).max(1);
                if self.slices.is_empty() || self.in_newest >= per_slice {
                    let next = self.slices.back().map_or(0, |(id, _)| id + 1);
                    self.slices.push_back((next, sketch()));
                    self.in_newest = 0;
                    while self.slices.len() as u64 > COUNT_SLICES {
                        self.slices.pop_front();
                    }
                }
                if let Some((_, s)) = self.slices.back_mut() {
                    s.add(ms);
                }
                self.in_newest += 1;
                true
            }
        }
    }

    /// Moves event time to `now` and drops the time slices that ended at or
    /// before `now - window`.
    pub fn expire(&mut self, now: u64) {
        self.latest = self.latest.max(now);
        if let WindowKind::Time(window) = self.kind {
            let width = (window / TIME_SLICES).max(1);
            while self
                .slices
                .front()
                .is_some_and(|(id, _)| id + width + window <= self.latest)
            {
                self.slices.pop_front();
            }
        }
    }

    /// All slices merged; `None` when empty.
    pub fn merged(&self) -> Option<DDSketch> {
        let mut iter = self.slices.iter();
        let (_, first) = iter.next()?;
        let mut out = first.clone();
        for (_, s) in iter {
            out.merge(s).ok()?;
        }
        (out.count() > 0).then_some(out)
    }
}
