//! Request bodies of the HTTP gateway, read exactly as etcd 3.4's grpc-gateway reads them, so a malformed body
//! gets etcd's answer byte for byte: grpc-gateway 1.9 reads the body with Go's streaming `json.Decoder` (syntax
//! of the first value checked whole, anything after it ignored, "unexpected EOF" when it is cut short), then
//! golang/protobuf 1.3's jsonpb stores it field by field with Go's `encoding/json`, whose errors it returns as is.
//!
//! # Layout
//! - `scanner`: Go's JSON scanner (syntax errors, `json.Decoder` and `json.Unmarshal` framing).
//! - `golang`: Go's texts: quoting a byte or a string, unquoting JSON strings, base64, writing JSON strings.
//! - `raw`: raw JSON values (Go's `json.RawMessage`) and storing one into a Go scalar type, with Go's errors.
//! - `schema`: per message, what jsonpb reads from the Go struct (field order, names, Go types), from descriptors.
//! - `jsonpb`: the walk over a message, producing protobuf wire bytes that prost then decodes.
//!
//! Answers are written by [`error_body`], which orders and escapes as grpc-gateway's error body.

mod golang;

pub use golang::{push_json_string, quote};
mod jsonpb;
mod raw;
mod scanner;
mod schema;

use schema::Schema;

/// Why a gateway body was refused; `Display` is etcd's message for it, byte for byte.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GatewayError {
    /// A Go `json.SyntaxError` ("invalid character 'x' looking for beginning of value", "unexpected end of JSON
    /// input").
    #[error("{0}")]
    Syntax(String),
    /// The body ended inside its first value (Go's `io.ErrUnexpectedEOF`).
    #[error("unexpected EOF")]
    UnexpectedEof,
    /// A Go `json.UnmarshalTypeError` without struct context.
    #[error("json: cannot unmarshal {value} into Go value of type {go_type}")]
    Type { value: String, go_type: String },
    /// Go's `base64.CorruptInputError`.
    #[error("illegal base64 data at input byte {0}")]
    Base64(usize),
    /// jsonpb's error for an enum name it does not know; `value` is already quoted as Go's `%q`.
    #[error("unknown value {value} for enum {go_type}")]
    UnknownEnum { value: String, go_type: String },
    /// jsonpb's error for an enum name given to a repeated enum field.
    #[error("invalid target \"slice\" for enum {0}")]
    EnumTarget(String),
    /// Messages nested deeper than prost decodes.
    #[error("request nests messages deeper than {0} levels")]
    TooDeep(usize),
    /// The type has no schema here (a build mismatch, never a client's doing).
    #[error("no JSON schema for message {0}")]
    UnknownMessage(String),
    /// The wire bytes written did not decode (a bug here, never a client's doing).
    #[error("decoding the request: {0}")]
    Proto(#[from] prost::DecodeError),
}

/// A message the gateway can decode: prost gives its proto name, which finds its schema.
pub trait GatewayMessage: prost::Message + prost::Name + Default {}

impl<T: prost::Message + prost::Name + Default> GatewayMessage for T {}

fn from_raw<T: GatewayMessage>(raw: &[u8]) -> Result<T, GatewayError> {
    let name = format!("{}.{}", T::PACKAGE, T::NAME);
    let wire = jsonpb::encode(Schema::get(), &name, raw, 0)?;
    Ok(T::decode(wire.as_slice())?)
}

/// A unary request body as grpc-gateway reads it: the first JSON value, or the empty request when the body
/// holds nothing but spaces.
pub fn decode<T: GatewayMessage>(body: &[u8]) -> Result<T, GatewayError> {
    Requests::new(body).next().unwrap_or_else(|| Ok(T::default()))
}

/// The requests of a streaming call's body (`/v3/watch`, `/v3/lease/keepalive`): JSON values one after another,
/// read as grpc-gateway's `json.Decoder` reads them. It ends after the last value or after the first error.
#[derive(Debug)]
pub struct Requests<'a, T> {
    body: &'a [u8],
    at: usize,
    done: bool,
    _message: std::marker::PhantomData<fn() -> T>,
}

impl<'a, T> Requests<'a, T> {
    pub fn new(body: &'a [u8]) -> Self {
        Self { body, at: 0, done: false, _message: std::marker::PhantomData }
    }
}

impl<T: GatewayMessage> Iterator for Requests<'_, T> {
    type Item = Result<T, GatewayError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = match scanner::read_value(self.body, self.at) {
            Ok(None) => None,
            Ok(Some((start, end))) => {
                self.at = end;
                Some(from_raw(&self.body[start..end]))
            }
            Err(e) => Some(Err(e)),
        };
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

/// grpc-gateway's error body: `{"error":..,"message":..,"code":..}` in that order, strings escaped as Go's
/// `json.Marshal` escapes them (`<` as `\u003c`), empty fields left out as jsonpb leaves proto3 defaults out.
pub fn error_body(code: i32, message: &str) -> String {
    let mut out = String::from("{");
    if !message.is_empty() {
        out.push_str("\"error\":");
        golang::push_json_string(&mut out, message);
        out.push_str(",\"message\":");
        golang::push_json_string(&mut out, message);
    }
    if code != 0 {
        if !message.is_empty() {
            out.push(',');
        }
        out.push_str(&format!("\"code\":{code}"));
    }
    out.push('}');
    out
}

#[cfg(test)]
mod tests;
