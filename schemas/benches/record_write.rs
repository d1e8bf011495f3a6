//! Writing a record's stored JSON: `AuditRecord::write_json` against
//! `serde_json::to_writer` of the same record into the same buffer (the same bytes, as a
//! unit test checks), for a 1 KiB record, for one like the layer's (both 2 KiB bodies
//! captured, mostly prose) and for one whose captured response is short strings (token
//! logprobs: a quote every few bytes).
//!
//! `cargo bench -p kiroku-schemas --bench record_write`
//!
//! The two alternate in blocks of 200 writes, 400 blocks per record, so that both see the
//! same moments of a noisy machine; it prints the best block and the mean of each, and
//! their ratio (below 1: `write_json` is faster). Run benches one after the other on these
//! machines and the hour's drift between them can be larger than the difference.

mod records;

use std::hint::black_box;
use std::time::Instant;

const BLOCKS: usize = 400;
const PER_BLOCK: u32 = 200;

fn main() {
    println!("per record written | serde_json best, mean | write_json best, mean | ratio best, mean");
    for which in ["1 KiB record", "layer record", "layer, short strings"] {
        let r = records::bench_record(which);
        let mut out = Vec::with_capacity(8 << 10);
        let time = |write: &mut dyn FnMut()| {
            let start = Instant::now();
            for _ in 0..PER_BLOCK {
                write();
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(PER_BLOCK)
        };
        let (mut theirs, mut ours) = (Vec::with_capacity(BLOCKS), Vec::with_capacity(BLOCKS));
        for _ in 0..BLOCKS {
            theirs.push(time(&mut || {
                out.clear();
                serde_json::to_writer(&mut out, black_box(&r)).expect("serialisable");
            }));
            ours.push(time(&mut || {
                out.clear();
                black_box(&r).write_json(&mut out);
            }));
        }
        let best = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        println!(
            "{which:20} ({} B) | {:.2} µs, {:.2} µs | {:.2} µs, {:.2} µs | {:.2}, {:.2}",
            r.to_json().len(),
            best(&theirs),
            mean(&theirs),
            best(&ours),
            mean(&ours),
            best(&ours) / best(&theirs),
            mean(&ours) / mean(&theirs),
        );
    }
}
