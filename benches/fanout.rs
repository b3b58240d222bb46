//! criterion benches of the hot path: encoding, the simulator, and fan-out to many clients.
//!
//! - `encode/one_quote`: one quote to its SSE frame (JSON included).
//! - `simulator/updates`: generating updates over all symbols (Throughput = updates).
//! - `fanout_inprocess/{all,subset5,trades}/N`: one published batch delivered to N client
//!   streams inside the process: wake-ups, cursor walks and chunk building (Throughput =
//!   events). `all` takes every symbol and kind, `subset5` every kind of 5 symbols, `trades`
//!   the trades and bars (`?events=trade,bar`) of every symbol.
//! - `fanout_loopback/all/1000`: the same over loopback HTTP/1.1 to 1,000 real connections,
//!   through hyper and the kernel (Throughput = events read by the clients).
//!
//! Sample sizes are small so the whole run takes a few minutes on 2 cores.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tickcast::feed::{Feed, Kinds, Subscription};
use tickcast::http::App;
use tickcast::market::simulator::{SimConfig, Simulator};
use tickcast::market::{symbols, Event, Kind, SymbolSpec};
use tickcast::shutdown;
use tickcast::sse::Batch;
use tickcast::stream::{Pacing, QuoteStream, Start};
use tickcast::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// Updates per published batch: 200 updates/s (100 symbols at 2/s) over a 100 ms flush.
const BATCH_UPDATES: usize = 20;

fn specs() -> Vec<SymbolSpec> {
    symbols::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/symbols.csv")).unwrap()
}

fn simulator(specs: &[SymbolSpec]) -> Simulator {
    let config = SimConfig {
        seed: 1,
        rate: 2.0,
        speed: 1.0,
        start_epoch_ms: 1_700_000_000_000,
        // Monday 2024-03-04, 09:30 ET: the opening auction comes first.
        market_start: 1_709_562_600_000,
        skip_closed: true,
        first_seq: 1,
    };
    Simulator::try_new(specs, config).unwrap()
}

/// Produces batches of exactly [`BATCH_UPDATES`] consecutive updates.
struct Batches {
    sim: Simulator,
    pending: Vec<Event>,
    now_ns: u64,
}

impl Batches {
    fn new(sim: Simulator) -> Self {
        Batches {
            sim,
            pending: Vec::new(),
            now_ns: 0,
        }
    }

    fn next(&mut self) -> Vec<Event> {
        while self.pending.len() < BATCH_UPDATES {
            self.now_ns += 50_000_000;
            self.sim.advance_to(self.now_ns, &mut self.pending);
        }
        self.pending.drain(..BATCH_UPDATES).collect()
    }
}

fn encode(c: &mut Criterion) {
    let specs = specs();
    let sim = simulator(&specs);
    let one = &sim.opening_quotes()[..1];
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_quote", |b| {
        b.iter(|| Batch::encode(std::hint::black_box(one)))
    });
    group.finish();
}

fn simulate(c: &mut Criterion) {
    let specs = specs();
    let mut group = c.benchmark_group("simulator");
    // One second of feed time at 2 updates/s/symbol: ~240 updates over all 120 symbols.
    let mut probe = simulator(&specs);
    let mut out = Vec::new();
    probe.advance_to(1_000_000_000, &mut out);
    group.throughput(Throughput::Elements(out.len() as u64));
    group.bench_function("updates", |b| {
        b.iter_batched(
            || (simulator(&specs), Vec::with_capacity(512)),
            |(mut sim, mut out)| {
                sim.advance_to(1_000_000_000, &mut out);
                out
            },
            criterion::BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Counts events delivered to clients and wakes the bench when a target is reached.
struct Delivered {
    events: AtomicU64,
    target: AtomicU64,
    done: Notify,
}

impl Delivered {
    fn new() -> Arc<Delivered> {
        Arc::new(Delivered {
            events: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            done: Notify::new(),
        })
    }

    fn add(&self, n: u64) {
        let total = self.events.fetch_add(n, Ordering::AcqRel) + n;
        if total >= self.target.load(Ordering::Acquire) {
            self.done.notify_one();
        }
    }

    async fn wait_for(&self, target: u64) {
        self.target.store(target, Ordering::Release);
        while self.events.load(Ordering::Acquire) < target {
            self.done.notified().await;
        }
    }
}

/// Events in a piece of an SSE byte stream: each ends with a blank line.
fn count_events(chunk: &[u8]) -> u64 {
    memchr::memmem::find_iter(chunk, b"\n\n").count() as u64
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Whether a client of `sub` gets `event`.
fn wants(sub: &Subscription, event: &Event) -> bool {
    sub.kinds.contains(event.kind()) && sub.symbols.contains(event.symbol_index())
}

fn fanout_inprocess(c: &mut Criterion) {
    let rt = runtime();
    let specs = specs();
    let mut group = c.benchmark_group("fanout_inprocess");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(4))
        .warm_up_time(Duration::from_secs(1));
    for clients in [1_000u64, 5_000, 10_000] {
        for name in ["all", "subset5", "trades"] {
            // Subset clients take 5 symbols each, spread over the table.
            let subscription = |i: u64| match name {
                "subset5" => Subscription::some(
                    (0..5).map(|k| ((i * 7 + k * 23) % specs.len() as u64) as u16),
                ),
                "trades" => Subscription::ALL.with_kinds(Kinds::of([Kind::Trade, Kind::Bar])),
                _ => Subscription::ALL,
            };
            let mut batches = Batches::new(simulator(&specs));
            let probe: Vec<Vec<Event>> = (0..50).map(|_| batches.next()).collect();
            let per_batch: u64 = probe
                .iter()
                .map(|b| {
                    (0..clients)
                        .map(|i| b.iter().filter(|u| wants(&subscription(i), u)).count() as u64)
                        .sum::<u64>()
                })
                .sum::<u64>()
                / probe.len() as u64;
            group.throughput(Throughput::Elements(per_batch));
            group.bench_function(BenchmarkId::new(name, clients), |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let specs = specs.clone();
                    async move {
                        let feed = Feed::new(specs.clone(), 10_000);
                        let mut batches = Batches::new(simulator(&specs));
                        let opening = batches.sim.opening_quotes();
                        feed.publish(Batch::encode(&opening));
                        let (trigger, stop) = shutdown::channel();
                        let delivered = Delivered::new();
                        for i in 0..clients {
                            let slot = feed.try_register_client(usize::MAX).unwrap();
                            let mut stream = QuoteStream::open(
                                feed.clone(),
                                subscription(i),
                                Start::Snapshot,
                                Pacing {
                                    retry_ms: 3000,
                                    flush: Duration::ZERO,
                                },
                                stop.clone(),
                                slot,
                            );
                            stream.next_chunk().await; // the prelude
                            let delivered = delivered.clone();
                            tokio::spawn(async move {
                                while let Some(chunk) = stream.next_chunk().await {
                                    delivered.add(chunk.events);
                                }
                            });
                        }
                        tokio::task::yield_now().await;
                        let mut expected = 0;
                        let mut elapsed = Duration::ZERO;
                        for _ in 0..iters {
                            let updates = batches.next();
                            expected += (0..clients)
                                .map(|i| {
                                    updates
                                        .iter()
                                        .filter(|u| wants(&subscription(i), u))
                                        .count() as u64
                                })
                                .sum::<u64>();
                            let start = tokio::time::Instant::now();
                            feed.publish(Batch::encode(&updates));
                            delivered.wait_for(expected).await;
                            elapsed += start.elapsed();
                        }
                        trigger.fire();
                        elapsed
                    }
                })
            });
        }
    }
    group.finish();
}

fn fanout_loopback(c: &mut Criterion) {
    let rt = runtime();
    let specs = specs();
    let clients = 1_000u64;
    let mut group = c.benchmark_group("fanout_loopback");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(6))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Elements(clients * BATCH_UPDATES as u64));
    group.bench_function(BenchmarkId::new("all", clients), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let specs = specs.clone();
            async move {
                let (trigger, _) = shutdown::channel();
                let mut config = Config::defaults();
                config.max_clients = 20_000;
                // Measure delivery, not the flush policy: write as soon as a batch is published.
                config.flush_ms = 0;
                let app = App::new(
                    config,
                    specs.clone(),
                    trigger,
                    tickcast::publisher::scenario_channel().0,
                )
                .unwrap();
                let feed = app.feed.clone();
                let mut batches = Batches::new(simulator(&specs));
                feed.publish(Batch::encode(&batches.sim.opening_quotes()));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = listener.local_addr().unwrap();
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let server = tokio::spawn(tickcast::server::serve(listener, app, async {
                    let _ = stop_rx.await;
                }));
                let delivered = Delivered::new();
                for _ in 0..clients {
                    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
                    socket.set_nodelay(true).unwrap();
                    socket
                        .write_all(b"GET /quotes HTTP/1.1\r\nHost: bench\r\n\r\n")
                        .await
                        .unwrap();
                    let delivered = delivered.clone();
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; 64 * 1024];
                        let mut last = 0u8;
                        while let Ok(n) = socket.read(&mut buf).await {
                            if n == 0 {
                                break;
                            }
                            let mut events = count_events(&buf[..n]);
                            if last == b'\n' && buf[0] == b'\n' {
                                events += 1;
                            }
                            last = buf[n - 1];
                            delivered.add(events);
                        }
                    });
                }
                // Each client first gets retry + snapshot: two events.
                delivered.wait_for(clients * 2).await;
                let mut expected = clients * 2;
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    let updates = batches.next();
                    expected += clients * updates.len() as u64;
                    let start = tokio::time::Instant::now();
                    feed.publish(Batch::encode(&updates));
                    delivered.wait_for(expected).await;
                    elapsed += start.elapsed();
                }
                let _ = stop_tx.send(());
                let _ = server.await;
                elapsed
            }
        })
    });
    group.finish();
}

criterion_group!(benches, encode, simulate, fanout_inprocess, fanout_loopback);
criterion_main!(benches);
