//! A client that goes away: a real HTTP server over real memcached, and a client that resets
//! its socket (TCP RST) mid-request. actix then drops the request's future; the unit of
//! work must still end exactly once, its hooks run to their end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_memcache_session::{Key, MemcacheSession, Session};
use actix_web::dev::Service as _;
use actix_web::{web, App, HttpRequest, HttpServer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;

use crate::memcached::{listener, store};

/// What the hooks did, and the two points a test holds them at.
#[derive(Default)]
struct Hold {
    log: Mutex<Vec<&'static str>>,
    /// Told when the request reached its hold point.
    reached: Notify,
    /// Lets it go on.
    go: Notify,
    /// Told when the server dropped a request's future (as actix does on a reset).
    dropped: Notify,
}

/// Tells its `Hold` when the request's future it is in goes, finished or not.
struct DropGuard(Arc<Hold>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.dropped.notify_one();
    }
}

impl Hold {
    fn push(&self, entry: &'static str) {
        self.log.lock().unwrap().push(entry);
    }

    fn log(&self) -> Vec<&'static str> {
        self.log.lock().unwrap().clone()
    }

    /// Waits until `entry` is logged, at most `within`.
    async fn until(&self, entry: &str, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.log().contains(&entry) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

/// Stores a change; its after-commit hook ("send the mail") holds after the change is
/// stored.
async fn commit_then_hold(s: Session, hold: web::Data<Hold>) -> actix_web::Result<&'static str> {
    s.package("p").insert("k", 1)?;
    let hold = hold.into_inner();
    s.after_commit(move || async move {
        hold.push("stored");
        hold.reached.notify_one();
        hold.go.notified().await;
        hold.push("mail sent");
        Ok::<_, std::convert::Infallible>(())
    });
    Ok("ok")
}

/// Changes the session, then holds in the handler, before anything is stored. With
/// `/hold-in-handler/keeping-the-request`, its abort hook holds the request (to log the
/// caller's address), whose extensions hold the session: a cycle only the end breaks.
async fn hold_in_handler(
    s: Session,
    hold: web::Data<Hold>,
    req: HttpRequest,
) -> actix_web::Result<&'static str> {
    s.package("p").insert("k", 1)?;
    let after = hold.clone().into_inner();
    let kept = (req.match_info().get("hook") == Some("keeping-the-request")).then_some(req);
    s.after_abort(move || async move {
        after.push("aborted");
        drop(kept);
        Ok::<_, std::convert::Infallible>(())
    });
    let committed = hold.clone().into_inner();
    s.after_commit(move || async move {
        committed.push("committed");
        Ok::<_, std::convert::Infallible>(())
    });
    hold.reached.notify_one();
    hold.go.notified().await;
    Ok("ok")
}

/// A server on a free port over this thread's memcached, with the two routes.
fn serve(hold: &Arc<Hold>) -> u16 {
    // Its own listener, never closed: a port closed and bound again may still be held by a
    // child another thread is spawning.
    let listener = listener();
    let port = listener.local_addr().expect("its address").port();
    let (key, store, hold) = (Key::generate(), store(), web::Data::from(Arc::clone(hold)));
    let server = HttpServer::new(move || {
        let guarded = hold.clone().into_inner();
        App::new()
            .app_data(hold.clone())
            .wrap(MemcacheSession::new(store.clone(), key.clone()))
            .wrap_fn(move |req, srv| {
                let guard = DropGuard(Arc::clone(&guarded));
                let response = srv.call(req);
                async move {
                    let _guard = guard;
                    response.await
                }
            })
            .route("/commit-then-hold", web::get().to(commit_then_hold))
            .route("/hold-in-handler/{hook}", web::get().to(hold_in_handler))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("a listener")
    .run();
    actix_web::rt::spawn(server);
    port
}

/// Sends `GET path`, waits until the request reached its hold point, then resets the
/// connection (RST, not a clean close) and lets the request go on.
async fn reset_at_the_hold(port: u16, path: &str, hold: &Hold) {
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n");
    client.write_all(request.as_bytes()).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), hold.reached.notified())
        .await
        .expect("the request reached its hold point");
    client.set_zero_linger().unwrap();
    drop(client);
    // Only once the server dropped the request's future: were it let go before, it would
    // finish as if the client were there.
    tokio::time::timeout(Duration::from_secs(5), hold.dropped.notified())
        .await
        .expect("the server dropped the request after the reset");
    hold.go.notify_one();
}

/// The change is stored and the client resets before the after-commit hook finished: the
/// hook still runs to its end, once.
#[actix_web::test]
async fn a_client_reset_after_the_commit_does_not_cut_its_hooks_short() {
    let hold = Arc::new(Hold::default());
    let port = serve(&hold);
    reset_at_the_hold(port, "/commit-then-hold", &hold).await;
    assert!(
        hold.until("mail sent", Duration::from_secs(3)).await,
        "the hook ran to its end: {:?}",
        hold.log()
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hold.log(), ["stored", "mail sent"], "once");
}

/// The client resets while the handler still runs: nothing is stored, and the abort hooks
/// run, once (they never ran: neither branch was taken).
/// (Also when a hook holds the request: they ran only when the last copy of the unit of
/// work went, which the hook itself kept, so never.)
#[actix_web::test]
async fn a_client_reset_during_the_handler_runs_the_abort_hooks() {
    for hook in ["keeping-nothing", "keeping-the-request"] {
        let hold = Arc::new(Hold::default());
        let port = serve(&hold);
        reset_at_the_hold(port, &format!("/hold-in-handler/{hook}"), &hold).await;
        assert!(
            hold.until("aborted", Duration::from_secs(3)).await,
            "{hook}: the abort hooks ran: {:?}",
            hold.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            hold.log(),
            ["aborted"],
            "{hook}: once, and nothing committed"
        );
    }
}
