//! Ranks that are threads of one process, exchanging through shared memory.
//!
//! Each collective is two barrier phases: every rank deposits its data in its
//! slot, then every rank reads all slots (in rank order) once all are full; a
//! second barrier keeps a fast rank from overwriting its slot while a slow
//! one is still reading.

use std::sync::{Arc, Barrier, Mutex, MutexGuard};

use super::{Collective, CollectiveError};

/// State shared by the ranks of one in-process group.
#[derive(Debug)]
struct Shared {
    barrier: Barrier,
    /// One deposit per rank, `[world_size]`.
    slots: Mutex<Vec<Vec<f32>>>,
}

/// One rank's endpoint of an in-process group.
#[derive(Debug)]
pub struct LocalGroup {
    rank: usize,
    world_size: usize,
    shared: Arc<Shared>,
}

impl LocalGroup {
    /// Endpoints for ranks `0..world_size`, to be moved one per thread.
    pub fn new(world_size: usize) -> Vec<LocalGroup> {
        let shared = Arc::new(Shared {
            barrier: Barrier::new(world_size),
            slots: Mutex::new(vec![Vec::new(); world_size]),
        });
        (0..world_size)
            .map(|rank| LocalGroup {
                rank,
                world_size,
                shared: Arc::clone(&shared),
            })
            .collect()
    }

    fn slots(&self) -> Result<MutexGuard<'_, Vec<Vec<f32>>>, CollectiveError> {
        // A poisoned lock means another rank's thread panicked mid-collective.
        self.shared
            .slots
            .lock()
            .map_err(|_| CollectiveError::PeerGone {
                peer: usize::MAX,
                reason: "a rank thread panicked during a collective".into(),
            })
    }

    fn deposit(&self, data: &[f32]) -> Result<(), CollectiveError> {
        let mut slots = self.slots()?;
        let slot = &mut slots[self.rank];
        slot.clear();
        slot.extend_from_slice(data);
        Ok(())
    }
}

impl Collective for LocalGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        self.deposit(buf)?;
        self.shared.barrier.wait();
        let result = (|| {
            let slots = self.slots()?;
            for (peer, slot) in slots.iter().enumerate() {
                if slot.len() != buf.len() {
                    return Err(CollectiveError::SizeMismatch {
                        peer,
                        expected: buf.len(),
                        actual: slot.len(),
                    });
                }
            }
            buf.copy_from_slice(&slots[0]);
            for slot in &slots[1..] {
                for (b, s) in buf.iter_mut().zip(slot) {
                    *b += s;
                }
            }
            Ok(())
        })();
        self.shared.barrier.wait();
        result
    }

    fn all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError> {
        self.deposit(local)?;
        self.shared.barrier.wait();
        let result = (|| {
            let slots = self.slots()?;
            let total: usize = slots.iter().map(Vec::len).sum();
            if total != out.len() {
                return Err(CollectiveError::SizeMismatch {
                    peer: self.rank,
                    expected: out.len(),
                    actual: total,
                });
            }
            let mut at = 0;
            for slot in slots.iter() {
                out[at..at + slot.len()].copy_from_slice(slot);
                at += slot.len();
            }
            Ok(())
        })();
        self.shared.barrier.wait();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_reduce_and_gather_agree_across_threads() -> Result<(), CollectiveError> {
        let handles: Vec<_> = LocalGroup::new(3)
            .into_iter()
            .map(|mut g| {
                std::thread::spawn(move || -> Result<(Vec<f32>, Vec<f32>), CollectiveError> {
                    let r = g.rank() as f32;
                    let mut buf = vec![r, 10.0 * r];
                    g.all_reduce_sum(&mut buf)?;
                    let local = vec![r; g.rank() + 1];
                    let mut out = vec![0.0; 6];
                    g.all_gather(&local, &mut out)?;
                    Ok((buf, out))
                })
            })
            .collect();
        for h in handles {
            let (sum, gathered) = h.join().expect("rank thread panicked")?;
            assert_eq!(sum, vec![3.0, 30.0]);
            assert_eq!(gathered, vec![0.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
        }
        Ok(())
    }
}
