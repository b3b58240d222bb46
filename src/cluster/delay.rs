//! How long batches take from the simulator's publish to an edge: a Prometheus histogram of
//! fixed buckets, plain atomics, so the follow loop records without a lock and `/metrics`
//! reads without stopping it.
//!
//! The delay is the edge's wall clock minus the publish time the simulator wrote into the
//! stream entry, so across machines it is only as good as their clock sync (NTP keeps it to
//! about a millisecond on a LAN); on one machine it is exact to the microsecond.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds of the buckets, in microseconds: fine below a few milliseconds, where a
/// healthy Redis hop sits, coarse up to the seconds of an edge that fell behind.
const BOUNDS_US: [u64; 21] = [
    100, 200, 300, 500, 750, 1_000, 1_500, 2_000, 3_000, 5_000, 7_500, 10_000, 25_000, 50_000,
    100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// Publish-to-edge delays of the batches an edge read.
#[derive(Debug, Default)]
pub struct Delays {
    /// Batches at or below each bound (not cumulative: summed when rendered), then the rest.
    buckets: [AtomicU64; BOUNDS_US.len() + 1],
    sum_us: AtomicU64,
}

impl Delays {
    /// Records one batch that took `us` microseconds.
    pub fn record(&self, us: u64) {
        let bucket = BOUNDS_US.partition_point(|&bound| bound < us);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    /// Batches recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Relaxed)).sum()
    }

    /// Appends the histogram `name` (in seconds) to a /metrics page.
    pub fn render_into(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in BOUNDS_US.iter().zip(&self.buckets) {
            cumulative += bucket.load(Relaxed);
            let le = *bound as f64 / 1e6;
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
        }
        cumulative += self.buckets[BOUNDS_US.len()].load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum = self.sum_us.load(Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_inclusive_upper_bounds_and_render_cumulatively() {
        let d = Delays::default();
        for us in [0, 100, 101, 300, 20_000_000] {
            d.record(us);
        }
        assert_eq!(d.count(), 5);
        let mut out = String::new();
        d.render_into(&mut out, "x_seconds", "help");
        assert!(out.contains("# TYPE x_seconds histogram\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.0001\"} 2\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.0002\"} 3\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"0.0003\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"10\"} 4\n"), "{out}");
        assert!(out.contains("x_seconds_bucket{le=\"+Inf\"} 5\n"), "{out}");
        assert!(out.contains("x_seconds_sum 20.000501\n"), "{out}");
        assert!(out.contains("x_seconds_count 5\n"), "{out}");
    }
}
