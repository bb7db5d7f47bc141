//! The HL7 v2 adapter end to end: an MLLP client sends to the adapter, the adapter forwards to
//! the real exchange over mutual TLS with the hospital's certificate, and the registries are
//! checked. An exchange outage, dead letters and their replay, a local merge (A40), frames that
//! are broken in every way a network breaks them, and a client nobody here wrote (`mllp_send`
//! from PyPI's `hl7` package).

use std::net::SocketAddr;
use std::time::Duration;

use hie_adapter_hl7v2::forwarder::Backoff;
use hie_adapter_hl7v2::hl7::{Charset, Message};
use hie_adapter_hl7v2::listener::ListenerSettings;
use hie_adapter_hl7v2::mllp::{END_BLOCK, START_BLOCK, frame};
use hie_adapter_hl7v2::run::{AdapterSettings, RunningAdapter};
use hie_adapter_hl7v2::translate::Hospital;
use hie_adapter_relay::run::{RelaySettings, TlsFiles};
use hie_core::domain::OrganisationCode;
use hie_proto::population::{Identifier, ResolveIdentifierRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::harness::{TestDb, count, on_every_backend, population_client, woman};
use crate::trust::{Fixture, channel_of, fixture, fixture_on};

on_every_backend!(
    a_hospital_feed_fills_both_registries_once_whatever_is_resent,
    an_exchange_outage_loses_nothing_and_each_patients_messages_keep_their_order,
    a_message_the_exchange_refuses_waits_as_a_dead_letter_until_replayed_after_a_fix,
    an_a40_retires_the_prior_number_into_the_surviving_one,
    a_document_the_hospital_keeps_is_retrieved_through_its_adapters_gateway_by_the_exchange_alone,
);

/// The relay of hospital QDN-H01's adapters, sending to `exchange` with the hospital's
/// certificate.
pub(crate) fn relay_settings(
    fixture: &Fixture,
    exchange: SocketAddr,
    data: &std::path::Path,
) -> RelaySettings {
    RelaySettings {
        exchange_url: format!("https://localhost:{}", exchange.port()),
        tls: Some(TlsFiles {
            ca: fixture.folder.ca_cert(),
            cert: fixture.folder.organisation_cert("QDN-H01"),
            key: fixture.folder.organisation_key("QDN-H01"),
            server_name: None,
        }),
        hospital: Hospital::in_china(OrganisationCode::parse("QDN-H01").unwrap()),
        data_folder: data.to_path_buf(),
        user: "hospital-interface".to_owned(),
        lanes: 4,
        backoff: Backoff {
            first: Duration::from_millis(20),
            most: Duration::from_millis(200),
        },
        keep_delivered: Duration::from_secs(86_400),
        gateway: None,
    }
}

/// The HL7 v2 adapter of hospital QDN-H01.
fn settings(fixture: &Fixture, exchange: SocketAddr, data: &std::path::Path) -> AdapterSettings {
    AdapterSettings {
        listen: "127.0.0.1:0".parse().unwrap(),
        listener: ListenerSettings::default(),
        relay: relay_settings(fixture, exchange, data),
    }
}

async fn adapter_for(fixture: &Fixture, data: &std::path::Path) -> RunningAdapter {
    hie_adapter_hl7v2::run::start(settings(fixture, fixture.server.address(), data))
        .await
        .unwrap()
}

/// Sends one message over a fresh MLLP connection; the acknowledgement.
async fn send(adapter: SocketAddr, message: &str) -> Message {
    let mut connection = TcpStream::connect(adapter).await.unwrap();
    send_on(&mut connection, message.as_bytes()).await
}

async fn send_on(connection: &mut TcpStream, message: &[u8]) -> Message {
    connection.write_all(&frame(message)).await.unwrap();
    read_ack(connection).await
}

async fn read_ack(connection: &mut TcpStream) -> Message {
    let mut received = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        connection
            .read_exact(&mut byte)
            .await
            .expect("an acknowledgement");
        match byte[0] {
            START_BLOCK => received.clear(),
            END_BLOCK => break,
            b => received.push(b),
        }
    }
    connection.read_exact(&mut byte).await.unwrap();
    Message::parse(&received, Charset::Utf8).expect("the acknowledgement parses")
}

fn ack_code(ack: &Message) -> String {
    ack.value("MSA", 1)
}

/// Waits until the journal holds nothing pending (the forwarder took everything).
pub(crate) async fn settled(adapter: &RunningAdapter) -> hie_adapter_hl7v2::journal::Status {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = adapter.journal().status().await.unwrap();
        if status.pending == 0 {
            return status;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still pending: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn msh(kind: &str, control: &str) -> String {
    format!("MSH|^~\\&|HIS|QDN-H01|HIE|HIE|20261204101500||{kind}|{control}|P|2.5.1|||||CHN|UNICODE UTF-8\r")
}

fn pid(number: &str, name: &str, resident_id: &str) -> String {
    format!(
        "PID|1||{number}^^^QDN-H01^MR~{resident_id}^^^CHN^NI||{name}||19850314|F|||凯里市营盘东路8号^^凯里市^贵州省^556000^CHN^H^^522601||1398555{}0\r",
        &resident_id[14..17]
    )
}

fn pv1(class: &str, visit: &str, department: &str) -> String {
    format!(
        "PV1|1|{class}|{department}^301^02||||D001^李^医生||||||||||||{visit}|||||||||||||||||||||||||20261204100000|20261206120000\r"
    )
}

fn adt(
    trigger: &str,
    control: &str,
    number: &str,
    name: &str,
    n: u32,
    visit: Option<(&str, &str)>,
) -> String {
    let mut message = format!(
        "{}EVN|{trigger}|20261204101500\r{}",
        msh(&format!("ADT^{trigger}"), control),
        pid(number, name, &woman(n))
    );
    if let Some((class, visit)) = visit {
        message.push_str(&pv1(class, visit, "内科"));
    }
    message
}

fn oru(control: &str, number: &str, n: u32) -> String {
    format!(
        "{}{}OBR|1||LAB-{control}|GLU^血糖^L|||20261204080000|||||||||D002^王^||||||20261204090000\rOBX|1|NM|GLU^血糖^L||6.1|mmol/L|3.9-6.1|N|||F\r",
        msh("ORU^R01^ORU_R01", control),
        pid(number, "王秀英", &woman(n))
    )
}

fn mdm(control: &str, number: &str, n: u32) -> String {
    format!(
        "{}{}TXA|1|DS^出院小结^LOCAL|TX|20261204|D001|||20261204|D001||||DOC-{control}||||AU|N\rOBX|1|TX|DS||患者好转出院\\.br\\嘱定期复查\r",
        msh("MDM^T02^MDM_T02", control),
        pid(number, "王秀英", &woman(n))
    )
}

async fn resolve(fixture: &Fixture, number: &str) -> String {
    population_client(channel_of(fixture, "QDN-H01").await)
        .resolve_identifier(ResolveIdentifierRequest {
            identifier: Some(Identifier {
                system: "urn:hie:org:QDN-H01:patient".into(),
                value: number.into(),
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .person_id
}

async fn a_hospital_feed_fills_both_registries_once_whatever_is_resent(db: TestDb) {
    let fixture = fixture(db).await;
    let data = tempfile::tempdir().unwrap();
    let adapter = adapter_for(&fixture, data.path()).await;
    let at = adapter.intake_address();
    let messages = [
        adt("A04", "M1", "P100", "王秀英", 1, Some(("O", "V1"))),
        adt("A08", "M2", "P100", "王秀英", 1, None),
        adt("A01", "M3", "P100", "王秀英", 1, Some(("I", "V2"))),
        adt("A02", "M4", "P100", "王秀英", 1, Some(("I", "V2"))),
        adt("A03", "M5", "P100", "王秀英", 1, Some(("I", "V2"))),
        oru("M6", "P100", 1),
        mdm("M7", "P100", 1),
    ];
    // One connection for the whole stream, as an interface engine keeps it.
    let mut connection = TcpStream::connect(at).await.unwrap();
    for message in &messages {
        let ack = send_on(&mut connection, message.as_bytes()).await;
        assert_eq!(ack_code(&ack), "AA", "{}", ack.value("MSA", 3));
        assert_eq!(
            ack.value("MSA", 2),
            Message::parse(message.as_bytes(), Charset::Utf8)
                .unwrap()
                .value("MSH", 10)
        );
    }
    // The sender lost an acknowledgement and sends the admission again: accepted, not repeated.
    let again = send(at, &messages[2]).await;
    assert_eq!(ack_code(&again), "AA");
    assert!(
        again.value("MSA", 3).contains("duplicate"),
        "{}",
        again.value("MSA", 3)
    );
    let status = settled(&adapter).await;
    assert_eq!((status.delivered, status.dead_letters), (7, 0), "{status:?}");

    let exchange = fixture.server.exchange();
    assert_eq!(
        count(exchange, "source_records WHERE local_patient_number = 'P100'").await,
        1
    );
    assert_eq!(
        count(
            exchange,
            "encounters WHERE visit_number = 'V1' AND kind = 'outpatient'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            exchange,
            "encounters WHERE visit_number = 'V2' AND kind = 'discharge'"
        )
        .await,
        1
    );
    assert_eq!(count(exchange, "documents").await, 2);
    let person = resolve(&fixture, "P100").await;
    assert!(!person.is_empty());

    // The adapter restarts: nothing is sent twice, and a resend is still recognised.
    adapter.stop().await;
    let adapter = adapter_for(&fixture, data.path()).await;
    assert_eq!(
        ack_code(&send(adapter.intake_address(), &messages[5]).await),
        "AA"
    );
    let status = settled(&adapter).await;
    assert_eq!(status.delivered, 7);
    assert_eq!(count(fixture.server.exchange(), "documents").await, 2);
    adapter.stop().await;
}

async fn an_exchange_outage_loses_nothing_and_each_patients_messages_keep_their_order(db: TestDb) {
    // The exchange's address is known, but nothing listens there yet.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let exchange_at = reserved.local_addr().unwrap();
    drop(reserved);
    let pki = fixture(TestDb::sqlite().await).await;
    let data = tempfile::tempdir().unwrap();
    let adapter = hie_adapter_hl7v2::run::start(settings(&pki, exchange_at, data.path()))
        .await
        .unwrap();
    let mut sent = 0;
    for patient in 0..5u32 {
        let number = format!("Q{patient}");
        let name = ["张伟", "李娜", "王芳", "刘洋", "陈静"][patient as usize];
        for (i, trigger) in ["A04", "A08", "A01", "A03"].iter().enumerate() {
            let (admission, outpatient) = (format!("A-{patient}"), format!("O-{patient}"));
            let visit = match *trigger {
                "A04" => Some(("O", outpatient.as_str())),
                "A08" => None,
                _ => Some(("I", admission.as_str())),
            };
            let message = adt(
                trigger,
                &format!("OUT-{patient}-{i}"),
                &number,
                name,
                100 + patient,
                visit,
            );
            assert_eq!(ack_code(&send(adapter.intake_address(), &message).await), "AA");
            sent += 1;
        }
    }
    let status = adapter.journal().status().await.unwrap();
    assert_eq!(status.pending, sent);
    // The exchange comes up where the adapter expects it (the same PKI, a database of its own).
    let exchange = fixture_on(db, exchange_at).await;
    let _ = pki;
    // The exchange's own fixture issued new certificates: the adapter must use them.
    adapter.stop().await;
    let adapter = hie_adapter_hl7v2::run::start(settings(&exchange, exchange_at, data.path()))
        .await
        .unwrap();
    let status = settled(&adapter).await;
    assert_eq!((status.delivered, status.dead_letters), (sent, 0), "{status:?}");
    let e = exchange.server.exchange();
    assert_eq!(count(e, "source_records").await, 5);
    // Admission then discharge, in that order, for every patient: the visit ended discharged.
    assert_eq!(
        count(
            e,
            "encounters WHERE visit_number LIKE 'A-%' AND kind = 'discharge'"
        )
        .await,
        5
    );
    assert_eq!(
        count(
            e,
            "encounters WHERE visit_number LIKE 'O-%' AND kind = 'outpatient'"
        )
        .await,
        5
    );
    adapter.stop().await;
}

async fn a_message_the_exchange_refuses_waits_as_a_dead_letter_until_replayed_after_a_fix(db: TestDb) {
    let fixture = fixture(db).await;
    let data = tempfile::tempdir().unwrap();
    let adapter = adapter_for(&fixture, data.path()).await;
    let at = adapter.intake_address();
    // Results for a patient the hospital never registered: the adapter accepts them, the
    // exchange cannot place them.
    assert_eq!(ack_code(&send(at, &oru("D1", "P300", 3)).await), "AA");
    let status = settled(&adapter).await;
    assert_eq!(status.dead_letters, 1, "{status:?}");
    let dead = adapter.journal().dead_letters(10).await.unwrap();
    assert_eq!(dead[0].message_type, "ORU^R01");
    assert!(
        dead[0].last_error.starts_with("NotFound"),
        "{}",
        dead[0].last_error
    );
    // Other messages go on meanwhile.
    assert_eq!(
        ack_code(&send(at, &adt("A04", "D2", "P300", "王秀英", 3, Some(("O", "V3")))).await),
        "AA"
    );
    settled(&adapter).await;
    assert_eq!(count(fixture.server.exchange(), "documents").await, 0);
    // The operator replays it once the patient is registered.
    assert_eq!(adapter.journal().replay(None).await.unwrap(), 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while count(fixture.server.exchange(), "documents").await == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the replayed message was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = settled(&adapter).await;
    assert_eq!((status.dead_letters, status.delivered), (0, 2));
    adapter.stop().await;
}

async fn an_a40_retires_the_prior_number_into_the_surviving_one(db: TestDb) {
    let fixture = fixture(db).await;
    let data = tempfile::tempdir().unwrap();
    let adapter = adapter_for(&fixture, data.path()).await;
    let at = adapter.intake_address();
    // Registered twice at the front desk, under two numbers; the second time with so many
    // mistakes that matching kept the records apart.
    assert_eq!(
        ack_code(&send(at, &adt("A04", "G1", "P400", "杨光明", 400, Some(("O", "V40")))).await),
        "AA"
    );
    assert_eq!(
        ack_code(&send(at, &adt("A04", "G2", "P401", "龙秀珍", 401, Some(("O", "V41")))).await),
        "AA"
    );
    settled(&adapter).await;
    let (surviving, prior) = (resolve(&fixture, "P400").await, resolve(&fixture, "P401").await);
    assert_ne!(surviving, prior);
    let merge = format!(
        "{}EVN|A40|20261204101500\r{}MRG|P401^^^QDN-H01^MR\r",
        msh("ADT^A40^ADT_A39", "G3"),
        pid("P400", "杨光明", &woman(400))
    );
    assert_eq!(ack_code(&send(at, &merge).await), "AA");
    // An A40 naming a number the hospital never registered: a dead letter saying which.
    let unknown = merge.replace("G3", "G4").replace("MRG|P401", "MRG|P999");
    assert_eq!(ack_code(&send(at, &unknown).await), "AA");
    let status = settled(&adapter).await;
    assert_eq!((status.delivered, status.dead_letters), (3, 1), "{status:?}");
    let dead = adapter.journal().dead_letters(10).await.unwrap();
    assert!(
        dead[0].last_error.contains("prior_local_patient_number"),
        "{}",
        dead[0].last_error
    );
    // The prior number still resolves, now to the surviving person; its person is merged.
    assert_eq!(resolve(&fixture, "P401").await, surviving);
    let exchange = fixture.server.exchange();
    assert_eq!(
        count(
            exchange,
            &format!("persons WHERE id = '{prior}' AND merged_into = '{surviving}'")
        )
        .await,
        1
    );
    assert_eq!(
        count(
            exchange,
            "source_records WHERE local_patient_number = 'P401' AND retired_into IS NOT NULL"
        )
        .await,
        1
    );
    // The same merge again changes nothing.
    assert_eq!(ack_code(&send(at, &merge.replace("G3", "G5")).await), "AA");
    let status = settled(&adapter).await;
    assert_eq!(status.delivered, 4);
    adapter.stop().await;
}

/// `mllp_send` from PyPI's `hl7` package: `.ci/run` installs it into a virtual environment and
/// names it in `HIE_TEST_MLLP_SEND`; elsewhere the usual place is tried.
fn mllp_send() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("HIE_TEST_MLLP_SEND")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("hie-py/bin/mllp_send"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "mllp_send is not at {}: .ci/run installs it (pip install hl7)",
        path.display()
    );
    eprintln!(
        "skipped: mllp_send is not at {} (pip install hl7 into {}/hie-py)",
        path.display(),
        std::env::temp_dir().display()
    );
    None
}

#[tokio::test]
async fn a_python_hl7_client_gets_the_acknowledgements_hl7_expects() {
    let Some(mllp_send) = mllp_send() else { return };
    let fixture = fixture(TestDb::sqlite().await).await;
    let data = tempfile::tempdir().unwrap();
    let adapter = adapter_for(&fixture, data.path()).await;
    let gbk_text =
        adt("A04", "PY2", "P501", "吴阿妹", 501, Some(("O", "PV2"))).replace("UNICODE UTF-8", "GBK");
    let (gbk, _, _) = encoding_rs::GBK.encode(&gbk_text);
    let no_visit_number = adt("A01", "PY3", "P502", "李娜", 502, Some(("I", "")));
    let unsupported = format!("{}SCH|1\r", msh("SIU^S12^SIU_S12", "PY4"));
    let mut file = Vec::new();
    for message in [
        adt("A04", "PY1", "P500", "王秀英", 500, Some(("O", "PV1"))).into_bytes(),
        gbk.into_owned(),
        no_visit_number.into_bytes(),
        unsupported.into_bytes(),
    ] {
        file.extend(frame(&message));
    }
    let messages = data.path().join("messages.hl7");
    std::fs::write(&messages, file).unwrap();
    let port = adapter.intake_address().port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&mllp_send)
            .args(["--port", &port, "--file"])
            .arg(&messages)
            .arg("127.0.0.1")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // mllp_send prints each answer as it came off the wire, framing and all, one per line.
    let printed = String::from_utf8(output.stdout).unwrap();
    let acks: Vec<Message> = printed
        .split('\n')
        .map(|line| line.trim_matches(|c| c == '\u{b}' || c == '\u{1c}' || c == '\r'))
        .filter(|line| line.starts_with("MSH"))
        .map(|line| Message::parse(line.as_bytes(), Charset::Utf8).unwrap())
        .collect();
    let summary: Vec<(String, String, String, String)> = acks
        .iter()
        .map(|a| {
            (
                a.value("MSA", 1),
                a.value("MSA", 2),
                a.field("ERR", 2).component(1),
                a.field("ERR", 3).component(1),
            )
        })
        .collect();
    let expected = [
        ("AA", "PY1", "", ""),
        ("AA", "PY2", "", ""),
        ("AE", "PY3", "PV1", "101"),
        ("AR", "PY4", "MSH", "200"),
    ];
    assert_eq!(
        summary,
        expected
            .map(|(a, b, c, d)| (a.to_owned(), b.to_owned(), c.to_owned(), d.to_owned()))
            .to_vec()
    );
    assert_eq!(acks[2].field("ERR", 2).component(3), "19");
    settled(&adapter).await;
    // The GBK message's name arrived as the characters the hospital wrote.
    assert_eq!(
        count(fixture.server.exchange(), "source_records WHERE name = '吴阿妹'").await,
        1
    );
    adapter.stop().await;
}

#[tokio::test]
async fn broken_frames_are_refused_one_by_one_and_the_listener_serves_everyone_else() {
    let fixture = fixture(TestDb::sqlite().await).await;
    let data = tempfile::tempdir().unwrap();
    let mut settings = settings(&fixture, fixture.server.address(), data.path());
    settings.listener.max_message_bytes = 4096;
    let adapter = hie_adapter_hl7v2::run::start(settings).await.unwrap();
    let at = adapter.intake_address();
    let good = |control: &str| adt("A28", control, "P600", "王秀英", 600, None);

    // A sender that stops in the middle of a frame and goes away.
    let mut quitter = TcpStream::connect(at).await.unwrap();
    quitter.write_all(&[START_BLOCK]).await.unwrap();
    quitter.write_all(b"MSH|^~\\&|HIS|QDN-H01").await.unwrap();

    let mut connection = TcpStream::connect(at).await.unwrap();
    let refused = |ack: &Message| {
        (
            ack_code(ack),
            ack.field("ERR", 2).component(1),
            ack.field("ERR", 2).component(3),
        )
    };
    // No MSH at all.
    let ack = send_on(&mut connection, b"PID|1||X^^^QDN-H01^MR\r").await;
    assert_eq!(refused(&ack), ("AR".into(), "MSH".into(), "".into()));
    // A letter as the field separator.
    let ack = send_on(&mut connection, b"MSHA^~\\&AHIS\r").await;
    assert_eq!(refused(&ack), ("AR".into(), "MSH".into(), "1".into()));
    // Declared UTF-8, sent as GBK.
    let declared_utf8 = good("B1");
    let (gbk, _, _) = encoding_rs::GBK.encode(&declared_utf8);
    let ack = send_on(&mut connection, &gbk).await;
    assert_eq!(refused(&ack), ("AR".into(), "MSH".into(), "18".into()));
    assert_eq!(ack.value("MSA", 2), "B1", "the refusal still names the message");
    // A character set nobody knows.
    let ack = send_on(
        &mut connection,
        good("B2").replace("UNICODE UTF-8", "EBCDIC").as_bytes(),
    )
    .await;
    assert_eq!(refused(&ack), ("AR".into(), "MSH".into(), "18".into()));
    // Too large.
    let oversized = format!("{}NTE|1||{}\r", good("B3"), "x".repeat(5000));
    let ack = send_on(&mut connection, oversized.as_bytes()).await;
    assert_eq!(ack_code(&ack), "AR");
    assert!(
        ack.value("ERR", 8).contains("at most 4096"),
        "{}",
        ack.value("ERR", 8)
    );
    // A frame cut off by the next start block: one refusal for it, then the next one's answer.
    let mut cut = vec![START_BLOCK];
    cut.extend_from_slice(good("B4").as_bytes());
    cut.truncate(40);
    connection.write_all(&cut).await.unwrap();
    connection.write_all(&frame(good("B5").as_bytes())).await.unwrap();
    let first = read_ack(&mut connection).await;
    assert_eq!(ack_code(&first), "AR");
    assert!(
        first.value("ERR", 8).contains("cut off"),
        "{}",
        first.value("ERR", 8)
    );
    assert_eq!(ack_code(&read_ack(&mut connection).await), "AA");
    // And the connection still takes good messages.
    assert_eq!(
        ack_code(&send_on(&mut connection, good("B6").as_bytes()).await),
        "AA"
    );
    drop(quitter);
    assert_eq!(ack_code(&send(at, &good("B7")).await), "AA");
    let status = settled(&adapter).await;
    assert_eq!(status.delivered, 3);
    adapter.stop().await;
}

async fn a_document_the_hospital_keeps_is_retrieved_through_its_adapters_gateway_by_the_exchange_alone(
    db: TestDb,
) {
    use hie_adapter_hl7v2::gateway::{GatewaySettings, GatewayTls, file_stem};
    use hie_emr::grpc::gateway_client::{GatewayEndpoint, GrpcGateways};
    use hie_proto::emr::emr_registry_client::EmrRegistryClient;
    use hie_proto::emr::{
        Author, Code, DocumentEntry, DocumentSubmission, RegisterDocumentSetRequest, RetrieveDocumentRequest,
    };
    use hie_proto::hospital::hospital_gateway_client::HospitalGatewayClient;

    let gateway_at = {
        let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        reserved.local_addr().unwrap()
    };
    // The exchange fetches QDN-H01's documents from its gateway, presenting its own certificate.
    let fixture = crate::trust::fixture_configured(db, "127.0.0.1:0".parse().unwrap(), |exchange, pki| {
        let tls = hie_transport::tls::client_config(
            &pki.ca_cert(),
            "localhost",
            Some((&pki.server_cert(), &pki.server_key())),
        )
        .unwrap();
        let endpoint = GatewayEndpoint {
            organisation: OrganisationCode::parse("QDN-H01").unwrap(),
            url: format!("https://localhost:{}", gateway_at.port()),
            tls: Some(tls),
        };
        let gateways = GrpcGateways::new(vec![endpoint], Duration::from_secs(10), 1 << 20).unwrap();
        exchange.use_gateways(std::sync::Arc::new(gateways), 1 << 20);
    })
    .await;
    let documents = tempfile::tempdir().unwrap();
    let content = "出院小结：患者好转出院，嘱两周后复查。".as_bytes().to_vec();
    let unique_id = "urn:oid:2.16.156.10011.1.99.1";
    std::fs::write(
        documents.path().join(format!("{}.txt", file_stem(unique_id))),
        &content,
    )
    .unwrap();
    let exchange_certificate = std::fs::read_to_string(fixture.folder.server_cert()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let mut adapter_settings = settings(&fixture, fixture.server.address(), data.path());
    adapter_settings.relay.gateway = Some(GatewaySettings {
        listen: gateway_at,
        documents_folder: documents.path().to_path_buf(),
        tls: Some(GatewayTls {
            cert: fixture.folder.server_cert(),
            key: fixture.folder.server_key(),
            client_ca: fixture.folder.ca_cert(),
            exchange_fingerprints: vec![
                hie_transport::pki::fingerprint_of_pem(&exchange_certificate).unwrap(),
            ],
        }),
    });
    let adapter = hie_adapter_hl7v2::run::start(adapter_settings).await.unwrap();
    assert_eq!(
        ack_code(
            &send(
                adapter.intake_address(),
                &adt("A04", "F1", "P700", "王秀英", 700, Some(("O", "F700")))
            )
            .await
        ),
        "AA"
    );
    settled(&adapter).await;

    // The hospital registers the document's metadata only: it keeps the content.
    let code = |scheme: &str, code: &str| {
        Some(Code {
            scheme: scheme.into(),
            code: code.into(),
            display: code.into(),
        })
    };
    let digest = ring::digest::digest(&ring::digest::SHA256, &content);
    let entry = DocumentEntry {
        unique_id: unique_id.into(),
        source_patient_id: Some(Identifier {
            system: "urn:hie:org:QDN-H01:patient".into(),
            value: "P700".into(),
        }),
        class_code: code("hie-class", "discharge-summary"),
        type_code: code("LOINC", "18842-5"),
        format_code: code("hie-format", "text"),
        confidentiality_code: "N".into(),
        healthcare_facility_type_code: code("hie-facility", "hospital"),
        practice_setting_code: code("hie-practice", "internal-medicine"),
        creation_time: Some(hie_proto::timestamp(chrono::Utc::now())),
        author: Some(Author {
            person: "D001".into(),
            institution: "QDN-H01".into(),
            ..Default::default()
        }),
        language_code: "zh-CN".into(),
        mime_type: "text/plain".into(),
        hash: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
        size: content.len() as i64,
        repository_organisation_code: "QDN-H01".into(),
        title: "出院小结".into(),
        ..Default::default()
    };
    let h01 = channel_of(&fixture, "QDN-H01").await;
    let mut emr = EmrRegistryClient::with_interceptor(
        h01,
        crate::harness::clinician_treating as crate::harness::ContextInterceptor,
    );
    emr.register_document_set(RegisterDocumentSetRequest {
        submission_set_unique_id: "urn:oid:2.16.156.10011.1.99.1.set".into(),
        documents: vec![DocumentSubmission {
            entry: Some(entry),
            content: Vec::new(),
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let retrieved = emr
        .retrieve_document(RetrieveDocumentRequest {
            unique_id: unique_id.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retrieved.content, content);
    assert_eq!(retrieved.retrieved_from, "QDN-H01");

    // Another hospital's certificate, from the same CA, gets nothing from the gateway.
    let tls = hie_transport::tls::client_config(
        &fixture.folder.ca_cert(),
        "localhost",
        Some((
            &fixture.folder.organisation_cert("QDN-H02"),
            &fixture.folder.organisation_key("QDN-H02"),
        )),
    )
    .unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("https://localhost:{}", gateway_at.port()))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let refused = HospitalGatewayClient::new(channel)
        .retrieve_document(hie_proto::hospital::RetrieveDocumentRequest {
            unique_id: unique_id.into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    adapter.stop().await;
}
