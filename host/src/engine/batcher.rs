//! Groups spans into batches of about `max` spans. The spans of one push (an
//! OTLP request, a JSONL line) stay in one batch, so that a batch the engine
//! has taken holds whole write-ahead log records (see `wal`); the engine cuts
//! batches larger than its maximum.

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

    /// Adds spans, kept together; calls `ready` with each batch that fills up.
    pub fn push(&mut self, spans: Vec<Span>, mut ready: impl FnMut(Batch)) {
        if !self.buf.is_empty() && self.buf.len() + spans.len() > self.max {
            ready(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(self.max),
            ));
        }
        if self.buf.is_empty() && spans.len() >= self.max {
            ready(spans);
            return;
        }
        self.buf.extend(spans);
        if self.buf.len() >= self.max {
            ready(std::mem::replace(
                &mut self.buf,
                Vec::with_capacity(self.max),
            ));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(n: usize, seq: u64) -> Vec<Span> {
        (0..n)
            .map(|_| Span {
                seq,
                ..Span::default()
            })
            .collect()
    }

    #[test]
    fn pushes_stay_whole_and_batches_stay_near_the_maximum() {
        let mut batches = Vec::new();
        let mut b = Batcher::new(10);
        for (seq, n) in [(1, 4), (2, 4), (3, 4), (4, 25), (5, 10), (6, 3)] {
            b.push(spans(n, seq), |batch| batches.push(batch));
        }
        batches.extend(b.take());
        let seqs: Vec<Vec<u64>> = batches
            .iter()
            .map(|b| {
                let mut s: Vec<u64> = b.iter().map(|s| s.seq).collect();
                s.dedup();
                s
            })
            .collect();
        assert_eq!(seqs, vec![vec![1, 2], vec![3], vec![4], vec![5], vec![6]]);
        assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 50);
    }
}
