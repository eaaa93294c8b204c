//! Which key each request touches: zero-padded decimal keys over a key space, in order or at random, as etcd's
//! benchmark chooses them, with a small reproducible generator per client.

/// How a workload picks key numbers in `[0, key space size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyChoice {
    /// Keys 0, 1, 2, ... (the request's sequence number), wrapping at the key space size.
    Sequential(u64),
    /// Uniformly random keys.
    Random(u64),
}

impl KeyChoice {
    pub fn new(space: u64, sequential: bool) -> Self {
        if sequential {
            KeyChoice::Sequential(space)
        } else {
            KeyChoice::Random(space)
        }
    }

    /// The number of keys this choice spreads over (at least 1).
    pub fn space(self) -> u64 {
        match self {
            KeyChoice::Sequential(space) | KeyChoice::Random(space) => space.max(1),
        }
    }

    /// The key number for the `n`th request of a run.
    pub fn pick(self, n: u64, rng: &mut SplitMix64) -> u64 {
        match self {
            KeyChoice::Sequential(_) => n % self.space(),
            KeyChoice::Random(_) => rng.next() % self.space(),
        }
    }
}

/// Zero-padded decimal, at least `key_size` bytes, so keys sort in numeric order as etcd's benchmark keys do.
pub fn encode_key(n: u64, key_size: usize) -> Vec<u8> {
    format!("{n:0key_size$}").into_bytes()
}

/// A distinct, reproducible seed for each client task.
pub fn seed_for(client: usize) -> u64 {
    0x9e37_79b9_7f4a_7c15 ^ (client as u64).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

/// splitmix64: enough randomness to spread keys, reproducible per client, no dependency.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A float uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        // The top 53 bits fill an f64 mantissa exactly.
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_padded_to_the_requested_size() {
        assert_eq!(encode_key(42, 8), b"00000042");
        assert_eq!(encode_key(123_456_789, 4), b"123456789");
    }

    #[test]
    fn sequential_keys_wrap_at_the_key_space() {
        let mut rng = SplitMix64(1);
        let keys: Vec<u64> = (0..7).map(|n| KeyChoice::Sequential(3).pick(n, &mut rng)).collect();
        assert_eq!(keys, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(KeyChoice::Sequential(0).pick(5, &mut rng), 0, "an empty key space is one key");
    }

    #[test]
    fn random_keys_stay_in_the_key_space_and_cover_it() {
        let mut rng = SplitMix64(seed_for(3));
        let mut seen = [false; 10];
        for n in 0..1000 {
            let k = KeyChoice::Random(10).pick(n, &mut rng);
            seen[usize::try_from(k).unwrap()] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
    }

    #[test]
    fn random_keys_differ_between_clients() {
        let run = |seed| {
            let mut rng = SplitMix64(seed);
            (0..4).map(|_| rng.next()).collect::<Vec<_>>()
        };
        assert_eq!(run(seed_for(0)), run(seed_for(0)), "a seed reproduces its sequence");
        assert_ne!(run(seed_for(0)), run(seed_for(1)));
    }

    #[test]
    fn unit_floats_are_in_range() {
        let mut rng = SplitMix64(7);
        let xs: Vec<f64> = (0..1000).map(|_| rng.unit()).collect();
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = xs.iter().sum::<f64>() / 1000.0;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }
}
