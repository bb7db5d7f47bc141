//! `hie card simulate …`: a simulated card in a simulated reader at a reception desk, for a clerk
//! trying the exchange out, the demo and the tests. The card answers the exchange's challenge
//! with the key its issuer would have provisioned (derived from the issuer's master key file in
//! the settings, as a real issuer does when it personalises the chip); the reader then resolves
//! the card or checks the patient in, over gRPC, as a reception system would.

use clap::{Args, Subcommand, ValueEnum};
use hie_cards::domain::keys::{ChipAuthenticator, HmacSha256Chip, SecretKey};
use hie_cards::domain::{CardNumber, CardType};
use hie_cards::grpc::card_type_to_proto;
use hie_proto::cards as proto;
use hie_proto::cards::card_service_client::CardServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use crate::cli::DatabaseArgs;
use crate::{Settings, key_files};

#[derive(Debug, Subcommand)]
pub enum CardCommand {
    /// A simulated card and reader: resolve a card, or check its holder in.
    #[command(subcommand)]
    Simulate(SimulateCommand),
}

#[derive(Debug, Subcommand)]
pub enum SimulateCommand {
    /// Present the card: the person it belongs to.
    Resolve(ReaderArgs),
    /// Present the card at reception: the person, the visit registered and the summary.
    CheckIn(CheckInArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CardTypeArg {
    ResidentHealth,
    SocialSecurity,
    Bank,
    Citizen,
}

impl CardTypeArg {
    pub fn card_type(self) -> CardType {
        match self {
            CardTypeArg::ResidentHealth => CardType::ResidentHealth,
            CardTypeArg::SocialSecurity => CardType::SocialSecurity,
            CardTypeArg::Bank => CardType::Bank,
            CardTypeArg::Citizen => CardType::Citizen,
        }
    }
}

#[derive(Debug, Args)]
pub struct ReaderArgs {
    /// The card's type.
    #[arg(long = "type", value_enum)]
    pub card_type: CardTypeArg,
    /// The card's number, as printed.
    #[arg(long)]
    pub number: String,
    /// The exchange (plaintext, loopback: the development server).
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub server: String,
    /// Who stands at the desk.
    #[arg(long, default_value = "demo-clerk")]
    pub user: String,
    /// Their role: registration_clerk, nurse or clinician.
    #[arg(long, default_value = "registration_clerk")]
    pub role: String,
    /// The database whose settings name the issuers' key folder (the server's).
    #[command(flatten)]
    pub database: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct CheckInArgs {
    #[command(flatten)]
    pub reader: ReaderArgs,
    /// The organisation checking the patient in.
    #[arg(long)]
    pub organisation: String,
    /// The department the patient is registered to.
    #[arg(long)]
    pub department: String,
    /// The HIS's visit number; the exchange makes one when absent.
    #[arg(long, default_value = "")]
    pub visit_number: String,
    /// An emergency visit rather than an outpatient one.
    #[arg(long)]
    pub emergency: bool,
}

/// A card as its chip behaves: it answers challenges under the key its issuer derived for it.
#[derive(Debug)]
pub struct SimulatedCard {
    pub number: CardNumber,
    chip: HmacSha256Chip,
}

impl SimulatedCard {
    /// The card, personalised with the key the issuer's master key (in the settings' issuer key
    /// folder) derives for it.
    pub fn issued(settings: &Settings, card_type: CardType, number: &str) -> Result<SimulatedCard, String> {
        let number = CardNumber::parse(card_type, number).map_err(|e| format!("--number {e}"))?;
        let path = settings.card_issuer_key_file(card_type);
        let (secret, _) = key_files::read_secret(&path, "settings.cards.issuer_key_folder")
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                format!(
                    "{} does not exist: the simulator personalises cards with the issuer's master key, which the \
                     server creates at its first start; give the server's --database-url or --config",
                    path.display()
                )
            })?;
        let master = SecretKey::from_secret(&secret).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(SimulatedCard {
            number,
            chip: HmacSha256Chip::new(master),
        })
    }

    /// The chip's answer to `challenge`.
    pub fn answer(&self, challenge: &[u8]) -> Vec<u8> {
        self.chip.respond(&self.number, challenge)
    }

    fn proto(&self, number: &str) -> proto::CardNumber {
        proto::CardNumber {
            r#type: card_type_to_proto(self.number.card_type()).into(),
            number: number.to_owned(),
        }
    }

    /// Reads the card in a reader: asks the exchange for a challenge and has the chip answer it.
    pub async fn present(
        &self,
        client: &mut CardServiceClient<Channel>,
        number: &str,
        context: &[(&'static str, String)],
    ) -> Result<proto::CardPresentation, tonic::Status> {
        let challenge = client
            .begin_card_authentication(with_context(
                proto::BeginCardAuthenticationRequest {
                    card: Some(self.proto(number)),
                },
                context,
            ))
            .await?
            .into_inner();
        Ok(proto::CardPresentation {
            card: Some(self.proto(number)),
            chip: Some(proto::ChipResponse {
                challenge_id: challenge.challenge_id,
                mac: self.answer(&challenge.challenge),
            }),
        })
    }
}

/// A request with the desk's context as metadata.
pub fn with_context<T>(message: T, context: &[(&'static str, String)]) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    for (key, value) in context {
        if let Ok(value) = value.parse() {
            request.metadata_mut().insert(*key, value);
        }
    }
    request
}

pub async fn run(settings: &Settings, command: CardCommand) -> Result<(), String> {
    let CardCommand::Simulate(simulate) = command;
    let reader = match &simulate {
        SimulateCommand::Resolve(reader) | SimulateCommand::CheckIn(CheckInArgs { reader, .. }) => reader,
    };
    let card = SimulatedCard::issued(settings, reader.card_type.card_type(), &reader.number)?;
    let channel = Channel::from_shared(reader.server.clone())
        .map_err(|e| format!("--server {}: {e}", reader.server))?
        .connect()
        .await
        .map_err(|e| format!("cannot reach the exchange at {}: {e}", reader.server))?;
    let mut client = CardServiceClient::new(channel);
    let context = [
        (hie_core::context::USER_HEADER, reader.user.clone()),
        (hie_core::context::ROLE_HEADER, reader.role.clone()),
        (hie_core::context::PURPOSE_HEADER, "treatment".to_owned()),
    ];
    let failed = |status: tonic::Status| format!("{:?}: {}", status.code(), status.message());
    let presented = card
        .present(&mut client, &reader.number, &context)
        .await
        .map_err(failed)?;
    let answer = match simulate {
        SimulateCommand::Resolve(_) => {
            let resolved = client
                .resolve_card(with_context(
                    proto::ResolveCardRequest {
                        card: Some(presented),
                    },
                    &context,
                ))
                .await
                .map_err(failed)?
                .into_inner();
            json!({
                "person_id": resolved.person_id,
                "card_id": resolved.card_id,
                "last_four": resolved.last_four,
            })
        }
        SimulateCommand::CheckIn(args) => {
            let checked_in = client
                .check_in(with_context(
                    proto::CheckInRequest {
                        card: Some(presented),
                        organisation_code: args.organisation,
                        department: args.department,
                        visit_number: args.visit_number,
                        attending_practitioner: String::new(),
                        emergency: args.emergency,
                    },
                    &context,
                ))
                .await
                .map_err(failed)?
                .into_inner();
            let encounter = checked_in.encounter.unwrap_or_default();
            let summary = checked_in.summary.unwrap_or_default();
            let demographics = summary.demographics.unwrap_or_default();
            json!({
                "person_id": checked_in.person_id,
                "card_id": checked_in.card_id,
                "visit": {
                    "encounter_id": encounter.encounter_id,
                    "organisation_code": encounter.organisation_code,
                    "visit_number": encounter.visit_number,
                    "department": encounter.department,
                },
                "summary": {
                    "name": demographics.name,
                    "birth_date": demographics.birth_date,
                    "allergies": summary.allergies.len(),
                    "active_problems": summary.active_problems.iter().map(|p| p.code.clone()).collect::<Vec<_>>(),
                    "current_medications": summary.current_medications.len(),
                    "latest_visits": summary.latest_encounters.len(),
                    "some_withheld": summary.some_withheld,
                },
            })
        }
    };
    println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_default());
    Ok(())
}
