//! `include FILE;` and `include GLOB;`: the named files are read, and their directives take
//! the place of the `include` directive, in any block, as nginx does.
//!
//! Paths resolve the way nginx resolves them when started with `-c FILE`: a relative path is
//! taken from the directory of the main configuration file (nginx's configuration prefix),
//! at every level of nesting. An argument with `*`, `?` or `[` is a glob (glob(3) rules:
//! wildcards in any component, a leading `.` only matched literally); its matches are read
//! in byte order and a glob that matches nothing includes nothing. A plain path that cannot
//! be read is an error. Include cycles and includes nested more than [`MAX_NESTING`] deep
//! are errors naming the `include` line.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::tree::{parse_tree, Directive};
use super::ConfError;

/// Files included from included files, at most this deep.
pub(super) const MAX_NESTING: usize = 16;

/// At most this many files are read for one configuration (a guard against globs that
/// include each other many times over).
const MAX_FILES: usize = 1024;

/// Where includes are resolved and which files are being read.
pub(super) struct Includes {
    /// The main file's directory; `None` when parsing text that has no file.
    base: Option<PathBuf>,
    /// Canonical paths of the files being parsed, with their display names, outermost first.
    open: Vec<(PathBuf, String)>,
    /// Files read so far, the main one included.
    read: usize,
}

impl Includes {
    /// For text that is not read from a file: `include` is refused.
    pub(super) fn none() -> Includes {
        Includes {
            base: None,
            open: Vec::new(),
            read: 1,
        }
    }

    /// For the main file `path`, shown as `name`.
    pub(super) fn for_main(path: &Path, name: &str) -> Includes {
        let base = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        Includes {
            base: Some(base),
            open: vec![(canonical, name.to_string())],
            read: 1,
        }
    }

    /// The directives of the files that the `include` directive `d` names, parsed at its
    /// block level.
    pub(super) fn expand(&mut self, d: &Directive) -> Result<Vec<Directive>, ConfError> {
        let err = |msg: String| ConfError {
            file: d.file.to_string(),
            line: d.line,
            msg,
        };
        if d.args.len() != 1 {
            return Err(err(format!(
                "invalid number of arguments in \"include\" directive{}",
                d.semicolon_hint()
            )));
        }
        let arg = d.arg(0);
        let Some(base) = self.base.clone() else {
            return Err(err(format!(
                "\"include {arg}\": include needs a configuration file to resolve paths \
                 against (it works in files read with ringway -c FILE)"
            )));
        };
        if arg.is_empty() {
            return Err(err("\"include\" needs a file name".to_string()));
        }
        let files = if arg.contains(['*', '?', '[']) {
            glob_matches(&base, arg).map_err(err)?
        } else {
            vec![base.join(arg)]
        };
        let mut out = Vec::new();
        for path in files {
            out.extend(self.parse_included(d, arg, &path)?);
        }
        Ok(out)
    }

    fn parse_included(
        &mut self,
        d: &Directive,
        arg: &str,
        path: &Path,
    ) -> Result<Vec<Directive>, ConfError> {
        let name = path.display().to_string();
        let err = |msg: String| ConfError {
            file: d.file.to_string(),
            line: d.line,
            msg: format!("\"include {arg}\": {msg}"),
        };
        let canonical =
            std::fs::canonicalize(path).map_err(|e| err(format!("cannot open \"{name}\": {e}")))?;
        if self.open.iter().any(|(p, _)| *p == canonical) {
            let chain: Vec<&str> = self.open.iter().map(|(_, n)| n.as_str()).collect();
            return Err(err(format!(
                "include cycle: {} -> {name}",
                chain.join(" -> ")
            )));
        }
        if self.open.len() > MAX_NESTING {
            return Err(err(format!(
                "includes are nested more than {MAX_NESTING} deep"
            )));
        }
        if self.read >= MAX_FILES {
            return Err(err(format!("more than {MAX_FILES} files are included")));
        }
        self.read += 1;
        let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read \"{name}\": {e}")))?;
        let src = utf8(bytes, &name)?;
        self.open.push((canonical, name.clone()));
        let file: Rc<str> = Rc::from(name.as_str());
        let parsed = parse_tree(&src, &file, d.depth, self);
        self.open.pop();
        parsed
    }
}

/// The text of a configuration file, or an error naming the line of its first invalid byte.
pub(super) fn utf8(bytes: Vec<u8>, name: &str) -> Result<String, ConfError> {
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e
            .as_bytes()
            .get(..valid)
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count())
            + 1;
        ConfError {
            file: name.to_string(),
            line,
            msg: "the file is not valid UTF-8".to_string(),
        }
    })
}

/// The files matching the glob `arg` (relative to `base` unless absolute), sorted by bytes
/// as glob(3) sorts them in nginx.
fn glob_matches(base: &Path, arg: &str) -> Result<Vec<PathBuf>, String> {
    let pattern = if Path::new(arg).is_absolute() {
        arg.to_string()
    } else {
        let Some(dir) = base.to_str() else {
            return Err(format!(
                "\"include {arg}\": the directory {} is not valid UTF-8",
                base.display()
            ));
        };
        // The directory is taken literally; only the argument is a pattern.
        match glob::Pattern::escape(dir) {
            d if d.is_empty() => arg.to_string(),
            d if d.ends_with('/') => format!("{d}{arg}"),
            d => format!("{d}/{arg}"),
        }
    };
    let opts = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: true,
    };
    let paths = glob::glob_with(&pattern, opts)
        .map_err(|e| format!("\"include {arg}\": invalid pattern: {}", e.msg))?;
    let mut out = Vec::new();
    for p in paths {
        out.push(p.map_err(|e| {
            format!(
                "\"include {arg}\": cannot read {}: {}",
                e.path().display(),
                e.error()
            )
        })?);
    }
    out.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::*;
    use super::MAX_NESTING;

    fn file_err(path: &std::path::Path) -> ConfError {
        match parse_file(path) {
            Ok(c) => panic!("expected an error, got {c:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn include_file_and_glob_expand_in_place() {
        let t = TmpDir::new("inc");
        let main = t.write(
            "nginx.conf",
            "worker_processes 1;\n\
             include events.conf;\n\
             http {\n\
             \x20   include conf.d/*.conf;\n\
             \x20   include empty.d/*.conf;\n\
             \x20   server {\n\
             \x20       listen 8080;\n\
             \x20       location / {\n\
             \x20           include proxy_params;\n\
             \x20           proxy_pass http://nodes;\n\
             \x20       }\n\
             \x20   }\n\
             }\n",
        );
        t.write("events.conf", "events {\n worker_connections 77;\n}\n");
        t.write(
            "proxy_params",
            "proxy_set_header Host $host;\nproxy_set_header X-Real-IP $remote_addr;\n",
        );
        // Read in byte order: 10-map before 20-upstream before b-other; dotfiles and
        // non-matching names are not read (they would not parse).
        t.write(
            "conf.d/20-upstream.conf",
            "upstream nodes {\n    include servers/nodes.conf;\n}\n",
        );
        t.write(
            "conf.d/10-map.conf",
            "map $http_upgrade $connection_upgrade {\n include map-entries;\n}\n",
        );
        t.write(
            "conf.d/b-other.conf",
            "upstream other { server 10.0.0.9:9; }\n",
        );
        t.write("conf.d/.hidden.conf", "garbage {");
        t.write("conf.d/README", "garbage {");
        // Relative to the main file's directory, as nginx resolves them, also from inside an
        // included file.
        t.write("map-entries", "default upgrade;\n'' close;\n");
        t.write(
            "servers/nodes.conf",
            "server 127.0.0.1:9001;\nserver 127.0.0.1:9002 weight=2;\n",
        );
        let c = parse_file(&main).unwrap();
        assert_eq!(c.worker_connections, Some(77));
        assert_eq!(c.maps.len(), 1);
        assert_eq!(c.maps[0].default.as_deref(), Some("upgrade"));
        assert_eq!(c.maps[0].entries, hdr(&[("", "close")]));
        assert_eq!(c.maps[0].file, t.name("conf.d/10-map.conf"));
        let names: Vec<&str> = c.upstreams.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["nodes", "other"]);
        let nodes = &c.upstreams[0];
        assert_eq!(
            (nodes.file.clone(), nodes.line),
            (t.name("conf.d/20-upstream.conf"), 1)
        );
        let servers: Vec<(&str, u32, &str, usize)> = nodes
            .servers
            .iter()
            .map(|s| (s.addr.as_str(), s.weight, s.file.as_str(), s.line))
            .collect();
        let inc = t.name("servers/nodes.conf");
        assert_eq!(
            servers,
            [
                ("127.0.0.1:9001", 1, inc.as_str(), 1),
                ("127.0.0.1:9002", 2, inc.as_str(), 2)
            ]
        );
        let loc = &c.servers[0].locations[0];
        assert_eq!(loc.proxy_pass.as_deref(), Some("nodes"));
        assert_eq!(
            loc.set_headers,
            hdr(&[("Host", "$host"), ("X-Real-IP", "$remote_addr")])
        );
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        // The same file given by a relative-looking path still resolves from its directory.
        let dotted = t.0.join("conf.d").join("..").join("nginx.conf");
        assert_eq!(parse_file(&dotted).unwrap().upstreams.len(), 2);
    }

    #[test]
    fn messages_name_the_included_file() {
        let t = TmpDir::new("msg");
        let main = t.write("nginx.conf", "http {\n include site.conf;\n}\n");
        let site = t.name("site.conf");
        let parse_site = |body: &str| {
            t.write("site.conf", body);
            parse_file(&main)
        };
        // Warnings, and the structured list.
        let c = parse_site("sendfile on;\nserver {\n}\n").unwrap();
        assert_eq!(
            c.warnings,
            [
                format!(
                    "{site}:1: ignoring harmless directive 'sendfile': ringway serves no \
                     files, it only proxies"
                ),
                format!("{site}:2: server block has no \"listen\"; using 0.0.0.0:80 like nginx"),
            ]
        );
        assert_eq!(
            (c.ignored[0].file.clone(), c.ignored[0].line),
            (site.clone(), 1)
        );
        // Errors found by the lexer, the tree and the builder, in every kind of block.
        for (body, line, needle) in [
            ("\n\nbogus on;\n", 3, "unknown directive \"bogus\""),
            ("server {\n", 1, "is not closed"),
            ("}\n", 1, "unexpected \"}\""),
            ("map $a $b {\n x y z;\n}\n", 2, "invalid map entry"),
            (
                "upstream u {\n server 1.2.3.4:5 weight=0;\n}\n",
                2,
                "at least 1",
            ),
            ("upstream u {\n}\n", 1, "no servers are inside"),
            ("server {\n listen 70000;\n}\n", 2, "invalid port"),
            (
                "server {\n listen 1;\n location / {\n  proxy_pass http://nowhere;\n }\n}\n",
                4,
                "no upstream \"nowhere\"",
            ),
            (
                "server {\n listen 1;\n location / {\n  proxy_http_version 3;\n }\n}\n",
                4,
                "proxy_http_version",
            ),
            ("proxy_read_timeout 5x;\n", 1, "invalid time"),
            ("'unterminated;\n", 1, "expecting closing '"),
        ] {
            let e = parse_site(body).unwrap_err();
            assert_eq!((e.file.as_str(), e.line), (site.as_str(), line), "{e}");
            assert!(e.msg.contains(needle), "{e}");
        }
        t.write("site.conf", b"server {\n}\n\xff\n");
        let e = file_err(&main);
        assert_eq!((e.file.as_str(), e.line), (site.as_str(), 3), "{e}");
        // A location in the main file whose body comes from an include: each message names
        // the file of its own line.
        let main2 = t.write(
            "main2.conf",
            "http {\n upstream u { server 1.1.1.1:1; }\n server {\n  location / {\n   \
             include loc.conf;\n  }\n }\n}\n",
        );
        t.write("loc.conf", "proxy_pass http://u;\n");
        let c = parse_file(&main2).unwrap();
        assert_eq!(
            c.warnings,
            [format!(
                "{}:3: server block has no \"listen\"; using 0.0.0.0:80 like nginx",
                t.name("main2.conf")
            )]
        );
        t.write("main2.conf", "http {\n server {\n  listen 1;\n  location / {\n   include loc.conf;\n  }\n  location / { }\n }\n}\n");
        let e = file_err(&main2);
        assert_eq!((e.file.clone(), e.line), (t.name("main2.conf"), 7), "{e}");
        t.write(
            "main2.conf",
            "http {\n server {\n  listen 1;\n  location / {\n   include loc.conf;\n  }\n }\n}\n",
        );
        t.write("loc.conf", "\n\nproxy_pass http://nowhere;\n");
        let e = file_err(&main2);
        assert_eq!((e.file.clone(), e.line), (t.name("loc.conf"), 3), "{e}");
        // Something defined twice across files says where the first one is.
        t.write("site.conf", "upstream u { server 1.1.1.1:1; }\n");
        let main3 = t.write(
            "main3.conf",
            "http {\n include site.conf;\n\n upstream u { server 1.1.1.1:1; }\n}\n",
        );
        let e = file_err(&main3);
        assert_eq!(e.line, 4);
        assert!(e.msg.contains(&format!("first defined on {site}:1")), "{e}");
    }

    #[test]
    fn missing_files_cycles_and_depth() {
        let t = TmpDir::new("bad");
        let main = t.write("nginx.conf", "http {\n\n include nope.conf;\n}\n");
        let e = file_err(&main);
        assert_eq!((e.file.clone(), e.line), (t.name("nginx.conf"), 3));
        assert!(
            e.msg.starts_with(&format!(
                "\"include nope.conf\": cannot open \"{}\"",
                t.name("nope.conf")
            )),
            "{e}"
        );
        // A glob that matches nothing includes nothing (nginx: no error).
        t.write(
            "nginx.conf",
            "http {\n include none/*.conf;\n include x?.conf;\n}\n",
        );
        assert!(parse_file(&main).is_ok());
        // Bad patterns and unreadable matches are errors at the include line.
        t.write("nginx.conf", "http {\n include [.conf;\n}\n");
        let e = file_err(&main);
        assert!(e.line == 2 && e.msg.contains("invalid pattern"), "{e}");
        t.write("d/sub.conf/x", "");
        t.write("nginx.conf", "http {\n include d/*.conf;\n}\n");
        let e = file_err(&main);
        assert!(e.line == 2 && e.msg.contains("cannot read"), "{e}");
        // Cycles: through another file, and a glob that matches the including file.
        t.write("nginx.conf", "http {\n include a.conf;\n}\n");
        t.write("a.conf", "include b.conf;\n");
        t.write("b.conf", "\ninclude a.conf;\n");
        let e = file_err(&main);
        assert_eq!((e.file.clone(), e.line), (t.name("b.conf"), 2), "{e}");
        assert_eq!(
            e.msg,
            format!(
                "\"include a.conf\": include cycle: {} -> {} -> {} -> {}",
                t.name("nginx.conf"),
                t.name("a.conf"),
                t.name("b.conf"),
                t.name("a.conf")
            )
        );
        t.write("nginx.conf", "include *.conf;\n");
        let e = file_err(&main);
        assert!(e.msg.contains("include cycle"), "{e}");
        // Depth: a chain of includes longer than MAX_NESTING.
        for i in 0..=MAX_NESTING {
            t.write(&format!("n{i}.conf"), format!("include n{}.conf;\n", i + 1));
        }
        t.write(&format!("n{}.conf", MAX_NESTING + 1), "user x;\n");
        t.write("nginx.conf", "include n1.conf;\n");
        let e = file_err(&main);
        assert_eq!(
            (e.file.clone(), e.line),
            (t.name(&format!("n{MAX_NESTING}.conf")), 1),
            "{e}"
        );
        assert!(e.msg.contains("nested more than 16 deep"), "{e}");
        t.write("nginx.conf", "include n2.conf;\n");
        assert_eq!(parse_file(&main).unwrap().ignored[0].directive, "user");
    }
}
