//! Property tests of the engine's pure parts and of the storages against each
//! other: read-set overlap against a brute-force check (and the read-set index
//! against both), value and id round trips, the write-set encoding, and
//! index keys' byte order against Convex's value order. (The write buffer against a model is
//! in crates/engine/src/write_buffer.rs.) (Index maintenance under the committer is tests/index_properties.rs at
//! the repository root.) `PROPTEST_CASES` sets the number of cases.

use std::cmp::Ordering;
use std::collections::HashSet;

use jangar_engine::document::Document;
use jangar_engine::id::DocumentId;
use jangar_engine::keys::{KeyRange, encode_field};
use jangar_engine::schema::IndexId;
use jangar_engine::sets::{IndexWrite, ReadSet, ReadSetIndex, WriteSet};
use jangar_engine::stored_json;
use jangar_engine::value::{JsonFormat, Value};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------------
// Read sets against write sets.

/// Short keys over a few byte values, so that generated keys and bounds often meet.
fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(2), Just(0xfe), Just(0xff)], 0..4)
}

fn index() -> impl Strategy<Value = IndexId> {
    (0u16..3).prop_map(|slot| IndexId { table: 10_001, slot })
}

fn interval() -> impl Strategy<Value = (IndexId, KeyRange)> {
    (index(), key(), prop::option::of(key())).prop_map(|(index, start, end)| (index, KeyRange { start, end }))
}

fn write() -> impl Strategy<Value = IndexWrite> {
    (index(), prop::option::of(key()), prop::option::of(key())).prop_map(|(index, old, new)| IndexWrite {
        index,
        old,
        new,
    })
}

/// Byte-string order written out, independent of the slice `Ord` the engine uses.
fn at_most(a: &[u8], b: &[u8]) -> bool {
    for i in 0..a.len().min(b.len()) {
        if a[i] != b[i] {
            return a[i] < b[i];
        }
    }
    a.len() <= b.len()
}

/// Whether some key a write touched (before or after) lies in `[start, end)` of an interval on its index.
fn brute_force_overlap(intervals: &[(IndexId, KeyRange)], writes: &[IndexWrite]) -> bool {
    let inside = |range: &KeyRange, key: &[u8]| {
        at_most(&range.start, key) && range.end.as_deref().is_none_or(|end| !at_most(end, key))
    };
    writes.iter().any(|write| {
        [&write.old, &write.new]
            .into_iter()
            .flatten()
            .any(|key| intervals.iter().any(|(index, range)| *index == write.index && inside(range, key)))
    })
}

fn read_set(intervals: &[(IndexId, KeyRange)]) -> ReadSet {
    let mut reads = ReadSet::default();
    for (index, range) in intervals {
        reads.record(*index, range.clone());
    }
    reads
}

proptest! {
    #[test]
    fn overlaps_agrees_with_a_brute_force_check(
        intervals in prop::collection::vec(interval(), 0..6),
        writes in prop::collection::vec(write(), 0..6),
    ) {
        let set = WriteSet { entries: writes.clone() };
        prop_assert_eq!(read_set(&intervals).overlaps(&set), brute_force_overlap(&intervals, &writes));
    }

    /// The subscription index finds exactly the read sets whose own `overlaps` says a write touched.
    #[test]
    fn the_read_set_index_finds_exactly_the_overlapping_sets(
        sets in prop::collection::vec(prop::collection::vec(interval(), 0..4), 0..6),
        writes in prop::collection::vec(write(), 0..5),
        removed in prop::option::of(0usize..6),
    ) {
        let mut index = ReadSetIndex::default();
        for (n, intervals) in sets.iter().enumerate() {
            index.insert(n, read_set(intervals));
        }
        if let Some(removed) = removed {
            index.remove(&removed);
        }
        let set = WriteSet { entries: writes.clone() };
        let expected: HashSet<usize> = sets
            .iter()
            .enumerate()
            .filter(|(n, intervals)| Some(*n) != removed && brute_force_overlap(intervals, &writes))
            .map(|(n, _)| n)
            .collect();
        prop_assert_eq!(index.touched_by(&set), expected);
    }

    /// Decoding gives back what was encoded; a cut inside an entry is refused, a cut between
    /// entries gives the entries before it.
    #[test]
    fn write_sets_round_trip_and_truncations_are_caught(
        writes in prop::collection::vec(
            (any::<u32>(), any::<u16>(), prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
             prop::option::of(prop::collection::vec(any::<u8>(), 0..40)))
                .prop_map(|(table, slot, old, new)| IndexWrite { index: IndexId { table, slot }, old, new }),
            0..5,
        ),
    ) {
        let set = WriteSet { entries: writes.clone() };
        let bytes = set.encode();
        prop_assert_eq!(WriteSet::decode(&bytes), Some(set.clone()));
        let mut boundaries = vec![0];
        for n in 1..=writes.len() {
            boundaries.push(WriteSet { entries: writes[..n].to_vec() }.encode().len());
        }
        prop_assert_eq!(*boundaries.last().unwrap(), bytes.len());
        for cut in 0..bytes.len() {
            let decoded = WriteSet::decode(&bytes[..cut]);
            match boundaries.iter().position(|&b| b == cut) {
                Some(n) => prop_assert_eq!(decoded, Some(WriteSet { entries: writes[..n].to_vec() })),
                None => prop_assert_eq!(decoded, None, "cut at {}", cut),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Values and ids.

fn float() -> impl Strategy<Value = f64> {
    // Every kind of float, and any bit pattern at all (NaNs with payloads, subnormals, -0).
    prop_oneof![prop::num::f64::ANY, any::<u64>().prop_map(f64::from_bits)]
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        any::<i64>().prop_map(Value::Int64),
        float().prop_map(Value::Float64),
        any::<String>().prop_map(Value::String),
        prop::collection::vec(any::<u8>(), 0..24).prop_map(Value::Bytes),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_ .-]{0,10}", inner, 0..5).prop_map(Value::Object),
        ]
    })
}

/// Equality that tells floats apart by their bits (NaN is itself, -0 is not 0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Float64(x), Value::Float64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((kx, x), (ky, y))| kx == ky && same(x, y))
        }
        _ => a == b,
    }
}

proptest! {
    /// `convex_encoded_json` carries every value exactly, through its text too (as documents are stored).
    #[test]
    fn values_round_trip_through_encoded_json(value in value()) {
        let json = value.to_json(JsonFormat::Encoded);
        let back = Value::from_json(&json).unwrap();
        prop_assert!(same(&back, &value), "{:?} came back as {:?}", value, back);
        let text = json.to_string();
        let reparsed = Value::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        prop_assert!(same(&reparsed, &value), "{:?} came back from {} as {:?}", value, text, reparsed);
    }

    /// The text written straight from a value is the text of its `serde_json` tree, in both formats.
    #[test]
    fn values_write_the_text_of_their_json_tree(value in value()) {
        for format in [JsonFormat::Encoded, JsonFormat::Clean] {
            prop_assert_eq!(value.to_json_text(format), value.to_json(format).to_string());
        }
    }

    /// A document's stored text, written and read without a JSON tree, is exactly the text of
    /// `to_json` and reads back as `from_json` reads it.
    #[test]
    fn documents_are_stored_as_their_encoded_json(
        fields in prop::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_ .-]{0,10}", value(), 0..6),
        table in 1..=u32::MAX,
        internal in any::<[u8; 16]>(),
        creation_time in float(),
    ) {
        let document = Document { id: DocumentId { table, internal }, creation_time, fields };
        let text = stored_json::write_document(&document);
        let through_a_tree = document.to_value().to_json(JsonFormat::Encoded);
        prop_assert_eq!(&text, &through_a_tree.to_string());
        let back = stored_json::read_value(&text).unwrap();
        prop_assert!(same(&back, &Value::from_json(&through_a_tree).unwrap()), "{} read as {:?}", text, back);
    }

    #[test]
    fn ids_round_trip_through_their_text(table in 1..=u32::MAX, internal in any::<[u8; 16]>()) {
        let id = DocumentId { table, internal };
        let text = id.encode();
        prop_assert_eq!(DocumentId::decode(&text), Ok(id));
    }

    /// Any one changed character of an id's text is refused: by the alphabet, the re-encoding
    /// check, or the footer (Fletcher-16 catches every change confined to two adjacent bytes, and
    /// a base32 character spans at most two).
    #[test]
    fn a_changed_id_is_refused(
        table in 1..=u32::MAX,
        internal in any::<[u8; 16]>(),
        position in any::<prop::sample::Index>(),
        replacement in prop::sample::select(b"0123456789abcdefghjkmnpqrstvwxyzIL!".to_vec()),
    ) {
        let id = DocumentId { table, internal };
        let text = id.encode();
        let at = position.index(text.len());
        let mut changed = text.clone().into_bytes();
        changed[at] = replacement;
        let changed = String::from_utf8(changed).unwrap();
        if changed == text {
            prop_assert_eq!(DocumentId::decode(&changed), Ok(id));
        } else {
            prop_assert!(DocumentId::decode(&changed).is_err(), "{} read as an id, changed from {}", changed, text);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Index keys against Convex's value order.

/// Values from small domains, so that generated pairs are often equal, share prefixes
/// (strings and arrays one of which starts the other, NULs inside strings) or tie on a
/// first field.
fn comparable_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Boolean),
        prop_oneof![-3i64..3, Just(i64::MIN), Just(i64::MAX)].prop_map(Value::Int64),
        prop_oneof![
            prop::sample::select(vec![-0.0, 0.0, f64::NAN, -f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1.0, -1.0]),
            float(),
        ]
        .prop_map(Value::Float64),
        "[a\u{0}b]{0,3}".prop_map(Value::String),
        prop::collection::vec(prop_oneof![Just(0u8), Just(1), Just(255)], 0..3).prop_map(Value::Bytes),
    ]
}

fn comparable() -> impl Strategy<Value = Value> {
    comparable_leaf().prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[ab]{1,2}", inner, 0..3).prop_map(Value::Object),
        ]
    })
}

/// Convex's order of values, written from its definition rather than from the encoding:
/// by type (null < int64 < float64 < boolean < string < bytes < array < object), then
/// numbers by value (floats in their total order: -0 before 0, NaNs at the ends by sign),
/// strings and bytes bytewise, arrays element by element, objects field by field (name,
/// then value), a sequence before every longer one it starts.
fn convex_order(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Null => 0,
            Value::Int64(_) => 1,
            Value::Float64(_) => 2,
            Value::Boolean(_) => 3,
            Value::String(_) => 4,
            Value::Bytes(_) => 5,
            Value::Array(_) => 6,
            Value::Object(_) => 7,
        }
    }
    match (a, b) {
        (Value::Int64(x), Value::Int64(y)) => x.cmp(y),
        (Value::Float64(x), Value::Float64(y)) => x.total_cmp(y),
        (Value::Boolean(x), Value::Boolean(y)) => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            x.iter().zip(y).map(|(x, y)| convex_order(x, y)).find(|o| o.is_ne()).unwrap_or(x.len().cmp(&y.len()))
        }
        (Value::Object(x), Value::Object(y)) => x
            .iter()
            .zip(y)
            .map(|((kx, x), (ky, y))| kx.as_bytes().cmp(ky.as_bytes()).then_with(|| convex_order(x, y)))
            .find(|o| o.is_ne())
            .unwrap_or(x.len().cmp(&y.len())),
        _ => rank(a).cmp(&rank(b)),
    }
}

fn index_key(fields: &[Option<&Value>]) -> Vec<u8> {
    let mut key = Vec::new();
    for field in fields {
        encode_field(*field, &mut key);
    }
    key
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn leaf_keys_sort_in_convex_value_order(a in comparable_leaf(), b in comparable_leaf()) {
        prop_assert_eq!(index_key(&[Some(&a)]).cmp(&index_key(&[Some(&b)])), convex_order(&a, &b), "{} vs {}", a, b);
    }

    #[test]
    fn index_keys_sort_in_convex_value_order(a in comparable(), b in comparable()) {
        prop_assert_eq!(index_key(&[Some(&a)]).cmp(&index_key(&[Some(&b)])), convex_order(&a, &b), "{} vs {}", a, b);
    }

    /// Keys of several fields sort by the first field, then the next: no encoded field runs
    /// into the one after it; a missing field sorts before every value.
    #[test]
    fn compound_keys_sort_field_by_field(
        a in prop::option::of(comparable()), x in comparable(),
        b in prop::option::of(comparable()), y in comparable(),
    ) {
        let first = match (&a, &b) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(a), Some(b)) => convex_order(a, b),
        };
        let expected = first.then_with(|| convex_order(&x, &y));
        prop_assert_eq!(index_key(&[a.as_ref(), Some(&x)]).cmp(&index_key(&[b.as_ref(), Some(&y)])), expected);
    }
}
