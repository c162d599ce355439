//! Metrics (feature `metrics`) after scripted requests against a real memcached, recorded
//! by `metrics-util`'s debugging recorder installed for this test's thread only; and the
//! session's outcome on the request's tracing span.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix_memcache_session::{MemcacheStore, MemoryStore, SessionStore as _};
use actix_web::test;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};

use crate::app::TestApp;
use crate::capture::Capture;
#[cfg(feature = "r2d2")]
use crate::memcached::r2d2_store;
use crate::memcached::{store, Memcached};
use crate::support::{tampered, CountingStore};
use crate::traced_app::traced_app;

/// Every metric recorded since the last snapshot (the debugging recorder's snapshots
/// reset counters and gauges): (name, sorted labels) -> value.
struct Metrics(HashMap<(String, Vec<(String, String)>), DebugValue>);

impl Metrics {
    fn of(snapshotter: &Snapshotter) -> Self {
        let mut all = HashMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let mut labels: Vec<(String, String)> = key
                .labels()
                .map(|l| (l.key().to_owned(), l.value().to_owned()))
                .collect();
            labels.sort();
            all.insert((key.name().to_owned(), labels), value);
        }
        Self(all)
    }

    /// The metrics called `name` whose labels include `with`.
    fn matching<'a>(
        &'a self,
        name: &'a str,
        with: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = (&'a [(String, String)], &'a DebugValue)> + 'a {
        self.0.iter().filter_map(move |((n, labels), value)| {
            let has = |(k, v): &(&str, &str)| labels.iter().any(|(lk, lv)| lk == k && lv == v);
            (n == name && with.iter().all(has)).then_some((labels.as_slice(), value))
        })
    }

    /// The sum of the counters called `name` with `with` among their labels.
    fn counter(&self, name: &str, with: &[(&str, &str)]) -> u64 {
        self.matching(name, with)
            .map(|(_, v)| match v {
                DebugValue::Counter(n) => *n,
                other => panic!("{name} is not a counter: {other:?}"),
            })
            .sum()
    }

    /// Samples of the histograms called `name` with `with` among their labels.
    fn samples(&self, name: &str, with: &[(&str, &str)]) -> Vec<f64> {
        self.matching(name, with)
            .flat_map(|(_, v)| match v {
                DebugValue::Histogram(samples) => samples.iter().map(|s| s.into_inner()),
                other => panic!("{name} is not a histogram: {other:?}"),
            })
            .collect()
    }

    fn gauge(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.matching(name, with)
            .map(|(_, v)| match v {
                DebugValue::Gauge(g) => g.into_inner(),
                other => panic!("{name} is not a gauge: {other:?}"),
            })
            .sum()
    }

    /// Every label set used, for the cardinality check.
    fn labels(&self) -> impl Iterator<Item = &(String, String)> {
        self.0.keys().flat_map(|(_, labels)| labels)
    }
}

fn commits(m: &Metrics, outcome: &str) -> u64 {
    m.counter("session.commits", &[("outcome", outcome)])
}

fn loads(m: &Metrics, result: &str) -> u64 {
    m.counter("session.loads", &[("result", result)])
}

/// A login refused at the user's session limit (403) is counted as that, not as a failure.
#[actix_web::test]
async fn a_login_refused_at_the_limit_is_counted_as_one() {
    use actix_memcache_session::OverLimit;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let memcached = Memcached::start();
    let store = MemcacheStore::new(&memcached.url()).unwrap();
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.max_sessions_per_user(1, OverLimit::RefuseLogin)
    })
    .await;
    assert_eq!(app.get("/login/ada", None).await.status, 200);
    assert_eq!(app.get("/login/ada", None).await.status, 403);
    let m = Metrics::of(&snapshotter);
    assert_eq!(commits(&m, "too_many_sessions"), 1);
    assert_eq!(commits(&m, "failed"), 0);
}

/// A commit, a read, aborts of each kind, a merge, a 409, a 413, a refused cookie, and
/// 503s with memcached stopped: each counted once under its own label, and memcached's
/// operations timed with OpenTelemetry's attributes.
#[actix_web::test]
async fn counters_follow_scripted_requests() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut memcached = Memcached::start();
    let port = memcached.addr().port().to_string();
    let server = [
        ("server.address", "127.0.0.1"),
        ("server.port", port.as_str()),
    ];
    let store = MemcacheStore::new(&memcached.url()).unwrap();
    let app = TestApp::configured(CountingStore::new(store), |b| b.max_size(2000)).await;

    let first = app.get("/set/p/k/1", None).await;
    assert_eq!(first.status, 200, "{first:?}");
    let cookie = first.cookie();
    assert_eq!(app.get("/get/p/k", Some(&cookie)).await.body, "1");
    assert_eq!(
        app.get("/set-status/500/p/k/2", Some(&cookie)).await.status,
        500
    );
    assert_eq!(app.get("/set-err/p/k/2", Some(&cookie)).await.status, 400);
    assert_eq!(app.get("/abort/p/k/2", Some(&cookie)).await.status, 200);
    let (a, b) = app
        .interleave("/gated/set/p/a/1", "/set/p/b/1", &cookie)
        .await;
    assert_eq!((a.status, b.status), (200, 200));
    let (a, b) = app
        .interleave("/gated/set/p/k/3", "/set/p/k/4", &cookie)
        .await;
    assert_eq!((a.status, b.status), (409, 200));
    assert_eq!(app.get("/big/p/k/5000", Some(&cookie)).await.status, 413);
    assert_eq!(
        app.get("/get/p/k", Some(&tampered(&cookie))).await.body,
        "none"
    );
    let renewed_empty = app.get("/renew", None).await;
    assert!(
        renewed_empty.cookie.is_none(),
        "an empty new session is not stored"
    );

    let m = Metrics::of(&snapshotter);
    assert_eq!(
        loads(&m, "fresh"),
        3,
        "no cookie twice, and the tampered one"
    );
    assert_eq!(loads(&m, "hit"), 9);
    assert_eq!(
        m.counter("session.cookies.refused", &[("reason", "invalid")]),
        1
    );
    assert_eq!(
        commits(&m, "written"),
        4,
        "first, both merged writers, the winner"
    );
    assert_eq!(
        commits(&m, "unchanged"),
        3,
        "a read, the tampered cookie's, an empty session renewed"
    );
    assert_eq!(commits(&m, "aborted_by_status"), 1);
    assert_eq!(
        commits(&m, "aborted_by_handler"),
        2,
        "an Err and an abort()"
    );
    assert_eq!(commits(&m, "conflict"), 1);
    assert_eq!(commits(&m, "too_large"), 1);
    assert_eq!(
        m.counter("session.merge.retries", &[]),
        2,
        "the merge and the 409"
    );
    assert_eq!(m.counter("session.touches", &[("result", "skipped")]), 1);
    let sizes = m.samples("session.size", &[]);
    assert!(
        sizes.iter().any(|&s| s > 5000.0),
        "the refused one: {sizes:?}"
    );
    assert!(sizes.iter().all(|&s| s > 0.0), "{sizes:?}");
    for op in ["get", "add", "set"] {
        let ok = [
            &server[..],
            &[("db.system.name", "memcached"), ("db.operation.name", op)],
        ]
        .concat();
        let seconds = m.samples("db.client.operation.duration", &ok);
        assert!(!seconds.is_empty(), "{op} timed");
        assert!(
            seconds.iter().all(|&s| s > 0.0 && s < 5.0),
            "{op}: {seconds:?}"
        );
    }
    assert_eq!(m.gauge("db.client.connection.count", &server), 1.0);

    memcached.stop();
    let down = app.get("/get/p/k", Some(&cookie)).await;
    assert_eq!(down.status, 503, "{down:?}");
    let fresh = app.get("/set/p/k/1", None).await;
    assert_eq!(fresh.status, 503, "{fresh:?}");
    let m = Metrics::of(&snapshotter);
    assert_eq!(loads(&m, "error"), 1);
    assert_eq!(commits(&m, "unavailable"), 1, "the new session's add");
    let failed = [&server[..], &[("error.type", "unavailable")]].concat();
    assert_eq!(m.samples("db.client.operation.duration", &failed).len(), 2);
    assert_eq!(
        m.gauge("db.client.connection.count", &server),
        -1.0,
        "since the last snapshot, the one connection closed with memcached"
    );
    for (key, value) in m.labels() {
        assert!(
            value.len() < 40 && !value.contains('/') && !value.contains('='),
            "{key}={value}: a label holds only a fixed or configured value"
        );
    }
}

/// Each way a load can go, and each reason a cookie is refused, is counted under its own
/// label: a cookie naming a session gone (`miss`), one whose user was signed out
/// (`signed_out`), one whose server is down with `StartFresh` (`down`); a cookie expired
/// or stamped ahead of this clock; and a refresh's touch (`done`).
#[actix_web::test]
async fn every_load_and_refusal_is_counted_under_its_label() {
    use actix_memcache_session::WhenDown;
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut memcached = Memcached::start();
    let store = MemcacheStore::builder(memcached.url())
        .when_server_down(WhenDown::StartFresh)
        .build()
        .unwrap();
    let app = TestApp::configured(CountingStore::new(store), |b| {
        b.idle_timeout(Duration::from_secs(8))
    })
    .await;
    let refused = |m: &Metrics, reason| m.counter("session.cookies.refused", &[("reason", reason)]);

    let gone = app.get("/set/p/k/1", None).await.cookie();
    let id = app.store.last_created();
    app.store.inner.delete(&id).await.unwrap();
    assert_eq!(app.get("/get/p/k", Some(&gone)).await.body, "none");
    let signed_in = app.get("/login/ada", None).await.cookie();
    app.sessions.sign_out_everywhere("ada").await.unwrap();
    assert_eq!(app.get("/whoami", Some(&signed_in)).await.body, "none");
    let live = app.get("/set/p/k/2", None).await.cookie();
    let id = app.store.last_created();
    for ahead in [120, -60] {
        let cookie = app.cookie_from_ahead(&id, ahead);
        assert_eq!(app.get("/get/p/k", Some(&cookie)).await.body, "none");
    }
    // Due for a refresh at a quarter of the idle timeout: stamped 3 s ago.
    let due = app.cookie_from_ahead(&id, -3);
    assert_eq!(app.get("/get/p/k", Some(&due)).await.body, "2");
    let m = Metrics::of(&snapshotter);
    assert_eq!(loads(&m, "miss"), 1, "the session gone");
    assert_eq!(loads(&m, "signed_out"), 1);
    assert_eq!(refused(&m, "future"), 1);
    assert_eq!(refused(&m, "expired"), 1);
    assert_eq!(m.counter("session.touches", &[("result", "done")]), 1);

    memcached.stop();
    assert_eq!(app.get("/get/p/k", Some(&live)).await.body, "none");
    let m = Metrics::of(&snapshotter);
    assert_eq!(loads(&m, "down"), 1);
}

/// A fleet counts a server marked down and back in service, by server.
#[actix_web::test]
async fn servers_marked_down_and_back_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let up = Memcached::start();
    let mut flaky = Memcached::start();
    let url = crate::memcached::fleet_url([&up, &flaky]);
    let store = MemcacheStore::builder(url)
        .failure_limit(1)
        .retry_interval(Duration::from_millis(50))
        .build()
        .unwrap();
    let port = flaky.addr().port().to_string();
    let flaky_labels = [("server.port", port.as_str())];
    store.ping().await.unwrap();
    flaky.stop();
    let report = store.ping_servers().await;
    assert!(
        report[0].result.is_ok() && report[1].result.is_err(),
        "{report:?}"
    );
    let m = Metrics::of(&snapshotter);
    assert_eq!(m.counter("session.server.marked_down", &flaky_labels), 1);
    assert_eq!(m.counter("session.server.marked_down", &[]), 1, "only it");
    assert_eq!(m.counter("session.server.back", &[]), 0);
    flaky.restart();
    // Marked down, it is asked again once its retry interval is over.
    tokio::time::sleep(Duration::from_millis(60)).await;
    let report = store.ping_servers().await;
    assert!(report.iter().all(|s| s.result.is_ok()), "{report:?}");
    let m = Metrics::of(&snapshotter);
    assert_eq!(m.counter("session.server.back", &flaky_labels), 1);
}

/// Through a proxy whose backend is down, the proxy answers each request with a
/// `SERVER_ERROR` line: the request fails (503), and its operation is timed as failed.
#[actix_web::test]
async fn a_proxys_server_error_is_timed_as_a_failure() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let mut proxy = crate::nutcracker::Nutcracker::start(&[1]);
    let store = MemcacheStore::new(&proxy.url()).unwrap();
    let app = TestApp::new(CountingStore::new(store)).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    proxy.servers[0].0.stop();
    let down = app.get("/get/p/k", Some(&cookie)).await;
    assert_eq!(down.status, 503, "{down:?}");
    let m = Metrics::of(&snapshotter);
    let failed = [("db.operation.name", "get"), ("error.type", "unavailable")];
    assert_eq!(m.samples("db.client.operation.duration", &failed).len(), 1);
}

/// Through `from_r2d2` operations are timed without a server (the pool does not say which),
/// and the pool's connections are counted idle and used.
#[cfg(feature = "r2d2")]
#[actix_web::test]
async fn an_r2d2_pool_is_timed_and_its_connections_counted() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _local = metrics::set_default_local_recorder(&recorder);
    let app = TestApp::new(CountingStore::new(r2d2_store(""))).await;
    let cookie = app.get("/set/p/k/1", None).await.cookie();
    assert_eq!(app.get("/get/p/k", Some(&cookie)).await.body, "1");
    let m = Metrics::of(&snapshotter);
    let get = [
        ("db.system.name", "memcached"),
        ("db.operation.name", "get"),
    ];
    assert_eq!(m.samples("db.client.operation.duration", &get).len(), 1);
    assert!(m
        .matching("db.client.operation.duration", &[])
        .all(|(labels, _)| { labels.iter().all(|(k, _)| k != "server.address") }));
    let idle = [("db.client.connection.state", "idle")];
    assert!(m.gauge("db.client.connection.count", &idle) >= 1.0);
}

/// The outcome lands on the request's span (as `tracing-actix-web`'s root span, when it
/// declares `session.outcome`), and each store operation has a debug span.
#[actix_web::test]
async fn the_outcome_is_recorded_on_the_request_span() {
    let capture = Capture::default();
    let outcomes = Arc::clone(&capture.outcomes);
    let store_ops = Arc::clone(&capture.store_ops);
    // tracing caches each callsite's interest process-wide. While one subscriber exists it
    // asks only the default of whichever thread reaches a callsite first, and a test on
    // another thread, with none, would cache "never" for the store's span (1 run in 8
    // here; tokio-rs/tracing#3611). With a second one alive it asks both and caches
    // "sometimes": each span then asks the current thread's subscriber.
    let _second = tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default());
    let _default = tracing::subscriber::set_default(capture);
    // What other tests' threads may do at any moment, done first for certain: a thread
    // with no subscriber reaches the spans.
    std::thread::spawn(|| {
        actix_web::rt::System::new().block_on(async {
            let app = traced_app(MemoryStore::new()).await;
            let req = test::TestRequest::get().uri("/set").to_request();
            assert_eq!(test::call_service(&app, req).await.status(), 200);
        })
    })
    .join()
    .unwrap();
    let app = traced_app(store()).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/set").to_request()).await;
    assert_eq!(res.status(), 200);
    let cookie = res.response().cookies().next().unwrap().into_owned();
    let req = test::TestRequest::get().uri("/fail").cookie(cookie);
    assert_eq!(
        test::call_service(&app, req.to_request()).await.status(),
        400
    );
    assert_eq!(*outcomes.lock().unwrap(), ["written", "aborted_by_handler"]);
    let ops = store_ops.lock().unwrap();
    assert_eq!(*ops, ["create", "load"], "one span per store operation");
}
