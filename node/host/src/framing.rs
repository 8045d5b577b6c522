//! Async framing of core messages over any byte stream: a 4-byte big-endian length, then
//! the message. Oversized and malformed frames are errors that the caller turns into
//! closing that stream; they never panic.

use flotilla_core::wire::{self, FRAME_PREFIX_BYTES, Message, WireError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The remote closed the stream cleanly between frames.
    #[error("stream closed")]
    Closed,
    /// Reading or writing failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The frame is oversized or malformed.
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// Reads one message. An oversized length is refused before the body is read.
pub async fn read_message<R: AsyncRead + Unpin>(r: &mut R) -> Result<Message, FrameError> {
    let mut prefix = [0u8; FRAME_PREFIX_BYTES];
    match r.read_exact(&mut prefix).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(FrameError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = wire::frame_len(prefix)?;
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok(wire::decode(&body)?)
}

/// Writes one message and flushes.
pub async fn write_message<W: AsyncWrite + Unpin>(
    w: &mut W,
    message: &Message,
) -> Result<(), FrameError> {
    let frame = wire::encode_frame(message)?;
    w.write_all(&frame).await?;
    w.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_refusals() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write_message(&mut a, &Message::Ping { nonce: 5 })
            .await
            .unwrap();
        assert_eq!(
            read_message(&mut b).await.unwrap(),
            Message::Ping { nonce: 5 }
        );

        a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        assert!(matches!(
            read_message(&mut b).await,
            Err(FrameError::Wire(WireError::Oversized { .. }))
        ));

        a.write_all(&3u32.to_be_bytes()).await.unwrap();
        a.write_all(&[0xff, 0xff, 0xff]).await.unwrap();
        assert!(matches!(
            read_message(&mut b).await,
            Err(FrameError::Wire(WireError::Malformed(_)))
        ));

        drop(a);
        assert!(matches!(
            read_message(&mut b).await,
            Err(FrameError::Closed)
        ));
    }
}
