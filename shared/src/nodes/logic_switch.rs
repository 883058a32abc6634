//! `logic.switch`: the first rule whose resolved `condition` is truthy names the branch;
//! none → the `fallback` parameter's name, or `"fallback"`. The output is the input with
//! `_conditionBranch` set (a non-object input goes under `value`), which routing follows.

use super::params::{config_error, get, is_expression, truthy};
use super::{NodeContext, NodeOutcome, NodeType};
use serde_json::{Map, Value};

pub struct Switch;

pub const DEFAULT_FALLBACK: &str = "fallback";

fn rule_name(rule: &Value, i: usize) -> Result<&str, String> {
    match rule.get("name") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s),
        _ => Err(format!(
            "parameter `rules[{i}].name` is required and must be a non-empty string"
        )),
    }
}

#[async_trait::async_trait]
impl NodeType for Switch {
    fn type_name(&self) -> &'static str {
        "logic.switch"
    }
    fn validate(&self, params: &Map<String, Value>) -> Result<(), String> {
        match get(params, "rules") {
            None => return Err("parameter `rules` is required".into()),
            Some(v) if is_expression(v) => {}
            Some(Value::Array(rules)) => {
                if rules.is_empty() {
                    return Err("parameter `rules` must have at least one rule".into());
                }
                for (i, rule) in rules.iter().enumerate() {
                    if !rule.is_object() {
                        return Err(format!(
                            "parameter `rules[{i}]` must be an object {{name, condition}}"
                        ));
                    }
                    let name = rule_name(rule, i)?;
                    if is_expression(&Value::String(name.to_string())) {
                        return Err(format!(
                            "parameter `rules[{i}].name` must be a plain name, not an expression"
                        ));
                    }
                    if rule.get("condition").is_none() {
                        return Err(format!("parameter `rules[{i}].condition` is required"));
                    }
                }
            }
            Some(_) => {
                return Err("parameter `rules` must be an array of {name, condition}".into());
            }
        }
        match get(params, "fallback") {
            None => Ok(()),
            Some(Value::String(s)) if !s.trim().is_empty() && !s.contains("{{") => Ok(()),
            Some(_) => Err("parameter `fallback` must be a non-empty branch name".into()),
        }
    }
    async fn run(
        &self,
        _ctx: &NodeContext<'_>,
        params: &Map<String, Value>,
        input: &Value,
    ) -> NodeOutcome {
        let Some(Value::Array(rules)) = get(params, "rules") else {
            return config_error("parameter `rules` must be an array of {name, condition}");
        };
        let mut branch = None;
        for (i, rule) in rules.iter().enumerate() {
            let name = match rule_name(rule, i) {
                Ok(name) => name,
                Err(message) => return config_error(message),
            };
            if truthy(rule.get("condition").unwrap_or(&Value::Null)) {
                branch = Some(name.to_string());
                break;
            }
        }
        let branch = branch.unwrap_or_else(|| {
            get(params, "fallback")
                .and_then(Value::as_str)
                .filter(|s| !s.trim().is_empty())
                .unwrap_or(DEFAULT_FALLBACK)
                .to_string()
        });
        let mut out = match input {
            Value::Object(map) => map.clone(),
            other => {
                let mut m = Map::new();
                m.insert("value".into(), other.clone());
                m
            }
        };
        out.insert("_conditionBranch".into(), Value::String(branch));
        NodeOutcome::Output(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{Harness, failed, output, validate};
    use crate::model::ErrorKind;
    use serde_json::json;

    #[tokio::test]
    async fn first_truthy_rule_wins() {
        let h = Harness::new(
            "logic.switch",
            json!({"rules": [
                {"name": "small", "condition": false},
                {"name": "big", "condition": 1},
                {"name": "huge", "condition": true}
            ]}),
        );
        let out = output(h.run(json!({"amount": 500})).await);
        assert_eq!(out, json!({"amount": 500, "_conditionBranch": "big"}));
    }

    #[tokio::test]
    async fn no_match_takes_the_fallback() {
        let rules = json!([{"name": "a", "condition": null}, {"name": "b", "condition": ""}]);
        let h = Harness::new("logic.switch", json!({ "rules": rules }));
        let out = output(h.run(json!({"k": 1})).await);
        assert_eq!(out, json!({"k": 1, "_conditionBranch": "fallback"}));

        let h = Harness::new(
            "logic.switch",
            json!({ "rules": rules, "fallback": "other" }),
        );
        let out = output(h.run(json!([1, 2])).await);
        assert_eq!(out, json!({"value": [1, 2], "_conditionBranch": "other"}));
    }

    #[tokio::test]
    async fn a_branch_already_in_the_input_is_replaced() {
        let h = Harness::new(
            "logic.switch",
            json!({"rules": [{"name": "x", "condition": true}]}),
        );
        let out = output(h.run(json!({"_conditionBranch": "old"})).await);
        assert_eq!(out, json!({"_conditionBranch": "x"}));
    }

    #[tokio::test]
    async fn malformed_rules_at_run_time_are_configuration_errors() {
        let h = Harness::new("logic.switch", json!({"rules": "not rules"}));
        assert_eq!(
            failed(h.run(json!({})).await).kind,
            ErrorKind::Configuration
        );
        let h = Harness::new("logic.switch", json!({"rules": [{"condition": true}]}));
        let e = failed(h.run(json!({})).await);
        assert!(e.message.contains("rules[0].name"), "{}", e.message);
    }

    #[test]
    fn rules_are_checked() {
        assert_eq!(
            validate(
                "logic.switch",
                json!({"rules": [{"name": "a", "condition": "{{ json.x }}"}]})
            ),
            Ok(())
        );
        assert_eq!(
            validate("logic.switch", json!({"rules": "{{ json.rules }}"})),
            Ok(())
        );
        for (p, needle) in [
            (json!({}), "`rules`"),
            (json!({"rules": []}), "`rules`"),
            (json!({"rules": {"name": "a"}}), "`rules`"),
            (json!({"rules": ["a"]}), "`rules[0]`"),
            (json!({"rules": [{"condition": true}]}), "`rules[0].name`"),
            (
                json!({"rules": [{"name": "", "condition": true}]}),
                "`rules[0].name`",
            ),
            (
                json!({"rules": [{"name": "{{ x }}", "condition": true}]}),
                "`rules[0].name`",
            ),
            (
                json!({"rules": [{"name": "a", "condition": true}, {"name": "b"}]}),
                "`rules[1].condition`",
            ),
            (
                json!({"rules": [{"name": "a", "condition": true}], "fallback": 3}),
                "`fallback`",
            ),
        ] {
            let err = validate("logic.switch", p.clone()).unwrap_err();
            assert!(err.contains(needle), "{p}: {err}");
        }
    }
}
