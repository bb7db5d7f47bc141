//! Secret key files: hex on the first line, optional lines after it for the key's owner to read.
//! Created readable by their owner only; the secret never reaches a log line or an error, only
//! the file's path does.

use std::path::Path;

use hie_core::Error;

/// A key file's secret and the lines after it.
pub type SecretFile = (Vec<u8>, Vec<String>);

/// The secret in `path` and the lines after it, or `None` when the file does not exist.
/// `field` names the setting that points at the file, for errors.
pub fn read_secret(path: &Path, field: &str) -> Result<Option<SecretFile>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(Error::precondition(
                field,
                format!("cannot read {}: {error}", path.display()),
            ));
        }
    };
    let mut lines = text.lines().map(str::trim).filter(|line| !line.is_empty());
    let secret = lines.next().and_then(decode_hex).ok_or_else(|| {
        Error::precondition(
            field,
            format!(
                "{} is not a key: expected hex digits on the first line",
                path.display()
            ),
        )
    })?;
    Ok(Some((secret, lines.map(str::to_owned).collect())))
}

/// Writes `secret` in hex, then `extra` lines, to a new file readable by its owner only.
pub fn create_secret(path: &Path, field: &str, secret: &[u8], extra: &[String]) -> Result<(), Error> {
    use std::io::Write;
    if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(folder)
            .map_err(|e| Error::precondition(field, format!("cannot create {}: {e}", folder.display())))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut text = hie_core::digest::hex(secret);
    for line in extra {
        text.push('\n');
        text.push_str(line);
    }
    text.push('\n');
    options
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| Error::precondition(field, format!("cannot write {}: {e}", path.display())))
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}
