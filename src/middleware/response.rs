//! The middleware's future for one request: the inner service's response, then the end of
//! the request's unit of work. A request that loaded no session, or whose commit has
//! nothing to do and no hooks, ends as the response arrives, with no box; the others box
//! what they still await (a commit once, an abort's hooks twice).

use std::any::Any;
use std::future::Future;
use std::panic::{resume_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::cookie::Cookie;
use actix_web::dev::ServiceResponse;
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, VARY};
use actix_web::Error;
use futures_util::future::{CatchUnwind, LocalBoxFuture};
use futures_util::FutureExt;
use pin_project_lite::pin_project;

use crate::error::SessionError;
use crate::metrics::Commit;
use crate::to_completion::ToCompletion;
use crate::unit_of_work::{CookieAction, Level, UnitOfWork};

type Answer<B> = Result<ServiceResponse<EitherBody<B>>, Error>;

pin_project! {
    /// The future of [`MemcacheSessionMiddleware`](super::MemcacheSessionMiddleware): the
    /// inner service's response, once the session's changes are committed or aborted; not
    /// used directly.
    pub struct SessionResponse<F, B> {
        #[pin]
        inner: CatchUnwind<AssertUnwindSafe<F>>,
        uow: Rc<UnitOfWork>,
        // The scope of an instance nested in another, left as the inner service answers,
        // for what reads the session between the two afterwards.
        level: Option<Level>,
        ending: Option<Ending<B>>,
        // Answered: polled again (a caller's bug), it stays pending rather than end the
        // unit of work a second time.
        done: bool,
    }

    impl<F, B> PinnedDrop for SessionResponse<F, B> {
        /// Dropped before the inner service answered (its client went away): the request
        /// ends here, its abort hooks run, rather than when the last copy of its unit of
        /// work goes, which a hook or a task holding the request could put off for ever.
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.done && this.ending.is_none() {
                this.uow.end_dropped();
            }
        }
    }
}

impl<F: Future, B> SessionResponse<F, B> {
    pub(super) fn new(inner: F, uow: Rc<UnitOfWork>, level: Option<Level>) -> Self {
        Self {
            inner: AssertUnwindSafe(inner).catch_unwind(),
            uow,
            level,
            ending: None,
            done: false,
        }
    }
}

impl<F, B> Future for SessionResponse<F, B>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody + 'static,
{
    type Output = Answer<B>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Answer<B>> {
        let this = self.project();
        if *this.done {
            return Poll::Pending;
        }
        let answer = match this.ending {
            Some(ending) => ready!(ending.poll(this.uow, cx)),
            None => {
                let ended = ready!(this.inner.poll(cx));
                this.level.take();
                if this.uow.end_unloaded() {
                    // Nothing loaded: nothing to commit or abort. Answered here, the
                    // response moves once (most requests of most apps).
                    *this.done = true;
                    return Poll::Ready(match ended {
                        Ok(answer) => answer.map(ServiceResponse::map_into_left_body),
                        Err(panic) => resume_unwind(panic),
                    });
                }
                match end(this.uow, ended) {
                    Ok(answer) => answer,
                    Err(ending) => ready!(this.ending.insert(ending).poll(this.uow, cx)),
                }
            }
        };
        *this.done = true;
        Poll::Ready(answer)
    }
}

/// What a request still awaits once its inner service answered.
enum Ending<B> {
    /// An abort's hooks, run to their end even if the client goes away meanwhile, then the
    /// answer (only to whoever still awaits it: a panic resumes there, never elsewhere).
    Abort(LocalBoxFuture<'static, Answer<B>>),
    /// The commit and its hooks, run to their end even if the client goes away meanwhile (a
    /// change stored must run its hooks): one box. The response waits here, not in the box,
    /// so that it goes as soon as the client does, and gets its cookie only for a client.
    Finish {
        commit: ToCompletion<Result<CookieAction, SessionError>>,
        res: Option<ServiceResponse<B>>,
    },
}

impl<B: MessageBody> Ending<B> {
    fn poll(&mut self, uow: &UnitOfWork, cx: &mut Context<'_>) -> Poll<Answer<B>> {
        match self {
            Self::Abort(abort) => abort.as_mut().poll(cx),
            Self::Finish { commit, res } => {
                let finish = ready!(Pin::new(commit).poll(cx));
                match res.take() {
                    Some(res) => Poll::Ready(Ok(with_cookie(uow, res, finish))),
                    // Polled again after its answer: `SessionResponse` never does.
                    None => Poll::Pending,
                }
            }
        }
    }
}

/// Ends the loaded request's unit of work from what the inner service did: the answer,
/// or (`Err`) what still has to run for it.
fn end<B: MessageBody + 'static>(
    uow: &Rc<UnitOfWork>,
    ended: Result<Result<ServiceResponse<B>, Error>, Box<dyn Any + Send>>,
) -> Result<Answer<B>, Ending<B>> {
    let uow = Rc::clone(uow);
    // An inner service's error or a panic aborts, and goes on its way once the abort hooks
    // ran.
    let mut res = match ended {
        Ok(Ok(res)) => res,
        Ok(Err(e)) => return Err(abort(uow, Commit::AbortedByHandler, || Err(e))),
        Err(panic) => {
            return Err(abort(uow, Commit::AbortedByHandler, || {
                resume_unwind(panic)
            }))
        }
    };
    // A handler's `Err` arrives as a response carrying the error, with the error's own
    // status, which may be below 400 (a 303 "log in first"): it aborts all the same.
    vary_on_cookie(res.headers_mut());
    let why = if res.response().error().is_some() {
        Some(Commit::AbortedByHandler)
    } else if !uow.config().commits_on(res.status()) {
        Some(Commit::AbortedByStatus)
    } else {
        None
    };
    if let Some(why) = why {
        return Err(abort(uow, why, || Ok(res.map_into_left_body())));
    }
    match uow.finish_quietly() {
        Some(action) => Ok(Ok(with_cookie(&uow, res, Ok(action)))),
        None => Err(Ending::Finish {
            commit: ToCompletion::new(move || async move { uow.finish().await }),
            res: Some(res),
        }),
    }
}

/// The response as the commit leaves it: its `Set-Cookie`, or the commit's error instead
/// (with the cookies of instances nested inside whose commits stood).
fn with_cookie<B: MessageBody>(
    uow: &UnitOfWork,
    res: ServiceResponse<B>,
    finish: Result<CookieAction, SessionError>,
) -> ServiceResponse<EitherBody<B>> {
    let cookie = match finish {
        Ok(CookieAction::Keep) => return res.map_into_left_body(),
        Ok(CookieAction::Issue(issue)) => uow.config().cookie(Some(&issue)),
        Ok(CookieAction::Remove) => uow.config().cookie(None),
        Err(e) => {
            // Built anew: the inner service's headers go, nested instances' cookies too
            // (kept in the response, which this middleware owns: no borrow elsewhere).
            let nested = res.response().extensions().get::<NestedCookies>().cloned();
            let mut res = res.error_response(e).map_into_right_body();
            vary_on_cookie(res.headers_mut());
            if let Some(NestedCookies(cookies)) = nested {
                for cookie in &cookies {
                    set_cookie(res.response_mut(), cookie);
                }
                private(res.headers_mut());
                // For an instance further out whose commit fails too.
                res.response_mut()
                    .extensions_mut()
                    .insert(NestedCookies(cookies));
            }
            return res;
        }
    };
    let mut res = res.map_into_left_body();
    set_cookie(res.response_mut(), &cookie);
    private(res.headers_mut());
    if uow.is_nested() {
        let mut extensions = res.response_mut().extensions_mut();
        match extensions.get_mut::<NestedCookies>() {
            Some(NestedCookies(cookies)) => cookies.push(cookie),
            None => drop(extensions.insert(NestedCookies(vec![cookie]))),
        }
    }
    res
}

fn set_cookie<B>(res: &mut actix_web::HttpResponse<B>, cookie: &Cookie<'static>) {
    // Name, path and domain were checked at build time and the value is base64url, so
    // this does not fail; if it ever did, the response still goes out.
    if let Err(e) = res.add_cookie(cookie) {
        tracing::error!(error = %e, "cannot set the session cookie");
    }
}

/// The session cookies set by instances nested inside another (of other cookie names), for
/// commits that stood, kept in the response: an instance around them whose own commit then
/// fails answers its error, a response built anew, with them (without them the client
/// would keep a cookie naming a session renewed away, and the new one be held by nobody).
#[derive(Clone)]
struct NestedCookies(Vec<Cookie<'static>>);

/// Says that the response depends on the `Cookie` header, as every response that loaded
/// the session does: a shared cache must not hand one browser's page to another. A `Vary`
/// that names it already, or `*`, is left alone; another is made one line naming it too
/// (a middleware outside that reads the first line and replaces them all, as actix-cors
/// does, would drop a second line).
fn vary_on_cookie(headers: &mut HeaderMap) {
    let Some(elements) = elements(headers, &VARY) else {
        // A line this cannot read stays; `Cookie` goes beside it.
        headers.append(VARY, HeaderValue::from_static("Cookie"));
        return;
    };
    if elements.is_empty() {
        headers.insert(VARY, HeaderValue::from_static("Cookie"));
    } else if !elements
        .iter()
        .any(|e| e == "*" || e.eq_ignore_ascii_case("cookie"))
    {
        one_line(
            headers,
            VARY,
            elements.iter().map(String::as_str).chain(["Cookie"]),
        );
    }
}

/// Keeps a response that sets the session cookie out of shared caches (`Cache-Control:
/// private`): with the `Vary: Cookie` of a request that came without one, a cache could
/// hand the next browser without one this browser's new session. A bare `private` or
/// `no-store` already there leaves it alone (not `private="field"`, which keeps only that
/// field out); `public` and `s-maxage` go, the rest stays.
fn private(headers: &mut HeaderMap) {
    let Some(elements) = elements(headers, &CACHE_CONTROL) else {
        // A line this cannot read stays; `private` goes beside it.
        headers.append(CACHE_CONTROL, HeaderValue::from_static("private"));
        return;
    };
    let bare = |e: &String| e.eq_ignore_ascii_case("private") || e.eq_ignore_ascii_case("no-store");
    if elements.iter().any(bare) {
        return;
    }
    let shared = |e: &&str| {
        let name = e.split('=').next().unwrap_or_default().trim();
        name.eq_ignore_ascii_case("public") || name.eq_ignore_ascii_case("s-maxage")
    };
    let kept = elements.iter().map(String::as_str).filter(|e| !shared(e));
    one_line(headers, CACHE_CONTROL, ["private"].into_iter().chain(kept));
}

/// The comma-separated elements of every `name` line, trimmed, empty ones left out; `None`
/// when a line is not visible ASCII.
fn elements(headers: &HeaderMap, name: &HeaderName) -> Option<Vec<String>> {
    let mut elements = Vec::new();
    for value in headers.get_all(name) {
        let text = value.to_str().ok()?;
        let listed = text.split(',').map(str::trim).filter(|e| !e.is_empty());
        elements.extend(listed.map(str::to_owned));
    }
    Some(elements)
}

/// Replaces every `name` line with one listing `elements`.
fn one_line<'e>(
    headers: &mut HeaderMap,
    name: HeaderName,
    elements: impl Iterator<Item = &'e str>,
) {
    let line = elements.collect::<Vec<_>>().join(", ");
    // Made of visible text read from header values, and commas: always a valid value.
    if let Ok(value) = HeaderValue::from_str(&line) {
        headers.insert(name, value);
    }
}

/// Aborts the unit of work for `why`, its hooks run to their end even if the client goes
/// away meanwhile, then answers with `then`.
fn abort<B: 'static>(
    uow: Rc<UnitOfWork>,
    why: Commit,
    then: impl FnOnce() -> Answer<B> + 'static,
) -> Ending<B> {
    Ending::Abort(Box::pin(async move {
        ToCompletion::new(move || async move { uow.abort(why).await }).await;
        then()
    }))
}

#[cfg(test)]
mod tests {
    use std::task::Waker;

    use actix_web::test::TestRequest;
    use actix_web::HttpResponse;
    use futures_util::future::ready;

    use super::*;
    use crate::store::MemoryStore;
    use crate::{Key, MemcacheSession};

    #[actix_web::test]
    async fn polled_again_after_its_answer_it_stays_pending() {
        let backend = MemcacheSession::builder(MemoryStore::new(), Key::generate()).backend();
        let uow = Rc::new(UnitOfWork::new(Rc::new(backend)));
        let res = TestRequest::default().to_srv_response(HttpResponse::Ok().finish());
        let mut future = Box::pin(SessionResponse::new(ready(Ok::<_, Error>(res)), uow, None));
        let mut cx = Context::from_waker(Waker::noop());
        let Poll::Ready(Ok(answer)) = future.as_mut().poll(&mut cx) else {
            panic!("the inner response is ready");
        };
        assert_eq!(answer.status(), 200);
        assert!(
            future.as_mut().poll(&mut cx).is_pending(),
            "not ended twice"
        );
    }
}
