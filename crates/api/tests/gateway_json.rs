//! The JSON form of the messages, as etcd's HTTP gateway writes and reads them.

use cairn_api::etcdserverpb::{PutRequest, RangeResponse, ResponseHeader};
use cairn_api::mvccpb::KeyValue;

#[test]
fn range_response_uses_etcd_gateway_shape() {
    let response = RangeResponse {
        header: Some(ResponseHeader {
            cluster_id: 14_841_639_068_965_178_418,
            member_id: 1,
            revision: 2,
            raft_term: 3,
        }),
        kvs: vec![KeyValue {
            key: b"foo".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: b"bar".to_vec(),
            lease: 0,
        }],
        more: false,
        count: 1,
    };
    let json: serde_json::Value = serde_json::to_value(&response).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "header": {"cluster_id": "14841639068965178418", "member_id": "1", "revision": "2", "raft_term": "3"},
            "kvs": [{"key": "Zm9v", "create_revision": "2", "mod_revision": "2", "version": "1", "value": "YmFy"}],
            "count": "1"
        })
    );
    let back: RangeResponse = serde_json::from_value(json).unwrap();
    assert_eq!(back, response);
}

#[test]
fn requests_accept_etcd_gateway_json() {
    let put: PutRequest =
        serde_json::from_str(r#"{"key": "Zm9v", "value": "YmFy", "prev_kv": true}"#).unwrap();
    assert_eq!(
        put,
        PutRequest { key: b"foo".to_vec(), value: b"bar".to_vec(), prev_kv: true, ..Default::default() }
    );
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    assert!(serde_json::from_str::<PutRequest>(r#"{"key": 12"#).is_err());
    assert!(serde_json::from_str::<PutRequest>(r#"{"key": "not base64!"}"#).is_err());
}
