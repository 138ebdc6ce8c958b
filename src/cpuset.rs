//! A fixed-size set of vCPU ids (FreeBSD's `cpuset_t` for the guest).

/// Largest number of vCPUs a VM can be configured with (bits in the set).
pub const CPUSET_BITS: usize = 256;
const WORDS: usize = CPUSET_BITS / 64;

/// A set of vCPU ids below [`CPUSET_BITS`].
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CpuSet {
    bits: [u64; WORDS],
}

impl CpuSet {
    /// The empty set.
    pub const fn new() -> Self {
        CpuSet { bits: [0; WORDS] }
    }

    /// The set {0, .., n-1}.
    pub fn first_n(n: usize) -> Self {
        let mut s = CpuSet::new();
        for i in 0..n.min(CPUSET_BITS) {
            s.insert(i);
        }
        s
    }

    /// A set with only `id`.
    pub fn single(id: usize) -> Self {
        let mut s = CpuSet::new();
        s.insert(id);
        s
    }

    pub fn insert(&mut self, id: usize) {
        self.bits[id / 64] |= 1 << (id % 64);
    }

    pub fn remove(&mut self, id: usize) {
        self.bits[id / 64] &= !(1 << (id % 64));
    }

    pub fn contains(&self, id: usize) -> bool {
        id < CPUSET_BITS && self.bits[id / 64] & (1 << (id % 64)) != 0
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }

    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    pub fn clear(&mut self) {
        self.bits = [0; WORDS];
    }

    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        let mut r = *self;
        for (a, b) in r.bits.iter_mut().zip(other.bits.iter()) {
            *a &= *b;
        }
        r
    }

    pub fn union(&self, other: &CpuSet) -> CpuSet {
        let mut r = *self;
        for (a, b) in r.bits.iter_mut().zip(other.bits.iter()) {
            *a |= *b;
        }
        r
    }

    /// Whether every member of `self` is in `other`.
    pub fn is_subset(&self, other: &CpuSet) -> bool {
        self.intersection(other) == *self
    }

    /// Members in ascending order.
    /// The members in ascending order. Walks set bits only: delivery
    /// iterates destination sets on every interrupt.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.bits.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
        })
    }

    /// The lowest member, if any.
    pub fn first(&self) -> Option<usize> {
        self.iter().next()
    }

    /// The set whose members are the bits of `bits` (little-endian words).
    pub fn from_words(bits: [u64; WORDS]) -> Self {
        CpuSet { bits }
    }

    /// The set as little-endian 64-bit words (FreeBSD's `__bits` order).
    pub fn words(&self) -> &[u64; WORDS] {
        &self.bits
    }
}

impl core::fmt::Debug for CpuSet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_operations() {
        let mut s = CpuSet::new();
        assert!(s.is_empty());
        s.insert(0);
        s.insert(65);
        s.insert(255);
        assert_eq!(s.len(), 3);
        assert!(s.contains(65) && !s.contains(64) && !s.contains(300));
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![0, 65, 255]);
        let f = CpuSet::first_n(66);
        assert_eq!(s.intersection(&f).iter().collect::<Vec<_>>(), vec![0, 65]);
        assert!(!s.is_subset(&f));
        s.remove(255);
        assert!(s.is_subset(&f));
        assert_eq!(s.first(), Some(0));
        assert_eq!(s.words()[1], 2);
    }

    /// `first_n` caps at the set's size rather than indexing past it.
    #[test]
    fn first_n_beyond_the_set_size_is_every_member() {
        let all = CpuSet::first_n(CPUSET_BITS + 1);
        assert_eq!(all, CpuSet::first_n(CPUSET_BITS));
        assert_eq!(all.len(), CPUSET_BITS);
    }
}
