//! `MemoryStore` runs the store acceptance suite and the HTTP suite.

use actix_memcache_session::MemoryStore;

actix_memcache_session::store_acceptance_suite!(MemoryStore::new());
#[cfg(feature = "actix-session")]
crate::actix_session::actix_session_suite!(MemoryStore::new());

mod http {
    use actix_memcache_session::MemoryStore;

    crate::http::http_suite!(MemoryStore::new());

    crate::devices::devices_suite!(MemoryStore::new());
    crate::app_testing::app_testing_suite!(MemoryStore::new());
}

/// The acceptance suite refuses a store that follows the trait's older wording but breaks
/// what the login and sign-out rules count on: one that numbers versions per id from 1 at
/// each `create`, and forgets an entry's TTL everywhere but in `load`. Both pass the rest
/// of the suite's checks of versions and expiry.
mod contract {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    use actix_memcache_session::testing;
    use actix_memcache_session::{SessionId, SessionStore, StoreError, Stored, Update, Version};

    /// Each id's data, version and expiry.
    type Entries = HashMap<SessionId, (Vec<u8>, u64, Instant)>;

    #[derive(Clone, Default)]
    struct PerIdVersions(Rc<RefCell<Entries>>);

    impl PerIdVersions {
        /// The entry's version, if it is there (expired or not: the fault).
        fn version(&self, id: &SessionId) -> Option<u64> {
            self.0.borrow().get(id).map(|(_, v, _)| *v)
        }
    }

    /// When an entry written now with `ttl` expires (`Duration::MAX` capped).
    fn until(ttl: Duration) -> Instant {
        Instant::now() + ttl.min(Duration::from_secs(1 << 30))
    }

    impl SessionStore for PerIdVersions {
        async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
            let entries = self.0.borrow();
            let live = entries
                .get(id)
                .filter(|(_, _, until)| Instant::now() < *until);
            Ok(live.map(|(data, v, _)| Stored {
                data: data.clone(),
                version: Version::new(*v),
            }))
        }

        async fn create(
            &self,
            id: &SessionId,
            data: &[u8],
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            if self.load(id).await?.is_some() {
                return Ok(false);
            }
            let until = until(ttl);
            self.0
                .borrow_mut()
                .insert(id.clone(), (data.to_vec(), 1, until));
            Ok(true)
        }

        async fn update(
            &self,
            id: &SessionId,
            data: &[u8],
            version: Version,
            ttl: Duration,
        ) -> Result<Update, StoreError> {
            match self.version(id) {
                None => Ok(Update::Missing),
                Some(v) if v != version.get() => Ok(Update::Conflict),
                Some(v) => {
                    let until = until(ttl);
                    self.0
                        .borrow_mut()
                        .insert(id.clone(), (data.to_vec(), v + 1, until));
                    Ok(Update::Updated)
                }
            }
        }

        async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
            let mut entries = self.0.borrow_mut();
            let Some(entry) = entries.get_mut(id) else {
                return Ok(false);
            };
            entry.2 = until(ttl);
            Ok(true)
        }

        async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
            self.0.borrow_mut().remove(id);
            Ok(())
        }

        async fn delete_if(&self, id: &SessionId, version: Version) -> Result<Update, StoreError> {
            match self.version(id) {
                None => Ok(Update::Missing),
                Some(v) if v != version.get() => Ok(Update::Conflict),
                Some(_) => {
                    self.0.borrow_mut().remove(id);
                    Ok(Update::Updated)
                }
            }
        }
    }

    fn run(behaviour: impl std::future::Future<Output = ()>) {
        actix_web::rt::System::new().block_on(behaviour);
    }

    #[test]
    fn the_faulty_store_passes_the_suites_other_checks_of_versions_and_expiry() {
        run(testing::update_with_stale_version_conflicts(
            PerIdVersions::default(),
        ));
        run(testing::update_of_missing_session_creates_nothing(
            PerIdVersions::default(),
        ));
        run(testing::delete_if_at_a_stale_version_keeps_the_newer_write(
            PerIdVersions::default(),
        ));
        run(testing::delete_if_of_a_missing_session_reports_it(
            PerIdVersions::default(),
        ));
        run(testing::touch_keeps_the_version(PerIdVersions::default()));
        run(testing::entries_expire_after_their_ttl(
            PerIdVersions::default(),
        ));
    }

    #[test]
    #[should_panic(expected = "assertion `left != right` failed")]
    fn a_version_numbered_again_from_one_after_a_delete_is_refused() {
        run(
            testing::a_version_read_before_a_delete_does_not_match_the_id_created_again(
                PerIdVersions::default(),
            ),
        );
    }

    #[test]
    #[should_panic(expected = "Missing")]
    fn an_expired_entry_written_back_is_refused() {
        run(testing::an_expired_entry_is_gone_to_every_method(
            PerIdVersions::default(),
        ));
    }

    /// A store that checks the version, then writes after an `.await` whatever is there by
    /// then: it passes each check of one write at a time.
    #[derive(Clone, Default)]
    struct CheckThenWrite(actix_memcache_session::MemoryStore);

    impl SessionStore for CheckThenWrite {
        async fn load(&self, id: &SessionId) -> Result<Option<Stored>, StoreError> {
            self.0.load(id).await
        }

        async fn create(
            &self,
            id: &SessionId,
            data: &[u8],
            ttl: Duration,
        ) -> Result<bool, StoreError> {
            self.0.create(id, data, ttl).await
        }

        async fn update(
            &self,
            id: &SessionId,
            data: &[u8],
            version: Version,
            ttl: Duration,
        ) -> Result<Update, StoreError> {
            match self.0.load(id).await? {
                None => return Ok(Update::Missing),
                Some(now) if now.version != version => return Ok(Update::Conflict),
                Some(_) => {}
            }
            actix_web::rt::task::yield_now().await;
            // The fault: the version checked is not the one written over.
            let Some(now) = self.0.load(id).await? else {
                return Ok(Update::Missing);
            };
            self.0.update(id, data, now.version, ttl).await
        }

        async fn touch(&self, id: &SessionId, ttl: Duration) -> Result<bool, StoreError> {
            self.0.touch(id, ttl).await
        }

        async fn delete(&self, id: &SessionId) -> Result<(), StoreError> {
            self.0.delete(id).await
        }

        async fn delete_if(&self, id: &SessionId, version: Version) -> Result<Update, StoreError> {
            self.0.delete_if(id, version).await
        }
    }

    #[test]
    fn the_store_checking_then_writing_passes_the_checks_of_one_write_at_a_time() {
        run(testing::update_with_current_version_replaces(
            CheckThenWrite::default(),
        ));
        run(testing::update_with_stale_version_conflicts(
            CheckThenWrite::default(),
        ));
    }

    #[test]
    #[should_panic(expected = "updates [Ok(Updated), Ok(Updated)")]
    fn writes_at_one_version_let_through_more_than_once_are_refused() {
        run(testing::writes_at_one_version_sent_at_once_let_one_through(
            CheckThenWrite::default(),
        ));
    }
}
