//! Polling the hospital's FHIR server, for hospitals that publish rather than push: every
//! interval, each resource type is searched since a cursor (`_lastUpdated=ge<cursor>`, sorted,
//! paged through `next` links), and every resource found goes through the same checks and
//! journal as a pushed one. The cursor of each type is the newest `meta.lastUpdated` journaled,
//! kept in the data folder; `ge` (not `gt`) so that a resource updated in the same instant as the
//! cursor is not missed — what was journaled before is recognised and not forwarded twice.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::sync::watch;

use crate::intake::Intake;
use crate::resources::SUPPORTED;

#[derive(Debug, Clone)]
pub struct PollSettings {
    /// The hospital server's FHIR base, `http://host:port/path` (on the hospital's network).
    pub base: String,
    pub interval: Duration,
}

/// The cursors, by resource type.
type Cursors = BTreeMap<String, String>;

/// What one round found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    pub journaled: usize,
    pub already_known: usize,
    pub refused: usize,
}

pub struct Poller {
    intake: Intake,
    settings: PollSettings,
    cursor_file: PathBuf,
    client: Client<HttpConnector, Empty<Bytes>>,
}

impl Poller {
    pub fn new(intake: Intake, settings: PollSettings, data_folder: &std::path::Path) -> Poller {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(10)));
        connector.set_nodelay(true);
        Poller {
            intake,
            settings,
            cursor_file: data_folder.join("fhir-poll-cursors.json"),
            client: Client::builder(TokioExecutor::new()).build(connector),
        }
    }

    /// Polls every interval until `stopping` turns true.
    pub async fn run(self, mut stopping: watch::Receiver<bool>) {
        loop {
            match self.round().await {
                Ok(round) if round.journaled + round.refused > 0 => {
                    tracing::info!(
                        journaled = round.journaled,
                        refused = round.refused,
                        "polled the hospital's FHIR server"
                    )
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot poll the hospital's FHIR server; trying again next round")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.interval) => {}
                _ = stopping.changed() => return,
            }
        }
    }

    /// One round over every resource type, Patients first (so that their records go ahead of
    /// what refers to them).
    pub async fn round(&self) -> Result<Round, String> {
        let mut cursors = self.cursors();
        let mut round = Round::default();
        for kind in SUPPORTED {
            let since = cursors.get(kind).cloned();
            let mut url = match &since {
                Some(since) => format!(
                    "{}/{kind}?_lastUpdated=ge{}&_sort=_lastUpdated&_count=100",
                    self.base(),
                    encode(since)
                ),
                None => format!("{}/{kind}?_sort=_lastUpdated&_count=100", self.base()),
            };
            let mut pages = 0;
            loop {
                let page = self.get(&url).await?;
                for entry in page.get("entry").and_then(Value::as_array).into_iter().flatten() {
                    let Some(resource) = entry.get("resource") else {
                        continue;
                    };
                    if resource.get("resourceType").and_then(Value::as_str) != Some(kind) {
                        continue;
                    }
                    match self.intake.check(resource) {
                        Ok(message) => {
                            let appended = self
                                .intake
                                .journal
                                .append(message)
                                .await
                                .map_err(|e| e.to_string())?;
                            match appended {
                                hie_adapter_relay::journal::Appended::New(_) => round.journaled += 1,
                                _ => round.already_known += 1,
                            }
                        }
                        Err(issues) => {
                            round.refused += 1;
                            // The elements, never the values: they are patient data.
                            let at: Vec<&str> = issues.iter().map(|i| i.expression.as_str()).collect();
                            tracing::warn!(resource_type = kind, elements = ?at, "a polled resource is invalid; skipped");
                        }
                    }
                    if let Some(updated) = resource.pointer("/meta/lastUpdated").and_then(Value::as_str)
                        && cursors.get(kind).is_none_or(|c| later(updated, c))
                    {
                        cursors.insert(kind.to_owned(), updated.to_owned());
                    }
                }
                pages += 1;
                let next = page
                    .get("link")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .find(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
                    .and_then(|l| l.get("url").and_then(Value::as_str));
                match next {
                    Some(next) if pages < 1000 => url = next.to_owned(),
                    _ => break,
                }
            }
            self.save(&cursors)?;
        }
        Ok(round)
    }

    fn base(&self) -> &str {
        self.settings.base.trim_end_matches('/')
    }

    async fn get(&self, url: &str) -> Result<Value, String> {
        let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let request = hyper::Request::get(uri)
            .header("Accept", "application/fhir+json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(60), self.client.request(request))
            .await
            .map_err(|_| format!("{url}: no answer within 60 s"))?
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("{url}: HTTP {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))
    }

    fn cursors(&self) -> Cursors {
        std::fs::read(&self.cursor_file)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Written to a new file and renamed over the old one: a crash leaves one or the other.
    fn save(&self, cursors: &Cursors) -> Result<(), String> {
        let temporary = self.cursor_file.with_extension("json.new");
        let text = serde_json::to_vec_pretty(cursors).map_err(|e| e.to_string())?;
        std::fs::write(&temporary, text).map_err(|e| format!("{}: {e}", temporary.display()))?;
        std::fs::rename(&temporary, &self.cursor_file)
            .map_err(|e| format!("{}: {e}", self.cursor_file.display()))
    }
}

/// Whether instant `a` is after instant `b` (both FHIR instants; compared as instants when they
/// parse, as text otherwise).
fn later(a: &str, b: &str) -> bool {
    match (
        chrono::DateTime::parse_from_rfc3339(a),
        chrono::DateTime::parse_from_rfc3339(b),
    ) {
        (Ok(a), Ok(b)) => a > b,
        _ => a > b,
    }
}

/// A cursor in a query string (`+` of an offset must not read as a space).
fn encode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}
