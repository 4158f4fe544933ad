//! The JSON form of tuples and templates that the `tuple-space` import speaks (see
//! `wit/actor.wit`): a tuple is a JSON array; integers are `Int`, other numbers `Float`,
//! nested arrays nested tuples, `{"bytes": [..]}` bytes; a template field may also be a
//! formal `{"?": "any" | "int" | "float" | "string" | "bool" | "bytes" | "tuple" | "null"}`.

use plexspaces_tuplespace::{FieldType, Pattern, Template, Tuple, Value};
use serde_json::{Map, Value as Json};

/// A JSON array as a tuple.
pub fn tuple_from_json(text: &str) -> Result<Tuple, String> {
    let json: Json = serde_json::from_str(text).map_err(|e| format!("tuple is not JSON: {e}"))?;
    match json {
        Json::Array(items) => Ok(Tuple::new(
            items.iter().map(value).collect::<Result<_, _>>()?,
        )),
        _ => Err("a tuple is a JSON array".into()),
    }
}

/// A JSON array as a template.
pub fn template_from_json(text: &str) -> Result<Template, String> {
    let json: Json =
        serde_json::from_str(text).map_err(|e| format!("template is not JSON: {e}"))?;
    match json {
        Json::Array(items) => template(&items),
        _ => Err("a template is a JSON array".into()),
    }
}

/// A tuple as JSON text.
pub fn tuple_to_json(tuple: &Tuple) -> String {
    Json::Array(tuple.fields().iter().map(to_json).collect()).to_string()
}

fn template(items: &[Json]) -> Result<Template, String> {
    Ok(Template::new(
        items.iter().map(pattern).collect::<Result<_, _>>()?,
    ))
}

fn pattern(j: &Json) -> Result<Pattern, String> {
    match j {
        Json::Object(o) if o.contains_key("?") => {
            let Some(Json::String(t)) = o.get("?") else {
                return Err("a formal is {\"?\": \"<type>\"}".into());
            };
            Ok(match t.as_str() {
                "any" => Pattern::Any,
                "int" => Pattern::Type(FieldType::Int),
                "float" => Pattern::Type(FieldType::Float),
                "string" => Pattern::Type(FieldType::String),
                "bool" => Pattern::Type(FieldType::Bool),
                "bytes" => Pattern::Type(FieldType::Bytes),
                "tuple" => Pattern::Type(FieldType::Tuple),
                "null" => Pattern::Type(FieldType::Null),
                other => return Err(format!("unknown formal type {other:?}")),
            })
        }
        Json::Array(items) => Ok(Pattern::Tuple(template(items)?)),
        other => Ok(Pattern::Exact(value(other)?)),
    }
}

fn value(j: &Json) -> Result<Value, String> {
    Ok(match j {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64().ok_or("number out of range")?),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Tuple(Tuple::new(
            items.iter().map(value).collect::<Result<_, _>>()?,
        )),
        Json::Object(o) => match (o.len(), o.get("bytes")) {
            (1, Some(Json::Array(b))) => Value::Bytes(
                b.iter()
                    .map(|x| {
                        x.as_u64()
                            .and_then(|x| u8::try_from(x).ok())
                            .ok_or_else(|| "bytes are numbers 0..=255".to_owned())
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err("an object field must be {\"bytes\": [...]}".into()),
        },
    })
}

fn to_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => {
            let mut m = Map::new();
            m.insert("bytes".into(), Json::from(b.clone()));
            Json::Object(m)
        }
        Value::Tuple(t) => Json::Array(t.fields().iter().map(to_json).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_matches() {
        let t = tuple_from_json(r#"["job", 7, 1.5, true, null, ["x"], {"bytes": [1, 2]}]"#)
            .expect("tuple");
        assert_eq!(
            tuple_to_json(&t),
            r#"["job",7,1.5,true,null,["x"],{"bytes":[1,2]}]"#
        );
        let tpl = template_from_json(
            r#"["job", {"?": "int"}, {"?": "float"}, {"?": "any"}, null, [{"?": "string"}], {"?": "bytes"}]"#,
        )
        .expect("template");
        assert_eq!(tpl.patterns().len(), 7);
        assert!(matches!(tpl.patterns()[1], Pattern::Type(FieldType::Int)));
    }

    #[test]
    fn rejects_bad_json() {
        assert!(tuple_from_json("{").is_err());
        assert!(tuple_from_json(r#"{"a": 1}"#).is_err());
        assert!(tuple_from_json(r#"[{"bytes": [300]}]"#).is_err());
        assert!(template_from_json(r#"[{"?": "widget"}]"#).is_err());
        assert!(template_from_json(r#"[{"?": 1}]"#).is_err());
    }
}
