//! A guard on `aws-chunked` request bodies. s3s 0.14 buffers each chunk whole before it
//! checks the chunk's signature, so one chunk declared as gigabytes would grow memory by
//! that much. SDKs send chunks of 64 KiB to 1 MiB; Drive refuses any chunk above
//! [`MAX_CHUNK`] as soon as its header arrives, before s3s reads its data.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

/// The largest `aws-chunked` chunk Drive accepts (a deliberate limit; S3 states none).
pub const MAX_CHUNK: u64 = 16 * 1024 * 1024;
/// The longest chunk header line (`<hex size>;chunk-signature=<64 hex>`), as s3s allows.
const MAX_HEADER: usize = 1024;

/// Whether a request's body is `aws-chunked` framed.
pub fn is_chunked(headers: &http::HeaderMap) -> bool {
    headers
        .get("x-amz-content-sha256")
        .is_some_and(|v| v.as_bytes().starts_with(b"STREAMING-"))
}

/// A chunk too large, or framing that cannot be parsed.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    /// A chunk declares more than [`MAX_CHUNK`] bytes.
    #[error("an aws-chunked chunk of {0} bytes exceeds the limit of {MAX_CHUNK}")]
    ChunkTooLarge(u64),
    /// A chunk header is not `<hex size>[;...]\r\n`.
    #[error("malformed aws-chunked chunk header")]
    Malformed,
}

#[derive(Debug)]
enum State {
    /// Reading a header line (bytes so far).
    Header(Vec<u8>),
    /// Inside a chunk's data plus its trailing CRLF (bytes left).
    Data(u64),
    /// After the final, empty chunk: trailers pass unchecked (s3s bounds them).
    Done,
}

/// Passes a body through unchanged while checking its chunk headers.
pub struct ChunkGuard<B> {
    inner: B,
    state: State,
}

impl<B> ChunkGuard<B> {
    /// Guards `inner`.
    pub fn new(inner: B) -> Self {
        Self {
            inner,
            state: State::Header(Vec::new()),
        }
    }

    fn scan(&mut self, mut data: &[u8]) -> Result<(), FramingError> {
        while !data.is_empty() {
            match &mut self.state {
                State::Done => return Ok(()),
                State::Data(left) => {
                    let n = (*left).min(data.len() as u64);
                    *left -= n;
                    data = &data[usize::try_from(n).expect("bounded by the slice")..];
                    if *left == 0 {
                        self.state = State::Header(Vec::new());
                    }
                }
                State::Header(line) => {
                    let Some(end) = data.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(data);
                        if line.len() > MAX_HEADER {
                            return Err(FramingError::Malformed);
                        }
                        return Ok(());
                    };
                    line.extend_from_slice(&data[..=end]);
                    data = &data[end + 1..];
                    let size = chunk_size(line)?;
                    self.state = if size == 0 {
                        State::Done
                    } else {
                        State::Data(size + 2)
                    };
                }
            }
        }
        Ok(())
    }
}

/// The size a chunk header line declares.
fn chunk_size(line: &[u8]) -> Result<u64, FramingError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(FramingError::Malformed);
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| FramingError::Malformed)?;
    let size = u64::from_str_radix(hex, 16).map_err(|_| FramingError::Malformed)?;
    if size > MAX_CHUNK {
        return Err(FramingError::ChunkTooLarge(size));
    }
    Ok(size)
}

impl<B> Body for ChunkGuard<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let polled = match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let Some(data) = polled.data_ref()
            && let Err(e) = self.scan(data)
        {
            return Poll::Ready(Some(Err(Box::new(e))));
        }
        Poll::Ready(Some(Ok(polled)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan_all(parts: &[&[u8]]) -> Result<(), FramingError> {
        let mut g = ChunkGuard::new(());
        parts.iter().try_for_each(|p| g.scan(p))
    }

    #[test]
    fn well_formed_bodies_pass_in_any_split() {
        let sig = "0".repeat(64);
        let body = format!("5;chunk-signature={sig}\r\nhello\r\n0;chunk-signature={sig}\r\n\r\n");
        let bytes = body.as_bytes();
        for cut in 0..bytes.len() {
            assert!(
                scan_all(&[&bytes[..cut], &bytes[cut..]]).is_ok(),
                "cut at {cut}"
            );
        }
        assert!(scan_all(&[b"3\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"]).is_ok());
    }

    #[test]
    fn large_or_malformed_chunks_are_refused_at_the_header() {
        let big = format!("{:x};chunk-signature=00\r\n", MAX_CHUNK + 1);
        assert!(matches!(
            scan_all(&[big.as_bytes()]),
            Err(FramingError::ChunkTooLarge(_))
        ));
        let max = format!("{MAX_CHUNK:x}\r\n");
        assert!(scan_all(&[max.as_bytes()]).is_ok());
        assert!(matches!(
            scan_all(&[b"zz\r\n"]),
            Err(FramingError::Malformed)
        ));
        assert!(matches!(
            scan_all(&[b"ffffffffffffffffff\r\n"]),
            Err(FramingError::Malformed)
        ));
        assert!(matches!(
            scan_all(&[&[b'1'; 2000]]),
            Err(FramingError::Malformed)
        ));
    }
}
