//! Typed packages: a package declared once with its serde type, each top-level field one
//! key, so that handlers cannot disagree on its shape and the per-key merge still works
//! field by field.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

use super::extractor::Session;
use crate::error::SessionError;

/// A package whose entries are the fields of a `T`, declared once as a constant.
///
/// [`Session::get`] reads the package as a `T`, [`Session::set`] stores a `T` field by
/// field and [`Session::update`] does both around a closure. A field equal to what is
/// stored is not a change, so two requests that change different fields both land; two
/// that change the same field conflict (409) as with [`Package`](crate::Package).
///
/// ```
/// use actix_memcache_session::{Session, TypedPackage};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Default)]
/// struct Cart {
///     items: Vec<String>,
///     coupon: Option<String>,
/// }
///
/// const CART: TypedPackage<Cart> = TypedPackage::new("shop.cart");
///
/// async fn add(session: Session) -> actix_web::Result<String> {
///     let mut cart = session.get(&CART)?; // Cart::default() for an empty package
///     cart.items.push("apple".into());
///     session.set(&CART, &cart)?;
///     session.update(&CART, |cart| cart.coupon = None)?;
///     Ok(format!("{} items", cart.items.len()))
/// }
/// ```
///
/// `T` must serialize to a JSON object (a struct or a map; not an enum, whose variants are
/// one key each). A field missing from the stored package takes its value from
/// `T::default()`, so a field added to the type in a later release reads as its default in
/// older sessions, and an empty package reads as `T::default()`. The package is read by
/// deserializing its entries over the default's, so `T` must read back what it writes: a
/// field skipped when serializing (`skip_serializing_if`) needs `#[serde(default)]`, but
/// for an `Option`, which serde reads as `None` when missing (without it a read fails while
/// the package lacks that field, as every new session's does, the error saying so), and
/// `#[serde(alias)]` does not rename a stored field (the default's field and the stored
/// alias are then both there, a duplicate): move it with [`Package`](crate::Package).
///
/// During a rolling deploy a release's [`set`](Session::set) removes the stored fields its
/// `T` does not have, those a newer release added included, as replacing a whole value
/// under one key in actix-session or tower-sessions would: let a new field be lost
/// until every instance runs the release that has it, or keep it in a package of its own.
pub struct TypedPackage<T> {
    name: &'static str,
    _type: PhantomData<fn() -> T>,
}

impl<T> TypedPackage<T> {
    /// The package `name`, holding a `T`. The name is checked like
    /// [`Session::package`]'s, when the package is used.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _type: PhantomData,
        }
    }

    /// The package's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<T> Clone for TypedPackage<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for TypedPackage<T> {}

impl<T> fmt::Debug for TypedPackage<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TypedPackage")
            .field("name", &self.name)
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl Session {
    /// The package as a `T`: its entries over the fields of `T::default()`.
    ///
    /// # Errors
    /// An invalid package name, a `T` that does not serialize to a JSON object, stored
    /// entries that do not fit `T` ([`SessionError::PackageType`]), or a stored value that
    /// cannot be read at all ([`SessionError::Deserialize`]; [`set`](Self::set) overwrites
    /// it); the stored data is left as it is.
    pub fn get<T>(&self, package: &TypedPackage<T>) -> Result<T, SessionError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let mut fields = to_object(package, &T::default())?;
        fields.extend(self.package(package.name).entries()?);
        T::deserialize(Value::Object(fields)).map_err(|source| {
            // Said as the type's fault, which no session repairs, not the stored data's: an
            // empty package reading back would pass a first test, and fail for users later.
            // Only on this failure is the default read back, apart.
            let defaults = to_object(package, &T::default()).map(Value::Object);
            let source = match defaults.map(T::deserialize) {
                Ok(Err(e)) => serde::de::Error::custom(format!(
                    "T::default() does not read back through JSON ({e}): a field skipped \
                     when serializing needs #[serde(default)]"
                )),
                _ => source,
            };
            SessionError::PackageType {
                package: package.name.to_owned(),
                source,
            }
        })
    }

    /// Stores `value` as the package: each field one key. A field equal to what is
    /// stored is not a change, nor is a field still at its default that the package does
    /// not hold (it reads as the default already), so reading a package and setting it
    /// back writes nothing, for fields that serialize one value one way (a `HashSet` comes
    /// out as an array in a new order each time it is built: it counts as changed; use
    /// `BTreeSet`. A `HashMap` is a JSON object, compared whatever its order). Keys `value`
    /// does not serialize (a field skipped when `None`, or one the type no longer has) are
    /// removed. So a field set to its default is not
    /// stored, and a later release that changes `T::default()` changes what it reads: give
    /// a value a user chose a default no release will change (an `Option`, `None` until
    /// chosen).
    ///
    /// # Errors
    /// An invalid package name or field name, a `T` that does not serialize to a JSON
    /// object ([`SessionError::PackageType`]), or a field nested too deep to read back.
    /// Nothing is changed then.
    pub fn set<T>(&self, package: &TypedPackage<T>, value: &T) -> Result<(), SessionError>
    where
        T: Serialize + Default,
    {
        let handle = self.package(package.name);
        // Only the stored keys matter here, not their values: a stored value that cannot be
        // read is then overwritten, as a plain insert would.
        // A set: a map-typed package may hold many keys, each field looked up once.
        let stored: HashSet<String> = handle.keys()?.into_iter().collect();
        let defaults = to_object(package, &T::default())?;
        let mut fields = to_object(package, value)?;
        fields.retain(|key, value| stored.contains(key) || defaults.get(key) != Some(value));
        handle.replace(fields)
    }

    /// Reads the package as a `T`, lets `change` modify it, and stores it; returns what
    /// `change` returns.
    ///
    /// # Errors
    /// Those of [`get`](Self::get) and [`set`](Self::set); nothing is changed then.
    pub fn update<T, R>(
        &self,
        package: &TypedPackage<T>,
        change: impl FnOnce(&mut T) -> R,
    ) -> Result<R, SessionError>
    where
        T: Serialize + DeserializeOwned + Default,
    {
        let mut value = self.get(package)?;
        let result = change(&mut value);
        self.set(package, &value)?;
        Ok(result)
    }
}

fn to_object<T: Serialize>(
    package: &TypedPackage<T>,
    value: &T,
) -> Result<Map<String, Value>, SessionError> {
    let error = |source| SessionError::PackageType {
        package: package.name.to_owned(),
        source,
    };
    super::finite::check(value).map_err(|e| error(serde::ser::Error::custom(e)))?;
    match serde_json::to_value(value).map_err(error)? {
        Value::Object(fields) => Ok(fields),
        other => {
            let why = format!(
                "the type serializes to a JSON {}, not an object",
                kind(&other)
            );
            Err(error(serde::ser::Error::custom(why)))
        }
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use serde::Deserialize;

    use super::*;
    use crate::unit_of_work::{SessionData, Transaction};

    /// Its default does not read back through JSON: `items` is skipped when empty, and has
    /// no `#[serde(default)]`.
    #[derive(Debug, Default, Serialize, Deserialize)]
    struct Cart {
        #[serde(skip_serializing_if = "Vec::is_empty")]
        items: Vec<String>,
        coupon: Option<String>,
    }

    const CART: TypedPackage<Cart> = TypedPackage::new("shop.cart");

    /// It fails at once, on an empty package too, saying why: were an empty package read
    /// as the default, the type would pass a first test and fail later, for users whose
    /// cart holds a coupon and no item.
    #[test]
    fn a_type_whose_default_does_not_read_back_fails_saying_so() {
        let session = Session::new(Rc::new(RefCell::new(
            Transaction::new(SessionData::fresh()),
        )));
        for stored in [None, Some("SPRING")] {
            if let Some(code) = stored {
                session.package(CART.name()).insert("coupon", code).unwrap();
            }
            let Err(SessionError::PackageType { source, .. }) = session.get(&CART) else {
                panic!("read with {stored:?}");
            };
            assert!(
                source.to_string().contains("needs #[serde(default)]"),
                "{source}"
            );
        }
        // With one item stored the merge has every field, and reads.
        session
            .package(CART.name())
            .insert("items", ["apple"])
            .unwrap();
        assert_eq!(session.get(&CART).unwrap().items, ["apple"]);
    }
}
