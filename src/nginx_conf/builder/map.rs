//! `map $source $variable { ... }` blocks: their entries, `default`, and the parameters
//! ringway ignores.

use super::{Builder, Res};
use crate::nginx_conf::directives::MAP_PARAM_REASON;
use crate::nginx_conf::tree::Directive;
use crate::nginx_conf::Map;

impl Builder<'_> {
    pub(super) fn map(&mut self, d: &Directive) -> Res<Map> {
        let variable = d.arg(1).to_string();
        if variable.len() < 2 || !variable.starts_with('$') {
            return Err(self.err_in(
                d,
                format!("invalid map variable \"{variable}\" (it must look like $name)"),
            ));
        }
        let mut m = Map {
            source: d.arg(0).to_string(),
            variable,
            entries: Vec::new(),
            default: None,
            line: d.line,
            file: d.file.to_string(),
        };
        for e in d.children() {
            if e.block.is_some() {
                return Err(self.err_in(e, "unexpected \"{\" in map".to_string()));
            }
            match (e.name.as_str(), e.args.len()) {
                ("hostnames" | "volatile", 0) => {
                    let what = format!("map parameter '{}'", e.name);
                    self.ignore(e, &what, MAP_PARAM_REASON);
                }
                ("default", 1) => {
                    if m.default.is_some() {
                        return Err(self.err_in(e, "duplicate \"default\" in map"));
                    }
                    m.default = Some(e.arg(0).to_string());
                }
                (key, 1) => {
                    if m.entries.iter().any(|(k, _)| k == key) {
                        return Err(self.err_in(e, format!("duplicate map key \"{key}\"")));
                    }
                    m.entries.push((key.to_string(), e.arg(0).to_string()));
                }
                (key, _) => {
                    return Err(self.err_in(
                        e,
                        format!("invalid map entry \"{key}\": expected \"KEY VALUE;\""),
                    ))
                }
            }
        }
        Ok(m)
    }
}
