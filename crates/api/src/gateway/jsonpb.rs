//! golang/protobuf 1.3's `jsonpb.Unmarshaler` (what grpc-gateway 1.9 in etcd 3.4 runs, unknown fields allowed),
//! writing the protobuf wire form of the message instead of filling a Go struct, so prost builds the value.
//!
//! jsonpb's order decides which error a request with several mistakes gets: an object is first read whole into
//! a map (a later duplicate key wins, a field may come as `orig_name` or `jsonName`, the latter preferred), then
//! fields are taken in struct order (declaration order), a oneof's own name at its place, and oneof members last
//! (Go visits those in map order, which is random; declaration order here).

use std::collections::HashMap;

use super::golang::quote;
use super::raw::{self, kind_word, type_error, Number, Stored};
use super::schema::{Field, Kind, Message, Scalar, Schema};
use super::GatewayError;

/// Nested messages deeper than this are refused (prost refuses them as well, and it bounds our recursion).
pub(crate) const MAX_MESSAGE_DEPTH: usize = 100;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;
const FIXED32: u32 = 5;

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, number: u32, wire: u32) {
    put_varint(out, u64::from(number) << 3 | u64::from(wire));
}

fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_key(out, number, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Wire bytes of the message `name` from the JSON object `raw`.
pub(crate) fn encode(schema: &Schema, name: &str, raw: &[u8], depth: usize) -> Result<Vec<u8>, GatewayError> {
    if depth > MAX_MESSAGE_DEPTH {
        return Err(GatewayError::TooDeep(MAX_MESSAGE_DEPTH));
    }
    let message = schema.message(name).ok_or_else(|| GatewayError::UnknownMessage(name.to_string()))?;
    let fields = raw::object_fields(raw)?;
    let lookup = |key: &str| fields.iter().rev().find(|(k, _)| k == key.as_bytes()).map(|&(_, v)| v);
    // jsonpb prefers the camel name when both are given.
    let consume = |f: &Field| lookup(&f.json_name).or_else(|| lookup(&f.name));
    let mut out = Vec::new();
    let mut oneofs_seen = Vec::new();
    for f in &message.fields {
        match f.oneof {
            None => {
                if let Some(v) = consume(f) {
                    field(schema, f, v, depth, &mut out)?;
                }
            }
            Some(i) if !oneofs_seen.contains(&i) => {
                oneofs_seen.push(i);
                oneof_interface(message, i, &lookup)?;
            }
            Some(_) => {}
        }
    }
    for f in message.fields.iter().filter(|f| f.oneof.is_some()) {
        if let Some(v) = consume(f) {
            single(schema, f, v, depth, true, &mut out)?;
        }
    }
    Ok(out)
}

/// The oneof's Go interface field takes the oneof's own name as JSON key: only null fits it.
fn oneof_interface<'a>(
    message: &Message,
    i: usize,
    lookup: &impl Fn(&str) -> Option<&'a [u8]>,
) -> Result<(), GatewayError> {
    let Some(oneof) = message.oneofs.get(i) else { return Ok(()) };
    match lookup(&oneof.name) {
        Some(v) if !raw::is_null(v) => Err(type_error(kind_word(v), oneof.go_type.clone())),
        _ => Ok(()),
    }
}

fn field(schema: &Schema, f: &Field, v: &[u8], depth: usize, out: &mut Vec<u8>) -> Result<(), GatewayError> {
    if !f.repeated {
        return single(schema, f, v, depth, false, out);
    }
    // jsonpb looks a quoted enum name up before it sees that the field is a list, then refuses the list.
    if let (Kind::Enum { go_type, values }, Some(name)) = (&f.kind, quoted(v)) {
        enum_by_name(name, go_type, values)?;
        return Err(GatewayError::EnumTarget(go_type.clone()));
    }
    for element in raw::array_elements(v)?.unwrap_or_default() {
        single(schema, f, element, depth, true, out)?;
    }
    Ok(())
}

/// One value of a field. `present` fields (oneof members, repeated elements) are written even when null or zero.
fn single(
    schema: &Schema,
    f: &Field,
    v: &[u8],
    depth: usize,
    present: bool,
    out: &mut Vec<u8>,
) -> Result<(), GatewayError> {
    match &f.kind {
        Kind::Message(name) => {
            // A null message is unset; in a repeated field Go keeps a nil element, sent as an empty message.
            if raw::is_null(v) {
                if present && f.repeated {
                    put_len(out, f.number, &[]);
                }
                return Ok(());
            }
            let bytes = encode(schema, name, v, depth + 1)?;
            put_len(out, f.number, &bytes);
        }
        Kind::Enum { go_type, values } => {
            let n = if let Some(name) = quoted(v) {
                enum_by_name(name, go_type, values)?
            } else {
                match raw::unmarshal_number(v, Number::Int(32), go_type)? {
                    Some(Stored::Int(n)) => i32::try_from(n).unwrap_or_default(),
                    _ => 0,
                }
            };
            put_key(out, f.number, VARINT);
            put_varint(out, i64::from(n) as u64);
        }
        Kind::Scalar(s) => scalar(*s, f, v, present, out)?,
    }
    Ok(())
}

/// The inside of a string literal, escapes left as they are.
fn quoted(v: &[u8]) -> Option<&[u8]> {
    v.strip_prefix(b"\"").and_then(|s| s.strip_suffix(b"\""))
}

/// Enum names are looked up without unquoting, as jsonpb does.
fn enum_by_name(name: &[u8], go_type: &str, values: &HashMap<String, i32>) -> Result<i32, GatewayError> {
    let found = std::str::from_utf8(name).ok().and_then(|s| values.get(s));
    found
        .copied()
        .ok_or_else(|| GatewayError::UnknownEnum { value: quote(name), go_type: go_type.to_string() })
}

fn number_target(s: Scalar) -> Option<Number> {
    Some(match s {
        Scalar::Double => Number::Float(64),
        Scalar::Float => Number::Float(32),
        Scalar::Int64 | Scalar::Sint64 | Scalar::Sfixed64 => Number::Int(64),
        Scalar::Uint64 | Scalar::Fixed64 => Number::Uint(64),
        Scalar::Int32 | Scalar::Sint32 | Scalar::Sfixed32 => Number::Int(32),
        Scalar::Uint32 | Scalar::Fixed32 => Number::Uint(32),
        Scalar::Bool | Scalar::String | Scalar::Bytes => return None,
    })
}

/// jsonpb's non-finite floats, accepted as quoted names.
fn non_finite(v: &[u8]) -> Option<f64> {
    match v {
        b"\"NaN\"" => Some(f64::NAN),
        b"\"Infinity\"" => Some(f64::INFINITY),
        b"\"-Infinity\"" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

fn scalar(s: Scalar, f: &Field, v: &[u8], present: bool, out: &mut Vec<u8>) -> Result<(), GatewayError> {
    let n = f.number;
    match s {
        Scalar::Bool => {
            let b = raw::unmarshal_bool(v)?;
            put_key(out, n, VARINT);
            put_varint(out, u64::from(b));
        }
        Scalar::String => put_len(out, n, &raw::unmarshal_string(v)?),
        Scalar::Bytes => {
            // Go's nil []byte in a oneof is not sent at all.
            if let Some(bytes) = raw::unmarshal_bytes(v)? {
                put_len(out, n, &bytes);
            } else if present && f.repeated {
                put_len(out, n, &[]);
            }
        }
        _ => {
            let Some(target) = number_target(s) else { return Ok(()) };
            let stored = match non_finite(v) {
                Some(x) if matches!(target, Number::Float(_)) => Some(Stored::Float(x)),
                _ => {
                    // jsonpb drops the quotes of a quoted number and parses what is left as JSON.
                    let data = match v.first() {
                        Some(b'"') => v.get(1..v.len() - 1).unwrap_or_default(),
                        _ => v,
                    };
                    raw::unmarshal_number(data, target, s.go_type())?
                }
            };
            put_number(out, s, n, stored.unwrap_or(Stored::Int(0)));
        }
    }
    Ok(())
}

fn put_number(out: &mut Vec<u8>, s: Scalar, n: u32, stored: Stored) {
    let (bits, float) = match stored {
        Stored::Int(i) => (i as u64, i as f64),
        Stored::Uint(u) => (u, u as f64),
        Stored::Float(x) => (x as i64 as u64, x),
    };
    match s {
        Scalar::Double => {
            put_key(out, n, FIXED64);
            out.extend_from_slice(&float.to_le_bytes());
        }
        Scalar::Float => {
            put_key(out, n, FIXED32);
            out.extend_from_slice(&(float as f32).to_le_bytes());
        }
        Scalar::Fixed64 | Scalar::Sfixed64 => {
            put_key(out, n, FIXED64);
            out.extend_from_slice(&bits.to_le_bytes());
        }
        Scalar::Fixed32 | Scalar::Sfixed32 => {
            put_key(out, n, FIXED32);
            out.extend_from_slice(&(bits as u32).to_le_bytes());
        }
        Scalar::Sint32 | Scalar::Sint64 => {
            let i = bits as i64;
            put_key(out, n, VARINT);
            put_varint(out, ((i << 1) ^ (i >> 63)) as u64);
        }
        _ => {
            put_key(out, n, VARINT);
            put_varint(out, bits);
        }
    }
}
