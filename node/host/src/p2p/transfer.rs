//! The transfer protocol (`/flotilla/transfer/1.0.0`): job artefacts and checkpoints
//! fetched from the node that holds them, chunked, resumable and checked with SHA-256.
//!
//! One request per stream. The fetcher writes a [`Request`] (a name, an offset and
//! optionally how many bytes it wants this time); the server answers with one [`Reply`]:
//! the whole file's size and SHA-256, or a [`Refusal`]. After a header the server writes
//! the file's bytes from the offset, in chunks of at most [`CHUNK_BYTES`], and closes the
//! stream. Requests and replies are length-prefixed (4 bytes, big-endian) postcard, at
//! most [`CONTROL_FRAME_BYTES_MAX`].
//!
//! The fetcher ([`fetch`]) writes to `<dest>.part` (locked, so one fetch at a time writes
//! it), asks for the bytes after what that file already holds, and checks the SHA-256 of the whole file before renaming it to
//! `<dest>`; a mismatch removes the partial file. The server ([`serve`]) hands out the
//! files of a [`Shelf`], those in a job's artefact directory to the job's requester only
//! (the server knows the peer id of each stream's remote end). On both sides every stream is a stream scope in the resource
//! manager (protocol [`TRANSFER_PROTOCOL`], service [`TRANSFER_SERVICE`], holding one
//! chunk buffer), so the node's stream and memory limits apply; a server that is refused
//! a scope says so in its reply.
//!
//! Submodules:
//! - [`shelf`]: the files served and the rules for their names.

pub mod shelf;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use flotilla_core::rcmgr::RcmgrError;
use flotilla_core::{Direction, PeerId};
use futures::StreamExt;
use libp2p::{Stream, StreamProtocol};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::compat::FuturesAsyncReadCompatExt;

pub use self::shelf::{NameError, Shelf, check_name};
use super::addr::{core_peer, libp2p_peer};
use super::streams::{STREAM_OPEN_TIMEOUT, StreamScope};
use crate::rcmgr::SharedRcmgr;

/// The protocol's name.
pub const TRANSFER_PROTOCOL_NAME: &str = "/flotilla/transfer/1.0.0";
/// The protocol as a libp2p stream protocol.
pub const TRANSFER_PROTOCOL: StreamProtocol = StreamProtocol::new(TRANSFER_PROTOCOL_NAME);
/// The service that claims transfer streams in the resource manager.
pub const TRANSFER_SERVICE: &str = "transfer";
/// Largest chunk of file content written or read at once; both sides reserve this much
/// memory per stream.
pub const CHUNK_BYTES: usize = 64 * 1024;
/// Largest request or reply frame.
pub const CONTROL_FRAME_BYTES_MAX: usize = 4096;
/// Streams served at once at most; further ones are refused.
pub const SERVERS_MAX: usize = 64;
/// Refusal replies being written at once at most; further refused streams are closed
/// without one.
pub const REFUSALS_IN_FLIGHT_MAX: usize = 64;
/// How long one read or write of a frame or chunk may take.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// What the fetcher accepts by default: files of at most 4 GiB.
pub const FETCH_BYTES_MAX_DEFAULT: u64 = 4 << 30;

/// A fetcher's request: the file `name`, from byte `offset`, at most `len_max` bytes (all
/// the rest when `None`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The file's name on the server's shelf.
    pub name: String,
    /// The first byte wanted.
    pub offset: u64,
    /// Bytes wanted at most in this stream.
    pub len_max: Option<u64>,
}

/// The server's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The file exists; its bytes from the offset follow.
    Header {
        /// Size of the whole file.
        size: u64,
        /// SHA-256 of the whole file.
        sha256: [u8; 32],
    },
    /// The request is refused; nothing follows.
    Refused(Refusal),
}

/// Why a server refused a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The name breaks the naming rules.
    #[error("bad name: {0}")]
    BadName(String),
    /// No file is served under this name.
    #[error("no such file: `{0}`; check the name with the node that produced it")]
    NoSuchFile(String),
    /// The offset is past the end of the file.
    #[error("offset {offset} beyond size {size}")]
    OffsetBeyondSize {
        /// The offset asked for.
        offset: u64,
        /// The file's size.
        size: u64,
    },
    /// A resource limit of the server refused the stream.
    #[error("refused: limit {0}")]
    Limit(String),
    /// The file exists but cannot be read.
    #[error("the server cannot read the file: {0}")]
    Unreadable(String),
    /// The name is in a job's artefact directory, and the asker is not its requester.
    #[error("not yours: {0}")]
    NotRequester(String),
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The peer id is not one the transfer protocol can reach.
    #[error("{0} is not an ed25519 peer id; give the peer id a node prints at start-up")]
    BadPeer(PeerId),
    /// The local resource manager refused the stream.
    #[error(
        "the resource manager refused a transfer stream: {0}; wait for other transfers to \
         end or raise the limits of service `{TRANSFER_SERVICE}`"
    )]
    Limit(RcmgrError),
    /// The stream could not be opened.
    #[error("cannot open a transfer stream to {peer}: {reason}; check the peer is connected")]
    Open {
        /// The peer.
        peer: PeerId,
        /// Why.
        reason: String,
    },
    /// The server refused the request.
    #[error("the peer refused `{name}`: {refusal}")]
    Refused {
        /// The name asked for.
        name: String,
        /// The server's reason.
        refusal: Refusal,
    },
    /// The partial file was longer than the remote file, so it was removed.
    #[error(
        "the partial file {part} ({offset} bytes) is longer than the remote file ({size} \
         bytes); the partial file was removed, fetch again"
    )]
    StalePart {
        /// The partial file.
        part: PathBuf,
        /// Its length.
        offset: u64,
        /// The remote file's size.
        size: u64,
    },
    /// The file is larger than the fetcher accepts.
    #[error("the file is {size} bytes, more than the {max} allowed; raise the limit to fetch it")]
    TooLarge {
        /// The announced size.
        size: u64,
        /// The fetcher's limit.
        max: u64,
    },
    /// The stream ended before all the bytes came; the partial file is kept.
    #[error(
        "the stream ended after {received} of {expected} bytes; {part} keeps what came, \
         fetch again to resume"
    )]
    Truncated {
        /// Bytes received in this stream.
        received: u64,
        /// Bytes expected in this stream.
        expected: u64,
        /// The partial file.
        part: PathBuf,
    },
    /// The whole file's hash is not the announced one; the partial file was removed.
    #[error(
        "sha256 mismatch: expected {expected}, got {got}; the partial file was removed, fetch \
         again"
    )]
    Sha256Mismatch {
        /// The announced hash (hex).
        expected: String,
        /// The hash of what was written (hex).
        got: String,
    },
    /// Another fetch is writing the same partial file.
    #[error(
        "another fetch is writing {part} at this moment; wait for it to end, or fetch into \
         another file"
    )]
    Busy {
        /// The partial file.
        part: PathBuf,
    },
    /// The peer broke the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A read or write took longer than [`IO_TIMEOUT`].
    #[error("the transfer stalled for {IO_TIMEOUT:?}; fetch again to resume")]
    Timeout,
    /// A local file or the stream failed.
    #[error("i/o error on {what}: {error}")]
    Io {
        /// What was being read or written.
        what: String,
        /// The error.
        error: std::io::Error,
    },
}

/// Limits of one [`fetch`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FetchOptions {
    /// Largest file accepted; a larger announced size is refused.
    pub max_bytes: u64,
    /// Bytes fetched at most in this call; the rest stays for a later call (which resumes
    /// from the partial file). `None`: all of it.
    pub session_bytes_max: Option<u64>,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            max_bytes: FETCH_BYTES_MAX_DEFAULT,
            session_bytes_max: None,
        }
    }
}

/// What a [`fetch`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchReport {
    /// Size of the whole file.
    pub size: u64,
    /// SHA-256 of the whole file (hex).
    pub sha256: String,
    /// Bytes the partial file held before this call (0: a fresh fetch).
    pub resumed_from: u64,
    /// Bytes received in this call.
    pub received: u64,
    /// Whether the file is complete, checked and at its destination; `false` only when
    /// [`FetchOptions::session_bytes_max`] stopped this call early.
    pub complete: bool,
}

/// The partial file a fetch to `dest` writes: `dest` with `.part` appended.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> TransferError {
    let what = what.to_string();
    move |error| TransferError::Io { what, error }
}

/// Writes one length-prefixed postcard frame and flushes.
async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    w: &mut W,
    value: &T,
) -> Result<(), TransferError> {
    let body = postcard::to_stdvec(value).map_err(|e| TransferError::Protocol(e.to_string()))?;
    if body.len() > CONTROL_FRAME_BYTES_MAX {
        return Err(TransferError::Protocol(format!(
            "a frame of {} bytes is more than {CONTROL_FRAME_BYTES_MAX}",
            body.len()
        )));
    }
    let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
    timed(async {
        w.write_all(&len.to_be_bytes()).await?;
        w.write_all(&body).await?;
        w.flush().await
    })
    .await
    .and_then(|r| r.map_err(io_err("the stream")))
}

/// Reads one length-prefixed postcard frame; an oversized length is refused unread.
async fn read_frame<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    r: &mut R,
) -> Result<T, TransferError> {
    let body = timed(async {
        let mut prefix = [0u8; 4];
        r.read_exact(&mut prefix).await?;
        let len = u32::from_be_bytes(prefix) as usize;
        if len > CONTROL_FRAME_BYTES_MAX {
            return Ok(Err(len));
        }
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        Ok(Ok(body))
    })
    .await?
    .map_err(|e: std::io::Error| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            TransferError::Protocol("the peer closed the stream without a reply".to_string())
        }
        _ => io_err("the stream")(e),
    })?
    .map_err(|len| {
        TransferError::Protocol(format!(
            "a frame of {len} bytes is more than {CONTROL_FRAME_BYTES_MAX}"
        ))
    })?;
    postcard::from_bytes(&body).map_err(|e| TransferError::Protocol(format!("bad frame: {e}")))
}

/// Runs `f` within [`IO_TIMEOUT`].
async fn timed<T>(f: impl Future<Output = T>) -> Result<T, TransferError> {
    tokio::time::timeout(IO_TIMEOUT, f)
        .await
        .map_err(|_| TransferError::Timeout)
}

/// Fetches `name` from `peer` into `dest`, resuming from `<dest>.part` if it exists, within
/// `opts` and `rcmgr`'s limits. The file lands at `dest` only when its SHA-256 is the one
/// the server announced. The partial file is locked (an exclusive `flock`) for the whole
/// fetch: a second fetch to the same `dest` at once, from this process or another, is
/// refused with [`TransferError::Busy`] instead of mixing its bytes in. A fetch that fails
/// before any byte arrived leaves no partial file behind.
pub async fn fetch(
    control: &mut libp2p_stream::Control,
    rcmgr: &SharedRcmgr,
    peer: PeerId,
    name: &str,
    dest: &Path,
    opts: &FetchOptions,
) -> Result<FetchReport, TransferError> {
    let lp = libp2p_peer(&peer).ok_or(TransferError::BadPeer(peer))?;
    let part = part_path(dest);
    let mut file = lock_part(&part).await?;
    let result = fetch_locked(control, rcmgr, (peer, lp), name, dest, &mut file, opts).await;
    if result.is_err() && file.metadata().await.is_ok_and(|m| m.len() == 0) {
        // Nothing to resume from: no partial file left (the lock is still held).
        let _ = remove(&part).await;
    }
    result
}

/// Opens (creating it) and locks the partial file `part`; refused if another fetch holds
/// it.
async fn lock_part(part: &Path) -> Result<tokio::fs::File, TransferError> {
    let file = tokio::fs::OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .open(part)
        .await
        .map_err(io_err(part.display()))?
        .into_std()
        .await;
    let file = tokio::task::spawn_blocking(move || match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Some(e)),
    })
    .await
    .map_err(|e| TransferError::Protocol(format!("locking the partial file failed: {e}")))?;
    match file {
        Ok(f) => Ok(tokio::fs::File::from_std(f)),
        Err(None) => Err(TransferError::Busy {
            part: part.to_path_buf(),
        }),
        Err(Some(e)) => Err(io_err(part.display())(e)),
    }
}

/// [`fetch`] with the partial file of `dest` open and locked as `file`.
async fn fetch_locked(
    control: &mut libp2p_stream::Control,
    rcmgr: &SharedRcmgr,
    (peer, lp): (PeerId, libp2p::PeerId),
    name: &str,
    dest: &Path,
    file: &mut tokio::fs::File,
    opts: &FetchOptions,
) -> Result<FetchReport, TransferError> {
    let part = part_path(dest);
    let offset = file.metadata().await.map_err(io_err(part.display()))?.len();
    let _scope = StreamScope::open_as(
        rcmgr,
        Direction::Outbound,
        peer,
        TRANSFER_PROTOCOL_NAME,
        TRANSFER_SERVICE,
        CHUNK_BYTES as u64,
    )
    .map_err(TransferError::Limit)?;
    let opened = tokio::time::timeout(
        STREAM_OPEN_TIMEOUT,
        control.open_stream(lp, TRANSFER_PROTOCOL),
    )
    .await
    .map_err(|_| TransferError::Open {
        peer,
        reason: format!("no stream within {STREAM_OPEN_TIMEOUT:?}"),
    })?
    .map_err(|e| TransferError::Open {
        peer,
        reason: e.to_string(),
    })?;
    let mut stream = opened.compat();
    let request = Request {
        name: name.to_string(),
        offset,
        len_max: opts.session_bytes_max,
    };
    write_frame(&mut stream, &request).await?;
    let (size, sha256) = match read_frame(&mut stream).await? {
        Reply::Header { size, sha256 } => (size, sha256),
        Reply::Refused(Refusal::OffsetBeyondSize { offset, size }) => {
            remove(&part).await?;
            return Err(TransferError::StalePart { part, offset, size });
        }
        Reply::Refused(refusal) => {
            return Err(TransferError::Refused {
                name: name.to_string(),
                refusal,
            });
        }
    };
    if size > opts.max_bytes {
        return Err(TransferError::TooLarge {
            size,
            max: opts.max_bytes,
        });
    }
    if offset > size {
        return Err(TransferError::Protocol(format!(
            "the peer announced {size} bytes for offset {offset}"
        )));
    }
    let mut hasher = Sha256::new();
    hash_prefix(file, offset, &mut hasher)
        .await
        .map_err(io_err(part.display()))?;

    let rest = size - offset;
    let expected = opts.session_bytes_max.map_or(rest, |m| m.min(rest));
    let received = receive(&mut stream, file, &part, expected, &mut hasher).await?;
    file.sync_all().await.map_err(io_err(part.display()))?;
    if received < expected {
        return Err(TransferError::Truncated {
            received,
            expected,
            part,
        });
    }
    let mut report = FetchReport {
        size,
        sha256: hex(&sha256),
        resumed_from: offset,
        received,
        complete: false,
    };
    if offset + received < size {
        return Ok(report);
    }
    let got: [u8; 32] = hasher.finalize().into();
    if got != sha256 {
        remove(&part).await?;
        return Err(TransferError::Sha256Mismatch {
            expected: hex(&sha256),
            got: hex(&got),
        });
    }
    tokio::fs::rename(&part, dest)
        .await
        .map_err(io_err(dest.display()))?;
    report.complete = true;
    Ok(report)
}

/// Feeds the first `len` bytes of `file` to `hasher`.
async fn hash_prefix(
    file: &mut tokio::fs::File,
    len: u64,
    hasher: &mut Sha256,
) -> std::io::Result<()> {
    file.seek(std::io::SeekFrom::Start(0)).await?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut left = len;
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK_BYTES);
        file.read_exact(&mut buf[..want]).await?;
        hasher.update(&buf[..want]);
        left -= want as u64;
    }
    Ok(())
}

/// Copies up to `expected` bytes from the stream to `file` (and `hasher`); how many came
/// before the stream ended.
async fn receive<R: AsyncRead + Unpin>(
    stream: &mut R,
    file: &mut tokio::fs::File,
    part: &Path,
    expected: u64,
    hasher: &mut Sha256,
) -> Result<u64, TransferError> {
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut received = 0u64;
    while received < expected {
        let want = usize::try_from(expected - received)
            .unwrap_or(usize::MAX)
            .min(CHUNK_BYTES);
        let n = match timed(stream.read(&mut buf[..want])).await? {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, "transfer stream failed");
                break;
            }
        };
        file.write_all(&buf[..n])
            .await
            .map_err(io_err(part.display()))?;
        hasher.update(&buf[..n]);
        received += n as u64;
    }
    file.flush().await.map_err(io_err(part.display()))?;
    Ok(received)
}

async fn remove(part: &Path) -> Result<(), TransferError> {
    match tokio::fs::remove_file(part).await {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(part.display())(e)),
    }
}

/// Serves the files of `shelf` on the transfer streams of `incoming` (from
/// `control.accept(TRANSFER_PROTOCOL)`), at most [`SERVERS_MAX`] at once and within
/// `rcmgr`'s limits. Runs until the swarm is gone; dropping it stops every transfer.
pub async fn serve(
    mut incoming: libp2p_stream::IncomingStreams,
    shelf: Arc<Shelf>,
    rcmgr: SharedRcmgr,
) {
    let mut servers = JoinSet::new();
    let mut notices = JoinSet::new();
    loop {
        tokio::select! {
            Some(_) = servers.join_next(), if !servers.is_empty() => {}
            Some(_) = notices.join_next(), if !notices.is_empty() => {}
            next = incoming.next() => {
                let Some((lp, stream)) = next else { return };
                let Some(peer) = core_peer(&lp) else {
                    tracing::debug!(peer = %lp, "transfer stream from a non-ed25519 peer refused");
                    continue;
                };
                if servers.len() >= SERVERS_MAX {
                    let reason = format!("{SERVERS_MAX} transfers being served at most");
                    refuse(&mut notices, stream, reason);
                    continue;
                }
                let scope = match StreamScope::open_as(
                    &rcmgr,
                    Direction::Inbound,
                    peer,
                    TRANSFER_PROTOCOL_NAME,
                    TRANSFER_SERVICE,
                    CHUNK_BYTES as u64,
                ) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(%peer, reason = %e, "transfer stream refused by the resource manager");
                        refuse(&mut notices, stream, e.to_string());
                        continue;
                    }
                };
                let shelf = shelf.clone();
                servers.spawn(async move {
                    if let Err(e) = serve_one(stream, &shelf, peer, scope).await {
                        tracing::debug!(%peer, error = %e, "transfer ended early");
                    }
                });
            }
        }
    }
}

/// Replies [`Refusal::Limit`] on `stream` and closes it, unless
/// [`REFUSALS_IN_FLIGHT_MAX`] replies are already being written (then it is just closed).
fn refuse(notices: &mut JoinSet<()>, stream: Stream, reason: String) {
    if notices.len() >= REFUSALS_IN_FLIGHT_MAX {
        return;
    }
    notices.spawn(async move {
        let mut s = stream.compat();
        let _ = write_frame(&mut s, &Reply::Refused(Refusal::Limit(reason))).await;
        let _ = timed(s.shutdown()).await;
    });
}

/// Answers one request of `peer` on `stream`.
async fn serve_one(
    stream: Stream,
    shelf: &Arc<Shelf>,
    peer: PeerId,
    _scope: StreamScope,
) -> Result<(), TransferError> {
    let mut stream = stream.compat();
    let request: Request = read_frame(&mut stream).await?;
    let lookup = {
        let (shelf, name) = (shelf.clone(), request.name.clone());
        tokio::task::spawn_blocking(move || shelf.open(&name, &peer))
            .await
            .map_err(|e| TransferError::Protocol(format!("the file lookup failed: {e}")))?
    };
    let served = match lookup {
        Ok(s) if request.offset > s.size => Err(Refusal::OffsetBeyondSize {
            offset: request.offset,
            size: s.size,
        }),
        other => other,
    };
    let served = match served {
        Ok(s) => s,
        Err(refusal) => {
            write_frame(&mut stream, &Reply::Refused(refusal)).await?;
            let _ = timed(stream.shutdown()).await;
            return Ok(());
        }
    };
    let header = Reply::Header {
        size: served.size,
        sha256: served.sha256,
    };
    write_frame(&mut stream, &header).await?;
    let rest = served.size - request.offset;
    let mut left = request.len_max.map_or(rest, |m| m.min(rest));
    let path = served.path.display().to_string();
    let mut file = tokio::fs::File::open(&served.path)
        .await
        .map_err(io_err(&path))?;
    file.seek(std::io::SeekFrom::Start(request.offset))
        .await
        .map_err(io_err(&path))?;
    let mut buf = vec![0u8; CHUNK_BYTES];
    while left > 0 {
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(CHUNK_BYTES);
        let n = file.read(&mut buf[..want]).await.map_err(io_err(&path))?;
        if n == 0 {
            // The file shrank since it was hashed: the fetcher sees a short stream.
            break;
        }
        timed(stream.write_all(&buf[..n]))
            .await?
            .map_err(io_err("the stream"))?;
        left -= n as u64;
    }
    timed(stream.shutdown())
        .await?
        .map_err(io_err("the stream"))?;
    Ok(())
}

#[cfg(test)]
mod tests;
