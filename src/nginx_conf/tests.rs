//! Tests of the parser as a whole: the seed file, the directive subset, errors with file
//! and line, includes.
use super::*;
use fixtures::*;

#[test]
fn error_lines_and_messages() {
    let e = err("http {\n\n    gzip_foo on;\n}\n");
    assert_eq!(
        e.to_string(),
        "nginx.conf:3: unknown directive \"gzip_foo\" (ringway reads a subset of \
         nginx.conf; see README)"
    );
    // Wrong context.
    err_at(
        "worker_processes 1;\nworker_connections 1024;\n",
        2,
        "\"worker_connections\" directive is not allowed in the top level (it belongs in events)",
    );
    err_at(
        "events {\n}\nhttp {\n listen 80;\n}",
        4,
        "not allowed in http",
    );
    err_at(
        "http {\n server {\n  location / {\n   location /x { }\n  }\n }\n}",
        4,
        "not allowed in location",
    );
    err_at(
        "http {\n upstream u {\n  proxy_pass u;\n }\n}",
        3,
        "not allowed",
    );
    // Wrong argument count.
    err_at(
        "worker_processes;",
        1,
        "invalid number of arguments in \"worker_processes\"",
    );
    err_at(
        "\n\nworker_processes 1 2;",
        3,
        "invalid number of arguments",
    );
    // Missing `;`: directive swallows the next line.
    err_at(
        &in_location("proxy_http_version 1.1\nproxy_set_header Upgrade $http_upgrade;"),
        5,
        "missing \";\" at the end of line 5",
    );
    // Missing `;` before `}`.
    err_at(
        &in_location("proxy_pass http://u"),
        5,
        "missing \";\" after directive \"proxy_pass\"",
    );
    // Missing `;` at end of file.
    err_at("worker_processes 1\n", 1, "unexpected end of file");
    err_at(
        "http {\n server {\n  listen 8080\n  server_name _;\n }\n}",
        3,
        "missing \";\" at the end of line 3",
    );
    // Missing `;` before a block.
    err_at(
        "worker_processes 1\nevents { }\n",
        1,
        "is not terminated by \";\"",
    );
    // Block directive without block.
    err_at("events;", 1, "has no opening \"{\"");
    // Unbalanced braces.
    err_at(
        "events {\n worker_connections 1;\n\nhttp {\n}\n",
        5,
        "opened on line 1",
    );
    err_at("events {\n}\n}\n", 3, "unexpected \"}\"");
    err_at("\n;\n", 2, "unexpected \";\"");
    err_at("{ }", 1, "unexpected \"{\"");
    // Bad numbers and durations.
    err_at(
        "events {\n worker_connections -5;\n}",
        2,
        "invalid number \"-5\"",
    );
    err_at(
        "events {\n worker_connections 99999999999999999999999;\n}",
        2,
        "invalid number",
    );
    err_at("worker_rlimit_nofile 1k;", 1, "invalid number \"1k\"");
    err_at(
        &in_location("proxy_read_timeout 10x;"),
        5,
        "invalid time \"10x\"",
    );
    err_at(&in_location("proxy_read_timeout 5s1m;"), 5, "invalid time");
    err_at(
        &in_location("proxy_http_version 2;"),
        5,
        "proxy_http_version",
    );
    err_at(
        "http {\n upstream u {\n  server 1.2.3.4:5 weight=0;\n }\n}",
        3,
        "at least 1",
    );
    err_at(
        "http {\n upstream u {\n  server 1.2.3.4:5 fail_timeout=ten;\n }\n}",
        3,
        "invalid time",
    );
    err_at(
        "http {\n upstream u {\n  server 1.2.3.4:5 slow_start=1s;\n }\n}",
        3,
        "invalid parameter \"slow_start=1s\"",
    );
    err_at(
        "http {\n upstream u {\n  server 9001;\n }\n}",
        3,
        "missing host",
    );
    // proxy_pass to nothing.
    err_at(
        &in_location("proxy_pass http://nodes;"),
        5,
        "there is no upstream \"nodes\" and it is not a host:port",
    );
    err_at(&in_location("proxy_pass https://u;"), 5, "https");
    // A URI part is a rewrite of the matched prefix (nginx's); with a query, refused.
    let c = ok(&in_location("proxy_pass http://u/api/;"));
    assert_eq!(c.servers[0].locations[0].pass_uri.as_deref(), Some("/api/"));
    err_at(&in_location("proxy_pass http://u/api?x=1;"), 5, "query");
    err_at(&in_location("proxy_pass http://$host;"), 5, "variables");
    err_at(
        &in_location("proxy_pass http://u;\nproxy_pass http://u;"),
        6,
        "duplicate",
    );
    // Two balancing methods, empty upstream, duplicates.
    err_at(
        "http {\n upstream u {\n  least_conn;\n  ip_hash;\n  server 1.2.3.4:5;\n }\n}",
        4,
        "already has a load balancing method (line 3)",
    );
    err_at(
        "http {\n\n upstream empty {\n }\n}",
        3,
        "no servers are inside upstream \"empty\"",
    );
    err_at(
        "http {\n upstream u { server 1.1.1.1:1; }\n upstream u { server 1.1.1.1:1; }\n}",
        3,
        "duplicate upstream",
    );
    err_at("worker_processes 1;\nworker_processes 2;", 2, "duplicate");
    err_at("http {\n}\nhttp {\n}", 3, "duplicate");
    err_at(
        "http {\n server {\n  location / { }\n  location / { }\n }\n}",
        4,
        "duplicate location",
    );
    // Regex locations parse (they route); a bad expression or a named location does not.
    let c = ok("http {\n server {\n  location ~ \\.php$ { }\n }\n}");
    assert_eq!(
        c.servers[0].locations[0].kind,
        LocationMatch::Regex {
            case_insensitive: false
        }
    );
    err_at(
        "http {\n server {\n  location ~ ([ { }\n }\n}",
        3,
        "invalid regular expression",
    );
    err_at(
        "http {\n server {\n  location @named { }\n }\n}",
        3,
        "named location",
    );
    err_at("http {\n map $a b { }\n}", 2, "invalid map variable");
    err_at(
        "http {\n map $a $b {\n  x y z;\n }\n}",
        3,
        "invalid map entry",
    );
    err_at(
        "http {\n map $a $b {\n  x y;\n  x z;\n }\n}",
        4,
        "duplicate map key",
    );
}

#[test]
fn parse_file_works_and_reports_io_errors() {
    let dir = std::env::temp_dir().join(format!("ringway-ngxconf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("nginx.conf");
    std::fs::write(&path, SEED).unwrap();
    let c = parse_file(&path).unwrap();
    assert_eq!(c.upstreams[0].name, "nodes");
    std::fs::write(&path, "http {\n sendfile on;\n}\n").unwrap();
    let c = parse_file(&path).unwrap();
    assert!(c.warnings[0].starts_with(&format!("{}:2: ", path.display())));
    std::fs::write(&path, b"pid x;\n\xff;\n").unwrap();
    assert_eq!(parse_file(&path).unwrap_err().line, 2);
    std::fs::remove_file(&path).unwrap();
    let e = parse_file(&path).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e
        .to_string()
        .starts_with(&format!("{}: cannot read", path.display())));
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn garbage_and_truncated_inputs_do_not_panic() {
    // Every prefix of the seed config.
    for (i, _) in SEED.char_indices() {
        let _ = parse_str(&SEED[..i], "t");
    }
    // Hand-picked nasties.
    let deep = "a {".repeat(10_000);
    let nasties = [
        "",
        "\\",
        "'",
        "\"\\",
        "${",
        "a ${b",
        "a ${b c}",
        "}}}}",
        ";;;",
        "{{{{",
        deep.as_str(),
        "http { server { listen [; } }",
        "http { server { listen :; } }",
        "http { server { listen [::]:; } }",
        "http { server { location / { proxy_pass http://; } } }",
        "http { server { location / { proxy_pass ://x; } } }",
        "http { server { location / { proxy_pass http://é:1; } } }",
        "http { upstream é { server é; } }",
        "http { map $é $é { é é; } }",
        "worker_processes \u{0};",
        "events { worker_connections 1ms; }",
        "http { server { location / { proxy_read_timeout 9999999999999999y; } } }",
    ];
    for n in nasties {
        let _ = parse_str(n, "t");
    }
    // Pseudo-random token soup.
    let alphabet: Vec<char> = "ab$:/[]{};#'\"\\ \n\t0189msé.=_-*".chars().collect();
    let words = [
        "http",
        "server",
        "upstream",
        "location",
        "listen",
        "map",
        "events",
        "proxy_pass",
        "hash",
        "sticky",
        "cookie",
        "least_conn",
        "keepalive",
        "worker_processes",
        "auto",
        "include",
        "default",
    ];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..3000 {
        let len = (next() % 80) as usize;
        let mut s = String::new();
        for _ in 0..len {
            let r = next();
            if r % 4 == 0 {
                s.push_str(words[(r / 4) as usize % words.len()]);
                s.push(' ');
            } else {
                s.push(alphabet[(r / 4) as usize % alphabet.len()]);
            }
        }
        let _ = parse_str(&s, "t");
    }
}
