//! Criterion benchmarks of the standard workloads (see `benches/README.md`).
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

mod workloads;

use workloads::{
    media_decrypt_threads, time_iters, BlockApply, BlockBuild, CallAtSize, FrameDecrypt, FrameEncrypt, PacketDecrypt,
    PacketEncrypt, Primitives, CALL_SIZE, FRAME_KINDS, GROUP_SIZES, PACKET_SIZES,
};

fn packets(c: &mut Criterion) {
    let mut g = c.benchmark_group("packet_encrypt");
    for size in PACKET_SIZES {
        let mut w = PacketEncrypt::new(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(size.to_string(), |b| b.iter(|| w.run()));
    }
    g.finish();
    let mut g = c.benchmark_group("packet_decrypt");
    for size in PACKET_SIZES {
        let mut w = PacketDecrypt::new(size);
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(size.to_string(), |b| {
            b.iter_custom(|iters| workloads::time_iters(&mut w, iters, workloads::decrypt_batch(size)))
        });
    }
    g.finish();
}

/// The frame layer against the bare packet of the same bytes, per kind (issue 29's budget: at
/// most 3% for video, 5% for audio).
fn frames(c: &mut Criterion) {
    for (what, bare) in [("frame_encrypt", false), ("frame_encrypt_bare", true)] {
        let mut g = c.benchmark_group(what);
        for (name, codec, size) in FRAME_KINDS {
            let mut w = FrameEncrypt::new(codec, size, bare);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(name, |b| b.iter(|| w.run()));
        }
        g.finish();
    }
    for (what, bare) in [("frame_decrypt", false), ("frame_decrypt_bare", true)] {
        let mut g = c.benchmark_group(what);
        for (name, codec, size) in FRAME_KINDS {
            let mut w = FrameDecrypt::new(codec, size, bare);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(name, |b| {
                b.iter_custom(|iters| workloads::time_iters(&mut w, iters, workloads::decrypt_batch(size)))
            });
        }
        g.finish();
    }
}

fn blocks(c: &mut Criterion) {
    let mut g = c.benchmark_group("block_build");
    g.sample_size(10);
    for n in GROUP_SIZES {
        let mut w = BlockBuild::new(n);
        g.bench_function(n.to_string(), |b| b.iter_batched(|| (), |()| w.run(), BatchSize::SmallInput));
    }
    g.finish();
    let mut g = c.benchmark_group("block_apply");
    for n in GROUP_SIZES {
        let mut w = BlockApply::new(n);
        g.bench_function(n.to_string(), |b| b.iter(|| w.run()));
    }
    g.finish();
}

fn primitives(c: &mut Criterion) {
    let mut p = Primitives::new();
    let mut g = c.benchmark_group("primitives");
    g.bench_function("ed25519_sign", |b| b.iter(|| p.sign()));
    g.bench_function("ed25519_verify", |b| b.iter(|| p.verify()));
    g.bench_function("ed25519_verify_key_bytes", |b| b.iter(|| p.verify_key_bytes()));
    g.bench_function("x25519_shared_secret", |b| b.iter(|| p.x25519()));
    g.throughput(Throughput::Bytes(65536));
    g.bench_function("aes256_cbc_encrypt_64k", |b| b.iter(|| p.aes_cbc_encrypt()));
    g.bench_function("aes256_cbc_decrypt_64k", |b| b.iter(|| p.aes_cbc_decrypt()));
    g.bench_function("hmac_sha256_64k", |b| b.iter(|| p.hmac_sha256()));
    g.bench_function("sha512_64k", |b| b.iter(|| p.sha512()));
    g.finish();
}

/// Frames of 100 senders through one shared decryptor, by 1 and 2 threads (time per frame).
fn media(c: &mut Criterion) {
    let mut g = c.benchmark_group("media_decrypt_threads");
    g.sample_size(10);
    for threads in [1, 2] {
        g.bench_function(threads.to_string(), |b| {
            b.iter_custom(|iters| {
                let per_sender = (iters as usize).div_ceil(100).max(1);
                let rate = media_decrypt_threads(threads, per_sender);
                std::time::Duration::from_secs_f64(iters as f64 / rate)
            })
        });
    }
    g.finish();
}

/// What one client of a call at the real size pays (issue 32), each op on a fresh call.
fn call_size(c: &mut Criterion) {
    let w = CallAtSize::new(CALL_SIZE);
    let mut g = c.benchmark_group("call_size");
    g.sample_size(10);
    g.bench_function(format!("join_apply/{CALL_SIZE}"), |b| {
        b.iter_batched(|| w.fresh(true), |mut call| w.apply_join(&mut call), BatchSize::PerIteration)
    });
    g.bench_function(format!("removal_apply/{CALL_SIZE}"), |b| {
        b.iter_batched(|| w.fresh(false), |mut call| w.apply_removal(&mut call), BatchSize::PerIteration)
    });
    g.bench_function(format!("verification_round/{CALL_SIZE}"), |b| {
        b.iter_batched(|| w.fresh(false), |mut call| w.verification_round(&mut call), BatchSize::PerIteration)
    });
    let mut m = w.message_decrypt();
    g.bench_function(format!("message_decrypt/{CALL_SIZE}"), |b| b.iter_custom(|iters| time_iters(&mut m, iters, 256)));
    g.finish();
}

criterion_group!(benches, packets, frames, blocks, primitives, media, call_size);
criterion_main!(benches);
