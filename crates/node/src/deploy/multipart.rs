//! A `multipart/form-data` body (RFC 7578), parsed from memory: the deploy upload is read
//! whole anyway (a module is compiled from one buffer), so a streaming parser would buy
//! nothing here. Every malformed body is a [`Error::BadRequest`] saying what is wrong.

use bytes::Bytes;

use crate::error::{Error, Result};

/// The most parts a body may have.
pub const MAX_PARTS: usize = 32;
/// The longest header block of one part, in bytes.
pub const MAX_PART_HEADERS: usize = 8 * 1024;

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

/// The boundary of a `multipart/form-data` content type, or a 400.
pub fn boundary(content_type: Option<&str>) -> Result<String> {
    let content_type = content_type.ok_or_else(|| {
        Error::BadRequest("a multipart/form-data body is required (no Content-Type)".into())
    })?;
    let mut params = content_type.split(';');
    let mime = params.next().unwrap_or_default().trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return Err(Error::BadRequest(format!(
            "a multipart/form-data body is required, not {mime:?}"
        )));
    }
    for p in params {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim().trim_matches('"');
            if v.is_empty() || v.len() > 70 {
                return Err(Error::BadRequest(
                    "the multipart boundary must be 1 to 70 characters".into(),
                ));
            }
            return Ok(v.to_owned());
        }
    }
    Err(Error::BadRequest(
        "the multipart/form-data Content-Type has no boundary".into(),
    ))
}

/// The first index of `needle` in `hay` at or after `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= hay.len() {
        match hay[i..].iter().position(|b| *b == first) {
            None => return None,
            Some(off) => {
                let at = i + off;
                if at + needle.len() > hay.len() {
                    return None;
                }
                if &hay[at..at + needle.len()] == needle {
                    return Some(at);
                }
                i = at + 1;
            }
        }
    }
    None
}

/// Parses `body` with `boundary` into its parts.
pub fn parse(boundary: &str, body: &Bytes) -> Result<Vec<Part>> {
    let bad = |m: &str| Error::BadRequest(format!("multipart body: {m}"));
    let dash = format!("--{boundary}");
    let delimiter = format!("\r\n--{boundary}");
    // The first delimiter may open the body or follow a preamble.
    let mut pos = if body.starts_with(dash.as_bytes()) {
        dash.len()
    } else {
        find(body, delimiter.as_bytes(), 0).ok_or_else(|| bad("no boundary line"))?
            + delimiter.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then CRLF.
        let line_end = find(body, b"\r\n", pos).ok_or_else(|| bad("truncated after a boundary"))?;
        if body[pos..line_end]
            .iter()
            .any(|b| *b != b' ' && *b != b'\t')
        {
            return Err(bad("junk after a boundary"));
        }
        let headers_start = line_end + 2;
        let (headers, data_start) = if body[headers_start..].starts_with(b"\r\n") {
            ("", headers_start + 2)
        } else {
            let end = find(body, b"\r\n\r\n", headers_start)
                .ok_or_else(|| bad("a part's headers do not end"))?;
            if end - headers_start > MAX_PART_HEADERS {
                return Err(bad("a part's headers are too long"));
            }
            let headers = std::str::from_utf8(&body[headers_start..end])
                .map_err(|_| bad("a part's headers are not UTF-8"))?;
            (headers, end + 4)
        };
        let data_end = find(body, delimiter.as_bytes(), data_start)
            .ok_or_else(|| bad("no closing boundary"))?;
        if parts.len() == MAX_PARTS {
            return Err(bad(&format!("more than {MAX_PARTS} parts")));
        }
        parts.push(part(headers, body.slice(data_start..data_end))?);
        pos = data_end + delimiter.len();
    }
}

fn part(headers: &str, data: Bytes) -> Result<Part> {
    let mut name = None;
    let mut filename = None;
    let mut content_type = None;
    for line in headers.split("\r\n").filter(|l| !l.is_empty()) {
        let Some((k, v)) = line.split_once(':') else {
            return Err(Error::BadRequest(format!(
                "multipart body: malformed part header {line:?}"
            )));
        };
        let k = k.trim();
        if k.eq_ignore_ascii_case("content-disposition") {
            let mut params = split_params(v);
            let kind = params.next().unwrap_or_default();
            if !kind.trim().eq_ignore_ascii_case("form-data") {
                return Err(Error::BadRequest(
                    "multipart body: a part is not form-data".into(),
                ));
            }
            for p in params {
                let Some((pk, pv)) = p.split_once('=') else {
                    continue;
                };
                let pv = unquote(pv.trim());
                match pk.trim().to_ascii_lowercase().as_str() {
                    "name" => name = Some(pv),
                    "filename" => filename = Some(pv),
                    _ => {}
                }
            }
        } else if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(v.trim().to_owned());
        }
    }
    let name = name.ok_or_else(|| {
        Error::BadRequest("multipart body: a part has no Content-Disposition name".into())
    })?;
    Ok(Part {
        name,
        filename,
        content_type,
        data,
    })
}

/// Splits at `;` outside quotes.
fn split_params(v: &str) -> impl Iterator<Item = &str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in v.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                out.push(&v[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&v[start..]);
    out.into_iter()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => inner.replace("\\\"", "\"").replace("\\\\", "\\"),
        None => v.to_owned(),
    }
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

    #[test]
    fn parses_what_curl_sends() {
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
        let parts = parse(&boundary(Some(&ct)).unwrap(), &raw).unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name, "namespace");
        assert_eq!(parts[0].text().unwrap(), "default");
        assert_eq!(parts[1].text().unwrap(), "counter");
        assert_eq!(parts[2].filename.as_deref(), Some("counter.wasm"));
        assert_eq!(&parts[2].data[..], &wasm[..]);
    }

    #[test]
    fn an_empty_part_and_a_quoted_boundary() {
        let raw = body(&[("config", None, &b""[..])], "xyz");
        let parts = parse(
            &boundary(Some("multipart/form-data; boundary=\"xyz\"")).unwrap(),
            &raw,
        )
        .unwrap();
        assert_eq!(parts.len(), 1);
        assert!(parts[0].data.is_empty());
    }

    #[test]
    fn garbage_is_a_bad_request() {
        for ct in [
            None,
            Some("application/json"),
            Some("multipart/form-data"),
            Some("multipart/form-data; boundary="),
        ] {
            assert_eq!(boundary(ct).unwrap_err().kind(), "bad_request", "{ct:?}");
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
            let e = parse("b", &Bytes::from_static(raw)).unwrap_err();
            assert_eq!(e.kind(), "bad_request", "{raw:?}");
        }
    }
}
