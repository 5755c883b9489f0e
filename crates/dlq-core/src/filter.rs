//! `--filter`: a small, closed selection language over dead letters.
//!
//! No scripting, by design: a filter can only compare fields, so it is safe
//! to accept from an operator and cheap to evaluate on millions of records.
//!
//! ```text
//! error_class == "validation.wrong_type" and source.topic == "polymarket.price_hourly"
//! replays >= 1 or not retryable
//! payload.price > 1 and first_failed_at >= "2026-11-29T00:00:00Z"
//! error contains "timeout" and stage in ["sink", "produce"]
//! fingerprint == "3f2a9c0d1e4b5a67"
//! payload.tags exists
//! ```
//!
//! Operators: `==`, `!=`, `<`, `<=`, `>`, `>=`, `contains`, `starts_with`,
//! `in [..]`, `exists`; combined with `and`/`&&`, `or`/`||`, `not`/`!` and
//! parentheses. Values: `"strings"`, numbers, `true`, `false`, `null`.
//!
//! Fields: `id`, `dlq`, `status`, `stage`, `error_class`, `error`,
//! `retryable`, `attempts`, `replays`, `replay_of`, `first_failed_at`,
//! `failed_at`, `origin`, `key`, `fingerprint`, `source.system`,
//! `source.topic`, `source.partition`, `source.offset`, `payload` (the
//! payload as text) and `payload.<path>` (a JSON path: `payload.a.b[0]`).
//!
//! Comparing values of different types is false (and `!=` true); a missing
//! field equals only `null`. Timestamps compare as instants.
//!
//! Parentheses and `not`/`!` nest at most [`MAX_FILTER_DEPTH`] levels deep;
//! a deeper filter is refused with an error naming the position where the
//! limit is crossed. `and`/`or` chains of any length are flat lists, so
//! neither parsing, evaluation nor dropping a filter recurses per operand:
//! no filter text can exhaust the stack.

use crate::envelope::parse_timestamp;
use crate::store::StoredRecord;
use chrono::{DateTime, Utc};
use std::cmp::Ordering;

/// How deep parentheses and `not`/`!` may nest in a filter.
///
/// Hand-written filters nest a few levels; the limit keeps the recursive
/// parser (and the evaluation of the tree it builds) far from the end of the
/// smallest thread stack a filter runs on (2 MiB, tokio's workers).
pub const MAX_FILTER_DEPTH: usize = 64;

/// A compiled filter.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    source: String,
    expr: Expr,
    fingerprints: Fingerprints,
}

/// The template miners `fingerprint` is evaluated with (see
/// [`Filter::with_grouper`]). Not part of a filter's identity.
#[derive(Clone, Default)]
struct Fingerprints(Option<std::sync::Arc<crate::analyze::Grouper>>);

impl PartialEq for Fingerprints {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for Fingerprints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Fingerprints(miners)"
        } else {
            "Fingerprints(stateless)"
        })
    }
}

/// A filter could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid filter at character {position}: {message}\n  {text}\n  {marker}^")]
pub struct FilterError {
    /// What is wrong, in words a user can act on.
    pub message: String,
    /// Character offset of the problem.
    pub position: usize,
    /// The filter text.
    pub text: String,
    marker: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    /// Two or more operands: a chain of `and` is one flat list.
    And(Vec<Expr>),
    /// Two or more operands: a chain of `or` is one flat list.
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Field, Op, Lit),
    In(Field, Vec<Lit>),
    Exists(Field),
    Truthy(Field),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
    StartsWith,
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Time(DateTime<Utc>),
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    Id,
    Dlq,
    Status,
    Stage,
    ErrorClass,
    Error,
    Retryable,
    Attempts,
    Replays,
    ReplayOf,
    FirstFailedAt,
    FailedAt,
    Origin,
    Key,
    Fingerprint,
    SourceSystem,
    SourceTopic,
    SourcePartition,
    SourceOffset,
    PayloadText,
    Payload(Vec<PathStep>),
}

#[derive(Debug, Clone, PartialEq)]
enum PathStep {
    Key(String),
    Index(usize),
}

const FIELDS: &str = "id, dlq, status, stage, error_class, error, retryable, attempts, replays, \
replay_of, first_failed_at, failed_at, origin, key, fingerprint, source.system, source.topic, \
source.partition, source.offset, payload, payload.<path>";

impl Field {
    fn is_time(&self) -> bool {
        matches!(self, Field::FirstFailedAt | Field::FailedAt)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(Op),
    And,
    Or,
    Not,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
}

impl Filter {
    /// Parses a filter; the error points at the offending character.
    pub fn parse(text: &str) -> Result<Filter, FilterError> {
        let tokens = lex(text)?;
        let mut p = Parser {
            text,
            tokens,
            pos: 0,
            depth: 0,
        };
        let expr = p.expr()?;
        if p.pos < p.tokens.len() {
            return Err(p.error_here("unexpected text after the end of the filter"));
        }
        Ok(Filter {
            source: text.to_owned(),
            expr,
            fingerprints: Fingerprints::default(),
        })
    }

    /// Whether the filter reads `fingerprint` (and so wants the persisted
    /// template miners: [`Filter::with_grouper`]).
    pub fn uses_fingerprint(&self) -> bool {
        fn uses(e: &Expr) -> bool {
            match e {
                Expr::And(all) | Expr::Or(all) => all.iter().any(uses),
                Expr::Not(a) => uses(a),
                Expr::Cmp(f, _, _) | Expr::In(f, _) | Expr::Exists(f) | Expr::Truthy(f) => {
                    matches!(f, Field::Fingerprint)
                }
            }
        }
        uses(&self.expr)
    }

    /// Evaluates `fingerprint` with these template miners (restored from the
    /// store by the caller) instead of the stateless fingerprint; see
    /// [`crate::analyze`]. A filter that does not read `fingerprint` keeps
    /// no reference to them.
    pub fn with_grouper(mut self, grouper: std::sync::Arc<crate::analyze::Grouper>) -> Self {
        if self.uses_fingerprint() {
            self.fingerprints = Fingerprints(Some(grouper));
        }
        self
    }

    /// The filter text as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Whether the record matches.
    pub fn matches(&self, record: &StoredRecord) -> bool {
        let mut ctx = Ctx {
            record,
            payload: None,
            grouper: self.fingerprints.0.as_deref(),
        };
        eval(&self.expr, &mut ctx)
    }
}

fn error_at(text: &str, position: usize, message: impl Into<String>) -> FilterError {
    FilterError {
        message: message.into(),
        position,
        text: text.to_owned(),
        marker: " ".repeat(text[..position.min(text.len())].chars().count()),
    }
}

fn lex(text: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let two = |s: &str| text[i..].starts_with(s);
        let tok = match c {
            b' ' | b'\t' | b'\n' | b'\r' => {
                i += 1;
                continue;
            }
            b'(' => Tok::LParen,
            b')' => Tok::RParen,
            b'[' => Tok::LBracket,
            b']' => Tok::RBracket,
            b',' => Tok::Comma,
            _ if two("==") => Tok::Op(Op::Eq),
            _ if two("!=") => Tok::Op(Op::Ne),
            _ if two("<=") => Tok::Op(Op::Le),
            _ if two(">=") => Tok::Op(Op::Ge),
            _ if two("&&") => Tok::And,
            _ if two("||") => Tok::Or,
            b'<' => Tok::Op(Op::Lt),
            b'>' => Tok::Op(Op::Gt),
            b'~' => Tok::Op(Op::Contains),
            b'!' => Tok::Not,
            b'"' | b'\'' => {
                let (s, end) = lex_string(text, i)?;
                out.push((start, Tok::Str(s)));
                i = end;
                continue;
            }
            b'-' | b'0'..=b'9' => {
                let mut end = i + 1;
                while end < bytes.len()
                    && (bytes[end].is_ascii_digit()
                        || matches!(bytes[end], b'.' | b'e' | b'E' | b'+' | b'-'))
                {
                    end += 1;
                }
                let n: f64 = text[i..end].parse().map_err(|_| {
                    error_at(text, i, format!("{:?} is not a number", &text[i..end]))
                })?;
                out.push((start, Tok::Num(n)));
                i = end;
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let mut end = i + 1;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || matches!(bytes[end], b'_' | b'.' | b'[' | b']'))
                {
                    // `payload.tags[0]`: brackets belong to the path only
                    // when an index follows.
                    if bytes[end] == b'[' && !bytes.get(end + 1).is_some_and(u8::is_ascii_digit) {
                        break;
                    }
                    end += 1;
                }
                let word = &text[i..end];
                let tok = match word {
                    "and" => Tok::And,
                    "or" => Tok::Or,
                    "not" => Tok::Not,
                    "contains" => Tok::Op(Op::Contains),
                    "starts_with" => Tok::Op(Op::StartsWith),
                    _ => Tok::Ident(word.to_owned()),
                };
                out.push((start, tok));
                i = end;
                continue;
            }
            _ => {
                let ch = text[i..].chars().next().unwrap_or('?');
                return Err(error_at(text, i, format!("unexpected character {ch:?}")));
            }
        };
        i += match tok {
            Tok::Op(Op::Eq | Op::Ne | Op::Le | Op::Ge) | Tok::And | Tok::Or => 2,
            _ => 1,
        };
        out.push((start, tok));
    }
    Ok(out)
}

fn lex_string(text: &str, start: usize) -> Result<(String, usize), FilterError> {
    let quote = text.as_bytes()[start] as char;
    let mut out = String::new();
    let mut chars = text[start + 1..].char_indices();
    while let Some((off, c)) = chars.next() {
        match c {
            c if c == quote => return Ok((out, start + 1 + off + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, c)) => out.push(c),
                None => break,
            },
            c => out.push(c),
        }
    }
    Err(error_at(text, start, "string is not closed"))
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<(usize, Tok)>,
    pos: usize,
    /// Open parentheses and `not`s around the current token.
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.tokens.get(self.pos).map(|(_, t)| t)
    }

    fn here(&self) -> usize {
        self.tokens
            .get(self.pos)
            .map_or(self.text.len(), |(p, _)| *p)
    }

    fn error_here(&self, message: &str) -> FilterError {
        error_at(self.text, self.here(), message)
    }

    fn expr(&mut self) -> Result<Expr, FilterError> {
        let mut all = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            all.push(self.and()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::Or(all)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut all = vec![self.not()?];
        while self.peek() == Some(&Tok::And) {
            self.pos += 1;
            all.push(self.not()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And(all)
        })
    }

    /// Enters one level of nesting (`(` or `not`) at the current token,
    /// refusing to go deeper than [`MAX_FILTER_DEPTH`].
    fn enter(&mut self) -> Result<(), FilterError> {
        if self.depth >= MAX_FILTER_DEPTH {
            return Err(self.error_here(&format!(
                "the filter nests deeper than {MAX_FILTER_DEPTH} levels of parentheses and `not`"
            )));
        }
        self.depth += 1;
        self.pos += 1;
        Ok(())
    }

    fn not(&mut self) -> Result<Expr, FilterError> {
        if self.peek() == Some(&Tok::Not) {
            self.enter()?;
            let e = Expr::Not(Box::new(self.not()?));
            self.depth -= 1;
            return Ok(e);
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Expr, FilterError> {
        match self.peek().cloned() {
            Some(Tok::LParen) => {
                self.enter()?;
                let e = self.expr()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(self.error_here("expected `)`"));
                }
                self.pos += 1;
                self.depth -= 1;
                Ok(e)
            }
            Some(Tok::Ident(name)) => {
                let at = self.here();
                self.pos += 1;
                let field = parse_field(&name).ok_or_else(|| {
                    error_at(
                        self.text,
                        at,
                        format!("unknown field {name:?}; fields are: {FIELDS}"),
                    )
                })?;
                match self.peek().cloned() {
                    Some(Tok::Op(op)) => {
                        self.pos += 1;
                        let lit = self.literal(&field)?;
                        Ok(Expr::Cmp(field, op, lit))
                    }
                    Some(Tok::Ident(w)) if w == "exists" => {
                        self.pos += 1;
                        Ok(Expr::Exists(field))
                    }
                    Some(Tok::Ident(w)) if w == "in" => {
                        self.pos += 1;
                        if self.peek() != Some(&Tok::LBracket) {
                            return Err(self.error_here("expected `[` after `in`"));
                        }
                        self.pos += 1;
                        let mut list = Vec::new();
                        loop {
                            list.push(self.literal(&field)?);
                            match self.peek() {
                                Some(Tok::Comma) => self.pos += 1,
                                Some(Tok::RBracket) => {
                                    self.pos += 1;
                                    break;
                                }
                                _ => return Err(self.error_here("expected `,` or `]`")),
                            }
                        }
                        Ok(Expr::In(field, list))
                    }
                    // A bare boolean field: `retryable`, `not retryable`.
                    _ if matches!(field, Field::Retryable) => Ok(Expr::Truthy(field)),
                    _ => Err(self.error_here(
                        "expected an operator (==, !=, <, <=, >, >=, contains, starts_with, in, exists)",
                    )),
                }
            }
            _ => Err(self.error_here("expected a field name, `not` or `(`")),
        }
    }

    fn literal(&mut self, field: &Field) -> Result<Lit, FilterError> {
        let at = self.here();
        let lit = match self.peek().cloned() {
            Some(Tok::Str(s)) if field.is_time() => {
                Lit::Time(parse_timestamp(&s).ok_or_else(|| {
                    error_at(
                        self.text,
                        at,
                        format!("{s:?} is not a timestamp (RFC 3339, e.g. 2026-11-29T07:00:00Z)"),
                    )
                })?)
            }
            Some(Tok::Str(s)) => Lit::Str(s),
            Some(Tok::Num(n)) => Lit::Num(n),
            Some(Tok::Ident(w)) if w == "true" => Lit::Bool(true),
            Some(Tok::Ident(w)) if w == "false" => Lit::Bool(false),
            Some(Tok::Ident(w)) if w == "null" => Lit::Null,
            _ => {
                return Err(self
                    .error_here("expected a value: a \"string\", a number, true, false or null"));
            }
        };
        self.pos += 1;
        Ok(lit)
    }
}

fn parse_field(name: &str) -> Option<Field> {
    Some(match name {
        "id" => Field::Id,
        "dlq" => Field::Dlq,
        "status" => Field::Status,
        "stage" => Field::Stage,
        "error_class" => Field::ErrorClass,
        "error" => Field::Error,
        "retryable" => Field::Retryable,
        "attempts" => Field::Attempts,
        "replays" => Field::Replays,
        "replay_of" => Field::ReplayOf,
        "first_failed_at" => Field::FirstFailedAt,
        "failed_at" | "timestamp" => Field::FailedAt,
        "origin" => Field::Origin,
        "key" => Field::Key,
        "fingerprint" => Field::Fingerprint,
        "source.system" => Field::SourceSystem,
        "source.topic" => Field::SourceTopic,
        "source.partition" => Field::SourcePartition,
        "source.offset" => Field::SourceOffset,
        "payload" => Field::PayloadText,
        _ => {
            let path = name.strip_prefix("payload.")?;
            let mut steps = Vec::new();
            for part in path.split('.') {
                let (key, rest) = part.split_once('[').unwrap_or((part, ""));
                if key.is_empty() && rest.is_empty() {
                    return None;
                }
                if !key.is_empty() {
                    steps.push(PathStep::Key(key.to_owned()));
                }
                for idx in rest.split('[') {
                    if idx.is_empty() {
                        continue;
                    }
                    let n = idx.strip_suffix(']')?.parse().ok()?;
                    steps.push(PathStep::Index(n));
                }
            }
            Field::Payload(steps)
        }
    })
}

struct Ctx<'r> {
    record: &'r StoredRecord,
    payload: Option<Option<serde_json::Value>>,
    grouper: Option<&'r crate::analyze::Grouper>,
}

#[derive(Debug)]
enum Val {
    Str(String),
    Num(f64),
    Bool(bool),
    Time(DateTime<Utc>),
    Null,
    Json(serde_json::Value),
}

fn value(field: &Field, ctx: &mut Ctx<'_>) -> Val {
    let l = &ctx.record.letter;
    let opt_str = |s: Option<&str>| s.map_or(Val::Null, |s| Val::Str(s.to_owned()));
    match field {
        Field::Id => Val::Str(l.id.clone()),
        Field::Dlq => Val::Str(ctx.record.dlq.clone()),
        Field::Status => Val::Str(ctx.record.status.as_str().to_owned()),
        Field::Stage => Val::Str(l.stage.clone()),
        Field::ErrorClass => Val::Str(l.error_class.clone()),
        Field::Error => Val::Str(l.error.clone()),
        Field::Retryable => Val::Bool(l.retryable),
        Field::Attempts => Val::Num(f64::from(l.attempts)),
        Field::Replays => Val::Num(f64::from(l.replays)),
        Field::ReplayOf => opt_str(l.replay_of.as_deref()),
        Field::FirstFailedAt => Val::Time(l.first_failed_at),
        Field::FailedAt => Val::Time(l.failed_at),
        Field::Origin => Val::Str(l.origin.as_str().to_owned()),
        Field::Key => l.key.as_deref().map_or(Val::Null, |k| {
            Val::Str(String::from_utf8_lossy(k).into_owned())
        }),
        Field::Fingerprint => Val::Str(crate::analyze::fingerprint(ctx.record, ctx.grouper)),
        Field::SourceSystem => Val::Str(l.source.system.clone()),
        Field::SourceTopic => opt_str(l.source.topic.as_deref()),
        Field::SourcePartition => l
            .source
            .partition
            .map_or(Val::Null, |p| Val::Num(f64::from(p))),
        Field::SourceOffset => l.source.offset.map_or(Val::Null, |o| Val::Num(o as f64)),
        Field::PayloadText => Val::Str(String::from_utf8_lossy(&l.payload).into_owned()),
        Field::Payload(path) => {
            let doc = ctx
                .payload
                .get_or_insert_with(|| serde_json::from_slice(&ctx.record.letter.payload).ok());
            let mut cur: &serde_json::Value = match doc {
                Some(v) => v,
                None => return Val::Null,
            };
            for step in path {
                let next = match step {
                    PathStep::Key(k) => cur.get(k),
                    PathStep::Index(i) => cur.get(*i),
                };
                match next {
                    Some(v) => cur = v,
                    None => return Val::Null,
                }
            }
            match cur {
                serde_json::Value::Null => Val::Json(serde_json::Value::Null),
                serde_json::Value::Bool(b) => Val::Bool(*b),
                serde_json::Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
                serde_json::Value::String(s) => Val::Str(s.clone()),
                other => Val::Json(other.clone()),
            }
        }
    }
}

fn compare(v: &Val, lit: &Lit) -> Option<Ordering> {
    match (v, lit) {
        (Val::Str(a), Lit::Str(b)) => Some(a.as_str().cmp(b.as_str())),
        (Val::Num(a), Lit::Num(b)) => a.partial_cmp(b),
        (Val::Bool(a), Lit::Bool(b)) => Some(a.cmp(b)),
        (Val::Time(a), Lit::Time(b)) => Some(a.cmp(b)),
        (Val::Null | Val::Json(serde_json::Value::Null), Lit::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn cmp(v: &Val, op: Op, lit: &Lit) -> bool {
    match op {
        Op::Contains | Op::StartsWith => match (v, lit) {
            (Val::Str(a), Lit::Str(b)) => {
                if op == Op::Contains {
                    a.contains(b.as_str())
                } else {
                    a.starts_with(b.as_str())
                }
            }
            (Val::Json(serde_json::Value::Array(items)), lit) if op == Op::Contains => {
                items.iter().any(|item| {
                    let item = match item {
                        serde_json::Value::String(s) => Val::Str(s.clone()),
                        serde_json::Value::Number(n) => n.as_f64().map_or(Val::Null, Val::Num),
                        serde_json::Value::Bool(b) => Val::Bool(*b),
                        _ => Val::Null,
                    };
                    compare(&item, lit) == Some(Ordering::Equal)
                })
            }
            _ => false,
        },
        Op::Ne => compare(v, lit) != Some(Ordering::Equal),
        _ => match compare(v, lit) {
            Some(o) => match op {
                Op::Eq => o == Ordering::Equal,
                Op::Lt => o == Ordering::Less,
                Op::Le => o != Ordering::Greater,
                Op::Gt => o == Ordering::Greater,
                Op::Ge => o != Ordering::Less,
                _ => false,
            },
            None => false,
        },
    }
}

fn eval(expr: &Expr, ctx: &mut Ctx<'_>) -> bool {
    match expr {
        Expr::And(all) => all.iter().all(|e| eval(e, ctx)),
        Expr::Or(all) => all.iter().any(|e| eval(e, ctx)),
        Expr::Not(e) => !eval(e, ctx),
        Expr::Cmp(f, op, lit) => cmp(&value(f, ctx), *op, lit),
        Expr::In(f, list) => {
            let v = value(f, ctx);
            list.iter()
                .any(|lit| compare(&v, lit) == Some(Ordering::Equal))
        }
        Expr::Exists(f) => !matches!(value(f, ctx), Val::Null),
        Expr::Truthy(f) => matches!(value(f, ctx), Val::Bool(true)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Status;
    use crate::{DeadLetter, Failure};
    use proptest::prelude::*;

    fn record(payload: &str, class: &str, replays: u32) -> StoredRecord {
        let f = Failure::transient("sink", class, "downstream timeout after 5000 ms");
        let mut letter = DeadLetter::new("file:x:1", payload.as_bytes().to_vec(), &f);
        letter.replays = replays;
        letter.source.topic = Some("polymarket.price_hourly".into());
        letter.source.partition = Some(2);
        letter.first_failed_at = parse_timestamp("2026-11-29T07:00:00Z").expect("ts");
        StoredRecord {
            dlq: "dlq.polymarket.price_hourly".into(),
            status: Status::Pending,
            stored_at: Utc::now(),
            settled_at: None,
            letter,
        }
    }

    fn m(filter: &str, r: &StoredRecord) -> bool {
        Filter::parse(filter).expect(filter).matches(r)
    }

    #[test]
    fn envelope_fields_compare() {
        let r = record(
            r#"{"price":"0.42","tags":["a","b"],"n":{"x":[1,2]}}"#,
            "downstream.timeout",
            1,
        );
        assert!(m(r#"error_class == "downstream.timeout""#, &r));
        assert!(!m(r#"error_class == "validation.wrong_type""#, &r));
        assert!(m(
            r#"source.topic == "polymarket.price_hourly" and replays >= 1"#,
            &r
        ));
        assert!(m("retryable && source.partition == 2", &r));
        assert!(!m("not retryable", &r));
        assert!(m(r#"error contains "timeout" || replays > 5"#, &r));
        assert!(m(r#"stage in ["sink", "produce"]"#, &r));
        assert!(m(r#"first_failed_at >= "2026-11-29T00:00:00Z""#, &r));
        assert!(!m(r#"first_failed_at > "2026-11-29T07:00:00Z""#, &r));
        assert!(m(r#"status == "pending" and dlq starts_with "dlq.""#, &r));
        assert!(m("replay_of == null", &r));
    }

    #[test]
    fn payload_paths() {
        let r = record(
            r#"{"price":"0.42","tags":["a","b"],"n":{"x":[1,2]}}"#,
            "c",
            0,
        );
        assert!(m(r#"payload.price == "0.42""#, &r));
        assert!(!m("payload.price == 0.42", &r), "a string is not a number");
        assert!(m("payload.n.x[1] == 2", &r));
        assert!(m(r#"payload.tags contains "b""#, &r));
        assert!(m("payload.tags exists and not payload.missing exists", &r));
        assert!(m("payload.missing == null", &r));
        assert!(m("payload.missing != 3", &r));
        assert!(m(r#"payload contains "0.42""#, &r));
        let bad = record("not json", "c", 0);
        assert!(!m("payload.price exists", &bad));
    }

    #[test]
    fn fingerprint_field_matches_the_analysis() {
        let r = record("{}", "downstream.timeout", 0);
        let fp = crate::analyze::fingerprint(&r, None);
        assert!(m(&format!("fingerprint == \"{fp}\""), &r));
        assert!(!m("fingerprint == \"0000\"", &r));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = Filter::parse(r#"error_clas == "x""#).expect_err("unknown field");
        assert_eq!(e.position, 0);
        assert!(e.message.contains("unknown field"), "{e}");
        let e = Filter::parse(r#"replays >= "#).expect_err("missing value");
        assert!(e.message.contains("expected a value"), "{e}");
        let e = Filter::parse(r#"first_failed_at > "yesterday""#).expect_err("bad time");
        assert!(e.message.contains("not a timestamp"), "{e}");
        let e = Filter::parse(r#"(stage == "a""#).expect_err("paren");
        assert!(e.message.contains("`)`"), "{e}");
        let e = Filter::parse(r#"stage == "a" extra"#).expect_err("trailing");
        assert_eq!(e.position, 13);
        assert!(Filter::parse(r#"error == "unterminated"#).is_err());
    }

    #[test]
    fn nesting_past_the_limit_is_an_error_naming_the_position() {
        let deep = format!("{}retryable{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = Filter::parse(&deep).expect_err("too deep");
        assert_eq!(e.position, MAX_FILTER_DEPTH, "{}", e.message);
        assert!(e.message.contains("nests deeper than 64"), "{}", e.message);

        let nots = "! ".repeat(60_000) + "retryable";
        let e = Filter::parse(&nots).expect_err("too deep");
        assert_eq!(e.position, 2 * MAX_FILTER_DEPTH);
        let e = Filter::parse(&"not (".repeat(50_000)).expect_err("too deep");
        assert_eq!(e.position, 5 * (MAX_FILTER_DEPTH / 2));
    }

    #[test]
    fn nesting_up_to_the_limit_is_accepted() {
        let r = record("{}", "c", 0);
        let half = MAX_FILTER_DEPTH / 2;
        let text = format!("{}retryable{}", "not (".repeat(half), ")".repeat(half));
        // An even number of `not`s.
        assert!(m(&text, &r));
        let parens = format!(
            "{}retryable{}",
            "(".repeat(MAX_FILTER_DEPTH),
            ")".repeat(MAX_FILTER_DEPTH)
        );
        assert!(m(&parens, &r));
    }

    #[test]
    fn long_flat_chains_neither_recurse_nor_overflow() {
        let r = record("{}", "c", 3);
        let ors = vec!["replays == 0"; 100_000].join(" or ") + " or replays == 3";
        let f = Filter::parse(&ors).expect("flat or");
        assert!(f.matches(&r));
        assert!(!f.uses_fingerprint());
        let ands = vec!["retryable"; 100_000].join(" && ") + " && replays == 2";
        let f = Filter::parse(&ands).expect("flat and");
        assert!(!f.matches(&r));
        let mixed = vec!["(retryable or replays > 9) and not replays == 1"; 30_000].join(" or ");
        let f = Filter::parse(&mixed).expect("mixed");
        assert!(f.clone().matches(&r));
        drop(f);
    }

    proptest! {
        #[test]
        fn nested_filters_never_panic_nor_overflow(
            parts in proptest::collection::vec(
                prop_oneof![
                    Just("("), Just(")"), Just("not "), Just("! "), Just("retryable"),
                    Just(" and "), Just(" or "), Just("replays == 1"), Just("["), Just("]"),
                ],
                0..400,
            ),
            repeat in 1usize..200,
        ) {
            let text = parts.concat().repeat(repeat);
            if let Ok(f) = Filter::parse(&text) {
                let r = record("{}", "c", 1);
                let _ = f.matches(&r);
            }
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in ".{0,80}") {
            let _ = Filter::parse(&s);
        }

        #[test]
        fn parse_never_panics_on_near_filters(s in r#"(payload\.[a-z\[\]0-9.]{0,10}|replays|error|\(|\)|==|!=|>=|"[a-z]{0,3}"|[0-9.e-]{1,4}| and | or |not |in \[|,|\]| ){0,12}"#) {
            if let Ok(f) = Filter::parse(&s) {
                let r = record(r#"{"a":[1]}"#, "c", 0);
                let _ = f.matches(&r);
            }
        }
    }
}
