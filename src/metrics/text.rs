//! Metric families → the OpenMetrics text format (the `prometheus-client` crate's
//! encoder), and the small HTTP/1.x listener that serves it on its own thread.
//!
//! The listener answers one connection at a time (`GET /metrics`; anything else 404),
//! with short read and write timeouts, so a stuck scraper costs only its own scrape.

use super::collect::{self, Families, Kind, Value};
use super::Source;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug)]
struct Snapshot(Families);

impl prometheus_client::collector::Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let bounds = collect::bounds_seconds();
        for (name, kind, help) in collect::METRICS {
            let Some(rows) = self.0.rows.get(name) else {
                continue;
            };
            let ty = match kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut m = enc.encode_descriptor(name, help, None, ty)?;
            for (labels, v) in rows {
                let fam = m.encode_family(labels)?;
                match (kind, v) {
                    (Kind::Counter, Value::N(n)) => ConstCounter::new(*n as u64).encode(fam)?,
                    (Kind::Gauge, Value::N(n)) => ConstGauge::new(*n).encode(fam)?,
                    (Kind::Histogram, Value::H(b, sum_us)) => {
                        let mut fam = fam;
                        // Per-bucket counts; the encoder sums them up, and writes `+Inf`
                        // for the bound f64::MAX.
                        let per: Vec<(f64, u64)> = b
                            .iter()
                            .enumerate()
                            .map(|(i, n)| (bounds.get(i).copied().unwrap_or(f64::MAX), *n))
                            .collect();
                        let count = b.iter().sum();
                        let exemplars: Option<&HashMap<usize, _>> = None::<
                            &HashMap<
                                usize,
                                prometheus_client::metrics::exemplar::Exemplar<(), f64>,
                            >,
                        >;
                        fam.encode_histogram(*sum_us as f64 / 1e6, count, &per, exemplars)?;
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// `families` in the OpenMetrics text format.
pub fn render(families: Families) -> String {
    let mut reg = Registry::default();
    reg.register_collector(Box::new(Snapshot(families)));
    let mut out = String::with_capacity(16 * 1024);
    let _ = prometheus_client::encoding::text::encode(&mut out, &reg);
    out
}

/// Bind `addr` and serve `GET /metrics` from `source` on a thread of its own. Returns the
/// bound address (port 0 picks one).
pub fn serve(addr: SocketAddr, source: Arc<Source>) -> io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {addr}: {e} (choose another --metrics address)"),
        )
    })?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("ringway-metrics".into())
        .spawn(move || {
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = answer(stream, &source);
                    }
                    // Out of descriptors, say: the scraper will try again.
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        })?;
    Ok(bound)
}

/// Read one request head and answer it; the connection is closed after.
fn answer(mut s: TcpStream, source: &Source) -> io::Result<()> {
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = [0u8; 4096];
    let mut len = 0;
    while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
        let n = s.read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    let line = buf[..len].split(|&b| b == b'\r').next().unwrap_or(&[]);
    let mut parts = line.split(|&b| b == b' ');
    let (method, target) = (parts.next().unwrap_or(&[]), parts.next().unwrap_or(&[]));
    let path = target.split(|&b| b == b'?').next().unwrap_or(&[]);
    let (status, ctype, body) = if method != b"GET" && method != b"HEAD" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "GET /metrics\n".to_string(),
        )
    } else if path == b"/metrics" {
        ("200 OK", CONTENT_TYPE, render(source.families()))
    } else {
        (
            "404 Not Found",
            "text/plain",
            "ringway serves GET /metrics here\n".to_string(),
        )
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    if method != b"HEAD" {
        s.write_all(body.as_bytes())?;
    }
    Ok(())
}
