//! `Dec`: an exact decimal as people write it (45, 2.2, 0.75), turned into integer minor
//! units or thousandths without ever passing through a float.
//! Invariant: conversions that would lose digits or overflow fail instead of rounding.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An exact decimal: `units / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    units: i128,
    scale: u32,
}

const MAX_SCALE: u32 = 12;

impl Dec {
    /// Parses `-?digits(.digits)?` (no exponent, at most 12 decimals, at most 24 digits).
    pub fn parse(s: &str) -> Option<Dec> {
        let s = s.trim();
        let (neg, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || frac.len() > MAX_SCALE as usize
            || int.len() + frac.len() > 24
        {
            return None;
        }
        let digits = format!("{int}{frac}");
        let units: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        Some(Dec {
            units: if neg { -units } else { units },
            scale: frac.len() as u32,
        })
    }

    /// `v / 10^digits`, e.g. minor units back to a decimal.
    pub fn from_fixed(v: i64, digits: u32) -> Dec {
        Dec {
            units: v as i128,
            scale: digits,
        }
    }

    /// The value as an integer count of `10^-digits` (minor units for money with the
    /// currency's digits, thousandths for quantities). Fails on lost digits or overflow.
    pub fn to_fixed(self, digits: u32) -> Result<i64, String> {
        let v = if self.scale <= digits {
            self.units.checked_mul(10i128.pow(digits - self.scale))
        } else {
            let div = 10i128.pow(self.scale - digits);
            (self.units % div == 0).then(|| self.units / div)
        };
        match v {
            None if self.scale > digits => Err(format!(
                "{self} has more than {digits} decimal place{}",
                if digits == 1 { "" } else { "s" }
            )),
            Some(v) if v.abs() <= 1_000_000_000_000_000 => Ok(v as i64),
            _ => Err(format!("{self} is too large")),
        }
    }

    /// Whether the value is above zero.
    pub fn is_positive(self) -> bool {
        self.units > 0
    }

    /// Whether the value is below zero.
    pub fn is_negative(self) -> bool {
        self.units < 0
    }
}

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let abs = self.units.unsigned_abs();
        if self.scale == 0 {
            return write!(f, "{sign}{abs}");
        }
        let div = 10u128.pow(self.scale);
        let frac = format!("{:0width$}", abs % div, width = self.scale as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            write!(f, "{sign}{}", abs / div)
        } else {
            write!(f, "{sign}{}.{frac}", abs / div)
        }
    }
}

impl Serialize for Dec {
    /// A JSON number when one says exactly this value (an `i64`, or a float whose shortest
    /// form is this text), else the exact text as a string, which reads back the same.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = self.to_string();
        if let Ok(i) = text.parse::<i64>() {
            return s.serialize_i64(i);
        }
        match text.parse::<f64>() {
            Ok(f)
                if f.is_finite()
                    && serde_json::Number::from_f64(f).is_some_and(|n| n.to_string() == text) =>
            {
                s.serialize_f64(f)
            }
            _ => s.serialize_str(&text),
        }
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match serde_json::Value::deserialize(d)? {
            // serde_json prints a float as its shortest round-trip form ("2.2"), which is
            // the decimal the sender wrote.
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a number, found {other}"
                )));
            }
        };
        Dec::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a plain decimal number"))
        })
    }
}

impl JsonSchema for Dec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Decimal".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "number",
            "description": "a decimal number as written (45, 2.2, 0.75)"
        })
    }
}

/// Minor-unit digits of an ISO 4217 currency (2 unless listed).
pub fn currency_digits(code: &str) -> u32 {
    const ZERO: &[&str] = &[
        "BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI", "VND",
        "VUV", "XAF", "XOF", "XPF",
    ];
    const THREE: &[&str] = &["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"];
    if ZERO.contains(&code) {
        0
    } else if THREE.contains(&code) {
        3
    } else {
        2
    }
}

/// `minor` units shown with `digits` decimals and the currency code: "45.00 USD".
pub fn fmt_money(minor: i64, digits: u32, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let abs = minor.unsigned_abs();
    if digits == 0 {
        return format!("{sign}{abs} {currency}");
    }
    let div = 10u64.pow(digits);
    format!(
        "{sign}{}.{:0width$} {currency}",
        abs / div,
        abs % div,
        width = digits as usize
    )
}

/// A quantity in thousandths shown plainly: 1500 -> "1.5", 3000 -> "3".
pub fn fmt_qty(milli: i64) -> String {
    Dec::from_fixed(milli, 3).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_says_exactly_the_value_and_reads_back() {
        for text in [
            "45",
            "2.2",
            "0.75",
            "-3.5",
            "111111111111111111111111",
            "1234567890.123456789",
            "0.000000000001",
            "9223372036854775808",
            "947394775542.6201",
        ] {
            let d = Dec::parse(text).unwrap();
            let json = serde_json::to_string(&d).unwrap();
            let back: Dec = serde_json::from_str(&json).unwrap();
            assert_eq!(back.to_string(), d.to_string(), "{text} -> {json}");
        }
        assert_eq!(
            serde_json::to_string(&Dec::parse("2.2").unwrap()).unwrap(),
            "2.2"
        );
        assert_eq!(
            serde_json::to_string(&Dec::parse("111111111111111111111111").unwrap()).unwrap(),
            "\"111111111111111111111111\""
        );
    }

    #[test]
    fn parses_and_converts_exactly() {
        let d = |s| Dec::parse(s).unwrap();
        assert_eq!(d("45").to_fixed(2), Ok(4500));
        assert_eq!(d("2.2").to_fixed(2), Ok(220));
        assert_eq!(d("0.75").to_fixed(2), Ok(75));
        assert_eq!(d("0.1").to_fixed(3), Ok(100));
        assert_eq!(d("1.50").to_fixed(1), Ok(15));
        assert!(d("2.255").to_fixed(2).is_err());
        assert!(d("99999999999999999999").to_fixed(2).is_err());
        assert_eq!(d("-3").to_fixed(0), Ok(-3));
        for bad in ["", ".", "1e5", "1.2.3", "abc", "0x10", "1,5", "NaN"] {
            assert!(Dec::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn json_numbers_keep_the_written_decimal() {
        for (json, minor) in [("2.2", 220), ("0.1", 10), ("45", 4500), ("\"19.99\"", 1999)] {
            let d: Dec = serde_json::from_str(json).unwrap();
            assert_eq!(d.to_fixed(2), Ok(minor), "{json}");
        }
        assert_eq!(
            serde_json::to_string(&Dec::parse("2.20").unwrap()).unwrap(),
            "2.2"
        );
        assert_eq!(
            serde_json::to_string(&Dec::parse("45.0").unwrap()).unwrap(),
            "45"
        );
        assert!(serde_json::from_str::<Dec>("true").is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(fmt_money(4500, 2, "USD"), "45.00 USD");
        assert_eq!(fmt_money(-5, 2, "EUR"), "-0.05 EUR");
        assert_eq!(fmt_money(1200, 0, "JPY"), "1200 JPY");
        assert_eq!(fmt_qty(1500), "1.5");
        assert_eq!(fmt_qty(3000), "3");
        assert_eq!(currency_digits("KWD"), 3);
    }
}
