//! The tasks behind [`TurmoilNetwork`](super::TurmoilNetwork): the listener, dials, the
//! peer-id preamble, and one reader and one writer task per connection.
//!
//! Every task reports to the network through one bounded channel of [`Internal`] events; the
//! network alone owns the connection table. A connection closes when the network drops its
//! [`Internal::Opened`] handles (the close signal and the writer queue), when the remote
//! closes, or when a frame is malformed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::net::IpAddr;

use flotilla_core::rcmgr::ConnHandle;
use flotilla_core::{DialId, Direction, Message, PeerId, Timestamp};
use flotilla_node::framing::{FrameError, read_message, write_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use turmoil::net::{TcpListener, TcpStream};

use super::host::sim_now;
use super::network::NetRcmgr;
use crate::account::Refusal;
use crate::world::sim_ip;

/// Messages queued to one connection's writer at most; more are dropped.
pub const WRITE_QUEUE_MAX: usize = 64;
/// How long a dial may take to reach the remote host.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the two preambles may take once the TCP connection is up.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of the preamble body: the sender's raw ed25519 public key.
pub const PREAMBLE_BODY_BYTES: usize = 32;
/// Set in the preamble's length when the listener's resource manager refused the
/// connection: the reason follows instead of a key.
pub const REFUSED_FLAG: u32 = 1 << 31;
/// The longest refusal reason read.
pub const REFUSAL_BYTES_MAX: usize = 256;

/// Identifies one TCP connection inside a [`TurmoilNetwork`](super::TurmoilNetwork).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct ConnId(u64);

/// What the tasks report to the network.
#[derive(Debug)]
pub(super) enum Internal {
    /// A connection passed its handshake. Dropping `writer` and `close` closes it.
    Opened {
        conn: ConnId,
        peer: PeerId,
        direction: Direction,
        dial: Option<DialId>,
        writer: mpsc::Sender<Message>,
        close: oneshot::Sender<()>,
        /// An inbound connection's handle in the resource manager, admitted when accepted.
        rc: Option<ConnHandle>,
    },
    /// A frame arrived on `conn`.
    Frame { conn: ConnId, message: Message },
    /// `conn` is closed.
    Closed { conn: ConnId, reason: String },
    /// Dial `dial` failed before a connection opened.
    DialFailed { dial: DialId, reason: String },
}

/// Why a dial or a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// The TCP connect failed (refused, unknown host).
    #[error("connect failed: {0}")]
    Connect(std::io::Error),
    /// Connecting or the handshake took too long.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The remote's preamble was not a 32-byte key.
    #[error("bad preamble: length {0}, expected {PREAMBLE_BODY_BYTES}")]
    Preamble(usize),
    /// Reading or writing the preamble failed.
    #[error("handshake i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The dialled host's resource manager refused the connection; the text is the reason
    /// it sent (`limit:<scope>.<resource>`).
    #[error("{0}")]
    Refused(String),
    /// The dialled host answered with another peer id.
    #[error("peer id mismatch: expected {expected}, got {got}")]
    PeerMismatch {
        /// The peer the dial was for.
        expected: PeerId,
        /// The peer that answered.
        got: PeerId,
    },
}

/// What every task needs: who we are and where to report.
#[derive(Clone, Debug)]
pub(super) struct Ctx {
    pub(super) local: PeerId,
    pub(super) events: mpsc::Sender<Internal>,
    pub(super) ids: Arc<AtomicU64>,
    /// The host's resource accounting, if the run keeps one.
    pub(super) rcmgr: Option<Arc<NetRcmgr>>,
}

impl Ctx {
    fn next_id(&self) -> ConnId {
        ConnId(self.ids.fetch_add(1, Ordering::Relaxed))
    }
}

/// Accepts connections forever; each runs its handshake and then its reader in a task owned
/// by this one, so that aborting the listener closes every inbound connection.
pub(super) async fn listen(listener: TcpListener, ctx: Ctx) {
    let mut tasks = JoinSet::new();
    loop {
        let accepted = listener.accept().await;
        while tasks.try_join_next().is_some() {}
        match accepted {
            Ok((stream, from)) => {
                tasks.spawn(inbound(stream, from.ip(), ctx.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "accept failed"),
        }
    }
}

/// Admits (with resource accounting) and serves an inbound connection from `from`. A
/// refused one gets the refusal's reason instead of the preamble, then closes.
async fn inbound(mut stream: TcpStream, from: IpAddr, ctx: Ctx) {
    let rc = match admit(&ctx, from) {
        Ok(rc) => rc,
        Err(reason) => {
            let _ = refuse(&mut stream, &reason).await;
            return;
        }
    };
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, ctx.local)).await {
        Ok(Ok(peer)) => serve(stream, peer, Direction::Inbound, None, rc, ctx).await,
        Ok(Err(e)) => {
            release(&ctx, rc);
            tracing::debug!(error = %e, "inbound handshake failed");
        }
        Err(_) => {
            release(&ctx, rc);
            tracing::debug!("inbound handshake timed out");
        }
    }
}

/// Opens an inbound connection from turmoil address `from` in the host's resource
/// manager, from the simulated address of the host behind it ([`sim_ip`] of `n<i>`).
fn admit(ctx: &Ctx, from: IpAddr) -> Result<Option<ConnHandle>, String> {
    let Some(rcmgr) = &ctx.rcmgr else {
        return Ok(None);
    };
    let ip = turmoil::reverse_lookup(from)
        .and_then(|name| name.strip_prefix('n').and_then(|i| i.parse::<usize>().ok()))
        .map_or(from, |i| IpAddr::V4(sim_ip(i)));
    let now = sim_now().unwrap_or(Timestamp::ZERO);
    let mut rm = rcmgr.lock();
    match rm.open_connection_from(Direction::Inbound, true, ip, now) {
        Ok(c) => {
            rcmgr.checked(&rm, None);
            Ok(Some(c))
        }
        Err(e) => {
            drop(rm);
            let r = Refusal::of(&e);
            rcmgr.refused(r);
            Err(r.reason())
        }
    }
}

/// Closes an admitted inbound connection whose handshake failed.
fn release(ctx: &Ctx, rc: Option<ConnHandle>) {
    if let (Some(c), Some(rcmgr)) = (rc, &ctx.rcmgr)
        && let Err(e) = rcmgr.lock().close_connection(c)
    {
        panic!("the turmoil network misused the resource manager: {e}");
    }
}

/// Sends the refusal in place of the preamble: a 4-byte big-endian length with
/// [`REFUSED_FLAG`] set, then the reason.
async fn refuse(stream: &mut TcpStream, reason: &str) -> std::io::Result<()> {
    let len = u32::try_from(reason.len()).unwrap_or(0) & !REFUSED_FLAG;
    let mut frame = Vec::with_capacity(4 + reason.len());
    frame.extend_from_slice(&(len | REFUSED_FLAG).to_be_bytes());
    frame.extend_from_slice(reason.as_bytes());
    stream.write_all(&frame).await?;
    stream.flush().await
}

/// Dials `host:port`, expecting `expected` if given, then serves the connection.
pub(super) async fn dial(
    ctx: Ctx,
    dial: DialId,
    host: String,
    port: u16,
    expected: Option<PeerId>,
) {
    match connect(&host, port, ctx.local, expected).await {
        Ok((stream, peer)) => serve(stream, peer, Direction::Outbound, Some(dial), None, ctx).await,
        Err(e) => {
            let _ = ctx
                .events
                .send(Internal::DialFailed {
                    dial,
                    reason: e.to_string(),
                })
                .await;
        }
    }
}

async fn connect(
    host: &str,
    port: u16,
    local: PeerId,
    expected: Option<PeerId>,
) -> Result<(TcpStream, PeerId), ConnError> {
    let mut stream = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((host, port)))
        .await
        .map_err(|_| ConnError::Timeout(DIAL_TIMEOUT))?
        .map_err(ConnError::Connect)?;
    let peer = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(&mut stream, local))
        .await
        .map_err(|_| ConnError::Timeout(HANDSHAKE_TIMEOUT))??;
    match expected {
        Some(expected) if expected != peer => Err(ConnError::PeerMismatch {
            expected,
            got: peer,
        }),
        _ => Ok((stream, peer)),
    }
}

/// Writes our preamble, reads the remote's: a 4-byte big-endian length (always 32), then the
/// raw public key. The simulation trusts it; production authenticates with noise instead.
async fn handshake(stream: &mut TcpStream, local: PeerId) -> Result<PeerId, ConnError> {
    let len = u32::try_from(PREAMBLE_BODY_BYTES).unwrap_or(u32::MAX);
    let mut frame = Vec::with_capacity(4 + PREAMBLE_BODY_BYTES);
    frame.extend_from_slice(&len.to_be_bytes());
    frame.extend_from_slice(local.public_key());
    stream.write_all(&frame).await?;
    stream.flush().await?;
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await?;
    let prefix = u32::from_be_bytes(prefix);
    if prefix & REFUSED_FLAG != 0 {
        let len = usize::try_from(prefix & !REFUSED_FLAG).unwrap_or(0);
        if len > REFUSAL_BYTES_MAX {
            return Err(ConnError::Preamble(len));
        }
        let mut reason = vec![0u8; len];
        stream.read_exact(&mut reason).await?;
        return Err(ConnError::Refused(
            String::from_utf8_lossy(&reason).into_owned(),
        ));
    }
    let got = usize::try_from(prefix).unwrap_or(usize::MAX);
    if got != PREAMBLE_BODY_BYTES {
        return Err(ConnError::Preamble(got));
    }
    let mut key = [0u8; PREAMBLE_BODY_BYTES];
    stream.read_exact(&mut key).await?;
    Ok(PeerId::from_public_key(key))
}

/// Registers the connection with the network, then reads frames until the remote closes, a
/// frame is malformed, or the network drops the close signal. The writer task is owned by
/// this task and ends with it.
async fn serve(
    stream: TcpStream,
    peer: PeerId,
    direction: Direction,
    dial: Option<DialId>,
    rc: Option<ConnHandle>,
    ctx: Ctx,
) {
    let conn = ctx.next_id();
    let (mut rd, wr) = stream.into_split();
    let (writer, queue) = mpsc::channel(WRITE_QUEUE_MAX);
    let (close, mut closed) = oneshot::channel();
    let opened = Internal::Opened {
        conn,
        peer,
        direction,
        dial,
        writer,
        close,
        rc,
    };
    if ctx.events.send(opened).await.is_err() {
        return;
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(write_loop(wr, queue, conn, ctx.events.clone()));
    let reason = loop {
        let frame = tokio::select! {
            biased;
            _ = &mut closed => return,
            frame = read_message(&mut rd) => frame,
        };
        match frame {
            Ok(message) => {
                if ctx
                    .events
                    .send(Internal::Frame { conn, message })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(FrameError::Closed) => break "closed by remote".to_string(),
            Err(e) => break e.to_string(),
        }
    };
    let _ = ctx.events.send(Internal::Closed { conn, reason }).await;
}

async fn write_loop(
    mut wr: turmoil::net::tcp::OwnedWriteHalf,
    mut queue: mpsc::Receiver<Message>,
    conn: ConnId,
    events: mpsc::Sender<Internal>,
) {
    while let Some(message) = queue.recv().await {
        if let Err(e) = write_message(&mut wr, &message).await {
            let _ = events
                .send(Internal::Closed {
                    conn,
                    reason: e.to_string(),
                })
                .await;
            return;
        }
    }
}
