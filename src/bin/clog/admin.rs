//! The `servers`, `status` and `health` commands (they need the `describe` action:
//! GetServers and Status). Text tables or, with `-o json`, JSON.

use std::io::Write;
use std::time::Instant;

use serde_json::{json, Value};

use commitlog::client::cluster::{report, Member};
use commitlog::client::Result as ClientResult;
use commitlog::wire::{ServerRole, StatusInfo};

use crate::fail::{explain, Failure, EXIT_UNAVAILABLE};
use crate::{connect, connect_first, HealthArgs, Out, Output, OutputKind, Settings};

fn member_json(m: &Member) -> Value {
    json!({
        "id": m.id.0,
        "name": m.name,
        "address": m.addr,
        "role": m.role.name(),
        "live": m.live,
    })
}

fn status_json(m: &Member, status: &ClientResult<StatusInfo>, leader_last: Option<u64>) -> Value {
    match status {
        Ok(s) => json!({
            "id": m.id.0,
            "name": m.name,
            "address": m.addr,
            "role": s.role.name(),
            "term": s.term.0,
            "commit": s.commit_index.0,
            "last": s.last_index.0,
            "first": s.first_index.0,
            "lag": lag(s, leader_last),
        }),
        Err(e) => json!({
            "id": m.id.0,
            "name": m.name,
            "address": m.addr,
            "error": e.to_string(),
        }),
    }
}

/// A follower's lag behind the leader's last index (`None` for the leader, or when
/// no leader answered).
fn lag(s: &StatusInfo, leader_last: Option<u64>) -> Option<u64> {
    match (s.role, leader_last) {
        (ServerRole::Leader, _) | (_, None) => None,
        (_, Some(l)) => Some(l.saturating_sub(s.last_index.0)),
    }
}

fn leader_last(rows: &[(Member, ClientResult<StatusInfo>)]) -> Option<u64> {
    rows.iter().find_map(|(_, s)| match s {
        Ok(s) if s.role == ServerRole::Leader => Some(s.last_index.0),
        _ => None,
    })
}

fn write_json_lines(out: &mut Out<'_>, values: &[Value]) -> std::io::Result<()> {
    for v in values {
        serde_json::to_writer(&mut *out, v)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

pub(crate) fn servers(s: &Settings, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(s)?;
    let members = client.servers().map_err(|e| explain(&s.addr, e))?;
    match s.output {
        OutputKind::Text => out.write_all(report::servers_table(&members).as_bytes())?,
        OutputKind::Json => {
            write_json_lines(out, &members.iter().map(member_json).collect::<Vec<_>>())?
        }
    }
    Ok(())
}

pub(crate) fn status(s: &Settings, out: &mut Out<'_>) -> Result<(), Output> {
    let mut client = connect(s)?;
    let rows = client.status_all().map_err(|e| explain(&s.addr, e))?;
    match s.output {
        OutputKind::Text => out.write_all(report::status_table(&rows).as_bytes())?,
        OutputKind::Json => {
            let last = leader_last(&rows);
            let values: Vec<Value> = rows
                .iter()
                .map(|(m, st)| status_json(m, st, last))
                .collect();
            write_json_lines(out, &values)?;
        }
    }
    let down = rows.iter().filter(|(_, st)| st.is_err()).count();
    if down > 0 {
        return Err(Failure::new(
            EXIT_UNAVAILABLE,
            format!(
                "{down} of {} members did not answer (see above)",
                rows.len()
            ),
        )
        .into());
    }
    Ok(())
}

pub(crate) fn health(s: &Settings, args: &HealthArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let (summary, problems, members) = if args.cluster {
        cluster_health(s, args.max_lag)?
    } else {
        node_health(s)?
    };
    match s.output {
        OutputKind::Text if problems.is_empty() => writeln!(out, "ok {summary}")?,
        OutputKind::Text => {
            for p in &problems {
                writeln!(out, "problem: {p}")?;
            }
        }
        OutputKind::Json => {
            let v = json!({
                "healthy": problems.is_empty(),
                "summary": summary,
                "problems": problems,
                "members": members,
            });
            write_json_lines(out, &[v])?;
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let what = if args.cluster {
        "the cluster"
    } else {
        "the node"
    };
    Err(Failure::new(
        EXIT_UNAVAILABLE,
        format!(
            "{what} is not healthy: {} problem(s) (see above)",
            problems.len()
        ),
    )
    .into())
}

type Health = (String, Vec<String>, Vec<Value>);

/// One node: it answers Ping and Status, and it is not a candidate (it knows of a
/// leader, or is one).
fn node_health(s: &Settings) -> Result<Health, Failure> {
    let first = s.first_seed();
    let started = Instant::now();
    let mut client = connect_first(s)?;
    client.ping().map_err(|e| explain(first, e))?;
    let rtt_us = started.elapsed().as_micros();
    let st = client.status().map_err(|e| explain(first, e))?;
    let mut problems = Vec::new();
    if st.role == ServerRole::Unknown {
        problems.push(format!(
            "{} at {first} knows no leader (term {}): an election is under way or it cannot reach a quorum",
            st.node_name, st.term
        ));
    }
    let summary = format!(
        "{} at {first}: role={} term={} commit={} first={} last={} (connect+ping {rtt_us} us)",
        st.node_name, st.role, st.term, st.commit_index, st.first_index, st.last_index
    );
    let member = json!({
        "name": st.node_name, "address": first, "role": st.role.name(), "term": st.term.0,
        "commit": st.commit_index.0, "last": st.last_index.0, "first": st.first_index.0,
    });
    Ok((summary, problems, vec![member]))
}

/// Every member: each answers, exactly one leader (in the highest term), a quorum of
/// voters answers, every follower within `max_lag` of the leader's last index.
fn cluster_health(s: &Settings, max_lag: u64) -> Result<Health, Failure> {
    let mut client = connect(s)?;
    let rows = client.status_all().map_err(|e| explain(&s.addr, e))?;
    let last = leader_last(&rows);
    let mut problems = Vec::new();
    for (m, st) in &rows {
        match st {
            Err(e) => problems.push(format!("{} ({}) does not answer: {e}", m.name, m.addr)),
            Ok(st) => {
                if let Some(l) = lag(st, last).filter(|l| *l > max_lag) {
                    problems.push(format!(
                        "{} ({}) lags {l} entries behind the leader (more than --max-lag {max_lag})",
                        m.name, m.addr
                    ));
                }
            }
        }
    }
    let leaders: Vec<&Member> = rows
        .iter()
        .filter(|(_, st)| st.as_ref().is_ok_and(|st| st.role == ServerRole::Leader))
        .map(|(m, _)| m)
        .collect();
    let top_term = rows
        .iter()
        .filter_map(|(_, st)| st.as_ref().ok())
        .map(|st| st.term.0)
        .max();
    let current_leaders = rows
        .iter()
        .filter(|(_, st)| {
            st.as_ref()
                .is_ok_and(|st| st.role == ServerRole::Leader && Some(st.term.0) == top_term)
        })
        .count();
    if current_leaders == 0 {
        problems.push("no leader: an election is under way or there is no quorum".to_string());
    }
    let voters = rows
        .iter()
        .filter(|(m, _)| m.role != ServerRole::Learner)
        .count();
    let answering = rows
        .iter()
        .filter(|(m, st)| m.role != ServerRole::Learner && st.is_ok())
        .count();
    if answering < voters / 2 + 1 {
        problems.push(format!(
            "no quorum: {answering} of {voters} voters answer (a majority, {}, is needed)",
            voters / 2 + 1
        ));
    }
    let leader = leaders
        .first()
        .map_or("none".to_string(), |m| format!("{} ({})", m.name, m.addr));
    let worst_lag = rows
        .iter()
        .filter_map(|(_, st)| st.as_ref().ok().and_then(|st| lag(st, last)))
        .max()
        .unwrap_or(0);
    let summary = format!(
        "{} members, {answering} of {voters} voters answer, leader {leader}, largest lag {worst_lag}",
        rows.len()
    );
    let members = rows
        .iter()
        .map(|(m, st)| status_json(m, st, last))
        .collect();
    Ok((summary, problems, members))
}
