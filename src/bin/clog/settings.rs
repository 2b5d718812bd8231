//! Connection settings: the global flags (or their `CLOG_*` variables) over the
//! defaults, checked before anything is sent so that mistakes fail at once (a
//! malformed address or port, a host name that does not resolve, a lone --cert).

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use commitlog::client::cluster::{
    ClusterClient, ClusterConfig, MemberCache, PerTarget, RetryPolicy,
};
use commitlog::client::tls::{client_config as client_config_tls, host_of, ClientTls};
use commitlog::client::{Client, ClientConfig};

use crate::fail::{explain, tls_hint, Failure, EXIT_AUTH, EXIT_UNAVAILABLE};
use crate::{Cli, OutputKind};

/// The default of --addr.
pub(crate) const DEFAULT_ADDR: &str = "127.0.0.1:8400";
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
const DEFAULT_RETRY_MS: u64 = 15_000;

/// What every command connects with.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    /// --addr as given (for messages).
    pub(crate) addr: String,
    pub(crate) seeds: Vec<String>,
    pub(crate) timeout_ms: u64,
    pub(crate) retry_ms: u64,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) output: OutputKind,
}

impl Settings {
    /// Flags and environment over the profile over the defaults, checked.
    pub(crate) fn resolve(cli: &Cli) -> Result<Settings, Failure> {
        let p = crate::profile::active(cli)?.unwrap_or_default();
        let addr = cli
            .addr
            .clone()
            .or(p.addr)
            .unwrap_or_else(|| DEFAULT_ADDR.to_string());
        let settings = Settings {
            seeds: check_addresses(&addr)?,
            addr,
            timeout_ms: cli
                .timeout_ms
                .or(p.timeout_ms)
                .unwrap_or(DEFAULT_TIMEOUT_MS),
            retry_ms: cli.retry_ms.or(p.retry_ms).unwrap_or(DEFAULT_RETRY_MS),
            ca: cli.ca.clone().or(p.ca),
            cert: cli.cert.clone().or(p.cert),
            key: cli.key.clone().or(p.key),
            output: cli.output,
        };
        if settings.timeout_ms == 0 {
            return Err(Failure::usage(
                "timeout_ms must be at least 1 (the profile says 0)",
            ));
        }
        if settings.cert.is_some() != settings.key.is_some() {
            return Err(Failure::usage(
                "--cert and --key go together (a client certificate and its private key)",
            ));
        }
        if settings.cert.is_some() && settings.ca.is_none() {
            return Err(Failure::usage(
                "--cert needs --ca (the CA of the server's certificate) to speak TLS",
            ));
        }
        Ok(settings)
    }

    /// The retry budget of --retry-ms.
    pub(crate) fn retry_policy(&self) -> RetryPolicy {
        if self.retry_ms == 0 {
            return RetryPolicy::none();
        }
        RetryPolicy {
            max_total: Duration::from_millis(self.retry_ms),
            // The time budget is the bound; attempts only guard against a tight loop.
            max_attempts: 1000,
            ..RetryPolicy::default()
        }
    }

    /// The first seed.
    pub(crate) fn first_seed(&self) -> &str {
        self.seeds.first().map_or("", String::as_str)
    }

    /// Client options: timeout and, with --ca, TLS (the name checked is the host of
    /// the first seed; other members are checked against their own host).
    pub(crate) fn client_config(&self) -> Result<ClientConfig, Failure> {
        let mut config = ClientConfig {
            timeout: Duration::from_millis(self.timeout_ms),
            ..ClientConfig::default()
        };
        if let Some(ca) = &self.ca {
            let cert_key = match (&self.cert, &self.key) {
                (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
                _ => None,
            };
            let tls_failure = |e: &dyn std::fmt::Display| {
                let text = e.to_string();
                Failure::new(EXIT_AUTH, format!("{text} ({})", tls_hint(&text)))
            };
            let rustls_config = client_config_tls(ca, cert_key).map_err(|e| tls_failure(&e))?;
            let tls = ClientTls::for_host(rustls_config, host_of(self.first_seed()))
                .map_err(|e| tls_failure(&e))?;
            config.tls = Some(tls);
        }
        Ok(config)
    }

    /// The cluster configuration: seeds, timeouts, retries, TLS, member cache.
    pub(crate) fn cluster_config(&self) -> Result<ClusterConfig, Failure> {
        let mut config = ClusterConfig::new(&self.addr)
            .timeout(Duration::from_millis(self.timeout_ms))
            .retry(self.retry_policy());
        config.client = self.client_config()?;
        config.member_cache = cache_dir().map(MemberCache::new);
        if config.client.tls.is_some() {
            config.per_target = Some(PerTarget::new(|addr, options| {
                if let Some(tls) = &mut options.tls {
                    if let Ok(for_addr) = ClientTls::for_host(tls.config.clone(), host_of(addr)) {
                        *tls = for_addr;
                    }
                }
            }));
        }
        Ok(config)
    }
}

/// Splits and checks --addr: every item is `host:port` with a port in 1..=65535, and
/// its host resolves. Mistakes are reported at once, naming the item and the fix.
fn check_addresses(list: &str) -> Result<Vec<String>, Failure> {
    let seeds = check_syntax(list)?;
    for seed in &seeds {
        if let Err(e) = seed.as_str().to_socket_addrs() {
            let host = host_of(seed);
            return Err(Failure::new(
                EXIT_UNAVAILABLE,
                format!("--addr `{seed}`: cannot resolve `{host}` ({e}); check the host name, or use an IP address"),
            ));
        }
    }
    Ok(seeds)
}

/// [`check_addresses`] without resolving (for `clog profile create`).
pub(crate) fn check_syntax(list: &str) -> Result<Vec<String>, Failure> {
    let seeds = commitlog::client::cluster::parse_seeds(list);
    if seeds.is_empty() {
        return Err(Failure::usage(format!(
            "--addr `{list}` names no address; write host:port[,host:port...], e.g. {DEFAULT_ADDR}"
        )));
    }
    for seed in &seeds {
        let Some((host, port)) = seed.rsplit_once(':').filter(|(h, _)| !h.is_empty()) else {
            return Err(Failure::usage(format!(
                "--addr `{seed}` has no port; write host:port, e.g. {seed}:8400"
            )));
        };
        if !port.parse::<u16>().is_ok_and(|p| p > 0) {
            return Err(Failure::usage(format!(
                "--addr `{seed}`: `{port}` is not a port (1-65535); write host:port, e.g. {host}:8400"
            )));
        }
    }
    Ok(seeds)
}

/// Where the member cache lives: `$CLOG_CACHE_DIR`, else `$XDG_CACHE_HOME/clog`,
/// else `~/.cache/clog`; none if there is no home either.
fn cache_dir() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("CLOG_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("clog")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("clog")))
}

/// A cluster client over the seeds, with --timeout-ms, --retry-ms, TLS and the
/// member cache.
pub(crate) fn connect(settings: &Settings) -> Result<ClusterClient, Failure> {
    ClusterClient::connect(settings.cluster_config()?).map_err(|e| explain(&settings.addr, e))
}

/// A plain connection to the first seed (for `health`, which checks one server).
pub(crate) fn connect_first(settings: &Settings) -> Result<Client, Failure> {
    let first = settings.first_seed();
    Client::connect_with(first, settings.client_config()?).map_err(|e| explain(first, e))
}
