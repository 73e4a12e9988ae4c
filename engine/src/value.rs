//! Values, their types, and their encoding as machine words.
//!
//! People and programs see a [`Value`]: a number, an unsigned number, a float or a symbol. The
//! dataflow never does: there every column is one untagged 64-bit word, because the column's type
//! is known from the relation's declaration and heap allocation per record dominates the cost of
//! an interpreted engine. Numbers are stored as their two's-complement bits, floats as their IEEE
//! bits, and symbols as the id the [`Interner`] gives them.
//!
//! Symbol ids are a hash of the string, not a counter, so that every timely process of a cluster
//! gives the same string the same id without talking to the others. Two strings with the same
//! 64-bit hash would be a collision; the interner detects it and refuses the second string rather
//! than confuse the two.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

/// A primitive column type. Declared types (`.type Id <: symbol`, aliases, unions) all resolve to
/// one of these.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Type {
    Number,
    Unsigned,
    Float,
    Symbol,
}

impl Type {
    pub fn name(self) -> &'static str {
        match self {
            Type::Number => "number",
            Type::Unsigned => "unsigned",
            Type::Float => "float",
            Type::Symbol => "symbol",
        }
    }

    pub fn is_numeric(self) -> bool {
        self != Type::Symbol
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value of a tuple, as people and programs see it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Value {
    Number(i64),
    Unsigned(u64),
    Float(f64),
    Symbol(Arc<str>),
}

impl Value {
    pub fn symbol(text: &str) -> Value {
        Value::Symbol(Arc::from(text))
    }

    pub fn ty(&self) -> Type {
        match self {
            Value::Number(_) => Type::Number,
            Value::Unsigned(_) => Type::Unsigned,
            Value::Float(_) => Type::Float,
            Value::Symbol(_) => Type::Symbol,
        }
    }

    /// Parses a value of a known type from its text form in a facts file or on a command line.
    pub fn parse(text: &str, ty: Type) -> Result<Value, String> {
        let trimmed = text.trim();
        match ty {
            Type::Symbol => Ok(Value::symbol(text)),
            Type::Number => parse_integer(trimmed)
                .and_then(|v| i64::try_from(v).ok())
                .map(Value::Number)
                .ok_or_else(|| format!("`{trimmed}` is not a number")),
            Type::Unsigned => parse_integer(trimmed)
                .and_then(|v| u64::try_from(v).ok())
                .map(Value::Unsigned)
                .ok_or_else(|| format!("`{trimmed}` is not an unsigned number")),
            Type::Float => trimmed
                .parse::<f64>()
                .map(Value::Float)
                .map_err(|_| format!("`{trimmed}` is not a float")),
        }
    }
}

/// Parses a decimal, `0x` hexadecimal or `0b` binary integer, with an optional sign.
fn parse_integer(text: &str) -> Option<i128> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let magnitude = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        i128::from_str_radix(hex, 16).ok()?
    } else if let Some(bin) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        i128::from_str_radix(bin, 2).ok()?
    } else {
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse::<i128>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

impl PartialEq for Value {
    fn eq(&self, other: &Value) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for Value {}

impl PartialOrd for Value {
    fn partial_cmp(&self, other: &Value) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A total order: by type first, then numerically (floats by `total_cmp`) or lexicographically.
impl Ord for Value {
    fn cmp(&self, other: &Value) -> std::cmp::Ordering {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.cmp(b),
            (Value::Unsigned(a), Value::Unsigned(b)) => a.cmp(b),
            (Value::Float(a), Value::Float(b)) => a.total_cmp(b),
            (Value::Symbol(a), Value::Symbol(b)) => a.cmp(b),
            _ => self.ty().cmp(&other.ty()),
        }
    }
}

impl std::hash::Hash for Value {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            Value::Number(v) => (0u8, v).hash(state),
            Value::Unsigned(v) => (1u8, v).hash(state),
            Value::Float(v) => (2u8, v.to_bits()).hash(state),
            Value::Symbol(v) => (3u8, v).hash(state),
        }
    }
}

/// Soufflé's text form: symbols unquoted, floats like C++'s default stream output.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(v) => write!(f, "{v}"),
            Value::Unsigned(v) => write!(f, "{v}"),
            Value::Float(v) => f.write_str(&format_float(*v)),
            Value::Symbol(v) => f.write_str(v),
        }
    }
}

/// Formats a float as C's `%.17g`, which is what Soufflé's outputs print (a C++ stream with
/// `std::setprecision(max_digits10)`): every float reads back as itself, and round values
/// print short (`2.5`, `1`).
pub fn format_float(value: f64) -> String {
    if value.is_nan() {
        return "nan".to_string();
    }
    if value.is_infinite() {
        return if value > 0.0 { "inf" } else { "-inf" }.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.to_string();
    }
    const PRECISION: i32 = 17;
    // The exponent of the value once rounded to PRECISION significant digits.
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, value);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..PRECISION).contains(&exponent) {
        let mantissa = strip_fraction_zeros(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = (PRECISION - 1 - exponent).max(0) as usize;
        strip_fraction_zeros(&format!("{value:.decimals$}")).to_string()
    }
}

fn strip_fraction_zeros(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

/// A column value as stored in the dataflow: untagged; its meaning comes from the column type.
pub type Word = u64;

/// Encodes a value of a known type as a word. Symbols are interned.
pub fn encode(value: &Value, interner: &Interner) -> Result<Word, String> {
    Ok(match value {
        Value::Number(v) => *v as u64,
        Value::Unsigned(v) => *v,
        Value::Float(v) => v.to_bits(),
        Value::Symbol(s) => interner.intern(s)?,
    })
}

/// Decodes a word of a known type.
pub fn decode(word: Word, ty: Type, interner: &Interner) -> Value {
    match ty {
        Type::Number => Value::Number(word as i64),
        Type::Unsigned => Value::Unsigned(word),
        Type::Float => Value::Float(f64::from_bits(word)),
        Type::Symbol => Value::Symbol(interner.resolve(word)),
    }
}

/// The symbol table shared by every worker thread of a process.
///
/// Cloning an `Interner` gives another handle to the same table.
#[derive(Clone, Default)]
pub struct Interner {
    inner: Arc<RwLock<InternerTable>>,
}

#[derive(Default)]
struct InternerTable {
    strings: HashMap<u64, Arc<str>>,
}

impl Interner {
    pub fn new() -> Interner {
        Interner::default()
    }

    /// The id of a string, which is the same in every process.
    pub fn id_of(text: &str) -> u64 {
        let hash = blake3::hash(text.as_bytes());
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&hash.as_bytes()[..8]);
        u64::from_le_bytes(bytes)
    }

    /// Interns a string and returns its id. Fails only on a 64-bit hash collision.
    pub fn intern(&self, text: &str) -> Result<u64, String> {
        let id = Interner::id_of(text);
        {
            let table = self
                .inner
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if let Some(existing) = table.strings.get(&id) {
                return if &**existing == text {
                    Ok(id)
                } else {
                    Err(format!(
                        "symbols `{existing}` and `{text}` have the same 64-bit hash"
                    ))
                };
            }
        }
        let mut table = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match table.strings.get(&id) {
            Some(existing) if &**existing != text => Err(format!(
                "symbols `{existing}` and `{text}` have the same 64-bit hash"
            )),
            Some(_) => Ok(id),
            None => {
                table.strings.insert(id, Arc::from(text));
                Ok(id)
            }
        }
    }

    /// Records a string under an id another process gave it (the same hash).
    pub fn adopt(&self, id: u64, text: &str) {
        let mut table = self
            .inner
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table.strings.entry(id).or_insert_with(|| Arc::from(text));
    }

    /// Every interned string with its id.
    pub fn entries(&self) -> Vec<(u64, Arc<str>)> {
        let table = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        table
            .strings
            .iter()
            .map(|(id, text)| (*id, text.clone()))
            .collect()
    }

    /// The string of an id. An id this process never interned resolves to a placeholder that
    /// names it; that only happens if a word that is not a symbol is decoded as one.
    pub fn resolve(&self, id: u64) -> Arc<str> {
        let table = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match table.strings.get(&id) {
            Some(text) => text.clone(),
            None => Arc::from(format!("<unknown symbol {id:#x}>")),
        }
    }

    /// Runs `f` on the string of an id without cloning it.
    pub fn with_str<T>(&self, id: u64, f: impl FnOnce(&str) -> T) -> T {
        let table = self
            .inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match table.strings.get(&id) {
            Some(text) => f(text),
            None => f(""),
        }
    }

    pub fn len(&self) -> usize {
        self.inner
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .strings
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_souffle() {
        assert_eq!(format_float(2.5), "2.5");
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(1.0 / 3.0), "0.33333333333333331");
        assert_eq!(format_float(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(format_float(123456789.0), "123456789");
        assert_eq!(format_float(0.0001), "0.0001");
        assert_eq!(format_float(0.00001), "1.0000000000000001e-05");
        assert_eq!(format_float(-7.25), "-7.25");
        assert_eq!(format_float(1e17), "1e+17");
        assert_eq!(format_float(1e16), "10000000000000000");
    }

    #[test]
    fn parses_integers_in_every_base() {
        assert_eq!(Value::parse("0x1F", Type::Number), Ok(Value::Number(31)));
        assert_eq!(
            Value::parse("0b101", Type::Unsigned),
            Ok(Value::Unsigned(5))
        );
        assert_eq!(Value::parse("-12", Type::Number), Ok(Value::Number(-12)));
        assert!(Value::parse("-1", Type::Unsigned).is_err());
        assert!(Value::parse("1.5", Type::Number).is_err());
    }

    #[test]
    fn interned_symbols_round_trip() {
        let interner = Interner::new();
        let id = interner.intern("pve").unwrap();
        assert_eq!(id, Interner::id_of("pve"));
        assert_eq!(&*interner.resolve(id), "pve");
        assert_eq!(
            decode(
                encode(&Value::Number(-3), &interner).unwrap(),
                Type::Number,
                &interner
            ),
            Value::Number(-3)
        );
    }
}
