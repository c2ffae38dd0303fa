//! Convex values and their two JSON encodings.
//!
//! `convex_encoded_json` is invertible: int64, bytes and the floats JSON cannot
//! carry travel as one-key objects (`$integer`, `$bytes`, `$float`). The clean
//! `json` format is for display: int64 as a decimal string, special floats as
//! strings, bytes as plain base64.

use crate::knobs::{MAX_ARRAY_LEN, MAX_FIELD_NAME_LEN, MAX_NESTING, MAX_OBJECT_FIELDS};
use std::collections::BTreeMap;
use std::fmt;

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::Value as Json;

use super::base64;

pub type Object = BTreeMap<String, Value>;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int64(i64),
    Float64(f64),
    Boolean(bool),
    String(String),
    Bytes(Vec<u8>),
    Array(Vec<Value>),
    Object(Object),
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(message.into()))
}

/// The output formats of the HTTP API.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonFormat {
    Encoded,
    Clean,
}

impl JsonFormat {
    /// Parses the `format` field of a request; absent means clean JSON.
    pub fn parse(format: Option<&str>) -> Option<JsonFormat> {
        match format {
            None | Some("json") | Some("convex_clean_json") => Some(JsonFormat::Clean),
            Some("convex_encoded_json") | Some("convex_json") => Some(JsonFormat::Encoded),
            Some(_) => None,
        }
    }
}

/// Checks a field name of a user object (`$`-prefixed and control characters are reserved).
pub(crate) fn check_field_name(name: &str) -> Result<(), ValueError> {
    if name.starts_with('$') {
        return err(format!("Field name {name:?} starts with a '$', which is reserved."));
    }
    if name.len() > MAX_FIELD_NAME_LEN {
        return err(format!("Field name {:?}... is longer than {MAX_FIELD_NAME_LEN} characters.", &name[..32]));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii() || c.is_ascii_control()) {
        return err(format!("Field name {name:?} has invalid character {c:?}: field names are non-control ASCII."));
    }
    Ok(())
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float64(f) => Some(*f),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object> {
        match self {
            Value::Object(o) => Some(o),
            _ => None,
        }
    }

    /// Decodes `convex_encoded_json`. Every bare JSON number is a float64.
    pub fn from_json(json: &Json) -> Result<Value, ValueError> {
        Self::from_json_at_depth(json, 0)
    }

    fn from_json_at_depth(json: &Json, depth: usize) -> Result<Value, ValueError> {
        if depth > MAX_NESTING {
            return err(format!("Value is nested more than {MAX_NESTING} levels deep."));
        }
        Ok(match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Boolean(*b),
            Json::Number(n) => match n.as_f64() {
                Some(f) => Value::Float64(f),
                None => return err(format!("Number {n} is not a float64.")),
            },
            Json::String(s) => Value::String(s.clone()),
            Json::Array(items) => {
                if items.len() > MAX_ARRAY_LEN {
                    return err(format!("Array has {} elements; at most {MAX_ARRAY_LEN} are allowed.", items.len()));
                }
                Value::Array(items.iter().map(|v| Self::from_json_at_depth(v, depth + 1)).collect::<Result<_, _>>()?)
            }
            Json::Object(map) => {
                if map.len() == 1 {
                    let (key, inner) = map.iter().next().expect("one entry");
                    if let Some(special) = Self::from_special(key, inner)? {
                        return Ok(special);
                    }
                }
                if map.len() > MAX_OBJECT_FIELDS {
                    return err(format!("Object has {} fields; at most {MAX_OBJECT_FIELDS} are allowed.", map.len()));
                }
                let mut object = Object::new();
                for (key, value) in map {
                    check_field_name(key)?;
                    object.insert(key.clone(), Self::from_json_at_depth(value, depth + 1)?);
                }
                Value::Object(object)
            }
        })
    }

    fn from_special(key: &str, inner: &Json) -> Result<Option<Value>, ValueError> {
        let decode8 = |what: &str| -> Result<[u8; 8], ValueError> {
            let text = inner.as_str().ok_or_else(|| ValueError(format!("{what} must hold a base64 string.")))?;
            let bytes = base64::decode(text).ok_or_else(|| ValueError(format!("{what} holds malformed base64.")))?;
            bytes.try_into().map_err(|_| ValueError(format!("{what} must hold exactly 8 bytes.")))
        };
        Ok(Some(match key {
            "$integer" => Value::Int64(i64::from_le_bytes(decode8("$integer")?)),
            "$float" => {
                let f = f64::from_le_bytes(decode8("$float")?);
                if f.is_finite() && !(f == 0.0 && f.is_sign_negative()) {
                    return err(
                        "$float is only for NaN, Infinity, -Infinity and -0; send other numbers as JSON numbers.",
                    );
                }
                Value::Float64(f)
            }
            "$bytes" => {
                let text = inner.as_str().ok_or_else(|| ValueError("$bytes must hold a base64 string.".into()))?;
                Value::Bytes(base64::decode(text).ok_or_else(|| ValueError("$bytes holds malformed base64.".into()))?)
            }
            _ => return Ok(None),
        }))
    }

    /// The value as a `serde_json` tree in `format` (for answers built around it).
    pub fn to_json(&self, format: JsonFormat) -> Json {
        serde_json::to_value(JsonText(self, format)).expect("a value always serialises")
    }

    /// The text of `to_json(format)`, written straight from the value: an answer of fifty
    /// documents would otherwise be built once more as a tree only to be printed.
    pub fn to_json_text(&self, format: JsonFormat) -> String {
        serde_json::to_string(&JsonText(self, format)).expect("a value always serialises")
    }

    /// Approximate encoded size in bytes, used for Convex's size limits.
    pub fn size(&self) -> usize {
        match self {
            Value::Null | Value::Boolean(_) => 1,
            Value::Int64(_) | Value::Float64(_) => 9,
            Value::String(s) => s.len() + 2,
            Value::Bytes(b) => b.len() + 2,
            Value::Array(items) => 2 + items.iter().map(Value::size).sum::<usize>(),
            Value::Object(object) => 2 + object.iter().map(|(k, v)| k.len() + 1 + v.size()).sum::<usize>(),
        }
    }

    /// Depth of nested arrays and objects (a scalar is 0).
    pub(crate) fn nesting(&self) -> usize {
        match self {
            Value::Array(items) => 1 + items.iter().map(Value::nesting).max().unwrap_or(0),
            Value::Object(object) => 1 + object.values().map(Value::nesting).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// A value serialised in `format`: the one definition of both encodings, for text and for trees.
pub struct JsonText<'a>(pub &'a Value, pub JsonFormat);

impl Serialize for JsonText<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let JsonText(value, format) = *self;
        let special = |serializer: S, key: &str, text: &str| {
            let mut map = serializer.serialize_map(Some(1))?;
            map.serialize_entry(key, text)?;
            map.end()
        };
        match value {
            Value::Null => serializer.serialize_unit(),
            Value::Boolean(b) => serializer.serialize_bool(*b),
            Value::String(s) => serializer.serialize_str(s),
            Value::Int64(i) => match format {
                JsonFormat::Encoded => special(serializer, "$integer", &base64::encode(&i.to_le_bytes())),
                JsonFormat::Clean => serializer.collect_str(i),
            },
            Value::Float64(f) if f.is_finite() && !(*f == 0.0 && f.is_sign_negative()) => serializer.serialize_f64(*f),
            Value::Float64(f) => match format {
                JsonFormat::Encoded => special(serializer, "$float", &base64::encode(&f.to_le_bytes())),
                JsonFormat::Clean if f.is_nan() => serializer.serialize_str("NaN"),
                JsonFormat::Clean if f.is_infinite() => {
                    serializer.serialize_str(if *f > 0.0 { "Infinity" } else { "-Infinity" })
                }
                JsonFormat::Clean => serializer.serialize_f64(*f),
            },
            Value::Bytes(b) => match format {
                JsonFormat::Encoded => special(serializer, "$bytes", &base64::encode(b)),
                JsonFormat::Clean => serializer.serialize_str(&base64::encode(b)),
            },
            Value::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&JsonText(item, format))?;
                }
                seq.end()
            }
            Value::Object(object) => {
                let mut map = serializer.serialize_map(Some(object.len()))?;
                for (key, value) in object {
                    map.serialize_entry(key, &JsonText(value, format))?;
                }
                map.end()
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json_text(JsonFormat::Encoded))
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::String(s)
    }
}

impl From<f64> for Value {
    fn from(f: f64) -> Value {
        Value::Float64(f)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Value {
        Value::Boolean(b)
    }
}

impl From<Object> for Value {
    fn from(o: Object) -> Value {
        Value::Object(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(value: Value) {
        let json = value.to_json(JsonFormat::Encoded);
        let back = Value::from_json(&json).unwrap();
        match (&value, &back) {
            (Value::Float64(a), Value::Float64(b)) => assert_eq!(a.to_bits(), b.to_bits()),
            _ => assert_eq!(value, back),
        }
    }

    #[test]
    fn encoded_json_round_trips() {
        for v in [
            Value::Null,
            Value::Int64(1),
            Value::Int64(i64::MIN),
            Value::Float64(1.5),
            Value::Float64(f64::NAN),
            Value::Float64(f64::INFINITY),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(-0.0),
            Value::Boolean(true),
            Value::String("héllo".into()),
            Value::Bytes(vec![0, 1, 255]),
            Value::Array(vec![Value::Null, Value::Int64(-3)]),
            Value::Object(Object::from([("a".into(), Value::Bytes(vec![9]))])),
        ] {
            round_trip(v);
        }
    }

    /// Through text, as storage keeps documents and clients send arguments.
    fn text_round_trip(f: f64) -> f64 {
        let text = Value::Float64(f).to_json(JsonFormat::Encoded).to_string();
        let parsed: Json = serde_json::from_str(&text).unwrap();
        Value::from_json(&parsed).unwrap().as_f64().unwrap()
    }

    #[test]
    fn floats_survive_json_text_exactly() {
        // A `_creationTime` that a best-effort parser reads one ulp off: its index key then
        // differs from the one written at insert (issue 10's stale index entries).
        assert_eq!(text_round_trip(1796169278123.8687).to_bits(), 1796169278123.8687f64.to_bits());
        // Creation times as the committer hands them out (commit ns / 1e6, then the next float up),
        // and arbitrary bit patterns.
        let mut ts: u64 = 1_796_169_278_123_456_789;
        let mut bits: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            ts += 137_123;
            let creation_time = ts as f64 / 1e6;
            for f in [creation_time, creation_time.next_up(), creation_time.next_up().next_up()] {
                assert_eq!(text_round_trip(f).to_bits(), f.to_bits(), "{f:?}");
            }
            bits ^= bits << 13;
            bits ^= bits >> 7;
            bits ^= bits << 17;
            let f = f64::from_bits(bits);
            if f.is_finite() {
                assert_eq!(text_round_trip(f).to_bits(), f.to_bits(), "{f:?}");
            }
        }
    }

    #[test]
    fn int64_uses_the_convex_form() {
        assert_eq!(Value::Int64(1).to_json(JsonFormat::Encoded), json!({"$integer": "AQAAAAAAAAA="}));
        assert_eq!(Value::Int64(-2).to_json(JsonFormat::Clean), json!("-2"));
        assert_eq!(Value::from_json(&json!({"$integer": "AQAAAAAAAAA="})).unwrap(), Value::Int64(1));
    }

    #[test]
    fn bare_numbers_are_floats() {
        assert_eq!(Value::from_json(&json!(3)).unwrap(), Value::Float64(3.0));
    }

    #[test]
    fn clean_json_spells_special_floats() {
        assert_eq!(Value::Float64(f64::NAN).to_json(JsonFormat::Clean), json!("NaN"));
        assert_eq!(Value::Float64(f64::NEG_INFINITY).to_json(JsonFormat::Clean), json!("-Infinity"));
        assert_eq!(Value::Bytes(b"fo".to_vec()).to_json(JsonFormat::Clean), json!("Zm8="));
    }

    #[test]
    fn rejects_malformed_special_forms() {
        assert!(Value::from_json(&json!({"$float": base64::encode(&1.5f64.to_le_bytes())})).is_err());
        assert!(Value::from_json(&json!({"$integer": "AQ=="})).is_err());
        assert!(Value::from_json(&json!({"$bytes": 5})).is_err());
        assert!(Value::from_json(&json!({"$other": 1})).is_err());
        assert!(Value::from_json(&json!({"a": 1, "$b": 2})).is_err());
        assert!(Value::from_json(&json!({"bad\u{7}": 1})).is_err());
    }

    #[test]
    fn limits_nesting_and_array_length() {
        let mut deep = json!(1);
        for _ in 0..17 {
            deep = json!([deep]);
        }
        assert!(Value::from_json(&deep).is_err());
        assert!(Value::from_json(&Json::Array(vec![json!(1); MAX_ARRAY_LEN + 1])).is_err());
        assert!(Value::from_json(&Json::Array(vec![json!(1); MAX_ARRAY_LEN])).is_ok());
    }

    #[test]
    fn parses_formats() {
        assert_eq!(JsonFormat::parse(None), Some(JsonFormat::Clean));
        assert_eq!(JsonFormat::parse(Some("convex_json")), Some(JsonFormat::Encoded));
        assert_eq!(JsonFormat::parse(Some("xml")), None);
    }
}
