//! Compact lists of indices: "0-99,120,130-131" (inclusive ranges, in order).
//!
//! Used for the sequences a train-step covers and the rows of a data spec, so
//! receipts stay small and humans can read them.

use std::fmt;

#[derive(Debug, thiserror::Error)]
#[error("invalid index list '{text}': {why}")]
pub struct ParseError {
    text: String,
    why: String,
}

/// Ordered half-open ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeList(pub Vec<(u64, u64)>);

impl RangeList {
    /// All indices in `0..n`.
    pub fn all(n: u64) -> Self {
        if n == 0 {
            Self(vec![])
        } else {
            Self(vec![(0, n)])
        }
    }

    /// Builds a list from indices in order, merging consecutive runs.
    pub fn from_indices(idx: impl IntoIterator<Item = u64>) -> Self {
        let mut v: Vec<(u64, u64)> = Vec::new();
        for i in idx {
            match v.last_mut() {
                Some((_, e)) if *e == i => *e += 1,
                _ => v.push((i, i + 1)),
            }
        }
        Self(v)
    }

    pub fn len(&self) -> u64 {
        self.0.iter().map(|(s, e)| e - s).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.iter().flat_map(|&(s, e)| s..e)
    }

    pub fn max(&self) -> Option<u64> {
        self.0.iter().map(|&(_, e)| e - 1).max()
    }

    /// True if some index appears twice.
    pub fn has_duplicates(&self) -> bool {
        let mut v = self.0.clone();
        v.sort();
        v.windows(2).any(|w| w[1].0 < w[0].1)
    }

    /// True if no index is in both lists.
    pub fn disjoint(&self, other: &RangeList) -> bool {
        self.0
            .iter()
            .all(|&(a, b)| other.0.iter().all(|&(c, d)| b <= c || d <= a))
    }
}

impl fmt::Display for RangeList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(s, e)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if e - s == 1 {
                write!(f, "{s}")?;
            } else {
                write!(f, "{}-{}", s, e - 1)?;
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for RangeList {
    type Err = ParseError;
    fn from_str(text: &str) -> Result<Self, ParseError> {
        let err = |why: &str| ParseError {
            text: text.into(),
            why: why.into(),
        };
        let mut v = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (s, e) = match part.split_once('-') {
                Some((a, b)) => (a.trim().parse::<u64>(), b.trim().parse::<u64>()),
                None => (part.parse(), part.parse()),
            };
            let (s, e) = (
                s.map_err(|_| err("not a number"))?,
                e.map_err(|_| err("not a number"))?,
            );
            if e < s {
                return Err(err("a range ends before it starts"));
            }
            v.push((s, e + 1));
        }
        Ok(Self(v))
    }
}

impl serde::Serialize for RangeList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for RangeList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_print_round_trip() {
        let r: RangeList = "0-3, 7,9-10".parse().unwrap();
        assert_eq!(r.iter().collect::<Vec<_>>(), [0, 1, 2, 3, 7, 9, 10]);
        assert_eq!(r.to_string(), "0-3,7,9-10");
        assert_eq!(
            RangeList::from_indices([5, 6, 7, 1, 2]).to_string(),
            "5-7,1-2"
        );
        assert!("3-1".parse::<RangeList>().is_err());
        assert!("x".parse::<RangeList>().is_err());
        assert!("0-3,2".parse::<RangeList>().unwrap().has_duplicates());
        assert!(RangeList::all(5).disjoint(&"5-9".parse().unwrap()));
        assert!(!RangeList::all(6).disjoint(&"5-9".parse().unwrap()));
    }
}
