//! The directive table: every directive of the subset, the blocks it may appear in, its
//! argument count, whether it opens a block, and whether it is harmless (warned, ignored).

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
        "worker_processes" | "worker_rlimit_nofile" | "ringway_worker_mode" => {
            known(MAIN, Exact(1), false)
        }
        "events" | "http" => known(MAIN, Exact(0), true),
        "worker_connections" => known(EVENTS, Exact(1), false),
        "map" => known(HTTP, Exact(2), true),
        "upstream" => known(HTTP, Exact(1), true),
        "server" if ctx == Ctx::Upstream => known(UPSTREAM, AtLeast(1), false),
        "server" => known(HTTP_UPSTREAM, Exact(0), true),
        "least_conn" | "ip_hash" => known(UPSTREAM, Exact(0), false),
        "hash" => known(UPSTREAM, Range(1, 2), false),
        "sticky" => known(UPSTREAM, AtLeast(2), false),
        "keepalive" => known(UPSTREAM, Exact(1), false),
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
        // Harmless: accepted, warned about, otherwise ignored.
        "user" => harmless(MAIN, Range(1, 2)),
        "pid" => harmless(MAIN, Exact(1)),
        "daemon" | "master_process" => harmless(MAIN, Flag),
        "error_log" => harmless(MHSL, AtLeast(1)),
        "access_log" => harmless(HSL, AtLeast(1)),
        "log_format" => harmless(HTTP, AtLeast(2)),
        "server_name" => harmless(SERVER, AtLeast(1)),
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

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;

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
                    access_log /var/log/nginx/access.log main;\n\
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
            (2, "pid"),
            (3, "daemon"),
            (4, "master_process"),
            (5, "error_log"),
            (7, "multi_accept"),
            (8, "use"),
            (11, "sendfile"),
            (12, "tcp_nopush"),
            (13, "tcp_nodelay"),
            (15, "types_hash_max_size"),
            (16, "default_type"),
            (17, "gzip"),
            (18, "log_format"),
            (19, "access_log"),
            (20, "server_tokens"),
            (21, "client_max_body_size"),
            (24, "server_name"),
            (25, "proxy_buffering"),
            (25, "proxy_redirect"),
            (25, "proxy_cache_bypass"),
            (25, "proxy_buffer_size"),
            (25, "proxy_buffers"),
        ];
        let expected: Vec<String> = names
            .iter()
            .map(|(l, n)| format!("nginx.conf:{l}: ignoring harmless directive '{n}'"))
            .collect();
        assert_eq!(c.warnings, expected);
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
}
