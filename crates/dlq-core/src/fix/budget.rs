//! The budget a fix runs under, and the natives that charge it.
//!
//! jaq has no fuel of its own. [`super::rewrite`] puts a call to the native
//! [`TICK`](super::rewrite::TICK) at the start of every definition body and
//! of every `reduce`/`foreach` update, so every loop and every recursion of
//! a jq program charges one step per round. A tick fails when the steps are
//! used up, when the deadline has passed (checked every
//! [`CLOCK_EVERY`] steps) or when the thread's stack runs low; once it has
//! failed, every later tick fails too, so a `try`/`catch`, `?` or `//` in
//! the fix cannot swallow the failure and carry on: evaluation unwinds, and
//! [`Fix::apply`](super::Fix::apply) reports what ran out.
//!
//! The budget reaches the natives through jaq's global data ([`FixData`]),
//! one [`Budget`] per application, so a compiled fix stays shareable.

use std::cell::Cell;
use std::time::{Duration, Instant};

use jaq_core::box_iter::box_once;
use jaq_core::data::{DataT, HasLut};
use jaq_core::native::{Fun, v};
use jaq_core::{Cv, Exn, Native, ValXs};
use jaq_json::{Num, Val};

use super::rewrite::{ADD, MUL, TICK};

/// Steps between two reads of the clock.
pub(super) const CLOCK_EVERY: u64 = 256;

/// Stack that must remain free when a tick runs. Between two ticks, jaq
/// recurses at most along one definition body, whose depth is bounded by
/// [`super::MAX_FIX_DEPTH`]; this leaves room for that, for jaq's natives
/// and for unwinding.
pub(super) const STACK_RESERVE: usize = 512 * 1024;

/// What ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exhausted {
    /// The step budget.
    Steps,
    /// The time budget.
    Time,
    /// The thread's stack (recursion too deep).
    Stack,
    /// A value would have been larger than the output limit.
    Output,
}

/// One application's budget.
#[derive(Debug)]
pub(super) struct Budget {
    steps: Cell<u64>,
    max_steps: u64,
    deadline: Instant,
    max_bytes: usize,
    exhausted: Cell<Option<Exhausted>>,
}

impl Budget {
    /// A budget starting now.
    pub(super) fn new(max_steps: u64, timeout: Duration, max_bytes: usize) -> Self {
        let now = Instant::now();
        Budget {
            steps: Cell::new(0),
            max_steps,
            deadline: now
                .checked_add(timeout)
                .unwrap_or(now + Duration::from_secs(3600)),
            max_bytes,
            exhausted: Cell::new(None),
        }
    }

    /// What ran out, if anything did.
    pub(super) fn exhausted(&self) -> Option<Exhausted> {
        self.exhausted.get()
    }

    fn fail(&self, what: Exhausted) -> Exn<'static, Val> {
        if self.exhausted.get().is_none() {
            self.exhausted.set(Some(what));
        }
        let message = match what {
            Exhausted::Steps => "fix budget exceeded: too many steps",
            Exhausted::Time => "fix budget exceeded: time is up",
            Exhausted::Stack => "fix budget exceeded: recursion too deep",
            Exhausted::Output => "fix budget exceeded: value too large",
        };
        Exn::from(jaq_core::Error::str(message))
    }

    /// Charges one step.
    pub(super) fn charge(&self) -> Result<(), Exn<'static, Val>> {
        if let Some(what) = self.exhausted.get() {
            return Err(self.fail(what));
        }
        let n = self.steps.get() + 1;
        self.steps.set(n);
        if n > self.max_steps {
            return Err(self.fail(Exhausted::Steps));
        }
        if n.is_multiple_of(CLOCK_EVERY) && Instant::now() >= self.deadline {
            return Err(self.fail(Exhausted::Time));
        }
        if stacker::remaining_stack().is_some_and(|left| left < STACK_RESERVE) {
            return Err(self.fail(Exhausted::Stack));
        }
        Ok(())
    }

    /// Refuses a value of `len` bytes or elements beyond the output limit.
    fn size(&self, len: u128) -> Result<(), Exn<'static, Val>> {
        if len > self.max_bytes as u128 {
            Err(self.fail(Exhausted::Output))
        } else {
            Ok(())
        }
    }

    /// Marks the output as too large (it is checked outside of jaq).
    pub(super) fn output_too_large(&self) {
        let _ = self.fail(Exhausted::Output);
    }
}

/// The jaq data kind of fixes: jq values, and the budget in the global data.
pub(super) struct FixData;

impl DataT for FixData {
    type V<'a> = Val;
    type Data<'a> = Env<'a>;
}

/// The global data of one application: the compiled program and its budget.
#[derive(Clone)]
pub(super) struct Env<'a> {
    pub(super) lut: &'a jaq_core::Lut<FixData>,
    pub(super) budget: &'a Budget,
}

impl<'a> HasLut<'a, FixData> for Env<'a> {
    fn lut(&self) -> &'a jaq_core::Lut<FixData> {
        self.lut
    }
}

fn budget<'a>(cv: &Cv<'a, FixData>) -> &'a Budget {
    cv.0.data().budget
}

/// The natives of the budget: the tick, a `range/3` that charges a step per
/// output, and `+`/`*` that refuse oversized results.
pub(super) fn natives() -> impl Iterator<Item = Fun<FixData>> {
    let tick = Native::new(|cv| {
        let b = budget(&cv);
        box_once(b.charge().map(|()| cv.1))
    })
    .with_paths(|cv| {
        let b = cv.0.data().budget;
        box_once(b.charge().map(|()| cv.1))
    })
    .with_update(|cv, f| match budget(&cv).charge() {
        Ok(()) => f(cv.1),
        Err(e) => box_once(Err(e)),
    });
    let range = Native::new(|mut cv| {
        let b = budget(&cv);
        let by = cv.0.pop_var();
        let to = cv.0.pop_var();
        let from = cv.0.pop_var();
        range(b, from, to, by)
    });
    let add = Native::new(|mut cv| {
        let b = budget(&cv);
        let r = cv.0.pop_var();
        let l = cv.0.pop_var();
        box_once(add(b, l, r))
    });
    let mul = Native::new(|mut cv| {
        let b = budget(&cv);
        let r = cv.0.pop_var();
        let l = cv.0.pop_var();
        box_once(mul(b, l, r))
    });
    [
        (TICK, v(0), tick),
        ("range", v(3), range),
        (ADD, v(2), add),
        (MUL, v(2), mul),
    ]
    .into_iter()
}

/// jaq's `range($from; $to; $by)`, charging a step per output, so that
/// `last(range(1e18))` ends when the budget does.
fn range<'a>(b: &'a Budget, from: Val, to: Val, by: Val) -> ValXs<'a, Val> {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let direction = by.partial_cmp(&Val::from(0isize)).unwrap_or(Equal);
    let mut next = Some(from);
    Box::new(std::iter::from_fn(move || {
        let x = next.take()?;
        let go_on = match direction {
            Greater => x < to,
            Less => x > to,
            Equal => x != to,
        };
        if !go_on {
            return None;
        }
        if let Err(e) = b.charge() {
            return Some(Err(e));
        }
        match x.clone() + by.clone() {
            Ok(after) => next = Some(after),
            Err(e) => return Some(Err(Exn::from(e))),
        }
        Some(Ok(x))
    }))
}

/// Length in bytes (strings) or elements (arrays).
fn len(v: &Val) -> Option<usize> {
    match v {
        Val::TStr(s) | Val::BStr(s) => Some(s.len()),
        Val::Arr(a) => Some(a.len()),
        _ => None,
    }
}

/// `l + r`, refusing a string or array longer than the output limit.
fn add(b: &Budget, l: Val, r: Val) -> Result<Val, Exn<'static, Val>> {
    if let (Some(x), Some(y)) = (len(&l), len(&r)) {
        b.size(x as u128 + y as u128)?;
    }
    (l + r).map_err(Exn::from)
}

/// `l * r`, refusing a repeated string longer than the output limit.
fn mul(b: &Budget, l: Val, r: Val) -> Result<Val, Exn<'static, Val>> {
    // jaq repeats a string by an integer (a big one saturates); a
    // non-positive count gives `null`.
    let times = |n: &Num| match n {
        Num::Int(i) => Some(u128::try_from(*i).unwrap_or(0)),
        Num::BigInt(_) if Val::Num(n.clone()) > Val::from(0isize) => Some(u128::MAX),
        _ => None,
    };
    let repeated = match (&l, &r) {
        (Val::TStr(s) | Val::BStr(s), Val::Num(n)) | (Val::Num(n), Val::TStr(s) | Val::BStr(s)) => {
            times(n).map(|t| (s.len() as u128).saturating_mul(t))
        }
        _ => None,
    };
    if let Some(bytes) = repeated {
        b.size(bytes)?;
    }
    (l * r).map_err(Exn::from)
}
