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

use super::rewrite::{DEPTH, DEPTH_SOMETIMES, LEN, MUL, SIZED, TICK};

/// Steps between two reads of the clock.
pub(super) const CLOCK_EVERY: u64 = 256;

/// Steps between two depth measures after assignments and updates.
const DEPTH_EVERY: u64 = 16;

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
    /// A value would have nested deeper than [`super::MAX_VALUE_DEPTH`].
    Depth,
}

/// One application's budget.
#[derive(Debug)]
pub(super) struct Budget {
    steps: Cell<u64>,
    max_steps: u64,
    deadline: Instant,
    max_bytes: usize,
    exhausted: Cell<Option<Exhausted>>,
    /// The step of the last measure by [`DEPTH_SOMETIMES`].
    measured_at: Cell<u64>,
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
            measured_at: Cell::new(0),
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
            Exhausted::Depth => "fix budget exceeded: value nested too deep",
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

    /// Refuses a value whose text would be longer than the output limit.
    ///
    /// Values share their parts, so a value built in a few steps can have
    /// a text of terabytes; this counts at most `max_bytes` bytes of it.
    fn text_size(&self, v: &Val) -> Result<(), Exn<'static, Val>> {
        struct Count {
            left: usize,
        }
        impl std::fmt::Write for Count {
            fn write_str(&mut self, s: &str) -> std::fmt::Result {
                self.left = self.left.checked_sub(s.len()).ok_or(std::fmt::Error)?;
                Ok(())
            }
        }
        let mut count = Count {
            left: self.max_bytes,
        };
        match std::fmt::Write::write_fmt(&mut count, format_args!("{v}")) {
            Ok(()) => Ok(()),
            Err(_) => Err(self.fail(Exhausted::Output)),
        }
    }

    /// Refuses a value nested deeper than [`super::MAX_VALUE_DEPTH`]: jaq
    /// drops (and prints, and compares) values recursively, so a value
    /// nested a million levels deep, which a loop builds in a million
    /// steps, would overflow the stack when it is dropped.
    fn depth(&self, v: &Val) -> Result<(), Exn<'static, Val>> {
        let mut memo = std::collections::HashMap::new();
        match height(v, super::MAX_VALUE_DEPTH, &mut memo) {
            Some(_) => Ok(()),
            None => Err(self.fail(Exhausted::Depth)),
        }
    }

    /// [`Budget::depth`], at most once every [`DEPTH_EVERY`] steps: a loop
    /// deepens a value by a bounded amount per round, so sampling bounds
    /// the depth too, without measuring a large value on every round.
    fn depth_sometimes(&self, v: &Val) -> Result<(), Exn<'static, Val>> {
        let now = self.steps.get();
        if now.saturating_sub(self.measured_at.get()) < DEPTH_EVERY && now > 0 {
            return Ok(());
        }
        self.measured_at.set(now);
        self.depth(v)
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

/// How deep `v` nests (a scalar is 0), or `None` past `limit`.
///
/// Parts shared by several containers are measured once (`memo`, keyed by
/// their address, alive for the whole measure), so this is linear in the
/// distinct containers, not in the size of the value's text. Recursion is
/// bounded by `limit`.
fn height(
    v: &Val,
    limit: usize,
    memo: &mut std::collections::HashMap<usize, usize>,
) -> Option<usize> {
    let (at, children): (usize, Box<dyn Iterator<Item = &Val>>) = match v {
        Val::Arr(a) => (
            std::rc::Rc::as_ptr(a).cast::<()>() as usize,
            Box::new(a.iter()),
        ),
        Val::Obj(o) => (
            std::rc::Rc::as_ptr(o).cast::<()>() as usize,
            Box::new(o.iter().flat_map(|(k, v)| [k, v])),
        ),
        _ => return Some(0),
    };
    if limit == 0 {
        return None;
    }
    if let Some(&h) = memo.get(&at) {
        return Some(h);
    }
    let mut h = 0;
    for child in children {
        h = h.max(height(child, limit - 1, memo)?);
    }
    memo.insert(at, h + 1);
    Some(h + 1)
}

fn budget<'a>(cv: &Cv<'a, FixData>) -> &'a Budget {
    cv.0.data().budget
}

/// The natives of the budget: the tick, a `range/3` that charges a step per
/// output, a `*` that refuses oversized strings before it builds them, the
/// checks put after `+`, constructions and assignments and before printing
/// (see [`super::rewrite`]), and silent `debug`/`stderr`.
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
    let len = Native::new(|cv| {
        let b = budget(&cv);
        let size = len(&cv.1).map_or(Ok(()), |n| b.size(n as u128));
        box_once(size.map(|()| cv.1))
    });
    let mul = Native::new(|mut cv| {
        let b = budget(&cv);
        let r = cv.0.pop_var();
        let l = cv.0.pop_var();
        box_once(mul(b, l, r))
    });
    let depth = Native::new(|cv| {
        let b = budget(&cv);
        box_once(b.depth(&cv.1).map(|()| cv.1))
    });
    let depth_sometimes = Native::new(|cv| {
        let b = budget(&cv);
        box_once(b.depth_sometimes(&cv.1).map(|()| cv.1))
    });
    let sized = Native::new(|cv| {
        let b = budget(&cv);
        box_once(b.text_size(&cv.1).map(|()| cv.1))
    });
    // `debug` and `stderr` would write payloads (and whatever a fix makes
    // of them) to dlq's stderr or log: they print nothing.
    let silent = || Native::new(|_| Box::new(std::iter::empty()));
    [
        (TICK, v(0), tick),
        ("range", v(3), range),
        (LEN, v(0), len),
        (MUL, v(2), mul),
        (DEPTH, v(0), depth),
        (DEPTH_SOMETIMES, v(0), depth_sometimes),
        (SIZED, v(0), sized),
        ("debug_empty", v(0), silent()),
        ("stderr_empty", v(0), silent()),
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
