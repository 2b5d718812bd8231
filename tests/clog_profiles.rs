//! `clog` conveniences (issue 11): named profiles (point 10), completions and man
//! pages (point 11), and an example in every command's `--help`.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::{Server, TempDir};

/// `clog args` with a private config dir and member cache, no --addr.
fn clog(config: &TempDir, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_clog"))
        .args(args)
        .env_remove("CLOG_ADDR")
        .env_remove("CLOG_PROFILE")
        .env("CLOG_CONFIG_DIR", config.path())
        .env("CLOG_CACHE_DIR", config.path().join("cache"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn profiles_hold_the_connection_settings() {
    let server = Server::start(&[]);
    let config = TempDir::new("clog-config");
    let addr = server.addr.to_string();
    // Nothing listens at the default address's stand-in; the profile points at the server.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = dead.to_string();
    ok(&clog(
        &config,
        &[],
        &["profile", "create", "dev", "--addr", &addr],
    ));
    ok(&clog(
        &config,
        &[],
        &[
            "profile",
            "create",
            "dead",
            "--addr",
            &dead,
            "--retry-ms",
            "0",
        ],
    ));
    let list = ok(&clog(&config, &[], &["profile", "list"]));
    assert_eq!(list, format!("* dead\t{dead}\n  dev\t{addr}\n"));
    // The current profile (the last created) is used; `use` switches.
    let out = clog(&config, &[], &["produce", "x"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    ok(&clog(&config, &[], &["profile", "use", "dev"]));
    assert_eq!(
        ok(&clog(&config, &[], &["produce", "x"])).lines().count(),
        1
    );
    // --profile and CLOG_PROFILE pick another one for one command; flags beat profiles.
    let out = clog(&config, &[], &["--profile", "dead", "produce", "y"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = clog(&config, &[("CLOG_PROFILE", "dead")], &["produce", "y"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    ok(&clog(
        &config,
        &[],
        &["--profile", "dead", "--addr", &addr, "produce", "z"],
    ));
    let values = ok(&clog(&config, &[], &["consume", "--values-only"]));
    assert_eq!(values, "x\nz\n");
    // Mistakes: unknown profile (5), a bad name or a duplicate (2).
    let out = clog(&config, &[], &["--profile", "nope", "produce", "y"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    let out = clog(&config, &[], &["profile", "create", "a b"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = clog(&config, &[], &["profile", "create", "dev"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    ok(&clog(&config, &[], &["profile", "delete", "dead"]));
    assert_eq!(
        ok(&clog(&config, &[], &["profile", "list"])),
        format!("* dev\t{addr}\n")
    );
}

#[test]
fn completions_man_pages_and_examples_in_every_help() {
    let config = TempDir::new("clog-config");
    for shell in ["bash", "zsh", "fish"] {
        let script = ok(&clog(&config, &[], &["completions", shell]));
        assert!(
            script.contains("consume") && script.contains("exit-at-end"),
            "{shell}"
        );
    }
    let commands = [
        "produce",
        "consume",
        "tail",
        "servers",
        "status",
        "health",
        "bench",
        "profile",
        "completions",
    ];
    let profile_commands = ["create", "use", "list", "delete"];
    let topic_commands = ["create", "list", "describe", "alter", "delete"];
    let all = commands
        .iter()
        .map(|c| vec![*c])
        .chain(std::iter::once(vec!["topic"]))
        .chain(profile_commands.iter().map(|c| vec!["profile", *c]))
        .chain(topic_commands.iter().map(|c| vec!["topic", *c]));
    for mut args in all {
        args.push("--help");
        let help = ok(&clog(&config, &[], &args));
        assert!(
            help.contains("Examples:\n  clog "),
            "clog {args:?}:\n{help}"
        );
    }
    let help = ok(&clog(&config, &[], &["--help"]));
    assert!(
        help.contains("Exit codes:") && help.contains("130"),
        "{help}"
    );

    // make man, with the binaries cargo built for the tests.
    let man = TempDir::new("man");
    let build_dir = Path::new(env!("CARGO_BIN_EXE_clog")).parent().unwrap();
    let out = Command::new("make")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(["--no-print-directory", "man", "CARGO=true"])
        .arg(format!("BUILD_DIR={}", build_dir.display()))
        .arg(format!("MAN_DIR={}", man.path().display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for (page, flag) in [("clog.1", "retry\\-ms"), ("commitlogd.8", "data\\-dir")] {
        let text = std::fs::read_to_string(man.path().join(page)).unwrap();
        assert!(
            text.contains(".TH") && text.contains(flag),
            "{page}: {text}"
        );
    }
}
