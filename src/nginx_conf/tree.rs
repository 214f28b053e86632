//! The generic directive tree: lexemes → `name args... ;` / `name args... { block }`
//! directives with their file and line; unbalanced braces and missing `;` are caught here,
//! and `include` directives are replaced by the directives of the files they name.

use std::rc::Rc;

use super::include::Includes;
use super::lexer::{lex, Lexeme, Tok};
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
    /// The file the directive is written in (an included file's name for included ones),
    /// as messages show it.
    pub(super) file: Rc<str>,
    /// Block nesting level in the expanded tree (0: top level), whatever file it is in.
    pub(super) depth: usize,
}

impl Directive {
    fn new(
        words: Vec<(String, usize)>,
        block: Option<Vec<Directive>>,
        file: &Rc<str>,
        depth: usize,
    ) -> Directive {
        let mut it = words.into_iter();
        let (name, line) = it.next().unwrap_or_default();
        let (args, arg_lines) = it.unzip();
        Directive {
            name,
            args,
            arg_lines,
            block,
            line,
            file: Rc::clone(file),
            depth,
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

/// Lexes and parses the text of one file (`file` names it in messages) into directives at
/// block level `depth` (that of the `include` that brought it in; 0 for the main file).
pub(super) fn parse_tree(
    src: &str,
    file: &Rc<str>,
    depth: usize,
    includes: &mut Includes,
) -> Result<Vec<Directive>, ConfError> {
    let toks = lex(src, file)?;
    let mut tree = TreeParser {
        toks: &toks,
        pos: 0,
        file: Rc::clone(file),
        last_line: src.lines().count().max(1),
        includes,
    };
    tree.block(depth, None)
}

/// Turns lexemes into the directive tree.
struct TreeParser<'a> {
    toks: &'a [Lexeme],
    pos: usize,
    file: Rc<str>,
    last_line: usize,
    includes: &'a mut Includes,
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
    fn block(
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
                    let d = Directive::new(std::mem::take(&mut words), None, &self.file, depth);
                    if d.name == "include" {
                        out.extend(self.includes.expand(&d)?);
                    } else {
                        out.push(d);
                    }
                }
                Tok::Open => {
                    let Some((name, line)) = words.first().cloned() else {
                        return Err(self.err(tok.line, "unexpected \"{\"".to_string()));
                    };
                    if name == "include" {
                        return Err(self.err(
                            line,
                            "directive \"include\" is not terminated by \";\"".to_string(),
                        ));
                    }
                    if depth >= MAX_DEPTH {
                        return Err(self.err(tok.line, "blocks are nested too deeply".to_string()));
                    }
                    let inner = self.block(depth + 1, Some((&name, line)))?;
                    let words = std::mem::take(&mut words);
                    out.push(Directive::new(words, Some(inner), &self.file, depth));
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
