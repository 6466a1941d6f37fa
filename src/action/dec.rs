//! `Dec`: an exact decimal as people write it (45, 2.2, 0.75), turned into integer minor
//! units or thousandths without ever passing through a float.
//! Invariants: conversions that would lose digits or overflow fail instead of rounding; a
//! `Dec` has at most 15 significant digits, so it is always an exact JSON number.

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

/// The most significant digits a number may have: an IEEE double (a JSON number as every
/// client reads it) carries 15 exactly.
pub const MAX_DIGITS: u32 = 15;

/// Why a text is not a `Dec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecError {
    /// Not `-?digits(.digits)?`.
    NotANumber,
    /// More than 12 decimal places.
    TooPrecise,
    /// More than 15 significant digits.
    TooLong,
}

impl fmt::Display for DecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecError::NotANumber => "is not a plain decimal number",
            DecError::TooPrecise => "has more than 12 decimal places",
            DecError::TooLong => "has more than 15 significant digits",
        })
    }
}

fn significant_digits(mut units: u128) -> u32 {
    while units != 0 && units.is_multiple_of(10) {
        units /= 10;
    }
    if units == 0 { 0 } else { units.ilog10() + 1 }
}

impl Dec {
    /// Parses `-?digits(.digits)?` (no exponent, at most 12 decimals, at most 15
    /// significant digits).
    pub fn parse(s: &str) -> Option<Dec> {
        Dec::read(s, false).ok()
    }

    /// Reads a number as text; `exponent` also accepts JSON's `1e-12` / `1.5E20` forms.
    fn read(s: &str, exponent: bool) -> Result<Dec, DecError> {
        let s = s.trim();
        let (mantissa, exp) = match s.find(['e', 'E']) {
            Some(i) if exponent => {
                let e: i32 = s[i + 1..].parse().map_err(|_| DecError::NotANumber)?;
                (&s[..i], e)
            }
            _ => (s, 0),
        };
        let (neg, body) = match mantissa.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
        };
        let (int, frac) = body.split_once('.').unwrap_or((body, ""));
        if (int.is_empty() && frac.is_empty())
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(DecError::NotANumber);
        }
        // Leading zeros of the integer part and trailing zeros of the fraction say nothing.
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        let digits = format!("{int}{frac}");
        let digits = digits.trim_start_matches('0');
        if significant_digits(digits.parse::<u128>().unwrap_or(0)) > MAX_DIGITS || digits.len() > 38
        {
            return Err(DecError::TooLong);
        }
        let mut units: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| DecError::TooLong)?
        };
        let mut scale = frac.len() as i64 - i64::from(exp);
        if scale < 0 {
            // 1.5e20: whole digits; the value must still fit.
            units = 10i128
                .checked_pow(u32::try_from(-scale).map_err(|_| DecError::TooLong)?)
                .and_then(|p| units.checked_mul(p))
                .filter(|u| u.unsigned_abs() < 10u128.pow(30))
                .ok_or(DecError::TooLong)?;
            scale = 0;
        }
        if scale > i64::from(MAX_SCALE) {
            return Err(DecError::TooPrecise);
        }
        Ok(Dec {
            units: if neg { -units } else { units },
            scale: scale as u32,
        })
    }

    /// `v / 10^digits`, e.g. minor units back to a decimal. `v` is a figure of the books
    /// (at most `MAX_MONEY`), so the result keeps the 15-digit invariant.
    pub fn from_fixed(v: i64, digits: u32) -> Dec {
        debug_assert!(
            significant_digits(v.unsigned_abs().into()) <= MAX_DIGITS,
            "{v} is beyond the books' bounds"
        );
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
            Some(v) => i64::try_from(v).map_err(|_| format!("{self} is too large")),
            None => Err(format!("{self} is too large")),
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
    /// Always a JSON number that reads back as exactly this value: a whole number as an
    /// integer, else a double (exact, since a `Dec` has at most 15 significant digits).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let div = 10i128.pow(self.scale);
        if self.units % div == 0 {
            let whole = self.units / div;
            return match i64::try_from(whole) {
                Ok(i) => s.serialize_i64(i),
                Err(_) => s.serialize_i128(whole),
            };
        }
        let f: f64 = self
            .to_string()
            .parse()
            .map_err(|_| serde::ser::Error::custom("a decimal is a float"))?;
        s.serialize_f64(f)
    }
}

impl<'de> Deserialize<'de> for Dec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = match serde_json::Value::deserialize(d)? {
            // serde_json prints a float as its shortest round-trip form ("2.2", "1e-12"),
            // which is the decimal the sender wrote when it has at most 15 digits.
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::String(s) => s,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "expected a number, found {}",
                    match other {
                        serde_json::Value::Null => "null",
                        serde_json::Value::Bool(_) => "a boolean",
                        serde_json::Value::Array(_) => "a list",
                        _ => "an object",
                    }
                )));
            }
        };
        Dec::read(&text, true).map_err(|e| {
            let shown: String = text.chars().take(40).collect();
            serde::de::Error::custom(format!("{shown:?} {e}"))
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

/// The ISO 4217 currencies a shop can keep its books in (funds, metals and test codes left
/// out, and the two with four decimals).
const CURRENCIES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP",
    "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF",
    "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD",
    "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP",
    "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR",
    "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB",
    "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD",
    "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL", "SOS", "SRD", "SSP", "STN", "SVC", "SYP",
    "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD",
    "UYI", "UYU", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF",
    "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

/// Whether `code` is an ISO 4217 currency tarn keeps books in.
pub fn is_currency(code: &str) -> bool {
    CURRENCIES.binary_search(&code).is_ok()
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

/// A quantity with its unit, plural unless it is exactly one: "37 bags", "1 bag",
/// "2 loaves", "1.5 kg" (abbreviations stay as they are).
pub fn fmt_units(milli: i64, unit: &str) -> String {
    format!("{} {}", fmt_qty(milli), plural(unit, milli.abs() != 1000))
}

/// `unit` made plural (when `many`) as English does it for the units shops use.
pub fn plural(unit: &str, many: bool) -> String {
    const SAME: &[&str] = &[
        "pcs", "kg", "g", "mg", "l", "ml", "cl", "lb", "lbs", "oz", "m", "cm", "mm", "ft", "in",
        "sheep", "fish", "dozen",
    ];
    let low = unit.to_lowercase();
    if !many
        || unit.is_empty()
        || SAME.contains(&low.as_str())
        || !low.ends_with(char::is_alphabetic)
    {
        return unit.to_owned();
    }
    let stem = |n: usize| &unit[..unit.len() - n];
    if low.ends_with("loaf") || low.ends_with("leaf") || low.ends_with("half") {
        format!("{}ves", stem(1))
    } else if low.ends_with("knife") {
        format!("{}ves", stem(2))
    } else if low.ends_with('y')
        && !["ay", "ey", "iy", "oy", "uy"]
            .iter()
            .any(|e| low.ends_with(e))
    {
        format!("{}ies", stem(1))
    } else if ["s", "x", "z", "ch", "sh"].iter().any(|e| low.ends_with(e)) {
        format!("{unit}es")
    } else {
        format!("{unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_always_a_number_that_reads_back_exactly() {
        for text in [
            "45",
            "2.2",
            "0.75",
            "-3.5",
            "999999999999999",
            "9999999999999.99",
            "1234567890.12345",
            "0.000000000001",
            "100000000000000000000",
            "94739477554.2601",
        ] {
            let d = Dec::parse(text).unwrap();
            let json = serde_json::to_string(&d).unwrap();
            assert!(
                json.starts_with(|c: char| c.is_ascii_digit() || c == '-'),
                "{text} -> {json}"
            );
            let back: Dec = serde_json::from_str(&json).unwrap();
            assert_eq!(back, d, "{text} -> {json}");
        }
        assert_eq!(
            serde_json::to_string(&Dec::parse("2.2").unwrap()).unwrap(),
            "2.2"
        );
    }

    #[test]
    fn more_than_15_significant_digits_are_refused() {
        for text in [
            "1111111111111111",
            "1234567890.123456789",
            "9223372036854775808",
            "947394775542.6201",
        ] {
            assert!(Dec::parse(text).is_none(), "{text}");
            let err = serde_json::from_str::<Dec>(text).unwrap_err().to_string();
            assert!(err.contains("significant digits"), "{text}: {err}");
        }
        assert_eq!(Dec::parse("00012.500000"), Dec::parse("12.5"));
        assert!(serde_json::from_str::<Dec>("1e-13").is_err());
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
        assert!(d("100000000000000000000").to_fixed(2).is_err());
        assert_eq!(d("-3").to_fixed(0), Ok(-3));
        for bad in [
            "",
            ".",
            "1e5",
            "1.2.3",
            "abc",
            "0x10",
            "1,5",
            "NaN",
            "1.0000000000001",
        ] {
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
        assert_eq!(fmt_units(37_000, "bag"), "37 bags");
        assert_eq!(fmt_units(1_000, "bag"), "1 bag");
        assert_eq!(fmt_units(-1_000, "bag"), "-1 bag");
        assert_eq!(fmt_units(0, "bag"), "0 bags");
        assert_eq!(fmt_units(2_000, "loaf"), "2 loaves");
        assert_eq!(fmt_units(3_000, "box"), "3 boxes");
        assert_eq!(fmt_units(3_000, "battery"), "3 batteries");
        assert_eq!(fmt_units(3_000, "tray"), "3 trays");
        assert_eq!(fmt_units(1_500, "kg"), "1.5 kg");
        assert_eq!(fmt_units(4_000, "pcs"), "4 pcs");
        assert_eq!(fmt_qty(3000), "3");
        assert_eq!(currency_digits("KWD"), 3);
        assert!(
            CURRENCIES.windows(2).all(|w| w[0] < w[1]),
            "sorted, for binary search"
        );
        assert!(is_currency("EUR") && is_currency("XOF"));
        assert!(!is_currency("ABC") && !is_currency("XAU") && !is_currency("usd"));
    }
}
