//! In-process jq fixes, run by [jaq](https://github.com/01mf02/jaq).
//!
//! A *fix* is a jq expression that repairs a dead-lettered payload before it
//! is replayed, for example `.price |= tonumber` for a producer that sent the
//! price as a string. A fix is compiled once with [`Fix::compile`] and then
//! applied to every payload with [`Fix::apply`].
//!
//! # Why in-process instead of spawning `jq`
//!
//! * **Throughput.** A replay may touch hundreds of thousands of messages.
//!   Spawning a process per payload costs milliseconds; a compiled jaq filter
//!   runs in microseconds, and the expression is parsed and compiled exactly
//!   once.
//! * **No external dependency.** Nothing has to be installed on the host, and
//!   the behaviour does not depend on which `jq` version happens to be on the
//!   `PATH`.
//! * **Isolation.** The fix only sees the payload. It cannot read environment
//!   variables (`$ENV` and `env` are not defined, so a fix that mentions them
//!   does not compile), it cannot load modules or data files, and the
//!   local-time-zone filters (`localtime`, `strflocaltime`), which read
//!   `TZ`/`/etc/localtime`, are removed. There is no shell and no argument
//!   quoting, so a payload can never be interpreted as a command.
//! * **Typed errors.** Compile errors, runtime errors and a wrong number of
//!   outputs are reported as [`FixError`] values instead of exit codes and
//!   stderr text; `halt`/`halt_error` become [`FixError::Runtime`] instead of
//!   exiting the process.
//! * **Robustness.** [`Fix::apply`] does not panic on any payload bytes:
//!   nesting depth is bounded before jaq's recursive JSON reader sees a
//!   payload (or a string passed to `fromjson`/`tonumber`), and evaluation runs
//!   under [`std::panic::catch_unwind`] as a last line of defence.
//!
//! # Limits: a fix cannot hang or crash the process
//!
//! A fix may come from anyone allowed to preview a replay, so every fix runs
//! under a budget, and a fix that exceeds it fails for that record (which
//! stays pending) with a precise [`FixError`]:
//!
//! * **At compile time**: the text is at most [`MAX_FIX_LEN`] bytes and
//!   [`MAX_FIX_TOKENS`] tokens, and its brackets, strings and the tree jaq
//!   parses from it nest at most [`MAX_FIX_DEPTH`] levels
//!   ([`FixError::TooLong`], [`FixError::TooManyTokens`],
//!   [`FixError::TooDeep`]). jaq's parser, compiler and evaluator recurse
//!   along that tree; parsing and compiling run on a thread of their own
//!   with a large stack.
//! * **At run time, per record** ([`FixLimits`]): a time budget
//!   ([`DEFAULT_FIX_TIMEOUT`], [`FixError::TimedOut`]), a step budget
//!   ([`MAX_FIX_STEPS`], [`FixError::BudgetExceeded`]) where a step is one
//!   call of a definition, one round of `reduce`/`foreach`, one output of
//!   `range` or one value visited by `..`, a recursion bound (the thread's remaining stack,
//!   [`FixError::RecursionTooDeep`]), and a size limit on the output and on
//!   strings and arrays built by `+` and `*`
//!   ([`DEFAULT_FIX_MAX_OUTPUT_BYTES`], [`FixError::OutputTooLarge`]),
//!   which also bounds the text of values printed by `tojson`, `tostring`
//!   and string interpolation (values share their parts: `[., .]` in a loop
//!   of 60 rounds prints as 2^60 numbers), and a nesting bound on the
//!   values it builds ([`MAX_VALUE_DEPTH`], [`FixError::ValueTooDeep`]):
//!   jaq drops values recursively.
//!   So `def f: f; f`, `last(range(1e18))`, `def f: [f]; f`,
//!   `[range(1e9)] | length` and `"x" * 1e12` all fail fast instead of
//!   hanging or aborting. Once a budget is exhausted, the fix's own `try`,
//!   `?` and `//` cannot catch it: every later step fails again.
//! * `debug` and `stderr` print nothing.
//!
//! What the budget does not bound: the time of a single native filter on a
//! large value (`sort`, `test` on a long string, printing a value up to the
//! output limit), so a record can overrun its time budget by that much; and
//! comparisons of values that share their parts, which take time
//! exponential in the rounds that built them. After assignments, the
//! nesting of a value is measured once every few steps, so a value can
//! overshoot [`MAX_VALUE_DEPTH`] by what those steps add before it fails.
//!
//! # Payload semantics
//!
//! * A payload that is valid JSON (strict RFC 8259, as checked by
//!   `serde_json`) is the jq input. The single output is written as compact
//!   JSON: no whitespace, object keys in the order jaq keeps them (insertion
//!   order), numbers as written in the input where jaq kept them untouched
//!   (big integers and decimals keep their exact digits), computed floats
//!   with an exact integral value without a fraction (`4 / 2` is `2`, as in
//!   jq), and NaN/±Infinity as `null` (as `serde_json` does).
//! * A payload that is not valid JSON but is valid UTF-8 becomes a jq string.
//!   If the fix yields a string, that string's raw content is the new payload
//!   (not quoted), so malformed JSON text can be repaired with `sub`/`gsub`;
//!   any other result is written as JSON.
//! * Any other payload is rejected with [`FixError::InputNotText`].
//! * The fix must yield exactly one output.
//!
//! The jq standard library (jaq's core, `jaq-std` and `jaq-json` filters,
//! including `tonumber`, `split`, `ltrimstr`, `test`, `sub`, `gsub`,
//! `fromjson`, `tojson`, `@base64d`, ...) is available.

use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use std::time::Duration;

use jaq_core::box_iter::box_once;
use jaq_core::compile::Undefined;
use jaq_core::load::lex::Token;
use jaq_core::load::{self, Arena, File, Lexer, Loader, Parser};
use jaq_core::native::{Fun, v};
use jaq_core::{Compiler, Ctx, Exn, Vars};
use jaq_json::{Num, Val};
use serde_json::value::RawValue;

mod budget;
mod rewrite;

use budget::{Budget, Env, Exhausted};

/// The jaq data kind used by fixes: JSON values, and the budget of the
/// application in the global data.
type Data = budget::FixData;

/// jaq errors carrying jaq-json values.
type JaqError = jaq_core::Error<Val>;

/// Deepest array/object nesting that is handed to jaq's (recursive) JSON
/// reader, both for payloads and for strings parsed by `fromjson`/`tonumber`.
///
/// This is the same limit `serde_json` uses when deserializing into a value.
pub const MAX_JSON_DEPTH: usize = 128;

/// Longest [`FixError::Runtime`] message, in characters; longer ones (jq
/// errors quote the offending value, which may be a whole payload) are cut.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// How many outputs [`Fix::apply`] counts before giving up when a fix yields
/// more than one; [`FixError::MultipleOutputs::count`] never exceeds it.
pub const MAX_COUNTED_OUTPUTS: usize = 1000;

/// Longest fix text accepted, in bytes.
pub const MAX_FIX_LEN: usize = 64 * 1024;

/// How deep a fix may nest: brackets, strings and interpolations in its
/// text, and the tree jaq parses from it (where `a | b | c` and `.a.b.c`
/// count one level per step, as jaq evaluates them).
///
/// Real fixes nest a dozen levels; the bound keeps jaq's recursive
/// evaluation well inside the 512 KiB of stack a tick keeps free.
pub const MAX_FIX_DEPTH: usize = 256;

/// Most tokens (operators, names, literals...) a fix may have.
///
/// jaq's parser recurses on each prefix operator and keyword, and on each
/// `|` of a chain, before the depth of the result can be measured; this
/// bounds that recursion. Real fixes have a few dozen tokens.
pub const MAX_FIX_TOKENS: usize = 8192;

/// How deep a value built by a fix may nest (arrays and objects).
///
/// jaq drops, prints and compares values recursively, so a deeper value
/// could overflow the stack; payloads nest at most [`MAX_JSON_DEPTH`].
pub const MAX_VALUE_DEPTH: usize = 512;

/// Default time budget of a fix, per record.
pub const DEFAULT_FIX_TIMEOUT: Duration = Duration::from_millis(1000);

/// Longest time budget [`FixLimits::validate`] accepts.
pub const MAX_FIX_TIMEOUT: Duration = Duration::from_secs(60);

/// Default limit on the size of a fix's output, and of the strings and
/// arrays it builds with `+` and `*` (bytes, or elements for arrays).
pub const DEFAULT_FIX_MAX_OUTPUT_BYTES: usize = 16 * 1024 * 1024;

/// Largest output limit [`FixLimits::validate`] accepts.
pub const MAX_FIX_OUTPUT_BYTES: usize = 1024 * 1024 * 1024;

/// Default step budget of a fix, per record: calls of definitions, rounds
/// of `reduce`/`foreach` and outputs of `range`. Fixing a payload of a few
/// thousand values takes a few thousand steps.
pub const MAX_FIX_STEPS: u64 = 2_000_000;

/// Stack of the thread that parses and compiles a fix: jaq's parser
/// recurses once per prefix operator, keyword or `|`, and a fix of
/// [`MAX_FIX_TOKENS`] tokens takes about 70 MiB of it in a debug build
/// before its depth can be measured (far less optimised). Only the pages
/// touched are used.
const COMPILE_STACK: usize = 256 * 1024 * 1024;

/// Native filters removed from the standard library.
///
/// * `env` would expose the process environment (secrets).
/// * `localtime` and `strflocaltime` read `TZ` and `/etc/localtime`.
/// * `fromjson` is replaced by a depth-checked version (see [`fromjson`]).
/// * `range/3` is replaced by one that charges the budget.
const REMOVED_FILTERS: &[&str] = &["env", "localtime", "strflocaltime", "fromjson", "range"];

/// What a fix may spend on one record; see the [module
/// documentation](self#limits-a-fix-cannot-hang-or-crash-the-process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixLimits {
    /// Time budget per record.
    pub timeout: Duration,
    /// Largest output, in bytes; also the longest string (bytes) or array
    /// (elements) `+` and `*` may build.
    pub max_output_bytes: usize,
    /// Step budget per record.
    pub max_steps: u64,
}

impl Default for FixLimits {
    fn default() -> Self {
        FixLimits {
            timeout: DEFAULT_FIX_TIMEOUT,
            max_output_bytes: DEFAULT_FIX_MAX_OUTPUT_BYTES,
            max_steps: MAX_FIX_STEPS,
        }
    }
}

impl FixLimits {
    /// Checks limits given by a user.
    ///
    /// # Errors
    ///
    /// [`FixError::InvalidLimits`] for a timeout of 0 or above
    /// [`MAX_FIX_TIMEOUT`], an output limit of 0 or above
    /// [`MAX_FIX_OUTPUT_BYTES`], or a step budget of 0.
    pub fn validate(&self) -> Result<(), FixError> {
        let reason = if self.timeout.is_zero() || self.timeout > MAX_FIX_TIMEOUT {
            format!(
                "the fix timeout must be from 1 to {} ms, got {} ms",
                MAX_FIX_TIMEOUT.as_millis(),
                self.timeout.as_millis()
            )
        } else if self.max_output_bytes == 0 || self.max_output_bytes > MAX_FIX_OUTPUT_BYTES {
            format!(
                "the fix output limit must be from 1 to {MAX_FIX_OUTPUT_BYTES} bytes, got {}",
                self.max_output_bytes
            )
        } else if self.max_steps == 0 {
            "the fix step budget must be at least 1".to_owned()
        } else {
            return Ok(());
        };
        Err(FixError::InvalidLimits { reason })
    }
}

/// A compiled jq expression that repairs a dead-lettered payload.
///
/// Compile once with [`Fix::compile`], then call [`Fix::apply`] for each
/// payload. `Fix` is `Send + Sync`, so one compiled fix can be shared (for
/// example in an `Arc`) by all replay workers.
pub struct Fix {
    /// The compiled filter.
    filter: jaq_core::Filter<Data>,
    /// The source text, as given to [`Fix::compile`].
    expr: String,
    /// The budget of each application.
    limits: FixLimits,
}

// The replayer shares fixes across threads; fail the build if jaq ever stops
// allowing that. (The compiled filter holds only terms, strings and function
// pointers; jq values, which use `Rc`, exist only during `apply`.)
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Fix>();
};

impl std::fmt::Debug for Fix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fix")
            .field("expr", &self.expr)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// Why a fix could not be compiled or applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FixError {
    /// The expression does not parse or refers to undefined filters or
    /// variables.
    #[error("cannot compile fix `{expr}`: {errors}")]
    Compile {
        /// The expression as given.
        expr: String,
        /// Every error reported by jaq, one per line, each prefixed by its
        /// `line:column` in the expression.
        errors: String,
    },
    /// The fix raised an error while running (`error("x")`, `"abc" |
    /// tonumber`, indexing a string with a key, `halt`, ...).
    #[error("fix failed: {message}")]
    Runtime {
        /// The jq error message (the error value, for `error(...)`), cut to
        /// [`MAX_MESSAGE_CHARS`].
        message: String,
    },
    /// The fix yielded no output (for example `empty` or a failing `select`).
    #[error("fix produced no output")]
    NoOutput,
    /// The fix yielded more than one output.
    #[error("fix produced {count} outputs, expected exactly one")]
    MultipleOutputs {
        /// Number of outputs, counted up to [`MAX_COUNTED_OUTPUTS`].
        count: usize,
    },
    /// The payload is neither valid JSON nor valid UTF-8 text.
    #[error("payload is neither JSON nor UTF-8 text")]
    InputNotText,
    /// The payload is valid JSON but nests arrays/objects deeper than
    /// [`MAX_JSON_DEPTH`].
    #[error("payload nests deeper than {limit} levels")]
    InputTooDeep {
        /// The nesting limit, [`MAX_JSON_DEPTH`].
        limit: usize,
    },
    /// The expression is longer than [`MAX_FIX_LEN`] bytes.
    #[error("fix is {len} bytes long; the limit is {limit}")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_FIX_LEN`].
        limit: usize,
    },
    /// The expression nests deeper than [`MAX_FIX_DEPTH`] levels.
    #[error("fix nests deeper than {limit} levels{}", at.as_deref().map(|at| format!(" (at {at})")).unwrap_or_default())]
    TooDeep {
        /// [`MAX_FIX_DEPTH`].
        limit: usize,
        /// `line:column` where the text crosses the limit, when known.
        at: Option<String>,
    },
    /// The expression has more than [`MAX_FIX_TOKENS`] tokens.
    #[error("fix has {tokens} tokens; the limit is {limit}")]
    TooManyTokens {
        /// How many it has.
        tokens: usize,
        /// [`MAX_FIX_TOKENS`].
        limit: usize,
    },
    /// The fix recursed deeper than the stack allows (`def f: [f]; f`).
    #[error("fix recursed too deep (the stack is nearly exhausted)")]
    RecursionTooDeep,
    /// The fix took more steps than its budget (`def f: f; f`).
    #[error("fix exceeded its budget of {steps} steps")]
    BudgetExceeded {
        /// The step budget, [`FixLimits::max_steps`].
        steps: u64,
    },
    /// The fix ran longer than its time budget.
    #[error("fix timed out after {timeout_ms} ms")]
    TimedOut {
        /// The time budget, [`FixLimits::timeout`], in milliseconds.
        timeout_ms: u128,
    },
    /// The output, or a string or array built by the fix, is larger than
    /// [`FixLimits::max_output_bytes`].
    #[error("fix output is larger than {limit} bytes")]
    OutputTooLarge {
        /// The limit, [`FixLimits::max_output_bytes`].
        limit: usize,
    },
    /// The fix built a value nested deeper than [`MAX_VALUE_DEPTH`].
    #[error("fix built a value nested deeper than {limit} levels")]
    ValueTooDeep {
        /// [`MAX_VALUE_DEPTH`].
        limit: usize,
    },
    /// [`FixLimits`] out of range.
    #[error("{reason}")]
    InvalidLimits {
        /// What is wrong.
        reason: String,
    },
    /// The output cannot be written as JSON (a byte string made by
    /// `tobytes`, or an object key that is not a string).
    #[error("fix output is not representable as JSON: {reason}")]
    OutputNotJson {
        /// What could not be represented.
        reason: String,
    },
}

impl Fix {
    /// Parses and compiles a jq expression, with the default [`FixLimits`].
    ///
    /// # Errors
    ///
    /// [`FixError::TooLong`] or [`FixError::TooDeep`] for an expression
    /// beyond [`MAX_FIX_LEN`] or [`MAX_FIX_DEPTH`]; [`FixError::Compile`]
    /// with every lex, parse and compile error jaq reports (syntax errors,
    /// undefined filters or variables, module or data imports,
    /// `$ENV`/`env`).
    pub fn compile(expr: &str) -> Result<Fix, FixError> {
        if expr.len() > MAX_FIX_LEN {
            return Err(FixError::TooLong {
                len: expr.len(),
                limit: MAX_FIX_LEN,
            });
        }
        if let Some(offset) = rewrite::nesting_exceeds(expr, MAX_FIX_DEPTH) {
            return Err(FixError::TooDeep {
                limit: MAX_FIX_DEPTH,
                at: Some(line_column(expr, offset)),
            });
        }
        // jaq's parser and compiler recurse; give them a stack of their own
        // that no text of MAX_FIX_LEN bytes can exhaust.
        std::thread::scope(|scope| {
            let compiler = std::thread::Builder::new()
                .name("dlq-fix-compile".to_owned())
                .stack_size(COMPILE_STACK)
                .spawn_scoped(scope, || compile_on_this_thread(expr));
            let internal = |what: String| FixError::Compile {
                expr: expr.to_owned(),
                errors: what,
            };
            match compiler {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(internal("internal error in the jq compiler".into()))),
                Err(e) => Err(internal(format!("cannot start the jq compiler: {e}"))),
            }
        })
    }

    /// The same fix with other limits.
    #[must_use]
    pub fn with_limits(mut self, limits: FixLimits) -> Fix {
        self.limits = limits;
        self
    }

    /// The limits each application runs under.
    #[must_use]
    pub fn limits(&self) -> &FixLimits {
        &self.limits
    }

    /// The jq expression this fix was compiled from.
    #[must_use]
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Runs the fix on one payload and returns the new payload.
    ///
    /// See the [module documentation](self) for how payloads are read and
    /// written, and for the budget each application runs under.
    ///
    /// # Errors
    ///
    /// [`FixError::InputNotText`] or [`FixError::InputTooDeep`] for a payload
    /// that cannot be read; [`FixError::Runtime`] if the fix raises an error;
    /// [`FixError::NoOutput`] or [`FixError::MultipleOutputs`] unless it
    /// yields exactly one value; [`FixError::OutputNotJson`] if that value
    /// has no JSON form; [`FixError::TimedOut`],
    /// [`FixError::BudgetExceeded`], [`FixError::RecursionTooDeep`] or
    /// [`FixError::OutputTooLarge`] if it exceeds its budget.
    pub fn apply(&self, payload: &[u8]) -> Result<Vec<u8>, FixError> {
        catch_unwind(AssertUnwindSafe(|| self.apply_inner(payload))).unwrap_or_else(|panic| {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(FixError::Runtime {
                message: shorten(
                    format!("internal error in jq evaluation: {detail}"),
                    MAX_MESSAGE_CHARS,
                ),
            })
        })
    }

    fn apply_inner(&self, payload: &[u8]) -> Result<Vec<u8>, FixError> {
        let limits = &self.limits;
        let budget = Budget::new(limits.max_steps, limits.timeout, limits.max_output_bytes);
        let result = self.apply_budgeted(payload, &budget);
        // Whatever the fix made of a budget error (caught it, turned it
        // into an output), the record failed for the budget.
        match budget.exhausted() {
            None => result,
            Some(Exhausted::Steps) => Err(FixError::BudgetExceeded {
                steps: limits.max_steps,
            }),
            Some(Exhausted::Time) => Err(FixError::TimedOut {
                timeout_ms: limits.timeout.as_millis(),
            }),
            Some(Exhausted::Stack) => Err(FixError::RecursionTooDeep),
            Some(Exhausted::Output) => Err(FixError::OutputTooLarge {
                limit: limits.max_output_bytes,
            }),
            Some(Exhausted::Depth) => Err(FixError::ValueTooDeep {
                limit: MAX_VALUE_DEPTH,
            }),
        }
    }

    fn apply_budgeted(&self, payload: &[u8], budget: &Budget) -> Result<Vec<u8>, FixError> {
        let limit = self.limits.max_output_bytes;
        let too_large = || {
            budget.output_too_large();
            FixError::OutputTooLarge { limit }
        };
        let (input, is_text) = read_payload(payload)?;
        let output = self.run(input, budget)?;
        let bytes = match output {
            Val::TStr(s) | Val::BStr(s) if is_text => s.to_vec(),
            value => {
                let mut out = String::new();
                write_json(&value, &mut out, limit).map_err(|e| match e {
                    FixError::OutputTooLarge { .. } => too_large(),
                    e => e,
                })?;
                out.into_bytes()
            }
        };
        if bytes.len() > limit {
            return Err(too_large());
        }
        Ok(bytes)
    }

    /// Runs the filter and insists on exactly one output.
    fn run(&self, input: Val, budget: &Budget) -> Result<Val, FixError> {
        let env = Env {
            lut: &self.filter.lut,
            budget,
        };
        let ctx = Ctx::<Data>::new(env, Vars::new([]));
        let mut outputs = self.filter.id.run((ctx, input));
        let first = match outputs.next() {
            None => return Err(FixError::NoOutput),
            Some(result) => result.map_err(runtime_error)?,
        };
        let mut count = 1;
        for result in outputs {
            result.map_err(runtime_error)?;
            count += 1;
            if count >= MAX_COUNTED_OUTPUTS {
                break;
            }
        }
        if count == 1 {
            Ok(first)
        } else {
            Err(FixError::MultipleOutputs { count })
        }
    }
}

/// Compiles a fix whose length and bracket nesting have been checked, on a
/// thread with a large stack.
fn compile_on_this_thread(expr: &str) -> Result<Fix, FixError> {
    let compile_error = |errors: Vec<String>| FixError::Compile {
        expr: expr.to_owned(),
        errors: errors.join("\n"),
    };
    let std_defs = || {
        jaq_core::defs()
            .chain(jaq_std::defs())
            .chain(jaq_json::defs())
    };

    // Before anything parses: lexing recurses only along the brackets,
    // which the caller checked; parsing recurses along tokens.
    if let Ok(tokens) = Lexer::new(expr).lex() {
        let count = rewrite::token_count(&tokens);
        if count > MAX_FIX_TOKENS {
            return Err(FixError::TooManyTokens {
                tokens: count,
                limit: MAX_FIX_TOKENS,
            });
        }
    }

    // jaq's own loading, for its error messages, and to refuse modules.
    {
        let arena = Arena::default();
        let program = File {
            code: expr,
            path: (),
        };
        let modules = Loader::new(std_defs())
            .load(&arena, program)
            .map_err(|errs| {
                let msgs = errs
                    .iter()
                    .flat_map(|(file, err)| load_error_messages(file.code, err));
                compile_error(msgs.collect())
            })?;
        // `import "f" as $x;` binds a data file to a global variable. The
        // loader only records such imports; refuse them, as fixes get no
        // files (and running with the variable unbound would panic in jaq).
        load::import(&modules, |_| {
            Err("data files are not available to fixes".into())
        })
        .map_err(|errs| {
            let msgs = errs
                .iter()
                .flat_map(|(file, err)| load_error_messages(file.code, err));
            compile_error(msgs.collect())
        })?;
    }

    // The term again, to measure it and put the budget into it.
    let tokens = Lexer::new(expr)
        .lex()
        .map_err(|_| compile_error(vec!["the fix does not lex".to_owned()]))?;
    let term = Parser::new(&tokens).parse(|p| p.term()).map_err(|errs| {
        let msgs = errs.iter().map(|(expect, found)| {
            let found = Token::opt_as_str(*found, expr);
            let msg = format!("expected {}, {}", expect.as_str(), found_text(found));
            at(expr, found, &msg)
        });
        compile_error(msgs.collect())
    })?;
    if rewrite::depth(&term) > MAX_FIX_DEPTH {
        return Err(FixError::TooDeep {
            limit: MAX_FIX_DEPTH,
            at: None,
        });
    }

    // The program: the standard library and the user's term, each
    // definition under the budget; the main module just calls the term.
    let prelude = std_defs()
        .map(|def| rewrite::budget_def(rewrite::shorten(def)))
        .chain([rewrite::main_def(term)]);
    let arena = Arena::default();
    let program = File {
        code: rewrite::MAIN,
        path: (),
    };
    let modules = Loader::new(prelude).load(&arena, program).map_err(|errs| {
        let msgs = errs
            .iter()
            .flat_map(|(_, err)| load_error_messages(expr, err));
        compile_error(msgs.collect())
    })?;
    let filter = Compiler::default()
        .with_funs(funs())
        .compile(modules)
        .map_err(|errs| {
            let msgs = errs.iter().flat_map(|(_, errs)| {
                errs.iter().map(|(name, undefined)| {
                    let what = match undefined {
                        Undefined::Filter(arity) => format!("filter `{name}/{arity}`"),
                        other => format!("{} `{name}`", other.as_str()),
                    };
                    // Names point into the user's text (or the library's).
                    at(expr, name, &format!("undefined {what}"))
                })
            });
            compile_error(msgs.collect())
        })?;

    Ok(Fix {
        filter,
        expr: expr.to_owned(),
        limits: FixLimits::default(),
    })
}

/// `line:column` (1-based) of a byte offset.
fn line_column(code: &str, offset: usize) -> String {
    let offset = (0..=offset.min(code.len()))
        .rev()
        .find(|&i| code.is_char_boundary(i))
        .unwrap_or(0);
    let before = &code[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    format!("{line}:{column}")
}

/// The native filters available to fixes.
fn funs() -> impl Iterator<Item = Fun<Data>> {
    jaq_core::funs::<Data>()
        .chain(jaq_std::funs::<Data>())
        .chain(jaq_json::funs::<Data>())
        .filter(|(name, _, _)| !REMOVED_FILTERS.contains(name))
        .chain([jaq_core::native::run::<Data>(("fromjson", v(0), |cv| {
            fromjson(cv.1)
        }))])
        .chain(budget::natives())
}

/// `fromjson` (also used by `tonumber`), refusing too deeply nested text.
///
/// jaq's JSON reader is recursive, so a long run of `[` in a payload string
/// would otherwise overflow the stack of `"[[[[...." | tonumber`.
fn fromjson<'a>(input: Val) -> jaq_core::ValXs<'a, Val> {
    let bytes = match &input {
        Val::TStr(s) => s.clone(),
        _ => return box_once(Err(Exn::from(JaqError::typ(input, "string")))),
    };
    let fail = |reason: &dyn std::fmt::Display| {
        let shown = shorten(input.to_string(), 100);
        Exn::from(JaqError::str(format_args!(
            "cannot parse {shown} as JSON: {reason}"
        )))
    };
    if exceeds_depth(&bytes, MAX_JSON_DEPTH) {
        let reason = format!("nesting deeper than {MAX_JSON_DEPTH} levels");
        return box_once(Err(fail(&reason)));
    }
    // Stop at the first error: the reader does not advance past it.
    let mut results = Vec::new();
    for result in jaq_json::read::parse_many(&bytes) {
        match result {
            Ok(value) => results.push(Ok(value)),
            Err(e) => {
                results.push(Err(fail(&e)));
                break;
            }
        }
    }
    Box::new(results.into_iter())
}

/// Turns a payload into a jq input; the flag tells whether it was text.
fn read_payload(payload: &[u8]) -> Result<(Val, bool), FixError> {
    if serde_json::from_slice::<&RawValue>(payload).is_ok() {
        if exceeds_depth(payload, MAX_JSON_DEPTH) {
            return Err(FixError::InputTooDeep {
                limit: MAX_JSON_DEPTH,
            });
        }
        // jaq reads a superset of JSON, so this only fails for the odd
        // string serde_json lets through and jaq does not (for example a
        // lone surrogate escape); such a payload is treated as text.
        if let Ok(value) = jaq_json::read::parse_single(payload) {
            return Ok((value, false));
        }
    }
    match std::str::from_utf8(payload) {
        Ok(text) => Ok((Val::from(text.to_owned()), true)),
        Err(_) => Err(FixError::InputNotText),
    }
}

/// Whether JSON(-like) text nests arrays/objects deeper than `limit`.
///
/// Brackets inside strings and `#` comments (which jaq's reader accepts)
/// are not counted. Malformed text may be misjudged, but only where the
/// reader would stop with an error before reaching that depth.
fn exceeds_depth(text: &[u8], limit: usize) -> bool {
    let mut depth = 0usize;
    let mut bytes = text.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'"' => {
                while let Some(&c) = bytes.next() {
                    match c {
                        b'\\' => {
                            bytes.next();
                        }
                        b'"' => break,
                        _ => {}
                    }
                }
            }
            b'#' => {
                for &c in bytes.by_ref() {
                    if c == b'\n' {
                        break;
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// Converts a jq exception into [`FixError::Runtime`].
fn runtime_error(exn: Exn<'_, Val>) -> FixError {
    // Never use `jaq_core::unwrap_valr`: it exits the process on `halt`.
    let message = match exn.get_err() {
        Ok(err) => match err.into_val() {
            Val::TStr(s) => {
                String::from_utf8_lossy(&s[..s.len().min(4 * MAX_MESSAGE_CHARS)]).into_owned()
            }
            // Printed up to a bound: a value can share its parts and print
            // as terabytes.
            other => bounded_text(&other, 4 * MAX_MESSAGE_CHARS),
        },
        Err(exn) => match exn.get_halt() {
            Ok(code) => format!("halt with exit code {code}"),
            Err(_) => "internal jq control flow escaped".to_owned(),
        },
    };
    FixError::Runtime {
        message: shorten(message, MAX_MESSAGE_CHARS),
    }
}

/// The text of a value, cut after about `max_bytes` bytes.
fn bounded_text(v: &Val, max_bytes: usize) -> String {
    struct Capped(String, usize);
    impl std::fmt::Write for Capped {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = self.1.saturating_sub(self.0.len());
            let cut = (0..=room.min(s.len()))
                .rev()
                .find(|&i| s.is_char_boundary(i))
                .unwrap_or(0);
            self.0.push_str(&s[..cut]);
            if cut < s.len() {
                return Err(std::fmt::Error);
            }
            Ok(())
        }
    }
    let mut out = Capped(String::new(), max_bytes);
    let _ = std::fmt::Write::write_fmt(&mut out, format_args!("{v}"));
    out.0
}

/// Cuts `text` to `max_chars` characters, marking the cut with `…`.
fn shorten(mut text: String, max_chars: usize) -> String {
    if let Some((cut, _)) = text.char_indices().nth(max_chars) {
        text.truncate(cut);
        text.push('…');
    }
    text
}

/// Writes a jq value as compact JSON, like `serde_json::to_vec`, failing
/// with [`FixError::OutputTooLarge`] past `limit` bytes.
fn write_json(value: &Val, out: &mut String, limit: usize) -> Result<(), FixError> {
    // Values share their parts, so a small value can print huge: stop at
    // the limit instead of exhausting memory.
    if out.len() > limit {
        return Err(FixError::OutputTooLarge { limit });
    }
    match value {
        Val::Null => out.push_str("null"),
        Val::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::Num(n) => write_num(n, out),
        Val::TStr(s) => write_str(&String::from_utf8_lossy(s), out),
        Val::BStr(_) => {
            return Err(FixError::OutputNotJson {
                reason: format!("byte string {value}"),
            });
        }
        Val::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out, limit)?;
            }
            out.push(']');
        }
        Val::Obj(entries) => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match key {
                    Val::TStr(k) => write_str(&String::from_utf8_lossy(k), out),
                    _ => {
                        return Err(FixError::OutputNotJson {
                            reason: format!("object key {key} is not a string"),
                        });
                    }
                }
                out.push(':');
                write_json(item, out, limit)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// Writes a number.
///
/// Integers, and decimals that jaq kept as their input text, are written as
/// they are. Computed floats with an integral value that is exactly
/// representable (|x| ≤ 2^53) are written without a fraction, as jq does, so
/// that `4 / 2` gives `2`, which integer-typed consumers accept; other finite
/// floats get the shortest round-trip form (ryu, like `serde_json`);
/// NaN and ±Infinity become `null`.
fn write_num(n: &Num, out: &mut String) {
    match n {
        Num::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Num::BigInt(_) => {
            let _ = write!(out, "{n}");
        }
        Num::Dec(text) if is_json_number(text) => out.push_str(text),
        Num::Dec(text) => write_float(text.parse().unwrap_or(f64::NAN), out),
        Num::Float(f) => write_float(*f, out),
    }
}

/// Writes a float as described for [`write_num`].
fn write_float(f: f64, out: &mut String) {
    /// 2^53: every integer up to here is an exact `f64`.
    const EXACT_INT: f64 = 9_007_199_254_740_992.0;
    if !f.is_finite() {
        out.push_str("null");
    } else if f.fract() == 0.0 && f.abs() <= EXACT_INT {
        // Exact: the value is integral and within ±2^53.
        #[allow(clippy::cast_possible_truncation)]
        let i = f as i64;
        let _ = write!(out, "{i}");
    } else {
        // jaq formats finite floats with ryu, as serde_json does.
        let _ = write!(out, "{}", Num::Float(f));
    }
}

/// Whether `text` matches the JSON number grammar.
fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = usize::from(b.first() == Some(&b'-'));
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i - start
    };
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            digits(&mut i);
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Writes a JSON string literal, escaping like `serde_json`.
fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Messages for one module's lex, parse or load errors.
fn load_error_messages(code: &str, err: &load::Error<&str>) -> Vec<String> {
    use jaq_core::load::lex::Expect as Lex;
    match err {
        load::Error::Io(errs) => errs
            .iter()
            .map(|(path, msg)| at(code, path, &format!("cannot load `{path}`: {msg}")))
            .collect(),
        load::Error::Lex(errs) => errs
            .iter()
            .map(|(expect, found)| {
                let expected = match expect {
                    Lex::Digit => "digit",
                    Lex::Ident => "identifier",
                    Lex::Delim("(") => "closing parenthesis",
                    Lex::Delim("[") => "closing bracket",
                    Lex::Delim("{") => "closing brace",
                    Lex::Delim("\"") => "closing quote",
                    Lex::Delim(_) => "closing delimiter",
                    Lex::Escape => "string escape sequence",
                    Lex::Unicode => "4-digit hexadecimal UTF-8 code point",
                    _ => "token",
                };
                at(
                    code,
                    found,
                    &format!("expected {expected}, {}", found_text(found)),
                )
            })
            .collect(),
        load::Error::Parse(errs) => errs
            .iter()
            .map(|(expect, found)| {
                let msg = format!("expected {}, {}", expect.as_str(), found_text(found));
                at(code, found, &msg)
            })
            .collect(),
    }
}

/// "found `tok`" for an offending token or input, shortened.
fn found_text(found: &str) -> String {
    if found.is_empty() {
        "found end of input".to_owned()
    } else {
        format!("found `{}`", shorten(found.to_owned(), 20))
    }
}

/// Prefixes `msg` with the `line:column` (1-based) of `part` inside `code`,
/// if `part` is a slice of `code`.
fn at(code: &str, part: &str, msg: &str) -> String {
    let start = (part.as_ptr() as usize).checked_sub(code.as_ptr() as usize);
    match start.filter(|&s| s <= code.len() && code.is_char_boundary(s)) {
        Some(offset) => {
            let before = &code[..offset];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[line_start..].chars().count() + 1;
            format!("{line}:{column}: {msg}")
        }
        None => msg.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies with the default limits, except a time budget no busy test
    /// machine exhausts: tests of the other limits must not turn into
    /// timeouts under load (the time budget has tests of its own).
    fn apply(expr: &str, payload: &str) -> Result<String, FixError> {
        let limits = FixLimits {
            timeout: MAX_FIX_TIMEOUT,
            ..FixLimits::default()
        };
        let fix = Fix::compile(expr)
            .expect("fix compiles")
            .with_limits(limits);
        fix.apply(payload.as_bytes())
            .map(|out| String::from_utf8(out).expect("UTF-8 output"))
    }

    #[test]
    fn string_price_becomes_number() {
        let out = apply(
            ".price |= tonumber",
            r#"{"market_id":"0xab","price":"0.42"}"#,
        );
        assert_eq!(out.unwrap(), r#"{"market_id":"0xab","price":0.42}"#);
    }

    #[test]
    fn integers_stay_integers() {
        let out = apply(".n |= tonumber | .m += 1", r#"{"n":"1812","m":1811}"#);
        assert_eq!(out.unwrap(), r#"{"n":1812,"m":1812}"#);
    }

    #[test]
    fn untouched_numbers_keep_their_digits() {
        let payload = r#"{"big":12345678901234567890,"neg":-98765432109876543210,"dec":0.10,"exp":1E400,"f":1.0,"x":"y"}"#;
        let out = apply(".x = \"z\"", payload).unwrap();
        assert_eq!(
            out,
            r#"{"big":12345678901234567890,"neg":-98765432109876543210,"dec":0.10,"exp":1E400,"f":1.0,"x":"z"}"#
        );
    }

    #[test]
    fn big_integer_arithmetic_is_exact() {
        let out = apply(".big + 1", r#"{"big":12345678901234567890}"#);
        assert_eq!(out.unwrap(), "12345678901234567891");
    }

    #[test]
    fn computed_floats() {
        let out = apply(
            "[.a / 2, .a / 3, .a * 1e20, .b + 1, .b * 0.5]",
            r#"{"a":4,"b":1.0}"#,
        );
        assert_eq!(out.unwrap(), "[2,1.3333333333333333,4e20,2,0.5]");
    }

    #[test]
    fn non_finite_numbers_become_null() {
        assert_eq!(
            apply("[nan, infinite, -infinite]", "null").unwrap(),
            "[null,null,null]"
        );
    }

    #[test]
    fn output_is_compact_and_keeps_key_order() {
        let out = apply(
            ".",
            "{ \"z\" : [1, 2],\n \"a\" : {\"k\": \"v\\n\\u0001\\\"\"} }",
        );
        assert_eq!(out.unwrap(), r#"{"z":[1,2],"a":{"k":"v\n\u0001\""}}"#);
    }

    #[test]
    fn tags_split() {
        let out = apply(r#".tags |= split(",")"#, r#"{"id":7,"tags":"a,b,c"}"#);
        assert_eq!(out.unwrap(), r#"{"id":7,"tags":["a","b","c"]}"#);
    }

    #[test]
    fn ltrimstr_is_available() {
        let out = apply(r#".id |= ltrimstr("0x")"#, r#"{"id":"0xab"}"#);
        assert_eq!(out.unwrap(), r#"{"id":"ab"}"#);
    }

    #[test]
    fn sub_repairs_malformed_json_text() {
        let fix = r#"sub("\"price\": *\"(?<p>[0-9.]+)\""; "\"price\": \(.p)")"#;
        // Trailing comma: not JSON, so the fix sees the raw text.
        let payload = r#"{"market_id": "0xab", "price": "0.42",}"#;
        let out = apply(fix, payload).unwrap();
        assert_eq!(out, r#"{"market_id": "0xab", "price": 0.42,}"#);
    }

    #[test]
    fn text_input_can_be_parsed_after_repair() {
        let fix = r#"sub(",}$"; "}") | fromjson | .price |= tonumber"#;
        let out = apply(fix, r#"{"price":"0.42",}"#);
        assert_eq!(out.unwrap(), r#"{"price":0.42}"#);
    }

    #[test]
    fn non_string_result_of_text_input_is_json() {
        assert_eq!(apply("length", "not json").unwrap(), "8");
        assert_eq!(apply("[.]", "not json").unwrap(), r#"["not json"]"#);
    }

    #[test]
    fn json_string_result_of_json_input_stays_quoted() {
        assert_eq!(apply(".a", r#"{"a":"x"}"#).unwrap(), r#""x""#);
    }

    #[test]
    fn empty_is_no_output() {
        assert!(matches!(apply("empty", "{}"), Err(FixError::NoOutput)));
        assert!(matches!(
            apply("select(.a)", r#"{"a":false}"#),
            Err(FixError::NoOutput)
        ));
    }

    #[test]
    fn iterating_an_array_is_multiple_outputs() {
        let out = apply(".[]", "[1,2,3]");
        assert!(matches!(out, Err(FixError::MultipleOutputs { count: 3 })));
    }

    #[test]
    fn endless_outputs_are_counted_up_to_the_limit() {
        let out = apply("repeat(.)", "1");
        assert!(matches!(
            out,
            Err(FixError::MultipleOutputs {
                count: MAX_COUNTED_OUTPUTS
            })
        ));
    }

    #[test]
    fn runtime_errors_carry_the_message() {
        match apply(r#"error("x")"#, "{}") {
            Err(FixError::Runtime { message }) => assert_eq!(message, "x"),
            other => panic!("unexpected {other:?}"),
        }
        match apply(".price |= tonumber", r#"{"price":"abc"}"#) {
            Err(FixError::Runtime { message }) => {
                assert!(message.contains("abc"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
        match apply(".a.b", r#"{"a":"s"}"#) {
            Err(FixError::Runtime { message }) => {
                assert!(message.contains("cannot index"), "{message}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn runtime_messages_are_bounded() {
        let payload = format!("{{\"a\":\"{}\"}}", "x".repeat(100_000));
        match apply(".a.b", &payload) {
            Err(FixError::Runtime { message }) => {
                assert!(message.starts_with("cannot index \"xxx"), "{message}");
                assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
                assert!(message.ends_with('…'));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(shorten("héllo".to_owned(), 2), "hé…");
        assert_eq!(shorten("héllo".to_owned(), 5), "héllo");
    }

    #[test]
    fn halt_is_an_error_not_an_exit() {
        assert!(matches!(apply("halt", "{}"), Err(FixError::Runtime { .. })));
        assert!(matches!(
            apply(r#""bye" | halt_error(1)"#, "{}"),
            Err(FixError::Runtime { .. })
        ));
    }

    #[test]
    fn compile_errors_report_all_jq_errors() {
        match Fix::compile(".a | foo(1) | $nope") {
            Err(FixError::Compile { expr, errors }) => {
                assert_eq!(expr, ".a | foo(1) | $nope");
                assert!(errors.contains("1:6: undefined filter `foo/1`"), "{errors}");
                assert!(
                    errors.contains("1:15: undefined variable `$nope`"),
                    "{errors}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        match Fix::compile(".a |") {
            Err(FixError::Compile { errors, .. }) => {
                assert!(
                    errors.contains("expected term, found end of input"),
                    "{errors}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
        match Fix::compile("[.a") {
            Err(FixError::Compile { errors, .. }) => {
                assert!(errors.contains("expected closing bracket"), "{errors}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn modules_cannot_be_loaded() {
        match Fix::compile(r#"include "secrets"; ."#) {
            Err(FixError::Compile { errors, .. }) => {
                assert!(errors.contains("cannot load `secrets`"), "{errors}");
            }
            other => panic!("unexpected {other:?}"),
        }
        match Fix::compile(r#"import "data" as $d; $d"#) {
            Err(FixError::Compile { errors, .. }) => {
                assert!(errors.contains("cannot load `data`"), "{errors}");
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn non_utf8_input_is_rejected() {
        let fix = Fix::compile(".").unwrap();
        let out = fix.apply(&[0xff, 0xfe, b'{', 0x80]);
        assert!(matches!(out, Err(FixError::InputNotText)));
        // Invalid UTF-8 inside a JSON string is not JSON either.
        let out = fix.apply(b"{\"a\":\"\xff\"}");
        assert!(matches!(out, Err(FixError::InputNotText)));
    }

    #[test]
    fn environment_is_not_reachable() {
        for expr in ["$ENV", "$ENV.PATH", "env", "env.PATH", "$ENV | keys"] {
            match Fix::compile(expr) {
                Err(FixError::Compile { errors, .. }) => {
                    assert!(errors.contains("undefined"), "{expr}: {errors}");
                }
                other => panic!("{expr} compiled: {other:?}"),
            }
        }
        // Whatever else compiles must not reveal any environment value.
        let secrets: Vec<String> = std::env::vars()
            .map(|(_, value)| value)
            .filter(|value| value.len() >= 8)
            .collect();
        for expr in [
            "$__loc__",
            "localtime",
            r#"strflocaltime("%Z")"#,
            "input",
            "@sh",
        ] {
            if let Ok(fix) = Fix::compile(expr) {
                let out = format!("{:?}", fix.apply(b"0").map(String::from_utf8));
                assert!(
                    !secrets.iter().any(|s| out.contains(s.as_str())),
                    "{expr} leaked the environment: {out}"
                );
            }
        }
    }

    #[test]
    fn byte_strings_and_non_string_keys_are_not_json() {
        assert!(matches!(
            apply(r#""a" | tobytes"#, "{}"),
            Err(FixError::OutputNotJson { .. })
        ));
        assert!(matches!(
            apply("{(1): 2}", "{}"),
            Err(FixError::OutputNotJson { .. })
        ));
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let fix = Fix::compile(".").unwrap();
        assert!(matches!(
            fix.apply(deep.as_bytes()),
            Err(FixError::InputTooDeep {
                limit: MAX_JSON_DEPTH
            })
        ));
        let ok = "[".repeat(MAX_JSON_DEPTH) + &"]".repeat(MAX_JSON_DEPTH);
        assert_eq!(fix.apply(ok.as_bytes()).unwrap(), ok.as_bytes());

        let payload = format!(r#"{{"price":"{}"}}"#, "[".repeat(100_000));
        let fix = Fix::compile(".price |= tonumber").unwrap();
        assert!(matches!(
            fix.apply(payload.as_bytes()),
            Err(FixError::Runtime { .. })
        ));
        let fix = Fix::compile("fromjson").unwrap();
        assert!(matches!(
            fix.apply(&vec![b'['; 100_000]),
            Err(FixError::Runtime { .. })
        ));
    }

    #[test]
    fn fix_is_reusable_and_shareable() {
        let fix = std::sync::Arc::new(Fix::compile(".n += 1").unwrap());
        assert_eq!(fix.expr(), ".n += 1");
        let handles: Vec<_> = (0..4)
            .map(|i| {
                let fix = std::sync::Arc::clone(&fix);
                std::thread::spawn(move || {
                    let out = fix.apply(format!(r#"{{"n":{i}}}"#).as_bytes()).unwrap();
                    assert_eq!(out, format!(r#"{{"n":{}}}"#, i + 1).into_bytes());
                })
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
    }

    #[test]
    fn json_number_grammar() {
        for ok in [
            "0",
            "-0",
            "1.5",
            "1e5",
            "1E+5",
            "-0.0e-7",
            "12345678901234567890",
        ] {
            assert!(is_json_number(ok), "{ok}");
        }
        for bad in ["", "-", "01", "1.", ".5", "1e", "+1", "NaN", "1.5x"] {
            assert!(!is_json_number(bad), "{bad}");
        }
    }

    #[test]
    fn repeating_a_string_past_the_limit_is_output_too_large() {
        // jaq 3.1 panics with "capacity overflow" when repeating a string a
        // huge number of times, and aborts when the allocation fails.
        for (expr, payload) in [
            (r#""ab" * .n"#, r#"{"n":12345678901234567890}"#),
            (r#""x" * 1000000000000"#, "{}"),
            (r#".n * "x""#, r#"{"n":17000000}"#),
        ] {
            assert!(
                matches!(
                    apply(expr, payload),
                    Err(FixError::OutputTooLarge {
                        limit: DEFAULT_FIX_MAX_OUTPUT_BYTES
                    })
                ),
                "{expr}"
            );
        }
        assert_eq!(apply(r#""ab" * 3"#, "{}").unwrap(), r#""ababab""#);
        assert_eq!(apply(r#""ab" * 0"#, "{}").unwrap(), "null");
    }

    fn limits(max_steps: u64, timeout_ms: u64) -> FixLimits {
        FixLimits {
            max_steps,
            timeout: Duration::from_millis(timeout_ms),
            ..FixLimits::default()
        }
    }

    fn apply_with(limits: FixLimits, expr: &str, payload: &str) -> Result<String, FixError> {
        let fix = Fix::compile(expr)
            .expect("fix compiles")
            .with_limits(limits);
        fix.apply(payload.as_bytes())
            .map(|out| String::from_utf8(out).expect("UTF-8 output"))
    }

    #[test]
    fn unbounded_recursion_fails_as_too_deep_instead_of_overflowing() {
        // The test thread has a 2 MiB stack, like tokio's workers.
        for expr in [
            "def f: [f]; f",
            "def f: 1 + f; f",
            "def f: try [f] catch [f]; f",
            // The fix's own `try` cannot catch it.
            "def f: try f catch f; f",
        ]
        .map(str::to_owned)
        .into_iter()
        // Found by `never_panics`: deep constructions (which call no
        // definition) before the recursion starts.
        .chain([format!(
            "{}[(def f: [f]; f) + (def f: f; f)]{}",
            "{a: ".repeat(213),
            "}".repeat(213)
        )]) {
            let expr = expr.as_str();
            assert!(
                matches!(apply(expr, "{}"), Err(FixError::RecursionTooDeep)),
                "{expr}: {:?}",
                apply(expr, "{}")
            );
        }
    }

    #[test]
    fn endless_loops_exhaust_the_step_budget() {
        for expr in [
            "def f: f; f",
            "last(range(1e18))",
            "[range(1e9)] | length",
            "until(false; .)",
            "[repeat(1)] | length",
            "reduce range(1e18) as $i (0; $i)",
        ] {
            assert!(
                matches!(
                    apply_with(limits(100_000, 600_000), expr, "0"),
                    Err(FixError::BudgetExceeded { steps: 100_000 })
                ),
                "{expr}"
            );
        }
    }

    #[test]
    fn endless_loops_time_out() {
        for expr in ["def f: f; f", "last(range(1e18))"] {
            assert!(
                matches!(
                    apply_with(limits(u64::MAX, 50), expr, "0"),
                    Err(FixError::TimedOut { timeout_ms: 50 })
                ),
                "{expr}"
            );
        }
    }

    #[test]
    fn the_default_budget_stops_an_endless_loop() {
        assert!(matches!(
            apply("def f: f; f", "0"),
            Err(FixError::BudgetExceeded { .. } | FixError::TimedOut { .. })
        ));
    }

    #[test]
    fn an_exhausted_budget_cannot_be_caught_by_the_fix() {
        for expr in [
            r#"try (def f: f; f) catch "caught""#,
            r#"(def f: f; f)? // "alternative""#,
            r#"[.[]? | try (def f: f; f) catch empty] | length"#,
        ] {
            assert!(
                matches!(
                    apply_with(limits(10_000, 600_000), expr, "[1]"),
                    Err(FixError::BudgetExceeded { steps: 10_000 })
                ),
                "{expr}"
            );
        }
    }

    #[test]
    fn values_growing_past_the_output_limit_fail() {
        let small = FixLimits {
            max_output_bytes: 1000,
            ..FixLimits::default()
        };
        for expr in [
            r#"reduce range(40) as $i ("x"; . + .)"#,
            r#"reduce range(40) as $i ("x"; . += .)"#,
            "reduce range(40) as $i ([1]; . + .)",
            // Shared parts: 2^30 leaves in 30 steps.
            "reduce range(30) as $i (1; [., .])",
            r#""x" * 1001"#,
            r#"[range(1001)] | map(0)"#,
        ] {
            assert!(
                matches!(
                    apply_with(small, expr, "{}"),
                    Err(FixError::OutputTooLarge { limit: 1000 })
                ),
                "{expr}: {:?}",
                apply_with(small, expr, "{}")
            );
        }
        let text = "x".repeat(2000);
        assert!(matches!(
            apply_with(small, ".", &text),
            Err(FixError::OutputTooLarge { limit: 1000 })
        ));
    }

    #[test]
    fn values_nested_past_the_limit_fail_instead_of_overflowing_when_dropped() {
        // Each of these builds a value 100,000 levels deep in as many
        // steps; jaq would overflow the stack dropping it.
        for expr in [
            "reduce range(100000) as $i (.; [.]) | length",
            "reduce range(100000) as $i (.; {a: .}) | length",
            "def f($n; $a): if $n == 0 then $a else f($n - 1; [$a]) end; f(100000; 1) | length",
            "reduce range(100000) as $i (1; . as $x | {} | .a = $x) | length",
            "[1] | until(false; group_by(.))",
        ] {
            assert!(
                matches!(
                    apply(expr, "1"),
                    Err(FixError::ValueTooDeep {
                        limit: MAX_VALUE_DEPTH
                    })
                ),
                "{expr}: {:?}",
                apply(expr, "1")
            );
        }
        let deep = format!(
            "{}1{}",
            "[".repeat(MAX_JSON_DEPTH),
            "]".repeat(MAX_JSON_DEPTH)
        );
        assert_eq!(apply("[[.]] | .[0][0]", &deep).unwrap(), deep);
    }

    #[test]
    fn values_sharing_their_parts_cannot_print_as_terabytes() {
        // 2^60 leaves in 60 steps.
        let dag = "reduce range(60) as $i (1; [., .])";
        for expr in [
            format!("{dag} | tojson | length"),
            format!("{dag} | tostring | length"),
            format!("{dag} | \"\\(.)\" | length"),
            dag.to_string(),
        ] {
            assert!(
                matches!(
                    apply_with(limits(MAX_FIX_STEPS, 600_000), &expr, "null"),
                    Err(FixError::OutputTooLarge { .. })
                ),
                "{expr}"
            );
        }
        assert!(matches!(
            apply_with(
                limits(100_000, 600_000),
                &format!("{dag} | [..] | length"),
                "null"
            ),
            Err(FixError::BudgetExceeded { steps: 100_000 })
        ));
        match apply(&format!("error({dag})"), "null") {
            Err(FixError::Runtime { message }) => {
                assert!(message.starts_with("[[[[[[[["), "{message}");
                assert_eq!(message.chars().count(), MAX_MESSAGE_CHARS + 1);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn debug_and_stderr_print_nothing() {
        assert_eq!(
            apply("debug | stderr | debug(\"x\") | .a", r#"{"a":1}"#).unwrap(),
            "1"
        );
    }

    #[test]
    fn deep_or_long_expressions_are_refused_at_compile_time() {
        let parens = "(".repeat(5000) + "." + &")".repeat(5000);
        match Fix::compile(&parens) {
            Err(FixError::TooDeep { limit, at }) => {
                assert_eq!(limit, MAX_FIX_DEPTH);
                assert_eq!(at.as_deref(), Some("1:257"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let strings = r#""\("#.repeat(3000) + "." + &r#")""#.repeat(3000);
        assert!(matches!(
            Fix::compile(&strings),
            Err(FixError::TooDeep { at: Some(_), .. })
        ));
        // Deep without brackets: jaq's parser recurses on each of these,
        // up to the token limit (and refuses them past it).
        let n = |tokens_per_round: usize| MAX_FIX_TOKENS / tokens_per_round - 2;
        for deep in [
            "- ".repeat(n(1)) + "1",
            ".|".repeat(n(2)) + ".",
            "try ".repeat(n(1)) + ".",
            ". as $x | ".repeat(n(4)) + ".",
            "def f: ".repeat(n(5)) + "." + &"; f".repeat(n(5)),
            ".a".repeat(n(1)),
            "1,".repeat(n(2)) + "1",
            "label $x | ".repeat(n(3)) + ".",
            "if . then ".repeat(n(4)) + "." + &" end".repeat(n(4)),
            "reduce ".repeat(n(9)) + "." + &" as $x (.; .)".repeat(n(9)),
            "1 + ".repeat(n(2)) + "1",
            ". // ".repeat(n(2)) + ".",
            ".a = ".repeat(n(2)) + ".",
        ] {
            assert!(
                matches!(Fix::compile(&deep), Err(FixError::TooDeep { at: None, .. })),
                "{}…: {:?}",
                &deep[..20],
                Fix::compile(&deep).err()
            );
            let more = deep.clone() + &" | .".repeat(MAX_FIX_TOKENS);
            assert!(matches!(
                Fix::compile(&more),
                Err(FixError::TooManyTokens {
                    limit: MAX_FIX_TOKENS,
                    ..
                })
            ));
        }
        let long = " ".repeat(MAX_FIX_LEN) + ".";
        assert!(matches!(
            Fix::compile(&long),
            Err(FixError::TooLong {
                limit: MAX_FIX_LEN,
                ..
            })
        ));
        // Up to the limit is fine, and runs on a 2 MiB stack.
        let chain = vec![".n += 1"; MAX_FIX_DEPTH / 2].join(" | ");
        assert_eq!(apply(&chain, r#"{"n":0}"#).unwrap(), r#"{"n":128}"#);
        let list = format!("[{}] | length", vec!["1"; MAX_FIX_DEPTH - 10].join(","));
        assert_eq!(
            apply(&list, "null").unwrap(),
            (MAX_FIX_DEPTH - 10).to_string()
        );
    }

    #[test]
    fn legitimate_fixes_give_the_same_output_under_the_budget() {
        let payload = r#"{"id":"0xAB","price":"0.42","tags":["A","b"],"n":{"x":[1,2]}}"#;
        for (expr, out) in [
            (
                ".price |= tonumber",
                r#"{"id":"0xAB","price":0.42,"tags":["A","b"],"n":{"x":[1,2]}}"#,
            ),
            (
                "walk(if type == \"string\" then ascii_downcase else . end)",
                r#"{"id":"0xab","price":"0.42","tags":["a","b"],"n":{"x":[1,2]}}"#,
            ),
            ("[range(10)]", "[0,1,2,3,4,5,6,7,8,9]"),
            ("[range(0; 10; 3)], [range(5; 0; -2)] | tostring", "x"),
            ("reduce range(1000) as $i (0; . + $i)", "499500"),
            ("[foreach range(5) as $i (0; . + $i)]", "[0,1,3,6,10]"),
            (".n.x[] += 1 | .n", r#"{"x":[2,3]}"#),
            (".n.x |= map(. * 2) | .n", r#"{"x":[2,4]}"#),
            (".id + \"-\" + (.tags | join(\",\"))", r#""0xAB-A,b""#),
            ("[paths] | length", "9"),
            ("setpath([\"n\",\"x\",0]; 9) | .n", r#"{"x":[9,2]}"#),
            (
                "del(.tags, .n) | to_entries | from_entries",
                r#"{"id":"0xAB","price":"0.42"}"#,
            ),
            ("with_entries(select(.key == \"id\"))", r#"{"id":"0xAB"}"#),
            ("[limit(3; repeat(1))]", "[1,1,1]"),
            (".tags | (.[0] * 2) + (.[1] * 0 // \"z\")", r#""AAz""#),
            ("[.. | numbers]", "[1,2]"),
            ("{a: 1} * {a: {b: 2}}", r#"{"a":{"b":2}}"#),
            ("try error(\"x\") catch .", r#""x""#),
        ] {
            if out == "x" {
                // Two outputs: checked by value below.
                continue;
            }
            assert_eq!(apply(expr, payload).unwrap(), out, "{expr}");
        }
        assert_eq!(
            apply("[[range(0; 10; 3)], [range(5; 0; -2)]]", "null").unwrap(),
            "[[0,3,6,9],[5,3,1]]"
        );
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        assert_eq!(FixLimits::default().validate().ok(), Some(()));
        for bad in [
            limits(1, 0),
            limits(1, 60_001),
            limits(0, 1000),
            FixLimits {
                max_output_bytes: 0,
                ..FixLimits::default()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(FixError::InvalidLimits { .. })),
                "{bad:?}"
            );
        }
    }

    mod never_panics {
        use super::super::Fix;
        use proptest::prelude::*;
        use std::sync::LazyLock;

        const EXPRS: &[&str] = &[
            ".",
            ".price |= tonumber",
            "tonumber",
            "fromjson",
            ".[]",
            "..",
            "tostring | fromjson",
            r#"sub("(?<x>[0-9]+)"; "<\(.x)>")"#,
            r#"split(",")"#,
            "keys",
            ".a.b[0]",
            "tojson",
            "@base64d",
            "ascii_downcase | explode | implode",
        ];

        static FIXES: LazyLock<Vec<Fix>> =
            LazyLock::new(|| EXPRS.iter().map(|e| Fix::compile(e).unwrap()).collect());

        // `apply_inner` is `apply` without its `catch_unwind` safety net, so
        // a panic anywhere in reading, evaluation or writing fails the test.
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(48))]

            // Hostile shapes: whatever compiles runs within its budget, and
            // nothing panics or overflows.
            #[test]
            fn on_nested_and_recursive_fixes(
                term in nested_term(),
                wrap in prop_oneof![
                    Just(("(", ")")), Just(("[", "]")), Just(("try ", "")), Just(("- ", "")),
                    Just((". | ", "")), Just(("def g: ", "; g")), Just(("\"\\(", ")\"")),
                    Just(("reduce range(2) as $x (.; ", ")")), Just(("{a: ", "}")),
                ],
                repeat in 0usize..400,
            ) {
                let text = wrap.0.repeat(repeat) + &term + &wrap.1.repeat(repeat);
                if let Ok(fix) = Fix::compile(&text) {
                    let small = super::super::FixLimits {
                        max_steps: 20_000,
                        max_output_bytes: 10_000,
                        ..super::super::FixLimits::default()
                    };
                    let _ = fix.with_limits(small).apply_inner(br#"{"a":[1,{"b":2}]}"#);
                }
            }
        }

        /// Well-formed jq terms built from recursive and growing shapes.
        fn nested_term() -> impl Strategy<Value = String> {
            let leaf = prop_oneof![
                Just(".".to_owned()),
                Just("1".to_owned()),
                Just(".a".to_owned()),
                Just("..".to_owned()),
                Just("\"s\"".to_owned()),
                Just("def f: [f]; f".to_owned()),
                Just("def f: f; f".to_owned()),
                Just("last(range(1e18))".to_owned()),
            ];
            leaf.prop_recursive(6, 48, 2, |inner| {
                prop_oneof![
                    inner.clone().prop_map(|x| format!("[{x}]")),
                    inner.clone().prop_map(|x| format!("{{a: {x}}}")),
                    inner.clone().prop_map(|x| format!("try ({x})")),
                    inner.clone().prop_map(|x| format!("\"\\({x})\"")),
                    inner
                        .clone()
                        .prop_map(|x| format!("reduce range(30) as $i (.; {x})")),
                    inner.clone().prop_map(|x| format!("def g: {x} | g; g")),
                    inner
                        .clone()
                        .prop_map(|x| format!("[limit(3; repeat({x}))]")),
                    inner.clone().prop_map(|x| format!("({x}) * 1000")),
                    inner.clone().prop_map(|x| format!("tojson | {x}")),
                    (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("({x}) | ({y})")),
                    (inner.clone(), inner.clone()).prop_map(|(x, y)| format!("[{x}, {y}]")),
                    (inner.clone(), inner).prop_map(|(x, y)| format!("({x}) + ({y})")),
                ]
            })
        }

        proptest! {
            #[test]
            fn on_arbitrary_bytes(payload in proptest::collection::vec(any::<u8>(), 0..256)) {
                for fix in FIXES.iter() {
                    let _ = fix.apply_inner(&payload);
                }
            }

            #[test]
            fn on_json_like_text(payload in r#"[\[\]{}",:0-9a-z.eE+\- \\#\n]{0,200}"#) {
                for fix in FIXES.iter() {
                    let _ = fix.apply_inner(payload.as_bytes());
                }
            }
        }
    }
}
