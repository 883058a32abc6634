//! Expression placeholders, and reading the reasons of a cancelled transaction.

use super::items::Item;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// Collects `#name` and `:value` placeholders of one request's expressions.
#[derive(Debug, Default, Clone)]
pub struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    pub fn new() -> Self {
        Self::default()
    }

    /// `#attr` for an attribute name (every name goes through here: no reserved-word trouble).
    pub fn n(&mut self, attr: &str) -> String {
        let placeholder = format!(
            "#{}",
            attr.chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
                .collect::<String>()
        );
        self.names.insert(placeholder.clone(), attr.to_string());
        placeholder
    }

    /// A fresh `:vN` for a value.
    pub fn v(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }
    pub fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }

    /// `SET #a = :v, …` for every attribute of `item` but `keep`, then `REMOVE` for each of
    /// `removable` the item does not have.
    pub fn set_all(&mut self, item: &Item, keep: &[&str], removable: &[&str]) -> String {
        let mut names: Vec<&String> = item
            .keys()
            .filter(|k| !keep.contains(&k.as_str()))
            .collect();
        names.sort();
        let sets: Vec<String> = names
            .into_iter()
            .map(|k| {
                let n = self.n(k);
                let v = self.v(item[k].clone());
                format!("{n} = {v}")
            })
            .collect();
        let removes: Vec<String> = removable
            .iter()
            .filter(|r| !item.contains_key(**r))
            .map(|r| self.n(r))
            .collect();
        let mut out = String::new();
        if !sets.is_empty() {
            out.push_str("SET ");
            out.push_str(&sets.join(", "));
        }
        if !removes.is_empty() {
            out.push_str(" REMOVE ");
            out.push_str(&removes.join(", "));
        }
        out
    }
}

/// Why each item of a cancelled transaction failed: `(code, stored item)`; None when the
/// error is not a cancellation.
pub fn cancellation(e: &SdkError<TransactWriteItemsError>) -> Option<Vec<(String, Option<Item>)>> {
    match e.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(c)) => Some(
            c.cancellation_reasons()
                .iter()
                .map(|r| (r.code().unwrap_or("None").to_string(), r.item().cloned()))
                .collect(),
        ),
        _ => None,
    }
}

pub fn is_condition_failure(code: &str) -> bool {
    code == "ConditionalCheckFailed"
}

/// A transaction that lost a race with another transaction on the same items: retry it.
pub fn is_conflict(reasons: &[(String, Option<Item>)]) -> bool {
    reasons.iter().any(|(c, _)| c == "TransactionConflict")
        && !reasons.iter().any(|(c, _)| is_condition_failure(c))
}

/// A short pause before retrying a conflicting transaction.
pub async fn conflict_pause(round: u32) {
    let ms = 5u64 * (1 << round.min(6)) + rand::random::<u64>() % 10;
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_set_and_remove() {
        let item: Item = HashMap::from([
            ("a".to_string(), AttributeValue::S("1".into())),
            ("pk".to_string(), AttributeValue::S("k".into())),
        ]);
        let mut e = Expr::new();
        let text = e.set_all(&item, &["pk"], &["a", "gone"]);
        assert_eq!(text, "SET #a = :v0 REMOVE #gone");
        assert_eq!(e.names().unwrap().len(), 2);
        assert_eq!(e.values().unwrap().len(), 1);
        assert_eq!(Expr::new().names(), None);
    }
}
