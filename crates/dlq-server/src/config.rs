//! The `[serve]` section of `dlq.toml`, and the tokens.
//!
//! ```toml
//! [serve]
//! listen = "127.0.0.1:8080"          # default
//! audit_log = "dlq-audit.jsonl"      # default; relative to the config file
//! operator_tokens_file = "operator.tokens"
//! viewer_tokens = [{ label = "grafana", token = "…" }]
//! sample_interval_secs = 15          # built-in size history
//! history_points = 5760              # per DLQ (a day at 15 s)
//! allowed_hosts = ["dlq.example.com"] # names besides localhost (DNS rebinding)
//!
//! [serve.replay_targets]             # the only targets a request can name
//! rss = "pipeline:out/rss.events.ndjson"
//! prices = "pipeline:out/polymarket.price_hourly.ndjson"
//! ```
//!
//! The `[triage]` section (user triage rules, as `dlq analyze --config`
//! reads them: [`dlq_core::triage::Triage::from_config`]) is read too: the
//! groups the API shows are triaged with those rules before the shipped
//! ones. Other top-level sections belong to other commands and are ignored. Every
//! problem is reported at once, with its key path; no message ever contains
//! a token. Tokens come from `viewer_tokens`/`operator_tokens`, from
//! `viewer_tokens_file`/`operator_tokens_file` (one token per line,
//! `LABEL:TOKEN` or just `TOKEN`; `#` starts a comment) and from the
//! environment variables `DLQ_VIEWER_TOKEN` and `DLQ_OPERATOR_TOKEN`.

use crate::auth::{Role, Secret, Tokens};
use crate::hosts::AllowedHost;
use dlq_core::triage::Triage;
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use toml::{Table, Value};

/// The environment variable holding a viewer token.
pub const VIEWER_TOKEN_ENV: &str = "DLQ_VIEWER_TOKEN";
/// The environment variable holding an operator token.
pub const OPERATOR_TOKEN_ENV: &str = "DLQ_OPERATOR_TOKEN";
/// Tokens shorter than this are refused: they could be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

const fn default_listen() -> SocketAddr {
    SocketAddr::V4(std::net::SocketAddrV4::new(
        std::net::Ipv4Addr::LOCALHOST,
        8080,
    ))
}
const fn default_sample_interval_secs() -> u64 {
    15
}
const fn default_history_points() -> usize {
    5760
}
const DEFAULT_AUDIT_LOG: &str = "dlq-audit.jsonl";

/// The server's settings (tokens apart: see [`Loaded`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ServeConfig {
    /// Address to bind; `127.0.0.1:8080` by default. Anything but a
    /// loopback address exposes the API (over plain HTTP) to the network.
    pub listen: SocketAddr,
    /// The append-only audit log (JSON Lines).
    pub audit_log: PathBuf,
    /// Allow-listed replay targets: name → what `dlq replay --to` accepts
    /// (`file:PATH`, `pipeline:PATH`, `kafka:TOPIC`). Requests name a target;
    /// they never give a path, topic or broker.
    pub replay_targets: BTreeMap<String, String>,
    /// How often the built-in sampler records each DLQ's size (when no
    /// monitor is plugged in).
    pub sample_interval: Duration,
    /// Points of size history kept per DLQ by the built-in sampler.
    pub history_points: usize,
    /// Names the server may be called by besides `localhost`,
    /// `127.0.0.1`, `[::1]` and the listen address (a proxy's name, the
    /// machine's name): `name` for any port, `name:port` for one. Any other
    /// `Host` is refused, whatever the request (see [`crate::hosts`]).
    pub allowed_hosts: Vec<AllowedHost>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: default_listen(),
            audit_log: PathBuf::from(DEFAULT_AUDIT_LOG),
            replay_targets: BTreeMap::new(),
            sample_interval: Duration::from_secs(default_sample_interval_secs()),
            history_points: default_history_points(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// A loaded configuration: the settings and the tokens.
#[derive(Debug)]
pub struct Loaded {
    /// The settings.
    pub config: ServeConfig,
    /// The accepted tokens.
    pub tokens: Tokens,
    /// The triage rules: the file's `[[triage.rule]]`s before the shipped
    /// ones (see [`crate::Server::set_triage`]).
    pub triage: Arc<Triage>,
}

/// Everything wrong with a configuration, each with its key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n  - {}", problems.join("\n  - "))]
pub struct ConfigError {
    /// One line per problem, e.g. `serve.listen: expected HOST:PORT …`.
    pub problems: Vec<String>,
}

/// Reads the environment; a seam for tests.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;
/// Says whether a replay target spec can be used; see
/// [`crate::ReplayRunner::check_target`].
pub type TargetCheck<'a> = &'a dyn Fn(&str) -> Result<(), String>;

/// Loads the config file at `path`. A missing file is an error only when
/// `required` (the user named it); otherwise the defaults and the
/// environment's tokens are used.
pub fn load_file(
    path: &Path,
    required: bool,
    env: EnvLookup<'_>,
    check_target: TargetCheck<'_>,
) -> Result<Loaded, ConfigError> {
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    match std::fs::read_to_string(path) {
        Ok(text) => load_str(&text, base, env, check_target).map_err(|mut e| {
            for p in &mut e.problems {
                *p = format!("{}: {p}", path.display());
            }
            e
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
            load_str("", base, env, check_target)
        }
        Err(e) => Err(ConfigError {
            problems: vec![format!("cannot read {}: {e}", path.display())],
        }),
    }
}

/// Loads a configuration from TOML text; relative paths are taken from
/// `base_dir` (the config file's directory).
pub fn load_str(
    text: &str,
    base_dir: &Path,
    env: EnvLookup<'_>,
    check_target: TargetCheck<'_>,
) -> Result<Loaded, ConfigError> {
    let mut problems = Vec::new();
    let root: Table = match text.parse::<Table>() {
        Ok(t) => t,
        Err(e) => {
            // The error's own Display quotes the offending line, which may
            // hold a token: give the line number and the message only.
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let at = line.map(|l| format!("line {l}: ")).unwrap_or_default();
            return Err(ConfigError {
                problems: vec![format!("{at}not valid TOML: {}", e.message().trim())],
            });
        }
    };
    let mut config = ServeConfig::default();
    // (role, label, token, where it came from: a key path or a variable)
    let mut raw_tokens: Vec<(Role, String, Secret, String)> = Vec::new();
    let mut token_files: Vec<(Role, String, PathBuf)> = Vec::new();
    let empty = Table::new();
    let serve = match root.get("serve") {
        None => &empty,
        Some(Value::Table(t)) => t,
        Some(_) => {
            problems.push("serve: expected a table ([serve])".to_owned());
            &empty
        }
    };
    for (key, value) in serve {
        let path = format!("serve.{key}");
        match key.as_str() {
            "listen" => {
                if let Some(s) = string(&path, value, &mut problems) {
                    match s.parse::<SocketAddr>() {
                        Ok(a) => config.listen = a,
                        Err(_) => problems.push(format!(
                            "{path}: expected IP:PORT such as 127.0.0.1:8080, got {s:?}"
                        )),
                    }
                }
            }
            "audit_log" => {
                if let Some(s) = string(&path, value, &mut problems) {
                    if s.is_empty() {
                        problems.push(format!("{path}: must not be empty"));
                    } else {
                        config.audit_log = base_dir.join(s);
                    }
                }
            }
            "viewer_tokens_file" | "operator_tokens_file" => {
                let role = if key.starts_with("viewer") {
                    Role::Viewer
                } else {
                    Role::Operator
                };
                if let Some(s) = string(&path, value, &mut problems) {
                    token_files.push((role, path.clone(), base_dir.join(s)));
                }
            }
            "viewer_tokens" | "operator_tokens" => {
                let role = if key.starts_with("viewer") {
                    Role::Viewer
                } else {
                    Role::Operator
                };
                token_values(&path, value, role, &mut raw_tokens, &mut problems);
            }
            "replay_targets" => match value {
                Value::Table(t) => {
                    for (name, spec) in t {
                        let p = format!("{path}.{name}");
                        if !valid_target_name(name) {
                            problems.push(format!(
                                "{p}: a target name is 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit"
                            ));
                        }
                        if let Some(spec) = string(&p, spec, &mut problems) {
                            match check_target(spec) {
                                Ok(()) => {
                                    config.replay_targets.insert(name.clone(), spec.to_owned());
                                }
                                Err(e) => problems.push(format!("{p}: {e}")),
                            }
                        }
                    }
                }
                _ => problems.push(format!(
                    "{path}: expected a table of NAME = \"file:PATH\" | \"pipeline:PATH\" | \"kafka:TOPIC\" | \"kafka://HOST:PORT[/TOPIC]\" | \"sqs:QUEUE\""
                )),
            },
            "sample_interval_secs" => {
                if let Some(n) = integer(&path, value, 1, 86_400, &mut problems) {
                    config.sample_interval = Duration::from_secs(n as u64);
                }
            }
            "history_points" => {
                if let Some(n) = integer(&path, value, 1, 1_000_000, &mut problems) {
                    config.history_points = n as usize;
                }
            }
            "allowed_hosts" => match value {
                Value::Array(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let p = format!("{path}[{i}]");
                        if let Some(s) = string(&p, item, &mut problems) {
                            match AllowedHost::parse(s) {
                                Ok(h) => config.allowed_hosts.push(h),
                                Err(e) => problems.push(format!("{p}: {e}")),
                            }
                        }
                    }
                }
                _ => problems.push(format!(
                    "{path}: expected an array of host names, such as [\"dlq.example.com\"]"
                )),
            },
            _ => problems.push(format!(
                "{path}: unknown key (known: listen, audit_log, viewer_tokens, operator_tokens, \
                 viewer_tokens_file, operator_tokens_file, replay_targets, sample_interval_secs, \
                 history_points, allowed_hosts)"
            )),
        }
    }
    for (role, key, file) in &token_files {
        match std::fs::read_to_string(file) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate() {
                    let line = line.trim();
                    if line.is_empty() || line.starts_with('#') {
                        continue;
                    }
                    let (label, token) = match line.split_once(':') {
                        Some((l, t)) if !l.trim().is_empty() => (l.trim().to_owned(), t.trim()),
                        _ => (format!("{}:{}", file.display(), n + 1), line),
                    };
                    raw_tokens.push((
                        *role,
                        label,
                        Secret::new(token),
                        format!("{key} line {}", n + 1),
                    ));
                }
            }
            Err(e) => problems.push(format!("{key}: cannot read {}: {e}", file.display())),
        }
    }
    for (role, var) in [
        (Role::Viewer, VIEWER_TOKEN_ENV),
        (Role::Operator, OPERATOR_TOKEN_ENV),
    ] {
        if let Some(v) = env(var).filter(|v| !v.is_empty()) {
            raw_tokens.push((
                role,
                format!("env:{var}"),
                Secret::new(v.trim()),
                var.to_owned(),
            ));
        }
    }
    let tokens = check_tokens(raw_tokens, &mut problems);
    // The same reading of `[triage]` as `dlq analyze --config`; its
    // problems come with their key paths (`triage.rule[0].verdict: …`).
    let triage = match Triage::from_config(text, true) {
        Ok(t) => Some(Arc::new(t)),
        Err(e) => {
            problems.extend(e.problems);
            None
        }
    };
    if problems.is_empty() && tokens.is_empty() {
        problems.push(format!(
            "no tokens: every request needs one. Set {OPERATOR_TOKEN_ENV} (and {VIEWER_TOKEN_ENV}), \
             or serve.operator_tokens_file / serve.viewer_tokens_file in the config file"
        ));
    }
    match triage {
        Some(triage) if problems.is_empty() => Ok(Loaded {
            config,
            tokens,
            triage,
        }),
        _ => Err(ConfigError { problems }),
    }
}

fn check_tokens(raw: Vec<(Role, String, Secret, String)>, problems: &mut Vec<String>) -> Tokens {
    let mut tokens = Tokens::new();
    let mut seen: HashMap<String, (Role, String)> = HashMap::new();
    for (role, label, secret, source) in raw {
        let value = secret.expose();
        if value.len() < MIN_TOKEN_LEN || value.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            problems.push(format!(
                "{source}: {} token {label:?}: a token is at least {MIN_TOKEN_LEN} characters \
                 without spaces (e.g. `openssl rand -hex 32`)",
                role.as_str()
            ));
            continue;
        }
        if let Some((other, other_label)) = seen.get(value) {
            if *other != role {
                problems.push(format!(
                    "{source}: {} token {label:?} is also the {} token {other_label:?}: give each role its own token",
                    role.as_str(),
                    other.as_str()
                ));
            }
            continue;
        }
        seen.insert(value.to_owned(), (role, label.clone()));
        tokens.add(role, label, &secret);
    }
    tokens
}

fn token_values(
    path: &str,
    value: &Value,
    role: Role,
    out: &mut Vec<(Role, String, Secret, String)>,
    problems: &mut Vec<String>,
) {
    let Value::Array(items) = value else {
        problems.push(format!(
            "{path}: expected an array of {{ label = \"…\", token = \"…\" }}"
        ));
        return;
    };
    for (i, item) in items.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let Value::Table(t) = item else {
            problems.push(format!("{p}: expected {{ label = \"…\", token = \"…\" }}"));
            continue;
        };
        let mut label = None;
        let mut token = None;
        for (k, v) in t {
            let kp = format!("{p}.{k}");
            match k.as_str() {
                // Never echo the value: it may be a token.
                "label" => label = string(&kp, v, problems).map(str::to_owned),
                "token" => match v {
                    Value::String(s) => token = Some(Secret::new(s.clone())),
                    _ => problems.push(format!("{kp}: expected a string")),
                },
                _ => problems.push(format!("{kp}: unknown key (known: label, token)")),
            }
        }
        match (label, token) {
            (Some(l), Some(t)) if !l.trim().is_empty() => out.push((role, l, t, p)),
            (Some(_), Some(_)) => problems.push(format!("{p}.label: must not be empty")),
            (None, _) => problems.push(format!("{p}: missing key `label`")),
            (_, None) => problems.push(format!("{p}: missing key `token`")),
        }
    }
}

fn string<'v>(path: &str, value: &'v Value, problems: &mut Vec<String>) -> Option<&'v str> {
    match value {
        Value::String(s) => Some(s),
        other => {
            problems.push(format!(
                "{path}: expected a string, got {}",
                other.type_str()
            ));
            None
        }
    }
}

fn integer(
    path: &str,
    value: &Value,
    min: i64,
    max: i64,
    problems: &mut Vec<String>,
) -> Option<i64> {
    match value {
        Value::Integer(n) if (min..=max).contains(n) => Some(*n),
        Value::Integer(n) => {
            problems.push(format!("{path}: expected {min} to {max}, got {n}"));
            None
        }
        other => {
            problems.push(format!(
                "{path}: expected an integer, got {}",
                other.type_str()
            ));
            None
        }
    }
}

/// Whether `name` can name a replay target.
pub fn valid_target_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OP: &str = "operator-token-0123456789abcdef";

    fn env_with(op: Option<&'static str>) -> impl Fn(&str) -> Option<String> {
        move |name| {
            (name == OPERATOR_TOKEN_ENV)
                .then(|| op.map(str::to_owned))
                .flatten()
        }
    }

    fn accept(spec: &str) -> Result<(), String> {
        if spec.starts_with("file:") || spec.starts_with("pipeline:") {
            Ok(())
        } else {
            Err(format!("unsupported target {spec:?}"))
        }
    }

    #[test]
    fn the_triage_rules_of_the_file_come_first_and_their_problems_are_reported_with_the_rest() {
        let text = "[serve]\nlisten = \"127.0.0.1:9\"\n\n[[triage.rule]]\nname = \"acme.sealed\"\n\
                    class = \"acme.sealed\"\nverdict = \"duplicate\"\npatterns = ['ledger sealed']\n";
        let loaded = load_str(text, Path::new("."), &env_with(Some(OP)), &accept).expect("valid");
        assert_eq!(loaded.triage.rules()[0].name, "acme.sealed");
        assert!(loaded.triage.rules().len() > 1, "the shipped rules follow");
        let bad = "[serve]\nlisten = \"nowhere\"\n\n[[triage.rule]]\nname = \"x\"\nclass = \"x\"\n\
                   verdict = \"maybe\"\npatterns = ['x']\n";
        let err = load_str(bad, Path::new("."), &env_with(Some(OP)), &accept).expect_err("invalid");
        let all = err.problems.join("\n");
        assert!(all.contains("serve.listen"), "{all}");
        assert!(
            all.contains("triage.rule[0]") && all.contains("maybe"),
            "{all}"
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::write(
            dir.path().join("operator.tokens"),
            format!("# operators\nalice:{OP}\n"),
        )
        .expect("write");
        let text = r#"
            [serve]
            listen = "127.0.0.1:9090"
            audit_log = "audit.jsonl"
            operator_tokens_file = "operator.tokens"
            viewer_tokens = [{ label = "grafana", token = "viewer-token-0123456789" }]
            sample_interval_secs = 5
            history_points = 100
            allowed_hosts = ["dlq.example.com", "proxy.internal:8443"]
            [serve.replay_targets]
            rss = "pipeline:out/rss.ndjson"
            [monitor]
            whatever = 1
        "#;
        let loaded = load_str(text, dir.path(), &env_with(None), &accept).expect("valid");
        let c = &loaded.config;
        assert_eq!(c.listen.to_string(), "127.0.0.1:9090");
        assert_eq!(c.audit_log, dir.path().join("audit.jsonl"));
        assert_eq!(c.sample_interval, Duration::from_secs(5));
        assert_eq!(c.history_points, 100);
        let hosts: Vec<String> = c.allowed_hosts.iter().map(ToString::to_string).collect();
        assert_eq!(hosts, ["dlq.example.com", "proxy.internal:8443"]);
        assert_eq!(c.replay_targets["rss"], "pipeline:out/rss.ndjson");
        assert_eq!(
            loaded.tokens.authenticate(OP).map(|p| (p.role, p.label)),
            Some((Role::Operator, "alice".to_owned()))
        );
        assert_eq!(
            loaded
                .tokens
                .authenticate("viewer-token-0123456789")
                .map(|p| p.role),
            Some(Role::Viewer)
        );
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key_path_and_no_token() {
        let text = r#"
            [serve]
            listen = "everywhere"
            colour = "blue"
            history_points = 0
            operator_tokens = [{ label = "short", token = "tiny-secret" }, { token = "x" }]
            operator_tokens_file = "/nonexistent/tokens"
            allowed_hosts = ["*.example.com", 7, "ok.example.com", "x:y"]
            [serve.replay_targets]
            "bad name!" = "file:/tmp/x"
            k = "kafka:t"
        "#;
        let err = load_str(text, Path::new("."), &env_with(None), &accept).expect_err("invalid");
        let all = err.to_string();
        for needle in [
            "serve.listen:",
            "serve.colour: unknown key",
            "serve.history_points: expected 1 to",
            "serve.operator_tokens[1]: missing key `label`",
            "serve.operator_tokens[0]: operator token \"short\"",
            "serve.operator_tokens_file: cannot read /nonexistent/tokens",
            "serve.replay_targets.bad name!:",
            "serve.replay_targets.k: unsupported target",
            "serve.allowed_hosts[0]: \"*.example.com\": wildcards are not accepted",
            "serve.allowed_hosts[1]: expected a string",
            "serve.allowed_hosts[3]: \"x:y\": expected a host name",
        ] {
            assert!(all.contains(needle), "{needle:?} missing from:\n{all}");
        }
        assert!(!all.contains("tiny-secret"), "a token leaked: {all}");
    }

    #[test]
    fn a_toml_syntax_error_does_not_quote_the_line() {
        let text =
            "[serve]\noperator_tokens = [{ label = \"a\", token = \"sup3r-secret-value-xyz\" \n";
        let err = load_str(text, Path::new("."), &env_with(None), &accept).expect_err("invalid");
        let all = err.to_string();
        assert!(all.contains("line 2"), "{all}");
        assert!(!all.contains("sup3r-secret"), "a token leaked: {all}");
    }

    #[test]
    fn tokens_come_from_the_environment_and_are_required() {
        let loaded = load_str("", Path::new("."), &env_with(Some(OP)), &accept).expect("valid");
        assert_eq!(loaded.config, ServeConfig::default());
        assert_eq!(
            loaded.tokens.authenticate(OP).map(|p| p.label),
            Some("env:DLQ_OPERATOR_TOKEN".to_owned())
        );
        let err = load_str("", Path::new("."), &env_with(None), &accept).expect_err("no tokens");
        assert!(err.to_string().contains("no tokens"));
    }

    #[test]
    fn one_token_for_two_roles_is_refused() {
        let text = format!("[serve]\nviewer_tokens = [{{ label = \"v\", token = \"{OP}\" }}]\n");
        let err =
            load_str(&text, Path::new("."), &env_with(Some(OP)), &accept).expect_err("shared");
        assert!(err.to_string().contains("give each role its own token"));
        assert!(!err.to_string().contains(OP));
    }

    #[test]
    fn a_missing_default_file_is_fine_a_named_one_is_not() {
        let missing = Path::new("/nonexistent/dlq.toml");
        assert!(load_file(missing, false, &env_with(Some(OP)), &accept).is_ok());
        assert!(load_file(missing, true, &env_with(Some(OP)), &accept).is_err());
    }
}
