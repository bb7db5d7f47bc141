//! A Chinese population with realistic name frequencies and the corruption real registration
//! desks produce: homophone and similar-character substitutions, typos, missing fields,
//! day/month swaps, transposed identity digits, changed phones, moved addresses, minority names
//! transliterated another way, several records of one person in one hospital.

use chrono::{Datelike, Duration, NaiveDate};
use hie_core::domain::ResidentId;
use hie_population::domain::linkage::{Field, PersonFields};

use super::{GeneratedRecord, GeneratorOptions};
use crate::demo::Rng;

/// Surnames with their share per ten thousand, from the 2020 census' list (the top forty, and a
/// few polyphonic and compound surnames matching must not trip over).
const SURNAMES: &[(&str, u32)] = &[
    ("王", 710),
    ("李", 700),
    ("张", 670),
    ("刘", 540),
    ("陈", 450),
    ("杨", 310),
    ("赵", 230),
    ("黄", 220),
    ("周", 210),
    ("吴", 200),
    ("徐", 170),
    ("孙", 150),
    ("胡", 130),
    ("朱", 130),
    ("高", 120),
    ("林", 120),
    ("何", 120),
    ("郭", 110),
    ("马", 100),
    ("罗", 90),
    ("梁", 90),
    ("宋", 80),
    ("郑", 80),
    ("谢", 70),
    ("韩", 70),
    ("唐", 70),
    ("冯", 70),
    ("于", 60),
    ("董", 60),
    ("萧", 60),
    ("程", 60),
    ("曹", 60),
    ("袁", 50),
    ("邓", 50),
    ("许", 50),
    ("傅", 50),
    ("沈", 50),
    ("曾", 50),
    ("彭", 50),
    ("吕", 50),
    ("石", 40),
    ("龙", 30),
    ("潘", 30),
    ("单", 10),
    ("解", 5),
    ("仇", 5),
    ("区", 3),
    ("欧阳", 8),
    ("司马", 2),
];

const GIVEN_MALE: &[&str] = &[
    "伟", "强", "磊", "军", "勇", "杰", "涛", "明", "超", "华", "平", "志", "文", "国", "建", "光", "荣",
    "胜", "斌", "波", "辉", "刚", "峰", "龙", "海", "鹏", "飞", "兵", "东", "亮", "宇", "浩", "俊", "林",
    "晨", "博", "健", "忠", "德", "福", "生", "金", "武", "新", "成", "振", "江", "永", "宏", "家",
];
const GIVEN_FEMALE: &[&str] = &[
    "芳", "娜", "敏", "静", "丽", "艳", "娟", "秀", "英", "梅", "兰", "花", "燕", "玲", "霞", "琴", "萍",
    "红", "云", "春", "玉", "凤", "婷", "雪", "慧", "莉", "琳", "颖", "洁", "倩", "佳", "欣", "悦", "月",
    "菊", "桂", "珍", "莲", "晓", "丹", "瑶", "露", "晶", "妍", "琪", "薇", "蓉", "淑", "雅", "宁",
];

/// Characters that sound alike, as a clerk hearing a name may write either.
const HOMOPHONES: &[&[&str]] = &[
    &["王", "汪"],
    &["张", "章"],
    &["刘", "柳"],
    &["陈", "沉", "晨"],
    &["杨", "阳", "扬"],
    &["黄", "皇"],
    &["周", "舟", "州"],
    &["吴", "武", "伍"],
    &["徐", "许"],
    &["李", "黎", "礼"],
    &["林", "琳", "霖", "临"],
    &["何", "贺", "和"],
    &["罗", "骆"],
    &["芳", "方", "坊"],
    &["丽", "莉", "立", "力", "利"],
    &["伟", "玮", "维", "卫"],
    &["敏", "民", "珉"],
    &["静", "晶", "靖", "婧"],
    &["明", "铭", "鸣"],
    &["华", "桦", "骅"],
    &["军", "君", "钧"],
    &["杰", "洁", "捷"],
    &["涛", "韬", "滔"],
    &["勇", "永", "泳"],
    &["磊", "蕾", "垒"],
    &["艳", "燕", "雁", "彦"],
    &["娟", "鹃"],
    &["秀", "绣"],
    &["英", "瑛", "莺", "樱"],
    &["梅", "玫", "媚", "美"],
    &["兰", "蓝", "岚", "澜"],
    &["玲", "铃", "灵"],
    &["霞", "侠"],
    &["琴", "勤", "芹"],
    &["萍", "平", "苹"],
    &["红", "虹", "宏", "洪", "鸿"],
    &["建", "剑", "健"],
    &["文", "雯", "闻"],
    &["志", "智", "治"],
    &["荣", "蓉", "容"],
    &["胜", "圣", "盛"],
    &["斌", "彬", "宾"],
    &["辉", "徽", "晖"],
    &["刚", "钢", "纲"],
    &["峰", "锋", "枫", "丰"],
    &["龙", "隆"],
    &["云", "芸", "耘"],
    &["金", "锦", "津"],
    &["玉", "宇", "雨", "羽"],
    &["兵", "冰"],
    &["东", "冬"],
    &["飞", "菲", "非"],
    &["宁", "凝"],
    &["晓", "小", "筱"],
    &["婷", "庭", "亭"],
    &["雪", "血"],
    &["慧", "惠", "蕙"],
    &["颖", "影", "莹"],
    &["佳", "家", "嘉"],
    &["欣", "新", "馨"],
    &["悦", "月", "越"],
    &["珍", "真", "贞"],
    &["莲", "连", "怜"],
];

/// Characters that look alike, as a clerk copying a handwritten form may confuse them.
const LOOK_ALIKES: &[&[&str]] = &[
    &["王", "玉", "主"],
    &["李", "季"],
    &["刘", "浏"],
    &["杨", "汤", "扬"],
    &["未", "末"],
    &["明", "朋"],
    &["梅", "海"],
    &["日", "曰"],
    &["天", "夭"],
    &["干", "千", "于"],
    &["土", "士"],
    &["大", "太", "犬"],
    &["晶", "品"],
    &["清", "请", "情"],
    &["红", "江"],
    &["秀", "季"],
    &["平", "苹"],
    &["兰", "当"],
];

/// Traditional forms a record from Hong Kong, Macao or Taiwan, or an old register, may use.
const TRADITIONAL: &[(&str, &str)] = &[
    ("陈", "陳"),
    ("刘", "劉"),
    ("张", "張"),
    ("杨", "楊"),
    ("黄", "黃"),
    ("赵", "趙"),
    ("吴", "吳"),
    ("孙", "孫"),
    ("郑", "鄭"),
    ("冯", "馮"),
    ("华", "華"),
    ("国", "國"),
    ("丽", "麗"),
    ("红", "紅"),
    ("兰", "蘭"),
    ("凤", "鳳"),
    ("龙", "龍"),
    ("单", "單"),
    ("区", "區"),
    ("欧阳", "歐陽"),
];

/// Uyghur and Tibetan name parts, each with the ways the same name is written in characters,
/// and one Latin transliteration: the minority-name variants are the normal case.
const MINORITY_PARTS: &[(&[&str], &str)] = &[
    (&["买买提", "麦麦提", "买买提"], "Memet"),
    (&["艾力", "艾丽", "阿力"], "Eli"),
    (&["阿不都", "阿布都", "阿卜杜"], "Abdu"),
    (&["热合曼", "热依曼", "热合满"], "Rehman"),
    (&["努尔", "奴尔", "努儿"], "Nur"),
    (&["古丽", "古力", "姑丽"], "Gul"),
    (&["吐尔逊", "图尔荪", "吐尔孙"], "Tursun"),
    (&["阿依", "阿伊", "阿衣"], "Ay"),
    (&["依明", "伊明", "依民"], "Imin"),
    (&["玉素甫", "尤素福", "玉苏普"], "Yusup"),
    (&["艾山", "艾散", "哎山"], "Hesen"),
    (&["库尔班", "库尔邦", "库尔斑"], "Qurban"),
    (&["扎西", "扎喜", "札西"], "Tashi"),
    (&["多吉", "多杰", "朵吉"], "Dorje"),
    (&["卓玛", "卓嘛", "卓玛"], "Drolma"),
    (&["次仁", "才仁", "次任"], "Tsering"),
    (&["央金", "央吉", "扬金"], "Yangchen"),
    (&["拉姆", "拉毛", "拉母"], "Lhamo"),
    (&["平措", "彭措", "平错"], "Phuntsok"),
    (&["丹增", "旦增", "单增"], "Tenzin"),
];

const COUNTIES: &[(&str, &str, &str)] = &[
    ("522601", "凯里市", "556000"),
    ("522622", "黄平县", "556100"),
    ("522623", "施秉县", "556200"),
    ("522624", "三穗县", "556500"),
    ("522625", "镇远县", "557700"),
    ("522627", "天柱县", "556600"),
    ("522631", "黎平县", "557300"),
    ("522633", "从江县", "557400"),
    ("522634", "雷山县", "557100"),
    ("520102", "贵阳市南明区", "550001"),
    ("520103", "贵阳市云岩区", "550001"),
    ("650102", "乌鲁木齐市天山区", "830000"),
    ("540102", "拉萨市城关区", "850000"),
];
const STREETS: &[&str] = &[
    "北京东路",
    "文化北路",
    "宁波路",
    "营盘东路",
    "韶山南路",
    "大十字街",
    "清江路",
    "迎宾大道",
    "永乐路",
    "金井路",
    "博南路",
    "环城北路",
    "解放路",
    "人民路",
    "中山路",
    "新华路",
];
const VILLAGES: &[&str] = &[
    "平寨", "乌东", "控拜", "南猛", "季刀", "大利", "占里", "堂安", "岜沙", "郎德",
];

/// A person's true demographics.
#[derive(Debug, Clone)]
struct TruePerson {
    name_parts: Vec<NamePart>,
    male: bool,
    birth: NaiveDate,
    resident_id: String,
    phone: String,
    county: usize,
    address: String,
}

/// A part of a name: Han characters, or a minority name part with its variants.
#[derive(Debug, Clone)]
enum NamePart {
    Han(String),
    Minority(usize),
}

fn weighted<'a>(rng: &mut Rng, items: &'a [(&'a str, u32)]) -> &'a str {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut draw = rng.below(total as usize) as u32;
    for (item, weight) in items {
        if draw < *weight {
            return item;
        }
        draw -= weight;
    }
    items[0].0
}

fn true_person(
    rng: &mut Rng,
    county_weights: &[(usize, u32)],
    issued: &mut std::collections::HashSet<String>,
) -> TruePerson {
    let male = rng.chance(0.5);
    let roll = rng.below(100);
    let county = {
        let total: u32 = county_weights.iter().map(|(_, w)| w).sum();
        let mut draw = rng.below(total as usize) as u32;
        let mut chosen = 0;
        for (c, w) in county_weights {
            if draw < *w {
                chosen = *c;
                break;
            }
            draw -= w;
        }
        chosen
    };
    let name_parts = if roll < 8 {
        // A minority name of two parts: own name and father's name.
        vec![
            NamePart::Minority(rng.below(MINORITY_PARTS.len())),
            NamePart::Minority(rng.below(MINORITY_PARTS.len())),
        ]
    } else {
        let surname = weighted(rng, SURNAMES).to_owned();
        let pool = if male { GIVEN_MALE } else { GIVEN_FEMALE };
        let mut given = String::new();
        for _ in 0..if rng.chance(0.25) { 1 } else { 2 } {
            let part: &&str = rng.pick(pool);
            given.push_str(part);
        }
        vec![NamePart::Han(surname), NamePart::Han(given)]
    };
    let birth =
        NaiveDate::from_ymd_opt(1930, 1, 1).expect("valid") + Duration::days(rng.below(95 * 365) as i64);
    // Identity numbers are unique: the order code is drawn again until it is free.
    let resident_id = loop {
        let order = rng.below(500) * 2 + usize::from(male);
        let first_17 = format!(
            "{}{:04}{:02}{:02}{order:03}",
            COUNTIES[county].0,
            birth.year(),
            birth.month(),
            birth.day()
        );
        let check = ResidentId::check_character(first_17.as_bytes()) as char;
        let id = format!("{first_17}{check}");
        if issued.insert(id.clone()) {
            break id;
        }
    };
    TruePerson {
        name_parts,
        male,
        birth,
        resident_id,
        phone: new_phone(rng),
        county,
        address: new_address(rng),
    }
}

fn new_phone(rng: &mut Rng) -> String {
    let prefix = rng.pick(&[
        "138", "139", "150", "151", "182", "187", "135", "136", "189", "177",
    ]);
    format!("{prefix}{:08}", rng.next_u64() % 100_000_000)
}

fn new_address(rng: &mut Rng) -> String {
    if rng.chance(0.5) {
        format!("{}{}号", rng.pick(STREETS), 1 + rng.below(300))
    } else {
        format!(
            "{}村{}组{}号",
            rng.pick(VILLAGES),
            1 + rng.below(12),
            1 + rng.below(60)
        )
    }
}

fn replace_one_char(rng: &mut Rng, text: &str, groups: &[&[&str]]) -> Option<String> {
    let chars: Vec<char> = text.chars().collect();
    let candidates: Vec<(usize, &[&str])> = chars
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let c = c.to_string();
            groups.iter().find(|g| g.contains(&c.as_str())).map(|g| (i, *g))
        })
        .collect();
    if candidates.is_empty() {
        return None;
    }
    let (at, group) = candidates[rng.below(candidates.len())];
    let current = chars[at].to_string();
    let others: Vec<&&str> = group.iter().filter(|g| **g != current).collect();
    let replacement = others[rng.below(others.len())];
    Some(
        chars
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i == at {
                    (*replacement).to_owned()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// The name as one clerk writes it.
fn written_name(rng: &mut Rng, person: &TruePerson) -> String {
    if person
        .name_parts
        .iter()
        .any(|p| matches!(p, NamePart::Minority(_)))
    {
        let latin = rng.chance(0.05);
        let parts: Vec<String> = person
            .name_parts
            .iter()
            .map(|p| match p {
                NamePart::Minority(m) => {
                    let (forms, latin_form) = MINORITY_PARTS[*m];
                    if latin {
                        latin_form.to_owned()
                    } else if rng.chance(0.6) {
                        forms[0].to_owned()
                    } else {
                        rng.pick(forms).to_string()
                    }
                }
                NamePart::Han(text) => text.clone(),
            })
            .collect();
        let separator = if latin {
            " "
        } else if rng.chance(0.5) {
            "·"
        } else {
            ""
        };
        return parts.join(separator);
    }
    let mut name: String = person
        .name_parts
        .iter()
        .map(|p| match p {
            NamePart::Han(text) => text.as_str(),
            NamePart::Minority(_) => "",
        })
        .collect();
    let roll = rng.below(1000);
    if roll < 60 {
        name = replace_one_char(rng, &name, HOMOPHONES).unwrap_or(name);
    } else if roll < 80 {
        name = replace_one_char(rng, &name, LOOK_ALIKES).unwrap_or(name);
    } else if roll < 95 {
        // A typo: one character of the given name replaced by another common one.
        let mut chars: Vec<char> = name.chars().collect();
        let at = chars.len() - 1;
        let pool = if person.male { GIVEN_MALE } else { GIVEN_FEMALE };
        chars[at] = rng.pick(pool).chars().next().unwrap_or(chars[at]);
        name = chars.into_iter().collect();
    } else if roll < 110 {
        for (simplified, traditional) in TRADITIONAL {
            name = name.replace(simplified, traditional);
        }
    }
    name
}

fn spoiled_date(rng: &mut Rng, date: NaiveDate) -> String {
    let (y, m, d) = (date.year(), date.month(), date.day());
    let roll = rng.below(1000);
    let text = if roll < 30 && d <= 12 && d != m {
        format!("{y:04}{d:02}{m:02}")
    } else if roll < 60 {
        let mut digits: Vec<u8> = format!("{y:04}{m:02}{d:02}").into_bytes();
        let at = 2 + rng.below(6);
        digits[at] = b'0' + ((digits[at] - b'0' + 1 + rng.below(8) as u8) % 10);
        String::from_utf8(digits).unwrap_or_default()
    } else {
        format!("{y:04}{m:02}{d:02}")
    };
    // A spoiled date that is no calendar date would be refused at the desk: keep the true one.
    let valid = hie_population::domain::linkage::parse_birth_date(&text).is_ok();
    let text = if valid {
        text
    } else {
        format!("{y:04}{m:02}{d:02}")
    };
    match rng.below(3) {
        0 => format!("{}-{}-{}", &text[0..4], &text[4..6], &text[6..8]),
        1 => format!("{}/{}/{}", &text[0..4], &text[4..6], &text[6..8]),
        _ => text,
    }
}

fn spoiled_resident_id(rng: &mut Rng, id: &str) -> String {
    if rng.chance(0.02) {
        let mut bytes = id.as_bytes().to_vec();
        let at = 6 + rng.below(10);
        bytes.swap(at, at + 1);
        String::from_utf8(bytes).unwrap_or_else(|_| id.to_owned())
    } else {
        id.to_owned()
    }
}

/// Generates the records: persons with one to four records each (half have one), spread over
/// eight hospitals, so that two records of one person are sometimes in the same hospital.
pub fn generate(options: &GeneratorOptions) -> Vec<GeneratedRecord> {
    let mut rng = Rng::new(options.seed);
    // Most residents live in the prefecture's own counties; the cities and the minority regions
    // send fewer.
    let county_weights: Vec<(usize, u32)> = (0..COUNTIES.len())
        .map(|c| (c, if c < 9 { 10 } else { 3 }))
        .collect();
    let mut records = Vec::with_capacity(options.records);
    let mut issued = std::collections::HashSet::new();
    let mut person_index = 0u32;
    while records.len() < options.records {
        let mut person = true_person(&mut rng, &county_weights, &mut issued);
        let n_records = match rng.below(100) {
            0..=49 => 1,
            50..=79 => 2,
            80..=94 => 3,
            _ => 4,
        };
        for _ in 0..n_records.min(options.records - records.len()) {
            // A move or a new phone between visits stays for the later records.
            if rng.chance(0.08) {
                person.phone = new_phone(&mut rng);
            }
            if rng.chance(0.08) {
                person.county = county_weights[rng.below(county_weights.len())].0;
                person.address = new_address(&mut rng);
            }
            let mut fields = PersonFields::default();
            fields.set(Field::FullName, &written_name(&mut rng, &person));
            if !rng.chance(0.03) {
                fields.set(Field::Sex, if person.male { "1" } else { "2" });
            }
            if !rng.chance(0.03) {
                fields.set(Field::BirthDate, &spoiled_date(&mut rng, person.birth));
            }
            if rng.chance(options.id_share) {
                fields.set(
                    Field::ResidentId,
                    &spoiled_resident_id(&mut rng, &person.resident_id),
                );
            }
            if !rng.chance(0.25) {
                fields.set(Field::Phone, &person.phone);
            }
            let (_, county_name, postcode) = COUNTIES[person.county];
            if !rng.chance(0.15) {
                fields.set(Field::Address1, &person.address);
            }
            if !rng.chance(0.05) {
                fields.set(Field::City, county_name);
            }
            if !rng.chance(0.4) {
                fields.set(Field::Postcode, postcode);
            }
            let province = match COUNTIES[person.county].0.get(..2) {
                Some("65") => "新疆维吾尔自治区",
                Some("54") => "西藏自治区",
                _ => "贵州省",
            };
            fields.set(Field::Province, province);
            records.push(GeneratedRecord {
                id: String::new(),
                person: person_index,
                hospital: rng.below(8) as u8,
                fields,
            });
        }
        person_index += 1;
    }
    super::shuffle_and_number(&mut records, &mut rng);
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::population_file::Script;

    #[test]
    fn the_same_seed_makes_the_same_file_and_persons_repeat() {
        let options = GeneratorOptions {
            script: Script::Chinese,
            records: 2_000,
            id_share: 0.8,
            seed: 7,
        };
        let (a, b) = (generate(&options), generate(&options));
        assert_eq!(a.len(), 2_000);
        assert!(
            a.iter()
                .zip(&b)
                .all(|(x, y)| x.id == y.id && x.fields == y.fields)
        );
        let persons: std::collections::HashSet<u32> = a.iter().map(|r| r.person).collect();
        assert!(persons.len() < 1_600 && persons.len() > 900, "{}", persons.len());
        let with_id = a
            .iter()
            .filter(|r| r.fields.get(Field::ResidentId).is_some())
            .count();
        assert!((1_450..=1_750).contains(&with_id), "{with_id}");
    }
}
