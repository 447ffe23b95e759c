//! What a connection may hold: how many each client address and all clients
//! may keep open, how long one may stay silent before its first request, and
//! how long a response may wait on a client that stopped reading.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::http::{ConnectionMetrics, ReasonLabels};

/// How many connections may be open, from one address and from all.
pub struct Admission {
    per_address: usize,
    total: usize,
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
    metrics: ConnectionMetrics,
}

/// An admitted connection; gives its place back when dropped.
pub struct Admitted {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Admission {
    pub fn new(per_address: usize, total: usize, metrics: ConnectionMetrics) -> Arc<Admission> {
        Arc::new(Admission {
            per_address,
            total,
            open: Mutex::new((0, HashMap::new())),
            metrics,
        })
    }

    /// A place for a connection from `ip`, or the limit it would pass.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Admitted, &'static str> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *open;
        let reason = if *total >= self.total {
            Some("total")
        } else if by_ip.get(&ip).copied().unwrap_or(0) >= self.per_address {
            Some("per_address")
        } else {
            None
        };
        if let Some(reason) = reason {
            self.metrics
                .refused
                .get_or_create(&ReasonLabels { reason })
                .inc();
            return Err(reason);
        }
        *total += 1;
        *by_ip.entry(ip).or_insert(0) += 1;
        self.metrics.open.inc();
        Ok(Admitted {
            admission: self.clone(),
            ip,
        })
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self
            .admission
            .open
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (total, by_ip) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(n) = by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                by_ip.remove(&self.ip);
            }
        }
        self.admission.metrics.open.dec();
    }
}

/// Set by the service when a connection's first request arrives: from then on
/// hyper's own timers (request head, keep-alive pings) watch it.
#[derive(Clone, Default)]
pub struct FirstRequest(Arc<AtomicBool>);

impl FirstRequest {
    pub fn arrived(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn has_arrived(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// A connection's socket with two deadlines hyper does not keep: the whole path
/// from accept to the first request (protocol detection has no timer, so a
/// client that sends nothing, or part of an HTTP/2 preface, would hold it for
/// ever), and a write that makes no progress for `write_stall` (a client that
/// stopped reading a response).
pub struct GuardedIo<T> {
    inner: T,
    first_request: FirstRequest,
    first_deadline: Option<Pin<Box<Sleep>>>,
    write_stall: Option<Duration>,
    /// Made at the first stalled write and reset at each later one, so that a
    /// stream whose writes often wait for the socket allocates one timer.
    write_deadline: Option<Pin<Box<Sleep>>>,
    /// Whether the deadline runs: a write is waiting and none has completed since.
    write_waiting: bool,
    metrics: ConnectionMetrics,
    _admitted: Admitted,
}

impl<T> GuardedIo<T> {
    pub fn new(
        inner: T,
        admitted: Admitted,
        first_request: FirstRequest,
        silence: Option<Duration>,
        metrics: ConnectionMetrics,
    ) -> Self {
        GuardedIo {
            inner,
            first_request,
            first_deadline: silence.map(|d| Box::pin(tokio::time::sleep(d))),
            write_stall: silence,
            write_deadline: None,
            write_waiting: false,
            metrics,
            _admitted: admitted,
        }
    }

    /// Whether the wait for the first request is over, its deadline passed.
    fn first_request_overdue(&mut self, cx: &mut Context<'_>) -> bool {
        if self.first_request.has_arrived() {
            self.first_deadline = None;
        }
        let Some(deadline) = &mut self.first_deadline else {
            return false;
        };
        if deadline.as_mut().poll(cx).is_pending() {
            return false;
        }
        self.first_deadline = None;
        self.metrics
            .timed_out
            .get_or_create(&ReasonLabels {
                reason: "first_request",
            })
            .inc();
        true
    }

    /// After a write returned `poll`: clears the stall deadline on progress,
    /// or arms it and fails the write once it has passed.
    fn watch_write<R>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if poll.is_ready() {
            self.write_waiting = false;
            return poll;
        }
        let Some(stall) = self.write_stall else {
            return poll;
        };
        if !self.write_waiting {
            let due = Instant::now() + stall;
            match &mut self.write_deadline {
                Some(deadline) => deadline.as_mut().reset(due),
                None => self.write_deadline = Some(Box::pin(tokio::time::sleep_until(due))),
            }
            self.write_waiting = true;
        }
        let Some(deadline) = &mut self.write_deadline else {
            return poll;
        };
        if deadline.as_mut().poll(cx).is_ready() {
            self.write_waiting = false;
            self.metrics
                .timed_out
                .get_or_create(&ReasonLabels { reason: "write" })
                .inc();
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )));
        }
        Poll::Pending
    }
}

fn silent_too_long() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "no request before the deadline")
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Pending if this.first_request_overdue(cx) => Poll::Ready(Err(silent_too_long())),
            poll => poll,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch_write(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch_write(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch_write(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_per_address_and_in_total() {
        let metrics = ConnectionMetrics::default();
        let admission = Admission::new(2, 3, metrics.clone());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = admission.admit(a).unwrap();
        let _a2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).err(), Some("per_address"));
        let _b1 = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).err(), Some("total"));
        drop(a1);
        let _b2 = admission
            .admit(b)
            .expect("a closed connection gives its place back");
        assert_eq!(metrics.open.get(), 3);
    }
}
