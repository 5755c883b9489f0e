//! Helpers shared by the CLI tests; each test file uses a part of them.
#![allow(dead_code)]

pub mod env;
pub mod kafka;
