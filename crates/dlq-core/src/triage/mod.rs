//! Triage of foreign errors: an error class and a verdict for dead letters
//! that carry none.
//!
//! dlq's own processors write a class (`downstream.timeout`) and whether the
//! failure was retryable; those win. The seed format `{original_record,
//! error, timestamp}`, raw records, and Kafka Connect / Spring dead letters
//! carry at most an exception type: for them the triage reads the error
//! message (and the exception type, which [`crate::envelope::decode_kafka`]
//! put into the record's error class from the `__connect.errors.*` /
//! `kafka_dlt-*` headers) and applies *rules*, first match wins.
//!
//! A rule is a name, an error class, a [`Verdict`] and regular expressions
//! (case-insensitive, any of them may match; ASCII: `\w`, `\b`, `.` and
//! case folding see bytes, which keeps matching fast). The rules shipped with dlq are
//! the data file `rules.toml` beside this module; users put their own in
//! `dlq.toml` under `[[triage.rule]]` ([`Triage::from_config`]), and those are
//! tried before the shipped ones, so a user rule can override a shipped one.
//! `[triage] builtin_rules = false` leaves the shipped rules out.
//!
//! Each message is tried twice: its root cause first ([`crate::mine::root_cause`]:
//! "Listener failed; nested exception is java.net.ConnectException: …" is a
//! refused connection, not a listener failure), then the whole text, so a
//! stack trace's "Caused by" lines still count. Patterns that are plain
//! text (most of them) run as one Aho-Corasick automaton (ASCII case
//! folding: the same matches as the regex would find), the others as one
//! [`regex::RegexSet`]: two passes per text, whatever the number of rules.

use crate::analyze::Verdict;
use crate::envelope::{DeadLetter, Origin, UNKNOWN_ERROR_CLASS};
use aho_corasick::AhoCorasick;
use regex::bytes::{RegexSet, RegexSetBuilder};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

/// The rules shipped with dlq, in the format of `[[triage.rule]]` in
/// `dlq.toml`.
pub const BUILTIN_RULES: &str = include_str!("rules.toml");

/// Longest text a rule is matched against; longer messages (stack traces)
/// are cut, so one huge record cannot make the analysis slow.
pub const MAX_TEXT: usize = 16 * 1024;

/// One triage rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name, reported with every verdict the rule gives
    /// (`kafka.message_timed_out`).
    pub name: String,
    /// The error class given to records that carry none
    /// (`kafka.delivery_timeout`).
    pub class: String,
    /// The verdict.
    pub verdict: Verdict,
    /// Regular expressions (Rust `regex` syntax, case-insensitive, ASCII
    /// classes); the rule matches when any of them is found in the message.
    pub patterns: Vec<String>,
    /// Why the verdict, in words, for the report (optional).
    #[serde(default)]
    pub reason: Option<String>,
}

/// The triage of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triaged<'a> {
    /// The rule that matched.
    pub rule: &'a Rule,
    /// Its index in [`Triage::rules`].
    pub index: usize,
}

/// Triage rules could not be read: every problem found, one per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid triage rules:\n  {}", problems.join("\n  "))]
pub struct TriageError {
    /// What is wrong, each with where (`triage.rule[2].patterns[0]: …`).
    pub problems: Vec<String>,
}

/// A compiled rule set; see the module docs.
#[derive(Debug, Clone)]
pub struct Triage {
    rules: Vec<Rule>,
    set: RegexSet,
    /// The rule of each pattern of `set`, by pattern index.
    rule_of: Vec<usize>,
    /// The plain-text patterns (`None`: there are none).
    literals: Option<AhoCorasick>,
    /// The rule of each pattern of `literals`, by pattern index.
    rule_of_literal: Vec<usize>,
}

/// The `[triage]` table's keys.
const TRIAGE_KEYS: &[&str] = &["builtin_rules", "rule"];

impl Triage {
    /// The rules shipped with dlq, compiled once per process.
    pub fn builtin() -> Arc<Triage> {
        static BUILTIN: OnceLock<Arc<Triage>> = OnceLock::new();
        BUILTIN
            .get_or_init(|| {
                // The shipped file is checked by a unit test; should it
                // still fail, an empty rule set keeps the analysis running.
                Arc::new(Triage::from_config("", true).unwrap_or_else(|_| empty()))
            })
            .clone()
    }

    /// The rules of a `dlq.toml` text's `[triage]` section, before the
    /// shipped ones (unless `[triage] builtin_rules = false`). Other sections
    /// are left to their own commands. Every problem is reported at once.
    /// `builtin` false leaves the shipped rules out whatever the file says
    /// (for tests of a file's own rules).
    pub fn from_config(text: &str, builtin: bool) -> Result<Triage, TriageError> {
        let mut problems = Vec::new();
        let mut rules = Vec::new();
        let mut use_builtin = builtin;
        if !text.trim().is_empty() {
            match toml::from_str::<toml::Table>(text) {
                Err(e) => problems.push(format!("not valid TOML: {}", one_line(&e.to_string()))),
                Ok(top) => match top.get("triage") {
                    None => {}
                    Some(toml::Value::Table(t)) => {
                        if let Some(b) = read_table("triage", t, &mut rules, &mut problems) {
                            use_builtin &= b;
                        }
                    }
                    Some(_) => problems.push("triage: expected a table ([triage])".to_owned()),
                },
            }
        }
        if use_builtin {
            match toml::from_str::<toml::Table>(BUILTIN_RULES) {
                Ok(shipped) => {
                    if let Some(toml::Value::Table(t)) = shipped.get("triage") {
                        read_table("rules.toml: triage", t, &mut rules, &mut problems);
                    }
                }
                Err(e) => problems.push(format!(
                    "rules.toml: not valid TOML: {}",
                    one_line(&e.to_string())
                )),
            }
        }
        compile(rules, problems)
    }

    /// Compiles rules, in the order they are tried.
    pub fn new(rules: Vec<Rule>) -> Result<Triage, TriageError> {
        let rules = rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| (format!("rule[{i}]"), r))
            .collect();
        compile(rules, Vec::new())
    }

    /// The rules, in the order they are tried.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Whether a dead letter needs triage: it carries no verdict of its own
    /// (seed, raw, Connect and Spring records), or no class.
    pub fn applies_to(letter: &DeadLetter) -> bool {
        matches!(
            letter.origin,
            Origin::Seed | Origin::Raw | Origin::Connect | Origin::Spring
        ) || letter.error_class == UNKNOWN_ERROR_CLASS
    }

    /// The triage of a dead letter: its exception type (Connect and Spring
    /// put it in the error class) and message. `None` when no rule matches.
    pub fn letter(&self, letter: &DeadLetter) -> Option<Triaged<'_>> {
        let exception =
            (letter.error_class != UNKNOWN_ERROR_CLASS).then_some(letter.error_class.as_str());
        self.message(exception, &letter.error)
    }

    /// The triage of an error message, with the exception type when it is
    /// known apart from the message. `None` when no rule matches.
    pub fn message(&self, exception: Option<&str>, message: &str) -> Option<Triaged<'_>> {
        let full = cut(message, MAX_TEXT);
        let cause = crate::mine::root_cause(full);
        let with_type = |text: &str| match exception {
            Some(t) if !text.contains(t) => format!("{t}: {text}"),
            _ => text.to_owned(),
        };
        let first = |text: &str| {
            let by_regex = self
                .set
                .matches(text.as_bytes())
                .iter()
                .map(|p| self.rule_of[p])
                .min();
            let by_literal = self.literals.as_ref().and_then(|ac| {
                ac.find_overlapping_iter(text.as_bytes())
                    .map(|m| self.rule_of_literal[m.pattern().as_usize()])
                    .min()
            });
            by_regex.into_iter().chain(by_literal).min()
        };
        first(&with_type(cause))
            .or_else(|| {
                (cause.len() != full.len())
                    .then(|| first(&with_type(full)))
                    .flatten()
            })
            .map(|i| Triaged {
                rule: &self.rules[i],
                index: i,
            })
    }
}

/// Checks and compiles rules (each with where it was defined), adding to
/// `problems` found before, so that all are reported at once.
fn compile(rules: Vec<(String, Rule)>, mut problems: Vec<String>) -> Result<Triage, TriageError> {
    let mut names = BTreeSet::new();
    // One alternation per rule: the set's compile time grows with the
    // number of its members far more than with their size.
    let mut patterns = Vec::new();
    let mut rule_of = Vec::new();
    let mut literals = Vec::new();
    let mut rule_of_literal = Vec::new();
    for (i, (at, r)) in rules.iter().enumerate() {
        let mut alternatives = Vec::new();
        if r.name.trim().is_empty() {
            problems.push(format!("{at}.name: is empty"));
        } else if !names.insert(r.name.as_str()) {
            problems.push(format!(
                "{at}.name: {:?} is used twice; each rule needs its own name",
                r.name
            ));
        }
        if r.class.trim().is_empty() {
            problems.push(format!("{at}.class: is empty"));
        }
        if r.patterns.is_empty() {
            problems.push(format!("{at}.patterns: give at least one pattern"));
        }
        for (j, p) in r.patterns.iter().enumerate() {
            // Compiled alone first, to say which pattern is wrong.
            if let Err(e) = regex::bytes::RegexBuilder::new(p)
                .case_insensitive(true)
                .unicode(false)
                .build()
            {
                problems.push(format!("{at}.patterns[{j}]: {}", one_line(&e.to_string())));
            } else if let Some(text) = plain_text(p) {
                literals.push(text);
                rule_of_literal.push(i);
            } else {
                alternatives.push(format!("(?:{p})"));
            }
        }
        if !alternatives.is_empty() {
            patterns.push(alternatives.join("|"));
            rule_of.push(i);
        }
    }
    if !problems.is_empty() {
        return Err(TriageError { problems });
    }
    let set = RegexSetBuilder::new(&patterns)
        .case_insensitive(true)
        // ASCII classes and word boundaries keep the whole set in the lazy
        // DFA (a Unicode `\b` forces the far slower NFA simulation).
        .unicode(false)
        .size_limit(64 << 20)
        .dfa_size_limit(16 << 20)
        .build()
        .map_err(|e| TriageError {
            problems: vec![format!(
                "the rule set does not compile: {}",
                one_line(&e.to_string())
            )],
        })?;
    let literals = if literals.is_empty() {
        None
    } else {
        Some(
            AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .build(&literals)
                .map_err(|e| TriageError {
                    problems: vec![format!("the rule set does not compile: {e}")],
                })?,
        )
    };
    Ok(Triage {
        rules: rules.into_iter().map(|(_, r)| r).collect(),
        set,
        rule_of,
        literals,
        rule_of_literal,
    })
}

/// The text a pattern matches when it is plain text (escaped punctuation
/// allowed: `max\.request\.size`), else `None`. Case folding is ASCII on
/// both sides, so the automaton finds what the regex would.
fn plain_text(pattern: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(pattern.len());
    let mut bytes = pattern.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'\\' => match bytes.next() {
                Some(c) if c.is_ascii_punctuation() => out.push(c),
                _ => return None,
            },
            b'.' | b'^' | b'$' | b'|' | b'?' | b'*' | b'+' | b'(' | b')' | b'[' | b']' | b'{'
            | b'}' | b'#' => return None,
            // Whitespace matters in extended mode only, which rules do not use.
            _ => out.push(b),
        }
    }
    (!out.is_empty()).then_some(out)
}

fn empty() -> Triage {
    Triage {
        rules: Vec::new(),
        set: RegexSet::empty(),
        rule_of: Vec::new(),
        literals: None,
        rule_of_literal: Vec::new(),
    }
}

/// Reads a `[triage]` table's rules into `rules`; returns its
/// `builtin_rules` (when valid).
fn read_table(
    path: &str,
    t: &toml::Table,
    rules: &mut Vec<(String, Rule)>,
    problems: &mut Vec<String>,
) -> Option<bool> {
    for key in t.keys() {
        if !TRIAGE_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "{path}.{key}: unknown key (expected one of: {})",
                TRIAGE_KEYS.join(", ")
            ));
        }
    }
    let builtin = match t.get("builtin_rules") {
        None => Some(true),
        Some(toml::Value::Boolean(b)) => Some(*b),
        Some(_) => {
            problems.push(format!("{path}.builtin_rules: expected true or false"));
            None
        }
    };
    match t.get("rule") {
        None => {}
        Some(toml::Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let at = format!("{path}.rule[{i}]");
                match v.clone().try_into::<Rule>() {
                    Ok(r) => rules.push((at, r)),
                    Err(e) => problems.push(format!("{at}: {}", one_line(e.message()))),
                }
            }
        }
        Some(_) => problems.push(format!(
            "{path}.rule: expected [[triage.rule]] tables (an array of tables)"
        )),
    }
    builtin
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(message: &str) -> Option<String> {
        Triage::builtin()
            .message(None, message)
            .map(|t| t.rule.name.clone())
    }

    #[test]
    fn the_shipped_rules_parse_and_compile() {
        let t = Triage::from_config("", true).expect("shipped rules");
        assert!(t.rules().len() >= 30, "{}", t.rules().len());
        assert_eq!(Triage::builtin().rules().len(), t.rules().len());
    }

    #[test]
    fn the_seeds_plain_messages_get_verdicts() {
        let t = Triage::builtin();
        let v = |m: &str| t.message(None, m).map(|t| t.rule.verdict);
        assert_eq!(
            v("Message production error: MessageTimedOut (Local: Message timed out)"),
            Some(Verdict::Transient)
        );
        assert_eq!(v("HTTP 429 Too Many Requests"), Some(Verdict::Transient));
        assert_eq!(
            v("ERROR: deadlock detected\nDETAIL: Process 1 waits for ShareLock"),
            Some(Verdict::Transient)
        );
        assert_eq!(
            v("java.lang.NumberFormatException: For input string: \"abc\""),
            Some(Verdict::Permanent)
        );
        assert_eq!(
            v("duplicate key value violates unique constraint \"events_pkey\""),
            Some(Verdict::Duplicate)
        );
        assert_eq!(
            v(
                "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
            ),
            Some(Verdict::Configuration)
        );
        assert_eq!(v("something nobody has seen"), None);
    }

    #[test]
    fn the_root_cause_decides_before_the_wrapper() {
        // The wrapper says "deserialize", the cause says "connection refused".
        assert_eq!(
            rule_of(
                "Failed to deserialize record; nested exception is java.net.ConnectException: Connection refused"
            )
            .as_deref(),
            Some("network.connection_refused")
        );
    }

    #[test]
    fn the_exception_type_counts_when_the_message_does_not_say() {
        let t = Triage::builtin();
        let got = t
            .message(
                Some("org.apache.kafka.common.errors.RecordTooLargeException"),
                "The message is 2000000 bytes",
            )
            .expect("a rule");
        assert_eq!(got.rule.verdict, Verdict::Configuration);
    }

    #[test]
    fn user_rules_come_first_and_can_replace_the_shipped_ones() {
        let text = r#"
            [monitor]
            interval = "5s"

            [[triage.rule]]
            name = "acme.quota"
            class = "acme.quota"
            verdict = "transient"
            patterns = ['ACME-\d+ quota']
        "#;
        let t = Triage::from_config(text, true).expect("config");
        assert_eq!(t.rules()[0].name, "acme.quota");
        assert!(t.rules().len() > 1);
        let got = t.message(None, "ACME-42 quota exceeded").expect("match");
        assert_eq!(got.rule.name, "acme.quota");
        let only = Triage::from_config(
            "[triage]\nbuiltin_rules = false\n[[triage.rule]]\nname = \"a\"\nclass = \"a\"\nverdict = \"permanent\"\npatterns = [\"x\"]\n",
            true,
        )
        .expect("config");
        assert_eq!(only.rules().len(), 1);
    }

    #[test]
    fn every_problem_of_a_config_is_reported_at_once() {
        let text = r#"
            [triage]
            colour = "blue"
            [[triage.rule]]
            name = "a"
            class = "a"
            verdict = "maybe"
            patterns = ["x"]
            [[triage.rule]]
            name = "b"
            class = "b"
            verdict = "transient"
            patterns = ["(unclosed"]
            [[triage.rule]]
            name = "b"
            class = "c"
            verdict = "transient"
            patterns = []
            extra = 1
            [[triage.rule]]
            name = "d"
            class = ""
            verdict = "permanent"
            patterns = ["ok"]
        "#;
        let err = Triage::from_config(text, false).expect_err("invalid");
        let all = err.problems.join("\n");
        assert!(all.contains("triage.colour: unknown key"), "{all}");
        assert!(
            all.contains("triage.rule[0]") && all.contains("maybe"),
            "{all}"
        );
        assert!(
            all.contains("triage.rule[2]") && all.contains("extra"),
            "{all}"
        );
        // Rules that parsed are checked together: a bad pattern, an empty
        // class, in one report with the parse errors above.
        assert!(all.contains("patterns[0]"), "{all}");
        assert!(all.contains(".class: is empty"), "{all}");
        assert_eq!(err.problems.len(), 5, "{all}");
        assert!(Triage::from_config("[triage", false).is_err());
    }

    #[test]
    fn plain_text_patterns_are_told_from_regexes() {
        assert_eq!(
            plain_text("Local: Queue full").as_deref(),
            Some(&b"Local: Queue full"[..])
        );
        assert_eq!(
            plain_text(r"max\.request\.size").as_deref(),
            Some(&b"max.request.size"[..])
        );
        for regex in [
            r"\b429\b", "a.b", "(a|b)", "x{2}", r"\d", "^a", "a$", "[ab]", "a?",
        ] {
            assert_eq!(plain_text(regex), None, "{regex}");
        }
    }

    #[test]
    fn plain_text_rules_match_whatever_the_case_and_keep_the_rule_order() {
        let rule = |name: &str, verdict, pattern: &str| Rule {
            name: name.into(),
            class: name.into(),
            verdict,
            patterns: vec![pattern.into()],
            reason: None,
        };
        let t = Triage::new(vec![
            rule("first", Verdict::Duplicate, r"already \w+"),
            rule("second", Verdict::Transient, "TIMED OUT"),
            rule("third", Verdict::Permanent, "already applied"),
        ])
        .expect("rules");
        let name = |m: &str| t.message(None, m).map(|t| t.rule.name.as_str());
        assert_eq!(name("the call timed out"), Some("second"));
        // A regex rule before a plain-text one wins, and the other way round.
        assert_eq!(name("already applied; timed out"), Some("first"));
        assert_eq!(name("ALREADY APPLIED"), Some("first"));
        assert_eq!(name("nothing"), None);
    }

    #[test]
    fn long_messages_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_TEXT);
        assert!(Triage::builtin().message(None, &long).is_none());
        assert_eq!(cut("aé", 2), "a");
    }
}
