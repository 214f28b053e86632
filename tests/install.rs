//! `scripts/install.sh` into a temporary prefix: the binary, the config (never
//! overwritten), the systemd unit rewritten to the prefix's paths (and reloading by
//! SIGHUP), a manifest; the installed binary passes `-t` on the installed config;
//! `--uninstall` removes exactly what was installed (an edited config is kept) and leaves
//! the prefix as it found it.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh")
}

fn run(args: &[&str]) -> Output {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "install.sh {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn temp_prefix(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ringway-install-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn install_test_and_uninstall_into_a_temporary_prefix() {
    let prefix = temp_prefix("plain");
    let p = prefix.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_ringway");
    run(&["--binary", bin, "--prefix", p]);

    let ringway = prefix.join("bin/ringway");
    let conf = prefix.join("etc/ringway/nginx.conf");
    let unit = prefix.join("lib/systemd/system/ringway.service");
    assert!(ringway.is_file() && conf.is_file() && unit.is_file());
    assert!(prefix.join("share/ringway/install-manifest").is_file());
    let t = Command::new(&ringway)
        .args(["-t", "-c", conf.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let unit_text = std::fs::read_to_string(&unit).unwrap();
    assert!(
        unit_text
            .lines()
            .any(|l| l == format!("ExecStart={} -c {}", ringway.display(), conf.display())),
        "{unit_text}"
    );
    assert!(!unit_text.contains("ExecStart=/usr/local"), "{unit_text}");
    // `systemctl reload ringway` sends SIGHUP to the main process (tests/lifecycle.rs runs
    // this line against a live ringway).
    assert!(
        unit_text
            .lines()
            .any(|l| l == "ExecReload=/bin/kill -HUP $MAINPID"),
        "{unit_text}"
    );
    assert!(
        unit_text.contains(&format!(
            "Documentation=file://{p}/share/doc/ringway/tuning/README.md"
        )),
        "{unit_text}"
    );

    // Installing again keeps the config, even one edited since.
    std::fs::write(&conf, "# mine\n").unwrap();
    let again = run(&["--binary", bin, "--prefix", p]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("kept"));
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), "# mine\n");

    // Uninstall keeps the edited config (and so its directories), removes the rest.
    run(&["--uninstall", "--prefix", p]);
    assert!(conf.is_file(), "an edited config is kept");
    assert!(!ringway.exists() && !unit.exists());
    assert_eq!(entries(&prefix), vec!["etc"]);
    std::fs::remove_dir_all(&prefix).unwrap();
}

#[test]
fn uninstall_leaves_the_prefix_empty_and_an_existing_config_untouched() {
    // A clean install and uninstall: nothing left.
    let prefix = temp_prefix("clean");
    let p = prefix.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_ringway");
    run(&["--binary", bin, "--prefix", p]);
    run(&["--uninstall", "--prefix", p]);
    assert!(entries(&prefix).is_empty(), "{:?}", entries(&prefix));

    // A config that was there before the install is not the install's: never touched.
    let etc = prefix.join("etc/ringway");
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::write(etc.join("nginx.conf"), "# theirs\n").unwrap();
    run(&["--binary", bin, "--prefix", p]);
    run(&["--uninstall", "--prefix", p]);
    assert_eq!(
        std::fs::read_to_string(etc.join("nginx.conf")).unwrap(),
        "# theirs\n"
    );
    assert_eq!(entries(&prefix), vec!["etc"]);
    std::fs::remove_dir_all(&prefix).unwrap();

    // Uninstalling where nothing was installed says so and fails.
    let empty = temp_prefix("none");
    let out = Command::new("bash")
        .arg(script())
        .args(["--uninstall", "--prefix", empty.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was installed"));
    std::fs::remove_dir_all(&empty).unwrap();
}
