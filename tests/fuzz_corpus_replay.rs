//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/*`) through the same
//! checks the fuzz targets run (`commitlog::wire::fuzzing`), so the normal test suite
//! (stable toolchain, no libFuzzer) keeps every input the fuzzer ever found
//! interesting free of panics and round-trip failures. The disk targets
//! (`record_format`, `index_slots`, `log_recovery`, `node_meta`) run the checks of
//! `commitlog::storage::fuzzing`; their named seeds come from `generate_disk_seeds`.

use std::path::{Path, PathBuf};

use commitlog::wire::{decode_request, decode_response_versioned, fuzzing, ApiKey, DecodeError};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("corpus dir entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            (path, data)
        })
        .collect();
    files.sort();
    files
}

/// Runs `check` on every file, collecting the names of the files that panic.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let files = corpus(target);
    let failures: Vec<String> = files
        .iter()
        .filter(|(_, data)| std::panic::catch_unwind(|| check(data)).is_err())
        .map(|(path, _)| path.display().to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{target} corpus failures: {failures:?}"
    );
    files.len()
}

#[test]
fn frame_decoder_corpus_replays_clean() {
    let n = replay("frame_decoder", fuzzing::check_frame_decoder);
    assert!((20..200).contains(&n), "{n} corpus files");
}

#[test]
fn text_decoder_corpus_replays_clean() {
    let n = replay("text_decoder", fuzzing::check_text_decoder);
    assert!((5..200).contains(&n), "{n} corpus files");
}

/// The hand-written seeds are what their names say: `req_*` decode as requests,
/// `resp_*` decode as a response to some API and version, `bad_*` are rejected by
/// both (as a response to any API with a structured body: a Raft body is opaque, so
/// any bytes after a response header decode as one, and an InitProducer answer is
/// any 10 bytes). `*_v1_*` seeds are version 1.
#[test]
fn named_seeds_decode_as_named() {
    for (path, data) in corpus("frame_decoder") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let as_response = fuzzing::api_versions()
            .filter(|(api, _)| !matches!(api, ApiKey::RaftMessage | ApiKey::InitProducer))
            .any(|(api, version)| decode_response_versioned(&data, api, version).is_ok());
        if name.starts_with("req_") {
            let frame = decode_request(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                frame.api_version >= 1,
                name.starts_with("req_v1_"),
                "{name}"
            );
        } else if name.starts_with("resp_") {
            assert!(as_response, "{name}");
        } else if name.starts_with("bad_") {
            let err = decode_request(&data).unwrap_err();
            assert!(!as_response, "{name}");
            if name.starts_with("bad_truncated") {
                assert!(matches!(err, DecodeError::Incomplete { .. }), "{name}");
            }
        }
    }
}

/// The Raft message decoder's property, as `fuzz/fuzz_targets/raft_message.rs` checks
/// it: never panic, and whatever decodes re-encodes to exactly the same bytes.
fn check_raft_message(data: &[u8]) {
    use commitlog::raft::{decode_message, encode_message};
    if let Ok(message) = decode_message(data) {
        let mut out = Vec::new();
        encode_message(&message, &mut out);
        assert_eq!(out.as_slice(), data, "re-encoding is canonical");
        assert_eq!(decode_message(&out).ok(), Some(message));
    }
}

#[test]
fn raft_message_corpus_replays_clean() {
    let n = replay("raft_message", check_raft_message);
    assert!((20..300).contains(&n), "{n} corpus files");
}

// ---------------------------------------------------------------------------------
// The on-disk formats (`commitlog::storage::fuzzing`)
// ---------------------------------------------------------------------------------

use commitlog::storage::fuzzing as disk;

#[test]
fn record_format_corpus_replays_clean() {
    let n = replay("record_format", disk::check_record_format);
    assert!((5..200).contains(&n), "{n} corpus files");
}

#[test]
fn index_slots_corpus_replays_clean() {
    let n = replay("index_slots", disk::check_index_slots);
    assert!((3..200).contains(&n), "{n} corpus files");
}

#[test]
fn log_recovery_corpus_replays_clean() {
    let n = replay("log_recovery", disk::check_log_recovery);
    assert!((5..300).contains(&n), "{n} corpus files");
}

#[test]
fn node_meta_corpus_replays_clean() {
    let n = replay("node_meta", disk::check_node_meta);
    assert!((4..200).contains(&n), "{n} corpus files");
}

/// The generated seeds are what their names say: `log_valid_*` open cleanly with
/// records, `meta_*` decode as the file they are named after.
#[test]
fn named_disk_seeds_decode_as_named() {
    use commitlog::node::meta;
    use commitlog::storage::{Log, LogConfig};
    let mut valid_logs = 0;
    for (path, data) in corpus("log_recovery") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("log_valid_") {
            continue;
        }
        let input = disk::LogInput::parse(&data);
        assert_eq!(input.to_bytes(), data, "{name}: not in canonical form");
        let dir = seed_dir(&name);
        input.write_to(&dir);
        let config: LogConfig = input.config();
        let log = Log::open(&dir, config).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(log.next_offset() > log.first_offset(), "{name}: empty");
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
        valid_logs += 1;
    }
    assert!(valid_logs >= 2, "{valid_logs} valid log seeds");
    for (path, data) in corpus("node_meta") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let file = match name.as_str() {
            "meta_identity" => meta::IDENTITY_FILE,
            "meta_hard_state" => meta::HARD_STATE_FILE,
            "meta_log_start" => meta::LOG_START_FILE,
            "meta_seeds" => meta::SEEDS_FILE,
            _ => continue,
        };
        let dir = seed_dir(&name);
        std::fs::write(dir.join(file), &data).unwrap();
        let ok = match file {
            meta::IDENTITY_FILE => meta::read_identity(&dir).is_ok_and(|v| v.is_some()),
            meta::HARD_STATE_FILE => meta::read_hard_state(&dir).is_ok_and(|v| v.is_some()),
            meta::LOG_START_FILE => meta::read_log_start(&dir).is_ok_and(|v| v.is_some()),
            _ => meta::read_seeds(&dir).is_ok_and(|v| !v.is_empty()),
        };
        assert!(ok, "{name} does not decode as {file}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

fn seed_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "commitlog-seed-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes the hand-named seeds of the disk targets into `fuzz/corpus/` from real
/// files made by the log and `node::meta`. Run it when a format changes:
/// `cargo test --test fuzz_corpus_replay -- --ignored generate_disk_seeds`.
#[test]
#[ignore]
fn generate_disk_seeds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let mut saved = std::collections::HashSet::new();
    let mut save = |target: &str, name: &str, bytes: &[u8]| {
        if saved.insert((target.to_string(), bytes.to_vec())) {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    };
    for (name, input) in seed_logs() {
        let bytes = input.to_bytes();
        save("log_recovery", &name, &bytes);
        if let Some(segment) = input.segments.first() {
            if let Some(store) = &segment.store {
                save("record_format", &format!("store_of_{name}"), store);
            }
            if let Some(index) = &segment.index {
                save("index_slots", &format!("index_of_{name}"), index);
            }
        }
    }
    for (name, bytes) in seed_meta_files() {
        save("node_meta", &name, &bytes);
    }
}

/// Real log directories: (seed name, files).
fn seed_logs() -> Vec<(String, disk::LogInput)> {
    use commitlog::storage::{Log, LogConfig, NewRecord, Offset, RecordKind, Term};
    let mut out = Vec::new();
    // (name, records, values up to, segment capacity, close cleanly, initial offset)
    let shapes: [(&str, u64, usize, u8, bool, u8); 4] = [
        ("log_valid_one_segment", 3, 12, 15, true, 0),
        ("log_valid_three_segments", 9, 20, 3, true, 1),
        ("log_valid_unclosed", 5, 30, 7, false, 0),
        ("log_valid_empty_values", 4, 0, 1, true, 2),
    ];
    for (name, count, value_max, capacity_minus_one, close, initial) in shapes {
        let config_byte = capacity_minus_one | (initial << 6);
        let dir = seed_dir(name);
        let template = disk::LogInput {
            flags: 0,
            config_byte,
            segments: Vec::new(),
            extra: Vec::new(),
        };
        let config: LogConfig = template.config();
        assert_eq!(config.initial_offset, Offset(u64::from(initial)));
        let log = Log::open(&dir, config).unwrap();
        for i in 0..count {
            let value: Vec<u8> = (0..(i as usize * 7) % (value_max + 1))
                .map(|k| k as u8)
                .collect();
            let kind = [RecordKind::Data, RecordKind::NoOp, RecordKind::Config][i as usize % 3];
            log.append(NewRecord {
                term: Term(i / 3),
                kind,
                value: &value,
            })
            .unwrap();
        }
        log.sync().unwrap();
        if close {
            log.close().unwrap();
        } else {
            drop(log);
        }
        out.push((name.to_string(), read_log_dir(&dir, template)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    let damaged = damaged_logs(&out[1].1);
    out.extend(damaged);
    out
}

/// The damage of issue 12's reproductions, applied to a three-segment log (with
/// repair and an append after recovery switched on).
fn damaged_logs(valid: &disk::LogInput) -> Vec<(String, disk::LogInput)> {
    let mut valid = valid.clone();
    valid.flags = disk::flags::REPAIR | disk::flags::APPEND;
    let last = valid.segments.len() - 1;
    let edit = |name: &str, f: &dyn Fn(&mut disk::LogInput)| {
        let mut input = valid.clone();
        f(&mut input);
        (name.to_string(), input)
    };
    fn store(input: &mut disk::LogInput, i: usize) -> &mut Vec<u8> {
        input.segments[i].store.as_mut().unwrap()
    }
    vec![
        edit("log_torn_tail", &|l| {
            let s = store(l, last);
            s.truncate(s.len() - 3);
        }),
        edit("log_flipped_length_field", &|l| store(l, 0)[5] ^= 0x5a),
        edit("log_flipped_value_byte_active", &|l| {
            let s = store(l, last);
            let at = s.len() - 1;
            s[at] ^= 1;
        }),
        edit("log_missing_first_segment", &|l| {
            l.segments[0].store = None;
            l.segments[0].index = None;
        }),
        edit("log_garbage_after_sealed", &|l| {
            store(l, 0).extend_from_slice(&[0xa5; 40])
        }),
        edit("log_zeroed_sealed_index", &|l| {
            let index = l.segments[0].index.as_mut().unwrap();
            index.iter_mut().for_each(|b| *b = 0);
        }),
    ]
}

/// The segment files of `dir` as a [`disk::LogInput`] like `template`.
fn read_log_dir(dir: &Path, mut template: disk::LogInput) -> disk::LogInput {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".store")
                .and_then(|stem| stem.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    for base in bases {
        let file = |ext: &str| std::fs::read(dir.join(format!("{base:020}.{ext}"))).ok();
        template.segments.push(disk::SegmentFiles {
            base,
            store: file("store"),
            index: file("index"),
        });
    }
    template
}

/// Real metadata files: (seed name, bytes).
fn seed_meta_files() -> Vec<(String, Vec<u8>)> {
    use commitlog::node::meta;
    use commitlog::raft::{HardState, Index, LogStart, Membership, NodeId, Term};
    let dir = seed_dir("meta");
    meta::write_identity(
        &dir,
        &meta::Identity {
            node_id: NodeId(3),
            cluster_name: "prod-eu".into(),
            origin: meta::Origin::Join,
        },
    )
    .unwrap();
    meta::write_hard_state(
        &dir,
        &HardState {
            term: Term(5),
            vote: Some(NodeId(2)),
            commit: Index(77),
        },
    )
    .unwrap();
    let mut membership = Membership::with_voters([1, 2, 3]);
    membership.learners.insert(NodeId(9));
    let start = LogStart {
        index: Index(1000),
        term: Term(4),
        membership,
    };
    meta::write_log_start(&dir, &start).unwrap();
    let seeds = [
        "127.0.0.1:7946".parse().unwrap(),
        "[::1]:7947".parse().unwrap(),
    ];
    meta::write_seeds(&dir, &seeds).unwrap();
    let files = [
        ("meta_identity", meta::IDENTITY_FILE),
        ("meta_hard_state", meta::HARD_STATE_FILE),
        ("meta_log_start", meta::LOG_START_FILE),
        ("meta_seeds", meta::SEEDS_FILE),
    ];
    let out = files
        .iter()
        .map(|(name, file)| (name.to_string(), std::fs::read(dir.join(file)).unwrap()))
        .collect();
    std::fs::remove_dir_all(&dir).unwrap();
    out
}

// ---------------------------------------------------------------------------------
// Record format v1 payloads (`commitlog::records::fuzzing`)
// ---------------------------------------------------------------------------------

#[test]
fn record_v1_corpus_replays_clean() {
    let n = replay("record_v1", commitlog::records::fuzzing::check_record_v1);
    assert!((5..200).contains(&n), "{n} corpus files");
}

/// The hand-written seeds are what their names say: `valid_*` decode, `bad_*` do not.
#[test]
fn named_record_v1_seeds_decode_as_named() {
    let mut named = 0;
    for (path, data) in corpus("record_v1") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let decoded = commitlog::records::decode(&data);
        if name.starts_with("valid_") {
            assert!(decoded.is_ok(), "{name}: {decoded:?}");
            named += 1;
        } else if name.starts_with("bad_") {
            assert!(decoded.is_err(), "{name}: {decoded:?}");
            named += 1;
        }
    }
    assert!(named >= 8, "{named} named seeds");
}
