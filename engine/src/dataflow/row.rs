//! Rows: tuples of untagged words in fixed-size arrays.
//!
//! A row is what flows through the dataflow: a relation's tuple, a key, or the bindings of a
//! rule's variables. Its width is known from the plan, never from the row itself, so a row
//! needs no length: the words past the width are zero. The whole dataflow of a program uses one
//! row type, the narrowest that fits the widest row the plan makes ([`super::plan::Plan::width`]).
//! Fixed arrays keep every record free of heap allocation, which is what an interpreted engine
//! pays for most; `Vec` is the fallback for very wide programs.

use crate::value::Word;
use serde::{Serialize, de::DeserializeOwned};
use std::fmt::Debug;
use std::hash::Hash;

/// The operations the dataflow needs from a row.
pub trait Row:
    Clone + Debug + Default + Ord + Hash + Send + Sync + Serialize + DeserializeOwned + 'static
{
    /// The widest row this type can hold.
    const CAPACITY: usize;

    /// A row holding `words` (at most [`Row::CAPACITY`] of them).
    fn from_words(words: &[Word]) -> Self;

    /// The words of the row; `words()[i]` for `i` at or past the row's width is zero (or absent
    /// for the `Vec` row).
    fn words(&self) -> &[Word];

    /// The word at `index`, zero past the end.
    #[inline]
    fn get(&self, index: usize) -> Word {
        self.words().get(index).copied().unwrap_or(0)
    }

    /// A copy of the row with `word` at `index`.
    fn with(&self, index: usize, word: Word) -> Self;

    /// A row of `length` words, the one at `i` being `word(i)`. Builds in place: no buffer to
    /// clear for every record.
    fn from_fn(length: usize, word: impl FnMut(usize) -> Word) -> Self;

    /// As [`Row::from_fn`], but a `None` fails the whole row.
    fn try_from_fn(length: usize, mut word: impl FnMut(usize) -> Option<Word>) -> Option<Self> {
        let mut failed = false;
        let row = Self::from_fn(length, |i| match word(i) {
            Some(w) => w,
            None => {
                failed = true;
                0
            }
        });
        (!failed).then_some(row)
    }

    /// A row of the words of `self` at `positions`, in that order.
    #[inline]
    fn project(&self, positions: &[usize]) -> Self {
        Self::from_fn(positions.len(), |i| self.get(positions[i]))
    }
}

macro_rules! array_row {
    ($n:literal) => {
        impl Row for [Word; $n] {
            const CAPACITY: usize = $n;

            #[inline]
            fn from_words(words: &[Word]) -> Self {
                let mut row = [0; $n];
                row[..words.len()].copy_from_slice(words);
                row
            }

            #[inline]
            fn words(&self) -> &[Word] {
                self
            }

            #[inline]
            fn with(&self, index: usize, word: Word) -> Self {
                let mut row = *self;
                row[index] = word;
                row
            }

            #[inline]
            fn from_fn(length: usize, mut word: impl FnMut(usize) -> Word) -> Self {
                let mut row = [0; $n];
                for (i, slot) in row.iter_mut().enumerate().take(length) {
                    *slot = word(i);
                }
                row
            }
        }
    };
}

array_row!(2);
array_row!(4);
array_row!(8);
array_row!(16);

impl Row for Vec<Word> {
    const CAPACITY: usize = usize::MAX;

    fn from_words(words: &[Word]) -> Self {
        // Trailing zeros are dropped, so that equal rows compare equal whatever width the
        // plan gave them.
        let end = words.iter().rposition(|&w| w != 0).map_or(0, |p| p + 1);
        words[..end].to_vec()
    }

    fn words(&self) -> &[Word] {
        self
    }

    fn from_fn(length: usize, word: impl FnMut(usize) -> Word) -> Self {
        let words: Vec<Word> = (0..length).map(word).collect();
        Vec::<Word>::from_words(&words)
    }

    fn with(&self, index: usize, word: Word) -> Self {
        let mut words = self.clone();
        if words.len() <= index {
            words.resize(index + 1, 0);
        }
        words[index] = word;
        Vec::<Word>::from_words(&words)
    }
}

/// Builds a row word by word, up to a width.
pub struct RowBuilder {
    words: [Word; 64],
    overflow: Vec<Word>,
    length: usize,
}

impl RowBuilder {
    #[inline]
    pub fn new() -> RowBuilder {
        RowBuilder {
            words: [0; 64],
            overflow: Vec::new(),
            length: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, word: Word) {
        if self.length < self.words.len() {
            self.words[self.length] = word;
        } else {
            if self.overflow.is_empty() {
                self.overflow.extend_from_slice(&self.words);
            }
            self.overflow.push(word);
        }
        self.length += 1;
    }

    #[inline]
    pub fn build<R: Row>(&self) -> R {
        if self.length <= self.words.len() {
            R::from_words(&self.words[..self.length])
        } else {
            R::from_words(&self.overflow)
        }
    }
}

impl Default for RowBuilder {
    fn default() -> Self {
        RowBuilder::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_pad_with_zeros_and_project() {
        let row = <[Word; 4]>::from_words(&[7, 8]);
        assert_eq!(row, [7, 8, 0, 0]);
        assert_eq!(row.project(&[1, 0]), [8, 7, 0, 0]);
        assert_eq!(row.get(9), 0);
    }

    #[test]
    fn vec_rows_compare_equal_whatever_the_width() {
        assert_eq!(
            Vec::<Word>::from_words(&[1, 0, 0]),
            Vec::<Word>::from_words(&[1])
        );
    }
}
