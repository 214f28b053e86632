//! Start workers, hand out their listeners, and stop them: the embedding API.
//!
//! [`start`] binds every worker's listener before any worker runs (so port 0 works and the
//! address is known), then spawns one thread per worker, pinned to a CPU, which builds its
//! own io_uring. A worker that cannot start (no io_uring, kernel too old) makes `start`
//! fail with that worker's error.

use crate::budget;
use crate::config::Config;
use crate::listener;
use crate::stats::{Snapshot, WorkerStats};
use crate::sys;
use crate::upstream::Upstreams;
use crate::worker::{Control, Peers, Worker, WorkerInit};
use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

struct WorkerHandle {
    thread: Option<JoinHandle<io::Result<()>>>,
    ctl_fd: RawFd,
    control: Arc<Control>,
}

/// A running proxy.
pub struct Server {
    workers: Vec<WorkerHandle>,
    stats: Vec<Arc<WorkerStats>>,
    ups: Arc<Upstreams>,
    addr: SocketAddr,
    cfg: Arc<Config>,
}

/// Raise the soft RLIMIT_NOFILE to the hard limit and say whether the budget fits.
/// Returns a warning for a person when it does not.
pub fn raise_nofile(cfg: &Config) -> Option<String> {
    let (soft, hard) = sys::nofile_limit();
    let mut notes = Vec::new();
    match cfg.rlimit_nofile {
        // nginx's worker_rlimit_nofile: set exactly what the file says.
        Some(want) => {
            if let Err(e) = sys::set_nofile_soft(want) {
                notes.push(format!("worker_rlimit_nofile {want} could not be set ({e}; the hard limit is {hard} and raising it needs CAP_SYS_RESOURCE)"));
                let _ = sys::set_nofile_soft(hard.min(want.max(soft)));
            }
        }
        None if soft < hard => {
            let _ = sys::set_nofile_soft(hard);
        }
        None => {}
    }
    let (soft, _) = sys::nofile_limit();
    // Per worker: its slots, the 503 reserve, and a few pipes in flight (2 fds each).
    let need =
        cfg.workers as u64 * (cfg.worker_connections as u64 + cfg.reserve_503 as u64 + 2 * 64) + 16;
    if need > soft {
        notes.push(format!(
            "warning: {} workers × {} worker_connections need about {need} descriptors but RLIMIT_NOFILE is {soft} (hard {hard}); clients past ~{} will be refused by the kernel (EMFILE). Raise it (ulimit -n, LimitNOFILE=) or lower --worker-connections",
            cfg.workers,
            cfg.worker_connections,
            soft.saturating_sub(16) / 2
        ));
    }
    if notes.is_empty() {
        None
    } else {
        Some(notes.join("\nringway: "))
    }
}

/// Bind the listeners and start the workers.
pub fn start(cfg: Config) -> io::Result<Server> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let cfg = Arc::new(cfg);
    let ups = Arc::new(Upstreams::new(&cfg.upstreams, cfg.balance));
    let (fds, addr) = listener::bind_reuseport(cfg.listen, cfg.workers, cfg.backlog)?;
    let ncpu = sys::online_cpus();
    let mut workers = Vec::new();
    let mut stats = Vec::new();
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, io::Result<()>)>();
    let n = fds.len();
    let mut ctl_fds = Vec::with_capacity(n);
    let mut inboxes = Vec::with_capacity(n);
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        ctl_fds.push(sys::eventfd()?);
        stats.push(Arc::new(WorkerStats::default()));
        let (tx, rx) = mpsc::channel::<RawFd>();
        inboxes.push(tx);
        receivers.push(rx);
    }
    let peers = Arc::new(Peers {
        stats: stats.clone(),
        ctl_fds: ctl_fds.clone(),
        inboxes,
    });
    for ((i, fd), inbox) in fds.into_iter().enumerate().zip(receivers) {
        let ctl_fd = ctl_fds[i];
        let control = Arc::new(Control::default());
        let st = stats[i].clone();
        let init = WorkerInit {
            peers: peers.clone(),
            inbox,
            index: i,
            cfg: cfg.clone(),
            ups: ups.clone(),
            listener: fd,
            ctl_fd,
            control: control.clone(),
            stats: st.clone(),
        };
        let pin = cfg.pin;
        let tx = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ringway-w{i}"))
            .spawn(move || {
                if pin {
                    let _ = sys::pin_to_cpu(i % ncpu);
                }
                match Worker::new(init) {
                    Ok(w) => {
                        let _ = tx.send((i, Ok(())));
                        w.run()
                    }
                    Err(e) => {
                        sys::close(fd);
                        let msg = e.to_string();
                        let _ = tx.send((i, Err(e)));
                        Err(io::Error::other(msg))
                    }
                }
            })?;
        workers.push(WorkerHandle {
            thread: Some(thread),
            ctl_fd,
            control,
        });
    }
    drop(ready_tx);
    let mut server = Server {
        workers,
        stats,
        ups,
        addr,
        cfg,
    };
    for _ in 0..server.workers.len() {
        match ready_rx.recv() {
            Ok((_, Ok(()))) => {}
            Ok((i, Err(e))) => {
                let _ = server.stop();
                return Err(io::Error::new(e.kind(), format!("worker {i}: {e}")));
            }
            Err(_) => {
                let _ = server.stop();
                return Err(io::Error::other("a worker exited during start-up"));
            }
        }
    }
    Ok(server)
}

impl Server {
    /// The address every worker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The budget line printed at startup.
    pub fn budget_line(&self) -> String {
        budget::describe(self.cfg.workers, self.cfg.worker_connections)
    }

    /// Current counters of every worker and backend.
    pub fn stats(&self) -> Snapshot {
        Snapshot::collect(&self.stats, &self.ups)
    }

    /// Ask every worker to stop accepting, close its connections, and exit; wait for them.
    /// Returns the first worker error, if any.
    pub fn stop(&mut self) -> io::Result<()> {
        for w in &self.workers {
            w.control.shutdown.store(true, Ordering::Release);
            sys::eventfd_wake(w.ctl_fd);
        }
        let mut first_err = None;
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                match t.join() {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(_) => {
                        first_err.get_or_insert(io::Error::other("a worker panicked"));
                    }
                }
            }
            if w.ctl_fd >= 0 {
                sys::close(w.ctl_fd);
                w.ctl_fd = -1;
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
