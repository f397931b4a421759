//! `when` conditions: CEL expressions over the task's `input` (and the run's `params`).

use serde_json::Value;

use crate::definition::compiled_expression;

/// Whether the task should run. An expression that does not give a boolean is an error, not a false.
pub fn evaluate(expression: &str, input: &Value, params: &Value) -> Result<bool, String> {
    let program = compiled_expression(expression)?;
    let mut context = cel::Context::default();
    context
        .add_variable("input", input)
        .map_err(|error| format!("`when`: the input cannot be given to CEL: {error}"))?;
    context
        .add_variable("params", params)
        .map_err(|error| format!("`when`: the params cannot be given to CEL: {error}"))?;
    match program.execute(&context) {
        Ok(cel::Value::Bool(result)) => Ok(result),
        Ok(other) => {
            let shown = other.json().map(|value| value.to_string()).unwrap_or_else(|_| format!("{other:?}"));
            Err(format!("`when = \"{expression}\"` gave {shown}, not true or false"))
        }
        Err(error) => Err(format!("`when = \"{expression}\"` failed: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn conditions_read_the_input_and_params() {
        let input = json!({"applications": [{"score": 0.9}], "count": 3});
        assert_eq!(evaluate("size(input.applications) > 0", &input, &json!({})), Ok(true));
        assert_eq!(evaluate("input.count > 5", &input, &json!({})), Ok(false));
        assert_eq!(evaluate("params.mode == 'full'", &input, &json!({"mode": "full"})), Ok(true));
        assert_eq!(evaluate("has(input.missing)", &input, &json!({})), Ok(false));
    }

    #[test]
    fn non_boolean_results_and_bad_syntax_are_errors() {
        let input = json!({"count": 3});
        assert_eq!(
            evaluate("input.count", &input, &json!({})),
            Err("`when = \"input.count\"` gave 3, not true or false".to_string())
        );
        assert!(
            evaluate("input.count >", &input, &json!({}))
                .unwrap_err()
                .starts_with("bad CEL expression `input.count >`: ")
        );
        assert!(crate::definition::compile_expression("input.a == ").is_err());
        assert!(crate::definition::compile_expression("input.a == 1 && has(input.b)").is_ok());
    }

    #[test]
    fn the_evaluator_refuses_what_validation_refuses_with_the_same_reason() {
        let deep = format!("{}true{}", "(".repeat(65), ")".repeat(65));
        let refused = crate::definition::compile_expression(&deep).unwrap_err();
        let empty = json!({});
        assert_eq!(evaluate(&deep, &empty, &empty), Err(refused));
    }
}
