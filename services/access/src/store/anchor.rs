//! What chains the audit trail and guards its end outside the database: the keys, and this
//! process's anchor file (the last link it chained).

use std::sync::Arc;

use crate::domain::{Anchor, AuditKey, AuditKeys};
use hie_core::Error;

/// The file where this process keeps the last link it chained ([`Anchor`]), outside the
/// database. It only moves forward. The file stays open and each advance overwrites its one
/// fixed-length line in place (one small write, no fsync): replacing the file by a rename cost
/// about 200 microseconds a batch, which a resolve under load felt.
#[derive(Debug)]
pub struct AnchorFile {
    path: std::path::PathBuf,
    state: std::sync::Mutex<AnchorState>,
}

#[derive(Debug, Default)]
struct AnchorState {
    last: i64,
    file: Option<std::fs::File>,
}

impl AnchorFile {
    pub fn new(path: std::path::PathBuf) -> AnchorFile {
        let last = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| Anchor::parse(&text))
            .map_or(0, |anchor| anchor.sequence);
        AnchorFile {
            path,
            state: std::sync::Mutex::new(AnchorState { last, file: None }),
        }
    }

    /// The anchor as the file holds it; `None` when there is none yet.
    pub fn read(&self) -> Result<Option<Anchor>, Error> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => Anchor::parse(&text).map(Some).ok_or_else(|| {
                Error::Internal(
                    format!("the audit anchor file {} does not parse", self.path.display()).into(),
                )
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::Unavailable(format!(
                "cannot read the audit anchor file {}: {error}",
                self.path.display()
            ))),
        }
    }

    /// Moves the anchor to the link just committed, if it is further along.
    fn advance(&self, sequence: i64, hash: &str) {
        use std::io::{Seek, SeekFrom, Write};
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if sequence <= state.last {
            return;
        }
        let line = Anchor {
            sequence,
            hash: hash.to_owned(),
        }
        .encode();
        let written = (|| {
            if state.file.is_none() {
                state.file = Some(
                    std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(&self.path)?,
                );
            }
            let file = state
                .file
                .as_mut()
                .ok_or_else(|| std::io::Error::other("no anchor file"))?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(line.as_bytes())
        })();
        match written {
            Ok(()) => state.last = sequence,
            Err(error) => {
                // The trail itself is intact; only the guard against a trimmed tail is behind.
                state.file = None;
                tracing::warn!(%error, path = %self.path.display(), "cannot write the audit anchor file");
            }
        }
    }
}

/// What chains events: the keys, and this process's anchor file when it keeps one.
#[derive(Debug, Clone)]
pub struct ChainKeys {
    pub keys: Arc<AuditKeys>,
    pub anchor: Option<Arc<AnchorFile>>,
}

impl ChainKeys {
    pub fn new(keys: AuditKeys, anchor: Option<std::path::PathBuf>) -> ChainKeys {
        ChainKeys {
            keys: Arc::new(keys),
            anchor: anchor.map(|path| Arc::new(AnchorFile::new(path))),
        }
    }

    /// A key of this process alone and no anchor: benchmarks and tests.
    pub fn ephemeral() -> ChainKeys {
        ChainKeys::new(AuditKeys::new(AuditKey::ephemeral(), vec![]), None)
    }

    pub(super) fn key(&self) -> &AuditKey {
        self.keys.current()
    }

    pub(super) fn committed(&self, sequences: &[i64], head_hash: &str) {
        if let (Some(anchor), Some(last)) = (&self.anchor, sequences.last()) {
            anchor.advance(*last, head_hash);
        }
    }
}
