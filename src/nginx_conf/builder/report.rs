//! How the builder reports: errors and warnings that name the file of their line, the list
//! of ignored directives, and nginx values read with an error naming the directive.
//!
//! The helpers that take the [`Directive`] (`err_in`, `warn_in`, `duplicate`, `number`, ...)
//! know its file exactly; `err` and `warn`, which take only a line, find it among the
//! directives being built: the last one checked and the blocks around it, innermost first.
//! That is exact unless an included file puts a directive on the same line number as one of
//! the blocks around it; code that has the directive at hand uses the `_in` forms.

use std::rc::Rc;

use super::{Builder, Res};
use crate::nginx_conf::tree::Directive;
use crate::nginx_conf::values::{parse_size, parse_time_ms, parse_u64};
use crate::nginx_conf::{ConfError, Ignored};

impl Builder<'_> {
    /// The file of the directive on `line` among those being built: the innermost one of
    /// the last checked directive and its enclosing blocks that is on that line (else the
    /// last checked directive's file).
    pub(super) fn file_of(&self, line: usize) -> String {
        let scope = self.scope.borrow();
        scope
            .iter()
            .rev()
            .find(|(l, _)| *l == line)
            .or(scope.last())
            .map_or_else(|| self.main_file.to_string(), |(_, f)| f.to_string())
    }

    /// Makes `d` the directive being built (for `err` and `warn`).
    pub(super) fn enter(&self, d: &Directive) {
        let mut scope = self.scope.borrow_mut();
        scope.truncate(d.depth);
        scope.push((d.line, Rc::clone(&d.file)));
    }

    pub(super) fn err(&self, line: usize, msg: impl Into<String>) -> ConfError {
        ConfError {
            file: self.file_of(line),
            line,
            msg: msg.into(),
        }
    }

    pub(super) fn warn(&mut self, line: usize, msg: &str) {
        let w = format!("{}:{}: {}", self.file_of(line), line, msg);
        self.conf.warnings.push(w);
    }

    /// An error about `d`, in `d`'s file.
    pub(super) fn err_in(&self, d: &Directive, msg: impl Into<String>) -> ConfError {
        ConfError {
            file: d.file.to_string(),
            line: d.line,
            msg: msg.into(),
        }
    }

    /// A warning about `d`, in `d`'s file.
    pub(super) fn warn_in(&mut self, d: &Directive, msg: &str) {
        let w = format!("{}:{}: {}", d.file, d.line, msg);
        self.conf.warnings.push(w);
    }

    /// Records that ringway ignores `what` (a directive, or a parameter of directive `d`),
    /// with a warning line: `FILE:LINE: ignoring WHAT: REASON`.
    pub(super) fn ignore(&mut self, d: &Directive, what: &str, reason: &str) {
        self.warn_in(d, &format!("ignoring {what}: {reason}"));
        self.conf.ignored.push(Ignored {
            directive: d.name.clone(),
            file: d.file.to_string(),
            line: d.line,
            reason: reason.to_string(),
        });
    }

    /// `"line N"` for a line of `d`'s file, else `"FILE:N"`.
    pub(super) fn at(d: &Directive, file: &str, line: usize) -> String {
        if *d.file == *file {
            format!("line {line}")
        } else {
            format!("{file}:{line}")
        }
    }

    pub(super) fn duplicate(&self, d: &Directive) -> ConfError {
        self.err_in(d, format!("\"{}\" directive is duplicate", d.name))
    }

    pub(super) fn number(&self, d: &Directive, s: &str) -> Res<u64> {
        parse_u64(s).ok_or_else(|| {
            self.err_in(
                d,
                format!("invalid number \"{s}\" in \"{}\" directive", d.name),
            )
        })
    }

    /// A number `>= 1` that fits in `T`.
    pub(super) fn positive<T: TryFrom<u64>>(&self, d: &Directive, s: &str) -> Res<T> {
        match parse_u64(s) {
            Some(n) if n >= 1 => T::try_from(n).map_err(|_| {
                self.err_in(
                    d,
                    format!("number \"{s}\" is too large in \"{}\" directive", d.name),
                )
            }),
            Some(_) => {
                Err(self.err_in(d, format!("\"{}\" must be at least 1, not \"{s}\"", d.name)))
            }
            None => Err(self.err_in(
                d,
                format!("invalid number \"{s}\" in \"{}\" directive", d.name),
            )),
        }
    }

    pub(super) fn size(&self, d: &Directive, s: &str) -> Res<u64> {
        parse_size(s).ok_or_else(|| {
            self.err_in(
                d,
                format!(
                    "invalid size \"{s}\" in \"{}\" directive (use nginx syntax: 512, 16k, 1m)",
                    d.name
                ),
            )
        })
    }

    pub(super) fn time(&self, d: &Directive, s: &str) -> Res<u64> {
        parse_time_ms(s).ok_or_else(|| {
            self.err_in(
                d,
                format!(
                    "invalid time \"{s}\" in \"{}\" directive \
                     (use nginx syntax: 500ms, 10s, 5m, 1h; a plain number means seconds)",
                    d.name
                ),
            )
        })
    }
}
