#!/usr/bin/env python3
"""Generates the labeled corpus of DLQ error messages: messages.jsonl.

Every line is {"group": LABEL, "message": TEXT}. LABEL is the template the
message was rendered from; TEXT is what a DLQ record's `error` would hold.
Only the variable parts (ids, numbers, topics, offsets, hosts, URLs, values)
are drawn at random, from a generator seeded with SEED, so the file is
reproducible byte for byte:

    python3 crates/dlq-core/tests/corpus/make_corpus.py > crates/dlq-core/tests/corpus/messages.jsonl

See docs/corpus.md for how the groups were chosen and how accuracy is computed.
Standard library only.
"""

import json
import random
import sys

SEED = 20261129
rng = random.Random(SEED)

# --------------------------------------------------------------------------
# Variable parts
# --------------------------------------------------------------------------

TOPICS = [
    "rss.events",
    "polymarket.price_hourly",
    "rss.events.enriched",
    "polymarket.trades",
    "marketlag.alerts",
    "marketlag.signals.v2",
]
FIELDS_PRICE = ["event_id", "market_id", "question", "outcome", "price", "volume", "timestamp"]
FIELDS_RSS = ["id", "title", "link", "feed", "published", "summary", "tags"]
QUESTIONS = [
    "Will the Fed cut rates in December 2026?",
    "Will BTC close above $100k on Dec 31?",
    "Who will win the 2026 Senate race in Ohio?",
    "Will the ECB raise rates in Q1?",
    "Will Apple announce a foldable iPhone?",
]
BAD_PRICES = [
    "0.42", "N/A", "", "0,42", "42%", "zero point four", "  0.5 ", "1.2e-1",
    "null", "none", "0.5 (approx)", "—", "USD 0.61", "0.3333333333333333",
]
BAD_TS = {
    # value -> chrono error kind for RFC 3339 parsing
    "premature end of input": ["2026-11-01T05:00:00", "2026-11-01", "2026-11-01T05:00", "2026-11-0"],
    "input contains invalid characters": [
        "Sun, 01 Nov 2026 05:00:00 GMT", "1793509200", "01/11/2026 05:00", "yesterday",
        "2026-11-01 05h00", "Nov 1, 2026 5:00 AM",
    ],
    "input is out of range": ["2026-13-01T05:00:00Z", "2026-11-31T05:00:00Z", "2026-11-01T25:00:00Z"],
    "trailing input": ["2026-11-01T05:00:00Z[UTC]", "2026-11-01T05:00:00ZZ", "2026-11-01T05:00:00+00:00 UTC"],
}
BAD_LINKS = {
    "not an absolute URL": ["/markets/us/fed", "www.reuters.com/markets/us/fed-holds", "reuters.com", "#"],
    "scheme is not http or https": ["ftp://example.com/x", "htps://www.reuters.com/x", "feed://apnews.com/rss"],
    "contains whitespace or control characters": [
        "https://www.reuters.com/markets/us/fed holds rates",
        "https://apnews.com/article/ election-2026",
        " https://www.coindesk.com/markets/",
    ],
    "bad host": ["https://example..com/a", "https://.example.com", "https://exa_mple!.com/x"],
}
HOSTS = ["kafka-0.internal", "kafka-1.internal", "kafka-2.internal", "b-1.msk-prod.x7k2.c3.kafka.eu-west-1.amazonaws.com",
         "b-2.msk-prod.x7k2.c3.kafka.eu-west-1.amazonaws.com", "localhost"]
PG_HOSTS = ["pg-primary.internal", "db.marketlag.local", "10.0.3.17", "pg-replica-2.internal"]
PG_USERS = ["marketlag_writer", "etl", "app", "dlq_replayer"]
PG_CONSTRAINTS = [("prices_pkey", "event_id"), ("rss_items_pkey", "id"), ("uq_price_market_hour", "market_id, \"timestamp\""),
                  ("signals_pkey", "signal_id")]
PG_RELATIONS = ["prices", "rss_items", "signals", "price_hourly_2026_11"]
HTTP_URLS = [
    "https://gamma-api.polymarket.com/markets/{n}",
    "https://clob.polymarket.com/prices-history?market={hex40}&interval=1h&fidelity=60",
    "http://enricher.internal:8080/v1/enrich",
    "https://api.marketlag.io/v2/events/{uuid}?include=tags,market",
    "http://10.0.4.{b}:9000/score",
    "https://feeds.reuters.com/reuters/businessNews",
    "https://hooks.slack.com/services/T0{hexu}/B0{hexu}/{b64}",
]
JAVA_THREADS = ["org.springframework.kafka.KafkaListenerEndpointContainer#0-0-C-1", "main", "kafka-producer-network-thread | producer-1"]


def n(lo=0, hi=10_000):
    return rng.randint(lo, hi)


def hexs(k):
    return "".join(rng.choice("0123456789abcdef") for _ in range(k))


def uuid():
    return f"{hexs(8)}-{hexs(4)}-4{hexs(3)}-{rng.choice('89ab')}{hexs(3)}-{hexs(12)}"


def topic():
    return rng.choice(TOPICS)


def part():
    return rng.randint(0, 11)


def offset():
    # A skewed spread: most offsets are large.
    return rng.choice([rng.randint(0, 999), rng.randint(1_000, 99_999), rng.randint(100_000, 48_000_000)])


def market_id():
    return "0x" + hexs(40)


def event_id():
    return rng.choice([f"ph-{n(1, 999_999)}", f"rss-2026-11-{rng.randint(1, 30):02d}-{n(1, 99_999):06d}", uuid()])


def url():
    t = rng.choice(HTTP_URLS)
    return t.format(n=n(1, 900_000), hex40=market_id(), uuid=uuid(), b=rng.randint(2, 250), hexu=hexs(8).upper(),
                    b64="".join(rng.choice("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") for _ in range(24)))


def ip():
    return f"10.{rng.randint(0, 9)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ts():
    return f"2026-11-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{n(0, 999):03d}Z"


def jquote(s):
    """A JSON string literal, like the MarketLag validator's quote()."""
    return json.dumps(s, ensure_ascii=False)


def pyrepr(s):
    return repr(s)


def compact_json_record():
    price = rng.choice(BAD_PRICES[:8])
    return json.dumps({"event_id": event_id(), "market_id": market_id(), "price": price,
                       "volume": round(rng.uniform(0, 50_000), 1)}, separators=(",", ":"))


# --------------------------------------------------------------------------
# Wrappers: how the same root cause reaches a DLQ in different clothes
# --------------------------------------------------------------------------

JAVA_FRAMES = [
    "com.fasterxml.jackson.core.JsonParser._constructError(JsonParser.java:2477)",
    "com.fasterxml.jackson.core.base.ParserMinimalBase._reportError(ParserMinimalBase.java:760)",
    "com.fasterxml.jackson.databind.ObjectMapper.readValue(ObjectMapper.java:3833)",
    "com.marketlag.consumer.PriceListener.onMessage(PriceListener.java:{line})",
    "com.marketlag.consumer.RssListener.handle(RssListener.java:{line})",
    "org.springframework.kafka.listener.KafkaMessageListenerContainer$ListenerConsumer.doInvokeRecordListener(KafkaMessageListenerContainer.java:2859)",
    "org.springframework.kafka.listener.KafkaMessageListenerContainer$ListenerConsumer.invokeRecordListener(KafkaMessageListenerContainer.java:2735)",
    "org.apache.kafka.clients.producer.KafkaProducer.doSend(KafkaProducer.java:1064)",
    "org.apache.kafka.clients.producer.internals.ProducerBatch.done(ProducerBatch.java:{line})",
    "org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2725)",
    "java.base/java.lang.Thread.run(Thread.java:1583)",
    "java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1144)",
]

SPRING_LISTENER = ("Listener method 'public void com.marketlag.consumer.PriceListener.onMessage("
                   "org.apache.kafka.clients.consumer.ConsumerRecord<java.lang.String, java.lang.String>)' threw exception")


def frames(k=None):
    k = k if k is not None else rng.randint(2, 7)
    return "".join(f"\n\tat {rng.choice(JAVA_FRAMES).format(line=rng.randint(20, 400))}" for _ in range(k))


def java_wrap(root):
    """root is 'fqcn: message' (or just 'fqcn'). Returns one of the ways a
    Java/Spring consumer puts it into a DLQ error."""
    style = rng.choice(["bare", "bare", "stack", "spring_caused_by", "spring_nested", "connect", "listener_failed", "uncaught"])
    if style == "bare":
        return root
    if style == "stack":
        return root + frames()
    if style == "spring_caused_by":
        outer = rng.choice([
            "org.springframework.kafka.listener.ListenerExecutionFailedException: Listener failed",
            "org.springframework.kafka.listener.ListenerExecutionFailedException: " + SPRING_LISTENER,
        ])
        mid = rng.choice([
            "",
            f"\nCaused by: org.springframework.messaging.converter.MessageConversionException: Cannot handle message{frames(2)}",
            f"\nCaused by: java.lang.RuntimeException: failed to handle record {topic()}-{part()}@{offset()}{frames(2)}",
        ])
        return f"{outer}{frames()}{mid}\nCaused by: {root}{frames()}\n\t... {rng.randint(5, 40)} more"
    if style == "spring_nested":
        return f"{SPRING_LISTENER}; nested exception is {root}"
    if style == "connect":
        t = topic()
        return (f"org.apache.kafka.connect.errors.ConnectException: Tolerance exceeded in error handler{frames(2)}\n"
                f"Caused by: org.apache.kafka.connect.errors.DataException: Error encountered in task "
                f"{t.replace('.', '-')}-sink-{rng.randint(0, 5)}. Executing stage 'VALUE_CONVERTER' with class "
                f"'org.apache.kafka.connect.json.JsonConverter', where consumed record is {{topic='{t}', "
                f"partition={part()}, offset={offset()}, timestamp={n(1_790_000_000_000, 1_799_999_999_999)}, "
                f"timestampType=CreateTime}}.{frames(3)}\nCaused by: {root}{frames(3)}")
    if style == "listener_failed":
        return f"Listener failed; nested exception is {root}"
    # uncaught
    return f"Exception in thread \"{rng.choice(JAVA_THREADS)}\" {root}{frames()}"


PY_FRAMES = [
    ('/app/marketlag/consumer.py', 'handle', 'record = json.loads(msg.value())'),
    ('/app/marketlag/consumer.py', 'run', 'self.handle(msg)'),
    ('/app/marketlag/validate.py', 'validate_price', 'price = float(raw["price"])'),
    ('/usr/local/lib/python3.11/json/__init__.py', 'loads', 'return _default_decoder.decode(s)'),
    ('/usr/local/lib/python3.11/json/decoder.py', 'decode', 'obj, end = self.raw_decode(s, idx=_w(s, 0).end())'),
    ('/usr/local/lib/python3.11/site-packages/requests/models.py', 'raise_for_status',
     'raise HTTPError(http_error_msg, response=self)'),
    ('/usr/local/lib/python3.11/site-packages/confluent_kafka/serializing_producer.py', 'produce',
     'super(SerializingProducer, self).produce(topic, value, key,'),
]


def py_frames(k=None):
    k = k if k is not None else rng.randint(1, 4)
    out = []
    for _ in range(k):
        path, fn, code = rng.choice(PY_FRAMES)
        out.append(f'  File "{path}", line {rng.randint(10, 900)}, in {fn}\n    {code}')
    return "\n".join(out)


def py_wrap(root):
    """root is the exception line as Python prints it ('mod.Class: message')."""
    style = rng.choice(["bare", "bare", "traceback", "cause", "context"])
    if style == "bare":
        return root
    tb = f"Traceback (most recent call last):\n{py_frames()}\n{root}"
    if style == "traceback":
        return tb
    outer = rng.choice([
        f"marketlag.errors.RecordRejected: record {event_id()} rejected at {topic()}-{part()}@{offset()}",
        f"marketlag.errors.PermanentFailure: giving up after {rng.randint(1, 5)} attempts",
        "RuntimeError: handler failed",
    ])
    marker = ("The above exception was the direct cause of the following exception:" if style == "cause"
              else "During handling of the above exception, another exception occurred:")
    return f"{tb}\n\n{marker}\n\nTraceback (most recent call last):\n{py_frames()}\n{outer}"


def bare(root):
    return root


# --------------------------------------------------------------------------
# Groups: label, size, wrapper, renderer
# --------------------------------------------------------------------------

GROUPS = []


def group(label, size, wrap=bare):
    def register(fn):
        GROUPS.append((label, size, wrap, fn))
        return fn
    return register


# --- Kafka clients: Java -------------------------------------------------

@group("kafka.java.topic_not_in_metadata", 70, java_wrap)
def _():
    return (f"org.apache.kafka.common.errors.TimeoutException: Topic {topic()} not present in metadata after "
            f"{rng.choice([60000, 60000, 120000, 30000])} ms.")


@group("kafka.java.expiring_records", 55, java_wrap)
def _():
    return (f"org.apache.kafka.common.errors.TimeoutException: Expiring {rng.randint(1, 500)} record(s) for "
            f"{topic()}-{part()}:{rng.randint(120000, 130000)} ms has passed since batch creation")


@group("kafka.java.retry_not_leader", 45)
def _():
    return (f"[Producer clientId=producer-{rng.randint(1, 12)}] Got error produce response with correlation id "
            f"{n(1, 9_999_999)} on topic-partition {topic()}-{part()}, retrying ({rng.randint(0, 2147483646)} attempts left). "
            f"Error: NOT_LEADER_OR_FOLLOWER")


@group("kafka.java.retry_unknown_topic", 25)
def _():
    return (f"[Producer clientId=producer-{rng.randint(1, 12)}] Got error produce response with correlation id "
            f"{n(1, 9_999_999)} on topic-partition {topic()}-{part()}, retrying ({rng.randint(0, 2147483646)} attempts left). "
            f"Error: UNKNOWN_TOPIC_OR_PARTITION")


@group("kafka.java.record_too_large", 40, java_wrap)
def _():
    size = rng.randint(1_048_600, 12_000_000)
    return (f"org.apache.kafka.common.errors.RecordTooLargeException: The message is {size} bytes when serialized "
            f"which is larger than {rng.choice([1048576, 1048576, 2097152])}, which is the value of the "
            f"max.request.size configuration.")


@group("kafka.java.offset_out_of_range", 22)
def _():
    b = rng.randint(0, 2)
    e = rng.randint(0, 40)
    return (f"org.apache.kafka.clients.consumer.OffsetOutOfRangeException: Fetch position FetchPosition{{offset="
            f"{offset()}, offsetEpoch=Optional[{e}], currentLeader=LeaderAndEpoch{{leader=Optional["
            f"kafka-{b}.internal:9092 (id: {b} rack: null)], epoch={e}}}}} is out of range for partition {topic()}-{part()}")


@group("kafka.java.sasl_auth_failed", 30, java_wrap)
def _():
    return ("org.apache.kafka.common.errors.SaslAuthenticationException: Authentication failed during authentication "
            f"due to invalid credentials with SASL mechanism {rng.choice(['SCRAM-SHA-512', 'SCRAM-SHA-512', 'PLAIN', 'SCRAM-SHA-256'])}")


@group("kafka.java.topic_authorization", 20, java_wrap)
def _():
    ts_ = sorted({topic() for _ in range(rng.choice([1, 1, 1, 2]))})
    return f"org.apache.kafka.common.errors.TopicAuthorizationException: Not authorized to access topics: [{', '.join(ts_)}]"


@group("kafka.java.node_unreachable", 35)
def _():
    b = rng.randint(0, 5)
    host = rng.choice([f"kafka-{b % 3}.internal/{ip()}:9092", f"localhost/127.0.0.1:{rng.choice([9092, 29092])}",
                       f"{ip()}:9092"])
    return (f"[Consumer clientId=consumer-marketlag-{rng.randint(1, 9)}, groupId=marketlag] Connection to node "
            f"{rng.choice([-1, b, b + 1000])} ({host}) could not be established. Node may not be available.")


@group("kafka.java.deserialization_magic_byte", 45, java_wrap)
def _():
    return "org.apache.kafka.common.errors.SerializationException: Unknown magic byte!"


# --- Kafka clients: librdkafka (Rust rdkafka, confluent_kafka) ----------

@group("kafka.rdkafka.msg_timed_out", 60)
def _():
    return "Message production error: MessageTimedOut (Local: Message timed out)"


@group("kafka.rdkafka.msg_size_too_large", 20)
def _():
    return "Message production error: MessageSizeTooLarge (Broker: Message size too large)"


@group("kafka.rdkafka.unknown_partition", 18)
def _():
    return "Message production error: UnknownPartition (Local: Unknown partition)"


@group("kafka.rdkafka.connect_refused", 40)
def _():
    b = rng.randint(0, 2)
    proto = rng.choice(["sasl_ssl", "ssl", "plaintext"])
    port = {"sasl_ssl": 9096, "ssl": 9094, "plaintext": 9092}[proto]
    return (f"{proto}://kafka-{b}.internal:{port}/{b}: Connect to ipv4#{ip()}:{port} failed: Connection refused "
            f"(after {rng.randint(0, 30)}ms in state CONNECT)")


@group("kafka.rdkafka.connect_reset", 22)
def _():
    b = rng.randint(0, 2)
    proto = rng.choice(["sasl_ssl", "ssl", "plaintext"])
    port = {"sasl_ssl": 9096, "ssl": 9094, "plaintext": 9092}[proto]
    return (f"{proto}://kafka-{b}.internal:{port}/{b}: Connect to ipv4#{ip()}:{port} failed: Connection reset "
            f"(after {rng.randint(0, 30)}ms in state CONNECT)")


@group("kafka.confluent_kafka.msg_timed_out", 30, py_wrap)
def _():
    return 'cimpl.KafkaException: KafkaError{code=_MSG_TIMED_OUT,val=-192,str="Local: Message timed out"}'


@group("kafka.confluent_kafka.all_brokers_down", 16, py_wrap)
def _():
    return (f'cimpl.KafkaException: KafkaError{{code=_ALL_BROKERS_DOWN,val=-187,str="{rng.randint(1, 3)}/'
            f'{rng.randint(3, 3)} brokers are down"}}')


# --- JSON parsers ---------------------------------------------------------

def line_col():
    return rng.choice([1, 1, 1, rng.randint(2, 40)]), rng.randint(1, 400)


@group("json.serde.expected_value", 60)
def _():
    l, c = line_col()
    return f"expected value at line {l} column {c}"


@group("json.serde.eof_object", 30)
def _():
    l, c = line_col()
    return f"EOF while parsing an object at line {l} column {c}"


@group("json.serde.eof_string", 18)
def _():
    l, c = line_col()
    return f"EOF while parsing a string at line {l} column {c}"


@group("json.serde.expected_comma_brace", 25)
def _():
    l, c = line_col()
    return f"expected `,` or `}}` at line {l} column {c}"


@group("json.serde.expected_comma_bracket", 15)
def _():
    l, c = line_col()
    return f"expected `,` or `]` at line {l} column {c}"


@group("json.serde.invalid_type_string_f64", 40)
def _():
    l, c = line_col()
    return f"invalid type: string {jquote(rng.choice(BAD_PRICES))}, expected f64 at line {l} column {c}"


@group("json.serde.missing_field", 30)
def _():
    l, c = line_col()
    return f"missing field `{rng.choice(FIELDS_PRICE + FIELDS_RSS)}` at line {l} column {c}"


@group("json.serde.unknown_variant", 14)
def _():
    l, c = line_col()
    v = rng.choice(["yes", "no", "YES", "Maybe", "N/A", "Yes ", "true"])
    return f"unknown variant `{v}`, expected `Yes` or `No` at line {l} column {c}"


@group("json.jackson.unexpected_char_comma", 35, java_wrap)
def _():
    ch = rng.choice("abcNxt0'<}")
    return (f"com.fasterxml.jackson.core.JsonParseException: Unexpected character ('{ch}' (code {ord(ch)})): "
            f"was expecting comma to separate Object entries\n at [Source: REDACTED "
            f"(`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled); line: 1, column: {rng.randint(2, 300)}]")


@group("json.jackson.unexpected_char_field_name", 20, java_wrap)
def _():
    ch = rng.choice("abcp'0}")
    return (f"com.fasterxml.jackson.core.JsonParseException: Unexpected character ('{ch}' (code {ord(ch)})): "
            f"was expecting double-quote to start field name\n at [Source: REDACTED "
            f"(`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled); line: 1, column: {rng.randint(2, 300)}]")


@group("json.jackson.unrecognized_token", 30, java_wrap)
def _():
    tok = rng.choice(["abc", "N", "NaN", "undefined", "None", "price", "True", "nul"])
    return (f"com.fasterxml.jackson.core.JsonParseException: Unrecognized token '{tok}': was expecting "
            f"(JSON String, Number, Array, Object or token 'null', 'true' or 'false')\n at [Source: (String)"
            f"\"{compact_json_record()}\"; line: 1, column: {rng.randint(2, 200)}]")


@group("json.jackson.cannot_deserialize_double", 30, java_wrap)
def _():
    v = rng.choice(BAD_PRICES)
    return (f"com.fasterxml.jackson.databind.exc.InvalidFormatException: Cannot deserialize value of type `double` "
            f"from String {jquote(v)}: not a valid `double` value (as String to convert)\n at [Source: REDACTED "
            f"(`StreamReadFeature.INCLUDE_SOURCE_IN_LOCATION` disabled); line: 1, column: {rng.randint(2, 300)}] "
            f"(through reference chain: com.marketlag.model.PriceHourly[\"{rng.choice(['price', 'volume'])}\"])")


@group("json.python.comma_delimiter", 40, py_wrap)
def _():
    c = rng.randint(2, 400)
    return f"json.decoder.JSONDecodeError: Expecting ',' delimiter: line 1 column {c} (char {c - 1})"


@group("json.python.colon_delimiter", 15, py_wrap)
def _():
    c = rng.randint(2, 400)
    return f"json.decoder.JSONDecodeError: Expecting ':' delimiter: line 1 column {c} (char {c - 1})"


@group("json.python.expecting_value", 45, py_wrap)
def _():
    c = rng.choice([1, 1, rng.randint(2, 400)])
    return f"json.decoder.JSONDecodeError: Expecting value: line 1 column {c} (char {c - 1})"


@group("json.python.property_name", 15, py_wrap)
def _():
    c = rng.randint(2, 100)
    return (f"json.decoder.JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column {c} "
            f"(char {c - 1})")


@group("json.go.unmarshal_string_into_float", 16)
def _():
    f = rng.choice(["price", "volume", "price", "price"])
    return f"json: cannot unmarshal string into Go struct field PriceHourly.{f} of type float64"


@group("json.go.unmarshal_number_into_string", 10)
def _():
    f = rng.choice(["event_id", "market_id", "outcome"])
    return f"json: cannot unmarshal number into Go struct field PriceHourly.{f} of type string"


# --- Python values --------------------------------------------------------

@group("python.float_conversion", 45, py_wrap)
def _():
    return f"ValueError: could not convert string to float: {pyrepr(rng.choice([p for p in BAD_PRICES if p != '0.42']))}"


@group("python.key_error", 35, py_wrap)
def _():
    return f"KeyError: {pyrepr(rng.choice(FIELDS_PRICE + FIELDS_RSS))}"


@group("python.float_none", 20, py_wrap)
def _():
    return "TypeError: float() argument must be a string or a real number, not 'NoneType'"


@group("python.pydantic_float_parsing", 25, py_wrap)
def _():
    f = rng.choice(["price", "volume"])
    v = rng.choice([p for p in BAD_PRICES if p != "0.42"])
    return (f"pydantic_core._pydantic_core.ValidationError: 1 validation error for PriceHourly\n{f}\n"
            f"  Input should be a valid number, unable to parse string as a number [type=float_parsing, "
            f"input_value={pyrepr(v)}, input_type=str]\n    For further information visit "
            f"https://errors.pydantic.dev/2.{rng.randint(5, 11)}/v/float_parsing")


# --- HTTP clients ---------------------------------------------------------

@group("http.reqwest.503", 50)
def _():
    return f"HTTP status server error (503 Service Unavailable) for url ({url()})"


@group("http.reqwest.502", 25)
def _():
    return f"HTTP status server error (502 Bad Gateway) for url ({url()})"


@group("http.reqwest.429", 30)
def _():
    return f"HTTP status client error (429 Too Many Requests) for url ({url()})"


@group("http.reqwest.connect_refused", 35)
def _():
    return f"error sending request for url ({url()}): error trying to connect: tcp connect error: Connection refused (os error 111)"


@group("http.reqwest.timeout", 35)
def _():
    return f"error sending request for url ({url()}): operation timed out"


@group("http.requests.503", 30, py_wrap)
def _():
    return f"requests.exceptions.HTTPError: 503 Server Error: Service Unavailable for url: {url()}"


@group("http.requests.500", 20, py_wrap)
def _():
    return f"requests.exceptions.HTTPError: 500 Server Error: Internal Server Error for url: {url()}"


@group("http.requests.connection_refused", 25, py_wrap)
def _():
    host = rng.choice(["api.marketlag.io", "enricher.internal", "gamma-api.polymarket.com", ip()])
    port = rng.choice([443, 8080, 9000])
    path = rng.choice([f"/v2/events/{uuid()}", "/v1/enrich", f"/markets/{n(1, 900000)}", "/score?model=lag-v3&explain=1"])
    cls = "HTTPSConnectionPool" if port == 443 else "HTTPConnectionPool"
    conn = "HTTPSConnection" if port == 443 else "HTTPConnection"
    return (f"requests.exceptions.ConnectionError: {cls}(host='{host}', port={port}): Max retries exceeded with url: "
            f"{path} (Caused by NewConnectionError('<urllib3.connection.{conn} object at 0x7f{hexs(10)}>: "
            f"Failed to establish a new connection: [Errno 111] Connection refused'))")


@group("http.requests.name_resolution", 15, py_wrap)
def _():
    host = rng.choice(["api.marketlag.io", "enricher.internal", "gamma-api.polymarket.com"])
    port = rng.choice([443, 8080])
    path = rng.choice([f"/v2/events/{uuid()}", "/v1/enrich", f"/markets/{n(1, 900000)}"])
    cls = "HTTPSConnectionPool" if port == 443 else "HTTPConnectionPool"
    conn = "HTTPSConnection" if port == 443 else "HTTPConnection"
    return (f"requests.exceptions.ConnectionError: {cls}(host='{host}', port={port}): Max retries exceeded with url: "
            f"{path} (Caused by NameResolutionError(\"<urllib3.connection.{conn} object at 0x7f{hexs(10)}>: "
            f"Failed to resolve '{host}' ([Errno -2] Name or service not known)\"))")


@group("http.requests.connection_reset", 20, py_wrap)
def _():
    return ("requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionResetError(104, "
            "'Connection reset by peer'))")


@group("http.requests.connection_refused_aborted", 12, py_wrap)
def _():
    return ("requests.exceptions.ConnectionError: ('Connection aborted.', ConnectionRefusedError(111, "
            "'Connection refused'))")


# --- Databases -------------------------------------------------------------

@group("db.pg.duplicate_key", 50)
def _():
    cons, cols = rng.choice(PG_CONSTRAINTS)
    if "," in cols:
        val = f"{market_id()}, {ts().replace('T', ' ').replace('Z', '+00')}"
    else:
        val = event_id()
    return (f"duplicate key value violates unique constraint \"{cons}\"\nDETAIL:  Key ({cols})=({val}) already exists.")


@group("db.pg.deadlock", 20)
def _():
    p1, p2 = rng.randint(1000, 99999), rng.randint(1000, 99999)
    t1, t2 = n(100_000, 9_999_999), n(100_000, 9_999_999)
    return (f"deadlock detected\nDETAIL:  Process {p1} waits for ShareLock on transaction {t1}; blocked by process {p2}.\n"
            f"Process {p2} waits for ShareLock on transaction {t2}; blocked by process {p1}.\n"
            f"HINT:  See server log for query details.\nCONTEXT:  while inserting index tuple ({rng.randint(0, 9999)},"
            f"{rng.randint(1, 60)}) in relation \"{rng.choice(PG_RELATIONS)}\"")


@group("db.pg.connection_refused", 30)
def _():
    h = rng.choice(PG_HOSTS)
    addr = h if h[0].isdigit() else ip()
    return (f"connection to server at \"{h}\" ({addr}), port 5432 failed: Connection refused\n"
            f"\tIs the server running on that host and accepting TCP/IP connections?")


@group("db.pg.too_many_clients", 15)
def _():
    h = rng.choice(PG_HOSTS)
    addr = h if h[0].isdigit() else ip()
    return f"connection to server at \"{h}\" ({addr}), port 5432 failed: FATAL:  sorry, too many clients already"


@group("db.pg.password_auth", 15)
def _():
    h = rng.choice(PG_HOSTS)
    addr = h if h[0].isdigit() else ip()
    return (f"connection to server at \"{h}\" ({addr}), port 5432 failed: FATAL:  password authentication failed "
            f"for user \"{rng.choice(PG_USERS)}\"")


@group("db.pg.not_null", 25, java_wrap)
def _():
    col = rng.choice(["price", "market_id", "timestamp", "link"])
    rel = rng.choice(PG_RELATIONS)
    row = ", ".join([event_id(), market_id(), rng.choice(QUESTIONS), rng.choice(["Yes", "No"]), "null",
                     str(round(rng.uniform(0, 5000), 1))])
    return (f"org.postgresql.util.PSQLException: ERROR: null value in column \"{col}\" of relation \"{rel}\" "
            f"violates not-null constraint\n  Detail: Failing row contains ({row}).")


@group("db.pg.relation_missing", 12)
def _():
    return f"relation \"{rng.choice(PG_RELATIONS)}\" does not exist"


# --- Schema validators -----------------------------------------------------

@group("schema.jsonschema.required", 35, py_wrap)
def _():
    return f"jsonschema.exceptions.ValidationError: {pyrepr(rng.choice(FIELDS_PRICE + FIELDS_RSS))} is a required property"


@group("schema.jsonschema.type_number", 35, py_wrap)
def _():
    v = rng.choice([p for p in BAD_PRICES])
    return f"jsonschema.exceptions.ValidationError: {pyrepr(v)} is not of type 'number'"


@group("schema.jsonschema.pattern", 15, py_wrap)
def _():
    v = rng.choice(["0x5f2d", "5f2d9c1b0a8e7d6c5b4a39281706f5e4d3c2b1a0", "0X" + hexs(40), "market-" + str(n())])
    return f"jsonschema.exceptions.ValidationError: {pyrepr(v)} does not match '^0x[0-9a-fA-F]{{40}}$'"


@group("schema.registry.incompatible", 20, java_wrap)
def _():
    return (f"io.confluent.kafka.schemaregistry.client.rest.exceptions.RestClientException: Schema being registered "
            f"is incompatible with an earlier schema for subject \"{topic()}-value\"; error code: 409")


@group("schema.registry.subject_not_found", 15, java_wrap)
def _():
    return (f"io.confluent.kafka.schemaregistry.client.rest.exceptions.RestClientException: Subject "
            f"'{topic()}-value' not found.; error code: 40401")


@group("schema.avro.expected_double", 20, java_wrap)
def _():
    return "org.apache.avro.AvroTypeException: Expected double. Got VALUE_STRING"


@group("schema.fastavro.type_mismatch", 14, py_wrap)
def _():
    v = rng.choice([p for p in BAD_PRICES if p])
    f = rng.choice(["price", "price", "volume"])
    return f"ValueError: {pyrepr(v)} (type <class 'str'>) do not match ['null', 'double'] on field {f}"


# --- MarketLag validators (crates/dlq-marketlag/src/validate.rs) -----------

@group("marketlag.missing_field", 60)
def _():
    return f"missing field \"{rng.choice(FIELDS_PRICE + FIELDS_RSS)}\""


@group("marketlag.null_field", 35)
def _():
    return f"field \"{rng.choice(FIELDS_PRICE + FIELDS_RSS)}\" is null"


@group("marketlag.empty_field", 25)
def _():
    return f"field \"{rng.choice(['id', 'title', 'feed', 'event_id', 'question'])}\" is empty"


@group("marketlag.number_got_string", 70)
def _():
    return f"field \"{rng.choice(['price', 'volume'])}\": expected a number, got a string ({jquote(rng.choice(BAD_PRICES))})"


@group("marketlag.string_got_number", 25)
def _():
    v = rng.choice([str(n()), "0.42", "1793509200", "-1", "3.14"])
    return f"field \"{rng.choice(['event_id', 'market_id', 'title', 'id', 'outcome'])}\": expected a string, got a number ({v})"


@group("marketlag.tags_got_string", 15)
def _():
    v = rng.choice(["fed,rates", "crypto", "elections 2026", "", "fed; ecb; boe"])
    return f"field \"tags\": expected an array of strings, got a string ({jquote(v)})"


@group("marketlag.price_out_of_range", 55)
def _():
    v = rng.choice(["1.7", "42", "-0.01", "100", "1.0000001", "-3", "65.5", "1e3"])
    return f"invalid price: expected a number in [0, 1], got {v}"


@group("marketlag.negative_volume", 25)
def _():
    return f"invalid volume: expected a non-negative number, got {rng.choice(['-3.5', '-1', '-1200.25', '-0.001', '-42'])}"


def bad_ts_group(kind, size):
    label = "marketlag.bad_timestamp." + kind.replace(" ", "_")

    @group(label, size)
    def _():
        field = rng.choice(["timestamp", "published"])
        return f"field \"{field}\": expected an RFC 3339 timestamp, got {jquote(rng.choice(BAD_TS[kind]))} ({kind})"


bad_ts_group("premature end of input", 30)
bad_ts_group("input contains invalid characters", 30)
bad_ts_group("input is out of range", 12)
bad_ts_group("trailing input", 10)


@group("marketlag.timestamp_not_utc", 18)
def _():
    h = rng.randint(0, 23)
    off = rng.choice(["+01:00", "-05:00", "+05:30", "+09:00"])
    return f"field \"timestamp\": expected a UTC timestamp (Z or +00:00), got \"2026-11-{rng.randint(1, 30):02d}T{h:02d}:00:00{off}\""


@group("marketlag.timestamp_not_aligned", 30)
def _():
    t = f"2026-11-{rng.randint(1, 30):02d}T{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"
    if rng.random() < 0.3:
        t = t[:-1] + f".{rng.randint(1, 999):03d}Z"
    return f"field \"timestamp\": expected a timestamp aligned to the hour, got \"{t}\""


def bad_link_group(name, why, size):
    label = "marketlag.bad_url." + name

    @group(label, size)
    def _():
        return f"field \"link\": expected an absolute http(s) URL, got {jquote(rng.choice(BAD_LINKS[why]))} ({why})"


bad_link_group("not_absolute", "not an absolute URL", 25)
bad_link_group("bad_scheme", "scheme is not http or https", 12)
bad_link_group("whitespace", "contains whitespace or control characters", 12)
bad_link_group("bad_host", "bad host", 8)


@group("marketlag.bad_market_id", 25)
def _():
    v = rng.choice(["0x" + hexs(rng.randint(4, 39)), hexs(40), "0X" + hexs(40).upper(), "market-" + str(n()), ""])
    return f"field \"market_id\": expected \"0x\" followed by 40 hex digits, got {jquote(v)}"


@group("marketlag.bad_outcome", 20)
def _():
    v = rng.choice(["yes", "no", "YES", "Maybe", "N/A", "Yes ", "", "true"])
    return f"field \"outcome\": expected \"Yes\" or \"No\", got {jquote(v)}"


@group("marketlag.malformed_json_expected_value", 30)
def _():
    l, c = line_col()
    return f"malformed JSON: expected value at line {l} column {c}"


@group("marketlag.malformed_json_eof_object", 20)
def _():
    l, c = line_col()
    return f"malformed JSON: EOF while parsing an object at line {l} column {c}"


@group("marketlag.invalid_utf8", 15)
def _():
    return f"invalid UTF-8 at byte offset {rng.randint(0, 4000)} (byte 0x{rng.randint(128, 255):02X})"


@group("marketlag.not_an_object_array", 10)
def _():
    return "expected a JSON object, got an array"


@group("marketlag.oversized", 10)
def _():
    return f"record is {rng.randint(1_048_577, 9_000_000)} bytes, over the limit of 1048576 bytes"


@group("marketlag.downstream_timeout", 40)
def _():
    return f"downstream timed out after 5000 ms (simulated, attempt {rng.randint(1, 5)})"


@group("marketlag.downstream_unavailable", 35)
def _():
    return f"downstream unavailable: connection refused (simulated outage, attempt {rng.randint(1, 5)})"


def main():
    rows = []
    labels = set()
    for label, size, wrap, fn in GROUPS:
        assert label not in labels, label
        labels.add(label)
        for _ in range(size):
            rows.append({"group": label, "message": wrap(fn())})
    rng.shuffle(rows)
    out = sys.stdout
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{len(rows)} messages in {len(labels)} groups", file=sys.stderr)


if __name__ == "__main__":
    main()
