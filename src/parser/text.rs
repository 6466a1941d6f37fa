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

/// Chat spellings and run-together words, as the words they stand for.
const SPELLINGS: &[(&str, &str)] = &[
    ("2day", "today"),
    ("tdy", "today"),
    ("2dy", "today"),
    ("todays", "today"),
    ("yday", "yesterday"),
    ("ystday", "yesterday"),
    ("ystrday", "yesterday"),
    ("yesterdays", "yesterday"),
    ("2moro", "tomorrow"),
    ("pls", "please"),
    ("plz", "please"),
    ("thx", "thanks"),
    ("u", "you"),
    ("r", "are"),
    ("ur", "your"),
    ("wat", "what"),
    ("wht", "what"),
    ("hw", "how"),
    ("n", "and"),
    ("nd", "and"),
    ("rcvd", "received"),
    ("recd", "received"),
    ("sld", "sold"),
    ("months", "month"),
    ("weeks", "week"),
    ("dont", "don't"),
];

/// Verbs and cue words the parser keys on, for typo tolerance: a word one edit from one of
/// these (two for long ones), and not a word the parser knows otherwise, is read as it.
const CUES: &[&str] = &[
    "sold",
    "sell",
    "selling",
    "restock",
    "restocked",
    "received",
    "receive",
    "delivered",
    "deliver",
    "bought",
    "brought",
    "paid",
    "payment",
    "expense",
    "expenses",
    "counted",
    "remaining",
    "ordered",
    "order",
    "price",
    "balance",
    "report",
    "credit",
    "stock",
    "supplier",
    "arrived",
];

/// Common misspellings of cue words that are more than one edit away.
const MISSPELT: &[(&str, &str)] = &[
    ("payed", "paid"),
    ("recieved", "received"),
    ("recevied", "received"),
    ("recived", "received"),
    ("expence", "expense"),
    ("restok", "restock"),
    ("soldd", "sold"),
    ("soled", "sold"),
];

fn cue(word: &str) -> Option<&'static str> {
    if let Some((_, to)) = MISSPELT.iter().find(|(w, _)| *w == word) {
        return Some(to);
    }
    let n = word.chars().count();
    if n < 5 || !word.chars().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let budget = if n >= 8 { 2 } else { 1 };
    let mut best: Option<(&'static str, usize)> = None;
    for c in CUES
        .iter()
        .filter(|c| c.chars().next() == word.chars().next())
    {
        let d = strsim::levenshtein(word, c);
        if d <= budget && best.is_none_or(|(_, b)| d < b) {
            best = Some((c, d));
        }
    }
    best.filter(|(_, d)| *d > 0).map(|(c, _)| c)
}

/// Words that are themselves known and never read as a typo of a cue word.
const PLAIN: &[&str] = &[
    "sell",
    "sells",
    "sale",
    "sales",
    "order",
    "orders",
    "older",
    "price",
    "prices",
    "priced",
    "paid",
    "pain",
    "stock",
    "stocks",
    "stack",
    "store",
    "credit",
    "report",
    "reports",
    "balance",
    "brought",
    "bought",
    "deliver",
    "delivery",
    "sugar",
    "rice",
    "bread",
    "salt",
    "soap",
    "selling",
    "telling",
    "spelling",
    "restocking",
    "expensive",
    "seller",
    "solid",
    "sole",
    "sold",
    "cold",
    "bold",
    "told",
    "fold",
    "hold",
    "gold",
    "mold",
    "sod",
    "ordered",
    "receive",
    "received",
    "receipt",
    "recent",
    "paint",
    "paying",
    "pays",
    "payment",
    "deliveries",
    "delivering",
    "delivers",
    "supplies",
    "supplied",
    "supply",
    "reported",
    "stocked",
    "stocking",
    "payments",
    "credited",
    "balances",
    "selling",
    "sellers",
    "orders",
    "order's",
    "reporting",
    "recently",
    "receiving",
    "counting",
    "counter",
    "remains",
    "remained",
    "expenses",
    "brought",
    "bring",
    "pricey",
];

/// One raw word as the parser reads it: lower case, chat spellings and cue typos mended.
fn mend(low: &str) -> String {
    if let Some((_, to)) = SPELLINGS.iter().find(|(w, _)| *w == low) {
        return (*to).to_owned();
    }
    if PLAIN.contains(&low) {
        return low.to_owned();
    }
    cue(low).map_or_else(|| low.to_owned(), str::to_owned)
}

/// The words of a message: punctuation and emoji dropped, numbers kept whole (`1,000`,
/// `1.5`, `1/2`), digits split from units (`1.5kg`, `3x`), chat spellings and typos of cue
/// words mended. `raw` keeps the person's spelling (names), `low` is what is matched.
pub fn tokenize(text: &str) -> Vec<Tok> {
    // Chat spellings that mix digits and letters ("2day") go before digits are split off.
    let text: Vec<String> = text
        .split_whitespace()
        .map(|w| {
            let low = w.to_lowercase();
            match SPELLINGS
                .iter()
                .find(|(s, _)| *s == low && s.contains(|c: char| c.is_ascii_digit()))
            {
                Some((_, to)) => (*to).to_owned(),
                None => w.to_owned(),
            }
        })
        .collect();
    let text = text
        .join(" ")
        .replace('½', " 1/2 ")
        .replace('¼', " 1/4 ")
        .replace('¾', " 3/4 ")
        .replace("->", " to ")
        .replace('→', " to ");
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
            '.' | '/' if prev_digit && next_digit => spaced.push(c),
            '#' => spaced.push_str(" #"),
            // A currency sign marks money: kept as its own word.
            '$' | '€' | '£' => spaced.push_str(" $ "),
            '\'' | '-' => spaced.push(c),
            c if c.is_alphanumeric() => {
                // "1.5kg" -> "1.5 kg", "3x" -> "3 x"
                if prev_digit && c.is_alphabetic() {
                    spaced.push(' ');
                }
                spaced.push(c);
            }
            // Punctuation, emoji, symbols: a word break.
            _ => spaced.push(' '),
        }
    }
    spaced
        .split_whitespace()
        .flat_map(|w| {
            let w = w.trim_matches(|c: char| c == '\'' || c == '-');
            let w = w.strip_suffix("'s").unwrap_or(w);
            // "x2" (times two): the sign, then the number.
            let times = w.len() > 1
                && w.starts_with(['x', 'X'])
                && w[1..].bytes().all(|b| b.is_ascii_digit());
            let parts = if times {
                vec![&w[..1], &w[1..]]
            } else {
                vec![w]
            };
            parts.into_iter().map(|p| Tok {
                raw: p.to_owned(),
                low: mend(&p.to_lowercase()),
            })
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
    let low = |k: usize| toks.get(k).map_or("", |t| t.low.as_str());
    let (mut value, mut used) = base_at(toks, i, article)?;
    // "1 1/2": a whole number and a fraction.
    if value.to_fixed(0).is_ok()
        && let Some(f) = fraction(low(i + used))
    {
        value = add(value, f)?;
        used += 1;
    }
    // "2 dozen", "a dozen"
    let dozen = low(i + used) == "dozen";
    if dozen {
        value = Dec::from_fixed(value.to_fixed(3).ok()?.checked_mul(12)?, 3);
        used += 1;
    }
    // "one and a half", "2 and half", "a dozen and a half" (half a dozen more)
    if low(i + used) == "and" {
        let a = usize::from(low(i + used + 1) == "a");
        let part = match low(i + used + 1 + a) {
            "half" => Some("0.5"),
            "quarter" => Some("0.25"),
            _ => None,
        };
        if let Some(part) = part {
            let mut part = Dec::parse(part).expect("valid");
            if dozen {
                part = Dec::from_fixed(part.to_fixed(3).ok()? * 12, 3);
            }
            value = add(value, part)?;
            used += 2 + a;
        }
    }
    Some((value, used))
}

/// `a + b` exactly (thousandths).
fn add(a: Dec, b: Dec) -> Option<Dec> {
    Some(Dec::from_fixed(
        a.to_fixed(3).ok()?.checked_add(b.to_fixed(3).ok()?)?,
        3,
    ))
}

/// A written fraction ("1/2", "3/4") as an exact decimal.
fn fraction(w: &str) -> Option<Dec> {
    let (n, d) = w.split_once('/')?;
    let (n, d): (i64, i64) = (n.parse().ok()?, d.parse().ok()?);
    if d == 0 || !(0..=1_000_000).contains(&n) || (n * 1000) % d != 0 {
        return None;
    }
    Some(Dec::from_fixed(n * 1000 / d, 3))
}

/// The first part of a number at `i`: digits, a fraction, number words, "half", "a
/// quarter", "three quarters", or "a"/"an" (one) when `article`.
fn base_at(toks: &[Tok], i: usize, article: bool) -> Option<(Dec, usize)> {
    let low = |k: usize| toks.get(k).map_or("", |t| t.low.as_str());
    let w = low(i);
    let dec = |s: &str| Dec::parse(s).expect("valid");
    if w.chars().next().is_some_and(|c| c.is_ascii_digit()) {
        if let Some(d) = Dec::parse(w) {
            // "3 quarters"
            if matches!(low(i + 1), "quarter" | "quarters") && d.to_fixed(0).is_ok() {
                return Some((Dec::from_fixed(d.to_fixed(3).ok()? / 4, 3), 2));
            }
            return Some((d, 1));
        }
        return fraction(w).map(|f| (f, 1));
    }
    match w {
        // "half a bag", "half": the article belongs to the half.
        "half" => {
            return Some((
                dec("0.5"),
                1 + usize::from(matches!(low(i + 1), "a" | "an")),
            ));
        }
        "quarter" => return Some((dec("0.25"), 1 + usize::from(low(i + 1) == "of"))),
        "a" | "an" if article => {
            return Some(match low(i + 1) {
                "half" => (dec("0.5"), 2),
                "quarter" => (dec("0.25"), 2 + usize::from(low(i + 2) == "of")),
                "hundred" => (dec("100"), 2),
                "thousand" => (dec("1000"), 2),
                // "a dozen" is one dozen: the caller multiplies.
                _ => (dec("1"), 1),
            });
        }
        _ => {}
    }
    let (n, used) = words_at(toks, i)?;
    if matches!(low(i + used), "quarter" | "quarters") {
        return Some((Dec::from_fixed(n * 250, 3), used + 1));
    }
    Some((Dec::from_fixed(n, 0), used))
}

/// Number words at `i`: "twenty five", "five hundred", "one thousand two hundred and ten".
fn words_at(toks: &[Tok], i: usize) -> Option<(i64, usize)> {
    let (mut total, mut current, mut used, mut any) = (0i64, 0i64, 0usize, false);
    while let Some(t) = toks.get(i + used) {
        let w = t.low.as_str();
        if let Some(n) = word_number(w) {
            // "twenty five" adds; "five five" is two numbers.
            if any && current % 10 != 0 && n < 10 {
                break;
            }
            current += n;
        } else if w == "hundred" && any {
            current = current.max(1) * 100;
        } else if w == "thousand" && any {
            total += current.max(1) * 1000;
            current = 0;
        } else if w == "and"
            && any
            && (current >= 100 || total > 0)
            && toks
                .get(i + used + 1)
                .is_some_and(|n| word_number(&n.low).is_some())
        {
            // "one hundred and five"
        } else {
            break;
        }
        any = true;
        used += 1;
    }
    any.then_some((total + current, used))
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
    "pkt",
    "pkts",
    "btl",
    "btls",
    "ctn",
    "ctns",
    "kilo",
    "gram",
    "grams",
    "g",
    // "3x rice": times
    "x",
];

/// Whether a number starts at `i`.
pub fn is_number(toks: &[Tok], i: usize) -> bool {
    number_at(toks, i, false).is_some()
}

/// Currency written before an amount ("$ 5", "ksh 200", "USD 10").
const CURRENCY_BEFORE: &[&str] = &[
    "$", "ksh", "kes", "usd", "sh", "shs", "tsh", "ugx", "ngn", "naira", "rs", "inr",
];
/// Currency written after an amount ("5 dollars", "200 bob").
const CURRENCY_AFTER: &[&str] = &[
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
];

/// Whether a word is a currency ("usd", "bob", "dollars", or an ISO 4217 code in capitals):
/// never a name.
pub fn is_currency_word(tok: &Tok) -> bool {
    CURRENCY_BEFORE.contains(&tok.low.as_str())
        || CURRENCY_AFTER.contains(&tok.low.as_str())
        || (tok.raw.len() == 3
            && tok.raw.chars().all(|c| c.is_ascii_uppercase())
            && crate::action::is_currency(&tok.raw))
}

/// Money at `i`, skipping a currency word before or after.
pub fn money_at(toks: &[Tok], i: usize) -> Option<(Dec, usize)> {
    let mut j = i;
    if toks
        .get(j)
        .is_some_and(|t| CURRENCY_BEFORE.contains(&t.low.as_str()))
    {
        j += 1;
    }
    let (d, used) = number_at(toks, j, false)?;
    let mut end = j + used;
    if toks
        .get(end)
        .is_some_and(|t| CURRENCY_AFTER.contains(&t.low.as_str()))
    {
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
