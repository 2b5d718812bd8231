//! `make install` puts working `clog` and `commitlogd` binaries into `PREFIX/bin`
//! (issue 11, point 1). The test installs the binaries cargo built for it
//! (`BUILD_DIR`, with `CARGO=true` so make builds nothing) into a temporary prefix
//! and runs the installed copies.

mod common;

use std::path::Path;
use std::process::Command;

use common::TempDir;

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
