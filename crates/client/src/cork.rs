//! Write coalescing under HTTP/2 connections: many small frames in one write, on either side.
//!
//! hyper's HTTP/2 connection flushes after every turn of its task, and a turn often carries a single message:
//! the task that answers (or sends) a request wakes the connection, which runs next and writes that one message.
//! When a server's raft loop answers a whole batch at once, or many client tasks send at once, that is one syscall
//! (and one loopback delivery on the other side) per message. [`Corked`] buffers writes and holds the first flush
//! of a burst back for one scheduler turn (the connection task yields to the tasks already queued, which add their
//! messages), then writes everything at once, as Go's gRPC does with its write loop. The server wraps its accepted
//! connections in it, and [`Client`](crate::Client) its own ([`CorkedConnector`]).
//!
//! A held flush is never lost: the connection task wakes itself before returning `Pending`, and the second flush
//! writes. At most [`LIMIT`] bytes are held; a larger write drains the buffer first.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::Uri;

/// Bytes held at most (four of h2's default 16 KiB frames); a write that does not fit drains them first.
pub const LIMIT: usize = 64 * 1024;

/// An I/O stream whose writes are buffered and whose flushes are held back one scheduler turn.
#[derive(Debug)]
pub struct Corked<S> {
    inner: S,
    buf: Vec<u8>,
    /// Bytes of `buf` already written.
    written: usize,
    /// The current burst's flush was held back once.
    held: bool,
}

impl<S> Corked<S> {
    pub fn new(inner: S) -> Self {
        Self { inner, buf: Vec::new(), written: 0, held: false }
    }
}

impl<S: AsyncWrite + Unpin> Corked<S> {
    /// Writes out everything buffered.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes: drains when they would not fit.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<()>> {
        if self.buf.len() + len <= LIMIT {
            return Poll::Ready(Ok(()));
        }
        self.poll_drain(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Corked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(data)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let len: usize = bufs.iter().map(|b| b.len()).sum();
        match this.poll_room(cx, len) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if len > LIMIT {
            // Too large to hold: the buffer is empty now, so order is kept by writing straight through.
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.buf.is_empty() {
            this.held = false;
            return Pin::new(&mut this.inner).poll_flush(cx);
        }
        if !this.held {
            // Yield once: the tasks queued before this one add their responses to the same write.
            this.held = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        this.held = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_drain(cx) {
            Poll::Ready(Ok(())) => {}
            other => return other,
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// A connector for tonic's [`Endpoint::connect_with_connector`](tonic::transport::Endpoint): TCP as tonic's own
/// (no delay; any scheme, tonic adds TLS for `https`), each connection [`Corked`].
#[derive(Debug, Clone)]
pub struct CorkedConnector(HttpConnector);

impl CorkedConnector {
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        CorkedConnector(http)
    }
}

impl Default for CorkedConnector {
    fn default() -> Self {
        Self::new()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How grpc-go words a connection that could not be made; tonic turns the connector's error into an Unavailable
/// status carrying this text, which is how a client knows the call never reached a server.
const DIAL_FAILED: &str = "connection error: desc = \"transport: Error while dialing";

/// A connection that could not be made.
#[derive(Debug)]
struct DialError(BoxError);

impl std::fmt::Display for DialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{DIAL_FAILED} {}\"", self.0)
    }
}

impl std::error::Error for DialError {}

/// True if `status` says the call failed because no connection could be made: nothing was sent.
pub(crate) fn never_sent(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable && status.message().starts_with(DIAL_FAILED)
}

impl tower_service::Service<Uri> for CorkedConnector {
    type Response = TokioIo<Corked<TcpStream>>;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let tcp = connecting.await.map_err(|e| DialError(e.into()))?.into_inner();
            Ok(TokioIo::new(Corked::new(tcp)))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Wake, Waker};

    use super::*;

    /// Records every write it is given.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            self.writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[derive(Default)]
    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn write(c: &mut Corked<Recorder>, cx: &mut Context<'_>, data: &[u8]) {
        assert!(matches!(Pin::new(&mut *c).poll_write(cx, data), Poll::Ready(Ok(n)) if n == data.len()));
    }

    #[test]
    fn a_burst_goes_out_in_one_write_after_one_yield() {
        let wakes = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut c = Corked::new(Recorder::default());
        write(&mut c, &mut cx, b"one ");
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending(), "the first flush of a burst is held");
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1, "and the task is woken to flush later");
        write(&mut c, &mut cx, b"two ");
        write(&mut c, &mut cx, b"three");
        assert!(matches!(Pin::new(&mut c).poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(c.inner.writes, vec![b"one two three".to_vec()]);
        assert_eq!(c.inner.flushes, 1);
        // Nothing buffered: a flush passes straight through, and the next burst is held again.
        assert!(matches!(Pin::new(&mut c).poll_flush(&mut cx), Poll::Ready(Ok(()))));
        write(&mut c, &mut cx, b"four");
        assert!(Pin::new(&mut c).poll_flush(&mut cx).is_pending());
        assert!(matches!(Pin::new(&mut c).poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(c.inner.writes.last().map(Vec::as_slice), Some(&b"four"[..]));
    }

    async fn call_through_connector(port: u16) -> tonic::Status {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect_with_connector_lazy(CorkedConnector::new());
        let mut kv = cairn_api::etcdserverpb::kv_client::KvClient::new(channel);
        kv.range(cairn_api::etcdserverpb::RangeRequest::default()).await.unwrap_err()
    }

    #[tokio::test]
    async fn a_refused_connection_is_known_to_have_sent_nothing() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let status = call_through_connector(port).await;
        assert!(never_sent(&status), "{status:?}");
    }

    #[tokio::test]
    async fn a_connection_lost_after_it_was_made_may_have_sent_the_call() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            // Accept, read a little of the client's preface, then hang up.
            if let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = [0u8; 16];
                let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            }
        });
        let status = call_through_connector(port).await;
        assert!(!never_sent(&status), "{status:?}");
        server.abort();
    }

    #[test]
    fn large_writes_keep_their_order_and_pass_through() {
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        let mut cx = Context::from_waker(&waker);
        let mut c = Corked::new(Recorder::default());
        write(&mut c, &mut cx, b"small");
        let big = vec![7u8; LIMIT + 1];
        write(&mut c, &mut cx, &big);
        assert_eq!(
            c.inner.writes,
            vec![b"small".to_vec(), big],
            "the buffer is drained before the big write"
        );
        write(&mut c, &mut cx, &vec![1u8; LIMIT - 1]);
        write(&mut c, &mut cx, b"xy");
        assert_eq!(c.inner.writes.len(), 3, "a write that does not fit drains the buffer first");
        assert!(matches!(Pin::new(&mut c).poll_shutdown(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(
            c.inner.writes.last().map(Vec::as_slice),
            Some(&b"xy"[..]),
            "shutdown writes what is held"
        );
    }
}
