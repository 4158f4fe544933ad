//! `plexspaces space ...`: the node's tuple space over gRPC, and the text syntax of tuples
//! and templates (docs/cli.md).
//!
//! A tuple is a JSON array; each element is a field: `null`, `true`/`false`, an integer
//! (`7`), a float (`7.0`, `1e3`), a string, a nested array (nested tuple),
//! `{"bytes_hex": "0aff"}` for bytes, `{"float": "NaN"}` (or `"inf"`, `"-inf"`).
//! A template is a JSON array of patterns: `"_"` matches anything; `"?int"`, `"?float"`,
//! `"?string"`, `"?bool"`, `"?bytes"`, `"?null"`, `"?tuple"` match any field of that type;
//! a nested array is a nested template; `{"exact": V}` matches the value V literally (for a
//! string that is `"_"` or starts with `?`); any other value matches an equal field.

use clap::{Args, Subcommand};
use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::tuple_space_service_client::TupleSpaceServiceClient;
use serde_json::{json, Map, Number, Value};

use crate::{channel, request, Failure, Output};

#[derive(Args, Debug, Clone)]
pub(crate) struct SpaceArgs {
    /// The space's name (in your token's tenant).
    space: String,
    /// Namespace.
    #[arg(long, short, default_value = "default")]
    namespace: String,
}

#[derive(Subcommand, Debug)]
pub(crate) enum SpaceCommand {
    /// Writes a tuple, e.g. '["job", 7]'.
    Write {
        #[command(flatten)]
        at: SpaceArgs,
        /// The tuple, a JSON array.
        tuple: String,
        /// Lease: the tuple expires after this many milliseconds (0: lives until taken).
        #[arg(long, default_value_t = 0)]
        ttl_ms: u64,
    },
    /// Prints a copy of a matching tuple, waiting for one (e.g. '["job", "?int"]').
    Read(QueryArgs),
    /// Removes and prints a matching tuple, waiting for one.
    Take(QueryArgs),
    /// Prints how many tuples match.
    Count {
        #[command(flatten)]
        at: SpaceArgs,
        /// The template, a JSON array.
        template: String,
    },
}

#[derive(Args, Debug, Clone)]
pub(crate) struct QueryArgs {
    #[command(flatten)]
    at: SpaceArgs,
    /// The template, a JSON array.
    template: String,
    /// How long to wait for a match (0: the node's request timeout; at most 300000).
    #[arg(long, default_value_t = 0)]
    timeout_ms: u64,
    /// Do not wait: exit 4 if nothing matches now.
    #[arg(long, conflicts_with = "all")]
    no_wait: bool,
    /// Every match (oldest first), without waiting.
    #[arg(long)]
    all: bool,
}

fn invalid(message: String) -> Failure {
    Failure { code: 6, message }
}

fn parse_json(what: &str, text: &str) -> Result<Vec<Value>, Failure> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Array(items)) => Ok(items),
        Ok(_) => Err(invalid(format!(
            "the {what} must be a JSON array, e.g. '[\"job\", 7]'"
        ))),
        Err(e) => Err(invalid(format!("the {what} is not JSON: {e}"))),
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn special_float(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "inf" | "Infinity" => Some(f64::INFINITY),
        "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// One tuple field from its JSON form.
pub(crate) fn value(v: &Value) -> Result<pb::Value, Failure> {
    use pb::value::Kind;
    let kind = match v {
        Value::Null => Kind::Null(pb::Empty {}),
        Value::Bool(b) => Kind::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) if !n.is_f64() => Kind::Int(i),
            _ => Kind::Float(
                n.as_f64()
                    .ok_or_else(|| invalid(format!("{n} is not a 64-bit number")))?,
            ),
        },
        Value::String(s) => Kind::String(s.clone()),
        Value::Array(items) => Kind::Tuple(pb::Tuple {
            fields: items.iter().map(value).collect::<Result<_, _>>()?,
        }),
        Value::Object(o) => match (o.len(), o.get("bytes_hex"), o.get("float")) {
            (1, Some(Value::String(h)), _) => Kind::Bytes(
                hex_decode(h)
                    .ok_or_else(|| invalid(format!("bytes_hex {h:?} is not hex")))?
                    .into(),
            ),
            (1, _, Some(Value::String(f))) => Kind::Float(
                special_float(f)
                    .ok_or_else(|| invalid(format!("float {f:?}: use NaN, inf or -inf")))?,
            ),
            (1, _, Some(Value::Number(n))) => Kind::Float(
                n.as_f64()
                    .ok_or_else(|| invalid(format!("{n} is not a 64-bit number")))?,
            ),
            _ => {
                return Err(invalid(format!(
                    "{v} is not a field: objects are {{\"bytes_hex\": \"..\"}} or {{\"float\": ..}}"
                )))
            }
        },
    };
    Ok(pb::Value { kind: Some(kind) })
}

/// A tuple from its text form (a JSON array of fields).
pub(crate) fn parse_tuple(text: &str) -> Result<pb::Tuple, Failure> {
    Ok(pb::Tuple {
        fields: parse_json("tuple", text)?
            .iter()
            .map(value)
            .collect::<Result<_, _>>()?,
    })
}

fn field_type(name: &str) -> Option<pb::FieldType> {
    Some(match name {
        "null" => pb::FieldType::Null,
        "bool" => pb::FieldType::Bool,
        "int" => pb::FieldType::Int,
        "float" => pb::FieldType::Float,
        "string" => pb::FieldType::String,
        "bytes" => pb::FieldType::Bytes,
        "tuple" => pb::FieldType::Tuple,
        _ => return None,
    })
}

fn pattern(v: &Value) -> Result<pb::Pattern, Failure> {
    use pb::pattern::Kind;
    let kind = match v {
        Value::String(s) if s == "_" => Kind::Any(pb::Empty {}),
        Value::String(s) if s.starts_with('?') => {
            let t = field_type(&s[1..]).ok_or_else(|| {
                invalid(format!(
                    "unknown formal {s:?}: use ?int, ?float, ?string, ?bool, ?bytes, ?null or \
                     ?tuple (or {{\"exact\": {s:?}}} for the string itself)"
                ))
            })?;
            Kind::Type(t as i32)
        }
        Value::Array(items) => Kind::Template(pb::Template {
            patterns: items.iter().map(pattern).collect::<Result<_, _>>()?,
        }),
        Value::Object(o) if o.len() == 1 && o.contains_key("exact") => {
            Kind::Exact(value(&o["exact"])?)
        }
        other => Kind::Exact(value(other)?),
    };
    Ok(pb::Pattern { kind: Some(kind) })
}

/// A template from its text form (a JSON array of patterns).
pub(crate) fn parse_template(text: &str) -> Result<pb::Template, Failure> {
    Ok(pb::Template {
        patterns: parse_json("template", text)?
            .iter()
            .map(pattern)
            .collect::<Result<_, _>>()?,
    })
}

fn hex_encode(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A field in the text syntax (so that output can be fed back as input).
pub(crate) fn value_json(v: &pb::Value) -> Value {
    use pb::value::Kind;
    match &v.kind {
        None | Some(Kind::Null(_)) => Value::Null,
        Some(Kind::Bool(b)) => Value::Bool(*b),
        Some(Kind::Int(i)) => Value::from(*i),
        Some(Kind::Float(f)) => match Number::from_f64(*f) {
            Some(n) => Value::Number(n),
            None => {
                let name = if f.is_nan() {
                    "NaN"
                } else if *f > 0.0 {
                    "inf"
                } else {
                    "-inf"
                };
                let mut o = Map::new();
                o.insert("float".into(), Value::from(name));
                Value::Object(o)
            }
        },
        Some(Kind::String(s)) => Value::String(s.clone()),
        Some(Kind::Bytes(b)) => json!({ "bytes_hex": hex_encode(b) }),
        Some(Kind::Tuple(t)) => tuple_json(t),
    }
}

/// A tuple in the text syntax.
pub(crate) fn tuple_json(t: &pb::Tuple) -> Value {
    Value::Array(t.fields.iter().map(value_json).collect())
}

fn print_tuple(output: Output, t: &pb::Tuple) {
    match output {
        Output::Json => println!("{}", json!({ "tuple": tuple_json(t) })),
        Output::Human => println!("{}", tuple_json(t)),
    }
}

pub(crate) async fn run(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    cmd: SpaceCommand,
) -> Result<(), Failure> {
    // Parse before connecting: bad input is exit 6 whether or not the node is up.
    match cmd {
        SpaceCommand::Write { at, tuple, ttl_ms } => {
            let tuple = parse_tuple(&tuple)?;
            let mut client = TupleSpaceServiceClient::new(channel(endpoint).await?);
            let r = client
                .write(request(
                    pb::WriteRequest {
                        namespace: at.namespace,
                        space: at.space,
                        tuple: Some(tuple),
                        ttl_ms,
                    },
                    token,
                )?)
                .await?
                .into_inner();
            match output {
                Output::Json => println!(
                    "{}",
                    json!({ "id": r.id, "expires_at_ms": (r.expires_at_ms != 0).then_some(r.expires_at_ms) })
                ),
                Output::Human if r.expires_at_ms != 0 => {
                    println!("wrote #{} (lease ends at {} ms)", r.id, r.expires_at_ms)
                }
                Output::Human => println!("wrote #{}", r.id),
            }
        }
        SpaceCommand::Count { at, template } => {
            let template = parse_template(&template)?;
            let mut client = TupleSpaceServiceClient::new(channel(endpoint).await?);
            let r = client
                .count(request(
                    pb::TemplateRequest {
                        namespace: at.namespace,
                        space: at.space,
                        template: Some(template),
                    },
                    token,
                )?)
                .await?
                .into_inner();
            match output {
                Output::Json => println!("{}", json!({ "count": r.count })),
                Output::Human => println!("{}", r.count),
            }
        }
        SpaceCommand::Read(q) => query(endpoint, token, output, q, false).await?,
        SpaceCommand::Take(q) => query(endpoint, token, output, q, true).await?,
    }
    Ok(())
}

async fn query(
    endpoint: &str,
    token: Option<&str>,
    output: Output,
    q: QueryArgs,
    take: bool,
) -> Result<(), Failure> {
    let template = parse_template(&q.template)?;
    let mut client = TupleSpaceServiceClient::new(channel(endpoint).await?);
    let req = pb::TemplateRequest {
        namespace: q.at.namespace.clone(),
        space: q.at.space.clone(),
        template: Some(template.clone()),
    };
    if q.all {
        let r = if take {
            client.take_all(request(req, token)?).await?
        } else {
            client.read_all(request(req, token)?).await?
        }
        .into_inner();
        match output {
            Output::Json => {
                let tuples: Vec<Value> = r.tuples.iter().map(tuple_json).collect();
                println!("{}", json!({ "tuples": tuples }));
            }
            Output::Human => {
                for t in &r.tuples {
                    println!("{}", tuple_json(t));
                }
            }
        }
        return Ok(());
    }
    let r = if q.no_wait {
        if take {
            client.take_if_exists(request(req, token)?).await?
        } else {
            client.read_if_exists(request(req, token)?).await?
        }
    } else {
        let req = pb::WaitRequest {
            namespace: q.at.namespace,
            space: q.at.space,
            template: Some(template),
            timeout_ms: q.timeout_ms,
        };
        if take {
            client.take(request(req, token)?).await?
        } else {
            client.read(request(req, token)?).await?
        }
    }
    .into_inner();
    match r.tuple {
        Some(t) => {
            print_tuple(output, &t);
            Ok(())
        }
        None => Err(Failure {
            code: 4,
            message: "no matching tuple".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok<T>(r: Result<T, Failure>) -> T {
        r.unwrap_or_else(|f| panic!("{}", f.message))
    }

    #[test]
    fn tuples_parse_and_print_back() {
        let text = r#"["job",7,1.5,null,true,["nested",-1],{"bytes_hex":"00ff"},{"float":"NaN"}]"#;
        let t = ok(parse_tuple(text));
        assert_eq!(
            t.fields[1].kind,
            Some(pb::value::Kind::Int(7)),
            "integers are ints"
        );
        assert_eq!(t.fields[2].kind, Some(pb::value::Kind::Float(1.5)));
        assert_eq!(tuple_json(&t).to_string(), text);
        let f = ok(parse_tuple("[7.0]"));
        assert_eq!(f.fields[0].kind, Some(pb::value::Kind::Float(7.0)));
    }

    #[test]
    fn templates_have_formals_wildcards_and_escapes() {
        use pb::pattern::Kind;
        let t = ok(parse_template(
            r#"["job", "?int", "_", {"exact": "_"}, ["?string"]]"#,
        ));
        assert!(matches!(t.patterns[0].kind, Some(Kind::Exact(_))));
        assert_eq!(
            t.patterns[1].kind,
            Some(Kind::Type(pb::FieldType::Int as i32))
        );
        assert!(matches!(t.patterns[2].kind, Some(Kind::Any(_))));
        assert_eq!(
            t.patterns[3].kind,
            Some(Kind::Exact(pb::Value {
                kind: Some(pb::value::Kind::String("_".into()))
            }))
        );
        assert!(matches!(t.patterns[4].kind, Some(Kind::Template(_))));
    }

    #[test]
    fn bad_text_is_invalid_input() {
        for bad in ["not json", "{\"a\": 1}", "[\"?integer\"]", "[{\"x\": 1}]"] {
            let e = parse_template(bad).expect_err(bad);
            assert_eq!(e.code, 6, "{bad}");
        }
        assert_eq!(
            parse_tuple("[{\"bytes_hex\": \"zz\"}]").err().unwrap().code,
            6
        );
    }
}
