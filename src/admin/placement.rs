//! Replica placement for new partitions (CreateTopics, CreatePartitions), as Kafka's
//! `AdminUtils.assignReplicasToBrokers`: leaders go round-robin over the brokers from a
//! start index, followers follow at a shift that grows each time the leaders wrap around.
//! When every broker has a rack, the round-robin runs over a rack-alternated broker list
//! and followers prefer racks the partition does not use yet. Uses only `std`.

use std::collections::BTreeMap;
use std::fmt;

/// A broker that can hold replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: i32,
    pub rack: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlacementError {
    /// replication factor < 1 or > number of brokers
    ReplicationFactor { requested: i32, available: usize },
    /// some brokers have a rack and others do not (Kafka refuses rack-aware placement then)
    MixedRacks,
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementError::ReplicationFactor { requested, .. } if *requested < 1 => {
                write!(f, "replication factor {requested} must be at least 1")
            }
            PlacementError::ReplicationFactor {
                requested,
                available,
            } => write!(
                f,
                "replication factor {requested} is larger than the {available} available brokers"
            ),
            PlacementError::MixedRacks => write!(
                f,
                "not all brokers have rack information; rack-aware replica placement needs a rack on every broker"
            ),
        }
    }
}

impl std::error::Error for PlacementError {}

/// Assigns `count` partitions numbered from `first_partition` (CreatePartitions adds after existing ones) with
/// `replication_factor` replicas each. `start` and `shift` are Kafka's random start index and
/// replica-shift seeds (the caller passes random values; tests pass fixed ones); they are taken modulo the broker count.
/// If every candidate has a rack → rack-aware placement (each partition's replicas spread across as many racks as possible, leaders spread over racks and brokers);
/// if none has a rack → rack-unaware; mixed → Err(MixedRacks).
/// The first replica of each returned list is the preferred leader. Returns one Vec<i32> per partition.
pub fn assign_replicas(
    brokers: &[Candidate],
    count: usize,
    replication_factor: i32,
    first_partition: usize,
    start: usize,
    shift: usize,
) -> Result<Vec<Vec<i32>>, PlacementError> {
    // Kafka works on a broker-id map, so a broker listed twice counts once; sorting by id
    // makes the result independent of the order the caller found the brokers in.
    let mut sorted: Vec<&Candidate> = brokers.iter().collect();
    sorted.sort_by_key(|b| b.id);
    sorted.dedup_by_key(|b| b.id);
    let n = sorted.len();

    let rf = match usize::try_from(replication_factor) {
        Ok(rf) if rf >= 1 && rf <= n => rf,
        _ => {
            return Err(PlacementError::ReplicationFactor {
                requested: replication_factor,
                available: n,
            })
        }
    };
    let with_rack = sorted.iter().filter(|b| b.rack.is_some()).count();
    if with_rack != 0 && with_rack != n {
        return Err(PlacementError::MixedRacks);
    }

    // Group by rack; without racks everyone lands in the single `None` group. Rack-unaware
    // placement is exactly the rack-aware algorithm with one rack (the rack rule never
    // rejects anything and the broker ring is just the id order), so one code path serves both.
    let mut by_rack: BTreeMap<Option<&str>, Vec<(i32, Option<&str>)>> = BTreeMap::new();
    for b in &sorted {
        let rack = b.rack.as_deref();
        by_rack.entry(rack).or_default().push((b.id, rack));
    }
    let num_racks = by_rack.len();

    // Rack-alternated ring (Kafka's getRackAlternatedBrokerList): the i-th broker of every
    // rack (racks in name order, brokers in id order) before the (i+1)-th of any, so
    // consecutive ring positions are on different racks and round-robin leaders rotate racks.
    let mut ring: Vec<(i32, Option<&str>)> = Vec::with_capacity(n);
    for round in 0.. {
        if ring.len() == n {
            break;
        }
        ring.extend(
            by_rack
                .values()
                .filter_map(|members| members.get(round).copied()),
        );
    }

    let start = start % n;
    let shift = shift % n;
    let mut assignment = Vec::with_capacity(count);
    for p in first_partition..first_partition + count {
        // Leaders: plain round-robin over the ring.
        let leader_pos = (p + start) % n;
        let mut replicas = Vec::with_capacity(rf);
        let mut racks_used = Vec::with_capacity(rf);
        replicas.push(ring[leader_pos].0);
        racks_used.push(ring[leader_pos].1);

        if rf > 1 {
            // rf > 1 implies n >= 2, so `n - 1` is a valid modulus. Followers sit at offsets
            // 1..n-1 from the leader; the shift grows by one per full lap of leaders so that
            // later laps don't repeat the same replica sets. It depends on the absolute
            // partition number, so CreatePartitions continues the pattern. Kafka scales it by
            // the rack count so a shifted follower still lands on a different rack.
            let laps = ((shift + p / n) % (n - 1)) * num_racks % (n - 1);
            let mut k = 0;
            while replicas.len() < rf {
                let (id, rack) = ring[(leader_pos + 1 + (laps + k) % (n - 1)) % n];
                k += 1;
                // Skip a broker already holding a replica, and a rack already holding one
                // while some rack still has none. This always ends within n-1 steps: those
                // visit every other ring position, and some unused broker (in an unused rack,
                // if one is left) exists because replicas.len() < rf <= n.
                let rack_ok = !racks_used.contains(&rack) || racks_used.len() >= num_racks;
                if rack_ok && !replicas.contains(&id) {
                    replicas.push(id);
                    if !racks_used.contains(&rack) {
                        racks_used.push(rack);
                    }
                }
            }
        }
        assignment.push(replicas);
    }
    Ok(assignment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeSet, HashMap};

    fn unracked(ids: &[i32]) -> Vec<Candidate> {
        ids.iter().map(|&id| Candidate { id, rack: None }).collect()
    }

    fn racked(spec: &[(i32, &str)]) -> Vec<Candidate> {
        spec.iter()
            .map(|&(id, rack)| Candidate {
                id,
                rack: Some(rack.to_string()),
            })
            .collect()
    }

    fn leader_counts(a: &[Vec<i32>]) -> HashMap<i32, usize> {
        let mut counts = HashMap::new();
        for replicas in a {
            *counts.entry(replicas[0]).or_insert(0) += 1;
        }
        counts
    }

    fn assert_distinct(a: &[Vec<i32>], rf: usize) {
        for replicas in a {
            assert_eq!(replicas.len(), rf, "{replicas:?}");
            let set: BTreeSet<_> = replicas.iter().collect();
            assert_eq!(set.len(), rf, "duplicate broker in {replicas:?}");
        }
    }

    fn rack_of(brokers: &[Candidate], id: i32) -> &str {
        let b = brokers
            .iter()
            .find(|b| b.id == id)
            .expect("placed broker exists");
        b.rack.as_deref().expect("racked broker")
    }

    #[test]
    fn unaware_three_brokers_rf3_spreads_leaders() {
        let brokers = unracked(&[3, 1, 2]);
        for start in 0..4 {
            for shift in 0..4 {
                let a = assign_replicas(&brokers, 6, 3, 0, start, shift).unwrap();
                assert_eq!(a.len(), 6);
                assert_distinct(&a, 3);
                let counts = leader_counts(&a);
                assert_eq!(counts.len(), 3);
                assert!(counts.values().all(|&c| c == 2), "{a:?}");
            }
        }
    }

    #[test]
    fn unaware_five_brokers_rf2_spreads_leaders() {
        let brokers = unracked(&[10, 11, 12, 13, 14]);
        for start in 0..5 {
            for shift in 0..5 {
                let a = assign_replicas(&brokers, 10, 2, 0, start, shift).unwrap();
                assert_distinct(&a, 2);
                let counts = leader_counts(&a);
                assert_eq!(counts.len(), 5);
                assert!(counts.values().all(|&c| c == 2), "{a:?}");
            }
        }
    }

    #[test]
    fn unaware_matches_kafka_doc_example() {
        // AdminUtils' javadoc table: brokers 0..4, start 0, shift 0.
        let a = assign_replicas(&unracked(&[0, 1, 2, 3, 4]), 10, 3, 0, 0, 0).unwrap();
        assert_eq!(a[0], vec![0, 1, 2]);
        assert_eq!(a[4], vec![4, 0, 1]);
        assert_eq!(a[5], vec![0, 2, 3]);
        assert_eq!(a[9], vec![4, 1, 2]);
    }

    #[test]
    fn aware_matches_kafka_doc_example() {
        // AdminUtils' javadoc: rack-alternated list 0,3,1,5,4,2.
        let brokers = racked(&[
            (0, "rack1"),
            (1, "rack3"),
            (2, "rack3"),
            (3, "rack2"),
            (4, "rack2"),
            (5, "rack1"),
        ]);
        let a = assign_replicas(&brokers, 7, 3, 0, 0, 0).unwrap();
        let expected = [
            [0, 3, 1],
            [3, 1, 5],
            [1, 5, 4],
            [5, 4, 2],
            [4, 2, 0],
            [2, 0, 3],
            [0, 4, 2],
        ];
        for (got, want) in a.iter().zip(expected.iter()) {
            assert_eq!(got, want);
        }
    }

    #[test]
    fn aware_three_racks_rf3_uses_every_rack_and_spreads_leaders() {
        let brokers = racked(&[(4, "a"), (2, "b"), (6, "c"), (1, "a"), (5, "b"), (3, "c")]);
        for count in [6, 12] {
            for start in 0..6 {
                for shift in 0..6 {
                    let a = assign_replicas(&brokers, count, 3, 0, start, shift).unwrap();
                    assert_distinct(&a, 3);
                    for replicas in &a {
                        let racks: BTreeSet<_> =
                            replicas.iter().map(|&id| rack_of(&brokers, id)).collect();
                        assert_eq!(racks.len(), 3, "{replicas:?}");
                    }
                    let counts = leader_counts(&a);
                    assert_eq!(counts.len(), 6);
                    assert!(counts.values().all(|&c| c == count / 6), "{a:?}");
                }
            }
        }
    }

    #[test]
    fn aware_two_racks_rf3_spans_both() {
        let brokers = racked(&[(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "a")]);
        for start in 0..5 {
            for shift in 0..5 {
                let a = assign_replicas(&brokers, 10, 3, 0, start, shift).unwrap();
                assert_distinct(&a, 3);
                for replicas in &a {
                    let racks: BTreeSet<_> =
                        replicas.iter().map(|&id| rack_of(&brokers, id)).collect();
                    assert_eq!(racks.len(), 2, "{replicas:?}");
                }
            }
        }
    }

    #[test]
    fn replication_factor_out_of_range_is_an_error() {
        let brokers = unracked(&[1, 2]);
        let err = assign_replicas(&brokers, 1, 3, 0, 0, 0).unwrap_err();
        assert_eq!(
            err,
            PlacementError::ReplicationFactor {
                requested: 3,
                available: 2
            }
        );
        assert_eq!(
            err.to_string(),
            "replication factor 3 is larger than the 2 available brokers"
        );
        assert!(assign_replicas(&brokers, 1, 0, 0, 0, 0).is_err());
        assert!(assign_replicas(&brokers, 1, -1, 0, 0, 0).is_err());
        assert!(assign_replicas(&[], 1, 1, 0, 0, 0).is_err());
        // A duplicated broker is still one broker.
        assert!(assign_replicas(&unracked(&[1, 1]), 1, 2, 0, 0, 0).is_err());
    }

    #[test]
    fn mixed_racks_is_an_error() {
        let mut brokers = racked(&[(1, "a"), (2, "b")]);
        brokers.push(Candidate { id: 3, rack: None });
        assert_eq!(
            assign_replicas(&brokers, 3, 2, 0, 0, 0),
            Err(PlacementError::MixedRacks)
        );
    }

    #[test]
    fn first_partition_continues_the_pattern() {
        let unaware = unracked(&[1, 2, 3]);
        let aware = racked(&[(1, "a"), (2, "b"), (3, "c"), (4, "a"), (5, "b"), (6, "c")]);
        for (brokers, rf) in [(&unaware, 3), (&unaware, 2), (&aware, 3)] {
            for start in 0..3 {
                for shift in 0..3 {
                    let all = assign_replicas(brokers, 6, rf, 0, start, shift).unwrap();
                    let mut split = assign_replicas(brokers, 3, rf, 0, start, shift).unwrap();
                    split.extend(assign_replicas(brokers, 3, rf, 3, start, shift).unwrap());
                    assert_eq!(all, split);
                }
            }
        }
        // Also across several laps of the leaders.
        let five = unracked(&[1, 2, 3, 4, 5]);
        let all = assign_replicas(&five, 23, 3, 0, 2, 4).unwrap();
        let tail = assign_replicas(&five, 11, 3, 12, 2, 4).unwrap();
        assert_eq!(&all[12..], &tail[..]);
    }

    #[test]
    fn zero_partitions_and_large_seeds() {
        assert_eq!(assign_replicas(&unracked(&[1]), 0, 1, 0, 0, 0), Ok(vec![]));
        let a = assign_replicas(&unracked(&[1, 2, 3]), 4, 2, 0, usize::MAX, usize::MAX).unwrap();
        assert_distinct(&a, 2);
    }
}
