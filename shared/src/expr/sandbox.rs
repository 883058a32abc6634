//! The sandbox: one shared minijinja environment with no loader, no file or environment
//! access, a fuel limit, a recursion limit, and guards on every operation that could
//! allocate or loop without spending fuel.
//!
//! Fuel only counts VM instructions. One instruction can still do unbounded work (`"a" * n`,
//! `big ~ big` doubling through `{% set %}`, `|replace` with a long replacement, `|indent(10**9)`,
//! comparing two large values inside a long loop). So:
//! - the compiled bytecode is rewritten (see `compile.rs`) so that every string/sequence
//!   operation, comparison, slice and every emitted chunk first calls a guard function defined
//!   here; the guard charges a **work budget** ([`WORK_BUDGET`], shared with the fuel total
//!   [`FUEL_PER_RESOLVE`] by all strings of one `resolve` call, i.e. one node) and refuses
//!   strings above [`MAX_STRING`] bytes, lists above [`MAX_ITEMS`] items and output above
//!   [`MAX_OUTPUT`] bytes;
//! - every filter and test goes through a wrapper that charges for its arguments (by the
//!   filter's cost class), refuses results above [`MAX_VALUE`] or [`MAX_DEPTH`] and turns lazy
//!   results into lists; the filters whose *parameters* multiply the size of their result
//!   (`replace`, `indent`, `join`, `batch`, `slice`, `format`, `tojson`, `pprint`) are
//!   pre-checked;
//! - nesting cannot grow at run time beyond what the source allows (no `namespace`, no macros,
//!   loop-scoped `set`), and `compile.rs` bounds the number of places in the source that can add
//!   a level, so values stay shallow enough for minijinja's recursive code.
//!
//! The user-visible environment ([`env`]) is built from `Environment::empty()`: only the filters,
//! tests and functions listed here exist (no `namespace`, so values are immutable and cannot
//! form cycles; no `debug`).

use minijinja::value::{Enumerator, Kwargs, Object, ObjectRepr, Rest, Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, State, UndefinedBehavior};
use std::fmt::{self, Write as _};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// VM instructions one string's evaluation may execute.
pub const FUEL: u64 = 500_000;
/// VM instructions all the strings resolved together (one node's parameters) may execute.
pub const FUEL_PER_RESOLVE: u64 = 4 * FUEL;
/// Nesting of loops/blocks at run time.
pub const RECURSION_LIMIT: usize = 50;
/// Work units (≈ bytes or items touched by guarded operations) all the strings resolved
/// together (one node's parameters) may spend.
pub const WORK_BUDGET: u64 = 50_000_000;
/// Rendered text of one template (bytes).
pub const MAX_OUTPUT: u64 = 1 << 20;
/// A string an operation or filter builds (bytes).
pub const MAX_STRING: u64 = 4 << 20;
/// A list an operation builds (`+`, `*` on lists).
pub const MAX_ITEMS: u64 = 1 << 18;
/// Size units of one scalar, container or element (iterating items costs more than bytes).
pub const ITEM: u64 = 16;
/// Any value a filter returns or an expression yields, in size units: bytes of strings plus
/// [`ITEM`] per scalar, container and element.
pub const MAX_VALUE: u64 = 16 << 20;
/// Nesting depth of any value produced.
pub const MAX_DEPTH: usize = 200;
/// Elements of one `range(…)`.
pub const MAX_RANGE: u64 = 100_000;
/// A constant the compiler would fold at compile time (e.g. `"a" * 1000`).
pub const MAX_CONST: u128 = 1 << 20;

/// Prefix of the guard functions' names; user templates may not use identifiers with it.
pub const RESERVED_PREFIX: &str = "__wc";
pub const G_EMIT: &str = "__wc_emit";
pub const G_RAW: &str = "__wc_raw";
pub const G_ADD: &str = "__wc_add";
pub const G_MUL: &str = "__wc_mul";
pub const G_CONCAT: &str = "__wc_concat";
pub const G_CMP: &str = "__wc_cmp";
pub const G_SLICE: &str = "__wc_slice";
pub const G_ITEM: &str = "__wc_item";
pub const G_MAP: &str = "__wc_map";
pub const G_UNPACK: &str = "__wc_unpack";

/// Functions a template may call.
pub const FUNCTIONS: &[&str] = &["range", "dict"];

/// Filters that return a value nested one or two levels deeper than their input.
pub const NESTING_FILTERS: &[&str] = &[
    "batch", "dictsort", "groupby", "items", "map", "slice", "zip",
];

/// Filters whose cost does not depend on the size of their input (charged shallowly).
const CHEAP_FILTERS: &[&str] = &[
    "abs", "attr", "bool", "count", "d", "default", "first", "float", "int", "length", "round",
    "safe",
];

/// Filters that cost n·log n (charged with a log factor).
const SORTING_FILTERS: &[&str] = &["dictsort", "groupby", "sort", "unique"];

/// Tests whose cost depends on the size of their operands (charged deeply).
const DEEP_TESTS: &[&str] = &[
    "!=",
    "<",
    "<=",
    "==",
    ">",
    ">=",
    "eq",
    "equalto",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "le",
    "lessthan",
    "lt",
    "ne",
];

/// Filters a template may use (minijinja's builtins; `urlencode` is not compiled in).
pub const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "chain",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "format",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "zip",
];

/// Tests a template may use (`x is defined`, …).
pub const TESTS: &[&str] = &[
    "!=",
    "<",
    "<=",
    "==",
    ">",
    ">=",
    "boolean",
    "defined",
    "divisibleby",
    "endingwith",
    "eq",
    "equalto",
    "escaped",
    "even",
    "false",
    "filter",
    "float",
    "ge",
    "greaterthan",
    "gt",
    "in",
    "int",
    "integer",
    "iterable",
    "le",
    "lessthan",
    "lower",
    "lt",
    "mapping",
    "ne",
    "none",
    "number",
    "odd",
    "safe",
    "sameas",
    "sequence",
    "startingwith",
    "string",
    "test",
    "true",
    "undefined",
    "upper",
];

/// The environment templates and expressions run in (shared, built once).
pub fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(build_env)
}

/// The environment the filter wrappers delegate to: minijinja's builtins, with the
/// amplifying filters replaced by pre-checked versions (callbacks such as `map("indent", …)`
/// resolve filters here too).
fn inner() -> &'static Environment<'static> {
    static INNER: OnceLock<Environment<'static>> = OnceLock::new();
    INNER.get_or_init(build_inner)
}

fn build_env() -> Environment<'static> {
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    for &name in FILTERS {
        env.add_filter(name, move |state: &State, args: Rest<Value>| {
            guarded_filter(state, name, &args)
        });
    }
    for &name in TESTS {
        env.add_test(name, move |state: &State, args: Rest<Value>| {
            guarded_test(state, name, &args)
        });
    }
    env.add_function("range", guarded_range);
    env.add_function("dict", guarded_dict);
    env.add_function(G_EMIT, g_emit);
    env.add_function(G_RAW, g_raw);
    env.add_function(G_ADD, g_add);
    env.add_function(G_MUL, g_mul);
    env.add_function(G_CONCAT, g_concat);
    env.add_function(G_CMP, g_cmp);
    env.add_function(G_SLICE, g_slice);
    env.add_function(G_ITEM, g_item);
    env.add_function(G_MAP, g_map);
    env.add_function(G_UNPACK, g_unpack);
    env
}

fn build_inner() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.remove_global("debug");
    env.remove_global("namespace");
    let replace = Value::from_function(minijinja::filters::replace);
    env.add_filter("replace", move |state: &State, args: Rest<Value>| {
        precheck_replace(&args)?;
        replace.call(state, &args)
    });
    let indent = Value::from_function(minijinja::filters::indent);
    env.add_filter("indent", move |state: &State, args: Rest<Value>| {
        precheck_indent(&args)?;
        indent.call(state, &args)
    });
    let join = Value::from_function(minijinja::filters::join);
    env.add_filter("join", move |state: &State, args: Rest<Value>| {
        precheck_join(&args)?;
        join.call(state, &args)
    });
    let batch = Value::from_function(minijinja::filters::batch);
    env.add_filter("batch", move |state: &State, args: Rest<Value>| {
        precheck_count(&args, "batch")?;
        batch.call(state, &args)
    });
    let slice = Value::from_function(minijinja::filters::slice);
    env.add_filter("slice", move |state: &State, args: Rest<Value>| {
        precheck_count(&args, "slice")?;
        slice.call(state, &args)
    });
    let format = Value::from_function(minijinja::filters::format);
    env.add_filter("format", move |state: &State, args: Rest<Value>| {
        precheck_format(&args)?;
        format.call(state, &args)
    });
    env.add_filter("tojson", capped_tojson);
    // minijinja's divides by the argument without checking it.
    env.add_test("divisibleby", divisible_by);
    env.add_filter("pprint", capped_pprint);
    env
}

// ---------------------------------------------------------------------------------------------
// Errors

pub fn too_much_work(what: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("too much work: {what}"),
    )
}

pub fn too_large(what: impl fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("value too large: {what}"),
    )
}

fn string_too_large(what: impl fmt::Display) -> Error {
    too_large(format!("{what} (limit {MAX_STRING} bytes)"))
}

fn too_deep() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("value too deeply nested (limit {MAX_DEPTH} levels)"),
    )
}

fn output_too_large() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("output too large: the rendered text would exceed {MAX_OUTPUT} bytes"),
    )
}

// ---------------------------------------------------------------------------------------------
// Per-evaluation budget, kept in the evaluation's `State` temps (invisible to templates).

/// The work budget shared by the strings resolved together; it travels in the root context
/// under [`BUDGET_VAR`] (a reserved name templates cannot use).
#[derive(Debug)]
pub struct Budget {
    work_left: AtomicU64,
    fuel_left: AtomicU64,
}

impl Object for Budget {}

pub const BUDGET_VAR: &str = "__wc_budget";

impl Budget {
    pub fn new() -> Arc<Budget> {
        Arc::new(Budget {
            work_left: AtomicU64::new(WORK_BUDGET),
            fuel_left: AtomicU64::new(FUEL_PER_RESOLVE),
        })
    }

    /// Accounts for the VM instructions one evaluation executed.
    pub fn spend_fuel(&self, used: u64) -> Result<(), String> {
        let left = self.fuel_left.load(Ordering::Relaxed);
        if used > left {
            self.fuel_left.store(0, Ordering::Relaxed);
            return Err(format!(
                "too much work: the expressions of these parameters ran more than \
                 {FUEL_PER_RESOLVE} steps in total"
            ));
        }
        self.fuel_left.store(left - used, Ordering::Relaxed);
        Ok(())
    }
}

fn budget(state: &State) -> Arc<Budget> {
    const TEMP: &str = "wc.budget";
    if let Some(b) = state
        .lookup(BUDGET_VAR)
        .or_else(|| state.get_temp(TEMP))
        .and_then(|v| v.downcast_object::<Budget>())
    {
        return b;
    }
    let b = Budget::new();
    state.set_temp(TEMP, Value::from_dyn_object(b.clone()));
    b
}

/// Output left for the template being rendered (per string).
#[derive(Debug)]
struct OutputLeft(AtomicU64);

impl Object for OutputLeft {}

fn output_left(state: &State) -> Arc<OutputLeft> {
    const TEMP: &str = "wc.output";
    if let Some(o) = state
        .get_temp(TEMP)
        .and_then(|v| v.downcast_object::<OutputLeft>())
    {
        return o;
    }
    let o = Arc::new(OutputLeft(AtomicU64::new(MAX_OUTPUT)));
    state.set_temp(TEMP, Value::from_dyn_object(o.clone()));
    o
}

impl Budget {
    fn left(&self) -> u64 {
        self.work_left.load(Ordering::Relaxed)
    }

    fn exhausted(&self) -> Error {
        self.work_left.store(0, Ordering::Relaxed);
        too_much_work(format!(
            "the evaluation exceeded its budget of {WORK_BUDGET} work units"
        ))
    }

    fn charge(&self, units: u64) -> Result<(), Error> {
        let left = self.left();
        if units > left {
            return Err(self.exhausted());
        }
        self.work_left.store(left - units, Ordering::Relaxed);
        Ok(())
    }

    /// Measures `v` (limited by the budget left) and charges for it.
    fn charge_measure(&self, v: &Value) -> Result<(), Error> {
        let m = measure(v, self.left()).map_err(|e| match e {
            Exceeded::Size => self.exhausted(),
            Exceeded::Depth => too_deep(),
        })?;
        self.charge(m)
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring values

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exceeded {
    Size,
    Depth,
}

/// Size of `v` (bytes of strings + [`ITEM`] per scalar, container and element); stops as soon as
/// `limit` or [`MAX_DEPTH`] levels of nesting are passed.
pub fn measure(v: &Value, limit: u64) -> Result<u64, Exceeded> {
    let mut left = limit;
    walk(v, 0, &mut left)?;
    Ok(limit - left)
}

fn spend(left: &mut u64, n: u64) -> Result<(), Exceeded> {
    if n > *left {
        return Err(Exceeded::Size);
    }
    *left -= n;
    Ok(())
}

fn walk(v: &Value, depth: usize, left: &mut u64) -> Result<(), Exceeded> {
    if depth > MAX_DEPTH {
        return Err(Exceeded::Depth);
    }
    match v.kind() {
        ValueKind::String => spend(left, ITEM + v.as_str().map_or(0, |s| s.len() as u64)),
        ValueKind::Bytes => spend(left, ITEM + v.as_bytes().map_or(0, |b| b.len() as u64)),
        ValueKind::Seq | ValueKind::Iterable => {
            spend(left, ITEM)?;
            if let Ok(iter) = v.try_iter() {
                for item in iter {
                    walk(&item, depth + 1, left)?;
                }
            }
            Ok(())
        }
        ValueKind::Map => {
            spend(left, ITEM)?;
            if let Some(pairs) = v.as_object().and_then(|o| o.try_iter_pairs()) {
                for (k, item) in pairs {
                    walk(&k, depth + 1, left)?;
                    walk(&item, depth + 1, left)?;
                }
            }
            Ok(())
        }
        _ => spend(left, ITEM),
    }
}

/// Size of `v` without looking inside containers (strings count their bytes).
fn shallow(v: &Value) -> u64 {
    ITEM + v
        .as_str()
        .map(|s| s.len() as u64)
        .or_else(|| v.as_bytes().map(|b| b.len() as u64))
        .unwrap_or(0)
}

/// Number of items of a sequence or iterable, counting at most `cap + 1` of them.
fn count_items(v: &Value, cap: u64) -> u64 {
    if matches!(v.kind(), ValueKind::Seq)
        && let Some(n) = v.as_object().and_then(|o| o.enumerator_len())
    {
        return n as u64;
    }
    match v.try_iter() {
        Ok(iter) => iter.take(cap.saturating_add(1) as usize).count() as u64,
        Err(_) => 0,
    }
}

fn is_seq(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable)
}

/// A `fmt::Write` that fails once more than `cap` bytes were written.
pub struct CappedWriter<'a> {
    pub out: Option<&'a mut String>,
    pub written: u64,
    pub cap: u64,
}

impl fmt::Write for CappedWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.written += s.len() as u64;
        if self.written > self.cap {
            return Err(fmt::Error);
        }
        if let Some(out) = self.out.as_deref_mut() {
            out.push_str(s);
        }
        Ok(())
    }
}

/// Length of `v`'s text (what `{{ v }}` or `~` prints), or `None` above `cap`.
pub fn display_len(v: &Value, cap: u64) -> Option<u64> {
    if let Some(s) = v.as_str() {
        let n = s.len() as u64;
        return (n <= cap).then_some(n);
    }
    let mut w = CappedWriter {
        out: None,
        written: 0,
        cap,
    };
    write!(w, "{v}").ok()?;
    Some(w.written)
}

/// Formats `v` with `f` into a string of at most `cap` bytes.
fn capped_format(cap: u64, f: impl FnOnce(&mut CappedWriter<'_>) -> fmt::Result) -> Option<String> {
    let mut s = String::new();
    let mut w = CappedWriter {
        out: Some(&mut s),
        written: 0,
        cap,
    };
    f(&mut w).ok()?;
    Some(s)
}

// ---------------------------------------------------------------------------------------------
// Guard functions the rewritten bytecode calls. Operand guards receive the operands as a list
// and return it reversed (the following `UnpackList` reverses it back onto the stack).

fn operands<const N: usize>(list: &Value) -> Result<[Value; N], Error> {
    let items: Vec<Value> = list.try_iter()?.collect();
    items.try_into().map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "internal error: bad guard operands",
        )
    })
}

fn reversed<const N: usize>(mut ops: [Value; N]) -> Value {
    ops.reverse();
    Value::from(ops.to_vec())
}

fn g_emit(state: &State, v: Value) -> Result<Value, Error> {
    let out = output_left(state);
    let left = out.0.load(Ordering::Relaxed);
    let n = display_len(&v, left).ok_or_else(output_too_large)?;
    out.0.store(left - n, Ordering::Relaxed);
    budget(state).charge(n)?;
    Ok(v)
}

fn g_raw(state: &State, n: u64) -> Result<(), Error> {
    let out = output_left(state);
    let left = out.0.load(Ordering::Relaxed);
    if n > left {
        return Err(output_too_large());
    }
    out.0.store(left - n, Ordering::Relaxed);
    budget(state).charge(n)
}

fn g_add(state: &State, list: Value) -> Result<Value, Error> {
    let [a, c] = operands::<2>(&list)?;
    let b = budget(state);
    if let (Some(x), Some(y)) = (a.as_str(), c.as_str()) {
        let n = (x.len() + y.len()) as u64;
        if n > MAX_STRING {
            return Err(string_too_large(format!(
                "`+` would build a string of {n} bytes"
            )));
        }
        b.charge(n)?;
    } else if is_seq(&a) && is_seq(&c) {
        let n = count_items(&a, MAX_ITEMS) + count_items(&c, MAX_ITEMS);
        if n > MAX_ITEMS {
            return Err(too_large(format!(
                "`+` would build a list of {n} items (limit {MAX_ITEMS} items)"
            )));
        }
        b.charge(n * ITEM)?;
    } else {
        b.charge(1)?;
    }
    Ok(reversed([a, c]))
}

fn g_mul(state: &State, list: Value) -> Result<Value, Error> {
    let [a, c] = operands::<2>(&list)?;
    let b = budget(state);
    let times = |v: &Value| v.as_i64().map_or(0, |n| n.max(0) as u64);
    let (subject, n) = if a.kind() == ValueKind::String || is_seq(&a) {
        (&a, times(&c))
    } else {
        (&c, times(&a))
    };
    if let Some(s) = subject.as_str() {
        let total = (s.len() as u64).saturating_mul(n);
        if total > MAX_STRING {
            return Err(string_too_large(format!(
                "`*` would build a string of {total} bytes"
            )));
        }
        b.charge(total.max(1))?;
    } else if is_seq(subject) {
        let total = count_items(subject, MAX_ITEMS).saturating_mul(n);
        if total > MAX_ITEMS {
            return Err(too_large(format!(
                "`*` would build a list of {total} items (limit {MAX_ITEMS} items)"
            )));
        }
        b.charge(total.saturating_mul(ITEM).max(1))?;
    } else {
        b.charge(1)?;
    }
    Ok(reversed([a, c]))
}

fn g_concat(state: &State, list: Value) -> Result<Value, Error> {
    let [a, c] = operands::<2>(&list)?;
    let b = budget(state);
    let la = display_len(&a, MAX_STRING)
        .ok_or_else(|| string_too_large("`~` would build a string that is too long"))?;
    let lc = display_len(&c, MAX_STRING - la)
        .ok_or_else(|| string_too_large("`~` would build a string that is too long"))?;
    b.charge(la + lc)?;
    Ok(reversed([a, c]))
}

fn g_cmp(state: &State, list: Value) -> Result<Value, Error> {
    let [a, c] = operands::<2>(&list)?;
    let b = budget(state);
    b.charge_measure(&a)?;
    b.charge_measure(&c)?;
    Ok(reversed([a, c]))
}

/// `x[i]`: indexing a string walks its characters, indexing a lazy iterable walks its items.
fn g_item(state: &State, list: Value) -> Result<Value, Error> {
    let [v, key] = operands::<2>(&list)?;
    let cost = match v.kind() {
        ValueKind::String => shallow(&v),
        ValueKind::Iterable => count_items(&v, MAX_ITEMS).saturating_mul(ITEM),
        _ => ITEM,
    };
    budget(state).charge(cost)?;
    Ok(reversed([v, key]))
}

/// `{k: v, …}`: keys are hashed (strings by their bytes).
fn g_map(state: &State, list: Value) -> Result<Value, Error> {
    let mut items: Vec<Value> = list.try_iter()?.collect();
    let b = budget(state);
    for key in items.iter().step_by(2) {
        b.charge(shallow(key))?;
    }
    items.reverse();
    Ok(Value::from(items))
}

/// `for a, b in …`: unpacking walks the item.
fn g_unpack(state: &State, list: Value) -> Result<Value, Error> {
    let [v] = operands::<1>(&list)?;
    let cost = match v.kind() {
        ValueKind::Seq | ValueKind::Iterable | ValueKind::Map => {
            count_items(&v, MAX_ITEMS).saturating_mul(ITEM)
        }
        _ => ITEM,
    };
    budget(state).charge(cost)?;
    Ok(reversed([v]))
}

fn g_slice(state: &State, list: Value) -> Result<Value, Error> {
    let [v, start, stop, step] = operands::<4>(&list)?;
    let b = budget(state);
    let n = match v.as_str() {
        Some(s) => s.len() as u64,
        None => count_items(&v, MAX_ITEMS).saturating_mul(ITEM),
    };
    b.charge(n.max(1))?;
    Ok(reversed(safe_backward_slice([v, start, stop, step])))
}

/// minijinja 2.24 panics on some backward slices (`x[1:5:-1]`, `''[::-1]`, a step of
/// `i64::MIN`); those select nothing (or the same as a step of `-i64::MAX`), so the operands
/// are rewritten to an equivalent safe form.
fn safe_backward_slice(ops: [Value; 4]) -> [Value; 4] {
    let [v, start, stop, step] = ops;
    let opt = |x: &Value| -> Option<Option<i64>> {
        if x.is_none() {
            Some(None)
        } else {
            i64::try_from(x.clone()).ok().map(Some)
        }
    };
    let (Some(Some(step_n)), Some(start_n), Some(stop_n)) = (opt(&step), opt(&start), opt(&stop))
    else {
        return [v, start, stop, step]; // not a backward slice, or minijinja reports the error
    };
    if step_n >= 0 {
        return [v, start, stop, step];
    }
    let end = match v.as_str() {
        Some(s) => s.chars().count() as i64,
        None => match v.kind() {
            ValueKind::Bytes => v.as_bytes().map_or(0, |b| b.len()) as i64,
            ValueKind::Seq | ValueKind::Iterable => count_items(&v, u64::MAX) as i64,
            _ => return [v, start, stop, step],
        },
    };
    // minijinja's normalisation (range_step_backwards).
    let first = match start_n {
        None => (end - 1).max(0),
        Some(s) if s >= end => (end - 1).max(0),
        Some(s) if s >= 0 => s,
        Some(s) => (end + s).max(0),
    };
    let last = match stop_n {
        None => 0,
        Some(s) if s < 0 => (end + s).max(0),
        Some(s) => s,
    };
    if end == 0 || (last != 0 && last > first) {
        let zero = Value::from(0);
        return [v, zero.clone(), zero, Value::from(1)];
    }
    let step = if step_n == i64::MIN {
        Value::from(-i64::MAX)
    } else {
        step
    };
    [v, start, stop, step]
}

// ---------------------------------------------------------------------------------------------
// Functions, filters and tests

fn guarded_range(
    state: &State,
    lower: i64,
    upper: Option<i64>,
    step: Option<i64>,
) -> Result<Value, Error> {
    let (lo, hi) = match upper {
        Some(hi) => (lower as i128, hi as i128),
        None => (0, lower as i128),
    };
    let step = step.unwrap_or(1) as i128;
    if step == 0 {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "range: step cannot be 0",
        ));
    }
    let span = if step > 0 { hi - lo } else { lo - hi };
    let len = if span <= 0 {
        0
    } else {
        (span + step.abs() - 1) / step.abs()
    };
    if len > MAX_RANGE as i128 {
        return Err(too_much_work(format!(
            "range has {len} elements (limit {MAX_RANGE})"
        )));
    }
    budget(state).charge(ITEM)?;
    Ok(Value::from_object(Range {
        start: lo,
        step,
        len: len as usize,
    }))
}

/// `range(…)`: a sequence with O(1) indexing that holds no elements.
#[derive(Debug)]
struct Range {
    start: i128,
    step: i128,
    len: usize,
}

impl Object for Range {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Seq
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let i = usize::try_from(key.as_i64()?).ok()?;
        (i < self.len).then(|| Value::from(self.start + self.step * i as i128))
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Seq(self.len)
    }
}

fn guarded_dict(state: &State, value: Option<Value>, update: Kwargs) -> Result<Value, Error> {
    let b = budget(state);
    if let Some(v) = &value {
        b.charge_measure(v)?;
    }
    let rv = minijinja::functions::dict(value, update)?;
    b.charge_measure(&rv)?;
    Ok(rv)
}

/// Checks and charges a filter's result; lazy results become lists (so that indexing them
/// later is O(1)).
fn check_result(b: &Budget, v: Value) -> Result<Value, Error> {
    let m = measure(&v, MAX_VALUE).map_err(|e| match e {
        Exceeded::Size => too_large(format!(
            "a filter produced a value above {MAX_VALUE} size units"
        )),
        Exceeded::Depth => too_deep(),
    })?;
    b.charge(m)?;
    if v.kind() == ValueKind::Iterable {
        return Ok(Value::from(v.try_iter()?.collect::<Vec<_>>()));
    }
    Ok(v)
}

fn guarded_filter(state: &State, name: &str, args: &[Value]) -> Result<Value, Error> {
    let b = budget(state);
    if CHEAP_FILTERS.contains(&name) {
        b.charge(args.iter().map(shallow).sum())?;
    } else {
        let mut total = 0;
        for a in args {
            total += measure(a, b.left()).map_err(|e| match e {
                Exceeded::Size => b.exhausted(),
                Exceeded::Depth => too_deep(),
            })?;
        }
        if SORTING_FILTERS.contains(&name) {
            // n·log n: multiply by the bit length of the number of items.
            let bits = u64::from(64 - (total / ITEM).leading_zeros());
            total = total.saturating_mul(bits.max(1));
        }
        b.charge(total)?;
    }
    let rv = inner().empty_state().apply_filter(name, args)?;
    check_result(&b, rv)
}

fn guarded_test(state: &State, name: &str, args: &[Value]) -> Result<bool, Error> {
    let b = budget(state);
    if DEEP_TESTS.contains(&name) {
        for a in args {
            b.charge_measure(a)?;
        }
    } else {
        b.charge(args.iter().map(shallow).sum())?;
    }
    inner().empty_state().perform_test(name, args)
}

// ---------------------------------------------------------------------------------------------
// Pre-checks of the filters whose parameters multiply the size of their result.

fn split_kwargs(args: &[Value]) -> (&[Value], Option<Kwargs>) {
    match args.split_last() {
        Some((last, rest)) if last.is_kwargs() => (rest, Kwargs::try_from(last.clone()).ok()),
        _ => (args, None),
    }
}

fn text_len(v: &Value) -> Result<u64, Error> {
    display_len(v, MAX_STRING).ok_or_else(|| string_too_large("string argument is too long"))
}

fn precheck_replace(args: &[Value]) -> Result<(), Error> {
    let (pos, _) = split_kwargs(args);
    let (Some(v), Some(from), Some(to)) = (pos.first(), pos.get(1), pos.get(2)) else {
        return Ok(()); // the filter reports the missing argument
    };
    let text = v.to_string();
    let from = from.to_string();
    let to_len = text_len(to)?;
    let matches = if from.is_empty() {
        text.chars().count() as u64 + 1
    } else {
        text.matches(from.as_str()).count() as u64
    };
    let total = (text.len() as u64).saturating_add(matches.saturating_mul(to_len));
    if total > MAX_STRING {
        return Err(string_too_large(format!(
            "replace would build {total} bytes"
        )));
    }
    Ok(())
}

fn precheck_indent(args: &[Value]) -> Result<(), Error> {
    let (pos, kwargs) = split_kwargs(args);
    let width = match pos.get(1) {
        Some(w) => w.as_i64(),
        None => kwargs.and_then(|k| k.peek::<Option<i64>>("width").ok().flatten()),
    }
    .unwrap_or(4)
    .max(0) as u64;
    let Some(v) = pos.first() else { return Ok(()) };
    let text = v.to_string();
    let lines = text.lines().count() as u64 + 1;
    let total = (text.len() as u64).saturating_add(lines.saturating_mul(width));
    if total > MAX_STRING {
        return Err(string_too_large(format!(
            "indent would build {total} bytes"
        )));
    }
    Ok(())
}

fn precheck_join(args: &[Value]) -> Result<(), Error> {
    let (pos, _) = split_kwargs(args);
    let Some(v) = pos.first() else { return Ok(()) };
    let sep = match pos.get(1) {
        Some(s) => text_len(s)?,
        None => 0,
    };
    if v.as_str().is_some() {
        let n = v.as_str().map_or(0, |s| s.chars().count() as u64);
        let total = n.saturating_add(n.saturating_mul(sep));
        if total > MAX_STRING {
            return Err(string_too_large(format!("join would build {total} bytes")));
        }
        return Ok(());
    }
    let Ok(iter) = v.try_iter() else {
        return Ok(());
    };
    let mut total: u64 = 0;
    for (i, item) in iter.enumerate() {
        if i > 0 {
            total = total.saturating_add(sep);
        }
        let left = MAX_STRING.saturating_sub(total);
        match display_len(&item, left) {
            Some(n) => total += n,
            None => total = MAX_STRING + 1,
        }
        if total > MAX_STRING {
            return Err(string_too_large(
                "join would build a string that is too long",
            ));
        }
    }
    Ok(())
}

fn precheck_count(args: &[Value], name: &str) -> Result<(), Error> {
    let (pos, _) = split_kwargs(args);
    if let Some(n) = pos.get(1).and_then(|c| c.as_i64())
        && n > MAX_RANGE as i64
    {
        return Err(too_large(format!(
            "{name} count {n} is above the limit of {MAX_RANGE}"
        )));
    }
    Ok(())
}

/// `format`: refuses `*` widths and width/precision numbers above 1000.
fn precheck_format(args: &[Value]) -> Result<(), Error> {
    let Some(fmt) = args.first().and_then(|v| v.as_str()) else {
        return Ok(());
    };
    let mut chars = fmt.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            continue;
        }
        let mut number = String::new();
        while let Some(&d) = chars.peek() {
            if d.is_ascii_alphabetic() || d == '%' {
                break;
            }
            chars.next();
            if d == '*' {
                return Err(too_large("format: `*` widths are not supported"));
            }
            if d.is_ascii_digit() {
                number.push(d);
                if number.len() > 4 || number.parse::<u32>().unwrap_or(u32::MAX) > 1000 {
                    return Err(too_large("format: width or precision above 1000"));
                }
            } else {
                number.clear();
            }
        }
        chars.next();
    }
    Ok(())
}

/// `tojson`, with the indentation capped and the result written into a capped buffer.
fn capped_tojson(value: &Value, indent: Option<Value>, args: Kwargs) -> Result<Value, Error> {
    let indent = match indent {
        Some(i) => Some(i),
        None => args.get::<Option<Value>>("indent")?,
    };
    args.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.kind() == ValueKind::Bool => v.is_true().then_some(2),
        Some(v) => Some(usize::try_from(v)?),
    };
    if indent.is_some_and(|i| i > 16) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            "tojson: indent above 16 is not supported",
        ));
    }
    let mut out = CappedIo {
        buf: Vec::new(),
        cap: MAX_STRING as usize,
        overflowed: false,
    };
    let result = match indent {
        Some(i) => {
            let spaces = " ".repeat(i);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
            serde::Serialize::serialize(value, &mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::new(&mut out);
            serde::Serialize::serialize(value, &mut ser)
        }
    };
    if let Err(e) = result {
        if out.overflowed {
            return Err(string_too_large("tojson would produce too much text"));
        }
        return Err(
            Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON").with_source(e),
        );
    }
    let s = String::from_utf8(out.buf)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON"))?;
    // Like minijinja's tojson: safe to embed in HTML and JSON.
    let mut rv = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => rv.push_str("\\u003c"),
            '>' => rv.push_str("\\u003e"),
            '&' => rv.push_str("\\u0026"),
            '\'' => rv.push_str("\\u0027"),
            _ => rv.push(c),
        }
    }
    Ok(Value::from_safe_string(rv))
}

struct CappedIo {
    buf: Vec<u8>,
    cap: usize,
    overflowed: bool,
}

impl io::Write for CappedIo {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() + data.len() > self.cap {
            self.overflowed = true;
            return Err(io::Error::other("output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn divisible_by(v: &Value, other: &Value) -> Result<bool, Error> {
    let zero = || Error::new(ErrorKind::InvalidOperation, "divisibleby: division by zero");
    if v.is_integer() && other.is_integer() {
        let (Ok(a), Ok(b)) = (i128::try_from(v.clone()), i128::try_from(other.clone())) else {
            return Ok(false);
        };
        return match a.checked_rem(b) {
            Some(r) => Ok(r == 0),
            None if b == 0 => Err(zero()),
            None => Ok(true), // i128::MIN % -1
        };
    }
    match (f64::try_from(v.clone()), f64::try_from(other.clone())) {
        (Ok(_), Ok(0.0)) => Err(zero()),
        (Ok(a), Ok(b)) => Ok(a % b == 0.0),
        _ => Ok(false),
    }
}

fn capped_pprint(value: &Value) -> Result<String, Error> {
    capped_format(MAX_STRING, |w| write!(w, "{value:#?}"))
        .ok_or_else(|| string_too_large("pprint would produce too much text"))
}
