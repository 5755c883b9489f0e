//! Puts the dashboard's chart library (uPlot, from npm, pinned by
//! `web/package-lock.json`) where `src/web.rs` embeds it from.
//!
//! The library is third-party code, so the repository does not carry it:
//! the build installs it. When `web/node_modules` lacks it, this script runs
//! `npm ci` there once (the npm registry is the one network the build may
//! use). If that is not possible (no npm, no network), the dashboard is
//! built without charts and cargo prints a warning saying how to get them;
//! the rest of the server does not depend on them. `scripts/test.sh` runs
//! `npm ci` first, and the browser test fails when the charts are missing.

use std::path::{Path, PathBuf};
use std::process::Command;

const FILES: [(&str, &str); 3] = [
    ("uplot/dist/uPlot.iife.min.js", "uPlot.iife.min.js"),
    ("uplot/dist/uPlot.min.css", "uPlot.min.css"),
    ("uplot/LICENSE", "LICENSE-uPlot"),
];

fn main() {
    let web = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("manifest dir")).join("web");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("out dir"));
    println!("cargo:rerun-if-changed=web/package-lock.json");
    println!("cargo:rerun-if-changed=web/node_modules/uplot/package.json");
    let modules = web.join("node_modules");
    if !installed(&modules) {
        let status = Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--loglevel=error",
            ])
            .current_dir(&web)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            println!(
                "cargo:warning=the dashboard's chart library (uPlot) is not installed and `npm ci` \
                 in crates/dlq-server/web failed: the dashboard will draw no charts. Run \
                 `npm ci` there and build again."
            );
        }
    }
    let have = installed(&modules);
    for (from, to) in FILES {
        let text = if have {
            std::fs::read_to_string(modules.join(from)).expect("read the chart library")
        } else {
            match to {
                "LICENSE-uPlot" => "uPlot is not installed in this build.\n".to_owned(),
                // app.js draws no chart when window.uPlot is missing.
                _ => "/* uPlot is not installed in this build: no charts. */\n".to_owned(),
            }
        };
        std::fs::write(out.join(to), text).expect("write to OUT_DIR");
    }
}

fn installed(modules: &Path) -> bool {
    FILES.iter().all(|(from, _)| modules.join(from).is_file())
}
