//! One token-bucket acquire: through the Wasm host vs the same bucket in
//! native Rust, in the same run. `docs/benchmarks.md` records the medians.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vss_slot_host::{Acquire, Context, HostLimits, Request, SlotEngine, SlotInstance};
use vss_slot_token_bucket::TokenBucket;
use vss_slot_token_bucket::bucket::Limits;

/// A bucket that never runs dry, so every iteration does the same work.
const BUCKET_SIZE: u64 = u64::MAX / 2;

fn config() -> Vec<(String, String)> {
    [
        ("bucketSize", BUCKET_SIZE.to_string()),
        ("period", "second".to_string()),
        ("refreshRate", BUCKET_SIZE.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn acquire(c: &mut Criterion) {
    let mut group = c.benchmark_group("acquire");
    group.measurement_time(Duration::from_secs(5));

    let mut native = TokenBucket::new(
        Limits {
            bucket_size: BUCKET_SIZE,
            period_ms: 1_000,
            refresh_rate: BUCKET_SIZE,
            tokens_per_req: 1,
        },
        10_000,
    );
    let mut now = 0u64;
    group.bench_function("native", |b| {
        b.iter(|| {
            now += 1;
            black_box(native.acquire(None, None, black_box(now)))
        })
    });

    let engine = SlotEngine::new(HostLimits::default()).expect("engine");
    let module = engine
        .compile("token-bucket", vss_builtin_slots::TOKEN_BUCKET)
        .expect("compiles");
    let mut slot = SlotInstance::start(&module, config()).expect("starts");
    let req = Request::Acquire(Acquire {
        key: None,
        tokens: None,
    });
    let mut now = 0u64;
    group.bench_function("wasm", |b| {
        b.iter(|| {
            now += 1;
            let ctx = Context {
                now_ms: now,
                random: 0,
            };
            black_box(slot.handle(ctx, black_box(&req)).expect("acquire"))
        })
    });

    let keyed = Request::Acquire(Acquire {
        key: Some("user-1234".into()),
        tokens: None,
    });
    group.bench_function("wasm_keyed", |b| {
        b.iter(|| {
            now += 1;
            let ctx = Context {
                now_ms: now,
                random: 0,
            };
            black_box(slot.handle(ctx, black_box(&keyed)).expect("acquire"))
        })
    });

    let batch: Vec<Request> = (0..16).map(|_| req.clone()).collect();
    group.throughput(criterion::Throughput::Elements(16));
    group.bench_function("wasm_batch16", |b| {
        b.iter(|| {
            now += 1;
            let ctx = Context {
                now_ms: now,
                random: 0,
            };
            black_box(slot.handle_batch(ctx, black_box(&batch)).expect("batch"))
        })
    });
    group.finish();
}

criterion_group!(benches, acquire);
criterion_main!(benches);
