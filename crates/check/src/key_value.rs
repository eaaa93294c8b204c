//! [`KeyValue`]: a key's state as etcd reports it, shared by the KV and watch checkers.

use cairn_api::mvccpb;

/// A key's value and its revisions, as in etcd's `mvccpb.KeyValue` minus the key itself (the caller's context
/// names the key) and the lease (neither checker models leases).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The value written by the last modification.
    pub value: Vec<u8>,
    /// Revision of the modification that created the key (since its last deletion).
    pub create_revision: i64,
    /// Revision of the last modification.
    pub mod_revision: i64,
    /// Number of modifications since creation: 1 after the creating put.
    pub version: i64,
}

impl KeyValue {
    /// A key-value with the given value and revisions.
    pub fn new(value: impl Into<Vec<u8>>, create_revision: i64, mod_revision: i64, version: i64) -> Self {
        Self { value: value.into(), create_revision, mod_revision, version }
    }
}

impl From<&mvccpb::KeyValue> for KeyValue {
    fn from(kv: &mvccpb::KeyValue) -> Self {
        Self {
            value: kv.value.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
        }
    }
}

/// Bytes as text for explanations: printable ASCII as is, anything else escaped.
pub(crate) fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}
