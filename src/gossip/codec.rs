//! Gossip packet codec: pure bytes in, typed values out. No I/O.
//!
//! ## Format (all integers big-endian)
//! ```text
//! packet   := version:u8 (=1) | flags:u8 | body
//!             flags bit 0 = sealed; other bits must be 0
//! body     := plain                               (not sealed)
//!           | nonce[12] | AES-256-GCM(plain) | tag[16]   (sealed; AAD = version|flags)
//! plain    := cluster_len:u8 | cluster[cluster_len] (UTF-8, <= 64) | sender:u64 | msg*
//! msg      := type:u8 | len:u16 | payload[len]    (unknown types are skipped)
//! addr     := 4:u8 | ipv4[4] | port:u16  |  6:u8 | ipv6[16] | port:u16
//! tags     := count:u8 | (klen:u8 | key | vlen:u8 | value)*   (UTF-8, <= 512 bytes)
//!
//! 1 Ping          seq:u32 | target:u64
//! 2 IndirectPing  seq:u32 | target:u64 | target_addr:addr
//! 3 Ack           seq:u32
//! 4 Alive         id:u64 | incarnation:u64 | addr | tags
//! 5 Suspect       id:u64 | incarnation:u64 | from:u64
//! 6 Dead          id:u64 | incarnation:u64 | from:u64
//! 7 Leave         id:u64 | incarnation:u64
//! 8 Sync          sync_id:u32 | flags:u8 (bit0 reply wanted, bit1 join) | entry*
//!   entry         := id:u64 | incarnation:u64 | state:u8 | addr | tags
//! 9 Nack          seq:u32   (a ping-req helper got no ack from the target in time)
//! ```
//! A packet is a compound: one or more messages, e.g. a ping followed by piggy-backed
//! membership updates. The encoder ([`PacketBuilder`]) never exceeds the byte budget it
//! was given; the decoder checks every length against the bytes actually present
//! before reading, never allocates from a length field, and returns a
//! [`DecodeError`] for anything malformed (it never panics: see the fuzz target
//! `fuzz/fuzz_targets/gossip_packet.rs`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::config::{MAX_CLUSTER_NAME_BYTES, MAX_PACKET_BYTES};
use super::crypto::{AuthError, Cipher, NonceSource, SEAL_OVERHEAD_BYTES};
use super::member::{MemberState, Tags, TagsError, MAX_TAGS_BYTES};
use crate::bytes::{ByteReader, ReadError};
use crate::types::NodeId;

/// Wire format version.
pub const VERSION: u8 = 1;
/// Flag bit: the body is sealed with the cluster key.
pub const FLAG_SEALED: u8 = 0x01;
/// Bytes before the body (version, flags).
pub const HEADER_BYTES: usize = 2;
/// Bytes of a message header (type, length).
pub const MSG_HEADER_BYTES: usize = 3;
/// Largest encoded message (u16 length).
pub const MAX_MSG_PAYLOAD_BYTES: usize = u16::MAX as usize;

const T_PING: u8 = 1;
const T_INDIRECT_PING: u8 = 2;
const T_ACK: u8 = 3;
const T_ALIVE: u8 = 4;
const T_SUSPECT: u8 = 5;
const T_DEAD: u8 = 6;
const T_LEAVE: u8 = 7;
const T_SYNC: u8 = 8;
const T_NACK: u8 = 9;

/// Sync flag: the receiver should answer with its own full state.
pub const SYNC_REPLY_WANTED: u8 = 0x01;
/// Sync flag: the sender is joining.
pub const SYNC_JOIN: u8 = 0x02;

/// One member's full record inside a state exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncEntry {
    /// Member id.
    pub id: NodeId,
    /// Its incarnation.
    pub incarnation: u64,
    /// Its state as the sender sees it.
    pub state: MemberState,
    /// Its gossip address.
    pub addr: SocketAddr,
    /// Its tags.
    pub tags: Tags,
}

/// A decoded protocol message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// Direct probe of `target`; answered with an [`Message::Ack`] carrying `seq`.
    Ping {
        /// Sequence number chosen by the prober.
        seq: u32,
        /// The member the prober means (a restarted process on a reused address with
        /// another id does not answer).
        target: NodeId,
    },
    /// Ping-req: probe `target` on the sender's behalf and forward its ack.
    IndirectPing {
        /// The requester's sequence number, echoed in the forwarded ack.
        seq: u32,
        /// Member to probe.
        target: NodeId,
        /// Where to probe it.
        target_addr: SocketAddr,
    },
    /// Answer to a ping.
    Ack {
        /// The ping's sequence number.
        seq: u32,
    },
    /// Lifeguard: a ping-req helper reports that the target did not answer it in
    /// time. Receiving the expected nacks tells the prober its own network is fine.
    Nack {
        /// The requester's sequence number.
        seq: u32,
    },
    /// `id` is alive at `incarnation` with this address and tags.
    Alive {
        /// Member id.
        id: NodeId,
        /// Its incarnation.
        incarnation: u64,
        /// Its gossip address.
        addr: SocketAddr,
        /// Its tags.
        tags: Tags,
    },
    /// `from` suspects `id` at `incarnation`.
    Suspect {
        /// Suspected member.
        id: NodeId,
        /// Incarnation suspected.
        incarnation: u64,
        /// Who suspects it (counts toward Lifeguard confirmations).
        from: NodeId,
    },
    /// `from` declared `id` dead at `incarnation`.
    Dead {
        /// Dead member.
        id: NodeId,
        /// Incarnation declared dead.
        incarnation: u64,
        /// Who declared it.
        from: NodeId,
    },
    /// `id` leaves the cluster gracefully.
    Leave {
        /// Leaving member.
        id: NodeId,
        /// Its incarnation at the time of leaving.
        incarnation: u64,
    },
    /// One chunk of a full state exchange (push-pull).
    Sync {
        /// Identifies one exchange; replies are sent once per (sender, sync_id).
        sync_id: u32,
        /// [`SYNC_REPLY_WANTED`], [`SYNC_JOIN`].
        flags: u8,
        /// Member records in this chunk.
        entries: Vec<SyncEntry>,
    },
}

/// A decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// Cluster name the sender belongs to.
    pub cluster: String,
    /// The sender's id.
    pub sender: NodeId,
    /// Messages in order.
    pub messages: Vec<Message>,
}

/// Why bytes are not a valid packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Fewer bytes than a field needs.
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// Larger than any UDP payload.
    TooLarge {
        /// Packet size.
        bytes: usize,
    },
    /// Unknown wire version.
    BadVersion(u8),
    /// Unknown flag bits.
    BadFlags(u8),
    /// Address family byte is neither 4 nor 6.
    BadAddrFamily(u8),
    /// Member state byte out of range.
    BadState(u8),
    /// A string is not UTF-8.
    BadUtf8,
    /// Cluster name longer than 64 bytes.
    ClusterNameTooLong,
    /// A tag set breaks the tag limits.
    BadTags(TagsError),
    /// A message payload has bytes its type does not use.
    TrailingBytes {
        /// Message type.
        msg_type: u8,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated { field } => write!(f, "truncated gossip packet at {field}"),
            DecodeError::TooLarge { bytes } => write!(f, "gossip packet of {bytes} bytes"),
            DecodeError::BadVersion(v) => write!(f, "unknown gossip version {v}"),
            DecodeError::BadFlags(b) => write!(f, "unknown gossip flags {b:#04x}"),
            DecodeError::BadAddrFamily(b) => write!(f, "unknown address family {b}"),
            DecodeError::BadState(b) => write!(f, "unknown member state {b}"),
            DecodeError::BadUtf8 => f.write_str("string is not UTF-8"),
            DecodeError::ClusterNameTooLong => f.write_str("cluster name longer than 64 bytes"),
            DecodeError::BadTags(e) => write!(f, "bad tags: {e}"),
            DecodeError::TrailingBytes { msg_type } => {
                write!(f, "trailing bytes in message type {msg_type}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<ReadError> for DecodeError {
    fn from(e: ReadError) -> DecodeError {
        match e {
            // No gossip field is counted up front, so a count that the bytes cannot
            // hold is one more field the packet is too short for.
            ReadError::Truncated { field, .. } | ReadError::CountTooLarge { field, .. } => {
                DecodeError::Truncated { field }
            }
            ReadError::BadUtf8 { .. } => DecodeError::BadUtf8,
        }
    }
}

/// Why a received packet was dropped before its messages were read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// Sealed with another key, tampered with, or sealed/unsealed when the local
    /// configuration says otherwise.
    Auth,
    /// Malformed.
    Decode(DecodeError),
}

impl From<DecodeError> for PacketError {
    fn from(e: DecodeError) -> PacketError {
        PacketError::Decode(e)
    }
}

impl From<ReadError> for PacketError {
    fn from(e: ReadError) -> PacketError {
        PacketError::Decode(e.into())
    }
}

impl From<AuthError> for PacketError {
    fn from(_: AuthError) -> PacketError {
        PacketError::Auth
    }
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Auth => f.write_str("gossip packet failed authentication"),
            PacketError::Decode(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for PacketError {}

// ---------------------------------------------------------------------------
// Encoding

fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn put_tags(out: &mut Vec<u8>, tags: &Tags) {
    // `Tags` guarantees <= 255 entries (512 bytes) and fields <= 255 bytes.
    out.push(tags.len() as u8);
    for (k, v) in tags.iter() {
        out.push(k.len() as u8);
        out.extend_from_slice(k.as_bytes());
        out.push(v.len() as u8);
        out.extend_from_slice(v.as_bytes());
    }
}

/// Encoded size of an address.
pub fn addr_len(addr: &SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 1 + 4 + 2,
        SocketAddr::V6(_) => 1 + 16 + 2,
    }
}

/// Encoded size of one sync entry.
pub fn sync_entry_len(entry: &SyncEntry) -> usize {
    8 + 8 + 1 + addr_len(&entry.addr) + entry.tags.encoded_len()
}

/// Appends one sync entry (used when filling a [`Message::Sync`] chunk by hand).
pub fn put_sync_entry(out: &mut Vec<u8>, e: &SyncEntry) {
    out.extend_from_slice(&e.id.0.to_be_bytes());
    out.extend_from_slice(&e.incarnation.to_be_bytes());
    out.push(e.state as u8);
    put_addr(out, &e.addr);
    put_tags(out, &e.tags);
}

/// Encodes one message (header included) and returns its bytes.
pub fn encode_message(msg: &Message) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    let msg_type = match msg {
        Message::Ping { seq, target } => {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&target.0.to_be_bytes());
            T_PING
        }
        Message::IndirectPing {
            seq,
            target,
            target_addr,
        } => {
            out.extend_from_slice(&seq.to_be_bytes());
            out.extend_from_slice(&target.0.to_be_bytes());
            put_addr(&mut out, target_addr);
            T_INDIRECT_PING
        }
        Message::Ack { seq } => {
            out.extend_from_slice(&seq.to_be_bytes());
            T_ACK
        }
        Message::Nack { seq } => {
            out.extend_from_slice(&seq.to_be_bytes());
            T_NACK
        }
        Message::Alive {
            id,
            incarnation,
            addr,
            tags,
        } => {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&incarnation.to_be_bytes());
            put_addr(&mut out, addr);
            put_tags(&mut out, tags);
            T_ALIVE
        }
        Message::Suspect {
            id,
            incarnation,
            from,
        }
        | Message::Dead {
            id,
            incarnation,
            from,
        } => {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&incarnation.to_be_bytes());
            out.extend_from_slice(&from.0.to_be_bytes());
            if matches!(msg, Message::Suspect { .. }) {
                T_SUSPECT
            } else {
                T_DEAD
            }
        }
        Message::Leave { id, incarnation } => {
            out.extend_from_slice(&id.0.to_be_bytes());
            out.extend_from_slice(&incarnation.to_be_bytes());
            T_LEAVE
        }
        Message::Sync {
            sync_id,
            flags,
            entries,
        } => {
            out.extend_from_slice(&sync_id.to_be_bytes());
            out.push(*flags);
            for e in entries {
                put_sync_entry(&mut out, e);
            }
            T_SYNC
        }
    };
    out[0] = msg_type;
    let payload = out.len() - MSG_HEADER_BYTES;
    // Callers keep sync chunks under the packet budget (<= 65507), so this holds; a
    // violation is a bug in the caller.
    assert!(payload <= MAX_MSG_PAYLOAD_BYTES, "gossip message too large");
    out[1..3].copy_from_slice(&(payload as u16).to_be_bytes());
    out
}

/// Builds the plaintext of one packet under a byte budget.
#[derive(Debug)]
pub struct PacketBuilder {
    buf: Vec<u8>,
    max_plain_bytes: usize,
    header_len: usize,
}

impl PacketBuilder {
    /// Starts a packet from `sender` in `cluster`. `max_plain_bytes` is the budget
    /// for the plaintext (see [`max_plain_bytes`]). `cluster` must be <= 64 bytes
    /// (checked by `GossipConfig::validate`).
    pub fn new(cluster: &str, sender: NodeId, max_plain_bytes: usize) -> PacketBuilder {
        let name = &cluster.as_bytes()[..cluster.len().min(MAX_CLUSTER_NAME_BYTES)];
        let mut buf = Vec::with_capacity(max_plain_bytes.min(2048));
        buf.push(name.len() as u8);
        buf.extend_from_slice(name);
        buf.extend_from_slice(&sender.0.to_be_bytes());
        let header_len = buf.len();
        PacketBuilder {
            buf,
            max_plain_bytes,
            header_len,
        }
    }

    /// Bytes still available for messages.
    pub fn remaining(&self) -> usize {
        self.max_plain_bytes.saturating_sub(self.buf.len())
    }

    /// Appends an encoded message if it fits; returns whether it did.
    pub fn try_push(&mut self, encoded_msg: &[u8]) -> bool {
        if encoded_msg.len() > self.remaining() {
            return false;
        }
        self.buf.extend_from_slice(encoded_msg);
        true
    }

    /// True when no message has been added.
    pub fn is_empty(&self) -> bool {
        self.buf.len() == self.header_len
    }

    /// The plaintext bytes.
    pub fn into_plain(self) -> Vec<u8> {
        self.buf
    }
}

/// Plaintext budget of a packet of `max_packet_bytes` on the wire.
pub fn max_plain_bytes(max_packet_bytes: usize, sealed: bool) -> usize {
    let overhead = HEADER_BYTES + if sealed { SEAL_OVERHEAD_BYTES } else { 0 };
    max_packet_bytes.saturating_sub(overhead)
}

/// Wraps a plaintext into a wire packet, sealing it when `cipher` is given. Returns
/// `None` if the nonce source or the cipher failed.
pub fn seal_packet(
    plain: &[u8],
    cipher: Option<(&Cipher, &mut dyn NonceSource)>,
) -> Option<Vec<u8>> {
    match cipher {
        None => {
            let mut out = Vec::with_capacity(HEADER_BYTES + plain.len());
            out.push(VERSION);
            out.push(0);
            out.extend_from_slice(plain);
            Some(out)
        }
        Some((cipher, nonces)) => {
            let header = [VERSION, FLAG_SEALED];
            let mut out = Vec::with_capacity(HEADER_BYTES + SEAL_OVERHEAD_BYTES + plain.len());
            out.extend_from_slice(&header);
            let nonce = nonces.next_nonce()?;
            cipher.seal_into(&header, nonce, plain, &mut out).ok()?;
            Some(out)
        }
    }
}

// ---------------------------------------------------------------------------
// Decoding

fn read_node(r: &mut ByteReader<'_>, field: &'static str) -> Result<NodeId, DecodeError> {
    Ok(NodeId(r.u64(field)?))
}

fn read_addr(r: &mut ByteReader<'_>) -> Result<SocketAddr, DecodeError> {
    let ip = match r.u8("addr family")? {
        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("ipv4")?)),
        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("ipv6")?)),
        other => return Err(DecodeError::BadAddrFamily(other)),
    };
    Ok(SocketAddr::new(ip, r.u16("port")?))
}

fn read_tags(r: &mut ByteReader<'_>) -> Result<Tags, DecodeError> {
    let start = r.position();
    let count = r.u8("tag count")?;
    let mut tags = Tags::new();
    for _ in 0..count {
        let k = r.str_u8("tag key")?;
        let v = r.str_u8("tag value")?;
        // Bounded: at most 255 iterations of at most 512 retained bytes in total,
        // and each insert checks the limits before storing.
        tags.insert(k, v).map_err(DecodeError::BadTags)?;
    }
    let encoded_bytes = r.position() - start;
    if encoded_bytes > MAX_TAGS_BYTES {
        // Duplicate keys can make the wire form longer than the kept set; refuse.
        return Err(DecodeError::BadTags(TagsError::TooLarge { encoded_bytes }));
    }
    Ok(tags)
}

fn read_sync_entry(r: &mut ByteReader<'_>) -> Result<SyncEntry, DecodeError> {
    let id = read_node(r, "entry id")?;
    let incarnation = r.u64("entry incarnation")?;
    let state_byte = r.u8("entry state")?;
    let state = MemberState::from_u8(state_byte).ok_or(DecodeError::BadState(state_byte))?;
    let addr = read_addr(r)?;
    let tags = read_tags(r)?;
    Ok(SyncEntry {
        id,
        incarnation,
        state,
        addr,
        tags,
    })
}

fn decode_message(msg_type: u8, payload: &[u8]) -> Result<Option<Message>, DecodeError> {
    let mut r = ByteReader::new(payload);
    let msg = match msg_type {
        T_PING => Message::Ping {
            seq: r.u32("ping seq")?,
            target: read_node(&mut r, "ping target")?,
        },
        T_INDIRECT_PING => Message::IndirectPing {
            seq: r.u32("ping-req seq")?,
            target: read_node(&mut r, "ping-req target")?,
            target_addr: read_addr(&mut r)?,
        },
        T_ACK => Message::Ack {
            seq: r.u32("ack seq")?,
        },
        T_NACK => Message::Nack {
            seq: r.u32("nack seq")?,
        },
        T_ALIVE => Message::Alive {
            id: read_node(&mut r, "alive id")?,
            incarnation: r.u64("alive incarnation")?,
            addr: read_addr(&mut r)?,
            tags: read_tags(&mut r)?,
        },
        T_SUSPECT | T_DEAD => {
            let id = read_node(&mut r, "id")?;
            let incarnation = r.u64("incarnation")?;
            let from = read_node(&mut r, "from")?;
            if msg_type == T_SUSPECT {
                Message::Suspect {
                    id,
                    incarnation,
                    from,
                }
            } else {
                Message::Dead {
                    id,
                    incarnation,
                    from,
                }
            }
        }
        T_LEAVE => Message::Leave {
            id: read_node(&mut r, "leave id")?,
            incarnation: r.u64("leave incarnation")?,
        },
        T_SYNC => {
            let sync_id = r.u32("sync id")?;
            let flags = r.u8("sync flags")?;
            let mut entries = Vec::new();
            // Each entry consumes >= 26 bytes, so this loop is bounded by the payload.
            while r.remaining() > 0 {
                entries.push(read_sync_entry(&mut r)?);
            }
            Message::Sync {
                sync_id,
                flags,
                entries,
            }
        }
        // Unknown types are skipped (room for later versions).
        _ => return Ok(None),
    };
    r.finish("gossip message")
        .map_err(|_| DecodeError::TrailingBytes { msg_type })?;
    Ok(Some(msg))
}

/// Decodes a plaintext (the part after the header, unsealed).
pub fn decode_plain(plain: &[u8]) -> Result<Packet, DecodeError> {
    let mut r = ByteReader::new(plain);
    let name_len = usize::from(r.u8("cluster name length")?);
    if name_len > MAX_CLUSTER_NAME_BYTES {
        return Err(DecodeError::ClusterNameTooLong);
    }
    let cluster = r.str(name_len, "cluster name")?.to_owned();
    let sender = read_node(&mut r, "sender")?;
    let mut messages = Vec::new();
    // Each message consumes >= 3 bytes: bounded by the packet size.
    while r.remaining() > 0 {
        let msg_type = r.u8("message type")?;
        let len = usize::from(r.u16("message length")?);
        let payload = r.take(len, "message payload")?;
        if let Some(msg) = decode_message(msg_type, payload)? {
            messages.push(msg);
        }
    }
    Ok(Packet {
        cluster,
        sender,
        messages,
    })
}

/// Checks the header and unseals the body: returns the plaintext. A configured
/// `cipher` requires a sealed packet and vice versa (both mismatches are
/// [`PacketError::Auth`]).
pub fn open_packet(bytes: &[u8], cipher: Option<&Cipher>) -> Result<Vec<u8>, PacketError> {
    if bytes.len() > MAX_PACKET_BYTES {
        return Err(DecodeError::TooLarge { bytes: bytes.len() }.into());
    }
    let mut r = ByteReader::new(bytes);
    let version = r.u8("version")?;
    if version != VERSION {
        return Err(DecodeError::BadVersion(version).into());
    }
    let flags = r.u8("flags")?;
    if flags & !FLAG_SEALED != 0 {
        return Err(DecodeError::BadFlags(flags).into());
    }
    let body = &bytes[HEADER_BYTES..];
    let sealed = flags & FLAG_SEALED != 0;
    match (cipher, sealed) {
        (Some(c), true) => Ok(c.open(&bytes[..HEADER_BYTES], body)?),
        (None, false) => Ok(body.to_vec()),
        _ => Err(PacketError::Auth),
    }
}

/// [`open_packet`] then [`decode_plain`].
pub fn decode_packet(bytes: &[u8], cipher: Option<&Cipher>) -> Result<Packet, PacketError> {
    let plain = open_packet(bytes, cipher)?;
    Ok(decode_plain(&plain)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gossip::crypto::CounterNonces;
    use crate::gossip::rng::Rng;

    fn addr4() -> SocketAddr {
        "127.0.0.1:7946".parse().unwrap()
    }

    fn addr6() -> SocketAddr {
        "[::1]:8401".parse().unwrap()
    }

    fn tags() -> Tags {
        Tags::new()
            .with("rpc_addr", "127.0.0.1:8400")
            .unwrap()
            .with("role", "voter")
            .unwrap()
    }

    fn all_messages() -> Vec<Message> {
        vec![
            Message::Ping {
                seq: 7,
                target: NodeId(2),
            },
            Message::IndirectPing {
                seq: u32::MAX,
                target: NodeId(3),
                target_addr: addr6(),
            },
            Message::Ack { seq: 0 },
            Message::Nack { seq: 12 },
            Message::Alive {
                id: NodeId(4),
                incarnation: 9,
                addr: addr4(),
                tags: tags(),
            },
            Message::Suspect {
                id: NodeId(5),
                incarnation: 1,
                from: NodeId(1),
            },
            Message::Dead {
                id: NodeId(5),
                incarnation: 2,
                from: NodeId(1),
            },
            Message::Leave {
                id: NodeId(u64::MAX),
                incarnation: u64::MAX,
            },
            Message::Sync {
                sync_id: 3,
                flags: SYNC_REPLY_WANTED | SYNC_JOIN,
                entries: vec![
                    SyncEntry {
                        id: NodeId(1),
                        incarnation: 0,
                        state: MemberState::Alive,
                        addr: addr4(),
                        tags: Tags::new(),
                    },
                    SyncEntry {
                        id: NodeId(6),
                        incarnation: 4,
                        state: MemberState::Left,
                        addr: addr6(),
                        tags: tags(),
                    },
                ],
            },
        ]
    }

    fn build(messages: &[Message]) -> Vec<u8> {
        let mut b = PacketBuilder::new("prod", NodeId(1), 1400);
        for m in messages {
            assert!(b.try_push(&encode_message(m)));
        }
        b.into_plain()
    }

    #[test]
    fn every_message_round_trips_plain_and_sealed() {
        let msgs = all_messages();
        let plain = build(&msgs);
        let wire = seal_packet(&plain, None).unwrap();
        let p = decode_packet(&wire, None).unwrap();
        assert_eq!(p.cluster, "prod");
        assert_eq!(p.sender, NodeId(1));
        assert_eq!(p.messages, msgs);

        let cipher = Cipher::new(&[3; 32]);
        let mut nonces = CounterNonces::new(1);
        let sealed = seal_packet(&plain, Some((&cipher, &mut nonces))).unwrap();
        assert_eq!(sealed.len(), wire.len() + SEAL_OVERHEAD_BYTES);
        assert_eq!(
            decode_packet(&sealed, Some(&cipher)).unwrap().messages,
            msgs
        );
        // Key / no-key mismatches and a wrong key are authentication failures.
        assert_eq!(decode_packet(&sealed, None), Err(PacketError::Auth));
        assert_eq!(decode_packet(&wire, Some(&cipher)), Err(PacketError::Auth));
        let other = Cipher::new(&[4; 32]);
        assert_eq!(decode_packet(&sealed, Some(&other)), Err(PacketError::Auth));
    }

    #[test]
    fn builder_respects_its_budget() {
        let alive = encode_message(&Message::Alive {
            id: NodeId(4),
            incarnation: 9,
            addr: addr4(),
            tags: tags(),
        });
        let mut b = PacketBuilder::new("c", NodeId(1), 200);
        let mut n = 0;
        while b.try_push(&alive) {
            n += 1;
            assert!(n < 100);
        }
        assert!(n >= 1);
        let plain = b.into_plain();
        assert!(plain.len() <= 200);
        assert_eq!(decode_plain(&plain).unwrap().messages.len(), n);
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let wire = seal_packet(&build(&all_messages()), None).unwrap();
        for cut in 0..wire.len() {
            let r = decode_packet(&wire[..cut], None);
            // A cut exactly at a message boundary is a valid shorter packet.
            if let Ok(p) = &r {
                assert!(p.messages.len() < all_messages().len());
            }
        }
    }

    #[test]
    fn specific_malformations_are_rejected() {
        assert_eq!(
            decode_packet(&[2, 0], None),
            Err(PacketError::Decode(DecodeError::BadVersion(2)))
        );
        assert_eq!(
            decode_packet(&[1, 4], None),
            Err(PacketError::Decode(DecodeError::BadFlags(4)))
        );
        assert_eq!(decode_plain(&[65]), Err(DecodeError::ClusterNameTooLong));
        // Strings that are not UTF-8: the cluster name, a tag key.
        let mut plain = vec![2, 0xc3, 0x28];
        plain.extend_from_slice(&[0; 8]);
        assert_eq!(decode_plain(&plain), Err(DecodeError::BadUtf8));
        let mut plain = PacketBuilder::new("c", NodeId(1), 1400).into_plain();
        let mut payload = vec![0u8; 16];
        put_addr(&mut payload, &addr4());
        payload.extend_from_slice(&[1, 1, 0xff, 0]);
        plain.push(T_ALIVE);
        plain.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        plain.extend_from_slice(&payload);
        assert_eq!(decode_plain(&plain), Err(DecodeError::BadUtf8));
        // Bad address family inside an indirect ping.
        let mut plain = PacketBuilder::new("c", NodeId(1), 1400).into_plain();
        plain.extend_from_slice(&[T_INDIRECT_PING, 0, 13]);
        plain.extend_from_slice(&[0; 12]);
        plain.push(5);
        assert_eq!(decode_plain(&plain), Err(DecodeError::BadAddrFamily(5)));
        // Trailing bytes in an ack.
        let mut plain = PacketBuilder::new("c", NodeId(1), 1400).into_plain();
        plain.extend_from_slice(&[T_ACK, 0, 5, 0, 0, 0, 1, 9]);
        assert_eq!(
            decode_plain(&plain),
            Err(DecodeError::TrailingBytes { msg_type: T_ACK })
        );
        // Unknown message types are skipped.
        let mut plain = PacketBuilder::new("c", NodeId(1), 1400).into_plain();
        plain.extend_from_slice(&[200, 0, 2, 1, 2]);
        assert_eq!(decode_plain(&plain).unwrap().messages, vec![]);
        // A tag count larger than the bytes present.
        let mut plain = PacketBuilder::new("c", NodeId(1), 1400).into_plain();
        let mut payload = vec![0u8; 16];
        put_addr(&mut payload, &addr4());
        payload.push(255);
        plain.push(T_ALIVE);
        plain.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        plain.extend_from_slice(&payload);
        assert!(matches!(
            decode_plain(&plain),
            Err(DecodeError::Truncated { .. })
        ));
        assert!(matches!(
            decode_packet(&vec![1u8; MAX_PACKET_BYTES + 1], None),
            Err(PacketError::Decode(DecodeError::TooLarge { .. }))
        ));
    }

    #[test]
    fn random_bytes_and_mutations_never_panic() {
        let mut rng = Rng::new(0xC0DEC);
        let base = seal_packet(&build(&all_messages()), None).unwrap();
        let cipher = Cipher::new(&[3; 32]);
        for i in 0..5_000 {
            let mut bytes = if i % 2 == 0 {
                base.clone()
            } else {
                let len = rng.below(300) as usize;
                (0..len).map(|_| rng.next_u64() as u8).collect()
            };
            for _ in 0..1 + rng.below(4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.below(bytes.len() as u64) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            let _ = decode_packet(&bytes, None);
            let _ = decode_packet(&bytes, Some(&cipher));
        }
    }
}
