//! Order-preserving byte encoding of index keys, and key ranges.
//!
//! Comparing two encoded keys bytewise gives Convex's value order:
//! missing < null < int64 < float64 < boolean < string < bytes < array < object.
//! Every encoded value is self-delimiting, so "all keys whose first fields equal
//! these values" is exactly a byte-prefix range.

use super::value::Value;

const MISSING: u8 = 0x10;
const NULL: u8 = 0x20;
const INT64: u8 = 0x30;
const FLOAT64: u8 = 0x40;
const BOOLEAN: u8 = 0x50;
const STRING: u8 = 0x60;
const BYTES: u8 = 0x70;
const ARRAY: u8 = 0x80;
const OBJECT: u8 = 0x90;
const END: u8 = 0x00;

/// Appends the encoding of one indexed field (`None` = the field is missing).
pub fn encode_field(value: Option<&Value>, out: &mut Vec<u8>) {
    match value {
        None => out.push(MISSING),
        Some(value) => encode_value(value, out),
    }
}

fn encode_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(NULL),
        Value::Int64(i) => {
            out.push(INT64);
            out.extend_from_slice(&((*i as u64) ^ (1 << 63)).to_be_bytes());
        }
        Value::Float64(f) => {
            out.push(FLOAT64);
            let bits = f.to_bits();
            let ordered = if bits >> 63 == 1 { !bits } else { bits | (1 << 63) };
            out.extend_from_slice(&ordered.to_be_bytes());
        }
        Value::Boolean(b) => out.extend_from_slice(&[BOOLEAN, u8::from(*b)]),
        Value::String(s) => {
            out.push(STRING);
            encode_bytes(s.as_bytes(), out);
        }
        Value::Bytes(b) => {
            out.push(BYTES);
            encode_bytes(b, out);
        }
        Value::Array(items) => {
            out.push(ARRAY);
            for item in items {
                encode_value(item, out);
            }
            out.push(END);
        }
        Value::Object(object) => {
            out.push(OBJECT);
            for (key, item) in object {
                out.push(0x01);
                encode_bytes(key.as_bytes(), out);
                encode_value(item, out);
            }
            out.push(END);
        }
    }
}

/// 0x00 is escaped as 0x00 0xff and the end is 0x00 0x00, so a string sorts
/// before every longer string it is a prefix of.
fn encode_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    for &b in bytes {
        out.push(b);
        if b == 0 {
            out.push(0xff);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// The smallest byte string greater than every string that starts with `prefix`,
/// or `None` when there is none (the prefix is empty or all 0xff).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// The smallest byte string greater than `key`.
pub(crate) fn key_successor(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0);
    next
}

/// A half-open interval of encoded keys: `start <= key < end` (`end: None` = unbounded).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KeyRange {
    pub start: Vec<u8>,
    pub end: Option<Vec<u8>>,
}

impl KeyRange {
    pub fn point(key: &[u8]) -> KeyRange {
        KeyRange { start: key.to_vec(), end: Some(key_successor(key)) }
    }

    #[cfg(test)]
    pub(crate) fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange { start: prefix.to_vec(), end: prefix_end(prefix) }
    }

    pub(crate) fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|end| key < end)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.end.as_deref().is_some_and(|end| end <= self.start.as_slice())
    }
}

/// A range over an index's fields, as `withIndex(q => q.eq(..).eq(..).gt(..).lte(..))` builds it:
/// equalities on a prefix of the fields, then optional bounds on the next field.
#[derive(Clone, Debug, Default)]
pub struct IndexRange {
    pub(crate) eq: Vec<Value>,
    pub(crate) lower: Option<Bound>,
    pub(crate) upper: Option<Bound>,
}

#[derive(Clone, Debug)]
pub(crate) struct Bound {
    pub(crate) value: Value,
    pub(crate) inclusive: bool,
}

impl IndexRange {
    pub fn eq(mut self, value: impl Into<Value>) -> IndexRange {
        self.eq.push(value.into());
        self
    }

    pub fn gt(mut self, value: impl Into<Value>) -> IndexRange {
        self.lower = Some(Bound { value: value.into(), inclusive: false });
        self
    }

    pub fn gte(mut self, value: impl Into<Value>) -> IndexRange {
        self.lower = Some(Bound { value: value.into(), inclusive: true });
        self
    }

    pub fn lt(mut self, value: impl Into<Value>) -> IndexRange {
        self.upper = Some(Bound { value: value.into(), inclusive: false });
        self
    }

    pub fn lte(mut self, value: impl Into<Value>) -> IndexRange {
        self.upper = Some(Bound { value: value.into(), inclusive: true });
        self
    }

    /// The number of index fields this range constrains.
    pub(crate) fn eq_len(&self) -> usize {
        self.eq.len()
    }

    pub(crate) fn fields_used(&self) -> usize {
        self.eq.len() + usize::from(self.lower.is_some() || self.upper.is_some())
    }

    pub fn to_key_range(&self) -> KeyRange {
        let mut prefix = Vec::new();
        for value in &self.eq {
            encode_value(value, &mut prefix);
        }
        let with = |value: &Value| {
            let mut key = prefix.clone();
            encode_value(value, &mut key);
            key
        };
        let start = match &self.lower {
            None => prefix.clone(),
            Some(Bound { value, inclusive: true }) => with(value),
            // Every key whose field equals `value` starts with `with(value)`, so
            // "greater than" starts past that whole prefix.
            Some(Bound { value, inclusive: false }) => match prefix_end(&with(value)) {
                Some(end) => end,
                None => {
                    return KeyRange { start: Vec::new(), end: Some(Vec::new()) };
                }
            },
        };
        let end = match &self.upper {
            None => prefix_end(&prefix),
            Some(Bound { value, inclusive: true }) => prefix_end(&with(value)),
            Some(Bound { value, inclusive: false }) => Some(with(value)),
        };
        KeyRange { start, end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Object;

    fn key(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(value, &mut out);
        out
    }

    #[test]
    fn byte_order_is_convex_value_order() {
        let ordered = [
            Value::Null,
            Value::Int64(i64::MIN),
            Value::Int64(-1),
            Value::Int64(0),
            Value::Int64(i64::MAX),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(-2.5),
            Value::Float64(-0.0),
            Value::Float64(0.0),
            Value::Float64(1e-300),
            Value::Float64(3.0),
            Value::Float64(f64::INFINITY),
            Value::Boolean(false),
            Value::Boolean(true),
            Value::String("".into()),
            Value::String("a".into()),
            Value::String("a\0".into()),
            Value::String("a\0b".into()),
            Value::String("ab".into()),
            Value::String("b".into()),
            Value::Bytes(vec![]),
            Value::Bytes(vec![0]),
            Value::Array(vec![]),
            Value::Array(vec![Value::Null]),
            Value::Array(vec![Value::Null, Value::Null]),
            Value::Array(vec![Value::Int64(1)]),
            Value::Object(Object::new()),
            Value::Object(Object::from([("a".into(), Value::Null)])),
        ];
        let mut missing = Vec::new();
        encode_field(None, &mut missing);
        assert!(missing < key(&ordered[0]));
        for pair in ordered.windows(2) {
            assert!(key(&pair[0]) < key(&pair[1]), "{} < {}", pair[0], pair[1]);
        }
    }

    #[test]
    fn ranges_select_exactly_the_matching_keys() {
        // Index on [session, time]; keys also carry a unique suffix.
        let entry = |session: &str, time: f64, suffix: u8| {
            let mut k = key(&session.into());
            k.extend(key(&time.into()));
            k.push(suffix);
            k
        };
        let keys: Vec<Vec<u8>> = vec![
            entry("s1", 1.0, 1),
            entry("s1", 2.0, 2),
            entry("s1", 2.0, 3),
            entry("s1", 3.0, 4),
            entry("s2", 1.0, 5),
        ];
        let select = |range: IndexRange| -> Vec<u8> {
            let r = range.to_key_range();
            keys.iter().filter(|k| r.contains(k)).map(|k| *k.last().unwrap()).collect()
        };
        assert_eq!(select(IndexRange::default().eq("s1")), vec![1, 2, 3, 4]);
        assert_eq!(select(IndexRange::default().eq("s1").gt(1.0)), vec![2, 3, 4]);
        assert_eq!(select(IndexRange::default().eq("s1").gte(2.0).lt(3.0)), vec![2, 3]);
        assert_eq!(select(IndexRange::default().eq("s1").lte(2.0)), vec![1, 2, 3]);
        assert_eq!(select(IndexRange::default().eq("s1").eq(2.0)), vec![2, 3]);
        assert_eq!(select(IndexRange::default()), vec![1, 2, 3, 4, 5]);
        assert_eq!(select(IndexRange::default().eq("s3")), Vec::<u8>::new());
    }

    #[test]
    fn point_and_prefix_ranges() {
        let k = vec![1, 2, 0xff];
        assert!(KeyRange::point(&k).contains(&k));
        assert!(!KeyRange::point(&k).contains(&[1, 2, 0xff, 0]));
        assert_eq!(prefix_end(&[1, 0xff, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff]), None);
        assert!(KeyRange::prefix(&[]).contains(&[0xff, 0xff]));
    }
}
