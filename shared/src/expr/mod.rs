//! Expressions: `{{ … }}` in string parameters, evaluated by minijinja in a sandbox
//! (spec §2, "Expressions").
//!
//! - A string without `{{` or `{%` is returned unchanged without touching minijinja (this runs
//!   for every parameter of every node run).
//! - A string that is exactly one `{{ expr }}` (surrounding whitespace allowed) yields the
//!   expression's typed value (number, bool, object, array, null); an infinite or NaN number is
//!   an error.
//! - Any other string is rendered as a text template.
//! - Context: `json`, `nodes` (`nodes.<id>.output`), `trigger`, `execution`, `workflow`, `now`.
//! - Undefined values are errors that name the missing path as written.
//! - Sandboxed: no loader, includes, macros or environment access; bounded work, output and
//!   value sizes (see `sandbox.rs`); a runaway template fails with "too much work".

mod compile;
mod convert;
mod paths;
mod sandbox;
#[cfg(test)]
mod tests;

pub use compile::{CONTEXT_VARIABLES, MAX_EXPRESSION_BYTES, MAX_EXPRESSION_DEPTH};
pub use sandbox::{FUEL, MAX_OUTPUT, MAX_STRING, MAX_VALUE, WORK_BUDGET};

use compile::{Info, Rejected};
use convert::ConvertError;
use serde_json::Value;

/// What an expression can see.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ExprContext {
    /// This node's input.
    pub json: Value,
    /// `{"<nodeId>": {"output": …}}` for every finished upstream node.
    pub nodes: Value,
    /// The trigger's output.
    pub trigger: Value,
    /// `{"id", "mode"}`
    pub execution: Value,
    /// `{"id", "name", "version"}`
    pub workflow: Value,
    /// RFC 3339.
    pub now: String,
    /// `{"<nodeId>": {"url", "token"}}` of the workflow's `flow.waitForCallback` nodes.
    pub callbacks: Value,
}

/// An expression that failed to parse or to evaluate; the message says which and why
/// (for a missing value, the path).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct ExprError(pub String);

/// Does `text` contain template syntax (and so go through minijinja)?
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}

/// The string as shown in messages (shortened).
fn shown(text: &str) -> String {
    const MAX: usize = 120;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX - 1).collect();
        s.push('…');
        s
    }
}

fn rejected(text: &str, r: Rejected) -> ExprError {
    match r {
        Rejected::Syntax(m) => ExprError(format!(
            "expression \"{}\" does not parse: {m}",
            shown(text)
        )),
        Rejected::Policy(m) => ExprError(format!(
            "expression \"{}\" is not allowed: {m}",
            shown(text)
        )),
    }
}

/// Checks that every `{{ … }}` / `{% … %}` in `text` parses and only uses what the sandbox
/// allows (validation).
pub fn check_template(text: &str) -> Result<(), ExprError> {
    if !is_template(text) {
        return Ok(());
    }
    with_stack_for(text, || {
        let parsed = compile::parse(text).map_err(|r| rejected(text, r))?;
        compile::check(&parsed).map_err(|r| rejected(text, r))?;
        Ok(())
    })
}

/// The upstream node outputs some expressions read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodeRefs {
    /// None (no expression reads `nodes`).
    #[default]
    None,
    /// Exactly these (`nodes.<id>` or `nodes["<id>"]`), sorted.
    Some(Vec<String>),
    /// Any of them: `nodes` is read as a whole or with a computed key.
    All,
}

/// The node outputs the expressions inside `params` read (strings that do not parse read
/// nothing: validation refuses them).
pub fn referenced_nodes(params: &serde_json::Map<String, Value>) -> NodeRefs {
    let mut named = std::collections::BTreeSet::new();
    let mut stack: Vec<&Value> = params.values().collect();
    while let Some(v) = stack.pop() {
        match v {
            Value::String(text) if is_template(text) && text.contains("nodes") => {
                let info = with_stack_for(text, || {
                    let parsed = compile::parse(text).map_err(|r| rejected(text, r))?;
                    let info = compile::check(&parsed).map_err(|r| rejected(text, r))?;
                    Ok((info.all_nodes, info.node_refs))
                });
                match info {
                    Ok((true, _)) => return NodeRefs::All,
                    Ok((false, refs)) => named.extend(refs),
                    Err(_) => {}
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::Object(map) => stack.extend(map.values()),
            _ => {}
        }
    }
    if named.is_empty() {
        NodeRefs::None
    } else {
        NodeRefs::Some(named.into_iter().collect())
    }
}

/// Levels (see [`MAX_EXPRESSION_DEPTH`]) evaluated on the caller's stack; deeper strings run
/// on a thread of their own whose stack is sized for their depth.
const INLINE_DEPTH: usize = 16;
/// Stack per level for deeper strings: the deepest recursion per level (nested brackets go
/// through ~15 parser frames) in an unoptimized build, with a wide margin.
const STACK_PER_LEVEL: usize = 48 * 1024;
const STACK_BASE: usize = 512 * 1024;

/// Measures `text` (refusing it above the limits) and runs `f`, which parses and evaluates
/// it, where its depth cannot overflow the stack.
fn with_stack_for<T: Send>(
    text: &str,
    f: impl FnOnce() -> Result<T, ExprError> + Send,
) -> Result<T, ExprError> {
    let depth = compile::measure(text).map_err(|m| rejected(text, Rejected::Policy(m)))?;
    if depth <= INLINE_DEPTH {
        return f();
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("weconnect-expression".into())
            .stack_size(STACK_BASE + depth * STACK_PER_LEVEL)
            .spawn_scoped(scope, f)
            .map_err(|e| ExprError(format!("cannot evaluate the expression: {e}")))?;
        thread
            .join()
            .unwrap_or_else(|_| Err(ExprError("internal error in the expression engine".into())))
    })
}

/// Resolves every string inside `value` (objects and arrays walked, keys unchanged); a string
/// that is a single `{{ expr }}` becomes the typed value.
pub fn resolve(value: &Value, ctx: &ExprContext) -> Result<Value, ExprError> {
    let mut roots = Roots::new(ctx);
    let mut path = Vec::new();
    resolve_in(value, &mut roots, &mut path)
}

/// Evaluates one string (see [`resolve`]).
pub fn evaluate(text: &str, ctx: &ExprContext) -> Result<Value, ExprError> {
    if !is_template(text) {
        return Ok(Value::String(text.to_string()));
    }
    eval_string(text, &mut Roots::new(ctx))
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn path_text(path: &[Step<'_>]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(k);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

fn resolve_in<'a>(
    value: &'a Value,
    roots: &mut Roots<'_>,
    path: &mut Vec<Step<'a>>,
) -> Result<Value, ExprError> {
    match value {
        Value::String(s) if is_template(s) => eval_string(s, roots).map_err(|e| {
            if path.is_empty() {
                e
            } else {
                ExprError(format!("{} (at `{}`)", e.0, path_text(path)))
            }
        }),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Index(i));
                out.push(resolve_in(item, roots, path)?);
                path.pop();
            }
            Ok(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, item) in map {
                path.push(Step::Key(k));
                out.insert(k.clone(), resolve_in(item, roots, path)?);
                path.pop();
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// The context as minijinja values, converted lazily (only the variables a string uses) and
/// once per [`resolve`] call.
struct Roots<'c> {
    ctx: &'c ExprContext,
    cache: [Option<minijinja::Value>; 7],
    /// Work and fuel shared by every string of one `resolve` call.
    budget: std::sync::Arc<sandbox::Budget>,
}

impl<'c> Roots<'c> {
    fn new(ctx: &'c ExprContext) -> Self {
        Roots {
            ctx,
            cache: Default::default(),
            budget: sandbox::Budget::new(),
        }
    }

    fn get(&mut self, index: usize) -> minijinja::Value {
        if let Some(v) = &self.cache[index] {
            return v.clone();
        }
        let v = match index {
            0 => minijinja::Value::from_serialize(&self.ctx.json),
            1 => minijinja::Value::from_serialize(&self.ctx.nodes),
            2 => minijinja::Value::from_serialize(&self.ctx.trigger),
            3 => minijinja::Value::from_serialize(&self.ctx.execution),
            4 => minijinja::Value::from_serialize(&self.ctx.workflow),
            5 => minijinja::Value::from(self.ctx.now.as_str()),
            _ => minijinja::Value::from_serialize(&self.ctx.callbacks),
        };
        self.cache[index] = Some(v.clone());
        v
    }

    fn root(&mut self, info: &Info<'_>) -> minijinja::Value {
        let mut vars = Vec::with_capacity(info.roots.len() + 1);
        vars.push((
            sandbox::BUDGET_VAR,
            minijinja::Value::from_dyn_object(self.budget.clone()),
        ));
        for (i, name) in CONTEXT_VARIABLES.iter().enumerate() {
            if info.roots.contains(name) {
                vars.push((*name, self.get(i)));
            }
        }
        minijinja::Value::from_iter(vars)
    }
}

fn eval_string(text: &str, roots: &mut Roots<'_>) -> Result<Value, ExprError> {
    with_stack_for(text, || eval_measured(text, roots))
}

fn eval_measured(text: &str, roots: &mut Roots<'_>) -> Result<Value, ExprError> {
    let parsed = compile::parse(text).map_err(|r| rejected(text, r))?;
    let info = compile::check(&parsed).map_err(|r| rejected(text, r))?;
    let program = compile::compile(&parsed, text).map_err(|r| rejected(text, r))?;
    let root = roots.root(&info);
    let failed =
        |reason: String| ExprError(format!("expression \"{}\" failed: {reason}", shown(text)));
    let missing = |near: Option<std::ops::Range<usize>>| {
        paths::missing_path(&parsed, text, &root, &info.bound, near)
            .map(|p| format!("{p} is undefined"))
    };
    let ran = compile::run(&program, root.clone())
        .map_err(|e| failed(describe(&e, text, || missing(e.range()))))?;
    roots.budget.spend_fuel(ran.fuel).map_err(failed)?;
    match parsed.single_expr() {
        Some(_) => {
            let v = ran.value.unwrap_or(minijinja::Value::UNDEFINED);
            convert::to_json(&v).map_err(|e| {
                failed(match e {
                    ConvertError::Undefined => {
                        missing(None).unwrap_or_else(|| "the value is undefined".to_string())
                    }
                    ConvertError::TooLarge => {
                        format!("value too large (limit {} size units)", sandbox::MAX_VALUE)
                    }
                    ConvertError::TooDeep => format!(
                        "value too deeply nested (limit {} levels)",
                        crate::limits::MAX_JSON_DEPTH
                    ),
                    ConvertError::Invalid(m) => m,
                })
            })
        }
        None => Ok(Value::String(ran.text)),
    }
}

/// The reason an evaluation failed, for people.
fn describe(e: &minijinja::Error, text: &str, missing: impl FnOnce() -> Option<String>) -> String {
    use minijinja::ErrorKind as K;
    let detail = e.detail().unwrap_or_default();
    match e.kind() {
        K::OutOfFuel => format!(
            "too much work: the evaluation ran more than {} steps (a loop that runs too long?)",
            sandbox::FUEL
        ),
        K::UndefinedError => missing().unwrap_or_else(|| "undefined value".to_string()),
        K::InvalidOperation
            if detail.starts_with("too much work")
                || detail.starts_with("value too")
                || detail.starts_with("output too") =>
        {
            detail.to_string()
        }
        _ if detail.contains("undefined") => missing().unwrap_or_else(|| plain(e, text)),
        _ => plain(e, text),
    }
}

fn plain(e: &minijinja::Error, text: &str) -> String {
    let mut s = e.kind().to_string();
    if let Some(d) = e.detail() {
        s.push_str(": ");
        s.push_str(d);
    }
    if text.contains('\n')
        && let Some(line) = e.line()
    {
        s.push_str(&format!(" (line {line})"));
    }
    s
}
