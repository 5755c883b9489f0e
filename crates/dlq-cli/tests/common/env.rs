//! The `dlq` binary in a temporary directory of its own, on an embedded
//! store there: how the CLI tests run commands as a user would.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary directory with an embedded store (`dlq.db`) in it.
pub struct Env {
    /// The directory (removed when the test ends).
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A new, empty directory.
    pub fn new() -> Self {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A path in the directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A path in the directory, as an argument.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    /// The store URL the commands use.
    pub fn store(&self) -> String {
        format!("sqlite://{}", self.arg("dlq.db"))
    }

    /// `dlq --store … --no-progress ARGS`, run in the directory, with no
    /// store or colour settings inherited from the caller's environment.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dlq"));
        c.args(["--store", &self.store(), "--no-progress"])
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("DLQ_STORE")
            .env_remove("NO_COLOR");
        c
    }

    /// Runs a command to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run dlq")
    }

    /// Runs a command that must succeed.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "dlq {args:?} failed with {:?}\nstdout: {}\nstderr: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs a command that must succeed, with `--format json`.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--format", "json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Generates `n` Polymarket records (a realistic failure mix) into `name`.
    pub fn generate(&self, name: &str, n: u64) {
        self.ok(&[
            "generate",
            "--pipeline",
            "polymarket",
            "--records",
            &n.to_string(),
            "-o",
            &self.arg(name),
        ]);
    }

    /// Generates `n` Polymarket records into `in.ndjson` and processes them
    /// into `out.ndjson`: the failures (about 6%) fill
    /// `dlq.polymarket.price_hourly`.
    pub fn fill_dlq(&self, n: u64) {
        self.generate("in.ndjson", n);
        self.process_input();
    }

    /// `dlq process` of the Polymarket lines in `in.ndjson` into
    /// `out.ndjson`, which must succeed.
    pub fn process_input(&self) {
        self.ok(&[
            "process",
            "--pipeline",
            "polymarket",
            "--input",
            "in.ndjson",
            "--output",
            "out.ndjson",
        ]);
    }

    /// The payloads of a DLQ's records with a status, as exported.
    pub fn dlq_payloads(&self, dlq: &str, status: &str) -> Vec<Vec<u8>> {
        let out = self.path("payloads.out");
        let r = self.run(&[
            "export",
            "--dlq",
            dlq,
            "--status",
            status,
            "--payloads",
            "--output",
            out.to_str().expect("path"),
        ]);
        assert!(r.status.code() == Some(0) || r.status.code() == Some(1));
        lines(&out)
    }
}

/// The lines of a file (not necessarily UTF-8: dead letters keep their
/// bytes), newlines removed; none while it does not exist.
pub fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_default();
    let mut v: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if data.last() == Some(&b'\n') || data.is_empty() {
        v.pop();
    }
    v
}
