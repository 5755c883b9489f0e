//! The Drain tree, its clusters, the LRU bound and the persisted state.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use super::mask::{MaskKind, Masker};
use super::root_cause;

/// The wildcard token of a template.
pub const WILDCARD: &str = "<*>";

/// The version of [`MinerState`] this code writes. It also reads version 1
/// (written before [`MinerConfig::version`] existed), as a miner of
/// algorithm version 1.
pub const STATE_VERSION: u32 = 2;

/// The id of a cluster: assigned when the cluster is created (1, 2, 3, … in
/// creation order), never reused, never changed when its template
/// generalizes. This, not a hash of the template, is a group's identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClusterId(pub u64);

impl std::fmt::Display for ClusterId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// How the miner groups messages. The defaults are drain3's (similarity 0.4,
/// depth 4, 100 children, numeric tokens parametrized) plus what this crate
/// adds: an LRU bound of 10,000 clusters, root-cause extraction, masking and
/// the constant-word rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MinerConfig {
    /// The algorithm's version. A miner keeps the version it was created
    /// with, also across [`Miner::to_state`] and [`Miner::from_state`], so
    /// the groups and fingerprints of a persisted miner never change under
    /// it when dlq is upgraded; a configuration or state without this field
    /// is version 1.
    ///
    /// * 1: Drain's tree (token count, then the leading token) over the
    ///   text of [`Masker::new`], and the constant-word rule.
    /// * 2 (the default): what makes templates independent of how many
    ///   tokens a variable part has, and keys the tree on template text
    ///   rather than on a value that happens to come first. The masker is
    ///   [`Masker::v2`] (numbers with units, `ctime` dates, HTTP request
    ///   lines, name lines); then, over the tokens: a run of two or more
    ///   variable-looking tokens is one `<*>` (`(<NUM> KB)`, `<IP>,<IP>`, a
    ///   host and its port); the word after a naming noun (`field price`,
    ///   `user alice`, `column`, `topic`, `key`, …, unless it is a
    ///   function word such as `is` or `not`) is a variable; a qualified
    ///   type name (`java.net.ConnectException:`) looks constant; the tree
    ///   is keyed by token count and the first token that looks constant,
    ///   so `host-a:80 open through proxy …` and `host-b:443 open …` meet
    ///   in one leaf.
    #[serde(default = "MinerConfig::legacy_version")]
    pub version: u32,
    /// A message joins the most similar cluster of its leaf when at least this
    /// share of the cluster's template tokens equal the message's tokens
    /// (wildcards count as unequal, as in Drain). Default 0.4.
    pub sim_threshold: f64,
    /// Depth of the prefix tree: root, token count, then `depth - 3` leading
    /// tokens, then the leaf holding clusters. At least 3. Default 4 (one
    /// leading token).
    pub depth: usize,
    /// Most children of a tree node; past it, new tokens share the `<*>`
    /// child. At least 2. Default 100.
    pub max_children: usize,
    /// Most clusters kept; creating one more evicts the least recently used
    /// (created or matched) cluster. `None` for no bound. Default 10,000.
    pub max_clusters: Option<usize>,
    /// Whether a leading token with a digit goes to the `<*>` child of a tree
    /// node (Drain's rule). Default true.
    pub parametrize_numeric_tokens: bool,
    /// The constant-word rule: a message does not join a cluster if at some
    /// position both the template and the message hold a *constant-looking*
    /// token and the two differ (placeholders aside: `(<NUM>,` and
    /// `(<QUOTED>,` do not differ). A token looks constant when it holds a
    /// plain word (letters, `_`, `-`, no placeholder inside: `refused`,
    /// `ConnectionResetError(<NUM>,`) or only punctuation (`','`), and it has
    /// no digit, no internal `.` or `:` and none of `/ \ @ # =`. So `<NUM>`,
    /// `SCRAM-SHA-<NUM>`, `rss.events` and `kafka-2` look variable. Masking
    /// already replaced what varies, so two messages that differ in a plain
    /// word ("refused" and "reset") are different failures; the price is that
    /// a variable that is a bare word (an unquoted field name) splits its
    /// group. Off, the miner behaves exactly as drain3. Default true.
    pub words_are_constants: bool,
    /// Whether [`Miner::add`] first reduces a message to its
    /// [`root_cause`]. Default true.
    pub root_cause: bool,
    /// Whether [`Miner::add`] masks a message with [`Masker`]. Default true.
    pub mask: bool,
}

impl MinerConfig {
    /// The newest algorithm version, the default of
    /// [`MinerConfig::version`].
    pub const LATEST_VERSION: u32 = 2;

    /// The version of a configuration written without one.
    const fn legacy_version() -> u32 {
        1
    }

    /// The default of [`MinerConfig::sim_threshold`]: 0.4.
    pub const DEFAULT_SIM_THRESHOLD: f64 = 0.4;
    /// The default of [`MinerConfig::depth`]: 4.
    pub const DEFAULT_DEPTH: usize = 4;
    /// The default of [`MinerConfig::max_children`]: 100.
    pub const DEFAULT_MAX_CHILDREN: usize = 100;
    /// The default of [`MinerConfig::max_clusters`]: 10,000.
    pub const DEFAULT_MAX_CLUSTERS: usize = 10_000;

    /// drain3's algorithm with drain3's defaults (no LRU bound, no
    /// constant-word rule), still with root causes and masking (version 1,
    /// whose masking the benchmark mirrors in drain3).
    pub const fn drain3() -> Self {
        MinerConfig {
            version: 1,
            max_clusters: None,
            words_are_constants: false,
            ..MinerConfig::new()
        }
    }

    /// The defaults, as a `const`.
    pub const fn new() -> Self {
        MinerConfig {
            version: MinerConfig::LATEST_VERSION,
            sim_threshold: MinerConfig::DEFAULT_SIM_THRESHOLD,
            depth: MinerConfig::DEFAULT_DEPTH,
            max_children: MinerConfig::DEFAULT_MAX_CHILDREN,
            max_clusters: Some(MinerConfig::DEFAULT_MAX_CLUSTERS),
            parametrize_numeric_tokens: true,
            words_are_constants: true,
            root_cause: true,
            mask: true,
        }
    }

    fn check(&self) -> Result<(), StateError> {
        let mut problems = Vec::new();
        if !(1..=MinerConfig::LATEST_VERSION).contains(&self.version) {
            problems.push(format!(
                "version must be 1 to {}, got {}",
                MinerConfig::LATEST_VERSION,
                self.version
            ));
        }
        if !(0.0..=1.0).contains(&self.sim_threshold) {
            problems.push(format!(
                "sim_threshold must be in [0, 1], got {}",
                self.sim_threshold
            ));
        }
        if self.depth < 3 {
            problems.push(format!("depth must be at least 3, got {}", self.depth));
        }
        if self.max_children < 2 {
            problems.push(format!(
                "max_children must be at least 2, got {}",
                self.max_children
            ));
        }
        if self.max_clusters == Some(0) {
            problems.push("max_clusters must be at least 1 (or absent for no bound)".to_owned());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(StateError::Config(problems.join("; ")))
        }
    }
}

impl Default for MinerConfig {
    fn default() -> Self {
        MinerConfig::new()
    }
}

/// Why a configuration or a persisted state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The configuration is invalid; all problems are listed.
    #[error("invalid miner configuration: {0}")]
    Config(String),
    /// The state was written by an unknown version of this code.
    #[error(
        "miner state version {found} is not supported (this build reads versions 1 to {STATE_VERSION})"
    )]
    Version {
        /// The version found in the state.
        found: u32,
    },
    /// The state is not consistent (a corrupt or hand-edited state).
    #[error("corrupt miner state: {0}")]
    Corrupt(String),
}

/// One cluster, as [`Miner::clusters`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterInfo {
    /// The cluster's id.
    pub id: ClusterId,
    /// How many messages joined it (including the one that created it).
    pub size: u64,
    /// Its template, every variable shown as `<*>`.
    pub template: String,
}

/// The persisted form of a [`Miner`]: plain data for serde. Clusters and tree
/// nodes are listed in a fixed order (by id, children by token), so the same
/// miner always serializes to the same bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinerState {
    /// [`STATE_VERSION`] when written.
    pub version: u32,
    /// The configuration the miner ran with.
    pub config: MinerConfig,
    /// The last cluster id assigned (0 before the first).
    pub last_id: u64,
    /// The LRU clock: the number of [`Miner::add`] calls so far.
    pub clock: u64,
    /// Every live cluster, by id.
    pub clusters: Vec<ClusterState>,
    /// The prefix tree's nodes; a node is referred to by its index.
    pub nodes: Vec<NodeState>,
    /// The first level of the tree: (token count, node index), by count.
    pub roots: Vec<(usize, u32)>,
}

/// A persisted cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterState {
    /// Its id.
    pub id: ClusterId,
    /// Its template's tokens, placeholders typed (`<NUM>`), `<*>` where Drain
    /// generalized.
    pub tokens: Vec<String>,
    /// Messages that joined it.
    pub size: u64,
    /// The LRU clock when it was last created or matched.
    pub last_used: u64,
}

/// A persisted tree node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeState {
    /// (token, child node index), by token.
    pub children: Vec<(String, u32)>,
    /// The clusters of a leaf, in the order Drain compares them.
    pub clusters: Vec<ClusterId>,
}

/// FxHash (rustc's hasher): the tree's keys are short strings chosen by
/// whoever writes error messages, not an attacker who could aim at collisions
/// at a rate that matters, and SipHash would cost a quarter of the time.
#[derive(Default, Clone, Copy)]
struct FxHasher {
    hash: u64,
}

const FX_SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(FX_SEED);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(buf));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Debug, Clone, Default)]
struct Node {
    children: FxMap<Box<str>, u32>,
    clusters: Vec<ClusterId>,
}

#[derive(Debug, Clone)]
struct Cluster {
    tokens: Vec<Box<str>>,
    size: u64,
    leaf: u32,
    last_used: u64,
    /// Neighbours in the LRU list (cluster ids, 0 for none); kept only when
    /// the number of clusters is bounded.
    older: u64,
    newer: u64,
}

/// An online, streaming template miner: Drain (He et al., 2017) as drain3
/// implements it, with root-cause extraction and masking in front, an LRU
/// bound on clusters and the constant-word rule (see [`MinerConfig`]).
///
/// [`Miner::add`] assigns each message to a cluster, creating one when no
/// cluster is similar enough, and generalizes the cluster's template where
/// the message differs (`<*>`). Deterministic: the same messages in the same
/// order give the same ids and templates, and a miner saved with
/// [`Miner::to_state`] and restored with [`Miner::from_state`] continues
/// exactly as if it had never stopped.
///
/// ```
/// use dlq_core::mine::Miner;
///
/// let mut miner = Miner::new();
/// let a = miner.add(r#"field "price": expected a number, got a string ("0.42")"#);
/// let b = miner.add(r#"field "volume": expected a number, got a string ("N/A")"#);
/// let c = miner.add(r#"field "price": expected a string, got a number (7)"#);
/// assert_eq!(a, b);
/// assert_ne!(a, c);
/// assert_eq!(
///     miner.template(a).unwrap(),
///     "field <*>: expected a number, got a string (<*>)"
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Miner {
    config: MinerConfig,
    masker: Masker,
    /// Token count → first-level node.
    roots: FxMap<usize, u32>,
    nodes: Vec<Node>,
    clusters: FxMap<u64, Cluster>,
    /// Ends of the LRU list (cluster ids, 0 for none), when bounded.
    newest: u64,
    oldest: u64,
    last_id: u64,
    clock: u64,
    /// Reused buffers for the prepared message and its tokens.
    scratch: String,
    token_buf: Vec<&'static str>,
}

impl Default for Miner {
    fn default() -> Self {
        Miner::new()
    }
}

/// Where the best match of a message was found.
enum Search {
    /// A cluster similar enough.
    Found(ClusterId),
    /// No cluster; the tree has no node for the message yet, or none of the
    /// leaf's clusters is similar enough.
    None,
}

impl Miner {
    /// A miner with the default configuration.
    pub fn new() -> Self {
        Miner::build(MinerConfig::new())
    }

    /// A miner with `config`, or every problem with it.
    pub fn with_config(config: MinerConfig) -> Result<Self, StateError> {
        config.check()?;
        Ok(Miner::build(config))
    }

    fn build(config: MinerConfig) -> Self {
        Miner {
            config,
            masker: if config.version >= 2 {
                Masker::v2()
            } else {
                Masker::new()
            },
            roots: FxMap::default(),
            nodes: Vec::new(),
            clusters: FxMap::default(),
            newest: 0,
            oldest: 0,
            last_id: 0,
            clock: 0,
            scratch: String::new(),
            token_buf: Vec::new(),
        }
    }

    /// The configuration.
    pub const fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// Writes what the miner mines for `message` into `out` (cleared first):
    /// its root cause, masked, as configured.
    pub fn prepare(&self, message: &str, out: &mut String) {
        out.clear();
        let cause = if self.config.root_cause {
            root_cause(message)
        } else {
            message
        };
        if self.config.mask {
            self.masker.mask_into(cause, out);
        } else {
            out.push_str(cause);
        }
    }

    /// Mines one message: returns the cluster it joins, creating one if no
    /// cluster is similar enough. The returned id is the message's group; a
    /// store should keep it with the record rather than recompute it later
    /// (a later, more specific cluster could be a better match for the same
    /// text).
    pub fn add(&mut self, message: &str) -> ClusterId {
        let mut prepared = std::mem::take(&mut self.scratch);
        self.prepare(message, &mut prepared);
        let mut tokens = recycle(std::mem::take(&mut self.token_buf));
        if self.config.version >= 2 {
            tokenize_v2(&prepared, &mut tokens);
        } else {
            tokenize(&prepared, &mut tokens);
        }
        let id = self.add_tokens(&tokens);
        self.token_buf = recycle(tokens);
        self.scratch = prepared;
        id
    }

    /// The cluster [`Miner::add`] would put `message` in, without changing
    /// anything (no new cluster, no template change, no LRU touch); `None`
    /// when `add` would create a cluster. So `match_only(m) == Some(id)`
    /// implies `add(m) == id`. (drain3's `match` is stricter: it also requires
    /// the template to cover the message exactly.)
    pub fn match_only(&self, message: &str) -> Option<ClusterId> {
        let mut prepared = String::new();
        self.prepare(message, &mut prepared);
        let mut tokens = Vec::new();
        if self.config.version >= 2 {
            tokenize_v2(&prepared, &mut tokens);
        } else {
            tokenize(&prepared, &mut tokens);
        }
        match self.search(&tokens) {
            Search::Found(id) => Some(id),
            Search::None => None,
        }
    }

    /// A cluster's template with every variable shown as `<*>`; `None` for
    /// an unknown (or evicted) id.
    pub fn template(&self, id: ClusterId) -> Option<String> {
        self.clusters.get(&id.0).map(|c| render(&c.tokens, true))
    }

    /// A cluster's template with the masks' types (`<NUM>`, `<QUOTED>`)
    /// where masking replaced a value and `<*>` where the miner generalized.
    pub fn typed_template(&self, id: ClusterId) -> Option<String> {
        self.clusters.get(&id.0).map(|c| render(&c.tokens, false))
    }

    /// How many messages joined a cluster.
    pub fn size(&self, id: ClusterId) -> Option<u64> {
        self.clusters.get(&id.0).map(|c| c.size)
    }

    /// Every live cluster, by id.
    pub fn clusters(&self) -> Vec<ClusterInfo> {
        let mut out: Vec<ClusterInfo> = self
            .clusters
            .iter()
            .map(|(&id, c)| ClusterInfo {
                id: ClusterId(id),
                size: c.size,
                template: render(&c.tokens, true),
            })
            .collect();
        out.sort_unstable_by_key(|c| c.id);
        out
    }

    /// How many clusters are live.
    pub fn len(&self) -> usize {
        self.clusters.len()
    }

    /// Whether no cluster is live.
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty()
    }

    fn add_tokens(&mut self, tokens: &[&str]) -> ClusterId {
        self.clock += 1;
        match self.search(tokens) {
            Search::Found(id) => {
                let clock = self.clock;
                if let Some(cluster) = self.clusters.get_mut(&id.0) {
                    for (t, m) in cluster.tokens.iter_mut().zip(tokens) {
                        if **t != **m && **t != *WILDCARD {
                            *t = WILDCARD.into();
                        }
                    }
                    cluster.size += 1;
                    cluster.last_used = clock;
                }
                if self.config.max_clusters.is_some() && self.newest != id.0 {
                    self.lru_unlink(id.0);
                    self.lru_push_newest(id.0);
                }
                id
            }
            Search::None => self.create(tokens),
        }
    }

    fn lru_unlink(&mut self, id: u64) {
        let Some(c) = self.clusters.get(&id) else {
            return;
        };
        let (older, newer) = (c.older, c.newer);
        match self.clusters.get_mut(&older) {
            Some(o) => o.newer = newer,
            None => self.oldest = newer,
        }
        match self.clusters.get_mut(&newer) {
            Some(n) => n.older = older,
            None => self.newest = older,
        }
    }

    fn lru_push_newest(&mut self, id: u64) {
        let previous = self.newest;
        if let Some(c) = self.clusters.get_mut(&id) {
            c.older = previous;
            c.newer = 0;
        }
        match self.clusters.get_mut(&previous) {
            Some(p) => p.newer = id,
            None => self.oldest = id,
        }
        self.newest = id;
    }

    fn create(&mut self, tokens: &[&str]) -> ClusterId {
        self.last_id += 1;
        let id = ClusterId(self.last_id);
        let leaf = self.insert_in_tree(id, tokens);
        self.clusters.insert(
            id.0,
            Cluster {
                tokens: tokens.iter().map(|&t| Box::from(t)).collect(),
                size: 1,
                leaf,
                last_used: self.clock,
                older: 0,
                newer: 0,
            },
        );
        if let Some(max) = self.config.max_clusters {
            self.lru_push_newest(id.0);
            while self.clusters.len() > max && self.oldest != 0 {
                self.evict(self.oldest);
            }
        }
        id
    }

    fn evict(&mut self, id: u64) {
        self.lru_unlink(id);
        if let Some(c) = self.clusters.remove(&id) {
            self.nodes[c.leaf as usize]
                .clusters
                .retain(|&x| x != ClusterId(id));
        }
    }

    fn new_node(&mut self) -> u32 {
        let idx = u32::try_from(self.nodes.len()).expect("fewer than 2^32 tree nodes");
        self.nodes.push(Node::default());
        idx
    }

    /// The tokens that key the tree below the token count: Drain's leading
    /// `depth - 3` tokens (not the last one) in version 1; the first
    /// `depth - 3` tokens that look constant in version 2.
    fn tree_keys<'t>(&self, tokens: &'t [&'t str]) -> impl Iterator<Item = &'t str> + 't {
        let v2 = self.config.version >= 2;
        let mut limit = self.config.depth - 3;
        if !v2 {
            limit = limit.min(tokens.len().saturating_sub(1));
        }
        tokens
            .iter()
            .filter_map(move |&t| {
                if !v2 || looks_constant_v2(t) {
                    Some(t)
                } else {
                    key_of(t)
                }
            })
            .take(limit)
    }

    /// Drain's `add_seq_to_prefix_tree`; returns the leaf.
    fn insert_in_tree(&mut self, id: ClusterId, tokens: &[&str]) -> u32 {
        let count = tokens.len();
        let mut node = match self.roots.get(&count) {
            Some(&n) => n,
            None => {
                let n = self.new_node();
                self.roots.insert(count, n);
                n
            }
        };
        if count == 0 {
            self.nodes[node as usize].clusters = vec![id];
            return node;
        }
        let max_children = self.config.max_children;
        for token in self.tree_keys(tokens) {
            let children = &self.nodes[node as usize].children;
            node = if let Some(&child) = children.get(token) {
                child
            } else if self.config.parametrize_numeric_tokens && has_digit(token) {
                self.child_or_new(node, WILDCARD)
            } else if children.contains_key(WILDCARD) {
                if children.len() < max_children {
                    self.child_or_new(node, token)
                } else {
                    children[WILDCARD]
                }
            } else if children.len() + 1 < max_children {
                self.child_or_new(node, token)
            } else {
                // The last free slot goes to the wildcard child.
                self.child_or_new(node, WILDCARD)
            };
        }
        self.nodes[node as usize].clusters.push(id);
        node
    }

    fn child_or_new(&mut self, node: u32, token: &str) -> u32 {
        if let Some(&c) = self.nodes[node as usize].children.get(token) {
            return c;
        }
        let child = self.new_node();
        self.nodes[node as usize]
            .children
            .insert(token.into(), child);
        child
    }

    /// Drain's `tree_search` followed by `fast_match`.
    fn search(&self, tokens: &[&str]) -> Search {
        let count = tokens.len();
        let Some(&root) = self.roots.get(&count) else {
            return Search::None;
        };
        let mut node = &self.nodes[root as usize];
        if count == 0 {
            return node
                .clusters
                .first()
                .map_or(Search::None, |&id| Search::Found(id));
        }
        for token in self.tree_keys(tokens) {
            let next = node
                .children
                .get(token)
                .or_else(|| node.children.get(WILDCARD));
            match next {
                Some(&n) => node = &self.nodes[n as usize],
                None => return Search::None,
            }
        }
        self.fast_match(&node.clusters, tokens)
    }

    fn fast_match(&self, candidates: &[ClusterId], tokens: &[&str]) -> Search {
        let mut best: Option<(ClusterId, f64, usize)> = None;
        for &id in candidates {
            let Some(cluster) = self.clusters.get(&id.0) else {
                continue;
            };
            let Some((sim, params)) = self.similarity(&cluster.tokens, tokens) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((_, s, p)) => sim > s || (sim == s && params > p),
            };
            if better {
                best = Some((id, sim, params));
            }
        }
        match best {
            Some((id, sim, _)) if sim >= self.config.sim_threshold => Search::Found(id),
            _ => Search::None,
        }
    }

    /// Drain's `get_seq_distance` (similarity, wildcard count), or `None` when
    /// the constant-word rule forbids the pair.
    fn similarity(&self, template: &[Box<str>], tokens: &[&str]) -> Option<(f64, usize)> {
        let mut same = 0usize;
        let mut params = 0usize;
        for (t, &m) in template.iter().zip(tokens) {
            let t: &str = t;
            if t == WILDCARD {
                params += 1;
                // Version 2 counts a template's variables as matched (drain3's
                // `include_params`): a run of variables is one `<*>` there,
                // so a template can be mostly, or only, variables.
                if self.config.version >= 2 {
                    same += 1;
                }
            } else if t == m {
                same += 1;
            } else if self.config.words_are_constants
                && !same_skeleton(t, m)
                && if self.config.version >= 2 {
                    (looks_constant_v2(t) && looks_constant_v2(m)) || key_value_differs(t, m)
                } else {
                    looks_constant(t) && looks_constant(m)
                }
            {
                return None;
            }
        }
        // As drain3: an empty template is a full match.
        if template.is_empty() {
            return Some((1.0, 0));
        }
        Some((same as f64 / template.len() as f64, params))
    }

    /// The miner's state, for a store to persist.
    pub fn to_state(&self) -> MinerState {
        let mut clusters: Vec<ClusterState> = self
            .clusters
            .iter()
            .map(|(&id, c)| ClusterState {
                id: ClusterId(id),
                tokens: c.tokens.iter().map(|t| t.to_string()).collect(),
                size: c.size,
                last_used: c.last_used,
            })
            .collect();
        clusters.sort_unstable_by_key(|c| c.id);
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let mut children: Vec<(String, u32)> = n
                    .children
                    .iter()
                    .map(|(k, &v)| (k.to_string(), v))
                    .collect();
                children.sort_unstable();
                NodeState {
                    children,
                    clusters: n.clusters.clone(),
                }
            })
            .collect();
        let mut roots: Vec<(usize, u32)> = self.roots.iter().map(|(&k, &v)| (k, v)).collect();
        roots.sort_unstable();
        MinerState {
            version: STATE_VERSION,
            config: self.config,
            last_id: self.last_id,
            clock: self.clock,
            clusters,
            nodes,
            roots,
        }
    }

    /// A miner that continues from `state`. The state is checked: a corrupt
    /// state is refused, never trusted into a panic later.
    pub fn from_state(state: MinerState) -> Result<Self, StateError> {
        match state.version {
            STATE_VERSION => {}
            // Written before the algorithm had versions: always version 1.
            1 if state.config.version == 1 => {}
            1 => {
                return Err(StateError::Corrupt(format!(
                    "a version 1 state with algorithm version {}",
                    state.config.version
                )));
            }
            found => return Err(StateError::Version { found }),
        }
        state.config.check()?;
        let corrupt = |m: String| Err(StateError::Corrupt(m));
        let mut miner = Miner::build(state.config);
        let n_nodes = state.nodes.len();
        if u32::try_from(n_nodes).is_err() {
            return corrupt(format!("{n_nodes} nodes"));
        }
        // Every node is reached exactly once from the roots; remember each
        // node's token count and depth to check its clusters against.
        let mut seen: Vec<Option<(usize, usize)>> = vec![None; n_nodes];
        let mut stack = Vec::new();
        for &(count, node) in &state.roots {
            stack.push((node, count, 1usize));
            if miner.roots.insert(count, node).is_some() {
                return corrupt(format!("token count {count} has two roots"));
            }
        }
        while let Some((node, count, depth)) = stack.pop() {
            let Some(slot) = seen.get_mut(node as usize) else {
                return corrupt(format!("node {node} does not exist"));
            };
            if slot.is_some() {
                return corrupt(format!("node {node} is reached twice"));
            }
            *slot = Some((count, depth));
            for (_, child) in &state.nodes[node as usize].children {
                stack.push((*child, count, depth + 1));
            }
        }
        if let Some(orphan) = seen.iter().position(Option::is_none) {
            return corrupt(format!("node {orphan} is not reachable"));
        }
        let mut leaf_of: FxMap<u64, u32> = FxMap::default();
        for (i, n) in state.nodes.into_iter().enumerate() {
            let idx = i as u32;
            for &id in &n.clusters {
                if leaf_of.insert(id.0, idx).is_some() {
                    return corrupt(format!("cluster {id} is in two leaves"));
                }
            }
            miner.nodes.push(Node {
                children: n
                    .children
                    .into_iter()
                    .map(|(k, v)| (k.into_boxed_str(), v))
                    .collect(),
                clusters: n.clusters,
            });
        }
        let mut clocks = std::collections::BTreeSet::new();
        for c in state.clusters {
            let Some(&leaf) = leaf_of.get(&c.id.0) else {
                return corrupt(format!("cluster {} is in no leaf", c.id));
            };
            let (count, _) = seen[leaf as usize].expect("all nodes seen");
            if c.tokens.len() != count {
                return corrupt(format!(
                    "cluster {} has {} tokens under count {count}",
                    c.id,
                    c.tokens.len()
                ));
            }
            if c.id.0 == 0 || c.id.0 > state.last_id {
                return corrupt(format!(
                    "cluster {} is beyond the last id {}",
                    c.id, state.last_id
                ));
            }
            if c.last_used > state.clock || !clocks.insert(c.last_used) {
                return corrupt(format!(
                    "cluster {} has an invalid last use {}",
                    c.id, c.last_used
                ));
            }
            // Version 2 joins a run of variables into one token that may
            // hold spaces, not at its ends.
            let bad_token = |t: &String| {
                if state.config.version >= 2 {
                    t.is_empty() || t.trim() != t
                } else {
                    t.is_empty() || t.contains(char::is_whitespace)
                }
            };
            if c.tokens.iter().any(bad_token) {
                return corrupt(format!("cluster {} has an empty or spaced token", c.id));
            }
            miner.clusters.insert(
                c.id.0,
                Cluster {
                    tokens: c.tokens.into_iter().map(String::into_boxed_str).collect(),
                    size: c.size,
                    leaf,
                    last_used: c.last_used,
                    older: 0,
                    newer: 0,
                },
            );
            leaf_of.remove(&c.id.0);
        }
        if let Some((id, _)) = leaf_of.iter().next() {
            return corrupt(format!("leaf holds unknown cluster {id}"));
        }
        if let Some(max) = miner.config.max_clusters
            && miner.clusters.len() > max
        {
            return corrupt(format!(
                "{} clusters over the bound {max}",
                miner.clusters.len()
            ));
        }
        if miner.config.max_clusters.is_some() {
            let mut by_use: Vec<(u64, u64)> = miner
                .clusters
                .iter()
                .map(|(&id, c)| (c.last_used, id))
                .collect();
            by_use.sort_unstable();
            for (_, id) in by_use {
                miner.lru_push_newest(id);
            }
        }
        miner.last_id = state.last_id;
        miner.clock = state.clock;
        Ok(miner)
    }
}

/// Byte classes for [`tokenize`]: 0 part of a token, 1 ASCII white space,
/// 2 the first byte of a non-ASCII character (looked at as a `char`).
const BYTE_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0x80;
    while i < 256 {
        t[i] = 2;
        i += 1;
    }
    t[b' ' as usize] = 1;
    t[b'\t' as usize] = 1;
    t[b'\n' as usize] = 1;
    t[0x0B] = 1;
    t[0x0C] = 1;
    t[b'\r' as usize] = 1;
    t
};

/// Splits `s` at white space (Unicode `White_Space`, as `char::is_whitespace`)
/// into `out`, with a table lookup per ASCII byte.
fn tokenize<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let b = s.as_bytes();
    let mut i = 0;
    let mut start = usize::MAX;
    while i < b.len() {
        let (space, len) = match BYTE_CLASS[b[i] as usize] {
            0 => (false, 1),
            1 => (true, 1),
            _ => {
                let ch = s[i..].chars().next().unwrap_or(' ');
                (ch.is_whitespace(), ch.len_utf8())
            }
        };
        if space {
            if start != usize::MAX {
                out.push(&s[start..i]);
                start = usize::MAX;
            }
        } else if start == usize::MAX {
            start = i;
        }
        i += len;
    }
    if start != usize::MAX {
        out.push(&s[start..]);
    }
}

/// An emptied vector with the same allocation and another lifetime (the
/// in-place `collect` of an empty iterator keeps the buffer).
fn recycle<'b>(mut v: Vec<&str>) -> Vec<&'b str> {
    v.clear();
    v.into_iter().map(|_| "").collect()
}

fn has_digit(token: &str) -> bool {
    token.bytes().any(|b| b.is_ascii_digit())
}

/// The length of a placeholder (`<NUM>`, `<*>`) starting at `b[i]`, if any.
fn placeholder_len(b: &[u8], i: usize) -> Option<usize> {
    if b[i] != b'<' {
        return None;
    }
    let mut k = i + 1;
    while k < b.len() && (b[k].is_ascii_uppercase() || b[k] == b'_' || b[k] == b'*') {
        k += 1;
    }
    (k > i + 1 && k < b.len() && b[k] == b'>').then_some(k + 1 - i)
}

/// ASCII bytes that cannot make a token look variable (letters, `_`, `-`,
/// punctuation other than `. : < / \\ @ # =`); no digits.
const PLAIN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0x21;
    while c < 0x7f {
        t[c] = !matches!(
            c as u8,
            b'0'..=b'9' | b'.' | b':' | b'<' | b'/' | b'\\' | b'@' | b'#' | b'='
        );
        c += 1;
    }
    t
};

/// Whether a token looks like template text rather than a value: see
/// [`MinerConfig::words_are_constants`].
///
/// The token is cut into words: runs of letters, digits, `_`, `-` and
/// placeholders. A word with letters and no placeholder is *plain*. The token
/// looks constant if it has a plain word (`refused`,
/// `ConnectionResetError(<NUM>,`) or is only punctuation (`','`); it looks
/// variable if it has a digit, one of `/ \ @ # =`, an internal `.` or `:`
/// (`rss.events`, `java.net.Foo:`), or only words with placeholders in them
/// (`<NUM>`, `SCRAM-SHA-<NUM>`, `ph-<NUM>`): masking must not make a value
/// look like a word.
pub(crate) fn looks_constant(token: &str) -> bool {
    // Most tokens are words and punctuation without any byte the rules
    // below look at: one table lookup per byte decides them.
    if token.bytes().all(|c| PLAIN[c as usize]) {
        return true;
    }
    let b = token.as_bytes();
    let mut plain_word = false;
    let mut placeholder = false;
    // The current word: (has letters, has a placeholder).
    let mut word = (false, false);
    let mut i = 0;
    while i < b.len() {
        if let Some(len) = placeholder_len(b, i) {
            placeholder = true;
            word.1 = true;
            i += len;
            continue;
        }
        match b[i] {
            b'0'..=b'9' | b'/' | b'\\' | b'@' | b'#' | b'=' => return false,
            b'_' | b'-' => {}
            c if c.is_ascii_alphabetic() || c >= 0x80 => word.0 = true,
            c => {
                if c == b'.' || c == b':' {
                    let before = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'>');
                    let after =
                        i + 1 < b.len() && (b[i + 1].is_ascii_alphanumeric() || b[i + 1] == b'<');
                    if before && after {
                        return false;
                    }
                }
                plain_word |= word.0 && !word.1;
                word = (false, false);
            }
        }
        i += 1;
    }
    plain_word |= word.0 && !word.1;
    plain_word || !placeholder
}

/// [`looks_constant`], or a qualified type name: lowercase package segments
/// and a capitalized name, letters and `_` only (no digits), maybe with
/// trailing punctuation (`java.net.ConnectException:`,
/// `android.intent.action.SCREEN_ON`). Hosts, topics and bundle ids
/// (`rss.events`, `kafka-2.internal`, `com.apple.Safari.Update`) stay
/// variable.
pub(crate) fn looks_constant_v2(token: &str) -> bool {
    looks_constant(token) || is_type_name(token)
}

fn is_type_name(token: &str) -> bool {
    let b = token.as_bytes();
    let mut i = 0;
    while i < b.len() && matches!(b[i], b'(' | b'[') {
        i += 1;
    }
    if !b.get(i).is_some_and(u8::is_ascii_lowercase) {
        return false;
    }
    let mut e = b.len();
    while e > i && matches!(b[e - 1], b':' | b',' | b';' | b')' | b']' | b'.') {
        e -= 1;
    }
    // `i` and `e` are at ASCII bytes (or the ends): char boundaries.
    let t = &token[i..e];
    let Some((package, name)) = t.rsplit_once('.') else {
        return false;
    };
    let ident = |seg: &str| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'$')
    };
    ident(name)
        && name.as_bytes()[0].is_ascii_uppercase()
        && package
            .split('.')
            .all(|seg| ident(seg) && seg.as_bytes()[0].is_ascii_lowercase())
}

/// `key=value` or `key:value` with a word as the key (`uid=<NUM>`,
/// `user=root`, `onExtend:<NUM>`): a value
/// with its name, which a run of variables must not swallow (`rhost=<IP>`
/// and `rhost=<IP> user=root` are two templates).
fn is_key_value(token: &str) -> bool {
    key_of(token).is_some()
}

/// The key of a `key=value` or `key:value` token whose key is a word
/// (letters, `_`, `-`); `None` for other tokens.
fn key_of(token: &str) -> Option<&str> {
    let end = token.bytes().position(|c| c == b'=' || c == b':')?;
    let k = &token[..end];
    (!k.is_empty()
        && k.bytes()
            .all(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'-'))
    .then_some(k)
}

/// Version 2's constant-word rule for `key=value` tokens: two tokens with
/// different keys, or with the same key and two different plain words as
/// values (`status=FAILED`, `status=EXPIRED`), are different template text;
/// unless the key is a naming noun (`user=alice`, `user=bob`).
fn key_value_differs(t: &str, m: &str) -> bool {
    let (Some(k), Some(l)) = (key_of(t), key_of(m)) else {
        return false;
    };
    if k != l {
        return true;
    }
    if is_naming_noun(k) {
        return false;
    }
    let trim = [',', ';', '.', ')', ']', '}'];
    let v = t[k.len() + 1..].trim_end_matches(trim);
    let w = m[l.len() + 1..].trim_end_matches(trim);
    let word = |x: &str| !x.is_empty() && x.bytes().all(|c| c.is_ascii_alphabetic() || c == b'_');
    v != w && word(v) && word(w)
}

/// Whether a token is an empty pair of brackets or quotes (`()`, `[]`,
/// `""`): an empty value, so a variable, not template text.
#[inline]
fn is_empty_value(token: &str) -> bool {
    token.len() == 2 && matches!(token, "()" | "[]" | "{}" | "\"\"" | "''" | "``")
}

/// Nouns whose next word names something (a field, a user, a topic): that
/// word is a variable, unless it is one of [`FUNCTION_WORDS`]. Also with a
/// colon (`fields: price`).
const NAMING_NOUNS: [&str; 30] = [
    "field",
    "column",
    "user",
    "property",
    "attribute",
    "parameter",
    "argument",
    "key",
    "table",
    "topic",
    "queue",
    "bucket",
    "header",
    "variable",
    "domain",
    "member",
    "fields",
    "columns",
    "users",
    "properties",
    "attributes",
    "parameters",
    "arguments",
    "keys",
    "tables",
    "topics",
    "queues",
    "buckets",
    "headers",
    "variables",
];

/// Words that follow a naming noun without being a name (`field is
/// required`, `user not found`).
const FUNCTION_WORDS: [&str; 44] = [
    "is", "was", "are", "were", "be", "been", "not", "of", "in", "for", "to", "from", "with", "at",
    "on", "by", "and", "or", "the", "a", "an", "has", "have", "had", "does", "did", "must",
    "should", "cannot", "can", "could", "will", "would", "may", "name", "names", "id", "type",
    "value", "values", "missing", "required", "unknown", "already",
];

#[inline]
fn is_naming_noun(word: &str) -> bool {
    // `fields:` names what follows as well as `fields`.
    let word = word.strip_suffix(':').unwrap_or(word);
    let n = word.len();
    if !(3..=10).contains(&n) {
        return false;
    }
    // Lowercased into a buffer, the nouns are one `match` (by length, then
    // bytes) instead of a scan of the list.
    let mut buf = [0u8; 10];
    for (d, c) in buf.iter_mut().zip(word.bytes()) {
        *d = c.to_ascii_lowercase();
    }
    let found = matches!(
        &buf[..n],
        b"field"
            | b"column"
            | b"user"
            | b"property"
            | b"attribute"
            | b"parameter"
            | b"argument"
            | b"key"
            | b"table"
            | b"topic"
            | b"queue"
            | b"bucket"
            | b"header"
            | b"variable"
            | b"domain"
            | b"member"
            | b"fields"
            | b"columns"
            | b"users"
            | b"properties"
            | b"attributes"
            | b"parameters"
            | b"arguments"
            | b"keys"
            | b"tables"
            | b"topics"
            | b"queues"
            | b"buckets"
            | b"headers"
            | b"variables"
    );
    debug_assert_eq!(
        found,
        NAMING_NOUNS.iter().any(|x| x.eq_ignore_ascii_case(word))
    );
    found
}

/// [`tokenize`] with version 2's token rules (see
/// [`MinerConfig::version`]): the word after a naming noun becomes `<*>`,
/// and every run of two or more variable-looking tokens becomes one token,
/// the text the run spans in `s` (`[<NUM>, <NUM>],`, spaces included), or
/// `<*>` if a name is in it. Drain then compares a run as one token: two
/// runs of a different shape make it `<*>`. One pass over the bytes, which
/// also tells the plain tokens (most of them) from those that need a closer
/// look.
fn tokenize_v2<'a>(s: &'a str, out: &mut Vec<&'a str>) {
    let b = s.as_bytes();
    let mut rules = V2Rules {
        run: 0,
        run_start: 0,
        run_named: false,
        after_noun: false,
    };
    let mut i = 0;
    let mut start = usize::MAX;
    let mut plain = true;
    while i < b.len() {
        let (space, len, byte_plain) = match BYTE_CLASS[b[i] as usize] {
            0 => (false, 1, PLAIN[b[i] as usize]),
            1 => (true, 1, true),
            _ => {
                let ch = s[i..].chars().next().unwrap_or(' ');
                (ch.is_whitespace(), ch.len_utf8(), false)
            }
        };
        if space {
            if start != usize::MAX {
                rules.push(s, start, i, plain, out);
                start = usize::MAX;
            }
        } else {
            if start == usize::MAX {
                start = i;
                plain = true;
            }
            plain &= byte_plain;
        }
        i += len;
    }
    if start != usize::MAX {
        rules.push(s, start, b.len(), plain, out);
    }
}

/// The state of [`tokenize_v2`] between tokens.
struct V2Rules {
    /// Variable-looking tokens in the current run.
    run: usize,
    /// Where the run's first token starts.
    run_start: usize,
    /// Whether the run holds a name (`<*>`).
    run_named: bool,
    /// Whether the previous token was a naming noun.
    after_noun: bool,
}

impl V2Rules {
    /// Adds the token `s[start..end]`; `plain` when all its bytes are
    /// [`PLAIN`] (so it looks constant, see [`looks_constant`]).
    fn push<'a>(
        &mut self,
        s: &'a str,
        start: usize,
        end: usize,
        plain: bool,
        out: &mut Vec<&'a str>,
    ) {
        let token = &s[start..end];
        let name = self.after_noun && is_name_word(token);
        self.after_noun = plain && is_naming_noun(token);
        let variable = name
            || if plain {
                is_empty_value(token)
            } else {
                // A bare placeholder (the commonest token that is not
                // plain) needs no closer look.
                placeholder_len(token.as_bytes(), 0) == Some(token.len()) || !breaks_runs(token)
            };
        if !variable {
            self.run = 0;
            out.push(token);
            return;
        }
        self.run += 1;
        if self.run == 1 {
            self.run_start = start;
            self.run_named = name;
            out.push(if name { WILDCARD } else { token });
        } else {
            self.run_named |= name;
            let joined = if self.run_named {
                WILDCARD
            } else {
                &s[self.run_start..end]
            };
            if let Some(last) = out.last_mut() {
                *last = joined;
            }
        }
    }
}

/// Whether a token is template text that ends a run of variables: it looks
/// constant (version 2) or is a `key=value`, and is not an empty value.
fn breaks_runs(t: &str) -> bool {
    if looks_constant(t) {
        return !is_empty_value(t);
    }
    // Type names and keys need a `.`, `=` or `:`.
    t.bytes().any(|c| matches!(c, b'.' | b'=' | b':')) && (is_key_value(t) || is_type_name(t))
}

/// A word that can be a name after a naming noun: letters, digits, `_`,
/// `-`, and not a function word.
fn is_name_word(w: &str) -> bool {
    // The name may end a clause: `field price,`.
    let w = w.trim_end_matches([',', ';', '.']);
    !w.is_empty()
        && w.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        && !FUNCTION_WORDS.iter().any(|f| f.eq_ignore_ascii_case(w))
}

/// Whether two tokens are equal once every placeholder is taken as equal to
/// every other (`(<NUM>,` and `(<QUOTED>,`).
fn same_skeleton(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    loop {
        match (i < a.len(), j < b.len()) {
            (false, false) => return true,
            (true, true) => {}
            _ => return false,
        }
        match (placeholder_len(a, i), placeholder_len(b, j)) {
            (Some(x), Some(y)) => {
                i += x;
                j += y;
            }
            (None, None) if a[i] == b[j] => {
                i += 1;
                j += 1;
            }
            _ => return false,
        }
    }
}

/// Joins tokens; with `wildcards`, every placeholder inside a token becomes
/// `<*>`.
fn render(tokens: &[Box<str>], wildcards: bool) -> String {
    let mut out = String::new();
    for (i, t) in tokens.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        if !wildcards {
            out.push_str(t);
            continue;
        }
        let b = t.as_bytes();
        let mut copied = 0;
        let mut k = 0;
        while k < b.len() {
            match placeholder_len(b, k) {
                Some(len) if MaskKind::from_placeholder(&t[k..k + len]).is_some() => {
                    out.push_str(&t[copied..k]);
                    out.push_str(WILDCARD);
                    k += len;
                    copied = k;
                }
                _ => k += 1,
            }
        }
        out.push_str(&t[copied..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw() -> MinerConfig {
        MinerConfig {
            root_cause: false,
            mask: false,
            ..MinerConfig::drain3()
        }
    }

    #[test]
    fn constant_looking_tokens() {
        for t in [
            "refused",
            "Connection",
            "reset,",
            "(Local:",
            "NOT_LEADER_OR_FOLLOWER",
            "','",
            "`}`",
            "double-quote",
            "ConnectionResetError(<NUM>,",
            "é",
        ] {
            assert!(looks_constant(t), "{t}");
        }
        for t in [
            "<NUM>",
            "(<QUOTED>)",
            "<*>",
            "rss.events",
            "java.net.ConnectException:",
            "kafka-2",
            "a/b",
            "key=value",
            "x@y",
            "<NUM>.internal:<NUM>",
            "PriceHourly.price",
            "SCRAM-SHA-<NUM>",
            "ph-<NUM>",
            "<NUM>ms",
            "<HEX>>:",
        ] {
            assert!(!looks_constant(t), "{t}");
        }
    }

    #[test]
    fn tokenize_splits_at_unicode_white_space() {
        let mut out = Vec::new();
        tokenize(" a\tb\u{a0}c\u{2003}é  d\x0Be\n", &mut out);
        assert_eq!(out, ["a", "b", "c", "é", "d", "e"]);
        for s in ["", "  ", "x", "naïve café", "a\u{85}b"] {
            let mut out = Vec::new();
            tokenize(s, &mut out);
            assert_eq!(out, s.split_whitespace().collect::<Vec<_>>(), "{s:?}");
        }
    }

    #[test]
    fn recycled_buffers_keep_their_allocation() {
        let mut v: Vec<&str> = Vec::with_capacity(64);
        v.push("x");
        let ptr = v.as_ptr() as usize;
        let w: Vec<&str> = recycle(v);
        assert!(w.is_empty());
        assert_eq!(w.as_ptr() as usize, ptr);
        assert!(w.capacity() >= 64);
    }

    #[test]
    fn skeletons() {
        assert!(same_skeleton("(<NUM>,", "(<QUOTED>,"));
        assert!(same_skeleton("<*>", "<URL>"));
        assert!(!same_skeleton("a(<NUM>,", "b(<NUM>,"));
        assert!(!same_skeleton("<NUM>", "<NUM>x"));
        assert!(!same_skeleton("<", "<NUM>"));
    }

    #[test]
    fn drain_basics() {
        let mut m = Miner::with_config(raw()).unwrap();
        let a = m.add("connected to host a1 in 5 ms");
        let b = m.add("connected to host b2 in 7 ms");
        assert_eq!(a, b);
        assert_eq!(m.template(a).unwrap(), "connected to host <*> in <*> ms");
        assert_eq!(m.size(a), Some(2));
        // A different token count is a different cluster.
        let c = m.add("connected to host c3 in 9 ms today");
        assert_ne!(a, c);
        // A different first token is a different leaf.
        let d = m.add("disconnected to host c3 in 9 ms");
        assert_ne!(a, d);
        // Below the similarity threshold: a new cluster in the same leaf.
        let e = m.add("connected x y z w v u");
        assert_ne!(a, e);
        assert_eq!(m.len(), 4);
        assert_eq!(m.match_only("connected to host zz in 1 ms"), Some(a));
        assert_eq!(m.match_only("nothing like it"), None);
        assert_eq!(m.len(), 4, "match_only creates nothing");
        let ids: Vec<u64> = m.clusters().iter().map(|c| c.id.0).collect();
        assert_eq!(ids, [1, 2, 3, 4]);
    }

    #[test]
    fn empty_messages_share_a_cluster() {
        let mut m = Miner::new();
        let a = m.add("");
        assert_eq!(m.add("   \n\t"), a);
        assert_eq!(m.template(a).unwrap(), "");
    }

    #[test]
    fn constant_word_rule() {
        let mut with = Miner::new();
        let mut without = Miner::with_config(MinerConfig::drain3()).unwrap();
        let a = "downstream unavailable: connection refused (attempt 1)";
        let b = "downstream unavailable: connection reset (attempt 2)";
        assert_ne!(with.add(a), with.add(b));
        assert_eq!(without.add(a), without.add(b));
    }

    #[test]
    fn numeric_leading_tokens_share_the_wildcard_child() {
        let mut m = Miner::with_config(raw()).unwrap();
        let a = m.add("503 Service Unavailable at x");
        let b = m.add("504 Service Unavailable at y");
        assert_eq!(a, b);
        assert_eq!(m.template(a).unwrap(), "<*> Service Unavailable at <*>");
    }

    #[test]
    fn max_children_overflow_goes_to_wildcard() {
        let config = MinerConfig {
            max_children: 3,
            ..raw()
        };
        let mut m = Miner::with_config(config).unwrap();
        let a = m.add("alpha x");
        let b = m.add("beta x");
        // The third distinct first token takes the last slot: the wildcard.
        let c = m.add("gamma x");
        let d = m.add("delta x");
        assert_eq!(c, d, "both go through the wildcard child");
        assert_ne!(a, b);
        assert_eq!(m.template(c).unwrap(), "<*> x");
    }

    #[test]
    fn lru_bound_evicts_the_least_recently_used() {
        let config = MinerConfig {
            max_clusters: Some(2),
            ..MinerConfig::new()
        };
        let mut m = Miner::with_config(config).unwrap();
        let a = m.add("alpha failed");
        let b = m.add("beta failed");
        assert_eq!(m.add("alpha failed"), a); // a is now more recent than b
        let c = m.add("gamma failed");
        assert_eq!(m.len(), 2);
        assert!(m.template(b).is_none(), "b was evicted");
        assert!(m.template(a).is_some() && m.template(c).is_some());
        // An evicted cluster's messages start a new cluster with a new id.
        let b2 = m.add("beta failed");
        assert!(b2 > c);
        assert!(m.template(a).is_none(), "a was the least recently used");
        // The evicted id left its leaf.
        let st = m.to_state();
        assert!(
            st.nodes
                .iter()
                .all(|n| !n.clusters.contains(&a) && !n.clusters.contains(&b))
        );
        Miner::from_state(st).unwrap();
    }

    #[test]
    fn match_only_agrees_with_add() {
        let mut m = Miner::new();
        for s in ["a b c", "a b d", "x 1 y", "x 2 y", "a q r"] {
            let before = m.match_only(s);
            let got = m.add(s);
            if let Some(id) = before {
                assert_eq!(id, got, "{s}");
            }
        }
    }

    #[test]
    fn invalid_configs_are_reported_together() {
        let err = Miner::with_config(MinerConfig {
            sim_threshold: 1.5,
            depth: 2,
            max_children: 1,
            max_clusters: Some(0),
            ..MinerConfig::new()
        })
        .unwrap_err();
        let StateError::Config(msg) = err else {
            panic!("{err}")
        };
        for part in ["sim_threshold", "depth", "max_children", "max_clusters"] {
            assert!(msg.contains(part), "{msg}");
        }
    }

    #[test]
    fn corrupt_states_are_refused() {
        let mut m = Miner::new();
        m.add("a b c");
        m.add("x y");
        let good = m.to_state();
        assert!(Miner::from_state(good.clone()).is_ok());

        let mut s = good.clone();
        s.version = 99;
        assert!(matches!(
            Miner::from_state(s),
            Err(StateError::Version { found: 99 })
        ));

        let mut s = good.clone();
        s.nodes[0].children.push(("z".into(), 999));
        assert!(Miner::from_state(s).is_err());

        let mut s = good.clone();
        s.clusters[0].tokens.push("extra".into());
        assert!(Miner::from_state(s).is_err());

        let mut s = good.clone();
        s.clusters.pop();
        assert!(Miner::from_state(s).is_err());

        let mut s = good.clone();
        s.last_id = 1;
        assert!(Miner::from_state(s).is_err());

        let mut s = good;
        s.roots.push((7, 0));
        assert!(Miner::from_state(s).is_err());
    }

    fn v1() -> MinerConfig {
        MinerConfig {
            version: 1,
            ..MinerConfig::new()
        }
    }

    /// Mines `messages` with the default (latest) and the version 1 miner;
    /// returns whether each put them all in one cluster.
    fn one_cluster(messages: &[&str]) -> (bool, bool) {
        let mut latest = Miner::new();
        let mut old = Miner::with_config(v1()).unwrap();
        let same = |m: &mut Miner| {
            let ids: Vec<ClusterId> = messages.iter().map(|s| m.add(s)).collect();
            ids.iter().all(|&id| id == ids[0])
        };
        (same(&mut latest), same(&mut old))
    }

    #[test]
    fn a_run_of_variables_is_one_token_whatever_its_length() {
        // Also an empty value, `()`, is a variable.
        let (v2, v1) = one_cluster(&[
            "connection from 10.0.0.1 (host-1.example.net) at 2026-11-01 05:00:00",
            "connection from 10.0.0.2 () at 2026-11-01 05:00:01",
            "connection from 10.0.0.3 (x-1.y) 10.0.0.4 at 2026-11-01 05:00:02",
        ]);
        assert!(v2 && !v1);
        let (v2, v1) = one_cluster(&[
            "proxy.example.com:5070 close, 1 bytes sent, 2 bytes received, lifetime 00:01",
            "proxy.example.com:5070 close, 1 bytes (1 KB) sent, 2 bytes received, lifetime <1 sec",
        ]);
        assert!(v2 && !v1);
    }

    #[test]
    fn the_tree_is_keyed_by_template_text_not_a_leading_value() {
        let (v2, v1) = one_cluster(&[
            "a.example.com:80 open through proxy p.example.com:5070 HTTPS",
            "b.other.org:443 open through proxy p.example.com:5070 HTTPS",
            "10.0.0.7:443 open through proxy p.example.com:5070 HTTPS",
        ]);
        assert!(v2 && !v1);
    }

    #[test]
    fn lists_of_names_of_any_length_share_a_template() {
        let (v2, v1) = one_cluster(&[
            "missing required fields: price",
            "missing required fields: price, volume",
            "missing required fields: event_id, price, volume",
        ]);
        assert!(v2 && !v1);
        let mut m = Miner::new();
        let id = m.add("missing required fields: price, volume");
        m.add("missing required fields: price");
        assert_eq!(m.template(id).unwrap(), "missing required fields: <*>");
    }

    #[test]
    fn runs_of_quoted_values_of_any_length_share_a_template() {
        let (v2, v1) = one_cluster(&[
            "unknown variant `x`, expected one of `a`, `b`",
            "unknown variant `yy`, expected one of `a`, `b`, `c`, `d`",
            "unknown variant `z z`, expected one of `a`",
        ]);
        assert!(v2 && !v1);
        let mut m = Miner::new();
        let id = m.add("unknown variant `x`, expected one of `a`, `b`");
        m.add("unknown variant `x`, expected one of `a`");
        assert_eq!(
            m.template(id).unwrap(),
            "unknown variant <*>, expected one of <*>"
        );
    }

    #[test]
    fn the_word_after_a_naming_noun_is_a_variable() {
        let (v2, v1) = one_cluster(&[
            "'x' (type <class 'str'>) do not match ['null', 'double'] on field price",
            "'y' (type <class 'str'>) do not match ['null', 'double'] on field volume",
        ]);
        assert!(v2 && !v1);
        let (v2, v1) = one_cluster(&[
            "session closed for user alice",
            "session closed for user bob",
        ]);
        assert!(v2 && !v1);
        // A function word after the noun is template text.
        let mut m = Miner::new();
        assert_ne!(m.add("field is required"), m.add("field was empty"));
    }

    #[test]
    fn key_value_tokens_keep_their_key_and_plain_word_values() {
        // Different plain-word values of one key are different templates
        // (version 1 merges them: the tokens look variable).
        let (v2, v1) = one_cluster(&[
            "updateClipping isOverlap:false, getTopPadding=3",
            "updateClipping isOverlap:true, getTopPadding=4",
        ]);
        assert!(!v2 && v1);
        // Unless the key names something.
        let (v2, _) = one_cluster(&[
            "authentication failure; rhost=10.0.0.1 user=root",
            "authentication failure; rhost=10.0.0.2 user=git",
        ]);
        assert!(v2);
        // A key=value token ends a run of variables.
        let mut m = Miner::new();
        assert_ne!(
            m.add("authentication failure; rhost=10.0.0.1"),
            m.add("authentication failure; rhost=10.0.0.1.example.net user=root")
        );
    }

    #[test]
    fn qualified_type_names_are_template_text() {
        let (v2, v1) = one_cluster(&[
            "handler failed with java.net.ConnectException: boom",
            "handler failed with java.net.SocketException: boom",
        ]);
        assert!(!v2 && v1);
        for t in [
            "java.net.ConnectException:",
            "android.intent.action.SCREEN_ON",
            "(a.b.C)",
        ] {
            assert!(looks_constant_v2(t), "{t}");
        }
        for t in [
            "rss.events",
            "com.apple.Safari.Update:",
            "kafka-2.internal",
            "a.b2.C",
        ] {
            assert!(!looks_constant_v2(t), "{t}");
        }
    }

    #[test]
    fn a_message_of_only_variables_joins_its_cluster() {
        let (v2, v1) = one_cluster(&[
            "onExtend:1514038530000 14 0 4",
            "onExtend:1514038530000 0 0 4",
            "onExtend:1514038590000 1 0 4",
        ]);
        assert!(v2 && v1);
        let mut m = Miner::new();
        let a = m.add("0x1f 17 3");
        assert_eq!(m.add("0x2e 18 4"), a);
    }

    /// A state as version 1 of this code wrote it (no `version` in the
    /// configuration): it loads as an algorithm version 1 miner and goes on
    /// exactly like one, so saved groups and fingerprints do not change.
    #[test]
    fn a_state_written_before_versions_loads_as_version_1_and_keeps_its_groups() {
        let first = ["session closed for user alice", "disk 3 full"];
        let later = [
            "session closed for user bob",
            "disk 4 full",
            "session closed for user carol",
        ];
        let mut reference = Miner::with_config(v1()).unwrap();
        for s in first {
            reference.add(s);
        }
        let mut json = serde_json::to_value(reference.to_state()).unwrap();
        json["version"] = 1.into();
        json["config"].as_object_mut().unwrap().remove("version");
        let old_state: MinerState = serde_json::from_value(json).unwrap();
        assert_eq!(old_state.config.version, 1);
        let mut resumed = Miner::from_state(old_state).unwrap();
        assert_eq!(resumed.config().version, 1);
        for s in later {
            assert_eq!(resumed.add(s), reference.add(s), "{s}");
        }
        assert_eq!(resumed.clusters(), reference.clusters());
        // Version 1 splits by user name; the latest version would not.
        assert_eq!(resumed.len(), 4);
        // A new state keeps the version; a new miner is the latest.
        let saved = resumed.to_state();
        assert_eq!((saved.version, saved.config.version), (STATE_VERSION, 1));
        assert_eq!(Miner::new().config().version, MinerConfig::LATEST_VERSION);
    }

    #[test]
    fn unknown_versions_are_refused() {
        let mut st = Miner::new().to_state();
        st.version = 1; // a version 1 state cannot hold a version 2 miner
        assert!(matches!(Miner::from_state(st), Err(StateError::Corrupt(_))));
        let mut st = Miner::new().to_state();
        st.config.version = 3;
        assert!(matches!(Miner::from_state(st), Err(StateError::Config(_))));
        assert!(
            Miner::with_config(MinerConfig {
                version: 0,
                ..MinerConfig::new()
            })
            .is_err()
        );
    }

    #[test]
    fn render_replaces_known_placeholders_only() {
        let toks: Vec<Box<str>> = ["(<NUM>)", "<urllib3>", "<QUOTED>:", "<*>", "<FOO>"]
            .iter()
            .map(|&t| t.into())
            .collect();
        assert_eq!(render(&toks, true), "(<*>) <urllib3> <*>: <*> <FOO>");
        assert_eq!(
            render(&toks, false),
            "(<NUM>) <urllib3> <QUOTED>: <*> <FOO>"
        );
    }
}
