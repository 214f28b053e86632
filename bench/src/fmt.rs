//! Numbers for people in the reports: thousands separators from 1,000, three significant
//! digits below; loadgen failure objects as one line (shared by `report` and
//! `ceiling_report`).

use serde_json::Value;

/// Format `x` for a table cell.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return "–".into();
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

/// "HTTP 503 ×77, reset ×12" from a loadgen failure object.
pub fn failure_kinds(v: Option<&Value>) -> String {
    let Some(v) = v else { return "–".into() };
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
