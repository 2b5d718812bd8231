//! Where new partitions' replicas go: computed by the proposer (the metadata leader,
//! which knows the voters) and carried in the command, so `apply` stays deterministic.

use crate::types::NodeId;

use super::error::CatalogueError;
use super::settings::{Replication, MAX_PARTITIONS_PER_TOPIC};
use super::state::Catalogue;

/// What a voter already carries.
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    replicas: u64,
    leaders: u64,
}

/// Replica lists (preferred leader first) for `partitions` new partitions numbered
/// from `first_partition`, for a topic replicated as `replication` on `voters`.
///
/// Spreads replicas, then preferred leaderships, evenly over the voters, counting
/// what the catalogue already places on each (replicas on nodes that are not voters
/// are ignored). Each partition in turn goes to the `factor` voters with the fewest
/// replicas (then fewest leaderships); the one of them with the fewest leaderships
/// (then fewest replicas) leads it; remaining ties go to the lower node id. Replica
/// counts thus stay within one of each other (data is costly to move); leaderships
/// are balanced within that constraint and may differ by two when topics of
/// different factors mix (leadership is cheap to move). The result depends only on
/// the inputs.
///
/// `Replication::All` gives empty lists. Errors: a factor that is not 1, 3 or 5, or
/// more than the (distinct) voters; partition numbers beyond
/// [`MAX_PARTITIONS_PER_TOPIC`].
pub fn assign(
    voters: &[NodeId],
    catalogue: &Catalogue,
    partitions: u32,
    replication: Replication,
    first_partition: u32,
) -> Result<Vec<Vec<NodeId>>, CatalogueError> {
    let end = first_partition.checked_add(partitions);
    if end.is_none_or(|end| end > MAX_PARTITIONS_PER_TOPIC) {
        return Err(CatalogueError::InvalidSettings(format!(
            "partitions {first_partition} + {partitions} exceed {MAX_PARTITIONS_PER_TOPIC}"
        )));
    }
    replication.validate()?;
    let factor = match replication {
        Replication::All => return Ok(vec![Vec::new(); partitions as usize]),
        Replication::Factor(f) => f,
    };
    let mut voters = voters.to_vec();
    voters.sort_unstable();
    voters.dedup();
    if usize::from(factor) > voters.len() {
        return Err(CatalogueError::ReplicationTooHigh {
            factor,
            voters: voters.len(),
        });
    }
    let mut loads = current_loads(&voters, catalogue);
    let lists = (0..partitions)
        .map(|_| place(&voters, &mut loads, usize::from(factor)))
        .collect();
    Ok(lists)
}

/// The load of each voter (`loads[i]` for `voters[i]`, voters sorted).
fn current_loads(voters: &[NodeId], catalogue: &Catalogue) -> Vec<Load> {
    let mut loads = vec![Load::default(); voters.len()];
    let placed = catalogue.topics().flat_map(|t| t.partitions.iter());
    for partition in placed {
        for (rank, node) in partition.replicas.iter().enumerate() {
            if let Ok(i) = voters.binary_search(node) {
                loads[i].replicas += 1;
                loads[i].leaders += u64::from(rank == 0);
            }
        }
    }
    loads
}

/// Picks one partition's replicas and leader, and counts them in `loads`.
fn place(voters: &[NodeId], loads: &mut [Load], factor: usize) -> Vec<NodeId> {
    let mut order: Vec<usize> = (0..voters.len()).collect();
    // Voters are sorted, so the index breaks ties by node id.
    order.sort_by_key(|&i| (loads[i].replicas, loads[i].leaders, i));
    let chosen = &mut order[..factor];
    let lead = (0..factor)
        .min_by_key(|&k| {
            (
                loads[chosen[k]].leaders,
                loads[chosen[k]].replicas,
                chosen[k],
            )
        })
        .unwrap_or(0);
    chosen[..=lead].rotate_right(1);
    for (rank, &i) in chosen.iter().enumerate() {
        loads[i].replicas += 1;
        loads[i].leaders += u64::from(rank == 0);
    }
    chosen.iter().map(|&i| voters[i]).collect()
}
