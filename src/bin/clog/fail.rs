//! Failures for the user: one line that says what happened and what to do next,
//! and an exit code that says what kind of failure it was (see [`EXIT_CODES_HELP`]).

use std::io;

use commitlog::client::ClientError;
use commitlog::wire::ErrorCode;

/// Any other failure.
pub(crate) const EXIT_OTHER: u8 = 1;
/// Wrong flags or arguments (clap uses 2 too).
pub(crate) const EXIT_USAGE: u8 = 2;
/// The server or cluster cannot be reached or cannot serve (refused, reset, timeout,
/// no leader, no quorum, unhealthy).
pub(crate) const EXIT_UNAVAILABLE: u8 = 3;
/// Authentication (TLS, certificates) or permission (ACL).
pub(crate) const EXIT_AUTH: u8 = 4;
/// Not found or out of range (an offset outside the log).
pub(crate) const EXIT_NOT_FOUND: u8 = 5;
/// Bad data: undecodable input, a record too large, a malformed frame.
pub(crate) const EXIT_DATA: u8 = 6;
/// The topic to create exists already.
pub(crate) const EXIT_EXISTS: u8 = 7;
/// Interrupted by Ctrl-C (SIGINT).
pub(crate) const EXIT_INTERRUPTED: u8 = 130;

/// The exit code table, for `--help` (kept next to the constants above).
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    success
  1    other failure
  2    usage: wrong flags, arguments or addresses; an invalid topic name or
       setting (INVALID_TOPIC, INVALID_CONFIG)
  3    unreachable or unavailable: nothing listens, connection lost, timeout,
       no leader or quorum (after --retry-ms), unhealthy (`clog health`)
  4    authentication or permission: TLS certificates, ACL
  5    not found or out of range: an offset outside the log, an unknown topic
       or partition (UNKNOWN_TOPIC)
  6    data error: undecodable input, a record too large
  7    the topic already exists (TOPIC_EXISTS)
  130  interrupted (Ctrl-C)";

/// An error for the user: what happened and what to do next, and the exit code.
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code,
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_USAGE, message)
    }

    pub(crate) fn data(message: impl Into<String>) -> Failure {
        Failure::new(EXIT_DATA, message)
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Failure {
        Failure::new(EXIT_OTHER, e.to_string())
    }
}

/// Explains a client error met while talking to `addr` (the seeds, or one server).
pub(crate) fn explain(addr: &str, e: ClientError) -> Failure {
    let (code, hint) = match &e {
        ClientError::Io(io) => explain_io(addr, io),
        ClientError::Timeout => (
            EXIT_UNAVAILABLE,
            "the server did not answer in time; check it is healthy (`clog health`) or raise --timeout-ms".to_string(),
        ),
        ClientError::Server { code, message, .. } => explain_code(*code, message),
        ClientError::Protocol(_) => (
            EXIT_OTHER,
            format!("is {addr} really a commitlogd server? versions may differ"),
        ),
    };
    if hint.is_empty() {
        return Failure::new(code, e.to_string());
    }
    Failure::new(code, format!("{e} ({hint})"))
}

fn explain_io(addr: &str, io: &io::Error) -> (u8, String) {
    let text = io.to_string();
    match io.kind() {
        io::ErrorKind::ConnectionRefused => (
            EXIT_UNAVAILABLE,
            format!("nothing listens there: is commitlogd running at {addr}? start one with `commitlogd --dev` or `make run`, or point --addr / CLOG_ADDR at a running node"),
        ),
        io::ErrorKind::InvalidInput => (
            EXIT_UNAVAILABLE,
            "check the host name in --addr / CLOG_ADDR (host:port, e.g. 127.0.0.1:8400)".to_string(),
        ),
        io::ErrorKind::InvalidData => (EXIT_AUTH, tls_hint(&text)),
        _ => (
            EXIT_UNAVAILABLE,
            format!("the connection to {addr} failed; check the node is up (`clog health`) and retry"),
        ),
    }
}

/// What to check for a TLS failure, by the alert or verification error rustls names.
pub(crate) fn tls_hint(text: &str) -> String {
    let fix = if text.contains("CertificateRequired") {
        "the server requires a client certificate: pass --cert and --key (or CLOG_CERT, CLOG_KEY)"
    } else if text.contains("UnknownCA") || text.contains("DecryptError") {
        "the server does not trust your client certificate: use a --cert issued by the server's client CA (--server-tls-ca-file)"
    } else if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        "the server's certificate is not issued by --ca: pass the CA that signed the server certificate"
    } else if text.contains("NotValidForName") {
        "the host in --addr is not in the server certificate's names: connect by a name or IP it lists"
    } else if text.contains("Expired") {
        "a certificate has expired: issue a new one"
    } else {
        "TLS failed: check --ca (the CA of the server's certificate), --cert and --key (a client certificate the server's CA issued, not expired)"
    };
    fix.to_string()
}

fn explain_code(code: ErrorCode, message: &str) -> (u8, String) {
    // The server's message already says what to do for these; do not repeat it.
    let said = ["Do:", "ask the operator", "smaller"]
        .iter()
        .any(|s| message.contains(s));
    let (exit, hint) = match code {
        ErrorCode::OffsetOutOfRange => (EXIT_NOT_FOUND, "use an offset inside the range above"),
        ErrorCode::FrameTooLarge | ErrorCode::RecordTooLarge => (EXIT_DATA, "send smaller records or batches (--batch)"),
        ErrorCode::Malformed => (EXIT_DATA, ""),
        ErrorCode::Unauthenticated => (
            EXIT_AUTH,
            "this server requires TLS: pass --ca, --cert and --key (or CLOG_CA, CLOG_CERT, CLOG_KEY)",
        ),
        ErrorCode::PermissionDenied => (EXIT_AUTH, "ask the operator for the action (README: Secure setup)"),
        ErrorCode::UnknownTopic => (EXIT_NOT_FOUND, "`clog topic list` shows the topics, `clog topic describe NAME` their partitions"),
        ErrorCode::TopicExists => (EXIT_EXISTS, "use it (`clog topic describe NAME`) or pick another name"),
        // The server's message names the rule the name breaks.
        ErrorCode::InvalidTopic => (EXIT_USAGE, ""),
        ErrorCode::InvalidGroup => (EXIT_USAGE, ""),
        ErrorCode::InvalidConfig => (EXIT_USAGE, "fix the setting the message names (`clog topic create --help`)"),
        // The server's message names the record and what is wrong with it.
        ErrorCode::InvalidRecord => (EXIT_DATA, ""),
        // Idempotent produce refusals: nothing of the batch was written.
        ErrorCode::OutOfOrderSequence | ErrorCode::UnknownProducer => (
            EXIT_UNAVAILABLE,
            "the producer was re-initialised; records of this batch may be missing: send them again (a copy written earlier may then appear twice)",
        ),
        ErrorCode::ProducerFenced => (EXIT_OTHER, "a newer instance of this producer runs; stop this one"),
        ErrorCode::DuplicateTooOld => (EXIT_OTHER, "the batch was written long ago; it is not written again"),
        ErrorCode::Unavailable | ErrorCode::NotLeader | ErrorCode::Timeout | ErrorCode::TooManyConnections => {
            (EXIT_UNAVAILABLE, "the cluster could not serve within --retry-ms; check `clog health --cluster`")
        }
        _ => (EXIT_OTHER, "see the server log for details"),
    };
    let hint = if said || message.contains(hint) {
        ""
    } else {
        hint
    };
    (exit, hint.to_string())
}
