//! Splits the input into `.store` / `.index` files (and an optional extra file) in
//! a scratch directory (layout: `commitlog::storage::fuzzing::LogInput`) and opens
//! the log there: twice with `Log::open`, optionally with `Log::open_and_repair`,
//! optionally appending a record. Properties (`check_log_recovery`): no panic;
//! every record returned has a good checksum, the offset asked for and bytes found
//! in a store file; offsets are contiguous and single and range reads agree; the
//! same state on every open; opening holds at most `decode_budget_bytes(files)`.
#![no_main]

use commitlog_fuzz::{CountingAlloc, Probe};
use libfuzzer_sys::fuzz_target;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fuzz_target!(|data: &[u8]| {
    commitlog::storage::fuzzing::check_log_recovery_probed(data, &Probe);
});
