//! `switchboard dev`: watch function code and reload it.
//!
//! Polling, not inotify: twice a second each managed function's directory is fingerprinted
//! (file count and newest modification time, bounded in files visited), which works the same
//! on every filesystem, editors' rename-on-save included, and needs no dependency.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use switchboard_functions::Function;
use tracing::info;

/// Files visited per directory at most, so a huge tree cannot stall the watcher.
const MAX_FILES: usize = 5000;

#[derive(PartialEq, Eq, Clone, Copy, Debug)]
struct Fingerprint {
    files: usize,
    newest: Option<SystemTime>,
}

fn fingerprint(dir: &Path) -> Fingerprint {
    let mut fp = Fingerprint {
        files: 0,
        newest: None,
    };
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "__pycache__" || name == "node_modules" {
                continue;
            }
            let Ok(meta) = e.metadata() else { continue };
            if meta.is_dir() {
                stack.push(e.path());
                continue;
            }
            fp.files += 1;
            if let Ok(m) = meta.modified() {
                fp.newest = fp.newest.max(Some(m));
            }
            if fp.files >= MAX_FILES {
                return fp;
            }
        }
    }
    fp
}

/// Reloads a function when its files change; notes a changed config (which needs a restart).
pub async fn watch(config: PathBuf, functions: HashMap<String, Function>) {
    let watched: Vec<(String, PathBuf, Function)> = functions
        .into_iter()
        .filter_map(|(name, f)| match &f {
            Function::Remote(inv) => inv.watched_dir().map(|d| (name, d, f.clone())),
            Function::Builtin(_) => None,
        })
        .collect();
    let mut prints: Vec<Fingerprint> = watched.iter().map(|(_, d, _)| fingerprint(d)).collect();
    let config_mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let mut config_seen = config_mtime(&config);
    for (name, dir, _) in &watched {
        info!(target: "switchboard::dev", function = %name, dir = %dir.display(), "watching");
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        for (i, (name, _, f)) in watched.iter().enumerate() {
            let dir = &watched[i].1;
            let now = fingerprint(dir);
            if now != prints[i] {
                prints[i] = now;
                if let Function::Remote(inv) = f {
                    inv.reload();
                }
                info!(target: "switchboard::dev", function = %name, "code changed: workers restarted");
            }
        }
        let c = config_mtime(&config);
        if c != config_seen {
            config_seen = c;
            info!(
                target: "switchboard::dev",
                config = %config.display(),
                "config changed: restart `switchboard dev` to apply it"
            );
        }
    }
}
