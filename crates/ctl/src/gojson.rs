//! Go's `encoding/json` as etcdctl's `-w json` uses it on gogo-protobuf structs: fields in declaration order,
//! `omitempty` on every proto field, integers as numbers, bytes as standard base64, enums as numbers, HTML-safe
//! string escaping.

use base64::Engine;

/// A JSON object under construction.
#[derive(Debug, Default)]
pub struct Obj {
    body: String,
}

impl Obj {
    pub fn new() -> Self {
        Self::default()
    }

    fn key(&mut self, name: &str) {
        if !self.body.is_empty() {
            self.body.push(',');
        }
        self.body.push_str(&string(name));
        self.body.push(':');
    }

    /// A field whose value is already JSON.
    pub fn raw(mut self, name: &str, json: &str) -> Self {
        self.key(name);
        self.body.push_str(json);
        self
    }

    /// An `omitempty` nested message: omitted when absent.
    pub fn msg(self, name: &str, json: Option<String>) -> Self {
        match json {
            Some(j) => self.raw(name, &j),
            None => self,
        }
    }

    pub fn int(self, name: &str, v: impl Into<i128>) -> Self {
        let v = v.into();
        self.raw(name, &v.to_string())
    }

    /// `omitempty` integer: omitted when zero.
    pub fn int_oe(self, name: &str, v: impl Into<i128>) -> Self {
        let v = v.into();
        if v == 0 {
            self
        } else {
            self.int(name, v)
        }
    }

    pub fn bool(self, name: &str, v: bool) -> Self {
        self.raw(name, if v { "true" } else { "false" })
    }

    pub fn bool_oe(self, name: &str, v: bool) -> Self {
        if v {
            self.bool(name, v)
        } else {
            self
        }
    }

    pub fn str(self, name: &str, v: &str) -> Self {
        let s = string(v);
        self.raw(name, &s)
    }

    pub fn str_oe(self, name: &str, v: &str) -> Self {
        if v.is_empty() {
            self
        } else {
            self.str(name, v)
        }
    }

    /// `omitempty` bytes: base64, omitted when empty.
    pub fn bytes_oe(self, name: &str, v: &[u8]) -> Self {
        if v.is_empty() {
            self
        } else {
            let s = bytes(v);
            self.raw(name, &s)
        }
    }

    /// `omitempty` slice: omitted when empty.
    pub fn list_oe(self, name: &str, items: Vec<String>) -> Self {
        if items.is_empty() {
            self
        } else {
            self.raw(name, &list(items))
        }
    }

    /// A slice without `omitempty`: `null` when empty, as Go prints a nil slice.
    pub fn list_or_null(self, name: &str, items: Vec<String>) -> Self {
        if items.is_empty() {
            self.raw(name, "null")
        } else {
            self.raw(name, &list(items))
        }
    }

    pub fn build(self) -> String {
        format!("{{{}}}", self.body)
    }

    /// The fields without braces, to embed into another object (Go's embedded structs).
    pub fn fields(self) -> String {
        self.body
    }

    /// Appends fields of an embedded struct.
    pub fn embed(mut self, fields: &str) -> Self {
        if !fields.is_empty() {
            if !self.body.is_empty() {
                self.body.push(',');
            }
            self.body.push_str(fields);
        }
        self
    }
}

pub fn list(items: Vec<String>) -> String {
    format!("[{}]", items.join(","))
}

pub fn bytes(v: &[u8]) -> String {
    format!("\"{}\"", base64::engine::general_purpose::STANDARD.encode(v))
}

/// A JSON string as Go writes it: `<`, `>`, `&`, U+2028 and U+2029 escaped (the gateway's writer).
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    cairn_api::gateway::push_json_string(&mut out, s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_omit_empty_fields() {
        let o = Obj::new().int_oe("a", 0).int_oe("b", 2u64).bytes_oe("k", b"foo").str_oe("s", "").build();
        assert_eq!(o, r#"{"b":2,"k":"Zm9v"}"#);
        assert_eq!(Obj::new().build(), "{}");
        assert_eq!(Obj::new().list_or_null("x", vec![]).build(), r#"{"x":null}"#);
    }

    #[test]
    fn strings_escape_as_go() {
        assert_eq!(string("a<b>&\"\n\u{1}"), r#""a\u003cb\u003e\u0026\"\n\u0001""#);
    }
}
