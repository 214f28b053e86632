//! `route_cost CONF [N]`: what choosing a route costs — ringway's routing table built from
//! nginx.conf `CONF`, asked N times (default 5,000,000) per request shape (path
//! normalisation, server by Host, location by path, as a worker does it), nanoseconds per
//! request head printed as one JSON line. scripts/routing-cost.sh runs it beside the
//! end-to-end CPU figures, which are too noisy to show a cost this small.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(path), n) = (args.next(), args.next()) else {
        eprintln!("usage: route_cost CONF [N]");
        std::process::exit(2);
    };
    let n: u32 = n.and_then(|v| v.parse().ok()).unwrap_or(5_000_000);
    let fail = |e: String| -> ! {
        eprintln!("route_cost: {e}");
        std::process::exit(1)
    };
    let conf = ringway::nginx_conf::parse_file(std::path::Path::new(&path))
        .unwrap_or_else(|e| fail(e.to_string()));
    let (cfg, _) = ringway::config::from_nginx(&conf, &path).unwrap_or_else(|e| fail(e));
    let Some(routing) = cfg.routing else {
        fail(format!(
            "{path} has no routing table (one server, one location /): nothing to time"
        ))
    };
    let host: &[u8] = b"127.0.0.1:8080";
    let mut scratch = Vec::with_capacity(256);
    let mut out = Vec::new();
    for target in ["/", "/static/app.css", "/health", "/api/v2/users?id=7"] {
        let t = Instant::now();
        let mut sum = 0usize;
        for _ in 0..n {
            sum += black_box(&routing)
                .route_with(0, Some(black_box(host)), black_box(target), &mut scratch)
                .ok()
                .flatten()
                .unwrap_or(0);
        }
        let ns = t.elapsed().as_nanos() as f64 / f64::from(n);
        black_box(sum);
        out.push(format!(
            "{{\"target\": \"{target}\", \"ns_per_route\": {ns:.1}}}"
        ));
    }
    println!(
        "{{\"conf\": \"{path}\", \"calls\": {n}, \"routes\": [{}]}}",
        out.join(", ")
    );
}
