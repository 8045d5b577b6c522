//! The node's own wire protocol: messages and their framing.
//!
//! Every message travels as one frame: a 4-byte big-endian length, then the postcard
//! encoding of a [`Message`]. Frames longer than [`FRAME_MAX_BYTES`] are refused before
//! anything is read into memory. The same framing is used on libp2p streams in production
//! and on TCP sockets in the turmoil simulator.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::advert::SignedAdvert;
use crate::identity::PeerId;
use crate::jobs::JobMessage;

/// The libp2p protocol name of the node's own protocol.
pub const PROTOCOL_NAME: &str = "/flotilla/core/1.0.0";
/// The protocol version carried in adverts; bump on incompatible message changes.
pub const PROTOCOL_VERSION: u16 = 1;
/// The largest frame accepted or sent, in bytes (length prefix excluded).
pub const FRAME_MAX_BYTES: usize = 64 * 1024;
/// Bytes of the length prefix.
pub const FRAME_PREFIX_BYTES: usize = 4;
/// The longest reason a [`Message::Refused`] carries, in bytes.
pub const REFUSED_REASON_BYTES_MAX: usize = 512;

/// A message between two nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// The sender's signed advert; sent first on every new connection. Shared, not copied,
    /// between the sender, the message and the receiver's peer table (the encoding is the
    /// advert's own).
    Hello(Arc<SignedAdvert>),
    /// Asks for a [`Message::Pong`] with the same nonce.
    Ping {
        /// Echoed in the answer.
        nonce: u64,
    },
    /// Answers a [`Message::Ping`].
    Pong {
        /// The nonce of the ping.
        nonce: u64,
    },
    /// Asks for at most `max` known peers at most `hops_max` hops away from the answerer.
    PeersRequest {
        /// Maximum number of records in the answer.
        max: u16,
        /// Maximum hop count of returned records (0: only the answerer's direct peers).
        hops_max: u8,
    },
    /// Answers a [`Message::PeersRequest`].
    PeersResponse {
        /// Known peers, each with its own signed advert.
        records: Vec<PeerRecord>,
    },
    /// The stream it arrives on was refused (a resource limit, say) and is about to close;
    /// written at most once, as the stream's only frame. Receivers ignore it except to
    /// log the reason. Appended last so that every older variant encodes as before.
    Refused {
        /// Why, at most [`REFUSED_REASON_BYTES_MAX`] bytes.
        reason: String,
    },
    /// Asks the receiver for the RTTs it measured to `peers` (at most [`RTT_QUERY_MAX`]): a
    /// service provider asks each provider of a job for the latency table between them.
    RttQuery {
        /// Echoed in the report, so the asker matches answers to questions.
        id: u64,
        /// The peers asked about.
        peers: Vec<PeerId>,
    },
    /// Answers a [`Message::RttQuery`]: the asked peers the answerer has measured, in the
    /// order asked.
    RttReport {
        /// The query's id.
        id: u64,
        /// One entry per measured peer.
        rtts: Vec<RttSample>,
    },
    /// A message of the jobs protocol: bid requests, bids, commits, starts, reverts,
    /// shutdowns, status and log lines (see [`crate::jobs`]).
    Job(JobMessage),
}

/// Peers one [`Message::RttQuery`] may ask about.
pub const RTT_QUERY_MAX: usize = 64;

/// One line of a latency table: the answerer's smoothed RTT to `peer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RttSample {
    /// The peer measured.
    pub peer: PeerId,
    /// Smoothed RTT, microseconds.
    pub ewma_us: u64,
    /// RTT jitter (smoothed deviation), microseconds.
    pub jitter_us: u64,
    /// Samples taken.
    pub samples: u32,
}

impl Message {
    /// A short name for traces and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Ping { .. } => "ping",
            Message::Pong { .. } => "pong",
            Message::PeersRequest { .. } => "peers?",
            Message::PeersResponse { .. } => "peers",
            Message::Refused { .. } => "refused",
            Message::RttQuery { .. } => "rtt?",
            Message::RttReport { .. } => "rtts",
            Message::Job(m) => m.kind(),
        }
    }

    /// A [`Message::Refused`] with `reason` cut to [`REFUSED_REASON_BYTES_MAX`] bytes (at a
    /// character boundary).
    pub fn refused(reason: &str) -> Message {
        let mut end = reason.len().min(REFUSED_REASON_BYTES_MAX);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Message::Refused {
            reason: reason[..end].to_string(),
        }
    }
}

/// A peer passed on in a [`Message::PeersResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerRecord {
    /// The peer's own signed advert (shared with the peer tables that hold it).
    pub advert: Arc<SignedAdvert>,
    /// Hops from the answerer: 0 if the answerer heard the peer's hello itself.
    pub hops: u8,
}

/// Errors of encoding and decoding frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The announced or encoded length exceeds the frame limit.
    #[error("frame of {len} bytes exceeds the limit of {FRAME_MAX_BYTES} bytes")]
    Oversized {
        /// The offending length.
        len: usize,
    },
    /// The bytes are not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Encodes `msg` as a frame: length prefix and body.
pub fn encode_frame(msg: &Message) -> Result<Vec<u8>, WireError> {
    let mut out = postcard::to_extend(msg, vec![0u8; FRAME_PREFIX_BYTES])
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    let len = out.len() - FRAME_PREFIX_BYTES;
    check_frame_len(len)?;
    out[..FRAME_PREFIX_BYTES].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(out)
}

/// Reads a length prefix and checks it against the frame limit.
pub fn frame_len(prefix: [u8; FRAME_PREFIX_BYTES]) -> Result<usize, WireError> {
    let len = u32::from_be_bytes(prefix) as usize;
    check_frame_len(len)?;
    Ok(len)
}

fn check_frame_len(len: usize) -> Result<(), WireError> {
    if len > FRAME_MAX_BYTES {
        return Err(WireError::Oversized { len });
    }
    Ok(())
}

/// Decodes a frame body (without its length prefix). Trailing bytes are an error.
pub fn decode(body: &[u8]) -> Result<Message, WireError> {
    check_frame_len(body.len())?;
    let (msg, rest) =
        postcard::take_from_bytes(body).map_err(|e| WireError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(WireError::Malformed(format!(
            "{} trailing bytes",
            rest.len()
        )));
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let msg = Message::Ping { nonce: 42 };
        let frame = encode_frame(&msg).unwrap();
        let len = frame_len(frame[..4].try_into().unwrap()).unwrap();
        assert_eq!(len, frame.len() - 4);
        assert_eq!(decode(&frame[4..]).unwrap(), msg);
    }

    #[test]
    fn refused_is_appended_and_bounded() {
        // Older variants keep their encoding: the new one only takes the next tag.
        let ping = encode_frame(&Message::Ping { nonce: 7 }).unwrap();
        assert_eq!(&ping[4..], &[1, 7]);
        let long = "é".repeat(REFUSED_REASON_BYTES_MAX);
        let Message::Refused { reason } = Message::refused(&long) else {
            panic!("not a refusal");
        };
        assert!(
            reason.len() <= REFUSED_REASON_BYTES_MAX
                && reason.len() >= REFUSED_REASON_BYTES_MAX - 1
        );
        let msg = Message::refused("system limit reached");
        let frame = encode_frame(&msg).unwrap();
        assert_eq!(frame[4], 5, "the sixth variant");
        assert_eq!(decode(&frame[4..]).unwrap(), msg);
        assert_eq!(msg.kind(), "refused");
    }

    #[test]
    fn latency_tables_are_appended_after_refused() {
        let peer = PeerId::from_public_key([3; 32]);
        let q = Message::RttQuery {
            id: 1,
            peers: vec![peer],
        };
        let frame = encode_frame(&q).unwrap();
        assert_eq!(frame[4], 6, "the seventh variant");
        assert_eq!(decode(&frame[4..]).unwrap(), q);
        let r = Message::RttReport {
            id: 1,
            rtts: vec![RttSample {
                peer,
                ewma_us: 12_000,
                jitter_us: 800,
                samples: 9,
            }],
        };
        let frame = encode_frame(&r).unwrap();
        assert_eq!(frame[4], 7);
        assert_eq!(decode(&frame[4..]).unwrap(), r);
        // The largest query fits a frame easily.
        let big = Message::RttQuery {
            id: u64::MAX,
            peers: vec![peer; RTT_QUERY_MAX],
        };
        assert!(encode_frame(&big).unwrap().len() < 4096);
    }

    #[test]
    fn oversized_and_malformed_frames_are_errors() {
        let too_big = ((FRAME_MAX_BYTES + 1) as u32).to_be_bytes();
        assert!(matches!(
            frame_len(too_big),
            Err(WireError::Oversized { .. })
        ));
        assert!(matches!(
            decode(&[0xff, 0xff, 0xff]),
            Err(WireError::Malformed(_))
        ));
        let mut trailing = encode_frame(&Message::Pong { nonce: 1 }).unwrap();
        trailing.push(0);
        assert!(matches!(
            decode(&trailing[4..]),
            Err(WireError::Malformed(_))
        ));
    }
}
