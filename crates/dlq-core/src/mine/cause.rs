//! The root cause of a wrapped error message.
//!
//! A DLQ record's error is often a wrapper ("Listener failed", a Spring
//! `ListenerExecutionFailedException`, a Python exception raised while
//! handling another) around the error that decides what went wrong. Grouping
//! by the wrapper would put every failure of a listener into one group, so the
//! miner groups by the innermost cause. [`root_cause`] finds it with these
//! rules, applied in order; each one narrows the text to a slice of it:
//!
//! 1. **Python tracebacks.** If a line is `Traceback (most recent call
//!    last):`, the first traceback is the innermost cause: Python prints a
//!    chain oldest first, joined by "The above exception was the direct cause
//!    of the following exception:" (`raise … from …`) or "During handling of
//!    the above exception, another exception occurred:". The cause is that
//!    traceback's exception text: its first line that is not indented (the
//!    frames, `File "…", line N, in f`, and their source lines are), up to a
//!    blank line or the next chain marker.
//! 2. **Java `Caused by:`.** Otherwise, if a line starts with `Caused by: `,
//!    the text after the *last* one (Java prints the outermost exception
//!    first). Indented `Caused by:` lines belong to `Suppressed:` blocks and
//!    are ignored.
//! 3. **Spring's `; nested exception is `.** The text after its last
//!    occurrence (Spring 5 and older append the cause's message this way).
//! 4. **Known wrapper prefixes**, removed as often as they occur:
//!    `Listener failed: ` / `Listener failed; ` and Java's
//!    `Exception in thread "…" `. Other `a: b: c` chains, such as Rust's
//!    `{:#}` (`error sending request for url (…): error trying to connect:
//!    tcp connect error: Connection refused`), are **not** split: a colon does
//!    not say which part is the wrapper, and the outer parts (which URL, which
//!    operation) are often what tells two failures apart.
//! 5. **Primary lines only.** The message ends before the first line (after
//!    the first) that is a stack frame or a detail: a Java frame
//!    (`at pkg.Class.method(File.java:12)`, but not Jackson's
//!    `at [Source: …]`), `... N more`, `Caused by:`, `Suppressed:`, a Python
//!    frame (`File "…"`), a PostgreSQL detail field as libpq or pgjdbc print
//!    it (`DETAIL:`, `HINT:`, `CONTEXT:`, `QUERY:`, `STATEMENT:`,
//!    `LOCATION:`, `Detail:`, `Hint:`, `Where:`, `Position:`, `Location:`,
//!    `Server SQLState:`), or a blank line (what follows a blank line is
//!    detail, as in `jsonschema`'s "Failed validating … On instance …").
//!
//! The result is trimmed. If a rule would leave nothing (`Caused by: ` at the
//! very end), the text before it is kept.

const TRACEBACK: &str = "Traceback (most recent call last):";
const CHAIN_MARKERS: [&str; 2] = [
    "The above exception was the direct cause of the following exception:",
    "During handling of the above exception, another exception occurred:",
];
const CAUSED_BY: &str = "Caused by: ";
const NESTED: &str = "; nested exception is ";
const WRAPPERS: [&str; 2] = ["Listener failed: ", "Listener failed; "];
const THREAD: &str = "Exception in thread \"";
const DETAIL_FIELDS: [&str; 12] = [
    "DETAIL:",
    "HINT:",
    "CONTEXT:",
    "QUERY:",
    "STATEMENT:",
    "LOCATION:",
    "Detail:",
    "Hint:",
    "Where:",
    "Position:",
    "Location:",
    "Server SQLState:",
];

/// The innermost cause of a (possibly wrapped) error message, without stack
/// frames and detail lines; a slice of `message`. See the module
/// documentation for the rules.
///
/// ```
/// use dlq_core::mine::root_cause;
///
/// let java = "org.springframework.kafka.listener.ListenerExecutionFailedException: Listener failed\n\
///     \tat org.springframework.kafka.listener.Foo.bar(Foo.java:12)\n\
///     Caused by: com.fasterxml.jackson.core.JsonParseException: Unexpected character ('x' (code 120))\n\
///     \tat com.fasterxml.jackson.core.JsonParser._constructError(JsonParser.java:2477)\n\
///     \t... 12 more";
/// assert_eq!(
///     root_cause(java),
///     "com.fasterxml.jackson.core.JsonParseException: Unexpected character ('x' (code 120))"
/// );
/// assert_eq!(
///     root_cause("Listener failed; nested exception is java.net.ConnectException: Connection refused"),
///     "java.net.ConnectException: Connection refused"
/// );
/// // A Rust error chain is not split.
/// let rust = "error sending request for url (http://x/): error trying to connect: Connection refused";
/// assert_eq!(root_cause(rust), rust);
/// ```
pub fn root_cause(message: &str) -> &str {
    let multiline = message.as_bytes().contains(&b'\n');
    let mut s = message;
    if multiline {
        if let Some(c) = python_innermost_or_last_caused_by(s) {
            s = c;
        }
    } else if let Some(rest) = s.strip_prefix(CAUSED_BY)
        && !rest.trim().is_empty()
    {
        s = rest;
    }
    if let Some(pos) = rfind_nested(s) {
        let rest = &s[pos + NESTED.len()..];
        if !rest.trim().is_empty() {
            s = rest;
        }
    }
    s = strip_wrappers(s);
    if multiline {
        s = primary_lines(s);
    }
    let s = s.trim();
    if s.is_empty() { message.trim() } else { s }
}

/// Lines of `s` with their start offsets; a line excludes its `\n` (and a
/// `\r` before it).
fn lines(s: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0;
    s.split('\n').map(move |line| {
        let at = start;
        start += line.len() + 1;
        (at, line.strip_suffix('\r').unwrap_or(line))
    })
}

/// Rules 1 and 2 in one pass over the lines.
fn python_innermost_or_last_caused_by(s: &str) -> Option<&str> {
    let mut caused_by = None;
    for (at, line) in lines(s) {
        if line.starts_with(CAUSED_BY) && !line[CAUSED_BY.len()..].trim().is_empty() {
            caused_by = Some(at + CAUSED_BY.len());
        } else if line.starts_with(TRACEBACK) && line.trim_end() == TRACEBACK {
            return python_innermost(s, at);
        }
    }
    caused_by.map(|at| &s[at..])
}

/// The exception text of the Python traceback whose first line
/// (`Traceback …`) starts at `from`.
fn python_innermost(s: &str, from: usize) -> Option<&str> {
    let mut begin = None;
    for (at, line) in lines(&s[from..]).skip(1) {
        let at = at + from;
        match begin {
            None => {
                // Frames and their source lines are indented.
                if !line.starts_with([' ', '\t']) && !line.trim().is_empty() {
                    begin = Some(at);
                }
            }
            Some(b) => {
                let t = line.trim();
                if t.is_empty() || t == TRACEBACK || CHAIN_MARKERS.contains(&t) {
                    return Some(&s[b..at]);
                }
            }
        }
    }
    begin.map(|b| &s[b..])
}

/// Where the last `; nested exception is ` starts. A search for `;` from
/// the end (memrchr) and a comparison: `str::rfind` with a string pattern
/// builds a two-way searcher per call, which costs more than the search.
fn rfind_nested(s: &str) -> Option<usize> {
    let mut end = s.len();
    while let Some(p) = s[..end].rfind(';') {
        if s[p..].starts_with(NESTED) {
            return Some(p);
        }
        end = p;
    }
    None
}

fn strip_wrappers(mut s: &str) -> &str {
    loop {
        let before = s.len();
        for w in WRAPPERS {
            if let Some(rest) = s.strip_prefix(w)
                && !rest.trim().is_empty()
            {
                s = rest;
            }
        }
        if let Some(rest) = s.strip_prefix(THREAD)
            && let Some(end) = rest.find("\" ")
            && !rest[end + 2..].trim().is_empty()
        {
            s = &rest[end + 2..];
        }
        if s.len() == before {
            return s;
        }
    }
}

fn primary_lines(s: &str) -> &str {
    for (at, line) in lines(s).skip(1) {
        if ends_primary(line) {
            return &s[..at];
        }
    }
    s
}

fn ends_primary(line: &str) -> bool {
    let t = line.trim();
    if t.is_empty() {
        return true;
    }
    let java_frame = t.starts_with("at ") && !t.starts_with("at [") && t.ends_with(')');
    java_frame
        || (t.starts_with("... ") && t.ends_with(" more"))
        || t.starts_with("Caused by:")
        || t.starts_with("Suppressed:")
        || t.starts_with("File \"")
        || DETAIL_FIELDS.iter().any(|f| t.starts_with(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_messages_are_unchanged() {
        for m in [
            "expected value at line 1 column 1",
            "  padded  ",
            "",
            "a: b: c: d",
            "invalid price: expected a number in [0, 1], got 1.7",
        ] {
            assert_eq!(root_cause(m), m.trim());
        }
    }

    #[test]
    fn java_last_caused_by_without_frames() {
        let m = "org.apache.kafka.connect.errors.ConnectException: Tolerance exceeded in error handler\n\
                 \tat org.apache.kafka.connect.runtime.WorkerSinkTask.convertAndTransformRecord(WorkerSinkTask.java:513)\n\
                 Caused by: org.apache.kafka.connect.errors.DataException: Converting byte[] to Kafka Connect data failed\n\
                 \tat org.apache.kafka.connect.json.JsonConverter.toConnectData(JsonConverter.java:324)\n\
                 Caused by: org.apache.kafka.common.errors.SerializationException: Unknown magic byte!\n\
                 \tat io.confluent.kafka.serializers.AbstractKafkaSchemaSerDe.getByteBuffer(AbstractKafkaSchemaSerDe.java:244)\n\
                 \t... 17 more";
        assert_eq!(
            root_cause(m),
            "org.apache.kafka.common.errors.SerializationException: Unknown magic byte!"
        );
    }

    #[test]
    fn java_multiline_message_keeps_jackson_location() {
        let m = "com.fasterxml.jackson.core.JsonParseException: Unexpected character ('x' (code 120))\n \
                 at [Source: REDACTED; line: 1, column: 12]\n\tat com.x.Y.z(Y.java:1)";
        assert_eq!(
            root_cause(m),
            "com.fasterxml.jackson.core.JsonParseException: Unexpected character ('x' (code 120))\n \
             at [Source: REDACTED; line: 1, column: 12]"
        );
    }

    #[test]
    fn suppressed_caused_by_is_ignored() {
        let m = "java.lang.IllegalStateException: outer\n\tat a.B.c(B.java:1)\n\
                 \tSuppressed: java.io.IOException: close failed\n\
                 \t\tCaused by: java.lang.Error: inner of suppressed\n\
                 Caused by: java.net.SocketTimeoutException: Read timed out\n\tat a.B.d(B.java:2)";
        assert_eq!(
            root_cause(m),
            "java.net.SocketTimeoutException: Read timed out"
        );
    }

    #[test]
    fn spring_nested_and_listener_failed() {
        assert_eq!(
            root_cause(
                "Listener method 'void a.B.c(java.lang.String)' threw exception; nested exception is \
                 org.springframework.messaging.converter.MessageConversionException: Cannot convert; \
                 nested exception is com.fasterxml.jackson.core.JsonParseException: Unrecognized token 'abc'"
            ),
            "com.fasterxml.jackson.core.JsonParseException: Unrecognized token 'abc'"
        );
        assert_eq!(
            root_cause("Listener failed: expected value at line 1 column 1"),
            "expected value at line 1 column 1"
        );
        assert_eq!(root_cause("Listener failed; "), "Listener failed;");
        assert_eq!(root_cause("Caused by: x.Y: z"), "x.Y: z");
        assert_eq!(root_cause("Caused by: "), "Caused by:");
    }

    #[test]
    fn uncaught_java_exception() {
        assert_eq!(
            root_cause(
                "Exception in thread \"main\" java.lang.NullPointerException: boom\n\tat a.B.c(B.java:3)"
            ),
            "java.lang.NullPointerException: boom"
        );
    }

    #[test]
    fn python_single_traceback() {
        let m = "Traceback (most recent call last):\n  File \"/app/c.py\", line 42, in handle\n    \
                 record = json.loads(v)\njson.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)";
        assert_eq!(
            root_cause(m),
            "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)"
        );
    }

    #[test]
    fn python_chains_take_the_first_traceback() {
        for marker in CHAIN_MARKERS {
            let m = format!(
                "Traceback (most recent call last):\n  File \"/app/c.py\", line 7, in f\n    x = d['price']\n\
                 KeyError: 'price'\n\n{marker}\n\nTraceback (most recent call last):\n  File \"/app/c.py\", \
                 line 9, in g\n    raise Rejected(r) from e\napp.Rejected: record ph-1 rejected"
            );
            assert_eq!(root_cause(&m), "KeyError: 'price'");
        }
    }

    #[test]
    fn python_multiline_exception_text() {
        let m = "Traceback (most recent call last):\n  File \"/app/c.py\", line 7, in f\n    m = P(**d)\n\
                 pydantic_core._pydantic_core.ValidationError: 1 validation error for P\nprice\n  \
                 Input should be a valid number [type=float_parsing, input_value='abc', input_type=str]";
        assert!(
            root_cause(m).starts_with("pydantic_core._pydantic_core.ValidationError: 1 validation")
        );
        assert!(root_cause(m).ends_with("input_type=str]"));
    }

    #[test]
    fn postgres_details_and_paragraphs_are_cut() {
        assert_eq!(
            root_cause(
                "duplicate key value violates unique constraint \"p_pkey\"\nDETAIL:  Key (id)=(1) already exists."
            ),
            "duplicate key value violates unique constraint \"p_pkey\""
        );
        assert_eq!(
            root_cause(
                "ERROR: null value in column \"price\"\n  Detail: Failing row contains (ph-1, Will it rain?)."
            ),
            "ERROR: null value in column \"price\""
        );
        assert_eq!(
            root_cause(
                "connection to server at \"db\" (10.0.0.1), port 5432 failed: Connection refused\n\
                        \tIs the server running on that host and accepting TCP/IP connections?"
            ),
            "connection to server at \"db\" (10.0.0.1), port 5432 failed: Connection refused\n\
             \tIs the server running on that host and accepting TCP/IP connections?"
        );
        assert_eq!(
            root_cause(
                "'price' is a required property\n\nFailed validating 'required' in schema:\n    {}"
            ),
            "'price' is a required property"
        );
    }

    #[test]
    fn crlf_lines() {
        assert_eq!(
            root_cause(
                "a.B: outer\r\n\tat a.B.c(B.java:1)\r\nCaused by: x.Y: inner\r\n\tat x.Y.z(Y.java:2)\r\n"
            ),
            "x.Y: inner"
        );
    }
}
