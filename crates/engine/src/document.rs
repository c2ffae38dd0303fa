//! A stored document: its id, creation time and user fields.

use super::id::DocumentId;
use super::keys::encode_field;
use super::value::{Object, Value};

#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    pub id: DocumentId,
    /// Milliseconds since the epoch, with a fractional part; unique per document.
    pub creation_time: f64,
    pub fields: Object,
}

impl Document {
    /// The document as clients see it: user fields plus `_id` and `_creationTime`.
    pub fn to_value(&self) -> Value {
        self.clone().into_value()
    }

    /// `to_value` for a document no longer needed: its fields move instead of being copied.
    pub fn into_value(self) -> Value {
        let mut object = self.fields;
        object.insert("_id".into(), Value::String(self.id.encode()));
        object.insert("_creationTime".into(), Value::Float64(self.creation_time));
        Value::Object(object)
    }

    /// Rebuilds a document from its client form (the inverse of `to_value`).
    pub(crate) fn from_value(id: DocumentId, value: Value) -> Option<Document> {
        let Value::Object(mut fields) = value else {
            return None;
        };
        fields.remove("_id");
        let creation_time = fields.remove("_creationTime")?.as_f64()?;
        Some(Document { id, creation_time, fields })
    }

    /// The key of this document in an index on `fields`. Like Convex, every index
    /// ends with `_creationTime` and the id, so keys are unique and ties keep
    /// creation order.
    pub fn index_key(&self, fields: &[&str]) -> Vec<u8> {
        let mut key = Vec::with_capacity(64);
        for field in fields {
            encode_field(self.fields.get(*field), &mut key);
        }
        encode_field(Some(&Value::Float64(self.creation_time)), &mut key);
        key.extend_from_slice(&self.id.internal);
        key
    }

    /// The key of this document in its table's `by_id` index.
    pub fn id_key(id: &DocumentId) -> Vec<u8> {
        id.internal.to_vec()
    }

    pub(crate) fn size(&self) -> usize {
        self.fields.iter().map(|(k, v)| k.len() + 1 + v.size()).sum::<usize>() + 2 + 32 + 9
    }
}
