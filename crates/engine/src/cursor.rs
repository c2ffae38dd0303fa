//! Pagination cursors: an index key, signed. A cursor is where a page of one
//! index ended; its tag (HMAC-SHA256 of the index and the key, under the
//! deployment's secret, kept in its storage so every replica and restart knows
//! it) makes a forged, edited or other-index cursor an `InvalidCursor` error
//! instead of a page silently started somewhere else.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::base64;
use super::error::EngineError;
use super::schema::IndexId;

/// Bytes of the tag kept in a cursor: 128 bits, beyond guessing.
const TAG_BYTES: usize = 16;

/// The deployment's secret for signing cursors.
#[derive(Clone)]
pub struct CursorKey([u8; 32]);

impl CursorKey {
    pub(crate) fn new(secret: [u8; 32]) -> CursorKey {
        CursorKey(secret)
    }

    fn tag(&self, index: IndexId, position: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(&index.table.to_le_bytes());
        mac.update(&index.slot.to_le_bytes());
        mac.update(position);
        mac
    }

    /// The cursor of `position`, a key of `index`.
    pub fn encode(&self, index: IndexId, position: &[u8]) -> String {
        let tag = self.tag(index, position).finalize().into_bytes();
        let mut bytes = position.to_vec();
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        base64::encode(&bytes)
    }

    /// The key a cursor of `index` names, if this deployment signed it for that index.
    pub(crate) fn decode(&self, index: IndexId, cursor: &str) -> Result<Vec<u8>, EngineError> {
        let invalid = || EngineError::InvalidCursor(format!("{cursor:?} is not a pagination cursor of this query."));
        let mut bytes = base64::decode(cursor).ok_or_else(invalid)?;
        let split = bytes.len().checked_sub(TAG_BYTES).ok_or_else(invalid)?;
        let tag = bytes.split_off(split);
        // Compared in constant time.
        self.tag(index, &bytes).verify_truncated_left(&tag).map_err(|_| invalid())?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cursor_this_key_signed_for_this_index_decodes() {
        let key = CursorKey::new([7; 32]);
        let index = IndexId { table: 10_001, slot: 1 };
        let cursor = key.encode(index, b"some key");
        assert_eq!(key.decode(index, &cursor).unwrap(), b"some key");
        assert!(key.decode(IndexId { table: 10_001, slot: 2 }, &cursor).is_err(), "another index");
        assert!(CursorKey::new([8; 32]).decode(index, &cursor).is_err(), "another deployment");
        let mut edited = base64::decode(&cursor).unwrap();
        edited[0] ^= 1;
        assert!(key.decode(index, &base64::encode(&edited)).is_err(), "an edited key");
        assert!(key.decode(index, &base64::encode(b"some key")).is_err(), "an unsigned key");
        assert!(key.decode(index, "!!").is_err() && key.decode(index, "").is_err());
        assert_eq!(key.decode(index, &key.encode(index, b"")).unwrap(), b"", "the empty key");
    }
}
