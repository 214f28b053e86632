//! wsecho: a WebSocket echo backend for benchmarks.
//!
//! Right after the upgrade it sends the text message `backend:<port>`, then echoes text and binary
//! messages, answers pings and close. A request without an upgrade gets `200 OK` with the body
//! `backend:<port>\n`, keep-alive HTTP/1.1 style (pipelining, request bodies, `Connection: close`
//! honoured; see `server.rs`). `--procs N` runs N single-threaded processes on one port with
//! SO_REUSEPORT (each has its own fd limit); the parent only supervises. Prints
//! `listening HOST:PORT` once ready. `--tls-cert F --tls-key F`: the same over TLS (wss://,
//! https://; rustls with aws-lc-rs, TLS 1.2 and 1.3, tickets), for the `direct` TLS rows.

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use ringway_bench::tls::ServerTls;
use ringway_bench::{net, server, tls};

/// Seconds a client has to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "wsecho",
    about = "WebSocket echo and keep-alive HTTP backend for ringway benchmarks"
)]
struct Args {
    /// Port to listen on (0 = any free port; the chosen one is printed).
    #[arg(long)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Number of processes sharing the port with SO_REUSEPORT.
    #[arg(long, default_value_t = 1)]
    procs: u32,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 3600)]
    lifetime: u64,
    /// Serve TLS with this certificate chain (PEM; with --tls-key). Each process has its own
    /// ticket key, so with --procs > 1 a ticket resumes only on the process that issued it.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM, PKCS#8, SEC1 or PKCS#1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Internal: run as a worker started by a supervising wsecho.
    #[arg(long, hide = true)]
    child_of: Option<u32>,
}

fn main() {
    let args = Args::parse();
    if args.procs == 0 {
        eprintln!("wsecho: --procs must be at least 1");
        std::process::exit(2);
    }
    if let Some(parent) = args.child_of {
        net::die_with_parent(Some(parent));
    }
    net::raise_nofile();
    let addr = SocketAddr::new(args.host, args.port);
    let code = if args.procs > 1 && args.child_of.is_none() {
        supervise(&args, addr)
    } else {
        worker(&args, addr)
    };
    std::process::exit(code);
}

/// One TLS connection: the handshake (at most [`HANDSHAKE_TIMEOUT`]), then [`server::serve`].
async fn serve_tls(acc: tokio_rustls::TlsAcceptor, s: tokio::net::TcpStream, port: u16) {
    let hs = tokio::time::timeout(HANDSHAKE_TIMEOUT, acc.accept(s));
    if let Ok(Ok(t)) = hs.await {
        let _ = server::serve(ServerTls(t), port).await;
    }
}

fn print_listening(addr: SocketAddr) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "listening {addr}");
    let _ = out.flush();
}

/// One single-threaded echo server process.
fn worker(args: &Args, addr: SocketAddr) -> i32 {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => match tls::server_config(c, k) {
            Ok(cfg) => Some(tokio_rustls::TlsAcceptor::from(cfg)),
            Err(e) => {
                eprintln!("wsecho: TLS: {e}");
                return 2;
            }
        },
        _ => None,
    };
    let std_listener = match net::reuseport_listener(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wsecho: listen on {addr}: {e}");
            return 1;
        }
    };
    let bound = std_listener
        .local_addr()
        .expect("bound listener has an address");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let lifetime = Duration::from_secs(args.lifetime);
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).expect("register listener");
        print_listening(bound);
        let port = bound.port();
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let deadline = tokio::time::sleep(lifetime);
        tokio::pin!(deadline);
        let mut emfile_logged = false;
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                r = listener.accept() => match r {
                    Ok((s, _)) => {
                        emfile_logged = false;
                        let tls = tls.clone();
                        tokio::spawn(async move {
                            if s.set_nodelay(true).is_err() {
                                return;
                            }
                            match tls {
                                None => {
                                    let _ = server::serve(s, port).await;
                                }
                                // Boxed: a task's memory is its future's size, and the
                                // rustls state would otherwise make every plain
                                // connection's task as large as a TLS one (9 KiB).
                                Some(acc) => Box::pin(serve_tls(acc, s, port)).await,
                            }
                        });
                    }
                    Err(e) => {
                        // EMFILE/ENFILE and friends: back off briefly, log once per episode.
                        if !emfile_logged {
                            eprintln!("wsecho[{}]: accept: {e}", std::process::id());
                            emfile_logged = true;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
    });
    // Dropping the runtime closes every connection.
    0
}

/// `--tls-cert F --tls-key F` for a worker, when set.
fn tls_args(args: &Args) -> Vec<std::ffi::OsString> {
    match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => vec![
            "--tls-cert".into(),
            c.clone().into(),
            "--tls-key".into(),
            k.clone().into(),
        ],
        _ => Vec::new(),
    }
}

/// Starts `procs` workers on one port, waits for each to listen, then supervises them.
fn supervise(args: &Args, addr: SocketAddr) -> i32 {
    // Reserve the port (possibly port 0) so every worker joins the same SO_REUSEPORT group; the
    // reservation is closed once the workers listen, before anyone is told the port.
    let reserve = match net::reuseport_listener(addr) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("wsecho: listen on {addr}: {e}");
            return 1;
        }
    };
    let bound = reserve.local_addr().expect("bound listener has an address");
    let exe = std::env::current_exe().expect("own executable path");
    let me = std::process::id();
    let mut children: Vec<Child> = Vec::new();
    let kill_all = |children: &mut Vec<Child>| {
        for c in children.iter_mut() {
            // SAFETY: kill(2) with a pid of our own child.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        }
        for c in children.iter_mut() {
            let _ = c.wait();
        }
    };
    for _ in 0..args.procs {
        let spawned = Command::new(&exe)
            .args([
                "--host",
                &bound.ip().to_string(),
                "--port",
                &bound.port().to_string(),
            ])
            .args([
                "--lifetime",
                &args.lifetime.to_string(),
                "--child-of",
                &me.to_string(),
            ])
            .args(tls_args(args))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                eprintln!("wsecho: spawn worker: {e}");
                kill_all(&mut children);
                return 1;
            }
        };
        let mut line = String::new();
        let stdout = child.stdout.take().expect("piped stdout");
        let ok =
            BufReader::new(stdout).read_line(&mut line).is_ok() && line.starts_with("listening");
        children.push(child);
        if !ok {
            eprintln!("wsecho: a worker failed to start");
            kill_all(&mut children);
            return 1;
        }
    }
    drop(reserve);
    print_listening(bound);

    // Supervise: forward SIGTERM/SIGINT, stop at the lifetime, exit when all workers are gone.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let deadline = Instant::now() + Duration::from_secs(args.lifetime) + Duration::from_secs(2);
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = tokio::signal::ctrl_c() => break,
                _ = tick.tick() => {
                    children.retain_mut(|c| match c.try_wait() {
                        Ok(Some(st)) => {
                            if !st.success() {
                                eprintln!("wsecho: worker {} exited: {st}", c.id());
                            }
                            false
                        }
                        _ => true,
                    });
                    if children.is_empty() || Instant::now() > deadline {
                        break;
                    }
                }
            }
        }
    });
    kill_all(&mut children);
    0
}
