//! Webhook retry policies (`_retry_policy` of a queue or a subscription)
//! turned into the wait before each retry.
//!
//! The phases are the reference's: `retries_with_no_delay` immediate
//! retries, `minimum_delay_retries` retries `minimum_delay` seconds apart,
//! the backoff series between `minimum_delay` and `maximum_delay` (step 5 s,
//! `retry_backoff_function` linear, arithmetic, geometric or exponential),
//! then `maximum_delay_retries` retries `maximum_delay` seconds apart. The
//! subscription's policy wins over the queue's unless either says
//! `ignore_subscription_override: true`.
//!
//! The wait before the n-th retry is computed on its own
//! ([`wait_before_retry`]): constant memory and O(1) work per call, however
//! long the series. The reference (and an earlier version of ours) built the
//! whole series first, so a policy with a `maximum_delay` near 2^63 made the
//! delivery worker allocate until the process died. The API refuses such
//! policies ([`validate`]); a policy read
//! back from storage is still clamped to the same bounds here, because it
//! may have been stored before those bounds existed (a durable outbox row
//! outlives the server version that wrote it).

use serde_json::Value;

use crate::json::{as_int, truthy};

/// Backoff functions a retry policy may name.
pub const RETRY_BACKOFF_FUNCTIONS: [&str; 4] = ["linear", "arithmetic", "geometric", "exponential"];
/// Default shortest delay between webhook retries (seconds).
pub const MINIMUM_DELAY: i64 = 5;
/// Default longest delay between webhook retries (seconds).
pub const MAXIMUM_DELAY: i64 = 30;
/// Step of the linear backoff (seconds).
pub const LINEAR_INTERVAL: i64 = 5;
/// Largest `minimum_delay` and `maximum_delay` of a retry policy (seconds):
/// one day. Ours; the reference sets no bound (and a huge one exhausted
/// memory, see [`wait_before_retry`]).
pub const MAX_RETRY_DELAY: i64 = 86_400;
/// Largest `retries_with_no_delay`, `minimum_delay_retries` and
/// `maximum_delay_retries` of a retry policy. Ours; a delivery is retried at
/// most [`MAX_RETRIES`] times in all anyway.
pub const MAX_RETRY_COUNT: i64 = 1_000;

/// The integer fields of a retry policy, in the reference's order, each
/// with its upper bound and unit.
const RETRY_POLICY_INTEGERS: [(&str, i64, &str); 5] = [
    ("retries_with_no_delay", MAX_RETRY_COUNT, ""),
    ("minimum_delay_retries", MAX_RETRY_COUNT, ""),
    ("minimum_delay", MAX_RETRY_DELAY, " seconds"),
    ("maximum_delay", MAX_RETRY_DELAY, " seconds"),
    ("maximum_delay_retries", MAX_RETRY_COUNT, ""),
];

/// Validates a `_retry_policy` (queue metadata or subscription options);
/// the error is the text a client is answered (400).
///
/// The reference's checks and texts, plus bounds of ours on every integer
/// field (`0..=`[`MAX_RETRY_COUNT`] retries, `0..=`[`MAX_RETRY_DELAY`]
/// seconds): the reference accepts any integer, negative or near 2^63, and
/// fails only when it delivers. Likewise an integer field must be an
/// integer (or `null`, meaning the default) even when falsy: the reference
/// lets `""`, `[]` or `0.0` through and then fails at delivery.
pub fn validate(policy: Option<&Value>) -> Result<(), String> {
    let Some(policy) = policy.filter(|p| truthy(p)) else {
        return Ok(());
    };
    let Value::Object(p) = policy else {
        return Err(String::from("retry_policy must be a dict."));
    };
    for (key, hi, unit) in RETRY_POLICY_INTEGERS {
        let Some(v) = p.get(key).filter(|v| !v.is_null()) else {
            continue;
        };
        let n = as_int(v).ok_or_else(|| format!("Retry policy: {key} must be a integer."))?;
        if !(0..=hi).contains(&n) {
            let long = if unit.is_empty() { "" } else { " long" };
            return Err(format!(
                "Retry policy: {key} can not exceed {hi}{unit}, and must be at least 0{unit}{long}."
            ));
        }
    }
    if let Some(v) = p.get("retry_backoff_function").filter(|v| truthy(v)) {
        match v {
            Value::String(s) if RETRY_BACKOFF_FUNCTIONS.contains(&s.as_str()) => {}
            Value::String(_) => return Err(String::from("invalid retry_backoff_function.")),
            _ => return Err(String::from("retry_backoff_function must be a string.")),
        }
    }
    if let Some(v) = p.get("ignore_subscription_override").filter(|v| truthy(v)) {
        if !v.is_boolean() {
            return Err(String::from(
                "ignore_subscription_override must be a boolean.",
            ));
        }
    }
    let delay = |k: &str, default: i64| p.get(k).and_then(as_int).unwrap_or(default);
    let min = delay("minimum_delay", MINIMUM_DELAY);
    let max = delay("maximum_delay", MAXIMUM_DELAY);
    if max < min {
        return Err(String::from("minimum_delay must less than maximum_delay."));
    }
    if max - min < 2 * LINEAR_INTERVAL {
        return Err(String::from("invalid minimum_delay and maximum_delay."));
    }
    Ok(())
}

/// Default immediate retries.
pub const RETRIES_WITH_NO_DELAY: i64 = 3;
/// Default retries at the minimum delay.
pub const MINIMUM_DELAY_RETRIES: i64 = 3;
/// Default retries at the maximum delay.
pub const MAXIMUM_DELAY_RETRIES: i64 = 3;
/// Upper bound on the retries of one delivery, whatever a policy says.
pub const MAX_RETRIES: u64 = 1000;

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

/// The shape of the backoff series between the two delays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backoff {
    Linear,
    Arithmetic,
    Geometric,
    Exponential,
}

/// A retry policy with every field read, defaulted and clamped to the
/// bounds the API enforces (counts `0..=MAX_RETRY_COUNT`, delays
/// `0..=MAX_RETRY_DELAY`, `maximum_delay >= minimum_delay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    no_delay: u64,
    min_retries: u64,
    min: i64,
    max: i64,
    max_retries: u64,
    backoff: Backoff,
}

impl RetryPolicy {
    /// Reads a stored `_retry_policy` (or the defaults for `None`). Never
    /// fails: a missing, mistyped or out-of-range field is replaced by its
    /// default or clamped, since a delivery must go on whatever was stored.
    pub fn from_json(policy: Option<&Value>) -> Self {
        let field = |key: &str, default: i64, hi: i64| -> i64 {
            policy
                .and_then(|p| p.get(key))
                .and_then(as_int)
                .unwrap_or(default)
                .clamp(0, hi)
        };
        let count = |key: &str, default: i64| field(key, default, MAX_RETRY_COUNT) as u64;
        let min = field("minimum_delay", MINIMUM_DELAY, MAX_RETRY_DELAY);
        let max = field("maximum_delay", MAXIMUM_DELAY, MAX_RETRY_DELAY).max(min);
        let backoff = match policy
            .and_then(|p| p.get("retry_backoff_function"))
            .and_then(Value::as_str)
        {
            Some("arithmetic") => Backoff::Arithmetic,
            Some("geometric") => Backoff::Geometric,
            Some("exponential") => Backoff::Exponential,
            _ => Backoff::Linear,
        };
        RetryPolicy {
            no_delay: count("retries_with_no_delay", RETRIES_WITH_NO_DELAY),
            min_retries: count("minimum_delay_retries", MINIMUM_DELAY_RETRIES),
            min,
            max,
            max_retries: count("maximum_delay_retries", MAXIMUM_DELAY_RETRIES),
            backoff,
        }
    }

    /// The wait (seconds) before retry number `retry` (0 for the first
    /// retry, i.e. after the first failed attempt); `None` once the policy
    /// (or [`MAX_RETRIES`]) is exhausted.
    pub fn wait_before_retry(&self, retry: u64) -> Option<u64> {
        if retry >= MAX_RETRIES {
            return None;
        }
        let mut i = retry;
        if i < self.no_delay {
            return Some(0);
        }
        i -= self.no_delay;
        if i < self.min_retries {
            return Some(self.min as u64);
        }
        i -= self.min_retries;
        let series = self.series_len();
        if i < series {
            return Some(self.series_at(i));
        }
        i -= series;
        (i < self.max_retries).then_some(self.max as u64)
    }

    /// Whether the series falls back to linear steps: the reference's
    /// formulas need at least two steps and a positive minimum.
    fn linear(&self) -> bool {
        self.backoff == Backoff::Linear
            || (self.max - self.min) / LINEAR_INTERVAL < 2
            || self.min <= 0
    }

    /// Length of the backoff series between the two delays.
    fn series_len(&self) -> u64 {
        let span = self.max - self.min;
        if self.linear() {
            // min, min + 5, ... while below max.
            ((span + LINEAR_INTERVAL - 1) / LINEAR_INTERVAL).max(0) as u64
        } else {
            (span / LINEAR_INTERVAL) as u64
        }
    }

    /// Element `i` (from 0) of the backoff series, `i < series_len()`: the
    /// reference's formulas, element by element. The delays are at most
    /// [`MAX_RETRY_DELAY`], so `i` fits an `i32` exponent and no product
    /// overflows.
    fn series_at(&self, i: u64) -> u64 {
        let (min, max) = (self.min, self.max);
        if self.linear() {
            return (min + i as i64 * LINEAR_INTERVAL).max(0) as u64;
        }
        let x_max = (max - min) / LINEAR_INTERVAL;
        let (minf, maxf, n) = (min as f64, max as f64, x_max as f64);
        let a = i as i64 + 1;
        let wait = match self.backoff {
            Backoff::Geometric | Backoff::Exponential => {
                let k = 10f64.powf((maxf / minf).log10() / (n - 1.0));
                if self.backoff == Backoff::Geometric {
                    (minf * k.powi(a as i32 - 1)) as i64
                } else {
                    ((minf / k) * k.powi(a as i32)) as i64
                }
            }
            Backoff::Arithmetic => {
                let d = 2.0 * (maxf - minf) / (n * (n - 1.0));
                (minf + ((a - 1) * a) as f64 * d / 2.0) as i64
            }
            Backoff::Linear => min + i as i64 * LINEAR_INTERVAL,
        };
        wait.max(0) as u64
    }
}

/// The wait (seconds) before retry number `retry` of a delivery under the
/// stored `policy`: `retry` counts from 0, the retry that follows the first
/// failed attempt, so a delivery that failed `n` times waits
/// `wait_before_retry(policy, n - 1)`. `None`: give it up. Constant memory,
/// O(1) time, whatever the policy holds.
pub fn wait_before_retry(policy: Option<&Value>, retry: u64) -> Option<u64> {
    RetryPolicy::from_json(policy).wait_before_retry(retry)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Every wait of a policy, in order (at most [`MAX_RETRIES`]).
    fn waits(policy: Option<&Value>) -> Vec<u64> {
        (0..)
            .map_while(|retry| wait_before_retry(policy, retry))
            .collect()
    }

    /// The schedule as it was computed before the waits were lazy (the
    /// whole series built at once), kept as the oracle the lazy form must
    /// match for every policy the API accepts.
    fn eager_schedule(policy: Option<&Value>) -> Vec<u64> {
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
                if out.len() >= MAX_RETRIES as usize {
                    return;
                }
                out.push(wait.max(0) as u64);
            }
        };
        push(no_delay, 0);
        push(min_retries, min);
        let step = LINEAR_INTERVAL;
        let x_max = (max - min) / step;
        let linear = || {
            (0..)
                .map(|i| min + i * step)
                .take_while(|v| *v < max)
                .collect::<Vec<_>>()
        };
        let series = if x_max < 2 || min <= 0 {
            linear()
        } else {
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
        };
        for wait in series {
            push(1, wait);
        }
        push(max_retries, max);
        out
    }

    #[test]
    fn default_schedule_is_the_references() {
        assert_eq!(
            waits(None),
            vec![0, 0, 0, 5, 5, 5, 5, 10, 15, 20, 25, 30, 30, 30]
        );
        assert_eq!(wait_before_retry(None, 0), Some(0));
        assert_eq!(wait_before_retry(None, 13), Some(30));
        assert_eq!(wait_before_retry(None, 14), None);
        assert_eq!(wait_before_retry(None, u64::MAX), None);
    }

    #[test]
    fn functions_and_overrides() {
        let p = json!({"retries_with_no_delay": 1, "minimum_delay_retries": 0, "minimum_delay": 10,
                       "maximum_delay": 30, "maximum_delay_retries": 1, "retry_backoff_function": "arithmetic"});
        let s = waits(Some(&p));
        assert_eq!(s.first(), Some(&0));
        assert_eq!(s.last(), Some(&30));
        assert_eq!(&s[1..s.len() - 1], &[10, 13, 20, 30]);
        let g = waits(Some(
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

    #[test]
    fn lazy_waits_equal_the_eager_schedule() {
        let functions = [
            None,
            Some("linear"),
            Some("arithmetic"),
            Some("geometric"),
            Some("exponential"),
            Some("unknown"),
        ];
        let counts = [
            (0, 0, 0),
            (3, 3, 3),
            (1, 0, 2),
            (0, 400, 0),
            (400, 400, 400),
        ];
        let mut checked = 0;
        for function in functions {
            for min in [0, 1, 5, 7, 60, 300] {
                for span in [0, 4, 9, 10, 11, 25, 100, 1000, 4000] {
                    for (no_delay, min_retries, max_retries) in counts {
                        let mut p = json!({"minimum_delay": min, "maximum_delay": min + span,
                            "retries_with_no_delay": no_delay, "minimum_delay_retries": min_retries,
                            "maximum_delay_retries": max_retries});
                        if let Some(f) = function {
                            p["retry_backoff_function"] = json!(f);
                        }
                        assert_eq!(waits(Some(&p)), eager_schedule(Some(&p)), "{p}");
                        checked += 1;
                    }
                }
            }
        }
        assert_eq!(checked, 6 * 6 * 9 * 5);
        // Defaults, partial policies, booleans as integers.
        for p in [
            json!({}),
            json!({"maximum_delay": 100}),
            json!({"minimum_delay": true, "maximum_delay": 20, "retry_backoff_function": "exponential"}),
        ] {
            assert_eq!(waits(Some(&p)), eager_schedule(Some(&p)), "{p}");
        }
    }

    /// Defect: a stored policy with `maximum_delay` near 2^63 (or huge
    /// counts) made the worker build a series of ~10^18 waits and abort
    /// the process; the outbox row is durable, so it crashed again after
    /// every restart. Every such policy is now clamped and each wait
    /// computed alone: these calls return at once, allocating nothing.
    #[test]
    fn hostile_stored_policies_are_clamped() {
        let huge = 9_000_000_000_000_000_000_i64;
        let p =
            json!({"retries_with_no_delay": 0, "minimum_delay_retries": 0, "maximum_delay": huge});
        // Linear from 5 s in steps of 5 s, capped at MAX_RETRIES retries.
        assert_eq!(wait_before_retry(Some(&p), 0), Some(5));
        assert_eq!(wait_before_retry(Some(&p), 999), Some(5 + 5 * 999));
        assert_eq!(wait_before_retry(Some(&p), MAX_RETRIES), None);
        for function in ["linear", "arithmetic", "geometric", "exponential"] {
            for p in [
                json!({"maximum_delay": huge, "minimum_delay": 1, "retry_backoff_function": function}),
                json!({"maximum_delay": i64::MAX, "minimum_delay": i64::MAX - 1,
                       "retry_backoff_function": function}),
                json!({"maximum_delay": i64::MIN, "minimum_delay": -5, "retries_with_no_delay": -1,
                       "maximum_delay_retries": i64::MAX, "retry_backoff_function": function}),
                json!({"retries_with_no_delay": huge, "minimum_delay_retries": huge,
                       "maximum_delay_retries": huge, "retry_backoff_function": function}),
                json!({"minimum_delay": 1.5, "maximum_delay": "9e18", "retries_with_no_delay": [1],
                       "minimum_delay_retries": {"a": 1}, "retry_backoff_function": 7}),
            ] {
                let all = waits(Some(&p));
                assert!(all.len() as u64 <= MAX_RETRIES, "{p}");
                assert!(
                    all.iter().all(|w| *w <= MAX_RETRY_DELAY as u64),
                    "{p}: {all:?}"
                );
                assert_eq!(wait_before_retry(Some(&p), u64::MAX), None);
            }
        }
        // Delays beyond the bound are the bound; counts beyond it too.
        let p = json!({"retries_with_no_delay": 0, "minimum_delay_retries": 1,
                       "minimum_delay": huge, "maximum_delay": huge});
        assert_eq!(wait_before_retry(Some(&p), 0), Some(MAX_RETRY_DELAY as u64));
        let p = json!({"retries_with_no_delay": huge});
        assert_eq!(waits(Some(&p)), vec![0; MAX_RETRIES as usize]);
        // Non-integers fall back to the defaults.
        let p = json!({"minimum_delay": 1.5, "maximum_delay": "x", "retries_with_no_delay": null});
        assert_eq!(waits(Some(&p)), waits(None));
    }
}
