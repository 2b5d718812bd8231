//! Fuzz the gossip packet decoder and the state machine's packet path.
//!
//! Properties: decoding arbitrary bytes never panics (with and without a key); a
//! packet that decodes re-encodes to one that decodes to the same messages; and a
//! state machine fed the bytes (cluster name "" so fuzzed packets reach the message
//! handlers) never panics and keeps its bounded queues bounded.
//!
//! The packet decoder runs under the counting allocator, bounded by `FACTOR` times
//! the packet length.
//!
//! Run: `cargo +nightly fuzz run gossip_packet` (from the project root). The
//! minimized corpus in `fuzz/corpus/gossip_packet/` is replayed by the normal test
//! suite (`gossip::machine::tests::fuzz_corpus_replays_without_panics`).
#![no_main]

use commitlog::gossip::codec::{decode_packet, decode_plain, encode_message, PacketBuilder};
use commitlog::gossip::config::MAX_PACKET_BYTES;
use commitlog::gossip::crypto::Cipher;
use commitlog::gossip::{Gossip, GossipConfig, Member, MemberState, Tags};
use commitlog::types::NodeId;
use commitlog_fuzz::{bounded, wire_budget_bytes, CountingAlloc};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// An Alive message or Sync entry with one empty tag is ~27 bytes on the wire but
/// a member struct plus a `BTreeMap` leaf node (~550 bytes) in memory: ~23 times.
/// Still bounded (a packet is at most 64 KiB), and far below what a length field
/// trusted unchecked would cost.
const FACTOR: usize = 32;

fuzz_target!(|data: &[u8]| {
    let max = wire_budget_bytes(data.len(), FACTOR);
    let cipher = Cipher::new(&[0x42; 32]);
    let _ = bounded("decode_packet (keyed)", data.len(), max, || {
        decode_packet(data, Some(&cipher))
    });

    let plain = bounded("decode_packet", data.len(), max, || {
        decode_packet(data, None)
    });
    if let Ok(packet) = plain {
        let mut b = PacketBuilder::new(&packet.cluster, packet.sender, MAX_PACKET_BYTES);
        for m in &packet.messages {
            assert!(b.try_push(&encode_message(m)), "re-encoded packet grew");
        }
        let again = decode_plain(&b.into_plain()).expect("re-encoded packet decodes");
        assert_eq!(again, packet);
    }

    let mut config = GossipConfig::lan();
    config.cluster_name = String::new();
    let local = Member {
        id: NodeId(1),
        addr: "127.0.0.1:7946".parse().expect("addr"),
        incarnation: 0,
        state: MemberState::Alive,
        tags: Tags::new(),
    };
    let mut g = Gossip::new(config, local, 7).expect("valid config");
    let from = "127.0.0.1:7947".parse().expect("addr");
    g.handle_packet(from, data, 1);
    g.tick(2_000);
    let mut outputs = 0usize;
    while g.poll_output().is_some() {
        outputs += 1;
    }
    assert!(outputs <= g.config().max_pending_outputs);
});
