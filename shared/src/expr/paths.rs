//! Naming the missing value when an expression hits an undefined one: the paths written in
//! the expression (`trigger.body.missing`, `nodes.http.output["x"][0]`) are looked up in the
//! context and the first prefix that does not exist is reported as written.

use super::compile::Parsed;
use minijinja::machinery::ast;
use minijinja::value::Value;
use std::collections::BTreeSet;
use std::ops::Range;

enum Segment<'s> {
    Attr(&'s str),
    Item(Value),
}

/// A static path rooted at a variable: the root and, outermost last, each segment with the
/// source range of the expression up to and including it.
struct Path<'s> {
    root: &'s str,
    root_range: Range<usize>,
    segments: Vec<(Segment<'s>, Range<usize>)>,
}

fn range_of(e: &ast::Expr<'_>) -> Range<usize> {
    let s = e.span();
    s.start_offset as usize..s.end_offset as usize
}

/// The whole of `e` as a static path, if it is one.
fn static_path<'s>(e: &ast::Expr<'s>) -> Option<Path<'s>> {
    match e {
        ast::Expr::Var(v) => Some(Path {
            root: v.id,
            root_range: range_of(e),
            segments: Vec::new(),
        }),
        ast::Expr::GetAttr(g) => {
            let mut p = static_path(&g.expr)?;
            p.segments.push((Segment::Attr(g.name), range_of(e)));
            Some(p)
        }
        ast::Expr::GetItem(g) => {
            let key = match &g.subscript_expr {
                ast::Expr::Const(c) => c.value.clone(),
                _ => return None,
            };
            let mut p = static_path(&g.expr)?;
            p.segments.push((Segment::Item(key), range_of(e)));
            Some(p)
        }
        _ => None,
    }
}

#[derive(Default)]
struct Collector<'s> {
    paths: Vec<Path<'s>>,
}

impl<'s> Collector<'s> {
    fn stmts(&mut self, body: &[ast::Stmt<'s>]) {
        body.iter().for_each(|s| self.stmt(s));
    }

    fn stmt(&mut self, s: &ast::Stmt<'s>) {
        match s {
            ast::Stmt::Template(t) => self.stmts(&t.children),
            ast::Stmt::EmitExpr(e) => self.expr(&e.expr),
            ast::Stmt::ForLoop(f) => {
                self.expr(&f.iter);
                if let Some(filter) = &f.filter_expr {
                    self.expr(filter);
                }
                self.stmts(&f.body);
                self.stmts(&f.else_body);
            }
            ast::Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.stmts(&i.true_body);
                self.stmts(&i.false_body);
            }
            ast::Stmt::WithBlock(w) => {
                for (_, value) in &w.assignments {
                    self.expr(value);
                }
                self.stmts(&w.body);
            }
            ast::Stmt::Set(s) => self.expr(&s.expr),
            ast::Stmt::Do(d) => self.call(&d.call),
            _ => {}
        }
    }

    fn args(&mut self, args: &[ast::CallArg<'s>]) {
        for a in args {
            match a {
                ast::CallArg::Pos(e)
                | ast::CallArg::Kwarg(_, e)
                | ast::CallArg::PosSplat(e)
                | ast::CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn call(&mut self, c: &ast::Call<'s>) {
        match &c.expr {
            ast::Expr::Var(_) => {}
            ast::Expr::GetAttr(g) => self.expr(&g.expr),
            other => self.expr(other),
        }
        self.args(&c.args);
    }

    fn expr(&mut self, e: &ast::Expr<'s>) {
        if let Some(p) = static_path(e) {
            self.paths.push(p);
            return;
        }
        match e {
            ast::Expr::Var(_) | ast::Expr::Const(_) => {}
            ast::Expr::Slice(s) => {
                self.expr(&s.expr);
                for part in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(part);
                }
            }
            ast::Expr::UnaryOp(u) => self.expr(&u.expr),
            ast::Expr::BinOp(b) => {
                self.expr(&b.left);
                self.expr(&b.right);
            }
            ast::Expr::Compare(c) => {
                self.expr(&c.expr);
                for op in &c.ops {
                    self.expr(&op.expr);
                }
            }
            ast::Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                if let Some(f) = &i.false_expr {
                    self.expr(f);
                }
            }
            ast::Expr::Filter(f) => {
                if let Some(inner) = &f.expr {
                    self.expr(inner);
                }
                self.args(&f.args);
            }
            ast::Expr::Test(t) => {
                // `x is defined` and friends are how templates probe for missing values.
                if !matches!(t.name, "defined" | "undefined") {
                    self.expr(&t.expr);
                }
                self.args(&t.args);
            }
            ast::Expr::GetAttr(g) => self.expr(&g.expr),
            ast::Expr::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
            }
            ast::Expr::Call(c) => self.call(c),
            ast::Expr::List(l) => l.items.iter().for_each(|i| self.expr(i)),
            ast::Expr::Map(m) => m
                .keys
                .iter()
                .chain(m.values.iter())
                .for_each(|i| self.expr(i)),
        }
    }
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The first path written in `parsed` that does not exist in `root`, as written in `source`.
/// Paths overlapping `near` (the failing instruction's source range) are tried first; paths
/// rooted at template-local names (`bound`) are skipped.
pub fn missing_path(
    parsed: &Parsed<'_>,
    source: &str,
    root: &Value,
    bound: &BTreeSet<&str>,
    near: Option<Range<usize>>,
) -> Option<String> {
    let mut c = Collector::default();
    c.stmt(parsed.stmt());
    let mut paths: Vec<&Path<'_>> = c.paths.iter().filter(|p| !bound.contains(p.root)).collect();
    if let Some(near) = &near {
        // Stable: the ones near the error first, otherwise in source order.
        paths.sort_by_key(|p| {
            let whole = p
                .segments
                .last()
                .map_or(p.root_range.clone(), |(_, r)| r.clone());
            !overlaps(&whole, near)
        });
    }
    for p in paths {
        let mut v = root.get_attr(p.root).unwrap_or(Value::UNDEFINED);
        if v.is_undefined() {
            return Some(text(source, &p.root_range, p.root));
        }
        for (seg, range) in &p.segments {
            v = match seg {
                Segment::Attr(name) => v.get_attr(name),
                Segment::Item(key) => v.get_item(key),
            }
            .unwrap_or(Value::UNDEFINED);
            if v.is_undefined() {
                let whole = p.root_range.start.min(range.start)..range.end;
                return Some(text(source, &whole, "?"));
            }
        }
    }
    None
}

fn text(source: &str, range: &Range<usize>, fallback: &str) -> String {
    source
        .get(range.clone())
        .map_or_else(|| fallback.to_string(), |s| s.trim().to_string())
}
