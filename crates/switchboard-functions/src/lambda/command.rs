//! What a worker process is started with: the command line (the configured one, or the
//! bundled bootstrap for `runtime`), its working directory, and the environment a Lambda
//! handler expects. Everything is resolved once at startup; per worker only the runtime
//! API address and the log stream name differ.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use switchboard_core::config::LambdaFunctionConfig;

use crate::{RuntimeContext, SetupError};

/// `runtimes/python/bootstrap.py`, compiled in so an installed binary works anywhere.
const PYTHON_BOOTSTRAP: &str = include_str!("../../../../runtimes/python/bootstrap.py");
/// `runtimes/node/bootstrap.mjs`, compiled in likewise.
const NODE_BOOTSTRAP: &str = include_str!("../../../../runtimes/node/bootstrap.mjs");

/// Overrides where the bundled bootstraps are looked for (a directory holding
/// `python/bootstrap.py` and `node/bootstrap.mjs`).
pub const RUNTIMES_DIR_ENV: &str = "SWITCHBOARD_RUNTIMES_DIR";

/// Environment variables a parent shell may hold that would mislead a worker: a session
/// token would be sent along with the gateway's own key and fail its signature check;
/// the concurrency variable switches awslambdaric into a forking multi-worker mode.
const SCRUBBED_ENV: &[&str] = &[
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_LAMBDA_MAX_CONCURRENCY",
];

/// How to start one worker of a function.
#[derive(Debug)]
pub(crate) struct Launch {
    program: OsString,
    args: Vec<OsString>,
    dir: PathBuf,
    /// Fixed for every worker, in the order applied (later wins).
    env: Vec<(OsString, OsString)>,
    function: String,
}

impl Launch {
    /// The checks [`Launch::new`] makes, without writing or starting anything (for
    /// `switchboard check-config`). Errors name the key, relative to the function's table.
    pub fn check(cfg: &LambdaFunctionConfig) -> Result<(), SetupError> {
        let dir = absolute_dir(cfg)?;
        if !dir.is_dir() {
            return Err(SetupError::invalid(
                "dir",
                format!("{} is not a directory", dir.display()),
            ));
        }
        if cfg.command.is_empty() {
            if cfg.handler.is_empty() {
                return Err(SetupError::invalid(
                    "handler",
                    "must be set when command is empty",
                ));
            }
            bundled_runtime(cfg.runtime.as_deref())?;
        } else if cfg.command[0].is_empty() {
            return Err(SetupError::invalid(
                "command",
                "the program must not be empty",
            ));
        }
        for (k, v) in &cfg.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(SetupError::invalid(
                    format!("env.{k}"),
                    "not a valid environment variable",
                ));
            }
            if k == "AWS_LAMBDA_RUNTIME_API" {
                return Err(SetupError::invalid(
                    format!("env.{k}"),
                    "set by switchboard, cannot be configured",
                ));
            }
        }
        Ok(())
    }

    /// Resolves the command, directory and environment. Errors name the key.
    pub fn new(
        name: &str,
        cfg: &LambdaFunctionConfig,
        rt: &RuntimeContext,
    ) -> Result<Self, SetupError> {
        Self::check(cfg)?;
        let dir = absolute_dir(cfg)?;

        let mut argv: Vec<OsString> = if cfg.command.is_empty() {
            bundled_command(cfg.runtime.as_deref())?
        } else {
            cfg.command.iter().map(OsString::from).collect()
        };
        if cfg.memory_mb > 0 {
            // No pre_exec (unsafe): let the shell set the limit, then become the worker,
            // so the worker keeps the shell's pid and process group.
            let kib = cfg.memory_mb.saturating_mul(1024);
            let mut wrapped: Vec<OsString> = vec![
                "sh".into(),
                "-c".into(),
                format!("ulimit -v {kib} && exec \"$@\"").into(),
                "sh".into(),
            ];
            wrapped.append(&mut argv);
            argv = wrapped;
        }
        let program = argv.remove(0);

        let memory = if cfg.memory_mb > 0 {
            cfg.memory_mb
        } else {
            128
        };
        let mut env: Vec<(OsString, OsString)> = Vec::with_capacity(20 + cfg.env.len());
        let mut set = |k: &str, v: &str| env.push((k.into(), v.into()));
        set("_HANDLER", &cfg.handler);
        set("LAMBDA_TASK_ROOT", &dir.to_string_lossy());
        set("AWS_LAMBDA_FUNCTION_NAME", name);
        set("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", &memory.to_string());
        set("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST");
        set("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand");
        set("AWS_REGION", &rt.region);
        set("AWS_DEFAULT_REGION", &rt.region);
        set("AWS_LAMBDA_LOG_GROUP_NAME", &format!("/aws/lambda/{name}"));
        set("AWS_ACCESS_KEY_ID", &rt.access_key_id);
        set("AWS_SECRET_ACCESS_KEY", &rt.secret_access_key);
        set(
            "AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI",
            &rt.management_url,
        );
        set("SWITCHBOARD_MANAGEMENT_URL", &rt.management_url);
        set("SWITCHBOARD_TOKEN", &rt.bearer_token);
        // Handler output goes to a pipe: unbuffered so each line reaches the log at once.
        set("PYTHONUNBUFFERED", "1");
        // Keys and values were checked above.
        for (k, v) in &cfg.env {
            set(k, v);
        }

        Ok(Self {
            program,
            args: argv,
            dir,
            env,
            function: name.to_owned(),
        })
    }

    /// The program, for messages.
    pub fn program(&self) -> &Path {
        Path::new(&self.program)
    }

    /// A command for one worker whose runtime API listens on `port`. The worker leads
    /// its own process group, so a timeout can kill whatever it started too, and a
    /// Ctrl-C in the terminal reaches switchboard, not the workers.
    pub fn command(&self, port: u16, worker: u64) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.program);
        cmd.args(&self.args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        for key in SCRUBBED_ENV {
            cmd.env_remove(key);
        }
        cmd.env("AWS_LAMBDA_LOG_STREAM_NAME", log_stream_name(worker));
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"));
        cmd
    }

    /// The working directory (absolute), which is also `LAMBDA_TASK_ROOT`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The function's name.
    pub fn function(&self) -> &str {
        &self.function
    }
}

/// `dir`, made absolute against the working directory.
fn absolute_dir(cfg: &LambdaFunctionConfig) -> Result<PathBuf, SetupError> {
    std::path::absolute(&cfg.dir).map_err(|source| SetupError::Io {
        key: "dir",
        what: cfg.dir.display().to_string(),
        source,
    })
}

/// `2024/11/11/[$LATEST]<32 hex>`, as AWS names a sandbox's log stream.
fn log_stream_name(worker: u64) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let date = switchboard_core::event::iso8601(now_ms);
    let day = date.get(..10).unwrap_or("1970-01-01").replace('-', "/");
    format!(
        "{day}/[$LATEST]{:016x}{:016x}",
        u64::from(std::process::id()),
        worker
    )
}

/// `python3 <runtimes>/python/bootstrap.py` or `node <runtimes>/node/bootstrap.mjs`.
fn bundled_command(runtime: Option<&str>) -> Result<Vec<OsString>, SetupError> {
    let (interpreter, sub, file, embedded) = bundled_runtime(runtime)?;
    let path = find_bootstrap(sub, file)
        .map(Ok)
        .unwrap_or_else(|| write_embedded(sub, file, embedded))?;
    Ok(vec![interpreter.into(), path.into_os_string()])
}

/// The bootstrap on disk: under `$SWITCHBOARD_RUNTIMES_DIR`, else in a `runtimes/` folder
/// beside the executable or above it (`target/release/switchboard` finds the repo's), so
/// an edited bootstrap takes effect without a rebuild.
fn find_bootstrap(sub: &str, file: &str) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(RUNTIMES_DIR_ENV) {
        let path = Path::new(&dir).join(sub).join(file);
        return path.is_file().then_some(path);
    }
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join("runtimes").join(sub).join(file))
        .find(|path| path.is_file())
}

/// The interpreter, the folder under `runtimes/`, the bootstrap's file name and its
/// compiled-in text for `runtime`.
fn bundled_runtime(
    runtime: Option<&str>,
) -> Result<(&'static str, &'static str, &'static str, &'static str), SetupError> {
    match runtime {
        Some("python") => Ok(("python3", "python", "bootstrap.py", PYTHON_BOOTSTRAP)),
        Some("node") => Ok(("node", "node", "bootstrap.mjs", NODE_BOOTSTRAP)),
        Some(other) => Err(SetupError::invalid(
            "runtime",
            format!("unknown runtime {other:?} (expected \"python\" or \"node\")"),
        )),
        None => Err(SetupError::invalid(
            "runtime",
            "set \"python\" or \"node\", or set command",
        )),
    }
}

/// Writes the compiled-in bootstrap to a temporary directory named after its content, so
/// binaries of different versions never share a file, and returns its path.
fn write_embedded(sub: &str, file: &str, content: &str) -> Result<PathBuf, SetupError> {
    // FNV-1a: only needs to tell versions apart.
    let hash = content.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let dir = std::env::temp_dir()
        .join(format!("switchboard-runtimes-{hash:016x}"))
        .join(sub);
    let path = dir.join(file);
    if std::fs::read_to_string(&path).is_ok_and(|existing| existing == content) {
        return Ok(path);
    }
    let fail = |source| SetupError::Io {
        key: "runtime",
        what: "cannot write the bundled bootstrap".into(),
        source,
    };
    std::fs::create_dir_all(&dir).map_err(fail)?;
    // Write then rename: another switchboard starting at the same time never runs a
    // half-written file.
    let tmp = dir.join(format!("{file}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, content).map_err(fail)?;
    std::fs::rename(&tmp, &path).map_err(fail)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> LambdaFunctionConfig {
        LambdaFunctionConfig {
            command: Vec::new(),
            runtime: Some("python".into()),
            handler: "app.handler".into(),
            dir: ".".into(),
            env: Default::default(),
            timeout_ms: 1000,
            max_concurrency: 1,
            min_warm: 0,
            idle_secs: 1,
            memory_mb: 0,
            max_queue: 1,
        }
    }

    fn rt() -> RuntimeContext {
        RuntimeContext {
            management_url: "http://127.0.0.1:1/prod".into(),
            access_key_id: "AK".into(),
            secret_access_key: "SK".into(),
            bearer_token: "T".into(),
            region: "eu-west-1".into(),
        }
    }

    #[test]
    fn bundled_bootstrap_is_found_or_written() {
        let launch = Launch::new("f", &cfg(), &rt()).unwrap();
        assert_eq!(launch.program(), Path::new("python3"));
        let script = PathBuf::from(&launch.args[0]);
        assert!(script.is_file(), "{}", script.display());
        assert!(script.ends_with("python/bootstrap.py"));

        let path = write_embedded("node", "bootstrap.mjs", NODE_BOOTSTRAP).unwrap();
        assert_eq!(std::fs::read_to_string(path).unwrap(), NODE_BOOTSTRAP);
    }

    #[test]
    fn memory_limit_wraps_the_command_in_a_shell() {
        let mut c = cfg();
        c.command = vec!["python3".into(), "-m".into(), "awslambdaric".into()];
        c.memory_mb = 256;
        let launch = Launch::new("f", &c, &rt()).unwrap();
        assert_eq!(launch.program(), Path::new("sh"));
        assert_eq!(
            launch.args,
            [
                "-c",
                "ulimit -v 262144 && exec \"$@\"",
                "sh",
                "python3",
                "-m",
                "awslambdaric"
            ]
            .map(OsString::from)
        );
        let memory = launch
            .env
            .iter()
            .find(|(k, _)| k == "AWS_LAMBDA_FUNCTION_MEMORY_SIZE")
            .unwrap();
        assert_eq!(memory.1, "256");
    }

    #[test]
    fn bad_configs_name_the_key() {
        let key = |c: &LambdaFunctionConfig| {
            let e = Launch::new("f", c, &rt()).unwrap_err();
            assert!(e
                .to_string()
                .starts_with(&format!("{}: ", e.key().unwrap())));
            e.key().map(str::to_owned).unwrap()
        };
        let mut c = cfg();
        c.runtime = Some("ruby".into());
        assert_eq!(key(&c), "runtime");
        c.runtime = None;
        assert_eq!(key(&c), "runtime");
        let mut c = cfg();
        c.dir = "/definitely/not/here".into();
        assert_eq!(key(&c), "dir");
        let mut c = cfg();
        c.env.insert("AWS_LAMBDA_RUNTIME_API".into(), "x".into());
        assert_eq!(key(&c), "env.AWS_LAMBDA_RUNTIME_API");
        let mut c = cfg();
        c.handler.clear();
        assert_eq!(key(&c), "handler");
    }
}
