//! Maglev consistent hashing (Eisenbud et al., NSDI 2016) with weights, and table diffs.
//!
//! Each real walks its own permutation of the table (offset and skip from two hashes of its
//! address and port) and claims the next free slot on its turn; a real of weight w takes w
//! turns per round. The table depends only on the set of reals and their weights, never on
//! configuration order, so two nodes with the same reals build the same table, and a real
//! that comes back gets its old slots back.

use lb_common::{hash::real_hash, maps::NO_REAL};

const OFFSET_SEED: u32 = 0x0ff5_e7a1;
const SKIP_SEED: u32 = 0x5c1b_0b2d;

/// A real as Maglev sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// Value written into the table (the real's id).
    pub id: u32,
    /// Address words (network order) and port: its identity.
    pub addr: [u32; 4],
    /// Port part of its identity.
    pub port: u16,
    /// Turns per round; 0 means no slots.
    pub weight: u32,
}

/// Builds a table of `size` slots (a prime). Without any backend of non-zero weight every slot
/// is [`NO_REAL`].
pub fn build(backends: &[Backend], size: u32) -> Vec<u32> {
    let size_usize = size as usize;
    let mut table = vec![NO_REAL; size_usize];
    let mut walkers: Vec<(u64, u64, u64, &Backend)> = backends
        .iter()
        .filter(|b| b.weight > 0)
        .map(|b| {
            let offset = u64::from(real_hash(&b.addr, b.port, OFFSET_SEED)) % u64::from(size);
            let skip = u64::from(real_hash(&b.addr, b.port, SKIP_SEED)) % (u64::from(size) - 1) + 1;
            (offset, skip, 0u64, b)
        })
        .collect();
    if walkers.is_empty() {
        return table;
    }
    // Turn order by identity, so the result does not depend on the order reals were listed in.
    walkers.sort_by_key(|(offset, skip, _, b)| (*offset, *skip, b.addr, b.port));
    let mut filled = 0usize;
    loop {
        for (offset, skip, next, backend) in walkers.iter_mut() {
            for _ in 0..backend.weight {
                // A permutation of a prime-sized table visits every slot within `size` steps.
                let slot = loop {
                    let slot = ((*offset + *next * *skip) % u64::from(size)) as usize;
                    *next += 1;
                    if table[slot] == NO_REAL {
                        break slot;
                    }
                };
                table[slot] = backend.id;
                filled += 1;
                if filled == size_usize {
                    return table;
                }
            }
        }
    }
}

/// The `(slot, new value)` writes that turn `old` into `new` (tables of equal size).
pub fn diff(old: &[u32], new: &[u32]) -> Vec<(u32, u32)> {
    old.iter()
        .zip(new)
        .enumerate()
        .filter(|(_, (o, n))| o != n)
        .map(|(slot, (_, n))| (slot as u32, *n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u32 = 65537;

    fn backend(i: u32, weight: u32) -> Backend {
        Backend {
            id: i,
            addr: [
                u32::from_be_bytes([10, 0, (i >> 8) as u8, i as u8]),
                0,
                0,
                0,
            ],
            port: 80,
            weight,
        }
    }

    fn shares(table: &[u32], n: u32) -> Vec<f64> {
        let mut counts = vec![0usize; n as usize];
        for &id in table {
            counts[id as usize] += 1;
        }
        counts
            .iter()
            .map(|&c| c as f64 / table.len() as f64)
            .collect()
    }

    #[test]
    fn every_slot_is_filled_and_equal_weights_share_equally() {
        for n in [1u32, 2, 3, 7, 10, 33] {
            let backends: Vec<Backend> = (0..n).map(|i| backend(i, 1)).collect();
            let table = build(&backends, SIZE);
            assert!(
                table.iter().all(|&id| id < n),
                "unfilled slot with {n} reals"
            );
            for share in shares(&table, n) {
                assert!(
                    (share - 1.0 / f64::from(n)).abs() < 0.01,
                    "{n} reals: share {share}"
                );
            }
        }
    }

    #[test]
    fn weights_are_honoured_within_one_percent() {
        let weights = [1u32, 2, 3, 4, 10];
        let total: u32 = weights.iter().sum();
        let backends: Vec<Backend> = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| backend(i as u32, w))
            .collect();
        let table = build(&backends, SIZE);
        for (i, share) in shares(&table, weights.len() as u32).iter().enumerate() {
            let expected = f64::from(weights[i]) / f64::from(total);
            assert!(
                (share - expected).abs() < 0.01,
                "real {i}: share {share}, expected {expected}"
            );
        }
    }

    #[test]
    fn removing_one_of_n_moves_at_most_one_nth_plus_one_percent() {
        for n in [2u32, 3, 5, 10, 20] {
            let backends: Vec<Backend> = (0..n).map(|i| backend(i, 1)).collect();
            let before = build(&backends, SIZE);
            for gone in 0..n {
                let rest: Vec<Backend> =
                    backends.iter().copied().filter(|b| b.id != gone).collect();
                let after = build(&rest, SIZE);
                let changed = diff(&before, &after).len() as f64 / f64::from(SIZE);
                assert!(
                    changed <= 1.0 / f64::from(n) + 0.01,
                    "{n} reals, removing {gone}: {changed:.4} of the table changed"
                );
                // Every slot of the removed real moves, plus (Maglev's price for balance) a
                // few slots of others, bounded above.
                assert!(after.iter().all(|&id| id != gone));
            }
        }
    }

    #[test]
    fn adding_a_real_back_restores_its_slots() {
        let backends: Vec<Backend> = (0..5).map(|i| backend(i, 1)).collect();
        let before = build(&backends, SIZE);
        let without: Vec<Backend> = backends.iter().copied().filter(|b| b.id != 2).collect();
        let during = build(&without, SIZE);
        assert_ne!(before, during);
        assert_eq!(build(&backends, SIZE), before);
    }

    #[test]
    fn order_of_reals_does_not_matter() {
        let backends: Vec<Backend> = (0..6).map(|i| backend(i, 1 + i % 3)).collect();
        let mut reversed = backends.clone();
        reversed.reverse();
        assert_eq!(build(&backends, SIZE), build(&reversed, SIZE));
    }

    #[test]
    fn zero_weight_reals_get_no_slots_and_no_reals_means_no_real() {
        let table = build(&[backend(0, 1), backend(1, 0)], 251);
        assert!(table.iter().all(|&id| id == 0));
        assert!(build(&[backend(0, 0)], 251).iter().all(|&id| id == NO_REAL));
        assert!(build(&[], 251).iter().all(|&id| id == NO_REAL));
    }
}
