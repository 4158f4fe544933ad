//! The stable binary encoding of tuples used by the durable backends, and the index key of
//! a first field.
//!
//! Layout: a version byte (1), then a tuple body: `u32` field count (little endian) and the
//! fields. A field is a tag byte and a payload: null 0; false 1; true 2; int 3 + 8 bytes;
//! float 4 + 8 bytes (IEEE bits); string 5 + `u32` length + UTF-8; bytes 6 + `u32` length +
//! bytes; tuple 7 + tuple body.

use crate::{Error, Pattern, Result, Template, Tuple, Value};

const VERSION: u8 = 1;
/// Decoding refuses nesting deeper than this, whatever the configured limit.
const MAX_DECODE_DEPTH: usize = 64;

/// Encoded size of a tuple, without encoding it.
pub fn encoded_len(t: &Tuple) -> usize {
    1 + body_len(t)
}

fn body_len(t: &Tuple) -> usize {
    4 + t.fields().iter().map(value_len).sum::<usize>()
}

/// Encoded size of one field.
pub fn value_len(v: &Value) -> usize {
    1 + match v {
        Value::Null | Value::Bool(_) => 0,
        Value::Int(_) | Value::Float(_) => 8,
        Value::String(s) => 4 + s.len(),
        Value::Bytes(b) => 4 + b.len(),
        Value::Tuple(t) => body_len(t),
    }
}

/// Encode a tuple. Sizes above `u32::MAX` cannot occur: the size limit is checked first.
pub fn encode(t: &Tuple) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(t));
    out.push(VERSION);
    encode_body(t, &mut out);
    out
}

fn put_len(n: usize, out: &mut Vec<u8>) {
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
}

fn encode_body(t: &Tuple, out: &mut Vec<u8>) {
    put_len(t.arity(), out);
    for v in t.fields() {
        match v {
            Value::Null => out.push(0),
            Value::Bool(false) => out.push(1),
            Value::Bool(true) => out.push(2),
            Value::Int(i) => {
                out.push(3);
                out.extend_from_slice(&i.to_le_bytes());
            }
            Value::Float(f) => {
                out.push(4);
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
            Value::String(s) => {
                out.push(5);
                put_len(s.len(), out);
                out.extend_from_slice(s.as_bytes());
            }
            Value::Bytes(b) => {
                out.push(6);
                put_len(b.len(), out);
                out.extend_from_slice(b);
            }
            Value::Tuple(t) => {
                out.push(7);
                encode_body(t, out);
            }
        }
    }
}

/// Decode a tuple encoded by [`encode`].
pub fn decode(bytes: &[u8]) -> Result<Tuple> {
    let mut r = Reader { bytes, pos: 0 };
    let version = r.u8()?;
    if version != VERSION {
        return Err(Error::Corrupt(format!(
            "unknown encoding version {version}"
        )));
    }
    let t = r.body(0)?;
    if r.pos != bytes.len() {
        return Err(Error::Corrupt("trailing bytes".into()));
    }
    Ok(t)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or_else(|| Error::Corrupt("truncated".into()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<usize> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b) as usize)
    }

    fn u64(&mut self) -> Result<u64> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn body(&mut self, depth: usize) -> Result<Tuple> {
        if depth > MAX_DECODE_DEPTH {
            return Err(Error::Corrupt("nesting too deep".into()));
        }
        let n = self.u32()?;
        // every field takes at least one byte: refuse counts the input cannot hold
        if n > self.bytes.len() - self.pos {
            return Err(Error::Corrupt("field count exceeds input".into()));
        }
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let v = match self.u8()? {
                0 => Value::Null,
                1 => Value::Bool(false),
                2 => Value::Bool(true),
                3 => Value::Int(self.u64()? as i64),
                4 => Value::Float(f64::from_bits(self.u64()?)),
                5 => {
                    let len = self.u32()?;
                    let s = self.take(len)?;
                    Value::String(
                        std::str::from_utf8(s)
                            .map_err(|_| Error::Corrupt("invalid utf-8".into()))?
                            .to_owned(),
                    )
                }
                6 => {
                    let len = self.u32()?;
                    Value::Bytes(self.take(len)?.to_vec())
                }
                7 => Value::Tuple(self.body(depth + 1)?),
                tag => return Err(Error::Corrupt(format!("unknown field tag {tag}"))),
            };
            fields.push(v);
        }
        Ok(Tuple::new(fields))
    }
}

/// The index key of a field: equal values have equal keys (so `0.0` and `-0.0` share one);
/// long strings and bytes are hashed, so different values may share a key and every
/// candidate found by key is matched again in full.
pub fn index_key(v: &Value) -> String {
    match v {
        Value::Null => "n".into(),
        Value::Bool(b) => if *b { "b1" } else { "b0" }.into(),
        Value::Int(i) => format!("i{i}"),
        Value::Float(f) => {
            let f = if *f == 0.0 { 0.0 } else { *f };
            format!("f{:x}", f.to_bits())
        }
        Value::String(s) if s.len() <= 48 && !s.contains('\u{0}') => format!("s{s}"),
        Value::String(s) => format!("h{:x}", fnv1a(s.as_bytes())),
        Value::Bytes(b) if b.len() <= 24 => {
            let mut k = String::with_capacity(1 + 2 * b.len());
            k.push('x');
            for byte in b {
                k.push_str(&format!("{byte:02x}"));
            }
            k
        }
        Value::Bytes(b) => format!("y{:x}", fnv1a(b)),
        Value::Tuple(_) => "t".into(),
    }
}

/// The index key of a tuple's first field.
pub fn tuple_key(t: &Tuple) -> Option<String> {
    t.get(0).map(index_key)
}

/// The index key a template pins its first field to, if it does.
pub fn template_key(t: &Template) -> Option<String> {
    match t.patterns().first() {
        Some(Pattern::Exact(v)) => Some(index_key(v)),
        _ => None,
    }
}

/// FNV-1a, 64 bit: stable across processes and Rust versions.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn roundtrip(t in crate::tuple::tests::arb_tuple()) {
            let bytes = encode(&t);
            prop_assert_eq!(bytes.len(), encoded_len(&t));
            let back = decode(&bytes).expect("decodes");
            // compare bitwise so NaN payloads count too
            prop_assert_eq!(encode(&back), bytes);
        }

        #[test]
        fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn equal_values_equal_keys(v in crate::tuple::tests::arb_value(), w in crate::tuple::tests::arb_value()) {
            if v == w {
                prop_assert_eq!(index_key(&v), index_key(&w));
            }
        }
    }
}
