//! The nginx.conf lexer: text → lexemes (bare and quoted words, `;`, `{`, `}`), each with
//! its line; comments and escapes handled the way nginx does.

use super::ConfError;

/// What a lexeme is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Word(String),
    Semi,
    Open,
    Close,
}

/// One lexeme and the line it starts on.
#[derive(Debug, Clone)]
pub(super) struct Lexeme {
    pub(super) tok: Tok,
    pub(super) line: usize,
}

fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Appends the unescaped form of `\c` (nginx rules: unknown escapes keep the backslash).
fn push_escape(out: &mut String, c: char) {
    match c {
        '"' | '\'' | '\\' => out.push(c),
        't' => out.push('\t'),
        'r' => out.push('\r'),
        'n' => out.push('\n'),
        _ => {
            out.push('\\');
            out.push(c);
        }
    }
}

/// Splits `src` into lexemes; `file` names it in errors.
pub(super) fn lex(src: &str, file: &str) -> Result<Vec<Lexeme>, ConfError> {
    let err = |line: usize, msg: String| ConfError {
        file: file.to_string(),
        line,
        msg,
    };
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut line = 1usize;
    let mut i = 0usize;
    while let Some(&c) = chars.get(i) {
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            ' ' | '\t' | '\r' => i += 1,
            '#' => {
                while chars.get(i).is_some_and(|&ch| ch != '\n') {
                    i += 1;
                }
            }
            ';' | '{' | '}' => {
                let tok = match c {
                    ';' => Tok::Semi,
                    '{' => Tok::Open,
                    _ => Tok::Close,
                };
                toks.push(Lexeme { tok, line });
                i += 1;
            }
            '"' | '\'' => {
                let start = line;
                let mut text = String::new();
                i += 1;
                loop {
                    let Some(&ch) = chars.get(i) else {
                        return Err(err(
                            start,
                            format!(
                                "unexpected end of file, expecting closing {c} \
                                 (quoted string opened on line {start})"
                            ),
                        ));
                    };
                    i += 1;
                    if ch == c {
                        break;
                    }
                    if ch == '\n' {
                        line += 1;
                    }
                    if ch == '\\' {
                        if let Some(&next) = chars.get(i) {
                            if next == '\n' {
                                line += 1;
                            }
                            push_escape(&mut text, next);
                            i += 1;
                            continue;
                        }
                    }
                    text.push(ch);
                }
                if let Some(&next) = chars.get(i) {
                    if !is_space(next) && !matches!(next, ';' | '{' | '}') {
                        return Err(err(
                            line,
                            format!("unexpected \"{next}\" after quoted string"),
                        ));
                    }
                }
                toks.push(Lexeme {
                    tok: Tok::Word(text),
                    line: start,
                });
            }
            _ => {
                let start = line;
                let mut text = String::new();
                while let Some(&ch) = chars.get(i) {
                    if ch == '{' && text.ends_with('$') {
                        // `${name}` variable syntax: the braces belong to the word.
                        text.push(ch);
                        i += 1;
                        loop {
                            match chars.get(i) {
                                Some(&'}') => {
                                    text.push('}');
                                    i += 1;
                                    break;
                                }
                                Some(&v) if !is_space(v) && v != ';' && v != '{' => {
                                    text.push(v);
                                    i += 1;
                                }
                                _ => {
                                    return Err(err(
                                        line,
                                        format!(
                                            "the closing bracket in \"{text}\" variable is missing"
                                        ),
                                    ))
                                }
                            }
                        }
                        continue;
                    }
                    if is_space(ch) || matches!(ch, ';' | '{' | '}') {
                        break;
                    }
                    i += 1;
                    if ch == '\\' {
                        if let Some(&next) = chars.get(i) {
                            if next == '\n' {
                                line += 1;
                            }
                            push_escape(&mut text, next);
                            i += 1;
                            continue;
                        }
                    }
                    text.push(ch);
                }
                toks.push(Lexeme {
                    tok: Tok::Word(text),
                    line: start,
                });
            }
        }
    }
    Ok(toks)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;

    #[test]
    fn comments_are_ignored() {
        let c = ok("# leading comment\n\
                    worker_processes 2; # trailing ; { } comment\n\
                    #events { worker_connections 1; }\n\
                    events { # comment after brace\n  worker_connections 7;#no space\n}\n");
        assert_eq!(c.worker_processes, Some(WorkerProcesses::N(2)));
        assert_eq!(c.worker_connections, Some(7));
        // `#` inside a word or a quoted string is not a comment.
        let c = ok(&in_location(
            "proxy_set_header X-A a#b;\nproxy_set_header X-B \"c # d\";",
        ));
        assert_eq!(
            c.servers[0].locations[0].set_headers,
            hdr(&[("X-A", "a#b"), ("X-B", "c # d")])
        );
    }

    #[test]
    fn quotes_and_escapes() {
        let c = ok(&in_location(
            r#"proxy_set_header "X-Dq" "say \"hi\" \\ ok";
proxy_set_header 'X-Sq' 'it\'s; {fine}';
proxy_set_header X-Ctl "a\tb\nc";
proxy_set_header X-Other "\d\$";
proxy_set_header X-Empty '';
proxy_set_header X-Bare semi\;colon;"#,
        ));
        assert_eq!(
            c.servers[0].locations[0].set_headers,
            hdr(&[
                ("X-Dq", "say \"hi\" \\ ok"),
                ("X-Sq", "it's; {fine}"),
                ("X-Ctl", "a\tb\nc"),
                ("X-Other", "\\d\\$"),
                ("X-Empty", ""),
                ("X-Bare", "semi\\;colon"),
            ])
        );
        // A multi-line quoted string still counts lines.
        err_at(
            "pid \"a\nb\nc\";\nbogus;\n",
            4,
            "unknown directive \"bogus\"",
        );
        err_at("pid 'abc;\n", 1, "expecting closing '");
        err_at("pid \"a\"b;\n", 1, "after quoted string");
    }
}
