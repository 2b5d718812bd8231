//! From a buffered request to the service: cut a binary frame or a text line,
//! decode it, check the ACL, and hand it to [`Service::call`](super::Service::call)
//! with a [`Responder`]; or answer an error in the connection's protocol. See the
//! module docs of [`crate::net`].

use std::sync::Arc;

use super::conn::Conn;
use super::responder::{encode_for, error_body};
use super::server::Env;
use super::{Protocol, Responder};
use crate::wire::{self, ErrorCode, ResponseFrame, FETCH_RESPONSE_PREFIX_BYTES};

impl Conn {
    /// A connection over the limit: answer in its protocol, then close.
    pub(super) fn reject(&mut self, first: u8) -> bool {
        if first == 0x00 {
            // Wait (bounded by REJECT_WAIT in the sweep) for the correlation id.
            let unread = self.unread();
            if unread.len() < 12 && !self.peer_closed {
                return false;
            }
            let correlation_id = read_correlation_id(unread).unwrap_or(0);
            let bytes = encode_for(
                Protocol::Binary,
                correlation_id,
                Err(error_body(
                    ErrorCode::TooManyConnections,
                    too_many_message(),
                )),
            );
            self.queue(&bytes);
        } else {
            self.queue(&too_many_text());
        }
        self.rstart = self.rend;
        self.closing = true;
        self.linger = true;
        true
    }

    /// Handles one binary frame if a whole one is buffered. Returns false if it needs
    /// more bytes or may not start another request now.
    pub(super) fn process_frame(&mut self, env: &Env<'_>) -> bool {
        if self.in_flight > 0 && self.in_flight >= env.config.max_in_flight_per_conn {
            return false;
        }
        let frame_len = match wire::frame_len(self.unread(), &env.limits) {
            Ok(Some(n)) => n,
            Ok(None) => return false,
            Err(e) => {
                // Only FrameTooLarge is possible here: the stream cannot be resynced.
                // wire-spec.md: answered with correlation id 0, payload unread.
                log::info!("{}: {e}; closing", self.peer);
                self.fail(
                    0,
                    ErrorCode::FrameTooLarge,
                    format!(
                        "{e}; split the request (e.g. smaller batches) or raise --max-frame-bytes"
                    ),
                );
                return true;
            }
        };
        let frame_end = self.rstart + frame_len;
        let Some(reserve_bytes) = self.admit(env, &self.rbuf[self.rstart..frame_end]) else {
            self.wants_budget = true;
            return false; // waits, unread, until answers or other connections free bytes
        };
        let decoded = wire::decode_request(&self.rbuf[self.rstart..frame_end]);
        self.rstart = frame_end;
        self.last_progress = env.now;
        match decoded {
            Ok(frame) => {
                if self.draining {
                    let (code, message) = shutting_down();
                    self.answer_error(frame.correlation_id, code, message);
                    return true;
                }
                if !self.authorized(env, &frame.request, frame.correlation_id) {
                    return true;
                }
                self.in_flight += 1;
                let mut responder = Responder::new(
                    self.key,
                    frame.correlation_id,
                    frame.request.api_key(),
                    Protocol::Binary,
                    Arc::clone(env.sink),
                );
                self.reserved_out += responder.set_allowance(reserve_bytes);
                responder.set_produce_size(crate::metrics::produce_size(&frame.request));
                let ctx = self.ctx();
                env.service.call(frame, &ctx, responder);
            }
            Err(e) => self.answer_decode_error(&e),
        }
        true
    }

    /// Answers a frame that did not decode; closes unless the error allows going on
    /// (an unknown API or version).
    fn answer_decode_error(&mut self, e: &wire::DecodeError) {
        let response = e.error_response().unwrap_or_else(|| ResponseFrame {
            correlation_id: e.correlation_id().unwrap_or(0),
            result: Err(error_body(ErrorCode::Malformed, e.to_string())),
        });
        let closes = match &response.result {
            Err(body) => body.code.closes_connection(),
            Ok(_) => true,
        };
        let mut bytes = Vec::new();
        wire::encode_response(&response, &mut bytes);
        self.queue(&bytes);
        if closes {
            log::info!("{}: bad request: {e}; closing", self.peer);
            self.rstart = self.rend;
            self.closing = true;
            self.linger = true;
        } else {
            log::debug!("{}: rejected request: {e}", self.peer);
        }
    }

    /// Handles one text line if a whole one is buffered (text is one request at a
    /// time, so answers stay in order).
    pub(super) fn process_line(&mut self, env: &Env<'_>) -> bool {
        if self.in_flight > 0 {
            return false;
        }
        let unread = self.unread();
        let consumed = match wire::text::line_len(unread, wire::text::MAX_LINE_BYTES) {
            Ok(Some(n)) => n,
            Ok(None) if self.peer_closed => unread.len(),
            Ok(None) => return false,
            Err(err) => {
                log::info!("{}: {err}; closing", self.peer);
                let mut bytes = Vec::new();
                wire::text::format_error(&err, &mut bytes);
                self.queue(&bytes);
                self.rstart = self.rend;
                self.closing = true;
                self.linger = true;
                return true;
            }
        };
        let line_len = consumed;
        let line = &unread[..line_len];
        let parsed = if self.peer_closed && line.is_empty() {
            None // nothing after the last line terminator
        } else {
            Some(wire::text::parse_line(line))
        };
        self.rstart += consumed;
        self.last_progress = env.now;
        match parsed {
            None => {}
            Some(Ok(wire::text::TextCommand::Help)) => {
                let mut bytes = Vec::new();
                wire::text::format_help(&mut bytes);
                self.queue(&bytes);
            }
            Some(Ok(wire::text::TextCommand::Quit)) => {
                self.rstart = self.rend;
                self.closing = true;
            }
            Some(Ok(wire::text::TextCommand::Request(request)))
                if self.authorized(env, &request, 0) =>
            {
                self.start_text_request(env, request);
            }
            // Denied: `authorized` has answered it.
            Some(Ok(wire::text::TextCommand::Request(_))) => {}
            Some(Err(err)) => {
                let mut bytes = Vec::new();
                wire::text::format_error(&err, &mut bytes);
                self.queue(&bytes);
            }
        }
        true
    }

    /// Hands one text request to the service. Text runs one line at a time, so its
    /// answer may always take its estimate (at least 64 KiB) from the budget.
    fn start_text_request(&mut self, env: &Env<'_>, request: wire::Request) {
        if self.draining {
            let (code, message) = shutting_down();
            let bytes = encode_for(Protocol::Text, 0, Err(error_body(code, message)));
            self.queue(&bytes);
            return;
        }
        let correlation_id = self.next_text_id;
        self.next_text_id = self.next_text_id.wrapping_add(1);
        self.in_flight += 1;
        let reserve_bytes = self.avg_response_bytes.max(MIN_FETCH_ALLOWANCE_BYTES);
        let mut responder = Responder::new(
            self.key,
            correlation_id,
            request.api_key(),
            Protocol::Text,
            Arc::clone(env.sink),
        );
        self.reserved_out += responder.set_allowance(reserve_bytes);
        responder.set_produce_size(crate::metrics::produce_size(&request));
        let ctx = self.ctx();
        // The lowest version that carries the request (a `@topic` needs v1).
        let frame = wire::RequestFrame::new(correlation_id, request);
        env.service.call(frame, &ctx, responder);
    }

    /// Checks the ACL (a no-op without [`Security`]): the request's action on each
    /// topic it names (or on `*`; `auth::objects`). A denied request is answered
    /// here in the connection's protocol and never reaches the service.
    pub(super) fn authorized(
        &mut self,
        env: &Env<'_>,
        request: &wire::Request,
        correlation_id: u32,
    ) -> bool {
        let Some(security) = env.security else {
            return true;
        };
        match self.stream.authorize(security, request, self.peer) {
            Ok(()) => true,
            Err((code, message)) => {
                let protocol = self.ctx().protocol;
                let bytes = encode_for(protocol, correlation_id, Err(error_body(code, message)));
                self.queue(&bytes);
                false
            }
        }
    }

    /// Answers with an error and keeps the connection.
    pub(super) fn answer_error(&mut self, correlation_id: u32, code: ErrorCode, message: String) {
        let bytes = encode_for(
            Protocol::Binary,
            correlation_id,
            Err(error_body(code, message)),
        );
        self.queue(&bytes);
    }

    /// Answers with an error and closes the connection once it is flushed.
    pub(super) fn fail(&mut self, correlation_id: u32, code: ErrorCode, message: String) {
        self.answer_error(correlation_id, code, message);
        self.rstart = self.rend;
        self.closing = true;
        self.linger = true;
    }
}

/// The smallest Fetch allowance worth starting a request for while others are in
/// flight; a connection with nothing in flight may always start one request.
const MIN_FETCH_ALLOWANCE_BYTES: usize = 64 * 1024;
/// The least reserved for any answer (an error frame with a message).
const MIN_RESERVATION_BYTES: usize = 256;

impl Conn {
    /// The bytes to reserve for the answer to `frame`, or `None` if it must wait.
    /// A Fetch reserves what it asks for (`max_bytes` plus the frame prefix) or, if
    /// less is free, what is free (its answer is then built smaller). A Consume
    /// answers one record of any size, which cannot be cut, so it reserves a whole
    /// frame. Other answers (acks, status, server lists) are small: they reserve this
    /// connection's moving average of answer sizes. One request may always run when
    /// none is in flight, so a connection is never starved.
    fn admit(&self, env: &Env<'_>, frame: &[u8]) -> Option<usize> {
        let alone = self.in_flight == 0;
        let room = self.room_bytes(env);
        if api_key(frame) == Some(wire::ApiKey::Consume as u16) {
            let whole_frame = env.config.max_frame_bytes as usize + 4;
            return (alone || room >= whole_frame).then_some(whole_frame);
        }
        match wire::peek_fetch_max_bytes(frame) {
            Some(max_bytes) => {
                let want = (max_bytes as usize).saturating_add(FETCH_RESPONSE_PREFIX_BYTES);
                let floor = want.min(MIN_FETCH_ALLOWANCE_BYTES);
                if alone {
                    Some(want.min(room.max(floor)))
                } else {
                    (room >= floor).then(|| want.min(room))
                }
            }
            None => {
                let estimate = self.avg_response_bytes.max(MIN_RESERVATION_BYTES);
                (alone || room >= estimate).then_some(estimate)
            }
        }
    }
}

/// The `api_key` field of a request frame, read in place.
fn api_key(frame: &[u8]) -> Option<u16> {
    let api: [u8; 2] = frame.get(4..6)?.try_into().ok()?;
    Some(u16::from_be_bytes(api))
}

/// The correlation id of a request frame, if its header is buffered:
/// `u32 len | u16 api_key | u16 version | u32 correlation_id`.
pub(super) fn read_correlation_id(buf: &[u8]) -> Option<u32> {
    let bytes: [u8; 4] = buf.get(8..12)?.try_into().ok()?;
    Some(u32::from_be_bytes(bytes))
}

pub(super) fn too_many_message() -> &'static str {
    "too many connections (the server's --max-connections limit); retry later or raise the limit"
}

pub(super) fn too_many_text() -> Vec<u8> {
    encode_for(
        Protocol::Text,
        0,
        Err(error_body(
            ErrorCode::TooManyConnections,
            too_many_message(),
        )),
    )
}

/// The answer to a request read during a graceful shutdown: it was not started.
fn shutting_down() -> (ErrorCode, String) {
    (
        ErrorCode::Unavailable,
        "the server is shutting down; this request was not served (nothing written): \
         retry on another node or after the restart"
            .to_string(),
    )
}
