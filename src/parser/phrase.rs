//! The built-in phrase parser: everyday shop talk ("sold 3 bags of rice to Ahmed for 45",
//! "how much sugar is left?", "received 50 from John") to one action, with a confidence.
//! Invariants: no IO (the tenant's names come in a `Lexicon`); text it cannot place is
//! `unknown`, never a guessed write; instruction- or SQL-like text is unknown text.

use super::Parsed;
use super::lexicon::Lexicon;
use super::text::{Tok, UNITS, is_currency_word, is_number, money_at, number_at, tokenize};
use crate::action::{Action, Dec, Item, OrderStatus, Period};

const STOP: &[&str] = &[
    ",",
    "&",
    "and",
    "plus",
    "to",
    "for",
    "at",
    "@",
    "each",
    "per",
    "from",
    "on",
    "credit",
    "cash",
    "paid",
    "with",
    "by",
    "price",
    "costs",
    "cost",
    "total",
    "please",
    "today",
    "yesterday",
    "left",
    "in",
    "stock",
    "now",
    "is",
    "are",
    "into",
    "was",
    "were",
    "delivered",
    "sold",
    "into",
    "today's",
    "ksh",
    "kes",
    "usd",
    "dollars",
    "dollar",
    "shillings",
    "bob",
    "only",
    "remaining",
    "we",
    "have",
    "has",
    "there",
    "of",
    "the",
    "every",
    "apiece",
    "a",
    "an",
];

/// Longest product or person name, in words.
const MAX_NAME_WORDS: usize = 6;
/// Longest message the phrase parser reads, in words (chat messages are short; longer text
/// is left to the LLM or answered as not understood).
const MAX_WORDS: usize = 80;

/// Product words at `i` (until a stop word or number); returns (name, tokens used).
fn product_at(toks: &[Tok], i: usize, lex: &Lexicon) -> Option<(String, usize)> {
    let mut end = i;
    while end < toks.len()
        && end - i < MAX_NAME_WORDS
        && !STOP.contains(&toks[end].low.as_str())
        && !is_number(toks, end)
    {
        end += 1;
    }
    // "a can of beans": "of" may lead, "the" may lead.
    if end == i {
        return None;
    }
    // The longest leading run of words that names one catalog product.
    for stop in (i + 1..=end).rev() {
        let words: Vec<&str> = toks[i..stop].iter().map(|t| t.low.as_str()).collect();
        if let Some(name) = lex.product(&words.join(" ")) {
            return Some((name, stop - i));
        }
    }
    let words: Vec<&str> = toks[i..end].iter().map(|t| t.low.as_str()).collect();
    Some((words.join(" "), end - i))
}

struct Items {
    items: Vec<Item>,
    /// Index after the last token used.
    end: usize,
    /// Every product was found in the catalog.
    known: bool,
}

/// Price words after an item: "@ 15", "at 15 each", "15 each", "for 45" (a total),
/// "for 15 each". Returns (unit_price, total, tokens used).
fn price_at(toks: &[Tok], i: usize) -> (Option<Dec>, Option<Dec>, usize) {
    let low = |k: usize| toks.get(k).map(|t| t.low.as_str());
    let each = |k: usize| {
        matches!(
            low(k),
            Some("each" | "apiece" | "per" | "a" | "an" | "every")
        )
    };
    let each_len = |k: usize| match low(k) {
        Some("each" | "apiece") => 1,
        Some("per" | "a" | "an" | "every") => 2,
        _ => 0,
    };
    match low(i) {
        Some("@" | "at") => {
            if let Some((d, used)) = money_at(toks, i + 1) {
                let e = each_len(i + 1 + used);
                return (Some(d), None, 1 + used + e);
            }
        }
        Some("for") => {
            if let Some((d, used)) = money_at(toks, i + 1) {
                if each(i + 1 + used) {
                    return (Some(d), None, 1 + used + each_len(i + 1 + used));
                }
                return (None, Some(d), 1 + used);
            }
        }
        _ => {
            if let Some((d, used)) = money_at(toks, i)
                && each(i + used)
            {
                return (Some(d), None, used + each_len(i + used));
            }
        }
    }
    (None, None, 0)
}

/// A list of items starting at `i`: "3 bags of rice @ 15, 2 sugar and a tray of eggs".
fn items_at(toks: &[Tok], mut i: usize, lex: &Lexicon, with_prices: bool) -> Option<Items> {
    let mut items = Vec::new();
    let mut known = true;
    let mut end = i;
    loop {
        while toks
            .get(i)
            .is_some_and(|t| matches!(t.low.as_str(), "," | "&" | "and" | "plus" | "also"))
        {
            i += 1;
        }
        let Some((qty, used)) = number_at(toks, i, true) else {
            break;
        };
        let mut j = i + used;
        if toks.get(j).is_some_and(|t| UNITS.contains(&t.low.as_str())) {
            j += 1;
        }
        if toks.get(j).is_some_and(|t| t.low == "of") {
            j += 1;
        }
        if toks.get(j).is_some_and(|t| t.low == "the") {
            j += 1;
        }
        let Some((product, pused)) = product_at(toks, j, lex) else {
            break;
        };
        known &= lex.product(&product).is_some();
        j += pused;
        // "12 milk crates": the unit after the product.
        if toks.get(j).is_some_and(|t| UNITS.contains(&t.low.as_str())) {
            j += 1;
        }
        let (mut unit_price, mut total, mut prused) = if with_prices {
            price_at(toks, j)
        } else {
            (None, None, 0)
        };
        // "1 tray eggs 4.5" (as the slash grammar has it): a last bare number is the price.
        if with_prices
            && prused == 0
            && let Some((price, used)) = money_at(toks, j)
            && j + used == toks.len()
        {
            (unit_price, total, prused) = (Some(price), None, used);
        }
        j += prused;
        items.push(Item {
            product,
            qty,
            unit_price,
            total,
        });
        i = j;
        end = j;
    }
    (!items.is_empty()).then_some(Items { items, end, known })
}

/// Product-first forms: "sugar 20", "rice: 15 bags". Returns (product, qty, tokens used).
fn product_qty_at(toks: &[Tok], i: usize, lex: &Lexicon) -> Option<(String, Dec, usize)> {
    let (product, pused) = product_at(toks, i, lex)?;
    lex.product(&product)?;
    let mut j = i + pused;
    while toks.get(j).is_some_and(|t| {
        matches!(
            t.low.as_str(),
            "is" | "are" | "at" | "to" | "now" | "=" | "x" | "remaining" | "left" | "count"
        )
    }) {
        j += 1;
    }
    let (qty, used) = number_at(toks, j, false)?;
    j += used;
    if toks.get(j).is_some_and(|t| UNITS.contains(&t.low.as_str())) {
        j += 1;
    }
    Some((product, qty, j - i))
}

fn find(toks: &[Tok], words: &[&str]) -> Option<usize> {
    toks.iter().position(|t| words.contains(&t.low.as_str()))
}

fn has(toks: &[Tok], words: &[&str]) -> bool {
    find(toks, words).is_some()
}

fn has_seq(toks: &[Tok], seq: &[&str]) -> bool {
    toks.windows(seq.len())
        .any(|w| w.iter().zip(seq).all(|(t, s)| t.low == *s))
}

const NAME_STOP: &[&str] = &[
    "just",
    "also",
    "they",
    "more",
    "some",
    "another",
    "finally",
    "already",
    "for",
    "on",
    "at",
    "@",
    "credit",
    "cash",
    "paid",
    "today",
    "yesterday",
    ",",
    "&",
    "and",
    "please",
    "to",
    "from",
    "with",
    "owe",
    "owes",
    "owing",
    "balance",
    "account",
    "debt",
    "pay",
    "paid",
    "payment",
    "deliver",
    "delivered",
    "delivery",
    "address",
    "via",
    "in",
    "is",
    "has",
    "have",
    "bought",
    "took",
    "takes",
    "purchased",
    "ordered",
    "wants",
    "the",
    "now",
    "right",
    "thanks",
    "gave",
    "gives",
    "cleared",
    "clear",
    "brought",
    "received",
    "will",
    "goes",
    "take",
    "added",
    "add",
    "got",
    "sent",
    "me",
    "us",
    "supplier",
    "we",
    "i",
    "new",
    "sold",
    "restocked",
    "restock",
    "came",
    "supplied",
    "supplies",
    "dropped",
    "delivers",
    "paid",
    "pays",
    "took",
    "then",
];

/// A person's name at `i` (words until a stop word or number), in the sender's spelling.
fn name_at(toks: &[Tok], i: usize) -> Option<(String, usize)> {
    let mut end = i;
    while end < toks.len()
        && !NAME_STOP.contains(&toks[end].low.as_str())
        && !is_currency_word(&toks[end])
        && !is_number(toks, end)
        && toks[end].low.chars().any(char::is_alphabetic)
        && end - i < 4
    {
        end += 1;
    }
    (end > i).then(|| {
        (
            toks[i..end]
                .iter()
                .map(|t| t.raw.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            end - i,
        )
    })
}

/// Words for the costs of running a shop (an expense's category).
const EXPENSES: &[&str] = &[
    "rent",
    "transport",
    "fuel",
    "petrol",
    "diesel",
    "airtime",
    "electricity",
    "power",
    "water",
    "internet",
    "wifi",
    "gas",
    "security",
    "salary",
    "salaries",
    "wages",
    "wage",
    "lunch",
    "tax",
    "taxes",
    "licence",
    "license",
    "repairs",
    "repair",
    "cleaning",
    "cleaner",
    "fare",
    "parking",
    "insurance",
    "phone",
    "data",
    "stationery",
    "packaging",
    "permit",
    "loan",
    "interest",
    "maintenance",
    "garbage",
    "rates",
];

/// Who a "bought" sentence says bought.
enum Buyer {
    /// We, I, the shop: goods in.
    Shop,
    /// A known customer.
    Customer(String),
    /// Someone named who is not known yet: a new customer.
    Named(String),
    /// Someone unnamed ("a lady", "some guy", "a customer").
    Someone,
    /// One of the staff or a vendor: not clear who bought from whom.
    Staff,
}

/// The buyer named before the verb at `v`.
fn buyer_before(toks: &[Tok], v: usize, lex: &Lexicon) -> Buyer {
    const AUX: &[&str] = &[
        "has", "have", "had", "just", "also", "already", "will", "then",
    ];
    const PEOPLE: &[&str] = &[
        "lady",
        "man",
        "woman",
        "guy",
        "boy",
        "girl",
        "person",
        "customer",
        "kid",
        "child",
        "someone",
        "somebody",
        "mama",
        "mzee",
        "client",
        "buyer",
        "neighbour",
        "neighbor",
    ];
    let words: Vec<&Tok> = toks[..v]
        .iter()
        .filter(|t| !AUX.contains(&t.low.as_str()))
        .collect();
    let low: Vec<&str> = words.iter().map(|t| t.low.as_str()).collect();
    if low.is_empty()
        || low
            .iter()
            .any(|w| matches!(*w, "we" | "i" | "us" | "shop" | "store"))
    {
        return Buyer::Shop;
    }
    let raw = words
        .iter()
        .map(|t| t.raw.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    if let Some(c) = lex.customer(&raw) {
        return Buyer::Customer(c);
    }
    if lex.staff_member(&raw).is_some() {
        return Buyer::Staff;
    }
    if low.iter().any(|w| PEOPLE.contains(w)) {
        return Buyer::Someone;
    }
    let name_like = low.len() <= 3
        && low
            .iter()
            .all(|w| w.chars().all(char::is_alphabetic) && !NAME_STOP.contains(w));
    if name_like && lex.product(&raw).is_none() {
        Buyer::Named(title(&raw))
    } else {
        Buyer::Staff
    }
}

fn title(s: &str) -> String {
    s.split(' ')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) if w.chars().all(|c| !c.is_uppercase()) => {
                    f.to_uppercase().chain(c).collect()
                }
                Some(f) => std::iter::once(f).chain(c).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The customer named after one of `preps` ("to Ahmed", "for Fatima"), canonical if known.
fn customer_after(toks: &[Tok], preps: &[&str], lex: &Lexicon) -> Option<String> {
    for (i, t) in toks.iter().enumerate() {
        if preps.contains(&t.low.as_str())
            && !is_number(toks, i + 1)
            && toks
                .get(i + 1)
                .is_some_and(|n| n.low != "the" && n.low != "shop" && n.low != "stock")
            && let Some((name, _)) = name_at(toks, i + 1)
        {
            if let Some(c) = lex.customer(&name) {
                return Some(c);
            }
            if lex.product(&name).is_none() && lex.staff_member(&name).is_none() {
                return Some(title(&name));
            }
        }
    }
    None
}

fn order_id(toks: &[Tok]) -> Option<i64> {
    for (i, t) in toks.iter().enumerate() {
        if let Some(n) = t.low.strip_prefix('#').and_then(|n| n.parse().ok()) {
            return Some(n);
        }
        if matches!(
            t.low.as_str(),
            "order" | "orders" | "delivery" | "no" | "number"
        ) && let Some(n) = toks
            .get(i + 1)
            .and_then(|n| n.low.trim_start_matches('#').parse().ok())
        {
            return Some(n);
        }
    }
    None
}

fn period(toks: &[Tok]) -> Option<Period> {
    if has_seq(toks, &["last", "month"]) || has_seq(toks, &["previous", "month"]) {
        Some(Period::LastMonth)
    } else if has_seq(toks, &["this", "month"]) || has(toks, &["monthly", "month"]) {
        Some(Period::ThisMonth)
    } else if has_seq(toks, &["last", "7", "days"])
        || has_seq(toks, &["last", "seven", "days"])
        || has_seq(toks, &["past", "week"])
        || has_seq(toks, &["last", "week"])
        || has(toks, &["7d"])
    {
        Some(Period::Last7Days)
    } else if has(toks, &["week", "weekly"]) {
        Some(Period::ThisWeek)
    } else if has(toks, &["yesterday"]) {
        Some(Period::Yesterday)
    } else if has(toks, &["today", "daily", "tonight"]) {
        Some(Period::Today)
    } else {
        None
    }
}

fn looks_hostile(text: &str) -> bool {
    const SIGNS: &[&str] = &[
        "drop table",
        "select *",
        "select ",
        "insert into",
        "delete from",
        "update products",
        "union select",
        "--",
        "/*",
        "ignore previous",
        "ignore all",
        "ignore the above",
        "ignore your",
        "system prompt",
        "you are now",
        "disregard",
        "jailbreak",
        "sqlite_master",
        "pragma ",
    ];
    let low = text.to_lowercase();
    SIGNS.iter().any(|s| low.contains(s))
}

fn unknown(reason: &str) -> Parsed {
    Parsed {
        action: Action::Unknown {
            reason: Some(reason.to_owned()),
        },
        confidence: 0.0,
    }
}

fn sure(action: Action, known: bool) -> Parsed {
    Parsed {
        action,
        confidence: if known { 0.9 } else { 0.6 },
    }
}

/// A short reply that is only a yes or a no (with please, thanks, ok).
fn yes_or_no(toks: &[Tok]) -> Option<Action> {
    const YES: &[&str] = &[
        "yes",
        "y",
        "yeah",
        "yah",
        "ya",
        "yep",
        "yup",
        "ok",
        "okay",
        "k",
        "sure",
        "correct",
        "confirm",
        "confirmed",
        "right",
        "record",
        "it",
        "go",
        "ahead",
    ];
    const NO: &[&str] = &["no", "nope", "nah", "don't", "do", "not", "wrong", "stop"];
    const POLITE: &[&str] = &[
        "please", "pls", "plz", "thanks", "thx", "thank", "you", "sir", "madam",
    ];
    if toks.is_empty() || toks.len() > 4 {
        return None;
    }
    // The raw word: "n" is read as "and" elsewhere.
    let words: Vec<String> = toks.iter().map(|t| t.raw.to_lowercase()).collect();
    let only = |set: &[&str]| {
        words
            .iter()
            .all(|w| set.contains(&w.as_str()) || POLITE.contains(&w.as_str()))
            && words.iter().any(|w| set.contains(&w.as_str()))
    };
    if only(&[
        "no", "n", "nope", "nah", "don't", "dont", "do", "not", "wrong", "stop",
    ]) && words
        .iter()
        .any(|w| NO.contains(&w.as_str()) || w == "n" || w == "dont")
        && !words.iter().all(|w| matches!(w.as_str(), "do" | "not"))
    {
        return Some(Action::Decline {});
    }
    if only(YES)
        && !words
            .iter()
            .all(|w| matches!(w.as_str(), "it" | "go" | "right"))
    {
        return Some(Action::Confirm {});
    }
    None
}

/// Parses free text.
pub fn parse(text: &str, lex: &Lexicon) -> Parsed {
    if text.len() > 2000 {
        return Parsed {
            action: Action::Unknown {
                reason: Some("message too long".into()),
            },
            confidence: 1.0,
        };
    }
    if looks_hostile(text) {
        return Parsed {
            action: Action::Unknown {
                reason: Some("not a shop message".into()),
            },
            confidence: 1.0,
        };
    }
    let toks = tokenize(text);
    if toks.is_empty() {
        return unknown("empty message");
    }
    if toks.len() > MAX_WORDS {
        return unknown("message too long; one thing at a time please");
    }
    let first = toks[0].low.as_str();
    let n = toks.len();

    // yes / no to a question asked
    if let Some(answer) = yes_or_no(&toks) {
        return Parsed {
            action: answer,
            confidence: 0.95,
        };
    }

    // help, undo
    if (n <= 6 && has(&toks, &["help", "commands", "menu"]))
        || has_seq(&toks, &["what", "can", "you", "do"])
        || has_seq(&toks, &["how", "does", "this", "work"])
        || has_seq(&toks, &["how", "do", "i", "use"])
    {
        return Parsed {
            action: Action::Help {},
            confidence: 0.95,
        };
    }
    if (n <= 5 && has(&toks, &["undo", "revert"]))
        || (n <= 5
            && has(&toks, &["cancel", "reverse"])
            && has(&toks, &["that", "last", "it", "this"]))
        || has_seq(&toks, &["undo", "last"])
        || has_seq(&toks, &["that", "was", "a", "mistake"])
        || has_seq(&toks, &["that", "was", "wrong"])
    {
        return Parsed {
            action: Action::Undo {},
            confidence: 0.9,
        };
    }

    let question = text.contains('?')
        || matches!(
            first,
            "how"
                | "what"
                | "what's"
                | "whats"
                | "is"
                | "are"
                | "do"
                | "does"
                | "any"
                | "show"
                | "list"
                | "check"
                | "which"
                | "who"
                | "give"
        );

    // Goods with quantities anywhere ("2 rice"): the message moves stock, whatever else.
    let goods = (0..n).any(|i| {
        number_at(&toks, i, false).is_some()
            && items_at(&toks, i, lex, false).is_some_and(|p| p.known)
    });

    let m = Msg {
        toks: &toks,
        n,
        first,
        question,
        goods,
    };
    [balance, report, orders, products, stock, one_thing, money]
        .iter()
        .find_map(|stage| stage(&m, lex))
        .unwrap_or_else(|| goods_moved(&m, lex))
}

/// What every stage of `parse` reads: the message, its tokens and what was found early.
#[derive(Clone, Copy)]
struct Msg<'a> {
    toks: &'a [Tok],
    n: usize,
    first: &'a str,
    question: bool,
    goods: bool,
}

/// A customer's balance ("how much does Ahmed owe").
fn balance(m: &Msg<'_>, lex: &Lexicon) -> Option<Parsed> {
    let Msg { toks, goods, .. } = *m;
    // customer balance
    if !goods
        && has(
            toks,
            &[
                "owe", "owes", "owing", "balance", "debt", "debts", "account",
            ],
        )
        && !has(
            toks,
            &[
                "paid", "pays", "payment", "received", "got", "gave", "cleared", "repaid",
            ],
        )
    {
        for (i, _) in toks.iter().enumerate() {
            if let Some((name, _)) = name_at(toks, i)
                && let Some(c) = lex.customer(&name)
            {
                return Some(sure(Action::CustomerBalance { customer: c }, true));
            }
        }
        let skip = [
            "how", "much", "does", "do", "what", "is", "whats", "what's", "check", "show",
            "balance", "of", "for", "the", "owe", "owes", "account", "debt", "tell", "me",
            "customer",
        ];
        if let Some(i) = toks.iter().position(|t| !skip.contains(&t.low.as_str()))
            && let Some((name, _)) = name_at(toks, i)
        {
            return Some(sure(
                Action::CustomerBalance {
                    customer: title(&name),
                },
                false,
            ));
        }
    }

    None
}

/// A sales report for a period.
fn report(m: &Msg<'_>, lex: &Lexicon) -> Option<Parsed> {
    let Msg { toks, .. } = *m;
    // sales report
    let report_cue = has(
        toks,
        &[
            "report", "summary", "revenue", "takings", "turnover", "sales", "earnings", "profit",
        ],
    ) || (has(toks, &["sell", "sold", "make", "made", "earn", "earned"])
        && has(toks, &["how", "what"])
        && items_at(toks, 0, lex, false).is_none()
        && !has(toks, &["left", "remaining"]));
    if report_cue && items_at(toks, 0, lex, false).is_none() && !has(toks, &["order", "orders"]) {
        if let Some(p) = period(toks) {
            return Some(sure(Action::SalesReport { period: p }, true));
        }
        if has(toks, &["report", "summary", "sales", "takings", "revenue"]) {
            return Some(sure(
                Action::SalesReport {
                    period: Period::Today,
                },
                true,
            ));
        }
    }

    None
}

/// Orders: list, assign, delivered, cancel, create.
fn orders(m: &Msg<'_>, lex: &Lexicon) -> Option<Parsed> {
    let Msg {
        toks, n, question, ..
    } = *m;
    // orders: list, assign, delivered, create
    let oid = order_id(toks);
    if let Some(id) = oid {
        if !has(
            toks,
            &[
                "delivered",
                "done",
                "completed",
                "complete",
                "received",
                "dropped",
            ],
        ) {
            // The driver: a known driver named anywhere, else the words after "to".
            for i in 0..n {
                if let Some((name, _)) = name_at(toks, i)
                    && let Some(d) = lex.driver(&name)
                {
                    return Some(sure(
                        Action::AssignDelivery {
                            order_id: id,
                            driver: d,
                        },
                        true,
                    ));
                }
            }
            if let Some(i) = find(toks, &["to"])
                && let Some((name, _)) = name_at(toks, i + 1)
            {
                return Some(sure(
                    Action::AssignDelivery {
                        order_id: id,
                        driver: title(&name),
                    },
                    false,
                ));
            }
        }
        if has(
            toks,
            &[
                "delivered",
                "done",
                "completed",
                "complete",
                "dropped",
                "received",
            ],
        ) {
            return Some(sure(Action::MarkDelivered { order_id: id }, true));
        }
    }
    if has(toks, &["orders", "deliveries"])
        || (question
            && has(toks, &["order"])
            && oid.is_none()
            && items_at(toks, 0, lex, false).is_none())
    {
        let status = if has(toks, &["pending", "waiting", "new", "unassigned", "open"]) {
            Some(OrderStatus::Pending)
        } else if has(toks, &["assigned", "dispatched", "out"]) {
            Some(OrderStatus::Assigned)
        } else if has(toks, &["delivered", "completed", "done", "finished"]) {
            Some(OrderStatus::Delivered)
        } else {
            None
        };
        if items_at(toks, 0, lex, false).is_none() {
            return Some(sure(Action::ListOrders { status }, true));
        }
    }
    // Where an order goes: the words after "deliver(ed) to" or "address".
    let address_at = (0..n)
        .find(|&i| {
            matches!(toks[i].low.as_str(), "deliver" | "delivered" | "deliveries")
                && toks.get(i + 1).is_some_and(|t| t.low == "to")
        })
        .map(|i| i + 2)
        .or_else(|| find(toks, &["address"]).map(|i| i + 1));
    let order_cue = (has(toks, &["order", "ordered", "deliver", "delivery"])
        && (!has(toks, &["delivered"]) || address_at.is_some()))
        || has(toks, &["wants", "want", "needs"]);
    let head = &toks[..address_at.map_or(n, |a| a.saturating_sub(2).max(1))];
    if order_cue
        && let Some(start) = (0..head.len())
            .find(|&i| number_at(head, i, true).is_some() && items_at(head, i, lex, true).is_some())
    {
        let parsed = items_at(head, start, lex, true).expect("checked");
        // The customer: "for/to X", or a known customer named before the items.
        let mut customer = customer_after(head, &["for", "to"], lex);
        if customer.is_none() {
            for i in 0..start {
                if let Some((name, _)) = name_at(toks, i)
                    && let Some(c) = lex.customer(&name)
                {
                    customer = Some(c);
                    break;
                }
            }
        }
        if customer.is_none() && start > 0 {
            let skip = [
                "new", "order", "for", "from", "customer", "please", "an", "a",
            ];
            if let Some(i) = (0..start).find(|&i| !skip.contains(&toks[i].low.as_str()))
                && let Some((name, _)) = name_at(toks, i)
            {
                customer = Some(title(&name));
            }
        }
        let address = address_at
            .map(|i| {
                toks[i.min(n)..]
                    .iter()
                    .map(|t| t.raw.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|a| !a.is_empty());
        if let Some(customer) = customer {
            return Some(sure(
                Action::CreateOrder {
                    customer,
                    items: parsed.items,
                    address,
                },
                parsed.known,
            ));
        }
    }

    None
}

/// Products: a new one, or a price said to be one.
fn products(m: &Msg<'_>, lex: &Lexicon) -> Option<Parsed> {
    let Msg {
        toks,
        n,
        first,
        question,
        ..
    } = *m;
    // products: add ("new product soap 1.20", "we started selling mandazi at 0.50"), price
    let starts_selling = (has(toks, &["start", "started", "starting", "begin", "began"])
        && has(toks, &["selling", "sell"]))
        || has_seq(toks, &["now", "sell"])
        || has_seq(toks, &["now", "selling"]);
    let new_product_at = if starts_selling {
        find(toks, &["selling", "sell"])
            .map(|i| i + 1)
            .filter(|&i| product_at(toks, i, lex).is_some_and(|(p, _)| lex.product(&p).is_none()))
    } else {
        None
    };
    if new_product_at.is_some()
        || (has(toks, &["add", "new", "create"]) && has(toks, &["product", "item", "products"]))
        || has_seq(toks, &["new", "product"])
    {
        let start = new_product_at
            .or_else(|| find(toks, &["product", "item"]).map(|i| i + 1))
            .unwrap_or(0);
        let mut i = start;
        while toks
            .get(i)
            .is_some_and(|t| matches!(t.low.as_str(), "called" | "named" | "a" | "an"))
        {
            i += 1;
        }
        let name_end = (i..n)
            .find(|&k| {
                is_number(toks, k)
                    || matches!(
                        toks[k].low.as_str(),
                        "at" | "@" | "for" | "price" | "priced" | "costs" | "cost" | ","
                    )
            })
            .unwrap_or(n);
        if name_end > i {
            let name = toks[i..name_end]
                .iter()
                .map(|t| t.raw.as_str())
                .collect::<Vec<_>>()
                .join(" ");
            if let Some(pi) = (name_end..n).find(|&k| money_at(toks, k).is_some()) {
                let (price, used) = money_at(toks, pi).expect("checked");
                let mut unit = None;
                let mut k = pi + used;
                if toks
                    .get(k)
                    .is_some_and(|t| matches!(t.low.as_str(), "per" | "a" | "each"))
                    && toks
                        .get(k + 1)
                        .is_some_and(|t| UNITS.contains(&t.low.as_str()))
                {
                    unit = Some(crate::action::resolve::singular(&toks[k + 1].low));
                    k += 2;
                }
                let stock = find(&toks[k.min(n)..], &["stock", "have", "with"]).and_then(|s| {
                    let at = k + s;
                    (at..n).find_map(|q| number_at(toks, q, false).map(|(d, _)| d))
                });
                return Some(sure(
                    Action::AddProduct {
                        name,
                        price,
                        unit,
                        stock,
                        low_stock_at: None,
                    },
                    true,
                ));
            }
        }
    }
    // A price is said to be one: a price word, "from today", a currency, or cents. "Sugar
    // is 20 now" could be a price or a count, so it is neither.
    let money_said = (0..n).any(|i| {
        toks[i].low == "$"
            || money_at(toks, i).is_some_and(|(_, used)| used > 1)
            || (is_number(toks, i) && toks[i].low.contains('.'))
    });
    let price_cue = has(toks, &["price", "prices", "costs", "cost", "priced"])
        || (has(
            toks,
            &[
                "change", "set", "make", "increase", "raise", "reduce", "lower",
            ],
        ) && has(toks, &["to"]))
        || matches!(first, "make" | "set" | "change")
        || has_seq(toks, &["from", "today"])
        || has_seq(toks, &["from", "tomorrow"])
        || has_seq(toks, &["starting", "today"])
        || (has(toks, &["now"])
            && money_said
            && !(0..n).any(|i| {
                number_at(toks, i, false).is_some() && items_at(toks, i, lex, false).is_some()
            })
            && !has(
                toks,
                &["sold", "received", "restocked", "bought", "got", "left"],
            ));
    if has(toks, &["now", "is", "are"])
        && !price_cue
        && !money_said
        && !question
        && n <= 5
        && (0..n).any(|i| product_qty_at(toks, i, lex).is_some())
        && !has(toks, &["left", "remaining", "counted", "count", "stock"])
    {
        return Some(unknown(
            "is that a new price or a count? Say 'price of sugar 20' or 'counted 20 sugar'",
        ));
    }
    if price_cue && !question && !has(toks, &["paid", "spent"]) {
        for i in 0..n {
            if matches!(
                toks[i].low.as_str(),
                "price"
                    | "of"
                    | "change"
                    | "set"
                    | "make"
                    | "the"
                    | "new"
                    | "raise"
                    | "lower"
                    | "update"
                    | "increase"
                    | "reduce"
            ) {
                continue;
            }
            if let Some((product, pused)) = product_at(toks, i, lex)
                && lex.product(&product).is_some()
                && let Some(pi) = (i + pused..n).find(|&k| money_at(toks, k).is_some())
            {
                let (price, _) = money_at(toks, pi).expect("checked");
                return Some(sure(Action::SetPrice { product, price }, true));
            }
        }
    }

    None
}

/// Stock counts and stock questions.
fn stock(m: &Msg<'_>, lex: &Lexicon) -> Option<Parsed> {
    let Msg {
        toks,
        n,
        first,
        question,
        ..
    } = *m;
    // stock questions and counts
    let count_cue = has(
        toks,
        &["counted", "count", "stocktake", "recount", "actual", "real"],
    ) || has_seq(toks, &["stock", "take"])
        || has_seq(toks, &["take", "stock"])
        || (has(toks, &["left", "remaining", "remain"]) && !question && !has(toks, &["how"]))
        || has_seq(toks, &["we", "have"]) && !question
        || has_seq(toks, &["there", "are"]) && !question;
    if count_cue && !has(toks, &["sold", "sell", "received", "bought"]) {
        if let Some(start) = (0..n).find(|&i| {
            number_at(toks, i, false).is_some() && items_at(toks, i, lex, false).is_some()
        }) {
            let parsed = items_at(toks, start, lex, false).expect("checked");
            if let [item] = parsed.items.as_slice() {
                return Some(sure(
                    Action::StockCount {
                        product: item.product.clone(),
                        qty: item.qty,
                    },
                    parsed.known,
                ));
            }
        }
        for i in 0..n {
            if let Some((product, qty, _)) = product_qty_at(toks, i, lex) {
                return Some(sure(Action::StockCount { product, qty }, true));
            }
        }
    }
    let check_cue = has(toks, &["stock", "inventory", "left", "remaining", "remain"])
        || (question && has(toks, &["have", "got", "there"]))
        || (first == "any" && n <= 4);
    let quantity_given = (0..n)
        .any(|i| number_at(toks, i, false).is_some() && items_at(toks, i, lex, false).is_some());
    if check_cue
        && (question || !quantity_given)
        && (question || has(toks, &["check", "show", "stock", "inventory"]))
        && !has(
            toks,
            &["sold", "received", "restock", "restocked", "add", "added"],
        )
    {
        for i in 0..n {
            let skip = [
                "how", "much", "many", "is", "are", "there", "any", "the", "of", "check", "stock",
                "show", "me", "what", "whats", "what's", "do", "we", "have", "got", "left", "in",
                "for", "level", "levels",
            ];
            if skip.contains(&toks[i].low.as_str()) || UNITS.contains(&toks[i].low.as_str()) {
                continue;
            }
            if let Some((product, _)) = product_at(toks, i, lex)
                && let Some(p) = lex.product(&product)
            {
                return Some(sure(Action::CheckStock { product: Some(p) }, true));
            }
        }
        return Some(sure(Action::CheckStock { product: None }, true));
    }

    None
}

/// Messages that hold two records, or two buyers: asked about, never guessed.
fn one_thing(m: &Msg<'_>, lex: &Lexicon) -> Option<Parsed> {
    let Msg { toks, n, goods, .. } = *m;
    // One thing at a time: goods and a payment in one message ("took 2 bread and paid 3")
    // are two records, or a sale paid in part: not guessed.
    let later = has(toks, &["later", "credit", "tomorrow"])
        || has_seq(toks, &["will", "pay"])
        || has_seq(toks, &["not", "paid"]);
    if goods && has(toks, &["paid", "pays", "spent", "payment", "gave"]) && !later {
        return Some(unknown(
            "one thing at a time, please: the goods, then the payment",
        ));
    }
    if has(toks, &["sold", "sell"])
        && has(
            toks,
            &[
                "received",
                "restocked",
                "restock",
                "arrived",
                "delivered",
                "brought",
            ],
        )
    {
        return Some(unknown(
            "one thing at a time, please: what came in, then what was sold",
        ));
    }
    // "sold 2 eggs to Fatima, 3 salt to Grace": two buyers.
    let buyers = (0..n)
        .filter(|&i| {
            toks[i].low == "to"
                && name_at(toks, i + 1).is_some_and(|(name, _)| lex.customer(&name).is_some())
        })
        .count();
    if buyers > 1 {
        return Some(unknown("one customer at a time, please"));
    }

    None
}

/// Money in (payments) and money out (expenses).
fn money(m: &Msg<'_>, lex: &Lexicon) -> Option<Parsed> {
    let Msg { toks, n, .. } = *m;
    let items_anywhere = (0..n).find(|&i| {
        items_at(toks, i, lex, true).is_some_and(|p| {
            p.known
                || !UNITS
                    .iter()
                    .all(|u| *u != toks.get(i + 1).map_or("", |t| t.low.as_str()))
        })
    });
    payment(m, lex, items_anywhere).or_else(|| expense(m, items_anywhere))
}

/// Money in: a customer paying.
fn payment(m: &Msg<'_>, lex: &Lexicon, items_anywhere: Option<usize>) -> Option<Parsed> {
    let Msg { toks, n, first, .. } = *m;
    // money in: payments; money out: expenses
    let pay_cue = has(
        toks,
        &[
            "paid",
            "pays",
            "pay",
            "payment",
            "received",
            "receive",
            "got",
            "gave",
            "deposit",
            "deposited",
            "settled",
            "cleared",
            "repaid",
        ],
    );
    if pay_cue && items_anywhere.is_none() {
        // The payer: a known customer who paid ("Ahmed paid", "from Ahmed", "by Ahmed"). A
        // name after the verb ("paid John 40", "gave John 50") is who the shop paid: a
        // different thing, not guessed.
        let verb = toks
            .iter()
            .position(|t| {
                matches!(
                    t.low.as_str(),
                    "paid"
                        | "pays"
                        | "pay"
                        | "payment"
                        | "received"
                        | "receive"
                        | "got"
                        | "gave"
                        | "deposit"
                        | "deposited"
                        | "settled"
                        | "cleared"
                        | "repaid"
                )
            })
            .unwrap_or(0);
        // "Grace paid 10 for the bread": paid for goods, or paid off her account?
        if (0..n).any(|i| {
            toks[i].low.chars().all(char::is_alphabetic)
                && toks[i].low.len() > 2
                && lex.product(&toks[i].low).is_some()
        }) {
            return Some(unknown(
                "is that a sale, or money paid on an account? Say 'sold…' or 'Grace paid 10'",
            ));
        }
        let mut payer = None;
        for i in 0..n {
            if let Some((name, _)) = name_at(toks, i)
                && let Some(c) = lex.customer(&name)
            {
                let after_from = i > 0 && matches!(toks[i - 1].low.as_str(), "from" | "by");
                let shop_paid = toks[..i]
                    .iter()
                    .any(|t| matches!(t.low.as_str(), "we" | "i"));
                if (i < verb || after_from) && !shop_paid {
                    payer = Some((c, true));
                } else {
                    return Some(unknown("who paid whom? Say 'Ahmed paid 40'"));
                }
                break;
            }
        }
        let amount = (0..n).find_map(|i| money_at(toks, i).map(|(d, _)| d));
        let for_what = find(toks, &["for", "on"])
            .and_then(|i| toks.get(i + 1))
            .map(|t| t.low.clone());
        if payer.is_none()
            && matches!(first, "paid" | "spent")
            && let (Some(amount), Some(cat)) = (amount, for_what)
        {
            return Some(sure(
                Action::RecordExpense {
                    amount,
                    category: Some(cat),
                    note: None,
                },
                true,
            ));
        }
        if payer.is_none() {
            if let Some(i) = find(toks, &["from", "by"]) {
                if let Some((name, _)) = name_at(toks, i + 1)
                    && lex.staff_member(&name).is_none()
                {
                    payer = Some((title(&name), false));
                }
            } else if !matches!(first, "paid" | "received" | "got" | "payment")
                && !is_number(toks, 0)
                && let Some((name, _)) = name_at(toks, 0)
            {
                payer = Some((title(&name), false));
            }
        }
        if let (Some((customer, known)), Some(amount)) = (payer, amount) {
            return Some(sure(Action::RecordPayment { customer, amount }, known));
        }
    }
    None
}

/// Money out: a cost of running the shop.
fn expense(m: &Msg<'_>, items_anywhere: Option<usize>) -> Option<Parsed> {
    let Msg { toks, n, .. } = *m;
    // A cost of running the shop: a word for one ("rent 5000", "electricity bill 1200"),
    // or money spent on something that is not goods ("bought airtime for 100"). A number
    // right before a word that is not one ("bought 40 maize") counts goods, not money.
    let expense_word = toks
        .iter()
        .position(|t| EXPENSES.contains(&t.low.as_str()))
        .or_else(|| {
            find(toks, &["bill", "bills"])
                .filter(|&b| b > 0)
                .map(|b| b - 1)
        });
    let goods_counted = (0..n).any(|i| {
        number_at(toks, i, false).is_some_and(|(_, used)| {
            toks.get(i + used).is_some_and(|t| {
                t.low.chars().all(char::is_alphabetic)
                    && !EXPENSES.contains(&t.low.as_str())
                    && !matches!(
                        t.low.as_str(),
                        "for" | "on" | "at" | "to" | "from" | "each" | "only" | "bill" | "cash"
                    )
                    && money_at(toks, i).is_none_or(|(_, u)| u == used)
            })
        })
    });
    let numbers_said = (0..n).filter(|&i| is_number(toks, i)).count();
    let spend_verb = has(
        toks,
        &[
            "spent", "spend", "expense", "expenses", "paid", "bought", "cost",
        ],
    );
    if let Some(cat) = expense_word
        && !spend_verb
        && items_anywhere.is_none()
        && numbers_said == 1
        && !has(toks, &["sold", "received", "restock", "restocked"])
        && let Some(ai) = (0..n).find(|&i| money_at(toks, i).is_some())
    {
        let (amount, _) = money_at(toks, ai).expect("checked");
        return Some(sure(
            Action::RecordExpense {
                amount,
                category: Some(toks[cat].low.clone()),
                note: None,
            },
            true,
        ));
    }
    // "paid 30 to Karim": paying a person is not a shop cost we can name.
    let to_person = find(toks, &["to"])
        .and_then(|i| name_at(toks, i + 1))
        .is_some();
    if has(
        toks,
        &[
            "spent", "spend", "expense", "expenses", "paid", "bought", "cost",
        ],
    ) && to_person
        && !goods_counted
    {
        return Some(unknown(
            "who was paid, and for what? Say 'paid 30 for transport'",
        ));
    }
    if has(
        toks,
        &[
            "spent", "spend", "expense", "expenses", "paid", "bought", "cost",
        ],
    ) && items_anywhere.is_none()
        && !goods_counted
        && let Some(ai) = (0..n).find(|&i| money_at(toks, i).is_some())
    {
        // "bought airtime for 100": what was bought is the category.
        if let Some(b) = find(toks, &["bought"])
            && let Some(what) = toks.get(b + 1).filter(|t| {
                t.low.chars().all(char::is_alphabetic) && !STOP.contains(&t.low.as_str())
            })
            && ai > b + 1
        {
            let (amount, _) = money_at(toks, ai).expect("checked");
            return Some(sure(
                Action::RecordExpense {
                    amount,
                    category: Some(what.low.clone()),
                    note: None,
                },
                true,
            ));
        }
        let (amount, used) = money_at(toks, ai).expect("checked");
        let cat_at = find(toks, &["on", "for"])
            .map(|i| i + 1)
            .or_else(|| {
                let k = ai + used;
                (k < n).then_some(k)
            })
            .or_else(|| {
                (ai > 0 && !matches!(toks[ai - 1].low.as_str(), "spent" | "expense" | "paid"))
                    .then_some(ai - 1)
            });
        let category = cat_at
            .and_then(|i| toks.get(i))
            .map(|t| t.low.clone())
            .filter(|c| !STOP.contains(&c.as_str()) || c == "the");
        // "paid the electricity bill 45": the bill's name is the category, not "bill".
        let named_bill = expense_word.map(|c| toks[c].low.clone()).filter(|c| {
            !STOP.contains(&c.as_str()) && !matches!(c.as_str(), "paid" | "spent" | "the")
        });
        let category = match category.as_deref() {
            Some("bill" | "bills" | "the") | None if named_bill.is_some() => named_bill,
            Some("the") => cat_at.and_then(|i| toks.get(i + 1)).map(|t| t.low.clone()),
            _ => category,
        };
        let note_from =
            cat_at.map(|i| i + 1 + usize::from(toks.get(i).is_some_and(|t| t.low == "the")));
        let note = note_from.and_then(|i| {
            let rest: Vec<&str> = toks
                .get(i..)
                .unwrap_or(&[])
                .iter()
                .map(|t| t.raw.as_str())
                .collect();
            (!rest.is_empty() && rest.len() < 12 && ai < cat_at.unwrap_or(0))
                .then(|| rest.join(" "))
        });
        // Money out with nothing said of what for: an expense, or a payment in?
        if category.is_none() && note.is_none() {
            return Some(unknown("what was it for? Say 'paid 25 for transport'"));
        }
        return Some(sure(
            Action::RecordExpense {
                amount,
                category,
                note,
            },
            true,
        ));
    }

    None
}

/// Goods in and out: sales and restocks, by who did what to whom.
fn goods_moved(m: &Msg<'_>, lex: &Lexicon) -> Parsed {
    let Msg { toks, n, .. } = *m;
    // goods in and out: the first list of items, one of the shop's own products first
    let items_from =
        |i: usize| number_at(toks, i, true).is_some() && items_at(toks, i, lex, true).is_some();
    let Some(start) = (0..n)
        .find(|&i| items_from(i) && items_at(toks, i, lex, true).is_some_and(|p| p.known))
        .or_else(|| (0..n).find(|&i| items_from(i)))
    else {
        return one_product_moved(m, lex);
    };
    let parsed = items_at(toks, start, lex, true).expect("checked");
    let in_cue = has(
        toks,
        &[
            "received",
            "receive",
            "restock",
            "restocked",
            "restocking",
            "delivered",
            "brought",
            "supplied",
            "supplier",
            "added",
            "add",
            "got",
            "arrived",
            "came",
            "stocked",
            "purchased",
            "bought",
            "new",
            "dropped",
            "drop",
            "supplied",
        ],
    );
    let out_cue = has(
        toks,
        &[
            "sold",
            "sell",
            "sale",
            "sales",
            "took",
            "takes",
            "bought",
            "buys",
            "purchased",
            "credit",
        ],
    );
    // Who did what to whom: "<customer or anyone> bought 2 milk" is a sale to them; "we
    // bought 40 flour for the shop", "received", or a vendor bringing it, is goods in.
    let buyer = find(
        toks,
        &[
            "bought",
            "buys",
            "buy",
            "purchased",
            "took",
            "takes",
            "taken",
            "wants",
        ],
    )
    .filter(|v| *v < start)
    .map(|v| buyer_before(toks, v, lex));
    let subject_customer =
        (0..start).find_map(|i| name_at(toks, i).and_then(|(name, _)| lex.customer(&name)));
    let named_customer = customer_after(toks, &["to", "for"], lex);
    // "put 2 rice on John's account", "give Fatima 3 bread on credit": a customer named
    // anywhere.
    let anywhere = || {
        (0..n).find_map(|i| {
            name_at(toks, i).and_then(|(name, _)| {
                name.split(' ')
                    .scan(String::new(), |acc, w| {
                        if !acc.is_empty() {
                            acc.push(' ');
                        }
                        acc.push_str(w);
                        Some(acc.clone())
                    })
                    .find_map(|prefix| lex.customer(&prefix))
            })
        })
    };
    let mut customer = match &buyer {
        Some(Buyer::Customer(c)) | Some(Buyer::Named(c)) => Some(c.clone()),
        _ => subject_customer.clone().or(named_customer.clone()),
    };
    let giving = has(toks, &["give", "gave", "put", "given"]);
    if customer.is_none() && giving {
        customer = anywhere();
    }
    let for_shop = has_seq(toks, &["for", "the", "shop"])
        || has_seq(toks, &["for", "shop"])
        || has_seq(toks, &["for", "stock"])
        || has_seq(toks, &["stock", "in"]);
    let someone_bought = matches!(
        buyer,
        Some(Buyer::Customer(_) | Buyer::Named(_) | Buyer::Someone)
    );
    let shop_bought = matches!(buyer, Some(Buyer::Shop));
    let is_sale = has(
        toks,
        &["sold", "sell", "sale", "selling", "took", "takes", "credit"],
    ) || someone_bought
        || (giving && customer.is_some())
        || (!in_cue && out_cue && !shop_bought)
        || (!in_cue && customer.is_some() && !shop_bought);
    let is_restock = !is_sale && (in_cue || for_shop || shop_bought);
    if is_restock {
        return restock(m, lex, &parsed, start);
    }
    if is_sale || parsed.end == n {
        return sale(m, parsed, customer, is_sale);
    }
    unknown("I could not tell what to do")
}

/// "restock sugar 20", "sold rice 3": one product and its quantity, no list of items.
fn one_product_moved(m: &Msg<'_>, lex: &Lexicon) -> Parsed {
    let Msg { toks, n, .. } = *m;
    for i in 0..n {
        if let Some((product, qty, _)) = product_qty_at(toks, i, lex) {
            let item = Item {
                product,
                qty,
                unit_price: None,
                total: None,
            };
            if has(
                toks,
                &["restock", "restocked", "received", "add", "added", "got"],
            ) {
                // "restock rice 10 bags @ 14": a price after the quantity.
                let after = i + product_qty_at(toks, i, lex).map_or(0, |(_, _, u)| u);
                let unit_cost = (after..n).find_map(|k| {
                    let (u, _, used) = price_at(toks, k);
                    (used > 0).then_some(u).flatten()
                });
                return sure(
                    Action::Restock {
                        product: item.product,
                        qty: item.qty,
                        unit_cost,
                        supplier: None,
                    },
                    true,
                );
            }
            if has(toks, &["sold", "sell", "sale"]) {
                return sure(
                    Action::RecordSale {
                        items: vec![item],
                        customer: None,
                        paid: None,
                    },
                    true,
                );
            }
        }
    }
    unknown("I could not tell what to do")
}

/// Goods in: one product, its cost (a unit price or a total) and who supplied it.
fn restock(m: &Msg<'_>, lex: &Lexicon, parsed: &Items, start: usize) -> Parsed {
    let Msg { toks, n, .. } = *m;
    let [item] = parsed.items.as_slice() else {
        return unknown("restock one product at a time");
    };
    let supplier = find(toks, &["from"])
        .and_then(|i| name_at(toks, i + 1))
        .map(|(s, _)| s)
        .filter(|s| {
            !matches!(
                s.to_lowercase().as_str(),
                "supplier" | "the supplier" | "a supplier"
            )
        })
        .or_else(|| {
            // "Karim delivered 10 cooking oil": the one who brought it.
            (start > 0)
                .then(|| name_at(toks, 0))
                .flatten()
                .map(|(s, _)| s)
                .filter(|s| {
                    lex.product(s).is_none()
                        && ![
                            "we",
                            "i",
                            "received",
                            "got",
                            "restocked",
                            "bought",
                            "restock",
                            "added",
                            "new",
                            "supplier",
                            "the",
                            "stock",
                            "a",
                            "an",
                            "delivery",
                        ]
                        .contains(&s.to_lowercase().as_str())
                })
        })
        .map(|s| lex.staff_member(&s).unwrap_or_else(|| title(&s)));
    let (mut up, mut tot) = (item.unit_price, item.total);
    if up.is_none() && tot.is_none() {
        for k in parsed.end..n {
            let (u, t, used) = price_at(toks, k);
            if used > 0 {
                (up, tot) = (u, t);
                break;
            }
        }
    }
    let unit_cost = match (up, tot) {
        (Some(u), _) => Some(u),
        (None, Some(t)) => t
            .to_fixed(6)
            .ok()
            .zip(item.qty.to_fixed(3).ok())
            .filter(|(_, q)| *q > 0)
            .map(|(t, q)| Dec::from_fixed(t * 1000 / q, 6)),
        _ => None,
    };
    sure(
        Action::Restock {
            product: item.product.clone(),
            qty: item.qty,
            unit_cost,
            supplier,
        },
        parsed.known,
    )
}

/// Goods out: a sale of the items to `customer`, on credit when the message says so.
fn sale(m: &Msg<'_>, parsed: Items, customer: Option<String>, is_sale: bool) -> Parsed {
    let Msg { toks, n, .. } = *m;
    let paid = if has(
        toks,
        &["credit", "owes", "later", "owing", "debt", "account", "tab"],
    ) || has_seq(toks, &["not", "paid"])
        || has_seq(toks, &["will", "pay"])
    {
        Some(false)
    } else {
        None
    };
    let mut items = parsed.items;
    // A price said after the customer ("to Ahmed for 45") belongs to a single item.
    if items.len() == 1 && items[0].unit_price.is_none() && items[0].total.is_none() {
        for k in parsed.end..n {
            let (u, t, used) = price_at(toks, k);
            if used > 0 {
                items[0].unit_price = u;
                items[0].total = t;
                break;
            }
        }
    }
    sure(
        Action::RecordSale {
            items,
            customer,
            paid,
        },
        parsed.known && is_sale,
    )
}
