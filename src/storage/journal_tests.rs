use super::*;
use crate::storage::tests::TempDir;

fn record(log_id: u64, first: u64, values: &[&[u8]]) -> JournalRecord {
    JournalRecord {
        log_id,
        first: Offset(first),
        end: Offset(first + values.len() as u64),
        entries: values
            .iter()
            .enumerate()
            .map(|(i, v)| JournalEntry {
                term: Term(3 + i as u64),
                kind: if i == 0 {
                    RecordKind::NoOp
                } else {
                    RecordKind::Data
                },
                value: v.to_vec(),
            })
            .collect(),
    }
}

fn add(j: &mut Journal, r: &JournalRecord) {
    let mut start = j.begin_record(r.log_id, r.first);
    for e in &r.entries {
        j.push_entry(&mut start, e.term, e.kind, &e.value);
    }
    j.end_record(start, r.end);
}

fn journal_path(dir: &TempDir) -> PathBuf {
    file_path(dir.path(), 1)
}

#[test]
fn committed_rounds_come_back_in_order() {
    let dir = TempDir::new("journal-order");
    let a = record(7, 10, &[b"", b"hello", b"world"]);
    let b = record(9, 1, &[b"x"]);
    let c = record(7, 12, &[b"again"]);
    {
        let (mut j, old) = Journal::open(dir.path()).unwrap();
        assert!(old.is_empty());
        add(&mut j, &a);
        add(&mut j, &b);
        j.commit().unwrap();
        add(&mut j, &c);
        j.commit().unwrap();
        assert!(j.round_is_empty());
    }
    let (_, records) = Journal::open(dir.path()).unwrap();
    assert_eq!(records, vec![a, b, c]);
}

#[test]
fn a_round_not_committed_is_not_there() {
    let dir = TempDir::new("journal-uncommitted");
    let a = record(1, 1, &[b"a"]);
    {
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        add(&mut j, &a);
        j.commit().unwrap();
        add(&mut j, &record(1, 2, &[b"b"]));
        j.discard_round();
        j.commit().unwrap();
    }
    assert_eq!(Journal::open(dir.path()).unwrap().1, vec![a]);
}

#[test]
fn a_torn_tail_is_dropped_and_overwritten() {
    let dir = TempDir::new("journal-torn");
    let a = record(1, 1, &[b"first"]);
    let b = record(1, 2, &[b"second round"]);
    {
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        add(&mut j, &a);
        j.commit().unwrap();
        add(&mut j, &b);
        j.commit().unwrap();
    }
    // A crash during the second round's write: part of it, then zeros.
    let path = journal_path(&dir);
    let full = std::fs::read(&path).unwrap();
    let first_len = full.len() - (HEADER_BYTES + BODY_FIXED_BYTES + ENTRY_FIXED_BYTES + 12);
    let mut torn = full[..first_len + 20].to_vec();
    torn.extend_from_slice(&[0; 9]);
    std::fs::write(&path, &torn).unwrap();
    let c = record(1, 2, &[b"retried"]);
    {
        let (mut j, records) = Journal::open(dir.path()).unwrap();
        assert_eq!(records, vec![a.clone()]);
        assert_eq!(j.len_bytes(), first_len as u64);
        add(&mut j, &c);
        j.commit().unwrap();
    }
    assert_eq!(Journal::open(dir.path()).unwrap().1, vec![a, c]);
}

#[test]
fn damage_before_a_valid_record_is_refused() {
    let dir = TempDir::new("journal-damage");
    {
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        add(&mut j, &record(1, 1, &[b"acknowledged"]));
        j.commit().unwrap();
        add(&mut j, &record(2, 1, &[b"also acknowledged"]));
        j.commit().unwrap();
    }
    let path = journal_path(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[HEADER_BYTES + BODY_FIXED_BYTES + ENTRY_FIXED_BYTES + 2] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    match Journal::open(dir.path()) {
        Err(StorageError::Corrupt {
            position, reason, ..
        }) => {
            assert_eq!(position, 0);
            assert!(reason.contains("checksum"), "{reason}");
        }
        other => panic!("damage not refused: {other:?}"),
    }
}

#[test]
fn a_rotation_keeps_what_it_is_given_and_older_files_read_first() {
    let dir = TempDir::new("journal-rotate");
    let keep = record(5, 40, &[b"not replayed yet"]);
    let after = record(4, 2, &[b"next round"]);
    {
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        add(&mut j, &record(4, 1, &[b"synced since"]));
        add(&mut j, &keep);
        j.commit().unwrap();
        assert_eq!(j.rotate(std::slice::from_ref(&keep)).unwrap(), 1);
        add(&mut j, &after);
        j.commit().unwrap();
    }
    // A crash before the old file was removed: both read, oldest first.
    let (_, records) = Journal::open(dir.path()).unwrap();
    assert_eq!(records.len(), 4);
    assert_eq!(records[2..], [keep.clone(), after.clone()]);
    remove_through(dir.path(), 1).unwrap();
    let (mut j, records) = Journal::open(dir.path()).unwrap();
    assert_eq!(records, vec![keep, after.clone()]);
    assert_eq!(j.generation(), 2);
    assert_eq!(j.rotate(&[]).unwrap(), 2);
    remove_through(dir.path(), 2).unwrap();
    add(&mut j, &after);
    j.commit().unwrap();
    drop(j);
    let (j, records) = Journal::open(dir.path()).unwrap();
    assert_eq!((j.generation(), records), (3, vec![after]));
}

#[test]
fn lengths_beyond_the_file_or_the_record_are_errors_not_allocations() {
    let r = record(1, 1, &[b"abc"]);
    let dir = TempDir::new("journal-lengths");
    {
        let (mut j, _) = Journal::open(dir.path()).unwrap();
        add(&mut j, &r);
        j.commit().unwrap();
    }
    let bytes = std::fs::read(journal_path(&dir)).unwrap();
    // A huge body length: the record runs past the file (a torn tail).
    let mut big = bytes.clone();
    big[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(decode_all(&big, 1).unwrap(), (Vec::new(), 0));
    // A huge entry count or value length inside a valid checksum: refused.
    for (at, value) in [(32usize, u32::MAX), (0, 0)] {
        let mut body = bytes[HEADER_BYTES..].to_vec();
        if at == 32 {
            body[32..36].copy_from_slice(&value.to_le_bytes());
        } else {
            body[BODY_FIXED_BYTES + 9..BODY_FIXED_BYTES + 13]
                .copy_from_slice(&u32::MAX.to_le_bytes());
        }
        assert!(decode_body(&body).is_err());
    }
    // Every truncation of a valid file decodes to a prefix, never panics.
    for cut in 0..bytes.len() {
        let (records, len) = decode_all(&bytes[..cut], 1).unwrap();
        assert!(records.is_empty() && len == 0);
    }
}

#[test]
fn a_reused_file_reads_only_its_own_generation() {
    let dir = TempDir::new("journal-reuse");
    let (mut j, _) = Journal::open(dir.path()).unwrap();
    for i in 0..20 {
        add(&mut j, &record(1, 1 + i, &[b"an old generation's record"]));
        j.commit().unwrap();
    }
    let old_size = std::fs::metadata(file_path(dir.path(), 1)).unwrap().len();
    j.rotate(&[]).unwrap();
    remove_through(dir.path(), 1).unwrap();
    assert!(!file_path(dir.path(), 1).exists());
    // Generation 3 reuses generation 1's file: its 20 old records are still there.
    j.rotate(&[]).unwrap();
    remove_through(dir.path(), 2).unwrap();
    let new = record(2, 7, &[b"new"]);
    add(&mut j, &new);
    j.commit().unwrap();
    assert_eq!(j.generation(), 3);
    assert_eq!(
        std::fs::metadata(file_path(dir.path(), 3)).unwrap().len(),
        old_size,
        "the reused file was written over, not truncated"
    );
    drop(j);
    let (j, records) = Journal::open(dir.path()).unwrap();
    assert_eq!(records, vec![new.clone()]);
    assert_eq!(j.generation(), 3);
    // The next round is written after the new record, over the old contents.
    let mut j = j;
    let newer = record(2, 8, &[b"newer"]);
    add(&mut j, &newer);
    j.commit().unwrap();
    drop(j);
    assert_eq!(Journal::open(dir.path()).unwrap().1, vec![new, newer]);
}
