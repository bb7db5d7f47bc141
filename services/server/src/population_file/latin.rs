//! A Latin-script population beside the Chinese one (`hie generate population-file --script
//! latin`): given name and surname apart, street number, two address lines, suburb, postcode,
//! state, birth date, sex and an id number, spoiled the way intake forms and data entry spoil
//! them. Built from first principles: the names are common names of an immigrant country's
//! many origins with a long-tailed frequency; the corruption is what clerks and forms do —
//! typos of every kind (a letter dropped, doubled, swapped or struck next to it on the
//! keyboard), spelling variants that sound the same (Catherine/Kathryn, Thompson/Thomson),
//! nicknames, initials, given name and surname in each other's boxes, a married name, day and
//! month swapped, a mistyped digit, abbreviated street types, a unit line present or not,
//! moves, and the hard negatives of any real population: twins (same surname, birth date and
//! address) and households (same surname and address).

use chrono::{Datelike, Duration, NaiveDate};
use hie_population::domain::linkage::{Field, PersonFields};

use crate::demo::Rng;
use crate::population_file::GeneratedRecord;

/// The identifier system the id number column is compared as.
pub const ID_NUMBER: &str = "id_number";

const SURNAMES: &str = "Smith|Jones|Williams|Brown|Wilson|Taylor|Johnson|White|Martin|Anderson|Thompson|Nguyen|\
    Thomas|Walker|Harris|Lee|Ryan|Robinson|Kelly|King|Davis|Wright|Evans|Roberts|Green|\
    Hall|Wood|Jackson|Clarke|Patel|Khan|Lewis|James|Phillips|Mitchell|Turner|Campbell|\
    Murphy|O'Brien|Walsh|McDonald|MacKenzie|Russo|Rossi|Romano|Ferrari|Papadopoulos|\
    Georgiou|Tran|Le|Pham|Huynh|Chen|Wang|Zhang|Li|Liu|Singh|Kaur|Sharma|Ali|Hassan|Ahmed|\
    Ibrahim|Müller|Schmidt|Schneider|Fischer|de Vries|van Dijk|Jansen|Kowalski|Nowak|Novak|\
    Silva|Santos|Fernandes|Garcia|Rodriguez|Lopez|Kim|Park|Choi|Yilmaz|Kaya|Demir|Ivanov|\
    Petrov|Dubois|Lefebvre|Moreau|Sullivan|Gallagher|Fitzgerald|Henderson|Richardson|\
    Stephenson|Hutchinson|Worthington|Blackwood|Featherstone|Abernethy|Kowalczyk|\
    Wiśniewski|Okonkwo|Mensah|Haddad|Nasser";

const GIVEN_MALE: &str = "Jack|Oliver|William|Noah|James|Thomas|Lucas|Henry|Liam|Ethan|Michael|David|John|Peter|\
    Robert|Daniel|Matthew|Andrew|Christopher|Benjamin|Samuel|Joshua|Ryan|Nathan|Stephen|\
    Mark|Paul|Anthony|Alexander|George|Edward|Patrick|Sean|Luca|Marco|Giuseppe|Nikolaos|\
    Dimitri|Minh|Tuan|Wei|Jun|Raj|Arjun|Mohammed|Omar|Yusuf|Hans|Jan|Piotr|Carlos|Jose|\
    Min-jun|Mehmet|Ivan|Pierre|Kwame|Philip|Geoffrey|Cameron|Declan|Ignatius|Bartholomew";

const GIVEN_FEMALE: &str = "Charlotte|Olivia|Amelia|Isla|Mia|Ava|Grace|Chloe|Emily|Sophie|Sarah|Jessica|Emma|\
    Hannah|Rebecca|Catherine|Elizabeth|Margaret|Mary|Anne|Jennifer|Michelle|Nicole|Rachel|\
    Laura|Karen|Susan|Helen|Julia|Alexandra|Samantha|Victoria|Maria|Giulia|Francesca|Eleni|\
    Sofia|Linh|Thi|Mei|Xiu|Priya|Aisha|Fatima|Leila|Anna|Katarzyna|Ana|Lucia|Ji-woo|Elif|\
    Olga|Camille|Ama|Siobhan|Philippa|Genevieve|Bronwyn|Evangeline|Theodora";

/// Spellings that sound alike: a clerk hearing the name may write any of them.
const VARIANTS: &str = "Catherine|Katherine|Kathryn|Catharine; Stephen|Steven; John|Jon; Sarah|Sara; Anne|Ann;\
    Philip|Phillip; Philippa|Phillipa; Geoffrey|Jeffrey|Jeffery;\
    Mohammed|Muhammad|Mohamed|Mohammad; Yusuf|Youssef|Yousef; Michael|Micheal;\
    Rebecca|Rebekah; Jessica|Jesica; Nicole|Nichole; Eleni|Helen|Eleny;\
    Dimitri|Dimitrios|Demetri; Thompson|Thomson; Clarke|Clark; McDonald|MacDonald;\
    MacKenzie|McKenzie; O'Brien|OBrien|O Brien; Müller|Mueller|Muller;\
    Nguyen|Nguyễn|Ngyuen; Tran|Trần; Huynh|Huỳnh; Wiśniewski|Wisniewski;\
    Stephenson|Stevenson; Mehmet|Mehmed|Memet; de Vries|DeVries|Devries;\
    van Dijk|Van Dyk|Vandijk; Jose|José; Sean|Shaun|Shawn; Siobhan|Shivaun";

/// Shortened forms a person gives at one desk and not at another.
const NICKNAMES: &str = "William=Bill; Robert=Bob; Elizabeth=Liz; Margaret=Maggie; James=Jim; Michael=Mike;\
    Christopher=Chris; Catherine=Kate; Jennifer=Jenny; Thomas=Tom; Alexander=Alex;\
    Alexandra=Alex; Benjamin=Ben; Daniel=Dan; Matthew=Matt; Samantha=Sam; Samuel=Sam;\
    Nicholas=Nick; Edward=Ted; Victoria=Vicky; Anthony=Tony; Joshua=Josh; Bartholomew=Bart;\
    Theodora=Thea";

const STATES: &str = "NSW|VIC|QLD|WA|SA|TAS";
const STREET_NAMES: &str = "Victoria|George|King|Queen|Church|High|Station|Park|Elizabeth|\
    Albert|Railway|Bridge|Mill|Hill|Forest|Beach|Ocean|River|Lake|Wattle|Banksia|Acacia|\
    Eucalyptus|Jacaranda|Melaleuca|Hawthorn|Oakleigh|Chapel|Market|Gladstone|Wellington|\
    Nelson|Raglan|Canning|Stirling|Hay|Murray|Darling|Hume|Flinders|Macquarie|Bourke|\
    Collins|Lonsdale|Spencer";
/// Street types with the abbreviation forms use.
const STREET_TYPES: &str = "Street=St; Road=Rd; Avenue=Ave; Drive=Dr; Court=Ct; Place=Pl; Lane=Ln; Parade=Pde;\
    Crescent=Cres; Close=Cl; Terrace=Tce";
const SUBURB_STARTS: &str = "Glen|Mount|North|South|East|West|Port|Lake|Spring|Green|Oak|Ash|Bay|Bright|Black|Red|\
    White|Fern|Rose|Kings|Queens|Bel|Carl|Marri|Warra|Kurra|Yarra|Wood|Stone|Bur";
const SUBURB_ENDS: &str = "vale|wood|field|ton|bridge|hill|dale|ford|mead|leigh|view|haven|wick|brook|ville|bank|\
    grove|gong|ong|ridge";

/// A suburb: its name, postcode and state.
#[derive(Debug, Clone)]
struct Suburb {
    name: String,
    postcode: String,
    state: &'static str,
}

fn suburbs() -> Vec<Suburb> {
    let mut list = Vec::new();
    let lists = &*LISTS;
    for (s, start) in lists.suburb_starts.iter().enumerate() {
        for (e, end) in lists.suburb_ends.iter().enumerate() {
            let state = lists.states[(s * 7 + e) % lists.states.len()];
            let base = match state {
                "NSW" => 2000,
                "VIC" => 3000,
                "QLD" => 4000,
                "SA" => 5000,
                "WA" => 6000,
                _ => 7000,
            };
            list.push(Suburb {
                name: format!("{start}{end}"),
                // Neighbouring suburbs share a postcode, as they do.
                postcode: format!("{}", base + ((s * 31 + e * 17) % 400) / 2 * 2),
                state,
            });
        }
    }
    list
}

#[derive(Debug, Clone)]
struct Address {
    number: u32,
    unit: Option<u32>,
    street: &'static str,
    street_type: usize,
    suburb: usize,
}

#[derive(Debug, Clone)]
struct Person {
    given: &'static str,
    middle: Option<&'static str>,
    surname: String,
    male: bool,
    birth: NaiveDate,
    id_number: String,
    address: Address,
}

/// A long-tailed draw: index 0 is the most common.
fn zipf(rng: &mut Rng, n: usize) -> usize {
    // The inverse of the cumulative share of a power law x^-0.7 over 1..=n.
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    let x = ((n as f64).powf(0.3) * u + (1.0 - u)).powf(1.0 / 0.3);
    (x as usize).saturating_sub(1).min(n - 1)
}

/// Parts of the many rare surnames no list holds: a population's surnames are mostly rare.
const RARE_STARTS: &str = "Ash|Bar|Bel|Brad|Cal|Cor|Dal|Dun|El|Far|Fin|Gal|Gar|Hal|Har|Kel|Ken|Lang|Mar|Mor|Nor|\
    Pen|Ral|Red|Ros|Sal|Stan|Thorn|Wal|Wes|Win|Yar";
/// The first is empty: many rare surnames have no middle part.
const RARE_MIDDLES: &str = "|ing|er|an|el|o|ow";
const RARE_ENDS: &str = "ton|ford|ley|wood|field|by|well|more|son|ridge|stone|worth|ham|wick|croft|dale";

/// The lists above, split.
struct Lists {
    surnames: Vec<&'static str>,
    given_male: Vec<&'static str>,
    given_female: Vec<&'static str>,
    variants: Vec<Vec<&'static str>>,
    nicknames: Vec<(&'static str, &'static str)>,
    states: Vec<&'static str>,
    street_names: Vec<&'static str>,
    street_types: Vec<(&'static str, &'static str)>,
    suburb_starts: Vec<&'static str>,
    suburb_ends: Vec<&'static str>,
    rare_starts: Vec<&'static str>,
    rare_middles: Vec<&'static str>,
    rare_ends: Vec<&'static str>,
}

fn split(text: &'static str) -> Vec<&'static str> {
    text.split('|').map(str::trim).collect()
}

fn pairs(text: &'static str) -> Vec<(&'static str, &'static str)> {
    text.split(';')
        .filter_map(|pair| pair.split_once('='))
        .map(|(a, b)| (a.trim(), b.trim()))
        .collect()
}

static LISTS: std::sync::LazyLock<Lists> = std::sync::LazyLock::new(|| Lists {
    surnames: split(SURNAMES),
    given_male: split(GIVEN_MALE),
    given_female: split(GIVEN_FEMALE),
    variants: VARIANTS.split(';').map(split).collect(),
    nicknames: pairs(NICKNAMES),
    states: split(STATES),
    street_names: split(STREET_NAMES),
    street_types: pairs(STREET_TYPES),
    suburb_starts: split(SUBURB_STARTS),
    suburb_ends: split(SUBURB_ENDS),
    rare_starts: split(RARE_STARTS),
    rare_middles: split(RARE_MIDDLES),
    rare_ends: split(RARE_ENDS),
});

fn surname(rng: &mut Rng) -> String {
    let lists = &*LISTS;
    if rng.chance(0.6) {
        lists.surnames[zipf(rng, lists.surnames.len())].to_owned()
    } else {
        format!(
            "{}{}{}",
            rng.pick(&lists.rare_starts),
            rng.pick(&lists.rare_middles),
            rng.pick(&lists.rare_ends)
        )
    }
}

fn new_address(rng: &mut Rng, suburbs: &[Suburb]) -> Address {
    Address {
        number: 1 + rng.below(250) as u32,
        unit: rng.chance(0.25).then(|| 1 + rng.below(40) as u32),
        street: LISTS.street_names[rng.below(LISTS.street_names.len())],
        street_type: rng.below(LISTS.street_types.len()),
        suburb: rng.below(suburbs.len()),
    }
}

fn new_id_number(rng: &mut Rng) -> String {
    let letter = (b'A' + rng.below(26) as u8) as char;
    format!("{letter}{:08}", rng.next_u64() % 100_000_000)
}

fn new_person(rng: &mut Rng, suburbs: &[Suburb]) -> Person {
    let male = rng.chance(0.5);
    let pool = if male {
        &LISTS.given_male
    } else {
        &LISTS.given_female
    };
    Person {
        given: pool[zipf(rng, pool.len())],
        middle: rng.chance(0.3).then(|| *rng.pick(pool)),
        surname: surname(rng),
        male,
        birth: NaiveDate::from_ymd_opt(1930, 1, 1).expect("valid")
            + Duration::days(rng.below(92 * 365) as i64),
        id_number: new_id_number(rng),
        address: new_address(rng, suburbs),
    }
}

/// Keys next to each other on a keyboard: what a finger strikes instead.
fn neighbour(c: char) -> char {
    const ROWS: [&str; 3] = ["qwertyuiop", "asdfghjkl", "zxcvbnm"];
    let lower = c.to_ascii_lowercase();
    for row in ROWS {
        if let Some(i) = row.find(lower) {
            let bytes = row.as_bytes();
            let j = if i + 1 < bytes.len() { i + 1 } else { i - 1 };
            let n = bytes[j] as char;
            return if c.is_uppercase() {
                n.to_ascii_uppercase()
            } else {
                n
            };
        }
    }
    c
}

/// One typo of the kinds people make: a letter dropped, doubled, swapped with the next, or
/// struck next to the right key. The first letter is usually right.
pub fn typo(rng: &mut Rng, text: &str) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    if chars.len() < 3 {
        return text.to_owned();
    }
    let at = 1 + rng.below(chars.len() - 1);
    match rng.below(4) {
        0 => {
            chars.remove(at);
        }
        1 => chars.insert(at, chars[at]),
        2 if at + 1 < chars.len() => chars.swap(at, at + 1),
        _ => chars[at] = neighbour(chars[at]),
    }
    chars.into_iter().collect()
}

fn variant(rng: &mut Rng, name: &str) -> Option<String> {
    let group = LISTS.variants.iter().find(|g| g.contains(&name))?;
    let others: Vec<&&str> = group.iter().filter(|v| **v != name).collect();
    Some((*others[rng.below(others.len())]).to_owned())
}

fn spoiled_given(rng: &mut Rng, person: &Person) -> String {
    let given = person.given;
    let roll = rng.below(1000);
    let written = if roll < 40 {
        typo(rng, given)
    } else if roll < 70 {
        variant(rng, given).unwrap_or_else(|| given.to_owned())
    } else if roll < 85 {
        LISTS
            .nicknames
            .iter()
            .find(|(full, _)| *full == given)
            .map_or_else(|| given.to_owned(), |(_, short)| (*short).to_owned())
    } else if roll < 95 {
        given.chars().take(1).collect()
    } else {
        given.to_owned()
    };
    match person.middle {
        // Some forms have room for a middle name, or its initial.
        Some(middle) if rng.chance(0.3) => format!("{written} {middle}"),
        Some(middle) if rng.chance(0.1) => format!("{written} {}", &middle[..1]),
        _ => written,
    }
}

fn spoiled_surname(rng: &mut Rng, person: &Person) -> String {
    let roll = rng.below(1000);
    if roll < 30 {
        typo(rng, &person.surname)
    } else if roll < 50 {
        variant(rng, &person.surname).unwrap_or_else(|| person.surname.clone())
    } else {
        person.surname.clone()
    }
}

fn spoiled_date(rng: &mut Rng, date: NaiveDate) -> String {
    let (y, m, d) = (date.year(), date.month(), date.day());
    let roll = rng.below(1000);
    let (y, m, d) = if roll < 20 && d <= 12 && d != m {
        (y, d, m)
    } else if roll < 50 {
        let mut digits: Vec<u8> = format!("{y:04}{m:02}{d:02}").into_bytes();
        let at = 2 + rng.below(6);
        digits[at] = b'0' + ((digits[at] - b'0' + 1 + rng.below(8) as u8) % 10);
        let text = String::from_utf8(digits).unwrap_or_default();
        match hie_population::domain::linkage::parse_birth_date(&text) {
            Ok(date) => date,
            Err(_) => (y, m, d),
        }
    } else {
        (y, m, d)
    };
    if rng.chance(0.5) {
        format!("{y:04}-{m:02}-{d:02}")
    } else {
        format!("{y:04}/{m:02}/{d:02}")
    }
}

fn spoiled_id(rng: &mut Rng, id: &str) -> String {
    let roll = rng.below(1000);
    let mut chars: Vec<char> = id.chars().collect();
    if roll < 20 {
        let at = 1 + rng.below(chars.len() - 1);
        chars[at] = char::from_digit(
            (chars[at].to_digit(10).unwrap_or(0) + 1 + rng.below(8) as u32) % 10,
            10,
        )
        .unwrap_or('0');
    } else if roll < 30 {
        let at = 1 + rng.below(chars.len() - 2);
        chars.swap(at, at + 1);
    }
    chars.into_iter().collect()
}

fn maybe(rng: &mut Rng, p: f64, fields: &mut PersonFields, field: Field, value: &str) {
    if !rng.chance(p) {
        fields.set(field, value);
    }
}

/// One record of `person` as one desk writes it.
fn record_of(rng: &mut Rng, person: &Person, suburbs: &[Suburb], id_share: f64) -> PersonFields {
    let mut fields = PersonFields::default();
    let (mut given, mut surname) = (spoiled_given(rng, person), spoiled_surname(rng, person));
    if rng.chance(0.015) {
        std::mem::swap(&mut given, &mut surname);
    }
    if rng.chance(0.08) {
        given = given.to_uppercase();
        surname = surname.to_uppercase();
    }
    maybe(rng, 0.01, &mut fields, Field::GivenName, &given);
    maybe(rng, 0.005, &mut fields, Field::Surname, &surname);
    maybe(
        rng,
        0.05,
        &mut fields,
        Field::Sex,
        if person.male { "M" } else { "F" },
    );
    let birth_date = spoiled_date(rng, person.birth);
    maybe(rng, 0.02, &mut fields, Field::BirthDate, &birth_date);
    if rng.chance(id_share) {
        fields.set_identifier(ID_NUMBER, &spoiled_id(rng, &person.id_number));
    }
    let address = &person.address;
    let mut number = address.number.to_string();
    if rng.chance(0.03) {
        // The last digit struck wrong.
        let last = number.pop().and_then(|c| c.to_digit(10)).unwrap_or(0);
        let wrong = (last + 1 + rng.below(8) as u32) % 10;
        number.push(char::from_digit(wrong, 10).unwrap_or('0'));
    }
    maybe(rng, 0.05, &mut fields, Field::StreetNumber, &number);
    let (long, short) = LISTS.street_types[address.street_type];
    let street_type = if rng.chance(0.4) { short } else { long };
    let street = if rng.chance(0.03) {
        typo(rng, address.street)
    } else {
        address.street.to_owned()
    };
    maybe(
        rng,
        0.03,
        &mut fields,
        Field::Address1,
        &format!("{street} {street_type}"),
    );
    if let Some(unit) = address.unit
        && rng.chance(0.7)
    {
        let line = if rng.chance(0.5) {
            format!("Unit {unit}")
        } else {
            format!("Apartment {unit}")
        };
        fields.set(Field::Address2, &line);
    }
    let suburb = &suburbs[address.suburb];
    let suburb_name = if rng.chance(0.03) {
        typo(rng, &suburb.name)
    } else {
        suburb.name.clone()
    };
    maybe(rng, 0.03, &mut fields, Field::City, &suburb_name);
    let postcode = if rng.chance(0.02) {
        typo(rng, &suburb.postcode)
    } else {
        suburb.postcode.clone()
    };
    maybe(rng, 0.03, &mut fields, Field::Postcode, &postcode);
    maybe(rng, 0.05, &mut fields, Field::Province, suburb.state);
    fields
}

/// Generates `records` records: persons with one to four records each (half have one), some
/// with a twin or a household member sharing surname and address.
pub fn generate(records: usize, id_share: f64, seed: u64) -> Vec<(u32, PersonFields)> {
    let mut rng = Rng::new(seed ^ 0x006c_6174_696e);
    let suburbs = suburbs();
    let mut out = Vec::with_capacity(records);
    let mut person_index = 0u32;
    let mut last: Option<Person> = None;
    while out.len() < records {
        let mut person = new_person(&mut rng, &suburbs);
        if let Some(previous) = &last {
            if rng.chance(0.01) {
                // A twin: same surname, birth date and home; another given name.
                person.surname = previous.surname.clone();
                person.birth = previous.birth;
                person.address = previous.address.clone();
            } else if rng.chance(0.15) {
                // A household: same surname and home.
                person.surname = previous.surname.clone();
                person.address = previous.address.clone();
            }
        }
        let n_records = match rng.below(100) {
            0..=49 => 1,
            50..=79 => 2,
            80..=94 => 3,
            _ => 4,
        };
        for _ in 0..n_records.min(records - out.len()) {
            if rng.chance(0.08) {
                person.address = new_address(&mut rng, &suburbs);
            }
            if !person.male && rng.chance(0.02) {
                // A married name, kept for the later records.
                person.surname = surname(&mut rng);
            }
            out.push((person_index, record_of(&mut rng, &person, &suburbs, id_share)));
        }
        last = Some(person);
        person_index += 1;
    }
    out
}

/// Wraps the records as the generator's output, in the order they arrive.
pub fn generated(records: Vec<(u32, PersonFields)>, rng: &mut Rng) -> Vec<GeneratedRecord> {
    let mut records: Vec<GeneratedRecord> = records
        .into_iter()
        .map(|(person, fields)| GeneratedRecord {
            id: String::new(),
            person,
            hospital: rng.below(8) as u8,
            fields,
        })
        .collect();
    crate::population_file::shuffle_and_number(&mut records, rng);
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_change_one_thing_and_keep_the_first_letter() {
        let mut rng = Rng::new(3);
        for _ in 0..200 {
            let spoiled = typo(&mut rng, "Catherine");
            assert!(spoiled.starts_with('C'), "{spoiled}");
            assert!(
                hie_population::domain::compare::damerau_levenshtein("Catherine", &spoiled) <= 1,
                "{spoiled}"
            );
        }
    }

    #[test]
    fn the_same_seed_makes_the_same_records_and_persons_repeat() {
        let (a, b) = (generate(3_000, 0.8, 5), generate(3_000, 0.8, 5));
        assert_eq!(a, b);
        let persons: std::collections::HashSet<u32> = a.iter().map(|(p, _)| *p).collect();
        assert!(
            persons.len() > 1_300 && persons.len() < 2_400,
            "{}",
            persons.len()
        );
        let with_id = a
            .iter()
            .filter(|(_, f)| f.identifier(ID_NUMBER).is_some())
            .count();
        assert!((2_250..=2_550).contains(&with_id), "{with_id}");
        assert!(
            a.iter()
                .all(|(_, f)| f.get(Field::City).is_none_or(|c| c.is_ascii()))
        );
    }
}
