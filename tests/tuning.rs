//! Tests for the scripts in `tuning/` (apply.sh, check.sh) against the real `/proc/sys`.
//!
//! They read, and in `apply_then_revert_restores_every_value` briefly change, machine-wide
//! sysctls. Every test takes one static lock so they never overlap, and the apply test
//! restores the original values in a `Drop` guard (first with `apply.sh --revert`, then
//! by writing any value that still differs straight to `/proc/sys`), so an assertion
//! failure cannot leave the machine tuned. Tests that need root or a writable
//! `/proc/sys` skip with a printed reason. std only.

use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// The tests change global kernel settings: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    // A failed test poisons the lock; the next one must still run.
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn tuning_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning")
}

fn conf_path() -> PathBuf {
    tuning_dir().join("sysctl.conf")
}

/// Keys and values of a sysctl.conf, in file order (same rules as apply.sh).
fn conf_entries(conf: &Path) -> Vec<(String, String)> {
    let text = fs::read_to_string(conf).unwrap_or_else(|e| panic!("read {}: {e}", conf.display()));
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("bad line in {}: {l}", conf.display()));
            (k.trim().trim_start_matches('-').to_string(), norm(v))
        })
        .collect()
}

/// Collapse whitespace (the kernel separates fields with tabs) to single spaces.
fn norm(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn key_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// Current value of a sysctl, or None when this kernel does not have it.
fn read_key(key: &str) -> Option<String> {
    fs::read_to_string(key_path(key)).ok().map(|v| norm(&v))
}

type Snapshot = BTreeMap<String, Option<String>>;

fn snapshot(keys: &[String]) -> Snapshot {
    keys.iter().map(|k| (k.clone(), read_key(k))).collect()
}

fn keys_of(conf: &Path) -> Vec<String> {
    conf_entries(conf).into_iter().map(|(k, _)| k).collect()
}

/// Run a script in tuning/ with bash; None (and a printed reason) if bash is missing.
fn run_script(script: &str, args: &[&str]) -> Option<Output> {
    let path = tuning_dir().join(script);
    match Command::new("bash")
        .arg(&path)
        .args(args)
        .env_remove("RINGWAY_TUNING_STATE")
        .output()
    {
        Ok(out) => Some(out),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!("skipped: bash not found, cannot run {}", path.display());
            None
        }
        Err(e) => panic!("run {}: {e}", path.display()),
    }
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn describe(what: &str, out: &Output) -> String {
    let (so, se) = text(out);
    format!("{what}: {}\n--- stdout\n{so}--- stderr\n{se}", out.status)
}

/// Effective uid from /proc/self/status (std only, no libc).
fn euid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Why the apply/revert test cannot run here, if it cannot.
fn cannot_write_sysctls() -> Option<String> {
    match euid() {
        Some(0) => {}
        Some(uid) => return Some(format!("not root (euid {uid})")),
        None => return Some("cannot read euid from /proc/self/status".into()),
    }
    // Opening for write changes nothing; it fails on a read-only /proc/sys.
    let probe = key_path("net.core.somaxconn");
    match fs::OpenOptions::new().write(true).open(&probe) {
        Ok(_) => None,
        Err(e) => Some(format!(
            "/proc/sys is not writable ({}: {e})",
            probe.display()
        )),
    }
}

fn writable(key: &str) -> bool {
    fs::OpenOptions::new()
        .write(true)
        .open(key_path(key))
        .is_ok()
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "ringway-tuning-{tag}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    fn arg(&self) -> &str {
        self.0.to_str().expect("temp dir path is UTF-8")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Puts every sysctl back as it was when created, even if the test panics.
struct RestoreGuard {
    before: Snapshot,
    state_dir: String,
}

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        // The script's own revert first (no-op if the test already reverted) ...
        let _ = Command::new("bash")
            .arg(tuning_dir().join("apply.sh"))
            .args(["--revert", "--state-dir", &self.state_dir])
            .output();
        // ... then make sure, independently of the script, that nothing is left changed.
        for (key, value) in &self.before {
            let Some(value) = value else { continue };
            if read_key(key).as_deref() != Some(value.as_str()) {
                if let Err(e) = fs::write(key_path(key), format!("{value}\n")) {
                    eprintln!("WARNING: could not restore {key} = {value}: {e}");
                }
            }
        }
    }
}

/// Rows of `apply.sh --dry-run`: key -> (the rest of the row).
fn dry_run_rows(stdout: &str) -> BTreeMap<String, String> {
    stdout
        .lines()
        .skip(1) // header
        .filter_map(|l| {
            let (k, rest) = l.split_once(char::is_whitespace)?;
            k.contains('.')
                .then(|| (k.to_string(), rest.trim().to_string()))
        })
        .collect()
}

#[test]
fn dry_run_changes_nothing() {
    let _serial = serial();
    let keys = keys_of(&conf_path());
    assert!(keys.len() >= 10, "sysctl.conf has only {} keys", keys.len());
    if read_key("net.core.somaxconn").is_none() {
        eprintln!("skipped: /proc/sys is not readable here");
        return;
    }
    let state = TempDir::new("dry");
    let before = snapshot(&keys);
    let Some(out) = run_script("apply.sh", &["--dry-run", "--state-dir", state.arg()]) else {
        return;
    };
    let after = snapshot(&keys);
    assert_eq!(before, after, "apply.sh --dry-run changed sysctls");
    assert!(
        out.status.success(),
        "{}",
        describe("apply.sh --dry-run", &out)
    );
    assert!(
        !state.path().join("sysctl.saved").exists(),
        "apply.sh --dry-run wrote a state file"
    );
    let (stdout, _) = text(&out);
    assert!(stdout.starts_with("KEY"), "no table header:\n{stdout}");
    let rows = dry_run_rows(&stdout);
    for key in &keys {
        let row = rows
            .get(key)
            .unwrap_or_else(|| panic!("dry run has no row for {key}:\n{stdout}"));
        match &before[key] {
            Some(cur) => assert!(
                row.starts_with(&format!("{cur} ")),
                "{key}: row '{row}' does not show current '{cur}'"
            ),
            None => assert!(
                row.contains("skip"),
                "{key} is unknown here but its row is '{row}'"
            ),
        }
    }
}

#[test]
fn apply_then_revert_restores_every_value() {
    let _serial = serial();
    if let Some(why) = cannot_write_sysctls() {
        eprintln!("skipped: {why}");
        return;
    }
    let state = TempDir::new("state");

    // Keys that exist but are read-only here (e.g. nf_conntrack_max inside a network
    // namespace) would make apply.sh fail by design; test the rest with a filtered copy.
    let entries = conf_entries(&conf_path());
    let (usable, read_only): (Vec<_>, Vec<_>) = entries
        .into_iter()
        .partition(|(k, _)| read_key(k).is_none() || writable(k));
    let conf = if read_only.is_empty() {
        conf_path()
    } else {
        eprintln!(
            "note: read-only here, left out: {:?}",
            read_only.iter().map(|(k, _)| k).collect::<Vec<_>>()
        );
        let path = state.path().join("usable.conf");
        let body: String = usable.iter().map(|(k, v)| format!("{k} = {v}\n")).collect();
        fs::write(&path, body).expect("write filtered conf");
        path
    };
    let conf_arg = conf.to_str().expect("UTF-8 path").to_string();
    let keys: Vec<String> = usable.iter().map(|(k, _)| k.clone()).collect();
    let present: Vec<&String> = keys.iter().filter(|k| read_key(k).is_some()).collect();
    let saved = state.path().join("sysctl.saved");
    let args = |extra: &[&'static str]| -> Vec<String> {
        let mut v: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        v.extend([
            "--file".into(),
            conf_arg.clone(),
            "--state-dir".into(),
            state.arg().into(),
        ]);
        v
    };
    let run = |extra: &[&'static str]| -> Output {
        let a = args(extra);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        run_script("apply.sh", &a).expect("bash ran for the root check but is missing now")
    };

    let before = snapshot(&keys);
    let _guard = RestoreGuard {
        before: before.clone(),
        state_dir: state.arg().to_string(),
    };

    // Apply: originals saved first, then every key at its wanted value.
    let out = run(&[]);
    assert!(out.status.success(), "{}", describe("apply.sh", &out));
    let saved_first = fs::read_to_string(&saved).expect("apply.sh left no state file");
    for key in &present {
        let line = format!("{key}={}", before[*key].as_deref().unwrap());
        assert!(
            saved_first.lines().any(|l| l == line),
            "state file lacks '{line}':\n{saved_first}"
        );
    }
    let out = run(&["--dry-run"]);
    assert!(
        out.status.success(),
        "{}",
        describe("apply.sh --dry-run after apply", &out)
    );
    let (stdout, _) = text(&out);
    let rows = dry_run_rows(&stdout);
    for key in &present {
        let row = &rows[*key];
        assert!(
            row.ends_with("ok") || row.ends_with("kept)"),
            "{key} not applied: {row}"
        );
    }

    // Apply again: nothing to do, and the saved originals stay untouched.
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        describe("second apply.sh", &out)
    );
    assert_eq!(
        fs::read_to_string(&saved).expect("state file vanished"),
        saved_first,
        "second apply rewrote the saved originals"
    );

    // Revert: exactly the old values, state file gone.
    let out = run(&["--revert"]);
    assert!(
        out.status.success(),
        "{}",
        describe("apply.sh --revert", &out)
    );
    assert_eq!(
        snapshot(&keys),
        before,
        "apply.sh --revert did not restore every value"
    );
    assert!(
        !saved.exists(),
        "apply.sh --revert left {}",
        saved.display()
    );

    // Reverting again is a no-op.
    let out = run(&["--revert"]);
    assert!(
        out.status.success(),
        "{}",
        describe("second apply.sh --revert", &out)
    );
    assert_eq!(snapshot(&keys), before);
}

#[test]
fn check_reports_a_table_and_shortfalls() {
    let _serial = serial();
    if read_key("net.core.somaxconn").is_none() {
        eprintln!("skipped: /proc/sys is not readable here");
        return;
    }
    let Some(first) = run_script("check.sh", &["100"]) else {
        return;
    };
    let second = run_script("check.sh", &["100"]).unwrap();
    let (stdout, _) = text(&first);
    assert!(
        stdout.contains("CHECK") && stdout.contains("CURRENT") && stdout.contains("NEEDED"),
        "{}",
        describe("check.sh 100 printed no table", &first)
    );
    for label in [
        "fds per process",
        "fs.nr_open",
        "fs.file-max",
        "somaxconn",
        "ports",
        "memory",
    ] {
        assert!(
            stdout.contains(label),
            "check.sh 100 has no '{label}' row:\n{stdout}"
        );
    }
    // A reload note, not a limit: shown where the kernel has it (5.14+).
    if read_key("net.ipv4.tcp_migrate_req").is_some() {
        assert!(
            stdout.contains("net.ipv4.tcp_migrate_req (reloads)"),
            "no tcp_migrate_req row:\n{stdout}"
        );
    }
    let code = first.status.code();
    assert!(
        matches!(code, Some(0) | Some(1)),
        "{}",
        describe("check.sh 100", &first)
    );
    assert_eq!(
        code,
        second.status.code(),
        "check.sh 100 gave different exit codes"
    );
    if code == Some(1) {
        assert!(
            stdout.contains("shortfall"),
            "exit 1 without naming a shortfall:\n{stdout}"
        );
    } else {
        assert!(stdout.contains("all checks pass"), "{stdout}");
    }

    // Ten million tunnels through one backend from one source address need more
    // ephemeral ports than any port range has, whatever else this machine has.
    let out = run_script("check.sh", &["10000000"]).unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        describe("check.sh 10000000", &out)
    );
    assert!(stdout.contains("SHORT"), "no SHORT row:\n{stdout}");
    assert!(
        stdout.contains("shortfall(s) for 10,000,000 tunnels"),
        "{stdout}"
    );
    assert!(
        stdout.contains("  - upstream ports:"),
        "port shortfall not named:\n{stdout}"
    );

    // Usage errors are exit 2, not a verdict.
    let out = run_script("check.sh", &["lots"]).unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        describe("check.sh lots", &out)
    );
}
