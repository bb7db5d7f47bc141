//! `hie dedupe`, `hie link` and `hie generate population-file` as a migration team runs them:
//! real files in, exit codes and messages with line numbers out.

use std::path::Path;
use std::process::{Command, Output};

fn hie(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hie"))
        .args(args)
        .output()
        .expect("the hie binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(folder: &Path, name: &str) -> String {
    folder.join(name).display().to_string()
}

const MAPS: [&str; 20] = [
    "--map",
    "full_name=name",
    "--map",
    "sex=sex",
    "--map",
    "birth_date=birth_date",
    "--map",
    "resident_id=resident_id",
    "--map",
    "phone=phone",
    "--map",
    "address_1=address",
    "--map",
    "city=city",
    "--map",
    "postcode=postcode",
    "--map",
    "province=province",
    "--map",
    "extra:hospital=hospital",
];

/// Generates a population file of `script` in `folder`: the file, its truth, a path for the
/// output, and what the generator said (the `--map` arguments).
fn generated_file(folder: &Path, script: &str, records: &str) -> (String, String, String, String) {
    let (input, truth, out) = (
        path(folder, "people.csv"),
        path(folder, "truth.csv"),
        path(folder, "pairs.csv"),
    );
    let generated = hie(&[
        "generate",
        "population-file",
        "--script",
        script,
        "--records",
        records,
        "--out",
        &input,
        "--truth",
        &truth,
    ]);
    assert!(generated.status.success(), "{}", text(&generated.stderr));
    (input, truth, out, text(&generated.stderr))
}

#[test]
fn a_generated_file_is_deduplicated_and_linked_with_explanations() {
    let folder = tempfile::tempdir().unwrap();
    let (input, _, out, _) = generated_file(folder.path(), "chinese", "3000");

    let model = path(folder.path(), "model.json");
    let mut args = vec![
        "dedupe",
        "--input",
        &input,
        "--out",
        &out,
        "--id-column",
        "record_id",
        "--explain",
    ];
    args.extend(["--save-model", &model]);
    args.extend(MAPS);
    let deduped = hie(&args);
    assert!(deduped.status.success(), "{}", text(&deduped.stderr));
    let written = std::fs::read_to_string(&out).unwrap();
    let mut lines = written.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("id_1,id_2,probability,id_1_hospital,id_2_hospital,match_weight,weight_name"),
        "{header}"
    );
    let rows: Vec<&str> = lines.collect();
    assert!(rows.len() > 500, "{} pairs", rows.len());
    for row in &rows {
        let probability: f64 = row.split(',').nth(2).unwrap().parse().unwrap();
        assert!(probability >= 0.9, "{row}");
    }

    // The same file split in two and linked, with the model just saved.
    let all: Vec<String> = std::fs::read_to_string(&input)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let (left, right) = (path(folder.path(), "left.csv"), path(folder.path(), "right.csv"));
    std::fs::write(&left, all[..1500].join("\n")).unwrap();
    std::fs::write(
        &right,
        [all[0].clone()]
            .iter()
            .chain(&all[1500..])
            .cloned()
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let links = path(folder.path(), "links.csv");
    let mut args = vec![
        "link",
        "--left",
        &left,
        "--right",
        &right,
        "--out",
        &links,
        "--id-column",
        "record_id",
    ];
    args.extend(["--model", &model]);
    args.extend(MAPS);
    let linked = hie(&args);
    assert!(linked.status.success(), "{}", text(&linked.stderr));
    let written = std::fs::read_to_string(&links).unwrap();
    assert!(written.starts_with("left_id,right_id,probability,left_id_hospital,right_id_hospital\n"));
    assert!(written.lines().count() > 100);
}

#[test]
fn structural_problems_are_reported_with_line_numbers_and_nothing_is_written() {
    let folder = tempfile::tempdir().unwrap();
    let input = path(folder.path(), "bad.csv");
    std::fs::write(
        &input,
        "id,name,birth_date\n1,王芳,1985-03-14\n2,李强\n,杨秀,1990-01-01\n1,吴阿妹,1985-03-14\n",
    )
    .unwrap();
    let out = path(folder.path(), "out.csv");
    let run = hie(&[
        "dedupe",
        "--input",
        &input,
        "--out",
        &out,
        "--map",
        "full_name=name",
        "--map",
        "birth_date=birth_date",
    ]);
    assert_eq!(run.status.code(), Some(1));
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("line 3: has 2 fields, the header has 3"),
        "{stderr}"
    );
    assert!(stderr.contains("line 4: the id column 'id' is empty"), "{stderr}");
    assert!(
        stderr.contains("line 5: the id repeats the one on line 2"),
        "{stderr}"
    );
    assert!(!Path::new(&out).exists(), "nothing is written");

    let missing = hie(&[
        "dedupe",
        "--input",
        &input,
        "--out",
        &out,
        "--map",
        "phone=mobile",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("column 'mobile' (phone) is not in the header"),
        "{}",
        text(&missing.stderr)
    );
    let unknown = hie(&[
        "dedupe",
        "--input",
        &input,
        "--out",
        &out,
        "--map",
        "nickname=name",
    ]);
    assert!(
        text(&unknown.stderr).contains("'nickname' is not a field"),
        "{}",
        text(&unknown.stderr)
    );
}

#[test]
fn gb18030_files_are_read_and_undecodable_lines_are_named() {
    let folder = tempfile::tempdir().unwrap();
    let csv = "id,full_name,birth_date,phone\n1,王芳,1985-03-14,13808551234\n2,汪芳,1985-03-14,13808551234\n3,杨秀英,19620101,13900000000\n4,欧阳明,1970/02/30,13900000001\n";
    let (encoded, _, lossy) = encoding_rs::GB18030.encode(csv);
    assert!(!lossy);
    let input = path(folder.path(), "gb.csv");
    std::fs::write(&input, &encoded).unwrap();
    let out = path(folder.path(), "out.csv");
    let run = hie(&["dedupe", "--input", &input, "--out", &out]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let stderr = text(&run.stderr);
    assert!(
        stderr.contains("line 5: birth_date: is not a calendar date"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("1970"),
        "the value stays out of the message: {stderr}"
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written.contains("1,2,"),
        "王芳 and 汪芳 with one birth date and phone: {written}"
    );

    let mut broken = encoded.into_owned();
    broken.extend_from_slice(b"5,\x81\x20bad,1985-03-14,1\n");
    std::fs::write(&input, &broken).unwrap();
    let run = hie(&["dedupe", "--input", &input, "--out", &out]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        text(&run.stderr).contains("line 6: neither UTF-8 nor GB18030 text"),
        "{}",
        text(&run.stderr)
    );
}

#[test]
fn a_model_file_of_another_version_is_refused() {
    let folder = tempfile::tempdir().unwrap();
    let input = path(folder.path(), "a.csv");
    std::fs::write(&input, "id,full_name\n1,王芳\n2,王芳\n").unwrap();
    let model = path(folder.path(), "model.json");
    let out = path(folder.path(), "out.csv");
    assert!(
        hie(&["dedupe", "--input", &input, "--out", &out, "--save-model", &model])
            .status
            .success()
    );
    let text_of_model = std::fs::read_to_string(&model).unwrap();
    std::fs::write(&model, text_of_model.replace("\"version\": 2", "\"version\": 7")).unwrap();
    let run = hie(&["dedupe", "--input", &input, "--out", &out, "--model", &model]);
    assert_eq!(run.status.code(), Some(1));
    assert!(
        text(&run.stderr).contains("is a version 7 model"),
        "{}",
        text(&run.stderr)
    );
    let threshold = hie(&["dedupe", "--input", &input, "--out", &out, "--threshold", "1.5"]);
    assert!(
        text(&threshold.stderr).contains("--threshold 1.5"),
        "{}",
        text(&threshold.stderr)
    );
}

#[test]
fn a_latin_file_is_deduplicated_on_rules_chosen_from_it_with_its_id_number_as_an_identifier() {
    let folder = tempfile::tempdir().unwrap();
    let (input, truth, out, said) = generated_file(folder.path(), "latin", "4000");
    assert!(said.contains("--map identifier:id_number=id_number"), "{said}");
    let maps: Vec<String> = said
        .split("--map ")
        .skip(1)
        .map(|m| m.split_whitespace().next().unwrap().to_owned())
        .collect();
    let mut args: Vec<String> = [
        "dedupe",
        "--input",
        &input,
        "--out",
        &out,
        "--id-column",
        "record_id",
    ]
    .iter()
    .map(|a| (*a).to_owned())
    .collect();
    for map in &maps {
        args.extend(["--map".to_owned(), map.clone()]);
    }
    args.extend(["--explain-blocking".to_owned(), "--explain".to_owned()]);
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let deduped = hie(&refs);
    let stderr = text(&deduped.stderr);
    assert!(deduped.status.success(), "{stderr}");
    assert!(stderr.contains("estimated recall"), "{stderr}");
    assert!(
        stderr.contains("identifier:id_number"),
        "the id number can block: {stderr}"
    );
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(
        written
            .lines()
            .next()
            .unwrap()
            .ends_with("weight_address,weight_identifier_id_number"),
        "{}",
        written.lines().next().unwrap()
    );
    // Precision and recall against the truth.
    let person: std::collections::HashMap<String, String> = std::fs::read_to_string(&truth)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            let (r, p) = l.split_once(',').unwrap();
            (r.to_owned(), p.to_owned())
        })
        .collect();
    let mut per_person: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for p in person.values() {
        *per_person.entry(p).or_default() += 1;
    }
    let true_pairs: u64 = per_person.values().map(|k| k * (k - 1) / 2).sum();
    let (mut found, mut right) = (0u64, 0u64);
    for row in written.lines().skip(1) {
        let mut cells = row.split(',');
        let (a, b) = (cells.next().unwrap(), cells.next().unwrap());
        found += 1;
        right += u64::from(person[a] == person[b]);
    }
    let (precision, recall) = (right as f64 / found as f64, right as f64 / true_pairs as f64);
    assert!(
        precision > 0.97 && recall > 0.95,
        "precision {precision}, recall {recall}"
    );

    // Bad input: each named, nothing written.
    let bad = |extra: &[&str]| {
        let mut args = vec![
            "dedupe",
            "--input",
            &input,
            "--out",
            &out,
            "--id-column",
            "record_id",
        ];
        args.extend(["--map", "surname=surname"]);
        args.extend(extra);
        let run = hie(&args);
        assert_eq!(run.status.code(), Some(1), "{extra:?}");
        text(&run.stderr)
    };
    assert!(bad(&["--map", "identifier:=id_number"]).contains("the identifier needs a name"));
    assert!(
        bad(&["--map", "identifier:passport=passport_no"])
            .contains("column 'passport_no' (identifier:passport)")
    );
    assert!(bad(&["--max-pairs", "0"]).contains("--max-pairs 0"));
    assert!(bad(&["--block", "identifier:"]).contains("names no identifier"));
}
