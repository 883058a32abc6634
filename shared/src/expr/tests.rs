use super::*;
use serde_json::json;

fn ctx() -> ExprContext {
    ExprContext {
        json: json!({"name": "Ada", "items": [1, 2, 3], "tags": ["a", "b"]}),
        nodes: json!({"http": {"output": {"statusCode": 200, "body": {"id": 7}}}}),
        trigger: json!({"body": {"amount": 150, "orderId": "A-1", "big": false}}),
        execution: json!({"id": "exec-1", "mode": "manual"}),
        workflow: json!({"id": "wf-1", "name": "Order alert", "version": 3}),
        now: "2025-01-02T03:04:05Z".into(),
        callbacks: json!({"approve": {"url": "http://x/callbacks/t", "token": "t"}}),
    }
}

fn eval(s: &str) -> Result<Value, ExprError> {
    resolve(&json!(s), &ctx())
}

fn err(s: &str) -> String {
    match eval(s) {
        Ok(v) => panic!("{s:?} should fail, got {:.200}", v.to_string()),
        Err(e) => e.0,
    }
}

// --- typed single expressions ------------------------------------------------------------

#[test]
fn single_expression_yields_typed_values() {
    assert_eq!(eval("{{ trigger.body.amount }}").unwrap(), json!(150));
    assert_eq!(
        eval("{{ trigger.body.amount > 100 }}").unwrap(),
        json!(true)
    );
    assert_eq!(
        eval("{{ trigger.body.amount < 100 }}").unwrap(),
        json!(false)
    );
    assert_eq!(
        eval("{{ trigger.body.amount * 2 + 1 }}").unwrap(),
        json!(301)
    );
    assert_eq!(eval("{{ trigger.body.amount / 4 }}").unwrap(), json!(37.5));
    assert_eq!(
        eval("{{ nodes.http.output.body }}").unwrap(),
        json!({"id": 7})
    );
    assert_eq!(eval("{{ json.items }}").unwrap(), json!([1, 2, 3]));
    assert_eq!(eval("{{ none }}").unwrap(), json!(null));
    assert_eq!(eval("{{ trigger.body.big }}").unwrap(), json!(false));
    assert_eq!(
        eval("{{ {'total': trigger.body.amount, 'ok': true, 'list': [1, 'x']} }}").unwrap(),
        json!({"total": 150, "ok": true, "list": [1, "x"]})
    );
    assert_eq!(eval("{{ 'x' ~ json.name }}").unwrap(), json!("xAda"));
    // Nested literals close with `}}` inside the expression.
    assert_eq!(
        eval("{{ {'a': {'b': json.items[0]}} }}").unwrap(),
        json!({"a": {"b": 1}})
    );
    assert_eq!(eval("{{ '}}' }}").unwrap(), json!("}}"));
    assert_eq!(eval("{{ json.name }}{# note #}").unwrap(), json!("Ada"));
}

#[test]
fn surrounding_whitespace_and_whitespace_control_still_yield_typed_values() {
    assert_eq!(eval("  {{ trigger.body.amount }}\n").unwrap(), json!(150));
    assert_eq!(eval("{{- trigger.body.amount -}}").unwrap(), json!(150));
    assert_eq!(eval("{{trigger.body.amount}}").unwrap(), json!(150));
}

#[test]
fn filters_and_tests_work_in_expressions() {
    assert_eq!(eval("{{ json.name | upper }}").unwrap(), json!("ADA"));
    assert_eq!(eval("{{ json.items | length }}").unwrap(), json!(3));
    assert_eq!(eval("{{ json.items | sum }}").unwrap(), json!(6));
    assert_eq!(eval("{{ json.tags | join(',') }}").unwrap(), json!("a,b"));
    assert_eq!(eval("{{ json.missing is defined }}").unwrap(), json!(false));
    assert_eq!(
        eval("{{ json.missing | default('n/a') }}").unwrap(),
        json!("n/a")
    );
    assert_eq!(
        eval("{{ json.items | map('string') | list }}").unwrap(),
        json!(["1", "2", "3"])
    );
    assert_eq!(
        eval("{{ json | tojson }}")
            .unwrap()
            .as_str()
            .map(|s| s.contains("\"name\":\"Ada\"")),
        Some(true)
    );
    assert_eq!(eval("{{ range(3) | list }}").unwrap(), json!([0, 1, 2]));
    assert_eq!(eval("{{ range(3) }}").unwrap(), json!([0, 1, 2]));
    assert_eq!(
        eval("{{ range(10, 0, -3) }}").unwrap(),
        json!([10, 7, 4, 1])
    );
    assert_eq!(
        eval("{% set r = range(100000) %}{{ r[-1] }},{{ r[5] }}").unwrap(),
        json!("99999,5")
    );
    assert_eq!(
        eval("{{ 1 < trigger.body.amount < 200 }}").unwrap(),
        json!(true)
    );
    assert_eq!(eval("{{ 'b' in json.tags }}").unwrap(), json!(true));
    assert_eq!(eval("{{ json.tags[1:] }}").unwrap(), json!(["b"]));
}

// --- text templates -----------------------------------------------------------------------

#[test]
fn mixed_text_renders_as_string() {
    assert_eq!(
        eval("Order {{ trigger.body.orderId }}: {{ trigger.body.amount }}").unwrap(),
        json!("Order A-1: 150")
    );
    assert_eq!(eval("{{ 1 }}{{ 2 }}").unwrap(), json!("12"));
    assert_eq!(eval("n={{ json.items }}").unwrap(), json!("n=[1, 2, 3]"));
    assert_eq!(
        eval("line\n{{ json.name }}\n").unwrap(),
        json!("line\nAda\n")
    );
}

#[test]
fn statements_render() {
    assert_eq!(
        eval("{% for i in json.items %}{{ i }}{% if not loop.last %},{% endif %}{% endfor %}")
            .unwrap(),
        json!("1,2,3")
    );
    assert_eq!(
        eval("{% if trigger.body.amount > 100 %}big{% else %}small{% endif %}").unwrap(),
        json!("big")
    );
    assert_eq!(
        eval("{% set n = json.name %}{% with m = n ~ '!' %}{{ m }}{% endwith %}").unwrap(),
        json!("Ada!")
    );
    assert_eq!(
        eval("{% for i in json.items if i > 1 %}{{ i }}{% endfor %}").unwrap(),
        json!("23")
    );
    assert_eq!(
        eval("{% for k, v in {'a': 1, 'b': json.name} | dictsort %}{{ k }}={{ v }};{% endfor %}")
            .unwrap(),
        json!("a=1;b=Ada;")
    );
    assert_eq!(
        eval("{% for x in json.items %}{{ loop.cycle('odd', 'even') }} {% endfor %}").unwrap(),
        json!("odd even odd ")
    );
}

// --- walking values -----------------------------------------------------------------------

#[test]
fn nested_parameters_are_resolved_and_keys_kept() {
    let params = json!({
        "url": "https://x.test/orders/{{ trigger.body.orderId }}",
        "body": {
            "amount": "{{ trigger.body.amount }}",
            "{{ not.a.key }}": ["{{ json.name }}", 5, null, true, "plain"],
        },
        "count": 3,
    });
    assert_eq!(
        resolve(&params, &ctx()).unwrap(),
        json!({
            "url": "https://x.test/orders/A-1",
            "body": {"amount": 150, "{{ not.a.key }}": ["Ada", 5, null, true, "plain"]},
            "count": 3,
        })
    );
}

#[test]
fn every_context_variable_is_visible() {
    assert_eq!(eval("{{ json.name }}").unwrap(), json!("Ada"));
    assert_eq!(
        eval("{{ nodes.http.output.statusCode }}").unwrap(),
        json!(200)
    );
    assert_eq!(eval("{{ trigger.body.orderId }}").unwrap(), json!("A-1"));
    assert_eq!(
        eval("{{ execution.id }}/{{ execution.mode }}").unwrap(),
        json!("exec-1/manual")
    );
    assert_eq!(
        eval("{{ workflow.name }} v{{ workflow.version }}").unwrap(),
        json!("Order alert v3")
    );
    assert_eq!(eval("{{ workflow.id }}").unwrap(), json!("wf-1"));
    assert_eq!(eval("{{ now }}").unwrap(), json!("2025-01-02T03:04:05Z"));
}

#[test]
fn strings_without_template_syntax_are_returned_unchanged() {
    for s in ["plain", "", "{ not }", "100%", "a } b {", "json.name", "{#"] {
        assert_eq!(eval(s).unwrap(), json!(s));
        assert!(check_template(s).is_ok());
    }
    // Even with an empty (unusable) context nothing is evaluated.
    let params = json!({"a": ["x", {"b": "y"}], "n": 1.5});
    assert_eq!(resolve(&params, &ExprContext::default()).unwrap(), params);
    assert!(!is_template("plain {text}"));
    assert!(is_template("{{ x }}"));
}

// --- errors --------------------------------------------------------------------------------

#[test]
fn missing_path_is_named_as_written() {
    assert_eq!(
        err("{{ trigger.body.missing }}"),
        "expression \"{{ trigger.body.missing }}\" failed: trigger.body.missing is undefined"
    );
    let e = err("Hi {{ trigger.body.missing.deeper }}!");
    assert!(
        e.ends_with("failed: trigger.body.missing is undefined"),
        "{e}"
    );
    let e = err("{{ nodes.nope.output.x }}");
    assert!(e.ends_with("failed: nodes.nope is undefined"), "{e}");
    let e = err("{{ trigger.body.amount + trigger.body['no such'] }}");
    assert!(e.ends_with("trigger.body['no such'] is undefined"), "{e}");
    let e = err("{% if json.nope %}x{% endif %}");
    assert!(e.ends_with("json.nope is undefined"), "{e}");
    let e = err("{{ {'a': json.gone} }}");
    assert!(e.ends_with("json.gone is undefined"), "{e}");
}

#[test]
fn errors_name_the_parameter_path() {
    let params = json!({"body": {"items": ["ok", "{{ json.nope }}"]}});
    let e = resolve(&params, &ctx()).unwrap_err().0;
    assert!(e.contains("json.nope is undefined"), "{e}");
    assert!(e.ends_with("(at `body.items[1]`)"), "{e}");
}

#[test]
fn parse_errors_say_what_failed() {
    let e = check_template("{{ trigger.body.amount > }}").unwrap_err().0;
    assert!(
        e.starts_with("expression \"{{ trigger.body.amount > }}\" does not parse: syntax error"),
        "{e}"
    );
    let e = check_template("Hello {{ name ").unwrap_err().0;
    assert!(e.contains("does not parse"), "{e}");
    let e = check_template("{% for x in json.items %}no end")
        .unwrap_err()
        .0;
    assert!(e.contains("does not parse"), "{e}");
    // resolve reports the same problem.
    assert!(err("{{ 1 + }}").contains("does not parse"));
    assert!(check_template("{{ trigger.body.amount > 100 }}").is_ok());
    assert!(check_template("Order {{ trigger.body.orderId }} {% if json %}x{% endif %}").is_ok());
}

#[test]
fn check_rejects_what_the_sandbox_does_not_support() {
    for (src, why) in [
        ("{% macro m() %}x{% endmacro %}", "macros"),
        ("{% include 'x' %}", "includes"),
        ("{% extends 'x' %}", "extends"),
        ("{% set x %}a{% endset %}", "blocks are not supported"),
        ("{% filter upper %}a{% endfilter %}", "`{% filter %}`"),
        (
            "{% for x in json.items recursive %}{{ loop(x) }}{% endfor %}",
            "recursive",
        ),
        (
            "{{ json.name | nosuchfilter }}",
            "unknown filter `nosuchfilter`",
        ),
        ("{{ json is nosuchtest }}", "unknown test `nosuchtest`"),
        ("{{ env.HOME }}", "unknown variable `env`"),
        ("{{ namespace(a=1) }}", "unknown function `namespace`"),
        ("{{ debug() }}", "unknown function `debug`"),
        ("{{ __wc_emit(1) }}", "reserved"),
        ("{{ range(*json.items) }}", "splats"),
        ("{{ json.name.upper() }}", "method calls are not supported"),
        (
            "{% for x in json.items %}{{ loop.changed(x) }}{% endfor %}",
            "method calls",
        ),
        ("{{ 'a' * 100000000 }}", "constant expression too large"),
    ] {
        let e = check_template(src).expect_err(src).0;
        assert!(
            e.contains("is not allowed") && e.contains(why),
            "{src}: {e}"
        );
        // The same refusal at run time.
        assert!(eval(src).is_err(), "{src}");
    }
    // Locals are not unknown variables.
    assert!(check_template("{% for x in json.items %}{{ x }}{{ loop.index }}{% endfor %}").is_ok());
    assert!(check_template("{% set r = range %}{{ r(2) }}").is_ok());
}

#[test]
fn evaluation_errors_are_clear() {
    let e = err("{{ 1 / 0 }}");
    assert!(
        e.ends_with("failed: the result is not a finite number (inf)"),
        "{e}"
    );
    let e = err("{{ json.name + 1 }}");
    assert!(e.contains("invalid operation"), "{e}");
}

// --- sandbox ------------------------------------------------------------------------------

#[test]
fn runaway_loop_fails_with_too_much_work() {
    let e = err("{% for i in range(100000000) %}x{% endfor %}");
    assert!(e.contains("too much work"), "{e}");
    let e = err(
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}",
    );
    assert!(e.contains("too much work"), "{e}");
    let e = err("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
    assert!(e.contains("too much work"), "{e}");
    // The budget is shared by all the strings of one `resolve` call: many strings that each
    // stay under the per-string limit still stop.
    let busy = "{% for i in range(60000) %}{% endfor %}";
    assert!(eval(busy).is_ok());
    let params = json!(vec![busy; 50]);
    let e = resolve(&params, &ctx()).unwrap_err().0;
    assert!(e.contains("too much work"), "{e}");
}

#[test]
fn huge_strings_are_refused() {
    // Repetition from a runtime value (not constant-folded).
    let e = err("{{ json.name * 100000000 }}");
    assert!(e.contains("too large"), "{e}");
    // Doubling through `set`.
    let mut src = String::from("{% set a = json.name * 200000 %}");
    for _ in 0..40 {
        src.push_str("{% set a = a ~ a %}");
    }
    src.push_str("{{ a | length }}");
    let e = err(&src);
    assert!(e.contains("too large"), "{e}");
    // Doubling with `+` on lists.
    let mut src = String::from("{% set a = json.items %}");
    for _ in 0..40 {
        src.push_str("{% set a = a + a %}");
    }
    src.push_str("{{ a | length }}");
    let e = err(&src);
    assert!(e.contains("too large"), "{e}");
    // Filters whose parameters multiply the result.
    for src in [
        "{{ (json.name * 100000) | replace('A', json.name * 100) }}",
        "{{ json.name | indent(1000000000) }}",
        "{{ json.items | batch(1000000000, 'x') | list }}",
        "{{ json.items | slice(1000000000) | list }}",
        "{{ '%1000000000s' | format(json.name) }}",
        "{{ json | tojson(indent=1000000) }}",
        "{{ json.items | map('indent', 1000000000) | list }}",
    ] {
        let e = err(src);
        assert!(
            e.contains("too large") || e.contains("not supported"),
            "{src}: {e}"
        );
    }
}

#[test]
fn rendered_output_is_capped() {
    let e = err("{% for i in range(3000) %}{{ json.name * 1000 }}{% endfor %}");
    assert!(e.contains("output too large"), "{e}");
    let e = err(
        "{% for i in range(5000) %}..........................................................................................................................................................................................................................................................................{% endfor %}",
    );
    assert!(e.contains("output too large"), "{e}");
    // Just under the cap is fine.
    let ok = eval("{% for i in range(300) %}{{ json.name * 1000 }}{% endfor %}").unwrap();
    assert_eq!(ok.as_str().map(str::len), Some(900_000));
}

#[test]
fn deep_nesting_is_refused() {
    let mut src = String::from("{% set a = [1] %}");
    for _ in 0..300 {
        src.push_str("{% set a = [a] %}");
    }
    src.push_str("{{ a }}");
    let e = check_template(&src).unwrap_err().0;
    assert!(e.contains("too many list/map literals"), "{e}");
    assert!(eval(&src).is_err());
    // Values nested deeper than the limit (from the context) are refused by filters and
    // in results instead of overflowing the stack.
    let mut deep = json!(1);
    for _ in 0..250 {
        deep = json!([deep]);
    }
    let c = ExprContext {
        json: deep,
        ..ctx()
    };
    let e = resolve(&json!("{{ json }}"), &c).unwrap_err().0;
    assert!(e.contains("too deeply nested"), "{e}");
    let e = resolve(&json!("{{ json | length }}"), &c).unwrap();
    assert_eq!(e, json!(1));
    let e = resolve(&json!("{{ json | list }}"), &c).unwrap_err().0;
    assert!(e.contains("too deeply nested"), "{e}");
}

#[test]
fn comparisons_of_large_values_in_loops_are_bounded() {
    let big = "x".repeat(500_000);
    let c = ExprContext {
        json: json!({"a": big.clone(), "b": big}),
        ..ctx()
    };
    let e = resolve(
        &json!("{% for i in range(100000) %}{% if json.a == json.b %}{% endif %}{% endfor %}"),
        &c,
    )
    .unwrap_err()
    .0;
    assert!(e.contains("too much work"), "{e}");
    // Indexing into a long string walks it: charged by its length.
    let c = ExprContext {
        json: json!({"s": "x".repeat(1_000_000)}),
        ..ctx()
    };
    let e = resolve(
        &json!("{% for i in range(2000) %}{{ json.s[999999] }}{% endfor %}"),
        &c,
    )
    .unwrap_err()
    .0;
    assert!(e.contains("too much work"), "{e}");
    // Hashing long map keys is charged too.
    let e = resolve(
        &json!("{% for i in range(100000) %}{% set m = {json.s: 1} %}{% endfor %}"),
        &c,
    )
    .unwrap_err()
    .0;
    assert!(e.contains("too much work"), "{e}");
}

#[test]
fn functions() {
    assert_eq!(
        eval("{{ dict(a=1, b=json.name) }}").unwrap(),
        json!({"a": 1, "b": "Ada"})
    );
    assert_eq!(eval("{{ range(2, 5) }}").unwrap(), json!([2, 3, 4]));
    let e = err("{{ range(0) | batch(0) }}");
    assert!(e.contains("count cannot be 0"), "{e}");
}

#[test]
fn no_environment_or_file_access() {
    for src in [
        "{% include '/etc/passwd' %}",
        "{% import 'x' as y %}",
        "{{ self }}",
        "{{ super() }}",
    ] {
        assert!(eval(src).is_err(), "{src}");
    }
}

#[test]
fn odd_inputs_never_panic() {
    let cases = [
        "{{ }}",
        "{{ x",
        "{% for %}",
        "{{ 1 if }}",
        "{{ [1,2,3][10] }}",
        "{{ json.items[-100] }}",
        "{{ 'a' * -1 }}",
        "{{ range(-5) }}",
        "{{ range(1, 10, 0) }}",
        "{{ json.items | batch(-1) }}",
        "{{ json.items | slice(0) }}",
        "{{ 2 ** 200 }}",
        "{{ 2 ** -1 }}",
        "{{ 10 // 0 }}",
        "{{ 10 % 0 }}",
        "{{ -9223372036854775808 // -1 }}",
        "{{ json.name | int }}",
        "{{ '%s %s' | format(1) }}",
        "{{ '%*s' | format(5, 'a') }}",
        "{{ json | tojson(indent=true) }}",
        "{{ json | tojson(indent=-1) }}",
        "{{ none.x }}",
        "{{ json.items.x }}",
        "{{ range }}",
        "{{ dict }}",
        "{{ loop }}",
        "{% set x = 1 %}{{ x() }}",
        "{{ (1)(2) }}",
        "{{ json[json] }}",
        "{{ {[1]: 2} }}",
        "{{ {json: 1} }}",
        "{{ 'ß' * 1000 | upper | length }}",
        "{{ json.items | join(json) }}",
        "{{ json.items | map(attribute='x') | list }}",
        "{{ json.items | selectattr('x', 'gt', 1) | list }}",
        "{{ json.items | sort(attribute='x') }}",
        "{{ json | items }}",
        "{{ json | dictsort(by='value') }}",
        "{{ json.items | groupby('x') }}",
        "{{ 'abc' | replace('', '-') }}",
        "{{ 'a\nb' | indent(first=true, blank=true) }}",
        "{{ json.items | zip(json.tags) | list }}",
        "{{ json.items | chain(json.tags) | list }}",
        "{{ json.items | unique }}",
        "{{ 1.5 | round(1000000) }}",
        "{{ 1e308 * 10 }}",
        "{{ json.items | sum(start=5) }}",
        "{% with %}{% endwith %}",
        "{% do range(3) %}",
        "{% for i in range(3) %}{% break %}{% endfor %}",
        "{{ json.items[1:2:0] }}",
        "{{ 'abc'[::-1] }}",
        "{{ json.items[::-2] }}",
        "{{ 99999999999999999999999999999999999999999 }}",
        "{{ json | pprint }}",
        "{{ json | string | length }}",
        "{{ json.name is startingwith(none) }}",
        "{{ json.items is divisibleby(0) }}",
        "{{ 3 is divisibleby(0) }}",
        "{{ json.items | first(5) }}",
        "{{ range(3) | reverse | list }}",
        "{{ json.items | max(attribute='x') }}",
        "{{ range(5)[json] }}",
        "{{ true + 1 }}",
        "{{ [1] * true }}",
        "{{ 'a' * 1.5 }}",
        "{{ json.items * -1 }}",
        "{{ json.items * 9223372036854775807 }}",
        "{{ json.items + none }}",
        "{{ none ~ none }}",
        "{{ json.nope ~ 'x' }}",
        "{{ json.items[json.nope] }}",
        "{{ json.nope[0] }}",
        "{{ json.nope is defined }}",
        "{% for a, b in json.items %}{% endfor %}",
        "{% for a, b in [[1, 2], [3]] %}{% endfor %}",
        "{% set a, b = [1, 2] %}{{ a + b }}",
        "{{ loop.cycle(1) }}",
        "{% for x in json.items %}{{ loop.cycle() }}{% endfor %}",
        "{{ range(3) | map('upper') | list }}",
        "{{ json.items | map('nosuch') | list }}",
        "{{ json.items | select('nosuch') | list }}",
        "{{ dict(json) }}",
        "{{ dict(1) }}",
        "{{ dict(a=1, **json) }}",
        "{{ json.items | batch(3, fill_with=0) }}",
        "{{ json.items | slice(2, 'x') }}",
        "{{ '%(a)s' | format(a=1) }}",
        "{{ '%c' | format(1114112) }}",
        "{{ '%.3f' | format(json.name) }}",
        "{{ 'x' | indent(-5) }}",
        "{{- -}}",
        "{%- if true -%} y {%- endif -%}",
        "{# only a comment #}{{ 1 }}",
        "{% raw %}{{ x }}{% endraw %}",
        "{{ \"\\u{1F600}\" }}",
        "{{ '\\x00' }}",
        "{{ json.tags | join('\\n') }}",
        "{{ 1 < 2 < 'a' }}",
        "{{ json.name[0:1000000000] }}",
        "{{ json.name[-1000000000:] }}",
        "{{ range(100000)[::-1][0] }}",
    ];
    for src in cases {
        let _ = eval(src);
        let _ = check_template(src);
    }
}

#[test]
fn random_expressions_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let atoms = [
        "0",
        "-1",
        "2",
        "1.5",
        "'ab'",
        "''",
        "none",
        "true",
        "json",
        "json.items",
        "json.name",
        "json.tags",
        "range(3)",
        "[1, 'a']",
        "{'k': 1}",
        "json.nope",
        "loop",
        "9223372036854775807",
        "-9223372036854775808",
        "0.0",
    ];
    let binops = [
        "+", "-", "*", "/", "//", "%", "**", "~", "==", "<", ">=", "in", "and", "or", "not in",
    ];
    let filters = [
        "abs",
        "attr('k')",
        "batch(2)",
        "batch(0)",
        "bool",
        "capitalize",
        "count",
        "default(1)",
        "dictsort",
        "escape",
        "first",
        "float",
        "format(1)",
        "groupby('k')",
        "indent(2)",
        "int",
        "items",
        "join('-')",
        "last",
        "length",
        "lines",
        "list",
        "lower",
        "map('upper')",
        "max",
        "min",
        "pprint",
        "reject",
        "rejectattr('k')",
        "replace('a','b')",
        "reverse",
        "round(2)",
        "safe",
        "select",
        "selectattr('k')",
        "slice(2)",
        "slice(0)",
        "sort",
        "split",
        "string",
        "sum",
        "title",
        "tojson",
        "trim",
        "unique",
        "upper",
        "zip([1])",
        "chain([1])",
        "int(base=0)",
        "round(-400)",
        "split('')",
        "batch(1, 'x')",
        "first(-1)",
        "tojson(2)",
    ];
    let tests = [
        "defined",
        "none",
        "odd",
        "even",
        "divisibleby(0)",
        "divisibleby(-1)",
        "number",
        "string",
        "sequence",
        "mapping",
        "startingwith('a')",
        "in([1])",
        "eq(1)",
        "lt('a')",
        "filter",
        "test",
        "sameas(1)",
    ];
    fn generate(
        rng: &mut rand::rngs::StdRng,
        depth: u32,
        atoms: &[&str],
        binops: &[&str],
        filters: &[&str],
        tests: &[&str],
    ) -> String {
        if depth == 0 {
            return atoms[rng.random_range(0..atoms.len())].to_string();
        }
        match rng.random_range(0..7) {
            0 => format!(
                "({} {} {})",
                generate(rng, depth - 1, atoms, binops, filters, tests),
                binops[rng.random_range(0..binops.len())],
                generate(rng, depth - 1, atoms, binops, filters, tests)
            ),
            1 => format!(
                "({} | {})",
                generate(rng, depth - 1, atoms, binops, filters, tests),
                filters[rng.random_range(0..filters.len())]
            ),
            2 => format!(
                "({} is {})",
                generate(rng, depth - 1, atoms, binops, filters, tests),
                tests[rng.random_range(0..tests.len())]
            ),
            3 => format!(
                "{}[{}]",
                generate(rng, depth - 1, atoms, binops, filters, tests),
                generate(rng, depth - 1, atoms, binops, filters, tests)
            ),
            4 => format!(
                "{}[{}:{}:{}]",
                generate(rng, depth - 1, atoms, binops, filters, tests),
                atoms[rng.random_range(0..4)],
                atoms[rng.random_range(0..4)],
                atoms[rng.random_range(0..4)]
            ),
            5 => format!(
                "(not {})",
                generate(rng, depth - 1, atoms, binops, filters, tests)
            ),
            _ => format!(
                "[{}, {}]",
                generate(rng, depth - 1, atoms, binops, filters, tests),
                generate(rng, depth - 1, atoms, binops, filters, tests)
            ),
        }
    }
    let mut ok = 0;
    for i in 0..3000 {
        let depth = rng.random_range(1..4);
        let e = generate(&mut rng, depth, &atoms, &binops, &filters, &tests);
        let src = if i % 2 == 0 {
            format!("{{{{ {e} }}}}")
        } else {
            format!("{{% for x in [1, 2] %}}{{{{ {e} }}}}{{% endfor %}}")
        };
        let r = std::panic::catch_unwind(|| eval(&src));
        assert!(r.is_ok(), "panicked: {src}");
        if matches!(r, Ok(Ok(_))) {
            ok += 1;
        }
    }
    // The generator is not degenerate: many of the expressions evaluate.
    assert!(ok > 500, "{ok}");
}

// --- size and depth limits (no input can overflow a stack) --------------------------------

/// Runs `f` on a thread with a quarter of a tokio worker's 2 MiB stack: what passes here has
/// a wide margin on every thread the product runs expressions on.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(512 * 1024)
        .spawn(f)
        .expect("thread starts")
        .join()
        .expect("no panic")
}

/// The forms that overflowed the stack before the depth limit, `n` times.
fn deep_forms(n: usize) -> Vec<(&'static str, String)> {
    vec![
        ("unary minus", format!("{{{{ {}1 }}}}", "-".repeat(n))),
        ("not", format!("{{{{ {}true }}}}", "not ".repeat(n))),
        ("filters", format!("{{{{ -1{} }}}}", " | abs".repeat(n))),
        ("attributes", format!("{{{{ json{} }}}}", ".a".repeat(n))),
        ("sum", format!("{{{{ 1{} }}}}", " + 1".repeat(n))),
        ("items", format!("{{{{ json{} }}}}", "[0]".repeat(n))),
        (
            "parentheses",
            format!("{{{{ {}1{} }}}}", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "lists",
            format!("{{{{ {}1{} }}}}", "[".repeat(n), "]".repeat(n)),
        ),
        // Two operators (`if`, `else`) per repetition.
        (
            "conditionals",
            format!("{{{{ 1{} }}}}", " if true else 1".repeat(n / 2)),
        ),
        (
            "blocks",
            format!("{}x{}", "{% if true %}".repeat(n), "{% endif %}".repeat(n)),
        ),
    ]
}

#[test]
fn deeply_nested_expressions_are_refused_before_they_recurse() {
    // The exact inputs of the hardening report (20,000 repetitions, 100,000 terms).
    let reported = vec![
        format!("{{{{ {}1 }}}}", "-".repeat(20_000)),
        format!("{{{{ {}true }}}}", "not ".repeat(20_000)),
        format!("{{{{ -1{} }}}}", " | abs".repeat(5_000)),
        format!("{{{{ json{} }}}}", ".a".repeat(20_000)),
        format!("{{{{ 1{} }}}}", " + 1".repeat(20_000)),
        format!("{{{{ 1{} }}}}", " + 1".repeat(100_000)),
    ];
    let messages = on_small_stack(move || {
        let mut out = Vec::new();
        for text in reported
            .into_iter()
            .chain(deep_forms(20_000).into_iter().map(|(_, t)| t))
        {
            let checked = check_template(&text).expect_err("refused");
            let evaluated = evaluate(&text, &ctx()).expect_err("refused");
            assert_eq!(checked, evaluated);
            out.push(checked.0);
        }
        out
    });
    for m in messages {
        assert!(
            m.contains(&format!("more than {MAX_EXPRESSION_DEPTH} statements"))
                || m.contains(&format!("{MAX_EXPRESSION_BYTES} bytes")),
            "{m}"
        );
    }
}

#[test]
fn expressions_at_the_depth_limit_run_on_a_small_stack() {
    let outcomes = on_small_stack(|| {
        deep_forms(MAX_EXPRESSION_DEPTH - 1)
            .into_iter()
            .map(|(name, text)| {
                let checked = check_template(&text);
                let evaluated = evaluate(&text, &ctx());
                (name, checked, evaluated)
            })
            .collect::<Vec<_>>()
    });
    for (name, checked, evaluated) in outcomes {
        // Within the limit they parse; evaluating may still fail for its own reasons
        // (undefined attributes, nesting of values), never by crashing.
        match name {
            "lists" | "parentheses" | "blocks" => {
                // minijinja's own parser limit (150 levels of brackets or blocks) applies.
                let _ = (checked, evaluated);
            }
            _ => assert!(checked.is_ok(), "{name}: {checked:?}"),
        }
    }
}

#[test]
fn long_strings_with_expressions_are_refused() {
    let text = format!("{{{{ 1 }}}}{}", "x".repeat(MAX_EXPRESSION_BYTES));
    let e = check_template(&text).unwrap_err();
    assert!(e.0.contains("bytes"), "{e}");
    // Plain strings are not templates and have no such limit.
    assert!(check_template(&"x".repeat(2 * MAX_EXPRESSION_BYTES)).is_ok());
}

#[test]
fn results_nest_at_most_the_json_limit() {
    let limit = crate::limits::MAX_JSON_DEPTH;
    let ok = format!("{{{{ {}1{} }}}}", "[".repeat(limit), "]".repeat(limit));
    let r = evaluate(&ok, &ctx());
    // minijinja folds or builds the lists; either way the result is at the limit or refused
    // by the sandbox's own nesting rule, never deeper.
    if let Ok(v) = &r {
        assert_eq!(crate::limits::json_depth(v), limit);
    }
    let deep =
        serde_json::from_str::<Value>(&format!("{}1{}", "[".repeat(limit), "]".repeat(limit)))
            .unwrap();
    let mut c = ctx();
    c.json = json!({ "deep": deep });
    let e = evaluate("{{ [json.deep] }}", &c).unwrap_err();
    assert!(e.0.contains("too deeply nested"), "{e}");
}

mod fuzz {
    //! Random nesting of unary operators, filters, attribute and item access, parentheses,
    //! lists and binary operators, up to ~100 KB: every string gets a result or an error,
    //! never a crash (a stack overflow would abort the test binary).
    use super::*;
    use proptest::prelude::*;

    /// One wrapping step around the expression built so far.
    #[derive(Debug, Clone, Copy)]
    enum Wrap {
        Neg,
        Not,
        Abs,
        Attr,
        Item,
        Paren,
        List,
        Plus,
        Cond,
        Block,
    }

    fn build(atom: &str, wraps: &[Wrap]) -> String {
        // Prefixes and suffixes are collected separately so building stays linear.
        let (mut pre, mut post) = (String::new(), String::new());
        let (mut blocks_pre, mut blocks_post) = (String::new(), String::new());
        for w in wraps.iter().rev() {
            match w {
                Wrap::Neg => pre.push('-'),
                Wrap::Not => pre.push_str("not "),
                Wrap::Paren => {
                    pre.push('(');
                }
                Wrap::List => pre.push('['),
                _ => {}
            }
        }
        for w in wraps {
            match w {
                Wrap::Abs => post.push_str(" | abs"),
                Wrap::Attr => post.push_str(".a"),
                Wrap::Item => post.push_str("[0]"),
                Wrap::Paren => post.push(')'),
                Wrap::List => post.push(']'),
                Wrap::Plus => post.push_str(" + 1"),
                Wrap::Cond => post.push_str(" if json else 2"),
                Wrap::Block => {
                    blocks_pre.push_str("{% if true %}");
                    blocks_post.push_str("{% endif %}");
                }
                _ => {}
            }
        }
        format!("{blocks_pre}{{{{ {pre}{atom}{post} }}}}{blocks_post}")
    }

    const WRAPS: [Wrap; 10] = [
        Wrap::Neg,
        Wrap::Not,
        Wrap::Abs,
        Wrap::Attr,
        Wrap::Item,
        Wrap::Paren,
        Wrap::List,
        Wrap::Plus,
        Wrap::Cond,
        Wrap::Block,
    ];

    /// `len` wraps drawn from `seed`: runs of one form (the parser's worst case) mixed
    /// with random ones.
    fn wraps(seed: u64, len: usize) -> Vec<Wrap> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let w = WRAPS[rng.random_range(0..WRAPS.len())];
            let run = if rng.random_bool(0.2) {
                rng.random_range(1..2_000)
            } else {
                1
            };
            out.extend(std::iter::repeat_n(w, run.min(len - out.len())));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn any_nesting_gets_a_result_or_an_error(
            atom in prop_oneof![Just("1"), Just("json"), Just("trigger.body"), Just("'x'")],
            seed in any::<u64>(),
            // Up to ~100 KB of text; most cases are short enough to be evaluated.
            len in prop_oneof![0usize..300, 0usize..25_000],
        ) {
            let text = build(atom, &wraps(seed, len));
            let checked = check_template(&text);
            let evaluated = evaluate(&text, &ctx());
            if checked.is_err() {
                prop_assert!(evaluated.is_err());
            }
            if let Ok(v) = evaluated {
                prop_assert!(crate::limits::json_depth(&v) <= crate::limits::MAX_JSON_DEPTH);
            }
        }
    }
}

#[test]
fn referenced_nodes_are_found_statically() {
    let params = |v: Value| v.as_object().unwrap().clone();
    assert_eq!(
        referenced_nodes(&params(json!({"a": "{{ json.x }}", "b": "plain"}))),
        NodeRefs::None
    );
    assert_eq!(
        referenced_nodes(&params(json!({
            "a": "{{ nodes.http.output.body }}",
            "b": {"c": ["x {{ nodes['set-1'].output }} y", "{% if nodes.http %}1{% endif %}"]}
        }))),
        NodeRefs::Some(vec!["http".into(), "set-1".into()])
    );
    for whole in [
        "{{ nodes }}",
        "{{ nodes[json.key] }}",
        "{{ nodes | length }}",
        "{% for k, v in nodes | items %}{{ k }}{% endfor %}",
        "{% set nodes = json %}{{ nodes.a }}",
    ] {
        assert_eq!(
            referenced_nodes(&params(json!({ "a": whole }))),
            NodeRefs::All,
            "{whole}"
        );
    }
}
