//! Groups spans into batches of at most `max` spans.

use crate::span::{Batch, Span};

/// Accumulates spans; hands out full batches.
pub struct Batcher {
    max: usize,
    buf: Batch,
}

impl Batcher {
    /// A batcher for batches of at most `max` spans (at least 1).
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        Batcher {
            max,
            buf: Vec::with_capacity(max),
        }
    }

    /// Adds spans; calls `ready` with each batch that fills up.
    pub fn push(&mut self, spans: Vec<Span>, mut ready: impl FnMut(Batch)) {
        for span in spans {
            self.buf.push(span);
            if self.buf.len() >= self.max {
                ready(std::mem::replace(
                    &mut self.buf,
                    Vec::with_capacity(self.max),
                ));
            }
        }
    }

    /// The partial batch, if any.
    pub fn take(&mut self) -> Option<Batch> {
        if self.buf.is_empty() {
            None
        } else {
            Some(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(self.max),
            ))
        }
    }

    /// Spans waiting.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no span waits.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}
