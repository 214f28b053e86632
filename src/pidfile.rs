//! The pid file (`--pid-file`, nginx's `pid`) and `ringway -s SIGNAL`, which reads it.
//!
//! The file holds the pid of the process signals are for (the master in process mode),
//! is written once the proxy listens and removed when it exits (only if it still names
//! this process: a newer ringway may have taken the path over). `-s` maps nginx's names
//! onto signals: `reload` SIGHUP, `quit` SIGQUIT (graceful), `stop` SIGINT (fast, as
//! nginx's `stop`), `reopen` SIGUSR1 (the access and error logs are opened again).

use crate::config::SignalCmd;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};

/// A written pid file, removed on drop.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Write this process's pid to `path`. The error is one line for a person.
    pub fn write(path: &Path) -> Result<PidFile, String> {
        std::fs::write(path, format!("{}\n", std::process::id()))
            .map_err(|e| format!("cannot write the pid file {}: {e}", path.display()))?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read_pid(&self.path).ok() == Some(std::process::id() as i32) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read_pid(path: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the pid file {}: {e} (is ringway running, started with this --pid-file or `pid`?)",
            path.display()
        )
    })?;
    text.trim()
        .parse::<i32>()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| {
            format!(
                "the pid file {} does not hold a pid: {:?}",
                path.display(),
                text.trim()
            )
        })
}

/// The signal `-s cmd` sends.
pub fn signal_of(cmd: SignalCmd) -> Signal {
    match cmd {
        SignalCmd::Reload => Signal::SIGHUP,
        SignalCmd::Quit => Signal::SIGQUIT,
        SignalCmd::Stop => Signal::SIGINT,
        SignalCmd::Reopen => Signal::SIGUSR1,
    }
}

/// `ringway -s cmd`: signal the process the pid file at `path` names. Returns the pid; the
/// error (no file, a stale pid, no permission) is one line for a person.
pub fn send(cmd: SignalCmd, path: &Path) -> Result<i32, String> {
    let pid = read_pid(path)?;
    kill(Pid::from_raw(pid), signal_of(cmd)).map_err(|e| match e {
        nix::errno::Errno::ESRCH => format!(
            "the pid file {} is stale: no process {pid} (ringway is not running; remove the file)",
            path.display()
        ),
        e => format!("cannot signal process {pid}: {e}"),
    })?;
    Ok(pid)
}
