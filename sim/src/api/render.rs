//! Response encodings PD uses. Most handlers go through `unrolled/render` with `IndentJSON` (two
//! spaces, trailing newline, `application/json; charset=UTF-8`, HTML characters escaped as Go's
//! `encoding/json` does); region handlers write easyjson bytes with `rd.Data`, i.e. compact JSON as
//! `application/octet-stream` (`pkg/response/region.go`); malformed input gets the errcode JSON of
//! `pkg/utils/apiutil` with the `TiDB-Error-Code` header; the redirector's no-leader error is Go's
//! `http.Error` (`pkg/utils/apiutil/serverapi/middleware.go`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// Content type of PD's indented JSON replies.
pub const JSON_CONTENT_TYPE: &str = "application/json; charset=UTF-8";
/// Content type of PD's region replies.
pub const OCTET_CONTENT_TYPE: &str = "application/octet-stream";

/// Go's `encoding/json` escapes `<`, `>` and `&` everywhere; they only occur inside strings in JSON,
/// so replacing them in the encoded bytes is exact.
fn escape_html(bytes: Vec<u8>) -> Vec<u8> {
    if !bytes.iter().any(|b| matches!(b, b'<' | b'>' | b'&')) {
        return bytes;
    }
    let mut out = Vec::with_capacity(bytes.len() + 16);
    for b in bytes {
        match b {
            b'<' => out.extend_from_slice(b"\\u003c"),
            b'>' => out.extend_from_slice(b"\\u003e"),
            b'&' => out.extend_from_slice(b"\\u0026"),
            _ => out.push(b),
        }
    }
    out
}

/// Indented JSON bytes with a trailing newline, as `json.MarshalIndent(v, "", "  ")` plus render's `\n`.
pub fn indent_bytes<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut buf = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"  ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, formatter);
    if value.serialize(&mut ser).is_err() {
        buf = b"null".to_vec();
    }
    let mut buf = escape_html(buf);
    buf.push(b'\n');
    buf
}

fn with_type(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// An indented JSON reply.
pub fn json<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    with_type(status, JSON_CONTENT_TYPE, indent_bytes(value))
}

/// A JSON string literal reply, PD's form for success and error messages.
pub fn message(status: StatusCode, text: &str) -> Response {
    json(status, text)
}

/// A compact JSON reply with `application/octet-stream`, as region handlers send.
pub fn region_json<T: Serialize + ?Sized>(value: &T) -> Response {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    with_type(StatusCode::OK, OCTET_CONTENT_TYPE, escape_html(body))
}

/// A region reply encoded already (see [`super::views::encode_regions`]), as `application/octet-stream`.
pub fn region_bytes(body: Vec<u8>) -> Response {
    with_type(StatusCode::OK, OCTET_CONTENT_TYPE, body)
}

#[derive(Serialize)]
struct ErrCode<'a> {
    code: &'static str,
    msg: &'a str,
    data: serde_json::Map<String, serde_json::Value>,
}

/// `400` for malformed input: errcode JSON plus the `TiDB-Error-Code: input` header.
pub fn input_error(msg: &str) -> Response {
    let mut resp = json(StatusCode::BAD_REQUEST, &ErrCode { code: "input", msg, data: Default::default() });
    resp.headers_mut().insert("TiDB-Error-Code", HeaderValue::from_static("input"));
    resp
}

/// Go's `http.Error`: plain text with a trailing newline.
pub fn http_error(status: StatusCode, text: &str) -> Response {
    let mut resp = with_type(status, "text/plain; charset=utf-8", format!("{text}\n").into_bytes());
    resp.headers_mut().insert("X-Content-Type-Options", HeaderValue::from_static("nosniff"));
    resp
}

/// The text of Go's `strconv.ParseUint` error for `input`.
pub fn parse_uint_error(input: &str) -> String {
    let reason = if !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit()) {
        "value out of range"
    } else {
        "invalid syntax"
    };
    format!("strconv.ParseUint: parsing {}: {reason}", go_quote(input))
}

/// Go's `strconv.Quote` for printable input.
fn go_quote(input: &str) -> String {
    serde_json::to_string(input).unwrap_or_else(|_| format!("\"{input}\""))
}

/// Parses a path id as PD does (`strconv.ParseUint(s, 10, 64)`); the error is Go's error text.
pub fn parse_id(input: &str) -> Result<u64, String> {
    if input.starts_with('+') {
        return Err(parse_uint_error(input));
    }
    input.parse::<u64>().map_err(|_| parse_uint_error(input))
}

/// Splits a raw query string into key/value pairs, decoding `+` and `%XX`.
pub fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                match std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Go's `quoteChar` in `encoding/json`'s scanner errors: `'x'`, `'\''`, `'"'`, `'\n'`.
fn go_quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".into(),
        b'"' => "'\"'".into(),
        _ => {
            let quoted = go_quote(&char::from(c).to_string());
            format!("'{}'", &quoted[1..quoted.len() - 1])
        }
    }
}

/// The error `json.Unmarshal` reports for a body that is not valid JSON, following the messages of
/// Go's `encoding/json` scanner (`scanner.go`), e.g. `invalid character 'x' looking for beginning
/// of value` or `unexpected end of JSON input`. Valid JSON gives `None`.
pub fn go_json_syntax_error(body: &[u8]) -> Option<String> {
    let mut scanner = GoScanner { data: body, pos: 0 };
    match scanner.document() {
        Ok(()) => None,
        Err(ScanError::Eof) => Some("unexpected end of JSON input".into()),
        Err(ScanError::Invalid(c, context)) => Some(format!("invalid character {} {context}", go_quote_char(c))),
    }
}

enum ScanError {
    Eof,
    Invalid(u8, String),
}

struct GoScanner<'a> {
    data: &'a [u8],
    pos: usize,
}

impl GoScanner<'_> {
    fn peek(&self) -> Result<u8, ScanError> {
        self.data.get(self.pos).copied().ok_or(ScanError::Eof)
    }

    fn next(&mut self) -> Result<u8, ScanError> {
        let c = self.peek()?;
        self.pos += 1;
        Ok(c)
    }

    fn skip_ws(&mut self) {
        while matches!(self.data.get(self.pos), Some(b' ' | b'\t' | b'\r' | b'\n')) {
            self.pos += 1;
        }
    }

    fn invalid(c: u8, context: &str) -> ScanError {
        ScanError::Invalid(c, context.to_string())
    }

    fn document(&mut self) -> Result<(), ScanError> {
        self.skip_ws();
        self.value()?;
        self.skip_ws();
        match self.data.get(self.pos) {
            None => Ok(()),
            Some(&c) => Err(Self::invalid(c, "after top-level value")),
        }
    }

    fn value(&mut self) -> Result<(), ScanError> {
        self.skip_ws();
        match self.next()? {
            b'{' => self.object(),
            b'[' => self.array(),
            b'"' => self.string(),
            b'-' => {
                let c = self.next()?;
                if !c.is_ascii_digit() {
                    return Err(Self::invalid(c, "in numeric literal"));
                }
                self.number_rest(c)
            }
            c @ b'0'..=b'9' => self.number_rest(c),
            b't' => self.literal(b"rue", "true"),
            b'f' => self.literal(b"alse", "false"),
            b'n' => self.literal(b"ull", "null"),
            c => Err(Self::invalid(c, "looking for beginning of value")),
        }
    }

    fn literal(&mut self, rest: &[u8], word: &str) -> Result<(), ScanError> {
        for &want in rest {
            let c = self.next()?;
            if c != want {
                return Err(Self::invalid(c, &format!("in literal {word} (expecting {})", go_quote_char(want))));
            }
        }
        Ok(())
    }

    fn number_rest(&mut self, first: u8) -> Result<(), ScanError> {
        if first != b'0' {
            while self.data.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
        }
        if self.data.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            let c = self.next()?;
            if !c.is_ascii_digit() {
                return Err(Self::invalid(c, "after decimal point in numeric literal"));
            }
            while self.data.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
        }
        if matches!(self.data.get(self.pos), Some(b'e' | b'E')) {
            self.pos += 1;
            let mut c = self.next()?;
            if c == b'+' || c == b'-' {
                c = self.next()?;
            }
            if !c.is_ascii_digit() {
                return Err(Self::invalid(c, "in exponent of numeric literal"));
            }
            while self.data.get(self.pos).is_some_and(u8::is_ascii_digit) {
                self.pos += 1;
            }
        }
        Ok(())
    }

    fn string(&mut self) -> Result<(), ScanError> {
        loop {
            match self.next()? {
                b'"' => return Ok(()),
                b'\\' => match self.next()? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                    b'u' => {
                        for _ in 0..4 {
                            let c = self.next()?;
                            if !c.is_ascii_hexdigit() {
                                return Err(Self::invalid(c, "in \\u hexadecimal character escape"));
                            }
                        }
                    }
                    c => return Err(Self::invalid(c, "in string escape code")),
                },
                c if c < 0x20 => return Err(Self::invalid(c, "in string literal")),
                _ => {}
            }
        }
    }

    fn object(&mut self) -> Result<(), ScanError> {
        self.skip_ws();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            match self.next()? {
                b'"' => self.string()?,
                c => return Err(Self::invalid(c, "looking for beginning of object key string")),
            }
            self.skip_ws();
            match self.next()? {
                b':' => {}
                c => return Err(Self::invalid(c, "after object key")),
            }
            self.value()?;
            self.skip_ws();
            match self.next()? {
                b',' => {}
                b'}' => return Ok(()),
                c => return Err(Self::invalid(c, "after object key:value pair")),
            }
        }
    }

    fn array(&mut self) -> Result<(), ScanError> {
        self.skip_ws();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.value()?;
            self.skip_ws();
            match self.next()? {
                b',' => {}
                b']' => return Ok(()),
                c => return Err(Self::invalid(c, "after array element")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::go_json_syntax_error as err;

    #[test]
    fn go_json_errors() {
        assert_eq!(err(b"").as_deref(), Some("unexpected end of JSON input"));
        assert_eq!(err(b"{").as_deref(), Some("unexpected end of JSON input"));
        assert_eq!(err(b"x").as_deref(), Some("invalid character 'x' looking for beginning of value"));
        assert_eq!(err(b"{x").as_deref(), Some("invalid character 'x' looking for beginning of object key string"));
        assert_eq!(err(b"{\"a\" 1}").as_deref(), Some("invalid character '1' after object key"));
        assert_eq!(err(b"{\"a\":1 2}").as_deref(), Some("invalid character '2' after object key:value pair"));
        assert_eq!(err(b"[1 2]").as_deref(), Some("invalid character '2' after array element"));
        assert_eq!(err(b"{} x").as_deref(), Some("invalid character 'x' after top-level value"));
        assert_eq!(err(b"tru ").as_deref(), Some("invalid character ' ' in literal true (expecting 'e')"));
        assert_eq!(
            err(b"{'a':1}").as_deref(),
            Some("invalid character '\\'' looking for beginning of object key string")
        );
        assert_eq!(err(b"-x").as_deref(), Some("invalid character 'x' in numeric literal"));
        assert_eq!(err(b"{\"a\":1.}").as_deref(), Some("invalid character '}' after decimal point in numeric literal"));
        assert_eq!(err(b"{\"a\":\"\n\"}").as_deref(), Some("invalid character '\\n' in string literal"));
        assert_eq!(err(b"{\"a\":[1,{\"b\":null}],\"c\":-1.5e+3}"), None);
    }
}
