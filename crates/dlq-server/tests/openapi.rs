//! `openapi.yaml` documents exactly the routes of the route table, with the
//! role each one needs, and every reference in it resolves; its `Group` is
//! what the analysis serializes.

use dlq_server::routes::{Access, ROUTES};
use std::collections::BTreeSet;
use yaml_rust2::{Yaml, YamlLoader};

fn spec() -> Yaml {
    let text = include_str!("../openapi.yaml");
    let mut docs = YamlLoader::load_from_str(text).expect("openapi.yaml is YAML");
    assert_eq!(docs.len(), 1);
    docs.remove(0)
}

fn resolve<'a>(root: &'a Yaml, node: &'a Yaml) -> &'a Yaml {
    match node["$ref"].as_str() {
        Some(r) => {
            let mut at = root;
            for part in r.trim_start_matches("#/").split('/') {
                at = &at[part];
            }
            assert!(!at.is_badvalue(), "unresolved $ref {r}");
            at
        }
        None => node,
    }
}

fn refs(node: &Yaml, out: &mut Vec<String>) {
    match node {
        Yaml::Hash(h) => {
            for (k, v) in h {
                if k.as_str() == Some("$ref") {
                    out.push(v.as_str().expect("a $ref is a string").to_owned());
                }
                refs(v, out);
            }
        }
        Yaml::Array(a) => a.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

#[test]
fn openapi_paths_and_methods_are_the_route_table() {
    let spec = spec();
    let paths = spec["paths"].as_hash().expect("paths");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path");
        for (method, _) in item.as_hash().expect("path item") {
            documented.insert((path.to_owned(), method.as_str().expect("method").to_owned()));
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.path.to_owned(), r.method.as_str().to_owned()))
        .collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty() && unrouted.is_empty(),
        "routes missing from openapi.yaml: {undocumented:?}; documented but not routed: {unrouted:?}"
    );
}

#[test]
fn openapi_says_who_may_call_each_route() {
    let spec = spec();
    for r in ROUTES {
        let op = &spec["paths"][r.path][r.method.as_str()];
        let role = op["x-dlq-role"].as_str().unwrap_or("missing");
        let expected = match r.access {
            Access::Public => "public",
            Access::Viewer => "viewer",
            Access::Operator => "operator",
        };
        assert_eq!(role, expected, "{} {}", r.method.as_str(), r.path);
        let open = op["security"].as_vec().is_some_and(Vec::is_empty);
        assert_eq!(open, r.access == Access::Public, "security of {}", r.path);
        if r.access != Access::Public {
            assert!(
                !op["responses"]["401"].is_badvalue(),
                "{} lacks its 401",
                r.path
            );
        }
        if r.access == Access::Operator {
            assert!(
                !op["responses"]["403"].is_badvalue(),
                "{} lacks its 403",
                r.path
            );
        }
    }
}

#[test]
fn openapi_references_resolve_and_path_parameters_are_declared() {
    let spec = spec();
    let mut all = Vec::new();
    refs(&spec, &mut all);
    assert!(!all.is_empty());
    for r in &all {
        let mut at = &spec;
        for part in r.trim_start_matches("#/").split('/') {
            at = &at[part];
        }
        assert!(!at.is_badvalue(), "unresolved $ref {r}");
    }
    for r in ROUTES {
        let op = &spec["paths"][r.path][r.method.as_str()];
        let declared: BTreeSet<String> = op["parameters"]
            .as_vec()
            .map(|ps| {
                ps.iter()
                    .map(|p| resolve(&spec, p))
                    .filter(|p| p["in"].as_str() == Some("path"))
                    .filter_map(|p| p["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let in_path: BTreeSet<String> = r
            .path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .map(str::to_owned)
            .collect();
        assert_eq!(declared, in_path, "path parameters of {}", r.path);
    }
}

#[test]
fn openapi_group_has_every_field_and_verdict_of_the_analysis() {
    use dlq_core::analyze::{Analyzer, Verdict};
    use dlq_core::envelope::DeadLetter;
    use dlq_core::store::{Status, StoredRecord};
    let spec = spec();
    let group = &spec["components"]["schemas"]["Group"];
    let documented: BTreeSet<String> = group["properties"]
        .as_hash()
        .expect("Group.properties")
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    let failure = dlq_core::Failure::permanent("validate", "x.y", "boom");
    let mut analyzer = Analyzer::with_members();
    analyzer.add(&StoredRecord {
        dlq: "dlq.a".into(),
        status: Status::Pending,
        stored_at: chrono::Utc::now(),
        settled_at: None,
        letter: DeadLetter::new("r1", b"{}".to_vec(), &failure),
    });
    let groups = analyzer.finish();
    let json = serde_json::to_value(&groups[0]).expect("a group serializes");
    let serialized: BTreeSet<String> = json
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    assert_eq!(documented, serialized, "Group in openapi.yaml");
    let verdicts: BTreeSet<&str> = group["properties"]["verdict"]["enum"]
        .as_vec()
        .expect("verdict enum")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let all: BTreeSet<&str> = [
        Verdict::Transient,
        Verdict::Permanent,
        Verdict::Configuration,
        Verdict::Duplicate,
        Verdict::Unknown,
    ]
    .into_iter()
    .map(Verdict::as_str)
    .collect();
    assert_eq!(verdicts, all);
}
