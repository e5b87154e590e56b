//! What the alert modules' unit tests share: rules with one notifier,
//! and hits made by hand.

use cblogs_core::api::AlertGroup;
use cblogs_core::time::now_ns;
use cblogs_core::{LineFlags, LineView, Source, Stream};

use super::matcher::Hit;
use super::rules::Rules;

/// `rules` (`[[rule]]` tables notifying `hook`) with the notifier `hook`.
pub fn rules(rules: &str) -> Rules {
    let text = format!(
        "[[notifier]]\nname = \"hook\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n{rules}"
    );
    Rules::parse(&text, "test", 1 << 20).expect("test rules")
}

/// Rule `burst`: 4 lines with `BURST` of a `www-data/prod` job in 10
/// minutes fire, per job.
pub fn burst_rules() -> Rules {
    rules(
        "[[rule]]\nname = \"burst\"\njobs = [\"www-data/prod/*\"]\npattern = 'BURST'\n\
         threshold = 4\nwindow = \"10m\"\nnotify = [\"hook\"]\n",
    )
}

/// A hit of rule `burst` on the stderr of `process` of instance 0 of
/// `job`: `len` bytes at `offset`, now.
pub fn hit(job: &str, process: &str, offset: u64, len: u64, partial: bool) -> Hit {
    let source = Source::example(job, 0, process, Stream::Stderr);
    let text = "B".repeat(len as usize);
    let flags = LineFlags {
        partial,
        ..LineFlags::default()
    };
    Hit {
        rule: "burst".into(),
        group: AlertGroup {
            job: source.job_key().to_string(),
            instance: None,
        },
        source: source.id(),
        end: offset + len + u64::from(!partial),
        line: LineView::new(&source, offset, now_ns(), flags, text.as_bytes()),
        trace: Vec::new(),
        in_trace: false,
    }
}
