//! `clog bench`: produce throughput and latency, consume throughput, handshakes/s.

use std::collections::VecDeque;
use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use commitlog::client::histogram::Histogram;
use commitlog::client::{Client, Pipeline};
use commitlog::types::Offset;
use commitlog::wire::ErrorCode;

use crate::{client_config, connect, explain, BenchArgs, Cli, Failure, Out, Output};

/// Live progress of a bench on stderr, printed by a helper thread about once a second.
struct Progress {
    done: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    /// Starts printing if `--progress` was given or stderr is a terminal.
    fn start(forced: bool, total: Option<u64>) -> Progress {
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let enabled = forced || io::stderr().is_terminal();
        let thread = enabled.then(|| {
            let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut last = (Instant::now(), 0u64);
                // Ends when the bench stops it (the bench itself is bounded by --max-secs).
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..10 {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    let now = (Instant::now(), done.load(Ordering::Relaxed));
                    let secs = now.0.duration_since(last.0).as_secs_f64().max(1e-9);
                    let rate = now.1.saturating_sub(last.1) as f64 / secs;
                    let total = total.map_or("?".to_string(), |t| t.to_string());
                    eprintln!("bench: {}/{total} records, {rate:.0} records/s", now.1);
                    last = now;
                }
            })
        });
        Progress { done, stop, thread }
    }

    /// A counter the workers add finished records to.
    fn counter(&self) -> Arc<AtomicU64> {
        Arc::clone(&self.done)
    }

    /// Stops the printing (also on drop, so early error returns stop it too).
    fn finish(self) {}
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct ProducerReport {
    acked: u64,
    histogram: Histogram,
    error: Option<String>,
}

pub(crate) fn bench(cli: &Cli, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    if args.consume {
        return bench_consume(cli, args, out);
    }
    if let Some(n) = args.handshakes {
        return bench_handshakes(cli, n, args, out);
    }
    let producers = args.producers.clamp(1, 1024);
    let total = args.count.unwrap_or(20_000);
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let barrier = Arc::new(Barrier::new(producers + 1));
    let progress = Progress::start(args.progress, Some(total));
    let mut handles = Vec::new();
    let mut cluster = connect(cli)?;
    for p in 0..producers {
        // Split the count as evenly as possible.
        let share = total / producers as u64 + u64::from((p as u64) < total % producers as u64);
        let mut client = cluster
            .leader_connection()
            .map_err(|e| explain(&cli.addr, e))?;
        let barrier = Arc::clone(&barrier);
        let done = progress.counter();
        let size = args.size;
        let window = args.window.clamp(1, 65_536);
        handles.push(std::thread::spawn(move || {
            let value: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
            let mut report = ProducerReport {
                acked: 0,
                histogram: Histogram::new(),
                error: None,
            };
            barrier.wait();
            let mut pipeline = Pipeline::new(&mut client, window);
            let record = |ack: commitlog::client::Ack, report: &mut ProducerReport| match ack.result
            {
                Ok(_) => {
                    report.acked += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                    report.histogram.record(ack.latency.as_micros() as u64);
                }
                Err(e) => {
                    report.error.get_or_insert_with(|| e.to_string());
                }
            };
            for _ in 0..share {
                if Instant::now() >= deadline {
                    break;
                }
                match pipeline.produce(&value) {
                    Ok(Some(ack)) => record(ack, &mut report),
                    Ok(None) => {}
                    Err(e) => {
                        report.error = Some(e.to_string());
                        return report;
                    }
                }
            }
            match pipeline.drain() {
                Ok(acks) => acks.into_iter().for_each(|ack| record(ack, &mut report)),
                Err(e) => report.error = Some(e.to_string()),
            }
            report
        }));
    }
    barrier.wait();
    let started = Instant::now();
    let mut histogram = Histogram::new();
    let mut acked = 0u64;
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(report) => {
                acked += report.acked;
                histogram.merge(&report.histogram);
                if first_error.is_none() {
                    first_error = report.error;
                }
            }
            Err(_) => first_error = Some("a producer thread panicked".to_string()),
        }
    }
    progress.finish();
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rps = acked as f64 / secs;
    let mbps = acked as f64 * args.size as f64 / secs / 1e6;
    let (p50, p99, p999, max) = (
        histogram.quantile(0.5),
        histogram.quantile(0.99),
        histogram.quantile(0.999),
        histogram.max(),
    );
    writeln!(
        out,
        "produce: {acked} records of {} B in {secs:.3} s with {producers} producer(s) x window {}: {rps:.0} records/s, {mbps:.2} MB/s, latency p50 {p50} us, p99 {p99} us, p99.9 {p999} us, max {max} us",
        args.size, args.window
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tProduce\t{}\t{acked}\t{secs:.3}\t{rps:.0}\t{mbps:.2}\t{p50}\t{p99}\t{p999}\t{max}",
        args.label
    )?;
    if let Some(e) = first_error {
        return Err(Failure(format!("{e} (some produces failed; see the server log)")).into());
    }
    Ok(())
}

/// Sequential connect (+ TLS handshake) + Ping, `n` times: connection set-up cost.
fn bench_handshakes(cli: &Cli, n: u64, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    let config = client_config(cli)?;
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let mut histogram = Histogram::new();
    let started = Instant::now();
    let mut done = 0u64;
    // Bounded by n and the deadline.
    while done < n && Instant::now() < deadline {
        let t0 = Instant::now();
        let mut client = Client::connect_with(cli.addr.as_str(), config.clone())
            .map_err(|e| explain(&cli.addr, e))?;
        client.ping().map_err(|e| explain(&cli.addr, e))?;
        histogram.record(t0.elapsed().as_micros() as u64);
        done += 1;
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rate = done as f64 / secs;
    let (p50, p99, max) = (
        histogram.quantile(0.5),
        histogram.quantile(0.99),
        histogram.max(),
    );
    let kind = if cli.ca.is_some() { "TLS" } else { "plaintext" };
    writeln!(
        out,
        "handshakes: {done} {kind} connections (connect+handshake+ping) in {secs:.3} s: {rate:.0}/s, p50 {p50} us, p99 {p99} us, max {max} us"
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tHandshake\t{}\t{done}\t{secs:.3}\t{rate:.0}\t0\t{p50}\t{p99}\t0\t{max}",
        args.label
    )?;
    Ok(())
}

fn bench_consume(cli: &Cli, args: &BenchArgs, out: &mut Out<'_>) -> Result<(), Output> {
    // One connection to one read target (a follower when there is one).
    let mut client = connect(cli)?
        .read_connection()
        .map_err(|e| explain(&cli.addr, e))?;
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let started = Instant::now();
    let mut next = Offset(args.from);
    let mut records = 0u64;
    let mut bytes = 0u64;
    let want = args.count;
    let progress = Progress::start(args.progress, want);
    let progress_done = progress.counter();
    // Two fetches in flight: while one response is read here, the server prepares
    // the next one, which starts where this one is predicted to end (the previous
    // response's record count further on). A wrong guess costs only a round trip:
    // records already counted are skipped, and a response that starts past `next`
    // (it would leave a hole) is dropped and the fetch sent again from `next`.
    let mut in_flight: VecDeque<(u32, Offset)> = VecDeque::new();
    let mut ahead = next; // start of the latest fetch sent
    let mut per_fetch = 0u64;
    let mut high_watermark: Option<Offset> = None;
    let fail = |e| -> Output { explain(&cli.addr, e).into() };
    // Bounded by the deadline and by reaching the end.
    while Instant::now() < deadline {
        if in_flight.is_empty() {
            let id = client.send_fetch(next, args.max_bytes, 0).map_err(fail)?;
            in_flight.push_back((id, next));
            ahead = next;
        }
        let guess = Offset(ahead.0 + per_fetch);
        let room = want.is_none_or(|n| records + per_fetch < n);
        if in_flight.len() < 2
            && per_fetch > 0
            && room
            && high_watermark.is_some_and(|hw| guess < hw)
        {
            let id = client.send_fetch(guess, args.max_bytes, 0).map_err(fail)?;
            in_flight.push_back((id, guess));
            ahead = guess;
        }
        let Some((id, from)) = in_flight.pop_front() else {
            break;
        };
        let usable = from <= next;
        // Records are looked at in place in the response frame (no copies).
        let mut got = 0u64;
        let fetched = client.recv_fetch_with(id, 0, |record| {
            if usable && record.offset >= next {
                got += 1;
                bytes += record.value.len() as u64;
                next = Offset(record.offset.0 + 1);
            }
        });
        let count = match fetched {
            Ok((hw, count)) => {
                high_watermark = Some(hw);
                count
            }
            Err(e) if e.code() == Some(ErrorCode::OffsetOutOfRange) && records == 0 => {
                // The log's start was removed by retention: begin at the first offset.
                let status = client.status().map_err(fail)?;
                if status.first_index <= next {
                    return Err(fail(e));
                }
                next = status.first_index;
                continue;
            }
            Err(_) if !usable => continue, // a guess past the end; `next` is re-sent
            Err(e) => return Err(fail(e)),
        };
        if !usable {
            continue;
        }
        records += got;
        progress_done.store(records, Ordering::Relaxed);
        per_fetch = count;
        let done = match want {
            Some(n) => records >= n,
            None => high_watermark.is_some_and(|hw| next >= hw),
        };
        if done || count == 0 {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64().max(1e-9);
    let rps = records as f64 / secs;
    let mbps = bytes as f64 / secs / 1e6;
    progress.finish();
    writeln!(
        out,
        "consume: {records} records ({bytes} B) in {secs:.3} s: {rps:.0} records/s, {mbps:.2} MB/s"
    )?;
    writeln!(
        out,
        "RESULT\tCommitlog\tConsume\t{}\t{records}\t{secs:.3}\t{rps:.0}\t{mbps:.2}\t0\t0\t0\t0",
        args.label
    )?;
    Ok(())
}
