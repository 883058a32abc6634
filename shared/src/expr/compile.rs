//! Parsing, the static policy check, compilation and the guarded bytecode rewrite.
//!
//! Pipeline for one string: parse with minijinja's parser → walk the AST ([`check`]): refuse
//! what the sandbox does not support (macros, includes, blocks, `{% set %}` blocks, `{% filter %}`
//! blocks, recursive loops, splats), unknown filters/tests/functions/variables, reserved names,
//! and constants the compiler would fold into something huge → generate minijinja bytecode →
//! rewrite it ([`rewrite`]) so every operation that can do unbounded work calls a guard first
//! (see `sandbox.rs`) → run it on the shared environment.

use super::sandbox::{self, MAX_CONST};
use minijinja::machinery::{self, CodeGenerator, Instruction, Instructions, WhitespaceConfig, ast};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Error, ErrorKind};
use std::collections::{BTreeMap, BTreeSet};

/// The variables an expression can see.
pub const CONTEXT_VARIABLES: &[&str] = &[
    "json",
    "nodes",
    "trigger",
    "execution",
    "workflow",
    "now",
    "callbacks",
];

/// `PushLoop` flag of a `recursive` loop (minijinja's `LOOP_FLAG_RECURSIVE`).
const LOOP_FLAG_RECURSIVE: u8 = 2;

/// A parsed string (always parsed as a template).
pub struct Parsed<'s>(ast::Stmt<'s>);

impl<'s> Parsed<'s> {
    pub fn stmt(&self) -> &ast::Stmt<'s> {
        &self.0
    }

    /// The expression when the string is exactly one `{{ expr }}` with nothing but
    /// whitespace around it (such a string yields the expression's typed value).
    pub fn single_expr(&self) -> Option<&ast::Expr<'s>> {
        let ast::Stmt::Template(t) = &self.0 else {
            return None;
        };
        let mut found = None;
        for child in &t.children {
            match child {
                ast::Stmt::EmitExpr(e) if found.is_none() => found = Some(&e.expr),
                ast::Stmt::EmitRaw(r) if r.raw.trim().is_empty() => {}
                _ => return None,
            }
        }
        found
    }
}

/// Why a string was refused before running.
#[derive(Debug)]
pub enum Rejected {
    /// minijinja's parser failed (message: what and where).
    Syntax(String),
    /// It parses but uses something the sandbox does not allow.
    Policy(String),
}

/// What the static check learned.
#[derive(Debug, Default)]
pub struct Info<'s> {
    /// Context variables referenced (only these are converted for the evaluation).
    pub roots: BTreeSet<&'static str>,
    /// Names bound by `for`, `set` or `with` (and `loop`).
    pub bound: BTreeSet<&'s str>,
    /// Upstream nodes read as `nodes.<id>` or `nodes["<id>"]`.
    pub node_refs: BTreeSet<String>,
    /// `nodes` used otherwise (as a whole, with a computed key, or rebound): any node's
    /// output may be read.
    pub all_nodes: bool,
}

fn syntax_message(e: &Error, source: &str) -> String {
    let mut msg = format!("{}", e.kind());
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    if source.contains('\n')
        && let Some(line) = e.line()
    {
        msg.push_str(&format!(" (line {line})"));
    }
    msg
}

fn whitespace() -> WhitespaceConfig {
    WhitespaceConfig {
        keep_trailing_newline: true,
        ..WhitespaceConfig::default()
    }
}

/// Parses a string that [`measure`] accepted (parsing recurses once per level it measured).
pub fn parse(source: &str) -> Result<Parsed<'_>, Rejected> {
    machinery::parse(source, "<template>", SyntaxConfig, whitespace())
        .map(Parsed)
        .map_err(|e| Rejected::Syntax(syntax_message(&e, source)))
}

// ---------------------------------------------------------------------------------------------
// Size and depth, before parsing

/// Bytes of one string with template syntax.
pub const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

/// Levels one string may nest: statements (`{% if %}`, `{% for %}`, …) inside each other,
/// plus, in the deepest block, the operators one value is nested under (unary and binary
/// operators, filters, tests, attribute and item access, calls and brackets, along the
/// deepest path; sub-expressions separated by commas are separate paths).
///
/// minijinja's parser, our static check, the compiler and dropping the syntax tree all
/// recurse once (or a few times) per level; past a few thousand levels they overflow a 2 MiB
/// thread stack and abort the process. [`measure`] counts the levels on the tokens, before
/// anything recurses; strings above this are refused, and the evaluation of deep ones runs
/// on a thread with a stack sized for their depth.
pub const MAX_EXPRESSION_DEPTH: usize = 256;

/// Statement keywords that open a body closed by `end<keyword>`.
const BLOCK_STATEMENTS: &[&str] = &[
    "if",
    "for",
    "with",
    "set",
    "filter",
    "macro",
    "call",
    "block",
    "autoescape",
];

/// The nesting [`MAX_EXPRESSION_DEPTH`] counts, from the tokens of `source`; `Err` (a
/// message) above the limit or above [`MAX_EXPRESSION_BYTES`]. Linear, never recursive.
pub fn measure(source: &str) -> Result<usize, String> {
    use machinery::Token as T;
    if source.len() > MAX_EXPRESSION_BYTES {
        return Err(format!(
            "the string is {} bytes long, over the limit of {MAX_EXPRESSION_BYTES} bytes for \
             strings with expressions",
            source.len()
        ));
    }
    let too_deep = || {
        format!(
            "the expression nests more than {MAX_EXPRESSION_DEPTH} statements, operators, \
             filters, accesses or brackets inside each other"
        )
    };
    let mut depth = OperatorDepth::default();
    for token in machinery::tokenize(source, false, SyntaxConfig, whitespace()) {
        // A lexing error is reported by the parser, with its position.
        let Ok((token, _)) = token else { break };
        match token {
            T::BlockStart => depth.start_statement(),
            T::VariableStart | T::VariableEnd | T::BlockEnd => depth.end_block(),
            T::ParenOpen | T::BracketOpen | T::BraceOpen => depth.open(),
            T::ParenClose | T::BracketClose | T::BraceClose => depth.close(),
            T::Comma | T::Colon => depth.next_part(),
            T::Assign => depth.assigned = true,
            T::Ident(name) if depth.keyword.is_none() && depth.in_statement => {
                depth.keyword = Some(name.to_string());
            }
            T::TemplateData(_)
            | T::Str(_)
            | T::String(_)
            | T::Int(_)
            | T::Int128(_)
            | T::Float(_) => {}
            T::Ident(name)
                if !matches!(name, "not" | "and" | "or" | "in" | "is" | "if" | "else") => {}
            _ => depth.operator(),
        }
        if depth.levels.len() + depth.statements + depth.current().ops > MAX_EXPRESSION_DEPTH
            || depth.deepest > MAX_EXPRESSION_DEPTH
        {
            return Err(too_deep());
        }
    }
    depth.end_block();
    if depth.deepest > MAX_EXPRESSION_DEPTH {
        return Err(too_deep());
    }
    Ok(depth.deepest)
}

/// The deepest path of statements, operators and brackets in a string, from its tokens.
/// Each open bracket has a level: the operators of its current comma-separated part, the
/// deepest bracket inside that part, and the deepest of its finished parts.
#[derive(Default)]
struct OperatorDepth {
    levels: Vec<Level>,
    top: Level,
    /// Statements open around the current block.
    statements: usize,
    /// Inside `{% … %}`: its first identifier, and whether it assigns (`{% set x = … %}` has
    /// no body).
    in_statement: bool,
    keyword: Option<String>,
    assigned: bool,
    deepest: usize,
}

#[derive(Default)]
struct Level {
    ops: usize,
    inner: usize,
    done: usize,
}

impl Level {
    fn next_part(&mut self) {
        self.done = self.done.max(self.ops + self.inner);
        self.ops = 0;
        self.inner = 0;
    }
}

impl OperatorDepth {
    fn current(&mut self) -> &mut Level {
        self.levels.last_mut().unwrap_or(&mut self.top)
    }
    fn operator(&mut self) {
        self.current().ops += 1;
    }
    fn next_part(&mut self) {
        self.current().next_part();
    }
    /// A bracket: an operator where it stands (a call, a subscript or a literal inside an
    /// expression) and a new level inside.
    fn open(&mut self) {
        self.operator();
        self.levels.push(Level::default());
    }
    fn close(&mut self) {
        if let Some(mut inner) = self.levels.pop() {
            inner.next_part();
            let outer = self.current();
            outer.inner = outer.inner.max(inner.done + 1);
        }
    }
    fn start_statement(&mut self) {
        self.end_block();
        self.in_statement = true;
    }
    /// Closes whatever the block left open and records its depth; a statement block opens
    /// or closes a body.
    fn end_block(&mut self) {
        while !self.levels.is_empty() {
            self.close();
        }
        self.top.next_part();
        self.deepest = self.deepest.max(self.statements + self.top.done);
        self.top = Level::default();
        if let Some(keyword) = self.keyword.take() {
            if let Some(closed) = keyword.strip_prefix("end") {
                if BLOCK_STATEMENTS.contains(&closed) {
                    self.statements = self.statements.saturating_sub(1);
                }
            } else if BLOCK_STATEMENTS.contains(&keyword.as_str())
                && !(keyword == "set" && self.assigned)
            {
                self.statements += 1;
                self.deepest = self.deepest.max(self.statements);
            }
        }
        self.in_statement = false;
        self.assigned = false;
    }
}

// ---------------------------------------------------------------------------------------------
// Static check

/// Checks a parsed string against the sandbox policy.
pub fn check<'s>(parsed: &Parsed<'s>) -> Result<Info<'s>, Rejected> {
    let mut w = Walker {
        info: Info::default(),
        nesting: 0,
        vars: Vec::new(),
        calls: Vec::new(),
    };
    w.stmt(parsed.stmt()).map_err(Rejected::Policy)?;
    w.info.bound.insert("loop");
    if w.info.bound.contains("nodes") {
        w.info.all_nodes = true;
    }
    for name in &w.vars {
        if let Some(root) = CONTEXT_VARIABLES.iter().find(|v| **v == *name) {
            w.info.roots.insert(root);
        } else if !w.info.bound.contains(name) && !sandbox::FUNCTIONS.contains(name) {
            return Err(Rejected::Policy(format!(
                "unknown variable `{name}` (available: {})",
                CONTEXT_VARIABLES.join(", ")
            )));
        }
    }
    for name in &w.calls {
        if !sandbox::FUNCTIONS.contains(name) && !w.info.bound.contains(name) {
            return Err(Rejected::Policy(format!(
                "unknown function `{name}` (available: {})",
                sandbox::FUNCTIONS.join(", ")
            )));
        }
    }
    Ok(w.info)
}

/// How many places in the source may build values one level deeper than their inputs. At
/// run time values cannot get deeper than the context plus what these places add (there is
/// no `namespace`, no macros, and `set` inside a loop does not outlive the iteration), which
/// keeps values shallow enough for minijinja's recursive formatting, comparison and drop.
const MAX_NESTING_SITES: u32 = 64;

struct Walker<'s> {
    info: Info<'s>,
    /// Weighted count of list/map literals, `dict(…)` calls and nesting filters.
    nesting: u32,
    /// Variables read, in order.
    vars: Vec<&'s str>,
    /// Functions called by name.
    calls: Vec<&'s str>,
}

/// What the compiler's constant folding would produce for a node, if it folds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConstKind {
    Str,
    Seq,
    Num,
    Other,
}

#[derive(Debug, Clone, Copy)]
struct Const {
    kind: ConstKind,
    /// Upper bound of the folded value's size (bytes/items).
    size: u128,
    /// The integer value when known.
    int: Option<i128>,
}

impl Const {
    fn other(size: u128) -> Option<Const> {
        Some(Const {
            kind: ConstKind::Other,
            size,
            int: None,
        })
    }
    fn num(int: Option<i128>) -> Option<Const> {
        Some(Const {
            kind: ConstKind::Num,
            size: 8,
            int,
        })
    }
    fn display_size(&self) -> u128 {
        match self.kind {
            ConstKind::Str => self.size,
            ConstKind::Num | ConstKind::Other => 48,
            ConstKind::Seq => self.size.saturating_mul(4).saturating_add(8),
        }
    }
}

fn fold_binop(op: &ast::BinOpKind, l: Const, r: Const) -> Option<Const> {
    use ConstKind::*;
    use ast::BinOpKind as B;
    match op {
        B::Add => match (l.kind, r.kind) {
            (Str, Str) | (Seq, Seq) => Some(Const {
                kind: l.kind,
                size: l.size.saturating_add(r.size),
                int: None,
            }),
            (Num, Num) => Const::num(l.int.zip(r.int).and_then(|(a, b)| a.checked_add(b))),
            _ => None,
        },
        B::Sub => Const::num(l.int.zip(r.int).and_then(|(a, b)| a.checked_sub(b))),
        B::Mul => match (l.kind, r.kind) {
            (Str | Seq, Num) | (Num, Str | Seq) => {
                let (subject, n) = if l.kind == Num { (r, l) } else { (l, r) };
                let times = n.int.map_or(u128::MAX, |n| n.max(0) as u128);
                Some(Const {
                    kind: subject.kind,
                    size: subject.size.saturating_mul(times),
                    int: None,
                })
            }
            (Num, Num) => Const::num(l.int.zip(r.int).and_then(|(a, b)| a.checked_mul(b))),
            _ => None,
        },
        B::FloorDiv => Const::num(l.int.zip(r.int).and_then(|(a, b)| a.checked_div_euclid(b))),
        B::Rem => Const::num(l.int.zip(r.int).and_then(|(a, b)| a.checked_rem_euclid(b))),
        B::Pow => Const::num(
            l.int
                .zip(r.int)
                .and_then(|(a, b)| a.checked_pow(u32::try_from(b).ok()?)),
        ),
        B::Div => Const::num(None),
        B::Concat => Some(Const {
            kind: Str,
            size: l.display_size().saturating_add(r.display_size()),
            int: None,
        }),
        B::ScAnd | B::ScOr => Const::other(l.size.max(r.size)),
        _ => Const::other(1),
    }
}

impl<'s> Walker<'s> {
    fn stmts(&mut self, body: &[ast::Stmt<'s>]) -> Result<(), String> {
        body.iter().try_for_each(|s| self.stmt(s))
    }

    fn stmt(&mut self, stmt: &ast::Stmt<'s>) -> Result<(), String> {
        match stmt {
            ast::Stmt::Template(t) => self.stmts(&t.children),
            ast::Stmt::EmitExpr(e) => self.expr(&e.expr).map(|_| ()),
            ast::Stmt::EmitRaw(_) => Ok(()),
            ast::Stmt::ForLoop(f) => {
                if f.recursive {
                    return Err("recursive loops are not supported".into());
                }
                self.expr(&f.iter)?;
                self.target(&f.target)?;
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter)?;
                }
                self.stmts(&f.body)?;
                self.stmts(&f.else_body)
            }
            ast::Stmt::IfCond(i) => {
                self.expr(&i.expr)?;
                self.stmts(&i.true_body)?;
                self.stmts(&i.false_body)
            }
            ast::Stmt::WithBlock(w) => {
                for (target, value) in &w.assignments {
                    self.expr(value)?;
                    self.target(target)?;
                }
                self.stmts(&w.body)
            }
            ast::Stmt::Set(s) => {
                self.expr(&s.expr)?;
                self.target(&s.target)
            }
            ast::Stmt::Do(d) => self.call(&d.call).map(|_| ()),
            ast::Stmt::SetBlock(_) => Err(
                "`{% set %}…{% endset %}` blocks are not supported (use `{% set x = … %}`)".into(),
            ),
            ast::Stmt::FilterBlock(_) => Err(
                "`{% filter %}` blocks are not supported (apply the filter to an expression)"
                    .into(),
            ),
            ast::Stmt::AutoEscape(_) => Err("`{% autoescape %}` is not supported".into()),
            _ => Err(
                "only `{% if %}`, `{% for %}`, `{% set x = … %}` and `{% with %}` \
                 statements are supported (no macros, blocks, includes, imports or extends)"
                    .into(),
            ),
        }
    }

    fn nests(&mut self, weight: u32) -> Result<(), String> {
        self.nesting += weight;
        if self.nesting > MAX_NESTING_SITES {
            return Err(format!(
                "too many list/map literals, `dict()` calls and nesting filters in one string \
                 (limit {MAX_NESTING_SITES}); split it into several parameters"
            ));
        }
        Ok(())
    }

    fn name(&mut self, id: &'s str) -> Result<(), String> {
        if id.starts_with(sandbox::RESERVED_PREFIX) {
            return Err(format!("the name `{id}` is reserved"));
        }
        Ok(())
    }

    /// An assignment target (`for x in`, `set x =`, `with x =`).
    fn target(&mut self, e: &ast::Expr<'s>) -> Result<(), String> {
        match e {
            ast::Expr::Var(v) => {
                self.name(v.id)?;
                self.info.bound.insert(v.id);
                if CONTEXT_VARIABLES.contains(&v.id) {
                    self.vars.push(v.id);
                }
                Ok(())
            }
            ast::Expr::List(l) => l.items.iter().try_for_each(|i| self.target(i)),
            other => self.expr(other).map(|_| ()),
        }
    }

    fn args(&mut self, args: &[ast::CallArg<'s>]) -> Result<(), String> {
        for a in args {
            match a {
                ast::CallArg::Pos(e) | ast::CallArg::Kwarg(_, e) => {
                    self.expr(e)?;
                }
                ast::CallArg::PosSplat(_) | ast::CallArg::KwargSplat(_) => {
                    return Err("`*args` / `**kwargs` splats are not supported".into());
                }
            }
        }
        Ok(())
    }

    fn call(&mut self, c: &ast::Call<'s>) -> Result<Option<Const>, String> {
        match &c.expr {
            ast::Expr::GetAttr(m) => {
                // The only methods values have here are the loop's; `loop.changed(x)` would
                // compare whole values on every iteration without being charged.
                if m.name != "cycle" {
                    return Err(format!(
                        "method calls are not supported (`.{}(…)`); only `loop.cycle(…)` is",
                        m.name
                    ));
                }
                if c.args.is_empty() {
                    return Err("`loop.cycle()` needs at least one value".into());
                }
                self.expr(&m.expr)?;
            }
            ast::Expr::Var(v) => {
                self.name(v.id)?;
                if v.id == "loop" {
                    return Err("recursive loops (`loop(…)`) are not supported".into());
                }
                if v.id == "dict" {
                    self.nests(1)?;
                }
                self.calls.push(v.id);
            }
            other => {
                self.expr(other)?;
            }
        }
        self.args(&c.args)?;
        Ok(None)
    }

    /// Visits an expression; returns what constant folding would make of it (if it folds).
    fn expr(&mut self, e: &ast::Expr<'s>) -> Result<Option<Const>, String> {
        let folded = match e {
            ast::Expr::Var(v) => {
                self.name(v.id)?;
                self.vars.push(v.id);
                if v.id == "nodes" {
                    self.info.all_nodes = true;
                }
                None
            }
            ast::Expr::Const(c) => match c.value.kind() {
                ValueKind::String => Some(Const {
                    kind: ConstKind::Str,
                    size: c.value.as_str().map_or(0, |s| s.len() as u128),
                    int: None,
                }),
                ValueKind::Number => Const::num(
                    c.value
                        .is_integer()
                        .then(|| i128::try_from(c.value.clone()).ok())
                        .flatten(),
                ),
                _ => Const::other(1),
            },
            ast::Expr::Slice(s) => {
                self.expr(&s.expr)?;
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part)?;
                }
                None
            }
            ast::Expr::UnaryOp(u) => {
                let inner = self.expr(&u.expr)?;
                match u.op {
                    ast::UnaryOpKind::Not => inner.and_then(|_| Const::other(1)),
                    ast::UnaryOpKind::Neg => inner
                        .filter(|c| c.kind == ConstKind::Num)
                        .and_then(|c| Const::num(c.int.and_then(i128::checked_neg))),
                }
            }
            ast::Expr::BinOp(b) => {
                let l = self.expr(&b.left)?;
                let r = self.expr(&b.right)?;
                match (l, r) {
                    (Some(l), Some(r)) => fold_binop(&b.op, l, r),
                    _ => None,
                }
            }
            ast::Expr::Compare(c) => {
                let mut all = self.expr(&c.expr)?.is_some();
                for op in &c.ops {
                    all &= self.expr(&op.expr)?.is_some();
                }
                if all { Const::other(1) } else { None }
            }
            ast::Expr::IfExpr(i) => {
                self.expr(&i.test_expr)?;
                self.expr(&i.true_expr)?;
                if let Some(f) = &i.false_expr {
                    self.expr(f)?;
                }
                None
            }
            ast::Expr::Filter(f) => {
                if !sandbox::FILTERS.contains(&f.name) {
                    return Err(format!("unknown filter `{}`", f.name));
                }
                if sandbox::NESTING_FILTERS.contains(&f.name) {
                    self.nests(2)?;
                }
                if let Some(inner) = &f.expr {
                    self.expr(inner)?;
                }
                self.args(&f.args)?;
                None
            }
            ast::Expr::Test(t) => {
                if !sandbox::TESTS.contains(&t.name) {
                    return Err(format!("unknown test `{}`", t.name));
                }
                self.expr(&t.expr)?;
                self.args(&t.args)?;
                None
            }
            ast::Expr::GetAttr(g) => {
                match &g.expr {
                    ast::Expr::Var(v) if v.id == "nodes" => {
                        self.vars.push(v.id);
                        self.info.node_refs.insert(g.name.to_string());
                    }
                    other => {
                        self.expr(other)?;
                    }
                }
                None
            }
            ast::Expr::GetItem(g) => {
                match (&g.expr, &g.subscript_expr) {
                    (ast::Expr::Var(v), ast::Expr::Const(c))
                        if v.id == "nodes" && c.value.as_str().is_some() =>
                    {
                        self.vars.push(v.id);
                        if let Some(name) = c.value.as_str() {
                            self.info.node_refs.insert(name.to_string());
                        }
                    }
                    (e, sub) => {
                        self.expr(e)?;
                        self.expr(sub)?;
                    }
                }
                None
            }
            ast::Expr::Call(c) => self.call(c)?,
            ast::Expr::List(l) => {
                let mut size: u128 = 1;
                let mut all_const = true;
                for item in &l.items {
                    let c = self.expr(item)?;
                    all_const &= matches!(item, ast::Expr::Const(_));
                    size = size.saturating_add(c.map_or(1, |c| c.size));
                }
                if !all_const {
                    self.nests(1)?;
                }
                all_const.then_some(Const {
                    kind: ConstKind::Seq,
                    size,
                    int: None,
                })
            }
            ast::Expr::Map(m) => {
                let mut size: u128 = 1;
                let mut all_const = true;
                for item in m.keys.iter().chain(m.values.iter()) {
                    let c = self.expr(item)?;
                    all_const &= matches!(item, ast::Expr::Const(_));
                    size = size.saturating_add(c.map_or(1, |c| c.size));
                }
                if !all_const {
                    self.nests(1)?;
                }
                all_const.then_some(Const {
                    kind: ConstKind::Other,
                    size,
                    int: None,
                })
            }
        };
        if let Some(c) = folded
            && c.size > MAX_CONST
        {
            return Err(format!(
                "constant expression too large (about {} bytes, limit {MAX_CONST})",
                c.size
            ));
        }
        Ok(folded)
    }
}

// ---------------------------------------------------------------------------------------------
// Compilation and the guarded rewrite

/// Compiles a checked string into guarded bytecode.
pub fn compile<'s>(parsed: &Parsed<'s>, source: &'s str) -> Result<Instructions<'s>, Rejected> {
    let (name, instructions) = match parsed.single_expr() {
        Some(e) => {
            let mut g = CodeGenerator::new("<expression>", source);
            g.compile_expr(e);
            ("<expression>", g.finish().0)
        }
        None => {
            let mut g = CodeGenerator::new("<template>", source);
            g.compile_stmt(parsed.stmt());
            ("<template>", g.finish().0)
        }
    };
    rewrite(&instructions, name, source).map_err(Rejected::Policy)
}

/// How an instruction is translated.
enum Plan {
    /// Kept as is (jump targets remapped).
    Keep,
    /// `n` operands are checked by the guard before the instruction runs.
    Before(&'static str, usize),

    /// `Emit`: the guard accounts for the output first.
    Emit,
    /// `EmitRaw`: the guard accounts for the text's length first.
    EmitRaw,
}

fn plan(instr: &Instruction<'_>) -> Result<Plan, String> {
    use Instruction as I;
    Ok(match instr {
        I::Lookup(_)
        | I::GetAttr(_)
        | I::SetAttr(_)
        | I::LoadConst(_)
        | I::BuildKwargs(_)
        | I::BuildList(_)
        | I::MergeKwargs(_)
        | I::Sub
        | I::Div
        | I::IntDiv
        | I::Rem
        | I::Pow
        | I::Neg
        | I::Not
        | I::ApplyFilter(..)
        | I::PerformTest(..)
        | I::PushWith
        | I::Iterate(_)
        | I::PushDidNotIterate
        | I::PopFrame
        | I::PopLoopFrame
        | I::Jump(_)
        | I::JumpIfFalse(_)
        | I::JumpIfFalseOrPop(_)
        | I::JumpIfTrueOrPop(_)
        | I::CallFunction(..)
        | I::CallMethod(..)
        | I::CallObject(_)
        | I::DupTop
        | I::DiscardTop
        | I::Swap
        | I::StoreLocal(_) => Plan::Keep,
        I::PushLoop(flags) if flags & LOOP_FLAG_RECURSIVE == 0 => Plan::Keep,
        I::Add => Plan::Before(sandbox::G_ADD, 2),
        I::Mul => Plan::Before(sandbox::G_MUL, 2),
        I::StringConcat => Plan::Before(sandbox::G_CONCAT, 2),
        I::Eq | I::Ne | I::Gt | I::Gte | I::Lt | I::Lte | I::In | I::CompareAndPreserve(_) => {
            Plan::Before(sandbox::G_CMP, 2)
        }
        I::Slice => Plan::Before(sandbox::G_SLICE, 4),
        I::GetItem => Plan::Before(sandbox::G_ITEM, 2),
        I::BuildMap(n) => Plan::Before(sandbox::G_MAP, n * 2),
        I::UnpackList(_) => Plan::Before(sandbox::G_UNPACK, 1),
        I::Emit => Plan::Emit,
        I::EmitRaw(_) => Plan::EmitRaw,
        _ => return Err("this construct is not supported in expressions".into()),
    })
}

fn width(plan: &Plan) -> u32 {
    match plan {
        Plan::Keep => 1,
        Plan::Before(..) => 4,
        Plan::Emit => 2,
        Plan::EmitRaw => 4,
    }
}

/// Rewrites minijinja bytecode so that every instruction that can do unbounded work calls a
/// guard first; jump targets are remapped.
fn rewrite<'s>(
    old: &Instructions<'s>,
    name: &'s str,
    source: &'s str,
) -> Result<Instructions<'s>, String> {
    let count = old.len() as u32;
    let mut plans = Vec::with_capacity(count as usize);
    let mut starts = Vec::with_capacity(count as usize + 1);
    let mut pos: u32 = 0;
    for i in 0..count {
        let instr = old
            .get(i)
            .ok_or("internal error: instruction out of range")?;
        let p = plan(instr)?;
        starts.push(pos);
        pos += width(&p);
        plans.push(p);
    }
    starts.push(pos);
    let target = |t: &u32| -> Result<u32, String> {
        starts
            .get(*t as usize)
            .copied()
            .ok_or_else(|| "internal error: jump out of range".to_string())
    };

    let mut new = Instructions::new(name, source);
    for (i, p) in plans.iter().enumerate() {
        let i = i as u32;
        let instr = old
            .get(i)
            .ok_or("internal error: instruction out of range")?;
        let span = old.get_span(i);
        let line = old.get_line(i);
        let mut add = |ins: Instruction<'s>| match (span, line) {
            (Some(s), _) => new.add_with_span(ins, s),
            (None, Some(l)) => new.add_with_line(ins, u16::try_from(l).unwrap_or(u16::MAX)),
            (None, None) => new.add(ins),
        };
        use Instruction as I;
        let kept = match instr {
            I::Jump(t) => I::Jump(target(t)?),
            I::JumpIfFalse(t) => I::JumpIfFalse(target(t)?),
            I::JumpIfFalseOrPop(t) => I::JumpIfFalseOrPop(target(t)?),
            I::JumpIfTrueOrPop(t) => I::JumpIfTrueOrPop(target(t)?),
            I::Iterate(t) => I::Iterate(target(t)?),
            other => other.clone(),
        };
        match p {
            Plan::Keep => {
                add(kept);
            }
            Plan::Before(guard, n) => {
                add(I::BuildList(Some(*n)));
                add(I::CallFunction(guard, Some(1)));
                add(I::UnpackList(*n));
                add(kept);
            }

            Plan::Emit => {
                add(I::CallFunction(sandbox::G_EMIT, Some(1)));
                add(kept);
            }
            Plan::EmitRaw => {
                let len = match instr {
                    I::EmitRaw(s) => s.len(),
                    _ => 0,
                };
                add(I::LoadConst(Value::from(len)));
                add(I::CallFunction(sandbox::G_RAW, Some(1)));
                add(I::DiscardTop);
                add(kept);
            }
        }
    }
    Ok(new)
}

// ---------------------------------------------------------------------------------------------
// Running

/// What running guarded bytecode produced.
pub struct Ran {
    pub value: Option<Value>,
    pub text: String,
    /// VM instructions executed.
    pub fuel: u64,
}

/// Runs guarded bytecode.
///
/// minijinja is not supposed to panic, but 2.24 does on a few inputs (the known ones are
/// guarded in `sandbox.rs`); a panic becomes an error here rather than taking the worker down.
pub fn run(instructions: &Instructions<'_>, root: Value) -> Result<Ran, Error> {
    let env = sandbox::env();
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut text = String::new();
        let blocks = BTreeMap::new();
        let (value, fuel) = {
            let mut out = machinery::make_string_output(&mut text);
            let (value, state) = machinery::Vm::new(env).eval(
                instructions,
                root,
                &blocks,
                &mut out,
                AutoEscape::None,
            )?;
            (value, state.fuel_levels().map_or(0, |(used, _)| used))
        };
        Ok(Ran { value, text, fuel })
    }))
    .unwrap_or_else(|_| {
        Err(Error::new(
            ErrorKind::InvalidOperation,
            "internal error in the expression engine",
        ))
    })
}
