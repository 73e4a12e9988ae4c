//! Expressions and conditions compiled against row positions, evaluated on words.
//!
//! The planner turns each [`ir::Expr`] into a [`Compiled`] expression whose variables are
//! positions in the row that reaches it. Evaluation is a small tree walk over untagged words:
//! the types are fixed at compile time, so each operator knows how to read its operands.
//! The semantics are those documented in [`crate::ir`]; a failing evaluation (division by
//! zero, an unparsable `to_number`) returns `None` and the binding is dropped.

use crate::ir::{self, Function};
use crate::syntax::ast::{BinaryOp, CompareOp, UnaryOp};
use crate::value::{Interner, Type, Value, Word, format_float};
use std::cmp::Ordering;
use std::collections::HashMap;

/// An expression over the words of a row.
#[derive(Clone, Debug)]
pub enum Compiled {
    Column(usize),
    Const(Word),
    Unary {
        op: UnaryOp,
        ty: Type,
        arg: Box<Compiled>,
    },
    Binary {
        op: BinaryOp,
        ty: Type,
        lhs: Box<Compiled>,
        rhs: Box<Compiled>,
    },
    Call {
        function: Function,
        ty: Type,
        operand: Type,
        args: Vec<Compiled>,
    },
}

/// A condition over the words of a row.
#[derive(Clone, Debug)]
pub enum CompiledCondition {
    Compare {
        op: CompareOp,
        ty: Type,
        lhs: Compiled,
        rhs: Compiled,
    },
    Contains {
        needle: Compiled,
        haystack: Compiled,
    },
    Match {
        pattern: Compiled,
        text: Compiled,
    },
    Bool(bool),
    Not(Box<CompiledCondition>),
}

/// Compiles an expression; `position(var)` is where the variable sits in the row.
pub fn compile(
    expr: &ir::Expr,
    position: &impl Fn(ir::VarId) -> usize,
    interner: &Interner,
) -> Result<Compiled, String> {
    Ok(match expr {
        ir::Expr::Var(var, _) => Compiled::Column(position(*var)),
        ir::Expr::Const(value) => Compiled::Const(crate::value::encode(value, interner)?),
        ir::Expr::Unary { op, ty, arg } => Compiled::Unary {
            op: *op,
            ty: *ty,
            arg: Box::new(compile(arg, position, interner)?),
        },
        ir::Expr::Binary {
            op,
            operand,
            lhs,
            rhs,
            ..
        } => Compiled::Binary {
            op: *op,
            ty: *operand,
            lhs: Box::new(compile(lhs, position, interner)?),
            rhs: Box::new(compile(rhs, position, interner)?),
        },
        ir::Expr::Call { function, ty, args } => Compiled::Call {
            function: *function,
            ty: *ty,
            operand: args.first().map_or(*ty, ir::Expr::ty),
            args: args
                .iter()
                .map(|arg| compile(arg, position, interner))
                .collect::<Result<_, _>>()?,
        },
    })
}

pub fn compile_condition(
    condition: &ir::Condition,
    position: &impl Fn(ir::VarId) -> usize,
    interner: &Interner,
) -> Result<CompiledCondition, String> {
    Ok(match condition {
        ir::Condition::Compare {
            op, ty, lhs, rhs, ..
        } => CompiledCondition::Compare {
            op: *op,
            ty: *ty,
            lhs: compile(lhs, position, interner)?,
            rhs: compile(rhs, position, interner)?,
        },
        ir::Condition::Contains {
            needle, haystack, ..
        } => CompiledCondition::Contains {
            needle: compile(needle, position, interner)?,
            haystack: compile(haystack, position, interner)?,
        },
        ir::Condition::Match { pattern, text, .. } => CompiledCondition::Match {
            pattern: compile(pattern, position, interner)?,
            text: compile(text, position, interner)?,
        },
        ir::Condition::Bool(value, _) => CompiledCondition::Bool(*value),
        ir::Condition::Not(condition) => {
            CompiledCondition::Not(Box::new(compile_condition(condition, position, interner)?))
        }
    })
}

/// What evaluation needs besides the row: the symbol table, and a cache of compiled regular
/// expressions for `match`.
pub struct Evaluator {
    pub interner: Interner,
    patterns: HashMap<Word, Option<regex::Regex>>,
}

impl Evaluator {
    pub fn new(interner: Interner) -> Evaluator {
        Evaluator {
            interner,
            patterns: HashMap::new(),
        }
    }

    pub fn eval(&self, expr: &Compiled, row: &[Word]) -> Option<Word> {
        match expr {
            Compiled::Column(position) => Some(row.get(*position).copied().unwrap_or(0)),
            Compiled::Const(word) => Some(*word),
            Compiled::Unary { op, ty, arg } => {
                let value = self.eval(arg, row)?;
                Some(unary(*op, *ty, value))
            }
            Compiled::Binary { op, ty, lhs, rhs } => {
                let left = self.eval(lhs, row)?;
                let right = self.eval(rhs, row)?;
                binary(*op, *ty, left, right)
            }
            Compiled::Call {
                function,
                ty,
                operand,
                args,
            } => self.call(*function, *ty, *operand, args, row),
        }
    }

    pub fn holds(&mut self, condition: &CompiledCondition, row: &[Word]) -> bool {
        match condition {
            CompiledCondition::Compare { op, ty, lhs, rhs } => {
                let (Some(left), Some(right)) = (self.eval(lhs, row), self.eval(rhs, row)) else {
                    return false;
                };
                match self.compare(*ty, left, right) {
                    Some(ordering) => match op {
                        CompareOp::Eq => ordering == Ordering::Equal,
                        CompareOp::Ne => ordering != Ordering::Equal,
                        CompareOp::Lt => ordering == Ordering::Less,
                        CompareOp::Le => ordering != Ordering::Greater,
                        CompareOp::Gt => ordering == Ordering::Greater,
                        CompareOp::Ge => ordering != Ordering::Less,
                    },
                    // NaN: only `!=` holds.
                    None => *op == CompareOp::Ne,
                }
            }
            CompiledCondition::Contains { needle, haystack } => {
                let (Some(needle), Some(haystack)) =
                    (self.eval(needle, row), self.eval(haystack, row))
                else {
                    return false;
                };
                let needle = self.interner.resolve(needle);
                self.interner
                    .with_str(haystack, |haystack| haystack.contains(&*needle))
            }
            CompiledCondition::Match { pattern, text } => {
                let (Some(pattern), Some(text)) = (self.eval(pattern, row), self.eval(text, row))
                else {
                    return false;
                };
                let interner = &self.interner;
                let regex = self.patterns.entry(pattern).or_insert_with(|| {
                    let source = interner.resolve(pattern);
                    regex::Regex::new(&format!("^(?:{source})$")).ok()
                });
                match regex {
                    Some(regex) => self.interner.with_str(text, |text| regex.is_match(text)),
                    None => false,
                }
            }
            CompiledCondition::Bool(value) => *value,
            CompiledCondition::Not(condition) => !self.holds(condition, row),
        }
    }

    /// Compares two words of type `ty`; `None` only for a NaN.
    pub fn compare(&self, ty: Type, left: Word, right: Word) -> Option<Ordering> {
        match ty {
            Type::Number => Some((left as i64).cmp(&(right as i64))),
            Type::Unsigned => Some(left.cmp(&right)),
            Type::Float => f64::from_bits(left).partial_cmp(&f64::from_bits(right)),
            Type::Symbol => {
                if left == right {
                    Some(Ordering::Equal)
                } else {
                    let right = self.interner.resolve(right);
                    Some(
                        self.interner
                            .with_str(left, |left| left.as_bytes().cmp(right.as_bytes())),
                    )
                }
            }
        }
    }

    fn symbol(&self, text: &str) -> Option<Word> {
        self.interner.intern(text).ok()
    }

    fn call(
        &self,
        function: Function,
        ty: Type,
        operand: Type,
        args: &[Compiled],
        row: &[Word],
    ) -> Option<Word> {
        let mut values = [0 as Word; 3];
        let mut many = Vec::new();
        let words: &[Word] = if args.len() <= 3 {
            for (slot, arg) in values.iter_mut().zip(args) {
                *slot = self.eval(arg, row)?;
            }
            &values[..args.len()]
        } else {
            for arg in args {
                many.push(self.eval(arg, row)?);
            }
            &many
        };
        match function {
            Function::Max | Function::Min => {
                let mut best = words[0];
                for &word in &words[1..] {
                    let ordering = self.compare(ty, word, best)?;
                    let better = if function == Function::Max {
                        ordering == Ordering::Greater
                    } else {
                        ordering == Ordering::Less
                    };
                    if better {
                        best = word;
                    }
                }
                Some(best)
            }
            Function::Abs => Some(match ty {
                Type::Number => (words[0] as i64).wrapping_abs() as u64,
                Type::Float => f64::from_bits(words[0]).abs().to_bits(),
                _ => words[0],
            }),
            Function::Cat => {
                let mut text = String::new();
                for &word in words {
                    self.interner.with_str(word, |part| text.push_str(part));
                }
                self.symbol(&text)
            }
            Function::Strlen => {
                Some(self.interner.with_str(words[0], |text| text.len() as i64) as u64)
            }
            Function::Substr => {
                let (index, length) = (words[1] as i64, words[2] as i64);
                let text = self.interner.resolve(words[0]);
                self.symbol(&substr(&text, index, length))
            }
            Function::Ord => Some(words[0]),
            Function::ToNumber => convert(self, operand, Type::Number, words[0]),
            Function::ToUnsigned => convert(self, operand, Type::Unsigned, words[0]),
            Function::ToFloat => convert(self, operand, Type::Float, words[0]),
            Function::ToString => {
                let text = match operand {
                    Type::Number => (words[0] as i64).to_string(),
                    Type::Unsigned => words[0].to_string(),
                    Type::Float => format!("{:.6}", f64::from_bits(words[0])),
                    Type::Symbol => return Some(words[0]),
                };
                self.symbol(&text)
            }
        }
    }
}

/// `substr` as Soufflé defines it on bytes (see [`crate::ir`]).
pub fn substr(text: &str, index: i64, length: i64) -> String {
    let bytes = text.as_bytes();
    if index < 0 || index as u64 > bytes.len() as u64 {
        return String::new();
    }
    let start = index as usize;
    let end = if length < 0 {
        bytes.len()
    } else {
        start.saturating_add(length as usize).min(bytes.len())
    };
    String::from_utf8_lossy(&bytes[start..end]).into_owned()
}

fn convert(evaluator: &Evaluator, from: Type, to: Type, word: Word) -> Option<Word> {
    if from == Type::Symbol {
        let text = evaluator.interner.resolve(word);
        return crate::value::encode(&Value::parse(&text, to).ok()?, &evaluator.interner).ok();
    }
    Some(match (from, to) {
        (Type::Float, Type::Number) => (f64::from_bits(word) as i64) as u64,
        (Type::Float, Type::Unsigned) => f64::from_bits(word) as u64,
        (Type::Number, Type::Float) => ((word as i64) as f64).to_bits(),
        (Type::Unsigned, Type::Float) => (word as f64).to_bits(),
        // number <-> unsigned, and identities: the same bits.
        _ => word,
    })
}

fn truthy(ty: Type, word: Word) -> bool {
    if ty == Type::Float {
        f64::from_bits(word) != 0.0
    } else {
        word != 0
    }
}

fn from_bool(ty: Type, value: bool) -> Word {
    match ty {
        Type::Float => (if value { 1.0f64 } else { 0.0 }).to_bits(),
        _ => value as Word,
    }
}

fn unary(op: UnaryOp, ty: Type, word: Word) -> Word {
    match (op, ty) {
        (UnaryOp::Neg, Type::Float) => (-f64::from_bits(word)).to_bits(),
        (UnaryOp::Neg, _) => (word as i64).wrapping_neg() as u64,
        (UnaryOp::BitNot, _) => !word,
        (UnaryOp::LogicalNot, _) => from_bool(ty, !truthy(ty, word)),
    }
}

/// Integer power by squaring, wrapping; see [`crate::ir`] for negative exponents.
fn power_signed(base: i64, exponent: i64) -> i64 {
    if exponent < 0 {
        return match base {
            1 => 1,
            -1 => {
                if exponent % 2 == 0 {
                    1
                } else {
                    -1
                }
            }
            _ => 0,
        };
    }
    // Wrapping multiplication is the same on the two's-complement bits.
    power_unsigned(base as u64, exponent as u64) as i64
}

fn power_unsigned(base: u64, mut exponent: u64) -> u64 {
    let (mut result, mut base) = (1u64, base);
    while exponent > 0 {
        if exponent & 1 == 1 {
            result = result.wrapping_mul(base);
        }
        base = base.wrapping_mul(base);
        exponent >>= 1;
    }
    result
}

fn binary(op: BinaryOp, ty: Type, left: Word, right: Word) -> Option<Word> {
    use BinaryOp::*;
    match op {
        LogicalAnd => return Some(from_bool(ty, truthy(ty, left) && truthy(ty, right))),
        LogicalOr => return Some(from_bool(ty, truthy(ty, left) || truthy(ty, right))),
        LogicalXor => return Some(from_bool(ty, truthy(ty, left) != truthy(ty, right))),
        BitAnd => return Some(left & right),
        BitOr => return Some(left | right),
        BitXor => return Some(left ^ right),
        ShiftLeft => return Some(left.wrapping_shl(right as u32 & 63)),
        ShiftRightUnsigned => return Some(left.wrapping_shr(right as u32 & 63)),
        ShiftRight => {
            return Some(if ty == Type::Number {
                ((left as i64).wrapping_shr(right as u32 & 63)) as u64
            } else {
                left.wrapping_shr(right as u32 & 63)
            });
        }
        _ => {}
    }
    match ty {
        Type::Number => {
            let (a, b) = (left as i64, right as i64);
            Some(match op {
                Add => a.wrapping_add(b),
                Sub => a.wrapping_sub(b),
                Mul => a.wrapping_mul(b),
                Div => a
                    .checked_div(b)
                    .or_else(|| (b == -1).then(|| a.wrapping_neg()))?,
                Mod => a.checked_rem(b).or_else(|| (b == -1).then_some(0))?,
                Pow => power_signed(a, b),
                _ => unreachable!("bitwise and logical operators are handled above"),
            } as u64)
        }
        Type::Unsigned => Some(match op {
            Add => left.wrapping_add(right),
            Sub => left.wrapping_sub(right),
            Mul => left.wrapping_mul(right),
            Div => left.checked_div(right)?,
            Mod => left.checked_rem(right)?,
            Pow => power_unsigned(left, right),
            _ => unreachable!("bitwise and logical operators are handled above"),
        }),
        Type::Float => {
            let (a, b) = (f64::from_bits(left), f64::from_bits(right));
            Some(
                match op {
                    Add => a + b,
                    Sub => a - b,
                    Mul => a * b,
                    Div => a / b,
                    Mod => a % b,
                    Pow => a.powf(b),
                    _ => unreachable!("bitwise and logical operators are handled above"),
                }
                .to_bits(),
            )
        }
        Type::Symbol => None,
    }
}

/// Formats a word of a type for people (used in plans and diagnostics).
pub fn describe(word: Word, ty: Type, interner: &Interner) -> String {
    match ty {
        Type::Number => (word as i64).to_string(),
        Type::Unsigned => word.to_string(),
        Type::Float => format_float(f64::from_bits(word)),
        Type::Symbol => format!("{:?}", &*interner.resolve(word)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_division_by_zero_fails_and_min_over_minus_one_wraps() {
        assert_eq!(binary(BinaryOp::Div, Type::Number, 7, 0), None);
        assert_eq!(
            binary(BinaryOp::Div, Type::Number, (-7i64) as u64, 2),
            Some((-3i64) as u64)
        );
        assert_eq!(
            binary(BinaryOp::Mod, Type::Number, (-7i64) as u64, 2),
            Some((-1i64) as u64)
        );
        assert_eq!(
            binary(BinaryOp::Div, Type::Number, i64::MIN as u64, (-1i64) as u64),
            Some(i64::MIN as u64)
        );
    }

    #[test]
    fn powers_follow_the_documented_rules() {
        assert_eq!(power_signed(2, 10), 1024);
        assert_eq!(power_signed(-2, 3), -8);
        assert_eq!(power_signed(3, 41), 3i64.wrapping_pow(41));
        assert_eq!(power_signed(2, -1), 0);
        assert_eq!(power_signed(-1, -3), -1);
        assert_eq!(power_unsigned(3, 3), 27);
    }

    #[test]
    fn substr_is_byte_based_and_forgiving() {
        assert_eq!(substr("hello", 1, 3), "ell");
        assert_eq!(substr("hello", 3, 10), "lo");
        assert_eq!(substr("hello", 5, 1), "");
        assert_eq!(substr("hello", 6, 1), "");
        assert_eq!(substr("hello", -1, 1), "");
        assert_eq!(substr("hello", 2, -1), "llo");
    }

    #[test]
    fn shifts_and_logic() {
        assert_eq!(
            binary(BinaryOp::ShiftRight, Type::Number, (-8i64) as u64, 1),
            Some((-4i64) as u64)
        );
        assert_eq!(
            binary(
                BinaryOp::ShiftRightUnsigned,
                Type::Number,
                (-8i64) as u64,
                60
            ),
            Some(15)
        );
        assert_eq!(binary(BinaryOp::LogicalXor, Type::Number, 3, 0), Some(1));
        assert_eq!(unary(UnaryOp::LogicalNot, Type::Number, 5), 0);
    }
}
