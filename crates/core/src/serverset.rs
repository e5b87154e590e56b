//! A member of an Aurora serverset: the JSON each ephemeral sequential
//! `member_<10 digits>` znode holds, as Aurora's `announce` writes it
//! (twitter.common.zookeeper's `ServiceInstance`), so that a cblogsd run as
//! an Aurora job is found with no extra configuration:
//!
//! ```json
//! {"serviceEndpoint": {"host": "h1", "port": 31337},
//!  "additionalEndpoints": {"http": {"host": "h1", "port": 31337}},
//!  "status": "ALIVE", "shard": 0}
//! ```
//!
//! A member cblogsd writes itself adds `cblogs`: its node id, role and
//! scheme (readers of the format ignore fields they do not know). One
//! Aurora announced has none: its node id is then its shard (Aurora's
//! instance id, stable across reschedules, where its ports are not).
//!
//! Here, in the core, because cblogsd writes and reads members, and the
//! CLI and the shipper read them (`--server zk://HOST:PORT/PATH`, read with
//! [`read_members`] under the `zookeeper` feature).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The prefix of a member's znode name.
pub const MEMBER_PREFIX: &str = "member_";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstance {
    pub service_endpoint: Endpoint,
    #[serde(default)]
    pub additional_endpoints: BTreeMap<String, Endpoint>,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<u32>,
    /// What cblogsd says of itself when it writes its own member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cblogs: Option<NodeInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub node_id: String,
    /// `all`, `ingest` or `query`.
    pub role: String,
    /// `http` or `https`.
    pub scheme: String,
}

impl ServiceInstance {
    /// The member this node writes: alive at `host:port`.
    pub fn of_node(host: &str, port: u16, info: NodeInfo) -> ServiceInstance {
        let endpoint = Endpoint {
            host: host.to_owned(),
            port,
        };
        ServiceInstance {
            additional_endpoints: BTreeMap::from([(info.scheme.clone(), endpoint.clone())]),
            service_endpoint: endpoint,
            status: "ALIVE".to_owned(),
            shard: None,
            cblogs: Some(info),
        }
    }

    /// The node's id: its own word, else Aurora's shard, else its address.
    pub fn node_id(&self) -> String {
        match (&self.cblogs, self.shard) {
            (Some(info), _) => info.node_id.clone(),
            (None, Some(shard)) => format!("shard-{shard}"),
            (None, None) => format!(
                "{}:{}",
                self.service_endpoint.host, self.service_endpoint.port
            ),
        }
    }

    /// Where it answers: `https` if it says so or has an `https`
    /// endpoint, else `http`.
    pub fn url(&self) -> String {
        let https = self.cblogs.as_ref().map_or_else(
            || self.additional_endpoints.contains_key("https"),
            |i| i.scheme == "https",
        );
        let Endpoint { host, port } = &self.service_endpoint;
        format!("{}://{host}:{port}", if https { "https" } else { "http" })
    }

    pub fn role(&self) -> &str {
        self.cblogs.as_ref().map_or("all", |i| i.role.as_str())
    }
}

/// A serverset's address: `zk://HOST:PORT[,HOST:PORT]/PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServersetAddr {
    /// The ensemble, `HOST:PORT[,HOST:PORT]`.
    pub connect: String,
    /// The serverset's path, from `/`.
    pub path: String,
}

impl ServersetAddr {
    /// `None` if `spec` is not a `zk://` address; an error naming what is
    /// missing if it is one without an ensemble or a path.
    pub fn parse(spec: &str) -> Option<Result<ServersetAddr, String>> {
        let rest = spec.strip_prefix("zk://")?;
        Some(
            match rest
                .split_once('/')
                .filter(|(c, p)| !c.is_empty() && !p.trim_matches('/').is_empty())
            {
                Some((connect, path)) => Ok(ServersetAddr {
                    connect: connect.to_owned(),
                    path: format!("/{}", path.trim_matches('/')),
                }),
                None => Err(format!(
                    "'{spec}': expected zk://HOST:PORT[,HOST:PORT]/PATH, \
                     e.g. zk://zk1:2181/aurora/www-data/prod/cblogsd"
                )),
            },
        )
    }
}

impl std::fmt::Display for ServersetAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "zk://{}{}", self.connect, self.path)
    }
}

/// The live (`ALIVE`) members of the serverset at `path`, oldest first.
/// No serverset at all is no member; a member that is not one (another
/// writer's JSON) is skipped.
#[cfg(feature = "zookeeper")]
pub async fn read_members(
    client: &zookeeper_client::Client,
    path: &str,
) -> Result<Vec<ServiceInstance>, zookeeper_client::Error> {
    use zookeeper_client::Error;
    let mut children = match client.list_children(path).await {
        Ok(children) => children,
        Err(Error::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    children.retain(|c| c.starts_with(MEMBER_PREFIX));
    // The sequence number orders them: oldest first.
    children.sort();
    let mut members = Vec::new();
    for child in children {
        let data = match client.get_data(&format!("{path}/{child}")).await {
            Ok((data, _)) => data,
            // Left between the list and the read.
            Err(Error::NoNode) => continue,
            Err(e) => return Err(e),
        };
        if let Ok(member) = serde_json::from_slice::<ServiceInstance>(&data) {
            if member.status == "ALIVE" {
                members.push(member);
            }
        }
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What Aurora's announcer writes is read, and what we write reads
    /// back the same, in the same shape.
    #[test]
    fn aurora_members_and_ours_are_read() {
        let aurora = r#"{"serviceEndpoint": {"host": "agent7", "port": 31337},
            "additionalEndpoints": {"http": {"host": "agent7", "port": 31337},
                                    "aurora": {"host": "agent7", "port": 31337}},
            "status": "ALIVE", "shard": 2}"#;
        let m: ServiceInstance = serde_json::from_str(aurora).unwrap();
        assert_eq!(m.node_id(), "shard-2");
        assert_eq!(m.url(), "http://agent7:31337");
        assert_eq!(m.role(), "all");

        let ours = ServiceInstance::of_node(
            "10.0.0.5",
            7450,
            NodeInfo {
                node_id: "n1".into(),
                role: "ingest".into(),
                scheme: "https".into(),
            },
        );
        let json = serde_json::to_value(&ours).unwrap();
        assert_eq!(json["serviceEndpoint"]["port"], 7450);
        assert_eq!(json["additionalEndpoints"]["https"]["host"], "10.0.0.5");
        assert_eq!(json["status"], "ALIVE");
        assert!(json.get("shard").is_none());
        let back: ServiceInstance = serde_json::from_value(json).unwrap();
        assert_eq!(back, ours);
        assert_eq!(
            (back.node_id(), back.url(), back.role()),
            ("n1".into(), "https://10.0.0.5:7450".into(), "ingest")
        );
    }

    #[test]
    fn serverset_addresses_are_parsed_or_named() {
        let addr = ServersetAddr::parse("zk://zk1:2181,zk2:2181/aurora/www-data/prod/cblogsd/")
            .unwrap()
            .unwrap();
        assert_eq!(addr.connect, "zk1:2181,zk2:2181");
        assert_eq!(addr.path, "/aurora/www-data/prod/cblogsd");
        assert_eq!(
            addr.to_string(),
            "zk://zk1:2181,zk2:2181/aurora/www-data/prod/cblogsd"
        );
        assert!(ServersetAddr::parse("http://a:7450").is_none());
        for bad in ["zk://zk1:2181", "zk:///path", "zk://zk1:2181/"] {
            let err = ServersetAddr::parse(bad).unwrap().unwrap_err();
            assert!(err.contains("expected zk://HOST:PORT"), "{err}");
        }
    }
}
