//! Deadlines: the one place where the drivers turn a duration a client chose
//! (a message's ttl or delay, a claim's ttl and grace, a subscription's ttl,
//! all in seconds) into an absolute time in milliseconds.
//!
//! Every deadline a store writes lies between now and the end of the year
//! 9999 ([`MAX_DEADLINE_MS`], the bound the api core already puts on
//! subscription ttls, as the reference does). That is far below 2^53, so
//! the number is exact as a double in Redis' Lua and as an `i64` with room to
//! add margins. A duration that is negative or would end past that bound is
//! refused with [`StorageError::Rejected`] *before* anything is written:
//! never wrapped, never saturated. A saturated expiry keeps a message for
//! ever; a wrapped one (Lua's `%d` of a double past 2^63) once turned into a
//! negative `PEXPIRE` that deleted a whole queue.
//!
//! The api core bounds these numbers far more tightly (`max_message_ttl`,
//! `max_claim_grace`, ...); this module is the drivers' own line of
//! defence should a value it did not bound reach them.

use super::{StorageError, StorageResult};

/// The latest deadline a store accepts: 9999-12-31T23:59:59.999Z in ms since
/// the Unix epoch. `common.lua` and `subscription.lua` hold the same number
/// (`MAX_TIME`) and refuse anything past it on their own.
pub const MAX_DEADLINE_MS: i64 = 253_402_300_799_999;

// Exact as a double (Redis' Lua numbers), with room for margins.
const _: () = assert!(MAX_DEADLINE_MS < (1_i64 << 52));

/// The longest duration, in seconds, that can follow the epoch within
/// [`MAX_DEADLINE_MS`] (a bound on stored ttls in seconds).
pub const MAX_SECONDS: i64 = MAX_DEADLINE_MS / 1000;

fn rejected(what: &str, secs: i64) -> StorageError {
    StorageError::Rejected(format!(
        "The {what} of {secs} seconds is out of range: it must be at least 0 and end before \
         9999-12-31 23:59:59."
    ))
}

/// `now_ms` plus `secs` seconds, or [`StorageError::Rejected`] (naming
/// `what`, e.g. "claim grace") when `secs` is negative or the sum would
/// pass [`MAX_DEADLINE_MS`].
pub fn after(now_ms: i64, secs: i64, what: &str) -> StorageResult<i64> {
    if secs < 0 {
        return Err(rejected(what, secs));
    }
    secs.checked_mul(1000)
        .and_then(|ms| now_ms.checked_add(ms))
        .filter(|at| (0..=MAX_DEADLINE_MS).contains(at))
        .ok_or_else(|| rejected(what, secs))
}

/// When a new or renewed claim ends and how long its messages live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClaimTimes {
    /// The claim's ttl in seconds, as given.
    pub ttl: i64,
    /// When the claim ends (now + ttl), ms.
    pub ends_ms: i64,
    /// The ttl in seconds a message gets when the claim extends it (ttl + grace).
    pub message_ttl: i64,
    /// The earliest expiry a claimed message keeps (claim end + grace), ms.
    pub keep_until_ms: i64,
}

impl ClaimTimes {
    /// The times of a claim created or renewed at `now_ms` with `ttl` and
    /// `grace` seconds; [`StorageError::Rejected`] when either is negative
    /// or the messages would outlive [`MAX_DEADLINE_MS`].
    pub fn new(now_ms: i64, ttl: i64, grace: i64) -> StorageResult<ClaimTimes> {
        let ends_ms = after(now_ms, ttl, "claim TTL")?;
        if grace < 0 {
            return Err(rejected("claim grace", grace));
        }
        let message_ttl = ttl
            .checked_add(grace)
            .ok_or_else(|| rejected("claim grace", grace))?;
        let keep_until_ms = after(now_ms, message_ttl, "claim TTL plus grace")?;
        Ok(ClaimTimes {
            ttl,
            ends_ms,
            message_ttl,
            keep_until_ms,
        })
    }
}

/// When a message posted at `now_ms` expires and when its delay ends (ms);
/// [`StorageError::Rejected`] when its ttl or delay is negative or too long.
pub fn message_times(now_ms: i64, ttl: i64, delay: i64) -> StorageResult<(i64, i64)> {
    Ok((
        after(now_ms, ttl, "message TTL")?,
        after(now_ms, delay, "message delay")?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn ordinary_durations_add_up() {
        assert_eq!(after(NOW, 60, "x").unwrap(), NOW + 60_000);
        assert_eq!(after(NOW, 0, "x").unwrap(), NOW);
        let t = ClaimTimes::new(NOW, 300, 60).unwrap();
        assert_eq!(
            t,
            ClaimTimes {
                ttl: 300,
                ends_ms: NOW + 300_000,
                message_ttl: 360,
                keep_until_ms: NOW + 360_000,
            }
        );
        assert_eq!(
            message_times(NOW, 60, 5).unwrap(),
            (NOW + 60_000, NOW + 5_000)
        );
    }

    #[test]
    fn the_bound_is_inclusive_and_exact() {
        let secs = (MAX_DEADLINE_MS - NOW) / 1000;
        assert!(after(NOW, secs, "x").unwrap() <= MAX_DEADLINE_MS);
        assert!(after(NOW, secs + 1, "x").is_err());
    }

    #[test]
    fn absurd_or_negative_durations_are_refused() {
        for secs in [
            -1,
            i64::MIN,
            i64::MAX,
            9_000_000_000_000_000_000,
            MAX_SECONDS,
        ] {
            assert!(
                matches!(
                    after(NOW, secs, "claim grace"),
                    Err(StorageError::Rejected(_))
                ),
                "{secs}"
            );
        }
        assert!(ClaimTimes::new(NOW, 60, i64::MAX).is_err());
        assert!(ClaimTimes::new(NOW, i64::MAX, 60).is_err());
        assert!(ClaimTimes::new(NOW, 60, -1).is_err());
        assert!(message_times(NOW, 60, i64::MAX).is_err());
        assert!(message_times(NOW, -60, 0).is_err());
    }
}
