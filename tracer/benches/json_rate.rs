//! How many records per second go from ring-buffer bytes to JSON lines on one core, without
//! the kernel (the workload is `tracer::json_rate`: 1000 TCP flows x 20 rounds through a
//! proxy, 7 ring records in and 8 JSON lines out per flow and round). Divan reports the
//! rate as items (records) per second; run it on an otherwise quiet machine:
//!
//! ```sh
//! cargo bench -p tracer --bench json_rate
//! ```
use std::sync::LazyLock;

use divan::{counter::ItemsCount, Bencher};
use tracer::json_rate::Workload;

fn main() {
    divan::main();
}

/// Built once: a pass is ~0.1 s, the records take longer to build than to decode.
static WORKLOAD: LazyLock<Workload> = LazyLock::new(Workload::new);

/// Decoded, correlated and written as JSON lines, without `node` and wall clock.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn json(b: Bencher) {
    let w = &*WORKLOAD;
    b.counter(ItemsCount::new(w.records()))
        .bench(|| w.json(false));
}

/// The same with `node`, `wall_ns` and `time` on every record: the tracer's output.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn json_stamped(b: Bencher) {
    let w = &*WORKLOAD;
    b.counter(ItemsCount::new(w.records()))
        .bench(|| w.json(true));
}

/// Decoded and correlated, not rendered: what the flow table costs alone.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn not_rendered(b: Bencher) {
    let w = &*WORKLOAD;
    b.counter(ItemsCount::new(w.records())).bench(|| w.bare());
}
