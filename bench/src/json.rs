//! Reading results folders: a JSON file, and dotted-path lookups (`"latency_us.p99"`) into
//! loadgen results, session facts and meta.json, shared by `report` and `ceiling_report`.
//! Every lookup takes a `&Value` or an `Option<&Value>`.

use serde_json::Value;
use std::path::Path;

/// Parse one JSON file (surrounding whitespace allowed); the error names the file.
pub fn read(p: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
    serde_json::from_str(text.trim()).map_err(|e| format!("{}: {e}", p.display()))
}

/// The value at a dotted `path`, if every step exists.
pub fn at<'a>(v: impl Into<Option<&'a Value>>, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v.into()?, |v, k| v.get(k))
}

/// The number at `path`.
pub fn num<'a>(v: impl Into<Option<&'a Value>>, path: &str) -> Option<f64> {
    at(v, path).and_then(Value::as_f64)
}

/// The string at `path`, or "" when missing or not a string.
pub fn text<'a>(v: impl Into<Option<&'a Value>>, path: &str) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups() {
        let v = serde_json::json!({"a": {"b": 2.5, "s": "x"}});
        assert_eq!(num(&v, "a.b"), Some(2.5));
        assert_eq!(num(Some(&v), "a.c"), None);
        assert_eq!(num(None, "a.b"), None);
        assert_eq!(text(&v, "a.s"), "x");
        assert_eq!(text(&v, "a.b"), "");
    }
}
