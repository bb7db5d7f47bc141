//! The string, date and pinyin primitives the linkage engine's comparators are built from
//! (`linkage::comparison`): pure functions. Strings are compared as Unicode characters, not bytes,
//! so that 吴阿妹 and 吴阿梅 differ by one, as they should.

/// Jaro–Winkler similarity in 0..=1 (1 for equal strings), with the usual prefix scale 0.1 over at
/// most four characters.
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    // ASCII strings (pinyin and sound keys, the hot case in linkage) are compared as bytes,
    // without collecting characters.
    if a.is_ascii() && b.is_ascii() {
        return jaro_winkler_of(a.as_bytes(), b.as_bytes());
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    jaro_winkler_of(&a, &b)
}

fn jaro_winkler_of<T: PartialEq + Copy>(a: &[T], b: &[T]) -> f64 {
    let jaro = jaro(a, b);
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
    jaro + prefix as f64 * 0.1 * (1.0 - jaro)
}

fn jaro<T: PartialEq + Copy>(a: &[T], b: &[T]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let window = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut b_matched = vec![false; b.len()];
    let mut a_matched = vec![false; a.len()];
    let mut n_matches = 0usize;
    for (i, x) in a.iter().enumerate() {
        let from = i.saturating_sub(window);
        let to = (i + window + 1).min(b.len());
        if let Some(j) = (from..to).find(|&j| !b_matched[j] && b[j] == *x) {
            b_matched[j] = true;
            a_matched[i] = true;
            n_matches += 1;
        }
    }
    if n_matches == 0 {
        return 0.0;
    }
    let a_matches = a.iter().zip(&a_matched).filter(|(_, m)| **m).map(|(c, _)| *c);
    let b_matches = b.iter().zip(&b_matched).filter(|(_, m)| **m).map(|(c, _)| *c);
    let half_transpositions = a_matches.zip(b_matches).filter(|(x, y)| *x != *y).count();
    let m = n_matches as f64;
    let t = (half_transpositions / 2) as f64;
    (m / a.len() as f64 + m / b.len() as f64 + (m - t) / m) / 3.0
}

/// The Damerau–Levenshtein distance: insertions, deletions, substitutions and transpositions of
/// adjacent characters, each costing one (the unrestricted form, so "CA" → "ABC" is 2).
pub fn damerau_levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    let infinity = n + m;
    // d[i + 1][j + 1] is the distance between a[..i] and b[..j]; row and column 0 hold infinity.
    let mut d = vec![vec![0usize; m + 2]; n + 2];
    d[0][0] = infinity;
    for i in 0..=n {
        d[i + 1][0] = infinity;
        d[i + 1][1] = i;
    }
    for j in 0..=m {
        d[0][j + 1] = infinity;
        d[1][j + 1] = j;
    }
    let mut last_row_of: std::collections::HashMap<char, usize> = std::collections::HashMap::new();
    for i in 1..=n {
        let mut last_match_column = 0;
        for j in 1..=m {
            let i1 = last_row_of.get(&b[j - 1]).copied().unwrap_or(0);
            let j1 = last_match_column;
            let cost = if a[i - 1] == b[j - 1] {
                last_match_column = j;
                0
            } else {
                1
            };
            d[i + 1][j + 1] = (d[i][j] + cost)
                .min(d[i + 1][j] + 1)
                .min(d[i][j + 1] + 1)
                .min(d[i1][j1] + (i - i1 - 1) + 1 + (j - j1 - 1));
        }
        last_row_of.insert(a[i - 1], i);
    }
    d[n + 1][m + 1]
}

/// Whether two strings differ by at most one insertion, deletion, substitution or transposition
/// of adjacent characters: `damerau_levenshtein(a, b) <= 1` in one pass, without allocating.
pub fn at_most_one_edit(a: &str, b: &str) -> bool {
    let (mut x, mut y) = (a.chars(), b.chars());
    loop {
        match (x.next(), y.next()) {
            (None, None) => return true,
            (Some(p), Some(q)) if p == q => continue,
            (p, q) => {
                // The first difference. What follows must then match under one of the four edits.
                let (rest_x, rest_y) = (x.clone(), y.clone());
                let substitution = p.is_some() && q.is_some() && rest_x.clone().eq(rest_y.clone());
                let deletion = p.is_some() && rest_x.clone().eq(q.into_iter().chain(rest_y.clone()));
                let insertion = q.is_some() && p.into_iter().chain(rest_x.clone()).eq(rest_y.clone());
                let transposition = {
                    let (mut tx, mut ty) = (rest_x, rest_y);
                    match (p, q, tx.next(), ty.next()) {
                        (Some(p), Some(q), Some(p2), Some(q2)) => p == q2 && q == p2 && tx.eq(ty),
                        _ => false,
                    }
                };
                return substitution || deletion || insertion || transposition;
            }
        }
    }
}

/// How two dates of birth agree, from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DateAgreement {
    Exact,
    /// Day and month swapped (03-04 for 04-03): a common transcription error.
    DayMonthSwapped,
    /// One digit of YYYYMMDD differs, or two adjacent digits are transposed.
    OneTypo,
    Different,
}

/// Compares two dates given as (year, month, day).
pub fn compare_dates(a: (i32, u32, u32), b: (i32, u32, u32)) -> DateAgreement {
    if a == b {
        return DateAgreement::Exact;
    }
    if a.0 == b.0 && a.1 == b.2 && a.2 == b.1 {
        return DateAgreement::DayMonthSwapped;
    }
    let digits = |(y, m, d): (i32, u32, u32)| format!("{y:04}{m:02}{d:02}");
    let (x, y) = (digits(a), digits(b));
    let differing: Vec<usize> = x
        .bytes()
        .zip(y.bytes())
        .enumerate()
        .filter(|(_, (p, q))| p != q)
        .map(|(i, _)| i)
        .collect();
    let transposed = differing.len() == 2
        && differing[1] == differing[0] + 1
        && x.as_bytes()[differing[0]] == y.as_bytes()[differing[1]]
        && x.as_bytes()[differing[1]] == y.as_bytes()[differing[0]];
    if x.len() == y.len() && (differing.len() == 1 || transposed) {
        DateAgreement::OneTypo
    } else {
        DateAgreement::Different
    }
}

/// The characters of a name that carry sound: spaces and the middle dot that joins the parts of a
/// transliterated minority name (阿依古丽·买买提) are left out.
fn name_chars(name: &str) -> impl Iterator<Item = char> + '_ {
    name.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '·' | '•' | '・'))
}

/// The toneless pinyin readings of each character of a name: several for a polyphonic character
/// (单 dan, shan, chan), one for most; a character without a reading (Latin letters, digits)
/// stands for itself, lower-cased.
pub fn pinyin_readings(name: &str) -> Vec<Vec<&'static str>> {
    use pinyin::ToPinyinMulti;
    name_chars(name)
        .map(|c| match c.to_pinyin_multi() {
            Some(readings) => readings.into_iter().map(|r| r.plain()).collect(),
            None => Vec::new(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 0.001
    }

    #[test]
    fn jaro_winkler_matches_the_published_examples() {
        assert!(
            close(jaro_winkler("MARTHA", "MARHTA"), 0.961),
            "{}",
            jaro_winkler("MARTHA", "MARHTA")
        );
        assert!(
            close(jaro_winkler("DWAYNE", "DUANE"), 0.840),
            "{}",
            jaro_winkler("DWAYNE", "DUANE")
        );
        assert!(
            close(jaro_winkler("DIXON", "DICKSONX"), 0.813),
            "{}",
            jaro_winkler("DIXON", "DICKSONX")
        );
        assert_eq!(jaro_winkler("吴阿妹", "吴阿妹"), 1.0);
        assert_eq!(jaro_winkler("", ""), 1.0);
        assert_eq!(jaro_winkler("吴", ""), 0.0);
        assert!(jaro_winkler("吴阿妹", "吴阿梅") > jaro_winkler("吴阿妹", "杨秀英"));
    }

    #[test]
    fn damerau_levenshtein_counts_characters_and_adjacent_transpositions() {
        assert_eq!(damerau_levenshtein("CA", "ABC"), 2);
        assert_eq!(damerau_levenshtein("kitten", "sitting"), 3);
        assert_eq!(damerau_levenshtein("吴阿妹", "吴阿梅"), 1);
        assert_eq!(damerau_levenshtein("522601198503140021", "522601198530140021"), 1);
        assert_eq!(damerau_levenshtein("", "abc"), 3);
        assert_eq!(damerau_levenshtein("same", "same"), 0);
    }

    #[test]
    fn one_edit_agrees_with_the_full_distance() {
        let words = [
            "",
            "a",
            "ab",
            "ba",
            "abc",
            "acb",
            "abd",
            "abcd",
            "吴阿妹",
            "吴阿梅",
            "阿吴妹",
            "吴妹",
            "522601198503140021",
            "522601198530140021",
            "522601198503140012",
            "52260119850314002",
        ];
        for a in words {
            for b in words {
                assert_eq!(
                    at_most_one_edit(a, b),
                    damerau_levenshtein(a, b) <= 1,
                    "{a} / {b}"
                );
            }
        }
    }

    #[test]
    fn dates_tolerate_a_swap_or_one_typo_and_nothing_more() {
        assert_eq!(compare_dates((1985, 3, 14), (1985, 3, 14)), DateAgreement::Exact);
        assert_eq!(
            compare_dates((1985, 3, 4), (1985, 4, 3)),
            DateAgreement::DayMonthSwapped
        );
        assert_eq!(
            compare_dates((1985, 3, 14), (1985, 3, 15)),
            DateAgreement::OneTypo
        );
        assert_eq!(
            compare_dates((1985, 3, 14), (1958, 3, 14)),
            DateAgreement::OneTypo
        );
        assert_eq!(
            compare_dates((1985, 3, 14), (1986, 4, 14)),
            DateAgreement::Different
        );
        assert_eq!(
            compare_dates((1985, 3, 14), (1990, 7, 1)),
            DateAgreement::Different
        );
    }

    #[test]
    fn polyphonic_surnames_have_every_reading() {
        assert!(
            pinyin_readings("单")[0].contains(&"shan"),
            "{:?}",
            pinyin_readings("单")
        );
        assert!(
            pinyin_readings("曾")[0].contains(&"zeng"),
            "{:?}",
            pinyin_readings("曾")
        );
        assert!(
            pinyin_readings("解")[0].contains(&"xie"),
            "{:?}",
            pinyin_readings("解")
        );
        assert!(
            pinyin_readings("仇")[0].contains(&"qiu"),
            "{:?}",
            pinyin_readings("仇")
        );
        assert!(
            pinyin_readings("区")[0].contains(&"ou"),
            "{:?}",
            pinyin_readings("区")
        );
    }
}
