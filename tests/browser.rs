//! A real headless Chromium for the web page's tests, driven over WebDriver:
//! `chromedriver` (Debian's `chromium-driver`) started on a free port in a
//! process group of its own, and a `fantoccini` session on it.
//!
//! The API is synchronous like the rest of the harness: [`Browser`] owns a
//! tokio current-thread runtime and runs every WebDriver command on it with
//! `block_on`, each bounded by [`COMMAND_TIMEOUT`]. Every wait is a poll
//! with a deadline ([`Browser::wait_until_js`], [`Browser::wait_for`]),
//! never a sleep standing in for an event.
//!
//! Dropping a [`Browser`] ends the session and kills chromedriver's whole
//! process group (Chromium and its helpers are in it), also when the test
//! panicked; after a panic it first saves `<name>-failed.png` next to the
//! test's screenshots and prints the page's console messages.

// A helper module: not every test file that includes it uses every method.
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cblogs_testkit::{free_port, require_tool, DEADLINE};
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::elements::Element;
use fantoccini::error::CmdError;
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// The longest any single WebDriver command may take.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// The window a [`Browser`] starts with.
pub const DEFAULT_SIZE: (u32, u32) = (1280, 800);

/// Where the browser tests leave their screenshots: `<CARGO_TARGET_TMPDIR>/web`.
/// Cargo sets `CARGO_TARGET_TMPDIR` when it compiles an integration test
/// (and a run may set it too; that one wins).
pub fn artifacts_dir() -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let dir = base.join("web");
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// A headless Chromium with one WebDriver session.
pub struct Browser {
    rt: tokio::runtime::Runtime,
    client: Option<Client>,
    /// chromedriver, the leader of its own process group.
    driver: Child,
    driver_url: String,
    session_id: String,
    /// Names the failure screenshot.
    name: String,
    /// The Chromium profile and chromedriver's output.
    dir: tempfile::TempDir,
}

/// One element of the page, with synchronous methods.
pub struct El<'b> {
    b: &'b Browser,
    el: Element,
    /// How it was found, for messages.
    what: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at 1280×800. `name`
    /// (the test's) names the screenshot saved if the test fails.
    pub fn start(name: &str) -> Browser {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = tempfile::tempdir().expect("temp dir for the browser");
        // A free port may be taken between our probe and chromedriver's bind:
        // then chromedriver exits, and we try another.
        let mut started = None;
        for _attempt in 0..3 {
            let port = free_port();
            let (driver, ready) = spawn_driver(dir.path(), port);
            let mut parts = BrowserParts {
                driver: Some(driver),
            };
            if ready {
                started = parts.driver.take().map(|d| (d, port));
                break;
            }
            parts.kill();
        }
        let Some((driver, port)) = started else {
            panic!(
                "chromedriver did not start (3 attempts); its output:\n{}",
                std::fs::read_to_string(dir.path().join("chromedriver.out")).unwrap_or_default()
            );
        };
        let mut browser = Browser {
            rt,
            client: None,
            driver,
            driver_url: format!("http://127.0.0.1:{port}"),
            session_id: String::new(),
            name: name.to_owned(),
            dir,
        };
        browser.connect();
        browser
    }

    fn connect(&mut self) {
        let (w, h) = DEFAULT_SIZE;
        let profile = self.dir.path().join("profile");
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    format!("--window-size={w},{h}"),
                    format!("--user-data-dir={}", profile.display()),
                ]
            }),
        );
        // Keeps the page's console messages for `console_log`.
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(caps);
        let url = self.driver_url.clone();
        let client = self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, builder.connect(&url)).await })
            .unwrap_or_else(|_| {
                panic!(
                    "no WebDriver session within {COMMAND_TIMEOUT:?}; chromedriver said:\n{}",
                    self.driver_output()
                )
            })
            .unwrap_or_else(|e| {
                panic!(
                    "new WebDriver session: {e} (is Chromium installed? the browser tests \
                     need it: apt-get install chromium chromium-driver); chromedriver said:\n{}",
                    self.driver_output()
                )
            });
        self.session_id = self
            .rt
            .block_on(client.session_id())
            .ok()
            .flatten()
            .unwrap_or_default();
        self.client = Some(client);
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("a WebDriver session")
    }

    /// Runs one WebDriver command to its end (at most [`COMMAND_TIMEOUT`]);
    /// panics with `what` if it fails.
    fn run<T>(&self, what: &str, fut: impl std::future::Future<Output = Result<T, CmdError>>) -> T {
        match self.try_run(fut) {
            Ok(v) => v,
            Err(e) => panic!("{what}: {e}"),
        }
    }

    fn try_run<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, CmdError>>,
    ) -> Result<T, String> {
        match self
            .rt
            .block_on(async { tokio::time::timeout(COMMAND_TIMEOUT, fut).await })
        {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {COMMAND_TIMEOUT:?}")),
        }
    }

    /// Navigates to `url` and waits for its load event.
    pub fn goto(&self, url: &str) {
        self.run(&format!("goto {url}"), self.client().goto(url));
    }

    /// Reloads the page.
    pub fn refresh(&self) {
        self.run("refresh", self.client().refresh());
    }

    /// `location.href`.
    pub fn url(&self) -> String {
        self.run("current url", self.client().current_url())
            .to_string()
    }

    /// Resizes the window: the page's `innerWidth` becomes `w` exactly
    /// (headless Chromium takes some of the height for its emulated UI).
    pub fn set_size(&self, w: u32, h: u32) {
        self.run(
            &format!("resize to {w}x{h}"),
            self.client().set_window_size(w, h),
        );
    }

    /// Runs `script` (a function body: use `return`) with `args` as `arguments`.
    pub fn execute(&self, script: &str, args: Vec<Value>) -> Value {
        self.run(
            &format!("execute script:\n{script}\n"),
            self.client().execute(script, args),
        )
    }

    /// The value of a JavaScript expression.
    pub fn eval(&self, expr: &str) -> Value {
        self.execute(&format!("return (\n{expr}\n);"), Vec::new())
    }

    /// The first element matching `css`; panics if there is none.
    pub fn find(&self, css: &str) -> El<'_> {
        let el = self.run(
            &format!("find {css:?}"),
            self.client().find(Locator::Css(css)),
        );
        El {
            b: self,
            el,
            what: css.to_owned(),
        }
    }

    /// Every element matching `css`, in document order.
    pub fn find_all(&self, css: &str) -> Vec<El<'_>> {
        self.run(
            &format!("find all {css:?}"),
            self.client().find_all(Locator::Css(css)),
        )
        .into_iter()
        .enumerate()
        .map(|(i, el)| El {
            b: self,
            el,
            what: format!("{css} #{i}"),
        })
        .collect()
    }

    /// Polls until an element matches `css`, at most `deadline`; returns it.
    pub fn wait_for(&self, css: &str, deadline: Duration) -> El<'_> {
        let sel = serde_json::to_string(css).expect("a JSON string");
        self.wait_until_js(&format!("document.querySelector({sel}) !== null"), deadline);
        self.find(css)
    }

    /// Polls a JavaScript expression until it is truthy, at most `deadline`;
    /// panics at the deadline with what the page shows and its console.
    /// An exception in the expression counts as false (the page may not be
    /// there yet) and is reported if it was the last answer.
    pub fn wait_until_js(&self, expr: &str, deadline: Duration) {
        if let Err(last) = self.poll_js(expr, deadline) {
            panic!(
                "timed out after {deadline:?} waiting for `{expr}` ({last})\n{}",
                self.diagnostics()
            );
        }
    }

    /// [`Browser::wait_until_js`] that answers whether it became true in
    /// time instead of panicking, for tests that explain a failure better.
    pub fn try_wait_until_js(&self, expr: &str, deadline: Duration) -> bool {
        self.poll_js(expr, deadline).is_ok()
    }

    fn poll_js(&self, expr: &str, deadline: Duration) -> Result<(), String> {
        let script = format!(
            "try {{ return {{ ok: !!(\n{expr}\n) }}; }} \
             catch (e) {{ return {{ ok: false, error: String(e) }}; }}"
        );
        let end = Instant::now() + deadline;
        loop {
            let v = self.execute(&script, Vec::new());
            if v["ok"] == Value::Bool(true) {
                return Ok(());
            }
            if Instant::now() >= end {
                return Err(match v["error"].as_str() {
                    Some(e) => format!("it threw: {e}"),
                    None => "it stayed false".to_owned(),
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for `n` animation frames to be rendered: whatever the page does
    /// on a scroll event or in `requestAnimationFrame` has happened after it.
    pub fn wait_frames(&self, n: u32) {
        let script = "const [n, done] = arguments; let left = n; \
                      const step = () => (--left <= 0 ? done(true) : requestAnimationFrame(step)); \
                      requestAnimationFrame(step);";
        self.run(
            "wait for animation frames",
            self.client().execute_async(script, vec![json!(n)]),
        );
    }

    /// The visible text of the first element matching `css` (WebDriver's
    /// rendering of it: whitespace collapsed, hidden parts left out).
    pub fn text(&self, css: &str) -> String {
        self.find(css).text()
    }

    /// `textContent` of the first element matching `css`: the exact text,
    /// hidden or not; `None` if no element matches.
    pub fn text_content(&self, css: &str) -> Option<String> {
        let sel = serde_json::to_string(css).expect("a JSON string");
        self.eval(&format!(
            "document.querySelector({sel})?.textContent ?? null"
        ))
        .as_str()
        .map(str::to_owned)
    }

    /// Presses and releases `key` wherever the keyboard focus is.
    pub fn press(&self, key: Key) {
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key.into() })
            .then(KeyAction::Up { value: key.into() });
        self.run(
            &format!("press {key:?}"),
            self.client().perform_actions(actions),
        );
    }

    /// Saves a PNG of the viewport at `path` (its folder is created).
    pub fn screenshot(&self, path: &Path) {
        if let Err(e) = self.try_screenshot(path) {
            panic!("screenshot to {}: {e}", path.display());
        }
    }

    fn try_screenshot(&self, path: &Path) -> Result<(), String> {
        let png = self.try_run(self.client().screenshot())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| e.to_string())
    }

    /// The page's console messages (and uncaught errors) since the last
    /// call, as `LEVEL message` (chromedriver's log endpoint).
    pub fn console_log(&self) -> Vec<String> {
        self.try_console_log()
            .unwrap_or_else(|e| vec![format!("(no console log: {e})")])
    }

    fn try_console_log(&self) -> Result<Vec<String>, String> {
        let resp = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?
            .post(format!(
                "{}/session/{}/se/log",
                self.driver_url, self.session_id
            ))
            .json(&json!({ "type": "browser" }))
            .send()
            .map_err(|e| e.to_string())?;
        let body: Value = resp.json().map_err(|e| e.to_string())?;
        let entries = body["value"]
            .as_array()
            .ok_or_else(|| format!("unexpected answer: {body}"))?;
        Ok(entries
            .iter()
            .map(|e| {
                format!(
                    "{} {}",
                    e["level"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("?")
                )
            })
            .collect())
    }

    /// What the page shows now, its URL and its console: for failure messages.
    pub fn diagnostics(&self) -> String {
        let page = self
            .try_run(self.client().execute(
                "return location.href + '\\n--- page text ---\\n' + \
                 (document.body ? document.body.innerText : '(no body)').slice(0, 3000);",
                Vec::new(),
            ))
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .unwrap_or_else(|e| format!("(page unreadable: {e})"));
        let console = self.try_console_log().unwrap_or_else(|e| vec![e]);
        format!(
            "--- url ---\n{page}\n--- console ---\n{}",
            console.join("\n")
        )
    }

    fn driver_output(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.out")).unwrap_or_default()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Nothing here may panic: this also runs while a test unwinds.
        if std::thread::panicking() && self.client.is_some() {
            let png = artifacts_dir().join(format!("{}-failed.png", self.name));
            match self.try_screenshot(&png) {
                Ok(()) => eprintln!("browser: the page at the failure: {}", png.display()),
                Err(e) => eprintln!("browser: no failure screenshot: {e}"),
            }
            match self.try_console_log() {
                Ok(lines) if lines.is_empty() => {}
                Ok(lines) => eprintln!("browser console:\n{}", lines.join("\n")),
                Err(e) => eprintln!("browser: no console log: {e}"),
            }
        }
        if let Some(client) = self.client.take() {
            let _ = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        kill_group(&mut self.driver);
    }
}

impl El<'_> {
    pub fn click(&self) {
        self.b.run(&format!("click {}", self.what), self.el.click());
    }

    /// Types `text` into the element (fantoccini's [`Key`]s may be part of it).
    pub fn send_keys(&self, text: &str) {
        self.b.run(
            &format!("type {text:?} into {}", self.what),
            self.el.send_keys(text),
        );
    }

    /// Empties an input.
    pub fn clear(&self) {
        self.b.run(&format!("clear {}", self.what), self.el.clear());
    }

    /// Chooses the `<option>` of a `<select>` with this value.
    pub fn select(&self, value: &str) {
        self.b.run(
            &format!("select {value:?} in {}", self.what),
            self.el.select_by_value(value),
        );
    }

    /// The visible text (WebDriver's rendering).
    pub fn text(&self) -> String {
        self.b
            .run(&format!("text of {}", self.what), self.el.text())
    }

    pub fn attr(&self, name: &str) -> Option<String> {
        self.b.run(
            &format!("attribute {name} of {}", self.what),
            self.el.attr(name),
        )
    }

    pub fn prop(&self, name: &str) -> Option<String> {
        self.b.run(
            &format!("property {name} of {}", self.what),
            self.el.prop(name),
        )
    }

    /// WebDriver's "is displayed": not hidden, not `display: none`, has a size.
    pub fn is_displayed(&self) -> bool {
        self.b.run(
            &format!("is {} displayed", self.what),
            self.el.is_displayed(),
        )
    }
}

/// Holds a chromedriver that has not become a [`Browser`] yet, so that an
/// early failure still kills it.
struct BrowserParts {
    driver: Option<Child>,
}

impl BrowserParts {
    fn kill(&mut self) {
        if let Some(mut d) = self.driver.take() {
            kill_group(&mut d);
        }
    }
}

impl Drop for BrowserParts {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Starts `chromedriver --port=PORT` in a new process group and polls its
/// `/status` until it is ready; `false` if it exited first.
fn spawn_driver(dir: &Path, port: u16) -> (Child, bool) {
    let exe = std::env::var("CBLOGS_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let exe = require_tool(
        &exe,
        "the browser tests (tests/web.rs, with Chromium)",
        "apt-get install chromium chromium-driver",
    );
    let out =
        std::fs::File::create(dir.join("chromedriver.out")).expect("chromedriver output file");
    let err = out.try_clone().expect("clone file handle");
    let mut driver = Command::new(&exe)
        .arg(format!("--port={port}"))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        // Chromium and its helpers stay in this group: killing the group
        // kills them all.
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "start {}: {e} (the browser tests need Chromium and chromedriver: \
                 apt-get install chromium chromium-driver, as .ci/run does)",
                exe.display()
            )
        });
    let status_url = format!("http://127.0.0.1:{port}/status");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("HTTP client");
    let end = Instant::now() + DEADLINE;
    loop {
        if let Ok(Some(_)) = driver.try_wait() {
            return (driver, false);
        }
        let ready = http
            .get(&status_url)
            .send()
            .ok()
            .and_then(|r| r.json::<Value>().ok())
            .is_some_and(|v| v["value"]["ready"] == Value::Bool(true));
        if ready {
            return (driver, true);
        }
        if Instant::now() >= end {
            kill_group(&mut driver);
            panic!("chromedriver on port {port} not ready within {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process other than a zombie is still in process group `pgid`.
fn group_has_live_members(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|f| f.parse::<i32>().ok());
        pgrp == Some(pgid) && state != Some("Z")
    })
}

/// SIGTERM to the whole group, up to 5 s for it to go, then SIGKILL to
/// whatever is left; then reaps chromedriver. The leader is reaped last,
/// so the group id cannot have been reused by then.
fn kill_group(driver: &mut Child) {
    let pgid = driver.id() as libc::pid_t;
    // SAFETY: kill(2) on a process group we created; errors (ESRCH) are fine.
    unsafe { libc::kill(-pgid, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(5);
    while group_has_live_members(pgid) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: as above.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = driver.wait();
}
