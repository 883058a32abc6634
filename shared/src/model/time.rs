//! Timestamps: UTC, serialized as RFC 3339 with exactly three fractional digits
//! (`2026-11-21T10:00:00.000Z`), so that their text sorts in time order (index keys rely on it).

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl Timestamp {
    pub fn from_millis(ms: i64) -> Self {
        Self(Utc.timestamp_millis_opt(ms).single().unwrap_or_default())
    }
    pub fn millis(&self) -> i64 {
        self.0.timestamp_millis()
    }
    pub fn datetime(&self) -> DateTime<Utc> {
        self.0
    }
    pub fn plus(&self, d: Duration) -> Self {
        Self::from_millis(self.millis().saturating_add(d.as_millis() as i64))
    }
    pub fn minus(&self, d: Duration) -> Self {
        Self::from_millis(self.millis().saturating_sub(d.as_millis() as i64))
    }
    /// Milliseconds from `earlier` to `self`, zero when `earlier` is later.
    pub fn millis_since(&self, earlier: Timestamp) -> u64 {
        (self.millis() - earlier.millis()).max(0) as u64
    }
    pub fn parse(text: &str) -> Option<Self> {
        DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|d| Self::from_millis(d.with_timezone(&Utc).timestamp_millis()))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(d: DateTime<Utc>) -> Self {
        Self::from_millis(d.timestamp_millis())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Millis, true))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Timestamp::parse(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("invalid RFC 3339 timestamp: {text}")))
    }
}

/// In the OpenAPI document: an RFC 3339 string.
impl utoipa::PartialSchema for Timestamp {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .examples([serde_json::json!("2026-11-21T10:00:00.000Z")])
            .into()
    }
}

impl utoipa::ToSchema for Timestamp {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_fixed_width_and_round_trips() {
        let t = Timestamp::from_millis(1_700_000_000_000);
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.000Z");
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(Timestamp::from_millis(1).to_string() < Timestamp::from_millis(1000).to_string());
    }
}
