//! Watch workloads. Watchers are spread over `streams` watch streams (on the run's connections); then writers put
//! keys at a fixed rate and every watcher records, per event, the time from the put being sent to the event
//! arriving (the put's value carries its send time, so no lookup is needed). The run ends when every expected
//! event has arrived or a drain limit passes, so it is bounded; the server's memory is sampled while all watchers
//! are still open.
//!
//! - `watch`: many watchers over a key space (watcher i on key i mod key-space), puts over the key space.
//! - `watch-latency`: every watcher on one key, each put fanned out to all (etcd's watch-latency).
//! - `watch-events`: one watcher on every key, puts as fast as the writers go: events/s to a single watcher, then
//!   the same events again as a historical catch-up from the first put's revision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cairn_api::etcdserverpb::watch_request::RequestUnion;
use cairn_api::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use cairn_client::{Client, GetOptions, WatchStream};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::sync::watch as signal;

use crate::env::Env;
use crate::keys::{encode_key, seed_for, KeyChoice, SplitMix64};
use crate::rate::RateLimiter;
use crate::report::{new_histogram, record, Errors, Report, Summary};

/// Create requests sent on a stream before reading their answers, so neither side's buffers fill.
const CREATE_WINDOW: usize = 32;
/// How long one answer may take while watchers are being created.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to wait, after the last put, for events still on their way.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);
/// Digits of the send time (microseconds since the run's start) at the head of each value.
const STAMP_LEN: usize = 20;

#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub name: &'static str,
    pub watchers: usize,
    pub streams: usize,
    /// Watcher i watches key i mod key space, unless `whole_space`: then every watcher watches every key.
    pub whole_space: bool,
    pub keys: KeyChoice,
    pub key_size: usize,
    pub val_size: usize,
    pub puts: u64,
    /// Puts per second; 0 = unlimited.
    pub rate: u64,
    pub writers: usize,
}

impl WatchSpec {
    /// How many watchers see a put to key number `key`.
    fn watchers_of(&self, key: u64) -> u64 {
        let watchers = self.watchers as u64;
        if self.whole_space {
            return watchers;
        }
        let space = self.keys.space();
        watchers / space + u64::from(key < watchers % space)
    }

    fn create_request(&self, watcher: usize) -> WatchRequest {
        let (key, range_end) = if self.whole_space {
            // From "\0" to the end of the keyspace: every key.
            (vec![0], vec![0])
        } else {
            (encode_key(watcher as u64 % self.keys.space(), self.key_size), Vec::new())
        };
        WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key,
                range_end,
                ..Default::default()
            })),
        }
    }
}

/// A value of at least `val_size` bytes that starts with the send time.
fn stamp(sent_micros: u64, val_size: usize) -> Vec<u8> {
    let mut value = format!("{sent_micros:0STAMP_LEN$}").into_bytes();
    value.resize(val_size.max(STAMP_LEN), b'v');
    value
}

/// The send time at the head of a value written by `stamp`.
fn read_stamp(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value.get(..STAMP_LEN)?).ok()?.parse().ok()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

pub async fn run(env: &Env, spec: &WatchSpec) -> anyhow::Result<Report> {
    anyhow::ensure!(spec.watchers > 0 && spec.streams > 0, "--watchers and --clients must be at least 1");
    anyhow::ensure!(spec.writers > 0, "at least one writer is needed");
    let connections = env.connect().await?;
    let created = Instant::now();
    let streams = open_watchers(env, spec, &connections).await?;
    let create_seconds = created.elapsed().as_secs_f64();

    let phase = env.probe.start()?;
    let base = Instant::now();
    let received = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = signal::channel(false);
    let mut receivers = Vec::with_capacity(streams.len());
    for stream in streams {
        let received = Arc::clone(&received);
        let stopped = stopped.clone();
        receivers.push(tokio::spawn(receive(stream, base, received, stopped)));
    }

    let bar = env.progress.bar(spec.puts, &format!("{} puts", spec.name));
    let writers = Arc::new(Writers {
        next: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        limiter: RateLimiter::new(spec.rate),
        bar,
    });
    let mut tasks = Vec::with_capacity(spec.writers);
    for i in 0..spec.writers {
        let client = connections[i % connections.len()].clone();
        let (spec, writers) = (spec.clone(), Arc::clone(&writers));
        tasks.push(tokio::spawn(async move { write(client, &spec, &writers, base, seed_for(i)).await }));
    }
    let mut put_errors = Errors::default();
    for task in tasks {
        put_errors.merge(task.await.context("a writer task panicked")??);
    }
    writers.bar.finish_and_clear();
    let expected = writers.expected.load(Ordering::Relaxed);
    let drained = drain(&received, expected).await;
    let elapsed = base.elapsed();
    let server = crate::usage::finish(phase.as_ref())?;

    // Stop the receivers; a send error means they all ended already.
    let _ = stop.send(true);
    let mut delivered = new_histogram()?;
    let mut errors = Errors::default();
    for receiver in receivers {
        let (histogram, stream_errors) = receiver.await.context("a watch receiver panicked")??;
        delivered.add(&histogram).context("merging latency histograms")?;
        errors.merge(stream_errors);
    }
    let put_error_count = put_errors.count;
    errors.merge(put_errors);
    if !drained {
        errors.add(format!(
            "{} of {expected} events did not arrive within {DRAIN_LIMIT:?} of the last put",
            expected.saturating_sub(received.load(Ordering::Relaxed))
        ));
    }
    let mut report = Report::new(spec.name, "delivered events", Summary::new(&delivered, errors, elapsed))
        .detail("watchers", spec.watchers as f64)
        .detail("streams", spec.streams as f64)
        .detail("watchers_created_seconds", create_seconds)
        .detail("puts", (spec.puts - put_error_count) as f64)
        .detail("events_expected", expected as f64)
        .detail("events_received", received.load(Ordering::Relaxed) as f64);
    report.server = server;
    Ok(report)
}

/// `watch-events`: events/s to one watcher on every key while `puts` are written, then the same events replayed
/// to a new watcher from the first put's revision (catch-up from history).
pub async fn events(env: &Env, spec: &WatchSpec) -> anyhow::Result<Report> {
    let connections = env.connect().await?;
    let client = connections.first().context("no connection")?;
    let before = client.get(vec![0], GetOptions::default()).await.context("reading the current revision")?;
    let first_revision = before.header.map_or(0, |h| h.revision) + 1;
    let live = run(env, &WatchSpec { watchers: 1, streams: 1, whole_space: true, ..spec.clone() }).await?;
    let puts = live.details.get("puts").copied().unwrap_or(0.0);
    let (events, seconds) = catch_up(client, first_revision, puts as u64).await?;
    Ok(live
        .detail("catch_up_events", events as f64)
        .detail("catch_up_events_per_second", if seconds > 0.0 { events as f64 / seconds } else { 0.0 }))
}

/// Replays `count` events from `revision` on a new watcher of every key; (events received, seconds).
async fn catch_up(client: &Client, revision: i64, count: u64) -> anyhow::Result<(u64, f64)> {
    let started = Instant::now();
    let mut stream = client
        .watch(WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: vec![0],
                range_end: vec![0],
                start_revision: revision,
                ..Default::default()
            })),
        })
        .await
        .context("opening the catch-up watcher")?;
    let mut events = 0;
    let deadline = started + DRAIN_LIMIT + Duration::from_secs(50);
    while events < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.message()).await {
            Ok(Ok(Some(resp))) => events += resp.events.len() as u64,
            Ok(Ok(None)) => anyhow::bail!("the catch-up watch stream ended after {events} events"),
            Ok(Err(e)) => return Err(e).context("catch-up watch"),
            Err(_) => break,
        }
    }
    Ok((events, started.elapsed().as_secs_f64()))
}

/// Opens every watcher: stream s carries watchers s, s + streams, s + 2 streams, ...
async fn open_watchers(
    env: &Env,
    spec: &WatchSpec,
    connections: &[Client],
) -> anyhow::Result<Vec<WatchStream>> {
    let bar = env.progress.bar(spec.watchers as u64, "watchers");
    let mut tasks = Vec::with_capacity(spec.streams);
    for s in 0..spec.streams.min(spec.watchers) {
        let client = connections[s % connections.len()].clone();
        let requests: Vec<WatchRequest> =
            (s..spec.watchers).step_by(spec.streams).map(|w| spec.create_request(w)).collect();
        let bar = bar.clone();
        tasks.push(tokio::spawn(async move { open_stream(&client, requests, &bar).await }));
    }
    let mut streams = Vec::with_capacity(tasks.len());
    for task in tasks {
        streams.push(task.await.context("a watch-creating task panicked")??);
    }
    bar.finish_and_clear();
    Ok(streams)
}

/// One stream with all its watchers created, `CREATE_WINDOW` at a time.
async fn open_stream(
    client: &Client,
    requests: Vec<WatchRequest>,
    bar: &ProgressBar,
) -> anyhow::Result<WatchStream> {
    let mut stream: Option<WatchStream> = None;
    for window in requests.chunks(CREATE_WINDOW) {
        for request in window {
            match &stream {
                Some(s) => s.send(request.clone()).await?,
                None => stream = Some(client.watch(request.clone()).await.context("opening a watch stream")?),
            }
        }
        let s = stream.as_mut().context("no watch stream")?;
        let mut answered = 0;
        while answered < window.len() {
            let resp = tokio::time::timeout(ANSWER_TIMEOUT, s.message())
                .await
                .context("no answer to a watch create request")??
                .context("the watch stream ended while creating watchers")?;
            anyhow::ensure!(!resp.canceled, "a watch was refused: {:?}", resp.cancel_reason);
            if resp.created {
                answered += 1;
                bar.inc(1);
            }
        }
    }
    stream.context("a stream with no watchers")
}

/// Records each event's delivery latency until stopped (or the stream fails).
async fn receive(
    mut stream: WatchStream,
    base: Instant,
    received: Arc<AtomicU64>,
    mut stopped: signal::Receiver<bool>,
) -> anyhow::Result<(Histogram<u64>, Errors)> {
    let mut histogram = new_histogram()?;
    let mut errors = Errors::default();
    loop {
        let message: cairn_client::Result<Option<WatchResponse>> = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            m = stream.message() => m,
        };
        match message {
            Ok(Some(resp)) => {
                let now = micros(base.elapsed());
                for event in &resp.events {
                    match event.kv.as_ref().and_then(|kv| read_stamp(&kv.value)) {
                        Some(sent) => record(&mut histogram, Duration::from_micros(now.saturating_sub(sent))),
                        None => {
                            errors.add("an event without a send time (another writer on the benchmark keys?)")
                        }
                    }
                }
                received.fetch_add(resp.events.len() as u64, Ordering::Relaxed);
            }
            Ok(None) => {
                errors.add("the server ended a watch stream");
                break;
            }
            Err(e) => {
                errors.add(e);
                break;
            }
        }
    }
    Ok((histogram, errors))
}

struct Writers {
    next: AtomicU64,
    /// Events the successful puts should produce, over all watchers.
    expected: AtomicU64,
    limiter: RateLimiter,
    bar: ProgressBar,
}

async fn write(
    client: Client,
    spec: &WatchSpec,
    writers: &Writers,
    base: Instant,
    seed: u64,
) -> anyhow::Result<Errors> {
    let mut kv = client.kv_client();
    let mut rng = SplitMix64(seed);
    let mut errors = Errors::default();
    loop {
        let n = writers.next.fetch_add(1, Ordering::Relaxed);
        if n >= spec.puts {
            break;
        }
        writers.limiter.wait().await;
        let key = spec.keys.pick(n, &mut rng);
        let value = stamp(micros(base.elapsed()), spec.val_size);
        let put = PutRequest { key: encode_key(key, spec.key_size), value, ..Default::default() };
        match kv.put(put).await {
            Ok(_) => {
                writers.expected.fetch_add(spec.watchers_of(key), Ordering::Relaxed);
            }
            Err(e) => errors.add(e),
        }
        writers.bar.inc(1);
    }
    Ok(errors)
}

/// Waits (bounded) until `expected` events have arrived; false if some never did.
async fn drain(received: &AtomicU64, expected: u64) -> bool {
    let deadline = Instant::now() + DRAIN_LIMIT;
    while received.load(Ordering::Relaxed) < expected {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(watchers: usize, space: u64, whole_space: bool) -> WatchSpec {
        WatchSpec {
            name: "watch",
            watchers,
            streams: 2,
            whole_space,
            keys: KeyChoice::Random(space),
            key_size: 4,
            val_size: 8,
            puts: 1,
            rate: 0,
            writers: 1,
        }
    }

    #[test]
    fn each_put_reaches_the_watchers_of_its_key() {
        let s = spec(10, 4, false);
        // Watchers 0..10 on keys i mod 4: keys 0 and 1 have three watchers, keys 2 and 3 two.
        assert_eq!((0..4).map(|k| s.watchers_of(k)).collect::<Vec<_>>(), [3, 3, 2, 2]);
        assert_eq!((0..4).map(|k| s.watchers_of(k)).sum::<u64>(), 10);
        assert_eq!(spec(3, 10, false).watchers_of(5), 0, "more keys than watchers: some keys are unwatched");
        assert_eq!(spec(7, 4, true).watchers_of(3), 7, "watchers of the whole space see every put");
    }

    #[test]
    fn watchers_watch_their_key_or_everything() {
        let Some(RequestUnion::CreateRequest(c)) = spec(10, 4, false).create_request(6).request_union else {
            panic!()
        };
        assert_eq!((c.key.as_slice(), c.range_end.as_slice()), (&b"0002"[..], &b""[..]));
        let Some(RequestUnion::CreateRequest(c)) = spec(10, 4, true).create_request(6).request_union else {
            panic!()
        };
        assert_eq!((c.key.as_slice(), c.range_end.as_slice()), (&[0u8][..], &[0u8][..]));
    }

    #[test]
    fn values_carry_their_send_time() {
        let v = stamp(1_234_567, 256);
        assert_eq!(v.len(), 256);
        assert_eq!(read_stamp(&v), Some(1_234_567));
        let short = stamp(5, 8);
        assert_eq!(short.len(), STAMP_LEN, "the stamp is never cut");
        assert_eq!(read_stamp(&short), Some(5));
        assert_eq!(read_stamp(b"vvvv"), None);
        assert_eq!(read_stamp(b"vvvvvvvvvvvvvvvvvvvvvvvv"), None);
    }
}
