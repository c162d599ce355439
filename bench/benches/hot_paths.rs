//! Micro-benchmarks of the per-request hot paths: the cookie codec, the JSON record, the
//! merge after a lost compare-and-swap, and finding a session's server on the ring. `cargo bench --manifest-path bench/Cargo.toml`.

use actix_memcache_session::bench::{decode, decode_encode, merge, sample, Codec};
use actix_memcache_session::{Distribution, Ketama, Key, MemcacheServer, SessionId};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

fn cookie(c: &mut Criterion) {
    let codec = Codec::new(Key::generate());
    let id = SessionId::generate().unwrap();
    let value = codec.sign(&id, 1_700_000_000);
    c.bench_function("cookie sign", |b| {
        b.iter(|| codec.sign(black_box(&id), 1_700_000_000))
    });
    c.bench_function("cookie verify", |b| {
        b.iter(|| assert!(codec.verify(black_box(&value))))
    });
}

fn record(c: &mut Criterion) {
    // The bench server's session (2 keys), and a fuller one (4 packages x 8 keys).
    for (packages, keys) in [(1, 2), (4, 8)] {
        let bytes = sample(packages, keys);
        let name = format!("{packages}x{keys}, {} bytes", bytes.len());
        c.bench_function(&format!("session decode ({name})"), |b| {
            b.iter(|| assert!(decode(black_box(&bytes))))
        });
        c.bench_function(&format!("session decode+encode ({name})"), |b| {
            b.iter(|| decode_encode(black_box(&bytes)))
        });
    }
}

fn commit_merge(c: &mut Criterion) {
    let loaded = sample(4, 8);
    let latest = sample(4, 8);
    c.bench_function("commit merge (4x8 session, 2 changed keys)", |b| {
        b.iter(|| assert!(merge(black_box(&loaded), black_box(&latest), 2)))
    });
}

fn ring(c: &mut Criterion) {
    let key = format!("session:{}", SessionId::generate().unwrap());
    for n in [3, 30] {
        let servers: Vec<MemcacheServer> = (0..n)
            .map(|i| MemcacheServer::new(format!("10.0.0.{i}"), 11211, 1))
            .collect();
        let ring = Ketama::new(&servers);
        c.bench_function(&format!("ketama lookup ({n} servers)"), |b| {
            b.iter(|| ring.server_for(black_box(key.as_bytes())))
        });
    }
}

criterion_group!(benches, cookie, record, commit_merge, ring);
criterion_main!(benches);
