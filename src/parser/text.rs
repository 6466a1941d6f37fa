//! Words and numbers of a chat message as people type them: tokens, number words and
//! fractions, units and currency, the numbers a text contains.
//! Invariant: pure functions of the text; a number is read only from what is written.

use crate::action::Dec;

/// A word of a message: as written, and in lower case.
#[derive(Debug, Clone)]
pub struct Tok {
    pub raw: String,
    pub low: String,
}

/// The words of a message.
pub fn tokenize(text: &str) -> Vec<Tok> {
    let mut spaced = String::with_capacity(text.len() + 16);
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let prev_digit = i > 0 && chars[i - 1].is_ascii_digit();
        let next_digit = chars.get(i + 1).is_some_and(|c| c.is_ascii_digit());
        match c {
            ',' if prev_digit && next_digit => {} // 1,000
            ',' | '&' | '+' => {
                spaced.push(' ');
                spaced.push(if c == ',' { ',' } else { '&' });
                spaced.push(' ');
            }
            '@' => spaced.push_str(" @ "),
            '.' if prev_digit && next_digit => spaced.push('.'),
            '#' => spaced.push_str(" #"),
            '$' | '€' | '£' | '?' | '!' | ';' | ':' | '"' | '(' | ')' | '.' | '/' | '=' | '*' => {
                spaced.push(' ')
            }
            c if c.is_control() => spaced.push(' '),
            c => {
                // "1.5kg" -> "1.5 kg"
                if prev_digit && c.is_alphabetic() {
                    spaced.push(' ');
                }
                spaced.push(c);
            }
        }
    }
    spaced
        .split_whitespace()
        .map(|w| {
            let w = w.trim_matches(|c: char| c == '\'' || c == '-');
            let w = w.strip_suffix("'s").unwrap_or(w);
            Tok {
                raw: w.to_owned(),
                low: w.to_lowercase(),
            }
        })
        .filter(|t| !t.low.is_empty())
        .collect()
}

fn word_number(w: &str) -> Option<i64> {
    const SMALL: [&str; 20] = [
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
    ];
    const TENS: [&str; 8] = [
        "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety",
    ];
    if let Some(i) = SMALL.iter().position(|s| *s == w) {
        return Some(i as i64);
    }
    TENS.iter()
        .position(|s| *s == w)
        .map(|i| (i as i64 + 2) * 10)
}

/// A number at `i` (digits, words, "a", "half", "a dozen"): its value and tokens used.
pub fn number_at(toks: &[Tok], i: usize, article: bool) -> Option<(Dec, usize)> {
    let w = toks.get(i)?.low.as_str();
    let next = toks.get(i + 1).map(|t| t.low.as_str());
    let mut value: Option<(Dec, usize)> = if let Some(d) =
        Dec::parse(w).filter(|_| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
    {
        Some((d, 1))
    } else if w == "half" {
        Some((Dec::parse("0.5").expect("valid"), 1))
    } else if (w == "a" || w == "an") && article {
        match next {
            Some("dozen") => return Some((Dec::parse("12").expect("valid"), 2)),
            Some("hundred") => return Some((Dec::parse("100").expect("valid"), 2)),
            Some("half") => return Some((Dec::parse("0.5").expect("valid"), 2)),
            _ => Some((Dec::parse("1").expect("valid"), 1)),
        }
    } else if let Some(n) = word_number(w) {
        let mut total = n;
        let mut used = 1;
        if n >= 20
            && let Some(u) = next.and_then(word_number).filter(|u| *u < 10 && *u > 0)
        {
            total += u;
            used += 1;
        }
        if toks.get(i + used).is_some_and(|t| t.low == "hundred") {
            total *= 100;
            used += 1;
        }
        Some((Dec::parse(&total.to_string()).expect("valid"), used))
    } else {
        None
    };
    // "2 dozen" = 24
    if let Some((d, used)) = value
        && toks.get(i + used).is_some_and(|t| t.low == "dozen")
        && let Ok(milli) = d.to_fixed(3)
    {
        value = Some((Dec::from_fixed(milli * 12, 3), used + 1));
    }
    value
}

/// Words for units and containers ("bags", "kg", "crates").
pub const UNITS: &[&str] = &[
    "bag",
    "bags",
    "sack",
    "sacks",
    "kg",
    "kgs",
    "kilo",
    "kilos",
    "kilogram",
    "kilograms",
    "litre",
    "litres",
    "liter",
    "liters",
    "l",
    "ltr",
    "ltrs",
    "bottle",
    "bottles",
    "tray",
    "trays",
    "crate",
    "crates",
    "box",
    "boxes",
    "packet",
    "packets",
    "pack",
    "packs",
    "piece",
    "pieces",
    "pcs",
    "pc",
    "loaf",
    "loaves",
    "can",
    "cans",
    "carton",
    "cartons",
    "tin",
    "tins",
    "jar",
    "jars",
    "bunch",
    "bunches",
    "bundle",
    "bundles",
    "units",
    "unit",
    "dozen",
    "dozens",
];

/// Whether a number starts at `i`.
pub fn is_number(toks: &[Tok], i: usize) -> bool {
    number_at(toks, i, false).is_some()
}

/// Money at `i`, skipping a currency word before or after.
pub fn money_at(toks: &[Tok], i: usize) -> Option<(Dec, usize)> {
    const CURRENCY: &[&str] = &[
        "ksh", "kes", "usd", "sh", "shs", "tsh", "ugx", "ngn", "naira", "rs", "inr",
    ];
    let mut j = i;
    if toks
        .get(j)
        .is_some_and(|t| CURRENCY.contains(&t.low.as_str()))
    {
        j += 1;
    }
    let (d, used) = number_at(toks, j, false)?;
    let mut end = j + used;
    if toks.get(end).is_some_and(|t| {
        [
            "dollars",
            "dollar",
            "bob",
            "shillings",
            "bucks",
            "ksh",
            "kes",
            "usd",
            "naira",
            "rupees",
        ]
        .contains(&t.low.as_str())
    }) {
        end += 1;
    }
    Some((d, end - i))
}

/// Every number in `text` as the phrase parser reads it (digits, words, "a dozen", "half").
pub fn numbers(text: &str) -> Vec<Dec> {
    let toks = tokenize(text);
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match number_at(&toks, i, true) {
            Some((d, used)) => {
                out.push(d);
                i += used;
            }
            None => i += 1,
        }
    }
    out
}

