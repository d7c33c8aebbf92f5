//! The distribution a sampler draws from, as a list of candidate tokens, and
//! the filters that shrink it (top-k, min-p, top-p).
//!
//! Numerics: every logit is first made relative to the largest one, so the
//! most likely token has scaled logit 0 and weight `exp(0) = 1`, and no weight
//! can overflow. Weights are summed in `f64` in a fixed order (see `Sum`), so
//! every rank of a tensor-parallel group gets bit-identical sums from
//! identical logits.
//!
//! Filters are applied as top-k, then top-p (over the top-k set
//! renormalised), then min-p. Each keeps a prefix of the same total order
//! (descending probability, then ascending id), and min-p's threshold is a
//! ratio to the top token that renormalising does not move; so min-p may run
//! before top-p, shrinking the list that top-p must sort, as long as top-p
//! measures probabilities against the top-k mass.

use std::cmp::Ordering;

/// How many of the most likely candidates top-p sorts first; each further
/// round sorts four times as many. The nucleus usually fits in the first.
const TOP_P_HEAD: usize = 64;

/// Largest top-k served by a single insertion pass rather than a selection.
/// The pass costs one comparison per candidate plus up to k moves per
/// insertion, so it wins while k is small; even adversarially ordered logits
/// then cost at most 49k * 256 moves.
const SMALL_TOP_K: usize = 256;

/// A token still in the running.
#[derive(Debug, Clone, Copy)]
pub(super) struct Candidate {
    /// Token id, an index into the logits.
    pub(super) id: u32,
    /// `(logit - max_logit) / temperature`: at most 0, never -inf or NaN.
    pub(super) scaled: f32,
    /// `exp(scaled)`, the unnormalised probability, in [0, 1].
    pub(super) weight: f32,
}

/// Most likely first; among equals the lower id first, so ties resolve the
/// same way greedy decoding does and the order is total.
fn rank(a: &Candidate, b: &Candidate) -> Ordering {
    b.scaled.total_cmp(&a.scaled).then(a.id.cmp(&b.id))
}

/// Total weight of `cands`.
fn mass(cands: &[Candidate]) -> f64 {
    let mut sum = Sum::default();
    for c in cands {
        sum.add(c.weight);
    }
    sum.total()
}

/// A sum of weights in `f64`, spread over four running totals: one total
/// would make every addition wait for the previous one. Element `i` always
/// goes to total `i % 4` and the totals are combined in a fixed order, so the
/// result depends only on the sequence added, never on the machine.
#[derive(Default)]
struct Sum {
    lanes: [f64; 4],
    next: usize,
}

impl Sum {
    fn add(&mut self, weight: f32) {
        self.lanes[self.next] += f64::from(weight);
        self.next = (self.next + 1) % 4;
    }

    fn total(&self) -> f64 {
        (self.lanes[0] + self.lanes[1]) + (self.lanes[2] + self.lanes[3])
    }
}

/// Replaces NaN with -inf and +inf with `f32::MAX`, so later arithmetic
/// stays finite, and returns the first index holding the largest value with
/// that value. An empty or all -inf slice gives `(0, -inf)`.
pub(super) fn sanitize_and_argmax(logits: &mut [f32]) -> (u32, f32) {
    let mut best = (0, f32::NEG_INFINITY);
    for (i, logit) in (0u32..).zip(logits.iter_mut()) {
        if logit.is_nan() {
            *logit = f32::NEG_INFINITY;
        } else if *logit == f32::INFINITY {
            *logit = f32::MAX;
        }
        // Strictly greater, so ties keep the lowest id.
        if *logit > best.1 {
            best = (i, *logit);
        }
    }
    best
}

/// Scaled logit of `logit`, or `None` when its probability is exactly zero.
fn scale(logit: f32, max: f32, temperature: f32) -> Option<f32> {
    let scaled = (logit - max) / temperature;
    (scaled > f32::NEG_INFINITY).then_some(scaled)
}

/// Candidates for `logits`, in vocabulary order, computed on the fly.
/// `max` must be the largest logit and finite.
fn scan(logits: &[f32], max: f32, temperature: f32) -> impl Iterator<Item = Candidate> + '_ {
    (0u32..).zip(logits).filter_map(move |(id, &logit)| {
        let scaled = scale(logit, max, temperature)?;
        Some(Candidate {
            id,
            scaled,
            weight: scaled.exp(),
        })
    })
}

/// Refills `out` with every token of non-zero probability and returns their
/// total weight (at least 1, the top token's). `max` must be the largest
/// logit and finite.
pub(super) fn build(logits: &[f32], max: f32, temperature: f32, out: &mut Vec<Candidate>) -> f64 {
    out.clear();
    out.extend(scan(logits, max, temperature));
    mass(out)
}

/// The total weight, bit for bit as [`build`] returns it, and the `n` best
/// candidates in rank order, in one pass that stores nothing else.
pub(super) fn mass_and_best(
    logits: &[f32],
    max: f32,
    temperature: f32,
    n: usize,
) -> (f64, Vec<Candidate>) {
    let mut best = BestN::new(n);
    let mut sum = Sum::default();
    for c in scan(logits, max, temperature) {
        sum.add(c.weight);
        best.offer(c);
    }
    (sum.total(), best.into_vec())
}

/// The `n` best of `cands` in rank order, in one pass that leaves `cands`
/// as it was.
pub(super) fn best_of(cands: &[Candidate], n: usize) -> Vec<Candidate> {
    let mut best = BestN::new(n);
    for &c in cands {
        best.offer(c);
    }
    best.into_vec()
}

/// `(id, logprob)` pairs for `cands`, where `log_z` is the log of the
/// distribution's total weight.
pub(super) fn logprobs(cands: &[Candidate], log_z: f32) -> Vec<(u32, f32)> {
    cands.iter().map(|c| (c.id, c.scaled - log_z)).collect()
}

/// Moves the `head` best candidates to the front, in rank order; the rest
/// follow in no particular order.
fn sort_head(cands: &mut [Candidate], head: usize) {
    if head == 0 {
        return;
    }
    if head < cands.len() {
        cands.select_nth_unstable_by(head - 1, rank);
    }
    let head = head.min(cands.len());
    cands[..head].sort_unstable_by(rank);
}

/// Inserts `c` into `best[..*len]`, which is kept in rank order and at most
/// `cap` long, unless `c` ranks below all `cap` entries already there.
///
/// Writes no further than `best[*len]`, so `best` may be the very list being
/// scanned as long as `*len` never passes the scan position. Requires
/// `*len < best.len()` whenever `*len < cap`.
fn offer(best: &mut [Candidate], len: &mut usize, cap: usize, c: Candidate) {
    if *len == cap {
        let Some(last) = cap.checked_sub(1).and_then(|i| best.get(i)) else {
            return;
        };
        // Most candidates rank below the current last. A plain float
        // comparison rejects them; only ties need the full ranking.
        if c.scaled < last.scaled || rank(&c, last).is_ge() {
            return;
        }
        *len -= 1;
    }
    let at = best[..*len].partition_point(|b| rank(b, &c).is_lt());
    best.copy_within(at..*len, at + 1);
    best[at] = c;
    *len += 1;
}

/// The best `cap` candidates offered so far, in rank order.
struct BestN {
    best: Vec<Candidate>,
    len: usize,
    /// Scaled logit of the worst kept candidate once full; nothing below it
    /// can enter. +inf when `cap` is 0, so that nothing ever does.
    floor: f32,
}

impl BestN {
    fn new(cap: usize) -> Self {
        let filler = Candidate {
            id: 0,
            scaled: 0.0,
            weight: 0.0,
        };
        let floor = if cap == 0 {
            f32::INFINITY
        } else {
            f32::NEG_INFINITY
        };
        Self {
            best: vec![filler; cap],
            len: 0,
            floor,
        }
    }

    #[inline]
    fn offer(&mut self, c: Candidate) {
        if c.scaled < self.floor {
            return;
        }
        let cap = self.best.len();
        offer(&mut self.best, &mut self.len, cap, c);
        if self.len == cap {
            // `best` is exactly `cap` long, so its last slot is the worst kept.
            if let Some(last) = self.best.last() {
                self.floor = last.scaled;
            }
        }
    }

    fn into_vec(mut self) -> Vec<Candidate> {
        self.best.truncate(self.len);
        self.best
    }
}

/// Keeps the `k` most likely candidates (0 keeps all). Returns their total
/// weight when any were dropped.
pub(super) fn keep_top_k(cands: &mut Vec<Candidate>, k: usize) -> Option<f64> {
    if k == 0 || k >= cands.len() {
        return None;
    }
    if k <= SMALL_TOP_K {
        // One pass that collects the best k at the front of the list itself.
        let mut len = 0;
        // Scaled logit of the k-th best so far; nothing below it can enter.
        let mut floor = f32::NEG_INFINITY;
        for i in 0..cands.len() {
            let c = cands[i];
            if c.scaled >= floor {
                offer(cands, &mut len, k, c);
                if len == k {
                    floor = cands[k - 1].scaled;
                }
            }
        }
        cands.truncate(len);
    } else {
        cands.select_nth_unstable_by(k - 1, rank);
        cands.truncate(k);
    }
    Some(mass(cands))
}

/// Drops candidates less likely than `min_p` times the top one. Never drops
/// the top candidate, whose scaled logit 0 is at least `ln(min_p)`.
pub(super) fn keep_min_p(cands: &mut Vec<Candidate>, min_p: f32) {
    if min_p <= 0.0 {
        return;
    }
    let floor = min_p.ln();
    cands.retain(|c| c.scaled >= floor);
}

/// Keeps the smallest most-likely prefix whose probability, measured against
/// `top_k_mass` (the weight of the list before min-p), reaches `top_p`;
/// always keeps at least one candidate.
pub(super) fn keep_top_p(cands: &mut Vec<Candidate>, top_p: f32, top_k_mass: f64) {
    if top_p >= 1.0 || cands.is_empty() {
        return;
    }
    let target = f64::from(top_p) * top_k_mass;
    let spare = mass(cands) - target;
    if spare <= 0.0 {
        // Min-p already cut inside the nucleus: every candidate is needed.
        return;
    }

    // Candidates lighter than spare / len weigh less than `spare` together,
    // and they rank last, so they all lie in the tail that top-p drops.
    // For a peaked distribution, removing them first leaves a small fraction
    // of the vocabulary to sort.
    let floor = spare / cands.len() as f64;
    cands.retain(|c| f64::from(c.weight) >= floor);

    // Sort a growing head until the nucleus fits in it. Each round selects
    // from what is left, all of which ranks below the sorted part.
    let (mut sorted, mut head, mut cum) = (0, TOP_P_HEAD, 0.0);
    while sorted < cands.len() {
        let end = head.min(cands.len());
        sort_head(&mut cands[sorted..], end - sorted);
        if let Some(keep) = nucleus_len(&cands[sorted..end], target, &mut cum) {
            cands.truncate(sorted + keep);
            return;
        }
        sorted = end;
        head *= 4;
    }
    // Only rounding gets here: the sums fell short of `target`; keep all.
}

/// How many of `sorted` it takes for the running weight `cum` to reach
/// `target`; `None` if it never does. Leaves the sum so far in `cum`.
fn nucleus_len(sorted: &[Candidate], target: f64, cum: &mut f64) -> Option<usize> {
    for (i, c) in sorted.iter().enumerate() {
        *cum += f64::from(c.weight);
        if *cum >= target {
            return Some(i + 1);
        }
    }
    None
}

/// Picks a candidate in proportion to its weight, given `u` uniform in
/// [0, 1). `None` only when `cands` carries no weight at all.
pub(super) fn draw(cands: &[Candidate], u: f64) -> Option<Candidate> {
    let target = u * mass(cands);
    let mut cum = 0.0;
    for c in cands {
        cum += f64::from(c.weight);
        if target < cum {
            return Some(*c);
        }
    }
    // Rounding can leave `target` a hair above the last sum.
    cands.iter().rev().find(|c| c.weight > 0.0).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn cands_from(logits: &[f32]) -> (Vec<Candidate>, f64) {
        let mut out = Vec::new();
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let total = build(logits, max, 1.0, &mut out);
        (out, total)
    }

    fn ids(cands: &[Candidate]) -> Vec<u32> {
        let mut ids: Vec<u32> = cands.iter().map(|c| c.id).collect();
        ids.sort_unstable();
        ids
    }

    /// Logits with many exact ties, so that tie-breaking is exercised.
    fn tied_logits(rng: &mut ChaCha8Rng, vocab: usize) -> Vec<f32> {
        (0..vocab)
            .map(|_| (rng.random_range(0..40) as f32) * 0.25)
            .collect()
    }

    /// Top-k, top-p and min-p by a full sort, as the module doc defines them.
    fn reference(logits: &[f32], k: usize, top_p: f32, min_p: f32) -> Vec<u32> {
        let (mut all, _) = cands_from(logits);
        all.sort_unstable_by(rank);
        if k > 0 {
            all.truncate(k);
        }
        let target = f64::from(top_p) * mass(&all);
        let mut cum = 0.0;
        let keep = nucleus_len(&all, target, &mut cum).unwrap_or(all.len());
        all.truncate(keep);
        all.retain(|c| min_p == 0.0 || c.scaled >= min_p.ln());
        ids(&all)
    }

    #[test]
    fn filters_match_a_full_sort() {
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        for round in 0..200 {
            let logits = tied_logits(&mut rng, 3_000);
            let k = [0, 1, 7, 256, 257, 2_000, 5_000][round % 7];
            let top_p = [1.0, 0.3, 0.9, 0.99][round % 4];
            let min_p = [0.0, 0.05, 0.5][round % 3];

            let (mut cands, total) = cands_from(&logits);
            let top_k_mass = keep_top_k(&mut cands, k).unwrap_or(total);
            keep_min_p(&mut cands, min_p);
            keep_top_p(&mut cands, top_p, top_k_mass);
            let want = reference(&logits, k, top_p, min_p);
            assert_eq!(ids(&cands), want, "k={k} top_p={top_p} min_p={min_p}");
        }
    }

    #[test]
    fn best_of_ranks_ties_by_id() {
        let (cands, _) = cands_from(&[1.0, 3.0, 3.0, 2.0, 3.0]);
        let best: Vec<u32> = best_of(&cands, 4).iter().map(|c| c.id).collect();
        assert_eq!(best, vec![1, 2, 4, 3]);
        assert!(best_of(&cands, 0).is_empty());
        assert_eq!(best_of(&cands, 10).len(), 5);
    }

    #[test]
    fn top_p_beyond_the_head_sorts_the_tail() {
        // A flat distribution over 200 tokens: half the mass needs 100 of
        // them, more than the first head holds.
        let (mut cands, total) = cands_from(&[0.0; 200]);
        keep_top_p(&mut cands, 0.5, total);
        assert_eq!(ids(&cands), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn top_p_against_a_larger_mass_keeps_everything_offered() {
        // After min-p, the list may be a prefix of what top-p measures
        // against; it must then keep the whole prefix.
        let (mut cands, _) = cands_from(&[0.0, 0.0]);
        keep_top_p(&mut cands, 0.9, 4.0);
        assert_eq!(cands.len(), 2);
    }

    #[test]
    fn build_skips_impossible_tokens() {
        let (cands, total) = cands_from(&[f32::NEG_INFINITY, 0.0, f32::NEG_INFINITY]);
        assert_eq!(ids(&cands), vec![1]);
        assert_eq!(total, 1.0);
    }

    #[test]
    fn draw_ends_of_the_unit_interval() {
        let (cands, _) = cands_from(&[0.0, 0.0, 0.0]);
        assert_eq!(draw(&cands, 0.0).map(|c| c.id), Some(0));
        assert_eq!(draw(&cands, 1.0 - f64::EPSILON).map(|c| c.id), Some(2));
        assert!(draw(&[], 0.5).is_none());
    }

    #[test]
    fn sanitize_maps_non_finite_values() {
        let mut logits = [f32::NAN, f32::INFINITY, f32::INFINITY, 1.0];
        let (argmax, max) = sanitize_and_argmax(&mut logits);
        assert_eq!((argmax, max), (1, f32::MAX));
        assert_eq!(logits[0], f32::NEG_INFINITY);
    }
}
