//! The one builder of the exchange: opens the database, composes the services, and serves them
//! with health and reflection. `hie serve`, `hie demo`, the benchmarks and the end-to-end tests
//! all start the server through [`Exchange::start`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hie_access::domain::consent::ConsentPolicy;
use hie_access::grpc::AccessGrpc;
use hie_access::store::ChainKeys;
use hie_access::store::consent::ConsentStore;
use hie_access::{AccessGate, AuditTrail};
use hie_cards::CardService;
use hie_cards::domain::keys::{Chips, TokenKeys};
use hie_core::Error;
use hie_core::db::{Database, DatabaseTimeouts};
use hie_directory::DirectoryService;
use hie_emr::EmrService;
use hie_emr::domain::HospitalGateways;
use hie_emr::domain::gateway::NoGateways;
use hie_emr::grpc::gateway_client::{GatewayEndpoint, GrpcGateways};
use hie_events::EventService;
use hie_population::PopulationService;
use hie_population::domain::linkage::blocking::BlockingRule;
use hie_population::domain::{MatchThresholds, ProbabilisticMatcher};
use hie_records::RecordsService;
use hie_telemedicine::TelemedicineService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

use crate::Settings;
use crate::settings::{LimitSettings, TlsSettings};
use hie_core::service::{self, ServiceModule};
use hie_transport::authn::AuthenticateLayer;

/// Refuses to serve plaintext gRPC beyond loopback unless the operator explicitly allowed it for
/// development, and then says so loudly. Plaintext is a development mode: calls carry patient data,
/// and without a client certificate no call has an organisation. A TLS-terminating proxy is no way
/// out either: it would strip the client certificate, and with it the organisation, from every call.
pub fn check_plaintext_listen(listen: SocketAddr, allowed_on_network: bool) -> Result<(), Error> {
    if listen.ip().is_loopback() {
        return Ok(());
    }
    if allowed_on_network {
        tracing::warn!(
            %listen,
            "INSECURE: serving plaintext gRPC on a network address (--insecure-plaintext-on-network); \
             patient data crosses the network unencrypted and callers are not authenticated; development only"
        );
        return Ok(());
    }
    Err(Error::precondition(
        "listen",
        format!(
            "refusing to serve plaintext gRPC on {listen}, which is not a loopback address: patient data would \
             cross the network unencrypted and no call would carry an organisation. Configure mutual TLS (the [tls] \
             settings: cert, key, client_ca), listen on 127.0.0.1:<port> for development, or, for development \
             only, add --insecure-plaintext-on-network"
        ),
    ))
}

/// The hospitals' gateways the settings name, each over mutual TLS with the exchange's identity
/// (plaintext only to loopback).
fn hospital_gateways(settings: &Settings) -> Result<GrpcGateways, Error> {
    let mut endpoints = Vec::with_capacity(settings.hospital_gateways.len());
    for (i, gateway) in settings.hospital_gateways.iter().enumerate() {
        let field = |name: &str| format!("settings.hospital_gateways[{i}].{name}");
        let organisation = hie_core::domain::OrganisationCode::parse(&gateway.organisation)
            .map_err(|e| Error::precondition(field("organisation"), e.0))?;
        let tls = match &gateway.ca {
            None => None,
            Some(ca) => {
                let host = gateway
                    .url
                    .parse::<tonic::transport::Uri>()
                    .ok()
                    .and_then(|uri| uri.host().map(str::to_owned))
                    .unwrap_or_default();
                let server_name = gateway.server_name.clone().unwrap_or(host);
                let identity = settings
                    .tls
                    .as_ref()
                    .map(|tls| (tls.cert.as_path(), tls.key.as_path()));
                Some(hie_transport::tls::client_config(ca, &server_name, identity)?)
            }
        };
        endpoints.push(GatewayEndpoint {
            organisation,
            url: gateway.url.clone(),
            tls,
        });
    }
    GrpcGateways::new(
        endpoints,
        Duration::from_millis(settings.limits.gateway_timeout_ms),
        usize::try_from(settings.limits.document_max_bytes).unwrap_or(usize::MAX),
    )
}

/// The names of the services [`Exchange::modules`] mounts, known before anything is opened.
pub const SERVICE_NAMES: [&str; 8] = [
    hie_population::grpc::SERVICE_NAME,
    hie_directory::grpc::SERVICE_NAME,
    hie_access::grpc::SERVICE_NAME,
    hie_records::grpc::SERVICE_NAME,
    hie_emr::grpc::SERVICE_NAME,
    hie_cards::grpc::SERVICE_NAME,
    hie_events::grpc::SERVICE_NAME,
    hie_telemedicine::grpc::SERVICE_NAME,
];

/// The services of the exchange over one database.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub database: Database,
    pub directory: DirectoryService,
    pub population: PopulationService,
    pub access: AccessGate,
    pub records: RecordsService,
    pub emr: EmrService,
    pub cards: CardService,
    pub events: EventService,
    pub telemedicine: TelemedicineService,
    /// The NATS server event subscriptions are relayed to (`--events-nats`), if any.
    pub events_nats: Option<String>,
    /// Deadlines and per-connection bounds the server applies to every call.
    pub limits: LimitSettings,
    /// The services to serve, by name (`--services`); every one when empty.
    pub services: Vec<String>,
}

impl Exchange {
    /// Opens the database named by the settings, migrating it when the settings ask, and
    /// composes the services.
    pub async fn open(settings: &Settings) -> Result<Exchange, Error> {
        settings
            .limits
            .check()
            .map_err(|reason| Error::precondition("settings.limits", reason))?;
        // A mistyped service name is refused before anything is opened or created.
        service::check_names(&SERVICE_NAMES, &settings.services)?;
        let millis = std::time::Duration::from_millis;
        let database = Database::connect_with(
            settings.database.url.expose(),
            settings.database.max_connections,
            Some(DatabaseTimeouts {
                statement: millis(settings.limits.statement_timeout_ms),
                lock: millis(settings.limits.lock_timeout_ms),
            }),
        )
        .await?;
        if settings.migrate_on_start {
            // On a connection of its own, without the statement timeout: building an index on a
            // large table may take longer than any call should.
            let migrating = Database::connect(settings.database.url.expose(), 1).await?;
            let migrated = migrating.migrate().await;
            migrating.close().await;
            migrated?;
        }
        let policy = ConsentPolicy {
            opt_in: settings.consent.opt_in,
            emergency_override: settings.consent.emergency_override,
        };
        let thresholds = MatchThresholds::new(
            settings.matching.link_threshold,
            settings.matching.review_threshold,
        )
        .map_err(|e| Error::precondition("settings.matching", e.to_string()))?;
        let rules = settings
            .matching
            .blocking_rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                BlockingRule::parse(rule)
                    .map_err(|e| Error::precondition(format!("settings.matching.blocking_rules[{i}]"), e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let matcher = hie_population::load_matcher(&database, thresholds)
            .await?
            .with_rules(rules);
        let keys = crate::audit_keys::load(settings, &database).await?;
        let mut exchange = Exchange::over(database, policy, matcher, keys);
        let gateways = hospital_gateways(settings)?;
        exchange.use_gateways(Arc::new(gateways), settings.limits.document_max_bytes);
        let (tokens, chips) = crate::card_keys::load(settings, &exchange.database).await?;
        exchange.use_card_keys(tokens, chips);
        if let Some(url) = &settings.events.nats_url {
            exchange.events = exchange.events.clone().with_nats();
            exchange.events_nats = Some(url.clone());
        }
        exchange.limits = settings.limits.clone();
        exchange.services = settings.services.clone();
        // Events staged by writes whose process stopped before chaining them (a crash, a kill)
        // are chained now, before anything else is written.
        exchange.access.audit().flush().await?;
        Ok(exchange)
    }

    /// Composes the services over an open database.
    pub fn over(
        database: Database,
        policy: ConsentPolicy,
        matcher: ProbabilisticMatcher,
        keys: ChainKeys,
    ) -> Exchange {
        let audit = AuditTrail::new(database.clone(), keys);
        let directory = DirectoryService::new(database.clone(), audit.clone());
        let access = AccessGate::new(ConsentStore::new(database.clone()), audit, policy);
        let population = PopulationService::new(
            database.clone(),
            directory.clone(),
            access.clone(),
            Arc::new(matcher.clone()),
            matcher.thresholds(),
        );
        let records = RecordsService::new(
            database.clone(),
            access.clone(),
            population.clone(),
            directory.clone(),
        );
        let limits = LimitSettings::default();
        let emr = EmrService::new(
            database.clone(),
            access.clone(),
            population.clone(),
            directory.clone(),
            records.clone(),
            Arc::new(NoGateways),
            usize::try_from(limits.document_max_bytes).unwrap_or(usize::MAX),
        );
        let cards = CardService::new(
            database.clone(),
            access.clone(),
            population.clone(),
            emr.clone(),
            TokenKeys::ephemeral(),
            Chips::ephemeral(),
        );
        let events = EventService::new(
            database.clone(),
            access.clone(),
            directory.clone(),
            Arc::new(population.clone()),
        );
        let telemedicine = TelemedicineService::new(
            database.clone(),
            access.clone(),
            directory.clone(),
            population.clone(),
            emr.clone(),
        );
        Exchange {
            database,
            directory,
            population,
            access,
            records,
            emr,
            cards,
            events,
            telemedicine,
            events_nats: None,
            limits,
            services: Vec::new(),
        }
    }

    /// Fetches documents kept at hospitals through `gateways`, and keeps content up to
    /// `document_max_bytes` in the exchange.
    pub fn use_gateways(&mut self, gateways: Arc<dyn HospitalGateways>, document_max_bytes: u64) {
        self.emr = EmrService::new(
            self.database.clone(),
            self.access.clone(),
            self.population.clone(),
            self.directory.clone(),
            self.records.clone(),
            gateways,
            usize::try_from(document_max_bytes).unwrap_or(usize::MAX),
        );
        self.cards = self.cards.clone().with_emr(self.emr.clone());
        self.telemedicine = self.telemedicine.clone().with_emr(self.emr.clone());
    }

    /// Keeps card numbers under `tokens` and authenticates chips with `chips` (the keys the
    /// settings name; a scratch exchange has random ones).
    pub fn use_card_keys(&mut self, tokens: TokenKeys, chips: Chips) {
        self.cards = self.cards.clone().with_keys(tokens, chips);
    }

    /// Every service of the exchange, as the server mounts it: the one place a service is wired
    /// in. Each crate builds its own module from the services it needs.
    pub fn modules(&self) -> Vec<ServiceModule> {
        vec![
            hie_population::grpc::module(self.population.clone()),
            hie_directory::grpc::module(self.directory.clone()),
            AccessGrpc::new(
                self.access.clone(),
                Arc::new(self.directory.clone()),
                Arc::new(self.population.clone()),
            )
            .module(),
            hie_records::grpc::module(self.records.clone()),
            hie_emr::grpc::module(self.emr.clone()),
            hie_cards::grpc::module(self.cards.clone()),
            hie_events::grpc::module(self.events.clone()),
            hie_telemedicine::grpc::module(self.telemedicine.clone()),
        ]
    }

    /// Binds `settings.listen` (port 0 picks a free port) and serves every service, with
    /// `grpc.health.v1.Health` and server reflection, until [`RunningServer::stop`].
    pub async fn start(self, listen: SocketAddr) -> Result<RunningServer, Error> {
        self.start_with(listen, None, false).await
    }

    /// Like [`Exchange::start`], with mutual TLS when `tls` is given: the server presents its
    /// certificate, and every call must come with a registered client certificate. Without it,
    /// plaintext on loopback only, unless `plaintext_on_network` (development only).
    pub async fn start_with(
        self,
        listen: SocketAddr,
        tls: Option<&TlsSettings>,
        plaintext_on_network: bool,
    ) -> Result<RunningServer, Error> {
        if tls.is_none() {
            check_plaintext_listen(listen, plaintext_on_network)?;
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| Error::Unavailable(format!("cannot listen on {listen}: {e}")))?;
        let address = listener
            .local_addr()
            .map_err(|e| Error::internal("reading the listening address", e))?;

        let modules = service::choose(self.modules(), &self.services)?;
        let serves_population = modules
            .iter()
            .any(|m| m.name == hie_population::grpc::SERVICE_NAME);
        let serves_cards = modules.iter().any(|m| m.name == hie_cards::grpc::SERVICE_NAME);
        let serves_events = modules.iter().any(|m| m.name == hie_events::grpc::SERVICE_NAME);
        // Connected before serving: an exchange told to relay to NATS that cannot does not start.
        let nats_relay = match (&self.events_nats, serves_events) {
            (Some(url), true) => Some(hie_events::nats::start(self.events.clone(), url).await?),
            _ => None,
        };
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let mut routes = tonic::service::RoutesBuilder::default();
        let mut served = Vec::with_capacity(modules.len());
        let mut served_names = Vec::with_capacity(modules.len());
        for module in modules {
            health_reporter
                .set_service_status(module.grpc_name, tonic_health::ServingStatus::Serving)
                .await;
            served.push(module.name);
            served_names.push(module.grpc_name);
            module.mount(&mut routes);
        }
        // Reflection lists what is served, not every service the descriptors know.
        let advertised: Vec<&str> = served_names
            .iter()
            .copied()
            .chain([
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            ])
            .collect();
        let reflection = || {
            advertised.iter().fold(
                tonic_reflection::server::Builder::configure()
                    .register_encoded_file_descriptor_set(hie_proto::FILE_DESCRIPTOR_SET)
                    .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET),
                |builder, name| builder.with_service_name(*name),
            )
        };
        let reflection_v1 = reflection()
            .build_v1()
            .map_err(|e| Error::internal("building reflection", e))?;
        let reflection_v1alpha = reflection()
            .build_v1alpha()
            .map_err(|e| Error::internal("building reflection", e))?;

        let limits = &self.limits;
        let millis = Duration::from_millis;
        let mut builder = Server::builder()
            .timeout(millis(limits.request_timeout_ms))
            .concurrency_limit_per_connection(limits.concurrency_per_connection)
            .max_concurrent_streams(limits.max_concurrent_streams)
            .http2_keepalive_interval(Some(millis(limits.http2_keepalive_interval_ms)))
            .http2_keepalive_timeout(Some(millis(limits.http2_keepalive_timeout_ms)));
        if let Some(tls) = tls {
            let config = hie_transport::tls::server_config(
                &tls.cert,
                &tls.key,
                &tls.client_ca,
                millis(limits.tls_handshake_timeout_ms),
            )?;
            builder = builder
                .tls_config(config)
                .map_err(|e| Error::internal("the TLS configuration is unusable", e))?;
        }
        let router = builder
            .layer(AuthenticateLayer::new(
                self.directory.clone(),
                self.access.audit().clone(),
                tls.is_some(),
            ))
            .add_routes(routes.routes())
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);

        let (stop, stopped) = oneshot::channel::<()>();
        let incoming = TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .with_keepalive(Some(millis(limits.tcp_keepalive_ms)));
        let task = tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(incoming, async {
                    let _ = stopped.await;
                })
                .await
                .map_err(|e| Error::internal("the gRPC server failed", e))
        });
        tracing::info!(%address, backend = ?self.database.backend(), mutual_tls = tls.is_some(), services = ?served, "hie is serving");
        // Only a server that registers records needs the newest matching model.
        let watched = serves_population.then(|| self.population.clone());
        let mut background = vec![tokio::spawn(async move {
            if let Some(population) = watched {
                take_up_new_models(population).await;
            }
        })];
        // A replica serving cards keeps its card look-up table current.
        if serves_cards {
            background.push(tokio::spawn(self.cards.clone().keep_index_current()));
        }
        // A replica serving events numbers the outbox into the log (one at a time, by a lock)
        // and, with --events-nats, relays NATS subscriptions.
        if serves_events {
            background.push(tokio::spawn(self.events.log().clone().keep_sequencing()));
        }
        background.extend(nats_relay);
        Ok(RunningServer {
            address,
            stop,
            task,
            background,
            exchange: self,
        })
    }
}

/// A server started by [`Exchange::start`].
#[derive(Debug)]
pub struct RunningServer {
    address: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), Error>>,
    /// Tasks that run beside the server: taking up models `hie population train` stores,
    /// keeping the card look-up table current, numbering the event log, relaying to NATS.
    background: Vec<JoinHandle<()>>,
    exchange: Exchange,
}

/// How long a stop waits for the audit trail to commit what it holds.
pub const SHUTDOWN_FLUSH_LIMIT: Duration = Duration::from_secs(30);

/// How often a running server looks for a newer matching model.
pub const MODEL_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

async fn take_up_new_models(population: PopulationService) {
    loop {
        tokio::time::sleep(MODEL_CHECK_EVERY).await;
        match population.reload_matcher().await {
            Ok(Some(version)) => tracing::info!(version, "matching now uses a newly trained model"),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot look for a newer matching model; keeping the one in use")
            }
        }
    }
}

impl RunningServer {
    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://address`, for a tonic client.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn exchange(&self) -> &Exchange {
        &self.exchange
    }

    /// Stops accepting calls, lets the calls under way finish, and closes the database.
    pub async fn stop(self) -> Result<(), Error> {
        // Stopped, and waited for, before the database closes: a refresh caught mid-query would
        // otherwise report the closed database as a failure.
        for task in self.background {
            task.abort();
            let _ = task.await;
        }
        // Open subscription streams end (UNAVAILABLE): a graceful shutdown waits for every
        // stream, and a subscriber's would otherwise never end.
        self.exchange.events.close_streams();
        let _ = self.stop.send(());
        let served = self
            .task
            .await
            .map_err(|e| Error::internal("the server task failed", e))?;
        // Reads answered before the stop have their audit events committed before the database closes.
        // Bounded, so that a stop never hangs on a database that stopped answering: what is left
        // stays staged (writes) and is chained at the next start.
        let flushed = match tokio::time::timeout(SHUTDOWN_FLUSH_LIMIT, self.exchange.access.audit().flush())
            .await
        {
            Ok(flushed) => flushed,
            Err(_) => Err(Error::Unavailable(format!(
                "the audit trail did not finish committing within {} s; staged events are chained at the next start",
                SHUTDOWN_FLUSH_LIMIT.as_secs()
            ))),
        };
        self.exchange.database.close().await;
        flushed?;
        served
    }

    /// Serves until the server fails or the task is cancelled; for `hie serve`.
    pub async fn wait(&mut self) -> Result<(), Error> {
        (&mut self.task)
            .await
            .map_err(|e| Error::internal("the server task failed", e))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_is_served_on_loopback_only_unless_explicitly_allowed() {
        assert!(check_plaintext_listen("127.0.0.1:50051".parse().unwrap(), false).is_ok());
        assert!(check_plaintext_listen("[::1]:50051".parse().unwrap(), false).is_ok());
        let refused = check_plaintext_listen("0.0.0.0:50051".parse().unwrap(), false).unwrap_err();
        assert!(
            refused.to_string().contains("--insecure-plaintext-on-network"),
            "{refused}"
        );
        assert!(check_plaintext_listen("0.0.0.0:50051".parse().unwrap(), true).is_ok());
    }
}
