//! What a fix's text goes through before jaq compiles it: a nesting scan of
//! the text, a depth measure of the parsed term, and the rewriting that puts
//! the budget into the program (see [`super::budget`]).
//!
//! jaq's lexer, parser and compiler are recursive, and its evaluation
//! recurses along the term tree, so the text is refused before jaq sees it
//! when its brackets nest too deep, and the term after parsing when its tree
//! is too deep.

use jaq_core::load::lex::{StrPart, Tok, Token};
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::ops::Math;
use jaq_core::path::Part;

/// The native filter that charges one step of the budget (identity).
pub(super) const TICK: &str = "__dlq_tick";
/// The native (identity) that refuses a string or array longer than the
/// output limit; it follows every `+`.
pub(super) const LEN: &str = "__dlq_len";
/// The native `*` that refuses results larger than the output limit.
pub(super) const MUL: &str = "__dlq_mul";
/// The native (identity) that refuses values nested too deep.
pub(super) const DEPTH: &str = "__dlq_depth";
/// [`DEPTH`], measuring at most once every few steps: assignments in a
/// loop would otherwise measure the whole value on every round.
pub(super) const DEPTH_SOMETIMES: &str = "__dlq_depth_sometimes";
/// The native (identity) that refuses values whose text is too large.
pub(super) const SIZED: &str = "__dlq_sized";
/// Natives whose output nests one level deeper than their input.
const DEEPENING: &[&str] = &["group_by", "key_values", "path_value"];
/// The definition that holds the user's (rewritten) expression.
pub(super) const MAIN: &str = "__dlq_fix";
/// The variable `l += r` binds `r` to once rewritten as `r as $v | l |= . + $v`.
const UPDATE_VAR: &str = "$__dlq_update";

/// Where the text nests brackets, strings and string interpolations deeper
/// than `limit`: the byte offset of the opening that crosses it.
///
/// This follows jaq's lexer, whose recursion it bounds: `(`, `[`, `{` and
/// `"` open a level, and so does `\(` inside a string; `#` starts a
/// comment. On malformed text it may misjudge, but only where the lexer
/// fails anyway.
pub(super) fn nesting_exceeds(code: &str, limit: usize) -> Option<usize> {
    #[derive(PartialEq)]
    enum Level {
        Code,
        Str,
    }
    let bytes = code.as_bytes();
    let mut stack: Vec<Level> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let in_str = stack.last() == Some(&Level::Str);
        let opened = match (in_str, bytes[i]) {
            (false, b'(' | b'[' | b'{') => Some(Level::Code),
            (false, b'"') => Some(Level::Str),
            (false, b')' | b']' | b'}') => {
                stack.pop();
                None
            }
            (false, b'#') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                None
            }
            (true, b'\\') if bytes.get(i + 1) == Some(&b'(') => {
                i += 1;
                Some(Level::Code)
            }
            (true, b'\\') => {
                i += 1;
                None
            }
            (true, b'"') => {
                stack.pop();
                None
            }
            _ => None,
        };
        if let Some(level) = opened {
            stack.push(level);
            if stack.len() > limit {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// How many tokens the lexed text has, counting into blocks and string
/// interpolations; iterative.
pub(super) fn token_count(tokens: &[Token<&str>]) -> usize {
    let mut count = 0;
    let mut todo = vec![tokens];
    while let Some(tokens) = todo.pop() {
        count += tokens.len();
        for Token(_, tok) in tokens {
            match tok {
                Tok::Block(inner) => todo.push(inner),
                Tok::Str(parts) => {
                    for part in parts {
                        if let StrPart::Term(Token(_, Tok::Block(inner))) = part {
                            todo.push(inner);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    count
}

/// The depth of a parsed term: one level per term, per path part and per
/// pattern, so that it bounds the recursion of compiling and running it
/// (`a | b | c` is three deep, as jaq nests it; so is `.a.b.c`).
///
/// Iterative, so that measuring a term can never be what overflows.
pub(super) fn depth(term: &Term<&str>) -> usize {
    enum Node<'t, 's> {
        Term(&'t Term<&'s str>),
        Pattern(&'t Pattern<&'s str>),
    }
    let mut max = 0;
    let mut todo = vec![(Node::Term(term), 1)];
    while let Some((node, level)) = todo.pop() {
        max = max.max(level);
        let next = level + 1;
        let mut push = |t| todo.push((Node::Term(t), next));
        match node {
            Node::Pattern(p) => match p {
                Pattern::Var(_) => {}
                Pattern::Arr(ps) => {
                    todo.extend(ps.iter().map(|p| (Node::Pattern(p), next)));
                }
                Pattern::Obj(kps) => {
                    for (k, p) in kps {
                        todo.push((Node::Term(k), next));
                        todo.push((Node::Pattern(p), next));
                    }
                }
            },
            Node::Term(t) => match t {
                Term::Id | Term::Recurse | Term::Num(_) | Term::Break(_) | Term::Var(_) => {}
                Term::Str(_, parts) => {
                    for part in parts {
                        if let StrPart::Term(t) = part {
                            push(t);
                        }
                    }
                }
                Term::Arr(t) => t.iter().for_each(|t| push(t)),
                Term::Obj(kvs) => {
                    for (k, v) in kvs {
                        push(k);
                        if let Some(v) = v {
                            push(v);
                        }
                    }
                }
                Term::Neg(t) | Term::Label(_, t) => push(t),
                Term::BinOp(l, op, r) => {
                    push(l);
                    push(r);
                    if let BinaryOp::Pipe(Some(p)) = op {
                        todo.push((Node::Pattern(p), next));
                    }
                }
                Term::Fold(_, xs, p, args) => {
                    push(xs);
                    args.iter().for_each(&mut push);
                    todo.push((Node::Pattern(p), next));
                }
                Term::TryCatch(t, c) => {
                    push(t);
                    c.iter().for_each(|c| push(c));
                }
                Term::IfThenElse(ifs, els) => {
                    for (i, t) in ifs {
                        push(i);
                        push(t);
                    }
                    els.iter().for_each(|e| push(e));
                }
                Term::Def(defs, t) => {
                    defs.iter().for_each(|d| push(&d.body));
                    push(t);
                }
                Term::Call(_, args) => args.iter().for_each(push),
                Term::Path(t, path) => {
                    push(t);
                    // Each part of `.a.b.c` is one more level when updated.
                    for (i, (part, _)) in path.0.iter().enumerate() {
                        let at = next + i;
                        match part {
                            Part::Index(t) => todo.push((Node::Term(t), at + 1)),
                            Part::Range(from, to) => {
                                for t in from.iter().chain(to) {
                                    todo.push((Node::Term(t), at + 1));
                                }
                            }
                        }
                        max = max.max(at);
                    }
                }
            },
        }
    }
    max
}

/// A library definition, seen with the lifetime of the user's text.
pub(super) fn shorten<'s>(def: Def<&'static str>) -> Def<&'s str> {
    def
}

/// `t | native`.
fn then<'s>(t: Term<&'s str>, native: &'static str) -> Term<&'s str> {
    Term::BinOp(
        Box::new(t),
        BinaryOp::Pipe(None),
        Box::new(Term::Call(native, Vec::new())),
    )
}

/// `TICK | body`.
fn ticked(body: Term<&str>) -> Term<&str> {
    Term::BinOp(
        Box::new(Term::Call(TICK, Vec::new())),
        BinaryOp::Pipe(None),
        Box::new(body),
    )
}

/// A definition whose body (and every term inside) charges the budget.
pub(super) fn budget_def(mut def: Def<&str>) -> Def<&str> {
    budget_term(&mut def.body, 0);
    def.body = ticked(std::mem::take(&mut def.body));
    def
}

/// The definition [`MAIN`] that runs the user's term under the budget.
pub(super) fn main_def(term: Term<&str>) -> Def<&str> {
    budget_def(Def {
        name: MAIN,
        args: Vec::new(),
        body: term,
    })
}

/// Rewrites a term in place so that every way it can loop or grow charges
/// the budget:
///
/// * every definition body starts with a tick: recursion, tail-recursive
///   loops and the standard library's generators (`repeat`, `recurse`,
///   `while`, `until`, `limit`'s argument...) all go through definitions;
/// * the update of `reduce`/`foreach` starts with a tick;
/// * `l + r` and `l * r` (and `+=`, `*=`) go through natives that refuse
///   results larger than the output limit, so that doubling a string or
///   repeating it (`"x" * 1e12`) fails instead of exhausting memory;
/// * `..` charges a step per value it visits;
/// * what may nest a value deeper (array and object construction,
///   assignments and updates, `group_by`...) is followed by [`DEPTH`], and
///   what prints a value (string interpolation, `tojson`) is preceded by
///   [`SIZED`]: values share their parts, so a few steps can build a value
///   whose text is larger than memory.
///
/// Recursive, but only over terms whose [`depth`] has been checked (or
/// jaq's own standard library).
fn budget_term(t: &mut Term<&str>, level: usize) {
    budget_node(t, level);
    // A stack check every few levels of the tree: jaq recurses along it,
    // with large frames in a debug build, and a deep tree of constructions
    // (`{a: {a: ...}}`) calls no definition that would tick.
    if level % STACK_CHECK_EVERY == STACK_CHECK_EVERY - 1 {
        *t = ticked(std::mem::take(t));
    }
}

/// Levels of the tree between two stack checks.
const STACK_CHECK_EVERY: usize = 4;

/// The level object keys are rewritten at: never one that gets a tick,
/// since `{a}` is shorthand that only a plain key allows.
const KEY_LEVEL: usize = 1;

/// [`budget_term`] of one node.
fn budget_node(t: &mut Term<&str>, level: usize) {
    let next = level + 1;
    match t {
        Term::Id | Term::Num(_) | Term::Break(_) | Term::Var(_) => {}
        Term::Recurse => *t = then(Term::Recurse, TICK),
        Term::Str(_, parts) => {
            for part in parts {
                if let StrPart::Term(t) = part {
                    budget_term(t, next);
                    *t = then(std::mem::take(t), SIZED);
                }
            }
        }
        Term::Arr(inner) => {
            inner.iter_mut().for_each(|t| budget_term(t, next));
            if inner.is_some() {
                *t = then(std::mem::take(t), DEPTH);
            }
        }
        Term::Obj(kvs) => {
            for (k, v) in kvs.iter_mut() {
                budget_term(k, KEY_LEVEL);
                v.iter_mut().for_each(|t| budget_term(t, next));
            }
            if !kvs.is_empty() {
                *t = then(std::mem::take(t), DEPTH);
            }
        }
        Term::Neg(t) | Term::Label(_, t) => budget_term(t, next),
        Term::BinOp(l, op, r) => {
            budget_term(l, next);
            budget_term(r, next);
            budget_pattern(op);
            let deepens = matches!(
                op,
                BinaryOp::Assign | BinaryOp::Update | BinaryOp::UpdateMath(_) | BinaryOp::UpdateAlt
            );
            match op {
                // jaq's own `+` (it appends in place to a value it owns),
                // then a length check: a doubling overshoots the limit at
                // most twofold before it fails.
                BinaryOp::Math(Math::Add) => *t = then(std::mem::take(t), LEN),
                // Repeating a string must be refused before it allocates.
                BinaryOp::Math(Math::Mul) => {
                    let l = std::mem::take(&mut **l);
                    let r = std::mem::take(&mut **r);
                    *t = Term::Call(MUL, vec![l, r]);
                }
                // jq defines `l op= r` as `r as $v | l |= . op $v`.
                BinaryOp::UpdateMath(math @ (Math::Add | Math::Mul)) => {
                    let math = *math;
                    let l = std::mem::take(&mut **l);
                    let r = std::mem::take(&mut **r);
                    let mut op = Term::BinOp(
                        Box::new(Term::Id),
                        BinaryOp::Math(math),
                        Box::new(Term::Var(UPDATE_VAR)),
                    );
                    budget_term(&mut op, next);
                    let update = Term::BinOp(Box::new(l), BinaryOp::Update, Box::new(op));
                    *t = Term::BinOp(
                        Box::new(r),
                        BinaryOp::Pipe(Some(Pattern::Var(UPDATE_VAR))),
                        Box::new(update),
                    );
                }
                _ => {}
            }
            if deepens {
                *t = then(std::mem::take(t), DEPTH_SOMETIMES);
            }
        }
        Term::Fold(_, xs, _, args) => {
            budget_term(xs, next);
            args.iter_mut().for_each(|t| budget_term(t, next));
            if let Some(update) = args.get_mut(1) {
                *update = ticked(std::mem::take(update));
            }
        }
        Term::TryCatch(t, c) => {
            budget_term(t, next);
            c.iter_mut().for_each(|c| budget_term(c, next));
        }
        Term::IfThenElse(ifs, els) => {
            for (i, t) in ifs {
                budget_term(i, next);
                budget_term(t, next);
            }
            els.iter_mut().for_each(|e| budget_term(e, next));
        }
        Term::Def(defs, t) => {
            for def in defs.iter_mut() {
                budget_term(&mut def.body, 0);
                def.body = ticked(std::mem::take(&mut def.body));
            }
            budget_term(t, next);
        }
        Term::Call(name, args) => {
            args.iter_mut().for_each(|t| budget_term(t, next));
            if *name == "tojson" && args.is_empty() {
                *t = Term::BinOp(
                    Box::new(Term::Call(SIZED, Vec::new())),
                    BinaryOp::Pipe(None),
                    Box::new(std::mem::take(t)),
                );
            } else if DEEPENING.contains(name) {
                *t = then(std::mem::take(t), DEPTH);
            }
        }
        Term::Path(t, path) => {
            budget_term(t, next);
            for (part, _) in &mut path.0 {
                match part {
                    Part::Index(t) => budget_term(t, next),
                    Part::Range(from, to) => {
                        from.iter_mut()
                            .chain(to.iter_mut())
                            .for_each(|t| budget_term(t, next));
                    }
                }
            }
        }
    }
}

/// Terms inside an `as` pattern (`. as {(f): $x} | ...`).
fn budget_pattern(op: &mut BinaryOp<&str>) {
    fn walk(p: &mut Pattern<&str>) {
        match p {
            Pattern::Var(_) => {}
            Pattern::Arr(ps) => ps.iter_mut().for_each(walk),
            Pattern::Obj(kps) => {
                for (k, p) in kps {
                    budget_term(k, KEY_LEVEL);
                    walk(p);
                }
            }
        }
    }
    if let BinaryOp::Pipe(Some(p)) = op {
        walk(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(code: &str) -> Term<&str> {
        jaq_core::load::parse(code, |p| p.term()).expect("parses")
    }

    #[test]
    fn nesting_scan_follows_brackets_strings_and_interpolations() {
        assert_eq!(nesting_exceeds("(((.)))", 2), Some(2));
        assert_eq!(nesting_exceeds("((.))", 2), None);
        assert_eq!(nesting_exceeds(r#""((((((""#, 1), None, "inside a string");
        assert_eq!(nesting_exceeds(r#""\("\(1)")""#, 3), Some(5));
        assert_eq!(nesting_exceeds("# ((((((\n.", 1), None, "comment");
        assert_eq!(nesting_exceeds(&"[".repeat(100_000), 128), Some(128));
    }

    #[test]
    fn depth_counts_chains_paths_and_nesting() {
        assert_eq!(depth(&parse(".")), 1);
        assert_eq!(depth(&parse("1 | 2 | 3")), 3);
        assert_eq!(depth(&parse("[1, 2, 3]")), 4);
        assert_eq!(depth(&parse(".a.b.c")), 5);
        assert_eq!(depth(&parse("-(-(-1))")), 4);
        assert_eq!(depth(&parse("def f: [f]; f")), 3);
    }
}
