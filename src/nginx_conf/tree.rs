//! The generic directive tree: lexemes → `name args... ;` / `name args... { block }`
//! directives with their lines; unbalanced braces and missing `;` are caught here.

use super::lexer::{Lexeme, Tok};
use super::ConfError;

/// Blocks nested deeper than this are rejected (the subset never needs more than 4 levels).
const MAX_DEPTH: usize = 32;

/// One directive: `name args... ;` or `name args... { block }`.
#[derive(Debug, Clone)]
pub(super) struct Directive {
    pub(super) name: String,
    pub(super) args: Vec<String>,
    /// Line of each argument (used to point at a missing `;`).
    arg_lines: Vec<usize>,
    pub(super) block: Option<Vec<Directive>>,
    pub(super) line: usize,
}

impl Directive {
    fn new(words: Vec<(String, usize)>, block: Option<Vec<Directive>>) -> Directive {
        let mut it = words.into_iter();
        let (name, line) = it.next().unwrap_or_default();
        let (args, arg_lines) = it.unzip();
        Directive {
            name,
            args,
            arg_lines,
            block,
            line,
        }
    }

    pub(super) fn arg(&self, i: usize) -> &str {
        self.args.get(i).map_or("", String::as_str)
    }

    pub(super) fn children(&self) -> &[Directive] {
        self.block.as_deref().unwrap_or(&[])
    }

    /// `" (missing \";\" at the end of line N?)"` when the arguments spill over onto a later
    /// line, else `""`.
    pub(super) fn semicolon_hint(&self) -> String {
        match self.missing_semicolon_line() {
            Some(l) => format!(" (missing \";\" at the end of line {l}?)"),
            None => String::new(),
        }
    }

    /// If the arguments spill over onto a later line, the line where a `;` is probably missing.
    fn missing_semicolon_line(&self) -> Option<usize> {
        let mut prev = self.line;
        for &l in &self.arg_lines {
            if l > prev {
                return Some(prev);
            }
            prev = l;
        }
        None
    }
}

/// Turns lexemes into the directive tree.
pub(super) struct TreeParser<'a> {
    pub(super) toks: &'a [Lexeme],
    pub(super) pos: usize,
    pub(super) file: &'a str,
    pub(super) last_line: usize,
}

impl TreeParser<'_> {
    fn err(&self, line: usize, msg: String) -> ConfError {
        ConfError {
            file: self.file.to_string(),
            line,
            msg,
        }
    }

    /// Parses directives until the matching `}` (or end of input at top level).
    /// `opener` is the name and line of the directive that opened this block.
    pub(super) fn block(
        &mut self,
        depth: usize,
        opener: Option<(&str, usize)>,
    ) -> Result<Vec<Directive>, ConfError> {
        let mut out = Vec::new();
        let mut words: Vec<(String, usize)> = Vec::new();
        loop {
            let Some(tok) = self.toks.get(self.pos) else {
                if let (Some((name, _)), Some((_, last))) = (words.first(), words.last()) {
                    return Err(self.err(
                        *last,
                        format!(
                            "unexpected end of file, expecting \";\" or \"{{\" \
                             after directive \"{name}\""
                        ),
                    ));
                }
                if let Some((name, line)) = opener {
                    return Err(self.err(
                        self.last_line,
                        format!(
                            "unexpected end of file, expecting \"}}\" \
                             (block \"{name}\" opened on line {line} is not closed)"
                        ),
                    ));
                }
                return Ok(out);
            };
            self.pos += 1;
            match &tok.tok {
                Tok::Word(w) => words.push((w.clone(), tok.line)),
                Tok::Semi => {
                    if words.is_empty() {
                        return Err(self.err(tok.line, "unexpected \";\"".to_string()));
                    }
                    out.push(Directive::new(std::mem::take(&mut words), None));
                }
                Tok::Open => {
                    let Some((name, line)) = words.first().cloned() else {
                        return Err(self.err(tok.line, "unexpected \"{\"".to_string()));
                    };
                    if depth >= MAX_DEPTH {
                        return Err(self.err(tok.line, "blocks are nested too deeply".to_string()));
                    }
                    let inner = self.block(depth + 1, Some((&name, line)))?;
                    out.push(Directive::new(std::mem::take(&mut words), Some(inner)));
                }
                Tok::Close => {
                    if let (Some((name, _)), Some((_, last))) = (words.first(), words.last()) {
                        return Err(self.err(
                            *last,
                            format!("unexpected \"}}\": missing \";\" after directive \"{name}\"?"),
                        ));
                    }
                    if opener.is_none() {
                        return Err(self.err(
                            tok.line,
                            "unexpected \"}\" (no open block to close)".to_string(),
                        ));
                    }
                    return Ok(out);
                }
            }
        }
    }
}
