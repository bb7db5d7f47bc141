//! MLLP, the minimal lower layer protocol HL7 v2 travels in over TCP: each message is framed as
//! a start block (0x0B), the message, an end block (0x1C) and a carriage return.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

pub const START_BLOCK: u8 = 0x0B;
pub const END_BLOCK: u8 = 0x1C;
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// `message` framed for the wire.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(message.len() + 3);
    framed.push(START_BLOCK);
    framed.extend_from_slice(message);
    framed.push(END_BLOCK);
    framed.push(CARRIAGE_RETURN);
    framed
}

/// What the reader found between a start block and what ended it.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A whole message.
    Message(Vec<u8>),
    /// A message longer than the limit: its bytes past the limit were read and dropped, so the
    /// connection stays in step; the first `limit` bytes are kept for the refusal's header.
    Oversized { head: Vec<u8>, size: usize },
    /// A start block came before the end block: the sender gave up on a message and began the
    /// next one. Carries what had arrived.
    Truncated(Vec<u8>),
    /// The connection closed in the middle of a message.
    Unterminated { size: usize },
}

/// The framing rules, byte by byte, without I/O: the reader's state machine, and what the fuzz
/// target drives directly.
#[derive(Debug)]
pub struct FrameDecoder {
    max_message_bytes: usize,
    in_frame: bool,
    current: Vec<u8>,
    size: usize,
}

impl FrameDecoder {
    pub fn new(max_message_bytes: usize) -> FrameDecoder {
        FrameDecoder {
            max_message_bytes,
            in_frame: false,
            current: Vec::new(),
            size: 0,
        }
    }

    /// Whether a start block has come and its end block not yet.
    pub fn in_frame(&self) -> bool {
        self.in_frame
    }

    /// Takes one byte; a frame when it ends one.
    pub fn push(&mut self, byte: u8) -> Option<Frame> {
        if !self.in_frame {
            // Bytes between frames (the carriage return after an end block, a stray line feed)
            // are not part of any message.
            if byte == START_BLOCK {
                self.start();
            }
            return None;
        }
        match byte {
            END_BLOCK => {
                self.in_frame = false;
                let message = std::mem::take(&mut self.current);
                let size = std::mem::take(&mut self.size);
                Some(if size > self.max_message_bytes {
                    Frame::Oversized { head: message, size }
                } else {
                    Frame::Message(message)
                })
            }
            START_BLOCK => {
                let truncated = std::mem::take(&mut self.current);
                self.start();
                Some(Frame::Truncated(truncated))
            }
            _ => {
                self.size += 1;
                if self.current.len() < self.max_message_bytes {
                    self.current.push(byte);
                }
                None
            }
        }
    }

    /// The end of the input: what was left in the middle of a frame, if anything.
    pub fn finish(&mut self) -> Option<Frame> {
        if !self.in_frame {
            return None;
        }
        self.in_frame = false;
        self.current.clear();
        Some(Frame::Unterminated {
            size: std::mem::take(&mut self.size),
        })
    }

    fn start(&mut self) {
        self.in_frame = true;
        self.current.clear();
        self.size = 0;
    }
}

/// Reads frames from a connection, one at a time.
pub struct FrameReader<R> {
    reader: R,
    decoder: FrameDecoder,
    frame_timeout: Duration,
    buffer: Vec<u8>,
    position: usize,
    filled: usize,
    /// When the current frame's start block came.
    started: Option<Instant>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// `frame_timeout` bounds the time from a start block to its end block: a sender stalled in
    /// the middle of a message does not hold the connection forever.
    pub fn new(reader: R, max_message_bytes: usize, frame_timeout: Duration) -> FrameReader<R> {
        FrameReader {
            reader,
            decoder: FrameDecoder::new(max_message_bytes),
            frame_timeout,
            buffer: vec![0; 64 * 1024],
            position: 0,
            filled: 0,
            started: None,
        }
    }

    /// The next frame; `None` when the connection closed between frames.
    pub async fn next(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            while self.position < self.filled {
                let byte = self.buffer[self.position];
                self.position += 1;
                let frame = self.decoder.push(byte);
                match (self.decoder.in_frame(), self.started) {
                    (true, None) => self.started = Some(Instant::now()),
                    (false, Some(_)) => self.started = None,
                    _ => {}
                }
                if let Some(Frame::Truncated(_)) = &frame {
                    self.started = Some(Instant::now());
                }
                if frame.is_some() {
                    return Ok(frame);
                }
            }
            self.position = 0;
            self.filled = self.read_more().await?;
            if self.filled == 0 {
                self.started = None;
                return Ok(self.decoder.finish());
            }
        }
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        match self.started {
            None => self.reader.read(&mut self.buffer).await,
            Some(started) => {
                let deadline = started + self.frame_timeout;
                match tokio::time::timeout_at(deadline, self.reader.read(&mut self.buffer)).await {
                    Ok(read) => read,
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no end block within the frame timeout",
                    )),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn frames(bytes: &[u8], max: usize) -> Vec<Frame> {
        let mut reader = FrameReader::new(bytes, max, Duration::from_secs(5));
        let mut out = Vec::new();
        while let Some(frame) = reader.next().await.unwrap() {
            out.push(frame);
        }
        out
    }

    #[tokio::test]
    async fn back_to_back_frames_are_read_one_by_one_and_noise_between_them_is_skipped() {
        let mut bytes = frame(b"MSH|one");
        bytes.extend_from_slice(b"\r\n");
        bytes.extend(frame(b"MSH|two"));
        assert_eq!(
            frames(&bytes, 100).await,
            vec![
                Frame::Message(b"MSH|one".to_vec()),
                Frame::Message(b"MSH|two".to_vec())
            ]
        );
    }

    #[tokio::test]
    async fn an_oversized_message_is_reported_and_the_next_one_still_read() {
        let mut bytes = frame(&[b'x'; 50]);
        bytes.extend(frame(b"MSH|ok"));
        let read = frames(&bytes, 10).await;
        assert_eq!(
            read[0],
            Frame::Oversized {
                head: vec![b'x'; 10],
                size: 50
            }
        );
        assert_eq!(read[1], Frame::Message(b"MSH|ok".to_vec()));
    }

    #[tokio::test]
    async fn a_start_block_inside_a_frame_and_a_close_inside_a_frame_are_reported() {
        let mut bytes = vec![START_BLOCK];
        bytes.extend_from_slice(b"MSH|cut");
        bytes.extend(frame(b"MSH|whole"));
        bytes.extend_from_slice(&[START_BLOCK, b'M']);
        let read = frames(&bytes, 100).await;
        assert_eq!(
            read,
            vec![
                Frame::Truncated(b"MSH|cut".to_vec()),
                Frame::Message(b"MSH|whole".to_vec()),
                Frame::Unterminated { size: 1 }
            ]
        );
    }

    #[tokio::test]
    async fn a_sender_stalled_inside_a_frame_times_out() {
        let (mut client, server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, &[START_BLOCK, b'M'])
            .await
            .unwrap();
        let mut reader = FrameReader::new(server, 100, Duration::from_millis(50));
        let error = reader.next().await.unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        drop(client);
    }
}
