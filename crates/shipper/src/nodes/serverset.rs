//! The serverset watch: with `server = "zk://HOST:PORT/PATH"`, the
//! serverset is read every `ship.serverset_poll_ms` and the URLs of its
//! live members that take ingest (role `all` or `ingest`) go to the loop
//! whenever they change. While ZooKeeper cannot be reached, the last list
//! stands (said once), as cblogsd nodes do with their own membership.

use std::time::Duration;

use cblogs_core::serverset::{read_members, ServersetAddr};
use cblogs_core::zookeeper_client as zk;
use tokio::sync::mpsc;

/// How long one read (connecting included) may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the serverset until the loop stops listening.
pub async fn watch(addr: ServersetAddr, every: Duration, members: mpsc::Sender<Vec<String>>) {
    let mut client: Option<zk::Client> = None;
    let mut last: Option<Vec<String>> = None;
    let mut failing = false;
    loop {
        match tokio::time::timeout(READ_TIMEOUT, read(&addr, &mut client)).await {
            Ok(Ok(urls)) => {
                if failing {
                    tracing::info!(serverset = %addr, "the serverset can be read again");
                    failing = false;
                }
                if last.as_ref() != Some(&urls) {
                    tracing::info!(serverset = %addr, nodes = ?urls, "the nodes that take ingest");
                    if members.send(urls.clone()).await.is_err() {
                        return;
                    }
                    last = Some(urls);
                }
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {READ_TIMEOUT:?}"),
                };
                // A new session next time: this one may be expired.
                client = None;
                if !failing {
                    tracing::warn!(
                        serverset = %addr,
                        "cannot read the serverset ({why}): sending to the nodes it last listed"
                    );
                    failing = true;
                }
            }
        }
        if members.is_closed() {
            return;
        }
        tokio::time::sleep(every).await;
    }
}

/// The URLs of the live members that take ingest, oldest first.
async fn read(
    addr: &ServersetAddr,
    client: &mut Option<zk::Client>,
) -> Result<Vec<String>, zk::Error> {
    let c = match client {
        Some(c) => c,
        None => client.insert(zk::Client::connect(&addr.connect).await?),
    };
    Ok(read_members(c, &addr.path)
        .await?
        .into_iter()
        .filter(|m| m.role() != "query")
        .map(|m| m.url())
        .collect())
}
