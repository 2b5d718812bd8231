# commitlog developer entry points. `make help` lists them.
CARGO ?= cargo
SEEDS ?= 100000
REPLICA_SEEDS ?= 20000
FUZZ_SECS ?= 60
FUZZ_TARGETS ?= frame_decoder text_decoder gossip_packet raft_message record_format index_slots log_recovery node_meta record_v1

.PHONY: help build release install man run run-node run-clean dev run-tls gencert bench-tls test lint fmt loom sim bench bench-cluster bench-catch-up fuzz clean gossip-sim gossip-bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## debug build of the library and both binaries
	$(CARGO) build --all-targets

release: ## optimized binaries in target/release
	$(CARGO) build --release --bins

# make install: where the binaries go. ~/.cargo/bin is on PATH wherever rustup set up
# the toolchain; PREFIX=/usr/local (as root) installs system-wide. BUILD_DIR is where
# the binaries are taken from (the tests install the debug build with CARGO=true).
PREFIX ?= $(HOME)/.cargo
BINDIR ?= $(PREFIX)/bin
BUILD_DIR ?= target/release

install: release ## install clog and commitlogd into $(PREFIX)/bin (default ~/.cargo/bin; PREFIX=/usr/local elsewhere)
	install -d "$(BINDIR)"
	install -m 0755 "$(BUILD_DIR)/clog" "$(BUILD_DIR)/commitlogd" "$(BINDIR)/"
	@echo "installed clog and commitlogd in $(BINDIR)"
	@case ":$$PATH:" in *":$(BINDIR):"*) ;; *) echo "note: $(BINDIR) is not on your PATH: add it, or call $(BINDIR)/clog";; esac

MAN_DIR ?= target/man

man: release ## manual pages clog.1 and commitlogd.8 into MAN_DIR (target/man), generated from the flags
	install -d "$(MAN_DIR)"
	"$(BUILD_DIR)/clog" generate-man "$(MAN_DIR)"
	"$(BUILD_DIR)/commitlogd" --generate-man "$(MAN_DIR)"
	@echo "wrote $(MAN_DIR)/clog.1 and $(MAN_DIR)/commitlogd.8 (man -l $(MAN_DIR)/clog.1)"

dev: release ## run a single --dev node on 127.0.0.1:8400 (temp data dir)
	RUST_LOG=$${RUST_LOG:-info} ./target/release/commitlogd --dev

run: ## local 3-node cluster in the foreground (rpc BASE_PORT+0..2, gossip +10..12; BASE_PORT=8400); creates certs/out when missing
	@if [ ! -f $(CERTS)/ca.pem ] && command -v openssl >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory gencert || echo "warning: could not create certs/out (make gencert); the plaintext cluster does not need them"; \
	fi
	./scripts/run-cluster.sh

run-node: ## start only node N (1-3) of the `make run` cluster, e.g. after killing it: make run-node N=2
	./scripts/run-cluster.sh --node $(N)

run-clean: ## wipe the data of the local cluster of `make run` (target/cluster)
	rm -rf target/cluster

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

test: ## everything CI runs: format, lints, unit + integration tests, loom models, deploy checks
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --all-targets
	$(MAKE) loom
	$(MAKE) deploy-check

lint: ## rustfmt check and clippy with warnings as errors
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## format the code
	$(CARGO) fmt --all

loom: ## model-check the cross-thread hand-offs with loom
	RUSTFLAGS="--cfg commitlog_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
		$(CARGO) test --release --lib loom_

bench: ## storage bench + ROUNDS rounds of clog bench W1-W4 interleaved with Redis (when installed), fsync probe, ratios
	./scripts/bench.sh

bench-tls: ## produce throughput (W2/W3-like) and handshakes/s, plaintext vs TLS, against a release node
	./scripts/bench_tls.sh

bench-cluster: ## ROUNDS rounds of 3-node W1-W4 interleaved with etcd / NATS R3 (when installed), fsync probe, catch-up MB/s, ratios
	$(CARGO) build --release --bins
	./scripts/bench-cluster.sh

bench-catch-up: ## wiped-follower catch-up MB/s vs the leader's W3 during it, per --catch-up-bytes-per-sec in RATES
	$(CARGO) build --release --bins
	./scripts/bench-catch-up.sh

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

sim: ## raft + replica simulator soaks: SEEDS / REPLICA_SEEDS seeds in release (replay: src/raft/mod.rs, src/replica/sim/tests.rs)
	RAFT_SIM_SEEDS=$(SEEDS) $(CARGO) test --release --lib raft::sim::tests::many_seeds -- --nocapture
	REPLICA_SIM_SEEDS=$(REPLICA_SEEDS) $(CARGO) test --release --lib replica::sim::tests::many_seeds -- --nocapture

clean: ## remove build output
	$(CARGO) clean

# ---- Deployment (deploy/; README "Operating commitlog") ------------------------------
# The container image's build stage runs exactly this command; `make deploy-check`
# fails if deploy/Dockerfile's RUN line differs, `make docker-build-stage` runs it.
DOCKER_CARGO_BUILD := cargo build --release --locked --bins
DOCKER ?= docker
IMAGE ?= commitlog:0.1.0
NAMESPACE ?= default
SET ?=
# Python tools for the chart checks, pinned, in a venv under target/ (pip, first run only).
DEPLOY_VENV ?= target/deploy-venv
DEPLOY_PY := $(DEPLOY_VENV)/bin/python
KUBERNETES_VALIDATE_VERSION ?= 1.37.0
YAMLLINT_VERSION ?= 1.38.0
# Kubernetes versions the rendered chart is validated against (kubernetes-validate
# 1.37.0 ships schemas for 1.25 to 1.37).
K8S_VERSIONS ?= 1.29.0,1.37.0
DEPLOY_STAMP := $(DEPLOY_VENV)/.installed-kv$(KUBERNETES_VALIDATE_VERSION)-yl$(YAMLLINT_VERSION)

.PHONY: deploy-check docker docker-build-stage chart

$(DEPLOY_STAMP):
	@python3 -m venv $(DEPLOY_VENV) || { echo "cannot create a venv: install python3-venv (Debian: apt-get install python3-venv)"; exit 1; }
	$(DEPLOY_VENV)/bin/pip install --quiet --disable-pip-version-check \
		kubernetes-validate==$(KUBERNETES_VALIDATE_VERSION) yamllint==$(YAMLLINT_VERSION)
	@touch $@

deploy-check: $(DEPLOY_STAMP) ## check systemd unit (systemd-analyze), Dockerfile build command, Helm chart (render + k8s schemas)
	deploy/test/check_systemd.sh
	$(DEPLOY_PY) deploy/test/check_dockerfile.py
	$(DEPLOY_PY) deploy/test/test_chart.py
	DEPLOY_PY=$(DEPLOY_PY) deploy/test/test_checks.sh
	@mkdir -p target/chart
	$(DEPLOY_PY) deploy/test/render_chart.py --output target/chart/default.yaml --validate $(K8S_VERSIONS)
	$(DEPLOY_PY) deploy/test/render_chart.py --set tls.enabled=true --output target/chart/tls.yaml --validate $(K8S_VERSIONS)
	$(DEPLOY_VENV)/bin/yamllint --strict -c deploy/test/yamllint.yaml \
		deploy/helm/commitlog/Chart.yaml deploy/helm/commitlog/values.yaml target/chart/default.yaml target/chart/tls.yaml

docker: ## build the container image IMAGE (default commitlog:0.1.0) from deploy/Dockerfile; needs a Docker engine
	$(DOCKER) build -f deploy/Dockerfile -t $(IMAGE) .

docker-build-stage: ## run the Dockerfile's build-stage command on exactly its build context, without Docker
	python3 deploy/test/check_dockerfile.py --build

chart: $(DEPLOY_STAMP) ## render the Helm chart to target/chart/commitlog.yaml (NAMESPACE=ns SET="tls.enabled=true replicas=5")
	@mkdir -p target/chart
	$(DEPLOY_PY) deploy/test/render_chart.py --namespace $(NAMESPACE) $(foreach s,$(SET),--set $(s)) \
		--output target/chart/commitlog.yaml --validate $(K8S_VERSIONS)
	@echo "apply with: kubectl create namespace $(NAMESPACE); kubectl apply -n $(NAMESPACE) -f target/chart/commitlog.yaml"
