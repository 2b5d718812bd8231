//! Setting up (issue 11 points 1 and 12): `make install` puts working `clog` and
//! `commitlogd` binaries into `PREFIX/bin` (the test installs the binaries cargo
//! built for it, `BUILD_DIR` with `CARGO=true` so make builds nothing, into a
//! temporary prefix and runs the copies); a failed `--dev` start cleans up; the
//! systemd env file names every variable; two `certs/gencert.sh` CAs differ, so a
//! client certificate from the other one is refused as `UnknownCA`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{Server, TempDir};

#[test]
fn make_install_puts_runnable_binaries_under_prefix_bin() {
    let prefix = TempDir::new("install");
    let build_dir = Path::new(env!("CARGO_BIN_EXE_clog"))
        .parent()
        .expect("the binaries' directory");
    let out = Command::new("make")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--no-print-directory")
        .arg("install")
        .arg(format!("PREFIX={}", prefix.path().display()))
        .arg(format!("BUILD_DIR={}", build_dir.display()))
        .arg("CARGO=true")
        .output()
        .expect("run make");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let bin = prefix.path().join("bin");
    assert!(
        text.contains(&format!(
            "installed clog and commitlogd in {}",
            bin.display()
        )),
        "{text}"
    );
    for name in ["clog", "commitlogd"] {
        let out = Command::new(bin.join(name))
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("run installed {name}: {e}"));
        assert!(out.status.success(), "{name} --version: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with(name),
            "{name} --version: {out:?}"
        );
    }
}

#[test]
fn a_failed_dev_start_leaves_no_temporary_directory() {
    let tmp = TempDir::new("dev-tmp");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .args([
            "--dev",
            "--listen",
            &taken.local_addr().unwrap().to_string(),
        ])
        .env("TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn the_systemd_env_file_names_every_commitlogd_variable() {
    let help = Command::new(env!("CARGO_BIN_EXE_commitlogd"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let env_file = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/systemd/commitlogd.env"),
    )
    .unwrap();
    let vars: Vec<&str> = help
        .split("env: ")
        .skip(1)
        .filter_map(|rest| {
            rest.split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .next()
        })
        .filter(|v| v.starts_with("COMMITLOGD_"))
        .collect();
    assert!(vars.len() > 30, "{vars:?}");
    let missing: Vec<&&str> = vars
        .iter()
        .filter(|v| !env_file.contains(&format!("{v}=")))
        .collect();
    assert!(
        missing.is_empty(),
        "missing from commitlogd.env: {missing:?}"
    );
}

#[test]
fn a_client_certificate_of_another_gencert_ca_is_an_unknown_ca() {
    let (a, b) = (TempDir::new("gencert-a"), TempDir::new("gencert-b"));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs/gencert.sh");
    for dir in [&a, &b] {
        let out = Command::new(&script)
            .arg(dir.path())
            .env("FORCE", "1")
            .output()
            .expect("run certs/gencert.sh (needs openssl)");
        assert!(out.status.success(), "{out:?}");
    }
    let f = |dir: &TempDir, name: &str| dir.path().join(name).display().to_string();
    let server = Server::start(&[
        "--server-tls-cert-file",
        &f(&a, "server.pem"),
        "--server-tls-key-file",
        &f(&a, "server-key.pem"),
        "--server-tls-ca-file",
        &f(&a, "ca.pem"),
    ]);
    let cache = TempDir::new("clog-cache");
    let out = Command::new(env!("CARGO_BIN_EXE_clog"))
        .args(["--addr", &server.addr.to_string(), "--ca", &f(&a, "ca.pem")])
        .args([
            "--cert",
            &f(&b, "root.pem"),
            "--key",
            &f(&b, "root-key.pem"),
        ])
        .arg("consume")
        .env("CLOG_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("UnknownCA"), "{err}");
}
