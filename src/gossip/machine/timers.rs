//! Timer-driven work: probe rounds, ping-req, Lifeguard health, suspicion expiry,
//! forgetting, gossip fan-out.

use std::net::SocketAddr;

use super::*;

impl Gossip {
    pub(super) fn observe(&mut self, now_ms: u64) {
        // Tolerate a clock that goes backwards: time never decreases inside.
        self.now_ms = self.now_ms.max(now_ms);
        if !self.started {
            self.started = true;
            let now = self.now_ms;
            // Jitter the first probe and gossip so nodes started together do not
            // act in lockstep.
            self.next_probe_ms = now.saturating_add(self.rng.below(self.config.probe_interval_ms));
            self.next_gossip_ms =
                now.saturating_add(self.rng.below(self.config.gossip_interval_ms));
            self.next_push_pull_ms =
                now.saturating_add(self.rng.below(self.config.push_pull_interval_ms));
            self.next_reconnect_ms = now
                .saturating_add(self.config.reconnect_interval_ms)
                .saturating_add(self.rng.below(self.config.reconnect_interval_ms));
        }
    }

    pub(super) fn take_seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }

    pub(super) fn ids_where(&self, pred: impl Fn(&Entry) -> bool) -> Vec<NodeId> {
        self.members
            .iter()
            .filter(|(_, e)| pred(e))
            .map(|(id, _)| *id)
            .collect()
    }

    pub(super) fn addr_of(&self, id: NodeId) -> SocketAddr {
        self.members
            .get(&id)
            .map_or(self.me.addr, |e| e.member.addr)
    }

    pub(super) fn add_to_probe_order(&mut self, id: NodeId) {
        // Random position at or after the cursor, so a new member is probed within
        // the current pass.
        let lo = self.probe_index.min(self.probe_order.len());
        let span = (self.probe_order.len() - lo) as u64 + 1;
        let at = lo + self.rng.below(span) as usize;
        self.probe_order.insert(at, id);
    }

    pub(super) fn next_probe_target(&mut self) -> Option<NodeId> {
        // At most one full pass plus one reshuffle.
        let bound = 2 * (self.probe_order.len() + self.members.len()) + 2;
        for _ in 0..bound {
            if self.probe_index >= self.probe_order.len() {
                let mut order = self.ids_where(|e| e.member.state.is_live());
                if order.is_empty() {
                    self.probe_order.clear();
                    self.probe_index = 0;
                    return None;
                }
                self.rng.shuffle(&mut order);
                self.probe_order = order;
                self.probe_index = 0;
            }
            let id = self.probe_order[self.probe_index];
            self.probe_index += 1;
            if self
                .members
                .get(&id)
                .is_some_and(|e| e.member.state.is_live())
            {
                return Some(id);
            }
        }
        None
    }

    pub(super) fn start_probe(&mut self) {
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let Some(e) = self.members.get(&target) else {
            return;
        };
        let (addr, incarnation) = (e.member.addr, e.member.incarnation);
        let seq = self.take_seq();
        self.probe = Some(Probe {
            target,
            incarnation,
            seq,
            started_ms: self.now_ms,
            indirect_sent: false,
            acked: false,
            expected_nacks: 0,
            nacks: 0,
        });
        self.stats.probes_sent += 1;
        self.send(
            addr,
            &[encode_message(&Message::Ping { seq, target })],
            true,
        );
    }

    pub(super) fn maybe_send_indirect(&mut self) {
        let due = match &self.probe {
            Some(p) => {
                !p.acked
                    && !p.indirect_sent
                    && self.now_ms
                        >= p.started_ms
                            .saturating_add(self.scaled(self.config.probe_timeout_ms))
            }
            None => false,
        };
        if !due {
            return;
        }
        let Some(p) = self.probe.as_mut() else {
            return;
        };
        p.indirect_sent = true;
        let (target, seq) = (p.target, p.seq);
        let target_addr = self.addr_of(target);
        let helpers =
            self.ids_where(|e| e.member.state == MemberState::Alive && e.member.id != target);
        let chosen = self.rng.sample(&helpers, self.config.indirect_checks);
        if let Some(p) = self.probe.as_mut() {
            p.expected_nacks = chosen.len() as u64;
        }
        let msg = encode_message(&Message::IndirectPing {
            seq,
            target,
            target_addr,
        });
        for helper in chosen {
            let addr = self.addr_of(helper);
            self.stats.indirect_probes_sent += 1;
            self.send(addr, std::slice::from_ref(&msg), true);
        }
    }

    pub(super) fn finish_probe(&mut self) {
        let Some(p) = self.probe.take() else {
            return;
        };
        if p.acked {
            self.adjust_health(-1);
            return;
        }
        // Lifeguard: helpers that did not even nack suggest the problem is here.
        let missed_nacks = p.expected_nacks.saturating_sub(p.nacks);
        let delta = if p.expected_nacks > 0 {
            missed_nacks
        } else {
            1
        };
        self.adjust_health(delta as i64);
        // Only suspect the incarnation we probed; a refutation meanwhile wins.
        let still_same = self
            .members
            .get(&p.target)
            .is_some_and(|e| e.member.state.is_live() && e.member.incarnation == p.incarnation);
        if still_same {
            self.stats.probe_failures += 1;
            let me = self.me.id;
            self.apply_suspect(p.target, p.incarnation, me);
        }
    }

    /// `base_ms` stretched by the local health score (Lifeguard).
    pub(super) fn scaled(&self, base_ms: u64) -> u64 {
        base_ms.saturating_mul(self.stats.health_score + 1)
    }

    pub(super) fn adjust_health(&mut self, delta: i64) {
        let max = self.config.awareness_max_multiplier - 1;
        let score = self.stats.health_score as i64 + delta;
        self.stats.health_score = score.clamp(0, max as i64) as u64;
    }

    pub(super) fn expire_relays(&mut self) {
        let now = self.now_ms;
        let mut nacks = Vec::new();
        for r in self.relays.iter_mut() {
            if !r.nacked && now >= r.nack_at_ms {
                r.nacked = true;
                nacks.push((r.origin, r.origin_seq));
            }
        }
        for (origin, seq) in nacks {
            self.stats.nacks_sent += 1;
            self.send(origin, &[encode_message(&Message::Nack { seq })], true);
        }
        while self
            .relays
            .front()
            .is_some_and(|r| r.expires_ms <= self.now_ms)
        {
            self.relays.pop_front();
        }
    }

    pub(super) fn expire_suspicions(&mut self) {
        let now = self.now_ms;
        let mut expired = Vec::new();
        let mut next = u64::MAX;
        for (id, e) in &self.members {
            if let Some(s) = &e.suspicion {
                let d = s.deadline_ms();
                if d <= now {
                    expired.push((*id, e.member.incarnation));
                } else {
                    next = next.min(d);
                }
            }
        }
        self.next_suspicion_check_ms = next;
        let me = self.me.id;
        for (id, incarnation) in expired {
            self.stats.failures_declared += 1;
            log::info!("gossip: node {me} declares {id} dead");
            self.apply_dead(id, incarnation, me);
        }
    }

    pub(super) fn forget_old_members(&mut self) {
        let now = self.now_ms;
        let (dead_ms, left_ms) = (self.config.dead_retention_ms, self.config.left_retention_ms);
        let old = self.ids_where(|e| match e.member.state {
            MemberState::Dead => now >= e.state_change_ms.saturating_add(dead_ms),
            MemberState::Left => now >= e.state_change_ms.saturating_add(left_ms),
            _ => false,
        });
        for id in old {
            self.members.remove(&id);
            self.broadcasts.forget(id);
        }
    }

    pub(super) fn gossip_round(&mut self) {
        if self.broadcasts.is_empty() {
            return;
        }
        let now = self.now_ms;
        let window = self.config.gossip_to_dead_ms;
        let candidates = self.ids_where(|e| match e.member.state {
            MemberState::Alive | MemberState::Suspect => true,
            MemberState::Dead => now < e.state_change_ms.saturating_add(window),
            MemberState::Left => false,
        });
        for id in self.rng.sample(&candidates, self.config.gossip_nodes) {
            if self.broadcasts.is_empty() {
                break;
            }
            let addr = self.addr_of(id);
            self.send(addr, &[], true);
        }
    }
}
