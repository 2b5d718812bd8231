//! Building and queueing packets: piggy-backing, sealing, chunked state exchange.

use std::net::SocketAddr;

use super::*;

impl Gossip {
    pub(super) fn plain_budget(&self) -> usize {
        max_plain_bytes(self.config.max_packet_bytes, self.cipher.is_some())
    }

    /// Sends `messages` (encoded) in one packet, topped up with broadcasts if
    /// `piggyback`. Sends nothing if the packet would be empty.
    pub(super) fn send(&mut self, to: SocketAddr, messages: &[Vec<u8>], piggyback: bool) {
        let mut b = PacketBuilder::new(&self.config.cluster_name, self.me.id, self.plain_budget());
        for m in messages {
            if !b.try_push(m) {
                log::warn!("gossip: message of {} bytes does not fit a packet", m.len());
            }
        }
        if piggyback && !self.broadcasts.is_empty() {
            let limit = self.config.retransmit_limit(self.live_count());
            self.broadcasts.fill(limit, |msg| b.try_push(msg));
        }
        if b.is_empty() {
            return;
        }
        let plain = b.into_plain();
        self.send_plain(to, &plain);
    }

    pub(super) fn send_plain(&mut self, to: SocketAddr, plain: &[u8]) {
        let sealed = match self.cipher.as_ref() {
            Some(c) => codec::seal_packet(plain, Some((c, self.nonces.as_mut()))),
            None => codec::seal_packet(plain, None),
        };
        let Some(packet) = sealed else {
            self.stats.seal_failures += 1;
            return;
        };
        debug_assert!(packet.len() <= self.config.max_packet_bytes);
        self.stats.packets_sent += 1;
        self.stats.bytes_sent += packet.len() as u64;
        self.push_output(Output::Send { to, packet });
    }

    pub(super) fn push_output(&mut self, out: Output) {
        if self.outputs.len() >= self.config.max_pending_outputs {
            self.stats.dropped_outputs += 1;
            return;
        }
        self.outputs.push_back(out);
    }

    /// Sends this node's full state to `to`, chunked into packets under the size
    /// limit; every chunk carries the same sync id and flags.
    pub(super) fn send_sync(&mut self, to: SocketAddr, flags: u8) {
        if flags & SYNC_REPLY_WANTED != 0 {
            self.stats.syncs_started += 1;
        }
        self.next_sync_id = self.next_sync_id.wrapping_add(1);
        let sync_id = self.next_sync_id;
        let mut entries = Vec::with_capacity(self.members.len() + 1);
        entries.push(SyncEntry {
            id: self.me.id,
            incarnation: self.me.incarnation,
            state: if self.left {
                MemberState::Left
            } else {
                MemberState::Alive
            },
            addr: self.me.addr,
            tags: self.me.tags.clone(),
        });
        entries.extend(self.members.values().map(|e| SyncEntry {
            id: e.member.id,
            incarnation: e.member.incarnation,
            state: e.member.state,
            addr: e.member.addr,
            tags: e.member.tags.clone(),
        }));
        let empty = PacketBuilder::new(&self.config.cluster_name, self.me.id, self.plain_budget());
        // Budget for entries: what a packet holds minus the message and sync headers.
        let entry_budget = empty.remaining().saturating_sub(MSG_HEADER_BYTES + 5);
        let mut chunk: Vec<SyncEntry> = Vec::new();
        let mut chunk_bytes = 0;
        for e in entries {
            let len = codec::sync_entry_len(&e);
            if chunk_bytes + len > entry_budget && !chunk.is_empty() {
                self.send_sync_chunk(to, sync_id, flags, std::mem::take(&mut chunk));
                chunk_bytes = 0;
            }
            chunk_bytes += len;
            chunk.push(e);
        }
        if !chunk.is_empty() {
            self.send_sync_chunk(to, sync_id, flags, chunk);
        }
    }

    pub(super) fn send_sync_chunk(
        &mut self,
        to: SocketAddr,
        sync_id: u32,
        flags: u8,
        entries: Vec<SyncEntry>,
    ) {
        let msg = encode_message(&Message::Sync {
            sync_id,
            flags,
            entries,
        });
        self.send(to, &[msg], false);
    }
}
