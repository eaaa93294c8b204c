//! Go's `json.RawMessage` and `json.Unmarshal` into one Go value: raw JSON that the scanner already accepted is
//! walked without building a tree (no recursion, however deep), and a value is stored into a Go type with the
//! `UnmarshalTypeError` Go would give ("json: cannot unmarshal string into Go value of type bool").

use super::golang::{base64_decode, unquote};
use super::scanner::check_valid;
use super::GatewayError;

/// The first byte of a valid JSON value names its kind, and its word in Go's type errors.
pub(crate) fn kind_word(raw: &[u8]) -> &'static str {
    match raw.first() {
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b'"') => "string",
        Some(b't' | b'f') => "bool",
        Some(b'n') => "null",
        _ => "number",
    }
}

pub(crate) fn is_null(raw: &[u8]) -> bool {
    raw == b"null"
}

pub(crate) fn type_error(value: impl Into<String>, go_type: impl Into<String>) -> GatewayError {
    GatewayError::Type { value: value.into(), go_type: go_type.into() }
}

fn skip_space(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\r' | b'\n') {
        i += 1;
    }
    i
}

/// The end of the valid JSON value that starts at `i`.
fn skip_value(s: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    let mut in_string = false;
    while i < s.len() {
        let c = s[i];
        i += 1;
        if in_string {
            match c {
                b'\\' => i += 1,
                b'"' => {
                    in_string = false;
                    if depth == 0 {
                        return i;
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 0 {
                    return i - 1;
                }
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            b',' | b':' | b' ' | b'\t' | b'\r' | b'\n' if depth == 0 => return i - 1,
            _ => {}
        }
    }
    i
}

/// The members of a raw array or object, in order: (key literal or empty, value).
fn members(raw: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let object = raw.first() == Some(&b'{');
    let mut i = skip_space(raw, 1);
    while i < raw.len() && !matches!(raw[i], b'}' | b']') {
        let mut key: &[u8] = &[];
        if object {
            let end = skip_value(raw, i);
            key = &raw[i..end];
            i = skip_space(raw, end) + 1; // the ':'
            i = skip_space(raw, i);
        }
        let end = skip_value(raw, i);
        out.push((key, &raw[i..end]));
        i = skip_space(raw, end);
        if raw.get(i) == Some(&b',') {
            i = skip_space(raw, i + 1);
        }
    }
    out
}

/// An object's members: unquoted key, raw value.
pub(crate) type Fields<'a> = Vec<(Vec<u8>, &'a [u8])>;

/// `json.Unmarshal(raw, &map[string]json.RawMessage{})`: keys unquoted, the last of equal keys wins on lookup.
pub(crate) fn object_fields(raw: &[u8]) -> Result<Fields<'_>, GatewayError> {
    match raw.first() {
        Some(b'{') => Ok(members(raw).into_iter().map(|(k, v)| (unquote(k), v)).collect()),
        Some(b'n') => Ok(Vec::new()),
        _ => Err(type_error(kind_word(raw), "map[string]json.RawMessage")),
    }
}

/// `json.Unmarshal(raw, &[]json.RawMessage{})`; `None` for null.
pub(crate) fn array_elements(raw: &[u8]) -> Result<Option<Vec<&[u8]>>, GatewayError> {
    match raw.first() {
        Some(b'[') => Ok(Some(members(raw).into_iter().map(|(_, v)| v).collect())),
        Some(b'n') => Ok(None),
        _ => Err(type_error(kind_word(raw), "[]json.RawMessage")),
    }
}

/// A Go number type a JSON value can be stored into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Number {
    Int(u32),
    Uint(u32),
    Float(u32),
}

/// A number as stored: integers as their bits (two's complement), floats as f64.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Stored {
    Int(i64),
    Uint(u64),
    Float(f64),
}

fn parse_int(s: &str) -> Option<i128> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || digits.len() > 30 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn store_number(text: &str, target: Number, go_type: &str) -> Result<Stored, GatewayError> {
    let bad = || type_error(format!("number {text}"), go_type);
    match target {
        Number::Int(bits) => {
            let n = parse_int(text).ok_or_else(bad)?;
            let max = (1i128 << (bits - 1)) - 1;
            if n > max || n < -max - 1 {
                return Err(bad());
            }
            i64::try_from(n).map(Stored::Int).map_err(|_| bad())
        }
        Number::Uint(bits) => {
            if text.starts_with('-') {
                return Err(bad());
            }
            let n = parse_int(text).ok_or_else(bad)?;
            if n >= 1i128 << bits {
                return Err(bad());
            }
            u64::try_from(n).map(Stored::Uint).map_err(|_| bad())
        }
        Number::Float(bits) => {
            let f: f64 = text.parse().map_err(|_| bad())?;
            let overflow = if bits == 32 { (f as f32).is_infinite() } else { f.is_infinite() };
            if overflow {
                return Err(bad());
            }
            Ok(Stored::Float(f))
        }
    }
}

/// `json.Unmarshal(data, &n)` for a Go number type: the whole input checked first, then the value stored.
/// `Ok(None)` for null, which leaves a Go value as it was.
pub(crate) fn unmarshal_number(
    data: &[u8],
    target: Number,
    go_type: &str,
) -> Result<Option<Stored>, GatewayError> {
    check_valid(data)?;
    let start = skip_space(data, 0);
    let raw = &data[start..skip_value(data, start)];
    match kind_word(raw) {
        "null" => Ok(None),
        "number" => {
            let text = std::str::from_utf8(raw).map_err(|_| type_error("number", go_type))?;
            store_number(text, target, go_type).map(Some)
        }
        word => Err(type_error(word, go_type)),
    }
}

/// `json.Unmarshal(raw, &b)` for a Go bool.
pub(crate) fn unmarshal_bool(raw: &[u8]) -> Result<bool, GatewayError> {
    match raw {
        b"true" => Ok(true),
        b"false" | b"null" => Ok(false),
        _ => Err(type_error(kind_word(raw), "bool")),
    }
}

/// `json.Unmarshal(raw, &s)` for a Go string: always valid UTF-8 (Go replaces what is not).
pub(crate) fn unmarshal_string(raw: &[u8]) -> Result<Vec<u8>, GatewayError> {
    match raw.first() {
        Some(b'"') => Ok(unquote(raw)),
        Some(b'n') => Ok(Vec::new()),
        _ => Err(type_error(kind_word(raw), "string")),
    }
}

/// `json.Unmarshal(raw, &b)` for a Go `[]byte`: a base64 string, or an array of numbers 0..=255 as Go allows.
/// `Ok(None)` for null.
pub(crate) fn unmarshal_bytes(raw: &[u8]) -> Result<Option<Vec<u8>>, GatewayError> {
    match raw.first() {
        Some(b'"') => base64_decode(&unquote(raw)).map(Some),
        Some(b'n') => Ok(None),
        Some(b'[') => {
            let mut out = Vec::new();
            for element in members(raw).into_iter().map(|(_, v)| v) {
                let byte = match kind_word(element) {
                    "null" => 0,
                    "number" => {
                        let text = std::str::from_utf8(element).map_err(|_| type_error("number", "uint8"))?;
                        match store_number(text, Number::Uint(8), "uint8")? {
                            Stored::Uint(n) => u8::try_from(n).map_err(|_| type_error("number", "uint8"))?,
                            Stored::Int(_) | Stored::Float(_) => 0,
                        }
                    }
                    word => return Err(type_error(word, "uint8")),
                };
                out.push(byte);
            }
            Ok(Some(out))
        }
        _ => Err(type_error(kind_word(raw), "[]uint8")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<T: std::fmt::Debug>(r: Result<T, GatewayError>) -> String {
        match r {
            Ok(v) => format!("{v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn members_walk_nested_values() {
        let raw = br#"{ "a" : [1, {"b": "}\"]"}], "c":null ,"\u0064":-1.5e3}"#;
        let fields = object_fields(raw).unwrap();
        let keys: Vec<_> = fields.iter().map(|(k, _)| String::from_utf8_lossy(k).into_owned()).collect();
        let values: Vec<_> = fields.iter().map(|(_, v)| String::from_utf8_lossy(v).into_owned()).collect();
        assert_eq!(keys, ["a", "c", "d"]);
        assert_eq!(values, [r#"[1, {"b": "}\"]"}]"#, "null", "-1.5e3"]);
        assert_eq!(array_elements(b"[ ]").unwrap(), Some(vec![]));
        assert_eq!(
            msg(object_fields(b"[1]")),
            "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"
        );
        assert_eq!(
            msg(array_elements(b"{}")),
            "json: cannot unmarshal object into Go value of type []json.RawMessage"
        );
    }

    #[test]
    fn numbers_store_as_go_stores_them() {
        let int64 = |s: &str| msg(unmarshal_number(s.as_bytes(), Number::Int(64), "int64"));
        assert_eq!(int64("-12"), "Some(Int(-12))");
        assert_eq!(int64(" 7 "), "Some(Int(7))");
        assert_eq!(int64("null"), "None");
        assert_eq!(int64("1.5"), "json: cannot unmarshal number 1.5 into Go value of type int64");
        assert_eq!(int64("1e3"), "json: cannot unmarshal number 1e3 into Go value of type int64");
        assert_eq!(
            int64("9223372036854775808"),
            "json: cannot unmarshal number 9223372036854775808 into Go value of type int64"
        );
        assert_eq!(int64("true"), "json: cannot unmarshal bool into Go value of type int64");
        assert_eq!(int64("abc"), "invalid character 'a' looking for beginning of value");
        assert_eq!(int64(""), "unexpected end of JSON input");
        let uint64 = |s: &str| msg(unmarshal_number(s.as_bytes(), Number::Uint(64), "uint64"));
        assert_eq!(uint64("18446744073709551615"), "Some(Uint(18446744073709551615))");
        assert_eq!(uint64("-1"), "json: cannot unmarshal number -1 into Go value of type uint64");
        let int32 = |s: &str| msg(unmarshal_number(s.as_bytes(), Number::Int(32), "int32"));
        assert_eq!(
            int32("2147483648"),
            "json: cannot unmarshal number 2147483648 into Go value of type int32"
        );
        let f64 = |s: &str| msg(unmarshal_number(s.as_bytes(), Number::Float(64), "float64"));
        assert_eq!(f64("1e400"), "json: cannot unmarshal number 1e400 into Go value of type float64");
    }

    #[test]
    fn scalars_store_as_go_stores_them() {
        assert_eq!(
            msg(unmarshal_bool(b"\"yes\"")),
            "json: cannot unmarshal string into Go value of type bool"
        );
        assert_eq!(msg(unmarshal_bool(b"1")), "json: cannot unmarshal number into Go value of type bool");
        assert_eq!(msg(unmarshal_string(b"[]")), "json: cannot unmarshal array into Go value of type string");
        assert_eq!(
            msg(unmarshal_bytes(b"123")),
            "json: cannot unmarshal number into Go value of type []uint8"
        );
        assert_eq!(msg(unmarshal_bytes(b"[1, null, 255]")), "Some([1, 0, 255])");
        assert_eq!(
            msg(unmarshal_bytes(b"[256]")),
            "json: cannot unmarshal number 256 into Go value of type uint8"
        );
        assert_eq!(
            msg(unmarshal_bytes(b"[\"a\"]")),
            "json: cannot unmarshal string into Go value of type uint8"
        );
        assert_eq!(msg(unmarshal_bytes(b"\"a b\"")), "illegal base64 data at input byte 1");
    }
}
