//! `TenantId`: the only way a tenant name reaches the file system.
//! Invariant: every value matches `^[a-z0-9][a-z0-9_-]{0,62}$`, so it can never contain a
//! path separator, `..`, or name one of the server's own `_`-prefixed files.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A validated tenant id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantId(String);

impl schemars::JsonSchema for TenantId {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "TenantId".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9_-]{0,62}$",
            "description": "a tenant id: lowercase letters, digits, - and _, at most 63"
        })
    }
}

/// Why a string is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid tenant id {shown:?}: {why} (expected 1-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit)"
)]
pub struct InvalidTenantId {
    shown: String,
    why: &'static str,
}

impl TenantId {
    /// The longest id accepted.
    pub const MAX_LEN: usize = 63;

    /// Validates `s` as a tenant id.
    pub fn parse(s: &str) -> Result<Self, InvalidTenantId> {
        let fail = |why| {
            let shown: String = s.chars().take(80).collect();
            Err(InvalidTenantId { shown, why })
        };
        let bytes = s.as_bytes();
        let Some(&first) = bytes.first() else {
            return fail("it is empty");
        };
        if bytes.len() > Self::MAX_LEN {
            return fail("it is longer than 63 characters");
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return fail("it must start with a lowercase letter or a digit");
        }
        if !bytes
            .iter()
            .all(|&b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return fail("it contains a character other than a-z, 0-9, '_' or '-'");
        }
        Ok(TenantId(s.to_owned()))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fan-out folder name: three hex digits of the id's SHA-256.
    pub fn shard(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        format!("{:02x}{:x}", digest[0], digest[1] >> 4)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for TenantId {
    type Err = InvalidTenantId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::parse(s)
    }
}

impl<'de> Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        TenantId::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in ["a", "0", "shop-1", "joes_deli", &"a".repeat(63)] {
            assert!(TenantId::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_invalid_ids() {
        for bad in [
            "",
            "A",
            "Shop",
            "../etc",
            "a/b",
            "a\\b",
            "_control",
            "-x",
            ".",
            "..",
            "a.db",
            "a b",
            "a\0b",
            "sh\u{043e}p",
            &"a".repeat(64),
        ] {
            assert!(TenantId::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shard_is_three_hex_digits_and_stable() {
        let id = TenantId::parse("shop-1").unwrap();
        let s = id.shard();
        assert_eq!(s.len(), 3);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(s, TenantId::parse("shop-1").unwrap().shard());
    }

    #[test]
    fn million_tenants_fan_out_to_a_few_thousand_per_folder() {
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for i in 0..1_000_000 {
            *counts
                .entry(TenantId::parse(&format!("t{i}")).unwrap().shard())
                .or_default() += 1;
        }
        assert_eq!(counts.len(), 4096);
        assert!(*counts.values().max().unwrap() < 400);
    }
}
