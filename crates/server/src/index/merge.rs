//! A merge's writing: the blocks of several splits written into one new
//! split, each source's small blocks combined and every block compressed
//! again at the merge's level ([`merge_into`]).
//!
//! A source's blocks are combined only when they are next to each other in
//! its stream (one's covered end is the next one's first offset): the
//! combined block then covers exactly what the two did, so a reader, the
//! held ends and the published ends see the same stream before and after.
//! Blocks go out source by source, in stream order.
//!
//! Copies go for good here (rule 1 of issue 18): a line that lies wholly
//! inside what the lines before it of its source cover was published twice
//! (fencing is there so that this never happens) and is not written again.
//! A line that only starts inside is kept: dropping it would lose the
//! bytes past the end (readers drop such a copy by byte range).
//!
//! Memory is bounded by one combined block (`block_bytes` of text) plus the
//! block being read, the compressed bytes of up to [`COMMIT_EVERY`] bytes
//! of blocks, the index writer's budget, and the inputs' block lists (the
//! planner bounds how many blocks one merge reads).

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cblogs_core::Source;

use super::columns::BlockRef;
use super::partition::{Partition, PartitionError};
use super::writer::PreparedBlock;
use crate::block::LineBlock;

/// Compressed bytes written between two commits of the output.
const COMMIT_EVERY: u64 = 64 << 20;

/// One split a merge reads: its blocks (from its index) and its
/// `blocks.dat` as a file on this disk (read in place on the local store,
/// downloaded first from a remote one). The sources of all the inputs are
/// one map, given beside them: on a quiet cluster every input names the
/// same 10,000 sources.
pub struct MergeInput {
    pub refs: Vec<BlockRef>,
    pub blocks: File,
    /// Where `blocks` is, for errors.
    pub path: PathBuf,
}

/// How a merge writes.
#[derive(Debug, Clone, Copy)]
pub struct MergeOptions {
    /// Adjacent blocks of a source are combined up to this many bytes of text.
    pub block_bytes: usize,
    pub zstd_level: i32,
    /// The index writer's memory budget.
    pub writer_bytes: usize,
}

/// What a merge read and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MergeCounts {
    pub blocks_in: u64,
    pub blocks_out: u64,
    pub lines: u64,
    /// Compressed bytes of blocks read and written.
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Lines not written: copies of lines already written.
    pub copies: u64,
}

/// Why a merge stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error(transparent)]
    Split(#[from] PartitionError),
    #[error("the merge was stopped (cblogsd is stopping)")]
    Stopped,
}

/// Writes every block of `inputs` into `out` (a split being built, empty),
/// combining each source's adjacent small blocks, and finishes it (one
/// segment). `stop` is looked at between blocks.
pub fn merge_into(
    out: &Arc<Partition>,
    inputs: &[MergeInput],
    input_sources: &HashMap<u64, Source>,
    opts: MergeOptions,
    stop: &AtomicBool,
) -> Result<MergeCounts, MergeError> {
    let mut order: Vec<(usize, &BlockRef)> = inputs
        .iter()
        .enumerate()
        .flat_map(|(i, input)| input.refs.iter().map(move |b| (i, b)))
        .collect();
    order.sort_by_key(|(i, b)| (b.source, b.off_start, b.t_min, *i));
    let mut sources: HashMap<u64, Arc<Source>> = HashMap::new();
    let mut writer = out.writer(opts.writer_bytes)?;
    let mut counts = MergeCounts::default();
    let mut since_commit = 0u64;
    let mut pending: Option<(u64, LineBlock)> = None;
    // The source written last, and how far its lines cover.
    let mut covered: Option<(u64, u64)> = None;
    let mut write = |counts: &mut MergeCounts,
                     since_commit: &mut u64,
                     source_id: u64,
                     lines: LineBlock|
     -> Result<(), MergeError> {
        let source = match sources.get(&source_id) {
            Some(s) => s.clone(),
            None => {
                let found = input_sources.get(&source_id).ok_or_else(|| {
                        out.io_error(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("source {source_id:016x} has blocks but no sources.json entry in any input"),
                        ))
                    })?;
                let s = Arc::new(found.clone());
                sources.insert(source_id, s.clone());
                s
            }
        };
        let prepared =
            PreparedBlock::new(source_id, &lines, opts.zstd_level).map_err(|e| out.io_error(e))?;
        let block = writer.add_block(&source, prepared)?;
        counts.blocks_out += 1;
        counts.lines += block.n_lines;
        counts.bytes_out += block.data_len;
        *since_commit += block.data_len;
        if *since_commit >= COMMIT_EVERY {
            writer.commit()?;
            *since_commit = 0;
        }
        Ok(())
    };
    for (i, b) in order {
        if stop.load(Ordering::Relaxed) {
            return Err(MergeError::Stopped);
        }
        let lines = read(&inputs[i], b)?;
        counts.blocks_in += 1;
        counts.bytes_in += b.data_len;
        let lines = without_copies(lines, b.source, &mut covered, &mut counts.copies);
        let Some(first) = lines.lines().next().map(|l| l.offset) else {
            continue;
        };
        pending = match pending.take() {
            Some((source, mut current))
                if source == b.source
                    && current.end_offset() == Some(first)
                    && current.text_len() + lines.text_len() <= opts.block_bytes =>
            {
                current.append(&lines);
                Some((source, current))
            }
            Some((source, current)) => {
                write(&mut counts, &mut since_commit, source, current)?;
                Some((b.source, lines))
            }
            None => Some((b.source, lines)),
        };
    }
    if let Some((source, current)) = pending {
        write(&mut counts, &mut since_commit, source, current)?;
    }
    writer.finish()?;
    Ok(counts)
}

/// `lines` (a block of `source`, read in stream order) without the lines
/// wholly inside what `covered` says the source's lines before them
/// cover; `covered` then covers these too. Each line dropped is counted.
fn without_copies(
    lines: LineBlock,
    source: u64,
    covered: &mut Option<(u64, u64)>,
    dropped: &mut u64,
) -> LineBlock {
    let start = match *covered {
        Some((s, end)) if s == source => end,
        _ => 0,
    };
    // What lines cover is where they end, not the batch's declared end: a
    // line cut at the length limit declares more than it holds, and its
    // whole copy must not be taken for a copy of it.
    let line_end =
        |offset: u64, len: usize, partial: bool| offset + len as u64 + u64::from(!partial);
    let copy = |end: &mut u64, offset: u64, len: usize, partial: bool| {
        let e = line_end(offset, len, partial);
        let copy = e <= *end;
        *end = (*end).max(e);
        copy
    };
    let mut end = start;
    let copies = lines
        .lines()
        .filter(|l| copy(&mut end, l.offset, l.bytes.len(), l.flags.partial))
        .count();
    *covered = Some((source, end));
    if copies == 0 {
        return lines;
    }
    *dropped += copies as u64;
    let mut kept = LineBlock::with_capacity(lines.len() - copies, lines.text_len());
    let mut end = start;
    for l in lines.lines() {
        if !copy(&mut end, l.offset, l.bytes.len(), l.flags.partial) {
            kept.push(l.offset, l.time_ns, l.flags, l.bytes);
        }
    }
    if let (false, Some(block_end)) = (kept.is_empty(), lines.end_offset()) {
        kept.cover_to(block_end);
    }
    kept
}

/// Reads and decompresses block `b` of `input`.
fn read(input: &MergeInput, b: &BlockRef) -> Result<LineBlock, PartitionError> {
    let mut buf = vec![0u8; b.data_len as usize];
    input
        .blocks
        .read_exact_at(&mut buf, b.data_pos)
        .map_err(|source| PartitionError::Io {
            dir: input.path.clone(),
            source,
        })?;
    LineBlock::decompress(&buf).map_err(|source| PartitionError::Block {
        dir: input.path.clone(),
        pos: b.data_pos,
        source,
    })
}

#[cfg(test)]
mod tests {
    use cblogs_core::{LineFlags, Stream};

    use super::*;
    use crate::index::Access;

    fn source(instance: u32) -> Arc<Source> {
        Arc::new(Source::example("r/prod/j", instance, "p", Stream::Stdout))
    }

    /// A split of `blocks`: (source, first line number, lines); each line
    /// is `line <n>\n`, 8 bytes in the stream (offset 8 n).
    fn split(root: &std::path::Path, blocks: &[(u32, u64, u64)]) -> Arc<Partition> {
        let part = Arc::new(Partition::create(root, 0).expect("create"));
        let mut w = part.writer(20_000_000).expect("writer");
        for &(instance, first, n) in blocks {
            let src = source(instance);
            let mut b = LineBlock::new();
            for k in first..first + n {
                b.push(
                    k * 8,
                    k as i64,
                    LineFlags::default(),
                    format!("line {k:02}").as_bytes(),
                );
            }
            w.add_block(&src, PreparedBlock::new(src.id(), &b, 3).expect("prepare"))
                .expect("add");
        }
        w.commit().expect("commit");
        drop(w);
        part
    }

    /// Blocks combined up to 1 MiB of text, compressed at `zstd_level`.
    fn options(zstd_level: i32) -> MergeOptions {
        MergeOptions {
            block_bytes: 1 << 20,
            zstd_level,
            writer_bytes: 20_000_000,
        }
    }

    fn input(part: &Partition) -> MergeInput {
        let searcher = part.searcher();
        MergeInput {
            refs: part.blocks(&searcher, None, None).expect("refs"),
            blocks: File::open(part.dir().join("blocks.dat")).expect("blocks.dat"),
            path: part.dir().join("blocks.dat"),
        }
    }

    fn sources_of(parts: &[&Partition]) -> HashMap<u64, Source> {
        parts
            .iter()
            .flat_map(|p| p.load_sources().expect("sources"))
            .collect()
    }

    /// Every line of source `instance` in `part`, in stream order, and the
    /// blocks that hold them.
    fn lines_of(part: &Partition, instance: u32) -> (Vec<String>, usize) {
        let searcher = part.searcher();
        let mut refs = part
            .blocks(&searcher, Some(&[source(instance).id()]), None)
            .expect("refs");
        refs.sort_by_key(|b| b.off_start);
        let mut lines = Vec::new();
        for b in &refs {
            let block = part.read_block(b).expect("read");
            assert_eq!(block.end_offset(), Some(b.off_end));
            lines.extend(block.lines().map(|l| {
                assert_eq!(
                    l.offset,
                    8 * String::from_utf8_lossy(l.bytes)[5..]
                        .parse::<u64>()
                        .expect("n")
                );
                String::from_utf8_lossy(l.bytes).into_owned()
            }));
        }
        (lines, refs.len())
    }

    #[test]
    fn adjacent_small_blocks_of_a_source_are_combined_and_nothing_else_is() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Source 0: lines 0-9 in four blocks over two splits, all
        // adjacent. Source 1: lines 0-2, then 5-6 (3-4 are elsewhere: not
        // adjacent), then 7-8 (adjacent to 5-6).
        let a = split(dir.path(), &[(0, 0, 3), (1, 0, 3), (0, 3, 2)]);
        let b = split(dir.path(), &[(0, 5, 4), (1, 5, 2), (0, 9, 1), (1, 7, 2)]);
        let out = Arc::new(Partition::create(&dir.path().join("out"), 0).expect("out"));
        let opts = options(9);
        let both = sources_of(&[&a, &b]);
        let counts = merge_into(
            &out,
            &[input(&a), input(&b)],
            &both,
            opts,
            &AtomicBool::new(false),
        )
        .expect("merge");
        assert_eq!(counts.blocks_in, 7);
        assert_eq!(counts.lines, 10 + 7);
        let out = Partition::open(out.dir(), out.id.clone(), 0, Access::ReadOnly).expect("open");
        let want0: Vec<String> = (0..10).map(|k| format!("line {k:02}")).collect();
        assert_eq!(lines_of(&out, 0), (want0, 1), "one block, every line once");
        let want1: Vec<String> = [0, 1, 2, 5, 6, 7, 8]
            .iter()
            .map(|k| format!("line {k:02}"))
            .collect();
        assert_eq!(lines_of(&out, 1), (want1, 2), "the gap keeps two blocks");
        assert_eq!(counts.blocks_out, 3);
        assert_eq!(
            out.searcher().segment_readers().len(),
            1,
            "finished: one segment"
        );

        // A small block budget keeps blocks apart.
        let small = Arc::new(Partition::create(&dir.path().join("small"), 0).expect("small"));
        let opts = MergeOptions {
            block_bytes: 30,
            ..opts
        };
        let counts = merge_into(
            &small,
            &[input(&a), input(&b)],
            &both,
            opts,
            &AtomicBool::new(false),
        )
        .expect("merge");
        let (lines, blocks) = lines_of(&small, 0);
        assert_eq!(lines.len(), 10);
        assert!(blocks >= 3, "at most 30 bytes of text a block: {blocks}");
        assert_eq!(counts.lines, 17);
    }

    /// A block published twice (a copy fencing should have kept out) is
    /// written once; lines around it stay.
    #[test]
    fn a_copy_of_a_block_is_written_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = split(dir.path(), &[(0, 0, 4)]);
        let b = split(dir.path(), &[(0, 2, 2), (0, 4, 2)]);
        let out = Arc::new(Partition::create(&dir.path().join("out"), 0).expect("out"));
        let opts = options(3);
        let counts = merge_into(
            &out,
            &[input(&a), input(&b)],
            &sources_of(&[&a, &b]),
            opts,
            &AtomicBool::new(false),
        )
        .expect("merge");
        assert_eq!((counts.copies, counts.lines), (2, 6));
        let out = Partition::open(out.dir(), out.id.clone(), 0, Access::ReadOnly).expect("open");
        let want: Vec<String> = (0..6).map(|k| format!("line {k:02}")).collect();
        assert_eq!(lines_of(&out, 0), (want, 1), "lines 2 and 3 once");
    }

    #[test]
    fn a_stopped_merge_says_so() {
        let dir = tempfile::tempdir().expect("temp dir");
        let a = split(dir.path(), &[(0, 0, 3)]);
        let out = Arc::new(Partition::create(&dir.path().join("out"), 0).expect("out"));
        let opts = options(3);
        let err = merge_into(
            &out,
            &[input(&a)],
            &sources_of(&[&a]),
            opts,
            &AtomicBool::new(true),
        )
        .expect_err("stopped");
        assert!(matches!(err, MergeError::Stopped), "{err}");
    }
}
