//! Tuples, templates and the matching rules.

use std::fmt;

use crate::{Error, Result};

/// One field of a tuple.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// the absent value
    Null,
    /// a boolean
    Bool(bool),
    /// a signed 64-bit integer
    Int(i64),
    /// a 64-bit float
    Float(f64),
    /// UTF-8 text
    String(String),
    /// opaque bytes
    Bytes(Vec<u8>),
    /// a nested tuple
    Tuple(Tuple),
}

/// The type of a field, used by typed formals ("any integer").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    /// [`Value::Null`]
    Null,
    /// [`Value::Bool`]
    Bool,
    /// [`Value::Int`]
    Int,
    /// [`Value::Float`]
    Float,
    /// [`Value::String`]
    String,
    /// [`Value::Bytes`]
    Bytes,
    /// [`Value::Tuple`]
    Tuple,
}

impl Value {
    /// The field's type.
    pub fn field_type(&self) -> FieldType {
        match self {
            Value::Null => FieldType::Null,
            Value::Bool(_) => FieldType::Bool,
            Value::Int(_) => FieldType::Int,
            Value::Float(_) => FieldType::Float,
            Value::String(_) => FieldType::String,
            Value::Bytes(_) => FieldType::Bytes,
            Value::Tuple(_) => FieldType::Tuple,
        }
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(v) => Some(*v),
            _ => None,
        }
    }

    /// The float, if this is one.
    pub fn as_float(&self) -> Option<f64> {
        match self {
            Value::Float(v) => Some(*v),
            _ => None,
        }
    }

    /// The text, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(v) => Some(v),
            _ => None,
        }
    }

    /// The boolean, if this is one.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(v) => Some(*v),
            _ => None,
        }
    }

    /// The bytes, if this is a byte field.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(v) => Some(v),
            _ => None,
        }
    }

    /// The nested tuple, if this is one.
    pub fn as_tuple(&self) -> Option<&Tuple> {
        match self {
            Value::Tuple(v) => Some(v),
            _ => None,
        }
    }
}

macro_rules! value_from {
    ($($t:ty => $v:ident $(as $cast:ty)?),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$v((v $(as $cast)?).into())
            }
        }
    )*};
}

value_from!(
    bool => Bool,
    i64 => Int,
    i32 => Int as i64,
    u32 => Int as i64,
    i16 => Int as i64,
    u8 => Int as i64,
    f64 => Float,
    f32 => Float as f64,
    String => String,
    &str => String,
    &String => String,
    Vec<u8> => Bytes,
    &[u8] => Bytes,
    Tuple => Tuple,
);

impl From<()> for Value {
    fn from(_: ()) -> Self {
        Value::Null
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// An ordered list of typed fields.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tuple(Vec<Value>);

impl Tuple {
    /// A tuple of these fields. Validity (arity, size, depth) is checked when it is written.
    pub fn new(fields: Vec<Value>) -> Self {
        Tuple(fields)
    }

    /// The fields.
    pub fn fields(&self) -> &[Value] {
        &self.0
    }

    /// The number of fields.
    pub fn arity(&self) -> usize {
        self.0.len()
    }

    /// Field `i`.
    pub fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i)
    }

    /// The fields, by value.
    pub fn into_fields(self) -> Vec<Value> {
        self.0
    }

    /// How deep tuples nest inside this one (a flat tuple has depth 1).
    pub fn depth(&self) -> usize {
        1 + self
            .0
            .iter()
            .map(|v| match v {
                Value::Tuple(t) => t.depth(),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }
}

impl From<Vec<Value>> for Tuple {
    fn from(v: Vec<Value>) -> Self {
        Tuple(v)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v:?}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::Bytes(v) => write!(f, "<{} bytes>", v.len()),
            Value::Tuple(t) => write!(f, "{t}"),
        }
    }
}

impl fmt::Display for Tuple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, v) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{v}")?;
        }
        f.write_str(")")
    }
}

/// How one template field matches one tuple field. See the crate docs for the rules.
#[derive(Debug, Clone, PartialEq)]
pub enum Pattern {
    /// wildcard: matches any field
    Any,
    /// typed formal: matches any field of this type
    Type(FieldType),
    /// actual: matches a field equal to this value (same type, same value)
    Exact(Value),
    /// matches a nested tuple field that matches this template
    Tuple(Template),
}

impl Pattern {
    /// Whether `value` matches.
    pub fn matches(&self, value: &Value) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Type(t) => value.field_type() == *t,
            Pattern::Exact(v) => v == value,
            Pattern::Tuple(tpl) => match value {
                Value::Tuple(t) => tpl.matches(t),
                _ => false,
            },
        }
    }
}

/// Conversion used by the [`template!`](crate::template) macro: values become exact
/// patterns, a [`FieldType`] a typed formal, a [`Template`] a nested pattern.
pub trait IntoPattern {
    /// The pattern.
    fn into_pattern(self) -> Pattern;
}

macro_rules! into_pattern_exact {
    ($($t:ty),*) => {$(
        impl IntoPattern for $t {
            fn into_pattern(self) -> Pattern {
                Pattern::Exact(Value::from(self))
            }
        }
    )*};
}

into_pattern_exact!(
    bool,
    i64,
    i32,
    u32,
    i16,
    u8,
    f64,
    f32,
    String,
    &str,
    &String,
    Vec<u8>,
    &[u8],
    Tuple,
    ()
);

impl IntoPattern for Value {
    fn into_pattern(self) -> Pattern {
        Pattern::Exact(self)
    }
}

impl IntoPattern for Pattern {
    fn into_pattern(self) -> Pattern {
        self
    }
}

impl IntoPattern for FieldType {
    fn into_pattern(self) -> Pattern {
        Pattern::Type(self)
    }
}

impl IntoPattern for Template {
    fn into_pattern(self) -> Pattern {
        Pattern::Tuple(self)
    }
}

/// A pattern over tuples of one arity, matched field by field.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Template(Vec<Pattern>);

impl Template {
    /// A template of these patterns. Validity is checked when it is used.
    pub fn new(patterns: Vec<Pattern>) -> Self {
        Template(patterns)
    }

    /// A template matching exactly this tuple.
    pub fn exact(tuple: &Tuple) -> Self {
        Template(tuple.fields().iter().cloned().map(Pattern::Exact).collect())
    }

    /// The patterns.
    pub fn patterns(&self) -> &[Pattern] {
        &self.0
    }

    /// The arity of the tuples this template can match.
    pub fn arity(&self) -> usize {
        self.0.len()
    }

    /// Whether `tuple` matches: same arity and every field matches its pattern.
    pub fn matches(&self, tuple: &Tuple) -> bool {
        self.0.len() == tuple.arity()
            && self.0.iter().zip(tuple.fields()).all(|(p, v)| p.matches(v))
    }

    /// How deep nested patterns go (a flat template has depth 1).
    pub fn depth(&self) -> usize {
        1 + self
            .0
            .iter()
            .map(|p| match p {
                Pattern::Tuple(t) => t.depth(),
                Pattern::Exact(Value::Tuple(t)) => t.depth(),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
    }
}

/// Limits every tuple and template is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// maximum number of fields of a tuple or template (and of a nested one)
    pub max_arity: usize,
    /// maximum encoded size of a tuple in bytes
    pub max_tuple_bytes: usize,
    /// maximum nesting depth (a flat tuple has depth 1)
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_arity: 64,
            max_tuple_bytes: 1024 * 1024,
            max_depth: 8,
        }
    }
}

impl Limits {
    /// Check a tuple before it is written.
    pub fn check_tuple(&self, tuple: &Tuple) -> Result<()> {
        if tuple.depth() > self.max_depth {
            return Err(Error::TooDeep {
                max: self.max_depth,
            });
        }
        self.check_arities(tuple)?;
        let size = crate::codec::encoded_len(tuple);
        if size > self.max_tuple_bytes {
            return Err(Error::TooLarge {
                size,
                max: self.max_tuple_bytes,
            });
        }
        Ok(())
    }

    fn check_arities(&self, tuple: &Tuple) -> Result<()> {
        let arity = tuple.arity();
        if arity == 0 || arity > self.max_arity {
            return Err(Error::Arity {
                arity,
                max: self.max_arity,
            });
        }
        for v in tuple.fields() {
            if let Value::Tuple(t) = v {
                // a nested empty tuple is a value like any other; only bound its width
                if t.arity() > self.max_arity {
                    return Err(Error::Arity {
                        arity: t.arity(),
                        max: self.max_arity,
                    });
                }
                if t.arity() > 0 {
                    self.check_arities(t)?;
                }
            }
        }
        Ok(())
    }

    /// Check a template before it is used.
    pub fn check_template(&self, template: &Template) -> Result<()> {
        if template.depth() > self.max_depth {
            return Err(Error::TooDeep {
                max: self.max_depth,
            });
        }
        let arity = template.arity();
        if arity == 0 || arity > self.max_arity {
            return Err(Error::Arity {
                arity,
                max: self.max_arity,
            });
        }
        self.check_patterns(template)
    }

    fn check_patterns(&self, template: &Template) -> Result<()> {
        for (i, p) in template.patterns().iter().enumerate() {
            match p {
                Pattern::Exact(v) if contains_nan(v) => {
                    return Err(Error::MalformedTemplate(format!(
                        "field {i}: an exact not-a-number float can never match; use a typed formal"
                    )))
                }
                Pattern::Exact(Value::Tuple(t)) if t.arity() > self.max_arity => {
                    return Err(Error::Arity {
                        arity: t.arity(),
                        max: self.max_arity,
                    });
                }
                Pattern::Tuple(t) => {
                    if t.arity() > self.max_arity {
                        return Err(Error::Arity {
                            arity: t.arity(),
                            max: self.max_arity,
                        });
                    }
                    self.check_patterns(t)?;
                }
                _ => {}
            }
        }
        let size = template
            .patterns()
            .iter()
            .map(|p| match p {
                Pattern::Exact(v) => crate::codec::value_len(v),
                _ => 1,
            })
            .sum::<usize>();
        if size > self.max_tuple_bytes {
            return Err(Error::MalformedTemplate(format!(
                "template of {size} bytes can never match a tuple within the limit of {} bytes",
                self.max_tuple_bytes
            )));
        }
        Ok(())
    }
}

fn contains_nan(v: &Value) -> bool {
    match v {
        Value::Float(f) => f.is_nan(),
        Value::Tuple(t) => t.fields().iter().any(contains_nan),
        _ => false,
    }
}

/// Build a [`Tuple`]: `tuple!("task", 7, 1.5, true)`. Each field is anything that converts
/// into a [`Value`].
#[macro_export]
macro_rules! tuple {
    ($($e:expr),* $(,)?) => {
        $crate::Tuple::new(vec![$($crate::Value::from($e)),*])
    };
}

/// Build a [`Template`]: `template!("task", ?Int, _)`.
///
/// `_` is a wildcard, `?Type` a typed formal (`?Null`, `?Bool`, `?Int`, `?Float`,
/// `?String`, `?Bytes`, `?Tuple`), and any other expression an exact value, a
/// [`Pattern`], a [`FieldType`] or a nested [`Template`].
#[macro_export]
macro_rules! template {
    (@acc [$($out:expr),*]) => {
        $crate::Template::new(vec![$($out),*])
    };
    (@acc [$($out:expr),*] _ $(, $($rest:tt)*)?) => {
        $crate::template!(@acc [$($out,)* $crate::Pattern::Any] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] ? $t:ident $(, $($rest:tt)*)?) => {
        $crate::template!(@acc [$($out,)* $crate::Pattern::Type($crate::FieldType::$t)] $($($rest)*)?)
    };
    (@acc [$($out:expr),*] $e:expr $(, $($rest:tt)*)?) => {
        $crate::template!(@acc [$($out,)* $crate::IntoPattern::into_pattern($e)] $($($rest)*)?)
    };
    ($($rest:tt)*) => {
        $crate::template!(@acc [] $($rest)*)
    };
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn macros_build_what_they_say() {
        let t = crate::tuple!("job", 7, 1.5, true, (), vec![1u8, 2]);
        assert_eq!(t.arity(), 6);
        let tpl = crate::template!("job", ?Int, _, ?Bool, ?Null, _);
        assert!(tpl.matches(&t));
        let neg = crate::template!("job", -7, _, _, _, _);
        assert!(!neg.matches(&t));
        assert!(crate::template!("job", 7, 1.5, true, (), _).matches(&t));
    }

    #[test]
    fn typed_formals_do_not_coerce() {
        let t = crate::tuple!(1);
        assert!(!crate::template!(1.0).matches(&t));
        assert!(!crate::template!(?Float).matches(&t));
        assert!(crate::template!(?Int).matches(&t));
    }

    #[test]
    fn nested_patterns() {
        let t = crate::tuple!("p", crate::tuple!(1, "x"));
        assert!(crate::template!("p", crate::template!(?Int, _)).matches(&t));
        assert!(crate::template!("p", crate::tuple!(1, "x")).matches(&t));
        assert!(!crate::template!("p", crate::template!(?Int)).matches(&t));
        assert!(crate::template!("p", ?Tuple).matches(&t));
    }

    #[test]
    fn limits_reject_bad_input() {
        let l = Limits {
            max_arity: 3,
            max_tuple_bytes: 64,
            max_depth: 2,
        };
        assert!(matches!(
            l.check_tuple(&Tuple::default()),
            Err(Error::Arity { arity: 0, .. })
        ));
        assert!(matches!(
            l.check_tuple(&crate::tuple!(1, 2, 3, 4)),
            Err(Error::Arity { .. })
        ));
        assert!(matches!(
            l.check_tuple(&crate::tuple!(vec![0u8; 100])),
            Err(Error::TooLarge { .. })
        ));
        let deep = crate::tuple!(crate::tuple!(crate::tuple!(1)));
        assert!(matches!(l.check_tuple(&deep), Err(Error::TooDeep { .. })));
        assert!(matches!(
            l.check_template(&crate::template!(f64::NAN)),
            Err(Error::MalformedTemplate(_))
        ));
        assert!(matches!(
            l.check_template(&Template::default()),
            Err(Error::Arity { .. })
        ));
        assert!(l
            .check_tuple(&crate::tuple!("ok", crate::tuple!(1)))
            .is_ok());
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..3).prop_map(Value::Int),
            any::<i64>().prop_map(Value::Int),
            prop_oneof![Just(0.0f64), Just(-0.0), Just(1.5), any::<f64>()].prop_map(Value::Float),
            "[ab]{0,2}".prop_map(Value::String),
            prop::collection::vec(any::<u8>(), 0..3).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(2, 12, 3, |inner| {
            prop::collection::vec(inner, 0..3).prop_map(|v| Value::Tuple(Tuple::new(v)))
        })
    }

    pub(crate) fn arb_tuple() -> impl Strategy<Value = Tuple> {
        prop::collection::vec(arb_value(), 1..5).prop_map(Tuple::new)
    }

    fn pattern_for(v: &Value, choice: u8) -> Pattern {
        match (choice % 4, v) {
            (0, _) => Pattern::Any,
            (1, _) => Pattern::Type(v.field_type()),
            (2, Value::Tuple(t)) => Pattern::Tuple(Template::new(
                t.fields()
                    .iter()
                    .map(|f| pattern_for(f, choice.wrapping_add(1)))
                    .collect(),
            )),
            _ => Pattern::Exact(v.clone()),
        }
    }

    fn no_nan(v: &Value) -> bool {
        !contains_nan(v)
    }

    proptest! {
        /// A template built from a tuple by generalizing fields (wildcard, its type, a nested
        /// pattern, or the value itself) always matches that tuple.
        #[test]
        fn generalized_template_matches(t in arb_tuple(), choices in prop::collection::vec(any::<u8>(), 5)) {
            prop_assume!(t.fields().iter().all(no_nan));
            let tpl = Template::new(t.fields().iter().zip(choices.iter().cycle()).map(|(v, c)| pattern_for(v, *c)).collect());
            prop_assert!(tpl.matches(&t));
        }

        /// Arity must match: adding or removing a field never matches.
        #[test]
        fn arity_must_match(t in arb_tuple()) {
            let mut longer = t.fields().iter().map(|_| Pattern::Any).collect::<Vec<_>>();
            longer.push(Pattern::Any);
            prop_assert!(!Template::new(longer.clone()).matches(&t));
            longer.truncate(t.arity() - 1);
            prop_assert!(!Template::new(longer).matches(&t));
        }

        /// The exact template of a tuple matches exactly the tuples equal to it.
        #[test]
        fn exact_template_is_equality(a in arb_tuple(), b in arb_tuple()) {
            prop_assume!(a.fields().iter().all(no_nan));
            prop_assert_eq!(Template::exact(&a).matches(&b), a == b);
        }

        /// A typed formal matches a field iff the types are equal.
        #[test]
        fn typed_formal_is_type_equality(v in arb_value(), w in arb_value()) {
            let tpl = Template::new(vec![Pattern::Type(v.field_type())]);
            prop_assert_eq!(tpl.matches(&Tuple::new(vec![w.clone()])), v.field_type() == w.field_type());
        }

        /// Matching is field-wise: a template matches iff every single-field template does.
        #[test]
        fn matching_is_fieldwise(t in arb_tuple(), choices in prop::collection::vec(any::<u8>(), 5), other in arb_tuple()) {
            prop_assume!(t.fields().iter().all(no_nan));
            prop_assume!(other.arity() == t.arity());
            let pats: Vec<Pattern> = t.fields().iter().zip(choices.iter().cycle()).map(|(v, c)| pattern_for(v, *c)).collect();
            let whole = Template::new(pats.clone()).matches(&other);
            let each = pats.iter().zip(other.fields()).all(|(p, v)| p.matches(v));
            prop_assert_eq!(whole, each);
        }

        /// Matching never panics on arbitrary input and the wildcard template matches all.
        #[test]
        fn wildcard_matches_everything(t in arb_tuple()) {
            let tpl = Template::new(vec![Pattern::Any; t.arity()]);
            prop_assert!(tpl.matches(&t));
        }
    }
}
