//! The small vocabulary checks are written in: a step either continues, fails
//! the check with a reason, or skips it with a reason.

use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::report::{Level, Outcome, Recorder};

/// Why a check stopped early.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    Fail(String),
    Skip(String),
}

/// Result of one step of a check.
pub(crate) type Step<T = ()> = Result<T, Stop>;

/// Adds context to the reason of a stopped step.
pub(crate) trait Context<T> {
    fn context(self, what: impl std::fmt::Display) -> Step<T>;
}

impl<T> Context<T> for Step<T> {
    fn context(self, what: impl std::fmt::Display) -> Step<T> {
        self.map_err(|stop| match stop {
            Stop::Fail(r) => Stop::Fail(format!("{what}: {r}")),
            Stop::Skip(r) => Stop::Skip(format!("{what}: {r}")),
        })
    }
}

/// Stops the check with a failure.
pub(crate) fn fail<T>(reason: impl Into<String>) -> Step<T> {
    Err(Stop::Fail(reason.into()))
}

/// Stops the check as skipped.
pub(crate) fn skip<T>(reason: impl Into<String>) -> Step<T> {
    Err(Stop::Skip(reason.into()))
}

/// Fails the check with a formatted reason unless the condition holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::check::Stop::Fail(format!($($arg)+)));
        }
    };
}
pub(crate) use ensure;

/// Runs a check body, turning a panic into a failure so that one broken
/// check (or a registry answer nobody foresaw) never takes the suite down.
pub(crate) fn guarded(body: impl FnOnce() -> Step) -> Outcome {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => Outcome::Pass,
        Ok(Err(Stop::Fail(reason))) => Outcome::Fail(reason),
        Ok(Err(Stop::Skip(reason))) => Outcome::Skip(reason),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Outcome::Fail(format!(
                "internal error in the check (please report): {msg}"
            ))
        }
    }
}

/// Something a later check depends on: the value, or the name of the setup
/// check that failed to produce it.
pub(crate) type Dep<T> = Result<T, String>;

/// Unwraps a dependency inside a check, skipping the check if it is missing.
pub(crate) fn need<T>(dep: &Dep<T>) -> Step<&T> {
    match dep {
        Ok(v) => Ok(v),
        Err(setup) => skip(format!("depends on {setup}, which did not pass")),
    }
}

impl Recorder {
    /// Runs `body` as the check `<workflow>/<slug>` and records its outcome.
    /// Returns whether it passed.
    pub(crate) fn check(&mut self, slug: &str, level: Level, body: impl FnOnce() -> Step) -> bool {
        let outcome = guarded(body);
        self.record(slug, level, outcome)
    }

    /// Runs a setup step as a check; on success its value is kept for the
    /// checks that depend on it, on failure they are skipped with a pointer
    /// to this one (which is reported as the single failure).
    pub(crate) fn setup<T>(
        &mut self,
        slug: &str,
        level: Level,
        body: impl FnOnce() -> Step<T>,
    ) -> Dep<T> {
        let mut value = None;
        let outcome = guarded(|| {
            value = Some(body()?);
            Ok(())
        });
        let name = self.name(slug);
        self.record(slug, level, outcome);
        value.ok_or(name)
    }
}
