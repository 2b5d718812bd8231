# commitlog developer entry points. `make help` lists them.
CARGO ?= cargo
SEEDS ?= 100000
FUZZ_SECS ?= 60
FUZZ_TARGETS ?= frame_decoder text_decoder gossip_packet raft_message

.PHONY: help build release run run-clean dev test lint fmt loom sim bench fuzz clean gossip-sim gossip-bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## debug build of the library and both binaries
	$(CARGO) build --all-targets

release: ## optimized binaries in target/release
	$(CARGO) build --release --bins

dev: release ## run a single --dev node on 127.0.0.1:8400 (temp data dir)
	RUST_LOG=$${RUST_LOG:-info} ./target/release/commitlogd --dev

run: ## local 3-node cluster in the foreground (rpc BASE_PORT+0..2, gossip +10..12; BASE_PORT=8400)
	./scripts/run-cluster.sh

run-clean: ## wipe the data of the local cluster of `make run` (target/cluster)
	rm -rf target/cluster

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

bench: ## storage append benchmark + clog bench W1-W4 against a release commitlogd (see BENCHMARKS.md)
	./scripts/bench.sh

fuzz: ## fuzz each decoder in FUZZ_TARGETS for FUZZ_SECS seconds (nightly + cargo-fuzz, installed if missing)
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/target/corpus/$$t fuzz/corpus/$$t && \
		$(CARGO) +nightly fuzz run $$t fuzz/target/corpus/$$t fuzz/corpus/$$t -- -max_total_time=$(FUZZ_SECS) || exit 1; \
	done

gossip-sim: ## long gossip simulations (100 nodes, 1 h virtual time at 10% loss, more seeds)
	GOSSIP_SIM_LONG=1 $(CARGO) test --release --lib gossip::sim

gossip-bench: ## gossip convergence / detection / bandwidth table from the simulator
	$(CARGO) bench --bench gossip_sim

sim: ## raft simulator soak: SEEDS seeds in release (replay a seed: see src/raft/mod.rs)
	RAFT_SIM_SEEDS=$(SEEDS) $(CARGO) test --release --lib raft::sim::tests::many_seeds -- --nocapture

clean: ## remove build output
	$(CARGO) clean
