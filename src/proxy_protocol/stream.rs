//! A connection whose PROXY protocol header has been read, with the bytes that came after it.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pin_project! {
    /// A connection after its PROXY protocol header: reads first return the bytes that arrived
    /// in the same reads as the header (often the start of the HTTP request), then go on with
    /// the connection. Writes go straight to the connection.
    ///
    /// Returned by [`read_proxy_header`](super::read_proxy_header) and
    /// [`ProxyProtocolListener`](super::ProxyProtocolListener); wrap it in
    /// `hyper_util::rt::TokioIo` to serve it with Hyper.
    pub struct ProxiedStream<S> {
        #[pin]
        inner: S,
        buffered: Vec<u8>,
        position: usize,
    }
}

impl<S> ProxiedStream<S> {
    /// `inner`, with `buffered[position..]` to be read before it.
    pub(crate) fn new(inner: S, buffered: Vec<u8>, position: usize) -> Self {
        Self {
            inner,
            buffered,
            position,
        }
    }

    /// The connection itself.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The connection itself, mutably. Reading from it directly skips the
    /// [`buffered`](Self::buffered) bytes.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The bytes received after the header that have not been read yet.
    pub fn buffered(&self) -> &[u8] {
        self.buffered.get(self.position..).unwrap_or_default()
    }

    /// The connection and the bytes received after the header that have not been read yet,
    /// which come before anything still to be read from the connection.
    pub fn into_parts(mut self) -> (S, Vec<u8>) {
        let position = self.position.min(self.buffered.len());
        self.buffered.drain(..position);
        (self.inner, self.buffered)
    }
}

impl<S> fmt::Debug for ProxiedStream<S>
where
    S: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxiedStream")
            .field("inner", &self.inner)
            .field("buffered", &self.buffered().len())
            .finish()
    }
}

impl<S: AsyncRead> AsyncRead for ProxiedStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let pending = this.buffered.get(*this.position..).unwrap_or_default();
        if pending.is_empty() {
            return this.inner.poll_read(cx, buf);
        }
        let n = pending.len().min(buf.remaining());
        buf.put_slice(&pending[..n]);
        *this.position += n;
        if *this.position >= this.buffered.len() {
            // Everything buffered was handed out: give the memory back.
            *this.buffered = Vec::new();
            *this.position = 0;
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite> AsyncWrite for ProxiedStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[tokio::test]
    async fn buffered_bytes_come_before_the_connection() {
        let (client, server) = tokio::io::duplex(64);
        let mut stream = ProxiedStream::new(server, b"HEADERGET /".to_vec(), 6);
        assert_eq!(stream.buffered(), b"GET /");
        let mut client = client;
        client.write_all(b" HTTP/1.1\r\n").await.unwrap();
        drop(client);
        let mut all = Vec::new();
        stream.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET / HTTP/1.1\r\n");
        assert!(stream.buffered().is_empty());
    }

    #[tokio::test]
    async fn small_reads_drain_the_buffer_in_order() {
        let (_client, server) = tokio::io::duplex(8);
        let mut stream = ProxiedStream::new(server, b"abcdef".to_vec(), 0);
        let mut two = [0u8; 2];
        for expected in [b"ab", b"cd", b"ef"] {
            stream.read_exact(&mut two).await.unwrap();
            assert_eq!(&two, expected);
        }
        let (_, rest) = stream.into_parts();
        assert!(rest.is_empty());
    }

    #[test]
    fn into_parts_returns_only_the_unread_bytes() {
        let stream = ProxiedStream::new((), b"headerbody".to_vec(), 6);
        let ((), rest) = stream.into_parts();
        assert_eq!(rest, b"body");
    }
}
