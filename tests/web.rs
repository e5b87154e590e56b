//! The web page `cblogsd` serves at `/` (issue 6), in a real headless
//! Chromium: the real `cblogsd`, fed by the real `cblogs-shipper` from a
//! fake agent, and the page driven as a user would (typing, Enter, clicks).
//!
//! - `search_shows_lines_and_histogram`: a pattern and a job selector typed
//!   into the query bar and Enter show exactly the matching lines written
//!   (matches in `<mark>`, stderr marked, HTML shown as text, ANSI colours
//!   as colours and not escapes), the histogram counts them, and a click on
//!   a line opens its context (and a second click closes it).
//! - `url_reproduces_the_view`: the URL after a search, loaded afresh,
//!   fills the same inputs and shows the same lines.
//! - `live_tail_shows_new_lines_and_pauses`: a line written to a sandbox
//!   file shows within 2 s; paused, new lines are counted and not shown,
//!   and resuming shows them; scrolled up, new lines do not pull the list
//!   down, and back at the bottom it follows again; `Esc` pauses.
//! - `bad_regex_shows_the_error`: `foo(bar` shows the regex error and no
//!   lines; a good pattern clears it.
//! - `job_browser_lists_jobs`: every job and instance written is listed;
//!   clicking an instance opens the live tail of that instance.
//! - `phone_width`: at 390 px nothing scrolls sideways, long lines wrap.
//! - `a_node_that_does_not_answer_is_named_on_the_page`: a node of a
//!   cluster whose other node does not answer says, under the search, in
//!   the job browser and in the live tail, that the answer is partial,
//!   naming the node; its own lines are shown.
//!
//! The contract is `web-spec.md` (issue 6). Each test saves a screenshot as
//! `<CARGO_TARGET_TMPDIR>/web/<test>.png`; with `CBLOGS_UPDATE_SCREENSHOT=1`
//! the search test also writes `docs/screenshot.png` (the README's picture).
//! The tests run one at a time ([`serial`]): each runs a cblogsd, a shipper
//! and a Chromium, and the live tail has a 2 s budget.

mod browser;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use browser::{artifacts_dir, Browser};
use cblogs_core::{JobKey, Selector, Stream};
use cblogs_testkit::*;
use fantoccini::key::Key;
use serde_json::{json, Value};

const BOTH: [Stream; 2] = [Stream::Stdout, Stream::Stderr];

/// Jobs whose roles and names hold `-` and `_`.
const HELLO: (&str, &str, &str) = ("www-data", "prod", "hello");
const EIGHT_BALL: (&str, &str, &str) = ("cbe-team", "devel", "eight_ball-api");
const CRUNCH: (&str, &str, &str) = ("data_eng", "staging2", "log-crunch_v2");

/// How long shipping the few lines of a test may take.
const SHIP_DEADLINE: Duration = Duration::from_secs(60);

/// How soon a line written to a sandbox file must show in the live tail.
const LIVE_BUDGET: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// cblogsd, an agent and the shipper between them.
// ---------------------------------------------------------------------------

/// Dropped in field order: the shipper stops before cblogsd and the
/// folders go.
struct Env {
    shipper: Option<Shipper>,
    stack: Stack,
}

impl Env {
    fn new() -> Env {
        Env::with_config(None)
    }

    fn with_config(config: Option<&str>) -> Env {
        Env {
            shipper: None,
            stack: Stack::new(config),
        }
    }

    fn task(&self, job: JobName, instance: u32) -> Task {
        self.stack.task(job, instance)
    }

    fn url(&self) -> &str {
        &self.stack.server.url
    }

    /// Starts the shipper (once).
    fn ship(&mut self) {
        if self.shipper.is_none() {
            self.shipper = Some(self.stack.shipper());
        }
    }

    /// Waits until cblogsd holds exactly the lines written to `runs`.
    fn wait_stored(&mut self, runs: &[&ProcessRun]) {
        let shipper = self.shipper.as_mut().expect("the shipper runs");
        wait_all_stored(&self.stack.server, shipper, SHIP_DEADLINE, runs);
    }

    /// An env where `www-data/prod/hello` instance 0's `hello_world` wrote
    /// `lines` to stdout, shipped and stored.
    fn hello_with(lines: &[&str]) -> (Env, ProcessRun) {
        let mut env = Env::new();
        let mut h0 = env.task(HELLO, 0).process("hello_world", 0);
        h0.append_lines(Stream::Stdout, lines);
        env.ship();
        env.wait_stored(&[&h0]);
        (env, h0)
    }

    /// The page's URL with `params` in its query string.
    fn page(&self, params: &[(&str, &str)]) -> String {
        reqwest::Url::parse_with_params(&format!("{}/", self.url()), params)
            .expect("a valid URL")
            .to_string()
    }
}

fn job_key((role, env, name): (&str, &str, &str)) -> String {
    format!("{SHIPPER_CLUSTER}/{role}/{env}/{name}")
}

// ---------------------------------------------------------------------------
// What was written, and what the page shows.
// ---------------------------------------------------------------------------

/// A line written to a sandbox file.
#[derive(Debug, Clone)]
struct Want {
    /// `role/env/name`.
    job: String,
    instance: u32,
    process: String,
    stream: Stream,
    /// As written (escape sequences and all).
    raw: String,
}

impl Want {
    /// The text the page must show: the SGR escapes are colours, not text.
    fn shown(&self) -> String {
        strip_sgr(&self.raw)
    }
}

fn source_hex(run: &ProcessRun, stream: Stream) -> String {
    format!("{:016x}", run.source(stream).id())
}

/// Every line written to `runs`, by `(data-source, data-offset)`: the
/// stream's id in hex, and the line's offset in it.
fn written(runs: &[&ProcessRun]) -> BTreeMap<(String, u64), Want> {
    let mut all = BTreeMap::new();
    for r in runs {
        for stream in BOTH {
            let source = source_hex(r, stream);
            for w in &r.model(stream).lines {
                let want = Want {
                    job: r.job.clone(),
                    instance: r.instance,
                    process: r.process.clone(),
                    stream,
                    raw: String::from_utf8(w.bytes.clone()).expect("tests write UTF-8"),
                };
                all.insert((source.clone(), w.offset), want);
            }
        }
    }
    all
}

/// `s` without ANSI SGR sequences (`ESC [ … m`).
fn strip_sgr(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find(|c: char| !(c.is_ascii_digit() || c == ';')) {
            Some(j) if after[j..].starts_with('m') => rest = &after[j + 1..],
            _ => {
                out.push_str("\x1b[");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// A `div.line` as the page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PageLine {
    classes: Vec<String>,
    source: String,
    offset: Option<u64>,
    stream: String,
    job: String,
    instance: String,
    prefix: String,
    text: String,
    marks: Vec<String>,
}

impl PageLine {
    fn has(&self, class: &str) -> bool {
        self.classes.iter().any(|c| c == class)
    }

    fn id(&self) -> (String, u64) {
        (self.source.clone(), self.offset.unwrap_or(u64::MAX))
    }

    /// A CSS selector for this line's element under `root`.
    fn css(&self, root: &str) -> String {
        format!(
            "{root} div.line[data-source=\"{}\"][data-offset=\"{}\"]",
            self.source,
            self.offset.expect("a data-offset")
        )
    }
}

/// Reads one line element (`l`) into the shape of [`PageLine`].
const LINE_OF: &str = "const lineOf = (l) => ({
  classes: Array.from(l.classList),
  source: l.dataset.source ?? '',
  offset: l.dataset.offset ?? '',
  stream: l.dataset.stream ?? '',
  job: l.dataset.job ?? '',
  instance: l.dataset.instance ?? '',
  prefix: l.querySelector('.prefix')?.textContent ?? '',
  text: l.querySelector('.text')?.textContent ?? '',
  marks: Array.from(l.querySelectorAll('.text mark')).map((m) => m.textContent),
});";

fn parse_lines(v: &Value) -> Vec<PageLine> {
    let s = |l: &Value, k: &str| l[k].as_str().unwrap_or_default().to_owned();
    let strings = |l: &Value, k: &str| -> Vec<String> {
        l[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    v.as_array()
        .unwrap_or_else(|| panic!("not a list of lines: {v}"))
        .iter()
        .map(|l| PageLine {
            classes: strings(l, "classes"),
            source: s(l, "source"),
            offset: l["offset"].as_str().and_then(|o| o.parse().ok()),
            stream: s(l, "stream"),
            job: s(l, "job"),
            instance: s(l, "instance"),
            prefix: s(l, "prefix"),
            text: s(l, "text"),
            marks: strings(l, "marks"),
        })
        .collect()
}

/// The `div.line`s under `root` (not those inside a `.context-block`),
/// in document order.
fn lines_in(b: &Browser, root: &str) -> Vec<PageLine> {
    let v = b.execute(
        &format!(
            "{LINE_OF}
             const root = document.querySelector(arguments[0]);
             if (!root) return [];
             return Array.from(root.querySelectorAll('div.line'))
               .filter((l) => !l.closest('.context-block'))
               .map(lineOf);"
        ),
        vec![json!(root)],
    );
    parse_lines(&v)
}

/// JS: how many result lines (outside context blocks) `root` shows.
fn count_js(root: &str) -> String {
    format!(
        "Array.from(document.querySelectorAll('{root} div.line'))\
         .filter((l) => !l.closest('.context-block')).length"
    )
}

/// JS: whether a line under `root` has exactly `text` as its text.
fn shows_text_js(root: &str, text: &str) -> String {
    let text = serde_json::to_string(text).expect("JSON");
    format!(
        "Array.from(document.querySelectorAll('{root} div.line .text'))\
         .some((t) => t.textContent === {text})"
    )
}

/// Whether `haystack` holds `n` as a number of its own ("12 new",
/// "1,234 matching lines").
fn mentions_number(haystack: &str, n: usize) -> bool {
    let cleaned: String = haystack
        .chars()
        .filter(|c| *c != ',' && *c != '\u{202f}' && *c != '\u{a0}')
        .collect();
    cleaned
        .split(|c: char| !c.is_ascii_digit())
        .any(|w| w == n.to_string())
}

/// Checks each page line against the line written at its source and
/// offset; returns the problems found.
fn check_lines(
    what: &str,
    got: &[PageLine],
    all: &BTreeMap<(String, u64), Want>,
    want: &BTreeSet<(String, u64)>,
) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for l in got {
        let Some(w) = all.get(&l.id()) else {
            problems.push(format!(
                "{what}: shows a line not written at source {:?} offset {:?}: {:?} ({:?})",
                l.source, l.offset, l.text, l.classes
            ));
            continue;
        };
        if !seen.insert(l.id()) {
            problems.push(format!("{what}: shows twice: {:?}", l.text));
        }
        if !want.contains(&l.id()) {
            problems.push(format!("{what}: shows a line it must not: {:?}", w.raw));
        }
        if l.text != w.shown() {
            problems.push(format!(
                "{what}: text {:?}, written {:?} (shown as {:?})",
                l.text,
                w.raw,
                w.shown()
            ));
        }
        if l.stream != w.stream.as_str() {
            problems.push(format!(
                "{what}: {:?}: data-stream {:?}, not {}",
                l.text, l.stream, w.stream
            ));
        }
        if l.has("stderr") != (w.stream == Stream::Stderr) {
            problems.push(format!(
                "{what}: {:?} ({}): classes {:?}",
                l.text, w.stream, l.classes
            ));
        }
        if !l.job.ends_with(&w.job) {
            problems.push(format!(
                "{what}: {:?}: data-job {:?}, written to {}",
                l.text, l.job, w.job
            ));
        }
        if l.instance != w.instance.to_string() {
            problems.push(format!(
                "{what}: {:?}: data-instance {:?}, written to instance {}",
                l.text, l.instance, w.instance
            ));
        }
        let prefix = format!("{} {}/{}", w.instance, w.process, w.stream);
        if !l.prefix.contains(&prefix) {
            problems.push(format!(
                "{what}: {:?}: prefix {:?} does not say {prefix:?}",
                l.text, l.prefix
            ));
        }
    }
    for id in want {
        if !seen.contains(id) {
            problems.push(format!("{what}: missing: {:?}", all[id].raw));
        }
    }
    // Each source's lines in file order.
    let mut last: BTreeMap<&str, u64> = BTreeMap::new();
    for l in got {
        let Some(off) = l.offset else { continue };
        if let Some(prev) = last.insert(&l.source, off) {
            if prev >= off {
                problems.push(format!(
                    "{what}: offset {off} shown after {prev} of the same source ({:?})",
                    l.text
                ));
            }
        }
    }
    problems
}

fn assert_no_problems(problems: &[String], b: &Browser) {
    assert!(
        problems.is_empty(),
        "{} problems:\n{}\n{}",
        problems.len(),
        problems.join("\n"),
        b.diagnostics()
    );
}

fn screenshot(b: &Browser, name: &str) -> PathBuf {
    let path = artifacts_dir().join(format!("{name}.png"));
    b.screenshot(&path);
    path
}

/// The query string of `url` as a map (last value wins).
fn query_of(url: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(url)
        .unwrap_or_else(|e| panic!("{url}: {e}"))
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Whether the element matching `css` is shown (WebDriver's "displayed").
fn displayed(b: &Browser, css: &str) -> bool {
    b.find(css).is_displayed()
}

/// A service's log line, in a few shapes; shape 4 holds `timeout`, shape 6
/// holds `Timeout` (not a match when case matters).
fn app_line(i: usize) -> String {
    match i % 7 {
        0 => format!("INFO  GET /api/orders/{} 200 {}ms", 1000 + i, 12 + i % 50),
        1 => format!("INFO  cache hit ratio 0.{} over the last 60s", 80 + i % 19),
        2 => format!("WARN  upstream inventory-svc slow: {} ms", 800 + i),
        3 => format!("INFO  POST /api/payments 201 {}ms", 40 + i % 30),
        4 => format!(
            "ERROR payment-gateway timeout after 30000 ms (order {})",
            1000 + i
        ),
        5 => format!("DEBUG pool stats: active={} idle={}", i % 8, 8 - i % 8),
        _ => format!("INFO  Timeout budget reset for worker-{}", i % 4),
    }
}

// ---------------------------------------------------------------------------
// The tests.
// ---------------------------------------------------------------------------

/// The query bar runs a search: exactly the matching lines, highlighted and
/// checked line by line; the histogram's total; ANSI colours and HTML in
/// lines; a click opens a line's context.
#[test]
fn search_shows_lines_and_histogram() {
    let _serial = serial();
    let mut env = Env::new();
    let hello0 = env.task(HELLO, 0);
    let hello1 = env.task(HELLO, 1);
    let eight = env.task(EIGHT_BALL, 0);
    let mut h0 = hello0.process("hello_world", 0);
    let mut h1 = hello1.process("hello_world", 0);
    let mut e0 = eight.process("eight_ball", 0);

    let mut lines: Vec<String> = (0..40).map(app_line).collect();
    // HTML in a line is text, not markup.
    let html = "<img src=x onerror=\"document.title='pwned'\"> <b>timeout</b> & \"quotes\"";
    lines.insert(22, html.to_owned());
    h0.append_lines(Stream::Stdout, &lines);
    h0.append_lines(
        Stream::Stderr,
        &[
            "Traceback (most recent call last):",
            "  File \"/app/server.py\", line 42, in handle",
            "socket.timeout: timed out",
            "retrying in 5 s",
        ],
    );
    h1.append_lines(
        Stream::Stdout,
        &(0..20).map(|i| app_line(i + 3)).collect::<Vec<_>>(),
    );
    let ansi = "\x1b[31mred\x1b[0m alert: upstream timeout talking to cache-3";
    h1.append_lines(Stream::Stderr, &["cache-3 unreachable", ansi, "giving up"]);
    // Another job: its matches are not for this selector.
    e0.append_lines(
        Stream::Stdout,
        &(0..14).map(|i| app_line(i + 1)).collect::<Vec<_>>(),
    );
    env.ship();
    let runs = [&h0, &h1, &e0];
    env.wait_stored(&runs);

    let all = written(&runs);
    let expected: BTreeSet<(String, u64)> = all
        .iter()
        .filter(|(_, w)| w.job == h0.job && w.raw.contains("timeout"))
        .map(|(k, _)| k.clone())
        .collect();
    let n = expected.len();
    assert_eq!(n, 12, "the fixture has 12 matching lines");
    // The traceback's match comes with its whole event: the traceback's
    // lines before it, as context in one block (not the line after its
    // exception line, which opens another event).
    let in_event: BTreeSet<(String, u64)> = all
        .iter()
        .filter(|(_, w)| {
            w.job == h0.job && (w.raw.starts_with("Traceback") || w.raw.starts_with("  File"))
        })
        .map(|(k, _)| k.clone())
        .collect();
    assert_eq!(in_event.len(), 2);
    let shown: BTreeSet<(String, u64)> = expected.union(&in_event).cloned().collect();

    let b = Browser::start("search_shows_lines_and_histogram");
    b.goto(&format!("{}/", env.url()));
    b.wait_for("#tab-search", DEADLINE).click();
    b.wait_until_js("!document.querySelector('#view-search').hidden", DEADLINE);
    let job = b.find("#job");
    job.clear();
    job.send_keys("www-data/prod/hello");
    let pattern = b.find("#pattern");
    pattern.clear();
    pattern.send_keys(&format!("timeout{}", Key::Enter));

    // Done: every line there, the histogram drawn, the summary written.
    b.try_wait_until_js(
        &format!(
            "{} >= {} && Number(document.querySelector('#histogram')?.dataset.total) > 0 \
             && /\\d/.test(document.querySelector('#summary')?.textContent ?? '')",
            count_js("#results"),
            shown.len()
        ),
        DEADLINE,
    );
    let got = lines_in(&b, "#results");
    let mut problems = check_lines("#results", &got, &all, &shown);
    for l in &got {
        if l.has("context") != in_event.contains(&l.id()) {
            problems.push(format!(
                "{:?}: classes {:?}: only the event's other lines are context",
                l.text, l.classes
            ));
        }
        let want_marks = vec!["timeout".to_owned(); l.text.matches("timeout").count()];
        if l.marks != want_marks {
            problems.push(format!(
                "{:?}: <mark>s {:?}, want {want_marks:?}",
                l.text, l.marks
            ));
        }
    }
    let total = b.find("#histogram").attr("data-total");
    if total.as_deref() != Some(n.to_string().as_str()) {
        problems.push(format!(
            "#histogram data-total {total:?}, want {n} (the matching lines)"
        ));
    }
    let buckets = b.find("#histogram").attr("data-buckets");
    let bucket_count = buckets.as_deref().and_then(|s| s.parse::<u64>().ok());
    if bucket_count.unwrap_or(0) == 0 {
        problems.push(format!("#histogram data-buckets {buckets:?}"));
    }
    let summary = b.text_content("#summary").unwrap_or_default();
    if !mentions_number(&summary, n) {
        problems.push(format!("#summary {summary:?} does not say {n}"));
    }
    if displayed(&b, "#error") {
        problems.push(format!("#error shown: {:?}", b.text("#error")));
    }
    assert_no_problems(&problems, &b);

    // HTML is shown as text: no element came from it, no script ran.
    let injected =
        b.eval("[document.querySelectorAll('#results img, #results b').length, document.title]");
    assert_eq!(
        injected[0],
        json!(0),
        "markup in a line became elements: {injected}"
    );
    assert_ne!(injected[1], json!("pwned"), "a line's HTML ran as script");

    // The ANSI line: no escape shown, "red" in a colour of its own.
    let ansi_text = strip_sgr(ansi);
    let colour = b.execute(
        "const line = Array.from(document.querySelectorAll('#results div.line .text'))
           .find((t) => t.textContent === arguments[0]);
         if (!line) return 'no such line';
         const red = Array.from(line.querySelectorAll('*'))
           .find((e) => e.textContent === 'red');
         if (!red) return 'no element holds exactly \"red\": ' + line.innerHTML;
         const a = getComputedStyle(red).color, b = getComputedStyle(line).color;
         return a !== b ? 'ok' : 'red has the colour of the text: ' + a;",
        vec![json!(ansi_text)],
    );
    assert_eq!(colour, json!("ok"), "the ANSI-coloured line");
    for l in &got {
        assert!(
            !l.text.contains('\u{1b}') && !l.text.contains("[31m") && !l.text.contains("[0m"),
            "an escape sequence shown as text: {:?}",
            l.text
        );
    }

    // A click on a line opens its context: the lines around it in its
    // source, the clicked one marked.
    // The 19th line of hello/0's stdout: a match between lines that are not.
    let h0_stdout = source_hex(&h0, Stream::Stdout);
    let focus = got
        .iter()
        .find(|l| l.source == h0_stdout && l.text.contains("(order 1018)"))
        .expect("the line of order 1018 of hello/0 is a result")
        .clone();
    b.find(&focus.css("#results")).click();
    let block_js = format!(
        "document.querySelector({})?.nextElementSibling",
        serde_json::to_string(&focus.css("#results")).expect("JSON")
    );
    b.wait_until_js(
        &format!(
            "{block_js}?.classList.contains('context-block') && \
             {block_js}.querySelectorAll('div.line').length > 2"
        ),
        DEADLINE,
    );
    let ctx = parse_lines(&b.execute(
        &format!(
            "{LINE_OF} return Array.from(({block_js}).querySelectorAll('div.line')).map(lineOf);"
        ),
        Vec::new(),
    ));
    let stdout0: Vec<&Written> = h0.model(Stream::Stdout).lines.iter().collect();
    let offsets: Vec<Option<u64>> = ctx.iter().map(|l| l.offset).collect();
    let start = stdout0
        .iter()
        .position(|w| Some(w.offset) == offsets[0])
        .unwrap_or_else(|| panic!("context starts at a line of the source: {ctx:#?}"));
    let mut problems = Vec::new();
    for (i, l) in ctx.iter().enumerate() {
        let Some(w) = stdout0.get(start + i) else {
            problems.push(format!("context line {i} past the end: {:?}", l.text));
            continue;
        };
        if l.offset != Some(w.offset) || l.text != String::from_utf8_lossy(&w.bytes) {
            problems.push(format!(
                "context line {i}: offset {:?} {:?}, want offset {} {:?} (contiguous lines)",
                l.offset,
                l.text,
                w.offset,
                String::from_utf8_lossy(&w.bytes)
            ));
        }
        if l.source != focus.source {
            problems.push(format!("context line {i} from source {:?}", l.source));
        }
        if l.has("focus") != (l.offset == focus.offset) {
            problems.push(format!(
                "context line {i} {:?}: classes {:?} (only the clicked line is .focus)",
                l.text, l.classes
            ));
        }
    }
    let at = ctx.iter().position(|l| l.offset == focus.offset);
    match at {
        Some(at) if at > 0 && at + 1 < ctx.len() => {}
        _ => problems.push(format!(
            "the clicked line with lines before and after it: {:?}",
            ctx.iter().map(|l| &l.text).collect::<Vec<_>>()
        )),
    }
    assert_no_problems(&problems, &b);

    let shot = screenshot(&b, "search_shows_lines_and_histogram");
    if std::env::var("CBLOGS_UPDATE_SCREENSHOT").as_deref() == Ok("1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).expect("docs dir");
        std::fs::copy(&shot, docs.join("screenshot.png")).expect("copy the screenshot to docs/");
    }

    // A second click closes it.
    b.find(&focus.css("#results")).click();
    b.wait_until_js(
        &format!("!({block_js}?.classList.contains('context-block'))"),
        DEADLINE,
    );
}

/// The URL after a search reproduces it: loaded afresh, the inputs are
/// filled the same and the same lines are shown, without pressing Enter.
#[test]
fn url_reproduces_the_view() {
    let _serial = serial();
    let mut env = Env::new();
    let hello0 = env.task(HELLO, 0);
    let hello1 = env.task(HELLO, 1);
    let mut h0 = hello0.process("hello_world", 0);
    let mut h1 = hello1.process("hello_world", 0);
    h0.append_lines(Stream::Stderr, &["timeout on instance 0", "refused 7 on 0"]);
    h1.append_lines(
        Stream::Stdout,
        &["timeout on stdout", "refused 2 on stdout"],
    );
    h1.append_lines(
        Stream::Stderr,
        &[
            "connect to db-2:5432 refused 3 times",
            "Connection REFUSED by peer",
            "request TimeOut after 5s",
            "all good",
            "REFUSED 12 of 40 requests, 50% & <climbing>",
            "\x1b[33mwarn\x1b[0m retry budget low",
        ],
    );
    env.ship();
    let runs = [&h0, &h1];
    env.wait_stored(&runs);

    let pattern = r"TIMEOUT|refused \d+";
    let all = written(&runs);
    let is_match = |s: &str| {
        let l = s.to_lowercase();
        l.contains("timeout")
            || l.match_indices("refused ").any(|(i, _)| {
                l[i + "refused ".len()..]
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_digit())
            })
    };
    let expected: BTreeSet<(String, u64)> = all
        .iter()
        .filter(|(_, w)| w.instance == 1 && w.stream == Stream::Stderr && is_match(&w.shown()))
        .map(|(k, _)| k.clone())
        .collect();
    let n = expected.len();
    assert_eq!(n, 3, "the fixture has 3 matching lines");

    let b = Browser::start("url_reproduces_the_view");
    b.goto(&env.page(&[("view", "search")]));
    b.wait_for("#pattern", DEADLINE);
    b.find("#job").send_keys("www-data/prod/hello");
    b.find("#pattern").send_keys(pattern);
    let ic = b.find("#ignore-case");
    if ic.prop("checked").as_deref() != Some("true") {
        ic.click();
    }
    b.find("#stream").select("stderr");
    // Enter in another field than the pattern runs it too.
    b.find("#instance").send_keys(&format!("1{}", Key::Enter));

    let done = format!(
        "{} >= {n} && Number(document.querySelector('#histogram')?.dataset.total) > 0 \
         && /\\d/.test(document.querySelector('#summary')?.textContent ?? '')",
        count_js("#results")
    );
    b.try_wait_until_js(&done, DEADLINE);
    let first = lines_in(&b, "#results");
    assert_no_problems(&check_lines("the search", &first, &all, &expected), &b);

    let href = b.eval("location.href");
    let href = href.as_str().expect("location.href").to_owned();
    let q = query_of(&href);
    assert!(
        matches!(q.get("view").map(String::as_str), None | Some("search")),
        "URL parameter view of {href}: search (or left out, search being the default)"
    );
    let want_params = [
        ("q", pattern),
        ("job", "www-data/prod/hello"),
        ("i", "1"),
        ("stream", "stderr"),
        ("instance", "1"),
    ];
    for (k, v) in want_params {
        assert_eq!(
            q.get(k).map(String::as_str),
            Some(v),
            "URL parameter {k} of {href}"
        );
    }

    // Loaded again, nothing typed, nothing clicked: by a reload, and by
    // pasting the link into a page that was elsewhere.
    for how in ["reload", "a fresh navigation"] {
        if how == "reload" {
            b.refresh();
        } else {
            b.goto("about:blank");
            b.goto(&href);
        }
        b.wait_for("#pattern", DEADLINE);
        b.try_wait_until_js(&done, DEADLINE);
        let again = lines_in(&b, "#results");
        let inputs = b.eval(
            "['#job', '#pattern', '#stream', '#instance']
               .map((s) => document.querySelector(s)?.value)
               .concat([document.querySelector('#ignore-case')?.checked])",
        );
        assert_eq!(
            inputs,
            json!(["www-data/prod/hello", pattern, "stderr", "1", true]),
            "the inputs after {how} of {href}"
        );
        assert_eq!(
            again, first,
            "after {how} of {href}, the same lines as the search that made it"
        );
        assert!(
            !b.eval("document.querySelector('#view-search').hidden")
                .as_bool()
                .unwrap_or(true),
            "the search view is shown after {how}"
        );
        assert_eq!(b.url(), href, "the URL stays as it was after {how}");
    }
    screenshot(&b, "url_reproduces_the_view");
}

/// The element that scrolls the live tail: the first of `#tail-lines` and
/// its ancestors that scrolls vertically, else the page.
const TAIL_SCROLLER: &str = "const scroller = (() => {
  for (let e = document.querySelector('#tail-lines'); e; e = e.parentElement) {
    const o = getComputedStyle(e).overflowY;
    if ((o === 'auto' || o === 'scroll') && e.scrollHeight > e.clientHeight) return e;
  }
  return document.scrollingElement;
})();";

fn tail_scroll(b: &Browser) -> (f64, f64, f64) {
    let v = b.execute(
        &format!("{TAIL_SCROLLER} return [scroller.scrollTop, scroller.clientHeight, scroller.scrollHeight];"),
        Vec::new(),
    );
    let f = |i: usize| v[i].as_f64().unwrap_or(f64::NAN);
    (f(0), f(1), f(2))
}

/// Scrolls the live tail's list to `top` (a JavaScript expression that may
/// use `scroller`), and lets two frames pass.
fn scroll_tail_to(b: &Browser, top: &str) {
    b.execute(
        &format!("{TAIL_SCROLLER} scroller.scrollTop = {top};"),
        Vec::new(),
    );
    b.wait_frames(2);
}

fn at_bottom((top, height, total): (f64, f64, f64)) -> bool {
    top + height >= total - 2.0
}

/// JS: whether the tail is scrolled to its bottom.
fn at_bottom_js() -> String {
    format!(
        "(() => {{ {TAIL_SCROLLER} \
         return scroller.scrollTop + scroller.clientHeight >= scroller.scrollHeight - 2; }})()"
    )
}

/// Appends `text` and waits (2 s from the write) for the tail to show it.
fn write_and_see(b: &Browser, run: &mut ProcessRun, stream: Stream, text: &str) {
    let written = Instant::now();
    run.append_lines(stream, &[text]);
    let ok = b.try_wait_until_js(
        &shows_text_js("#tail-lines", text),
        LIVE_BUDGET.saturating_sub(written.elapsed()),
    );
    assert!(
        ok,
        "{text:?} not in #tail-lines within {LIVE_BUDGET:?} of its write\n{}",
        b.diagnostics()
    );
}

#[test]
fn live_tail_shows_new_lines_and_pauses() {
    let _serial = serial();
    let mut env = Env::new();
    let hello0 = env.task(HELLO, 0);
    let mut h0 = hello0.process("hello_world", 0);
    let backlog: Vec<String> = (0..150)
        .map(|i| format!("backlog {i:03}: {}", app_line(i)))
        .collect();
    h0.append_lines(Stream::Stdout, &backlog);
    h0.append_lines(
        Stream::Stderr,
        &["startup warning: no config, using defaults"],
    );
    env.ship();
    env.wait_stored(&[&h0]);

    let b = Browser::start("live_tail_shows_new_lines_and_pauses");
    b.goto(&env.page(&[("view", "tail"), ("job", "www-data/prod/hello")]));
    b.wait_until_js(
        &format!(
            "{} && (document.querySelector('#tail-status')?.textContent ?? '').includes('live')",
            shows_text_js("#tail-lines", &backlog[149])
        ),
        DEADLINE,
    );
    assert!(displayed(&b, "#view-tail"), "the tail view is shown");
    assert!(!displayed(&b, "#view-search"), "the search view is hidden");
    assert_eq!(
        b.find("#job").prop("value").as_deref(),
        Some("www-data/prod/hello"),
        "the job selector is filled from the URL"
    );
    let all = written(&[&h0]);
    let shown: BTreeSet<(String, u64)> = lines_in(&b, "#tail-lines")
        .iter()
        .map(PageLine::id)
        .collect();
    let problems = check_lines("the backlog", &lines_in(&b, "#tail-lines"), &all, &shown);
    assert_no_problems(&problems, &b);

    // Live: a new line shows within 2 s, and the list follows it down.
    write_and_see(&b, &mut h0, Stream::Stdout, "live line 1: deploy finished");
    write_and_see(&b, &mut h0, Stream::Stderr, "live line 2: on stderr");
    let scroll = tail_scroll(&b);
    assert!(
        scroll.2 > scroll.1,
        "150 lines overflow the tail's view: {scroll:?}"
    );
    assert!(
        b.try_wait_until_js(&at_bottom_js(), LIVE_BUDGET),
        "live, the tail follows new lines to the bottom: {:?}",
        tail_scroll(&b)
    );
    let news = lines_in(&b, "#tail-lines");
    let last = news.last().expect("lines");
    assert_eq!(last.text, "live line 2: on stderr");
    assert!(last.has("stderr"), "{last:?}");
    let want_offset = h0.model(Stream::Stderr).lines.last().map(|w| w.offset);
    assert_eq!(last.offset, want_offset, "data-offset of the new line");

    // Paused: new lines are counted, not shown.
    b.find("#tail-pause").click();
    b.wait_until_js(
        "document.querySelector('#tail-pause').textContent.trim() === 'Resume' && \
         document.querySelector('#tail-status').textContent.includes('paused')",
        DEADLINE,
    );
    let before = lines_in(&b, "#tail-lines");
    let paused: Vec<String> = (1..=3).map(|i| format!("while paused {i}")).collect();
    h0.append_lines(Stream::Stdout, &paused);
    let counted = b.try_wait_until_js(
        "/(^|\\D)3(\\D|$)/.test(document.querySelector('#tail-paused-count')?.textContent ?? '')",
        DEADLINE,
    );
    assert!(
        counted,
        "#tail-paused-count says 3 after 3 lines arrived while paused: {:?}\n{}",
        b.text_content("#tail-paused-count"),
        b.diagnostics()
    );
    assert!(displayed(&b, "#tail-paused-count"), "the count is shown");
    let during = lines_in(&b, "#tail-lines");
    assert_eq!(during, before, "while paused, #tail-lines does not change");

    // Resumed: they show, in order, after the others.
    b.find("#tail-pause").click();
    b.wait_until_js(&shows_text_js("#tail-lines", &paused[2]), DEADLINE);
    b.wait_until_js(
        "document.querySelector('#tail-pause').textContent.trim() === 'Pause' && \
         document.querySelector('#tail-status').textContent.includes('live')",
        DEADLINE,
    );
    let after = lines_in(&b, "#tail-lines");
    let texts: Vec<&str> = after.iter().map(|l| l.text.as_str()).collect();
    assert_eq!(
        texts[texts.len() - 3..],
        paused.iter().map(String::as_str).collect::<Vec<_>>()[..],
        "the lines received while paused, at the end in order"
    );
    assert_eq!(
        after[..after.len() - 3]
            .iter()
            .map(PageLine::id)
            .collect::<Vec<_>>(),
        before.iter().map(PageLine::id).collect::<Vec<_>>(),
        "the lines before the pause stay as they were"
    );

    // Scrolled up, a new line does not pull the list to the bottom.
    scroll_tail_to(&b, "0");
    write_and_see(
        &b,
        &mut h0,
        Stream::Stdout,
        "live line 3: while scrolled up",
    );
    // Long enough for a (smooth) scroll to the bottom to have begun.
    b.wait_frames(10);
    let scroll = tail_scroll(&b);
    assert!(
        !at_bottom(scroll) && scroll.0 < 100.0,
        "scrolled to the top, a new line leaves the view where it was: {scroll:?}"
    );
    // Back at the bottom, it follows again.
    scroll_tail_to(&b, "scroller.scrollHeight");
    write_and_see(
        &b,
        &mut h0,
        Stream::Stdout,
        "live line 4: back at the bottom",
    );
    assert!(
        b.try_wait_until_js(&at_bottom_js(), LIVE_BUDGET),
        "back at the bottom, the tail follows new lines again: {:?}",
        tail_scroll(&b)
    );
    screenshot(&b, "live_tail_shows_new_lines_and_pauses");

    // Esc pauses and resumes.
    b.eval("document.activeElement?.blur(), true");
    b.press(Key::Escape);
    b.wait_until_js(
        "document.querySelector('#tail-status').textContent.includes('paused')",
        DEADLINE,
    );
    b.press(Key::Escape);
    b.wait_until_js(
        "document.querySelector('#tail-status').textContent.includes('live')",
        DEADLINE,
    );
}

/// JS: the texts of the lines of the `n`th `.event` block under `root`
/// (`visible`: only those shown, its fold applied).
fn event_texts_js(root: &str, n: usize, visible: bool) -> String {
    format!(
        "Array.from(document.querySelectorAll('{root} .event')[{n}]?.querySelectorAll('div.line') ?? [])\
         .filter((l) => !{visible} || l.offsetParent !== null)\
         .map((l) => l.querySelector('.text').textContent)"
    )
}

fn strings(v: Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn events_show_as_one_block_in_results_and_live_tail() {
    let _serial = serial();
    let mut env = Env::new();
    let hello0 = env.task(HELLO, 0);
    let mut hadoop = hello0.process("hadoop", 0);
    let mut web = hello0.process("web", 0);
    let event = LOG4J_EVENT;
    let mut lines = vec!["2015-10-18 18:01:47,900 INFO [main] Task: start"];
    lines.extend_from_slice(&event);
    lines.push("2015-10-18 18:01:48,001 INFO [main] Task: next");
    hadoop.append_lines(Stream::Stderr, &lines);
    web.append_lines(Stream::Stdout, &["INFO GET /health 200"]);
    env.ship();
    env.wait_stored(&[&hadoop, &web]);

    // Results: the event is one block, folded to its first line and the
    // matching one; its toggle opens it whole, in order, and folds it.
    let b = Browser::start("events_show_as_one_block_in_results_and_live_tail");
    b.goto(&env.page(&[
        ("view", "search"),
        ("job", "www-data/prod/hello"),
        ("q", "IOException|/health"),
        ("range", "24h"),
    ]));
    b.wait_until_js(
        "document.querySelectorAll('#results .event').length === 1 && \
         (document.querySelector('#summary')?.textContent ?? '').includes('matching')",
        DEADLINE,
    );
    let all = strings(b.eval(&event_texts_js("#results", 0, false)));
    assert_eq!(all, event, "the whole event, in order, in one block");
    let folded = strings(b.eval(&event_texts_js("#results", 0, true)));
    assert_eq!(
        folded,
        event[..2],
        "folded: its opening line and the matching line"
    );
    let toggle = "#results .event .event-toggle";
    assert!(
        b.find(toggle).text().contains("5 more lines"),
        "{}",
        b.find(toggle).text()
    );
    let plain = lines_in(&b, "#results");
    assert_eq!(
        plain.last().map(|l| l.text.as_str()),
        Some("INFO GET /health 200"),
        "another source's match after the event, as a line of its own"
    );
    b.find(toggle).click();
    b.wait_until_js(
        &format!(
            "{}.length === {}",
            event_texts_js("#results", 0, true),
            event.len()
        ),
        DEADLINE,
    );
    screenshot(&b, "events_results_open");
    b.find(toggle).click();
    b.wait_until_js(
        &format!("{}.length === 2", event_texts_js("#results", 0, true)),
        DEADLINE,
    );
    // A click on its matching line opens the lines around it, as on any
    // result.
    b.find("#results .event div.line:not(.hideable):not(:first-child)")
        .click();
    b.wait_for("#results .event .context-block div.line.focus", DEADLINE);

    // Live tail: an event written in two pieces, another source's line
    // between them, grows in one open block; the source's next line
    // closes it and comes after it.
    b.goto(&env.page(&[("view", "tail"), ("job", "www-data/prod/hello")]));
    b.wait_until_js(
        "(document.querySelector('#tail-status')?.textContent ?? '').includes('live')",
        DEADLINE,
    );
    let live = [
        "2015-10-18 18:02:00,100 ERROR [main] org.apache.hadoop.mapred.YarnChild: Error running child",
        "java.lang.OutOfMemoryError: Java heap space",
        "\tat java.util.Arrays.copyOf(Arrays.java:3236)",
        "\tat org.apache.hadoop.io.Text.append(Text.java:236)",
    ];
    write_and_see(&b, &mut hadoop, Stream::Stderr, live[0]);
    hadoop.append_lines(Stream::Stderr, &live[1..2]);
    b.wait_until_js(&shows_text_js("#tail-lines", live[1]), DEADLINE);
    write_and_see(&b, &mut web, Stream::Stdout, "INFO GET /health 200 again");
    hadoop.append_lines(Stream::Stderr, &live[2..]);
    b.wait_until_js(&shows_text_js("#tail-lines", live[3]), DEADLINE);
    let blocks = b.eval("document.querySelectorAll('#tail-lines .event').length");
    let last = b.eval("document.querySelectorAll('#tail-lines .event').length - 1");
    let n = last
        .as_u64()
        .unwrap_or_else(|| panic!("no event block: {blocks}")) as usize;
    assert_eq!(
        strings(b.eval(&event_texts_js("#tail-lines", n, false))),
        live,
        "the live event in one block"
    );
    assert!(
        b.eval(&format!(
            "document.querySelectorAll('#tail-lines .event')[{n}].classList.contains('open')"
        )) == json!(true),
        "open while its source may still add to it"
    );
    write_and_see(
        &b,
        &mut hadoop,
        Stream::Stderr,
        "2015-10-18 18:02:01,000 INFO [main] Task: next",
    );
    b.wait_until_js(
        &format!(
            "!document.querySelectorAll('#tail-lines .event')[{n}].classList.contains('open')"
        ),
        DEADLINE,
    );
    let tail = lines_in(&b, "#tail-lines");
    assert_eq!(
        tail.last().map(|l| l.text.as_str()),
        Some("2015-10-18 18:02:01,000 INFO [main] Task: next"),
        "the next event after the closed block"
    );
    screenshot(&b, "events_live_tail");
}

#[test]
fn histogram_drag_zooms_the_time_range() {
    let _serial = serial();
    let (env, _h0) = Env::hello_with(&["zoom me: timeout one", "zoom me: timeout two"]);

    let b = Browser::start("histogram_drag_zooms_the_time_range");
    b.goto(&env.page(&[("q", "zoom me"), ("range", "1h")]));
    b.wait_until_js(
        "Number(document.querySelector('#histogram').dataset.total) === 2",
        DEADLINE,
    );
    let before = query_of(&b.url());
    assert!(!before.contains_key("since"), "{before:?}");
    // Drag across the right half of the plot, as a mouse would: uPlot
    // listens on its overlay for the press and the moves (it ignores a move
    // that did not move) and on the document for the release.
    let mouse = |kind: &str, on: &str, at: f64| {
        b.execute(
            &format!(
                "const over = document.querySelector('#histogram .u-over');
                 const r = over.getBoundingClientRect();
                 {on}.dispatchEvent(new MouseEvent('{kind}', {{
                     clientX: r.left + r.width * {at}, clientY: r.top + r.height / 2,
                     movementX: 10, bubbles: true, button: 0, buttons: 1 }}));"
            ),
            vec![],
        );
        b.wait_frames(2);
    };
    mouse("mousedown", "over", 0.5);
    mouse("mousemove", "over", 0.75);
    mouse("mousemove", "over", 1.0);
    mouse("mouseup", "document", 1.0);
    b.wait_until_js(
        "new URLSearchParams(location.search).has('since') && \
         document.querySelector('#range').value === 'custom'",
        DEADLINE,
    );
    let after = query_of(&b.url());
    let since = after.get("since").expect("since in the URL");
    let until = after.get("until").expect("until in the URL");
    let since_ms: f64 = b
        .eval(&format!("Date.parse({since:?})"))
        .as_f64()
        .expect("since is a time");
    let until_ms: f64 = b
        .eval(&format!("Date.parse({until:?})"))
        .as_f64()
        .expect("until is a time");
    // The right half of the hour shown: from half an hour ago to now.
    let span_min = (until_ms - since_ms) / 60_000.0;
    assert!(
        span_min > 25.0 && span_min < 35.0,
        "zoomed to {span_min} minutes"
    );
    // The zoomed view still holds the lines (they are from the last minute).
    b.wait_until_js(
        "Number(document.querySelector('#histogram').dataset.total) === 2 && \
         document.querySelectorAll('#results .line').length === 2",
        DEADLINE,
    );
    screenshot(&b, "histogram_drag_zooms_the_time_range");
}

#[test]
fn bad_regex_shows_the_error() {
    let _serial = serial();
    let (env, _h0) = Env::hello_with(&["foo(bar) is a literal here", "nothing to see"]);

    let b = Browser::start("bad_regex_shows_the_error");
    b.goto(&env.page(&[("view", "search")]));
    let error_shown = "(() => { const e = document.querySelector('#error'); \
                       return e && !e.hidden && e.checkVisibility() && \
                       e.textContent.includes('unclosed group'); })()";
    b.wait_for("#pattern", DEADLINE)
        .send_keys(&format!("foo(bar{}", Key::Enter));
    b.wait_until_js(error_shown, DEADLINE);
    assert!(displayed(&b, "#error"));
    b.find("#results");
    assert_eq!(
        lines_in(&b, "#results"),
        Vec::new(),
        "no results for a pattern that is not a regex"
    );
    screenshot(&b, "bad_regex_shows_the_error");

    // A good pattern clears the error.
    let p = b.find("#pattern");
    p.clear();
    p.send_keys(&format!("foo\\(bar{}", Key::Enter));
    b.wait_until_js(
        &shows_text_js("#results", "foo(bar) is a literal here"),
        DEADLINE,
    );
    b.wait_until_js(
        "(() => { const e = document.querySelector('#error'); \
         return e.textContent.trim() === '' && (e.hidden || !e.checkVisibility()); })()",
        DEADLINE,
    );
    assert!(!displayed(&b, "#error"), "no error after a good search");

    // The same error from a link.
    b.goto(&env.page(&[("view", "search"), ("q", "foo(bar")]));
    b.wait_until_js(error_shown, DEADLINE);
    assert_eq!(lines_in(&b, "#results"), Vec::new());
}

#[test]
fn a_read_token_is_asked_once_and_lets_in_search_and_the_live_tail() {
    let _serial = serial();
    let token = "web-read-token-0123456789abcdef";
    // Ingest stays open to the local shipper; reading needs the token.
    let mut env = Env::with_config(Some(&format!("[auth]\nread_tokens = [\"{token}\"]\n")));
    let mut h0 = env.task(HELLO, 0).process("hello_world", 0);
    h0.append_lines(
        Stream::Stdout,
        &["signed-in line one", "signed-in line two"],
    );
    env.ship();
    let tail_url = format!("{}/api/v1/tail?job=www-data/prod/hello", env.url());
    let http = reqwest::blocking::Client::new();
    assert_eq!(
        http.get(&tail_url).send().map(|r| r.status().as_u16()).ok(),
        Some(401),
        "without the token the API refuses"
    );
    wait_until("the lines stored", SHIP_DEADLINE, || {
        let v: Value = http
            .get(&tail_url)
            .bearer_auth(token)
            .send()
            .ok()?
            .json()
            .ok()?;
        (v["lines"].as_array()?.len() == 2).then_some(())
    });

    let b = Browser::start("a_read_token_is_asked_once");
    b.goto(&env.page(&[
        ("view", "search"),
        ("job", "www-data/prod/hello"),
        ("q", "signed-in"),
    ]));
    // The first 401 asks for the token; no results meanwhile.
    b.wait_for("#login:not([hidden])", DEADLINE);
    assert!(displayed(&b, "#login"), "the sign-in form is shown");
    assert_eq!(lines_in(&b, "#results"), Vec::new());
    // A wrong token is refused in words, and the form stays.
    b.find("#token")
        .send_keys(&format!("not-the-token-000000{}", Key::Enter));
    b.wait_until_js(
        "(document.querySelector('#login-error')?.textContent ?? '').includes('not a valid read token')",
        DEADLINE,
    );
    // The right one: the page reloads and shows the results.
    let t = b.find("#token");
    t.clear();
    t.send_keys(&format!("{token}{}", Key::Enter));
    b.wait_until_js(&shows_text_js("#results", "signed-in line two"), DEADLINE);
    assert!(!displayed(&b, "#login"), "signed in, the form is gone");
    let texts: Vec<String> = lines_in(&b, "#results")
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(texts, ["signed-in line one", "signed-in line two"]);
    // The cookie also lets the live tail's EventSource in.
    b.goto(&env.page(&[("view", "tail"), ("job", "www-data/prod/hello")]));
    b.wait_until_js(
        "(document.querySelector('#tail-status')?.textContent ?? '').includes('live')",
        DEADLINE,
    );
    write_and_see(&b, &mut h0, Stream::Stdout, "a live line after signing in");
    assert!(!displayed(&b, "#login"));
    screenshot(&b, "a_read_token_is_asked_once");
}

#[test]
fn job_browser_lists_jobs() {
    let _serial = serial();
    let mut env = Env::new();
    let mut runs = Vec::new();
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let jobs: [(_, &[u32]); 3] = [(HELLO, &[0, 1, 2]), (EIGHT_BALL, &[0, 3]), (CRUNCH, &[1])];
    for (job, instances) in jobs {
        for &i in instances {
            let t = env.task(job, i);
            let mut r = t.process("main", 0);
            r.append_lines(
                Stream::Stdout,
                &(0..5)
                    .map(|k| format!("{} instance {i} line {k}", job.2))
                    .collect::<Vec<_>>(),
            );
            runs.push(r);
            want.entry(job_key(job)).or_default().insert(i.to_string());
        }
    }
    env.ship();
    env.wait_stored(&runs.iter().collect::<Vec<_>>());

    let b = Browser::start("job_browser_lists_jobs");
    b.goto(&env.page(&[("view", "jobs")]));
    let enough = b.try_wait_until_js(
        &format!(
            "document.querySelectorAll('#jobs-tree .job[data-job]').length >= {} && \
             document.querySelectorAll('#jobs-tree .instance[data-job][data-instance]').length >= 6",
            want.len()
        ),
        DEADLINE,
    );
    let listed = b.eval(
        "({ jobs: Array.from(document.querySelectorAll('#jobs-tree .job[data-job]'))
              .map((j) => [j.dataset.job, j.textContent]),
            instances: Array.from(document.querySelectorAll('#jobs-tree .instance[data-job]'))
              .map((i) => [i.dataset.job, i.dataset.instance]) })",
    );
    let mut got: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for j in listed["jobs"].as_array().expect("jobs") {
        let key = j[0].as_str().unwrap_or_default().to_owned();
        let name = key.rsplit('/').next().unwrap_or_default();
        assert!(
            j[1].as_str().unwrap_or_default().contains(name),
            "the job element of {key} shows its name: {:?}",
            j[1]
        );
        got.entry(key).or_default();
    }
    for i in listed["instances"].as_array().expect("instances") {
        let key = i[0].as_str().unwrap_or_default().to_owned();
        got.entry(key)
            .or_default()
            .insert(i[1].as_str().unwrap_or_default().to_owned());
    }
    assert!(
        enough && got == want,
        "the jobs tree lists {got:?}, want {want:?}\n{}",
        b.diagnostics()
    );
    assert!(displayed(&b, "#view-jobs"), "the jobs view is shown");
    screenshot(&b, "job_browser_lists_jobs");

    // An instance opens its live tail.
    let hello = job_key(HELLO);
    let inst = b.find(&format!(
        "#jobs-tree .instance[data-job=\"{hello}\"][data-instance=\"2\"]"
    ));
    assert!(
        inst.is_displayed(),
        "instance 2 of {hello} can be clicked (it is displayed)"
    );
    inst.click();
    b.wait_until_js(
        "new URLSearchParams(location.search).get('view') === 'tail'",
        DEADLINE,
    );
    let last = format!("{} instance 2 line 4", HELLO.2);
    b.wait_until_js(&shows_text_js("#tail-lines", &last), DEADLINE);
    assert!(displayed(&b, "#view-tail"), "the tail view is shown");
    let q = query_of(&b.url());
    let selector = b.find("#job").prop("value").unwrap_or_default();
    assert_eq!(
        q.get("job"),
        Some(&selector),
        "the URL's job is the selector in #job"
    );
    let sel = Selector::parse(&selector)
        .unwrap_or_else(|e| panic!("#job holds a selector: {selector:?}: {e}"));
    for key in want.keys() {
        let k: JobKey = key.parse().expect("a job key");
        assert_eq!(
            sel.matches_job(&k),
            *key == hello,
            "the selector {selector:?} names {hello} alone (checked with {key})"
        );
    }
    let instance_field = b.find("#instance").prop("value").unwrap_or_default();
    let only_2 =
        |set: &cblogs_core::InstanceSet| set.contains(2) && !set.contains(0) && !set.contains(1);
    assert!(
        only_2(sel.instances()) || instance_field.trim() == "2",
        "instance 2 is selected: #job {selector:?}, #instance {instance_field:?}"
    );
    let tail = lines_in(&b, "#tail-lines");
    assert!(
        tail.iter()
            .all(|l| l.instance == "2" && l.job.ends_with("www-data/prod/hello")),
        "the tail shows instance 2 of hello alone: {:?}",
        tail.iter()
            .map(|l| (&l.job, &l.instance, &l.text))
            .collect::<Vec<_>>()
    );
    assert_eq!(tail.len(), 5, "the 5 lines of instance 2: {tail:?}");
}

/// What overflows sideways at the current width; empty when nothing does.
fn overflow(b: &Browser, root: &str) -> Vec<String> {
    let v = b.execute(
        "const root = document.querySelector(arguments[0]);
         const out = [];
         const de = document.documentElement;
         if (de.scrollWidth > innerWidth)
           out.push(`page: scrollWidth ${de.scrollWidth} > innerWidth ${innerWidth}`);
         if (!root) { out.push('no ' + arguments[0]); return out; }
         if (root.scrollWidth > root.clientWidth + 1)
           out.push(`${arguments[0]}: scrollWidth ${root.scrollWidth} > clientWidth ${root.clientWidth}`);
         for (const l of root.querySelectorAll('div.line')) {
           const r = l.getBoundingClientRect();
           if (r.right > innerWidth + 0.5 || l.scrollWidth > l.clientWidth + 1)
             out.push(`line ${(l.textContent || '').slice(0, 40)}…: right ${r.right}, \
scrollWidth ${l.scrollWidth} > clientWidth ${l.clientWidth}`);
         }
         return out;",
        vec![json!(root)],
    );
    v.as_array()
        .expect("a list")
        .iter()
        .map(|s| s.as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn phone_width() {
    let _serial = serial();
    let mut env = Env::new();
    let hello0 = env.task(HELLO, 0);
    let mut h0 = hello0.process("hello_world", 0);
    let unbroken: String = (0..80).map(|i| format!("{i:02x}ab")).collect();
    let long_word = format!("longline GET /download/{unbroken}?token={unbroken}");
    let long_words = format!(
        "longline {}",
        (0..120)
            .map(|i| format!("word{i}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    h0.append_lines(
        Stream::Stdout,
        &[
            "short line".to_owned(),
            long_word.clone(),
            long_words.clone(),
        ],
    );
    env.ship();
    env.wait_stored(&[&h0]);

    let b = Browser::start("phone_width");
    b.set_size(390, 844);
    assert_eq!(
        b.eval("innerWidth"),
        json!(390),
        "the window is 390 px wide"
    );
    let mut problems = Vec::new();

    b.goto(&env.page(&[
        ("view", "search"),
        ("job", "www-data/prod/hello"),
        ("q", "longline"),
    ]));
    b.try_wait_until_js(
        &format!(
            "{} && {}",
            shows_text_js("#results", &long_word),
            shows_text_js("#results", &long_words)
        ),
        DEADLINE,
    );
    b.wait_frames(2);
    if lines_in(&b, "#results").len() != 2 {
        problems.push(format!(
            "search: the 2 long lines, shown: {:?}",
            lines_in(&b, "#results")
        ));
    }
    problems.extend(
        overflow(&b, "#results")
            .into_iter()
            .map(|p| format!("search: {p}")),
    );
    screenshot(&b, "phone_width");

    b.goto(&env.page(&[("view", "tail"), ("job", "www-data/prod/hello")]));
    b.try_wait_until_js(&shows_text_js("#tail-lines", &long_words), DEADLINE);
    b.wait_frames(2);
    problems.extend(
        overflow(&b, "#tail-lines")
            .into_iter()
            .map(|p| format!("tail: {p}")),
    );
    screenshot(&b, "phone_width-tail");

    b.goto(&env.page(&[("view", "jobs")]));
    b.try_wait_until_js(
        "document.querySelector('#jobs-tree .job') !== null",
        DEADLINE,
    );
    b.wait_frames(2);
    problems.extend(
        overflow(&b, "#jobs-tree")
            .into_iter()
            .map(|p| format!("jobs: {p}")),
    );
    screenshot(&b, "phone_width-jobs");

    assert_no_problems(&problems, &b);
}

/// A node of a cluster (issue 18) whose other node does not answer: the
/// search (with its histogram), the job browser and the live tail each
/// say the answer is partial and name that node; the lines this node
/// holds are shown all the same.
#[test]
fn a_node_that_does_not_answer_is_named_on_the_page() {
    let _serial = serial();
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = format!("[cluster]\nnodes = [\"{dead}\"]\npeer_timeout_ms = 1000\n");
    let mut env = Env::with_config(Some(&config));
    let mut h0 = env.task(HELLO, 0).process("hello_world", 0);
    h0.append_lines(Stream::Stdout, &["held here, shown even so"]);
    env.ship();
    env.wait_stored(&[&h0]);
    let names_dead = |css: &str| {
        format!(
            "(() => {{ const e = document.querySelector('{css}'); \
             return !!e && !e.hidden && e.textContent.includes('partial') && \
             e.textContent.includes('{dead}'); }})()"
        )
    };

    let b = Browser::start("a_node_that_does_not_answer_is_named_on_the_page");
    let job = job_key(HELLO);
    b.goto(&env.page(&[("view", "search"), ("q", "held"), ("job", &job)]));
    b.wait_until_js(
        &shows_text_js("#results", "held here, shown even so"),
        DEADLINE,
    );
    b.wait_until_js(&names_dead("#search-partial"), DEADLINE);
    assert!(displayed(&b, "#search-partial"));
    screenshot(&b, "a_node_that_does_not_answer_is_named_on_the_page");

    b.goto(&env.page(&[("view", "jobs")]));
    b.wait_until_js(&names_dead("#jobs-partial"), DEADLINE);

    b.goto(&env.page(&[("view", "tail"), ("job", &job)]));
    b.wait_until_js(
        &shows_text_js("#tail-lines", "held here, shown even so"),
        DEADLINE,
    );
    b.wait_until_js(&names_dead("#tail-lines"), DEADLINE);
}
