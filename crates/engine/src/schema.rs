//! Tables, their document validators and indexes; validators equivalent to Convex's `v.*`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use super::id::{DocumentId, TableNumber};
use super::value::{JsonFormat, Object, Value};

#[derive(Clone, Debug, PartialEq)]
pub enum Validator {
    String,
    Number,
    /// A number that counts: finite, whole and not negative (a limit, a sequence number).
    Count,
    Int64,
    Boolean,
    Null,
    Bytes,
    Id(&'static str),
    Literal(Value),
    Union(Vec<Validator>),
    /// Only meaningful as the validator of an object field.
    Optional(Box<Validator>),
    Array(Box<Validator>),
    Object(BTreeMap<&'static str, Validator>),
    Record(Box<Validator>, Box<Validator>),
    Any,
    /// A whole document of the named table, system fields included (for results).
    Document(&'static str),
}

impl Validator {
    /// Convex's JSON form of a validator (what `npx convex function-spec` prints and the
    /// dashboard's argument forms read). A whole document is its table's fields plus `_id`
    /// and `_creationTime`; a count is a number, as in the TypeScript bindings.
    pub fn to_convex_json(&self, schema: &Schema) -> serde_json::Value {
        use serde_json::json;
        let field = |validator: &Validator| match validator {
            Validator::Optional(inner) => json!({"fieldType": inner.to_convex_json(schema), "optional": true}),
            other => json!({"fieldType": other.to_convex_json(schema), "optional": false}),
        };
        let object = |fields: &mut dyn Iterator<Item = (&str, &Validator)>| {
            let value: serde_json::Map<String, serde_json::Value> =
                fields.map(|(name, validator)| (name.to_owned(), field(validator))).collect();
            json!({"type": "object", "value": value})
        };
        match self {
            Validator::String => json!({"type": "string"}),
            Validator::Number | Validator::Count => json!({"type": "number"}),
            Validator::Int64 => json!({"type": "bigint"}),
            Validator::Boolean => json!({"type": "boolean"}),
            Validator::Null => json!({"type": "null"}),
            Validator::Bytes => json!({"type": "bytes"}),
            Validator::Any => json!({"type": "any"}),
            Validator::Id(table) => json!({"type": "id", "tableName": table}),
            Validator::Literal(value) => json!({"type": "literal", "value": value.to_json(JsonFormat::Encoded)}),
            Validator::Union(members) => {
                json!({"type": "union", "value": members.iter().map(|m| m.to_convex_json(schema)).collect::<Vec<_>>()})
            }
            // Alone (not as a field) an optional value is the value or nothing at all.
            Validator::Optional(inner) => inner.to_convex_json(schema),
            Validator::Array(inner) => json!({"type": "array", "value": inner.to_convex_json(schema)}),
            Validator::Object(fields) => object(&mut fields.iter().map(|(name, v)| (*name, v))),
            Validator::Record(keys, values) => {
                json!({"type": "record", "keys": keys.to_convex_json(schema), "values": field(values)})
            }
            Validator::Document(table) => {
                let id = Validator::Id(table);
                let system = [("_id", &id), ("_creationTime", &Validator::Number)];
                match schema.table(table).map(|t| &t.document) {
                    Some(Validator::Object(fields)) => {
                        object(&mut system.into_iter().chain(fields.iter().map(|(name, v)| (*name, v))))
                    }
                    _ => json!({"type": "any"}),
                }
            }
        }
    }
}

/// Constructors that read like Convex's `v.*`.
pub mod v {
    use super::Validator;
    use crate::value::Value;

    pub fn string() -> Validator {
        Validator::String
    }
    pub fn number() -> Validator {
        Validator::Number
    }
    pub fn count() -> Validator {
        Validator::Count
    }
    pub fn int64() -> Validator {
        Validator::Int64
    }
    pub fn boolean() -> Validator {
        Validator::Boolean
    }
    pub fn null() -> Validator {
        Validator::Null
    }
    pub fn bytes() -> Validator {
        Validator::Bytes
    }
    pub fn any() -> Validator {
        Validator::Any
    }
    pub fn id(table: &'static str) -> Validator {
        Validator::Id(table)
    }
    pub fn literal(value: impl Into<Value>) -> Validator {
        Validator::Literal(value.into())
    }
    /// A union of string literals, the usual shape of an enum field.
    pub fn one_of(words: &[&'static str]) -> Validator {
        Validator::Union(words.iter().map(|w| literal(*w)).collect())
    }
    pub fn union(members: Vec<Validator>) -> Validator {
        Validator::Union(members)
    }
    pub fn optional(inner: Validator) -> Validator {
        Validator::Optional(Box::new(inner))
    }
    /// `v.optional(v.union(inner, v.null()))`: a field that may be absent or null.
    pub fn nullable(inner: Validator) -> Validator {
        optional(union(vec![inner, Validator::Null]))
    }
    pub fn array(inner: Validator) -> Validator {
        Validator::Array(Box::new(inner))
    }
    pub fn object(fields: Vec<(&'static str, Validator)>) -> Validator {
        Validator::Object(fields.into_iter().collect())
    }
    pub fn record(key: Validator, value: Validator) -> Validator {
        Validator::Record(Box::new(key), Box::new(value))
    }
    pub fn document(table: &'static str) -> Validator {
        Validator::Document(table)
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

impl fmt::Display for Validator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Validator::String => f.write_str("v.string()"),
            Validator::Number => f.write_str("v.number()"),
            Validator::Count => f.write_str("a whole number from 0 (v.number())"),
            Validator::Int64 => f.write_str("v.int64()"),
            Validator::Boolean => f.write_str("v.boolean()"),
            Validator::Null => f.write_str("v.null()"),
            Validator::Bytes => f.write_str("v.bytes()"),
            Validator::Any => f.write_str("v.any()"),
            Validator::Id(table) => write!(f, "v.id({table:?})"),
            Validator::Literal(value) => write!(f, "v.literal({value})"),
            Validator::Union(members) => {
                f.write_str("v.union(")?;
                for (i, m) in members.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{m}")?;
                }
                f.write_str(")")
            }
            Validator::Optional(inner) => write!(f, "v.optional({inner})"),
            Validator::Array(inner) => write!(f, "v.array({inner})"),
            Validator::Object(fields) => {
                f.write_str("v.object({")?;
                for (i, (name, validator)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}: {validator}")?;
                }
                f.write_str("})")
            }
            Validator::Record(key, value) => write!(f, "v.record({key}, {value})"),
            Validator::Document(table) => write!(f, "Doc<{table:?}>"),
        }
    }
}

impl Validator {
    /// Checks `value`; `path` names where it sits, for the error message.
    pub fn check(&self, value: &Value, path: &str, schema: &Schema) -> Result<(), ValidationError> {
        let mismatch = || {
            let shown = value.to_string();
            let shown =
                if shown.len() > 120 { format!("{}...", &shown[..shown.floor_char_boundary(120)]) } else { shown };
            ValidationError(format!(
                "Value does not match validator.\nPath: {}\nValue: {shown}\nValidator: {self}",
                if path.is_empty() { "(root)" } else { path }
            ))
        };
        match (self, value) {
            (Validator::Any, _)
            | (Validator::String, Value::String(_))
            | (Validator::Number, Value::Float64(_))
            | (Validator::Int64, Value::Int64(_))
            | (Validator::Boolean, Value::Boolean(_))
            | (Validator::Null, Value::Null)
            | (Validator::Bytes, Value::Bytes(_)) => Ok(()),
            (Validator::Id(table), Value::String(text)) => {
                let expected = schema.table(table).map(|t| t.number);
                match DocumentId::decode(text) {
                    Ok(id) if Some(id.table) == expected => Ok(()),
                    Ok(_) => Err(ValidationError(format!(
                        "Value does not match validator.\nPath: {}\nValue: {text:?} is an id for another table.\nValidator: {self}",
                        if path.is_empty() { "(root)" } else { path }
                    ))),
                    Err(_) => Err(mismatch()),
                }
            }
            (Validator::Count, Value::Float64(f)) if f.is_finite() && f.fract() == 0.0 && *f >= 0.0 => Ok(()),
            (Validator::Literal(expected), _) if expected == value => Ok(()),
            (Validator::Union(members), _) => {
                if members.iter().any(|m| m.check(value, path, schema).is_ok()) {
                    Ok(())
                } else {
                    Err(mismatch())
                }
            }
            (Validator::Optional(inner), _) => inner.check(value, path, schema),
            (Validator::Array(inner), Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    inner.check(item, &format!("{path}[{i}]"), schema)?;
                }
                Ok(())
            }
            (Validator::Object(fields), Value::Object(object)) => check_object(fields, object, path, schema),
            (Validator::Document(table), Value::Object(object)) => {
                let mut fields = object.clone();
                let id = fields.remove("_id").unwrap_or(Value::Null);
                Validator::Id(table).check(&id, &format!("{path}._id"), schema)?;
                Validator::Number.check(
                    &fields.remove("_creationTime").unwrap_or(Value::Null),
                    &format!("{path}._creationTime"),
                    schema,
                )?;
                match schema.table(table) {
                    Some(def) => def.document.check(&Value::Object(fields), path, schema),
                    None => Err(mismatch()),
                }
            }
            (Validator::Record(key, inner), Value::Object(object)) => {
                for (name, item) in object {
                    key.check(&Value::String(name.clone()), &format!("{path}.{name}"), schema)?;
                    inner.check(item, &format!("{path}.{name}"), schema)?;
                }
                Ok(())
            }
            _ => Err(mismatch()),
        }
    }
}

fn check_object(
    fields: &BTreeMap<&'static str, Validator>,
    object: &Object,
    path: &str,
    schema: &Schema,
) -> Result<(), ValidationError> {
    for (name, validator) in fields {
        match object.get(*name) {
            Some(value) => validator.check(value, &format!("{path}.{name}"), schema)?,
            None if matches!(validator, Validator::Optional(_)) => {}
            None => {
                return Err(ValidationError(format!(
                    "Object is missing the required field `{name}`{}.",
                    if path.is_empty() { String::new() } else { format!(" at {path}") }
                )));
            }
        }
    }
    if let Some(extra) = object.keys().find(|k| !fields.contains_key(k.as_str())) {
        return Err(ValidationError(format!(
            "Object contains extra field `{extra}` that is not in the validator{}.",
            if path.is_empty() { String::new() } else { format!(" at {path}") }
        )));
    }
    Ok(())
}

pub const BY_ID: &str = "by_id";
pub const BY_CREATION_TIME: &str = "by_creation_time";

/// Names an index: slot 0 of every table is its implicit `by_id` index, slot
/// `i + 1` is the table's `i`-th declared index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IndexId {
    pub table: TableNumber,
    pub slot: u16,
}

#[derive(Clone, Debug)]
pub struct IndexDef {
    pub name: &'static str,
    pub fields: Vec<&'static str>,
}

#[derive(Clone, Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub number: TableNumber,
    /// The validator of the user fields (an object validator).
    pub document: Validator,
    pub indexes: Vec<IndexDef>,
}

impl TableDef {
    pub fn new(name: &'static str, number: TableNumber, fields: Vec<(&'static str, Validator)>) -> TableDef {
        TableDef { name, number, document: v::object(fields), indexes: Vec::new() }
    }

    pub fn index(mut self, name: &'static str, fields: &[&'static str]) -> TableDef {
        self.indexes.push(IndexDef { name, fields: fields.to_vec() });
        self
    }

    /// System tables (named `_…`, as in Convex) hold the deployment's own state: they are
    /// not part of the app's data model, its bindings or its exports.
    pub fn is_system(&self) -> bool {
        self.name.starts_with('_')
    }

    pub fn by_id(&self) -> IndexId {
        IndexId { table: self.number, slot: 0 }
    }

    /// The implicit index over `(_creationTime, _id)` that [`Schema::new`] adds.
    pub fn by_creation_time(&self) -> IndexId {
        self.index_id(BY_CREATION_TIME).expect("Schema::new gives every table its by_creation_time index")
    }

    pub fn index_id(&self, name: &str) -> Option<IndexId> {
        let position = self.indexes.iter().position(|i| i.name == name)?;
        Some(IndexId { table: self.number, slot: position as u16 + 1 })
    }
}

#[derive(Debug)]
pub struct Schema {
    tables: Vec<TableDef>,
    by_name: HashMap<&'static str, usize>,
    by_number: HashMap<TableNumber, usize>,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid schema: {0}")]
pub struct SchemaError(String);

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64
}

impl Schema {
    /// Checks the tables and gives each its implicit `by_creation_time` index, after the
    /// declared ones, as Convex does: whole tables are listed in creation order through it.
    pub fn new(mut tables: Vec<TableDef>) -> Result<Schema, SchemaError> {
        let mut by_name = HashMap::new();
        let mut by_number = HashMap::new();
        for (i, table) in tables.iter_mut().enumerate() {
            if !valid_name(table.name) || table.number == 0 {
                return Err(SchemaError(format!("bad table name or number: {} {}", table.name, table.number)));
            }
            if by_name.insert(table.name, i).is_some() || by_number.insert(table.number, i).is_some() {
                return Err(SchemaError(format!("table {} is declared twice", table.name)));
            }
            let Validator::Object(fields) = &table.document else {
                return Err(SchemaError(format!("table {} needs an object validator", table.name)));
            };
            for index in &table.indexes {
                let unknown = index.fields.iter().find(|f| !fields.contains_key(**f));
                if !valid_name(index.name) || [BY_ID, BY_CREATION_TIME].contains(&index.name) || unknown.is_some() {
                    return Err(SchemaError(format!("bad index {}.{}", table.name, index.name)));
                }
            }
            table.indexes.push(IndexDef { name: BY_CREATION_TIME, fields: Vec::new() });
        }
        Ok(Schema { tables, by_name, by_number })
    }

    pub fn tables(&self) -> &[TableDef] {
        &self.tables
    }

    pub fn table(&self, name: &str) -> Option<&TableDef> {
        self.by_name.get(name).map(|&i| &self.tables[i])
    }

    pub fn table_by_number(&self, number: TableNumber) -> Option<&TableDef> {
        self.by_number.get(&number).map(|&i| &self.tables[i])
    }

    /// The fields of an index (empty for `by_id`).
    pub(crate) fn index_fields(&self, index: IndexId) -> &[&'static str] {
        match (self.table_by_number(index.table), index.slot) {
            (Some(table), slot) if slot > 0 => &table.indexes[slot as usize - 1].fields,
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            TableDef::new("users", 10_001, vec![("name", v::string())]),
            TableDef::new(
                "posts",
                10_002,
                vec![
                    ("author", v::id("users")),
                    ("kind", v::one_of(&["a", "b"])),
                    ("tags", v::optional(v::array(v::string()))),
                    ("meta", v::optional(v::record(v::string(), v::number()))),
                    ("count", v::optional(v::int64())),
                ],
            )
            .index("by_author", &["author"]),
        ])
        .unwrap()
    }

    fn obj(pairs: Vec<(&str, Value)>) -> Value {
        Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
    }

    #[test]
    fn accepts_a_matching_document() {
        let s = schema();
        let user = DocumentId::generate(10_001, 0).encode();
        let doc = obj(vec![
            ("author", user.into()),
            ("kind", "a".into()),
            ("tags", Value::Array(vec!["x".into()])),
            ("meta", obj(vec![("k", 1.0.into())])),
            ("count", Value::Int64(3)),
        ]);
        s.table("posts").unwrap().document.check(&doc, "", &s).unwrap();
    }

    #[test]
    fn names_the_missing_and_the_extra_field() {
        let s = schema();
        let posts = &s.table("posts").unwrap().document;
        let err = posts.check(&obj(vec![("kind", "a".into())]), "", &s).unwrap_err();
        assert!(err.0.contains("`author`"), "{err}");
        let user = DocumentId::generate(10_001, 0).encode();
        let err = posts.check(&obj(vec![("author", user.into()), ("kind", "a".into()), ("x", Value::Null)]), "", &s);
        assert!(err.unwrap_err().0.contains("`x`"));
    }

    #[test]
    fn ids_must_name_the_right_table() {
        let s = schema();
        let wrong = DocumentId::generate(10_002, 0).encode();
        let err = v::id("users").check(&wrong.into(), ".author", &s).unwrap_err();
        assert!(err.0.contains("another table"), "{err}");
        assert!(v::id("users").check(&"nope".into(), ".author", &s).is_err());
    }

    #[test]
    fn literals_unions_and_numbers_are_strict() {
        let s = schema();
        assert!(v::one_of(&["a", "b"]).check(&"c".into(), "", &s).is_err());
        assert!(v::number().check(&Value::Int64(1), "", &s).is_err());
        assert!(v::int64().check(&Value::Float64(1.0), "", &s).is_err());
        assert!(v::nullable(v::number()).check(&Value::Null, "", &s).is_ok());
        let err = v::array(v::string()).check(&Value::Array(vec!["a".into(), 1.0.into()]), ".tags", &s).unwrap_err();
        assert!(err.0.contains(".tags[1]"), "{err}");
    }

    #[test]
    fn rejects_bad_schemas() {
        assert!(Schema::new(vec![TableDef::new("t", 5, vec![]).index("by_x", &["x"])]).is_err());
        assert!(Schema::new(vec![TableDef::new("1t", 5, vec![])]).is_err());
        assert!(Schema::new(vec![TableDef::new("t", 5, vec![]), TableDef::new("u", 5, vec![])]).is_err());
    }
}
