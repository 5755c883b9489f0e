//! jq fixes, run in-process by jaq (placeholder until the jaq module lands).
