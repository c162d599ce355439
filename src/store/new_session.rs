//! A new session stored under a fresh id that the store accepts: for the unit of work's
//! commit and for actix-session's `save` alike.

use std::time::{Duration, Instant};

use super::erased::ErasedStore;
use super::error::{ServerAnswered, StoreError};
use crate::id::SessionId;

/// New ids the store reports taken before concluding it is broken (a 128-bit collision
/// never happens).
const CREATE_ATTEMPTS: usize = 3;
/// Ids drawn for a new session, counting those skipped because their server is down:
/// with one server of three down, all 64 fall on it with probability 3^-64.
const MAX_DRAWS: usize = 64;
/// Servers that may fail a new session's write before the failure is the answer: with
/// every server down, each due a retry (which a new session's write then is), a request
/// waits out this many attempts, not one per id drawn.
const MAX_FAILURES: usize = 3;
/// Writes a server (or the proxy in front of it) may refuse before the refusal is the
/// answer. Behind a proxy, which alone knows which backend an id falls on, a new session
/// draws again until it falls on a live one: with one backend of three down, 16 refusals
/// in a row happen once in 43 million.
const MAX_ANSWERED: usize = 16;
/// Time after which a refusal is the answer, however few came before: a proxy refuses a
/// write to a backend that does not answer only once its own timeout passed, and a new
/// session gets its 503 in about the time a dead server's session does (`io_timeout`, 1 s
/// by default).
const REDRAW_BUDGET: Duration = Duration::from_secs(1);

/// Why no new session was stored.
#[derive(Debug)]
pub(crate) enum NotCreated {
    /// The operating system gave no randomness for an id.
    Entropy(std::io::Error),
    /// The store failed, or reported every id taken or on a server that is down.
    Store(StoreError),
}

/// Stores `data` under a new id, never on a server known to be down (so nothing has to move
/// when it is back), and returns the id.
pub(crate) async fn create_new(
    store: &dyn ErasedStore,
    data: &[u8],
    ttl: Duration,
) -> Result<SessionId, NotCreated> {
    let mut taken = 0;
    let mut failures = 0;
    let mut answered = 0;
    let started = Instant::now();
    for _ in 0..MAX_DRAWS {
        let id = SessionId::generate().map_err(NotCreated::Entropy)?;
        if !store.accepts(&id) {
            continue;
        }
        match store.create(&id, data, ttl).await {
            Ok(true) => return Ok(id),
            Ok(false) => {}
            // The id's server failed and the store now turns it away: a new session
            // loses nothing by going elsewhere.
            Err(StoreError::Unavailable(e)) if !store.accepts(&id) => {
                failures += 1;
                if failures == MAX_FAILURES {
                    return Err(NotCreated::Store(StoreError::Unavailable(e)));
                }
                tracing::debug!(error = %e, "new session's server is down: another id");
                continue;
            }
            // Refused for this id alone (a proxy's backend down): another id may
            // fall on a live one.
            Err(StoreError::Unavailable(e)) if e.is::<ServerAnswered>() => {
                answered += 1;
                if answered == MAX_ANSWERED || started.elapsed() >= REDRAW_BUDGET {
                    return Err(NotCreated::Store(StoreError::Unavailable(e)));
                }
                tracing::debug!(error = %e, "new session's write refused: another id");
                continue;
            }
            Err(e) => return Err(NotCreated::Store(e)),
        }
        taken += 1;
        if taken == CREATE_ATTEMPTS {
            let why = "the store reports every new session id as taken";
            return Err(NotCreated::Store(StoreError::Protocol(why.into())));
        }
    }
    let why = "every id drawn for a new session belongs to a server that is down";
    Err(NotCreated::Store(StoreError::Unavailable(why.into())))
}
