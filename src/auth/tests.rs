use super::*;

fn cert_with_subject(cn: Option<&str>, org: Option<&str>) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let mut dn = rcgen::DistinguishedName::new();
    if let Some(org) = org {
        dn.push(rcgen::DnType::OrganizationName, org);
    }
    if let Some(cn) = cn {
        dn.push(rcgen::DnType::CommonName, cn);
    }
    params.distinguished_name = dn;
    params.self_signed(&key).unwrap().der().to_vec()
}

#[test]
fn common_name_is_read_from_the_subject() {
    let der = cert_with_subject(Some("root"), Some("commitlog"));
    assert_eq!(common_name(&der).unwrap(), "root");
    let der = cert_with_subject(Some("commitlog-peer"), None);
    assert_eq!(common_name(&der).unwrap(), "commitlog-peer");
}

#[test]
fn common_name_errors_are_typed_not_panics() {
    let der = cert_with_subject(None, Some("commitlog"));
    let err = common_name(&der).unwrap_err().to_string();
    assert!(err.contains("no common name"), "{err}");
    assert!(common_name(b"").is_err());
    assert!(common_name(&[0x30, 0x82, 0xFF, 0xFF, 0x00]).is_err());
    // Every truncation of a valid certificate is an error, never a panic.
    let der = cert_with_subject(Some("root"), None);
    for cut in 0..der.len() {
        assert!(common_name(&der[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn default_policy_allows_root_and_peer_and_nobody_else() {
    let authz = Authorizer::load(AclSource::Builtin).unwrap();
    for action in [
        Action::Produce,
        Action::Consume,
        Action::Describe,
        Action::Admin,
    ] {
        assert!(authz.allows("root", action), "root {action}");
        assert!(!authz.allows("nobody", action), "nobody {action}");
        assert!(!authz.allows(ANONYMOUS, action), "anonymous {action}");
    }
    assert!(!authz.allows("root", Action::Replicate));
    assert!(authz.allows("commitlog-peer", Action::Replicate));
    assert!(!authz.allows("commitlog-peer", Action::Produce));
    assert!(!authz.allows("commitlog-peer", Action::Admin));
    assert!(!authz.allows("nobody", Action::Replicate));
    // Identities are compared exactly.
    assert!(!authz.allows("Root", Action::Produce));
    assert!(!authz.allows("root ", Action::Produce));
}

#[test]
fn wildcard_action_in_a_policy() {
    let authz = Authorizer::from_text(DEFAULT_MODEL, "p, admin, *, *\n").unwrap();
    for action in Action::ALL {
        assert!(authz.allows("admin", action));
        assert!(!authz.allows("root", action));
    }
}

#[test]
fn every_api_maps_to_its_action() {
    assert_eq!(Action::for_api(ApiKey::Ping), None);
    assert_eq!(Action::for_api(ApiKey::Produce), Some(Action::Produce));
    assert_eq!(Action::for_api(ApiKey::ProduceBatch), Some(Action::Produce));
    assert_eq!(Action::for_api(ApiKey::Consume), Some(Action::Consume));
    assert_eq!(Action::for_api(ApiKey::Fetch), Some(Action::Consume));
    assert_eq!(Action::for_api(ApiKey::GetServers), Some(Action::Describe));
    assert_eq!(Action::for_api(ApiKey::Status), Some(Action::Describe));
    assert_eq!(
        Action::for_api(ApiKey::RaftMessage),
        Some(Action::Replicate)
    );
    assert_eq!(
        Action::for_api(ApiKey::PeerHandshake),
        Some(Action::Replicate)
    );
    assert_eq!(Action::for_api(ApiKey::Metadata), Some(Action::Describe));
    assert_eq!(
        Action::for_api(ApiKey::DescribeTopic),
        Some(Action::Describe)
    );
    assert_eq!(Action::for_api(ApiKey::RaftBatch), Some(Action::Replicate));
    for api in [ApiKey::CreateTopic, ApiKey::DeleteTopic, ApiKey::AlterTopic] {
        assert_eq!(Action::for_api(api), Some(Action::Admin), "{api}");
    }
    assert_eq!(Action::Admin.name(), "admin");
    // Every API but Ping needs an action.
    for api in ApiKey::ALL {
        assert_eq!(Action::for_api(api).is_none(), api == ApiKey::Ping, "{api}");
    }
    for (i, action) in Action::ALL.iter().enumerate() {
        assert_eq!(action.index(), i);
    }
}

#[test]
fn denied_message_says_who_what_and_how_to_fix() {
    let m = denied_message("nobody", Action::Produce, ApiKey::Produce);
    assert!(m.contains("`nobody`") && m.contains("`produce`"), "{m}");
    assert!(m.contains("p, nobody, *, produce"), "{m}");
    let m = denied_message(ANONYMOUS, Action::Consume, ApiKey::Fetch);
    assert!(
        m.contains("client certificate") && m.contains("consume"),
        "{m}"
    );
}

struct TempFiles(std::path::PathBuf);

impl TempFiles {
    fn new(tag: &str) -> TempFiles {
        let dir = std::env::temp_dir().join(format!(
            "commitlog-auth-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempFiles(dir)
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for TempFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files(model: Option<PathBuf>, policy: Option<PathBuf>) -> AclSource {
    AclSource::Files { model, policy }
}

#[test]
fn loading_errors_name_the_file() {
    let tmp = TempFiles::new("errors");
    let missing = tmp.0.join("no-such-policy.csv");
    let err = Authorizer::load(files(None, Some(missing)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--acl-policy-file") && err.contains("no-such-policy.csv"),
        "{err}"
    );

    let bad_line = tmp.write("bad-line.csv", "p, root, *, produce\np, root, consume\n");
    let err = Authorizer::load(files(None, Some(bad_line)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad-line.csv") && err.contains("line 2"),
        "{err}"
    );

    let typo = tmp.write("typo.csv", "# comment\n\np, root, *, produse\n");
    let err = Authorizer::load(files(None, Some(typo)))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("typo.csv") && err.contains("line 3") && err.contains("produse"),
        "{err}"
    );

    let no_matchers = tmp.write(
        "no-matchers.conf",
        "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n[policy_effect]\ne = some(where (p.eft == allow))\n",
    );
    let err = Authorizer::load(files(Some(no_matchers), None))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no-matchers.conf") && err.contains("[matchers]"),
        "{err}"
    );

    let broken_matcher = tmp.write(
        "broken.conf",
        &DEFAULT_MODEL.replace("r.sub == p.sub", "r.sub === ((p.sub"),
    );
    let err = Authorizer::load(files(Some(broken_matcher), None))
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.conf"), "{err}");
}

#[test]
fn reload_swaps_the_policy_and_keeps_it_on_error() {
    let tmp = TempFiles::new("reload");
    let policy = tmp.write("policy.csv", "p, root, *, produce\n");
    let authz = Authorizer::load(files(None, Some(policy.clone()))).unwrap();
    // A connection's cache: one identity per connection.
    let mut cache = DecisionCache::default();
    assert!(!cache.allows(&authz, "alice", Action::Produce));
    assert!(!cache.allows(&authz, "alice", Action::Produce), "cached");
    assert!(authz.allows("root", Action::Produce));
    let generation = authz.generation();

    tmp.write("policy.csv", "p, alice, *, produce\n");
    authz.reload().unwrap();
    assert_eq!(authz.generation(), generation + 1);
    // The cache notices the new generation.
    assert!(cache.allows(&authz, "alice", Action::Produce));
    assert!(!authz.allows("root", Action::Produce));

    tmp.write("policy.csv", "this is not a policy\n");
    let err = authz.reload().unwrap_err().to_string();
    assert!(
        err.contains("policy.csv") && err.contains("line 1"),
        "{err}"
    );
    assert_eq!(authz.generation(), generation + 1);
    assert!(authz.allows("alice", Action::Produce), "old policy kept");
}

/// A policy granting per-topic rights, with `root` keeping `*`.
const TOPIC_POLICY: &str = "\
p, root, *, produce
p, root, *, consume
p, root, *, describe
p, root, *, admin
p, alice, orders, produce
p, alice, orders, consume
p, alice, orders, describe
p, ops, orders, admin
";

fn produce_to(topic: &str) -> Request {
    Request::Produce {
        target: crate::wire::TopicPartition::new(topic, 0),
        value: b"v".to_vec(),
    }
}

fn consume_from(topic: &str) -> Request {
    Request::Consume {
        target: crate::wire::TopicPartition::new(topic, 0),
        offset: crate::types::Offset(0),
    }
}

fn fetch_of(topics: &[&str]) -> Request {
    Request::FetchPartitions {
        max_wait_ms: 0,
        max_bytes: 1024,
        partitions: topics
            .iter()
            .map(|t| crate::wire::FetchPartition {
                target: crate::wire::TopicPartition::new(*t, 0),
                offset: crate::types::Offset(0),
                max_bytes: 1024,
            })
            .collect(),
    }
}

fn check(authz: &Authorizer, who: &str, request: &Request) -> Result<(), Denial> {
    check_request(authz, None, who, request)
}

#[test]
fn a_topic_grant_covers_that_topic_only() {
    let authz = Authorizer::from_text(DEFAULT_MODEL, TOPIC_POLICY).unwrap();
    assert_eq!(check(&authz, "alice", &produce_to("orders")), Ok(()));
    assert_eq!(check(&authz, "alice", &consume_from("orders")), Ok(()));
    for topic in ["payments", "default"] {
        let denied = check(&authz, "alice", &produce_to(topic)).unwrap_err();
        assert_eq!(
            denied,
            Denial {
                action: Action::Produce,
                object: topic.to_string()
            }
        );
        let denied = check(&authz, "alice", &consume_from(topic)).unwrap_err();
        assert_eq!(denied.action, Action::Consume);
    }
    // A version-0 Fetch reads the default topic.
    let v0 = Request::Fetch {
        offset: crate::types::Offset(0),
        max_bytes: 1,
        max_wait_ms: 0,
    };
    assert_eq!(check(&authz, "alice", &v0).unwrap_err().object, "default");
    // `*` in the policy still grants every topic.
    for topic in ["orders", "payments", "default"] {
        assert_eq!(check(&authz, "root", &produce_to(topic)), Ok(()));
        assert_eq!(check(&authz, "root", &consume_from(topic)), Ok(()));
    }
}

#[test]
fn a_fetch_over_several_topics_needs_consume_on_each() {
    let authz = Authorizer::from_text(DEFAULT_MODEL, TOPIC_POLICY).unwrap();
    assert_eq!(
        check(&authz, "alice", &fetch_of(&["orders", "orders"])),
        Ok(())
    );
    let denied = check(&authz, "alice", &fetch_of(&["orders", "payments"])).unwrap_err();
    assert_eq!(denied.object, "payments");
    assert_eq!(
        check(&authz, "root", &fetch_of(&["orders", "payments"])),
        Ok(())
    );
}

#[test]
fn topic_administration_needs_admin_on_the_topic() {
    let authz = Authorizer::from_text(DEFAULT_MODEL, TOPIC_POLICY).unwrap();
    let create = |name: &str| Request::CreateTopic {
        name: name.into(),
        settings: crate::wire::TopicSettings::default(),
    };
    let alter = |name: &str| Request::AlterTopic {
        name: name.into(),
        changes: crate::wire::TopicChanges::default(),
    };
    let delete = |name: &str| Request::DeleteTopic { name: name.into() };
    for request in [create("orders"), alter("orders"), delete("orders")] {
        assert_eq!(check(&authz, "ops", &request), Ok(()), "{request:?}");
        assert_eq!(check(&authz, "root", &request), Ok(()), "{request:?}");
        let denied = check(&authz, "alice", &request).unwrap_err();
        assert_eq!(denied.action, Action::Admin);
    }
    for request in [create("payments"), alter("payments"), delete("payments")] {
        assert!(check(&authz, "ops", &request).is_err(), "{request:?}");
        assert_eq!(check(&authz, "root", &request), Ok(()), "{request:?}");
    }
}

#[test]
fn describe_is_per_topic_and_listing_every_topic_needs_the_star() {
    let authz = Authorizer::from_text(DEFAULT_MODEL, TOPIC_POLICY).unwrap();
    let named = Request::Metadata {
        topics: vec!["orders".into()],
    };
    let all = Request::Metadata { topics: vec![] };
    let describe = Request::DescribeTopic {
        name: "orders".into(),
    };
    assert_eq!(check(&authz, "alice", &named), Ok(()));
    assert_eq!(check(&authz, "alice", &describe), Ok(()));
    assert_eq!(check(&authz, "alice", &all).unwrap_err().object, OBJECT);
    assert_eq!(
        check(&authz, "alice", &Request::GetServers)
            .unwrap_err()
            .object,
        OBJECT
    );
    assert_eq!(check(&authz, "root", &all), Ok(()));
    // Peer APIs and Ping keep their cluster-wide rules.
    assert_eq!(check(&authz, "nobody", &Request::Ping), Ok(()));
    let raft = Request::RaftBatch { messages: vec![] };
    assert_eq!(
        check(&authz, "root", &raft).unwrap_err().action,
        Action::Replicate
    );
}

#[test]
fn the_decision_cache_is_per_topic_and_bounded() {
    let authz = Authorizer::from_text(DEFAULT_MODEL, TOPIC_POLICY).unwrap();
    let mut cache = DecisionCache::default();
    assert!(cache.allows_on(&authz, "alice", "orders", Action::Produce));
    assert!(!cache.allows_on(&authz, "alice", "payments", Action::Produce));
    assert!(!cache.allows(&authz, "alice", Action::Produce));
    assert!(
        cache.allows_on(&authz, "alice", "orders", Action::Produce),
        "cached"
    );
    for i in 0..(MAX_CACHED_TOPICS * 3) {
        assert!(!cache.allows_on(&authz, "alice", &format!("t{i}"), Action::Produce));
        assert!(cache.cached_topics() <= MAX_CACHED_TOPICS);
    }
    assert!(cache.allows_on(&authz, "alice", "orders", Action::Produce));
}

#[test]
fn denials_on_a_topic_name_it_and_the_fix() {
    let m = denied_message_on("alice", Action::Produce, ApiKey::Produce, "payments");
    assert!(m.contains("on topic `payments`"), "{m}");
    assert!(m.contains("p, alice, payments, produce"), "{m}");
    let m = denied_message("alice", Action::Describe, ApiKey::Metadata);
    assert!(m.contains("p, alice, *, describe"), "{m}");
    assert!(!m.contains("on topic"), "{m}");
}
