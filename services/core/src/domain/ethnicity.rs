use crate::error::FieldError;

/// The ethnic groups of GB 3304, by code: the 56 groups, then 97 (other, 其他) and 98 (Chinese
/// citizens of foreign origin, 外国血统中国籍人士).
const GROUPS: [(&str, &str); 58] = [
    ("01", "汉族"),
    ("02", "蒙古族"),
    ("03", "回族"),
    ("04", "藏族"),
    ("05", "维吾尔族"),
    ("06", "苗族"),
    ("07", "彝族"),
    ("08", "壮族"),
    ("09", "布依族"),
    ("10", "朝鲜族"),
    ("11", "满族"),
    ("12", "侗族"),
    ("13", "瑶族"),
    ("14", "白族"),
    ("15", "土家族"),
    ("16", "哈尼族"),
    ("17", "哈萨克族"),
    ("18", "傣族"),
    ("19", "黎族"),
    ("20", "傈僳族"),
    ("21", "佤族"),
    ("22", "畲族"),
    ("23", "高山族"),
    ("24", "拉祜族"),
    ("25", "水族"),
    ("26", "东乡族"),
    ("27", "纳西族"),
    ("28", "景颇族"),
    ("29", "柯尔克孜族"),
    ("30", "土族"),
    ("31", "达斡尔族"),
    ("32", "仫佬族"),
    ("33", "羌族"),
    ("34", "布朗族"),
    ("35", "撒拉族"),
    ("36", "毛南族"),
    ("37", "仡佬族"),
    ("38", "锡伯族"),
    ("39", "阿昌族"),
    ("40", "普米族"),
    ("41", "塔吉克族"),
    ("42", "怒族"),
    ("43", "乌孜别克族"),
    ("44", "俄罗斯族"),
    ("45", "鄂温克族"),
    ("46", "德昂族"),
    ("47", "保安族"),
    ("48", "裕固族"),
    ("49", "京族"),
    ("50", "塔塔尔族"),
    ("51", "独龙族"),
    ("52", "鄂伦春族"),
    ("53", "赫哲族"),
    ("54", "门巴族"),
    ("55", "珞巴族"),
    ("56", "基诺族"),
    ("97", "其他"),
    ("98", "外国血统中国籍人士"),
];

/// An ethnic group of GB 3304.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ethnicity(&'static str, &'static str);

impl Ethnicity {
    pub const HAN: Ethnicity = Ethnicity("01", "汉族");
    pub const MIAO: Ethnicity = Ethnicity("06", "苗族");
    pub const DONG: Ethnicity = Ethnicity("12", "侗族");

    /// Parses a two-digit code; a single digit is read with its leading zero ("1" is Han), as
    /// many hospital systems drop it.
    pub fn parse(code: &str) -> Result<Ethnicity, FieldError> {
        let code = code.trim();
        let padded = if code.len() == 1 {
            format!("0{code}")
        } else {
            code.to_owned()
        };
        GROUPS
            .iter()
            .find(|(c, _)| *c == padded)
            .map(|(c, name)| Ethnicity(c, name))
            .ok_or_else(|| {
                FieldError(format!(
                    "'{}' is not a GB 3304 ethnic group code, expected 01 to 56, 97 or 98",
                    code.chars().take(8).collect::<String>()
                ))
            })
    }

    pub fn code(self) -> &'static str {
        self.0
    }

    /// The group's name in Chinese, for example 苗族.
    pub fn name(self) -> &'static str {
        self.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_56_groups_and_other_and_foreign_origin_parse() {
        for n in 1..=56 {
            assert!(Ethnicity::parse(&format!("{n:02}")).is_ok(), "{n}");
        }
        assert_eq!(Ethnicity::parse("97").unwrap().name(), "其他");
        assert_eq!(Ethnicity::parse("98").unwrap().name(), "外国血统中国籍人士");
        assert_eq!(Ethnicity::parse("06").unwrap(), Ethnicity::MIAO);
        assert_eq!(Ethnicity::parse("1").unwrap(), Ethnicity::HAN);
    }

    #[test]
    fn codes_outside_the_standard_are_refused() {
        for code in ["00", "57", "96", "99", "Han", ""] {
            assert!(Ethnicity::parse(code).is_err(), "{code}");
        }
    }
}
