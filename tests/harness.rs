//! Fresh databases, a booted server, clients, and the data most tests start from.

use hie_core::db;
use hie_proto::directory::directory_client::DirectoryClient;
use hie_proto::population::population_registry_client::PopulationRegistryClient;
use hie_proto::population::{Address, Demographics, Identifier, RegisterSourceRecordRequest};
use hie_server::settings::SecretUrl;
use hie_server::{Exchange, RunningServer, Settings};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

/// Generates one test per backend for each named async function taking a [`TestDb`].
macro_rules! on_every_backend {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test($crate::harness::TestDb::sqlite().await).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    if let Some(db) = $crate::harness::TestDb::postgres().await {
                        super::$test(db).await;
                    }
                }
            )+
        }
    };
}
pub(crate) use on_every_backend;

/// A database of a test's own, removed when the test ends.
pub struct TestDb {
    pub url: String,
    /// The test's own folder: the SQLite file, the audit key and anchor.
    pub folder: tempfile::TempDir,
    cleanup: Cleanup,
}

enum Cleanup {
    Folder,
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    pub async fn sqlite() -> TestDb {
        let folder = tempfile::tempdir().expect("a temporary folder");
        let url = format!("sqlite://{}/hie.db", folder.path().display());
        TestDb {
            url,
            folder,
            cleanup: Cleanup::Folder,
        }
    }

    /// A fresh PostgreSQL database, or `None` (with a message) when the server is unreachable
    /// outside CI. Under `CI=true` an unreachable server fails the test.
    pub async fn postgres() -> Option<TestDb> {
        let admin_url = std::env::var("HIE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let name = format!("hie_test_{}", uuid::Uuid::now_v7().simple());
        match db::create_postgres_database(&admin_url, &name).await {
            Ok(url) => Some(TestDb {
                url,
                folder: tempfile::tempdir().expect("a temporary folder"),
                cleanup: Cleanup::Postgres { admin_url, name },
            }),
            Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => {
                panic!("PostgreSQL is required under CI=true and is unreachable: {e}")
            }
            Err(e) => {
                eprintln!("skipped: PostgreSQL is unreachable ({e}); set HIE_TEST_POSTGRES_URL");
                None
            }
        }
    }

    pub fn settings(&self) -> Settings {
        let mut settings = Settings::default();
        settings.database.url = SecretUrl::new(self.url.clone());
        settings.database.max_connections = 8;
        settings.listen = "127.0.0.1:0".parse().expect("a socket address");
        settings.audit.key_file = Some(self.folder.path().join("audit.key"));
        settings
    }

    /// The services over this database, migrated.
    pub async fn exchange(&self) -> Exchange {
        Exchange::open(&self.settings())
            .await
            .expect("the exchange opens")
    }

    /// The real server, through the same builder as `hie serve`, on a free loopback port.
    pub async fn server(&self) -> TestServer {
        let server = self
            .exchange()
            .await
            .start(self.settings().listen)
            .await
            .expect("the server starts");
        let channel = Channel::from_shared(server.url())
            .expect("a URL")
            .connect()
            .await
            .expect("a connection");
        TestServer { server, channel }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Cleanup::Postgres { admin_url, name } = &self.cleanup {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs inside the test's runtime, which cannot block on itself: a thread with a
            // runtime of its own removes the database.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(db::drop_postgres_database(&admin_url, &name))
            })
            .join();
        }
    }
}

pub struct TestServer {
    pub server: RunningServer,
    pub channel: Channel,
}

/// A population client whose every call carries a request context (user, role, purpose).
pub type PopulationClient = PopulationRegistryClient<InterceptedService<Channel, ContextInterceptor>>;
pub type ContextInterceptor = fn(tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status>;

/// Asserts a clinician treating the patient: the context an ordinary clinical call carries.
pub fn clinician_treating(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let metadata = request.metadata_mut();
    metadata.insert("x-hie-user", "dr-wu".parse().expect("ASCII"));
    metadata.insert("x-hie-role", "clinician".parse().expect("ASCII"));
    metadata.insert("x-hie-purpose", "treatment".parse().expect("ASCII"));
    Ok(request)
}

/// Asserts the region's administrator, who maintains the directory.
pub fn administrator(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let metadata = request.metadata_mut();
    metadata.insert("x-hie-user", "admin-yang".parse().expect("ASCII"));
    metadata.insert("x-hie-role", "administrator".parse().expect("ASCII"));
    metadata.insert("x-hie-purpose", "treatment".parse().expect("ASCII"));
    Ok(request)
}

pub fn population_client(channel: Channel) -> PopulationClient {
    PopulationRegistryClient::with_interceptor(channel, clinician_treating as ContextInterceptor)
}

impl TestServer {
    pub fn population(&self) -> PopulationClient {
        population_client(self.channel.clone())
    }

    /// The population registry as the region's data steward (role administrator).
    pub fn population_as_steward(&self) -> PopulationClient {
        PopulationRegistryClient::with_interceptor(self.channel.clone(), administrator as ContextInterceptor)
    }

    /// The directory, as the region's administrator.
    pub fn directory(&self) -> DirectoryClient<InterceptedService<Channel, ContextInterceptor>> {
        DirectoryClient::with_interceptor(self.channel.clone(), administrator as ContextInterceptor)
    }

    pub fn exchange(&self) -> &Exchange {
        self.server.exchange()
    }
}

/// Registers hospitals QDN-H01 and QDN-H02 and township centre QDN-T01, all active, and the
/// inactive hospital QDN-H09.
pub async fn register_organisations(exchange: &Exchange) {
    use hie_directory::domain::OrganisationKind;
    for (code, name, kind, active) in [
        ("QDN-H01", "黔东南州人民医院", OrganisationKind::Hospital, true),
        ("QDN-H02", "黎平县人民医院", OrganisationKind::Hospital, true),
        (
            "QDN-T01",
            "炉山镇卫生院",
            OrganisationKind::TownshipHealthCentre,
            true,
        ),
        ("QDN-H09", "已撤销医院", OrganisationKind::Hospital, false),
    ] {
        register_organisation(exchange, code, name, kind, "522601", active).await;
    }
}

/// Registers one organisation in the directory (a hospital with grade secondary A).
pub async fn register_organisation(
    exchange: &Exchange,
    code: &str,
    name: &str,
    kind: hie_directory::domain::OrganisationKind,
    division: &str,
    active: bool,
) {
    use hie_core::domain::{BoundedText, DivisionCode, OrganisationCode};
    use hie_directory::domain::{HospitalGrade, OrganisationDraft, OrganisationKind};
    let draft = OrganisationDraft::new(
        "organisation",
        OrganisationCode::parse(code).unwrap(),
        BoundedText::parse_required(name, 100).unwrap(),
        kind,
        (kind == OrganisationKind::Hospital).then_some(HospitalGrade::SecondaryA),
        DivisionCode::parse(division).unwrap(),
        active,
    )
    .unwrap();
    exchange
        .directory
        .register_organisation(&steward(), draft)
        .await
        .unwrap();
}

/// A resident identity number with a correct check character: `first_17` plus the check.
pub fn resident_id(first_17: &str) -> String {
    let check = hie_core::domain::ResidentId::check_character(first_17.as_bytes()) as char;
    format!("{first_17}{check}")
}

/// A valid woman's identity number born 1985-03-14 in Kaili, varied by `n` (0 to 499).
pub fn woman(n: u32) -> String {
    resident_id(&format!("52260119850314{:03}", (n % 500) * 2))
}

/// A registration request for a woman born 1985-03-14, with the given identity number (or none).
/// Women with different identity numbers are different women: each has her own phone and house
/// (taken from the number), so that matching, which weighs every field, tells them apart as it
/// would tell apart real namesakes born the same day.
pub fn request(
    organisation: &str,
    local: &str,
    name: &str,
    resident: Option<&str>,
) -> RegisterSourceRecordRequest {
    const VILLAGES: [&str; 20] = [
        "大牌坊",
        "平寨",
        "乌东",
        "控拜",
        "南猛",
        "季刀",
        "大利",
        "占里",
        "堂安",
        "岜沙",
        "郎德",
        "西江",
        "肇兴",
        "地扪",
        "黄岗",
        "銮里",
        "高增",
        "小黄",
        "加榜",
        "岜扒",
    ];
    let house = resident.map_or("0".to_owned(), |id| id[14..17].to_owned());
    let village = VILLAGES[house.parse::<usize>().unwrap_or(0) / 2 % VILLAGES.len()];
    RegisterSourceRecordRequest {
        organisation_code: organisation.into(),
        local_patient_number: local.into(),
        demographics: Some(Demographics {
            name: name.into(),
            sex: "2".into(),
            birth_date: "1985-03-14".into(),
            ethnicity: "06".into(),
            phone: format!("1388550{house:0>4}"),
            address: Some(Address {
                division_code: "522601".into(),
                line: format!("{village}村{house}号"),
            }),
        }),
        identifiers: resident
            .map(|id| Identifier {
                system: "urn:hie:id:resident".into(),
                value: id.into(),
            })
            .into_iter()
            .collect(),
    }
}

/// The checked draft of a request, for tests that call the services directly.
pub fn draft(request: RegisterSourceRecordRequest) -> hie_population::domain::SourceRecordDraft {
    hie_population::grpc::source_record_draft(request).expect("the test request is valid")
}

/// The request context of a data steward (role administrator), for the review queue and
/// manual link decisions.
pub fn steward() -> hie_core::context::RequestContext {
    hie_core::context::RequestContext::from_metadata(
        &administrator(tonic::Request::new(())).unwrap().metadata().clone(),
        None,
    )
    .expect("the steward's context is valid")
}

/// Rows in `table`, once the audit events of reads answered so far are committed (they are
/// written behind the answer).
pub async fn count(exchange: &Exchange, table: &str) -> i64 {
    exchange.access.audit().flush().await.unwrap();
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
        .fetch_one(exchange.database.pool())
        .await
        .unwrap();
    n
}

/// The request context of the storage tests: a clinician treating the patient.
pub fn ctx() -> hie_core::context::RequestContext {
    hie_core::context::RequestContext::from_metadata(
        &clinician_treating(tonic::Request::new(()))
            .unwrap()
            .metadata()
            .clone(),
        None,
    )
    .expect("a complete context")
}
