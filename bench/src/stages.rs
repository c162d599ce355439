//! Latency per stage of a request, to find what puts a server's p99 above the floor's.
//!
//! With `STAGES=<file>` set, `memcache` and `floor` time each request (from the outermost
//! service's call to its response), each store round trip in it (from queuing the command
//! to its reply, through the connection's writer and reader tasks), what comes before the
//! first round trip (routing, the cookie's check, the extractor) and what follows the last
//! (decoding, the handler, the commit's other work, the response). When the server stops
//! it writes one line per route and stage to the file: `route stage count p50 p90 p99
//! p99.9`, in microseconds. `bench/stages.py` tabulates the files of a run
//! (`STAGES_DIR=... bash scripts/bench.sh`). The time a request waits in the socket
//! before actix reads it is not in any stage: wrk's latency minus `service`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use actix_memcache_session::{
    SessionId, SessionStore, StoreError, Stored, Update, Version, WhenDown,
};
use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};
use actix_web::Error;

/// The stages, in a request's order.
const STAGES: [&str; 4] = ["service", "before store", "store", "after store"];
/// Samples a thread keeps before adding them to the process's.
const BATCH: usize = 4096;

/// Samples by route and stage, in nanoseconds.
type ByStage = HashMap<(&'static str, usize), Vec<u32>>;

/// Every thread's samples.
static ALL: Mutex<Option<ByStage>> = Mutex::new(None);

thread_local! {
    static MINE: RefCell<Samples> = const { RefCell::new(Samples(Vec::new())) };
}

/// A thread's samples not yet added to the process's; added when the thread ends.
struct Samples(Vec<(&'static str, usize, u32)>);

impl Drop for Samples {
    fn drop(&mut self) {
        flush(&mut self.0);
    }
}

tokio::task_local! {
    /// The request being served: when it started, and its store round trips' first start
    /// and last end.
    static REQUEST: Timeline;
}

struct Timeline {
    route: &'static str,
    start: Instant,
    first_store: Cell<Option<Instant>>,
    last_store: Cell<Option<Instant>>,
}

/// Whether `STAGES` asks for the timings (read once).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var_os("STAGES").is_some())
}

/// The bench's routes by name, without an allocation per request.
fn route(path: &str) -> &'static str {
    ["/read", "/incr", "/login", "/plain", "/write"]
        .into_iter()
        .find(|&route| route == path)
        .unwrap_or("other")
}

fn sample(route: &'static str, stage: usize, took: Duration) {
    let nanos = u32::try_from(took.as_nanos()).unwrap_or(u32::MAX);
    MINE.with(|mine| {
        let mine = &mut mine.borrow_mut().0;
        mine.push((route, stage, nanos));
        if mine.len() >= BATCH {
            flush(mine);
        }
    });
}

fn flush(mine: &mut Vec<(&'static str, usize, u32)>) {
    let mut all = ALL.lock().unwrap_or_else(|e| e.into_inner());
    let all = all.get_or_insert_with(HashMap::new);
    for (route, stage, nanos) in mine.drain(..) {
        all.entry((route, stage)).or_default().push(nanos);
    }
}

/// Runs one store round trip, timed as such, when inside a timed request.
pub async fn store<T>(round_trip: impl Future<Output = T>) -> T {
    if !enabled() {
        return round_trip.await;
    }
    let start = Instant::now();
    let output = round_trip.await;
    let end = Instant::now();
    let _ = REQUEST.try_with(|request| {
        if request.first_store.get().is_none() {
            request.first_store.set(Some(start));
        }
        request.last_store.set(Some(end));
        sample(request.route, 2, end - start);
    });
    output
}

/// Times the request `service` serves, stage by stage (the outermost middleware).
pub fn timed<S, B>(
    req: ServiceRequest,
    service: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody,
{
    let timeline = Timeline {
        route: route(req.path()),
        start: Instant::now(),
        first_store: Cell::new(None),
        last_store: Cell::new(None),
    };
    let response = service.call(req);
    REQUEST.scope(timeline, async move {
        let response = response.await;
        let end = Instant::now();
        REQUEST.with(|t| {
            sample(t.route, 0, end - t.start);
            if let (Some(first), Some(last)) = (t.first_store.get(), t.last_store.get()) {
                sample(t.route, 1, first - t.start);
                sample(t.route, 3, end - last);
            }
        });
        response
    })
}

/// Writes the percentiles to the file `STAGES` names, once the server stopped (its
/// workers' threads add their last samples as they end).
pub fn write() -> std::io::Result<()> {
    let Some(path) = std::env::var_os("STAGES") else {
        return Ok(());
    };
    std::thread::sleep(Duration::from_millis(500));
    MINE.with(|mine| flush(&mut mine.borrow_mut().0));
    let all = ALL.lock().unwrap_or_else(|e| e.into_inner()).take();
    let mut lines = Vec::new();
    for ((route, stage), mut nanos) in all.unwrap_or_default() {
        nanos.sort_unstable();
        let at = |q: f64| {
            let i = ((nanos.len() as f64 * q) as usize).min(nanos.len() - 1);
            f64::from(nanos[i]) / 1000.0
        };
        lines.push(format!(
            "{route}\t{}\t{}\t{:.1}\t{:.1}\t{:.1}\t{:.1}",
            STAGES[stage],
            nanos.len(),
            at(0.5),
            at(0.9),
            at(0.99),
            at(0.999)
        ));
    }
    lines.sort();
    std::fs::write(path, lines.join("\n") + "\n")
}

/// A store whose round trips are timed as the `store` stage.
#[derive(Clone)]
pub struct Timed<S>(pub S);

impl<S: SessionStore> SessionStore for Timed<S> {
    async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
        store(self.0.load(id)).await
    }

    async fn create(&self, id: &SessionId, data: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        store(self.0.create(id, data, ttl)).await
    }

    async fn update(
        &self,
        id: &SessionId,
        data: &[u8],
        version: Version,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        store(self.0.update(id, data, version, ttl)).await
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        store(self.0.touch(id, ttl)).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        store(self.0.delete(id)).await
    }

    async fn delete_if(&self, id: &SessionId, version: Version) -> Result<Update, StoreError> {
        store(self.0.delete_if(id, version)).await
    }

    fn accepts(&self, id: &SessionId) -> bool {
        self.0.accepts(id)
    }

    fn when_down(&self) -> WhenDown {
        self.0.when_down()
    }
}
