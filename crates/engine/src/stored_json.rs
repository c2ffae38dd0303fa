//! A document's stored text (its `convex_encoded_json`, system fields included), written and read
//! straight from and into [`Value`]s. Going through a `serde_json::Value` tree, as the API's
//! decoding does, builds and drops a second copy of every string and map on each read and write,
//! and a list of fifty documents is mostly that. The text is the same either way: the property
//! tests hold both directions to `Value::to_json` and `Value::from_json`.
//!
//! Reading trusts what it reads no more than it must: stored documents were validated when
//! written, so field names and sizes are not checked again, but anything that is not a value of
//! this encoding is an error.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};

use super::base64;
use super::document::Document;
use super::value::{JsonFormat, JsonText, Object, Value};
use crate::knobs::MAX_NESTING;

/// A document's stored text.
pub fn write_document(document: &Document) -> String {
    serde_json::to_string(&StoredDocument(document)).expect("a value always serialises")
}

/// A value read back from stored text.
pub fn read_value(text: &str) -> Result<Value, String> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = ValueSeed { depth: 0 }.deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

struct StoredDocument<'a>(&'a Document);

impl Serialize for StoredDocument<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let document = self.0;
        let id = document.id.encode();
        let creation_time = Value::Float64(document.creation_time);
        // The fields in key order with the two system fields in their places, as `to_value` sorts them.
        let system: [(&str, Encoded<'_>); 2] =
            [("_creationTime", Encoded::Borrowed(&creation_time)), ("_id", Encoded::Str(&id))];
        let mut system = system.into_iter().peekable();
        let mut map = serializer.serialize_map(Some(document.fields.len() + 2))?;
        for (key, value) in &document.fields {
            while let Some((name, _)) = system.peek()
                && *name < key.as_str()
            {
                let (name, value) = system.next().expect("peeked");
                map.serialize_entry(name, &value)?;
            }
            map.serialize_entry(key, &Encoded::Borrowed(value))?;
        }
        for (name, value) in system {
            map.serialize_entry(name, &value)?;
        }
        map.end()
    }
}

/// One of a stored document's fields: a value, or the id's text.
enum Encoded<'a> {
    Borrowed(&'a Value),
    Str(&'a str),
}

impl Serialize for Encoded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Encoded::Str(text) => serializer.serialize_str(text),
            Encoded::Borrowed(value) => JsonText(value, JsonFormat::Encoded).serialize(serializer),
        }
    }
}

/// Reads one value at `depth`.
struct ValueSeed {
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.depth > MAX_NESTING + 1 {
            return Err(de::Error::custom("a stored value is nested deeper than any value may be"));
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value in convex_encoded_json")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Boolean(b))
    }

    // Every bare number is a float64, as `Value::from_json` reads it.
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Float64(n as f64))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Float64(n as f64))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::Float64(n))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element_seed(ValueSeed { depth: self.depth + 1 })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let Some(first) = map.next_key::<String>()? else { return Ok(Value::Object(Object::new())) };
        if let Some(kind) = Special::of(&first) {
            let text: String = map.next_value()?;
            if map.next_key::<String>()?.is_some() {
                return Err(de::Error::custom(format!("{first} is not alone in its object")));
            }
            return kind.decode(&text).map_err(de::Error::custom);
        }
        // Stored fields are in key order, which the map builds from in one pass where inserting
        // them one by one would search it for each.
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        fields.push((first, map.next_value_seed(ValueSeed { depth: self.depth + 1 })?));
        while let Some(key) = map.next_key::<String>()? {
            fields.push((key, map.next_value_seed(ValueSeed { depth: self.depth + 1 })?));
        }
        Ok(Value::Object(Object::from_iter(fields)))
    }
}

/// The one-key objects of the encoding.
enum Special {
    Integer,
    Float,
    Bytes,
}

impl Special {
    fn of(key: &str) -> Option<Special> {
        match key {
            "$integer" => Some(Special::Integer),
            "$float" => Some(Special::Float),
            "$bytes" => Some(Special::Bytes),
            _ => None,
        }
    }

    fn decode(self, text: &str) -> Result<Value, String> {
        let bytes = base64::decode(text).ok_or("malformed base64 in a stored value")?;
        let eight = || -> Result<[u8; 8], String> {
            bytes.clone().try_into().map_err(|_| "a stored number is not 8 bytes".to_owned())
        };
        Ok(match self {
            Special::Integer => Value::Int64(i64::from_le_bytes(eight()?)),
            Special::Float => Value::Float64(f64::from_le_bytes(eight()?)),
            Special::Bytes => Value::Bytes(bytes),
        })
    }
}
