//! The MLLP listener the hospital's interface engine sends to: every frame is answered with an
//! acknowledgement, AA only once the message is in the journal. One connection's bad frame never
//! disturbs another connection, and a connection survives any message it sends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::hl7::ack::{AckCode, Answering, acknowledgement};
use crate::hl7::{Charset, ErrorCode, Message, Problem};
use crate::journal::{Appended, Journal, NewMessage};
use crate::mllp::{Frame, FrameReader, frame};
use crate::translate::{Hospital, Refusal, idempotency_key, translate};

#[derive(Debug, Clone)]
pub struct ListenerSettings {
    pub default_charset: Charset,
    pub max_message_bytes: usize,
    /// From a start block to its end block.
    pub frame_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ListenerSettings {
    fn default() -> ListenerSettings {
        ListenerSettings {
            default_charset: Charset::Utf8,
            max_message_bytes: 4 * 1024 * 1024,
            frame_timeout: Duration::from_secs(60),
            max_connections: 256,
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub struct Receiver {
    pub journal: Journal,
    pub hospital: Hospital,
    pub settings: ListenerSettings,
    acknowledgements: AtomicU64,
}

impl Receiver {
    pub fn new(journal: Journal, hospital: Hospital, settings: ListenerSettings) -> Receiver {
        Receiver {
            journal,
            hospital,
            settings,
            acknowledgements: AtomicU64::new(0),
        }
    }

    /// Accepts connections until `shutdown` turns true.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let slots = Arc::new(Semaphore::new(self.settings.max_connections));
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, for example: wait, and keep serving.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, limit = self.settings.max_connections, "too many connections; closing this one");
                continue;
            };
            let receiver = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                if let Err(e) = receiver.connection(stream, shutdown).await {
                    tracing::info!(%peer, error = %e, "connection ended");
                }
                drop(slot);
            });
        }
    }

    async fn connection(
        &self,
        stream: TcpStream,
        mut shutdown: watch::Receiver<bool>,
    ) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        let (read, mut write) = stream.into_split();
        let mut frames = FrameReader::new(read, self.settings.max_message_bytes, self.settings.frame_timeout);
        loop {
            let next = tokio::select! {
                next = frames.next() => next?,
                _ = shutdown.changed() => return Ok(()),
            };
            let answer = match next {
                None => return Ok(()),
                Some(Frame::Message(bytes)) => self.receive(&bytes).await,
                Some(Frame::Oversized { head, size }) => self.refuse(
                    &head,
                    Problem::new(
                        ErrorCode::ApplicationInternal,
                        None,
                        format!(
                            "the message is {size} bytes; this adapter takes at most {}",
                            self.settings.max_message_bytes
                        ),
                    ),
                ),
                Some(Frame::Truncated(head)) => self.refuse(
                    &head,
                    Problem::new(
                        ErrorCode::SegmentSequence,
                        None,
                        "the frame was cut off: a start block came before its end block",
                    ),
                ),
                Some(Frame::Unterminated { size }) => {
                    tracing::warn!(
                        bytes = size,
                        "the connection closed in the middle of a message; nothing was accepted"
                    );
                    return Ok(());
                }
            };
            write.write_all(&frame(&answer)).await?;
        }
    }

    /// Parses, checks, journals and acknowledges one message.
    pub async fn receive(&self, bytes: &[u8]) -> Vec<u8> {
        let message = match Message::parse(bytes, self.settings.default_charset) {
            Ok(message) => message,
            Err(problem) => return self.refuse(bytes, problem),
        };
        let answering = Answering::message(&message);
        let translated = match translate(&message, &self.hospital) {
            Ok(translated) => translated,
            Err(Refusal::Reject(problem)) => return self.ack(&answering, AckCode::Reject, Some(&problem)),
            Err(Refusal::Error(problem)) => return self.ack(&answering, AckCode::Error, Some(&problem)),
        };
        let appended = self
            .journal
            .append(NewMessage {
                idempotency_key: idempotency_key(&message),
                message_type: translated.message_type,
                patient_key: translated.patient_key,
                raw: bytes.to_vec(),
            })
            .await;
        match appended {
            Ok(Appended::New(_)) => self.ack(&answering, AckCode::Accept, None),
            Ok(Appended::Duplicate) => self.ack_text(
                &answering,
                AckCode::Accept,
                "duplicate of a message accepted before; not processed again",
                None,
            ),
            Ok(Appended::Conflict) => self.ack(
                &answering,
                AckCode::Reject,
                Some(&Problem::at(
                    ErrorCode::DuplicateKeyIdentifier,
                    crate::hl7::Location::field("MSH", 10),
                    "this sending facility used this message control id before for a different message",
                )),
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot journal a message; answering AR so that the sender keeps it");
                self.ack(
                    &answering,
                    AckCode::Reject,
                    Some(&Problem::new(
                        ErrorCode::ApplicationInternal,
                        None,
                        "the adapter cannot store messages right now; send it again later",
                    )),
                )
            }
        }
    }

    /// AR for a message whose header could be read only in part, if at all.
    fn refuse(&self, bytes: &[u8], problem: Problem) -> Vec<u8> {
        self.ack(&best_effort_header(bytes), AckCode::Reject, Some(&problem))
    }

    fn ack(&self, answering: &Answering, code: AckCode, problem: Option<&Problem>) -> Vec<u8> {
        let text = match (code, problem) {
            (AckCode::Accept, _) => "accepted".to_owned(),
            (_, Some(problem)) => problem.to_string(),
            (_, None) => String::new(),
        };
        self.ack_text(answering, code, &text, problem)
    }

    fn ack_text(
        &self,
        answering: &Answering,
        code: AckCode,
        text: &str,
        problem: Option<&Problem>,
    ) -> Vec<u8> {
        let n = self.acknowledgements.fetch_add(1, Ordering::Relaxed);
        let control_id = format!("ACK{}{n}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
        let now = chrono::Utc::now().with_timezone(&self.hospital.utc_offset);
        acknowledgement(answering, code, text, problem, &control_id, now)
    }
}

/// As much of MSH as can be read from bytes that did not parse as a message: for the
/// acknowledgement's addresses and MSA-2, so the sender can tell which message was refused.
fn best_effort_header(bytes: &[u8]) -> Answering {
    let first = bytes.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or(&[]);
    let Some(&separator) = first.get(3) else {
        return Answering::default();
    };
    // Only up to MSH-12, so that a bad MSH-18 does not stop the rest being read.
    let through_msh12 = first
        .split(|&b| b == separator)
        .take(12)
        .collect::<Vec<_>>()
        .join(&separator);
    match Message::parse(&through_msh12, Charset::Latin1) {
        Ok(message) => Answering {
            charset: None,
            ..Answering::message(&message)
        },
        Err(_) => Answering::default(),
    }
}

pub use hie_adapter_relay::submission::china_standard_time;
