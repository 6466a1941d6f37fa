//! What the phrase parser knows of one tenant: product, customer and staff names.
//! Invariant: plain data handed in by the caller; the parser never looks anything up itself.

use crate::action::resolve::{self, Candidate, Match};

/// A tenant's names, for telling "received 50 from John" (a customer) from a supplier.
#[derive(Debug, Clone, Default)]
pub struct Lexicon {
    pub products: Vec<Candidate>,
    pub customers: Vec<String>,
    pub staff: Vec<String>,
    pub drivers: Vec<String>,
}

impl Lexicon {
    /// A lexicon from plain names; `staff` pairs a name with its role (`driver`s also count
    /// as drivers).
    pub fn from_names(
        products: &[String],
        customers: &[String],
        staff: &[(String, String)],
    ) -> Self {
        Lexicon {
            products: products
                .iter()
                .enumerate()
                .map(|(i, name)| Candidate {
                    id: i as i64,
                    name: name.clone(),
                    aliases: Vec::new(),
                })
                .collect(),
            customers: customers.to_vec(),
            staff: staff.iter().map(|(n, _)| n.clone()).collect(),
            drivers: staff
                .iter()
                .filter(|(_, r)| r == "driver")
                .map(|(n, _)| n.clone())
                .collect(),
        }
    }

    /// The catalog name `words` means, if exactly one product fits.
    pub fn product(&self, words: &str) -> Option<String> {
        match resolve::resolve(words, &self.products) {
            Match::One(id) => self
                .products
                .iter()
                .find(|c| c.id == id)
                .map(|c| c.name.clone()),
            _ => None,
        }
    }

    fn person(list: &[String], words: &str) -> Option<String> {
        let cands: Vec<Candidate> = list
            .iter()
            .enumerate()
            .map(|(i, n)| Candidate {
                id: i as i64,
                name: n.clone(),
                aliases: Vec::new(),
            })
            .collect();
        match resolve::resolve(words, &cands) {
            Match::One(i) => Some(list[i as usize].clone()),
            _ => None,
        }
    }

    /// The customer `words` names, if one fits.
    pub fn customer(&self, words: &str) -> Option<String> {
        Self::person(&self.customers, words)
    }

    /// The staff member `words` names, if one fits.
    pub fn staff_member(&self, words: &str) -> Option<String> {
        Self::person(&self.staff, words)
    }

    /// The driver `words` names, if one fits.
    pub fn driver(&self, words: &str) -> Option<String> {
        Self::person(&self.drivers, words)
    }
}
