//! Why a connection task stops, and what follows from it: the close code and reason
//! recorded for metrics and `$disconnect`, whether a session may park for resume, and
//! the metrics counted. The socket loop only says which [`End`] happened.

use std::task::Poll;

use switchboard_ws::close_code;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Conn;

/// Why the connection task stops now. [`Conn::end`] turns it into the close code and
/// reason recorded for metrics and `$disconnect`, whether a session may park for resume,
/// and the metrics it counts, so those decisions are made in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// Writing to (or flushing, with TLS) the socket failed: the peer is gone. A session
    /// may resume unless we were already closing.
    WriteFailed,
    /// The peer closed or reset its side while we read. A session may resume unless we
    /// were already closing.
    ReadClosed,
    /// Nothing could be written for `write_timeout`: a slow consumer (1013).
    WriteStalled,
    /// Our close frame went unanswered past its deadline; the code is the one we sent.
    CloseTimedOut,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    /// Records why the connection ends (see [`End`]); the task then stops.
    pub(super) fn end(&mut self, why: End) -> Poll<()> {
        match why {
            End::WriteFailed => {
                self.resumable_end = self.closing.is_none();
                self.set_outcome(close_code::ABNORMAL, "connection lost");
            }
            End::ReadClosed => {
                if self.closing.is_none() {
                    self.set_outcome(close_code::ABNORMAL, "connection lost");
                    self.resumable_end = true;
                }
            }
            End::WriteStalled => {
                self.edge.metrics.outbound_queue_drops.inc();
                self.set_outcome(close_code::TRY_AGAIN_LATER, "slow consumer: write stalled");
            }
            // The outcome was recorded when the close started.
            End::CloseTimedOut => {}
        }
        Poll::Ready(())
    }
}
