//! Convex-format document ids: VInt(table number) ++ 16-byte internal id ++
//! 2-byte footer (fletcher16 of the preceding bytes XOR version 0, little-endian),
//! written in lowercase Crockford base32 without padding.

use std::fmt;

pub type TableNumber = u32;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const VERSION: u16 = 0;
const MIN_TEXT_LEN: usize = 31;
const MAX_TEXT_LEN: usize = 37;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DocumentId {
    pub table: TableNumber,
    pub internal: [u8; 16],
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{0:?} is not a valid document id")]
    Malformed(String),
    #[error("{id:?} is an id for another table, not for table {expected:?}")]
    WrongTable { id: String, expected: String },
}

impl DocumentId {
    /// A new id: the millisecond it is made (six bytes, big-endian), eight random bytes, then
    /// the day number, where Convex's ids carry it (tests/js/e2e.test.mjs reads it as a client
    /// could). Stored documents are keyed by id, so a table's new documents land at the
    /// end of its B-tree, a group's inserts on a page or two instead of one page each (with fully
    /// random ids each insert dirtied, and wrote to the log, a page of its own).
    pub fn generate(table: TableNumber, unix_ms: u64) -> DocumentId {
        let mut internal = [0u8; 16];
        internal[..6].copy_from_slice(&unix_ms.to_be_bytes()[2..]);
        getrandom::fill(&mut internal[6..14]).expect("the OS random source works");
        let days = (unix_ms / 86_400_000) as u16;
        internal[14..].copy_from_slice(&days.to_be_bytes());
        DocumentId { table, internal }
    }

    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(23);
        let mut n = self.table;
        loop {
            let low = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                bytes.push(low);
                break;
            }
            bytes.push(low | 0x80);
        }
        bytes.extend_from_slice(&self.internal);
        let footer = fletcher16(&bytes) ^ VERSION;
        bytes.extend_from_slice(&footer.to_le_bytes());
        base32_encode(&bytes)
    }

    pub fn decode(text: &str) -> Result<DocumentId, IdError> {
        let malformed = || IdError::Malformed(text.chars().take(64).collect());
        if !(MIN_TEXT_LEN..=MAX_TEXT_LEN).contains(&text.len()) {
            return Err(malformed());
        }
        let bytes = base32_decode(text).ok_or_else(malformed)?;
        let (body, footer) = bytes.split_at(bytes.len() - 2);
        if u16::from_le_bytes([footer[0], footer[1]]) != fletcher16(body) ^ VERSION {
            return Err(malformed());
        }
        let mut table: u64 = 0;
        let mut pos = 0;
        loop {
            let byte = *body.get(pos).ok_or_else(malformed)?;
            table |= u64::from(byte & 0x7f) << (7 * pos);
            pos += 1;
            if byte & 0x80 == 0 {
                break;
            }
            if pos >= 5 {
                return Err(malformed());
            }
        }
        let table = TableNumber::try_from(table).map_err(|_| malformed())?;
        let internal: [u8; 16] = body[pos..].try_into().map_err(|_| malformed())?;
        // Only the shortest VInt form round-trips; table number 0 is reserved.
        let id = DocumentId { table, internal };
        if table == 0 || id.encode() != text {
            return Err(malformed());
        }
        Ok(id)
    }
}

impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocumentId({})", self.encode())
    }
}

/// Fletcher-16 with sums modulo 256, as Convex computes it.
fn fletcher16(bytes: &[u8]) -> u16 {
    let (mut sum1, mut sum2) = (0u8, 0u8);
    for &b in bytes {
        sum1 = sum1.wrapping_add(b);
        sum2 = sum2.wrapping_add(sum1);
    }
    (u16::from(sum2) << 8) | u16::from(sum1)
}

fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity((bytes.len() * 8).div_ceil(5));
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let digit = ALPHABET.iter().position(|&a| a == c)? as u32;
        buffer = (buffer << 5) | digit;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((buffer >> bits) as u8);
        }
        buffer &= (1 << bits) - 1;
    }
    // Leftover bits are padding and must be zero.
    (buffer == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_for_small_and_large_tables() {
        for table in [1, 127, 128, 10_001, 16_383, 16_384, u32::MAX] {
            let id = DocumentId::generate(table, 1_700_000_000_000);
            let text = id.encode();
            assert!((MIN_TEXT_LEN..=MAX_TEXT_LEN).contains(&text.len()), "{text}");
            assert_eq!(DocumentId::decode(&text).unwrap(), id);
        }
    }

    #[test]
    fn matches_convex_test_vectors() {
        let mut internal = [0u8; 16];
        internal[0] = 251;
        for i in 1..16 {
            internal[i] = (u32::from(internal[i - 1]) * 251 % 256) as u8;
        }
        let id = DocumentId { table: 1017, internal };
        assert_eq!(id.encode(), "z43zp6c3e75gkmz1kfwj6mbbx5sw281h");
        assert_eq!(DocumentId::decode("z43zp6c3e75gkmz1kfwj6mbbx5sw281h").unwrap(), id);
        // A valid checksum but not the canonical encoding.
        assert!(DocumentId::decode("mz1xn7tymdnktmmzqy5xxhn7tjs2nkkfmtjjr").is_err());
    }

    #[test]
    fn user_table_ids_have_the_typical_length() {
        assert_eq!(DocumentId::generate(10_001, 0).encode().len(), 32);
    }

    #[test]
    fn rejects_a_bad_checksum() {
        let text = DocumentId::generate(10_001, 0).encode();
        let mut chars: Vec<char> = text.chars().collect();
        chars[5] = if chars[5] == 'a' { 'b' } else { 'a' };
        let corrupted: String = chars.into_iter().collect();
        assert!(matches!(DocumentId::decode(&corrupted), Err(IdError::Malformed(_))));
    }

    #[test]
    fn rejects_malformed_text() {
        for text in ["", "nope", "UPPERCASE0000000000000000000000000", &"u".repeat(32), &"0".repeat(40)] {
            assert!(DocumentId::decode(text).is_err(), "{text}");
        }
    }

    #[test]
    fn ids_are_random() {
        assert_ne!(DocumentId::generate(10_001, 0), DocumentId::generate(10_001, 0));
    }

    /// Issue 16: ids made later sort after earlier ones (what keeps a table's inserts at the end
    /// of its B-tree), and still round-trip through their text.
    #[test]
    fn ids_made_later_sort_after() {
        let now = 1_764_000_000_000;
        for later in [1, 2, 1_000, 86_400_000] {
            let (first, second) = (DocumentId::generate(10_001, now), DocumentId::generate(10_001, now + later));
            assert!(first.internal < second.internal, "{later} ms later");
            assert_eq!(DocumentId::decode(&second.encode()), Ok(second));
        }
    }
}
