//! Start workers, hand out their listeners, and stop them: the embedding API.
//!
//! [`start`] (thread mode) binds every worker's listener before any worker runs (so port
//! 0 works and the address is known), then spawns one thread per worker, pinned to a CPU,
//! which builds its own io_uring. [`start_child`] is the same for one worker of a
//! process-mode master (see `master.rs`): its listener, counters and handoff sockets are
//! inherited. A worker that cannot start (no io_uring, kernel too old) makes the call fail
//! with that worker's error.

use crate::budget;
use crate::config::Config;
use crate::listener;
use crate::shm::Counters;
use crate::stats::Snapshot;
use crate::sys;
use crate::upstream::Upstreams;
use crate::worker::{Control, Inbox, Outbox, Peers, Worker, WorkerInit};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

struct WorkerHandle {
    thread: Option<JoinHandle<io::Result<()>>>,
    ctl_fd: RawFd,
    control: Arc<Control>,
}

/// A running proxy (all workers of this process).
pub struct Server {
    workers: Vec<WorkerHandle>,
    counters: Counters,
    ups: Arc<Upstreams>,
    addrs: Vec<SocketAddr>,
    cfg: Arc<Config>,
    /// Active health checks (thread mode; the master runs them in process mode).
    _health: Option<crate::health::check::Checker>,
}

/// Raise the soft RLIMIT_NOFILE (to the hard limit, or to `worker_rlimit_nofile`) and say
/// whether the budget fits. Returns a warning for a person when it does not.
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
    // Per process: its workers' slots, the 503 reserve, and a few pipes in flight.
    let workers_here = if cfg.process_mode {
        1
    } else {
        cfg.workers as u64
    };
    let need =
        workers_here * (cfg.worker_connections as u64 + cfg.reserve_503 as u64 + 2 * 64) + 16;
    if need > soft {
        notes.push(format!(
            "warning: {} worker(s) per process × {} worker_connections need about {need} descriptors but RLIMIT_NOFILE is {soft}; clients past ~{} per process will be refused by the kernel (EMFILE). Raise it (ulimit -n, LimitNOFILE=), lower --worker-connections, or use --worker-mode process",
            workers_here,
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

/// One worker thread to start in this process.
struct WorkerStart {
    index: usize,
    listeners: Vec<OwnedFd>,
    inbox: Inbox,
    ctl_fd: RawFd,
}

/// Thread mode: bind the listeners and start every worker in this process.
pub fn start(cfg: Config) -> io::Result<Server> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (per_worker, addrs) = bind(&cfg.routing().listens, cfg.workers, cfg.backlog)?;
    start_on(cfg, per_worker, addrs)
}

/// Thread mode on new SO_REUSEPORT listeners at `listens` (the configuration's listen
/// addresses with port 0 already resolved): a reload that switches from processes to
/// threads starts its generation here, beside the old one's listeners.
pub fn start_at(cfg: Config, listens: &[SocketAddr]) -> io::Result<Server> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let (per_worker, addrs) = bind(listens, cfg.workers, cfg.backlog)?;
    start_on(cfg, per_worker, addrs)
}

/// One SO_REUSEPORT group per listen address; worker i takes the i-th of each.
fn bind(
    listens: &[SocketAddr],
    n: usize,
    backlog: u32,
) -> io::Result<(Vec<Vec<OwnedFd>>, Vec<SocketAddr>)> {
    let mut per_worker: Vec<Vec<OwnedFd>> = (0..n).map(|_| Vec::new()).collect();
    let mut addrs = Vec::new();
    for listen in listens {
        let (fds, addr) = listener::bind_reuseport(*listen, n, backlog)?;
        addrs.push(addr);
        for (index, listener) in fds.into_iter().enumerate() {
            // SAFETY: the listener was just bound for this worker and nothing else owns it.
            per_worker[index].push(unsafe { sys::adopt(listener) });
        }
    }
    Ok((per_worker, addrs))
}

/// Thread mode: start every worker of `cfg` on these listeners (per worker, one per
/// listen address).
fn start_on(
    cfg: Config,
    per_worker: Vec<Vec<OwnedFd>>,
    addrs: Vec<SocketAddr>,
) -> io::Result<Server> {
    let n = cfg.workers;
    let counters = Counters::heap(n, cfg.upstreams.len());
    let mut slots = Vec::with_capacity(n);
    let mut outboxes = Vec::with_capacity(n);
    for (index, listeners) in per_worker.into_iter().enumerate() {
        let ctl_fd = sys::eventfd()?;
        let (tx, rx) = mpsc::channel::<(OwnedFd, u8)>();
        outboxes.push(Outbox::Channel { tx, wake: ctl_fd });
        slots.push(WorkerStart {
            index,
            listeners,
            inbox: Inbox::Channel(rx),
            ctl_fd,
        });
    }
    let peers = Arc::new(Peers { counters, outboxes });
    launch(cfg, counters, peers, slots, addrs)
}

/// What a process-mode worker inherits from its master.
#[derive(Debug)]
pub struct ChildSetup {
    /// Global worker index.
    pub index: usize,
    /// This worker's listener.
    pub listener: RawFd,
    /// The shared counters (all workers, all backends).
    pub counters: Counters,
    /// Receive end of this worker's handoff socket.
    pub inbox: RawFd,
    /// Send ends of every worker's handoff socket (`None` for this worker).
    pub outboxes: Vec<Option<RawFd>>,
}

/// Process mode, worker side: run one worker on inherited descriptors.
pub fn start_child(cfg: Config, setup: ChildSetup) -> io::Result<Server> {
    let addr = sys::local_addr(setup.listener)?;
    let ctl_fd = sys::eventfd()?;
    let outboxes = setup
        .outboxes
        .iter()
        .map(|o| o.map(Outbox::Unix).unwrap_or(Outbox::None))
        .collect();
    let peers = Arc::new(Peers {
        counters: setup.counters,
        outboxes,
    });
    let slot = WorkerStart {
        index: setup.index,
        // SAFETY: the listener was inherited for this worker process's one worker, and
        // nothing else in the process owns it.
        listeners: vec![unsafe { sys::adopt(setup.listener) }],
        inbox: Inbox::Unix(setup.inbox),
        ctl_fd,
    };
    launch(cfg, setup.counters, peers, vec![slot], vec![addr])
}

fn launch(
    mut cfg: Config,
    counters: Counters,
    peers: Arc<Peers>,
    slots: Vec<WorkerStart>,
    addrs: Vec<SocketAddr>,
) -> io::Result<Server> {
    // The generation's TLS: certificates read again (they were checked where the flags
    // were parsed), tickets under the generation's shared secret, so every worker —
    // thread or process — resumes every client's session.
    if !cfg.tls.is_empty() {
        let table = crate::tls::Table::load_with(&cfg.tls, counters.ticket_secret())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        cfg.tls_table = Some(Arc::new(table));
    }
    let cfg = Arc::new(cfg);
    let groups: Vec<_> = cfg
        .routing()
        .groups
        .iter()
        .map(|g| (g.backends.clone(), g.balance))
        .collect();
    let routing = cfg.routing();
    let ups = Arc::new(Upstreams::with_params(
        &cfg.upstreams,
        &groups,
        &routing.servers(),
        counters,
    ));
    let health = if cfg.process_mode {
        None
    } else {
        let targets = crate::health::check::targets(&routing, &cfg.upstreams);
        crate::health::check::Checker::start(targets, counters)
    };
    let ncpu = sys::online_cpus();
    let (ready_tx, ready_rx) = mpsc::channel::<(usize, io::Result<()>)>();
    let mut workers = Vec::new();
    for slot in slots {
        let control = Arc::new(Control::default());
        // Copies a successor generation can take over (see `Server::successor`).
        if let Ok(mut spare) = control.spare.lock() {
            for l in &slot.listeners {
                spare.push(l.try_clone()?);
            }
        }
        let ctl = control.clone();
        let i = slot.index;
        let init = WorkerInit {
            index: i,
            cfg: cfg.clone(),
            ups: ups.clone(),
            listeners: slot.listeners,
            ctl_fd: slot.ctl_fd,
            control: control.clone(),
            stats: counters.worker(i),
            peers: peers.clone(),
            inbox: slot.inbox,
        };
        let pin = cfg.pin;
        let process_mode = cfg.process_mode;
        let tx = ready_tx.clone();
        let thread = std::thread::Builder::new()
            .name(format!("ringway-w{i}"))
            .spawn(move || {
                if pin {
                    let _ = sys::pin_to_cpu(i % ncpu);
                }
                match Worker::new(init) {
                    Ok(w) => {
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            w.run(|| {
                                let _ = tx.send((i, Ok(())));
                            })
                        }));
                        let r = match r {
                            Ok(r) => r,
                            Err(_) => Err(io::Error::other("the worker panicked")),
                        };
                        if let Err(e) = &r {
                            ctl.drop_spare();
                            crate::log::write(
                                crate::log::Level::Alert,
                                crate::log::Who::Worker(i),
                                None,
                                format_args!("worker stopped: {e}; its listener is closed"),
                            );
                            if process_mode {
                                // A worker process without its worker is useless: exit so
                                // that the master restarts it.
                                std::process::exit(1);
                            }
                        }
                        r
                    }
                    Err(e) => {
                        // The listener was closed with the init that failed.
                        ctl.drop_spare();
                        let msg = e.to_string();
                        let _ = tx.send((i, Err(e)));
                        Err(io::Error::other(msg))
                    }
                }
            })?;
        workers.push(WorkerHandle {
            thread: Some(thread),
            ctl_fd: slot.ctl_fd,
            control,
        });
    }
    drop(ready_tx);
    let mut server = Server {
        workers,
        counters,
        ups,
        addrs,
        cfg,
        _health: health,
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
    /// The (first) address every worker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// Every listen address (the routing table's, in its order; one without routing).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The budget line printed at startup.
    pub fn budget_line(&self) -> String {
        budget::describe(self.cfg.workers, self.cfg.worker_connections)
    }

    /// This generation as the metrics endpoint sees it.
    pub fn metrics_gen(&self) -> crate::metrics::Gen {
        crate::metrics::Gen::new(&self.cfg, self.counters, self.ups.addrs.clone())
    }

    /// Current counters of every worker and backend.
    pub fn stats(&self) -> Snapshot {
        Snapshot::collect(&self.counters, &self.ups.addrs)
    }

    /// Start a successor generation for `cfg` (a reload): new workers with their own
    /// counters and backend table, on this server's very sockets when the listen addresses
    /// and the worker count are unchanged (then nothing is ever closed: clients waiting in
    /// a backlog are the successor's), else on new SO_REUSEPORT listeners beside these. A
    /// listen address this server was given (port 0 included) keeps the address it got.
    /// This server keeps running until it is drained.
    pub fn successor(&self, cfg: Config) -> io::Result<Server> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let given = self.cfg.routing().listens.clone();
        let listens: Vec<SocketAddr> = cfg
            .routing()
            .listens
            .iter()
            .map(|l| match given.iter().position(|g| g == l) {
                Some(i) => self.addrs[i],
                None => *l,
            })
            .collect();
        let mut spares = Vec::new();
        if listens == self.addrs && cfg.workers == self.workers.len() {
            for w in &self.workers {
                let got = w.control.spare.lock().map(|mut v| std::mem::take(&mut *v));
                match got {
                    Ok(v) if v.len() == listens.len() => spares.push(v),
                    _ => break,
                }
            }
        }
        if spares.len() == self.workers.len() {
            let next = start_on(cfg, spares, listens)?;
            for w in &self.workers {
                w.control.handed_over.store(true, Ordering::Release);
            }
            return Ok(next);
        }
        let (per_worker, addrs) = bind(&listens, cfg.workers, cfg.backlog)?;
        start_on(cfg, per_worker, addrs)
    }

    /// Drain every worker (a graceful stop): stop accepting, finish exchanges, give idle
    /// kept-alive clients a short grace, keep tunnels until they end or `timeout` passes
    /// (`None`: no bound), then exit. Returns at once; [`Server::finished`] says when they
    /// are all done.
    pub fn drain(&self, timeout: Option<Duration>) {
        let bound = timeout.map_or(u64::MAX, crate::session::ms);
        for w in &self.workers {
            w.control.drain_ms.store(bound, Ordering::Release);
            w.control.drain.store(true, Ordering::Release);
            sys::eventfd_wake(w.ctl_fd);
        }
    }

    /// Drain this generation after a reload: as [`Server::drain`], except that idle
    /// kept-alive clients are closed at once (their next request reaches the successor).
    /// `handed_over`: a successor keeps accepting on these very listeners (a process-mode
    /// reload; a thread-mode successor marks them itself), so the clients in their
    /// backlogs are the successor's.
    pub fn retire(&self, timeout: Option<Duration>, handed_over: bool) {
        for w in &self.workers {
            if handed_over {
                w.control.handed_over.store(true, Ordering::Release);
            }
            w.control.reload.store(true, Ordering::Release);
        }
        self.drain(timeout);
    }

    /// Wait (up to `timeout`) until every worker has let go of its listeners after
    /// [`Server::drain`], so that new clients reach a successor only.
    pub fn wait_released(&self, timeout: Duration) {
        let end = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < end {
            let released = self.workers.iter().enumerate().all(|(i, w)| {
                self.counters.worker(i).accepting.load(Ordering::Relaxed) == 0
                    || w.thread.as_ref().is_none_or(|t| t.is_finished())
            });
            if released {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Whether every worker has exited.
    pub fn finished(&self) -> bool {
        self.workers
            .iter()
            .all(|w| w.thread.as_ref().is_none_or(|t| t.is_finished()))
    }

    /// Ask every worker to stop accepting, close its connections and exit (a fast stop);
    /// returns at once: [`Server::finished`] says when they are done.
    pub fn halt(&self) {
        for w in &self.workers {
            if w.ctl_fd >= 0 {
                w.control.shutdown.store(true, Ordering::Release);
                sys::eventfd_wake(w.ctl_fd);
            }
        }
    }

    /// [`Server::halt`], then wait for every worker. Returns the first worker error, if any.
    pub fn stop(&mut self) -> io::Result<()> {
        self.halt();
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
