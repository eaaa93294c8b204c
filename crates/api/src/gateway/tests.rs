//! Whole bodies through [`decode`], each expected answer taken from etcd 3.4.23's gateway.

use super::*;
use crate::etcdserverpb::{
    compare, request_op, watch_request, Compare, LeaseKeepAliveRequest, PutRequest, RangeRequest, RequestOp,
    TxnRequest, WatchRequest,
};

fn err<T: GatewayMessage + std::fmt::Debug>(body: &str) -> String {
    match decode::<T>(body.as_bytes()) {
        Ok(v) => format!("accepted {v:?}"),
        Err(e) => e.to_string(),
    }
}

fn put(body: &str) -> String {
    err::<PutRequest>(body)
}

#[test]
fn syntax_errors_win_and_name_the_byte() {
    assert_eq!(put("x"), "invalid character 'x' looking for beginning of value");
    assert_eq!(put("<"), "invalid character '<' looking for beginning of value");
    assert_eq!(put("\u{1}"), "invalid character '\\x01' looking for beginning of value");
    assert_eq!(put(r#"{"key":123,"value":x}"#), "invalid character 'x' looking for beginning of value");
    assert_eq!(put(r#"{"key":"\xff"}"#), "invalid character 'x' in string escape code");
    assert_eq!(put(r#"{"key":"YQ==",}"#), "invalid character '}' looking for beginning of object key string");
}

#[test]
fn truncated_bodies_are_unexpected_eof() {
    assert_eq!(put(r#"{"key":"#), "unexpected EOF");
    assert_eq!(put("\"a"), "unexpected EOF");
    assert_eq!(put("[1, 2"), "unexpected EOF");
}

#[test]
fn empty_null_and_trailing_data() {
    assert_eq!(decode::<PutRequest>(b" \n").unwrap(), PutRequest::default());
    assert_eq!(decode::<PutRequest>(b"null").unwrap(), PutRequest::default());
    let p = decode::<PutRequest>(br#"{"key":"YQ=="} trailing junk"#).unwrap();
    assert_eq!(p.key, b"a");
}

#[test]
fn type_errors_name_go_types() {
    assert_eq!(put(r#"{"key":123}"#), "json: cannot unmarshal number into Go value of type []uint8");
    assert_eq!(put("[1]"), "json: cannot unmarshal array into Go value of type map[string]json.RawMessage");
    assert_eq!(
        put(r#""a""#),
        "json: cannot unmarshal string into Go value of type map[string]json.RawMessage"
    );
    assert_eq!(put(r#"{"prev_kv":"yes"}"#), "json: cannot unmarshal string into Go value of type bool");
    assert_eq!(put(r#"{"lease":1.5}"#), "json: cannot unmarshal number 1.5 into Go value of type int64");
    assert_eq!(put(r#"{"lease":"abc"}"#), "invalid character 'a' looking for beginning of value");
    assert_eq!(put(r#"{"lease":"1x"}"#), "invalid character 'x' after top-level value");
    assert_eq!(put(r#"{"lease":""}"#), "unexpected end of JSON input");
    assert_eq!(put(r#"{"lease":{}}"#), "json: cannot unmarshal object into Go value of type int64");
    assert_eq!(put(r#"{"key":"a b"}"#), "illegal base64 data at input byte 1");
}

#[test]
fn fields_are_checked_in_declaration_order_not_text_order() {
    // key (1) is checked before lease (3), whatever order the body gives them in.
    assert_eq!(
        put(r#"{"lease":"x","key":1}"#),
        "json: cannot unmarshal number into Go value of type []uint8"
    );
}

#[test]
fn names_duplicates_and_unknown_fields() {
    let p = decode::<PutRequest>(br#"{"key":"YQ==","nope":[1,{"a":2}],"prevKv":true,"lease":"7"}"#).unwrap();
    assert_eq!((p.key.as_slice(), p.prev_kv, p.lease), (&b"a"[..], true, 7));
    // The camel name wins over the proto name; among equal keys the last one.
    let p = decode::<PutRequest>(br#"{"prevKv":true,"prev_kv":"bad","key":"YQ==","key":"Yg=="}"#).unwrap();
    assert_eq!((p.key.as_slice(), p.prev_kv), (&b"b"[..], true));
    let p = decode::<PutRequest>(br#"{"key":[104,105],"value":null,"lease":null}"#).unwrap();
    assert_eq!(p.key, b"hi");
}

#[test]
fn enums_by_name_or_number() {
    let range = |b: &str| err::<RangeRequest>(b);
    let r = decode::<RangeRequest>(br#"{"sort_order":"DESCEND","sort_target":3}"#).unwrap();
    assert_eq!((r.sort_order, r.sort_target), (2, 3));
    assert_eq!(decode::<RangeRequest>(br#"{"sort_order":99}"#).unwrap().sort_order, 99);
    assert_eq!(
        range(r#"{"sort_order":"X"}"#),
        r#"unknown value "X" for enum etcdserverpb.RangeRequest_SortOrder"#
    );
    assert_eq!(
        range(r#"{"sort_order":"1"}"#),
        r#"unknown value "1" for enum etcdserverpb.RangeRequest_SortOrder"#
    );
    assert_eq!(
        range(r#"{"sort_order":"\u0041"}"#),
        r#"unknown value "\\u0041" for enum etcdserverpb.RangeRequest_SortOrder"#
    );
    assert_eq!(
        range(r#"{"sort_order":1.5}"#),
        "json: cannot unmarshal number 1.5 into Go value of type etcdserverpb.RangeRequest_SortOrder"
    );
    assert_eq!(
        range(r#"{"sort_order":true}"#),
        "json: cannot unmarshal bool into Go value of type etcdserverpb.RangeRequest_SortOrder"
    );
}

#[test]
fn nested_messages_repeated_fields_and_oneofs() {
    let txn = decode::<TxnRequest>(
        br#"{"compare":[{"key":"YQ==","target":"MOD","result":"LESS","mod_revision":"5"}],
            "success":[{"request_put":{"key":"YQ==","value":"Yg=="}}],"failure":null}"#,
    )
    .unwrap();
    assert_eq!(
        txn,
        TxnRequest {
            compare: vec![Compare {
                key: b"a".to_vec(),
                target: 2,
                result: 2,
                target_union: Some(compare::TargetUnion::ModRevision(5)),
                ..Default::default()
            }],
            success: vec![RequestOp {
                request: Some(request_op::Request::RequestPut(PutRequest {
                    key: b"a".to_vec(),
                    value: b"b".to_vec(),
                    ..Default::default()
                })),
            }],
            failure: vec![],
        }
    );
    let c = decode::<TxnRequest>(br#"{"compare":[{"version":null}]}"#).unwrap();
    assert_eq!(c.compare[0].target_union, Some(compare::TargetUnion::Version(0)));
    let t = |b: &str| err::<TxnRequest>(b);
    assert_eq!(
        t(r#"{"compare":{}}"#),
        "json: cannot unmarshal object into Go value of type []json.RawMessage"
    );
    assert_eq!(
        t(r#"{"success":[1]}"#),
        "json: cannot unmarshal number into Go value of type map[string]json.RawMessage"
    );
    assert_eq!(
        t(r#"{"compare":[{"target_union":1}]}"#),
        "json: cannot unmarshal number into Go value of type etcdserverpb.isCompare_TargetUnion"
    );
    assert_eq!(
        t(r#"{"success":[{"request_range":{"limit":"9223372036854775808"}}]}"#),
        "json: cannot unmarshal number 9223372036854775808 into Go value of type int64"
    );
    let w = decode::<WatchRequest>(
        br#"{"create_request":{"key":"YQ==","filters":["NOPUT",1],"start_revision":"3"}}"#,
    )
    .unwrap();
    match w.request_union {
        Some(watch_request::RequestUnion::CreateRequest(c)) => {
            assert_eq!(
                (c.key.as_slice(), c.filters.as_slice(), c.start_revision),
                (&b"a"[..], &[0, 1][..], 3)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_repeated_enum_given_one_name() {
    let w = |b: &str| err::<WatchRequest>(b);
    assert_eq!(
        w(r#"{"create_request":{"filters":"NOPUT"}}"#),
        r#"invalid target "slice" for enum etcdserverpb.WatchCreateRequest_FilterType"#
    );
    assert_eq!(
        w(r#"{"create_request":{"filters":"NOPE"}}"#),
        r#"unknown value "NOPE" for enum etcdserverpb.WatchCreateRequest_FilterType"#
    );
    assert_eq!(
        w(r#"{"create_request":{"filters":1}}"#),
        "json: cannot unmarshal number into Go value of type []json.RawMessage"
    );
}

#[test]
fn deep_nesting_is_refused_without_overflowing() {
    let mut body = String::new();
    for _ in 0..2000 {
        body.push_str(r#"{"success":[{"request_txn":"#);
    }
    body.push_str("{}");
    for _ in 0..2000 {
        body.push_str("}]}");
    }
    assert_eq!(err::<TxnRequest>(&body), GatewayError::TooDeep(jsonpb::MAX_MESSAGE_DEPTH).to_string());
}

#[test]
fn streams_stop_at_the_first_error() {
    let got: Vec<_> = Requests::<LeaseKeepAliveRequest>::new(br#"{"ID":1} {"ID":"2"}{"ID":x} {"ID":4}"#)
        .map(|r| r.map(|k| k.id).map_err(|e| e.to_string()))
        .collect();
    assert_eq!(got, [Ok(1), Ok(2), Err("invalid character 'x' looking for beginning of value".to_string())]);
    assert_eq!(Requests::<LeaseKeepAliveRequest>::new(b"  ").count(), 0);
}

#[test]
fn error_body_is_grpc_gateway_shape() {
    assert_eq!(
        error_body(3, "invalid character '<' looking for beginning of value"),
        r#"{"error":"invalid character '\u003c' looking for beginning of value","message":"invalid character '\u003c' looking for beginning of value","code":3}"#
    );
    assert_eq!(error_body(2, ""), r#"{"code":2}"#);
}
