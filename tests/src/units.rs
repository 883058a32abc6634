//! An estimate of the DynamoDB capacity units the requests would consume on real DynamoDB
//! (on-demand), because moto's `ConsumedCapacity` is a constant per operation (1 per write
//! or Query, 0.5 per GetItem, nothing for transactions), not a function of item sizes.
//!
//! The model (DynamoDB developer guide, "Read/write capacity mode" and "GSI writes"):
//! - a write costs ⌈max(old item size, new item size) / 1 KB⌉ units (at least 1), twice that
//!   inside `TransactWriteItems`; a `BatchWriteItem` costs the sum of its items;
//! - each global secondary index whose keys the old or new item carries costs a write of the
//!   projected item (+100 bytes of index overhead): one for an insert, an update in place or
//!   a removal, two when the index key changes (delete + put);
//! - a read costs ⌈size / 4 KB⌉ units per item (`GetItem`, `BatchGetItem`) or for the sum of
//!   the items returned (`Query`, `Scan`), at least 1, halved when eventually consistent;
//! - a failed conditional write still costs the table part of the write.
//!
//! Item sizes follow DynamoDB's rules (attribute names + values; numbers ≈ 1 byte per two
//! significant digits + 1). Old items come from the writes this estimator saw; an update
//! without `ReturnValues = ALL_NEW` is assumed to keep the item's size and index keys.

use crate::moto::TableDefinition;
use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation as op;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_smithy_types::config_bag::{Storable, StoreReplace};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

pub type Item = HashMap<String, AttributeValue>;

const KB: f64 = 1024.0;
const READ_BLOCK: f64 = 4096.0;
const INDEX_OVERHEAD: usize = 100;

/// Estimated units of one operation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Units {
    pub write: f64,
    pub read: f64,
}

/// A global secondary index of the table.
#[derive(Debug, Clone)]
struct Index {
    name: String,
    hash: String,
    range: Option<String>,
    /// None: `ALL`; Some(attributes): `KEYS_ONLY` / `INCLUDE` (besides the keys).
    projected: Option<Vec<String>>,
}

/// One write of the request, seen before it is sent.
#[derive(Debug, Clone)]
enum Write {
    Put(Item),
    Delete(Item),
    /// An update whose result the response does not carry: assumed to keep the item.
    Update(Item),
    ConditionCheck(Item),
}

/// What the estimator needs to remember between the request and its response.
#[derive(Debug, Clone)]
struct PendingOp {
    operation: &'static str,
    pending: Pending,
}

#[derive(Debug, Clone)]
enum Pending {
    /// Writes priced when the response arrives; `factor` 2 inside a transaction.
    Writes {
        writes: Vec<Write>,
        factor: f64,
    },
    /// An `UpdateItem` with `ALL_NEW`: priced from the item the response returns.
    UpdateReturning {
        key: Item,
    },
    Read {
        consistent: bool,
    },
}

impl Storable for PendingOp {
    type Storer = StoreReplace<Self>;
}

#[derive(Default)]
struct State {
    /// The last known version of every item written, by (pk, sk).
    items: HashMap<(String, String), Item>,
    units: BTreeMap<String, Units>,
}

/// The table's keys and indexes as template.yaml declares them: what one item write costs,
/// and in which partitions (shared by the cost estimator and the `aws-scale` model).
#[derive(Debug, Clone)]
pub struct TableModel {
    key_names: (String, String),
    indexes: Vec<Index>,
}

/// Where a write's units land: the table or an index, and the partition key there.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionWrite {
    /// `table` or the index name.
    pub target: String,
    pub partition: String,
    pub units: f64,
}

/// An SDK interceptor for the DynamoDB client; clones share their state.
#[derive(Clone)]
pub struct UnitEstimator {
    table: Arc<TableModel>,
    state: Arc<Mutex<State>>,
    /// Print every priced item write to stderr.
    trace: bool,
}

impl std::fmt::Debug for UnitEstimator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitEstimator").finish_non_exhaustive()
    }
}

impl TableModel {
    /// For the table of `template.yaml`.
    pub fn new(def: &TableDefinition) -> Self {
        let key_of = |keys: &[crate::moto::KeyDef], kind: &str| {
            keys.iter()
                .find(|k| k.key_type == kind)
                .map(|k| k.attribute_name.clone())
        };
        let key_names = (
            key_of(&def.key_schema, "HASH").unwrap_or_else(|| "pk".into()),
            key_of(&def.key_schema, "RANGE").unwrap_or_else(|| "sk".into()),
        );
        let indexes = def
            .global_secondary_indexes
            .iter()
            .filter_map(|i| {
                Some(Index {
                    name: i.index_name.clone(),
                    hash: key_of(&i.key_schema, "HASH")?,
                    range: key_of(&i.key_schema, "RANGE"),
                    projected: match i.projection.projection_type.as_str() {
                        "ALL" => None,
                        _ => Some(i.projection.non_key_attributes.clone()),
                    },
                })
            })
            .collect();
        Self { key_names, indexes }
    }

    /// The item's table key.
    pub fn item_key(&self, item: &Item) -> Option<(String, String)> {
        let (pk, sk) = &self.key_names;
        Some((scalar(item.get(pk)?)?, scalar(item.get(sk)?)?))
    }

    fn index_key(&self, index: &Index, item: &Item) -> Option<(String, String)> {
        let hash = scalar(item.get(&index.hash)?)?;
        let range = match &index.range {
            Some(r) => scalar(item.get(r)?)?,
            None => String::new(),
        };
        Some((hash, range))
    }

    /// The size of the item's entry in an index.
    fn projected_size(&self, index: &Index, item: &Item) -> usize {
        let size = match &index.projected {
            None => item_size(item),
            Some(extra) => {
                let (pk, sk) = &self.key_names;
                let mut names: Vec<&str> = vec![pk, sk, &index.hash];
                names.extend(index.range.as_deref());
                names.extend(extra.iter().map(String::as_str));
                names.sort_unstable();
                names.dedup();
                names
                    .iter()
                    .filter_map(|n| item.get(*n).map(|v| n.len() + value_size(v)))
                    .sum()
            }
        };
        size + INDEX_OVERHEAD
    }

    /// The units of one item going from `old` to `new` (None: absent), per partition they
    /// land in: the table's, and each index's whose keys the old or new item carries
    /// (`factor` 2 inside a transaction, for the table part).
    pub fn partition_writes(
        &self,
        old: Option<&Item>,
        new: Option<&Item>,
        factor: f64,
    ) -> Vec<PartitionWrite> {
        let mut out = Vec::new();
        let size = old.map_or(0, item_size).max(new.map_or(0, item_size));
        if let Some((pk, _)) = new.or(old).and_then(|i| self.item_key(i)) {
            out.push(PartitionWrite {
                target: "table".into(),
                partition: pk,
                units: write_blocks(size) * factor,
            });
        }
        for index in &self.indexes {
            let before = old.and_then(|o| self.index_key(index, o));
            let after = new.and_then(|n| self.index_key(index, n));
            let old_size = || old.map_or(0, |o| self.projected_size(index, o));
            let new_size = || new.map_or(0, |n| self.projected_size(index, n));
            let mut land = |partition: String, units: f64| {
                out.push(PartitionWrite {
                    target: index.name.clone(),
                    partition,
                    units,
                })
            };
            match (before, after) {
                (None, None) => {}
                (Some(a), None) => land(a.0, write_blocks(old_size())),
                (None, Some(b)) => land(b.0, write_blocks(new_size())),
                // An update in place (also assumed for an update whose result is unseen).
                (Some(a), Some(b)) if a == b => {
                    land(a.0, write_blocks(old_size().max(new_size())));
                }
                (Some(a), Some(b)) => {
                    land(a.0, write_blocks(old_size()));
                    land(b.0, write_blocks(new_size()));
                }
            }
        }
        out
    }
}

impl UnitEstimator {
    /// For the table of `template.yaml`.
    pub fn new(def: &TableDefinition, trace: bool) -> Self {
        Self {
            table: Arc::new(TableModel::new(def)),
            state: Arc::new(Mutex::new(State::default())),
            trace,
        }
    }

    /// The units per operation so far, and zero from now on (the known items are kept).
    pub fn take(&self) -> BTreeMap<String, Units> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.units))
            .unwrap_or_default()
    }

    /// Write units of one item going from `old` to `new` (None: absent).
    fn write_units(&self, old: Option<&Item>, new: Option<&Item>, factor: f64) -> f64 {
        let units: f64 = self
            .table
            .partition_writes(old, new, factor)
            .iter()
            .map(|w| w.units)
            .sum();
        if self.trace {
            let item = new.or(old);
            let key = item
                .and_then(|i| self.table.item_key(i))
                .unwrap_or_default();
            eprintln!(
                "  write {:<60} {:>5} B -> {:>5} B  x{factor}  {units} WRU",
                format!("{} | {}", key.0, key.1),
                old.map_or(0, item_size),
                new.map_or(0, item_size),
            );
        }
        units
    }

    fn add(&self, state: &mut State, operation: &str, units: Units) {
        let entry = state.units.entry(operation.to_string()).or_default();
        entry.write += units.write;
        entry.read += units.read;
    }

    fn pending_of(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
    ) -> Option<PendingOp> {
        let input = context.input();
        let state = self.state.lock().ok()?;
        let op = |operation: &'static str, pending: Pending| Some(PendingOp { operation, pending });
        let known = |key: &Item| -> Item {
            self.table
                .item_key(key)
                .and_then(|k| state.items.get(&k).cloned())
                .unwrap_or_else(|| key.clone())
        };
        if let Some(i) = input.downcast_ref::<op::put_item::PutItemInput>() {
            return op(
                "PutItem",
                Pending::Writes {
                    writes: vec![Write::Put(i.item().cloned().unwrap_or_default())],
                    factor: 1.0,
                },
            );
        }
        if let Some(i) = input.downcast_ref::<op::delete_item::DeleteItemInput>() {
            return op(
                "DeleteItem",
                Pending::Writes {
                    writes: vec![Write::Delete(i.key().cloned().unwrap_or_default())],
                    factor: 1.0,
                },
            );
        }
        if let Some(i) = input.downcast_ref::<op::update_item::UpdateItemInput>() {
            let key = i.key().cloned().unwrap_or_default();
            return op(
                "UpdateItem",
                if i.return_values() == Some(&ReturnValue::AllNew) {
                    Pending::UpdateReturning { key }
                } else {
                    Pending::Writes {
                        writes: vec![Write::Update(known(&key))],
                        factor: 1.0,
                    }
                },
            );
        }
        if let Some(i) = input.downcast_ref::<op::batch_write_item::BatchWriteItemInput>() {
            let writes = i
                .request_items()
                .into_iter()
                .flat_map(|m| m.values().flatten())
                .filter_map(|w| {
                    if let Some(p) = w.put_request() {
                        Some(Write::Put(p.item().clone()))
                    } else {
                        w.delete_request().map(|d| Write::Delete(d.key().clone()))
                    }
                })
                .collect();
            return op(
                "BatchWriteItem",
                Pending::Writes {
                    writes,
                    factor: 1.0,
                },
            );
        }
        if let Some(i) = input.downcast_ref::<op::transact_write_items::TransactWriteItemsInput>() {
            let writes = i
                .transact_items()
                .iter()
                .filter_map(|t| {
                    if let Some(p) = t.put() {
                        Some(Write::Put(p.item().clone()))
                    } else if let Some(u) = t.update() {
                        Some(Write::Update(known(u.key())))
                    } else if let Some(d) = t.delete() {
                        Some(Write::Delete(d.key().clone()))
                    } else {
                        t.condition_check()
                            .map(|c| Write::ConditionCheck(known(c.key())))
                    }
                })
                .collect();
            return op(
                "TransactWriteItems",
                Pending::Writes {
                    writes,
                    factor: 2.0,
                },
            );
        }
        if let Some(i) = input.downcast_ref::<op::get_item::GetItemInput>() {
            return op(
                "GetItem",
                Pending::Read {
                    consistent: i.consistent_read() == Some(true),
                },
            );
        }
        if let Some(i) = input.downcast_ref::<op::query::QueryInput>() {
            return op(
                "Query",
                Pending::Read {
                    consistent: i.consistent_read() == Some(true),
                },
            );
        }
        if let Some(i) = input.downcast_ref::<op::scan::ScanInput>() {
            return op(
                "Scan",
                Pending::Read {
                    consistent: i.consistent_read() == Some(true),
                },
            );
        }
        if let Some(i) = input.downcast_ref::<op::batch_get_item::BatchGetItemInput>() {
            let consistent = i
                .request_items()
                .is_some_and(|m| m.values().any(|k| k.consistent_read() == Some(true)));
            return op("BatchGetItem", Pending::Read { consistent });
        }
        None
    }

    /// Prices a priced-at-response write set and records the new items.
    fn settle_writes(&self, state: &mut State, writes: &[Write], factor: f64, ok: bool) -> f64 {
        let mut units = 0.0;
        for w in writes {
            let (key_item, new): (&Item, Option<&Item>) = match w {
                Write::Put(item) => (item, Some(item)),
                Write::Delete(key) => (key, None),
                Write::Update(item) => (item, Some(item)),
                Write::ConditionCheck(item) => {
                    units += write_blocks(item_size(item)) * factor;
                    continue;
                }
            };
            let key = self.table.item_key(key_item);
            let old = key.as_ref().and_then(|k| state.items.get(k)).cloned();
            // An update whose result is unknown: the stored item, if any, stays as it was.
            let new = match (w, &old) {
                (Write::Update(_), Some(o)) => Some(o.clone()),
                _ => new.cloned(),
            };
            if ok {
                units += self.write_units(old.as_ref(), new.as_ref(), factor);
                if let Some(k) = key {
                    match new {
                        Some(n) => {
                            state.items.insert(k, n);
                        }
                        None => {
                            state.items.remove(&k);
                        }
                    }
                }
            } else {
                // Refused (condition, cancelled transaction): the table part is still billed.
                let size = old
                    .as_ref()
                    .map_or(0, item_size)
                    .max(new.as_ref().map_or(0, item_size));
                units += write_blocks(size) * factor;
            }
        }
        units
    }
}

fn scalar(v: &AttributeValue) -> Option<String> {
    match v {
        AttributeValue::S(s) | AttributeValue::N(s) => Some(s.clone()),
        AttributeValue::B(b) => Some(format!("{:?}", b.as_ref())),
        _ => None,
    }
}

fn write_blocks(size: usize) -> f64 {
    (size as f64 / KB).ceil().max(1.0)
}

fn read_blocks(size: usize) -> f64 {
    (size as f64 / READ_BLOCK).ceil().max(1.0)
}

fn number_size(n: &str) -> usize {
    let digits = n
        .trim_start_matches('-')
        .split(['e', 'E'])
        .next()
        .unwrap_or_default()
        .replace('.', "");
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len();
    significant.div_ceil(2) + 1
}

/// DynamoDB's size of one attribute value.
pub fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(v) => 3 + v.iter().map(|x| 1 + value_size(x)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, x)| 1 + k.len() + value_size(x))
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// DynamoDB's size of one item: its attribute names and values.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

impl Intercept for UnitEstimator {
    fn name(&self) -> &'static str {
        "WeConnectUnitEstimator"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(pending) = self.pending_of(context) {
            cfg.interceptor_state().store_put(pending);
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let Some(PendingOp { operation, pending }) = cfg.load::<PendingOp>().cloned() else {
            return Ok(());
        };
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        let result = context.output_or_error();
        let units = match pending {
            Pending::Writes { writes, factor } => Units {
                write: self.settle_writes(&mut state, &writes, factor, result.is_ok()),
                read: 0.0,
            },
            Pending::UpdateReturning { key } => {
                let k = self.table.item_key(&key);
                let old = k.as_ref().and_then(|k| state.items.get(k)).cloned();
                let new = result.ok().and_then(|o| {
                    o.downcast_ref::<op::update_item::UpdateItemOutput>()
                        .and_then(|u| u.attributes().cloned())
                });
                match new {
                    Some(new) => {
                        let units = self.write_units(old.as_ref(), Some(&new), 1.0);
                        if let Some(k) = k {
                            state.items.insert(k, new);
                        }
                        Units {
                            write: units,
                            read: 0.0,
                        }
                    }
                    // Refused by its condition: the table part is billed, nothing changes.
                    None => Units {
                        write: write_blocks(old.as_ref().map_or(0, item_size)),
                        read: 0.0,
                    },
                }
            }
            Pending::Read { consistent } => {
                let factor = if consistent { 1.0 } else { 0.5 };
                let blocks = match result {
                    Ok(o) => {
                        if let Some(g) = o.downcast_ref::<op::get_item::GetItemOutput>() {
                            read_blocks(g.item().map_or(0, item_size))
                        } else if let Some(q) = o.downcast_ref::<op::query::QueryOutput>() {
                            read_blocks(q.items().iter().map(item_size).sum())
                        } else if let Some(s) = o.downcast_ref::<op::scan::ScanOutput>() {
                            read_blocks(s.items().iter().map(item_size).sum())
                        } else if let Some(b) =
                            o.downcast_ref::<op::batch_get_item::BatchGetItemOutput>()
                        {
                            b.responses()
                                .into_iter()
                                .flat_map(|m| m.values().flatten())
                                .map(|i| read_blocks(item_size(i)))
                                .sum()
                        } else {
                            1.0
                        }
                    }
                    Err(_) => 1.0,
                };
                Units {
                    write: 0.0,
                    read: blocks * factor,
                }
            }
        };
        self.add(&mut state, operation, units);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> AttributeValue {
        AttributeValue::S(v.into())
    }

    #[test]
    fn sizes_follow_dynamodb_rules() {
        assert_eq!(value_size(&s("abc")), 3);
        assert_eq!(value_size(&AttributeValue::N("12345".into())), 4);
        assert_eq!(value_size(&AttributeValue::N("-0.001".into())), 2);
        assert_eq!(value_size(&AttributeValue::Bool(true)), 1);
        let item: Item = [("pk".to_string(), s("a")), ("n".to_string(), s("xy"))].into();
        assert_eq!(item_size(&item), 2 + 1 + 1 + 2);
        assert_eq!(write_blocks(0), 1.0);
        assert_eq!(write_blocks(1025), 2.0);
        assert_eq!(read_blocks(4096), 1.0);
        assert_eq!(read_blocks(4097), 2.0);
    }

    #[test]
    fn index_maintenance_is_priced() {
        let est = UnitEstimator::new(&crate::moto::table_definition(), false);
        let item = |extra: &[(&str, &str)]| -> Item {
            let mut i: Item = [("pk".to_string(), s("P")), ("sk".to_string(), s("S"))].into();
            for (k, v) in extra {
                i.insert(k.to_string(), s(v));
            }
            i
        };
        let plain = item(&[]);
        let indexed = item(&[("gsi1pk", "a"), ("gsi1sk", "1")]);
        let moved = item(&[("gsi1pk", "a"), ("gsi1sk", "2")]);
        // Table only; then an index entry is added, moved (delete + put), removed.
        assert_eq!(est.write_units(None, Some(&plain), 1.0), 1.0);
        assert_eq!(est.write_units(Some(&plain), Some(&indexed), 1.0), 2.0);
        assert_eq!(est.write_units(Some(&indexed), Some(&moved), 1.0), 3.0);
        assert_eq!(est.write_units(Some(&moved), Some(&plain), 1.0), 2.0);
        // In a transaction the table write counts twice; a delete still costs a write.
        assert_eq!(est.write_units(None, Some(&indexed), 2.0), 3.0);
        assert_eq!(est.write_units(Some(&indexed), None, 1.0), 2.0);
        // ByOrg projects a few attributes: a 1 KB attribute it does not project costs the
        // table write only; one it projects makes its entry 2 units (with the overhead).
        let big = item(&[("gsi1pk", "a"), ("gsi1sk", "1"), ("x", &"y".repeat(1000))]);
        assert_eq!(est.write_units(None, Some(&big), 1.0), 1.0 + 1.0);
        let projected = item(&[
            ("gsi1pk", "a"),
            ("gsi1sk", "1"),
            ("status", &"y".repeat(960)),
        ]);
        assert_eq!(est.write_units(None, Some(&projected), 1.0), 1.0 + 2.0);
    }
}
