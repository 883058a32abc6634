//! JSON bodies of executions and node runs as stored: packed (`adapters::pack`) when that
//! makes them smaller, plain text otherwise (and in every row written before packing).

use super::Fail;
use crate::adapters::pack::{self, Packed};
use rusqlite::ToSql;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSqlOutput, ValueRef};
use serde::Serialize;
use serde::de::DeserializeOwned;

impl ToSql for Packed {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Packed::Text(t) => ToSqlOutput::Borrowed(ValueRef::Text(t.as_bytes())),
            Packed::Bytes(b) => ToSqlOutput::Borrowed(ValueRef::Blob(b)),
        })
    }
}

/// Serializes and packs a body.
pub(crate) fn packed<T: Serialize>(value: &T) -> Result<Packed, Fail> {
    Ok(pack::pack(serde_json::to_string(value)?))
}

/// A body as read: its JSON text, unpacked.
pub(crate) struct StoredJson(Vec<u8>);

impl FromSql for StoredJson {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Text(t) => Ok(Self(t.to_vec())),
            ValueRef::Blob(b) => pack::unpack(b)
                .map(Self)
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

impl StoredJson {
    pub(crate) fn parse<T: DeserializeOwned>(&self) -> Result<T, Fail> {
        let text = std::str::from_utf8(&self.0)
            .map_err(|e| Fail::Json(serde::de::Error::custom(format!("stored body: {e}"))))?;
        Ok(crate::limits::from_stored_json(text)?)
    }
}

/// An id as a key column: the 16 bytes of a UUID, else its text.
pub(crate) fn id_value(id: &str) -> rusqlite::types::Value {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.hyphenated().to_string() == id => {
            rusqlite::types::Value::Blob(u.as_bytes().to_vec())
        }
        _ => rusqlite::types::Value::Text(id.to_string()),
    }
}

/// The id a key column holds (see [`id_value`]).
pub(crate) struct KeyId(pub(crate) String);

impl FromSql for KeyId {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value {
            ValueRef::Blob(b) => uuid::Uuid::from_slice(b)
                .map(|u| Self(u.to_string()))
                .map_err(|e| FromSqlError::Other(Box::new(e))),
            ValueRef::Text(t) => Ok(Self(String::from_utf8_lossy(t).into_owned())),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}
