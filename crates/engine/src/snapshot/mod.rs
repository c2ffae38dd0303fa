//! Convex's snapshot formats: the ZIP that `npx convex export` downloads and `import` reads, and
//! the single-table files (`.jsonl`, `.json`, `.csv`) `import` also takes
//! (shared/spec/convex-cli.md §2–3). Generic over the schema: a snapshot of any deployment
//! of the same shape moves between Jangar and Convex, and between Jangar's storages.

mod export;
mod import;

pub use export::{ExportSummary, write_zip};
pub use import::{ImportError, ImportFormat, ImportMode, ImportReport, ParsedImport, apply, parse};

use serde_json::{Map, Number, Value as Json};

use super::base64;
use super::value::{Object, Value};

/// The marker line of `generated_schema.jsonl`: documents in Convex's lossless export JSON.
const UNIFORM: &str = "\"uniform\"";

/// Convex's lossless export JSON (`export_clean_lossless`): int64 a bare integer, float64 a
/// number with a point or exponent, the floats JSON cannot hold and bytes as `$`-objects.
fn to_export_json(value: &Value) -> Json {
    match value {
        Value::Null => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::String(s) => Json::String(s.clone()),
        Value::Int64(i) => Json::Number(Number::from(*i)),
        Value::Float64(f) => match Number::from_f64(*f) {
            // serde_json writes every finite float with a point or an exponent (`5.0`, `-0.0`).
            Some(number) => Json::Number(number),
            None => dollar("$float", base64::encode(&f.to_le_bytes())),
        },
        Value::Bytes(bytes) => dollar("$bytes", base64::encode(bytes)),
        Value::Array(items) => Json::Array(items.iter().map(to_export_json).collect()),
        Value::Object(object) => Json::Object(object.iter().map(|(k, v)| (k.clone(), to_export_json(v))).collect()),
    }
}

fn dollar(key: &str, text: String) -> Json {
    let mut map = Map::new();
    map.insert(key.to_owned(), Json::String(text));
    Json::Object(map)
}

/// The inverse of [`to_export_json`] (a file marked `uniform`): an integer token is an int64,
/// any other number a float64, and an object whose key starts with `$` Convex's encoded JSON.
fn from_export_json(json: &Json) -> Result<Value, String> {
    Ok(match json {
        Json::Number(n) if n.is_i64() => Value::Int64(n.as_i64().expect("is_i64")),
        Json::Array(items) => Value::Array(items.iter().map(from_export_json).collect::<Result<_, _>>()?),
        Json::Object(map) if map.keys().next().is_some_and(|k| k.starts_with('$')) => {
            Value::from_json(json).map_err(|e| e.to_string())?
        }
        Json::Object(map) => Value::Object(
            map.iter().map(|(k, v)| Ok((k.clone(), from_export_json(v)?))).collect::<Result<Object, String>>()?,
        ),
        other => Value::from_json(other).map_err(|e| e.to_string())?,
    })
}

/// Plain JSON, as a file without a generated schema holds it: every number a float64, no
/// `$`-encodings.
fn from_plain_json(json: &Json) -> Result<Value, String> {
    Value::from_json(json).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_json_keeps_every_value_exactly() {
        let values = [
            Value::Int64(5),
            Value::Int64(i64::MIN),
            Value::Float64(5.0),
            Value::Float64(-0.0),
            Value::Float64(f64::NAN),
            Value::Float64(f64::NEG_INFINITY),
            Value::Float64(1796153480416.2625),
            Value::Bytes(vec![0, 255, 7]),
            Value::Array(vec![Value::Int64(1), Value::Float64(1.0)]),
            Value::Object([("a".to_owned(), Value::Int64(2))].into_iter().collect()),
        ];
        for value in values {
            let text = to_export_json(&value).to_string();
            let back = from_export_json(&serde_json::from_str(&text).unwrap()).unwrap();
            match (&value, &back) {
                (Value::Float64(a), Value::Float64(b)) => assert_eq!(a.to_bits(), b.to_bits(), "{text}"),
                _ => assert_eq!(back, value, "{text}"),
            }
        }
        assert_eq!(to_export_json(&Value::Int64(5)).to_string(), "5");
        assert_eq!(to_export_json(&Value::Float64(5.0)).to_string(), "5.0");
        assert_eq!(to_export_json(&Value::Bytes(vec![1])).to_string(), r#"{"$bytes":"AQ=="}"#);
    }
}
