//! The card service's key files: the token key (what turns a card number into the keyed hash
//! the database keeps) and the issuers' master keys (one per card type, from which each chip
//! card's own key is derived). Read at start-up; created when absent for development. A start
//! that finds cards stored under a token key the settings do not hold refuses, instead of
//! quietly losing every card under a new key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hie_cards::domain::CardType;
use hie_cards::domain::keys::{
    ChipAuthenticator, Chips, HmacSha256Chip, SecretKey, TokenKeys, generate_secret,
};
use hie_core::Error;
use hie_core::db::Database;

use crate::{Settings, key_files};

impl Settings {
    /// The card token key file: as set, or beside the audit key.
    pub fn card_token_key_file(&self) -> PathBuf {
        self.cards
            .token_key_file
            .clone()
            .unwrap_or_else(|| self.audit_key_file().with_file_name("card-token.key"))
    }

    /// The folder of the issuers' master keys: as set, or beside the audit key.
    pub fn card_issuer_key_folder(&self) -> PathBuf {
        self.cards.issuer_key_folder.clone().unwrap_or_else(|| {
            self.audit_key_file()
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
    }

    /// The master key file of one card type's issuer.
    pub fn card_issuer_key_file(&self, card_type: CardType) -> PathBuf {
        self.card_issuer_key_folder()
            .join(format!("{}.issuer.key", card_type.code()))
    }
}

/// The key in `path`, created when `create` says so and it does not exist.
fn key(path: &Path, field: &str, create: Option<&str>) -> Result<Option<SecretKey>, Error> {
    let secret = match key_files::read_secret(path, field)? {
        Some((secret, _)) => secret,
        None => match create {
            None => return Ok(None),
            Some(what) => {
                let secret = generate_secret();
                key_files::create_secret(path, field, &secret, &[])?;
                tracing::warn!(path = %path.display(), "created a new {what}; back it up");
                secret.to_vec()
            }
        },
    };
    SecretKey::from_secret(&secret)
        .map(Some)
        .map_err(|reason| Error::precondition(field, format!("{}: {reason}", path.display())))
}

/// The token keys and each card type's chip authenticator, as the settings name them.
pub async fn load(settings: &Settings, database: &Database) -> Result<(TokenKeys, Chips), Error> {
    let field = "settings.cards.token_key_file";
    let path = settings.card_token_key_file();
    let newest_key: Option<(String,)> =
        sqlx::query_as("SELECT token_key_id FROM cards ORDER BY updated_at DESC LIMIT 1")
            .fetch_optional(database.pool())
            .await?;
    let create = newest_key
        .is_none()
        .then_some("card token key (without it no card can be found)");
    let current = key(&path, field, create)?.ok_or_else(|| {
        Error::precondition(
            field,
            format!(
                "{} does not exist, and the exchange holds cards stored under a token key: restore that key file",
                path.display()
            ),
        )
    })?;
    let mut retired = Vec::with_capacity(settings.cards.retired_token_key_files.len());
    for (i, path) in settings.cards.retired_token_key_files.iter().enumerate() {
        let field = format!("settings.cards.retired_token_key_files[{i}]");
        retired.push(
            key(path, &field, None)?
                .ok_or_else(|| Error::precondition(&field, format!("{} does not exist", path.display())))?,
        );
    }
    if let Some((id,)) = newest_key
        && current.id() != id
        && retired.iter().all(|k| k.id() != id)
    {
        return Err(Error::precondition(
            field,
            format!(
                "cards are stored under token key {id}, which neither token_key_file nor retired_token_key_files \
                 holds; to rotate keys, list the old key file in retired_token_key_files"
            ),
        ));
    }
    let mut chips = Vec::with_capacity(CardType::ALL.len());
    for card_type in CardType::ALL {
        let field = "settings.cards.issuer_key_folder";
        let what = format!("development master key for the {} issuer", card_type.name());
        let master = key(&settings.card_issuer_key_file(card_type), field, Some(&what))?
            .ok_or_else(|| Error::Internal("a created key file was not read back".into()))?;
        let chip: Arc<dyn ChipAuthenticator> = Arc::new(HmacSha256Chip::new(master));
        chips.push((card_type, chip));
    }
    Ok((TokenKeys::new(current, retired), Chips::new(chips)))
}
