//! Money in integer minor units. Never floats: every operation is checked and an overflow
//! is an error, not a wrap.
//!
//! Rounding: percentages and fractions round half away from zero on the magnitude, so
//! 10% of 1,995 is 200 (199.5 rounds up) and 10% of -1,995 is -200. In formula form, for
//! a non-negative amount: `(amount * percent + 50) / 100`.

use std::fmt;

use crate::types::Money;

/// Why a money operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MoneyError {
    /// The result does not fit in an `i64` of minor units.
    Overflow,
    /// The two amounts are in different currencies.
    CurrencyMismatch {
        /// Currency of the left operand.
        left: String,
        /// Currency of the right operand.
        right: String,
    },
    /// A fraction with a zero or negative denominator.
    InvalidFraction,
}

impl fmt::Display for MoneyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoneyError::Overflow => f.write_str("amount overflows 64-bit minor units"),
            MoneyError::CurrencyMismatch { left, right } => {
                write!(f, "cannot combine amounts in {left} and {right}")
            }
            MoneyError::InvalidFraction => f.write_str("fraction denominator must be positive"),
        }
    }
}

impl std::error::Error for MoneyError {}

impl From<MoneyError> for String {
    fn from(err: MoneyError) -> String {
        err.to_string()
    }
}

/// `numerator / denominator` of `amount_minor`, rounded half away from zero.
///
/// `denominator` must be positive; `numerator` may be any sign.
pub fn fraction_of(amount_minor: i64, numerator: i64, denominator: i64) -> Result<i64, MoneyError> {
    if denominator <= 0 {
        return Err(MoneyError::InvalidFraction);
    }
    let negative = (amount_minor < 0) != (numerator < 0);
    let magnitude = amount_minor
        .checked_abs()
        .and_then(|a| a.checked_mul(numerator.checked_abs()?))
        .and_then(|p| p.checked_add(denominator / 2))
        .ok_or(MoneyError::Overflow)?
        / denominator;
    Ok(if negative { -magnitude } else { magnitude })
}

/// `percent`% of `amount_minor`, rounded half away from zero.
///
/// ```
/// assert_eq!(olivine_sdk::money::percent_of(1995, 10), Ok(200));
/// assert_eq!(olivine_sdk::money::percent_of(5997, 10), Ok(600));
/// assert_eq!(olivine_sdk::money::percent_of(-1995, 10), Ok(-200));
/// ```
pub fn percent_of(amount_minor: i64, percent: u32) -> Result<i64, MoneyError> {
    fraction_of(amount_minor, i64::from(percent), 100)
}

/// The (negative) adjustment for `percent`% off `amount_minor`:
/// `-(amount * percent + 50) / 100`.
///
/// ```
/// assert_eq!(olivine_sdk::money::percent_discount(5997, 10), Ok(-600));
/// assert_eq!(olivine_sdk::money::percent_discount(4, 10), Ok(0));
/// ```
pub fn percent_discount(amount_minor: i64, percent: u32) -> Result<i64, MoneyError> {
    Ok(-percent_of(amount_minor, percent)?)
}

/// `basis_points`/10,000 of `amount_minor` (12.5% = 1,250 bp), rounded half away from zero.
pub fn basis_points_of(amount_minor: i64, basis_points: u32) -> Result<i64, MoneyError> {
    fraction_of(amount_minor, i64::from(basis_points), 10_000)
}

/// Splits `total` over `weights` in proportion, in integers, so that the parts add up to
/// exactly `total`. Each part is `total * weight / sum` rounded down (toward zero);
/// the remainder goes one minor unit at a time to the parts with the largest remainders
/// (ties: earlier first). Weights must be non-negative; all-zero weights split evenly.
///
/// ```
/// assert_eq!(olivine_sdk::money::allocate(-100, &[1, 1, 1]), Ok(vec![-34, -33, -33]));
/// assert_eq!(olivine_sdk::money::allocate(1000, &[3997, 1999]), Ok(vec![667, 333]));
/// ```
pub fn allocate(total: i64, weights: &[i64]) -> Result<Vec<i64>, MoneyError> {
    if weights.is_empty() {
        return Ok(Vec::new());
    }
    if weights.iter().any(|w| *w < 0) {
        return Err(MoneyError::InvalidFraction);
    }
    let sum: i128 = weights.iter().map(|w| i128::from(*w)).sum();
    let (weights, sum): (Vec<i128>, i128) = if sum == 0 {
        (vec![1; weights.len()], weights.len() as i128)
    } else {
        (weights.iter().map(|w| i128::from(*w)).collect(), sum)
    };
    let negative = total < 0;
    let magnitude = i128::from(total).abs();
    let mut parts = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    let mut assigned: i128 = 0;
    for (i, w) in weights.iter().enumerate() {
        let product = magnitude * w;
        parts.push(product / sum);
        remainders.push((product % sum, i));
        assigned += product / sum;
    }
    let mut left = magnitude - assigned;
    // Largest remainder first; on equal remainders the earlier part first.
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, i) in remainders {
        if left == 0 {
            break;
        }
        parts[i] += 1;
        left -= 1;
    }
    parts
        .into_iter()
        .map(|p| {
            let p = i64::try_from(p).map_err(|_| MoneyError::Overflow)?;
            Ok(if negative { -p } else { p })
        })
        .collect()
}

/// Digits after the decimal point of an ISO 4217 currency: 0 for e.g. JPY and KRW, 3 for
/// e.g. KWD and BHD, 2 for everything else.
pub fn minor_unit_exponent(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

impl Money {
    /// An amount in minor units of `currency`.
    pub fn new(amount_minor: i64, currency: impl Into<String>) -> Money {
        Money {
            amount_minor,
            currency: currency.into(),
        }
    }

    /// Zero in `currency`.
    pub fn zero(currency: impl Into<String>) -> Money {
        Money::new(0, currency)
    }

    /// Whether the amount is zero.
    pub fn is_zero(&self) -> bool {
        self.amount_minor == 0
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.amount_minor < 0
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency.clone(),
                right: other.currency.clone(),
            })
        }
    }

    fn with_amount(&self, amount_minor: Option<i64>) -> Result<Money, MoneyError> {
        Ok(Money::new(
            amount_minor.ok_or(MoneyError::Overflow)?,
            self.currency.clone(),
        ))
    }

    /// `self + other`; an error on overflow or different currencies.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.with_amount(self.amount_minor.checked_add(other.amount_minor))
    }

    /// `self - other`; an error on overflow or different currencies.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.with_amount(self.amount_minor.checked_sub(other.amount_minor))
    }

    /// `self * factor` (e.g. a unit price times a quantity); an error on overflow.
    pub fn checked_mul(&self, factor: i64) -> Result<Money, MoneyError> {
        self.with_amount(self.amount_minor.checked_mul(factor))
    }

    /// `-self`; an error for `i64::MIN`.
    pub fn checked_neg(&self) -> Result<Money, MoneyError> {
        self.with_amount(self.amount_minor.checked_neg())
    }

    /// `percent`% of this amount, rounded half away from zero.
    pub fn percent(&self, percent: u32) -> Result<Money, MoneyError> {
        Ok(Money::new(
            percent_of(self.amount_minor, percent)?,
            self.currency.clone(),
        ))
    }

    /// The negative adjustment for `percent`% off this amount.
    pub fn percent_discount(&self, percent: u32) -> Result<Money, MoneyError> {
        Ok(Money::new(
            percent_discount(self.amount_minor, percent)?,
            self.currency.clone(),
        ))
    }

    /// Digits after the decimal point of this currency (see [`minor_unit_exponent`]).
    pub fn exponent(&self) -> u32 {
        minor_unit_exponent(&self.currency)
    }

    /// Whole major units (euros, dollars, yen), truncated toward zero.
    pub fn whole_units(&self) -> i64 {
        self.amount_minor / 10_i64.pow(self.exponent())
    }

    /// For display: `€19.99`, `$5.00`, `£1.50`, or `19.99 CHF`, `1500 JPY`.
    pub fn display(&self) -> String {
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let abs = self.amount_minor.unsigned_abs();
        let exponent = self.exponent();
        let number = if exponent == 0 {
            abs.to_string()
        } else {
            let scale = 10_u64.pow(exponent);
            format!(
                "{}.{:0width$}",
                abs / scale,
                abs % scale,
                width = exponent as usize
            )
        };
        match self.currency.as_str() {
            "EUR" => format!("{sign}€{number}"),
            "USD" => format!("{sign}${number}"),
            "GBP" => format!("{sign}£{number}"),
            other => format!("{sign}{number} {other}"),
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_rounds_half_away_from_zero() {
        assert_eq!(percent_of(5997, 10), Ok(600)); // 599.7
        assert_eq!(percent_of(1995, 10), Ok(200)); // 199.5 -> 200
        assert_eq!(percent_of(1994, 10), Ok(199)); // 199.4
        assert_eq!(percent_of(-1995, 10), Ok(-200));
        assert_eq!(percent_of(5, 10), Ok(1)); // 0.5 -> 1
        assert_eq!(percent_of(4, 10), Ok(0)); // 0.4 -> 0
        assert_eq!(percent_of(1999, 100), Ok(1999));
        assert_eq!(percent_of(0, 50), Ok(0));
        assert_eq!(percent_discount(5997, 10), Ok(-600));
        assert_eq!(percent_discount(-5997, 10), Ok(600));
    }

    #[test]
    fn percent_matches_the_documented_formula() {
        for amount in [0_i64, 1, 49, 50, 99, 101, 1999, 12_345, 99_999] {
            for percent in [1_u32, 5, 10, 15, 33, 50, 99, 100] {
                let expected = -((amount * i64::from(percent) + 50) / 100);
                assert_eq!(
                    percent_discount(amount, percent),
                    Ok(expected),
                    "{amount} {percent}"
                );
            }
        }
    }

    #[test]
    fn overflow_is_an_error() {
        assert_eq!(percent_of(i64::MAX, 10), Err(MoneyError::Overflow));
        assert_eq!(percent_of(i64::MIN, 1), Err(MoneyError::Overflow));
        assert!(percent_of(i64::MAX / 100 - 1, 100).is_ok());
        let big = Money::new(i64::MAX, "EUR");
        assert_eq!(
            big.checked_add(&Money::new(1, "EUR")),
            Err(MoneyError::Overflow)
        );
        assert_eq!(big.checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(
            Money::new(i64::MIN, "EUR").checked_neg(),
            Err(MoneyError::Overflow)
        );
    }

    #[test]
    fn checked_arithmetic_keeps_the_currency() {
        let a = Money::new(1999, "EUR");
        assert_eq!(
            a.checked_add(&Money::new(1, "EUR")),
            Ok(Money::new(2000, "EUR"))
        );
        assert_eq!(
            a.checked_sub(&Money::new(2000, "EUR")),
            Ok(Money::new(-1, "EUR"))
        );
        assert_eq!(a.checked_mul(3), Ok(Money::new(5997, "EUR")));
        assert!(matches!(
            a.checked_add(&Money::new(1, "USD")),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        assert_eq!(a.percent_discount(10), Ok(Money::new(-200, "EUR")));
    }

    #[test]
    fn fractions_and_basis_points() {
        assert_eq!(fraction_of(100, 1, 3), Ok(33));
        assert_eq!(fraction_of(200, 1, 3), Ok(67));
        assert_eq!(fraction_of(100, 1, 0), Err(MoneyError::InvalidFraction));
        assert_eq!(basis_points_of(1000, 1250), Ok(125));
        assert_eq!(basis_points_of(1004, 1250), Ok(126)); // 125.5
    }

    #[test]
    fn allocation_adds_up() {
        assert_eq!(allocate(-100, &[1, 1, 1]), Ok(vec![-34, -33, -33]));
        assert_eq!(allocate(10, &[0, 0]), Ok(vec![5, 5]));
        assert_eq!(allocate(7, &[]), Ok(vec![]));
        assert_eq!(allocate(7, &[1, -1]), Err(MoneyError::InvalidFraction));
        let parts = allocate(-1_234_567, &[3, 7, 11, 13]).unwrap();
        assert_eq!(parts.iter().sum::<i64>(), -1_234_567);
        let parts = allocate(i64::MAX, &[i64::MAX, i64::MAX]).unwrap();
        assert_eq!(
            parts.iter().map(|p| i128::from(*p)).sum::<i128>(),
            i128::from(i64::MAX)
        );
    }

    #[test]
    fn display_and_units() {
        assert_eq!(Money::new(1999, "EUR").to_string(), "€19.99");
        assert_eq!(Money::new(-500, "USD").to_string(), "-$5.00");
        assert_eq!(Money::new(1999, "CHF").to_string(), "19.99 CHF");
        assert_eq!(Money::new(1500, "JPY").to_string(), "1500 JPY");
        assert_eq!(Money::new(12_345, "KWD").to_string(), "12.345 KWD");
        assert_eq!(Money::new(4999, "EUR").whole_units(), 49);
        assert_eq!(Money::new(4999, "JPY").whole_units(), 4999);
    }
}
