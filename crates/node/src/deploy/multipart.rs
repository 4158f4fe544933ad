//! A `multipart/form-data` body (RFC 7578), parsed by `multer` from the body already read
//! whole (a module is compiled from one buffer, and the body's size limit applies first).
//! Every malformed body is an [`Error::BadRequest`] saying what is wrong.

use bytes::Bytes;

use crate::error::{Error, Result};

/// The most parts a body may have.
pub const MAX_PARTS: usize = 32;

/// One part: its form field name, the file name if it is a file, and its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The `name` of its `Content-Disposition`.
    pub name: String,
    /// The `filename`, for a file field.
    pub filename: Option<String>,
    /// Its `Content-Type`, if given.
    pub content_type: Option<String>,
    /// Its bytes.
    pub data: Bytes,
}

impl Part {
    /// The content as UTF-8 text (trimmed), or a 400 naming the field.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.data)
            .map(str::trim)
            .map_err(|_| Error::BadRequest(format!("form field {:?} is not UTF-8 text", self.name)))
    }
}

/// Parses a `multipart/form-data` body with [`multer`]; `content_type` is the request's
/// `Content-Type` header, which names the boundary.
pub async fn parse(content_type: Option<&str>, body: Bytes) -> Result<Vec<Part>> {
    let content_type = content_type.ok_or_else(|| {
        Error::BadRequest("a multipart/form-data body is required (no Content-Type)".into())
    })?;
    let boundary = multer::parse_boundary(content_type).map_err(|_| {
        Error::BadRequest(format!(
            "a multipart/form-data body with a boundary is required, not {content_type:?}"
        ))
    })?;
    let bad = |e: multer::Error| Error::BadRequest(format!("multipart body: {e}"));
    let stream = futures::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut form = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if parts.len() == MAX_PARTS {
            return Err(Error::BadRequest(format!(
                "multipart body: more than {MAX_PARTS} parts"
            )));
        }
        // RFC 7578: every part is `form-data` (multer reads the name from any disposition).
        let disposition = field
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let kind = disposition.split(';').next().unwrap_or_default().trim();
        if !kind.eq_ignore_ascii_case("form-data") {
            return Err(Error::BadRequest(
                "multipart body: a part is not form-data".into(),
            ));
        }
        let name = field.name().map(str::to_owned).ok_or_else(|| {
            Error::BadRequest("multipart body: a part has no Content-Disposition name".into())
        })?;
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(ToString::to_string);
        let data = field.bytes().await.map_err(bad)?;
        parts.push(Part {
            name,
            filename,
            content_type,
            data,
        });
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &[u8])], b: &str) -> Bytes {
        let mut out = Vec::new();
        for (name, file, data) in parts {
            out.extend_from_slice(format!("--{b}\r\n").as_bytes());
            match file {
                Some(f) => out.extend_from_slice(
                    format!(
                        "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                    )
                    .as_bytes(),
                ),
                None => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
                ),
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{b}--\r\n").as_bytes());
        out.into()
    }

    #[tokio::test]
    async fn parses_what_curl_sends() {
        let b = "------------------------abc123";
        let wasm = b"\0asm\r\n--not-the-boundary\r\n\x01\x00";
        let raw = body(
            &[
                ("namespace", None, &b"default"[..]),
                ("actor_type", None, &b"counter"[..]),
                ("wasm", Some("counter.wasm"), &wasm[..]),
            ],
            b,
        );
        let ct = format!("multipart/form-data; boundary={b}");
        let parts = parse(Some(&ct), raw).await.unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name, "namespace");
        assert_eq!(parts[0].text().unwrap(), "default");
        assert_eq!(parts[1].text().unwrap(), "counter");
        assert_eq!(parts[2].filename.as_deref(), Some("counter.wasm"));
        assert_eq!(&parts[2].data[..], &wasm[..]);
    }

    #[tokio::test]
    async fn an_empty_part_and_a_quoted_boundary() {
        let raw = body(&[("config", None, &b""[..])], "xyz");
        let parts = parse(Some("multipart/form-data; boundary=\"xyz\""), raw)
            .await
            .unwrap();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].data.is_empty());
    }

    #[tokio::test]
    async fn garbage_is_a_bad_request() {
        let one = body(&[("a", None, &b"x"[..])], "b");
        for ct in [
            None,
            Some("application/json"),
            Some("multipart/form-data"),
            Some("multipart/form-data; boundary="),
        ] {
            let e = parse(ct, one.clone()).await.unwrap_err();
            assert_eq!(e.kind(), "bad_request", "{ct:?}");
        }
        for raw in [
            &b""[..],
            b"hello",
            b"--b\r\nno-colon\r\n\r\nx\r\n--b--",
            b"--b\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nnever closed",
            b"--b\r\nContent-Disposition: attachment; name=\"a\"\r\n\r\nx\r\n--b--",
            b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n--b--",
            b"--bjunk\r\n",
        ] {
            let e = parse(
                Some("multipart/form-data; boundary=b"),
                Bytes::from_static(raw),
            )
            .await
            .unwrap_err();
            assert_eq!(e.kind(), "bad_request", "{raw:?}");
        }
    }
}
