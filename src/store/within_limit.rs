//! A read of an item over the store's limit, as the unit of work takes it.

use super::error::StoreError;
use super::session_store::Stored;
use crate::id::SessionId;

/// A store read, where an item larger than the store reads (written under a larger item
/// limit) is one this crate cannot read: as good as none, like an unreadable session or
/// user item, so that its owner gets a fresh session rather than an error on every request
/// until it expires.
pub(crate) fn within_limit(
    read: Result<Option<Stored>, StoreError>,
    id: &SessionId,
) -> Result<Option<Stored>, StoreError> {
    match read {
        Err(StoreError::TooLarge { size }) => {
            tracing::warn!(
                ?id,
                size,
                "stored item over the store's item limit: unreadable"
            );
            Ok(None)
        }
        read => read,
    }
}
