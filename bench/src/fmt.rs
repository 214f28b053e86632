//! Numbers for people in the reports: every cell formatter that `report` and `ceiling_report`
//! share (plain numbers, counts, parameters, ratios, median-and-range spreads, loadgen failure
//! objects). A missing value prints as "–" everywhere.

use serde_json::Value;

use crate::stats::Spread;

/// What a missing value prints as.
pub const MISSING: &str = "–";

/// Thousands separators from 1,000 (no decimals), three significant digits below.
pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        return MISSING.into();
    }
    let a = x.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", a);
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        if x < 0.0 {
            format!("-{out}")
        } else {
            out
        }
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{x:.3}")
    }
}

/// [`fmt_num`], or "–" when missing.
pub fn fmt_num_opt(x: Option<f64>) -> String {
    x.map(fmt_num).unwrap_or_else(|| MISSING.into())
}

/// Counts: thousands separators from 1,000, rounded to a whole number below.
pub fn fmt_count(x: Option<f64>) -> String {
    match x {
        Some(x) if x.abs() >= 1000.0 => fmt_num(x),
        Some(x) => format!("{x:.0}"),
        None => MISSING.into(),
    }
}

/// Parameters exactly as given (1, 0.5, 30, 10000): no grouping, no rounding.
pub fn fmt_param(x: Option<f64>) -> String {
    x.map(|x| format!("{x}")).unwrap_or_else(|| MISSING.into())
}

/// Counts and parameters: thousands separators from 1,000, exactly as given below (1, 0.5).
pub fn fmt_grouped(x: Option<f64>) -> String {
    match x {
        Some(x) if x.abs() >= 1000.0 => fmt_num(x),
        Some(x) => format!("{x}"),
        None => MISSING.into(),
    }
}

/// A ratio as "1.23×".
pub fn fmt_ratio(x: Option<f64>) -> String {
    x.map(|r| format!("{r:.2}×"))
        .unwrap_or_else(|| MISSING.into())
}

/// "median unit (min–max)" over repetitions; the median alone for one repetition. An empty
/// `unit` leaves out the unit and its space.
pub fn fmt_spread(s: Option<Spread>, unit: &str) -> String {
    let sep = if unit.is_empty() { "" } else { " " };
    match s {
        None => MISSING.into(),
        Some(s) if s.n == 1 => format!("{}{sep}{unit}", fmt_num(s.med)),
        Some(s) => format!(
            "{}{sep}{unit} ({}–{})",
            fmt_num(s.med),
            fmt_num(s.min),
            fmt_num(s.max)
        ),
    }
}

/// "HTTP 503 ×77, reset ×12" from a loadgen failure object.
pub fn failure_kinds(v: Option<&Value>) -> String {
    let Some(v) = v else { return MISSING.into() };
    let mut parts = Vec::new();
    if let Some(h) = v.get("http_status").and_then(Value::as_object) {
        for (k, n) in h {
            parts.push(format!("HTTP {k} ×{}", n.as_u64().unwrap_or(0)));
        }
    }
    for k in ["reset", "eof", "refused", "timeout", "other"] {
        let n = v.get(k).and_then(Value::as_u64).unwrap_or(0);
        if n > 0 {
            parts.push(format!("{k} ×{n}"));
        }
    }
    if let Some(h) = v.get("other_errors").and_then(Value::as_object) {
        for (k, n) in h {
            parts.push(format!("“{k}” ×{}", n.as_u64().unwrap_or(0)));
        }
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// Total failures in a loadgen failure object (every kind, every HTTP status, every message).
pub fn failures_total(v: Option<&Value>) -> u64 {
    let Some(v) = v else { return 0 };
    let mut n: u64 = ["reset", "eof", "refused", "timeout", "other"]
        .iter()
        .map(|k| v.get(*k).and_then(Value::as_u64).unwrap_or(0))
        .sum();
    for key in ["http_status", "other_errors"] {
        if let Some(h) = v.get(key).and_then(Value::as_object) {
            n += h.values().filter_map(Value::as_u64).sum::<u64>();
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt_num(1234567.4), "1,234,567");
        assert_eq!(fmt_num(-2500.0), "-2,500");
        assert_eq!(fmt_num(123.4), "123");
        assert_eq!(fmt_num(12.34), "12.3");
        assert_eq!(fmt_num(1.234), "1.23");
        assert_eq!(fmt_num(0.1234), "0.123");
        assert_eq!(fmt_num(0.0), "0");
        assert_eq!(fmt_num(f64::NAN), "–");
        assert_eq!(fmt_num_opt(None), "–");
    }

    #[test]
    fn counts_params_ratios() {
        assert_eq!(fmt_count(Some(12.6)), "13");
        assert_eq!(fmt_count(Some(9698.0)), "9,698");
        assert_eq!(fmt_param(Some(0.5)), "0.5");
        assert_eq!(fmt_param(Some(10000.0)), "10000");
        assert_eq!(fmt_grouped(Some(0.5)), "0.5");
        assert_eq!(fmt_grouped(Some(10000.0)), "10,000");
        assert_eq!(fmt_ratio(Some(1.234)), "1.23×");
        assert_eq!(fmt_ratio(None), "–");
    }

    #[test]
    fn spreads() {
        let one = Spread::of(vec![5.0]);
        assert_eq!(fmt_spread(one, "µs"), "5.00 µs");
        let three = Spread::of(vec![3.0, 1.0, 2.0]);
        assert_eq!(fmt_spread(three, "MB/s"), "2.00 MB/s (1.00–3.00)");
        assert_eq!(fmt_spread(three, ""), "2.00 (1.00–3.00)");
        assert_eq!(fmt_spread(None, "µs"), "–");
    }

    #[test]
    fn failures() {
        let v: Value =
            serde_json::json!({"reset": 2, "http_status": {"503": 3}, "other_errors": {}});
        assert_eq!(failure_kinds(Some(&v)), "HTTP 503 ×3, reset ×2");
        assert_eq!(failures_total(Some(&v)), 5);
        assert_eq!(failure_kinds(None), "–");
    }
}
