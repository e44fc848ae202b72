//! Webhook retry policies (`_retry_policy` of a queue or a subscription)
//! turned into a schedule of waits.
//!
//! The phases are the reference's: `retries_with_no_delay` immediate
//! retries, `minimum_delay_retries` retries `minimum_delay` seconds apart,
//! the backoff series between `minimum_delay` and `maximum_delay` (step 5 s,
//! `retry_backoff_function` linear, arithmetic, geometric or exponential),
//! then `maximum_delay_retries` retries `maximum_delay` seconds apart. The
//! subscription's policy wins over the queue's unless either says
//! `ignore_subscription_override: true`.

use serde_json::Value;

use crate::api::body::as_int;
use crate::api::metadata::{LINEAR_INTERVAL, MAXIMUM_DELAY, MINIMUM_DELAY};

/// Default immediate retries.
pub const RETRIES_WITH_NO_DELAY: i64 = 3;
/// Default retries at the minimum delay.
pub const MINIMUM_DELAY_RETRIES: i64 = 3;
/// Default retries at the maximum delay.
pub const MAXIMUM_DELAY_RETRIES: i64 = 3;
/// Upper bound on the retries of one delivery, whatever a policy says.
pub const MAX_RETRIES: usize = 1000;

/// The policy in force for one delivery: the subscription's unless either
/// policy sets `ignore_subscription_override`.
pub fn effective<'a>(
    subscription: Option<&'a Value>,
    queue: Option<&'a Value>,
) -> Option<&'a Value> {
    let ignore = |p: Option<&Value>| {
        p.and_then(|p| p.get("ignore_subscription_override"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    let non_empty =
        |p: Option<&'a Value>| p.filter(|p| p.as_object().is_some_and(|o| !o.is_empty()));
    if ignore(subscription) || ignore(queue) {
        non_empty(queue)
    } else {
        non_empty(subscription).or(non_empty(queue))
    }
}

/// The waits (seconds) before each retry, in order. A delivery that failed
/// `n` times waits `schedule[n - 1]` before its next try; past the end it
/// is given up.
pub fn schedule(policy: Option<&Value>) -> Vec<u64> {
    let get = |key: &str, default: i64| -> i64 {
        policy
            .and_then(|p| p.get(key))
            .and_then(as_int)
            .unwrap_or(default)
            .max(0)
    };
    let no_delay = get("retries_with_no_delay", RETRIES_WITH_NO_DELAY);
    let min_retries = get("minimum_delay_retries", MINIMUM_DELAY_RETRIES);
    let min = get("minimum_delay", MINIMUM_DELAY);
    let max = get("maximum_delay", MAXIMUM_DELAY).max(min);
    let max_retries = get("maximum_delay_retries", MAXIMUM_DELAY_RETRIES);
    let function = policy
        .and_then(|p| p.get("retry_backoff_function"))
        .and_then(Value::as_str)
        .unwrap_or("linear");
    let mut out: Vec<u64> = Vec::new();
    let mut push = |n: i64, wait: i64| {
        for _ in 0..n {
            if out.len() >= MAX_RETRIES {
                return;
            }
            out.push(wait.max(0) as u64);
        }
    };
    push(no_delay, 0);
    push(min_retries, min);
    for wait in backoff(function, min, max) {
        push(1, wait);
    }
    push(max_retries, max);
    out
}

/// The backoff series of the reference's four functions.
fn backoff(function: &str, min: i64, max: i64) -> Vec<i64> {
    let step = LINEAR_INTERVAL;
    let x_max = (max - min) / step;
    let linear = || {
        (0..)
            .map(|i| min + i * step)
            .take_while(|v| *v < max)
            .collect::<Vec<_>>()
    };
    if x_max < 2 || min <= 0 {
        return linear();
    }
    let (minf, maxf, n) = (min as f64, max as f64, x_max as f64);
    match function {
        "geometric" | "exponential" => {
            let k = 10f64.powf((maxf / minf).log10() / (n - 1.0));
            (1..=x_max)
                .map(|a| {
                    if function == "geometric" {
                        (minf * k.powi(a as i32 - 1)) as i64
                    } else {
                        ((minf / k) * k.powi(a as i32)) as i64
                    }
                })
                .collect()
        }
        "arithmetic" => {
            let d = 2.0 * (maxf - minf) / (n * (n - 1.0));
            (1..=x_max)
                .map(|a| (minf + ((a - 1) * a) as f64 * d / 2.0) as i64)
                .collect()
        }
        _ => linear(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn default_schedule_is_the_references() {
        assert_eq!(
            schedule(None),
            vec![0, 0, 0, 5, 5, 5, 5, 10, 15, 20, 25, 30, 30, 30]
        );
    }

    #[test]
    fn functions_and_overrides() {
        let p = json!({"retries_with_no_delay": 1, "minimum_delay_retries": 0, "minimum_delay": 10,
                       "maximum_delay": 30, "maximum_delay_retries": 1, "retry_backoff_function": "arithmetic"});
        let s = schedule(Some(&p));
        assert_eq!(s.first(), Some(&0));
        assert_eq!(s.last(), Some(&30));
        assert_eq!(&s[1..s.len() - 1], &[10, 13, 20, 30]);
        let g = schedule(Some(
            &json!({"retry_backoff_function": "geometric", "retries_with_no_delay": 0,
                                      "minimum_delay_retries": 0, "maximum_delay_retries": 0}),
        ));
        assert_eq!(g.len(), 5);
        assert!(g.windows(2).all(|w| w[0] <= w[1]), "{g:?}");
        let sub = json!({"minimum_delay": 1});
        let queue = json!({"minimum_delay": 2, "ignore_subscription_override": true});
        assert_eq!(effective(Some(&sub), Some(&queue)), Some(&queue));
        assert_eq!(
            effective(Some(&sub), Some(&json!({"minimum_delay": 2}))),
            Some(&sub)
        );
        assert_eq!(effective(Some(&json!({})), None), None);
    }
}
