//! Aurora task ids, as the scheduler's `TaskIdGenerator` makes them.
//!
//! Current form: `<role>-<env>-<name>-<instance>-<uuid>`; older schedulers
//! prefixed the creation time: `<millis>-<role>-<env>-<name>-<instance>-<uuid>`.
//! Every character other than letters, digits, `_` and `-` was replaced by `-`,
//! and roles and names may themselves contain `-`, so the split works from both
//! ends: the uuid is the last five groups, the instance the group before it,
//! and the environment the first group after at least one role group that is
//! an Aurora environment word.

use std::fmt;
use std::str::FromStr;

use crate::job::is_environment;
use crate::JobKey;

/// A task id split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskId {
    /// The creation time in milliseconds, for the older form.
    pub created_ms: Option<u64>,
    pub role: String,
    pub env: String,
    pub name: String,
    pub instance: u32,
    pub uuid: String,
    raw: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskIdError {
    #[error("task id '{0}' does not end in a uuid (8-4-4-4-12 hex digits)")]
    NoUuid(String),
    #[error("task id '{0}' has no instance number before its uuid")]
    NoInstance(String),
    #[error("task id '{0}' has no environment (prod, devel, test or staging<N>) after its role")]
    NoEnvironment(String),
    #[error("task id '{0}' has no job name between its environment and instance")]
    NoName(String),
}

fn is_hex_group(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

impl TaskId {
    /// The job key this task belongs to (without a cluster).
    pub fn job_key(&self) -> JobKey {
        JobKey::new(None, &self.role, &self.env, &self.name)
    }

    /// The task id as it was written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// Splits a task id whose role is known not to contain an environment
    /// word, or where the caller overrides the split (thermos-layout.md:
    /// "let configuration override the mapping per task-id pattern").
    pub fn parse(raw: &str) -> Result<TaskId, TaskIdError> {
        let groups: Vec<&str> = raw.split('-').collect();
        let err = |f: fn(String) -> TaskIdError| f(raw.to_owned());
        if groups.len() < 5 {
            return Err(err(TaskIdError::NoUuid));
        }
        let uuid_at = groups.len() - 5;
        let uuid = &groups[uuid_at..];
        let uuid_ok = [8, 4, 4, 4, 12]
            .iter()
            .zip(uuid)
            .all(|(len, g)| is_hex_group(g, *len));
        if !uuid_ok {
            return Err(err(TaskIdError::NoUuid));
        }
        let head = &groups[..uuid_at];
        let Some((instance, head)) = head.split_last() else {
            return Err(err(TaskIdError::NoInstance));
        };
        let instance: u32 = match instance.parse() {
            Ok(i) if !instance.is_empty() && instance.bytes().all(|b| b.is_ascii_digit()) => i,
            _ => return Err(err(TaskIdError::NoInstance)),
        };
        // An older scheduler's millisecond prefix: all digits, 12+ long (a
        // role is never only a timestamp-sized number in practice).
        let (created_ms, head) = match head.split_first() {
            Some((first, rest))
                if first.len() >= 12
                    && first.bytes().all(|b| b.is_ascii_digit())
                    && !rest.is_empty() =>
            {
                (first.parse().ok(), rest)
            }
            _ => (None, head),
        };
        // The environment: the first group, after at least one role group,
        // that is an environment word.
        let env_at = (1..head.len())
            .find(|&i| is_environment(head[i]))
            .ok_or_else(|| err(TaskIdError::NoEnvironment))?;
        if env_at + 1 >= head.len() {
            return Err(err(TaskIdError::NoName));
        }
        Ok(TaskId {
            created_ms,
            role: head[..env_at].join("-"),
            env: head[env_at].to_owned(),
            name: head[env_at + 1..].join("-"),
            instance,
            uuid: uuid.join("-"),
            raw: raw.to_owned(),
        })
    }
}

impl FromStr for TaskId {
    type Err = TaskIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TaskId::parse(s)
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "5c1e9a52-8f0e-4c0b-9d61-0f3c1b7b2a11";

    #[test]
    fn current_form_with_dashes_in_role_and_name() {
        let t = TaskId::parse(&format!("www-data-prod-hello-world-3-{UUID}")).unwrap();
        assert_eq!(
            (t.role.as_str(), t.env.as_str(), t.name.as_str()),
            ("www-data", "prod", "hello-world")
        );
        assert_eq!(t.instance, 3);
        assert_eq!(t.uuid, UUID);
        assert_eq!(t.created_ms, None);
        assert_eq!(t.job_key().to_string(), "www-data/prod/hello-world");
    }

    #[test]
    fn older_form_with_millis() {
        let t = TaskId::parse(&format!("1507212345678-cbe-devel-eightball_api-11-{UUID}")).unwrap();
        assert_eq!(t.created_ms, Some(1507212345678));
        assert_eq!(t.job_key().to_string(), "cbe/devel/eightball_api");
        assert_eq!(t.instance, 11);
    }

    #[test]
    fn staging_environments_and_first_env_wins() {
        let t = TaskId::parse(&format!("ads-staging3-test-runner-0-{UUID}")).unwrap();
        assert_eq!(
            (t.role.as_str(), t.env.as_str(), t.name.as_str()),
            ("ads", "staging3", "test-runner")
        );
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            TaskId::parse("www-data-prod-hello-0"),
            Err(TaskIdError::NoUuid(_))
        ));
        assert!(matches!(
            TaskId::parse(&format!("www-data-prod-hello-x-{UUID}")),
            Err(TaskIdError::NoInstance(_))
        ));
        assert!(matches!(
            TaskId::parse(&format!("www-data-hello-0-{UUID}")),
            Err(TaskIdError::NoEnvironment(_))
        ));
        assert!(matches!(
            TaskId::parse(&format!("prod-hello-0-{UUID}")),
            Err(TaskIdError::NoEnvironment(_))
        ));
        assert!(matches!(
            TaskId::parse(&format!("www-prod-0-{UUID}")),
            Err(TaskIdError::NoName(_))
        ));
    }
}
