//! `hie demo`: a synthetic prefecture modelled on Qiandongnan (黔东南), loaded into the embedded
//! database and served, with grpcurl commands to try. The generator is shared with the
//! benchmarks.

use std::collections::HashSet;

use chrono::{Datelike, Duration, NaiveDate};
use hie_core::domain::{
    BirthDate, BoundedText, DivisionCode, Ethnicity, Identifier, OrganisationCode, PersonName, Phone,
    ResidentId, Sex,
};
use hie_directory::domain::{HospitalGrade, OrganisationDraft, OrganisationKind};
use hie_population::domain::{Demographics, SourceRecordDraft};

use crate::{Exchange, Settings};

/// The counties of the prefecture: division code and name.
const COUNTIES: [(&str, &str); 16] = [
    ("522601", "凯里市"),
    ("522622", "黄平县"),
    ("522623", "施秉县"),
    ("522624", "三穗县"),
    ("522625", "镇远县"),
    ("522626", "岑巩县"),
    ("522627", "天柱县"),
    ("522628", "锦屏县"),
    ("522629", "剑河县"),
    ("522630", "台江县"),
    ("522631", "黎平县"),
    ("522632", "榕江县"),
    ("522633", "从江县"),
    ("522634", "雷山县"),
    ("522635", "麻江县"),
    ("522636", "丹寨县"),
];

/// The hospitals: code, name, grade, county. The first two serve the whole prefecture.
const HOSPITALS: [(&str, &str, HospitalGrade, &str); 6] = [
    ("QDN-H01", "黔东南州人民医院", HospitalGrade::TertiaryA, "522601"),
    ("QDN-H02", "黔东南州中医医院", HospitalGrade::TertiaryA, "522601"),
    (
        "QDN-H03",
        "凯里市第一人民医院",
        HospitalGrade::SecondaryA,
        "522601",
    ),
    ("QDN-H04", "黎平县人民医院", HospitalGrade::SecondaryA, "522631"),
    ("QDN-H05", "从江县人民医院", HospitalGrade::SecondaryA, "522633"),
    ("QDN-H06", "台江县人民医院", HospitalGrade::SecondaryB, "522630"),
];

/// The township health centres: name and county.
const TOWNSHIP_CENTRES: [(&str, &str); 20] = [
    ("炉山镇卫生院", "522601"),
    ("舟溪镇卫生院", "522601"),
    ("三棵树镇卫生院", "522601"),
    ("旧州镇卫生院", "522622"),
    ("甘溪乡卫生院", "522623"),
    ("台烈镇卫生院", "522624"),
    ("舞阳镇卫生院", "522625"),
    ("天马镇卫生院", "522626"),
    ("高酿镇卫生院", "522627"),
    ("三江镇卫生院", "522628"),
    ("革东镇卫生院", "522629"),
    ("施洞镇卫生院", "522630"),
    ("肇兴镇卫生院", "522631"),
    ("中潮镇卫生院", "522631"),
    ("古州镇卫生院", "522632"),
    ("丙妹镇卫生院", "522633"),
    ("贯洞镇卫生院", "522633"),
    ("西江镇卫生院", "522634"),
    ("宣威镇卫生院", "522635"),
    ("龙泉镇卫生院", "522636"),
];

const HAN_SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "黄", "赵", "周", "徐", "孙", "胡", "罗", "何", "田", "邓",
];
const MIAO_SURNAMES: &[&str] = &[
    "杨", "吴", "龙", "石", "潘", "王", "张", "李", "顾", "欧", "麻", "滕", "唐", "邰",
];
const DONG_SURNAMES: &[&str] = &[
    "吴", "杨", "石", "龙", "欧", "粟", "陆", "潘", "姚", "林", "蒙", "杜",
];
const GIVEN_MALE: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "华", "平", "志", "文", "国", "建", "光", "荣",
    "胜",
];
const GIVEN_FEMALE: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "秀", "英", "梅", "兰", "花", "燕", "玲", "霞", "琴", "萍",
];
/// Syllables of Miao and Dong personal names as they are commonly written in characters.
const MINORITY_GIVEN: &[&str] = &[
    "阿", "榜", "金", "妹", "略", "友", "桥", "耶", "岩", "乃", "培", "银", "亮", "老", "当", "报",
];

/// A small, fast, seedable generator (SplitMix64): the same seed makes the same prefecture.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A generated resident.
#[derive(Debug, Clone)]
pub struct Resident {
    pub resident_id: ResidentId,
    pub demographics: Demographics,
}

/// A generated prefecture: its organisations and every organisation's records.
#[derive(Debug, Clone)]
pub struct SyntheticPrefecture {
    pub organisations: Vec<OrganisationDraft>,
    pub residents: Vec<Resident>,
    /// Every source record, the township centres' first, then the hospitals'.
    pub records: Vec<SourceRecordDraft>,
}

impl SyntheticPrefecture {
    /// Generates `n_residents` residents. Each is registered by the township health centre of
    /// their county; the two prefecture hospitals each hold about a quarter of all residents,
    /// and each county hospital about 40 % of its county and a few from elsewhere, under their
    /// own local numbers, so the same resident turns up at several hospitals. One hospital
    /// record in ten lacks the identity number, as real feeds do.
    pub fn generate(n_residents: usize, seed: u64) -> SyntheticPrefecture {
        let mut rng = Rng::new(seed);
        // A fixed reference date, not today, so that the same seed makes the same residents on
        // any day and re-running the demo updates its records instead of adding new ones.
        let reference = NaiveDate::from_ymd_opt(2026, 1, 1).expect("a valid date");
        let today = reference.min(hie_core::time::today_in_china());
        let organisations = organisations();
        let mut seen = HashSet::with_capacity(n_residents);
        let residents: Vec<Resident> = (0..n_residents)
            .map(|_| resident(&mut rng, today, &mut seen))
            .collect();

        let mut records = Vec::with_capacity(n_residents * 2);
        for (i, resident) in residents.iter().enumerate() {
            let county = resident
                .demographics
                .division
                .as_ref()
                .map_or("522601", |d| d.as_str());
            let centres: Vec<usize> = (0..TOWNSHIP_CENTRES.len())
                .filter(|&c| TOWNSHIP_CENTRES[c].1 == county)
                .collect();
            let centre = centres[i % centres.len().max(1)];
            let code = township_code(centre);
            records.push(record(&code, &format!("JK{:08}", i + 1), resident, true));
        }
        for (h, (code, _, _, county)) in HOSPITALS.iter().enumerate() {
            let code = OrganisationCode::parse(code).expect("hospital codes are valid");
            let mut next_number = 1;
            for resident in &residents {
                let home = resident
                    .demographics
                    .division
                    .as_ref()
                    .is_some_and(|d| d.as_str() == *county);
                let share = if h < 2 {
                    0.25
                } else if home {
                    0.40
                } else {
                    0.02
                };
                if rng.chance(share) {
                    let with_id = rng.chance(0.9);
                    records.push(record(&code, &format!("MZ{:07}", next_number), resident, with_id));
                    next_number += 1;
                }
            }
        }
        SyntheticPrefecture {
            organisations,
            residents,
            records,
        }
    }
}

fn township_code(index: usize) -> OrganisationCode {
    OrganisationCode::parse(&format!("QDN-T{:02}", index + 1)).expect("township codes are valid")
}

fn organisations() -> Vec<OrganisationDraft> {
    let draft = |code: &str, name: &str, kind, grade, county: &str| {
        OrganisationDraft::new(
            "organisation",
            OrganisationCode::parse(code).expect("valid"),
            BoundedText::parse_required(name, 100).expect("names are valid"),
            kind,
            grade,
            DivisionCode::parse(county).expect("county codes are valid"),
            true,
        )
        .expect("the demo's organisations are valid")
    };
    let mut organisations = Vec::new();
    for (code, hospital, grade, county) in HOSPITALS {
        organisations.push(draft(
            code,
            hospital,
            OrganisationKind::Hospital,
            Some(grade),
            county,
        ));
    }
    for (i, (centre, county)) in TOWNSHIP_CENTRES.iter().enumerate() {
        organisations.push(draft(
            township_code(i).as_str(),
            centre,
            OrganisationKind::TownshipHealthCentre,
            None,
            county,
        ));
    }
    for (code, name, kind) in [
        (
            "QDN-CDC",
            "黔东南州疾病预防控制中心",
            OrganisationKind::PublicHealthAgency,
        ),
        ("QDN-YB", "黔东南州医疗保障局", OrganisationKind::Insurer),
        (
            "QDN-FY",
            "黔东南州妇幼保健计划生育服务中心",
            OrganisationKind::FamilyPlanningAgency,
        ),
        (
            "QDN-WJW",
            "黔东南州卫生健康局",
            OrganisationKind::RegionalHealthAuthority,
        ),
        (
            "QDN-APP",
            "健康黔东南居民服务平台",
            OrganisationKind::PatientPortal,
        ),
    ] {
        organisations.push(draft(code, name, kind, None, "522600"));
    }
    organisations
}

fn resident(rng: &mut Rng, today: NaiveDate, seen: &mut HashSet<String>) -> Resident {
    // Roughly the prefecture's make-up: Miao, Dong, Han, and a few Shui, Yao and Buyi.
    let roll = rng.below(100);
    let ethnicity = match roll {
        0..=42 => Ethnicity::MIAO,
        43..=72 => Ethnicity::DONG,
        73..=92 => Ethnicity::HAN,
        93..=95 => Ethnicity::parse("25").expect("Shui"),
        96..=97 => Ethnicity::parse("13").expect("Yao"),
        _ => Ethnicity::parse("09").expect("Buyi"),
    };
    let sex = if rng.chance(0.5) { Sex::Male } else { Sex::Female };
    let surnames = match ethnicity.code() {
        "06" => MIAO_SURNAMES,
        "12" => DONG_SURNAMES,
        _ => HAN_SURNAMES,
    };
    let mut name = rng.pick(surnames).to_string();
    let given_pool = if ethnicity != Ethnicity::HAN && rng.chance(0.3) {
        MINORITY_GIVEN
    } else if sex == Sex::Male {
        GIVEN_MALE
    } else {
        GIVEN_FEMALE
    };
    for _ in 0..1 + rng.below(2) {
        let syllable: &&str = rng.pick(given_pool);
        name.push_str(syllable);
    }
    let (county, _) = *rng.pick(&COUNTIES);
    let age_days = rng.below(95 * 365) as i64;
    let birth = (today - Duration::days(age_days)).max(NaiveDate::from_ymd_opt(1930, 1, 1).expect("valid"));
    let resident_id = loop {
        let sequence = rng.below(500) * 2 + usize::from(sex == Sex::Male);
        let first_17 = format!(
            "{county}{:04}{:02}{:02}{sequence:03}",
            birth.year(),
            birth.month(),
            birth.day()
        );
        let check = ResidentId::check_character(first_17.as_bytes()) as char;
        let candidate = format!("{first_17}{check}");
        if seen.insert(candidate.clone()) {
            break ResidentId::parse_on(&candidate, today).expect("generated numbers are valid");
        }
    };
    let phone = rng.chance(0.8).then(|| {
        let prefix = rng.pick(&["138", "139", "150", "151", "182", "187", "135", "136"]);
        Phone::parse(&format!("{prefix}{:08}", rng.next_u64() % 100_000_000)).expect("valid mobile")
    });
    let village = format!(
        "{}村{}组",
        rng.pick(&["平寨", "乌东", "控拜", "南猛", "季刀", "大利", "占里", "堂安"]),
        1 + rng.below(9)
    );
    Resident {
        demographics: Demographics {
            name: PersonName::parse(&name).expect("generated names are valid"),
            sex: Some(sex),
            birth_date: Some(BirthDate::from_date(birth, today).expect("in the past")),
            ethnicity: Some(ethnicity),
            phone,
            division: Some(DivisionCode::parse(county).expect("valid")),
            address_line: BoundedText::parse(&village, 200).expect("valid"),
        },
        resident_id,
    }
}

fn record(
    organisation: &OrganisationCode,
    local: &str,
    resident: &Resident,
    with_id: bool,
) -> SourceRecordDraft {
    let identifiers = if with_id {
        vec![Identifier::resident(&resident.resident_id)]
    } else {
        vec![]
    };
    SourceRecordDraft::new(
        organisation.clone(),
        local,
        resident.demographics.clone(),
        identifiers,
    )
    .expect("generated records are valid")
}

/// Registers the organisations (those already registered are left as they are) and every
/// record, in batches, printing progress to stderr.
pub async fn load(exchange: &Exchange, prefecture: &SyntheticPrefecture) -> Result<(), String> {
    for organisation in &prefecture.organisations {
        match exchange
            .directory
            .register_organisation(
                &hie_core::context::RequestContext::bulk_load("hie-demo", "synthetic prefecture's directory"),
                organisation.clone(),
            )
            .await
        {
            Ok(_) | Err(hie_core::Error::AlreadyExists(_)) => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    let total = prefecture.records.len();
    let mut done = 0;
    for batch in prefecture.records.chunks(500) {
        exchange
            .population
            .register_batch(
                &hie_core::context::RequestContext::bulk_load("hie-demo", "synthetic population load"),
                batch,
            )
            .await
            .map_err(|e| e.to_string())?;
        done += batch.len();
        if done % 10_000 < 500 || done == total {
            eprintln!("hie: {done} of {total} source records registered");
        }
    }
    exchange.database.analyze().await.map_err(|e| e.to_string())
}

/// `hie demo`: serve the embedded database with the synthetic prefecture loaded.
pub async fn run(
    settings: Settings,
    n_residents: usize,
    seed: u64,
    plaintext_on_network: bool,
) -> Result<(), String> {
    if settings.tls.is_none() {
        crate::app::check_plaintext_listen(settings.listen, plaintext_on_network)
            .map_err(|e| e.to_string())?;
    }
    let exchange = Exchange::open(&settings).await.map_err(|e| e.to_string())?;
    eprintln!("hie demo: generating {n_residents} residents of a Qiandongnan-like prefecture (seed {seed})");
    let prefecture = SyntheticPrefecture::generate(n_residents, seed);
    let started = std::time::Instant::now();
    load(&exchange, &prefecture).await?;
    eprintln!(
        "hie demo: {} organisations and {} source records loaded in {:.1} s",
        prefecture.organisations.len(),
        prefecture.records.len(),
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let clinical = crate::demo_records::load(&exchange, &prefecture).await?;
    eprintln!(
        "hie demo: {clinical} archive entries and documents, with their visits, loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let cards = crate::demo_cards::load(&exchange, &prefecture).await?;
    eprintln!(
        "hie demo: {cards} cards of the four types issued in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let items = crate::demo_records::load_catalogue(&exchange).await?;
    eprintln!("hie demo: {items} telemedicine service items in the catalogue");
    let server = exchange
        .start_with(settings.listen, settings.tls.as_ref(), plaintext_on_network)
        .await
        .map_err(|e| e.to_string())?;
    println!("{}", try_it(&prefecture, &server.address().to_string()));
    crate::cli::serve_until_interrupted(server).await
}

/// The request context every population call carries: who asks, in what role, and why.
const CONTEXT: &str =
    "-H 'x-hie-user: demo-clerk' -H 'x-hie-role: registration_clerk' -H 'x-hie-purpose: treatment'";

/// The request context of the region's operator (a plaintext exchange has no certificates).
const OPERATOR: &str =
    "-H 'x-hie-user: demo-operator' -H 'x-hie-role: administrator' -H 'x-hie-purpose: operations'";

/// The request context of a clinician's look-up.
const CLINIC: &str = "-H 'x-hie-user: dr-li' -H 'x-hie-role: clinician' -H 'x-hie-purpose: treatment'";

/// Three grpcurl commands that show a cross-reference, a search and a directory look-up.
fn try_it(prefecture: &SyntheticPrefecture, address: &str) -> String {
    // A record of the first prefecture hospital whose resident is also known to the second.
    let at = |code: &'static str| {
        prefecture
            .records
            .iter()
            .filter(move |r| r.organisation().as_str() == code)
    };
    let example = at("QDN-H01")
        .filter(|r| r.resident_id().is_some())
        .find(|r| at("QDN-H02").any(|other| other.resident_id() == r.resident_id()))
        .or_else(|| at("QDN-H01").next());
    let resolve = example.map_or_else(String::new, |r| {
        format!(
            "# Which records, at every organisation, belong to the patient QDN-H01 knows as {local}:\n\
             grpcurl -plaintext {CONTEXT} -d '{{\"identifier\": {{\"system\": \"urn:hie:org:QDN-H01:patient\", \"value\": \"{local}\"}}}}' \\\n  \
             {address} hie.population.v1.PopulationRegistry/ResolveIdentifier\n",
            local = r.local_patient_number().value()
        )
    });
    // A resident of Leishan county born in the 1980s, so that the search finds at least them.
    let born_in_the_1980s = |r: &&Resident| {
        r.demographics
            .birth_date
            .is_some_and(|b| (1980..1990).contains(&b.date().year()))
    };
    let surname: String = prefecture
        .residents
        .iter()
        .filter(|r| {
            r.demographics
                .division
                .as_ref()
                .is_some_and(|d| d.as_str() == "522634")
        })
        .find(born_in_the_1980s)
        .map_or("杨".to_owned(), |r| {
            r.demographics.name.as_str().chars().take(1).collect()
        });
    let clinic = crate::demo_records::sample(prefecture).first().map_or_else(String::new, |(_, at_h01)| {
        let patient = format!(
            "{{\"identifier\": {{\"system\": \"urn:hie:org:{}:patient\", \"value\": \"{}\"}}}}",
            crate::demo_records::CLINICAL_HOSPITAL,
            at_h01.local_patient_number().value()
        );
        format!(
            "# A clinic's look-up of the patient QDN-H01 knows as {number}: their documents, one of them, the summary and the archive:\n\
             grpcurl -plaintext {CLINIC} -d '{{\"person\": {patient}}}' \\\n  {address} hie.emr.v1.EmrRegistry/FindDocuments\n\
             grpcurl -plaintext {CLINIC} -d '{{\"unique_id\": \"2.16.156.10011.1.1000000.0\"}}' \\\n  {address} hie.emr.v1.EmrRegistry/RetrieveDocument\n\
             grpcurl -plaintext {CLINIC} -d '{{\"person\": {patient}}}' \\\n  {address} hie.emr.v1.EmrRegistry/GetPatientSummary\n\
             grpcurl -plaintext {CLINIC} -d '{{\"person\": {patient}}}' \\\n  {address} hie.records.v1.HealthRecordRegistry/QueryEntries\n",
            number = at_h01.local_patient_number().value()
        )
    });
    let cards = crate::demo_records::sample(prefecture).first().map_or_else(String::new, |(township, _)| {
        let county = township.demographics().division.as_ref().map_or("522601", |d| d.as_str());
        let mut commands = String::from(
            "# Reception at QDN-H01 with each of the first sample patient's cards (a simulated card and reader;\n\
             # give the demo's --database-url or --config too, so that the simulator finds the issuers' keys):\n",
        );
        for (card_type, number) in crate::demo_cards::cards_of(0, county).into_iter().take(4) {
            let kind = card_type.code().replace('_', "-");
            commands.push_str(&format!(
                "hie card simulate check-in --server http://{address} --type {kind} --number {number} --organisation QDN-H01 --department 内科\n"
            ));
        }
        commands
    });
    format!(
        "\nhie demo is serving on {address}. Try:\n\n{resolve}\n{clinic}\n{cards}\n\
         # Residents of Leishan county named {surname}…, born in the 1980s:\n\
         grpcurl -plaintext {CONTEXT} -d '{{\"name\": \"{surname}*\", \"birth_date_from\": \"1980-01-01\", \"birth_date_to\": \"1989-12-31\", \"division_code\": \"522634\", \"page_size\": 5}}' \\\n  \
         {address} hie.population.v1.PopulationRegistry/SearchPersons\n\n\
         # The hospitals of the prefecture:\n\
         grpcurl -plaintext {CONTEXT} -d '{{\"kind\": \"ORGANISATION_KIND_HOSPITAL\", \"division_code\": \"522600\", \"page_size\": 10}}' \\\n  \
         {address} hie.directory.v1.Directory/ListOrganisations\n\n\
         # QDN-H01's HL7 v2 feed: an adapter in front of the exchange (another terminal), then any\n\
         # MLLP sender to 127.0.0.1:2575 (for example mllp_send from PyPI's hl7 package):\n\
         hie adapter hl7v2 --exchange http://{address} --organisation QDN-H01 --data-folder ./hie-adapter\n\
         hie adapter status --data-folder ./hie-adapter\n\n\
         # Events: a subscription to notifiable diagnoses (as the operator: on a plaintext exchange\n\
         # with no certificates only an administrator subscribes), then its stream (Ctrl-C ends it):\n\
         grpcurl -plaintext {OPERATOR} -d '{{\"filter\": {{\"icd10_prefixes\": [\"A0\", \"J10\", \"U07.1\"]}}}}' \\\n  \
         {address} hie.events.v1.EventService/CreateSubscription\n\
         grpcurl -plaintext {OPERATOR} -d '{{\"subscription_id\": \"<the subscription_id above>\"}}' \\\n  \
         {address} hie.events.v1.EventService/Subscribe\n\n\
         # The telemedicine price list:\n\
         grpcurl -plaintext {CLINIC} -d '{{}}' {address} hie.telemedicine.v1.Telemedicine/ListServiceItems\n\n\
         Press Ctrl-C to stop.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_makes_the_same_prefecture_with_overlapping_hospitals() {
        let first = SyntheticPrefecture::generate(500, 7);
        let second = SyntheticPrefecture::generate(500, 7);
        assert_eq!(first.records, second.records);
        assert_eq!(
            first
                .organisations
                .iter()
                .filter(|o| o.kind == OrganisationKind::Hospital)
                .count(),
            6
        );
        assert_eq!(
            first
                .organisations
                .iter()
                .filter(|o| o.kind == OrganisationKind::TownshipHealthCentre)
                .count(),
            20
        );
        let at_h01: HashSet<_> = first
            .records
            .iter()
            .filter(|r| r.organisation().as_str() == "QDN-H01")
            .filter_map(|r| r.resident_id())
            .collect();
        let at_h02 = first
            .records
            .iter()
            .filter(|r| r.organisation().as_str() == "QDN-H02")
            .filter_map(|r| r.resident_id());
        assert!(at_h02.filter(|id| at_h01.contains(id)).count() > 0);
    }

    #[test]
    fn every_generated_identity_number_agrees_with_birth_date_and_sex() {
        for resident in SyntheticPrefecture::generate(300, 11).residents {
            resident
                .resident_id
                .check_agrees_with(resident.demographics.birth_date, resident.demographics.sex)
                .unwrap();
        }
    }
}
