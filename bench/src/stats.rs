//! Counters and summaries that every report shares: failures by kind, per-backend distribution,
//! latency percentiles from an HDR histogram; and, for the reports, spreads over repetitions
//! and ratios of medians.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::Failure;

/// At most this many distinct "other" error messages are kept (the rest are only counted).
const MAX_OTHER_KINDS: usize = 20;

/// Failures by kind, as reported in the JSON (`failed`).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailureCounts {
    /// Connection refused.
    pub refused: u64,
    /// Connection reset (or broken pipe).
    pub reset: u64,
    /// Peer closed early.
    pub eof: u64,
    /// HTTP status instead of 101, status → count.
    pub http_status: BTreeMap<String, u64>,
    /// No answer within the timeout.
    pub timeout: u64,
    /// Anything else.
    pub other: u64,
    /// Messages of the "other" failures, message → count (first 20 distinct messages).
    pub other_errors: BTreeMap<String, u64>,
}

impl FailureCounts {
    /// Counts one failure.
    pub fn add(&mut self, f: &Failure) {
        match f {
            Failure::Refused => self.refused += 1,
            Failure::Reset => self.reset += 1,
            Failure::Eof => self.eof += 1,
            Failure::Timeout => self.timeout += 1,
            Failure::Http(s) => *self.http_status.entry(s.to_string()).or_default() += 1,
            Failure::Other(m) => {
                self.other += 1;
                if self.other_errors.len() < MAX_OTHER_KINDS || self.other_errors.contains_key(m) {
                    *self.other_errors.entry(m.clone()).or_default() += 1;
                }
            }
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, o: &FailureCounts) {
        self.refused += o.refused;
        self.reset += o.reset;
        self.eof += o.eof;
        self.timeout += o.timeout;
        self.other += o.other;
        merge_counts(&mut self.http_status, &o.http_status);
        merge_counts(&mut self.other_errors, &o.other_errors);
    }

    /// Total failures.
    pub fn total(&self) -> u64 {
        self.refused
            + self.reset
            + self.eof
            + self.timeout
            + self.other
            + self.http_status.values().sum::<u64>()
    }
}

/// Adds the counts of `b` into `a`.
pub fn merge_counts(a: &mut BTreeMap<String, u64>, b: &BTreeMap<String, u64>) {
    for (k, v) in b {
        *a.entry(k.clone()).or_default() += v;
    }
}

/// The key a banner is counted under in `distribution`.
pub fn banner_key(banner: &str) -> String {
    if banner.starts_with("backend:") && banner.len() <= 64 {
        banner.to_string()
    } else {
        "(no backend banner)".to_string()
    }
}

/// A histogram for values up to one hour in the unit chosen by the caller (µs or ns), 3 digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a histogram, scaled by `div` (e.g. ns → µs with 1000.0).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl Percentiles {
    /// Summarizes `h`, dividing every value by `div`.
    pub fn of(h: &Histogram<u64>, div: f64) -> Self {
        if h.is_empty() {
            return Percentiles::default();
        }
        let r = |v: f64| (v / div * 1000.0).round() / 1000.0;
        Percentiles {
            count: h.len(),
            mean: r(h.mean()),
            p50: r(h.value_at_quantile(0.50) as f64),
            p90: r(h.value_at_quantile(0.90) as f64),
            p99: r(h.value_at_quantile(0.99) as f64),
            p999: r(h.value_at_quantile(0.999) as f64),
            max: r(h.max() as f64),
        }
    }
}

/// A histogram as `[value, count]` pairs, so child processes can hand theirs to the parent.
pub fn histogram_pairs(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| (v.value_iterated_to(), v.count_at_value()))
        .collect()
}

/// Adds `[value, count]` pairs into `h`.
pub fn add_pairs(h: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(v, c) in pairs {
        // Values come from a histogram with the same bounds, so recording cannot fail.
        let _ = h.record_n(v, c);
    }
}

/// Minimum, median and maximum of one metric over the repetitions of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub min: f64,
    /// The middle value; for an even count, the mean of the two middle values.
    pub med: f64,
    pub max: f64,
    /// How many finite values there were.
    pub n: usize,
}

impl Spread {
    /// The spread of the finite values in `xs`, or None if there are none.
    pub fn of(mut xs: Vec<f64>) -> Option<Spread> {
        xs.retain(|x| x.is_finite());
        if xs.is_empty() {
            return None;
        }
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let n = xs.len();
        let med = if n % 2 == 1 {
            xs[n / 2]
        } else {
            (xs[n / 2 - 1] + xs[n / 2]) / 2.0
        };
        Some(Spread {
            min: xs[0],
            med,
            max: xs[n - 1],
            n,
        })
    }

    /// Whether the two min–max ranges overlap.
    pub fn overlaps(&self, o: &Spread) -> bool {
        self.min <= o.max && o.min <= self.max
    }
}

/// The median of an optional spread.
pub fn median_of(s: Option<Spread>) -> Option<f64> {
    s.map(|s| s.med)
}

/// `a / b`, or None when either is missing or `b` is zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_counts_merge() {
        let mut a = FailureCounts::default();
        a.add(&Failure::Http(500));
        a.add(&Failure::Reset);
        let mut b = FailureCounts::default();
        b.add(&Failure::Http(500));
        b.add(&Failure::Other("x".into()));
        a.merge(&b);
        assert_eq!(a.http_status["500"], 2);
        assert_eq!(a.total(), 4);
        assert_eq!(a.other_errors["x"], 1);
    }

    #[test]
    fn pairs_round_trip() {
        let mut h = new_histogram();
        for v in [5u64, 5, 900, 123_456] {
            h.record(v).unwrap();
        }
        let mut g = new_histogram();
        add_pairs(&mut g, &histogram_pairs(&h));
        assert_eq!(g.len(), 4);
        assert_eq!(g.max(), h.max());
        assert_eq!(g.value_at_quantile(0.5), h.value_at_quantile(0.5));
    }
}
