//! Verifying a body on its way to a provider, before the provider can commit it.
//!
//! A provider commits an upload of known length once it has received the last byte. So the
//! body is passed on with its last chunk held back: when the client's body ends, the seal
//! runs, and only if it accepts is the last chunk released; otherwise the stream fails and
//! the provider never sees a complete body.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use md5::{Digest as _, Md5};

use crate::{BodyStream, Checksums, Error, Result, Seal};

/// What the seal established about a complete body.
#[derive(Debug, Clone, Default)]
pub(crate) struct Verified {
    /// The body's MD5, hex (empty unless asked for).
    pub md5: String,
    /// The checksums the seal returned.
    pub checksums: Checksums,
    /// The body's length.
    pub len: u64,
}

/// The outcome of a sealed body, readable once the stream has ended.
#[derive(Clone, Default)]
pub(crate) struct Outcome(Arc<Mutex<Option<Result<Verified>>>>);

impl Outcome {
    /// Takes the outcome: the verified body, or the reason it was refused or failed; `None`
    /// if the consumer stopped reading before the end (the provider call failed first).
    pub(crate) fn take(&self) -> Option<Result<Verified>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }

    fn set(&self, r: Result<Verified>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
    }
}

struct Sealing {
    inner: BodyStream,
    held: Option<Bytes>,
    md5: Option<Md5>,
    len: u64,
    seal: Mutex<Option<Seal>>,
    outcome: Outcome,
    done: bool,
}

/// Wraps `body` so that the seal runs before its last chunk is released; the seal gets the
/// body's MD5 when `md5` asks for it (an empty string otherwise). Read the outcome after the
/// consumer has finished with the stream.
pub(crate) fn sealing(body: BodyStream, seal: Option<Seal>, md5: bool) -> (BodyStream, Outcome) {
    let outcome = Outcome::default();
    let stream = Sealing {
        inner: body,
        held: None,
        md5: md5.then(Md5::new),
        len: 0,
        seal: Mutex::new(seal),
        outcome: outcome.clone(),
        done: false,
    };
    (Box::pin(stream), outcome)
}

impl Sealing {
    fn finish(&mut self) -> Poll<Option<io::Result<Bytes>>> {
        self.done = true;
        let md5 = self.md5.take().map_or_else(String::new, |m| {
            hex_simd::encode_to_string(m.finalize(), hex_simd::AsciiCase::Lower)
        });
        let seal = self
            .seal
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match seal.map(|s| s(&md5)).transpose() {
            Ok(checksums) => {
                self.outcome.set(Ok(Verified {
                    md5,
                    checksums: checksums.unwrap_or_default(),
                    len: self.len,
                }));
                Poll::Ready(self.held.take().map(Ok))
            }
            Err(e) => {
                let message = e.to_string();
                self.outcome.set(Err(e));
                Poll::Ready(Some(Err(io::Error::other(message))))
            }
        }
    }
}

impl Stream for Sealing {
    type Item = io::Result<Bytes>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            match this.inner.as_mut().poll_next(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(chunk))) => {
                    if chunk.is_empty() {
                        continue;
                    }
                    if let Some(md5) = this.md5.as_mut() {
                        md5.update(&chunk);
                    }
                    this.len += chunk.len() as u64;
                    if let Some(previous) = this.held.replace(chunk) {
                        return Poll::Ready(Some(Ok(previous)));
                    }
                }
                Poll::Ready(Some(Err(e))) => {
                    this.done = true;
                    let message = e.to_string();
                    this.outcome.set(Err(Error::Body(e)));
                    return Poll::Ready(Some(Err(io::Error::other(message))));
                }
                Poll::Ready(None) => return this.finish(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    fn body(chunks: &[&'static [u8]]) -> BodyStream {
        Box::pin(futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok(Bytes::from_static(c)))
                .collect::<Vec<_>>(),
        ))
    }

    #[tokio::test]
    async fn releases_the_last_chunk_only_when_the_seal_accepts() {
        let (s, outcome) = sealing(body(&[b"ab", b"", b"cd"]), None, true);
        let got: Vec<_> = s.collect().await;
        assert_eq!(got.len(), 2);
        let v = outcome.take().unwrap().unwrap();
        assert_eq!(
            (v.len, v.md5.as_str()),
            (4, "e2fc714c4727ee9395f324cd2e7f331f")
        );
        let md5_seen: Seal = Box::new(|md5| {
            assert_eq!(md5, "e2fc714c4727ee9395f324cd2e7f331f");
            Ok(Checksums::new())
        });
        let (s, outcome) = sealing(body(&[b"ab", b"cd"]), Some(md5_seen), true);
        assert_eq!(s.collect::<Vec<_>>().await.len(), 2);
        assert!(matches!(outcome.take(), Some(Ok(_))));

        let refuse: Seal = Box::new(|_| Err(Error::Rejected("bad digest".into())));
        let (mut s, outcome) = sealing(body(&[b"ab", b"cd"]), Some(refuse), false);
        assert_eq!(s.next().await.unwrap().unwrap(), "ab");
        assert!(
            s.next().await.unwrap().is_err(),
            "the last chunk is never released"
        );
        assert!(s.next().await.is_none());
        assert!(matches!(outcome.take(), Some(Err(Error::Rejected(_)))));
    }

    #[tokio::test]
    async fn an_unread_body_has_no_outcome() {
        let (_s, outcome) = sealing(body(&[b"x"]), None, false);
        assert!(outcome.take().is_none());
    }
}
