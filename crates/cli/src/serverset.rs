//! `--server zk://HOST:PORT[,HOST:PORT]/PATH`: the nodes of a cluster, read
//! from its serverset in ZooKeeper (where cblogsd nodes, or Aurora's
//! announcer for a cblogsd run as an Aurora job, write their members).
//! Read once, at the start: the members that are alive and answer
//! queries, oldest first, become the list the client asks in turn.

use std::time::Duration;

use cblogs_core::serverset::{ServiceInstance, MEMBER_PREFIX};
use zookeeper_client as zk;

use crate::client::ClientError;
use crate::config::Settings;

/// How long reading the serverset may take, connecting included.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// `settings` with a `zk://` server replaced by the URLs of the members.
pub async fn resolve(mut settings: Settings) -> Result<Settings, ClientError> {
    let Some(rest) = settings.server.strip_prefix("zk://") else {
        return Ok(settings);
    };
    let spec = settings.server.clone();
    let failed = |reason: String| ClientError::Unreachable {
        server: spec.clone(),
        reason,
    };
    let Some((connect, path)) = rest
        .split_once('/')
        .filter(|(c, p)| !c.is_empty() && !p.is_empty())
    else {
        return Err(failed(
            "expected zk://HOST:PORT[,HOST:PORT]/PATH, e.g. zk://zk1:2181/aurora/www-data/prod/cblogsd".into(),
        ));
    };
    let path = format!("/{}", path.trim_end_matches('/'));
    let urls = tokio::time::timeout(READ_TIMEOUT, members(connect, &path))
        .await
        .map_err(|_| failed(format!("ZooKeeper did not answer within {READ_TIMEOUT:?}")))?
        .map_err(|e| failed(format!("ZooKeeper: {e}")))?;
    if urls.is_empty() {
        return Err(failed(format!(
            "no cblogsd node that answers queries is a member of {path}"
        )));
    }
    settings.server = urls.join(",");
    Ok(settings)
}

/// The URLs of the live members of `path` that answer queries, oldest first.
async fn members(connect: &str, path: &str) -> Result<Vec<String>, zk::Error> {
    let client = zk::Client::connect(connect).await?;
    let mut children = match client.list_children(path).await {
        Ok(children) => children,
        // No serverset at all: no member.
        Err(zk::Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    children.retain(|c| c.starts_with(MEMBER_PREFIX));
    children.sort();
    let mut urls = Vec::new();
    for child in children {
        let data = match client.get_data(&format!("{path}/{child}")).await {
            Ok((data, _)) => data,
            // Left between the list and the read.
            Err(zk::Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        let Ok(member) = serde_json::from_slice::<ServiceInstance>(&data) else {
            continue;
        };
        if member.status == "ALIVE" && member.role() != "ingest" {
            urls.push(member.url());
        }
    }
    Ok(urls)
}
