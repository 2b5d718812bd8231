//! Replays the committed cargo-fuzz corpus (`fuzz/corpus/<target>/*`) through the same
//! checks the fuzz targets run (`commitlog::wire::fuzzing`), so the normal test suite
//! (stable toolchain, no libFuzzer) keeps every input the fuzzer ever found
//! interesting free of panics and round-trip failures.

use std::path::{Path, PathBuf};

use commitlog::wire::{decode_request, decode_response, fuzzing, ApiKey, DecodeError};

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
/// `resp_*` decode as a response to some API, `bad_*` are rejected by both (as a
/// response to any API with a structured body: a Raft body is opaque, so any bytes
/// after a response header decode as one).
#[test]
fn named_seeds_decode_as_named() {
    for (path, data) in corpus("frame_decoder") {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let as_response = ApiKey::ALL
            .iter()
            .filter(|api| **api != ApiKey::RaftMessage)
            .any(|api| decode_response(&data, *api).is_ok());
        if name.starts_with("req_") {
            assert!(decode_request(&data).is_ok(), "{name}");
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
