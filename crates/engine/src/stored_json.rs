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
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

use super::base64;
use super::document::Document;
use super::value::{Object, Value};
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

/// A value in `convex_encoded_json`, serialised as `Value::to_json(JsonFormat::Encoded)` is.
enum Encoded<'a> {
    Borrowed(&'a Value),
    Str(&'a str),
}

impl Serialize for Encoded<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let value = match self {
            Encoded::Str(text) => return serializer.serialize_str(text),
            Encoded::Borrowed(value) => *value,
        };
        let special = |serializer: S, key: &str, bytes: &[u8]| {
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(key, &base64::encode(bytes))?;
            map.end()
        };
        match value {
            Value::Null => serializer.serialize_unit(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::String(s) => serializer.serialize_str(s),
            Value::Int64(i) => special(serializer, "$integer", &i.to_le_bytes()),
            Value::Float64(f) if f.is_finite() && !(*f == 0.0 && f.is_sign_negative()) => serializer.serialize_f64(*f),
            Value::Float64(f) => special(serializer, "$float", &f.to_le_bytes()),
            Value::Bytes(b) => special(serializer, "$bytes", b),
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Encoded::Borrowed(item))?;
                }
                seq.end()
            }
            Value::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for (key, value) in object {
                    map.serialize_entry(key, &Encoded::Borrowed(value))?;
                }
                map.end()
            }
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
        let mut object = Object::new();
        let Some(first) = map.next_key::<String>()? else { return Ok(Value::Object(object)) };
        if let Some(kind) = Special::of(&first) {
            let text: String = map.next_value()?;
            if map.next_key::<String>()?.is_some() {
                return Err(de::Error::custom(format!("{first} is not alone in its object")));
            }
            return kind.decode(&text).map_err(de::Error::custom);
        }
        object.insert(first, map.next_value_seed(ValueSeed { depth: self.depth + 1 })?);
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed { depth: self.depth + 1 })?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
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
