//! Test helpers shared by every store's run of the HTTP suite.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use actix_memcache_session::{
    SessionId, SessionStore, StoreError, Stored, Update, Version, WhenDown,
};
use actix_web::cookie::Cookie;
use actix_web::dev::ServiceResponse;
use actix_web::test;
use tokio::sync::Semaphore;

/// Store calls seen by a [`CountingStore`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Calls {
    pub loads: usize,
    pub creates: usize,
    pub updates: usize,
    pub touches: usize,
    pub deletes: usize,
}

impl Calls {
    pub fn writes(&self) -> usize {
        self.creates + self.updates + self.touches + self.deletes
    }
}

/// Wraps a store, counting its calls and remembering the last id it created.
///
/// `ttl_floor` keeps entries alive at least that long, so a test can expire a cookie
/// while its session is still stored.
#[derive(Clone)]
pub struct CountingStore<S> {
    pub inner: S,
    calls: Rc<Cell<Calls>>,
    created: Rc<RefCell<Vec<SessionId>>>,
    ttl_floor: Duration,
    /// Touches fail as if the store were down.
    failing_touches: Rc<Cell<bool>>,
    /// Loads of this id fail as if its server were down.
    failing_loads: Rc<RefCell<Option<SessionId>>>,
    /// Deletes (plain or conditional) of this id fail as if its server were down.
    failing_deletes: Rc<RefCell<Option<SessionId>>>,
    /// The next update of this id lands, and then fails as a connection that drops before
    /// the reply would.
    lost_reply: Rc<RefCell<Option<SessionId>>>,
    /// The next write (update or delete) of this id waits for `release` (see
    /// `hold_next_write_of`).
    held: Rc<RefCell<Option<SessionId>>>,
    /// The next touch of this id waits for `release` (see `hold_next_touch_of`).
    held_touch: Rc<RefCell<Option<SessionId>>>,
    reached: Rc<Semaphore>,
    go: Rc<Semaphore>,
}

impl<S: SessionStore> CountingStore<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            calls: Rc::default(),
            created: Rc::default(),
            ttl_floor: Duration::ZERO,
            failing_touches: Rc::default(),
            failing_loads: Rc::default(),
            failing_deletes: Rc::default(),
            lost_reply: Rc::default(),
            held: Rc::default(),
            held_touch: Rc::default(),
            reached: Rc::new(Semaphore::new(0)),
            go: Rc::new(Semaphore::new(0)),
        }
    }

    /// From now on loads of `id` fail as if its server were down (`None`: none do).
    pub fn fail_loads_of(&self, id: Option<SessionId>) {
        *self.failing_loads.borrow_mut() = id;
    }

    /// From now on deletes of `id` fail as if its server were down (`None`: none do).
    pub fn fail_deletes_of(&self, id: Option<SessionId>) {
        *self.failing_deletes.borrow_mut() = id;
    }

    /// The next update of `id` is written, and its caller gets an error, as when the
    /// connection drops after the write and before its reply.
    pub fn lose_the_reply_to_the_next_update_of(&self, id: SessionId) {
        *self.lost_reply.borrow_mut() = Some(id);
    }

    fn failing_delete(&self, id: &SessionId) -> Result<(), StoreError> {
        if self.failing_deletes.borrow().as_ref() == Some(id) {
            return Err(StoreError::Unavailable(
                "deletes of this id fail in this test".into(),
            ));
        }
        Ok(())
    }

    /// Holds the next write (update or delete) of `id` until `release`, so that a test can
    /// run another request between a commit's read of an item and its write.
    pub fn hold_next_write_of(&self, id: SessionId) {
        *self.held.borrow_mut() = Some(id);
    }

    /// Holds the next touch of `id` until `release`, as `hold_next_write_of` holds a write.
    pub fn hold_next_touch_of(&self, id: SessionId) {
        *self.held_touch.borrow_mut() = Some(id);
    }

    /// Holds this call until `release` if it is of the id `slot` names (the slot
    /// `hold_next_write_of` or `hold_next_touch_of` set), once.
    async fn hold(&self, slot: &RefCell<Option<SessionId>>, id: &SessionId) {
        let hold = slot.borrow().as_ref() == Some(id);
        if hold {
            slot.borrow_mut().take();
            self.reached.add_permits(1);
            self.go.acquire().await.unwrap().forget();
        }
    }

    /// Waits until the call `hold_next_write_of` or `hold_next_touch_of` named has started,
    /// and is held.
    pub async fn when_held(&self) {
        within("the held call to start", self.reached.acquire())
            .await
            .unwrap()
            .forget();
    }

    /// Lets the held update go.
    pub fn release(&self) {
        self.go.add_permits(1);
    }

    /// From now on touches fail (`true`) as if the store were down, or work again.
    pub fn fail_touches(&self, fail: bool) {
        self.failing_touches.set(fail);
    }

    pub fn with_ttl_floor(mut self, floor: Duration) -> Self {
        self.ttl_floor = floor;
        self
    }

    pub fn calls(&self) -> Calls {
        self.calls.get()
    }

    pub fn reset(&self) {
        self.calls.set(Calls::default());
    }

    pub fn last_created(&self) -> SessionId {
        self.created
            .borrow()
            .last()
            .cloned()
            .expect("a session was created")
    }

    fn count(&self, f: impl FnOnce(&mut Calls)) {
        let mut c = self.calls.get();
        f(&mut c);
        self.calls.set(c);
    }
}

impl<S: SessionStore> SessionStore for CountingStore<S> {
    async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
        self.count(|c| c.loads += 1);
        if self.failing_loads.borrow().as_ref() == Some(id) {
            return Err(StoreError::Unavailable(
                "loads of this id fail in this test".into(),
            ));
        }
        self.inner.load(id).await
    }

    async fn create(&self, id: &SessionId, data: &[u8], ttl: Duration) -> Result<bool, StoreError> {
        self.count(|c| c.creates += 1);
        let created = self.inner.create(id, data, ttl.max(self.ttl_floor)).await?;
        if created {
            self.created.borrow_mut().push(id.clone());
        }
        Ok(created)
    }

    async fn update(
        &self,
        id: &SessionId,
        data: &[u8],
        version: Version,
        ttl: Duration,
    ) -> Result<Update, StoreError> {
        self.count(|c| c.updates += 1);
        self.hold(&self.held, id).await;
        let updated = self
            .inner
            .update(id, data, version, ttl.max(self.ttl_floor))
            .await?;
        if self.lost_reply.borrow().as_ref() == Some(id) {
            self.lost_reply.borrow_mut().take();
            return Err(StoreError::Unavailable(
                "the connection dropped before the reply, in this test".into(),
            ));
        }
        Ok(updated)
    }

    async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
        self.count(|c| c.touches += 1);
        self.hold(&self.held_touch, id).await;
        if self.failing_touches.get() {
            return Err(StoreError::Unavailable("touches fail in this test".into()));
        }
        self.inner.touch(id, ttl.max(self.ttl_floor)).await
    }

    async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
        self.count(|c| c.deletes += 1);
        // Held first: a test may make a held delete fail.
        self.hold(&self.held, id).await;
        self.failing_delete(id)?;
        self.inner.delete(id).await
    }

    async fn delete_if(&self, id: &SessionId, version: Version) -> Result<Update, StoreError> {
        self.count(|c| c.deletes += 1);
        // Held first: a test may make a held delete fail.
        self.hold(&self.held, id).await;
        self.failing_delete(id)?;
        self.inner.delete_if(id, version).await
    }

    fn accepts(&self, id: &SessionId) -> bool {
        self.inner.accepts(id)
    }

    fn when_down(&self) -> WhenDown {
        self.inner.when_down()
    }
}

/// `step`, or a panic naming `what` after ten seconds: a test waiting on something a
/// regression stops from happening (a held write, a gated load) fails by name instead of
/// hanging the run until CI's limit.
pub async fn within<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), step)
        .await
        .unwrap_or_else(|_| panic!("waited ten seconds for {what}"))
}

/// A response, reduced to what the tests look at.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub cookie: Option<Cookie<'static>>,
    pub retry_after: Option<String>,
    /// The user a middleware outside the session's read from it after the commit
    /// (`/login-from/...` only).
    pub user_after: Option<String>,
    /// Whether the middleware wrapped outside the session's saw this response.
    pub outer: bool,
    /// The `Vary` headers, in order.
    pub vary: Vec<String>,
    /// The `Cache-Control` headers, in order.
    pub cache_control: Vec<String>,
}

impl Reply {
    pub async fn from(res: ServiceResponse) -> Self {
        let status = res.status().as_u16();
        let mut names: Vec<_> = res
            .response()
            .cookies()
            .map(|c| c.name().to_owned())
            .collect();
        names.sort_unstable();
        // A browser keeps the last of two: a test looking at the first would check the
        // wrong one (a removal, say, followed by a new session).
        assert!(
            names.windows(2).all(|pair| pair[0] != pair[1]),
            "a response set one cookie twice: {names:?}"
        );
        let cookie = res.response().cookies().next().map(|c| c.into_owned());
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let outer = res.headers().contains_key(crate::app::OUTER_HEADER);
        let user_after = res
            .headers()
            .get(crate::app::USER_AFTER_HEADER)
            .map(|v| v.to_str().unwrap().to_owned());
        let lines = |name| {
            res.headers()
                .get_all(name)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect()
        };
        let (vary, cache_control) = (lines("vary"), lines("cache-control"));
        let body = String::from_utf8(test::read_body(res).await.to_vec()).unwrap();
        Self {
            status,
            body,
            cookie,
            retry_after,
            outer,
            user_after,
            vary,
            cache_control,
        }
    }

    /// The cookie set by this response, which must have set one.
    pub fn cookie(&self) -> Cookie<'static> {
        self.cookie.clone().expect("response sets a session cookie")
    }
}

/// The same cookie value with one character changed.
pub fn tampered(cookie: &Cookie<'_>) -> Cookie<'static> {
    let mut value = cookie.value().to_owned().into_bytes();
    let i = value.len() / 3;
    value[i] = if value[i] == b'x' { b'y' } else { b'x' };
    Cookie::new(cookie.name().to_owned(), String::from_utf8(value).unwrap())
}

/// A store whose every call fails as an unreachable server would.
#[derive(Clone)]
pub struct DownStore;

fn down() -> StoreError {
    StoreError::Unavailable(std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into())
}

impl SessionStore for DownStore {
    async fn load(&self, _: &SessionId) -> Result<Option<Stored>, StoreError> {
        Err(down())
    }
    async fn create(&self, _: &SessionId, _: &[u8], _: Duration) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn update(
        &self,
        _: &SessionId,
        _: &[u8],
        _: Version,
        _: Duration,
    ) -> Result<Update, StoreError> {
        Err(down())
    }
    async fn touch(&self, _: &SessionId, _: Duration) -> Result<bool, StoreError> {
        Err(down())
    }
    async fn delete(&self, _: &SessionId) -> Result<(), StoreError> {
        Err(down())
    }
    async fn delete_if(&self, _: &SessionId, _: Version) -> Result<Update, StoreError> {
        Err(down())
    }
}

/// The id of `user`'s generation item under the default cookie name, for the key made
/// from `secret`, derived as the README documents it: written out here rather than taken
/// from the crate, so that a change of the derivation (which would sign every user out on
/// upgrade) fails a test.
pub fn generation_item(secret: &[u8], user: &str) -> SessionId {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(&[&b"id"[..], &[0], &[0xFE], user.as_bytes()].concat());
    let digest = mac.finalize().into_bytes();
    URL_SAFE_NO_PAD.encode(&digest[..16]).parse().unwrap()
}

/// A format-1 cookie value for session `id`, stamped `issued` (unix seconds) and signed
/// with `secret` under the default cookie name, as an instance whose clock reads `issued`
/// would issue it.
pub fn cookie_stamped(secret: &[u8], id: &SessionId, issued: u64) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let id = URL_SAFE_NO_PAD.decode(id.to_string()).unwrap();
    let signed = [&id[..], &issued.to_be_bytes()[..]].concat();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).unwrap();
    mac.update(&[&b"id"[..], &[0], &signed].concat());
    URL_SAFE_NO_PAD.encode([signed, mac.finalize().into_bytes().to_vec()].concat())
}

/// The session id a cookie's value names, whatever key signed it (not checked): format 1
/// starts with it, formats 2 and 3 after their version byte (`src/cookie/codec.rs`).
pub fn session_named(cookie: &Cookie<'_>) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let raw = URL_SAFE_NO_PAD.decode(cookie.value()).ok()?;
    let at = usize::from(raw.len() != 16 + 8 + 32);
    raw.get(at..at + 16).map(<[u8]>::to_vec)
}

/// xorshift64*: enough randomness for test inputs, and the seed reproduces a failure.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from `TEST_SEED` when set, to reproduce a failure, else from the clock; the
    /// seed is printed with `what`.
    pub fn seeded(what: &str) -> Self {
        let seed = std::env::var("TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            })
            | 1;
        eprintln!("{what} seed {seed} (TEST_SEED={seed} to run it again)");
        Self(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick(&mut self, from: &[u8]) -> u8 {
        from[self.below(from.len())]
    }
}
