//! The crate's error: one opaque type with predicates (callers ask, they don't match).

/// An error from a boxed source (what a token hook returns).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why an operation failed. Ask with the predicates; the message says the rest.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Kind {
    #[error("invalid URL: {0}")]
    Url(&'static str),
    #[error("invalid options: {0}")]
    Options(&'static str),
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[cfg(feature = "tls")]
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("timed out")]
    Timeout,
    #[error("handshake refused: HTTP {0}")]
    Status(u16),
    #[error("handshake: {0}")]
    Handshake(&'static str),
    #[error("token hook: {0}")]
    Token(#[source] BoxError),
    #[error("the connection closed before it opened: {code} {reason}")]
    ClosedBeforeOpen { code: u16, reason: String },
    #[error("the server closed: {code} {reason}")]
    ServerClosed { code: u16, reason: String },
    #[error("gap in the server's sequence numbers")]
    SequenceGap,
    #[error("send queue full")]
    QueueFull,
    #[error("client closed")]
    Closed,
}

impl Kind {
    /// Whether another attempt may succeed (network trouble, overload, a session still
    /// attached elsewhere, a token that a refresh may fix).
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Kind::Io(_)
            | Kind::Timeout
            | Kind::Token(_)
            | Kind::ClosedBeforeOpen { .. }
            | Kind::ServerClosed { .. }
            | Kind::SequenceGap => true,
            #[cfg(feature = "tls")]
            Kind::Tls(_) => false,
            Kind::Status(s) => matches!(s, 401 | 408 | 409 | 429 | 500..=599),
            Kind::Url(_)
            | Kind::Options(_)
            | Kind::Handshake(_)
            | Kind::QueueFull
            | Kind::Closed => false,
        }
    }
}

impl From<Kind> for Error {
    fn from(kind: Kind) -> Self {
        Self { kind }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.kind.fmt(f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.kind)
    }
}

impl Error {
    /// The send queue is at its bound ([`Options::send_queue`](crate::Options)); wait
    /// with [`Client::writable`](crate::Client::writable) and retry.
    pub fn is_queue_full(&self) -> bool {
        matches!(self.kind, Kind::QueueFull)
    }

    /// The client is closed (or closing).
    pub fn is_closed(&self) -> bool {
        matches!(self.kind, Kind::Closed)
    }

    /// The URL or the options are invalid.
    pub fn is_invalid(&self) -> bool {
        matches!(self.kind, Kind::Url(_) | Kind::Options(_))
    }

    /// Connecting, the TLS handshake, or the upgrade did not finish in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.kind, Kind::Timeout)
    }

    /// A socket error.
    pub fn is_io(&self) -> bool {
        matches!(self.kind, Kind::Io(_))
    }

    /// The WebSocket upgrade failed (a status other than 101, or a bad 101).
    pub fn is_handshake(&self) -> bool {
        matches!(self.kind, Kind::Status(_) | Kind::Handshake(_))
    }

    /// The HTTP status of a refused upgrade.
    pub fn status(&self) -> Option<u16> {
        match self.kind {
            Kind::Status(s) => Some(s),
            _ => None,
        }
    }

    /// The token hook failed.
    pub fn is_token(&self) -> bool {
        matches!(self.kind, Kind::Token(_))
    }

    /// The connection closed (or broke the protocol) before it opened; the close code.
    pub fn close_code(&self) -> Option<u16> {
        match self.kind {
            Kind::ClosedBeforeOpen { code, .. } => Some(code),
            _ => None,
        }
    }
}
