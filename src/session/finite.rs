//! JSON has no NaN or infinity: `serde_json` writes them as `null`, and a later read of
//! the number then fails (500 on every request). This walks a value through serde, writing
//! nothing, and refuses a non-finite float before it is stored.

use serde::ser::{self, Serialize};

/// Why a value cannot be stored: it holds a NaN or infinite float.
#[derive(Debug)]
pub(crate) struct NotFinite(String);

impl std::fmt::Display for NotFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotFinite {}

impl ser::Error for NotFinite {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

/// `Err` naming the float if `value` holds a NaN or infinity anywhere. Other failures are
/// left to the real serializer, which reports them in its own words.
pub(crate) fn check(value: &impl Serialize) -> Result<(), NotFinite> {
    match value.serialize(Walk) {
        Err(e) if e.0.starts_with(PREFIX) => Err(e),
        _ => Ok(()),
    }
}

const PREFIX: &str = "JSON has no NaN or infinity";

fn float(v: f64) -> Result<(), NotFinite> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(NotFinite(format!(
            "{PREFIX}: {v} would be stored as null, and fail every later read"
        )))
    }
}

/// The walk: every scalar is accepted but a non-finite float.
struct Walk;

macro_rules! accept {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), NotFinite> { Ok(()) })*
    };
}

impl ser::Serializer for Walk {
    type Ok = ();
    type Error = NotFinite;
    type SerializeSeq = Walk;
    type SerializeTuple = Walk;
    type SerializeTupleStruct = Walk;
    type SerializeTupleVariant = Walk;
    type SerializeMap = Walk;
    type SerializeStruct = Walk;
    type SerializeStructVariant = Walk;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );

    fn serialize_f32(self, v: f32) -> Result<(), NotFinite> {
        float(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), NotFinite> {
        float(v)
    }

    fn serialize_none(self) -> Result<(), NotFinite> {
        Ok(())
    }

    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), NotFinite> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), NotFinite> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), NotFinite> {
        Ok(())
    }

    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), NotFinite> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), NotFinite> {
        value.serialize(self)
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Walk, NotFinite> {
        Ok(Walk)
    }

    fn serialize_tuple(self, _: usize) -> Result<Walk, NotFinite> {
        Ok(Walk)
    }

    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Walk, NotFinite> {
        Ok(Walk)
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Walk, NotFinite> {
        Ok(Walk)
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Walk, NotFinite> {
        Ok(Walk)
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Walk, NotFinite> {
        Ok(Walk)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Walk, NotFinite> {
        Ok(Walk)
    }
}

/// Every compound walks its elements (and map keys) with a fresh [`Walk`].
macro_rules! compound {
    ($($trait:ident :: $method:ident $(, $key:ident)?);* $(;)?) => {
        $(
            impl ser::$trait for Walk {
                type Ok = ();
                type Error = NotFinite;

                fn $method<T: ?Sized + Serialize>(
                    &mut self,
                    $($key: &'static str,)?
                    value: &T,
                ) -> Result<(), NotFinite> {
                    $(let _ = $key;)?
                    value.serialize(Walk)
                }

                fn end(self) -> Result<(), NotFinite> {
                    Ok(())
                }
            }
        )*
    };
}

compound!(
    SerializeSeq::serialize_element;
    SerializeTuple::serialize_element;
    SerializeTupleStruct::serialize_field;
    SerializeTupleVariant::serialize_field;
    SerializeStruct::serialize_field, key;
    SerializeStructVariant::serialize_field, key;
);

impl ser::SerializeMap for Walk {
    type Ok = ();
    type Error = NotFinite;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), NotFinite> {
        key.serialize(Walk)
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), NotFinite> {
        value.serialize(Walk)
    }

    fn end(self) -> Result<(), NotFinite> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[derive(serde::Serialize)]
    struct Cart {
        items: Vec<(String, f64)>,
        total: Option<f32>,
        by_name: BTreeMap<String, f64>,
    }

    fn cart(price: f64) -> Cart {
        Cart {
            items: vec![("tea".into(), price)],
            total: Some(1.5),
            by_name: BTreeMap::from([("tea".into(), 2.0)]),
        }
    }

    #[test]
    fn finite_values_pass_and_non_finite_ones_are_named_wherever_they_are() {
        assert!(check(&cart(3.5)).is_ok());
        assert!(check(&("text", 1u8, [true], ())).is_ok());
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let e = check(&cart(bad)).unwrap_err();
            assert!(e.0.contains("NaN or infinity"), "{e}");
            assert!(check(&bad).is_err());
            assert!(check(&Some(vec![bad])).is_err());
        }
        assert!(check(&f32::NAN).is_err());
        let mut map = BTreeMap::new();
        map.insert("k", f64::INFINITY);
        assert!(check(&map).is_err());
    }
}
