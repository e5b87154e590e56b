//! `GET /loki/api/v1/tail`: a WebSocket that sends the newest `limit`
//! matching lines since `start` (oldest first), then every new matching
//! line as it is applied, in Loki's tail messages (at most 100 lines
//! each).
//!
//! The live part is cblogsd's own follow (`/api/v1/follow`, in a cluster
//! every node's), started before the backlog is searched: a line applied
//! in between is in both, and sent once (by source and offset).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::response::Response;
use axum::Extension;
use cblogs_core::sse::SseParser;
use cblogs_core::time::now_ns;
use cblogs_core::LineView;
use futures_util::{Stream, StreamExt};
use regex::Regex;
use serde_json::json;

use super::ask;
use super::error::LokiError;
use super::params::LokiParams;
use super::query::streams;
use crate::api::listener::PeerAddr;
use crate::app::App;
use crate::logql::{self, LogQuery, Query};

/// Loki's most lines in one tail message.
const LINES_PER_MESSAGE: usize = 100;
/// Loki's largest `delay_for`.
const MAX_DELAY_FOR_SECS: u64 = 5;
/// WebSocket close code for a server-side error (Loki's too).
const INTERNAL_ERROR: u16 = 1011;

pub(in crate::api) async fn tail(
    State(app): State<Arc<App>>,
    Extension(peer): Extension<PeerAddr>,
    RawQuery(raw): RawQuery,
    ws: WebSocketUpgrade,
) -> Result<Response, LokiError> {
    let p = LokiParams::parse(raw)?;
    if p.delay_for_secs > MAX_DELAY_FOR_SECS {
        return Err(LokiError::bad(format!(
            "delay_for can't be greater than {MAX_DELAY_FOR_SECS}"
        )));
    }
    if p.limit == 0 || p.limit > app.config.search.max_results {
        return Err(LokiError::bad(format!(
            "invalid limit {}: between 1 and {} (search.max_results)",
            p.limit, app.config.search.max_results
        )));
    }
    let logs = match logql::parse(p.query()?)? {
        Query::Logs(logs) => logs,
        _ => return Err(LokiError::bad("only log queries can be tailed")),
    };
    let filters = LineTest::new(&logs)?;
    let follow = form_urlencoded::Serializer::new(String::new())
        .append_pair("labels", &logs.selector.to_string())
        .append_pair("n", "0")
        .finish();
    let live =
        crate::api::tail::follow(State(app.clone()), Extension(peer), RawQuery(Some(follow)))
            .await?
            .into_body()
            .into_data_stream();
    Ok(ws.on_upgrade(move |socket| run(app, socket, p, logs, filters, live)))
}

/// A tail's line filters, applied to live lines (the backlog's search
/// applies them itself).
struct LineTest(Vec<(Regex, bool)>);

impl LineTest {
    fn new(logs: &LogQuery) -> Result<LineTest, LokiError> {
        let filters = logs
            .filters
            .iter()
            .map(|f| {
                Regex::new(&f.expression())
                    .map(|re| (re, f.negated))
                    .map_err(|e| LokiError::bad(format!("invalid regex: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(LineTest(filters))
    }

    fn selects(&self, line: &str) -> bool {
        self.0
            .iter()
            .all(|(re, negated)| re.is_match(line) != *negated)
    }
}

async fn run(
    app: Arc<App>,
    mut socket: WebSocket,
    p: LokiParams,
    logs: LogQuery,
    filters: LineTest,
    mut live: impl Stream<Item = Result<axum::body::Bytes, axum::Error>> + Unpin,
) {
    let pairs = ask::selection(&logs, true);
    let backlog = match ask::newest(&app, &pairs, p.start_ns, now_ns() + 1, p.limit).await {
        Ok((mut lines, _)) => {
            lines.reverse();
            lines
        }
        Err(e) => return close(socket, e.message()).await,
    };
    let sent: HashSet<(String, u64)> = backlog
        .iter()
        .map(|l| (l.source.clone(), l.offset))
        .collect();
    if send(&mut socket, backlog).await.is_err() {
        return;
    }
    // `delay_for`: each line is held that long after it came, then sent.
    let delay = Duration::from_secs(p.delay_for_secs);
    let mut held: VecDeque<(tokio::time::Instant, Vec<LineView>)> = VecDeque::new();
    let mut parser = SseParser::new();
    let mut ping = tokio::time::interval(Duration::from_secs(1));
    loop {
        let due = held.front().map(|(at, _)| *at + delay);
        tokio::select! {
            chunk = live.next() => {
                let Some(Ok(chunk)) = chunk else {
                    return close(socket, "the follow behind this tail ended").await;
                };
                let mut lines = Vec::new();
                for event in parser.feed(&chunk) {
                    match event.event.as_str() {
                        "line" => lines.extend(serde_json::from_str::<LineView>(&event.data).ok()),
                        // Loki would name the lines it dropped; they are
                        // not known here, so the tail ends, saying so.
                        "lagged" => {
                            return close(socket, "the tail fell behind and lines were dropped; start it again").await;
                        }
                        _ => {}
                    }
                }
                lines.retain(|l| filters.selects(&l.text) && !sent.contains(&(l.source.clone(), l.offset)));
                if delay.is_zero() {
                    if send(&mut socket, lines).await.is_err() {
                        return;
                    }
                } else if !lines.is_empty() {
                    held.push_back((tokio::time::Instant::now(), lines));
                }
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)), if due.is_some() => {
                let lines = held.pop_front().map(|(_, l)| l).unwrap_or_default();
                if send(&mut socket, lines).await.is_err() {
                    return;
                }
            }
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Default::default())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Sends `lines` (in order) as tail messages of at most 100 lines.
async fn send(socket: &mut WebSocket, lines: Vec<LineView>) -> Result<(), axum::Error> {
    let mut lines = lines.into_iter().peekable();
    while lines.peek().is_some() {
        let batch: Vec<LineView> = lines.by_ref().take(LINES_PER_MESSAGE).collect();
        let message = json!({ "streams": streams(batch, false) });
        socket
            .send(Message::Text(message.to_string().into()))
            .await?;
    }
    Ok(())
}

async fn close(mut socket: WebSocket, reason: &str) {
    // A close frame's reason is at most 123 bytes (RFC 6455).
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code: INTERNAL_ERROR,
        reason: reason[..end].into(),
    };
    // The client may be gone already.
    let _ = socket.send(Message::Close(Some(frame))).await;
}
