//! A search that runs out of time answers with what it found, marked
//! `truncated`, and names the setting that limits it. (A search cannot be
//! made slow on purpose from outside, so the deadline is set in the past.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use cblogs_core::api::{SearchEvent, SearchSummary};
use cblogs_core::pattern::{Pattern, PatternOptions};
use cblogs_core::wire::{Batch, IngestRequest, WireLine};
use cblogs_core::{Source, Stream};
use cblogs_server::testing::{
    search, LineFilter, Mode, Prefilter, SearchRequest, SearchSink, SearchWorkers,
};
use cblogs_server::{Config, Service};

struct Collect(Vec<SearchEvent>);

impl SearchSink for Collect {
    fn send(&mut self, event: SearchEvent) -> bool {
        self.0.push(event);
        true
    }
    fn send_serialized(&mut self, json: &[u8]) -> bool {
        self.0
            .push(serde_json::from_slice(json).expect("a search event"));
        true
    }
    fn flush(&mut self) -> bool {
        true
    }
}

fn source(instance: u32) -> Source {
    Source::example("www-data/prod/hello", instance, "hello", Stream::Stdout)
}

fn request(deadline: Instant) -> SearchRequest {
    let pattern = Pattern::new(
        PatternOptions {
            pattern: "request \\d+ failed".into(),
            ..Default::default()
        },
        10 << 20,
    )
    .expect("pattern");
    SearchRequest {
        prefilter: Prefilter::new(&pattern),
        pattern: Some(pattern),
        invert: false,
        and: Vec::new(),
        not: Vec::new(),
        filter: LineFilter::everything(),
        limit: None,
        before: 0,
        after: 0,
        events: false,
        cursor: None,
        mode: Mode::Lines,
        deadline,
        time_limit: Duration::from_secs(30),
        workers: Arc::new(SearchWorkers::new(0)),
        explain: false,
        progress: None,
        highlight: true,
    }
}

fn summary(events: &[SearchEvent]) -> &SearchSummary {
    match events.last() {
        Some(SearchEvent::Summary(s)) => s,
        other => panic!("the last event is not the summary: {other:?}"),
    }
}

#[test]
fn out_of_time_means_truncated_and_says_why() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    // Many small blocks, so there is work left when the deadline passes.
    config.storage.block_max_lines = 20;
    let service = Service::open(config).expect("service opens");
    let app = service.app().clone();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t0 = cblogs_core::time::now_ns();
    rt.block_on(async {
        for instance in 0..4 {
            let mut offset = 0;
            let lines: Vec<WireLine> = (0..2000)
                .map(|i| {
                    let text = format!("request {i} failed on instance {instance}");
                    let l = WireLine::from_bytes(offset, t0 + i, text.as_bytes());
                    offset += text.len() as u64 + 1;
                    l
                })
                .collect();
            let batch = Batch {
                source: source(instance),
                start: 0,
                end: offset,
                lines,
                allow_gap: false,
            };
            app.ingestor
                .ingest(IngestRequest {
                    batches: vec![batch],
                })
                .await
                .expect("ingest");
        }
    });
    let snap = app.store.snapshot(&|_| true, false);

    let mut all = Collect(Vec::new());
    search(
        &snap,
        &request(Instant::now() + Duration::from_secs(60)),
        Vec::new(),
        &mut all,
    );
    let full = summary(&all.0);
    assert!(!full.truncated, "{full:?}");
    assert_eq!(full.matched, 8000);

    let mut cut = Collect(Vec::new());
    search(&snap, &request(Instant::now()), Vec::new(), &mut cut);
    let s = summary(&cut.0);
    assert!(s.truncated, "{s:?}");
    let reason = s.reason.as_deref().unwrap_or_default();
    assert!(reason.contains("search.max_query_secs = 30"), "{reason}");
    assert!(s.matched < 8000, "{s:?}");
    let lines = cut
        .0
        .iter()
        .filter(|e| matches!(e, SearchEvent::Line(_)))
        .count();
    assert_eq!(lines as u64, s.matched, "what was found is sent");
    service.close();
}
