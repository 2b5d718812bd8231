//! Throughput of the Raft core alone: a 3-node in-process cluster, messages delivered
//! instantly, every Ready persisted instantly (MemStorage), proposals of 64 entries
//! of 100 bytes. Prints entries committed (on the leader) per CPU-second and per
//! wall-second. Run: `cargo bench --bench raft_core` (release profile).

use std::collections::VecDeque;
use std::time::Instant;

use commitlog::raft::{
    Config, LogStart, MemStorage, Membership, Message, NodeId, ProposeError, RaftNode, ReadyAck,
    Role,
};

const BATCH_ENTRIES: usize = 64;
const ENTRY_BYTES: usize = 100;
const TARGET_ENTRIES: u64 = 2_000_000;

fn cpu_seconds() -> Option<f64> {
    // utime + stime from /proc/self/stat (fields 14 and 15, in clock ticks of 1/100 s).
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

struct Cluster {
    nodes: Vec<RaftNode<MemStorage>>,
    net: VecDeque<Message>,
}

impl Cluster {
    fn new() -> Cluster {
        let nodes = (1..=3)
            .map(|id| {
                let mut cfg = Config::new(NodeId(id));
                cfg.pre_vote = false;
                cfg.max_inflight_msgs = 256;
                cfg.max_size_per_msg = 1 << 20;
                cfg.max_uncommitted_entries = 64 * 64;
                let disk = MemStorage::new(LogStart {
                    membership: Membership::with_voters([1, 2, 3]),
                    ..LogStart::default()
                });
                RaftNode::new(cfg, disk, id).expect("valid node")
            })
            .collect();
        Cluster {
            nodes,
            net: VecDeque::new(),
        }
    }

    /// Persists and acknowledges every Ready, delivers every message, until quiet.
    fn drive(&mut self) {
        loop {
            let mut idle = true;
            for n in self.nodes.iter_mut() {
                while n.has_ready() {
                    idle = false;
                    let rd = n.ready();
                    let disk = n.storage_mut();
                    if let Some(s) = rd.snapshot.clone() {
                        disk.install(s);
                    }
                    disk.append(&rd.entries).expect("append");
                    if let Some(hs) = rd.hard_state {
                        disk.set_hard_state(hs);
                    }
                    n.advance(ReadyAck { seq: rd.seq }).expect("advance");
                    self.net.extend(rd.messages);
                }
            }
            while let Some(m) = self.net.pop_front() {
                idle = false;
                let to = (m.to.0 - 1) as usize;
                self.nodes[to].step(m).expect("step");
            }
            if idle {
                return;
            }
        }
    }
}

fn main() {
    let mut c = Cluster::new();
    for _ in 0..100 {
        c.nodes[0].tick().expect("tick");
        c.drive();
        if c.nodes[0].role() == Role::Leader {
            break;
        }
    }
    assert_eq!(c.nodes[0].role(), Role::Leader, "node 1 elected");
    let payload = vec![7u8; ENTRY_BYTES];
    let start_commit = c.nodes[0].commit_index().0;
    let cpu0 = cpu_seconds();
    let wall0 = Instant::now();
    let mut last_compact = start_commit;
    loop {
        let committed = c.nodes[0].commit_index().0 - start_commit;
        if committed >= TARGET_ENTRIES {
            break;
        }
        // Fill the uncommitted window with batches, then let the cluster run.
        for _ in 0..16 {
            match c.nodes[0].propose(vec![payload.clone(); BATCH_ENTRIES]) {
                Ok(_) => {}
                Err(ProposeError::TooManyPending) => break,
                Err(e) => panic!("propose: {e}"),
            }
        }
        c.drive();
        // Retention keeps memory bounded: compact the committed prefix everywhere.
        let commit = c.nodes[0].commit_index().0;
        if commit - last_compact > 200_000 {
            for n in c.nodes.iter_mut() {
                let through = n.commit_index().min(n.persisted_index());
                if let Ok(start) = n.compact(through) {
                    n.storage_mut().compact(start).expect("compact");
                }
            }
            last_compact = commit;
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let committed = c.nodes[0].commit_index().0 - start_commit;
    println!("raft_core: 3 nodes, batches of {BATCH_ENTRIES} x {ENTRY_BYTES} B, instant delivery + persistence");
    println!(
        "  committed {committed} entries in {wall:.2} s wall: {:.0} entries/s wall",
        committed as f64 / wall
    );
    match (cpu0, cpu_seconds()) {
        (Some(a), Some(b)) if b > a => println!(
            "  CPU {:.2} s: {:.0} entries per CPU-second (all 3 nodes on one thread)",
            b - a,
            committed as f64 / (b - a)
        ),
        _ => println!("  CPU time unavailable (no /proc/self/stat)"),
    }
}
