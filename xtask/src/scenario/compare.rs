//! Compares a runner's output with a case's `"ckpt"` expectation, as the cases README and
//! `compare.py` define it: only fields present in the expectation; errors by kind (the text before
//! the first `:`, with `InvalidConfig` and `InvalidArgument` the same); numbers in `metrics` within
//! 1e-9 (int and float interchangeable there), everything else exactly (`true` is not `1`, `3` is
//! not `3.0`).

use serde_json::Value;

const PER_EVENT: [&str; 5] = [
    "results",
    "steps_after_each_event",
    "disk_steps_after_each_event",
    "latest_after_each_event",
    "best_after_each_event",
];
const FINAL: [&str; 6] = [
    "final_steps",
    "final_disk_steps",
    "latest_step",
    "best_step",
    "metrics",
    "after_final_reopen",
];
const TOL: f64 = 1e-9;

/// One line per difference (`event 3  results: expected …, actual …`); empty when they agree.
pub fn compare(expected: &Value, actual: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let Some(act) = actual.as_object() else {
        return vec![format!(
            "final  <output>: expected a JSON object, actual {actual}"
        )];
    };
    let missing = || "<missing>".to_string();
    if let Some(e) = expected.get("init_error") {
        match act.get("init_error") {
            None => diffs.push(format!(
                "final  init_error: expected {e}, actual {}",
                missing()
            )),
            Some(a) if error_kind(e) != error_kind(a) => {
                diffs.push(format!("final  init_error: expected {e}, actual {a}"))
            }
            Some(_) => {}
        }
    }
    for field in PER_EVENT {
        let Some(exp) = expected.get(field) else {
            continue;
        };
        let exp = exp.as_array().cloned().unwrap_or_default();
        let Some(a) = act.get(field).and_then(Value::as_array) else {
            diffs.push(format!(
                "final  {field}: expected a list, actual {}",
                act.get(field).map_or_else(missing, Value::to_string)
            ));
            continue;
        };
        for i in 0..exp.len().max(a.len()) {
            match (exp.get(i), a.get(i)) {
                (Some(e), Some(x)) if eq(e, x, false) => {}
                (e, x) => diffs.push(format!(
                    "event {i}  {field}: expected {}, actual {}",
                    e.map_or_else(missing, Value::to_string),
                    x.map_or_else(missing, Value::to_string)
                )),
            }
        }
    }
    for field in FINAL {
        let Some(exp) = expected.get(field) else {
            continue;
        };
        let tol = field == "metrics";
        let Some(a) = act.get(field) else {
            diffs.push(format!(
                "final  {field}: expected {exp}, actual {}",
                missing()
            ));
            continue;
        };
        match (exp, a) {
            (Value::Object(e), Value::Object(x)) if !is_error(exp) && !is_error(a) => {
                let mut keys: Vec<&String> = e.keys().chain(x.keys()).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    match (e.get(k), x.get(k)) {
                        (Some(ev), Some(xv)) if eq(ev, xv, tol) => {}
                        (ev, xv) => diffs.push(format!(
                            "final  {field}.{k}: expected {}, actual {}",
                            ev.map_or_else(missing, Value::to_string),
                            xv.map_or_else(missing, Value::to_string)
                        )),
                    }
                }
            }
            _ if !eq(exp, a, tol) => {
                diffs.push(format!("final  {field}: expected {exp}, actual {a}"))
            }
            _ => {}
        }
    }
    diffs
}

fn is_error(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.contains_key("error"))
}

fn error_kind(v: &Value) -> Option<String> {
    let text = v.as_str()?;
    let kind = text.split(':').next().unwrap_or("").trim();
    Some(if kind == "InvalidConfig" {
        "InvalidArgument".to_string()
    } else {
        kind.to_string()
    })
}

fn eq(exp: &Value, act: &Value, tol: bool) -> bool {
    if is_error(exp) || is_error(act) {
        return is_error(exp)
            && is_error(act)
            && error_kind(&exp["error"]) == error_kind(&act["error"]);
    }
    match (exp, act) {
        (Value::Bool(a), Value::Bool(b)) => a == b,
        (Value::Number(a), Value::Number(b)) => {
            let (a_int, b_int) = (!a.is_f64(), !b.is_f64());
            if tol && !(a_int && b_int) {
                let (x, y) = (
                    a.as_f64().unwrap_or(f64::NAN),
                    b.as_f64().unwrap_or(f64::NAN),
                );
                (x - y).abs() <= TOL.max(TOL * x.abs().max(y.abs()))
            } else {
                a_int == b_int && a == b
            }
        }
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len()
                && a.iter()
                    .all(|(k, v)| b.get(k).is_some_and(|w| eq(v, w, tol)))
        }
        (Value::Array(a), Value::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| eq(x, y, tol))
        }
        (Value::Null, Value::Null) => true,
        (Value::String(a), Value::String(b)) => a == b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn errors_compare_by_kind_and_numbers_exactly() {
        let exp =
            json!({"results": [{"error": "InvalidConfig: x"}, {"saved": true}], "latest_step": 3});
        assert!(compare(&exp, &json!({"results": [{"error": "InvalidArgument: y"}, {"saved": true}], "latest_step": 3})).is_empty());
        assert_eq!(
            compare(
                &exp,
                &json!({"results": [{"error": "NotFound: y"}, {"saved": 1}], "latest_step": 3.0})
            )
            .len(),
            3
        );
        assert_eq!(
            compare(&exp, &json!({"results": [{"error": "InvalidConfig: x"}]})).len(),
            2
        );
    }

    #[test]
    fn metrics_within_tolerance() {
        let exp = json!({"metrics": {"1": {"loss": 0.1}, "2": null}});
        assert!(compare(
            &exp,
            &json!({"metrics": {"1": {"loss": 0.1000000000001}, "2": null}})
        )
        .is_empty());
        assert_eq!(
            compare(
                &exp,
                &json!({"metrics": {"1": {"loss": 0.2}, "2": null, "3": null}})
            )
            .len(),
            2
        );
    }
}
