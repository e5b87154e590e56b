//! Job selectors: what a user types to name one or more jobs.
//!
//! The forms follow the Aurora CLI, with the cluster optional:
//!
//! | selector | means |
//! | --- | --- |
//! | `hello` | the job named `hello` in any cluster, role and env (must be unique unless it has a glob) |
//! | `www-data/prod/hello` | that job in any cluster |
//! | `www-data/prod`, `www-data/*` | every job of that role (and env) |
//! | `devcluster/www-data/prod/hello` | that job in that cluster |
//! | `…/hello/3`, `…/hello/0-4,7`, `hello/3` | the same, instances 3, or 0 to 4 and 7 |
//! | `www-data/*/hello*`, `*` | `*`, `?` and `[…]` globs in any part |

use std::fmt;
use std::str::FromStr;

use globset::{Glob, GlobMatcher};

use crate::job::is_environment;
use crate::JobKey;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("empty job selector")]
    Empty,
    #[error("job selector '{0}': expected name, role/env, role/env/name or cluster/role/env/name, optionally followed by /INSTANCES")]
    Shape(String),
    #[error("job selector '{selector}': part {part} is empty")]
    EmptyPart { selector: String, part: usize },
    #[error("job selector '{selector}': bad glob '{glob}': {reason}")]
    Glob {
        selector: String,
        glob: String,
        reason: String,
    },
    #[error("instances '{0}': expected a number, a range like 0-4, a list like 0-4,7, or *")]
    Instances(String),
}

/// One part of a selector: a literal, or a glob.
#[derive(Debug, Clone)]
struct Part {
    text: String,
    glob: Option<GlobMatcher>,
}

impl Part {
    fn new(selector: &str, text: &str, part: usize) -> Result<Part, SelectorError> {
        if text.is_empty() {
            return Err(SelectorError::EmptyPart {
                selector: selector.to_owned(),
                part,
            });
        }
        let glob = if text.contains(['*', '?', '[']) {
            let g = Glob::new(text).map_err(|e| SelectorError::Glob {
                selector: selector.to_owned(),
                glob: text.to_owned(),
                reason: e.kind().to_string(),
            })?;
            Some(g.compile_matcher())
        } else {
            None
        };
        Ok(Part {
            text: text.to_owned(),
            glob,
        })
    }

    fn matches(&self, s: &str) -> bool {
        match &self.glob {
            Some(g) => g.is_match(s),
            None => self.text == s,
        }
    }
}

/// A set of instance numbers: `3`, `0-4`, `0-4,7`, or `*` (all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSet {
    /// Inclusive ranges; empty means every instance.
    ranges: Vec<(u32, u32)>,
}

impl InstanceSet {
    pub fn all() -> Self {
        InstanceSet { ranges: Vec::new() }
    }

    pub fn is_all(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn contains(&self, instance: u32) -> bool {
        self.is_all()
            || self
                .ranges
                .iter()
                .any(|&(lo, hi)| (lo..=hi).contains(&instance))
    }

    fn looks_like(s: &str) -> bool {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_digit() || b == b'-' || b == b',')
            || s == "*"
    }
}

impl FromStr for InstanceSet {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "*" {
            return Ok(InstanceSet::all());
        }
        let bad = || SelectorError::Instances(s.to_owned());
        let mut ranges = Vec::new();
        for item in s.split(',') {
            let (lo, hi) = match item.split_once('-') {
                Some((lo, hi)) => (lo, hi),
                None => (item, item),
            };
            let lo: u32 = lo.parse().map_err(|_| bad())?;
            let hi: u32 = hi.parse().map_err(|_| bad())?;
            if lo > hi {
                return Err(bad());
            }
            ranges.push((lo, hi));
        }
        Ok(InstanceSet { ranges })
    }
}

impl fmt::Display for InstanceSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return f.write_str("*");
        }
        for (i, (lo, hi)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

/// A parsed job selector.
#[derive(Debug, Clone)]
pub struct Selector {
    raw: String,
    cluster: Option<Part>,
    role: Option<Part>,
    env: Option<Part>,
    name: Part,
    instances: InstanceSet,
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(SelectorError::Empty);
        }
        let parts: Vec<&str> = s.split('/').collect();
        let shape = || SelectorError::Shape(s.to_owned());
        let env_like = |p: &str| is_environment(p) || p.contains(['*', '?', '[']);
        // Split off a trailing instance spec where the shape says it is one.
        let (job, instances): (&[&str], Option<&str>) = match parts.len() {
            1 | 3 => (&parts[..], None),
            // name/INSTANCES, else role/env (any name).
            2 if parts[1] != "*" && InstanceSet::looks_like(parts[1]) => {
                (&parts[..1], Some(parts[1]))
            }
            2 => (&parts[..], None),
            // role/env/name/INST or cluster/role/env/name: the env sits at
            // index 1 in the first and index 2 in the second.
            4 if InstanceSet::looks_like(parts[3])
                && (env_like(parts[1]) || !env_like(parts[2])) =>
            {
                (&parts[..3], Some(parts[3]))
            }
            4 => (&parts[..], None),
            5 => (&parts[..4], Some(parts[4])),
            _ => return Err(shape()),
        };
        let instances = match instances {
            Some(i) => i.parse()?,
            None => InstanceSet::all(),
        };
        let part = |i: usize| Part::new(s, job[i], i + 1);
        let any = || Part::new(s, "*", 0);
        let (cluster, role, env, name) = match job.len() {
            1 => (None, None, None, part(0)?),
            2 => (None, Some(part(0)?), Some(part(1)?), any()?),
            3 => (None, Some(part(0)?), Some(part(1)?), part(2)?),
            4 => (Some(part(0)?), Some(part(1)?), Some(part(2)?), part(3)?),
            _ => return Err(shape()),
        };
        Ok(Selector {
            raw: s.to_owned(),
            cluster,
            role,
            env,
            name,
            instances,
        })
    }

    /// Does this job key match? A key without a cluster matches any cluster part.
    pub fn matches_job(&self, key: &JobKey) -> bool {
        let opt = |p: &Option<Part>, v: &str| p.as_ref().is_none_or(|p| p.matches(v));
        let cluster_ok = match (&self.cluster, &key.cluster) {
            (Some(p), Some(c)) => p.matches(c),
            _ => true,
        };
        cluster_ok
            && opt(&self.role, &key.role)
            && opt(&self.env, &key.env)
            && self.name.matches(&key.name)
    }

    pub fn instances(&self) -> &InstanceSet {
        &self.instances
    }

    /// True when the selector names one job exactly (no globs): matching
    /// several jobs then means the user must say which.
    pub fn is_exact(&self) -> bool {
        [&self.cluster, &self.role, &self.env]
            .into_iter()
            .flatten()
            .chain(std::iter::once(&self.name))
            .all(|p| p.glob.is_none())
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl FromStr for Selector {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> JobKey {
        s.parse().unwrap()
    }

    #[test]
    fn bare_name_matches_any_role_env_cluster() {
        let s = Selector::parse("hello").unwrap();
        assert!(s.matches_job(&key("c1/www-data/prod/hello")));
        assert!(s.matches_job(&key("bob/devel/hello")));
        assert!(!s.matches_job(&key("bob/devel/hello2")));
        assert!(s.is_exact());
        assert!(s.instances().is_all());
    }

    #[test]
    fn full_forms_and_instances() {
        let s = Selector::parse("www-data/prod/hello/0-2,7").unwrap();
        assert!(s.matches_job(&key("c1/www-data/prod/hello")));
        assert!(!s.matches_job(&key("www-data/devel/hello")));
        assert!(
            s.instances().contains(1) && s.instances().contains(7) && !s.instances().contains(3)
        );
        assert_eq!(s.instances().to_string(), "0-2,7");

        let s = Selector::parse("c1/www-data/prod/hello").unwrap();
        assert!(s.matches_job(&key("c1/www-data/prod/hello")));
        assert!(!s.matches_job(&key("c2/www-data/prod/hello")));
        assert!(s.instances().is_all());

        // A 4-part selector whose env sits third is cluster/role/env/name, even with a numeric name.
        let s = Selector::parse("c1/www-data/prod/3").unwrap();
        assert!(s.matches_job(&key("c1/www-data/prod/3")));
        let s = Selector::parse("c1/www-data/prod/hello/3").unwrap();
        assert!(s.instances().contains(3) && !s.instances().contains(2));
        let s = Selector::parse("hello/3").unwrap();
        assert!(s.matches_job(&key("a/prod/hello")) && s.instances().contains(3));
    }

    #[test]
    fn globs_in_any_part() {
        let s = Selector::parse("www-*/*/hel*").unwrap();
        assert!(!s.is_exact());
        assert!(s.matches_job(&key("www-data/prod/hello")));
        assert!(!s.matches_job(&key("bob/prod/hello")));
        assert!(Selector::parse("*").unwrap().matches_job(&key("a/b/c")));
        // Two parts that are not name/INSTANCES: role/env, any name.
        let s = Selector::parse("bob/*").unwrap();
        assert!(s.matches_job(&key("bob/devel/api")) && !s.matches_job(&key("www-data/prod/bob")));
        assert!(!s.is_exact());
        let s = Selector::parse("bob/devel").unwrap();
        assert!(s.matches_job(&key("c/bob/devel/api")) && !s.matches_job(&key("bob/prod/api")));
    }

    #[test]
    fn errors() {
        assert_eq!(Selector::parse(" ").unwrap_err(), SelectorError::Empty);
        assert!(matches!(
            Selector::parse("a/b/c/d/e/f").unwrap_err(),
            SelectorError::Shape(_)
        ));
        assert!(matches!(
            Selector::parse("a//c").unwrap_err(),
            SelectorError::EmptyPart { part: 2, .. }
        ));
        assert!(matches!(
            Selector::parse("a/b/c/d/4-2").unwrap_err(),
            SelectorError::Instances(_)
        ));
        assert!(matches!(
            Selector::parse("a/prod/[x").unwrap_err(),
            SelectorError::Glob { .. }
        ));
    }
}
