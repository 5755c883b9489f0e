//! Masking: the variable parts of a message become typed placeholders.
//!
//! One left-to-right pass over the bytes, no regular expressions, no
//! allocation besides the output buffer. At each position the scanner asks
//! "does a variable start here?" in a fixed order and, when one does, writes
//! its placeholder and jumps past it. Everything else is copied through.
//!
//! The rules, in the order they are tried at a position:
//!
//! | placeholder | what | examples |
//! |---|---|---|
//! | `<QUOTED>` | a `"…"`, `'…'` or `` `…` `` value (see below) | `"0.42"`, `'N/A'`, `` `link` ``, `"zero point four"` |
//! | `<UUID>` | 8-4-4-4-12 hex digits | `0b9e4c2a-…` |
//! | `<TS>` | a date `YYYY-MM-DD` with an optional time (`T`, `t` or one space), fraction and zone; or a time `H:MM:SS` | `2026-11-01T05:00:00.123Z`, `2026-11-01 05:00:00+00` |
//! | `<IP>` | an IPv4 address with an optional `:port`, also as Java prints it, `host/address:port` | `10.0.3.17`, `kafka-2.internal/10.2.0.4:9092` |
//! | `<KAFKA_COORD>` | a record's Kafka coordinates: `topic-partition@offset` (Spring), or the phrase `partition P, offset O` (also `partition=P, offset=O`, `partition P at offset O`, `partition topic-P at offset O`) | `rss.events-3@1812`, `partition 3, offset 1812` |
//! | `<LIST>` | a bracketed, comma-separated list of names (each item without spaces, brackets or `=`, with a letter), as Java's `List.toString` and Python's list repr print them; a list of numbers is not one | `[rss.events, polymarket.trades]`, `['null', 'double']` |
//! | `<URL>` | `scheme://…` up to white space or a quote; trailing punctuation and unbalanced closing brackets are not part of it | `https://api.x/v1?a=b`, `sasl_ssl://kafka-0:9096/0` |
//! | `<PATH>` | `/segment…` starting a word | `/app/consumer.py`, `/markets/865028` |
//! | `<HEX>` | `0x` + hex digits; or a run of hex digits with at least one digit that is ≥ 8 long (or starts with a digit and mixes in hex letters) | `0x5f2d…`, `ed193f42…`, `0a8e` |
//! | `<NUM>` | a number starting a word: optional sign (only after a space, a bracket, `=`, `:` or `,`), digits, fraction, exponent, dotted groups; a letter unit that follows is kept (`<NUM>ms`) | `1812`, `-0.01`, `1.2e-1`, `2.12.1` |
//! | `<ID>` | a run that starts with a digit and mixes digits and letters but is none of the above | `9b2k4x` |
//!
//! "Starting a word" means the previous byte is not an ASCII letter or digit,
//! so digits inside identifiers stay (`f64`, `utf8`, `ipv4`, `x86`), while
//! `ph-1` becomes `ph-<NUM>` and `kafka-2.internal` becomes
//! `kafka-<NUM>.internal`.
//!
//! Quoted values: the opening quote must start a value (at the start, or after
//! white space or one of `( [ { = : , )`), so apostrophes (`don't`) are not
//! quotes. The value ends at the first same quote (backslash escapes are
//! skipped) that is followed by white space or the end, possibly after a
//! truncation marker (`…` or `...`, which is masked with the value) and closing
//! punctuation `) ] } > , ; : . ! ?`, and that does not directly follow `:`,
//! `,`, `{` or `[` (that quote opens a JSON value, it does not close one). So
//! a compact JSON excerpt in quotes is one value. A value may hold spaces but
//! not a newline and at most 1,024 bytes; the search for closing quotes
//! looks at no more than twice the message's length plus 4 KiB in all, so
//! masking stays linear even for text full of quotes that never close.
//!
//! Two exceptions keep constant text visible: a value that is one punctuation
//! character (`','`, `` `}` ``) names syntax and is kept; a value that
//! contains `": "` is a nested error message (Python's
//! `NewConnectionError('…: Failed to establish a new connection: [Errno 111]
//! Connection refused')`), so its quotes are kept and its contents are masked
//! by these same rules.
//!
//! Not masked: IPv6 addresses, e-mail addresses, bare host or topic names
//! (`rss.events`), words. Those are left to the miner, which generalizes
//! tokens that look variable (see [`super::Miner`]).

/// A kind of variable part, and the placeholder it is replaced with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaskKind {
    /// A quoted value: `<QUOTED>`.
    Quoted,
    /// A UUID: `<UUID>`.
    Uuid,
    /// A timestamp, date or time of day: `<TS>`.
    Ts,
    /// An IPv4 address, optionally with a port: `<IP>`.
    Ip,
    /// Kafka coordinates of a record: `<KAFKA_COORD>`.
    KafkaCoord,
    /// A list of names: `<LIST>`.
    List,
    /// A URL: `<URL>`.
    Url,
    /// A file or URL path: `<PATH>`.
    Path,
    /// A hexadecimal number or id: `<HEX>`.
    Hex,
    /// A decimal number: `<NUM>`.
    Num,
    /// An id mixing digits and letters: `<ID>`.
    Id,
}

impl MaskKind {
    /// Every kind, in the order they are tried at a position.
    pub const ALL: [MaskKind; 11] = [
        MaskKind::Quoted,
        MaskKind::Uuid,
        MaskKind::Ts,
        MaskKind::Ip,
        MaskKind::KafkaCoord,
        MaskKind::List,
        MaskKind::Url,
        MaskKind::Path,
        MaskKind::Hex,
        MaskKind::Num,
        MaskKind::Id,
    ];

    /// The placeholder written in place of a value of this kind.
    pub const fn placeholder(self) -> &'static str {
        match self {
            MaskKind::Quoted => "<QUOTED>",
            MaskKind::Uuid => "<UUID>",
            MaskKind::Ts => "<TS>",
            MaskKind::Ip => "<IP>",
            MaskKind::KafkaCoord => "<KAFKA_COORD>",
            MaskKind::List => "<LIST>",
            MaskKind::Url => "<URL>",
            MaskKind::Path => "<PATH>",
            MaskKind::Hex => "<HEX>",
            MaskKind::Num => "<NUM>",
            MaskKind::Id => "<ID>",
        }
    }

    /// The kind whose placeholder is `s` (with its angle brackets).
    pub fn from_placeholder(s: &str) -> Option<MaskKind> {
        MaskKind::ALL.into_iter().find(|k| k.placeholder() == s)
    }
}

/// Replaces the variable parts of a message with typed placeholders.
///
/// ```
/// use dlq_core::mine::Masker;
///
/// let m = Masker::new();
/// assert_eq!(
///     m.mask(r#"field "price": expected a number, got a string ("zero point four")"#),
///     "field <QUOTED>: expected a number, got a string (<QUOTED>)"
/// );
/// assert_eq!(
///     m.mask("Expecting ',' delimiter: line 1 column 45 (char 44)"),
///     "Expecting ',' delimiter: line <NUM> column <NUM> (char <NUM>)"
/// );
/// assert_eq!(m.mask("record rss.events-3@1812 failed"), "record <KAFKA_COORD> failed");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Masker {
    /// The extra rules of [`Masker::v2`] are on.
    v2: bool,
}

/// The longest quoted value that is masked, in bytes between the quotes.
/// Also bounds the work per opening quote, so masking stays linear.
const MAX_QUOTED: usize = 1024;

/// What the scanner does at a position.
enum Step {
    /// Copy the bytes up to this position through unchanged.
    Keep(usize),
    /// Replace the bytes up to this position with a placeholder.
    Mask(usize, MaskKind),
}

impl Masker {
    /// A masker with every rule of the module documentation.
    pub const fn new() -> Self {
        Masker { v2: false }
    }

    /// A masker with the rules of [`Masker::new`] and these, which the
    /// miner's version 2 uses ([`super::MinerConfig::version`]); the
    /// stateless fingerprints of `dlq analyze` keep [`Masker::new`], so they
    /// do not change:
    ///
    /// * a number followed by a space and a unit of size or time (`B`, `KB`,
    ///   `MiB`, `bytes`, `ms`, `sec`, `seconds`, …) is one `<NUM>`: `512 B`
    ///   and `1.2 KB` are the same kind of value;
    /// * a date as C's `ctime` and syslog print it (`Fri Jun 17 20:55:07
    ///   2005`, `Jun  9 06:06:20`: an optional weekday, a month name, the
    ///   day, an optional time and year) is one `<TS>`;
    /// * a list of two or more bare names after `: ` (`missing required
    ///   fields: price, volume`) is a `<LIST>`, like a bracketed one;
    /// * a quoted HTTP request line keeps its method: `"GET /a/b HTTP/1.1"`
    ///   becomes `"GET <PATH> HTTP/<NUM>"` (the method tells requests apart;
    ///   the rest is masked by the other rules);
    /// * a line of a multi-line message that is one name between other
    ///   lines (the field path that pydantic prints on a line of its own) is
    ///   an `<ID>`.
    pub const fn v2() -> Self {
        Masker { v2: true }
    }

    /// `text` with its variable parts replaced.
    pub fn mask(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        self.mask_into(text, &mut out);
        out
    }

    /// Appends `text` with its variable parts replaced to `out` (so a caller
    /// can reuse one buffer for many messages).
    pub fn mask_into(&self, text: &str, out: &mut String) {
        let b = text.as_bytes();
        let n = b.len();
        let mut i = 0;
        // Start of the bytes not yet copied to `out`.
        let mut copied = 0;
        // The closing quote of a nested message whose quotes are kept.
        let mut nested_close = usize::MAX;
        // Bytes the search for closing quotes may still look at. A search
        // that finds its quote skips what it looked at, so real messages use
        // at most their length; only many quotes that never close (`"a "a
        // "a …`) would make masking quadratic, and they run out of budget.
        let mut quote_budget = 2 * n + 4096;
        while i < n {
            let c = b[i];
            let prev = if i == 0 { None } else { Some(b[i - 1]) };
            let step = match c {
                b'"' | b'\'' | b'`' => {
                    if i == nested_close {
                        nested_close = usize::MAX;
                        Step::Keep(i + 1)
                    } else {
                        if self.v2
                            && let Some(end) = http_request_method(b, i)
                        {
                            Step::Keep(end)
                        } else {
                            quoted(b, i, prev, &mut nested_close, &mut quote_budget)
                        }
                    }
                }
                b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => {
                    // After a placeholder the word goes on (`<NUM>ms`), so
                    // masking a masked text changes nothing.
                    if prev.is_some_and(|p| p.is_ascii_alphanumeric())
                        || (prev == Some(b'>') && ends_with_placeholder(&b[..i]))
                    {
                        Step::Keep(alnum_end(b, i))
                    } else if self.v2 {
                        word_v2(b, i, prev)
                    } else {
                        word(b, i, prev)
                    }
                }
                b'-' | b'+' => signed(b, i, prev),
                b'/' => path(b, i, prev),
                b'[' => list(b, i, prev),
                _ => Step::Keep(i + 1),
            };
            match step {
                Step::Keep(end) => i = end,
                Step::Mask(end, kind) => {
                    // Every span starts and ends at an ASCII byte (or the
                    // end), so these are char boundaries.
                    out.push_str(&text[copied..i]);
                    out.push_str(kind.placeholder());
                    i = end;
                    copied = end;
                }
            }
        }
        out.push_str(&text[copied..]);
    }
}

fn ends_with_placeholder(b: &[u8]) -> bool {
    MaskKind::ALL
        .iter()
        .any(|k| b.ends_with(k.placeholder().as_bytes()))
}

fn at(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn alnum_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_alphanumeric() {
        i += 1;
    }
    i
}

fn digits_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// `i` is at the end of a word: the end, or a byte that is not a letter or
/// digit.
fn word_ends(b: &[u8], i: usize) -> bool {
    !at(b, i).is_ascii_alphanumeric()
}

/// Whether a value may start after `prev` (a sign, a quote, a path).
fn value_may_start_after(prev: Option<u8>) -> bool {
    match prev {
        None => true,
        Some(p) => p.is_ascii_whitespace() || matches!(p, b'(' | b'[' | b'{' | b'=' | b':' | b','),
    }
}

fn quoted(
    b: &[u8],
    i: usize,
    prev: Option<u8>,
    nested_close: &mut usize,
    budget: &mut usize,
) -> Step {
    if !(value_may_start_after(prev) || prev == Some(b')')) || *budget == 0 {
        return Step::Keep(i + 1);
    }
    let q = b[i];
    let n = b.len();
    let mut j = i + 1;
    loop {
        if j >= n || j - i > MAX_QUOTED || j - i > *budget {
            *budget = budget.saturating_sub(j - i);
            return Step::Keep(i + 1);
        }
        let c = b[j];
        if c == b'\\' {
            j += 2;
            continue;
        }
        if c == b'\n' {
            *budget = budget.saturating_sub(j - i);
            return Step::Keep(i + 1);
        }
        if c == q && closes(b, i, j) {
            break;
        }
        j += 1;
    }
    *budget = budget.saturating_sub(j - i);
    let content = &b[i + 1..j];
    if content.len() == 1 && content[0].is_ascii_punctuation() {
        return Step::Keep(j + 1);
    }
    if content.windows(2).any(|w| w == b": ") {
        if *nested_close == usize::MAX || *nested_close < i {
            *nested_close = j;
        }
        return Step::Keep(i + 1);
    }
    Step::Mask(j + 1 + truncation_marker(b, j + 1), MaskKind::Quoted)
}

/// The length of a truncation marker (`…` or `...`) at `k`, or 0. Messages
/// that cut a long value write it right after the closing quote
/// (`got "www.example.com/a-very-long-pa"…`); the marker belongs to the value.
fn truncation_marker(b: &[u8], k: usize) -> usize {
    let rest = &b[k.min(b.len())..];
    if rest.starts_with("…".as_bytes()) {
        "…".len()
    } else if rest.starts_with(b"...") {
        3
    } else {
        0
    }
}

/// Whether the quote at `j` closes the value opened at `open`.
fn closes(b: &[u8], open: usize, j: usize) -> bool {
    if j > open + 2 && matches!(b[j - 1], b':' | b',' | b'{' | b'[') {
        return false;
    }
    let mut k = j + 1 + truncation_marker(b, j + 1);
    while k < b.len()
        && matches!(
            b[k],
            b')' | b']' | b'}' | b'>' | b',' | b';' | b':' | b'.' | b'!' | b'?'
        )
    {
        k += 1;
    }
    k == b.len() || b[k].is_ascii_whitespace()
}

/// A word starts at `i` (a letter or a digit after a non-alphanumeric byte).
fn word(b: &[u8], i: usize, prev: Option<u8>) -> Step {
    let c = b[i];
    if c.is_ascii_hexdigit()
        && let Some(end) = uuid(b, i)
    {
        return Step::Mask(end, MaskKind::Uuid);
    }
    if c.is_ascii_digit() {
        if let Some(end) = timestamp(b, i) {
            return Step::Mask(end, MaskKind::Ts);
        }
        if let Some(end) = ipv4_port(b, i) {
            return Step::Mask(end, MaskKind::Ip);
        }
    }
    // Names (topics, hosts, URL schemes) are scanned once, from their start;
    // what follows the name decides which rule can apply.
    if !prev.is_some_and(is_name_byte) {
        let e = name_end(b, i);
        let found = match at(b, e) {
            b'@' => topic_partition_offset(b, i, e).map(|end| (end, MaskKind::KafkaCoord)),
            b'/' => host_slash_ip(b, i, e).map(|end| (end, MaskKind::Ip)),
            b':' | b'+' if c.is_ascii_alphabetic() && prev != Some(b'+') => {
                url(b, i).map(|end| (end, MaskKind::Url))
            }
            _ => None,
        };
        if let Some((end, kind)) = found {
            return Step::Mask(end, kind);
        }
    }
    if c.is_ascii_alphabetic() {
        if (c == b'p' || c == b'P')
            && let Some(end) = partition_phrase(b, i)
        {
            return Step::Mask(end, MaskKind::KafkaCoord);
        }
        let end = alnum_end(b, i);
        let run = &b[i..end];
        if run.len() >= 8
            && run.iter().all(u8::is_ascii_hexdigit)
            && run.iter().any(u8::is_ascii_digit)
        {
            return Step::Mask(end, MaskKind::Hex);
        }
        return Step::Keep(end);
    }
    number_like(b, i)
}

/// [`word`] with the rules of [`Masker::v2`].
fn word_v2(b: &[u8], i: usize, prev: Option<u8>) -> Step {
    let c = b[i];
    if prev == Some(b'\n')
        && let Some(end) = name_line(b, i)
    {
        return Step::Mask(end, MaskKind::Id);
    }
    if c.is_ascii_uppercase()
        && !at(b, i + 3).is_ascii_alphanumeric()
        && let Some(end) = ctime_date(b, i)
    {
        return Step::Mask(end, MaskKind::Ts);
    }
    if prev == Some(b' ')
        && i >= 2
        && b[i - 2] == b':'
        && let Some(end) = bare_list(b, i)
    {
        return Step::Mask(end, MaskKind::List);
    }
    match word(b, i, prev) {
        Step::Mask(end, MaskKind::Num) => Step::Mask(unit_end(b, end), MaskKind::Num),
        step => step,
    }
}

/// `name, name[, …]` after `: ` (`missing required fields: price, volume`):
/// two or more names (letters, digits, `_`, `.`, `-`, with a letter)
/// separated by `,` and spaces, the last one ending the word; the end.
fn bare_list(b: &[u8], i: usize) -> Option<usize> {
    let mut k = i;
    let mut items = 0;
    loop {
        let e = name_end(b, k);
        if e == k || !b[k..e].iter().any(u8::is_ascii_alphabetic) || !word_ends(b, e) {
            return None;
        }
        items += 1;
        // A name ends the list unless `, name` follows.
        let next = spaces_end(b, e + 1);
        if at(b, e) == b',' && next > e + 1 && at(b, next).is_ascii_alphanumeric() {
            k = next;
        } else {
            // The last name ends the clause (not `name:`, a key).
            if !matches!(
                at(b, e),
                0 | b' ' | b'\t' | b'\r' | b'\n' | b'.' | b')' | b';'
            ) {
                return None;
            }
            let mut end = e;
            // Trailing dots are the sentence's.
            while end > i && b[end - 1] == b'.' {
                end -= 1;
            }
            return (items >= 2).then_some(end);
        }
    }
}

/// Units of size and time that may follow a number after one space.
const UNITS: [&[u8]; 30] = [
    b"B", b"KB", b"MB", b"GB", b"TB", b"PB", b"kB", b"KiB", b"MiB", b"GiB", b"TiB", b"byte",
    b"bytes", b"ns", b"us", b"ms", b"s", b"sec", b"secs", b"second", b"seconds", b"min", b"mins",
    b"minute", b"minutes", b"h", b"hour", b"hours", b"day", b"days",
];

/// The end of ` unit` after a number ending at `e`, or `e`.
fn unit_end(b: &[u8], e: usize) -> usize {
    if at(b, e) != b' ' || !at(b, e + 1).is_ascii_alphabetic() {
        return e;
    }
    let w = alnum_end(b, e + 1);
    if UNITS.contains(&&b[e + 1..w]) && word_ends(b, w) {
        w
    } else {
        e
    }
}

const WEEKDAYS: [&[u8]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];
const MONTHS: [&[u8]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// `[Www ]Mmm D[D][ HH:MM:SS][ YYYY]` at `i` (C's `ctime`, syslog); the end.
/// A month name alone, or with a day but neither time nor weekday
/// (`May 5`), is not enough: "May 2 …" could be prose.
fn ctime_date(b: &[u8], i: usize) -> Option<usize> {
    let three = |k: usize, names: &[&[u8]]| {
        b.get(k..k + 3)
            .is_some_and(|w| names.contains(&w) && word_ends(b, k + 3))
    };
    let mut k = i;
    let weekday = three(k, &WEEKDAYS);
    if weekday {
        k = spaces_end(b, k + 3);
    }
    if !three(k, &MONTHS) {
        return None;
    }
    k = spaces_end(b, k + 3);
    let d = digits_end(b, k);
    if d == k || d > k + 2 || !word_ends(b, d) {
        return None;
    }
    let mut end = d;
    let mut time = false;
    let t = spaces_end(b, d);
    if t > d
        && let Some(e) = time_of_day(b, t)
        && word_ends(b, e)
    {
        end = e;
        time = true;
    }
    let y = spaces_end(b, end);
    if y > end && (0..4).all(|x| at(b, y + x).is_ascii_digit()) && word_ends(b, y + 4) {
        end = y + 4;
    }
    (weekday || time).then_some(end)
}

/// An HTTP method after an opening quote, with a space and a path or URL
/// after it (`"GET /a HTTP/1.1"`); the end of `"METHOD `.
fn http_request_method(b: &[u8], i: usize) -> Option<usize> {
    const METHODS: [&[u8]; 7] = [
        b"GET", b"POST", b"PUT", b"DELETE", b"PATCH", b"HEAD", b"OPTIONS",
    ];
    let k = i + 1;
    let e = alnum_end(b, k);
    (METHODS.contains(&&b[k..e]) && at(b, e) == b' ' && at(b, e + 1) == b'/').then_some(e + 1)
}

/// A line that is one name (letters, digits, `_`, `.`, `-`, with a letter),
/// starting at `i` after a newline and followed by another line; its end.
fn name_line(b: &[u8], i: usize) -> Option<usize> {
    let mut e = i;
    while e < b.len() && (b[e].is_ascii_alphanumeric() || matches!(b[e], b'_' | b'.' | b'-')) {
        e += 1;
    }
    let mut k = e;
    while matches!(at(b, k), b' ' | b'\t' | b'\r') {
        k += 1;
    }
    (at(b, k) == b'\n' && k + 1 < b.len()).then_some(e)
}

/// A run starting with a digit: a number (with a unit kept), hex, or an id.
fn number_like(b: &[u8], i: usize) -> Step {
    let end = alnum_end(b, i);
    if b[i] == b'0'
        && matches!(at(b, i + 1), b'x' | b'X')
        && end > i + 2
        && b[i + 2..end].iter().all(u8::is_ascii_hexdigit)
    {
        return Step::Mask(end, MaskKind::Hex);
    }
    let num_end = number_end(b, i);
    if !at(b, num_end).is_ascii_alphanumeric() {
        return Step::Mask(num_end, MaskKind::Num);
    }
    // Letters follow the number: a unit (`5000ms`) when they are only letters
    // up to the end of the word, otherwise the whole word is hex or an id.
    let unit_end = alnum_end(b, num_end);
    if b[num_end..unit_end].iter().all(u8::is_ascii_alphabetic) {
        return Step::Mask(num_end, MaskKind::Num);
    }
    if b[i..end].iter().all(u8::is_ascii_hexdigit) {
        Step::Mask(end, MaskKind::Hex)
    } else {
        Step::Mask(end, MaskKind::Id)
    }
}

/// The end of `digits (. digits)* ([eE] [+-]? digits)?` starting at `i`.
fn number_end(b: &[u8], i: usize) -> usize {
    let mut e = digits_end(b, i);
    while at(b, e) == b'.' && at(b, e + 1).is_ascii_digit() {
        e = digits_end(b, e + 1);
    }
    if matches!(at(b, e), b'e' | b'E') {
        let mut k = e + 1;
        if matches!(at(b, k), b'+' | b'-') {
            k += 1;
        }
        if at(b, k).is_ascii_digit() {
            e = digits_end(b, k);
        }
    }
    e
}

fn signed(b: &[u8], i: usize, prev: Option<u8>) -> Step {
    if value_may_start_after(prev) && at(b, i + 1).is_ascii_digit() {
        let e = number_end(b, i + 1);
        if word_ends(b, e) {
            return Step::Mask(e, MaskKind::Num);
        }
    }
    Step::Keep(i + 1)
}

fn path(b: &[u8], i: usize, prev: Option<u8>) -> Step {
    let starts = value_may_start_after(prev) || matches!(prev, Some(b'"' | b'\''));
    let next = at(b, i + 1);
    if !starts || !(next.is_ascii_alphanumeric() || matches!(next, b'.' | b'_' | b'~' | b'-')) {
        return Step::Keep(i + 1);
    }
    let mut e = i + 1;
    while e < b.len() && !stops_path(b[e]) {
        e += 1;
    }
    while e > i + 1 && matches!(b[e - 1], b'.' | b':' | b'!' | b'?') {
        e -= 1;
    }
    Step::Mask(e, MaskKind::Path)
}

/// `[item, item, …]`, each item a name (see the module docs).
fn list(b: &[u8], i: usize, prev: Option<u8>) -> Step {
    if !value_may_start_after(prev) {
        return Step::Keep(i + 1);
    }
    let mut k = i + 1;
    loop {
        let start = k;
        let mut letter = false;
        while k < b.len() && k - i <= MAX_QUOTED {
            let c = b[k];
            if c.is_ascii_whitespace()
                || matches!(c, b'[' | b']' | b'{' | b'}' | b'(' | b')' | b',' | b'=')
            {
                break;
            }
            if c == b'<'
                && let Some(p) = MaskKind::ALL
                    .iter()
                    .find(|p| b[k..].starts_with(p.placeholder().as_bytes()))
            {
                // A placeholder is not a name.
                k += p.placeholder().len();
                continue;
            }
            letter |= c.is_ascii_alphabetic();
            k += 1;
        }
        if k == start || !letter {
            return Step::Keep(i + 1);
        }
        match at(b, k) {
            b']' => return Step::Mask(k + 1, MaskKind::List),
            b',' => k = spaces_end(b, k + 1),
            _ => return Step::Keep(i + 1),
        }
    }
}

fn stops_path(c: u8) -> bool {
    c.is_ascii_whitespace()
        || matches!(
            c,
            b'"' | b'\''
                | b'`'
                | b'<'
                | b'>'
                | b'('
                | b')'
                | b'['
                | b']'
                | b'{'
                | b'}'
                | b','
                | b';'
                | b'|'
        )
}

/// Bytes of topic and host names: letters, digits, `.`, `_`, `-`.
fn is_name_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-')
}

fn is_scheme_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-' | b'_')
}

fn name_end(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && is_name_byte(b[i]) {
        i += 1;
    }
    i
}

/// `hex{8}-hex{4}-hex{4}-hex{4}-hex{12}` ending a word.
fn uuid(b: &[u8], i: usize) -> Option<usize> {
    let mut k = i;
    for (g, len) in [8usize, 4, 4, 4, 12].into_iter().enumerate() {
        if g > 0 {
            if at(b, k) != b'-' {
                return None;
            }
            k += 1;
        }
        for _ in 0..len {
            if !at(b, k).is_ascii_hexdigit() {
                return None;
            }
            k += 1;
        }
    }
    word_ends(b, k).then_some(k)
}

fn two_digits(b: &[u8], k: usize) -> bool {
    at(b, k).is_ascii_digit() && at(b, k + 1).is_ascii_digit()
}

/// `YYYY-MM-DD[(T|t| )HH:MM[:SS[.frac]][zone]]` or `H:MM:SS[.frac]`.
fn timestamp(b: &[u8], i: usize) -> Option<usize> {
    let date = (0..4).all(|d| at(b, i + d).is_ascii_digit())
        && at(b, i + 4) == b'-'
        && two_digits(b, i + 5)
        && at(b, i + 7) == b'-'
        && two_digits(b, i + 8);
    if date {
        let mut k = i + 10;
        if matches!(at(b, k), b'T' | b't' | b' ')
            && two_digits(b, k + 1)
            && at(b, k + 3) == b':'
            && let Some(e) = time_of_day(b, k + 1)
        {
            k = zone(b, e);
        }
        return word_ends(b, k).then_some(k);
    }
    let h = digits_end(b, i);
    if (h == i + 1 || h == i + 2) && at(b, h) == b':' {
        let e = time_of_day(b, i)?;
        // A bare time needs seconds, so `12:30` stays two numbers.
        if e > h + 3 && word_ends(b, e) {
            return Some(e);
        }
    }
    None
}

/// `H[H]:MM[:SS[.frac]]` at `i`; the end.
fn time_of_day(b: &[u8], i: usize) -> Option<usize> {
    let h = digits_end(b, i);
    if h == i || h > i + 2 || at(b, h) != b':' || !two_digits(b, h + 1) {
        return None;
    }
    let mut k = h + 3;
    if at(b, k) == b':' && two_digits(b, k + 1) {
        k += 3;
        if matches!(at(b, k), b'.' | b',') && at(b, k + 1).is_ascii_digit() {
            k = digits_end(b, k + 1);
        }
    }
    Some(k)
}

/// An optional `Z` or `±HH[[:]MM]` at `k`; the end.
fn zone(b: &[u8], k: usize) -> usize {
    match at(b, k) {
        b'Z' | b'z' => k + 1,
        b'+' | b'-' if two_digits(b, k + 1) => {
            let mut e = k + 3;
            if at(b, e) == b':' && two_digits(b, e + 1) {
                e += 3;
            } else if two_digits(b, e) {
                e += 2;
            }
            e
        }
        _ => k,
    }
}

/// `d{1,3}.d{1,3}.d{1,3}.d{1,3}[:port]` ending a word (and not followed by
/// another `.digit`, which would make it something longer, like a version).
fn ipv4_port(b: &[u8], i: usize) -> Option<usize> {
    let mut k = i;
    for g in 0..4 {
        if g > 0 {
            if at(b, k) != b'.' {
                return None;
            }
            k += 1;
        }
        let e = digits_end(b, k);
        if e == k || e > k + 3 {
            return None;
        }
        k = e;
    }
    if at(b, k) == b'.' && at(b, k + 1).is_ascii_digit() {
        return None;
    }
    if at(b, k) == b':' && at(b, k + 1).is_ascii_digit() {
        let e = digits_end(b, k + 1);
        if word_ends(b, e) {
            k = e;
        }
    }
    word_ends(b, k).then_some(k)
}

/// `name/IPv4[:port]`, Java's `InetSocketAddress` form; `b[i..e]` is the
/// name.
fn host_slash_ip(b: &[u8], i: usize, e: usize) -> Option<usize> {
    if e > i && at(b, e) == b'/' && at(b, e + 1).is_ascii_digit() {
        ipv4_port(b, e + 1)
    } else {
        None
    }
}

/// `topic-partition@offset`, Spring Kafka's record coordinates; `b[i..e]` is
/// the name run before the `@`.
fn topic_partition_offset(b: &[u8], i: usize, e: usize) -> Option<usize> {
    if at(b, e) != b'@' || !at(b, e + 1).is_ascii_digit() {
        return None;
    }
    topic_partition_end(b, i, e)?;
    let o = digits_end(b, e + 1);
    word_ends(b, o).then_some(o)
}

/// If `b[i..e]` is `topic-digits` (a topic name, a dash, a partition),
/// returns `e`.
fn topic_partition_end(b: &[u8], i: usize, e: usize) -> Option<usize> {
    let mut d = e;
    while d > i && b[d - 1].is_ascii_digit() {
        d -= 1;
    }
    (d < e && d > i + 1 && b[d - 1] == b'-').then_some(e)
}

fn eq_ignore_case(b: &[u8], i: usize, word: &[u8]) -> bool {
    b.get(i..i + word.len())
        .is_some_and(|s| s.eq_ignore_ascii_case(word))
        && word_ends(b, i + word.len())
}

fn spaces_end(b: &[u8], mut k: usize) -> usize {
    while at(b, k) == b' ' {
        k += 1;
    }
    k
}

/// A separator between a key and its value: spaces, `=` or `:`, spaces.
fn key_sep_end(b: &[u8], k: usize) -> usize {
    let mut e = spaces_end(b, k);
    if matches!(at(b, e), b'=' | b':') {
        e = spaces_end(b, e + 1);
    }
    e
}

/// `partition P, offset O` and its variants (see the module docs).
fn partition_phrase(b: &[u8], i: usize) -> Option<usize> {
    if !eq_ignore_case(b, i, b"partition") {
        return None;
    }
    let v = key_sep_end(b, i + 9);
    if v == i + 9 {
        return None;
    }
    let after_value = if at(b, v).is_ascii_digit() {
        let e = digits_end(b, v);
        word_ends(b, e).then_some(e)?
    } else {
        let e = name_end(b, v);
        topic_partition_end(b, v, e)?
    };
    let mut k = after_value;
    if at(b, k) == b',' {
        k += 1;
    }
    k = spaces_end(b, k);
    if eq_ignore_case(b, k, b"at") {
        k = spaces_end(b, k + 2);
    }
    if k == after_value || !eq_ignore_case(b, k, b"offset") {
        return None;
    }
    let o = key_sep_end(b, k + 6);
    if o == k + 6 || !at(b, o).is_ascii_digit() {
        return None;
    }
    let e = digits_end(b, o);
    word_ends(b, e).then_some(e)
}

/// `scheme://rest` where the scheme starts at `i`.
fn url(b: &[u8], i: usize) -> Option<usize> {
    let mut k = i;
    while k < b.len() && is_scheme_byte(b[k]) {
        k += 1;
    }
    if b.get(k..k + 3) != Some(b"://") {
        return None;
    }
    let mut e = k + 3;
    while e < b.len()
        && !(b[e].is_ascii_whitespace() || matches!(b[e], b'"' | b'\'' | b'`' | b'<' | b'>'))
    {
        e += 1;
    }
    // Trailing punctuation and unbalanced closing brackets belong to the
    // sentence, not the URL.
    loop {
        let last = b[e - 1];
        let trim = match last {
            b'.' | b',' | b';' | b':' | b'!' | b'?' => true,
            b')' => count(&b[i..e], b'(') < count(&b[i..e], b')'),
            b']' => count(&b[i..e], b'[') < count(&b[i..e], b']'),
            b'}' => count(&b[i..e], b'{') < count(&b[i..e], b'}'),
            _ => false,
        };
        if !trim || e <= k + 3 {
            break;
        }
        e -= 1;
    }
    (e > k + 3).then_some(e)
}

fn count(b: &[u8], c: u8) -> usize {
    b.iter().filter(|&&x| x == c).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str) -> String {
        Masker::new().mask(s)
    }

    #[test]
    fn numbers() {
        assert_eq!(m("got 1.7"), "got <NUM>");
        assert_eq!(m("got -0.01, +3 and 1.2e-1"), "got <NUM>, <NUM> and <NUM>");
        assert_eq!(m("(char 44)"), "(char <NUM>)");
        assert_eq!(m("after 5000ms in state UP"), "after <NUM>ms in state UP");
        assert_eq!(m("librdkafka 2.12.1"), "librdkafka <NUM>");
        assert_eq!(
            m("ph-1 and kafka-2.internal"),
            "ph-<NUM> and kafka-<NUM>.internal"
        );
        // Digits inside a word stay; so does a dash that is not a sign.
        assert_eq!(
            m("expected f64, utf8, ipv4#x"),
            "expected f64, utf8, ipv4#x"
        );
        assert_eq!(m("UTF-8"), "UTF-<NUM>");
        assert_eq!(m("[Errno -2]"), "[Errno <NUM>]");
        assert_eq!(m("offset=1812,"), "offset=<NUM>,");
    }

    #[test]
    fn hex_and_ids() {
        assert_eq!(
            m("market 0x5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a0"),
            "market <HEX>"
        );
        assert_eq!(m("(byte 0xFF)"), "(byte <HEX>)");
        assert_eq!(m("trace ed193f422774308f93999e12"), "trace <HEX>");
        assert_eq!(m("sha 0a8e then deadbeef"), "sha <HEX> then deadbeef");
        assert_eq!(m("job 9b2k4x"), "job <ID>");
    }

    #[test]
    fn uuids() {
        assert_eq!(
            m("event 0b9e4c2a-1f3d-4c5e-9a7b-3c2d1e0f9a8b done"),
            "event <UUID> done"
        );
        assert_eq!(m("id=e3b0c442-98fc-4c14-9afb-f4c8996fb924"), "id=<UUID>");
    }

    #[test]
    fn quoted_values() {
        assert_eq!(m(r#"missing field "link""#), "missing field <QUOTED>");
        assert_eq!(m("KeyError: 'price'"), "KeyError: <QUOTED>");
        assert_eq!(
            m("missing field `link` at line 1"),
            "missing field <QUOTED> at line <NUM>"
        );
        assert_eq!(
            m(r#"got a string ("zero point four")"#),
            "got a string (<QUOTED>)"
        );
        assert_eq!(m(r#"got "with \"escaped\" quotes" ok"#), "got <QUOTED> ok");
        assert_eq!(m(r#"got """#), "got <QUOTED>");
        // Apostrophes are not quotes.
        assert_eq!(m("doesn't match 'x'"), "doesn't match <QUOTED>");
        // One punctuation character names syntax.
        assert_eq!(m("expected `,` or `}` at"), "expected `,` or `}` at");
        assert_eq!(m("Expecting ':' delimiter"), "Expecting ':' delimiter");
        // A compact JSON excerpt is one value, even with spaces inside.
        assert_eq!(
            m(r#"at [Source: (String)"{"id":"ph-1","price":"  0.5 ","v":1}"; line: 1, column: 9]"#),
            "at [Source: (String)<QUOTED>; line: <NUM>, column: <NUM>]"
        );
        // A nested message keeps its quotes and is masked inside.
        assert_eq!(
            m(
                "NewConnectionError('<x object at 0x7f3a>: Failed: [Errno 111] Connection refused'))"
            ),
            "NewConnectionError('<x object at <HEX>>: Failed: [Errno <NUM>] Connection refused'))"
        );
        // No closing quote: nothing masked.
        assert_eq!(m(r#"say "hello"#), r#"say "hello"#);
        // A value cut short, with its marker after the quote.
        assert_eq!(
            m(r#"got "www.example.com/a-long-pa"… (not an absolute URL)"#),
            "got <QUOTED> (not an absolute URL)"
        );
        assert_eq!(m(r#"got "abc"..., then"#), "got <QUOTED>, then");
        // Python's repr of a type: the quote closes before `>`.
        assert_eq!(
            m("'x' (type <class 'str'>) do not match ['null', 'double'] on"),
            "<QUOTED> (type <class <QUOTED>>) do not match <LIST> on"
        );
        // Newlines end the search.
        assert_eq!(m("a 'b\nc' d"), "a 'b\nc' d");
    }

    #[test]
    fn urls_and_paths() {
        assert_eq!(
            m(
                "HTTP status server error (503 Service Unavailable) for url (https://x.io/a?b=1&c=(2))"
            ),
            "HTTP status server error (<NUM> Service Unavailable) for url (<URL>)"
        );
        assert_eq!(m("see https://x.io/a."), "see <URL>.");
        assert_eq!(
            m("sasl_ssl://kafka-0.internal:9096/0: Connect"),
            "<URL>: Connect"
        );
        assert_eq!(
            m("with url: /markets/865028 (Caused"),
            "with url: <PATH> (Caused"
        );
        assert_eq!(
            m("File \"/app/consumer.py\", line 3"),
            "File <QUOTED>, line <NUM>"
        );
        assert_eq!(m("at path /var/lib/dlq/spool."), "at path <PATH>.");
        // Not paths.
        assert_eq!(m("N/A and/or TCP/IP 1/3"), "N/A and/or TCP/IP <NUM>/<NUM>");
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(m("at 10.0.3.17, port 5432"), "at <IP>, port <NUM>");
        assert_eq!(m("(kafka-2.internal/10.2.0.4:9092)"), "(<IP>)");
        assert_eq!(m("(localhost/127.0.0.1:9092)"), "(<IP>)");
        assert_eq!(m("ipv4#10.6.165.161:9092 failed"), "ipv4#<IP> failed");
        assert_eq!(m("version 1.2.3.4.5"), "version <NUM>");
    }

    #[test]
    fn timestamps() {
        assert_eq!(m("at 2026-11-01T05:00:00.123Z."), "at <TS>.");
        assert_eq!(m("at 2026-11-01 05:00:00+00)"), "at <TS>)");
        assert_eq!(m("on 2026-11-01 then"), "on <TS> then");
        assert_eq!(m("at 2026-11-01T06:00:00+01:00"), "at <TS>");
        assert_eq!(m("at 05:00:00 and 12:30"), "at <TS> and <NUM>:<NUM>");
    }

    #[test]
    fn kafka_coordinates() {
        assert_eq!(
            m("record rss.events-3@1812 failed"),
            "record <KAFKA_COORD> failed"
        );
        assert_eq!(m("at partition 3, offset 1812."), "at <KAFKA_COORD>.");
        assert_eq!(m("partition=3, offset=1812,"), "<KAFKA_COORD>,");
        assert_eq!(m("Partition 3 at offset 1812"), "<KAFKA_COORD>");
        assert_eq!(
            m("for partition polymarket.price_hourly-11 at offset 48000000."),
            "for <KAFKA_COORD>."
        );
        // A topic-partition alone is a name with a number.
        assert_eq!(
            m("topic-partition rss.events-3,"),
            "topic-partition rss.events-<NUM>,"
        );
        assert_eq!(m("partition 3 is offline"), "partition <NUM> is offline");
    }

    #[test]
    fn masking_a_masked_text_changes_nothing() {
        // Placeholders are not values. (Not a guarantee for every string: a
        // quote whose closing quote was escaped can hold a placeholder later.)
        for s in [
            "0xhttps://@",
            "[0]",
            "[0, a]",
            "5000ms",
            "got 1.7 at 2026-11-01",
            "<NUM>x 12",
        ] {
            let once = m(s);
            assert_eq!(m(&once), once, "{s}");
        }
    }

    #[test]
    fn quote_search_spends_a_bounded_budget() {
        // Many openings that never close would each look up to 1,024 bytes
        // ahead; the per-message budget keeps the total linear.
        let b = "\"abcdef".as_bytes();
        let mut nested = usize::MAX;
        let mut budget = 3;
        assert!(matches!(
            quoted(b, 0, None, &mut nested, &mut budget),
            Step::Keep(1)
        ));
        assert_eq!(budget, 0);
        // Out of budget: not even a closed quote is searched.
        let b = "\"ab\" x".as_bytes();
        assert!(matches!(
            quoted(b, 0, None, &mut nested, &mut budget),
            Step::Keep(1)
        ));
        let mut budget = 100;
        assert!(matches!(
            quoted(b, 0, None, &mut nested, &mut budget),
            Step::Mask(4, MaskKind::Quoted)
        ));
        assert_eq!(budget, 97);
        // A long text of unclosed quotes is copied unchanged.
        let s = "\"a ".repeat(100_000);
        assert_eq!(m(&s), s);
    }

    #[test]
    fn lists() {
        assert_eq!(
            m("topics: [rss.events, polymarket.trades]"),
            "topics: <LIST>"
        );
        assert_eq!(m("topics: [rss.events]"), "topics: <LIST>");
        assert_eq!(
            m("do not match ['null', 'double'] on"),
            "do not match <LIST> on"
        );
        // Not lists of names.
        assert_eq!(m("in [0, 1], got"), "in [<NUM>, <NUM>], got");
        assert_eq!(m("[Errno 111]"), "[Errno <NUM>]");
        assert_eq!(m("[type=float, x=y]"), "[type=float, x=y]");
        assert_eq!(m("Optional[abc]"), "Optional[abc]");
        assert_eq!(m("[a, b"), "[a, b");
        assert_eq!(m("[]"), "[]");
    }

    #[test]
    fn non_ascii_and_odd_bytes_are_copied() {
        assert_eq!(m("prix «0,42» reçu é"), "prix «<NUM>,<NUM>» reçu é");
        assert_eq!(m(""), "");
        assert_eq!(m("\"'`-+/"), "\"'`-+/");
        assert_eq!(m("https://münchen.de/x y"), "<URL> y");
    }

    fn m2(s: &str) -> String {
        Masker::v2().mask(s)
    }

    #[test]
    fn version_2_masks_a_number_with_its_unit_as_one_value() {
        assert_eq!(
            m2("(estimated size 512 B, free 1.2 KB) after 30000 ms"),
            "(estimated size <NUM>, free <NUM>) after <NUM>"
        );
        assert_eq!(
            m2("3 bytes sent, lifetime <1 sec"),
            "<NUM> sent, lifetime <<NUM>"
        );
        // Not a unit: a word that only starts like one.
        assert_eq!(m2("5 sheep"), "<NUM> sheep");
        // Version 1 keeps the unit, so its templates do not change.
        assert_eq!(m("size 512 B"), "size <NUM> B");
    }

    #[test]
    fn version_2_masks_ctime_and_syslog_dates() {
        assert_eq!(
            m2("connection from 1.2.3.4 () at Fri Jun 17 20:55:07 2005"),
            "connection from <IP> () at <TS>"
        );
        assert_eq!(m2("at Sat Jul  9 22:53:19 2005 ok"), "at <TS> ok");
        assert_eq!(m2("since Jun 9 06:06:20 boot"), "since <TS> boot");
        // A month name with a day alone may be prose.
        assert_eq!(m2("due May 5 at noon"), "due May <NUM> at noon");
        assert_eq!(
            m("at Fri Jun 17 20:55:07 2005"),
            "at Fri Jun <NUM> <TS> <NUM>"
        );
    }

    #[test]
    fn version_2_keeps_the_method_of_a_quoted_http_request_line() {
        assert_eq!(
            m2(r#"10.0.0.1 "GET /v2/54fadb41/servers/detail HTTP/1.1" status: 200"#),
            r#"<IP> "GET <PATH> HTTP/<NUM>" status: <NUM>"#
        );
        assert_eq!(
            m2(r#""DELETE /v2/x HTTP/1.1" status: 204"#),
            r#""DELETE <PATH> HTTP/<NUM>" status: <NUM>"#
        );
        assert_eq!(m(r#""GET /v2/x HTTP/1.1" status"#), "<QUOTED> status");
    }

    #[test]
    fn version_2_masks_a_list_of_bare_names_of_any_length() {
        for (text, masked) in [
            (
                "missing required fields: price, volume, outcome",
                "missing required fields: <LIST>",
            ),
            (
                "missing required fields: price, volume.",
                "missing required fields: <LIST>.",
            ),
            // One name is not a list (the miner's naming-noun rule covers it).
            (
                "missing required fields: price",
                "missing required fields: price",
            ),
            // A key after the last name: not a list.
            (
                "Information: onSleep, SleepType: Normal",
                "Information: onSleep, SleepType: Normal",
            ),
            (
                "error: connection refused, retrying",
                "error: connection refused, retrying",
            ),
        ] {
            assert_eq!(m2(text), masked, "{text}");
        }
        assert_eq!(
            m("missing required fields: price, volume"),
            "missing required fields: price, volume"
        );
    }

    #[test]
    fn version_2_masks_a_name_on_a_line_of_its_own() {
        let pydantic =
            "1 validation error for PriceHourly\nvolume\n  Input should be a valid number";
        assert_eq!(
            m2(pydantic),
            "<NUM> validation error for PriceHourly\n<ID>\n  Input should be a valid number"
        );
        // The last line is not a name line.
        assert_eq!(m2("failed\nretrying"), "failed\nretrying");
        assert_eq!(
            m(pydantic),
            "<NUM> validation error for PriceHourly\nvolume\n  Input should be a valid number"
        );
    }

    #[test]
    fn placeholders_round_trip() {
        for k in MaskKind::ALL {
            assert_eq!(MaskKind::from_placeholder(k.placeholder()), Some(k));
        }
        assert_eq!(MaskKind::from_placeholder("<*>"), None);
    }
}
