//! What the subcommands share: target options (TLS ones included), source-address choice,
//! connection setup with a bounded number in flight, progress on a terminal, the final JSON line
//! (with what TLS negotiated).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_bench::client::{Failure, WsClient};
use ringway_bench::net;
use ringway_bench::stats::{self, FailureCounts};
use ringway_bench::tls::{self, ClientOpts, Tally, TlsClient};
use serde::Serialize;
use serde_json::{json, Value};

/// How a run failed to complete.
#[derive(Debug)]
pub enum RunError {
    /// Bad arguments (exit 2).
    Usage(String),
    /// Something broke inside loadgen (exit 1).
    Internal(String),
}

/// Options every subcommand has.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct TargetArgs {
    /// Target HOST:PORT, which must be in 127.0.0.0/8.
    #[arg(long)]
    pub target: String,
    /// Bind client sockets round-robin to these source addresses (A or A-B, in 127.0.0.0/8), with
    /// IP_BIND_ADDRESS_NO_PORT, to go past one address's ephemeral ports.
    #[arg(long)]
    pub src_ips: Option<String>,
    /// Request path (of the upgrade; of every GET for `http`).
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Seconds allowed for a connection's setup (connect + upgrade + banner) and for a reply
    /// (`http`: for a connect and for each response).
    #[arg(long, default_value_t = 10.0)]
    pub timeout: f64,
    #[command(flatten)]
    #[serde(flatten)]
    pub tls: TlsArgs,
}

/// TLS options (every subcommand): wss:// and https:// with rustls (aws-lc-rs), offering ONE
/// cipher suite and ONE key-exchange group so that every server compared negotiates the same.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct TlsArgs {
    /// Speak TLS to the target (wss://, https://); needs --tls-ca.
    #[arg(long)]
    pub tls: bool,
    /// PEM file of the CA to trust (e.g. `loadgen gen-cert`'s ca.pem).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Server name sent (SNI) and verified against the certificate.
    #[arg(long, default_value = "localhost")]
    pub sni: String,
    /// The one cipher suite offered (IANA name; OpenSSL's for TLS 1.2 too). Default
    /// TLS13_AES_128_GCM_SHA256; with --tls12 TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.
    #[arg(long, value_name = "NAME")]
    pub tls_suite: Option<String>,
    /// Offer TLS 1.2 only.
    #[arg(long)]
    pub tls12: bool,
    /// The one key-exchange group offered (x25519, secp256r1, secp384r1, X25519MLKEM768).
    #[arg(long, default_value = tls::DEFAULT_GROUP, value_name = "NAME")]
    pub tls_group: String,
    /// Resume TLS sessions across this process's connections (tickets; `handshake` has its own
    /// --resume). Default: every handshake is full.
    #[arg(long)]
    pub tls_resume: bool,
}

impl TlsArgs {
    /// The client, when TLS is on (`implied`: the subcommand always speaks TLS).
    pub fn client(&self, implied: bool) -> Result<Option<TlsClient>, RunError> {
        let on = self.tls || implied;
        if !on {
            if self.tls_ca.is_some() || self.tls_suite.is_some() || self.tls12 || self.tls_resume {
                return Err(RunError::Usage(
                    "--tls-ca, --tls-suite, --tls12 and --tls-resume need --tls".into(),
                ));
            }
            return Ok(None);
        }
        let ca = self
            .tls_ca
            .clone()
            .ok_or_else(|| RunError::Usage("--tls needs --tls-ca FILE (the CA to trust)".into()))?;
        TlsClient::new(&ClientOpts {
            ca,
            sni: self.sni.clone(),
            suite: self.tls_suite.clone(),
            tls12: self.tls12,
            group: self.tls_group.clone(),
            resume: self.tls_resume.then_some(256),
        })
        .map(Some)
        .map_err(RunError::Usage)
    }

    /// The same options as command-line arguments (for child processes).
    pub fn to_args(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.tls {
            v.push("--tls".into());
        }
        if let Some(ca) = &self.tls_ca {
            v.extend(["--tls-ca".into(), ca.display().to_string()]);
        }
        v.extend(["--sni".into(), self.sni.clone()]);
        if let Some(s) = &self.tls_suite {
            v.extend(["--tls-suite".into(), s.clone()]);
        }
        if self.tls12 {
            v.push("--tls12".into());
        }
        v.extend(["--tls-group".into(), self.tls_group.clone()]);
        if self.tls_resume {
            v.push("--tls-resume".into());
        }
        v
    }
}

/// The `tls` object of a result: what the handshakes of this process (and of the children it
/// merged) negotiated. `version`, `suite`, `group`, `alpn`: the most frequent combination.
pub fn tls_json() -> Value {
    let t = Tally::current();
    let (version, suite, group, alpn) = t.main().unwrap_or_default();
    json!({
        "version": version,
        "suite": suite,
        "group": group,
        "alpn": alpn,
        "negotiated": t.negotiated,
        "handshakes": t.handshakes,
        "resumed": t.resumed,
    })
}

/// Validated target options.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddrV4,
    pub src: Vec<Ipv4Addr>,
    pub path: String,
    pub timeout: Duration,
    /// The TLS client (`--tls`).
    pub tls: Option<TlsClient>,
}

impl TargetArgs {
    /// Checks the target and source addresses (loopback only) and builds the TLS client.
    pub fn resolve(&self) -> Result<Target, RunError> {
        self.resolve_with(false)
    }

    /// [`TargetArgs::resolve`]; `tls_implied` for a subcommand that always speaks TLS.
    pub fn resolve_with(&self, tls_implied: bool) -> Result<Target, RunError> {
        let addr = net::parse_loopback_target(&self.target).map_err(RunError::Usage)?;
        let src = match &self.src_ips {
            Some(s) => net::parse_src_range(s).map_err(RunError::Usage)?,
            None => Vec::new(),
        };
        if !(self.timeout > 0.0 && self.timeout.is_finite()) {
            return Err(RunError::Usage("--timeout must be positive".into()));
        }
        if !self.path.starts_with('/') || self.path.contains(char::is_whitespace) {
            return Err(RunError::Usage(
                "--path must start with / and contain no spaces".into(),
            ));
        }
        Ok(Target {
            addr,
            src,
            path: self.path.clone(),
            timeout: Duration::from_secs_f64(self.timeout),
            tls: self.tls.client(tls_implied)?,
        })
    }
}

impl Target {
    /// Source address for the connection with global index `i` (round-robin), if any.
    pub fn src_for(&self, i: u64) -> Option<Ipv4Addr> {
        (!self.src.is_empty()).then(|| self.src[(i % self.src.len() as u64) as usize])
    }

    /// Connects, upgrades and reads the banner within the timeout.
    pub async fn open(&self, i: u64, buf_cap: usize) -> Result<(WsClient, String), Failure> {
        match tokio::time::timeout(
            self.timeout,
            WsClient::open(
                self.addr,
                self.src_for(i),
                &self.path,
                buf_cap,
                self.tls.as_ref(),
            ),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        }
    }
}

/// Checks a positive, finite number of seconds.
pub fn secs(name: &str, v: f64, allow_zero: bool) -> Result<Duration, RunError> {
    if v.is_finite() && (v > 0.0 || (allow_zero && v == 0.0)) && v < 1e7 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(RunError::Usage(format!(
            "{name} must be a positive number of seconds"
        )))
    }
}

/// A single-threaded tokio runtime (with a LocalSet for `!Send` shared state).
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output, RunError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| RunError::Internal(format!("tokio runtime: {e}")))?;
    let local = tokio::task::LocalSet::new();
    Ok(local.block_on(&rt, f))
}

/// Connections opened for a steady-state test (echo, bulk).
pub struct Opened {
    pub clients: Vec<WsClient>,
    pub failed: FailureCounts,
    pub distribution: BTreeMap<String, u64>,
    pub setup_ms: stats::Percentiles,
}

/// Opens `n` connections, at most 256 setting up at once (the listen backlog is finite).
pub async fn open_many(t: &Target, n: u64, buf_cap: usize) -> Opened {
    let sem = Rc::new(tokio::sync::Semaphore::new(256));
    let results = Rc::new(RefCell::new(Vec::new()));
    let hist = Rc::new(RefCell::new(stats::new_histogram()));
    let mut handles = Vec::new();
    for i in 0..n {
        let (sem, results, hist, t) = (sem.clone(), results.clone(), hist.clone(), t.clone());
        handles.push(tokio::task::spawn_local(async move {
            let _permit = sem.acquire().await.expect("semaphore open");
            let t0 = Instant::now();
            let r = t.open(i, buf_cap).await;
            if r.is_ok() {
                let _ = hist
                    .borrow_mut()
                    .record(t0.elapsed().as_micros().max(1) as u64);
            }
            results.borrow_mut().push(r);
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let mut o = Opened {
        clients: Vec::new(),
        failed: FailureCounts::default(),
        distribution: BTreeMap::new(),
        setup_ms: stats::Percentiles::of(&hist.borrow(), 1000.0),
    };
    for r in results.take() {
        match r {
            Ok((c, banner)) => {
                *o.distribution
                    .entry(stats::banner_key(&banner))
                    .or_default() += 1;
                o.clients.push(c);
            }
            Err(f) => o.failed.add(&f),
        }
    }
    o
}

/// A mask for client frames (fixed per run: a benchmark needs no unpredictability).
pub fn mask() -> [u8; 4] {
    let x = std::process::id().wrapping_mul(2_654_435_761) | 0x0101_0101;
    x.to_ne_bytes()
}

/// Whether progress lines should be drawn (stderr is a terminal and this is no child process).
pub fn show_progress(child: bool) -> bool {
    !child && std::io::stderr().is_terminal()
}

/// Redraws one progress line on stderr.
pub fn progress(line: &str) {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "\r\x1b[2K{line}");
    let _ = e.flush();
}

/// Ends the progress line.
pub fn progress_done() {
    eprintln!();
}

/// Waits out a measured window of `duration`; with `show`, redraws `line(seconds elapsed)`
/// as the progress line twice a second.
pub async fn measure_window(duration: Duration, show: bool, line: impl Fn(f64) -> String) {
    if !show {
        tokio::time::sleep(duration).await;
        return;
    }
    let t0 = Instant::now();
    let end = tokio::time::Instant::now() + duration;
    while tokio::time::Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(500).min(end - tokio::time::Instant::now())).await;
        progress(&line(t0.elapsed().as_secs_f64()));
    }
    progress_done();
}

/// Prints the result as one JSON line (the last stdout line).
pub fn emit_json(v: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{v}");
    let _ = out.flush();
}

pub use ringway_bench::cpu::r3;

/// Cancels every task after `grace` if they have not finished by then; returns how many were cut.
pub async fn join_all_within(handles: Vec<tokio::task::JoinHandle<()>>, grace: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + grace;
    let mut cut = 0;
    for h in handles {
        let ab = h.abort_handle();
        if tokio::time::timeout_at(deadline, h).await.is_err() {
            ab.abort();
            cut += 1;
        }
    }
    cut
}
