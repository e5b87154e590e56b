//! The baselines cblogs is measured against, run in this process on the
//! same files: `zstd -3` (the zstd crate, one frame per file, as
//! `zstd -3 FILE` makes) and a plain tantivy index of one document per line
//! with its text stored.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use tantivy::schema::{Schema, FAST, INDEXED, STORED, STRING, TEXT};
use tantivy::{doc, Index, IndexWriter};

use crate::corpus::Corpus;
use crate::procs::dir_bytes;

/// What a baseline took and how big its output is.
pub struct Measured {
    pub secs: f64,
    pub bytes: u64,
}

/// Every file compressed at level 3, one after another on one thread.
pub fn zstd3(corpus: &Corpus) -> Result<Measured> {
    let mut secs = 0.0;
    let mut bytes = 0;
    for f in &corpus.files {
        let data = std::fs::read(&f.spec.path)
            .with_context(|| format!("read {}", f.spec.path.display()))?;
        let started = Instant::now();
        let out = zstd::bulk::compress(&data, 3).context("zstd")?;
        secs += started.elapsed().as_secs_f64();
        bytes += out.len() as u64;
    }
    Ok(Measured { secs, bytes })
}

/// One tantivy document per line: the text (default tokenizer, stored, so
/// a hit can be shown), the job (a string), the instance and the time (fast
/// fields), as a straightforward log index would have. Indexed with
/// tantivy's default writer (one thread per core) and committed; the time
/// runs from the first document to the end of the commit. The size is taken
/// after merges end.
pub fn tantivy_per_line(corpus: &Corpus, dir: &Path) -> Result<Measured> {
    let mut schema = Schema::builder();
    let text = schema.add_text_field("text", TEXT | STORED);
    let job = schema.add_text_field("job", STRING);
    let instance = schema.add_u64_field("instance", INDEXED | FAST);
    let time = schema.add_i64_field("time", INDEXED | FAST);
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let index = Index::create_in_dir(dir, schema.build()).context("create the tantivy index")?;
    let mut writer: IndexWriter = index.writer(256 << 20).context("tantivy writer")?;
    let mut read_secs = 0.0;
    let started = Instant::now();
    let mut t = cblogs_core::time::now_ns();
    for f in &corpus.files {
        let read_at = Instant::now();
        let data = std::fs::read(&f.spec.path)
            .with_context(|| format!("read {}", f.spec.path.display()))?;
        read_secs += read_at.elapsed().as_secs_f64();
        for line in data.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            t += 1;
            writer.add_document(doc!(
                text => String::from_utf8_lossy(line).into_owned(),
                job => f.spec.job.as_str(),
                instance => u64::from(f.spec.instance),
                time => t,
            ))?;
        }
    }
    writer.commit().context("tantivy commit")?;
    let secs = started.elapsed().as_secs_f64() - read_secs;
    writer
        .wait_merging_threads()
        .context("tantivy merge threads")?;
    Ok(Measured {
        secs,
        bytes: dir_bytes(dir),
    })
}
