//! The member cache: the addresses of a cluster's members, remembered on disk so a
//! client whose seeds are down can still reach the members it learned earlier
//! (`kill -9` of the only seed, then `clog produce` with the same `--addr`).
//!
//! One small text file per cluster in a directory (for `clog`:
//! `$CLOG_CACHE_DIR`, else `$XDG_CACHE_HOME/clog`, else `~/.cache/clog`). A cluster is
//! known by its member addresses: a lookup returns the file that names any of the
//! seeds, a save rewrites the file that shares an address with the new member list
//! (or creates one). Bounds: at most [`MAX_FILES`] files are kept (the least recently
//! written are removed), a file is read only up to [`MAX_FILE_BYTES`], and at most
//! [`super::MAX_MEMBERS`] addresses of at most [`MAX_ADDR_BYTES`] each are taken from
//! it. Writes go to a temporary file renamed over the old one, so a reader never sees
//! half a file. The cache is a hint: every error is logged at debug level and
//! ignored, and a damaged file only costs its addresses.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::MAX_MEMBERS;

/// Most cluster files kept in the directory.
pub const MAX_FILES: usize = 32;
/// Most bytes read from one cluster file.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Longest address taken from a file (`host:port`; DNS names are at most 253 bytes).
pub const MAX_ADDR_BYTES: usize = 300;
/// First line of every cluster file.
const HEADER: &str = "# commitlog member cache v1: one member address per line";
const PREFIX: &str = "cluster-";
const SUFFIX: &str = ".members";

/// A member cache directory.
#[derive(Clone, Debug)]
pub struct MemberCache {
    dir: PathBuf,
}

impl MemberCache {
    /// The cache in `dir` (created on the first save).
    pub fn new(dir: impl Into<PathBuf>) -> MemberCache {
        MemberCache { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The remembered members of the cluster that any of `seeds` belongs to (empty if
    /// none is known).
    pub fn lookup(&self, seeds: &[String]) -> Vec<String> {
        self.files()
            .into_iter()
            .map(|(path, _)| read_members(&path))
            .find(|members| members.iter().any(|m| seeds.contains(m)))
            .unwrap_or_default()
    }

    /// Remembers `members` (addresses) as one cluster, replacing the file of any
    /// cluster that shares an address with it. Does nothing if that file already
    /// says the same.
    pub fn save(&self, members: &[String]) {
        let mut members: Vec<String> = members
            .iter()
            .filter(|m| valid_addr(m))
            .take(MAX_MEMBERS)
            .cloned()
            .collect();
        members.sort();
        members.dedup();
        if members.is_empty() {
            return;
        }
        let files = self.files();
        let overlapping: Vec<(PathBuf, Vec<String>)> = files
            .iter()
            .map(|(p, _)| (p.clone(), read_members(p)))
            .filter(|(_, old)| old.iter().any(|a| members.contains(a)))
            .collect();
        if let [(_, old)] = overlapping.as_slice() {
            if *old == members {
                return;
            }
        }
        let path = match overlapping.first() {
            Some((p, _)) => p.clone(),
            None => self
                .dir
                .join(format!("{PREFIX}{:016x}{SUFFIX}", fnv1a(&members))),
        };
        if let Err(e) = self.write_atomically(&path, &members) {
            log::debug!("member cache: cannot write {}: {e}", path.display());
            return;
        }
        // One file per cluster: other files naming these members are outdated.
        for (p, _) in overlapping.iter().skip(1) {
            let _ = fs::remove_file(p);
        }
        self.evict_beyond_bound(&path);
    }

    fn write_atomically(&self, path: &Path, members: &[String]) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let result = (|| {
            let mut f = fs::File::create(&tmp)?;
            let mut text = String::from(HEADER);
            text.push('\n');
            for m in members {
                text.push_str(m);
                text.push('\n');
            }
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, path)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// Removes the least recently written files beyond [`MAX_FILES`] (never `keep`).
    fn evict_beyond_bound(&self, keep: &Path) {
        let files = self.files();
        for (path, _) in files.iter().skip(MAX_FILES) {
            if path != keep {
                let _ = fs::remove_file(path);
            }
        }
    }

    /// The cluster files, most recently written first (at most a bounded number of
    /// directory entries are looked at).
    fn files(&self) -> Vec<(PathBuf, std::time::SystemTime)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(PathBuf, std::time::SystemTime)> = entries
            .take(4 * MAX_FILES + 64)
            .filter_map(|e| e.ok())
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.starts_with(PREFIX) && name.ends_with(SUFFIX)
            })
            .filter_map(|e| {
                let modified = e.metadata().ok()?.modified().ok()?;
                Some((e.path(), modified))
            })
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.1));
        files
    }
}

/// The addresses in one cluster file (bounded; unreadable or damaged lines skipped).
fn read_members(path: &Path) -> Vec<String> {
    let mut text = String::new();
    let read = fs::File::open(path).and_then(|f| f.take(MAX_FILE_BYTES).read_to_string(&mut text));
    if let Err(e) = read {
        log::debug!("member cache: cannot read {}: {e}", path.display());
        return Vec::new();
    }
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && valid_addr(l))
        .take(MAX_MEMBERS)
        .map(str::to_string)
        .collect()
}

/// `host:port` with a numeric port, bounded in length, no white space.
fn valid_addr(addr: &str) -> bool {
    addr.len() <= MAX_ADDR_BYTES
        && !addr.chars().any(char::is_whitespace)
        && addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
}

/// FNV-1a over the sorted addresses: a stable file name for a new cluster.
fn fnv1a(members: &[String]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in members.iter().flat_map(|m| m.bytes().chain([b'\n'])) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "commitlog-member-cache-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_saved_cluster_is_found_from_any_of_its_members() {
        let dir = temp_dir("find");
        let cache = MemberCache::new(&dir);
        assert!(cache.lookup(&strings(&["a:1"])).is_empty());
        cache.save(&strings(&["c:3", "a:1", "b:2"]));
        cache.save(&strings(&["x:1", "y:2"]));
        assert_eq!(
            cache.lookup(&strings(&["b:2"])),
            strings(&["a:1", "b:2", "c:3"])
        );
        assert_eq!(
            cache.lookup(&strings(&["z:9", "y:2"])),
            strings(&["x:1", "y:2"])
        );
        // A member moved: the cluster's file is replaced, not duplicated.
        cache.save(&strings(&["a:1", "b:2", "d:4"]));
        assert_eq!(
            cache.lookup(&strings(&["a:1"])),
            strings(&["a:1", "b:2", "d:4"])
        );
        assert_eq!(cache.files().len(), 2);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn files_are_bounded_in_number_and_damaged_lines_are_skipped() {
        let dir = temp_dir("bound");
        let cache = MemberCache::new(&dir);
        for i in 0..(MAX_FILES + 5) {
            cache.save(&[format!("h{i}:1")]);
        }
        assert!(cache.files().len() <= MAX_FILES, "{}", cache.files().len());
        let path = dir.join(format!("{PREFIX}damaged{SUFFIX}"));
        let long = "x".repeat(MAX_ADDR_BYTES + 1);
        fs::write(&path, format!("junk\n{long}:1\nok:7\nbad:port\n:3\n")).unwrap();
        assert_eq!(read_members(&path), strings(&["ok:7"]));
        let _ = fs::remove_dir_all(&dir);
    }
}
