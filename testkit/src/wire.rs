//! Ingest requests built as a shipper builds them, for tests that post
//! straight to `cblogsd`: a source with a realistic task id, one sandbox
//! file's batches at growing offsets, and times that only grow.

use std::sync::atomic::{AtomicI64, Ordering};

use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::{JobKey, Source, Stream};
use cblogs_fake_agent::ids::fake_uuid;

use crate::shipper::SHIPPER_HOST;

/// A source with a realistic task id: `role-env-name-instance-<uuid>`, on
/// host `agent1`; the cluster is the job key's, else `devcluster`.
pub fn source(job: &str, instance: u32, process: &str, stream: Stream) -> Source {
    let key: JobKey = job.parse().expect("job key");
    let cluster = key.cluster.clone().unwrap_or_else(|| "devcluster".into());
    let seed: Vec<u8> = job.bytes().chain(instance.to_le_bytes()).collect();
    let uuid = fake_uuid(seed);
    Source {
        cluster,
        host: SHIPPER_HOST.into(),
        task_id: format!("{}-{}-{}-{instance}-{uuid}", key.role, key.env, key.name),
        job: JobKey {
            cluster: None,
            ..key
        },
        instance,
        process: process.into(),
        run: 0,
        stream,
    }
}

/// Strictly increasing times across everything a test process posts, so
/// "the newest N lines" is known exactly.
pub fn next_time() -> i64 {
    static LAST: AtomicI64 = AtomicI64::new(0);
    let now = cblogs_core::time::now_ns();
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(0);
    now.max(prev + 1)
}

/// One sandbox file as a shipper sees it: lines appended at growing offsets.
pub struct SourceFile {
    pub source: Source,
    /// Where the next line starts.
    pub offset: u64,
}

impl SourceFile {
    pub fn new(source: Source) -> Self {
        SourceFile { source, offset: 0 }
    }

    /// A new file of [`source`]`(job, instance, process, stream)`.
    pub fn of(job: &str, instance: u32, process: &str, stream: Stream) -> Self {
        SourceFile::new(source(job, instance, process, stream))
    }

    /// The next batch: `lines` (without newlines) appended to the file, each
    /// at the next of [`next_time`].
    pub fn batch<T: AsRef<[u8]>>(&mut self, lines: &[T]) -> Batch {
        let timed: Vec<(i64, &[u8])> = lines.iter().map(|l| (next_time(), l.as_ref())).collect();
        self.batch_at(&timed)
    }

    /// The next batch, each line at the time given.
    pub fn batch_at<T: AsRef<[u8]>>(&mut self, lines: &[(i64, T)]) -> Batch {
        let start = self.offset;
        let wire = lines
            .iter()
            .map(|(time, l)| {
                let l = l.as_ref();
                let w = WireLine::from_bytes(self.offset, *time, l);
                self.offset += l.len() as u64 + 1;
                w
            })
            .collect();
        Batch {
            source: self.source.clone(),
            start,
            end: self.offset,
            lines: wire,
            allow_gap: false,
        }
    }
}

/// A request of `batches`.
pub fn request(batches: Vec<Batch>) -> IngestRequest {
    IngestRequest { batches }
}
