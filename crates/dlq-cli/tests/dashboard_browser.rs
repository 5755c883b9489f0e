//! The dashboard in a real browser: `dlq demo` fills a store, `dlq serve`
//! serves it with tokens from the environment, and a Playwright script
//! (`crates/dlq-server/tests/browser/dashboard.mjs`) drives Debian's
//! headless Chromium through sign-in, a DLQ's size and groups (each with
//! its arrivals timeline and its verdict's rule and reason), a revealed
//! HTML payload, a replay preview, the replay and the smaller DLQ.
//! Screenshots go to `target/browser-artifacts/`. The same browser also
//! opens `dlq analyze --format html` and must build its two SVG charts.
//!
//! Needs `/usr/bin/chromium` (or `CHROMIUM`), Node.js, and `npm ci` run in
//! the script's folder (scripts/test.sh does both). Without them the test
//! fails under CI (`CI` set) and is skipped with a message otherwise.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const OPERATOR: &str = "operator-token-browser-test-0001";
const VIEWER: &str = "viewer-token-browser-test-0001";
const HTML_RECORD: &str = r#"{"original_record":"<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">","error":"bad <b>markup</b> in the payload","timestamp":"2026-11-29T07:00:00Z"}"#;

/// When the imported `MessageTimedOut` seed records failed: hours 05 to 08
/// of one day, 06 twice, 07 never.
const TIMED_OUT_AT: [&str; 4] = [
    "2026-11-28T05:10:00Z",
    "2026-11-28T06:20:00Z",
    "2026-11-28T06:40:00Z",
    "2026-11-28T08:30:00Z",
];

/// Kills the server when the test ends, whatever happens.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn dlq(store: &str, dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
    c.args(["--store", store, "--no-progress"])
        .current_dir(dir)
        .env_remove("DLQ_STORE")
        .env_remove("DLQ_VIEWER_TOKEN")
        .env_remove("DLQ_OPERATOR_TOKEN");
    c
}

fn check(out: std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `dlq demo` with `records` per pipeline in `dir/demo`; its store URL.
fn demo(dir: &Path, records: u32) -> String {
    let store = format!("sqlite://{}", dir.join("demo/dlq.db").display());
    check(
        dlq(&store, dir)
            .args(["demo", "--records", &records.to_string(), "--dir"])
            .arg(dir.join("demo"))
            .output()
            .expect("dlq demo"),
        "dlq demo",
    );
    store
}

/// What is missing to run the browser, if anything.
fn missing(chromium: &Path, script_dir: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    if !chromium.exists() {
        missing.push(format!(
            "{} (apt-get install chromium chromium-driver)",
            chromium.display()
        ));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node (Node.js)".to_owned());
    }
    if !script_dir.join("node_modules/playwright-core").exists() {
        missing.push(format!(
            "{}/node_modules (npm ci there)",
            script_dir.display()
        ));
    }
    missing
}

#[test]
fn dashboard_shows_a_dlq_and_replays_a_group_in_headless_chromium() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script_dir = manifest.join("../dlq-server/tests/browser");
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    let lacking = missing(&chromium, &script_dir);
    if !lacking.is_empty() {
        let message = format!("the browser test needs: {}", lacking.join(", "));
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        eprintln!("skipping dashboard_browser: {message} (scripts/test.sh installs them)");
        return;
    }
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target"))
        .join("browser-artifacts");

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = demo(dir, 400);
    let mut import = dlq(&store, dir)
        .args(["import", "--dlq", "dlq.rss.events"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dlq import");
    let mut stdin = import.stdin.take().expect("stdin");
    writeln!(stdin, "{HTML_RECORD}").expect("write");
    // Seed-format records whose failures span four hours long before the
    // server starts: their group's timeline must show those hours at once,
    // and their triage verdict with its rule.
    for at in TIMED_OUT_AT {
        writeln!(
            stdin,
            r#"{{"original_record":"{{\"id\":1}}","error":"Message production error: MessageTimedOut (Local: Message timed out)","timestamp":"{at}"}}"#
        )
        .expect("write");
    }
    drop(stdin);
    check(import.wait_with_output().expect("import"), "dlq import");
    let config = dir.join("dlq.toml");
    std::fs::write(
        &config,
        format!(
            "[serve]\naudit_log = \"audit.jsonl\"\nsample_interval_secs = 1\n\
             [serve.replay_targets]\nout = \"file:{}\"\n",
            dir.join("replayed.ndjson").display()
        ),
    )
    .expect("config");

    let mut command = dlq(&store, dir);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("DLQ_OPERATOR_TOKEN", OPERATOR)
        .env("DLQ_VIEWER_TOKEN", VIEWER);
    let (server, url) = start_serve(command);

    let started = Instant::now();
    let mut browser = Command::new("node")
        .arg("dashboard.mjs")
        .current_dir(&script_dir)
        .env("DLQ_URL", &url)
        .env("DLQ_OPERATOR_TOKEN", OPERATOR)
        .env("DLQ_VIEWER_TOKEN", VIEWER)
        .env("DLQ_ARTIFACTS", &artifacts)
        .env("DLQ_HTML_DLQ", "dlq.rss.events")
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node dashboard.mjs");
    let status = loop {
        if let Some(status) = browser.try_wait().expect("wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = browser.kill();
            break browser.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let out = browser.wait_with_output().expect("output");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        status.success(),
        "the browser script failed:\n{log}\nscreenshots: {}",
        artifacts.display()
    );
    assert!(log.contains("dashboard ok"), "{log}");
    drop(server);

    // What the browser did is in the store, the target file and the audit log.
    let replayed = std::fs::read_to_string(dir.join("replayed.ndjson")).expect("target");
    assert!(replayed.lines().count() > 0);
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).expect("audit");
    for action in [
        "\"reveal\"",
        "\"replay_preview\"",
        "\"replay\"",
        "\"replay_finished\"",
    ] {
        assert!(
            audit.contains(action),
            "no {action} in the audit log:\n{audit}"
        );
    }
    assert!(
        !audit.contains(OPERATOR) && !audit.contains(VIEWER),
        "a token in the audit log"
    );
    for shot in ["1-overview", "3-dlq", "4-preview", "6-after"] {
        assert!(artifacts.join(format!("{shot}.png")).exists(), "{shot}.png");
    }
}

/// Starts `dlq serve` (its first stdout line names the address) and
/// returns the running server with its `http://HOST:PORT`.
fn start_serve(mut command: Command) -> (Running, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().expect("dlq serve");
    let stdout = child.stdout.take().expect("stdout");
    let running = Running(child);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("read the address");
    let url = first
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_owned();
    (running, url)
}

/// One HTTP/1.1 request to the server; returns the status line and body.
fn http(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// `dlq serve` without a browser: it refuses to start without a token,
/// and serves `/metrics` for both MarketLag DLQs to a viewer only.
#[test]
fn serve_needs_tokens_and_serves_metrics_for_both_dlqs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = demo(dir, 200);
    let refused = dlq(&store, dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .output()
        .expect("dlq serve");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no tokens"));

    let mut command = dlq(&store, dir);
    command
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DLQ_OPERATOR_TOKEN", OPERATOR)
        .env("DLQ_VIEWER_TOKEN", VIEWER);
    let (_server, url) = start_serve(command);
    let addr = url.trim_start_matches("http://").to_owned();
    assert!(addr.starts_with("127.0.0.1:"));
    let (status, _) = http(&addr, "/metrics", None);
    assert!(status.contains(" 401 "), "{status}");
    // The monitor's first tick may not have run yet: scrape until one has,
    // and check that every scrape shows whole samples (a DLQ's pending
    // count never without its age), never a tick half published.
    let dlqs = ["dlq.rss.events", "dlq.polymarket.price_hourly"];
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let (status, body) = http(&addr, "/metrics", Some(VIEWER));
        assert!(status.contains(" 200 "), "{status}");
        let complete = dlqs.map(|dlq| {
            let pending = body.contains(&format!("dlq_pending_records{{dlq=\"{dlq}\"}} "));
            let age = body.contains(&format!("dlq_oldest_pending_age_seconds{{dlq=\"{dlq}\"}} "));
            assert_eq!(pending, age, "half a sample of {dlq}:\n{body}");
            pending
        });
        assert_eq!(complete[0], complete[1], "half a tick:\n{body}");
        if complete[0] {
            break body;
        }
        assert!(Instant::now() < deadline, "no sample in /metrics:\n{body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(body.contains("dlq_monitor_samples_total"), "{body}");
    let (status, _) = http(&addr, "/api/audit", Some(VIEWER));
    assert!(status.contains(" 403 "), "{status}");
    assert!(
        dir.join("dlq-audit.jsonl").exists(),
        "the default audit log"
    );
}

/// `dlq serve` triages with the `[[triage.rule]]`s of its config file, as
/// `dlq analyze --config` does: a seed-format record whose message only a
/// user rule knows gets that rule's verdict in the groups the API shows.
#[test]
fn serve_triages_groups_with_the_rules_of_its_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = demo(dir, 100);
    let mut import = dlq(&store, dir)
        .args(["import", "--dlq", "dlq.rss.events"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dlq import");
    writeln!(
        import.stdin.take().expect("stdin"),
        r#"{{"original_record":"{{}}","error":"ACME-7 ledger sealed for order 12","timestamp":"2026-11-29T07:00:00Z"}}"#
    )
    .expect("write");
    check(import.wait_with_output().expect("import"), "dlq import");
    let config = dir.join("dlq.toml");
    std::fs::write(
        &config,
        "[serve]\nlisten = \"127.0.0.1:0\"\n\n[[triage.rule]]\nname = \"acme.ledger_sealed\"\n\
         class = \"acme.sealed\"\nverdict = \"duplicate\"\npatterns = ['ACME-\\d+ ledger sealed']\n\
         reason = \"the ledger has the order already\"\n",
    )
    .expect("config");
    let mut command = dlq(&store, dir);
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("DLQ_VIEWER_TOKEN", VIEWER);
    let (_server, url) = start_serve(command);
    let addr = url.trim_start_matches("http://").to_owned();
    let (status, body) = http(&addr, "/api/dlqs/dlq.rss.events/groups", Some(VIEWER));
    assert!(status.contains(" 200 "), "{status}\n{body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let groups = v["groups"].as_array().expect("groups");
    let acme = groups
        .iter()
        .find(|g| {
            g["example_error"]
                .as_str()
                .is_some_and(|e| e.contains("ACME-7"))
        })
        .unwrap_or_else(|| panic!("no ACME group in {body}"));
    assert_eq!(acme["verdict"], "duplicate", "{acme}");
    assert_eq!(acme["verdict_rule"], "acme.ledger_sealed", "{acme}");
    assert_eq!(acme["error_class"], "acme.sealed", "{acme}");
    assert!(
        acme["verdict_reason"]
            .as_str()
            .is_some_and(|r| r.contains("the ledger has the order already")),
        "{acme}"
    );

    // A broken rule stops `dlq serve` before it listens, naming the rule.
    std::fs::write(
        &config,
        "[[triage.rule]]\nname = \"x\"\nclass = \"x\"\nverdict = \"maybe\"\npatterns = ['x']\n",
    )
    .expect("config");
    let refused = dlq(&store, dir)
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .env("DLQ_VIEWER_TOKEN", VIEWER)
        .output()
        .expect("dlq serve");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("triage.rule[0]") && stderr.contains("maybe"),
        "{stderr}"
    );
}

/// `dlq serve` runs the monitor of its config file: alerts, the size
/// history and the monitor's metrics come from it.
#[test]
fn serve_runs_the_monitor_of_its_config_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = demo(dir, 1000);
    let config = dir.join("dlq.toml");
    std::fs::write(
        &config,
        "[monitor]\ninterval = \"1s\"\n\n[[rule]]\nname = \"tiny-dlq\"\nkind = \"size\"\nabove = 1\n\n\
         [serve]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("config");
    let mut command = dlq(&store, dir);
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("DLQ_VIEWER_TOKEN", VIEWER);
    let (_server, url) = start_serve(command);
    let addr = url.trim_start_matches("http://").to_owned();

    // The monitor ticks every second: wait for two samples of each DLQ.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let points = |dlq: &str| -> usize {
        let (_, body) = http(&addr, &format!("/api/dlqs/{dlq}/history"), Some(VIEWER));
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        v["points"].as_array().map_or(0, Vec::len)
    };
    while points("dlq.rss.events") < 2 || points("dlq.polymarket.price_hourly") < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "no history from the monitor"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, body) = http(&addr, "/api/alerts", Some(VIEWER));
    assert!(status.contains(" 200 "), "{status}");
    let alerts: serde_json::Value = serde_json::from_str(&body).expect("alerts json");
    let firing: Vec<&str> = alerts["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .filter(|a| a["rule"] == "tiny-dlq")
        .filter_map(|a| a["dlq"].as_str())
        .collect();
    assert!(
        firing.contains(&"dlq.rss.events") && firing.contains(&"dlq.polymarket.price_hourly"),
        "{body}"
    );
    let (_, metrics) = http(&addr, "/metrics", Some(VIEWER));
    for dlq in ["dlq.rss.events", "dlq.polymarket.price_hourly"] {
        assert!(
            metrics.contains(&format!(
                "dlq_alerts_firing{{rule=\"tiny-dlq\",dlq=\"{dlq}\"}} 1"
            )),
            "{metrics}"
        );
        assert!(metrics.contains(&format!("dlq_dead_lettered_records_total{{dlq=\"{dlq}\"}}")));
    }
    assert!(metrics.contains("dlq_monitor_samples_total"), "{metrics}");
}

/// `dlq analyze --format html` opened in headless Chromium: the browser
/// builds both charts as SVG (the DOM it dumps holds them, with their bars
/// and axis labels), and a screenshot is saved beside the dashboard's.
#[test]
fn analyze_html_report_renders_its_charts_in_chromium() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let chromium = PathBuf::from(std::env::var("CHROMIUM").unwrap_or("/usr/bin/chromium".into()));
    if !chromium.exists() {
        let message = format!("the report test needs {}", chromium.display());
        if std::env::var_os("CI").is_some() {
            panic!("{message}");
        }
        eprintln!("skipping: {message} (scripts/test.sh installs it)");
        return;
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = demo(dir, 1000);
    let html = check(
        dlq(&store, dir)
            .args(["analyze", "--status", "all", "--format", "html"])
            .output()
            .expect("dlq analyze"),
        "dlq analyze --format html",
    );
    let report = dir.join("report.html");
    std::fs::write(&report, html).expect("report");
    let artifacts = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../target"))
        .join("browser-artifacts");
    std::fs::create_dir_all(&artifacts).expect("artifacts dir");
    let browser = |extra: &[&str]| {
        Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1300,1600",
            ])
            .arg(format!(
                "--user-data-dir={}",
                dir.join("chromium").display()
            ))
            .args(extra)
            .arg(format!("file://{}", report.display()))
            .output()
            .expect("chromium")
    };
    let dom = browser(&["--dump-dom"]);
    assert!(
        dom.status.success(),
        "{}",
        String::from_utf8_lossy(&dom.stderr)
    );
    let dom = String::from_utf8_lossy(&dom.stdout);
    assert_eq!(dom.matches("<svg").count(), 2, "two charts in the DOM");
    assert!(dom.matches("<rect").count() > 10, "the size chart's bars");
    assert!(
        dom.contains("validation.wrong_type"),
        "axis labels name groups"
    );
    let shot = artifacts.join("analyze-report.png");
    let _ = std::fs::remove_file(&shot);
    let out = browser(&[&format!("--screenshot={}", shot.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let size = std::fs::metadata(&shot).expect("screenshot").len();
    assert!(size > 20_000, "a screenshot with content: {size} bytes");
}

/// One HTTP/1.1 request with a deadline; the status code and the body, or
/// why there is none (the server closed the connection, died, or did not
/// answer in time).
fn call(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    body: Option<&serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    use std::io::Read as _;
    let mut stream = std::net::TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let post = if method == "POST" {
        format!(
            "Content-Type: application/json\r\nX-DLQ-CSRF: 1\r\nContent-Length: {}\r\n",
            body.len()
        )
    } else {
        String::new()
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n{post}\
         Connection: close\r\n\r\n{body}"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("no answer within {timeout:?}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {text:?}"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// Checks an answer to a hostile filter: a 400 naming the filter.
fn filter_refused(answer: (u16, String)) -> Result<(), String> {
    let (code, body) = answer;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    if code == 400
        && v["error"]["code"] == "invalid_filter"
        && v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("filter: "))
    {
        Ok(())
    } else {
        Err(format!("expected a 400 invalid_filter, got {code}: {body}"))
    }
}

/// Checks an answer to a hostile fix: a 400 naming the fix (refused when
/// compiled), or a preview whose every sample failed with its error (a
/// budget ran out while it ran).
fn fix_refused(answer: (u16, String)) -> Result<(), String> {
    let (code, body) = answer;
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let compiled_out = code == 400 && v["error"]["code"] == "invalid_fix";
    let samples = v["samples"].as_array().cloned().unwrap_or_default();
    let every_sample_failed = code == 200
        && !samples.is_empty()
        && samples
            .iter()
            .all(|s| s["fix_error"].as_str().is_some_and(|e| !e.is_empty()));
    if compiled_out || every_sample_failed {
        Ok(())
    } else {
        Err(format!(
            "expected a 400 invalid_fix or samples that failed, got {code}: {body}"
        ))
    }
}

/// The hostile inputs of issue #10 against the real `dlq serve`: deep
/// filters from a viewer, fixes that recurse, loop or allocate without
/// end, a rate of 1e-300. Each gets an error; after each, the server is
/// still running and answers the next request, and a slow fix does not
/// keep other requests waiting. Every case runs (a dead server is
/// restarted), and the failures are listed together.
#[test]
fn hostile_filters_fixes_and_rates_get_an_error_and_the_server_answers_the_next_request() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = demo(dir, 200);
    let config = dir.join("dlq.toml");
    std::fs::write(
        &config,
        format!(
            "[serve]\naudit_log = \"audit.jsonl\"\n[serve.replay_targets]\nout = \"file:{}\"\n",
            dir.join("replayed.ndjson").display()
        ),
    )
    .expect("config");
    let serve = || {
        // Under an address-space limit where prlimit exists: a fix that
        // allocates without bound then fails at 4 GiB instead of taking
        // the machine's memory (the budgets should stop it far earlier).
        let mut command = if Path::new("/usr/bin/prlimit").exists() {
            let mut c = Command::new("/usr/bin/prlimit");
            c.args(["--as=4294967296", "--"])
                .arg(env!("CARGO_BIN_EXE_dlq"))
                .args(["--store", &store, "--no-progress"])
                .current_dir(dir)
                .env_remove("DLQ_STORE");
            c
        } else {
            dlq(&store, dir)
        };
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&config)
            .env("DLQ_OPERATOR_TOKEN", OPERATOR)
            .env("DLQ_VIEWER_TOKEN", VIEWER);
        start_serve(command)
    };
    const DLQ: &str = "dlq.polymarket.price_hourly";
    let short = Duration::from_secs(5);
    // Budgets bound a fix's time: a preview of one sample answers well
    // within this.
    let slow = Duration::from_secs(60);
    let deep_filter = format!("{}retryable{}", "(".repeat(2000), ")".repeat(2000));
    let nots = format!("{}retryable", "!".repeat(5000));
    let records = |f: &str| format!("/api/dlqs/{DLQ}/records?filter={}", encode(f));
    let preview =
        |fix: &str| serde_json::json!({"dlq": DLQ, "target": "out", "fix": fix, "samples": 1});
    type Case = Box<dyn Fn(&str) -> Result<(), String>>;
    let cases: Vec<(&str, Case)> = vec![
        (
            "a viewer's 2,000-deep filter on records",
            Box::new(move |a| {
                filter_refused(call(a, "GET", &records(&deep_filter), VIEWER, None, short)?)
            }),
        ),
        (
            "a viewer's 5,000 nested `!` on groups",
            Box::new(move |a| {
                let path = format!("/api/dlqs/{DLQ}/groups?filter={}", encode(&nots));
                filter_refused(call(a, "GET", &path, VIEWER, None, short)?)
            }),
        ),
        (
            "'! ' 60,000 times (a URL longer than the server takes)",
            Box::new(move |a| {
                let path = format!("/api/dlqs/{DLQ}/records?filter={}", "!%20".repeat(60_000));
                match call(a, "GET", &path, VIEWER, None, short)? {
                    (414 | 431 | 400, _) => Ok(()),
                    (code, body) => Err(format!("expected a 414, got {code}: {body}")),
                }
            }),
        ),
        (
            "fix `def f: [f]; f` (unbounded recursion)",
            Box::new(move |a| {
                fix_refused(call(
                    a,
                    "POST",
                    "/api/replays/preview",
                    OPERATOR,
                    Some(&preview("def f: [f]; f")),
                    slow,
                )?)
            }),
        ),
        (
            "a fix of 5,000 nested parentheses",
            Box::new(move |a| {
                let fix = format!("{}.{}", "(".repeat(5000), ")".repeat(5000));
                fix_refused(call(
                    a,
                    "POST",
                    "/api/replays/preview",
                    OPERATOR,
                    Some(&preview(&fix)),
                    slow,
                )?)
            }),
        ),
        (
            "fix `def f: f; f` (never ends), while other requests are answered",
            Box::new(move |a| {
                let addr = a.to_owned();
                let body = preview("def f: f; f");
                let running = std::thread::spawn(move || {
                    call(
                        &addr,
                        "POST",
                        "/api/replays/preview",
                        OPERATOR,
                        Some(&body),
                        slow,
                    )
                });
                std::thread::sleep(Duration::from_millis(300));
                let started = Instant::now();
                let (code, _) = call(a, "GET", "/api/health", VIEWER, None, short)?;
                if code != 200 || started.elapsed() > Duration::from_secs(2) {
                    return Err(format!(
                        "health answered {code} after {:?} while the fix ran",
                        started.elapsed()
                    ));
                }
                fix_refused(running.join().map_err(|_| "the client thread panicked")??)
            }),
        ),
        (
            "fix `last(range(1e18))` (never ends)",
            Box::new(move |a| {
                fix_refused(call(
                    a,
                    "POST",
                    "/api/replays/preview",
                    OPERATOR,
                    Some(&preview("last(range(1e18))")),
                    slow,
                )?)
            }),
        ),
        (
            "fix `[range(1e9)]|length` (allocates without end)",
            Box::new(move |a| {
                fix_refused(call(
                    a,
                    "POST",
                    "/api/replays/preview",
                    OPERATOR,
                    Some(&preview("[range(1e9)]|length")),
                    slow,
                )?)
            }),
        ),
        (
            "a replay at rate 1e-300, then a replay that runs",
            Box::new(move |a| {
                let body =
                    serde_json::json!({"dlq": DLQ, "target": "out", "rate": 1e-300, "limit": 2});
                let (code, text) = call(a, "POST", "/api/replays", OPERATOR, Some(&body), short)?;
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                if code != 400 || v["error"]["code"] != "invalid_rate" {
                    return Err(format!(
                        "rate 1e-300: expected a 400 invalid_rate, got {code}: {text}"
                    ));
                }
                let body = serde_json::json!({"dlq": DLQ, "target": "out", "limit": 2});
                let (code, text) = call(a, "POST", "/api/replays", OPERATOR, Some(&body), short)?;
                if code != 202 {
                    return Err(format!("the next replay: expected 202, got {code}: {text}"));
                }
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                let job = v["job"]["id"].as_str().unwrap_or_default().to_owned();
                let deadline = Instant::now() + Duration::from_secs(30);
                loop {
                    let (_, text) = call(
                        a,
                        "GET",
                        &format!("/api/replays/{job}"),
                        VIEWER,
                        None,
                        short,
                    )?;
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    if v["job"]["status"] == "done" {
                        return Ok(());
                    }
                    if v["job"]["done"] == true || Instant::now() > deadline {
                        return Err(format!("the next replay did not finish: {text}"));
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }),
        ),
    ];

    let (mut server, mut url) = serve();
    let mut failures = Vec::new();
    for (name, case) in &cases {
        let addr = url.trim_start_matches("http://").to_owned();
        let outcome = case(&addr);
        let next = call(&addr, "GET", "/api/health", VIEWER, None, short);
        // A server that aborts may take a moment to be gone.
        let mut died = None;
        for _ in 0..20 {
            died = server
                .0
                .try_wait()
                .expect("try_wait")
                .map(|s| s.to_string());
            if died.is_some() || matches!(next, Ok((200, _))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        match (outcome, died, next) {
            (Ok(()), None, Ok((200, _))) => continue,
            (outcome, died, next) => failures.push(format!(
                "{name}: {}; server {}; next request: {}",
                outcome
                    .err()
                    .unwrap_or_else(|| "answered as expected".into()),
                died.map_or("still running".to_owned(), |s| format!("DIED ({s})")),
                match next {
                    Ok((code, _)) => format!("{code}"),
                    Err(e) => e,
                }
            )),
        }
        // A fresh server for the next case, whatever this one left behind.
        drop(server);
        (server, url) = serve();
    }
    assert!(
        failures.is_empty(),
        "hostile input broke dlq serve:\n  - {}",
        failures.join("\n  - ")
    );
}

/// Percent-encodes a query parameter value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
