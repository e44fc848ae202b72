//! Lingering close: a connection the server closes first reads and drops
//! what the client is still sending.
//!
//! Closing a TCP socket with unread bytes in its receive buffer makes the
//! kernel send a reset instead of a clean end, and a reset can destroy the
//! answer still on its way to the client, which then sees "connection reset
//! by peer" instead of its response. That happens when a client sends more
//! than the server reads before it closes: bytes after a `Connection:
//! close` request, a body the server had no reason to read, pipelined
//! requests. (Found by the fuzz harness: `GET /v2/openapi.json` with
//! `Connection: close` followed by 64 KiB of stray bytes.)
//!
//! [`Lingering`] wraps the socket: when hyper shuts the connection down it
//! first ends the write half (the client sees the end of the answer), then
//! reads and drops incoming bytes until the client closes its side, at most
//! [`LINGER_BYTES`] and [`LINGER_TIME`], as web servers' "lingering close"
//! does. A client that keeps sending only costs that much.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// The most bytes read and dropped while closing.
pub const LINGER_BYTES: u64 = 1024 * 1024;
/// The longest a closing connection waits for the client to close.
pub const LINGER_TIME: Duration = Duration::from_secs(2);

/// A TCP stream whose shutdown lingers (see the module docs).
pub struct Lingering {
    stream: TcpStream,
    /// Set once the write half is shut: the deadline and bytes dropped.
    closing: Option<(Pin<Box<Sleep>>, u64)>,
}

impl Lingering {
    /// Wraps an accepted connection.
    pub fn new(stream: TcpStream) -> Self {
        Lingering {
            stream,
            closing: None,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.closing.is_none() {
            ready!(Pin::new(&mut this.stream).poll_shutdown(cx))?;
            this.closing = Some((Box::pin(tokio::time::sleep(LINGER_TIME)), 0));
        }
        let Some((deadline, dropped)) = this.closing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let mut scratch = [0u8; 8192];
        loop {
            if deadline.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ok(()));
            }
            let mut buf = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.stream).poll_read(cx, &mut buf) {
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    *dropped += buf.filled().len() as u64;
                    if *dropped >= LINGER_BYTES {
                        return Poll::Ready(Ok(()));
                    }
                }
                // The client reset or the socket failed: nothing to protect.
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// The server answers, closes while the client is still sending, and
    /// the client still reads the whole answer (with a plain close, the
    /// unread bytes make the kernel reset the connection, and the answer
    /// is lost).
    #[tokio::test]
    async fn an_answer_survives_a_client_that_keeps_sending() {
        const ANSWER: usize = 256 * 1024;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let mut conn = Lingering::new(stream);
            let mut head = [0u8; 16];
            conn.read_exact(&mut head).await.unwrap();
            conn.write_all(&vec![b'a'; ANSWER]).await.unwrap();
            conn.shutdown().await.unwrap();
        });
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut rd, mut wr) = stream.into_split();
        let writer = tokio::spawn(async move {
            // 16 bytes the server reads, then 512 KiB it never asked for.
            let _ = wr.write_all(&[b'x'; 16]).await;
            let _ = wr.write_all(&vec![b'y'; 512 * 1024]).await;
            wr
        });
        let mut answer = Vec::new();
        rd.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer.len(), ANSWER);
        drop(writer.await.unwrap());
        server.await.unwrap();
    }
}
