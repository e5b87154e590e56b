//! The WAL's files: numbered segments (`wal/<first seq>.wal`), appended
//! to and synced by the writer thread, replayed on start-up (a torn last
//! record cut off), deleted once every record in them is committed.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use super::error::{io_err, WalError};
use super::record::{RecordEncoder, WalRecord, HEADER, MAX_RECORD};

struct Segment {
    path: PathBuf,
    first_seq: u64,
    /// The highest seq written to it; `None` while empty.
    last_seq: Option<u64>,
    bytes: u64,
}

/// The files: owned by the writer thread once the service runs.
pub struct WalFiles {
    dir: PathBuf,
    segment_bytes: u64,
    /// Closed segments, oldest first.
    closed: Vec<Segment>,
    active: Segment,
    active_file: File,
    encoder: RecordEncoder,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}.wal"))
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

impl WalFiles {
    /// Opens the WAL in `dir`, replays what it holds, and starts a new
    /// segment for what comes next, whose records' blocks are compressed at
    /// `zstd_level` (0: written as is). Returns the records in seq order.
    pub fn open(
        dir: &Path,
        segment_bytes: u64,
        zstd_level: i32,
    ) -> Result<(WalFiles, Vec<WalRecord>), WalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut paths: Vec<(u64, PathBuf)> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let path = entry.map_err(io_err(dir))?.path();
            let first = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wal"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(first) = first {
                paths.push((first, path));
            }
        }
        paths.sort();
        let mut records = Vec::new();
        let mut closed = Vec::new();
        for (first_seq, path) in paths {
            let before = records.len();
            replay_segment(&path, &mut records)?;
            let last_seq = records[before..].last().map(|r: &WalRecord| r.seq);
            if last_seq.is_none() {
                // Nothing in it (a clean stop leaves an empty active segment).
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let bytes = fs::metadata(&path).map_err(io_err(&path))?.len();
            closed.push(Segment {
                path,
                first_seq,
                last_seq,
                bytes,
            });
        }
        let next_seq = records.last().map_or(1, |r| r.seq + 1);
        let path = segment_path(dir, next_seq);
        let active_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(dir)?;
        let files = WalFiles {
            dir: dir.to_owned(),
            segment_bytes,
            closed,
            active: Segment {
                path,
                first_seq: next_seq,
                last_seq: None,
                bytes: 0,
            },
            active_file,
            encoder: RecordEncoder::new(zstd_level),
        };
        Ok((files, records))
    }

    /// Writes the records and syncs them to disk.
    ///
    /// A write that fails (no space, most likely) is undone: the file is
    /// cut back to its length before, so it holds no half record, and the
    /// error is [`WalError::Full`] — the WAL can go on once there is room. A
    /// failed sync is [`WalError::Failed`]: after one, Linux may have
    /// dropped pages it had reported written, so nothing can be trusted
    /// until a restart replays the file.
    pub fn append(&mut self, records: &[WalRecord], buf: &mut Vec<u8>) -> Result<(), WalError> {
        buf.clear();
        for r in records {
            self.encoder.encode_into(r, buf);
        }
        let path = &self.active.path;
        if let Err(e) = self.active_file.write_all(buf) {
            let undone = self
                .active_file
                .set_len(self.active.bytes)
                .and_then(|_| self.active_file.sync_data());
            return Err(match undone {
                Ok(()) => WalError::Full(format!("{}: {e}", path.display())),
                Err(u) => WalError::Failed(format!(
                    "{}: {e}; and cutting the partial write off failed: {u}",
                    path.display()
                )),
            });
        }
        if let Err(e) = self.active_file.sync_data() {
            return Err(WalError::Failed(format!("{}: fsync: {e}", path.display())));
        }
        self.active.bytes += buf.len() as u64;
        if let Some(last) = records.last() {
            self.active.last_seq = Some(last.seq);
        }
        if self.active.bytes >= self.segment_bytes {
            // The records are durable whatever happens here: a segment
            // that cannot be started now (no room for a new file) is
            // tried again after the next append.
            if let Err(e) = self.roll() {
                tracing::warn!(error = %e, "cannot start a new WAL segment; the current one grows meanwhile");
            }
        }
        Ok(())
    }

    /// Bytes of every segment.
    pub fn bytes(&self) -> u64 {
        self.closed.iter().map(|s| s.bytes).sum::<u64>() + self.active.bytes
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn roll(&mut self) -> Result<(), WalError> {
        let next = self
            .active
            .last_seq
            .map_or(self.active.first_seq, |s| s + 1);
        let path = segment_path(&self.dir, next);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        sync_dir(&self.dir)?;
        let old = std::mem::replace(
            &mut self.active,
            Segment {
                path,
                first_seq: next,
                last_seq: None,
                bytes: 0,
            },
        );
        self.active_file = file;
        self.closed.push(old);
        Ok(())
    }

    /// When the WAL holds more than `max_bytes`: the seq below which records
    /// must be committed (and published) for the WAL to fall to half of
    /// `max_bytes`, at least the oldest segment. The caller seals the open
    /// blocks and splits that pin it (quiet sources whose blocks would
    /// otherwise wait for `block_max_age`). Half, not just under: freeing
    /// one segment at a time leaves the WAL at its budget, and every
    /// commit round would then seal another small split.
    pub fn over_budget(&self, max_bytes: u64) -> Option<u64> {
        let bytes = self.bytes();
        if bytes <= max_bytes {
            return None;
        }
        let to_free = bytes - max_bytes / 2;
        let mut freed = 0;
        let mut below = None;
        for segment in self.closed.iter().chain(std::iter::once(&self.active)) {
            if let Some(last) = segment.last_seq {
                below = Some(last + 1);
            }
            freed += segment.bytes;
            if freed >= to_free && below.is_some() {
                break;
            }
        }
        below
    }

    /// Deletes every segment whose records all have a seq below `seq` (they
    /// are committed to the index); rolls the active segment first if it is
    /// wholly below.
    pub fn trim_below(&mut self, seq: u64) -> Result<(), WalError> {
        if self.active.last_seq.is_some_and(|last| last < seq) {
            self.roll()?;
        }
        let mut removed = false;
        while let Some(first) = self.closed.first() {
            if first.last_seq.is_some_and(|last| last >= seq) {
                break;
            }
            // Every record in it is below `seq`: committed.
            fs::remove_file(&first.path).map_err(io_err(&first.path))?;
            self.closed.remove(0);
            removed = true;
        }
        if removed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Reads every whole record of one segment; cuts a torn tail off the file.
fn replay_segment(path: &Path, out: &mut Vec<WalRecord>) -> Result<(), WalError> {
    let mut data = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .map_err(io_err(path))?;
    let mut pos = 0usize;
    while pos < data.len() {
        let whole = data.get(pos..pos + HEADER).and_then(|h| {
            let len = u32::from_le_bytes(h[..4].try_into().ok()?) as usize;
            let crc = u32::from_le_bytes(h[4..].try_into().ok()?);
            let payload = data
                .get(pos + HEADER..pos + HEADER + len)
                .filter(|_| len <= MAX_RECORD)?;
            (crc32fast::hash(payload) == crc).then_some((len, payload))
        });
        let Some((len, payload)) = whole else {
            tracing::warn!(
                path = %path.display(),
                at = pos,
                dropped_bytes = data.len() - pos,
                "torn or corrupt record at the end of a WAL segment (a crash mid-write); cutting it off, the records before it are kept"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(io_err(path))?;
            f.set_len(pos as u64)
                .and_then(|_| f.sync_all())
                .map_err(io_err(path))?;
            break;
        };
        match WalRecord::decode(payload) {
            Some(r) => out.push(r),
            None => {
                tracing::error!(path = %path.display(), at = pos, "WAL record with a good checksum does not decode; skipped")
            }
        }
        pos += HEADER + len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cblogs_core::{LineFlags, Source, Stream};

    use super::*;
    use crate::block::LineBlock;

    fn record(seq: u64, text: &str) -> WalRecord {
        let mut lines = LineBlock::new();
        lines.push(seq * 100, 1, LineFlags::default(), text.as_bytes());
        WalRecord::new(
            seq,
            Arc::new(Source::example("r/prod/n", 0, "p", Stream::Stdout)),
            lines,
        )
    }

    #[test]
    fn replays_what_was_appended_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, replayed) = WalFiles::open(dir.path(), 1 << 20, 1).unwrap();
        assert!(replayed.is_empty());
        let mut buf = Vec::new();
        files
            .append(&[record(1, "one"), record(2, "two")], &mut buf)
            .unwrap();
        files.append(&[record(3, "three")], &mut buf).unwrap();
        let active = files.active.path.clone();
        drop(files);
        // A crash in mid-write leaves half a record.
        let mut f = OpenOptions::new().append(true).open(&active).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let (files, replayed) = WalFiles::open(dir.path(), 1 << 20, 1).unwrap();
        let seqs: Vec<u64> = replayed.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
        assert_eq!(replayed[2].lines.line(0).bytes, b"three");
        assert_eq!(files.active.first_seq, 4);
        drop(files);
        // The torn bytes are gone: a second replay is clean and identical.
        let (_, again) = WalFiles::open(dir.path(), 1 << 20, 1).unwrap();
        assert_eq!(again.len(), 3);
    }

    /// A WAL written before records were compressed (or with
    /// `wal_zstd_level = 0`) replays beside compressed records, and the
    /// compressed ones take less room.
    #[test]
    fn compressed_and_plain_records_replay_side_by_side() {
        let dir = tempfile::tempdir().unwrap();
        let text = "GET /api/v1/items?id=42 200 0.003s ".repeat(40);
        let mut buf = Vec::new();
        let (mut plain, _) = WalFiles::open(dir.path(), 1 << 20, 0).unwrap();
        plain.append(&[record(1, &text)], &mut buf).unwrap();
        let plain_bytes = plain.bytes();
        drop(plain);
        let (mut compressed, replayed) = WalFiles::open(dir.path(), 1 << 20, 1).unwrap();
        assert_eq!(replayed.len(), 1);
        compressed.append(&[record(2, &text)], &mut buf).unwrap();
        assert!(
            compressed.active.bytes * 4 < plain_bytes,
            "compressed {} bytes, plain {plain_bytes}",
            compressed.active.bytes
        );
        drop(compressed);
        let (_, replayed) = WalFiles::open(dir.path(), 1 << 20, 0).unwrap();
        let seqs: Vec<u64> = replayed.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [1, 2]);
        for r in &replayed {
            assert_eq!(r.lines.line(0).bytes, text.as_bytes());
            assert_eq!(r.lines.line(0).offset, r.seq * 100);
        }
    }

    #[test]
    fn over_budget_names_the_seq_that_brings_the_wal_to_half_its_budget() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, _) = WalFiles::open(dir.path(), 10, 1).unwrap(); // roll after every append
        let mut buf = Vec::new();
        assert_eq!(files.over_budget(0), None, "empty");
        for seq in 1..=6 {
            files.append(&[record(seq, "x")], &mut buf).unwrap();
        }
        // Segment k holds seq k + 1.
        let sizes: Vec<u64> = files.closed.iter().map(|s| s.bytes).collect();
        let total: u64 = sizes.iter().sum();
        assert_eq!(sizes.len(), 6);
        assert_eq!(files.over_budget(total), None);
        let kept_from = |seq: u64| -> u64 { sizes[(seq - 1) as usize..].iter().sum() };
        for budget in [total - 1, total - total / 4, total / 2, total / 3] {
            let seq = files.over_budget(budget).expect("over");
            assert!(
                kept_from(seq) <= budget / 2,
                "{budget}: below {seq} leaves {} bytes",
                kept_from(seq)
            );
            assert!(
                seq == 2 || kept_from(seq - 1) > budget / 2,
                "{budget}: {seq} frees more than needed"
            );
        }
        // Far over: at least the oldest, and at most all.
        assert_eq!(files.over_budget(1), Some(7));
        files.trim_below(3).unwrap();
        assert_eq!(files.closed.len(), 4);
    }

    #[test]
    fn trims_only_committed_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, _) = WalFiles::open(dir.path(), 10, 1).unwrap(); // roll after every append
        let mut buf = Vec::new();
        for seq in 1..=4 {
            files.append(&[record(seq, "x")], &mut buf).unwrap();
        }
        files.trim_below(3).unwrap();
        drop(files);
        let (_, replayed) = WalFiles::open(dir.path(), 10, 1).unwrap();
        let seqs: Vec<u64> = replayed.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, [3, 4]);
    }
}
