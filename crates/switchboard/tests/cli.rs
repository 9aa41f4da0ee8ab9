//! The command line: check-config, --version, --help.

use std::process::Command;

fn sb() -> Command {
    Command::new(env!("CARGO_BIN_EXE_switchboard"))
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn check_config_accepts_the_examples() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
    for entry in std::fs::read_dir(root).unwrap() {
        let cfg = entry.unwrap().path().join("switchboard.toml");
        if !cfg.exists() {
            continue;
        }
        let out = sb()
            .args(["check-config", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            cfg.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    }
}

#[test]
fn check_config_names_the_bad_key_and_line() {
    let p = write(
        "bad.toml",
        "[server]\nlisten = \"127.0.0.1:1\"\n\n[limits]\nmax_message_bytes = 0\n",
    );
    let out = sb()
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_message_bytes"), "{err}");
    assert!(
        err.contains("bad.toml:5:1: limits.max_message_bytes"),
        "{err}"
    );

    let p = write("typo.toml", "[limits]\nmax_mesage_bytes = 10\n");
    let out = sb()
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo.toml:2:1: limits.max_mesage_bytes: unknown field"),
        "{err}"
    );

    let p = write("syntax.toml", "[limits\n");
    let out = sb()
        .args(["check-config", "--config"])
        .arg(&p)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = sb()
        .args(["check-config", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn env_override_errors_name_the_variable() {
    let p = write("ok.toml", "");
    let out = sb()
        .args(["check-config", "--config"])
        .arg(&p)
        .env("SWITCHBOARD_LIMITS__MAX_CONNECTIONS", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("SWITCHBOARD_LIMITS__MAX_CONNECTIONS"));
}

#[test]
fn version_and_help() {
    let out = sb().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("switchboard 0."));
    let out = sb().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["serve", "check-config", "SWITCHBOARD_"] {
        assert!(help.contains(word), "{help}");
    }
    let out = sb().args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["--listen", "--management-listen", "--config"] {
        assert!(help.contains(word), "{help}");
    }
}
