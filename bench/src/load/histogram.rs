//! Latencies kept in buckets 1 % wide, so that 64 tails receiving
//! hundreds of thousands of lines each can record every latency in
//! constant memory, and percentiles come out within a percent (the
//! maximum exact).

/// Latencies in buckets 1 % wide (from 1 µs to hours), and the exact maximum.
#[derive(Clone)]
pub struct Hist {
    counts: Vec<u64>,
    pub n: u64,
    max_us: u64,
}

const GROWTH: f64 = 1.01;
const BUCKETS: usize = 2400;

impl Default for Hist {
    fn default() -> Hist {
        Hist::new()
    }
}

impl Hist {
    pub fn new() -> Hist {
        Hist {
            counts: vec![0; BUCKETS],
            n: 0,
            max_us: 0,
        }
    }

    fn index(us: u64) -> usize {
        if us == 0 {
            0
        } else {
            ((us as f64).ln() / GROWTH.ln()) as usize + 1
        }
        .min(BUCKETS - 1)
    }

    pub fn add(&mut self, us: u64) {
        self.counts[Self::index(us)] += 1;
        self.n += 1;
        self.max_us = self.max_us.max(us);
    }

    pub fn merge(&mut self, other: &Hist) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.n += other.n;
        self.max_us = self.max_us.max(other.max_us);
    }

    /// The largest latency added, in µs.
    #[cfg(test)]
    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    /// The nearest-rank percentile, in ms (the middle of its bucket).
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        if self.n == 0 {
            return None;
        }
        if p >= 100.0 {
            return Some(self.max_us as f64 / 1000.0);
        }
        let rank = ((p / 100.0) * self.n as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let us = if i == 0 {
                    0.0
                } else {
                    GROWTH.powi(i as i32 - 1) * (1.0 + GROWTH) / 2.0
                };
                return Some(us.min(self.max_us as f64) / 1000.0);
            }
        }
        Some(self.max_us as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_percentiles_within_a_percent() {
        let mut h = Hist::new();
        for us in 1..=10_000u64 {
            h.add(us * 100);
        }
        let p50 = h.percentile_ms(50.0).expect("a p50");
        assert!((p50 - 500.0).abs() / 500.0 < 0.01, "{p50}");
        assert_eq!(h.percentile_ms(100.0), Some(1000.0));
    }
}
