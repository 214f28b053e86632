//! ringway-bench: the pieces shared by the benchmark binaries.
//!
//! | file | concern |
//! |---|---|
//! | `ws.rs` | WebSocket frame headers, masking, handshake strings |
//! | `server.rs` | wsecho's per-connection upgrade, banner and in-place echo |
//! | `client.rs` | loadgen's client: connect, upgrade, banner, frame reading, failure kinds |
//! | `net.rs` | loopback-only targets, source-address ranges, fd limit, SO_REUSEPORT |
//! | `stats.rs` | failure counters, distribution keys, percentiles |
//! | `cpu.rs` | CPU time of watched processes and of the generator itself |
//! | `bin/wsecho.rs` | the echo backend (and its multi-process supervisor) |
//! | `bin/loadgen/` | the load generator, one file per subcommand |

pub mod client;
pub mod cpu;
pub mod fmt;
pub mod net;
pub mod server;
pub mod stats;
pub mod ws;
