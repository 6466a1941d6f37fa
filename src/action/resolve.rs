//! Matching a name as a person wrote it ("suger", "eggs", "oil") to one catalog entry.
//! Invariant: never guesses — a name that fits more than one entry, or none, is reported as
//! such with the candidates; pure functions, no IO.

/// One entry that a name may refer to.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub id: i64,
    pub name: String,
    pub aliases: Vec<String>,
}

/// How a name matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// Exactly one entry.
    One(i64),
    /// Several entries fit equally well: their names.
    Ambiguous(Vec<String>),
    /// Nothing fits; the closest names, if any are close.
    NotFound(Vec<String>),
}

/// The lookup key of a name: lowercase words of letters and digits, single-spaced.
pub fn key(s: &str) -> String {
    s.to_lowercase()
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .map(|w| w.trim_matches('\''))
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word's singular form, by English plural rules good enough for shop items.
pub fn singular(word: &str) -> String {
    let w = word;
    if w.len() <= 3 || w.ends_with("ss") || w.ends_with("us") {
        return w.to_owned();
    }
    if let Some(stem) = w.strip_suffix("ies") {
        return format!("{stem}y");
    }
    for suffix in ["oes", "shes", "ches", "xes", "sses", "zes"] {
        if w.ends_with(suffix) {
            return w[..w.len() - 2].to_owned();
        }
    }
    w.strip_suffix('s').unwrap_or(w).to_owned()
}

fn singular_words(k: &str) -> Vec<String> {
    k.split(' ').map(singular).collect()
}

fn typo_budget(len: usize) -> usize {
    match len {
        0..=3 => 0,
        4..=6 => 1,
        _ => 2,
    }
}

fn names_of(cands: &[&Candidate]) -> Vec<String> {
    let mut names: Vec<String> = cands.iter().map(|c| c.name.clone()).collect();
    names.sort();
    names.dedup();
    names
}

fn decide(found: Vec<&Candidate>) -> Option<Match> {
    let mut ids: Vec<i64> = found.iter().map(|c| c.id).collect();
    ids.sort_unstable();
    ids.dedup();
    match ids.len() {
        0 => None,
        1 => Some(Match::One(ids[0])),
        _ => Some(Match::Ambiguous(names_of(&found))),
    }
}

/// Matches `query` against `cands`: exact name or alias, then singular/plural, then every
/// word contained (or a prefix of 3+ letters), then small typos.
pub fn resolve(query: &str, cands: &[Candidate]) -> Match {
    let q = key(query);
    if q.is_empty() {
        return Match::NotFound(Vec::new());
    }
    let keys: Vec<(&Candidate, Vec<String>)> = cands
        .iter()
        .map(|c| {
            let mut ks = vec![key(&c.name)];
            ks.extend(c.aliases.iter().map(|a| key(a)));
            (c, ks)
        })
        .collect();

    let exact = keys
        .iter()
        .filter(|(_, ks)| ks.contains(&q))
        .map(|(c, _)| *c);
    if let Some(m) = decide(exact.collect()) {
        return m;
    }

    let qs = singular_words(&q);
    let plural = keys
        .iter()
        .filter(|(_, ks)| ks.iter().any(|k| singular_words(k) == qs))
        .map(|(c, _)| *c);
    if let Some(m) = decide(plural.collect()) {
        return m;
    }

    let contains = |whole: bool| {
        keys.iter()
            .filter(|(_, ks)| {
                ks.iter().any(|k| {
                    let words = singular_words(k);
                    qs.iter().all(|q| {
                        words.iter().any(|w| {
                            w == q
                                || (!whole && q.chars().count() >= 3 && w.starts_with(q.as_str()))
                        })
                    })
                })
            })
            .map(|(c, _)| *c)
            .collect::<Vec<_>>()
    };
    if let Some(m) = decide(contains(true)) {
        return m;
    }
    if let Some(m) = decide(contains(false)) {
        return m;
    }

    // Typos: distance of the whole name, or of one word when the query is one word.
    let qj = qs.join(" ");
    let dist = |k: &str| {
        let words = singular_words(k);
        let whole = strsim::levenshtein(&qj, &words.join(" "));
        if qs.len() == 1 {
            words
                .iter()
                .map(|w| strsim::levenshtein(&qj, w))
                .min()
                .unwrap_or(whole)
                .min(whole)
        } else {
            whole
        }
    };
    let scored: Vec<(&Candidate, usize)> = keys
        .iter()
        .map(|(c, ks)| (*c, ks.iter().map(|k| dist(k)).min().unwrap_or(usize::MAX)))
        .collect();
    let best = scored.iter().map(|(_, d)| *d).min().unwrap_or(usize::MAX);
    if best <= typo_budget(qj.chars().count()) {
        let found = scored.iter().filter(|(_, d)| *d == best).map(|(c, _)| *c);
        if let Some(m) = decide(found.collect()) {
            return m;
        }
    }
    let near_enough = (qj.chars().count() / 2).max(2);
    let mut near: Vec<&(&Candidate, usize)> =
        scored.iter().filter(|(_, d)| *d <= near_enough).collect();
    near.sort_by_key(|(c, d)| (*d, c.name.clone()));
    Match::NotFound(near.iter().take(3).map(|(c, _)| c.name.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Vec<Candidate> {
        [
            (1, "Rice", vec![]),
            (2, "Sugar", vec![]),
            (3, "Cooking Oil", vec![]),
            (4, "Eggs", vec!["tray of eggs".to_string()]),
            (5, "Brown Bread", vec![]),
            (6, "White Bread", vec![]),
            (7, "Tomatoes", vec![]),
            (8, "Chocolate Bar", vec![]),
        ]
        .into_iter()
        .map(|(id, name, aliases)| Candidate {
            id,
            name: name.into(),
            aliases,
        })
        .collect()
    }

    #[test]
    fn finds_one_entry_by_many_spellings() {
        let c = catalog();
        for (q, id) in [
            ("rice", 1),
            ("RICE", 1),
            ("  Rice ", 1),
            ("suger", 2),
            ("sugars", 2),
            ("oil", 3),
            ("cooking oils", 3),
            ("egg", 4),
            ("tray of eggs", 4),
            ("tomato", 7),
            ("choc", 8),
            ("chocolate", 8),
            ("brown bread", 5),
        ] {
            assert_eq!(resolve(q, &c), Match::One(id), "{q}");
        }
    }

    #[test]
    fn ambiguous_and_unknown_names_are_not_guessed() {
        let c = catalog();
        assert_eq!(
            resolve("bread", &c),
            Match::Ambiguous(vec!["Brown Bread".into(), "White Bread".into()])
        );
        assert!(matches!(resolve("milk", &c), Match::NotFound(_)));
        assert!(matches!(resolve("", &c), Match::NotFound(_)));
        assert_eq!(resolve("ric", &c), Match::One(1), "a 3-letter prefix");
        assert!(
            matches!(resolve("rcie", &c), Match::NotFound(_)),
            "4 letters: one typo"
        );
        let Match::NotFound(s) = resolve("sugarcane", &c) else {
            panic!()
        };
        assert_eq!(s, vec!["Sugar".to_string()]);
    }
}
