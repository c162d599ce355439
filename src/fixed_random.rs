//! A fixed pseudo-random sequence (xorshift64) for tests that generate many cases: the same
//! cases every run, so a failure is reproduced by running the test again.

/// Numbers from a fixed seed.
pub(crate) struct FixedRandom(u64);

impl FixedRandom {
    /// The sequence from `seed`, which must not be 0.
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next number, below `n`.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).expect("below n, which is a usize")
    }
}
