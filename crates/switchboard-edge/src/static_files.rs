//! Plain GET of files under `[static] dir`, so an app's page shares the WebSocket origin.

use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::Full;
use switchboard_core::config::{ConfigError, StaticConfig};

/// Files larger than this are refused (this is for app pages, not a file server).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(
        code.canonical_reason().unwrap_or("").to_owned() + "\n",
    )));
    *r.status_mut() = code;
    r
}

/// Maps a request path to a file inside `dir`, refusing anything that could escape it.
fn resolve(dir: &Path, index: &str, path: &str) -> Option<PathBuf> {
    let decoded: String = percent_decode(path)?;
    let mut out = dir.to_path_buf();
    for comp in Path::new(decoded.trim_start_matches('/')).components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if decoded.ends_with('/') || decoded.is_empty() {
        out.push(index);
    }
    Some(out)
}

/// A decoded path, refusing NUL (no file name holds one).
fn percent_decode(s: &str) -> Option<String> {
    switchboard_core::text::percent_decode(s).filter(|s| !s.contains('\0'))
}

/// Refuses a `[static] dir` that is not a readable directory: every page would be 404.
/// The error's key is `static.dir`.
pub fn check(cfg: &StaticConfig) -> Result<(), ConfigError> {
    let problem = match std::fs::read_dir(&cfg.dir) {
        Ok(_) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            format!("{} is not a directory", cfg.dir.display())
        }
        Err(e) => format!("{}: {e}", cfg.dir.display()),
    };
    Err(ConfigError {
        key: "static.dir".into(),
        problem,
    })
}

/// Serves one file.
pub async fn serve(cfg: &StaticConfig, path: &str, head: bool) -> Response<Full<Bytes>> {
    let Some(mut file) = resolve(&cfg.dir, &cfg.index, path) else {
        return status(StatusCode::NOT_FOUND);
    };
    let mut meta = match tokio::fs::metadata(&file).await {
        Ok(m) => m,
        Err(_) => return status(StatusCode::NOT_FOUND),
    };
    if meta.is_dir() {
        file.push(&cfg.index);
        meta = match tokio::fs::metadata(&file).await {
            Ok(m) => m,
            Err(_) => return status(StatusCode::NOT_FOUND),
        };
    }
    if meta.len() > MAX_FILE_BYTES {
        return status(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let body = if head {
        Bytes::new()
    } else {
        match tokio::fs::read(&file).await {
            Ok(b) => Bytes::from(b),
            Err(_) => return status(StatusCode::NOT_FOUND),
        }
    };
    let mime = mime_guess::from_path(&file).first_or_octet_stream();
    let mut r = Response::new(Full::new(body));
    if let Ok(v) = HeaderValue::from_str(mime.essence_str()) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_escape() {
        let d = Path::new("/srv/app");
        assert_eq!(resolve(d, "index.html", "/").unwrap(), d.join("index.html"));
        assert_eq!(
            resolve(d, "index.html", "/a/b.js").unwrap(),
            d.join("a/b.js")
        );
        assert!(resolve(d, "index.html", "/../etc/passwd").is_none());
        assert!(resolve(d, "index.html", "/%2e%2e/etc/passwd").is_none());
        assert!(resolve(d, "index.html", "/a%00b").is_none());
        assert!(resolve(d, "index.html", "/%zz").is_none());
    }
}
