//! The directive table: every directive of the subset, the blocks it may appear in, its
//! argument count, whether it opens a block, and whether it is harmless (warned, ignored);
//! and, for each harmless one, why ignoring it is safe.
//!
//! The rule for a directive ringway does not implement: when what it asks for is what
//! ringway does anyway, or only concerns something ringway does not have (files served,
//! logs, caches, nginx's own buffers and processes), it is harmless: a warning names it and
//! says why. When ignoring it would change where requests go, who may do what, or a limit
//! the file sets, and ringway cannot honour it, it is not in the table (an error) or it is
//! refused with a reason (`proxy_redirect` with a rewrite rule). `include` never reaches
//! the table: the tree replaces it with the included directives.

/// Appended to the "unknown directive" error so users know why a valid nginx directive fails.
pub(super) const SUBSET_HINT: &str = "(ringway reads a subset of nginx.conf; see README)";

/// The block a directive appears in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ctx {
    Main,
    Events,
    Http,
    Upstream,
    Server,
    Location,
}

impl Ctx {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Ctx::Main => "the top level",
            Ctx::Events => "events",
            Ctx::Http => "http",
            Ctx::Upstream => "upstream",
            Ctx::Server => "server",
            Ctx::Location => "location",
        }
    }
}

/// How many arguments a directive takes.
#[derive(Debug, Clone, Copy)]
pub(super) enum Args {
    Exact(usize),
    Range(usize, usize),
    AtLeast(usize),
    /// Exactly one argument, `on` or `off`.
    Flag,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub(super) struct Spec {
    pub(super) ctxs: &'static [Ctx],
    pub(super) args: Args,
    pub(super) block: bool,
    pub(super) harmless: bool,
}

const MAIN: &[Ctx] = &[Ctx::Main];
const EVENTS: &[Ctx] = &[Ctx::Events];
const HTTP: &[Ctx] = &[Ctx::Http];
const UPSTREAM: &[Ctx] = &[Ctx::Upstream];
const SERVER: &[Ctx] = &[Ctx::Server];
const LOCATION: &[Ctx] = &[Ctx::Location];
const HSL: &[Ctx] = &[Ctx::Http, Ctx::Server, Ctx::Location];
const HSLU: &[Ctx] = &[Ctx::Http, Ctx::Server, Ctx::Location, Ctx::Upstream];
const MHSL: &[Ctx] = &[Ctx::Main, Ctx::Http, Ctx::Server, Ctx::Location];
const HTTP_UPSTREAM: &[Ctx] = &[Ctx::Http, Ctx::Upstream];
const HS: &[Ctx] = &[Ctx::Http, Ctx::Server];

/// The table row for `name` as seen in `ctx` (`server` means two things), if known.
pub(super) fn spec_for(name: &str, ctx: Ctx) -> Option<Spec> {
    let known = |ctxs, args, block| Spec {
        ctxs,
        args,
        block,
        harmless: false,
    };
    let harmless = |ctxs, args| Spec {
        ctxs,
        args,
        block: false,
        harmless: true,
    };
    use Args::*;
    Some(match name {
        "worker_processes"
        | "worker_rlimit_nofile"
        | "ringway_worker_mode"
        | "pid"
        | "worker_shutdown_timeout" => known(MAIN, Exact(1), false),
        "events" | "http" => known(MAIN, Exact(0), true),
        "ringway_metrics" => known(MAIN, Exact(1), false),
        // One error log (the top level's) and one access log (the http block's); the
        // others are harmless below.
        "error_log" if ctx == Ctx::Main => known(MAIN, Range(1, 2), false),
        "access_log" if ctx == Ctx::Http => known(HTTP, Range(1, 2), false),
        "worker_connections" => known(EVENTS, Exact(1), false),
        "map" => known(HTTP, Exact(2), true),
        "upstream" => known(HTTP, Exact(1), true),
        "server" if ctx == Ctx::Upstream => known(UPSTREAM, AtLeast(1), false),
        "server" => known(HTTP_UPSTREAM, Exact(0), true),
        "least_conn" | "ip_hash" => known(UPSTREAM, Exact(0), false),
        "hash" => known(UPSTREAM, Range(1, 2), false),
        "sticky" => known(UPSTREAM, AtLeast(2), false),
        "keepalive" => known(UPSTREAM, Exact(1), false),
        "health_check" => known(UPSTREAM, AtLeast(1), false),
        "listen" => known(SERVER, AtLeast(1), false),
        "location" => known(SERVER, Range(1, 2), true),
        "proxy_pass" => known(LOCATION, Exact(1), false),
        "proxy_http_version" => known(HSL, Exact(1), false),
        "proxy_set_header" => known(HSL, Exact(2), false),
        "proxy_read_timeout" | "proxy_connect_timeout" | "proxy_send_timeout" => {
            known(HSL, Exact(1), false)
        }
        "keepalive_timeout" => known(HSLU, Range(1, 2), false),
        "client_body_timeout" => known(HSL, Exact(1), false),
        "client_header_timeout" => known(HS, Exact(1), false),
        "underscores_in_headers" => known(HS, Flag, false),
        "ssl_certificate" | "ssl_certificate_key" | "ssl_session_timeout" => {
            known(HS, Exact(1), false)
        }
        "ssl_protocols" => known(HS, AtLeast(1), false),
        "ssl_session_cache" => known(HS, Range(1, 2), false),
        "ssl_session_tickets" | "ssl" => known(HS, Flag, false),
        // TLS tuning that only OpenSSL has, or that ringway's rustls does its own way.
        "ssl_ciphers"
        | "ssl_ecdh_curve"
        | "ssl_dhparam"
        | "ssl_buffer_size"
        | "ssl_trusted_certificate"
        | "ssl_session_ticket_key" => harmless(HS, Exact(1)),
        "ssl_prefer_server_ciphers" | "ssl_stapling" | "ssl_stapling_verify" => harmless(HS, Flag),
        // Harmless: accepted, warned about, otherwise ignored.
        "user" => harmless(MAIN, Range(1, 2)),
        "daemon" | "master_process" => harmless(MAIN, Flag),
        "error_log" => harmless(MHSL, AtLeast(1)),
        "access_log" => harmless(HSL, AtLeast(1)),
        "log_format" => harmless(HTTP, AtLeast(2)),
        "server_name" => known(SERVER, AtLeast(1), false),
        "sendfile" | "tcp_nopush" | "tcp_nodelay" | "gzip" | "proxy_buffering" => {
            harmless(HSL, Flag)
        }
        "server_tokens"
        | "types_hash_max_size"
        | "default_type"
        | "client_max_body_size"
        | "proxy_buffer_size" => harmless(HSL, Exact(1)),
        "proxy_buffers" => harmless(HSL, Exact(2)),
        "proxy_redirect" => harmless(HSL, Range(1, 2)),
        "proxy_cache_bypass" => harmless(HSL, AtLeast(1)),
        // Where nginx keeps request bodies and buffered responses: ringway buffers neither.
        "client_body_temp_path"
        | "proxy_temp_path"
        | "fastcgi_temp_path"
        | "uwsgi_temp_path"
        | "scgi_temp_path" => harmless(HSL, Range(1, 4)),
        "multi_accept" => harmless(EVENTS, Flag),
        "use" => harmless(EVENTS, Exact(1)),
        _ => return None,
    })
}

/// Why `hostnames` and `volatile` in a map are safe to ignore.
pub(super) const MAP_PARAM_REASON: &str =
    "ringway evaluates no map variable (it does the $connection_upgrade one's job itself)";

/// Why the parameters after `sticky cookie NAME` are safe to ignore.
pub(super) const STICKY_PARAM_REASON: &str =
    "ringway's cookie is always \"NAME=ID; Path=/; HttpOnly\", a session cookie that names a \
     backend and nothing else";

/// Why ignoring the harmless directive `name` is safe (one line, shown in its warning).
pub(super) fn harmless_reason(name: &str) -> &'static str {
    match name {
        "user" => {
            "ringway does not switch users: it keeps the identity it was started with \
             (start it as that user, not as root)"
        }
        "daemon" => "ringway always runs in the foreground (daemon off)",
        "master_process" => {
            "ringway's process layout is its own (ringway_worker_mode thread|process)"
        }
        "error_log" => "ringway has one error log: the top level's error_log",
        "access_log" => "ringway has one access log: the http block's access_log",
        "log_format" => "ringway writes its own formats (access_log PATH combined|json)",
        "sendfile" | "tcp_nopush" => "ringway serves no files, it only proxies",
        "tcp_nodelay" => "ringway always sets TCP_NODELAY",
        "gzip" => "ringway never compresses: responses pass as the backend sent them",
        "proxy_buffering" => {
            "ringway never buffers whole responses: it streams (proxy_buffering off)"
        }
        "proxy_buffer_size" | "proxy_buffers" => "ringway streams through its own buffers",
        "server_tokens" => "ringway sends no Server header of its own",
        "types_hash_max_size" | "default_type" => "ringway serves no files, so no MIME types",
        "client_max_body_size" => {
            "not enforced: ringway streams request bodies of any size to the backend \
             (nginx answers 413 above the limit); enforce it in the backend"
        }
        "proxy_redirect" => "ringway passes Location and Refresh headers unchanged",
        "proxy_cache_bypass" => "ringway has no cache",
        "client_body_temp_path"
        | "proxy_temp_path"
        | "fastcgi_temp_path"
        | "uwsgi_temp_path"
        | "scgi_temp_path" => "ringway writes no temporary files",
        "multi_accept" | "use" => "ringway accepts connections through io_uring, its own way",
        "ssl_ciphers" | "ssl_prefer_server_ciphers" | "ssl_ecdh_curve" | "ssl_dhparam" => {
            "ringway's TLS (rustls) offers only modern AEAD suites (AES-GCM, ChaCha20-Poly1305) \
             and ECDHE groups (X25519, P-256, P-384), in its own safe order"
        }
        "ssl_buffer_size" => "ringway sizes TLS records itself (up to 16 KiB)",
        "ssl_stapling" | "ssl_stapling_verify" | "ssl_trusted_certificate" => {
            "ringway does no OCSP stapling"
        }
        "ssl_session_ticket_key" => {
            "ringway derives its own ticket keys, shared by all its workers (a ticket from \
             another instance or from before a reload costs a full handshake, nothing else)"
        }
        _ => "ringway has no equivalent",
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    #[test]
    fn include_needs_a_file() {
        // Text has no directory to resolve paths against; parse_file follows includes
        // (include.rs tests that).
        let e = err("http {\n    include mime.types;\n}\n");
        assert_eq!(
            e.to_string(),
            "nginx.conf:2: \"include mime.types\": include needs a configuration file to \
             resolve paths against (it works in files read with ringway -c FILE)"
        );
        err_at(
            "include /etc/nginx/conf.d/*.conf;",
            1,
            "needs a configuration file",
        );
        err_at(
            "http {\n map $a $b {\n  include m.conf;\n }\n}",
            3,
            "needs a configuration file",
        );
        err_at(
            &in_location("include proxy_params;"),
            5,
            "needs a configuration file",
        );
        // Its shape is checked first, as nginx does.
        err_at(
            "\ninclude a b;",
            2,
            "invalid number of arguments in \"include\"",
        );
        err_at("include;", 1, "invalid number of arguments in \"include\"");
        err_at("include a { }", 1, "\"include\" is not terminated by \";\"");
    }

    #[test]
    fn harmless_directives_warn() {
        let c = ok("user www-data;\n\
                    pid /run/nginx.pid;\n\
                    daemon off;\n\
                    master_process on;\n\
                    error_log /var/log/nginx/error.log warn;\n\
                    events {\n\
                    multi_accept on;\n\
                    use epoll;\n\
                    }\n\
                    http {\n\
                    sendfile on;\n\
                    tcp_nopush on;\n\
                    tcp_nodelay on;\n\
                    keepalive_timeout 65;\n\
                    types_hash_max_size 2048;\n\
                    default_type application/octet-stream;\n\
                    gzip on;\n\
                    log_format main '$remote_addr - $request';\n\
                    access_log /var/log/nginx/access.log;\n\
                    server_tokens off;\n\
                    client_max_body_size 10m;\n\
                    server {\n\
                    listen 80;\n\
                    server_name example.com www.example.com;\n\
                    location / { proxy_buffering off; proxy_redirect off; \
                    proxy_cache_bypass $http_upgrade; proxy_buffer_size 16k; \
                    proxy_buffers 8 16k; }\n\
                    }\n\
                    }\n");
        let names = [
            (1, "user"),
            (3, "daemon"),
            (4, "master_process"),
            (7, "multi_accept"),
            (8, "use"),
            (11, "sendfile"),
            (12, "tcp_nopush"),
            (13, "tcp_nodelay"),
            (15, "types_hash_max_size"),
            (16, "default_type"),
            (17, "gzip"),
            (18, "log_format"),
            (20, "server_tokens"),
            (21, "client_max_body_size"),
            (25, "proxy_buffering"),
            (25, "proxy_redirect"),
            (25, "proxy_cache_bypass"),
            (25, "proxy_buffer_size"),
            (25, "proxy_buffers"),
        ];
        let expected: Vec<String> = names
            .iter()
            .map(|(l, n)| {
                format!(
                    "nginx.conf:{l}: ignoring harmless directive '{n}': {}",
                    harmless_reason(n)
                )
            })
            .collect();
        assert_eq!(c.warnings, expected);
        // The same, structured.
        let ignored: Vec<(usize, &str, &str, &str)> = c
            .ignored
            .iter()
            .map(|i| {
                (
                    i.line,
                    i.directive.as_str(),
                    i.file.as_str(),
                    i.reason.as_str(),
                )
            })
            .collect();
        let expected: Vec<(usize, &str, &str, &str)> = names
            .iter()
            .map(|&(l, n)| (l, n, "nginx.conf", harmless_reason(n)))
            .collect();
        assert_eq!(ignored, expected);
        // Harmless directives are still checked for context and values.
        err_at("server_name x;", 1, "not allowed in the top level");
        err_at(
            "http {\n sendfile maybe;\n}",
            2,
            "must be \"on\" or \"off\"",
        );
        err_at("http {\n client_max_body_size 10q;\n}", 2, "invalid size");
        err_at("http {\n keepalive_timeout 5x;\n}", 2, "invalid time");
        err_at(
            "http {\n server {\n location / {\n client_header_timeout 5s;\n }\n }\n}",
            4,
            "not allowed",
        );
    }

    /// The audit: every directive the table accepts without implementing it says why that is
    /// safe, and those ringway cannot honour are refused.
    #[test]
    fn every_harmless_directive_has_its_reason() {
        let harmless = [
            ("user", Ctx::Main),
            ("daemon", Ctx::Main),
            ("master_process", Ctx::Main),
            ("error_log", Ctx::Http),
            ("access_log", Ctx::Server),
            ("log_format", Ctx::Http),
            ("sendfile", Ctx::Http),
            ("tcp_nopush", Ctx::Http),
            ("tcp_nodelay", Ctx::Http),
            ("gzip", Ctx::Http),
            ("proxy_buffering", Ctx::Location),
            ("server_tokens", Ctx::Http),
            ("types_hash_max_size", Ctx::Http),
            ("default_type", Ctx::Http),
            ("client_max_body_size", Ctx::Http),
            ("proxy_buffer_size", Ctx::Location),
            ("proxy_buffers", Ctx::Location),
            ("proxy_redirect", Ctx::Location),
            ("proxy_cache_bypass", Ctx::Location),
            ("client_body_temp_path", Ctx::Http),
            ("proxy_temp_path", Ctx::Http),
            ("fastcgi_temp_path", Ctx::Http),
            ("uwsgi_temp_path", Ctx::Http),
            ("scgi_temp_path", Ctx::Http),
            ("multi_accept", Ctx::Events),
            ("use", Ctx::Events),
        ];
        let fallback = harmless_reason("no such directive");
        for (name, ctx) in harmless {
            let spec = spec_for(name, ctx).unwrap_or_else(|| panic!("{name} is not in the table"));
            assert!(spec.harmless && spec.ctxs.contains(&ctx), "{name}");
            assert_ne!(
                harmless_reason(name),
                fallback,
                "{name} has no reason of its own"
            );
        }
        // A limit ringway does not enforce says so.
        let c = ok("http {\n client_max_body_size 1m;\n}");
        assert!(
            c.warnings[0].starts_with(
                "nginx.conf:2: ignoring harmless directive 'client_max_body_size': not enforced"
            ),
            "{:?}",
            c.warnings
        );
        // proxy_redirect: off and default are what ringway does; a rewrite rule is refused.
        let c = ok(&in_location("proxy_redirect default;"));
        assert_eq!(c.ignored[0].directive, "proxy_redirect");
        err_at(
            &in_location("proxy_redirect http://localhost:8000/ /;"),
            5,
            "is refused: ringway does not rewrite Location or Refresh headers",
        );
        err_at(
            &in_location("proxy_redirect on;"),
            5,
            "invalid value \"on\"",
        );
        // Unknown directives, limits included, are errors naming file and line.
        let ssl = in_location("proxy_ssl_verify on;");
        for (src, line) in [
            (
                "http {\n limit_req_zone $binary_remote_addr zone=one:10m rate=1r/s;\n}",
                2,
            ),
            ("http {\n\n allow 10.0.0.0/8;\n}", 3),
            (ssl.as_str(), 5),
        ] {
            err_at(src, line, "unknown directive");
        }
        // Map parameters ringway ignores are named too.
        let c = ok("http {\n map $host $x {\n  hostnames;\n  default 1;\n }\n}");
        assert_eq!(
            c.warnings,
            vec![format!(
                "nginx.conf:3: ignoring map parameter 'hostnames': {}",
                MAP_PARAM_REASON
            )]
        );
        assert_eq!(c.ignored[0].directive, "hostnames");
    }
}
