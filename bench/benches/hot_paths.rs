//! Micro-benchmarks of the per-request hot paths: the cookie codec, the JSON record, the
//! merge after a lost compare-and-swap, finding a session's server on the ring, and a
//! typed package of many keys set. `cargo bench --manifest-path bench/Cargo.toml`.

use actix_memcache_session::bench::{decode, decode_encode, merge, sample, Codec};
use actix_memcache_session::{
    Distribution, Ketama, Key, MemcacheServer, Session, SessionId, TypedPackage,
};
use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::BTreeMap;
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

fn typed_set(c: &mut Criterion) {
    // A map-typed package (each of its keys a field), set over as many stored keys: each
    // field is looked up among them.
    static SEEN: TypedPackage<BTreeMap<String, bool>> = TypedPackage::new("seen");
    let session = Session::standalone();
    let map: BTreeMap<String, bool> = (0..2_000).map(|i| (format!("n{i}"), true)).collect();
    session.set(&SEEN, &map).unwrap();
    c.bench_function("typed set (a map of 2,000 keys, as stored)", |b| {
        b.iter(|| session.set(&SEEN, black_box(&map)).unwrap())
    });
}

criterion_group!(benches, cookie, record, commit_merge, ring, typed_set);
criterion_main!(benches);
