//! `check-config` and `serve` decide alike: every configuration below is one that
//! `check-config` used to pass and `serve` then refused (or, for a missing static
//! directory, served with every page 404). Each must now make `check-config` exit 2 and
//! `serve` refuse to start, both with the same message naming the key and its line.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tokio::time::Instant;

fn sb() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    // Overrides from the environment the tests run in must not change the answers.
    for (k, _) in std::env::vars() {
        if k.starts_with("SWITCHBOARD_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// A fresh directory holding `files` (name, content).
fn dir(case: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-check-{}-{case}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
    dir
}

fn check_config(config: &Path) -> Output {
    sb().args(["check-config", "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// Runs `serve` until it exits; a gateway that starts is killed and reported.
fn serve(config: &Path) -> Output {
    let mut child = sb()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!(
                "serve started with {}:\n{}{}",
                config.display(),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // Polling the child's exit: the condition waited on, not a fixed delay.
        std::thread::sleep(Duration::from_millis(20));
    }
}

struct Case {
    name: &'static str,
    /// `switchboard.toml`, then other files of the directory.
    config: String,
    files: Vec<(&'static str, String)>,
    /// What the message must say, `{dir}` standing for the directory.
    want: &'static str,
}

fn case(name: &'static str, config: &str, want: &'static str) -> Case {
    Case {
        name,
        config: config.to_owned(),
        files: Vec::new(),
        want,
    }
}

fn cases() -> Vec<Case> {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (cert.cert.pem(), cert.signing_key.serialize_pem());
    let other_key = other.signing_key.serialize_pem();
    let http = "[functions.f]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\n";
    let tls = |cert: &str, key: &str| format!("[tls]\ncert = \"{cert}\"\nkey = \"{key}\"\n");
    vec![
        case(
            "lambda-without-runtime",
            "[functions.f]\nkind = \"lambda\"\ndir = \".\"\nhandler = \"app.handler\"\n",
            "{dir}/switchboard.toml: functions.f.runtime: set \"python\" or \"node\", or set command",
        ),
        case(
            "lambda-unknown-runtime",
            "[functions.f]\nkind = \"lambda\"\ndir = \".\"\nhandler = \"app.handler\"\n\nruntime = \"ruby\"\n",
            "{dir}/switchboard.toml:6:1: functions.f.runtime: unknown runtime \"ruby\"",
        ),
        case(
            "lambda-missing-dir",
            "[functions.f]\nkind = \"lambda\"\ndir = \"nowhere\"\nhandler = \"h\"\ncommand = [\"true\"]\n",
            "{dir}/switchboard.toml:3:1: functions.f.dir: {dir}/nowhere is not a directory",
        ),
        case(
            "lambda-reserved-env",
            "[functions.f]\nkind = \"lambda\"\ndir = \".\"\nhandler = \"h\"\ncommand = [\"true\"]\n[functions.f.env]\nAWS_LAMBDA_RUNTIME_API = \"x\"\n",
            "{dir}/switchboard.toml:7:1: functions.f.env.AWS_LAMBDA_RUNTIME_API: set by switchboard",
        ),
        case(
            "http-reserved-header",
            "[functions.f]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\nheaders = { \"Content-Length\" = \"1\" }\n",
            "{dir}/switchboard.toml:4:13: functions.f.headers.Content-Length: reserved, cannot be configured",
        ),
        case(
            "http-empty-secret",
            "[functions.f]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"\"\n",
            "{dir}/switchboard.toml:4:1: functions.f.secret: must not be empty",
        ),
        Case {
            name: "tls-missing-cert",
            config: tls("nope.pem", "key.pem"),
            files: vec![("key.pem", key_pem.clone())],
            want: "{dir}/switchboard.toml:2:1: tls.cert: reading {dir}/nope.pem: ",
        },
        Case {
            name: "tls-missing-key",
            config: tls("cert.pem", "nope.pem"),
            files: vec![("cert.pem", cert_pem.clone())],
            want: "{dir}/switchboard.toml:3:1: tls.key: reading key {dir}/nope.pem: ",
        },
        Case {
            name: "tls-cert-not-pem",
            config: tls("cert.pem", "key.pem"),
            files: vec![("cert.pem", "hello".into()), ("key.pem", key_pem.clone())],
            want: "{dir}/switchboard.toml:2:1: tls.cert: {dir}/cert.pem: no certificate found",
        },
        Case {
            name: "tls-key-of-another-cert",
            config: tls("cert.pem", "key.pem"),
            files: vec![("cert.pem", cert_pem.clone()), ("key.pem", other_key.clone())],
            want: "{dir}/switchboard.toml:3:1: tls.key: certificate and key: ",
        },
        case(
            "https-missing-ca-file",
            "[functions.f]\nkind = \"http\"\nurl = \"https://127.0.0.1:9/\"\ntls_ca_file = \"ca.pem\"\n",
            "{dir}/switchboard.toml:4:1: functions.f.tls_ca_file: {dir}/ca.pem: No such file",
        ),
        Case {
            name: "https-ca-file-without-certificates",
            config: "[functions.f]\nkind = \"http\"\nurl = \"https://127.0.0.1:9/\"\ntls_ca_file = \"ca.pem\"\n".into(),
            files: vec![("ca.pem", key_pem.clone())],
            want: "{dir}/switchboard.toml:4:1: functions.f.tls_ca_file: {dir}/ca.pem: no certificate found",
        },
        Case {
            name: "https-client-cert-without-key",
            config: "[functions.f]\nkind = \"http\"\nurl = \"https://127.0.0.1:9/\"\ntls_client_cert = \"cert.pem\"\n".into(),
            files: vec![("cert.pem", cert_pem.clone())],
            want: "{dir}/switchboard.toml:4:1: functions.f.tls_client_cert: needs tls_client_key",
        },
        Case {
            name: "https-client-key-of-another-cert",
            config: "[functions.f]\nkind = \"http\"\nurl = \"https://127.0.0.1:9/\"\ntls_client_cert = \"cert.pem\"\ntls_client_key = \"key.pem\"\n".into(),
            files: vec![("cert.pem", cert_pem.clone()), ("key.pem", other_key.clone())],
            want: "{dir}/switchboard.toml:5:1: functions.f.tls_client_key: unusable with tls_client_cert: ",
        },
        case(
            "http-with-tls-ca-file",
            "[functions.f]\nkind = \"http\"\nurl = \"http://127.0.0.1:9/\"\ntls_ca_file = \"ca.pem\"\n",
            "{dir}/switchboard.toml:4:1: functions.f.tls_ca_file: only for https:// URLs",
        ),
        case(
            "static-missing-dir",
            "[static]\n\ndir = \"www\"\n",
            "{dir}/switchboard.toml:3:1: static.dir: {dir}/www: No such file or directory",
        ),
        Case {
            name: "static-dir-is-a-file",
            config: "[static]\ndir = \"www\"\n".into(),
            files: vec![("www", "not a directory".into())],
            want: "{dir}/switchboard.toml:2:1: static.dir: {dir}/www",
        },
        case(
            "jwt-missing-key-file",
            "[authorizer]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\npublic_keys = [\"jwt.pem\"]\n",
            "{dir}/switchboard.toml:4:16: authorizer.public_keys[0]: {dir}/jwt.pem: No such file",
        ),
        Case {
            name: "jwt-key-file-not-pem",
            config: "[authorizer]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\npublic_keys = [\"jwt.pem\"]\n".into(),
            files: vec![("jwt.pem", "not a key".into())],
            want: "{dir}/switchboard.toml:4:16: authorizer.public_keys[0]: {dir}/jwt.pem: ",
        },
        case(
            "jwt-no-usable-key",
            "[authorizer]\nkind = \"jwt\"\nalgorithms = [\"RS256\"]\nsecret = \"0123456789abcdef0123456789abcdef\"\n",
            "{dir}/switchboard.toml:1:2: authorizer: no key for any allowed algorithm",
        ),
        case(
            "request-authorizer-on-a-builtin",
            "[functions.f]\nkind = \"builtin\"\nname = \"accept\"\n[authorizer]\nkind = \"request\"\nfunction = \"f\"\nidentity_sources = [\"header:Authorization\"]\n",
            "{dir}/switchboard.toml:6:1: authorizer.function: \"f\" is a builtin",
        ),
        Case {
            name: "request-authorizer-bad-identity-source",
            config: format!(
                "{http}[authorizer]\nkind = \"request\"\nfunction = \"f\"\nidentity_sources = [\"cookie:x\"]\n"
            ),
            files: Vec::new(),
            want: "{dir}/switchboard.toml:7:21: authorizer.identity_sources[0]: ",
        },
        case(
            "route-schema-missing",
            &format!("{http}[routes.send]\nfunction = \"f\"\nschema = \"send.json\"\n"),
            "{dir}/switchboard.toml:6:1: routes.send.schema: {dir}/send.json: No such file",
        ),
        Case {
            name: "route-schema-not-json",
            config: format!("{http}[routes.\"$default\"]\nfunction = \"f\"\nschema = \"d.json\"\n"),
            files: vec![("d.json", "{\"type\": ".into())],
            want: "{dir}/switchboard.toml:6:1: routes.\"$default\".schema: {dir}/d.json: not JSON: ",
        },
        Case {
            name: "route-schema-invalid",
            config: format!("{http}[routes.send]\nfunction = \"f\"\nschema = \"send.json\"\n"),
            files: vec![("send.json", "{\"type\": \"strin\"}".into())],
            want: "{dir}/switchboard.toml:6:1: routes.send.schema: {dir}/send.json: not a valid JSON Schema: ",
        },
        case(
            "redis-bad-url",
            "[server]\nnode_id = \"a\"\n[cluster]\nbackplane = \"redis\"\nurls = [\"bogus://x\"]\n",
            "{dir}/switchboard.toml:5:9: cluster.urls[0]: \"bogus://x\": ",
        ),
    ]
}

#[test]
fn check_config_and_serve_refuse_the_same_configs_with_the_same_message() {
    for c in cases() {
        let mut files: Vec<(&str, &str)> = vec![("switchboard.toml", &c.config)];
        files.extend(c.files.iter().map(|(n, t)| (*n, t.as_str())));
        let d = dir(c.name, &files);
        let config = d.join("switchboard.toml");
        let want = c.want.replace("{dir}", &d.display().to_string());

        let checked = check_config(&config);
        let message = String::from_utf8_lossy(&checked.stderr).into_owned();
        assert_eq!(checked.status.code(), Some(2), "{}: {message}", c.name);
        assert!(
            message.contains(&want),
            "{}: want {want:?} in\n{message}",
            c.name
        );

        let served = serve(&config);
        assert_eq!(served.status.code(), Some(2), "{}: serve", c.name);
        assert_eq!(
            String::from_utf8_lossy(&served.stderr),
            message,
            "{}: serve's message",
            c.name
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// A directory that passes: what `check-config` accepts, `serve` runs (HTTP/2 over TLS
/// included, which setup once refused).
#[test]
fn a_config_with_its_files_in_place_passes() {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let d = dir(
        "ok",
        &[
            (
                "switchboard.toml",
                "[tls]\ncert = \"cert.pem\"\nkey = \"key.pem\"\n[static]\ndir = \".\"\n\
                 [functions.f]\nkind = \"lambda\"\ndir = \".\"\nhandler = \"app.handler\"\nruntime = \"python\"\n\
                 [functions.h]\nkind = \"http\"\nurl = \"https://localhost/\"\ntls_ca_file = \"cert.pem\"\n\
                 tls_client_cert = \"cert.pem\"\ntls_client_key = \"key.pem\"\n\
                 [functions.h2]\nkind = \"http\"\nurl = \"https://localhost/\"\nhttp_version = \"2\"\n\
                 [routes.send]\nfunction = \"h\"\nschema = \"send.json\"\n",
            ),
            ("send.json", r#"{"type": "object", "required": ["text"]}"#),
            ("cert.pem", &cert.cert.pem()),
            ("key.pem", &cert.signing_key.serialize_pem()),
        ],
    );
    let out = check_config(&d.join("switchboard.toml"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration OK"));
    let _ = std::fs::remove_dir_all(&d);
}
