//! Handling of received messages and the membership update rules (see the
//! parent module doc for the rules themselves).

use std::net::SocketAddr;

use super::*;

impl Gossip {
    pub(super) fn handle_message(&mut self, from: SocketAddr, sender: NodeId, msg: Message) {
        match msg {
            Message::Ping { seq, target } => {
                if target == self.me.id {
                    self.send(from, &[encode_message(&Message::Ack { seq })], true);
                }
            }
            Message::IndirectPing {
                seq,
                target,
                target_addr,
            } => {
                let relay_seq = self.take_seq();
                // Lifeguard: nack at 80% of the probe timeout if the target is silent.
                self.relays.push_back(Relay {
                    seq: relay_seq,
                    origin: from,
                    origin_seq: seq,
                    nack_at_ms: self
                        .now_ms
                        .saturating_add(self.config.probe_timeout_ms / 5 * 4),
                    nacked: false,
                    expires_ms: self.now_ms.saturating_add(self.config.probe_interval_ms),
                });
                while self.relays.len() > self.config.max_pending_relays {
                    self.relays.pop_front();
                }
                let ping = encode_message(&Message::Ping {
                    seq: relay_seq,
                    target,
                });
                self.send(target_addr, &[ping], true);
            }
            Message::Ack { seq } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    p.acked = true;
                } else if let Some(i) = self.relays.iter().position(|r| r.seq == seq) {
                    if let Some(r) = self.relays.remove(i) {
                        let ack = encode_message(&Message::Ack { seq: r.origin_seq });
                        self.send(r.origin, &[ack], true);
                    }
                }
            }
            Message::Nack { seq } => {
                if let Some(p) = self.probe.as_mut().filter(|p| p.seq == seq) {
                    p.nacks += 1;
                }
            }
            Message::Alive {
                id,
                incarnation,
                addr,
                tags,
            } => self.apply_alive(id, incarnation, addr, tags),
            Message::Suspect {
                id,
                incarnation,
                from: suspector,
            } => {
                self.correct_stale(from, id, incarnation);
                self.apply_suspect(id, incarnation, suspector);
            }
            Message::Dead {
                id,
                incarnation,
                from: declarer,
            } => {
                self.correct_stale(from, id, incarnation);
                self.apply_dead(id, incarnation, declarer);
            }
            Message::Leave { id, incarnation } => self.apply_leave(id, incarnation),
            Message::Sync {
                sync_id,
                flags,
                entries,
            } => {
                for e in entries {
                    self.merge_sync_entry(sender, e);
                }
                if flags & SYNC_REPLY_WANTED != 0
                    && !self.recent_sync_replies.contains(&(from, sync_id))
                {
                    self.recent_sync_replies.push_back((from, sync_id));
                    if self.recent_sync_replies.len() > RECENT_SYNC_REPLIES {
                        self.recent_sync_replies.pop_front();
                    }
                    // A small request buys a full-state reply (many packets): cap the
                    // replies per protocol period so spoofed requests cannot turn this
                    // node into an amplifier. Refused joiners retry.
                    if self.sync_replies_this_period < self.config.max_sync_replies_per_period {
                        self.sync_replies_this_period += 1;
                        self.stats.syncs_answered += 1;
                        self.send_sync(from, 0);
                    } else {
                        self.stats.syncs_refused += 1;
                    }
                }
            }
        }
    }

    /// Anti-entropy for stragglers: a suspicion or death notice about a member this
    /// node knows alive at a *newer* incarnation means the sender missed the
    /// refutation; answer it directly with the newer `Alive` instead of waiting for
    /// the next push-pull (before this, a node that missed a refutation could declare
    /// a live member dead when its suspicion timer ran out).
    pub(super) fn correct_stale(&mut self, to: SocketAddr, id: NodeId, incarnation: u64) {
        let current = if id == self.me.id {
            (!self.left && incarnation < self.me.incarnation).then(|| Message::Alive {
                id,
                incarnation: self.me.incarnation,
                addr: self.me.addr,
                tags: self.me.tags.clone(),
            })
        } else {
            self.members
                .get(&id)
                .filter(|e| {
                    e.member.state == MemberState::Alive && incarnation < e.member.incarnation
                })
                .map(|e| Message::Alive {
                    id,
                    incarnation: e.member.incarnation,
                    addr: e.member.addr,
                    tags: e.member.tags.clone(),
                })
        };
        if let Some(msg) = current {
            self.stats.corrections_sent += 1;
            self.send(to, &[encode_message(&msg)], false);
        }
    }

    pub(super) fn merge_sync_entry(&mut self, sender: NodeId, e: SyncEntry) {
        match e.state {
            MemberState::Alive => self.apply_alive(e.id, e.incarnation, e.addr, e.tags),
            MemberState::Suspect => {
                self.apply_alive(e.id, e.incarnation, e.addr, e.tags);
                self.apply_suspect(e.id, e.incarnation, sender);
            }
            // memberlist's rule: a remote "dead" only makes us suspect, so live
            // members on our side of a healed partition can refute.
            MemberState::Dead => self.apply_suspect(e.id, e.incarnation, sender),
            MemberState::Left => self.apply_leave(e.id, e.incarnation),
        }
    }

    pub(super) fn apply_alive(
        &mut self,
        id: NodeId,
        incarnation: u64,
        addr: SocketAddr,
        tags: Tags,
    ) {
        if id == self.me.id {
            let conflicting = incarnation == self.me.incarnation
                && (addr != self.me.addr || tags != self.me.tags);
            if incarnation > self.me.incarnation || conflicting {
                self.refute(incarnation);
            }
            return;
        }
        let now = self.now_ms;
        let kind = match self.members.get_mut(&id) {
            None => {
                if self.members.len() >= self.config.max_members {
                    self.stats.dropped_members_full += 1;
                    return;
                }
                self.members.insert(
                    id,
                    Entry {
                        member: Member {
                            id,
                            addr,
                            incarnation,
                            state: MemberState::Alive,
                            tags,
                        },
                        state_change_ms: now,
                        suspicion: None,
                    },
                );
                self.add_to_probe_order(id);
                Some(MemberEventKind::Join)
            }
            Some(e) => {
                if incarnation <= e.member.incarnation {
                    return;
                }
                let prev = e.member.state;
                let changed = e.member.addr != addr || e.member.tags != tags;
                e.member.incarnation = incarnation;
                e.member.addr = addr;
                e.member.tags = tags;
                e.member.state = MemberState::Alive;
                e.suspicion = None;
                if prev != MemberState::Alive {
                    e.state_change_ms = now;
                }
                match prev {
                    MemberState::Dead | MemberState::Left => {
                        self.add_to_probe_order(id);
                        Some(MemberEventKind::Join)
                    }
                    _ if changed => Some(MemberEventKind::Update),
                    _ => None,
                }
            }
        };
        if let Some(kind) = kind {
            self.emit(kind, id);
        }
        self.broadcast_member_alive(id);
    }

    pub(super) fn apply_suspect(&mut self, id: NodeId, incarnation: u64, suspector: NodeId) {
        if id == self.me.id {
            if incarnation >= self.me.incarnation {
                self.refute(incarnation);
            }
            return;
        }
        let now = self.now_ms;
        let live = self.live_count();
        let (min_ms, max_ms) = (
            self.config.suspicion_min_timeout_ms(live),
            self.config.suspicion_max_timeout_ms(live),
        );
        let k = if live.saturating_sub(2) >= self.config.indirect_checks {
            self.config.indirect_checks as u32
        } else {
            0
        };
        let Some(e) = self.members.get_mut(&id) else {
            return;
        };
        if incarnation < e.member.incarnation {
            return;
        }
        let deadline = match e.member.state {
            MemberState::Dead | MemberState::Left => return,
            MemberState::Suspect if incarnation == e.member.incarnation => {
                let Some(s) = e.suspicion.as_mut() else {
                    return;
                };
                if !s.confirm(suspector) {
                    return;
                }
                s.deadline_ms()
            }
            // A suspicion of a newer incarnation is a new suspicion: the member
            // refuted the old one (this node just missed the refutation), so the old
            // timer and its confirmations must not carry over.
            MemberState::Suspect | MemberState::Alive => {
                e.member.incarnation = incarnation;
                e.member.state = MemberState::Suspect;
                e.state_change_ms = now;
                let s = Suspicion::new(suspector, now, min_ms, max_ms, k);
                let deadline = s.deadline_ms();
                e.suspicion = Some(s);
                deadline
            }
        };
        self.next_suspicion_check_ms = self.next_suspicion_check_ms.min(deadline);
        let msg = encode_message(&Message::Suspect {
            id,
            incarnation,
            from: suspector,
        });
        self.broadcasts.push(id, msg);
    }

    pub(super) fn apply_dead(&mut self, id: NodeId, incarnation: u64, declarer: NodeId) {
        if id == self.me.id {
            if incarnation >= self.me.incarnation {
                self.refute(incarnation);
            }
            return;
        }
        let now = self.now_ms;
        let Some(e) = self.members.get_mut(&id) else {
            return;
        };
        if incarnation < e.member.incarnation || !e.member.state.is_live() {
            return;
        }
        e.member.incarnation = incarnation;
        e.member.state = MemberState::Dead;
        e.state_change_ms = now;
        e.suspicion = None;
        self.emit(MemberEventKind::Fail, id);
        let msg = encode_message(&Message::Dead {
            id,
            incarnation,
            from: declarer,
        });
        self.broadcasts.push(id, msg);
    }

    pub(super) fn apply_leave(&mut self, id: NodeId, incarnation: u64) {
        if id == self.me.id {
            if incarnation >= self.me.incarnation {
                self.refute(incarnation);
            }
            return;
        }
        let now = self.now_ms;
        let Some(e) = self.members.get_mut(&id) else {
            return;
        };
        if incarnation < e.member.incarnation || e.member.state == MemberState::Left {
            return;
        }
        e.member.incarnation = incarnation;
        e.member.state = MemberState::Left;
        e.state_change_ms = now;
        e.suspicion = None;
        self.emit(MemberEventKind::Leave, id);
        let msg = encode_message(&Message::Leave { id, incarnation });
        self.broadcasts.push(id, msg);
    }

    /// Someone holds a view of this node at `incarnation` that must be overridden.
    pub(super) fn refute(&mut self, incarnation: u64) {
        if self.left {
            return;
        }
        self.me.incarnation = incarnation.max(self.me.incarnation).saturating_add(1);
        self.stats.refutes += 1;
        // Lifeguard: being suspected hints that this node is the slow one.
        self.adjust_health(1);
        log::debug!(
            "gossip: node {} refutes at incarnation {}",
            self.me.id,
            self.me.incarnation
        );
        self.broadcast_self_alive();
    }

    pub(super) fn broadcast_self_alive(&mut self) {
        let msg = encode_message(&Message::Alive {
            id: self.me.id,
            incarnation: self.me.incarnation,
            addr: self.me.addr,
            tags: self.me.tags.clone(),
        });
        self.broadcasts.push(self.me.id, msg);
    }

    pub(super) fn broadcast_member_alive(&mut self, id: NodeId) {
        if let Some(e) = self.members.get(&id) {
            let msg = encode_message(&Message::Alive {
                id,
                incarnation: e.member.incarnation,
                addr: e.member.addr,
                tags: e.member.tags.clone(),
            });
            self.broadcasts.push(id, msg);
        }
    }

    pub(super) fn emit(&mut self, kind: MemberEventKind, id: NodeId) {
        if let Some(e) = self.members.get(&id) {
            let event = MemberEvent {
                kind,
                member: e.member.clone(),
            };
            log::debug!("gossip: node {} sees {:?} of {}", self.me.id, kind, id);
            self.push_output(Output::Event(event));
        }
    }
}
