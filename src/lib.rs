//! ringway: a Linux-first, thread-per-core io_uring WebSocket/HTTP reverse proxy with an
//! explicit, nginx-identical connection budget and zero-copy splice tunnels.
//!
//! The crate is the proxy as a library (the `ringway` binary is a thin CLI over
//! [`server::start`]) so tests and tools can run it in-process on a port-0 listener.
//! Map of the modules:
//!
//! | concern | module |
//! |---|---|
//! | flags → validated config | [`config`] |
//! | nginx.conf subset | [`nginx_conf`] |
//! | worker_connections accounting | [`budget`] |
//! | every limit between a config and N tunnels | [`explain`] |
//! | SO_REUSEPORT listeners | [`listener`] |
//! | every SQE and completion decoding | [`ring`] |
//! | the event loop of one worker: slab, timers, accept, handoff, pool | [`worker`] |
//! | a session's sockets, ring identity, in-flight count | [`conn`] |
//! | session states and their handlers (HTTP, replies) | [`session`] |
//! | splice / copy / TLS relay, pipe pool | [`relay`] |
//! | TLS termination: certificates, SNI, rustls per connection, kTLS | [`tls`] |
//! | HTTP heads | [`http`] |
//! | backends, balancing | [`upstream`] |
//! | FNV-1a hashing (hash keys, ring, backend ids) | [`hash`] |
//! | counters | [`stats`], [`shm`] |
//! | log lines (nginx's error-log shape) | [`log`] |
//! | raw syscalls | [`sys`] |
//! | start/stop API | [`server`] |
//! | thread mode's signals: graceful stop, reload by generations | [`lifecycle`] |
//! | pid file, `-s SIGNAL` | [`pidfile`] |
//! | process mode: master, restarts | [`master`] |

#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod access_log;
pub mod body;
pub mod budget;
pub mod config;
pub mod conn;
pub mod explain;
pub mod hash;
pub mod health;
pub mod http;
pub mod lifecycle;
pub mod listener;
pub mod log;
pub mod master;
pub mod metrics;
pub mod nginx_conf;
pub mod pidfile;
pub mod relay;
pub mod ring;
pub mod server;
pub mod session;
pub mod shm;
pub mod stats;
pub mod supervise;
pub mod sys;
pub mod tls;
pub mod top;
pub mod upstream;
pub mod worker;

pub use config::Config;
pub use server::{start, Server};
