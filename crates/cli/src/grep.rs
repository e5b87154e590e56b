//! `cblogs grep`: search the logs of every (or the selected) job with
//! ripgrep's pattern semantics, printing matches as the server finds them.
//!
//! Exit codes follow grep: 0 when a line matched, 1 when none did, 2 on an
//! error. The pattern's syntax is checked here, so a typo never reaches
//! the server.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};

use cblogs_core::api::{
    MatchSource, SearchEvent, SearchLine, SearchSummary, Unanswered, DEFAULT_SEARCH_LIMIT,
    SEARCH_PATH,
};
use cblogs_core::line_event::{decode_raw_line, decode_search_event};
use cblogs_core::pattern::PatternOptions;
use cblogs_core::time::{format_rfc3339, now_ns};
use cblogs_core::Selector;
use clap::Args;
use serde::Serialize;

use crate::client::{Client, ClientError};
use crate::progress::ProgressLine;
use crate::render::{self, ColorChoice, Output};
use crate::{parse_selector, parse_time, Failure, SourceFilter};

const EXAMPLES: &str = "Examples:
  cblogs grep OutOfMemoryError
  cblogs grep -i 'timeout|refused' www-data/prod/hello --since 2h
  cblogs grep -F '[ERROR]' 'www-data/*' --instance 0-4 -C 3
  cblogs grep --events IOException www-data/prod/hello
  cblogs grep Traceback --count --since 1d
  cblogs grep -l 'panic' --stream stderr";

#[derive(Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct GrepArgs {
    /// A regex (the regex crate's syntax, as ripgrep), or a fixed string with -F.
    pattern: String,
    /// Only these jobs (selectors as in `cblogs tail`, globs allowed); every job when none.
    #[arg(value_parser = parse_selector)]
    jobs: Vec<Selector>,
    /// Treat the pattern as a literal string.
    #[arg(short = 'F', long)]
    fixed_strings: bool,
    /// Ignore case.
    #[arg(short, long)]
    ignore_case: bool,
    /// Only whole-word matches.
    #[arg(short, long)]
    word_regexp: bool,
    /// Select the lines that do not match.
    #[arg(short = 'v', long)]
    invert_match: bool,
    #[command(flatten)]
    only: SourceFilter,
    /// Only this agent host.
    #[arg(long)]
    host: Option<String>,
    /// Only lines since then: 90s, 15m, 2h, 3d, 1h30m ago, or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_time)]
    since: Option<i64>,
    /// Only lines before then (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = parse_time)]
    until: Option<i64>,
    /// Print N lines of the same source after each match.
    #[arg(short = 'A', long, value_name = "N")]
    after_context: Option<usize>,
    /// Print N lines of the same source before each match.
    #[arg(short = 'B', long, value_name = "N")]
    before_context: Option<usize>,
    /// Print N lines before and after each match.
    #[arg(short = 'C', long, value_name = "N")]
    context: Option<usize>,
    /// Print the whole event each match is in: the line that opens it and
    /// the lines that continue it (a log record and its Java or Python
    /// stack trace; other formats by `[[multiline]]` rules in cblogsd.toml),
    /// events apart by `--`. --limit then counts events.
    #[arg(long, conflicts_with_all = ["after_context", "before_context", "context", "count", "files_with_matches"])]
    events: bool,
    /// Print how many lines matched per job instance (`JOB/INSTANCE:COUNT`).
    #[arg(short, long, conflicts_with = "files_with_matches")]
    count: bool,
    /// Print which job instances and processes have a match (`JOB/INSTANCE PROCESS`).
    #[arg(short = 'l', long)]
    files_with_matches: bool,
    /// Print at most N matching lines, or events with --events (0: no limit); a note says when more match.
    #[arg(long, default_value_t = DEFAULT_SEARCH_LIMIT)]
    limit: usize,
    /// Start each line with its time (RFC 3339, UTC).
    #[arg(short, long)]
    timestamps: bool,
    /// pretty: prefix and highlighted text; raw: the text alone; json: one object per line.
    #[arg(short, long, value_enum, default_value_t = Output::Pretty)]
    output: Output,
    /// Colour prefixes and matches: auto (on a terminal, unless NO_COLOR is set), always, never.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
}

impl GrepArgs {
    fn pattern_options(&self) -> PatternOptions {
        PatternOptions {
            pattern: self.pattern.clone(),
            fixed: self.fixed_strings,
            ignore_case: self.ignore_case,
            word: self.word_regexp,
        }
    }

    /// Everything that can be wrong without asking the server.
    fn check(&self) -> Result<(), String> {
        self.pattern_options()
            .check_syntax()
            .map_err(|e| e.to_string())?;
        let now = now_ns();
        if let Some(since) = self.since {
            if since > now {
                return Err(format!(
                    "--since {} is in the future (now is {})",
                    format_rfc3339(since),
                    format_rfc3339(now)
                ));
            }
        }
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if since >= until {
                return Err(format!(
                    "empty time range: --since {} is not before --until {}",
                    format_rfc3339(since),
                    format_rfc3339(until)
                ));
            }
        }
        Ok(())
    }

    fn params(&self) -> Vec<(&'static str, String)> {
        let mut p: Vec<(&'static str, String)> = vec![("pattern", self.pattern.clone())];
        for (name, on) in [
            ("fixed", self.fixed_strings),
            ("ignore_case", self.ignore_case),
            ("word", self.word_regexp),
            ("invert", self.invert_match),
        ] {
            if on {
                p.push((name, "true".into()));
            }
        }
        p.extend(self.jobs.iter().map(|j| ("job", j.to_string())));
        self.only.push_params(&mut p);
        if let Some(h) = &self.host {
            p.push(("host", h.clone()));
        }
        for (name, v) in [("since_ns", self.since), ("until_ns", self.until)] {
            if let Some(v) = v {
                p.push((name, v.to_string()));
            }
        }
        let before = self.before_context.or(self.context).unwrap_or(0);
        let after = self.after_context.or(self.context).unwrap_or(0);
        if before > 0 {
            p.push(("before", before.to_string()));
        }
        if after > 0 {
            p.push(("after", after.to_string()));
        }
        if self.events {
            p.push(("events", "true".into()));
        }
        p.push(("limit", self.limit.to_string()));
        if self.count {
            p.push(("mode", "count".into()));
        } else if self.files_with_matches {
            p.push(("mode", "list".into()));
        }
        p
    }
}

/// Runs the search; `Ok(true)` when something matched.
pub async fn grep(client: &Client, args: GrepArgs) -> Result<bool, Failure> {
    args.check()
        .map_err(|message| Failure { message, code: 2 })?;
    let color = args.color.enabled(
        std::io::stdout().is_terminal(),
        std::env::var_os("NO_COLOR").is_some(),
    );
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut printer = Printer {
        args: &args,
        color,
        show_job: false,
        counts: BTreeMap::new(),
        listed: BTreeSet::new(),
        summary: None,
        partial: Vec::new(),
        matched: 0,
        events: 0,
        event_open: false,
        page_break: false,
        progress: ProgressLine::new(),
    };
    let mut base = args.params();
    base.extend(printer.progress.param());
    // Match ranges are only painted: without colour (or JSON, which
    // shows them) the server need not find them.
    if !color && args.output != Output::Json {
        base.push(("highlight", "false".into()));
    }
    let mut cursor: Option<String> = None;
    loop {
        let mut params = base.clone();
        if let Some(c) = &cursor {
            params.push(("cursor", c.clone()));
            // What is left of --limit (the first page asked for it all).
            if args.limit > 0 {
                let left = args.limit.saturating_sub(printer.shown() as usize);
                params.retain(|(k, _)| *k != "limit");
                params.push(("limit", left.to_string()));
            }
        }
        let mut resp = match client.send(SEARCH_PATH, &params).await {
            // A cblogsd older than progress events: none, then.
            Err(ClientError::Api { body, .. })
                if body.error.contains("unknown parameter 'progress'") =>
            {
                base.retain(|(k, _)| *k != "progress");
                params.retain(|(k, _)| *k != "progress");
                client.send(SEARCH_PATH, &params).await?
            }
            other => other?,
        };
        // NDJSON: events are printed as complete lines arrive.
        let mut pending: Vec<u8> = Vec::new();
        loop {
            let chunk = resp.chunk().await.map_err(|e| client.unreachable(&e))?;
            let Some(chunk) = chunk else { break };
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(nl) = memchr_newline(&pending[start..]) {
                let line = &pending[start..start + nl];
                start += nl + 1;
                let bad = |e| Failure::protocol(format!("bad search event: {e}"));
                // Raw output prints a line's text alone: its event is
                // read without copying the rest into strings.
                if args.output == Output::Raw {
                    if let Some(raw) = decode_raw_line(line) {
                        let l = raw.map_err(bad)?;
                        printer.progress.before_output();
                        printer.begin_line(&mut out)?;
                        printer.raw_line(&mut out, &l.time, &l.text, &l.matches)?;
                        continue;
                    }
                }
                let event = decode_search_event(line).map_err(bad)?;
                printer.event(&mut out, event)?;
            }
            pending.drain(..start);
            out.flush()?;
        }
        // The server ends a page at search.max_results: go on from its
        // cursor while --limit wants more.
        cursor = match &printer.summary {
            Some(s)
                if s.more
                    && !s.truncated
                    && (args.limit == 0 || (printer.shown() as usize) < args.limit) =>
            {
                // The next page's first event is apart from this one's last.
                printer.page_break = printer.event_open;
                printer.event_open = false;
                s.next_cursor.clone()
            }
            _ => None,
        };
        if cursor.is_none() {
            break;
        }
    }
    printer.progress.wipe();
    printer.finish(&mut out)
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', b)
}

struct Printer<'a> {
    args: &'a GrepArgs,
    color: bool,
    show_job: bool,
    /// `--count`: per (cluster, job, instance).
    counts: BTreeMap<(String, String, u32), u64>,
    /// `-l`: (cluster, job, instance, process).
    listed: BTreeSet<(String, String, u32, String)>,
    summary: Option<SearchSummary>,
    /// In a cluster: the nodes that did not answer, on any page.
    partial: Vec<Unanswered>,
    /// Matching lines over every page.
    matched: u64,
    /// `--events`: events begun over every page; whether the last line
    /// printed is in one that may go on; a `--` owed before the next.
    events: u64,
    event_open: bool,
    page_break: bool,
    progress: ProgressLine,
}

/// `cluster/role/env/name/INSTANCE`, a selector `cblogs tail` accepts.
fn instance_key(cluster: &str, job: &str, instance: u32) -> String {
    if cluster.is_empty() {
        format!("{job}/{instance}")
    } else {
        format!("{cluster}/{job}/{instance}")
    }
}

#[derive(Serialize)]
struct CountRow<'a> {
    cluster: &'a str,
    job: &'a str,
    instance: u32,
    count: u64,
}

#[derive(Serialize)]
struct ListRow<'a> {
    cluster: &'a str,
    job: &'a str,
    instance: u32,
    process: &'a str,
}

impl Printer<'_> {
    fn event(&mut self, out: &mut impl Write, event: SearchEvent) -> Result<(), Failure> {
        if let SearchEvent::Progress(p) = &event {
            // The lines before it on the terminal first, then the line.
            out.flush()?;
            self.progress.show(p);
            return Ok(());
        }
        self.progress.before_output();
        match event {
            SearchEvent::Start { jobs } => self.show_job = jobs.len() > 1,
            SearchEvent::Line(l) => self.line(out, &l)?,
            SearchEvent::Break => {
                self.event_open = false;
                if self.args.output != Output::Json {
                    writeln!(out, "--")?;
                }
            }
            SearchEvent::Count(c) => {
                let s = c.source;
                *self
                    .counts
                    .entry((s.cluster, s.job, s.instance))
                    .or_default() += c.count;
            }
            SearchEvent::Source(MatchSource {
                cluster,
                job,
                instance,
                process,
                ..
            }) => {
                self.listed.insert((cluster, job, instance, process));
            }
            SearchEvent::Progress(_) => {}
            SearchEvent::Summary(s) => {
                self.matched += s.matched;
                for n in &s.partial {
                    if !self.partial.iter().any(|p| p.node_id == n.node_id) {
                        self.partial.push(n.clone());
                    }
                }
                self.summary = Some(s);
            }
        }
        Ok(())
    }

    /// A line for `--output raw`: its text, matches highlighted, after its
    /// time with `--timestamps`.
    fn raw_line(
        &self,
        out: &mut impl Write,
        time: &str,
        text: &str,
        matches: &[[usize; 2]],
    ) -> Result<(), Failure> {
        if self.args.timestamps {
            write!(out, "{time} ")?;
        }
        writeln!(
            out,
            "{}",
            render::raw_search_line(text, matches, self.color)
        )?;
        Ok(())
    }

    /// What --limit counts so far: matching lines, or events.
    fn shown(&self) -> u64 {
        if self.args.events {
            self.events
        } else {
            self.matched
        }
    }

    /// Before a line is printed: with --events, counts the event it opens
    /// (and prints the `--` owed from the page before).
    fn begin_line(&mut self, out: &mut impl Write) -> Result<(), Failure> {
        if !self.args.events || self.event_open {
            return Ok(());
        }
        self.events += 1;
        self.event_open = true;
        if std::mem::take(&mut self.page_break) && self.args.output != Output::Json {
            writeln!(out, "--")?;
        }
        Ok(())
    }

    fn line(&mut self, out: &mut impl Write, l: &SearchLine) -> Result<(), Failure> {
        self.begin_line(out)?;
        match self.args.output {
            Output::Raw => self.raw_line(out, &l.line.time, &l.line.text, &l.matches)?,
            Output::Pretty => {
                if self.args.timestamps {
                    write!(out, "{} ", l.line.time)?;
                }
                writeln!(
                    out,
                    "{}",
                    render::pretty_search_line(l, self.show_job, self.color)
                )?;
            }
            Output::Json => {
                serde_json::to_writer(&mut *out, l).map_err(std::io::Error::from)?;
                out.write_all(b"\n")?;
            }
        }
        Ok(())
    }

    /// Prints what waits for the end (counts, the list), says what was left
    /// out, and tells whether anything matched.
    fn finish(self, out: &mut impl Write) -> Result<bool, Failure> {
        let json = self.args.output == Output::Json;
        for ((cluster, job, instance), count) in &self.counts {
            if json {
                let row = CountRow {
                    cluster,
                    job,
                    instance: *instance,
                    count: *count,
                };
                serde_json::to_writer(&mut *out, &row).map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{}:{count}", instance_key(cluster, job, *instance))?;
            }
        }
        for (cluster, job, instance, process) in &self.listed {
            if json {
                let row = ListRow {
                    cluster,
                    job,
                    instance: *instance,
                    process,
                };
                serde_json::to_writer(&mut *out, &row).map_err(std::io::Error::from)?;
                writeln!(out)?;
            } else {
                writeln!(out, "{} {process}", instance_key(cluster, job, *instance))?;
            }
        }
        out.flush()?;
        let Some(summary) = self.summary else {
            return Err(Failure::protocol(
                "the search ended without its summary (was cblogsd stopped?)".into(),
            ));
        };
        if summary.more {
            let next = summary
                .next_time_ns
                .map(|t| {
                    format!(
                        " (the next at {}; continue with --since {0})",
                        format_rfc3339(t)
                    )
                })
                .unwrap_or_default();
            let (what, more) = match self.args.events {
                true => ("events", "more events match"),
                false => ("matching lines", "more lines match"),
            };
            eprintln!(
                "cblogs: stopped at --limit {} {what}; {more}{next}. Narrow the search or raise --limit (0 for no limit).",
                self.args.limit
            );
        }
        crate::say_partial(&self.partial);
        if summary.truncated {
            eprintln!(
                "cblogs: the results are incomplete: {}",
                summary
                    .reason
                    .as_deref()
                    .unwrap_or("the search stopped early")
            );
        }
        Ok(self.matched > 0)
    }
}
