//! ringway-bench: the pieces shared by the benchmark binaries.
//!
//! | file | concern |
//! |---|---|
//! | `ws.rs` | WebSocket frame headers, masking, handshake strings |
//! | `http.rs` | HTTP/1.1 framing: request and response heads, body length, chunked decoding |
//! | `server.rs` | wsecho's per-connection request loop: keep-alive `200` answers, pipelining, bodies |
//! | `echo.rs` | wsecho's WebSocket side: `101`, banner and in-place echo |
//! | `pool.rs` | wsecho's per-thread pools of read and output buffers |
//! | `client.rs` | loadgen's client: connect, upgrade, banner, frame reading, failure kinds |
//! | `stream.rs` | loadgen's connection: plain TCP or TLS (`--tls`), connect + handshake |
//! | `tls.rs` | rustls client (one pinned suite and group) and wsecho's server; what was negotiated |
//! | `sock.rs` | what wsecho's loops need from a connection (TCP or TLS): readable, try_read, send |
//! | `certs.rs` | `loadgen gen-cert`: a test CA and leaves (rcgen), written as PEM |
//! | `http_client.rs` | loadgen's keep-alive HTTP/1.1 client: requests, response framing |
//! | `net.rs` | loopback-only targets, source-address ranges, fd limit, SO_REUSEPORT |
//! | `stats.rs` | failure counters, distribution keys, percentiles, spreads over repetitions |
//! | `cpu.rs` | CPU time of watched processes and of the generator itself |
//! | `fmt.rs` | table cells for the reports: numbers, counts, ratios, spreads, failure kinds |
//! | `json.rs` | reading results folders: JSON files and dotted-path lookups |
//! | `plot.rs` | what the report plots share: result type, legend style |
//! | `bin/wsecho.rs` | the echo backend (and its multi-process supervisor) |
//! | `bin/loadgen/` | the load generator, one file per subcommand |
//! | `bin/report/` | summary.md and plots of a `scripts/compare.sh` results folder |
//! | `bin/ceiling_report/` | summary.md and plot of a `scripts/ceiling.sh` results folder |

pub mod certs;
pub mod client;
pub mod cpu;
pub mod echo;
pub mod fmt;
pub mod http;
pub mod http_client;
pub mod json;
pub mod net;
pub mod plot;
pub mod pool;
pub mod server;
pub mod sock;
pub mod stats;
pub mod stream;
pub mod tls;
pub mod ws;
