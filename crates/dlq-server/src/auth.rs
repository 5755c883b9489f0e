//! Who is calling: bearer tokens, two roles, and the CSRF rule for `POST`.

use axum::http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads: DLQ sizes, groups, records with masked payloads, history,
    /// alerts, metrics, replay jobs.
    Viewer,
    /// Everything a viewer does, plus revealing payloads, previewing and
    /// running replays, discarding records and reading the audit log.
    Operator,
}

impl Role {
    /// `viewer` or `operator`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }
}

/// An authenticated caller: the token's role and label, never the token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The token's role.
    pub role: Role,
    /// The token's label (from the config, e.g. `alice` or
    /// `env:DLQ_OPERATOR_TOKEN`).
    pub label: String,
}

pub use dlq_core::secret::Secret;

/// The accepted tokens. Only their SHA-256 digests are kept.
#[derive(Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], Principal)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|(_, p)| p))
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// No tokens (every request is refused).
    pub fn new() -> Self {
        Tokens::default()
    }

    /// Accepts `token` for `role`, labelled `label`.
    pub fn add(&mut self, role: Role, label: impl Into<String>, token: &Secret) {
        self.entries.push((
            digest(token.expose()),
            Principal {
                role,
                label: label.into(),
            },
        ));
    }

    /// How many tokens are accepted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no token is accepted.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The roles and labels of the accepted tokens.
    pub fn principals(&self) -> impl Iterator<Item = &Principal> {
        self.entries.iter().map(|(_, p)| p)
    }

    /// The caller a presented token belongs to.
    ///
    /// The presented token is hashed and compared with every digest in
    /// constant time, without stopping at a match, so neither the length of
    /// a valid token nor how much of it matched shows in the timing.
    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        let d = digest(presented);
        let mut found: Option<&Principal> = None;
        for (known, principal) in &self.entries {
            let eq: bool = known.ct_eq(&d).into();
            if eq && found.is_none() {
                found = Some(principal);
            }
        }
        found.cloned()
    }

    /// The caller of a request, from its `Authorization: Bearer` header.
    pub fn from_headers(&self, headers: &HeaderMap) -> Option<Principal> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let (scheme, token) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return None;
        }
        let token = token.trim();
        if token.is_empty() {
            return None;
        }
        self.authenticate(token)
    }
}

/// The header every state-changing request must carry.
pub const CSRF_HEADER: &str = "x-dlq-csrf";

/// Checks the CSRF rule for a `POST`: the `X-DLQ-CSRF` header is present
/// (a cross-site page cannot set a custom header without a CORS preflight,
/// which this server never grants), `Origin`, when sent, is this server's
/// own (`http://` + `Host`), and `Sec-Fetch-Site`, when sent, is not
/// `cross-site` or `same-site`.
///
/// Bearer tokens are not sent by browsers on their own, so this is a second
/// line of defence; it also keeps a stolen dashboard session from being
/// driven by another page.
pub fn check_csrf(headers: &HeaderMap) -> Result<(), &'static str> {
    if headers
        .get(CSRF_HEADER)
        .is_none_or(|v| v.as_bytes().is_empty())
    {
        return Err("state-changing requests need the header `X-DLQ-CSRF: 1`");
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or("a request with an Origin needs a Host header")?;
        let origin = origin.to_str().map_err(|_| "invalid Origin header")?;
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err("the request's Origin is not this server");
        }
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && matches!(site.as_bytes(), b"cross-site" | b"same-site")
    {
        return Err("cross-site requests cannot change state");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn tokens() -> Tokens {
        let mut t = Tokens::new();
        t.add(Role::Viewer, "v", &Secret::new("viewer-token-0123456789"));
        t.add(
            Role::Operator,
            "o",
            &Secret::new("operator-token-0123456789"),
        );
        t
    }

    #[test]
    fn tokens_map_to_their_role_and_others_to_nothing() {
        let t = tokens();
        assert_eq!(
            t.authenticate("viewer-token-0123456789").map(|p| p.role),
            Some(Role::Viewer)
        );
        assert_eq!(
            t.authenticate("operator-token-0123456789").map(|p| p.label),
            Some("o".to_owned())
        );
        assert_eq!(t.authenticate("operator-token-012345678"), None);
        assert_eq!(t.authenticate(""), None);
    }

    #[test]
    fn bearer_header_is_parsed_strictly() {
        let t = tokens();
        let mut h = HeaderMap::new();
        assert!(t.from_headers(&h).is_none());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic viewer-token-0123456789"),
        );
        assert!(t.from_headers(&h).is_none());
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer viewer-token-0123456789"),
        );
        assert_eq!(t.from_headers(&h).map(|p| p.role), Some(Role::Viewer));
    }

    #[test]
    fn debug_never_shows_a_token() {
        let s = Secret::new("operator-token-0123456789");
        assert_eq!(format!("{s:?}"), "***");
        assert!(!format!("{:?}", tokens()).contains("token-0123"));
    }

    #[test]
    fn csrf_needs_the_header_and_a_matching_origin() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(check_csrf(&h).is_err());
        h.insert(CSRF_HEADER, HeaderValue::from_static("1"));
        assert!(check_csrf(&h).is_ok());
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(check_csrf(&h).is_ok());
        h.insert(header::ORIGIN, HeaderValue::from_static("http://evil.test"));
        assert!(check_csrf(&h).is_err());
        h.remove(header::ORIGIN);
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(check_csrf(&h).is_err());
    }
}
