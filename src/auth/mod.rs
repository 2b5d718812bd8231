//! Authorization: who may do what, decided by a casbin ACL over TLS identities.
//!
//! # Identity
//! A TLS connection's identity is the subject **common name (CN)** of the client
//! certificate the handshake verified ([`common_name`]). A plaintext connection has no
//! verified identity: on a server without TLS the ACL is off (every request is
//! allowed, as before this module existed); on a TLS server started with
//! `--allow-plaintext`, a plaintext connection is checked as [`ANONYMOUS`], which the
//! default policy allows nothing but `Ping`.
//!
//! # Actions
//! Every API maps to one [`Action`] ([`Action::for_api`]): `Produce`/`ProduceBatch` →
//! `produce`, `Consume`/`Fetch` → `consume`, `GetServers`/`Status`/`Metadata`/
//! `DescribeTopic` → `describe`, `CreateTopic`/`DeleteTopic`/`AlterTopic` → `admin`,
//! the peer RPCs `RaftMessage`/`PeerHandshake`/`ReadEntries`/`RaftBatch` (api keys
//! 32–35) → `replicate`. `Ping` is
//! open to every connection that got this far (it reveals nothing).
//!
//! # Objects: topics
//! A casbin request is `(identity, object, action)`, and the object is a **topic**
//! for the requests that name one ([`objects`], from [`Request::topics`]):
//! Produce/ProduceBatch/Consume → their topic; Fetch v0 → `default`; a Fetch v1
//! touching several topics needs `consume` on **each**; DescribeTopic and a
//! Metadata naming topics → `describe` on each; CreateTopic/AlterTopic/DeleteTopic
//! → `admin` on the named topic. Requests about the cluster rather than a topic use
//! the object [`OBJECT`] (`*`): GetServers, Status, the peer APIs, and a Metadata
//! naming no topic (it lists every topic, so it needs `describe` granted with the
//! object `*`, not on some topics). A policy line's object `*` matches every object
//! (model matcher), so `p, root, *, produce` still grants producing to every topic;
//! `p, alice, orders, produce` grants it for topic `orders` only.
//!
//! # Consumer groups
//! CommitOffset and FetchOffset need `consume` on each topic they name (a FetchOffset
//! naming none, which reads every cursor of the group, on `*`); ListGroups needs
//! `describe` (object `*`); DeleteGroup needs `consume` on every topic the group has
//! a cursor on, which only the node knows, so [`check_request`] lets it through and
//! the node checks it against its catalogue ([`Authorizer::allows_on`]).
//!
//! # Loading and reloading
//! [`Authorizer::load`] reads `model.conf` and `policy.csv` with std and builds the
//! casbin `Enforcer` synchronously (`pollster::block_on` over casbin's async
//! constructors; no runtime is started). Errors name the file. The policy is checked
//! line by line first, because casbin silently ignores lines it cannot place: a
//! policy line that is not `p, <sub>, <obj>, <act>` (or a `g` role line) is an error.
//! [`Authorizer::reload`] (SIGHUP) builds a new enforcer from the same files and swaps
//! it in under a write lock; a broken file keeps the old policy. Every swap bumps a
//! generation counter, which invalidates per-connection [`DecisionCache`]s.
//!
//! # Cost
//! `enforce` is synchronous and takes microseconds; the event loop calls it at most
//! once per (connection, action, policy generation) thanks to [`DecisionCache`], so
//! the check never blocks the loop. A denied request never reaches the service, so
//! nothing is written.

pub mod keyfile;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use casbin::{CoreApi, DefaultModel, Enforcer, StringAdapter};

use std::collections::HashMap;

use crate::wire::{ApiKey, Request};

/// The identity of a plaintext connection on a TLS server (`--allow-plaintext`).
pub const ANONYMOUS: &str = "anonymous";

/// The casbin object of requests about the whole cluster (and, in a policy line,
/// every object).
pub const OBJECT: &str = "*";

/// Most topics whose decisions one connection's [`DecisionCache`] remembers; at the
/// limit it starts over (a connection rarely uses more than a few topics).
pub const MAX_CACHED_TOPICS: usize = 64;

/// The default ACL model, the file `certs/model.conf` (used when TLS is on and no
/// `--acl-model-file` is given).
pub const DEFAULT_MODEL: &str = include_str!("../../certs/model.conf");

/// The default ACL policy, the file `certs/policy.csv`: `root` may produce, consume,
/// describe and administer topics; `commitlog-peer` may replicate and describe.
pub const DEFAULT_POLICY: &str = include_str!("../../certs/policy.csv");

/// Longest policy file accepted (a policy is a few lines; this bounds start-up work).
pub const MAX_ACL_FILE_BYTES: u64 = 4 << 20;

/// What a request wants to do, the `act` of a casbin request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Append records (`Produce`, `ProduceBatch`).
    Produce,
    /// Read records (`Consume`, `Fetch`).
    Consume,
    /// Read cluster metadata (`GetServers`, `Status`).
    Describe,
    /// Peer RPCs (`RaftMessage`, `PeerHandshake`, `ReadEntries`, `RaftBatch`).
    Replicate,
    /// Topic administration (`CreateTopic`, `DeleteTopic`, `AlterTopic`).
    Admin,
}

impl Action {
    /// Every action, in [`Action::index`] order.
    pub const ALL: [Action; 5] = [
        Action::Produce,
        Action::Consume,
        Action::Describe,
        Action::Replicate,
        Action::Admin,
    ];

    /// The action name used in policy files.
    pub fn name(self) -> &'static str {
        match self {
            Action::Produce => "produce",
            Action::Consume => "consume",
            Action::Describe => "describe",
            Action::Replicate => "replicate",
            Action::Admin => "admin",
        }
    }

    /// A dense index (0..5), for per-connection caches.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The action an API needs; `None` for APIs open to every connection (`Ping`).
    pub fn for_api(api: ApiKey) -> Option<Action> {
        match api {
            ApiKey::Ping => None,
            // InitProducer names no topic: checked on object `*`.
            ApiKey::Produce | ApiKey::ProduceBatch | ApiKey::InitProducer => Some(Action::Produce),
            ApiKey::Consume | ApiKey::Fetch | ApiKey::ListOffsets => Some(Action::Consume),
            ApiKey::GetServers | ApiKey::Status | ApiKey::Metadata | ApiKey::DescribeTopic => {
                Some(Action::Describe)
            }
            ApiKey::CreateTopic | ApiKey::DeleteTopic | ApiKey::AlterTopic => Some(Action::Admin),
            ApiKey::CommitOffset | ApiKey::FetchOffset | ApiKey::DeleteGroup => {
                Some(Action::Consume)
            }
            ApiKey::ListGroups => Some(Action::Describe),
            ApiKey::RaftMessage
            | ApiKey::PeerHandshake
            | ApiKey::ReadEntries
            | ApiKey::RaftBatch => Some(Action::Replicate),
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The message of a `PERMISSION_DENIED` answer for the object `*`.
pub fn denied_message(identity: &str, action: Action, api: ApiKey) -> String {
    denied_message_on(identity, action, api, OBJECT)
}

/// The message of a `PERMISSION_DENIED` answer: who lacks what on which object
/// (a topic, or `*`), and what to do.
pub fn denied_message_on(identity: &str, action: Action, api: ApiKey, object: &str) -> String {
    let on = if object == OBJECT {
        String::new()
    } else {
        format!(" on topic `{object}`")
    };
    if identity == ANONYMOUS {
        format!(
            "{api} needs the `{action}` permission{on}, and this plaintext connection has no identity (`{ANONYMOUS}`); \
             connect with TLS and a client certificate whose CN the ACL policy allows, \
             or add `p, {ANONYMOUS}, {object}, {action}` to the server's --acl-policy-file"
        )
    } else {
        format!(
            "identity `{identity}` (client certificate CN) may not `{action}`{on} ({api}); \
             ask the operator to add `p, {identity}, {object}, {action}` to the server's --acl-policy-file \
             (then SIGHUP), or use a certificate with an allowed CN"
        )
    }
}

/// The casbin objects a request is checked against (see the module doc): its
/// topics, each once, or [`OBJECT`] for requests about the cluster.
pub fn objects(request: &Request) -> Vec<&str> {
    let topics = request.topics();
    if topics.is_empty() {
        vec![OBJECT]
    } else {
        topics
    }
}

/// Why a request was refused: the action it needs on the object it lacks it for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    /// The action needed.
    pub action: Action,
    /// The first object (a topic, or `*`) it is not allowed on.
    pub object: String,
}

/// Checks `request` for `identity`: its action on every one of its [`objects`],
/// through `cache` when given. `Ok` for APIs open to all (`Ping`).
pub fn check_request(
    authorizer: &Authorizer,
    mut cache: Option<&mut DecisionCache>,
    identity: &str,
    request: &Request,
) -> Result<(), Denial> {
    let Some(action) = Action::for_api(request.api_key()) else {
        return Ok(());
    };
    if request.api_key() == ApiKey::DeleteGroup {
        // Its objects are the topics of the group's cursors, which only the node
        // knows: the node checks them (`node/groups.rs`).
        return Ok(());
    }
    for object in objects(request) {
        let allowed = match cache.as_deref_mut() {
            Some(cache) => cache.allows_on(authorizer, identity, object, action),
            None => authorizer.allows_on(identity, object, action),
        };
        if !allowed {
            return Err(Denial {
                action,
                object: object.to_string(),
            });
        }
    }
    Ok(())
}

/// A problem with the ACL files. The message names the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclError(String);

impl fmt::Display for AclError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AclError {}

/// Where the ACL came from, for reloads and messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AclSource {
    /// The defaults compiled in from `certs/`.
    Builtin,
    /// A model file and a policy file (either may be `None`: that part uses the default).
    Files {
        /// `--acl-model-file`.
        model: Option<PathBuf>,
        /// `--acl-policy-file`.
        policy: Option<PathBuf>,
    },
    /// Model and policy text given directly (tests, embedding); a reload rebuilds
    /// the same text.
    Inline {
        /// The model text.
        model: String,
        /// The policy text.
        policy: String,
    },
}

impl fmt::Display for AclSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |p: &Option<PathBuf>, default: &str| match p {
            Some(p) => p.display().to_string(),
            None => format!("built-in {default}"),
        };
        match self {
            AclSource::Builtin => f.write_str("built-in certs/model.conf + certs/policy.csv"),
            AclSource::Files { model, policy } => write!(
                f,
                "model {}, policy {}",
                show(model, "certs/model.conf"),
                show(policy, "certs/policy.csv")
            ),
            AclSource::Inline { .. } => f.write_str("inline model and policy"),
        }
    }
}

/// The casbin enforcer behind a lock (swapped on reload), with a generation counter.
pub struct Authorizer {
    enforcer: RwLock<Enforcer>,
    generation: AtomicU64,
    source: AclSource,
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("source", &self.source)
            .field("generation", &self.generation())
            .finish()
    }
}

impl Authorizer {
    /// Loads the ACL from `source` (files are read now, synchronously).
    pub fn load(source: AclSource) -> Result<Authorizer, AclError> {
        let enforcer = build(&source)?;
        Ok(Authorizer {
            enforcer: RwLock::new(enforcer),
            generation: AtomicU64::new(1),
            source,
        })
    }

    /// Builds an authorizer from model and policy text.
    pub fn from_text(model: &str, policy: &str) -> Result<Authorizer, AclError> {
        Authorizer::load(AclSource::Inline {
            model: model.to_string(),
            policy: policy.to_string(),
        })
    }

    /// Re-reads the files and swaps the new policy in. On error the old policy stays.
    pub fn reload(&self) -> Result<(), AclError> {
        let fresh = build(&self.source)?;
        let mut guard = self
            .enforcer
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *guard = fresh;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(())
    }

    /// Bumped by every successful [`reload`](Authorizer::reload).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Where the policy came from.
    pub fn source(&self) -> &AclSource {
        &self.source
    }

    /// Whether `identity` may perform `action` on the object `*` (the whole
    /// cluster, or every topic).
    pub fn allows(&self, identity: &str, action: Action) -> bool {
        self.allows_on(identity, OBJECT, action)
    }

    /// Whether `identity` may perform `action` on `object` (a topic name, or `*`).
    /// An enforcer error denies (and logs).
    pub fn allows_on(&self, identity: &str, object: &str, action: Action) -> bool {
        let guard = self
            .enforcer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match guard.enforce((identity, object, action.name())) {
            Ok(allowed) => allowed,
            Err(e) => {
                log::error!("ACL check ({identity}, {object}, {action}) failed, denying: {e}");
                false
            }
        }
    }
}

/// Per-connection memo of ACL decisions: at most one `enforce` per (object, action)
/// and policy generation, for the object `*` and up to [`MAX_CACHED_TOPICS`] topics.
/// The identity of a connection never changes, so it is not part of the key.
#[derive(Clone, Debug, Default)]
pub struct DecisionCache {
    generation: u64,
    decisions: [Option<bool>; Action::ALL.len()],
    topics: HashMap<String, [Option<bool>; Action::ALL.len()]>,
}

impl DecisionCache {
    /// Whether `identity` may perform `action` on `*`, asking `authorizer` only on a
    /// miss.
    pub fn allows(&mut self, authorizer: &Authorizer, identity: &str, action: Action) -> bool {
        self.allows_on(authorizer, identity, OBJECT, action)
    }

    /// Whether `identity` may perform `action` on `object`, asking `authorizer` only
    /// on a miss.
    pub fn allows_on(
        &mut self,
        authorizer: &Authorizer,
        identity: &str,
        object: &str,
        action: Action,
    ) -> bool {
        let generation = authorizer.generation();
        if generation != self.generation {
            self.generation = generation;
            self.decisions = [None; Action::ALL.len()];
            self.topics.clear();
        }
        if object != OBJECT && !self.topics.contains_key(object) {
            if self.topics.len() >= MAX_CACHED_TOPICS {
                self.topics.clear();
            }
            self.topics
                .insert(object.to_string(), [None; Action::ALL.len()]);
        }
        let slots = match self.topics.get_mut(object) {
            Some(slots) => slots,
            None => &mut self.decisions,
        };
        let slot = &mut slots[action.index()];
        match *slot {
            Some(decision) => decision,
            None => {
                let decision = authorizer.allows_on(identity, object, action);
                *slot = Some(decision);
                decision
            }
        }
    }

    /// Topics whose decisions are remembered (at most [`MAX_CACHED_TOPICS`]).
    pub fn cached_topics(&self) -> usize {
        self.topics.len()
    }
}

fn build(source: &AclSource) -> Result<Enforcer, AclError> {
    match source {
        AclSource::Builtin => enforcer_from_text(
            DEFAULT_MODEL,
            "built-in certs/model.conf",
            DEFAULT_POLICY,
            "built-in certs/policy.csv",
        ),
        AclSource::Files { model, policy } => {
            let (model_text, model_label) = match model {
                Some(path) => (read_acl_file(path, "--acl-model-file")?, label(path)),
                None => (
                    DEFAULT_MODEL.to_string(),
                    "built-in certs/model.conf".into(),
                ),
            };
            let (policy_text, policy_label) = match policy {
                Some(path) => (read_acl_file(path, "--acl-policy-file")?, label(path)),
                None => (
                    DEFAULT_POLICY.to_string(),
                    "built-in certs/policy.csv".into(),
                ),
            };
            enforcer_from_text(&model_text, &model_label, &policy_text, &policy_label)
        }
        AclSource::Inline { model, policy } => {
            enforcer_from_text(model, "inline model", policy, "inline policy")
        }
    }
}

fn label(path: &Path) -> String {
    path.display().to_string()
}

fn read_acl_file(path: &Path, flag: &str) -> Result<String, AclError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| AclError(format!("cannot read {flag} {}: {e}", path.display())))?;
    if meta.len() > MAX_ACL_FILE_BYTES {
        return Err(AclError(format!(
            "{flag} {} is {} bytes, more than the {} byte limit; is it the right file?",
            path.display(),
            meta.len(),
            MAX_ACL_FILE_BYTES
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| AclError(format!("cannot read {flag} {}: {e}", path.display())))
}

fn enforcer_from_text(
    model: &str,
    model_label: &str,
    policy: &str,
    policy_label: &str,
) -> Result<Enforcer, AclError> {
    check_model(model, model_label)?;
    check_policy(policy, policy_label)?;
    let model = pollster::block_on(DefaultModel::from_str(model))
        .map_err(|e| AclError(format!("ACL model {model_label} is invalid: {e}")))?;
    let enforcer =
        pollster::block_on(Enforcer::new(model, StringAdapter::new(policy))).map_err(|e| {
            AclError(format!(
                "ACL model {model_label} with policy {policy_label} cannot be loaded: {e}"
            ))
        })?;
    // One trial decision, so a matcher that does not evaluate fails at start, not on
    // the first request.
    enforcer
        .enforce((ANONYMOUS, OBJECT, Action::Produce.name()))
        .map_err(|e| {
            AclError(format!(
                "ACL model {model_label} does not evaluate a request (sub, obj, act): {e}"
            ))
        })?;
    Ok(enforcer)
}

/// casbin accepts a model without the sections a request needs and fails later; say
/// which section is missing now.
fn check_model(model: &str, label: &str) -> Result<(), AclError> {
    for section in [
        "[request_definition]",
        "[policy_definition]",
        "[policy_effect]",
        "[matchers]",
    ] {
        if !model.contains(section) {
            return Err(AclError(format!(
                "ACL model {label} has no {section} section; start from certs/model.conf"
            )));
        }
    }
    Ok(())
}

/// Policy lines must be `p, sub, obj, act` or `g, member, role[, domain]`; casbin
/// would silently drop anything else (a typo would then deny without a word).
fn check_policy(policy: &str, label: &str) -> Result<(), AclError> {
    for (number, line) in policy.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let ok = match fields[0] {
            "p" => fields.len() == 4,
            "g" | "g2" => fields.len() == 3 || fields.len() == 4,
            _ => false,
        } && fields.iter().all(|f| !f.is_empty());
        if !ok {
            return Err(AclError(format!(
                "ACL policy {label} line {}: `{line}` is not `p, <identity>, <object>, <action>` \
                 (e.g. `p, root, *, produce`)",
                number + 1
            )));
        }
        if fields[0] == "p" {
            let action = fields[3];
            if action != "*" && !Action::ALL.iter().any(|a| a.name() == action) {
                return Err(AclError(format!(
                    "ACL policy {label} line {}: unknown action `{action}`; \
                     the actions are produce, consume, describe, admin, replicate (or *)",
                    number + 1
                )));
            }
        }
    }
    Ok(())
}

/// Why a certificate's subject CN could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertNameError(String);

impl fmt::Display for CertNameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CertNameError {}

/// The subject common name (OID 2.5.4.3) of a DER certificate: the ACL identity. With
/// several CNs the first one counts. Errors for undecodable certificates, a subject
/// without CN, or a CN that is not a UTF-8/printable/IA5 string.
pub fn common_name(cert_der: &[u8]) -> Result<String, CertNameError> {
    use x509_cert::der::asn1::ObjectIdentifier;
    use x509_cert::der::{Decode, Tag, Tagged};

    const CN: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.4.3");
    let cert = x509_cert::Certificate::from_der(cert_der)
        .map_err(|e| CertNameError(format!("cannot decode the certificate: {e}")))?;
    for rdn in cert.tbs_certificate.subject.0.iter() {
        for attr in rdn.0.iter() {
            if attr.oid != CN {
                continue;
            }
            return match attr.value.tag() {
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                    std::str::from_utf8(attr.value.value())
                        .map(str::to_string)
                        .map_err(|_| CertNameError("the subject CN is not valid UTF-8".into()))
                }
                other => Err(CertNameError(format!(
                    "the subject CN has an unsupported string type {other}"
                ))),
            };
        }
    }
    Err(CertNameError(
        "the certificate's subject has no common name (CN); issue it with CN=<identity>".into(),
    ))
}

#[cfg(test)]
mod tests;
