//! minijinja values → JSON, bounded in size and in depth ([`MAX_JSON_DEPTH`], the product's
//! limit for any JSON it produces).

use super::sandbox::{ITEM, MAX_VALUE};
use crate::limits::MAX_JSON_DEPTH;
use minijinja::value::{Value, ValueKind};
use serde_json::{Map, Number, Value as Json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConvertError {
    /// The value (or a part of it) is undefined.
    Undefined,
    TooLarge,
    TooDeep,
    Invalid(String),
}

pub fn to_json(v: &Value) -> Result<Json, ConvertError> {
    let mut left = MAX_VALUE;
    convert(v, 0, &mut left)
}

fn spend(left: &mut u64, n: u64) -> Result<(), ConvertError> {
    if n > *left {
        return Err(ConvertError::TooLarge);
    }
    *left -= n;
    Ok(())
}

fn number(v: &Value) -> Result<Json, ConvertError> {
    if v.is_integer() {
        if let Some(i) = v.as_i64() {
            return Ok(Json::from(i));
        }
        if let Ok(u) = u64::try_from(v.clone()) {
            return Ok(Json::from(u));
        }
    }
    f64::try_from(v.clone())
        .ok()
        .and_then(Number::from_f64)
        .map(Json::Number)
        .ok_or_else(|| ConvertError::Invalid(format!("the result is not a finite number ({v})")))
}

/// `depth`: containers around `v`.
fn convert(v: &Value, depth: usize, left: &mut u64) -> Result<Json, ConvertError> {
    let container = matches!(
        v.kind(),
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map
    );
    if container && depth >= MAX_JSON_DEPTH {
        return Err(ConvertError::TooDeep);
    }
    Ok(match v.kind() {
        ValueKind::Undefined => return Err(ConvertError::Undefined),
        ValueKind::None => {
            spend(left, ITEM)?;
            Json::Null
        }
        ValueKind::Bool => {
            spend(left, ITEM)?;
            Json::Bool(v.is_true())
        }
        ValueKind::Number => {
            spend(left, ITEM)?;
            number(v)?
        }
        ValueKind::String => {
            let s = v.as_str().unwrap_or_default();
            spend(left, ITEM + s.len() as u64)?;
            Json::String(s.to_string())
        }
        ValueKind::Bytes => {
            let b = v.as_bytes().unwrap_or_default();
            spend(left, ITEM + b.len() as u64)?;
            Json::String(String::from_utf8_lossy(b).into_owned())
        }
        ValueKind::Seq | ValueKind::Iterable => {
            spend(left, ITEM)?;
            let iter = v
                .try_iter()
                .map_err(|e| ConvertError::Invalid(e.to_string()))?;
            let mut out = Vec::new();
            for item in iter {
                out.push(convert(&item, depth + 1, left)?);
            }
            Json::Array(out)
        }
        ValueKind::Map => {
            spend(left, ITEM)?;
            let mut out = Map::new();
            if let Some(pairs) = v.as_object().and_then(|o| o.try_iter_pairs()) {
                for (k, item) in pairs {
                    let key = match k.as_str() {
                        Some(s) => s.to_string(),
                        None => k.to_string(),
                    };
                    spend(left, ITEM + key.len() as u64)?;
                    let item = convert(&item, depth + 1, left)?;
                    out.insert(key, item);
                }
            }
            Json::Object(out)
        }
        ValueKind::Plain => {
            let s = v.to_string();
            spend(left, ITEM + s.len() as u64)?;
            Json::String(s)
        }
        _ => return Err(ConvertError::Invalid(format!("cannot use {v} as a value"))),
    })
}
