# commitlog developer entry points. `make help` lists them.
CARGO ?= cargo
SEEDS ?= 100000
FUZZ_SECS ?= 60
FUZZ_TARGETS ?= frame_decoder text_decoder gossip_packet

.PHONY: help build release run dev run-tls gencert bench-tls test lint fmt loom sim bench fuzz clean gossip-sim gossip-bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## debug build of the library and both binaries
	$(CARGO) build --all-targets

release: ## optimized binaries in target/release
	$(CARGO) build --release --bins

dev: release ## run a single --dev node on 127.0.0.1:8400 (temp data dir)
	RUST_LOG=$${RUST_LOG:-info} ./target/release/commitlogd --dev

run: dev ## run the service locally (a --dev node until the cluster lands)

CERTS ?= certs/out

gencert: $(CERTS)/ca.pem ## CA, server, peer, root and nobody certificates into certs/out (openssl; CERT_HOST=name adds a SAN)

$(CERTS)/ca.pem: certs/gencert.sh
	FORCE=1 ./certs/gencert.sh $(CERTS)

run-tls: release gencert ## a --dev node with mTLS + ACL on 127.0.0.1:8400 (certs from make gencert); see README "Secure setup"
	RUST_LOG=$${RUST_LOG:-info} ./target/release/commitlogd --dev \
		--server-tls-cert-file $(CERTS)/server.pem --server-tls-key-file $(CERTS)/server-key.pem \
		--server-tls-ca-file $(CERTS)/ca.pem \
		--peer-tls-cert-file $(CERTS)/peer.pem --peer-tls-key-file $(CERTS)/peer-key.pem \
		--peer-tls-ca-file $(CERTS)/ca.pem \
		--acl-model-file certs/model.conf --acl-policy-file certs/policy.csv

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

bench-tls: ## produce throughput (W2/W3-like) and handshakes/s, plaintext vs TLS, against a release node
	./scripts/bench_tls.sh

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

clean: ## remove build output
	$(CARGO) clean
