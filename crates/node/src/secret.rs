//! Keeping secrets out of config dumps, API responses and logs.
//!
//! [`Secret`] holds a value that never prints: `Debug`, `Display` and `Serialize` all show
//! `********`. [`mask_secrets`] scrubs free text (error messages, log lines) of values that
//! follow a secret-looking key and of bearer tokens.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What a masked value looks like.
pub const MASK: &str = "********";

/// A secret string: readable only through [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Call only where it is used (signing, verifying).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(MASK)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(MASK)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// The shortest text after `Bearer ` taken for a credential (unless it has a `.`, as a
/// JWT does): shorter words are prose.
const MIN_BEARER_LEN: usize = 8;

/// Key fragments whose values are masked.
const SECRET_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "credential",
    "authorization",
];

/// Masks values that follow secret-looking keys (`password=x`, `"api_key": "x"`,
/// `secret: x`) and bearer tokens in free text.
pub fn mask_secrets(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        let lower = rest.to_ascii_lowercase();
        // The earliest secret-looking key or bearer marker.
        let hit = SECRET_KEYS
            .iter()
            .chain(std::iter::once(&"bearer "))
            .filter_map(|k| lower.find(k).map(|at| (at, k.len())))
            .min();
        let Some((at, len)) = hit else {
            out.push_str(rest);
            break;
        };
        let after_key = at + len;
        out.push_str(&rest[..after_key]);
        let tail = &rest[after_key..];
        let bearer = lower[at..].starts_with("bearer ");
        // Skip the rest of the key word (`password_hash`), then quotes and the separator.
        // After `Bearer ` comes the value itself.
        let sep_len = if bearer {
            0
        } else {
            tail.char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '-'))
                .map(|(i, _)| i)
                .unwrap_or(tail.len())
        };
        let (word_rest, tail) = tail.split_at(sep_len);
        out.push_str(word_rest);
        let sep: String = tail
            .chars()
            .take_while(|c| matches!(c, '"' | '\'' | ':' | '=' | ' '))
            .collect();
        if !bearer && !sep.contains([':', '=']) {
            rest = tail;
            continue;
        }
        out.push_str(&sep);
        let mut value = &tail[sep.len()..];
        let mut scheme = bearer;
        if !bearer && value.len() >= 7 && value[..7].eq_ignore_ascii_case("bearer ") {
            // `Authorization: Bearer <token>`: keep the scheme, mask the token.
            out.push_str(&value[..7]);
            value = &value[7..];
            scheme = true;
        }
        let end = if scheme {
            // A bearer credential is token68 text; prose after the word `Bearer` (as in
            // `(Bearer token)`) is not a value and stays readable.
            let end = value
                .find(|c: char| !(c.is_ascii_alphanumeric() || "-._~+/=".contains(c)))
                .unwrap_or(value.len());
            let token = &value[..end];
            if token.len() >= MIN_BEARER_LEN || token.contains('.') {
                end
            } else {
                0
            }
        } else {
            value
                .char_indices()
                .find(|(_, c)| c.is_whitespace() || matches!(c, '"' | '\'' | ',' | '&' | ';' | '}'))
                .map(|(i, _)| i)
                .unwrap_or(value.len())
        };
        if end > 0 {
            out.push_str(MASK);
        }
        rest = &value[end..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "******** ********");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"********\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn masks_values_after_secret_keys_and_bearer_tokens() {
        let text = r#"db password=hunter2 user=bob {"api_key": "abc123", "n": 1} jwt_secret = "s3" Authorization: Bearer eyJx.y.z end"#;
        let masked = mask_secrets(text);
        for leaked in ["hunter2", "abc123", "s3\"", "eyJx"] {
            assert!(!masked.contains(leaked), "{leaked} leaked in {masked}");
        }
        assert!(masked.contains("user=bob"), "{masked}");
        assert!(masked.contains("\"n\": 1"), "{masked}");
        assert!(masked.contains("end"), "{masked}");
    }

    #[test]
    fn masks_values_not_words() {
        let text = "unauthenticated: missing authorization header (Bearer token)";
        assert_eq!(mask_secrets(text), text);
        assert_eq!(
            mask_secrets("got Bearer abcdefghijkl) and bearer a.b.c"),
            "got Bearer ********) and bearer ********"
        );
        assert_eq!(
            mask_secrets("authorization: Bearer eyJhbGciOi.x.y"),
            "authorization: Bearer ********"
        );
    }

    #[test]
    fn leaves_plain_text_alone() {
        let text = "the tokenizer ran; no secrets here";
        assert_eq!(mask_secrets(text), text);
    }
}
