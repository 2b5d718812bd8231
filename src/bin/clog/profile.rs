//! Named connection profiles (`clog profile create|use|list|delete`, `--profile`,
//! `CLOG_PROFILE`), as `rpk profile` and `nats context`: addresses, TLS files and
//! defaults in `profiles.toml` in `$CLOG_CONFIG_DIR`, else `$XDG_CONFIG_HOME/clog`,
//! else `~/.config/clog`. A flag or its `CLOG_*` variable beats the profile, which
//! beats the built-in default. The file is small (read up to 64 KiB) and rewritten
//! atomically (temporary file, then rename).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Subcommand;
use serde::{Deserialize, Serialize};

use crate::fail::{Failure, EXIT_NOT_FOUND, EXIT_OTHER};
use crate::{Cli, Out, Output};

/// Most bytes read from the profiles file.
const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Most profiles kept.
const MAX_PROFILES: usize = 256;
const FILE_NAME: &str = "profiles.toml";

/// One profile: every field is optional (unset: the flag's default).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    pub(crate) addr: Option<String>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) retry_ms: Option<u64>,
    pub(crate) ca: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
}

/// The profiles file.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profiles {
    /// The profile used when neither --profile nor CLOG_PROFILE names one.
    current: Option<String>,
    #[serde(default)]
    profiles: BTreeMap<String, Profile>,
}

#[derive(Subcommand, Debug)]
pub(crate) enum ProfileCommand {
    /// Save the global flags given with it (--addr, --ca, --cert, --key,
    /// --timeout-ms, --retry-ms) as profile NAME, and use it from now on.
    #[command(
        after_help = "Examples:\n  clog profile create local --addr 127.0.0.1:8400\n  \
        clog profile create prod --addr 10.0.0.1:8400 --ca ca.pem --cert me.pem --key me-key.pem"
    )]
    Create { name: String },
    /// Use profile NAME from now on (until `use` again; --profile overrides).
    #[command(after_help = "Examples:\n  clog profile use prod")]
    Use { name: String },
    /// List the profiles; `*` marks the one in use.
    #[command(after_help = "Examples:\n  clog profile list")]
    List,
    /// Delete profile NAME.
    #[command(after_help = "Examples:\n  clog profile delete local")]
    Delete { name: String },
}

fn config_dir() -> Option<PathBuf> {
    let env = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("CLOG_CONFIG_DIR")
        .or_else(|| env("XDG_CONFIG_HOME").map(|d| d.join("clog")))
        .or_else(|| env("HOME").map(|h| h.join(".config").join("clog")))
}

fn file() -> Result<PathBuf, Failure> {
    config_dir().map(|d| d.join(FILE_NAME)).ok_or_else(|| {
        Failure::new(
            EXIT_OTHER,
            "no configuration directory: set HOME, XDG_CONFIG_HOME or CLOG_CONFIG_DIR",
        )
    })
}

fn load() -> Result<Profiles, Failure> {
    let path = file()?;
    let mut text = String::new();
    match std::fs::File::open(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Profiles::default()),
        Err(e) => return Err(Failure::new(EXIT_OTHER, format!("{}: {e}", path.display()))),
        Ok(f) => f
            .take(MAX_FILE_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| Failure::new(EXIT_OTHER, format!("{}: {e}", path.display())))?,
    };
    toml::from_str(&text).map_err(|e| {
        Failure::usage(format!(
            "{} is not a valid profiles file: {e} (fix it, or delete it to start over)",
            path.display()
        ))
    })
}

fn save(profiles: &Profiles) -> Result<(), Failure> {
    let path = file()?;
    let fail = |e: &dyn std::fmt::Display| {
        Failure::new(EXIT_OTHER, format!("writing {}: {e}", path.display()))
    };
    let text = toml::to_string(profiles).map_err(|e| fail(&e))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(&e));
    }
    Ok(())
}

fn check_name(name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        return Ok(());
    }
    Err(Failure::usage(format!(
        "profile name `{name}`: use 1-64 letters, digits, '-', '_' or '.'"
    )))
}

fn missing(name: &str) -> Failure {
    Failure::new(
        EXIT_NOT_FOUND,
        format!("no profile `{name}` (`clog profile list` shows them; `clog profile create {name} --addr ...` makes it)"),
    )
}

/// The profile in force: --profile / CLOG_PROFILE, else the current one, else none.
pub(crate) fn active(cli: &Cli) -> Result<Option<Profile>, Failure> {
    if cli.profile.is_none() && config_dir().is_none_or(|d| !d.join(FILE_NAME).exists()) {
        return Ok(None);
    }
    let profiles = load()?;
    match cli.profile.as_deref().or(profiles.current.as_deref()) {
        None => Ok(None),
        Some(name) => profiles
            .profiles
            .get(name)
            .cloned()
            .map(Some)
            .ok_or_else(|| missing(name)),
    }
}

pub(crate) fn run(cli: &Cli, cmd: &ProfileCommand, out: &mut Out<'_>) -> Result<(), Output> {
    let mut profiles = load()?;
    match cmd {
        ProfileCommand::Create { name } => {
            check_name(name)?;
            if profiles.profiles.contains_key(name) {
                return Err(Failure::usage(format!(
                    "profile `{name}` exists; `clog profile delete {name}` first"
                ))
                .into());
            }
            if profiles.profiles.len() >= MAX_PROFILES {
                return Err(Failure::usage(format!("at most {MAX_PROFILES} profiles")).into());
            }
            if let Some(addr) = &cli.addr {
                crate::settings::check_syntax(addr)?;
            }
            let profile = Profile {
                addr: cli.addr.clone(),
                timeout_ms: cli.timeout_ms,
                retry_ms: cli.retry_ms,
                ca: cli.ca.clone().map(absolute),
                cert: cli.cert.clone().map(absolute),
                key: cli.key.clone().map(absolute),
            };
            profiles.profiles.insert(name.clone(), profile);
            profiles.current = Some(name.clone());
            save(&profiles)?;
            writeln!(out, "created profile `{name}` and switched to it")?;
        }
        ProfileCommand::Use { name } => {
            if !profiles.profiles.contains_key(name) {
                return Err(missing(name).into());
            }
            profiles.current = Some(name.clone());
            save(&profiles)?;
            writeln!(out, "using profile `{name}`")?;
        }
        ProfileCommand::List => {
            for (name, p) in &profiles.profiles {
                let mark = if profiles.current.as_deref() == Some(name) {
                    "*"
                } else {
                    " "
                };
                let addr = p.addr.as_deref().unwrap_or(crate::settings::DEFAULT_ADDR);
                let tls = if p.ca.is_some() { " tls" } else { "" };
                writeln!(out, "{mark} {name}\t{addr}{tls}")?;
            }
        }
        ProfileCommand::Delete { name } => {
            if profiles.profiles.remove(name).is_none() {
                return Err(missing(name).into());
            }
            if profiles.current.as_deref() == Some(name) {
                profiles.current = None;
            }
            save(&profiles)?;
            writeln!(out, "deleted profile `{name}`")?;
        }
    }
    Ok(())
}

/// Paths are stored absolute, so the profile works from any directory.
fn absolute(p: PathBuf) -> PathBuf {
    std::path::absolute(&p).unwrap_or(p)
}
