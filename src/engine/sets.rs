//! Read sets and write sets: what a transaction read and what a commit wrote,
//! in index-key terms. A subscription is invalid exactly when a later commit
//! wrote a key inside one of its read intervals.

use super::keys::KeyRange;
use super::schema::IndexId;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadSet {
    intervals: Vec<(IndexId, KeyRange)>,
}

impl ReadSet {
    pub fn record(&mut self, index: IndexId, range: KeyRange) {
        if !range.is_empty()
            && !self
                .intervals
                .iter()
                .any(|(i, r)| *i == index && *r == range)
        {
            self.intervals.push((index, range));
        }
    }

    pub fn intervals(&self) -> &[(IndexId, KeyRange)] {
        &self.intervals
    }

    pub fn len(&self) -> usize {
        self.intervals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.intervals.is_empty()
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
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn extend(&mut self, other: WriteSet) {
        self.entries.extend(other.entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: IndexId = IndexId {
        table: 10_001,
        slot: 1,
    };
    const OTHER: IndexId = IndexId {
        table: 10_001,
        slot: 2,
    };

    fn write(index: IndexId, old: Option<&[u8]>, new: Option<&[u8]>) -> WriteSet {
        WriteSet {
            entries: vec![IndexWrite {
                index,
                old: old.map(<[u8]>::to_vec),
                new: new.map(<[u8]>::to_vec),
            }],
        }
    }

    #[test]
    fn a_write_inside_an_interval_overlaps() {
        let mut reads = ReadSet::default();
        reads.record(
            INDEX,
            KeyRange {
                start: vec![5],
                end: Some(vec![9]),
            },
        );
        assert!(reads.overlaps(&write(INDEX, None, Some(&[5]))));
        assert!(
            reads.overlaps(&write(INDEX, Some(&[8, 200]), Some(&[20]))),
            "moving a key out of the range"
        );
        assert!(
            !reads.overlaps(&write(INDEX, None, Some(&[9]))),
            "end is exclusive"
        );
        assert!(!reads.overlaps(&write(INDEX, Some(&[1]), Some(&[4]))));
        assert!(
            !reads.overlaps(&write(OTHER, None, Some(&[6]))),
            "another index"
        );
    }

    #[test]
    fn empty_and_duplicate_intervals_are_not_recorded() {
        let mut reads = ReadSet::default();
        reads.record(
            INDEX,
            KeyRange {
                start: vec![5],
                end: Some(vec![5]),
            },
        );
        reads.record(INDEX, KeyRange::point(&[1]));
        reads.record(INDEX, KeyRange::point(&[1]));
        assert_eq!(reads.len(), 1);
    }
}
