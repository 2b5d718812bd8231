# commitlog developer entry points. `make help` lists them.
CARGO ?= cargo
SEEDS ?= 100000
FUZZ_SECS ?= 60

.PHONY: help build release run dev test lint fmt loom sim bench fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## debug build of the library and both binaries
	$(CARGO) build --all-targets

release: ## optimized binaries in target/release
	$(CARGO) build --release --bins

dev: release ## run a single --dev node on 127.0.0.1:8400 (temp data dir)
	RUST_LOG=$${RUST_LOG:-info} ./target/release/commitlogd --dev

run: dev ## run the service locally (a --dev node until the cluster lands)

test: ## everything CI runs: format, lints, unit + integration tests, loom model
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets
	$(MAKE) loom

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

loom: ## model-check the cross-thread hand-offs with loom
	RUSTFLAGS="--cfg commitlog_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
		$(CARGO) test --release --lib loom_

sim: ## raft simulator soak: SEEDS seeds in release (replay a seed: see src/raft/mod.rs)
	RAFT_SIM_SEEDS=$(SEEDS) $(CARGO) test --release --lib raft::sim::tests::many_seeds -- --nocapture

clean: ## remove build output
	$(CARGO) clean
