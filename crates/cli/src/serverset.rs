//! `--server zk://HOST:PORT[,HOST:PORT]/PATH`: the nodes of a cluster, read
//! from its serverset in ZooKeeper (where cblogsd nodes, or Aurora's
//! announcer for a cblogsd run as an Aurora job, write their members).
//! Read once, at the start: the members that are alive and answer
//! queries, oldest first, become the list the client asks in turn.

use std::time::Duration;

use cblogs_core::serverset::{read_members, ServersetAddr};
use cblogs_core::zookeeper_client as zk;

use crate::client::ClientError;
use crate::config::Settings;

/// How long reading the serverset may take, connecting included.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `settings` with a `zk://` server replaced by the URLs of the members.
pub async fn resolve(mut settings: Settings) -> Result<Settings, ClientError> {
    let Some(addr) = ServersetAddr::parse(&settings.server) else {
        return Ok(settings);
    };
    let spec = settings.server.clone();
    let failed = |reason: String| ClientError::Unreachable {
        server: spec.clone(),
        reason,
    };
    let addr = addr.map_err(failed)?;
    let urls = tokio::time::timeout(READ_TIMEOUT, members(&addr))
        .await
        .map_err(|_| failed(format!("ZooKeeper did not answer within {READ_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("ZooKeeper: {e}")))?;
    if urls.is_empty() {
        return Err(failed(format!(
            "no cblogsd node that answers queries is a member of {}",
            addr.path
        )));
    }
    settings.server = urls.join(",");
    Ok(settings)
}

/// The URLs of the live members that answer queries, oldest first.
async fn members(addr: &ServersetAddr) -> Result<Vec<String>, zk::Error> {
    let client = zk::Client::connect(&addr.connect).await?;
    Ok(read_members(&client, &addr.path)
        .await?
        .into_iter()
        .filter(|m| m.role() != "ingest")
        .map(|m| m.url())
        .collect())
}
