//! The architecture invariants of ARCHITECTURE.md, checked on the source tree: each test fails
//! naming the file and line that breaks one.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits in the workspace")
        .to_path_buf()
}

/// Every `.rs` file under `folder`, recursively.
fn rust_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(folder) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The service crates: every folder under `services/` with a `src/`.
fn service_crates() -> Vec<(String, PathBuf)> {
    crates_under("services")
}

/// Every folder under `folder` (of the workspace) with a `src/`: its name and its `src/`.
fn crates_under(folder: &str) -> Vec<(String, PathBuf)> {
    let mut crates: Vec<(String, PathBuf)> = std::fs::read_dir(workspace().join(folder))
        .unwrap_or_else(|e| panic!("{folder}/: {e}"))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                p.join("src"),
            )
        })
        .collect();
    crates.sort();
    crates
}

/// The lines of `files` (comments left out) on which `offends` holds, as `path:line: text`.
fn offending_lines(files: &[PathBuf], offends: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if offends(code) {
                let shown = file
                    .strip_prefix(workspace())
                    .unwrap_or(file)
                    .display()
                    .to_string();
                found.push(format!("{shown}:{}: {}", n + 1, code));
            }
        }
    }
    found
}

#[test]
fn a_domain_module_names_neither_sqlx_nor_tonic_nor_prost_nor_a_connection() {
    let mut offending = Vec::new();
    for (_, src) in service_crates() {
        let domain = rust_files(&src.join("domain"));
        offending.extend(offending_lines(&domain, |line| {
            [
                "sqlx::",
                "tonic::",
                "prost::",
                "prost_types::",
                "hie_proto::",
                ".connection()",
            ]
            .iter()
            .any(|name| line.contains(name))
        }));
    }
    assert!(
        offending.is_empty(),
        "domain code touching I/O types:\n{}",
        offending.join("\n")
    );
}

#[test]
fn no_crate_reaches_into_another_crates_store() {
    // The composition root (the binary) and one documented exception may: the registry's resolve
    // query joins consent directives through the columns hie-access publishes for it
    // (ARCHITECTURE.md, "a service crate reads and writes only its own tables").
    let allowed = |crate_name: &str, line: &str| {
        crate_name == "server"
            || (crate_name == "population"
                && line.contains("hie_access::store::consent::{StoredDirectives, directive_columns}"))
    };
    let mut offending = Vec::new();
    for (name, src) in service_crates() {
        let own = format!("hie_{name}::store");
        offending.extend(offending_lines(&rust_files(&src), |line| {
            line.contains("::store")
                && line.contains("hie_")
                && !line.contains(&own)
                && line
                    .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                    .any(|path| path.starts_with("hie_") && path.contains("::store"))
                && !allowed(&name, line)
        }));
    }
    assert!(
        offending.is_empty(),
        "a crate reaching another crate's store:\n{}",
        offending.join("\n")
    );
}

#[test]
fn audit_actions_and_event_types_are_never_string_literals_at_call_sites() {
    // The vocabulary lives in hie_core::vocabulary; a literal code elsewhere would be a word the
    // privacy officer's queries and the subscribers' filters do not know.
    let mut files = Vec::new();
    for (_, src) in service_crates() {
        files.extend(rust_files(&src));
    }
    files.retain(|f| !f.ends_with("vocabulary.rs"));
    let codes: Vec<String> = hie_core::vocabulary::AuditAction::ALL
        .iter()
        .map(|a| format!("\"{}\"", a.code()))
        .chain(
            hie_core::vocabulary::EventType::ALL
                .iter()
                .map(|e| format!("\"{}\"", e.code())),
        )
        .collect();
    let offending = offending_lines(&files, |line| {
        codes.iter().any(|code| line.contains(code.as_str()))
    });
    assert!(
        offending.is_empty(),
        "vocabulary spelled as a literal:\n{}",
        offending.join("\n")
    );
}

#[test]
fn every_write_goes_through_the_unit_of_work() {
    // Transactions are opened by the unit of work (and the audit trail's own chaining) only.
    let mut files = Vec::new();
    for (name, src) in service_crates() {
        if name != "core" {
            files.extend(rust_files(&src));
        }
    }
    let allowed = [
        "services/access/src/unit_of_work.rs",
        "services/access/src/store/mod.rs",
        "services/access/src/store/staging.rs",
        // Numbering the event log is bookkeeping of the outbox, as chaining is of the audit
        // trail: it changes no one's data and is not a caller's write.
        "services/events/src/store/mod.rs",
    ];
    files.retain(|f| !allowed.iter().any(|a| f.ends_with(a)));
    let offending = offending_lines(&files, |line| {
        line.contains(".begin_write()") || line.contains("stage_in(")
    });
    assert!(
        offending.is_empty(),
        "a write outside the unit of work:\n{}",
        offending.join("\n")
    );
}

#[test]
fn no_source_file_grows_past_seven_hundred_lines_of_code() {
    // Files are split by noun at about six hundred lines of code (the unit tests beside the code
    // do not count); the bound catches a file that became a dump.
    let mut long = Vec::new();
    for (_, src) in service_crates().into_iter().chain(crates_under("adapters")) {
        for file in rust_files(&src) {
            let text = std::fs::read_to_string(&file).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap_or("").lines().count();
            if code > 700 {
                long.push(format!("{} ({code} lines of code)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these by noun:\n{}", long.join("\n"));
}
