#![allow(clippy::unwrap_used)]

use super::*;
use crate::{Error, KeyValue};

fn kv(value: &str, create: i64, modr: i64, version: i64) -> KeyValue {
    KeyValue::new(value, create, modr, version)
}

/// rev 2: a=1; 3: b=1; 4: a=2; 5: delete a; 6: a=3 and b=2 (one txn); 7: c=1.
fn events() -> Vec<Event> {
    vec![
        Event::put("a", kv("1", 2, 2, 1)),
        Event::put("b", kv("1", 3, 3, 1)),
        Event::put("a", kv("2", 2, 4, 2)),
        Event::delete("a", 5),
        Event::put("a", kv("3", 6, 6, 1)),
        Event::put("b", kv("2", 3, 6, 2)),
        Event::put("c", kv("1", 7, 7, 1)),
    ]
}

fn truth() -> GroundTruth {
    GroundTruth::new(events()).unwrap()
}

/// The events with the prev_kv a watcher asking for it gets.
fn with_prev() -> Vec<Event> {
    let e = events();
    let prev =
        [None, None, Some(kv("1", 2, 2, 1)), Some(kv("2", 2, 4, 2)), None, Some(kv("1", 3, 3, 1)), None];
    e.into_iter().zip(prev).map(|(e, p)| e.with_prev(p)).collect()
}

fn all_keys(prev_kv: bool) -> WatchRequest {
    WatchRequest { key: vec![], range_end: vec![0], start_revision: 1, prev_kv, ..WatchRequest::default() }
}

fn resp(header: i64, events: &[Event]) -> WatchResponse {
    WatchResponse { header_revision: header, events: events.to_vec(), ..WatchResponse::default() }
}

fn created(header: i64) -> WatchResponse {
    WatchResponse { header_revision: header, created: true, ..WatchResponse::default() }
}

fn progress(header: i64) -> WatchResponse {
    resp(header, &[])
}

/// The correct stream for `all_keys(true)`: one response per revision.
fn good_responses() -> Vec<WatchResponse> {
    let e = with_prev();
    vec![
        created(7),
        resp(7, &e[0..1]),
        resp(7, &e[1..2]),
        resp(7, &e[2..3]),
        resp(7, &e[3..4]),
        resp(7, &e[4..6]),
        resp(7, &e[6..7]),
    ]
}

#[track_caller]
fn rules(watchers: &[Watcher]) -> Vec<Rule> {
    match check(&truth(), watchers) {
        Ok(()) => Vec::new(),
        Err(v) => v.0.into_iter().map(|v| v.rule).collect(),
    }
}

#[track_caller]
fn assert_only(watchers: &[Watcher], rule: Rule) {
    let found = rules(watchers);
    assert!(!found.is_empty() && found.iter().all(|r| *r == rule), "expected only {rule:?}, got {found:?}");
}

#[test]
fn a_correct_stream_passes() {
    check(&truth(), &[Watcher::new(all_keys(true), good_responses())]).unwrap();
}

#[test]
fn a_correct_stream_without_prev_kv_passes() {
    let responses = vec![created(7), resp(7, &events()[..6]), resp(7, &events()[6..])];
    check(&truth(), &[Watcher::new(all_keys(false), responses)]).unwrap();
}

#[test]
fn missing_event_before_a_confirmed_one() {
    let mut r = good_responses();
    r.remove(2);
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::Reliable);
}

#[test]
fn missing_event_confirmed_by_progress_notification() {
    let mut r = good_responses();
    r.pop();
    check(&truth(), &[Watcher::new(all_keys(true), r.clone())]).unwrap();
    r.push(progress(7));
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::Reliable);
}

#[test]
fn duplicate_event() {
    let mut r = good_responses();
    r.insert(3, r[2].clone());
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::Unique);
}

#[test]
fn events_out_of_order() {
    let mut r = good_responses();
    r.swap(2, 3);
    assert!(rules(&[Watcher::new(all_keys(true), r)]).contains(&Rule::Ordered));
}

#[test]
fn event_before_the_start_revision() {
    let req = WatchRequest { start_revision: 3, ..all_keys(true) };
    let r = good_responses();
    assert_only(&[Watcher::new(req, r)], Rule::Ordered);
}

#[test]
fn one_revision_split_across_responses() {
    let e = with_prev();
    let mut r = good_responses();
    r.splice(5..6, [resp(7, &e[4..5]), resp(7, &e[5..6])]);
    assert_only(&[Watcher::new(all_keys(true), r.clone())], Rule::Atomic);
    // As fragments of one response, it is fine when asked for.
    r[5].fragment = true;
    let req = WatchRequest { fragment: true, ..all_keys(true) };
    check(&truth(), &[Watcher::new(req, r.clone())]).unwrap();
    // ... and a fragment nobody asked for is not.
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::Atomic);
}

#[test]
fn event_after_a_progress_notification_covering_it() {
    let mut r = good_responses();
    r.insert(3, progress(4));
    assert!(rules(&[Watcher::new(all_keys(true), r)]).contains(&Rule::Bookmarkable));
}

#[test]
fn progress_notifications_in_the_right_place_pass() {
    let mut r = good_responses();
    r.insert(4, progress(4));
    r.push(progress(7));
    check(&truth(), &[Watcher::new(all_keys(true), r)]).unwrap();
}

#[test]
fn wrong_or_unasked_prev_kv() {
    let mut r = good_responses();
    r[3].events[0].prev = Some(kv("9", 2, 2, 1));
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::PrevKv);
    let mut r = good_responses();
    r[3].events[0].prev = None;
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::PrevKv);
    assert_only(&[Watcher::new(all_keys(false), good_responses())], Rule::PrevKv);
}

#[test]
fn filters_and_ranges() {
    let e = events();
    let no_put = WatchRequest { no_put: true, ..all_keys(false) };
    check(&truth(), &[Watcher::new(no_put.clone(), vec![created(7), resp(7, &e[3..4]), progress(7)])])
        .unwrap();
    assert_only(&[Watcher::new(no_put, vec![created(7), resp(7, &e[0..1])])], Rule::Filter);
    let no_delete = WatchRequest { no_delete: true, ..all_keys(false) };
    let r = vec![created(7), resp(7, &e[..3]), resp(7, &e[4..])];
    check(&truth(), &[Watcher::new(no_delete.clone(), r)]).unwrap();
    assert!(rules(&[Watcher::new(no_delete, vec![created(7), resp(7, &e[..4])])]).contains(&Rule::Filter));

    let only_a = WatchRequest { key: b"a".to_vec(), start_revision: 1, ..WatchRequest::default() };
    let a_events: Vec<Event> = e.iter().filter(|x| x.key == b"a").cloned().collect();
    check(&truth(), &[Watcher::new(only_a.clone(), vec![created(7), resp(7, &a_events), progress(7)])])
        .unwrap();
    assert!(rules(&[Watcher::new(only_a, vec![created(7), resp(7, &e[..2])])]).contains(&Rule::Filter));

    let a_to_c = WatchRequest {
        key: b"a".to_vec(),
        range_end: b"c".to_vec(),
        start_revision: 1,
        ..WatchRequest::default()
    };
    check(&truth(), &[Watcher::new(a_to_c.clone(), vec![created(7), resp(7, &e[..6]), progress(7)])])
        .unwrap();
    assert!(rules(&[Watcher::new(a_to_c, vec![created(7), resp(7, &e)])]).contains(&Rule::Filter));
}

#[test]
fn events_never_committed_or_different() {
    let mut r = good_responses();
    r[1].events[0].kv.value = b"other".to_vec();
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::Content);
    let mut r = good_responses();
    r.push(resp(8, &[Event::put("z", kv("1", 8, 8, 1))]));
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::Content);
}

#[test]
fn resumed_watch_continues_the_stream() {
    let r = good_responses();
    let first = Segment { start_revision: 1, responses: r[..4].to_vec() };
    let resumed = |start: i64, from: usize| Segment {
        start_revision: start,
        responses: std::iter::once(created(7)).chain(r[from..].iter().cloned()).collect(),
    };
    let ok = Watcher { request: all_keys(true), segments: vec![first.clone(), resumed(5, 4)] };
    check(&truth(), &[ok]).unwrap();
    let gap = Watcher { request: all_keys(true), segments: vec![first.clone(), resumed(6, 5)] };
    assert_only(&[gap], Rule::Resumable);
    let overlap = Watcher { request: all_keys(true), segments: vec![first, resumed(4, 3)] };
    assert_only(&[overlap], Rule::Unique);
}

#[test]
fn compaction_must_be_reported() {
    let truth = truth().compacted_at(4);
    let compacted =
        WatchResponse { header_revision: 7, canceled: true, compact_revision: 4, ..Default::default() };
    let told = Watcher::new(all_keys(false), vec![created(7), compacted.clone()]);
    check(&truth, &[told]).unwrap();
    let not_told = Watcher::new(all_keys(false), vec![created(7), resp(7, &events())]);
    assert!(check(&truth, &[not_told]).unwrap_err().0.iter().any(|v| v.rule == Rule::Compaction));
    let late = WatchRequest { start_revision: 5, ..all_keys(false) };
    let wrongly_told = Watcher::new(late, vec![created(7), compacted]);
    assert!(check(&truth, &[wrongly_told]).unwrap_err().0.iter().any(|v| v.rule == Rule::Compaction));
}

#[test]
fn nothing_after_cancel() {
    let mut r = good_responses();
    r.insert(3, WatchResponse { header_revision: 7, canceled: true, ..Default::default() });
    assert_only(&[Watcher::new(all_keys(true), r)], Rule::Canceled);
}

#[test]
fn start_revision_zero_starts_after_creation() {
    let req = WatchRequest { start_revision: 0, ..all_keys(true) };
    let e = with_prev();
    check(&truth(), &[Watcher::new(req.clone(), vec![created(5), resp(7, &e[4..6]), resp(7, &e[6..])])])
        .unwrap();
    // Missing revision 6 after a watch created at 5.
    let missing = vec![created(5), resp(7, &e[6..])];
    assert_only(&[Watcher::new(req, missing)], Rule::Reliable);
}

#[test]
fn ground_truth_must_be_a_history() {
    let mut e = events();
    e.swap(0, 1);
    assert!(matches!(GroundTruth::new(e), Err(Error::InvalidTruth(_))));
    let twice = vec![Event::put("a", kv("1", 2, 2, 1)), Event::put("a", kv("2", 2, 2, 2))];
    assert!(GroundTruth::new(twice).is_err());
}

#[test]
fn violations_name_the_watcher() {
    let mut r = good_responses();
    r.remove(2);
    let err =
        check(&truth(), &[Watcher::new(all_keys(true), good_responses()), Watcher::new(all_keys(true), r)])
            .unwrap_err();
    assert_eq!(err.0[0].watcher, 1);
    assert!(err.to_string().contains("watcher 1: Reliable"), "{err}");
}

#[test]
fn conversions_from_wire_types() {
    use cairn_api::{etcdserverpb as pb, mvccpb};
    let wire = pb::WatchResponse {
        header: Some(pb::ResponseHeader { revision: 9, ..Default::default() }),
        fragment: true,
        events: vec![mvccpb::Event {
            r#type: mvccpb::event::EventType::Delete as i32,
            kv: Some(mvccpb::KeyValue { key: b"k".to_vec(), mod_revision: 9, ..Default::default() }),
            prev_kv: Some(mvccpb::KeyValue {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                create_revision: 3,
                mod_revision: 4,
                version: 2,
                lease: 0,
            }),
        }],
        ..Default::default()
    };
    let got = WatchResponse::from(&wire);
    assert_eq!(got.header_revision, 9);
    assert!(got.fragment);
    assert_eq!(got.events, vec![Event::delete("k", 9).with_prev(Some(kv("v", 3, 4, 2)))]);
    let create = pb::WatchCreateRequest {
        key: b"a".to_vec(),
        range_end: vec![0],
        filters: vec![pb::watch_create_request::FilterType::Nodelete as i32],
        prev_kv: true,
        ..Default::default()
    };
    let req = WatchRequest::from(&create);
    assert!(req.no_delete && !req.no_put && req.prev_kv);
    assert!(req.covers(b"b") && !req.covers(b"0"));
}
