//! Read sets and write sets: what a transaction read and what a commit wrote,
//! in index-key terms. A subscription is invalid exactly when a later commit
//! wrote a key inside one of its read intervals.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::ops::Bound;

use super::keys::KeyRange;
use super::schema::IndexId;
use super::storage::Timestamp;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadSet {
    intervals: Vec<(IndexId, KeyRange)>,
}

impl ReadSet {
    pub fn record(&mut self, index: IndexId, range: KeyRange) {
        if !range.is_empty() && !self.intervals.iter().any(|(i, r)| *i == index && *r == range) {
            self.intervals.push((index, range));
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.intervals.len()
    }

    /// True when some write of `writes` falls inside one of these intervals.
    pub fn overlaps(&self, writes: &WriteSet) -> bool {
        writes.entries.iter().any(|write| {
            self.intervals.iter().any(|(index, range)| {
                *index == write.index
                    && (write.old.as_deref().is_some_and(|k| range.contains(k))
                        || write.new.as_deref().is_some_and(|k| range.contains(k)))
            })
        })
    }
}

/// One index entry changed by a write: its key before (`None` for an insert)
/// and after.
#[derive(Clone, Debug, PartialEq)]
pub struct IndexWrite {
    pub index: IndexId,
    pub old: Option<Vec<u8>>,
    pub new: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteSet {
    pub entries: Vec<IndexWrite>,
}

impl WriteSet {
    pub fn extend(&mut self, other: WriteSet) {
        self.entries.extend(other.entries);
    }

    /// A compact binary form, for storage that passes commits between processes:
    /// per entry the table (u32 LE), the slot (u16 LE), then the old and new keys,
    /// each a presence byte and, if present, a u32 LE length and the bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for write in &self.entries {
            out.extend_from_slice(&write.index.table.to_le_bytes());
            out.extend_from_slice(&write.index.slot.to_le_bytes());
            for key in [&write.old, &write.new] {
                match key {
                    None => out.push(0),
                    Some(key) => {
                        out.push(1);
                        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                        out.extend_from_slice(key);
                    }
                }
            }
        }
        out
    }

    /// The inverse of `encode`; `None` for bytes it did not produce.
    pub fn decode(mut bytes: &[u8]) -> Option<WriteSet> {
        fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
            let (head, rest) = bytes.split_at_checked(n)?;
            *bytes = rest;
            Some(head)
        }
        fn key(bytes: &mut &[u8]) -> Option<Option<Vec<u8>>> {
            match take(bytes, 1)?[0] {
                0 => Some(None),
                1 => {
                    let len = u32::from_le_bytes(take(bytes, 4)?.try_into().ok()?) as usize;
                    Some(Some(take(bytes, len)?.to_vec()))
                }
                _ => None,
            }
        }
        let mut entries = Vec::new();
        while !bytes.is_empty() {
            let table = u32::from_le_bytes(take(&mut bytes, 4)?.try_into().ok()?);
            let slot = u16::from_le_bytes(take(&mut bytes, 2)?.try_into().ok()?);
            let (old, new) = (key(&mut bytes)?, key(&mut bytes)?);
            entries.push(IndexWrite { index: IndexId { table, slot }, old, new });
        }
        Some(WriteSet { entries })
    }
}

/// Many read sets, indexed so that a commit finds the ones it touched without
/// looking at the others: intervals are grouped by index, and within an index
/// kept sorted by start key, so each written key only visits intervals that
/// start at or before it.
/// Per start key, the intervals starting there: (end, owner).
type IntervalsByStart<K> = BTreeMap<Vec<u8>, Vec<(Option<Vec<u8>>, K)>>;

#[derive(Debug)]
pub struct ReadSetIndex<K> {
    by_index: HashMap<IndexId, IntervalsByStart<K>>,
    sets: HashMap<K, ReadSet>,
}

impl<K> Default for ReadSetIndex<K> {
    fn default() -> Self {
        ReadSetIndex { by_index: HashMap::new(), sets: HashMap::new() }
    }
}

impl<K: Clone + Eq + Hash> ReadSetIndex<K> {
    /// Tracks `reads` under `key`, replacing what `key` had.
    pub fn insert(&mut self, key: K, reads: ReadSet) {
        self.remove(&key);
        for (index, range) in &reads.intervals {
            self.by_index
                .entry(*index)
                .or_default()
                .entry(range.start.clone())
                .or_default()
                .push((range.end.clone(), key.clone()));
        }
        self.sets.insert(key, reads);
    }

    pub fn remove(&mut self, key: &K) {
        let Some(reads) = self.sets.remove(key) else {
            return;
        };
        for (index, range) in &reads.intervals {
            if let Some(starts) = self.by_index.get_mut(index) {
                if let Some(entries) = starts.get_mut(&range.start) {
                    entries.retain(|(_, k)| k != key);
                    if entries.is_empty() {
                        starts.remove(&range.start);
                    }
                }
                if starts.is_empty() {
                    self.by_index.remove(index);
                }
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.sets.len()
    }

    /// The keys whose read sets contain a key that `writes` wrote.
    pub fn touched_by(&self, writes: &WriteSet) -> HashSet<K> {
        let mut touched = HashSet::new();
        for write in &writes.entries {
            let Some(starts) = self.by_index.get(&write.index) else {
                continue;
            };
            for key in [&write.old, &write.new].into_iter().flatten() {
                for (_, entries) in starts.range::<[u8], _>((Bound::Unbounded, Bound::Included(key.as_slice()))) {
                    for (end, k) in entries {
                        if end.as_deref().is_none_or(|end| key.as_slice() < end) {
                            touched.insert(k.clone());
                        }
                    }
                }
            }
        }
        touched
    }
}

/// What one group commit changed, for the query cache and subscriptions.
/// `ts` is the timestamp of the snapshot that first shows these writes.
#[derive(Debug)]
pub struct Commit {
    pub ts: Timestamp,
    pub writes: WriteSet,
    /// What changed is unknown (a commit feed found a gap): anything may have.
    pub everything: bool,
}

impl Commit {
    pub(crate) fn new(ts: Timestamp, writes: WriteSet) -> Commit {
        Commit { ts, writes, everything: false }
    }

    /// Whether a result that read `reads` may have changed with this commit.
    pub(crate) fn touches(&self, reads: &ReadSet) -> bool {
        self.everything || reads.overlaps(&self.writes)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn write_sets_round_trip_through_their_binary_form() {
        let index = IndexId { table: 10_003, slot: 2 };
        let set = WriteSet {
            entries: vec![
                IndexWrite { index, old: None, new: Some(vec![1, 2, 3]) },
                IndexWrite { index: IndexId { table: 7, slot: 0 }, old: Some(vec![]), new: None },
                IndexWrite { index, old: Some(vec![0xff; 300]), new: Some(vec![9]) },
            ],
        };
        let bytes = set.encode();
        assert_eq!(WriteSet::decode(&bytes), Some(set));
        assert_eq!(WriteSet::decode(&[]), Some(WriteSet::default()));
        assert_eq!(WriteSet::decode(&bytes[..bytes.len() - 1]), None, "truncated");
        assert_eq!(WriteSet::decode(&[1, 0, 0, 0, 0, 0, 7]), None, "a bad presence byte");
    }

    use super::*;

    const INDEX: IndexId = IndexId { table: 10_001, slot: 1 };
    const OTHER: IndexId = IndexId { table: 10_001, slot: 2 };

    fn write(index: IndexId, old: Option<&[u8]>, new: Option<&[u8]>) -> WriteSet {
        WriteSet { entries: vec![IndexWrite { index, old: old.map(<[u8]>::to_vec), new: new.map(<[u8]>::to_vec) }] }
    }

    #[test]
    fn a_write_inside_an_interval_overlaps() {
        let mut reads = ReadSet::default();
        reads.record(INDEX, KeyRange { start: vec![5], end: Some(vec![9]) });
        assert!(reads.overlaps(&write(INDEX, None, Some(&[5]))));
        assert!(reads.overlaps(&write(INDEX, Some(&[8, 200]), Some(&[20]))), "moving a key out of the range");
        assert!(!reads.overlaps(&write(INDEX, None, Some(&[9]))), "end is exclusive");
        assert!(!reads.overlaps(&write(INDEX, Some(&[1]), Some(&[4]))));
        assert!(!reads.overlaps(&write(OTHER, None, Some(&[6]))), "another index");
    }

    #[test]
    fn empty_and_duplicate_intervals_are_not_recorded() {
        let mut reads = ReadSet::default();
        reads.record(INDEX, KeyRange { start: vec![5], end: Some(vec![5]) });
        reads.record(INDEX, KeyRange::point(&[1]));
        reads.record(INDEX, KeyRange::point(&[1]));
        assert_eq!(reads.len(), 1);
    }

    #[test]
    fn the_index_finds_exactly_the_touched_read_sets() {
        let mut index = ReadSetIndex::default();
        let mut a = ReadSet::default();
        a.record(INDEX, KeyRange { start: vec![5], end: Some(vec![9]) });
        let mut b = ReadSet::default();
        b.record(INDEX, KeyRange { start: vec![1], end: None });
        b.record(OTHER, KeyRange::point(&[7]));
        let mut c = ReadSet::default();
        c.record(OTHER, KeyRange::point(&[8]));
        index.insert("a", a);
        index.insert("b", b);
        index.insert("c", c);
        fn touched(index: &ReadSetIndex<&'static str>, w: WriteSet) -> Vec<&'static str> {
            let mut keys: Vec<_> = index.touched_by(&w).into_iter().collect();
            keys.sort();
            keys
        }
        assert_eq!(touched(&index, write(INDEX, None, Some(&[6]))), ["a", "b"]);
        assert_eq!(touched(&index, write(INDEX, None, Some(&[0]))), Vec::<&str>::new());
        assert_eq!(touched(&index, write(INDEX, Some(&[9]), Some(&[20]))), ["b"]);
        assert_eq!(touched(&index, write(OTHER, None, Some(&[8]))), ["c"]);
        index.remove(&"b");
        assert_eq!(touched(&index, write(INDEX, None, Some(&[6]))), ["a"]);
        assert_eq!(index.len(), 2);
        index.remove(&"a");
        index.remove(&"c");
        assert_eq!((index.len(), index.by_index.len()), (0, 0));
    }
}
