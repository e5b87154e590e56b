//! Aurora job keys.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The environments Aurora accepts, besides `staging<N>`.
pub const ENVIRONMENTS: [&str; 3] = ["prod", "devel", "test"];

/// Is `s` an Aurora environment name (`prod`, `devel`, `test`, `staging<N>`)?
pub fn is_environment(s: &str) -> bool {
    ENVIRONMENTS.contains(&s)
        || s.strip_prefix("staging")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// An Aurora job key: `role/env/name`, with an optional leading cluster.
///
/// On the wire and in the API it is the string form, `devcluster/www-data/prod/hello`
/// or `www-data/prod/hello`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobKey {
    pub cluster: Option<String>,
    pub role: String,
    pub env: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobKeyError {
    #[error("job key '{0}' must be role/env/name or cluster/role/env/name")]
    Shape(String),
    #[error("job key '{key}': {part} must not be empty")]
    EmptyPart { key: String, part: &'static str },
    #[error("job key '{key}': '{value}' may only contain letters, digits, '_', '-' and '.'")]
    BadChar { key: String, value: String },
}

impl JobKey {
    pub fn new(cluster: Option<&str>, role: &str, env: &str, name: &str) -> Self {
        JobKey {
            cluster: cluster.map(str::to_owned),
            role: role.to_owned(),
            env: env.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The key without its cluster: `role/env/name`.
    pub fn role_env_name(&self) -> String {
        format!("{}/{}/{}", self.role, self.env, self.name)
    }

    /// The same key with `cluster` set.
    pub fn with_cluster(mut self, cluster: &str) -> Self {
        self.cluster = (!cluster.is_empty()).then(|| cluster.to_owned());
        self
    }
}

fn valid_part(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl FromStr for JobKey {
    type Err = JobKeyError;

    fn from_str(key: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = key.split('/').collect();
        let (cluster, rest) = match parts.len() {
            3 => (None, &parts[..]),
            4 => (Some(parts[0]), &parts[1..]),
            _ => return Err(JobKeyError::Shape(key.to_owned())),
        };
        let names = ["role", "environment", "name"];
        if cluster == Some("") {
            return Err(JobKeyError::EmptyPart {
                key: key.to_owned(),
                part: "cluster",
            });
        }
        for (value, part) in cluster.iter().chain(rest.iter()).zip(
            cluster
                .iter()
                .map(|_| "cluster")
                .chain(names.iter().copied()),
        ) {
            if value.is_empty() {
                return Err(JobKeyError::EmptyPart {
                    key: key.to_owned(),
                    part,
                });
            }
            if !valid_part(value) {
                return Err(JobKeyError::BadChar {
                    key: key.to_owned(),
                    value: (*value).to_owned(),
                });
            }
        }
        Ok(JobKey::new(cluster, rest[0], rest[1], rest[2]))
    }
}

impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(cluster) = &self.cluster {
            write!(f, "{cluster}/")?;
        }
        write!(f, "{}/{}/{}", self.role, self.env, self.name)
    }
}

impl Serialize for JobKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_cluster() {
        let k: JobKey = "www-data/prod/hello".parse().unwrap();
        assert_eq!(k, JobKey::new(None, "www-data", "prod", "hello"));
        assert_eq!(k.to_string(), "www-data/prod/hello");
        let k: JobKey = "devcluster/www-data/prod/hello".parse().unwrap();
        assert_eq!(k.cluster.as_deref(), Some("devcluster"));
        assert_eq!(k.to_string(), "devcluster/www-data/prod/hello");
        assert_eq!(k.role_env_name(), "www-data/prod/hello");
    }

    #[test]
    fn rejects_bad_keys() {
        assert!(matches!(
            "hello".parse::<JobKey>(),
            Err(JobKeyError::Shape(_))
        ));
        assert!(matches!(
            "a//b".parse::<JobKey>(),
            Err(JobKeyError::EmptyPart {
                part: "environment",
                ..
            })
        ));
        assert!(matches!(
            "a/b/c d".parse::<JobKey>(),
            Err(JobKeyError::BadChar { .. })
        ));
        assert!("a/b/c/d/e".parse::<JobKey>().is_err());
    }

    #[test]
    fn environments() {
        for e in ["prod", "devel", "test", "staging1", "staging42"] {
            assert!(is_environment(e), "{e}");
        }
        for e in ["staging", "production", "stagingx", ""] {
            assert!(!is_environment(e), "{e}");
        }
    }
}
