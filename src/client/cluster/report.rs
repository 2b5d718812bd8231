//! Human-readable tables for `clog servers` and `clog status` (pure formatting).
//!
//! `status_table` derives each follower's lag on the client side: the leader's last
//! index minus the follower's last index, from the same round of `Status` calls
//! (separate snapshots a few milliseconds apart, so a busy cluster shows a small
//! lag even when replication keeps up).

use std::fmt::Write as _;

use super::super::{ClientError, Result};
use super::Member;
use crate::wire::{ServerRole, StatusInfo};

/// `id name address role live`, one line per member, with a header.
pub fn servers_table(members: &[Member]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<16} {:<24} {:<9} live",
        "id", "name", "address", "role"
    );
    for m in members {
        let _ = writeln!(
            out,
            "{:<6} {:<16} {:<24} {:<9} {}",
            m.id,
            m.name,
            m.addr,
            m.role.name(),
            if m.live { "yes" } else { "no" }
        );
    }
    out
}

/// One line per member with its own view (role, term, commit, last, first) and its
/// lag behind the leader's last index; unreachable members show the error.
pub fn status_table(rows: &[(Member, Result<StatusInfo>)]) -> String {
    let leader_last = rows.iter().find_map(|(_, s)| match s {
        Ok(s) if s.role == ServerRole::Leader => Some(s.last_index.0),
        _ => None,
    });
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<6} {:<16} {:<24} {:<9} {:>6} {:>10} {:>10} {:>10} {:>8}",
        "id", "name", "address", "role", "term", "commit", "last", "first", "lag"
    );
    for (m, status) in rows {
        match status {
            Ok(s) => {
                let lag = match (s.role, leader_last) {
                    (ServerRole::Leader, _) => "-".to_string(),
                    (_, Some(l)) => l.saturating_sub(s.last_index.0).to_string(),
                    (_, None) => "?".to_string(),
                };
                let _ = writeln!(
                    out,
                    "{:<6} {:<16} {:<24} {:<9} {:>6} {:>10} {:>10} {:>10} {:>8}",
                    m.id,
                    m.name,
                    m.addr,
                    s.role.name(),
                    s.term,
                    s.commit_index,
                    s.last_index,
                    s.first_index,
                    lag
                );
            }
            Err(e) => {
                let _ = writeln!(
                    out,
                    "{:<6} {:<16} {:<24} unreachable: {}",
                    m.id,
                    m.name,
                    m.addr,
                    short(e)
                );
            }
        }
    }
    out
}

fn short(e: &ClientError) -> String {
    let mut s = e.to_string();
    if s.len() > 120 {
        let mut cut = 120;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{NodeId, Offset, Term};
    use std::io;

    fn member(id: u64, role: ServerRole) -> Member {
        Member {
            id: NodeId(id),
            name: format!("n{id}"),
            addr: format!("127.0.0.1:840{id}"),
            role,
            live: id != 3,
        }
    }

    fn status(role: ServerRole, last: u64) -> StatusInfo {
        StatusInfo {
            node_name: "x".into(),
            role,
            term: Term(4),
            commit_index: Offset(last.saturating_sub(1)),
            last_index: Offset(last),
            first_index: Offset(1),
        }
    }

    #[test]
    fn servers_table_has_a_header_and_one_line_per_member() {
        let t = servers_table(&[
            member(1, ServerRole::Leader),
            member(3, ServerRole::Follower),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("id ") && lines[0].ends_with("live"));
        assert!(
            lines[1].contains("n1") && lines[1].contains("leader") && lines[1].ends_with("yes")
        );
        assert!(lines[2].contains("127.0.0.1:8403") && lines[2].ends_with("no"));
    }

    #[test]
    fn status_table_shows_lag_behind_the_leader_and_unreachable_nodes() {
        let rows = vec![
            (
                member(1, ServerRole::Leader),
                Ok(status(ServerRole::Leader, 100)),
            ),
            (
                member(2, ServerRole::Follower),
                Ok(status(ServerRole::Follower, 93)),
            ),
            (
                member(3, ServerRole::Follower),
                Err(ClientError::Io(io::Error::from(
                    io::ErrorKind::ConnectionRefused,
                ))),
            ),
        ];
        let t = status_table(&rows);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].contains("commit") && lines[0].ends_with("lag"));
        assert!(lines[1].contains("leader") && lines[1].trim_end().ends_with('-'));
        let cols: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "2",
                "n2",
                "127.0.0.1:8402",
                "follower",
                "4",
                "92",
                "93",
                "1",
                "7"
            ]
        );
        assert!(
            lines[3].contains("unreachable: connection error"),
            "{}",
            lines[3]
        );
    }

    #[test]
    fn lag_is_unknown_without_a_leader() {
        let rows = vec![(
            member(2, ServerRole::Follower),
            Ok(status(ServerRole::Follower, 5)),
        )];
        assert!(status_table(&rows).lines().nth(1).unwrap().ends_with('?'));
    }
}
