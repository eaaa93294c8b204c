//! What jsonpb knows of each message from its Go struct, read here from the compiled descriptors: field order
//! (the order Go checks fields in), both accepted names, wire numbers, and the Go type each field has in etcd
//! (`int64`, `[]uint8`, `etcdserverpb.RangeRequest_SortOrder`, ...), which Go's error messages name.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

/// The descriptor set build.rs compiled the protos into.
const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

/// A proto scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scalar {
    Double,
    Float,
    Int64,
    Uint64,
    Int32,
    Uint32,
    Sint32,
    Sint64,
    Fixed32,
    Fixed64,
    Sfixed32,
    Sfixed64,
    Bool,
    String,
    Bytes,
}

impl Scalar {
    /// The Go type gogoproto gives the field.
    pub(crate) fn go_type(self) -> &'static str {
        match self {
            Self::Double => "float64",
            Self::Float => "float32",
            Self::Int64 | Self::Sint64 | Self::Sfixed64 => "int64",
            Self::Uint64 | Self::Fixed64 => "uint64",
            Self::Int32 | Self::Sint32 | Self::Sfixed32 => "int32",
            Self::Uint32 | Self::Fixed32 => "uint32",
            Self::Bool => "bool",
            Self::String => "string",
            Self::Bytes => "[]uint8",
        }
    }
}

#[derive(Debug)]
pub(crate) enum Kind {
    Scalar(Scalar),
    /// An enum: its Go type name (also jsonpb's name for it) and its values by name.
    Enum {
        go_type: String,
        values: HashMap<String, i32>,
    },
    /// A message, by full proto name.
    Message(String),
}

#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) number: u32,
    pub(crate) name: String,
    pub(crate) json_name: String,
    pub(crate) kind: Kind,
    pub(crate) repeated: bool,
    pub(crate) oneof: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct Oneof {
    /// The JSON key jsonpb consumes for the oneof's Go interface field itself.
    pub(crate) name: String,
    /// That interface's Go type, as in "etcdserverpb.isCompare_TargetUnion".
    pub(crate) go_type: String,
}

#[derive(Debug)]
pub(crate) struct Message {
    /// Declaration order, which is the order of the Go struct's fields.
    pub(crate) fields: Vec<Field>,
    pub(crate) oneofs: Vec<Oneof>,
}

/// Every message of the compiled protos, by full proto name ("etcdserverpb.PutRequest").
#[derive(Debug, Default)]
pub(crate) struct Schema {
    messages: HashMap<String, Message>,
}

/// Go's `CamelCase` of a proto name ("target_union" -> "TargetUnion").
fn camel(name: &str) -> String {
    joined(name, true)
}

/// protoc's default JSON name ("sort_order" -> "sortOrder").
fn json_name(name: &str) -> String {
    joined(name, false)
}

/// `name` without underscores, the letter after each one upper-cased (and the first, if `first_upper`).
fn joined(name: &str, first_upper: bool) -> String {
    let mut out = String::new();
    let mut upper = first_upper;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn scalar(t: Type) -> Option<Scalar> {
    Some(match t {
        Type::Double => Scalar::Double,
        Type::Float => Scalar::Float,
        Type::Int64 => Scalar::Int64,
        Type::Uint64 => Scalar::Uint64,
        Type::Int32 => Scalar::Int32,
        Type::Uint32 => Scalar::Uint32,
        Type::Sint32 => Scalar::Sint32,
        Type::Sint64 => Scalar::Sint64,
        Type::Fixed32 => Scalar::Fixed32,
        Type::Fixed64 => Scalar::Fixed64,
        Type::Sfixed32 => Scalar::Sfixed32,
        Type::Sfixed64 => Scalar::Sfixed64,
        Type::Bool => Scalar::Bool,
        Type::String => Scalar::String,
        Type::Bytes => Scalar::Bytes,
        Type::Group | Type::Message | Type::Enum => return None,
    })
}

/// Go's name for a proto type: the package, then the nesting path joined by '_'.
fn go_name(full: &str, package: &str) -> String {
    let local = full.strip_prefix(package).and_then(|s| s.strip_prefix('.')).unwrap_or(full);
    format!("{package}.{}", local.replace('.', "_"))
}

impl Schema {
    /// The schema of the protos compiled into this crate, read once.
    pub(crate) fn get() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| FileDescriptorSet::decode(DESCRIPTORS).map(Schema::new).unwrap_or_default())
    }

    pub(crate) fn message(&self, name: &str) -> Option<&Message> {
        self.messages.get(name)
    }

    fn new(set: FileDescriptorSet) -> Self {
        // Enums first, by full name, so fields can name them.
        let mut enums: HashMap<String, (String, HashMap<String, i32>)> = HashMap::new();
        let mut messages: Vec<(String, String, &DescriptorProto)> = Vec::new();
        for file in &set.file {
            let package = file.package().to_string();
            for e in &file.enum_type {
                let full = format!("{package}.{}", e.name());
                let values = e.value.iter().map(|v| (v.name().to_string(), v.number())).collect();
                enums.insert(full.clone(), (go_name(&full, &package), values));
            }
            let mut stack: Vec<(String, &DescriptorProto)> =
                file.message_type.iter().map(|m| (format!("{package}.{}", m.name()), m)).collect();
            while let Some((full, m)) = stack.pop() {
                for e in &m.enum_type {
                    let efull = format!("{full}.{}", e.name());
                    let values = e.value.iter().map(|v| (v.name().to_string(), v.number())).collect();
                    enums.insert(efull.clone(), (go_name(&efull, &package), values));
                }
                stack.extend(m.nested_type.iter().map(|n| (format!("{full}.{}", n.name()), n)));
                messages.push((full, package.clone(), m));
            }
        }
        let mut out = HashMap::new();
        for (full, package, m) in messages {
            let go = go_name(&full, &package);
            let oneofs = m
                .oneof_decl
                .iter()
                .map(|o| Oneof {
                    name: o.name().to_string(),
                    go_type: format!("{package}.is{}_{}", &go[package.len() + 1..], camel(o.name())),
                })
                .collect();
            let fields = m
                .field
                .iter()
                .map(|f| {
                    let type_name = f.type_name().trim_start_matches('.').to_string();
                    let kind = match f.r#type() {
                        Type::Enum => {
                            let (go_type, values) = enums.get(&type_name).cloned().unwrap_or_default();
                            Kind::Enum { go_type, values }
                        }
                        Type::Message | Type::Group => Kind::Message(type_name),
                        t => Kind::Scalar(scalar(t).unwrap_or(Scalar::Bytes)),
                    };
                    Field {
                        number: u32::try_from(f.number()).unwrap_or_default(),
                        name: f.name().to_string(),
                        json_name: f.json_name.clone().unwrap_or_else(|| json_name(f.name())),
                        kind,
                        repeated: f.label() == Label::Repeated,
                        oneof: f.oneof_index.and_then(|i| usize::try_from(i).ok()),
                    }
                })
                .collect();
            out.insert(full, Message { fields, oneofs });
        }
        Self { messages: out }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_go_types_as_gogoproto() {
        let s = Schema::get();
        let range = s.message("etcdserverpb.RangeRequest").unwrap();
        let sort = range.fields.iter().find(|f| f.name == "sort_order").unwrap();
        assert_eq!(sort.json_name, "sortOrder");
        match &sort.kind {
            Kind::Enum { go_type, values } => {
                assert_eq!(go_type, "etcdserverpb.RangeRequest_SortOrder");
                assert_eq!(values.get("DESCEND"), Some(&2));
            }
            k => panic!("{k:?}"),
        }
        let compare = s.message("etcdserverpb.Compare").unwrap();
        assert_eq!(compare.oneofs[0].go_type, "etcdserverpb.isCompare_TargetUnion");
        assert_eq!(compare.oneofs[0].name, "target_union");
        let grant = s.message("etcdserverpb.LeaseGrantRequest").unwrap();
        assert_eq!(grant.fields[0].json_name, "TTL");
        assert_eq!(camel("request_union"), "RequestUnion");
    }
}
