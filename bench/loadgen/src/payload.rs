//! The records the loadgen sends: JSON-like events (ids, names, words and numbers from a seeded
//! PRNG), each one different, so a compressed run compresses about as much as real event data
//! (lz4 2-4x) rather than ~40x for records alike but for their timestamp. A [`Pool`] is made
//! before sending starts, so the send loop only overwrites each record's first 8 bytes (the send
//! time, see `modes`).

/// How many distinct bytes a pool holds at least: twice librdkafka's `batch.size` the loadgen
/// sets (1 MB), so no compressed batch holds the same record twice.
const POOL_BYTES: usize = 2 << 20;
/// The fewest records a pool holds, whatever the record size.
const MIN_RECORDS: usize = 64;
/// Bytes at the start of each record that the send loop overwrites with the send time.
pub const TIMESTAMP_BYTES: usize = 8;

const EVENTS: &[&str] = &[
    "page_view",
    "add_to_cart",
    "checkout",
    "search",
    "login",
    "logout",
    "purchase",
    "refund",
    "rating",
    "share",
];
const COUNTRIES: &[&str] = &[
    "DE", "US", "FR", "GB", "BR", "IN", "JP", "NL", "ES", "IT", "PL", "SE", "CA", "MX",
];
const CATEGORIES: &[&str] = &[
    "garden", "kitchen", "books", "toys", "outdoor", "fashion", "tools", "music",
];
const DEVICES: &[&str] = &["mobile", "desktop", "tablet", "tv", "watch"];
const BROWSERS: &[&str] = &["firefox", "chrome", "safari", "edge", "opera", "app"];
const WORDS: &[&str] = &[
    "alpha", "amber", "anchor", "apple", "arrow", "autumn", "basil", "beacon", "berry", "blue",
    "bridge", "bright", "canvas", "cedar", "cloud", "coral", "cotton", "crisp", "delta", "dune",
    "echo", "ember", "field", "flint", "forest", "frost", "garden", "glass", "golden", "granite",
    "harbor", "hazel", "honey", "indigo", "iron", "ivory", "jade", "jasmine", "kettle", "lantern",
    "lemon", "linen", "maple", "marble", "meadow", "mint", "misty", "nectar", "noble", "north",
    "oak", "ocean", "olive", "onyx", "orchid", "pearl", "pepper", "pine", "plum", "quartz",
    "quiet", "rapid", "raven", "river", "robin", "ruby", "saffron", "sage", "salt", "shadow",
    "silver", "slate", "spring", "stone", "summer", "thistle", "tide", "timber", "umber", "velvet",
    "violet", "walnut", "willow", "winter", "yarrow", "zephyr", "widget", "gadget", "sale",
    "shipping", "return", "order", "invoice", "customer", "review", "voucher", "price",
];

/// xorshift64*: small, fast and the same on every machine for a given seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len() as u64) as usize]
    }
}

/// Precomputed records of one size, handed out in turn.
pub struct Pool {
    records: Vec<Vec<u8>>,
    next: usize,
}

impl Pool {
    /// Records of exactly `size` bytes (at least [`TIMESTAMP_BYTES`]), from `seed`.
    pub fn new(size: usize, seed: u64) -> Pool {
        let size = size.max(TIMESTAMP_BYTES);
        let count = (POOL_BYTES / size).max(MIN_RECORDS);
        let mut rng = Rng::new(seed);
        let records = (0..count).map(|i| record(&mut rng, i, size)).collect();
        Pool { records, next: 0 }
    }

    /// The next record, for the caller to stamp and send; the pool wraps around.
    pub fn next_record(&mut self) -> &mut [u8] {
        let index = self.next;
        self.next = (self.next + 1) % self.records.len();
        &mut self.records[index]
    }
}

/// One event: [`TIMESTAMP_BYTES`] placeholder bytes, then a JSON object whose list of items is
/// cut so the whole record is exactly `size` bytes.
fn record(rng: &mut Rng, sequence: usize, size: usize) -> Vec<u8> {
    let mut text = String::with_capacity(size + 64);
    text.push_str(&"0".repeat(TIMESTAMP_BYTES));
    let user = rng.below(5_000_000);
    let price_cents = 99 + rng.below(50_000);
    text.push_str(&format!(
        "{{\"event_id\":\"{:016x}{:08x}\",\"seq\":{sequence},\"type\":\"{}\",\"user_id\":{user},\
         \"session\":\"{:012x}\",\"country\":\"{}\",\"device\":\"{}\",\"browser\":\"{}\",\
         \"path\":\"/{}/{}-{}\",\"price\":{}.{:02},\"quantity\":{},\"latency_ms\":{},\
         \"tags\":[\"{}\",\"{}\"],\"items\":[",
        rng.next(),
        rng.next() as u32,
        rng.pick(EVENTS),
        rng.next() & 0xffff_ffff_ffff,
        rng.pick(COUNTRIES),
        rng.pick(DEVICES),
        rng.pick(BROWSERS),
        rng.pick(WORDS),
        rng.pick(WORDS),
        rng.below(10_000),
        price_cents / 100,
        price_cents % 100,
        1 + rng.below(9),
        rng.below(2_000),
        rng.pick(WORDS),
        rng.pick(WORDS),
    ));
    // Line items until the record is full, as an order or cart event carries them: the same keys
    // and a few likely values in every item, the ids and amounts varied.
    let mut first = true;
    while text.len() + 2 < size {
        if !first {
            text.push(',');
        }
        first = false;
        let cents = 99 + rng.below(20_000);
        text.push_str(&format!(
            "{{\"sku\":\"SKU-{:06}\",\"name\":\"{} {}\",\"category\":\"{}\",\"quantity\":{},\
             \"unit_price\":{}.{:02},\"discount\":{},\"warehouse\":{},\"in_stock\":{}}}",
            rng.below(1_000_000),
            rng.pick(WORDS),
            rng.pick(WORDS),
            rng.pick(CATEGORIES),
            1 + rng.below(4),
            cents / 100,
            cents % 100,
            rng.below(40),
            rng.below(500),
            rng.below(8) != 0,
        ));
    }
    // Cut to size and close the list and the object (the last item may be cut short).
    let mut bytes = text.into_bytes();
    bytes.truncate(size.saturating_sub(2).max(TIMESTAMP_BYTES));
    bytes.extend_from_slice(b"]}");
    bytes.truncate(size);
    bytes
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// About one librdkafka batch of consecutive records, as the producer compresses them.
    fn batch(pool: &mut Pool, bytes: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes);
        let mut stamp = 1_764_000_000_000_000u64;
        while out.len() < bytes {
            let record = pool.next_record();
            record[..TIMESTAMP_BYTES].copy_from_slice(&stamp.to_be_bytes());
            stamp += 3;
            out.extend_from_slice(record);
        }
        out
    }

    fn lz4_ratio(data: &[u8]) -> f64 {
        let mut encoder = lz4::EncoderBuilder::new()
            .build(Vec::new())
            .expect("an lz4 encoder");
        encoder.write_all(data).expect("lz4 write");
        let (compressed, result) = encoder.finish();
        result.expect("lz4 finish");
        data.len() as f64 / compressed.len() as f64
    }

    fn zstd_ratio(data: &[u8]) -> f64 {
        let compressed = zstd::encode_all(data, 3).expect("zstd");
        data.len() as f64 / compressed.len() as f64
    }

    #[test]
    fn records_have_exactly_the_asked_size() {
        for size in [1, 8, 9, 40, 100, 1024, 4096] {
            let mut pool = Pool::new(size, 7);
            for _ in 0..100 {
                assert_eq!(pool.next_record().len(), size.max(TIMESTAMP_BYTES));
            }
        }
    }

    #[test]
    fn records_differ_and_the_pool_outlasts_a_batch() {
        let mut pool = Pool::new(1024, 7);
        assert!(pool.records.len() * 1024 >= 2_000_000);
        let first = pool.next_record().to_vec();
        let second = pool.next_record().to_vec();
        assert_ne!(first, second);
        assert!(std::str::from_utf8(&first[TIMESTAMP_BYTES..]).is_ok());
        assert!(first.ends_with(b"]}"));
    }

    #[test]
    fn the_same_seed_gives_the_same_records() {
        let (mut a, mut b) = (Pool::new(512, 42), Pool::new(512, 42));
        for _ in 0..10 {
            assert_eq!(a.next_record().to_vec(), b.next_record().to_vec());
        }
    }

    /// 1 KiB records (the loadgen's default) in a 1 MB batch compress like real event data,
    /// not like one record repeated. Prints the ratios for the benchmark's notes.
    #[test]
    fn a_batch_compresses_like_event_data() {
        let data = batch(&mut Pool::new(1024, 7), 1_000_000);
        let (lz4, zstd) = (lz4_ratio(&data), zstd_ratio(&data));
        println!("1 KiB records, 1 MB batch: lz4 {lz4:.2}x, zstd {zstd:.2}x");
        assert!((2.0..=4.0).contains(&lz4), "lz4 {lz4:.2}x");
        assert!((2.0..=8.0).contains(&zstd), "zstd {zstd:.2}x");
    }
}
