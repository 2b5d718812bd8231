//! The floor under a synchronous produce's acknowledgement that is not the disk: one
//! TCP round trip over loopback between two blocking threads (100-byte request,
//! 16-byte answer, TCP_NODELAY), with nothing done in between. A W1 ack costs at
//! least this plus one fsync (the fsync probe of `make bench`), whatever the server
//! (issue #15, BENCHMARKS.md). Prints round trips per second, p50 and p99.
//!
//! `cargo bench --bench loopback_rtt` (ROUND_TRIPS, default 50,000).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

fn main() -> std::io::Result<()> {
    let round_trips: usize = std::env::var("ROUND_TRIPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000)
        .max(100);
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut request = [0u8; 100];
        // Ends when the client closes.
        while s.read_exact(&mut request).is_ok() {
            s.write_all(&request[..16])?;
        }
        Ok(())
    });
    let mut client = TcpStream::connect(addr)?;
    client.set_nodelay(true)?;
    let request = [1u8; 100];
    let mut answer = [0u8; 16];
    let mut micros: Vec<u64> = Vec::with_capacity(round_trips);
    let started = Instant::now();
    for _ in 0..round_trips {
        let t = Instant::now();
        client.write_all(&request)?;
        client.read_exact(&mut answer)?;
        micros.push(t.elapsed().as_micros() as u64);
    }
    let secs = started.elapsed().as_secs_f64();
    drop(client);
    server
        .join()
        .map_err(|_| std::io::Error::other("server thread panicked"))??;
    micros.sort_unstable();
    println!(
        "loopback round trips (100 B request, 16 B answer, blocking threads): {:.0}/s, \
         p50 {} us, p99 {} us",
        round_trips as f64 / secs,
        micros[round_trips / 2],
        micros[round_trips * 99 / 100]
    );
    Ok(())
}
