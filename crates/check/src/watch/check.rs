//! Judging one watcher's observations against the ground truth.

use std::collections::{BTreeMap, HashSet};

use super::types::{Event, EventKind, GroundTruth, Watcher};
use super::{Rule, Violation};
use crate::{show, KeyValue};

/// Everything wrong with one watcher.
pub(crate) fn check_watcher(truth: &GroundTruth, id: usize, w: &Watcher) -> Vec<Violation> {
    let mut c = Checker {
        truth,
        w,
        id,
        found: Vec::new(),
        last: None,
        progress: 0,
        confirmed: 0,
        first_start: None,
        excused: Vec::new(),
        gaps: Vec::new(),
        delivered: HashSet::new(),
        carriers: BTreeMap::new(),
        fragments: Vec::new(),
    };
    for (s, segment) in w.segments.iter().enumerate() {
        c.segment(s, segment);
    }
    c.atomic();
    c.reliable();
    c.found
}

struct Checker<'a> {
    truth: &'a GroundTruth,
    w: &'a Watcher,
    id: usize,
    found: Vec<Violation>,
    /// Position (revision, index in the truth) of the last event delivered.
    last: Option<(i64, usize)>,
    /// Highest revision a progress notification confirmed.
    progress: i64,
    /// Highest revision confirmed delivered (by a complete response's last event or a progress notification).
    confirmed: i64,
    /// Effective start revision of the first segment.
    first_start: Option<i64>,
    /// Revision ranges the watcher was told are compacted (events there are excused).
    excused: Vec<(i64, i64)>,
    /// Revision ranges between segments: where a missing event means a bad resumption.
    gaps: Vec<(i64, i64)>,
    delivered: HashSet<usize>,
    /// Per revision: the responses (numbered across segments) that carried its events.
    carriers: BTreeMap<i64, Vec<usize>>,
    /// Per response number: its fragment flag.
    fragments: Vec<bool>,
}

impl Checker<'_> {
    fn report(&mut self, rule: Rule, message: String) {
        self.found.push(Violation { watcher: self.id, rule, message });
    }

    fn segment(&mut self, s: usize, segment: &super::types::Segment) {
        let created = segment.responses.iter().find(|r| r.created).map(|r| r.header_revision + 1);
        let start = if segment.start_revision > 0 {
            segment.start_revision
        } else {
            created
                .or_else(|| segment.responses.iter().flat_map(|r| &r.events).map(Event::revision).next())
                .unwrap_or(1)
        };
        if self.first_start.is_none() {
            self.first_start = Some(start);
        } else if start > self.confirmed + 1 {
            self.gaps.push((self.confirmed + 1, start - 1));
        }
        let mut told_compacted = false;
        let mut ended = false;
        for (r, resp) in segment.responses.iter().enumerate() {
            let number = self.fragments.len();
            self.fragments.push(resp.fragment);
            let at = format!("segment {s}, response {r}");
            if ended && !resp.events.is_empty() {
                self.report(Rule::Canceled, format!("{at}: events after the watch was canceled"));
            }
            if resp.fragment && !self.w.request.fragment {
                self.report(
                    Rule::Atomic,
                    format!("{at}: a fragment, though the watcher did not ask for fragments"),
                );
            }
            if resp.compact_revision > 0 {
                told_compacted = true;
                self.compacted(&at, start, resp.compact_revision, resp.canceled, !resp.events.is_empty());
            }
            ended |= resp.canceled;
            if resp.is_progress() {
                self.progress = self.progress.max(resp.header_revision);
                self.confirmed = self.confirmed.max(resp.header_revision);
            }
            for e in &resp.events {
                self.event(&at, start, number, e);
            }
            if let (false, Some(e)) = (resp.fragment, resp.events.last()) {
                self.confirmed = self.confirmed.max(e.revision());
            }
        }
        if start < self.truth.compact_revision && !told_compacted {
            self.report(
                Rule::Compaction,
                format!(
                    "segment {s} starts at revision {start}, below the compaction at {}, but was never told \
                     compact_revision",
                    self.truth.compact_revision
                ),
            );
        }
    }

    fn compacted(&mut self, at: &str, start: i64, compact: i64, canceled: bool, has_events: bool) {
        if start >= compact {
            self.report(
                Rule::Compaction,
                format!("{at}: compact_revision {compact}, yet the watch starts at {start}, which is not compacted"),
            );
        }
        if !canceled || has_events {
            self.report(
                Rule::Compaction,
                format!("{at}: a compaction notice must cancel the watch and carry no events"),
            );
        }
        self.excused.push((start, compact - 1));
    }

    fn event(&mut self, at: &str, start: i64, number: usize, e: &Event) {
        let rev = e.revision();
        let what = format!("{at}: {:?} {:?} at revision {rev}", e.kind, show(&e.key));
        if !self.w.request.covers(&e.key) {
            self.report(Rule::Filter, format!("{what}: the key is outside the watched range"));
        } else if !self.w.request.wants(e) {
            self.report(Rule::Filter, format!("{what}: that event type is filtered out"));
        }
        let Some(&t) = self.truth.index.get(&(rev, e.key.clone())) else {
            self.report(Rule::Content, format!("{what}: no such event was committed"));
            return;
        };
        let truth = &self.truth.events[t];
        if !same_change(truth, e) {
            self.report(Rule::Content, format!("{what}: committed as {}", describe(truth)));
        }
        if rev < start {
            self.report(Rule::Ordered, format!("{what}: before the start revision {start}"));
        }
        if self.delivered.contains(&t) {
            self.report(Rule::Unique, format!("{what}: delivered twice"));
            return;
        }
        if let Some((lr, _)) = self.last.filter(|&last| (rev, t) < last) {
            self.report(Rule::Ordered, format!("{what}: after an event at revision {lr}"));
        }
        if rev <= self.progress {
            self.report(
                Rule::Bookmarkable,
                format!("{what}: after a progress notification at revision {}", self.progress),
            );
        }
        self.prev_kv(&what, t, e);
        self.last = self.last.max(Some((rev, t)));
        self.delivered.insert(t);
        let carriers = self.carriers.entry(rev).or_default();
        if carriers.last() != Some(&number) {
            carriers.push(number);
        }
    }

    fn prev_kv(&mut self, what: &str, t: usize, e: &Event) {
        if !self.w.request.prev_kv {
            if e.prev.is_some() {
                self.report(
                    Rule::PrevKv,
                    format!("{what}: carries prev_kv, which the watcher did not ask for"),
                );
            }
            return;
        }
        let expected = self.truth.prev[t].as_ref();
        let same = match (expected, e.prev.as_ref()) {
            (None, None) => true,
            (Some(x), Some(y)) => x == y,
            _ => false,
        };
        if !same {
            self.report(
                Rule::PrevKv,
                format!(
                    "{what}: prev_kv is {} but the key held {}",
                    describe_kv(e.prev.as_ref()),
                    describe_kv(expected)
                ),
            );
        }
    }

    /// A revision's events arrive in one response, or in consecutive fragments all but the last flagged.
    fn atomic(&mut self) {
        let mut bad = Vec::new();
        for (rev, carriers) in &self.carriers {
            let (Some(&first), Some(&last)) = (carriers.first(), carriers.last()) else { continue };
            let consecutive = last - first + 1 == carriers.len();
            if carriers.len() > 1
                && (!consecutive || carriers[..carriers.len() - 1].iter().any(|&n| !self.fragments[n]))
            {
                bad.push(*rev);
            }
        }
        for rev in bad {
            self.report(Rule::Atomic, format!("the events of revision {rev} were split across responses"));
        }
    }

    /// Every wanted event from the start to the last confirmed revision arrived.
    fn reliable(&mut self) {
        let Some(start) = self.first_start else { return };
        let upto = self.confirmed;
        let mut missing = Vec::new();
        for (t, e) in self.truth.events.iter().enumerate() {
            let rev = e.revision();
            if rev < start || rev > upto || self.delivered.contains(&t) || !self.w.request.wants(e) {
                continue;
            }
            if self.excused.iter().any(|&(a, b)| (a..=b).contains(&rev)) {
                continue;
            }
            let rule = if self.gaps.iter().any(|&(a, b)| (a..=b).contains(&rev)) {
                Rule::Resumable
            } else {
                Rule::Reliable
            };
            missing.push((rule, format!("{} is missing, though revision {upto} was confirmed", describe(e))));
        }
        for (rule, message) in missing {
            self.report(rule, message);
        }
    }
}

/// Whether a delivered event is the committed one: same kind, and for a put the same value and revisions.
fn same_change(truth: &Event, seen: &Event) -> bool {
    truth.kind == seen.kind && (truth.kind == EventKind::Delete || truth.kv == seen.kv)
}

fn describe(e: &Event) -> String {
    match e.kind {
        EventKind::Put => format!("PUT {:?} = {}", show(&e.key), describe_kv(Some(&e.kv))),
        EventKind::Delete => format!("DELETE {:?} at revision {}", show(&e.key), e.revision()),
    }
}

fn describe_kv(kv: Option<&KeyValue>) -> String {
    match kv {
        None => "(none)".to_owned(),
        Some(kv) => format!(
            "{:?} (create {}, mod {}, version {})",
            show(&kv.value),
            kv.create_revision,
            kv.mod_revision,
            kv.version
        ),
    }
}
