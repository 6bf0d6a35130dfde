//! Buckets a replica has seen at its provider lately, so that operations inside a bucket
//! need not ask for the bucket's record each time. Only existence is kept, for
//! [`KNOWN_FOR`]; a bucket this replica deletes is forgotten at once, and an answer to a
//! question asked before a deletion began here is not remembered. A bucket deleted through
//! another replica can look present here for up to [`KNOWN_FOR`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::{BucketName, Result};

/// How long a replica trusts that a bucket it has seen still exists.
pub(crate) const KNOWN_FOR: Duration = Duration::from_secs(1);

/// Entries kept before expired ones are swept.
const SWEEP_AT: usize = 1024;

/// The buckets seen lately.
#[derive(Default)]
pub(crate) struct KnownBuckets(Mutex<Known>);

#[derive(Default)]
struct Known {
    seen: HashMap<String, Instant>,
    /// Deletions begun or finished here: an answer asked for under an older count is stale.
    forgotten: u64,
}

/// When a question about a bucket was asked, to pass to [`KnownBuckets::seen`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    forgotten: u64,
    at: Instant,
}

impl KnownBuckets {
    fn lock(&self) -> std::sync::MutexGuard<'_, Known> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `Ok` if `bucket` was seen within [`KNOWN_FOR`]; otherwise what `ask` (the provider
    /// check) answers, remembered when it says the bucket exists.
    pub(crate) async fn check(
        &self,
        bucket: &BucketName,
        ask: impl Future<Output = Result<()>>,
    ) -> Result<()> {
        if self.fresh(bucket) {
            return Ok(());
        }
        let mark = self.mark();
        ask.await?;
        self.seen(bucket, mark);
        Ok(())
    }

    /// Whether `bucket` was seen less than [`KNOWN_FOR`] ago.
    pub(crate) fn fresh(&self, bucket: &BucketName) -> bool {
        self.lock()
            .seen
            .get(bucket.as_str())
            .is_some_and(|at| at.elapsed() < KNOWN_FOR)
    }

    /// Marks the moment a question about a bucket is asked.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            forgotten: self.lock().forgotten,
            at: Instant::now(),
        }
    }

    /// Notes that `bucket` exists, as asked at `mark`, unless a deletion began since.
    pub(crate) fn seen(&self, bucket: &BucketName, mark: Mark) {
        let mut known = self.lock();
        if known.forgotten != mark.forgotten {
            return;
        }
        if known.seen.len() >= SWEEP_AT {
            known.seen.retain(|_, at| at.elapsed() < KNOWN_FOR);
        }
        known.seen.insert(bucket.as_str().to_owned(), mark.at);
    }

    /// Forgets `bucket`: called when its deletion begins and when it ends.
    pub(crate) fn forget(&self, bucket: &BucketName) {
        let mut known = self.lock();
        known.forgotten += 1;
        known.seen.remove(bucket.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_buckets_expire_and_deletions_win() {
        let known = KnownBuckets::default();
        let b = BucketName::new("b-1").unwrap();
        assert!(!known.fresh(&b));
        let mark = known.mark();
        known.seen(&b, mark);
        assert!(known.fresh(&b));
        assert!(!known.fresh(&BucketName::new("c-1").unwrap()));
        known.forget(&b);
        assert!(!known.fresh(&b));
        known.seen(&b, mark);
        assert!(
            !known.fresh(&b),
            "an answer asked for before the deletion does not bring it back"
        );
        let old = Mark {
            at: Instant::now() - KNOWN_FOR,
            ..known.mark()
        };
        known.seen(&b, old);
        assert!(!known.fresh(&b), "only for a while");
    }

    #[tokio::test]
    async fn a_check_asks_once_while_fresh_and_keeps_refusals_out() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let known = KnownBuckets::default();
        let b = BucketName::new("b-1").unwrap();
        let count = AtomicU32::new(0);
        let asked = &count;
        let ask = |exists: bool| async move {
            asked.fetch_add(1, Ordering::SeqCst);
            if exists {
                Ok(())
            } else {
                Err(crate::Error::NoSuchBucket)
            }
        };
        assert!(known.check(&b, ask(false)).await.is_err());
        assert!(known.check(&b, ask(true)).await.is_ok());
        assert!(
            known.check(&b, ask(false)).await.is_ok(),
            "fresh: not asked"
        );
        assert_eq!(count.load(Ordering::SeqCst), 2);
    }
}
