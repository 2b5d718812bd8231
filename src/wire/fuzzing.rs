//! Property checks shared by the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`) and the
//! corpus replay test (`tests/fuzz_corpus_replay.rs`), so both check the same thing.
//! Each function panics (that is the point: the fuzzer reports panics) when a
//! property fails; it must never panic for any other reason.

use super::text::{self, TextCommand, MAX_LINE_BYTES};
use super::{
    decode_fetch_response, decode_request, decode_response, decode_response_versioned,
    encode_request, encode_response, frame_len, ApiKey, DecodeError, Limits, ResponseBody,
    WireRecord,
};

/// Every (API, version) pair the codec speaks, for decoding responses (which do not
/// say what they answer).
pub fn api_versions() -> impl Iterator<Item = (ApiKey, u16)> {
    ApiKey::ALL
        .into_iter()
        .flat_map(|api| (0..=api.max_version()).map(move |v| (api, v)))
}

/// Feeds `data` to [`frame_len`] (default and tiny limits), [`decode_request`] and
/// [`decode_response_versioned`] for every API and version. For each input that
/// decodes, checks that re-encoding gives back exactly `data` and that decoding that
/// gives the same value.
pub fn check_frame_decoder(data: &[u8]) {
    for limits in [
        Limits::default(),
        Limits {
            max_frame_bytes: 16,
        },
        Limits {
            max_frame_bytes: u32::MAX,
        },
    ] {
        match frame_len(data, &limits) {
            Ok(Some(total)) => {
                assert!(total >= 4 && total <= data.len(), "frame_len {total}");
                assert!(total - 4 <= limits.effective_max_frame_bytes() as usize);
            }
            Ok(None) => {}
            Err(DecodeError::FrameTooLarge { len, max }) => assert!(len > max),
            Err(other) => panic!("frame_len returned {other:?}"),
        }
    }

    match decode_request(data) {
        Ok(frame) => {
            let (lowest, highest) = frame.request.versions();
            assert!((lowest..=highest).contains(&frame.api_version), "{frame:?}");
            assert!(frame.api_version <= frame.request.api_key().max_version());
            let mut out = Vec::new();
            encode_request(&frame, &mut out);
            assert_eq!(out, data, "request encoding is not canonical: {frame:?}");
            assert_eq!(decode_request(&out), Ok(frame));
            assert_eq!(
                super::request_frame_len(&decode_request(&out).unwrap()),
                out.len()
            );
        }
        Err(err) => check_error(&err, data),
    }

    check_fetch_view_agrees(data);

    for (api, version) in api_versions() {
        match decode_response_versioned(data, api, version) {
            Ok(frame) => {
                let mut out = Vec::new();
                encode_response(&frame, &mut out);
                assert_eq!(
                    out, data,
                    "{api} v{version} response encoding is not canonical: {frame:?}"
                );
                assert_eq!(
                    decode_response_versioned(&out, api, version),
                    Ok(frame.clone())
                );
                if version == 0 {
                    assert_eq!(decode_response(&out, api), Ok(frame.clone()));
                }
                let mut text_out = Vec::new();
                text::format_response(&frame.result, &mut text_out);
                assert!(text_out.ends_with(b"\r\n"));
            }
            Err(err) => check_error(&err, data),
        }
    }
}

/// The borrowing Fetch decoder accepts exactly what the owning one accepts, with the
/// same values.
pub fn check_fetch_view_agrees(data: &[u8]) {
    let owned = decode_response(data, ApiKey::Fetch);
    let view = decode_fetch_response(data);
    match (owned, view) {
        (Ok(owned), Ok(view)) => {
            assert_eq!(owned.correlation_id, view.correlation_id);
            match (owned.result, view.result) {
                (
                    Ok(ResponseBody::Fetch {
                        high_watermark,
                        records,
                    }),
                    Ok(body),
                ) => {
                    assert_eq!(high_watermark, body.high_watermark);
                    assert_eq!(records.len(), body.records.len());
                    let borrowed: Vec<WireRecord> = body.records.map(|r| r.to_owned()).collect();
                    assert_eq!(records, borrowed);
                }
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("Fetch decoders disagree: {a:?} vs {b:?}"),
            }
        }
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("Fetch decoders disagree: {a:?} vs {b:?}"),
    }
}

fn check_error(err: &DecodeError, data: &[u8]) {
    match err {
        DecodeError::Incomplete { needed } => assert!(*needed > 0),
        DecodeError::FrameTooLarge { len, max } => assert!(len > max),
        _ => {}
    }
    // Whatever went wrong, the server can always build (and encode) its answer.
    if let Some(resp) = err.error_response() {
        let mut out = Vec::new();
        encode_response(&resp, &mut out);
        assert!(out.len() >= 10, "error response for {data:?}");
    }
}

/// Feeds `data` to [`text::line_len`] and [`text::parse_line`]; for each line that
/// parses, checks that the canonical form parses to the same command.
pub fn check_text_decoder(data: &[u8]) {
    let _ = text::line_len(data, MAX_LINE_BYTES);
    let _ = text::line_len(data, 8);
    let line = match text::line_len(data, MAX_LINE_BYTES) {
        Ok(Some(n)) => &data[..n],
        _ => data,
    };
    if let Ok(cmd) = text::parse_line(line) {
        let mut out = Vec::new();
        let has_text_form = text::format_command(&cmd, &mut out);
        assert!(has_text_form, "parsed a command with no text form: {cmd:?}");
        assert_eq!(
            text::line_len(&out, MAX_LINE_BYTES.max(out.len())),
            Ok(Some(out.len()))
        );
        let again: TextCommand = text::parse_line(&out).unwrap_or_else(|e| {
            panic!("canonical form {out:?} of {cmd:?} does not parse: {e}");
        });
        assert_eq!(again, cmd);
    }
}
