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
    #[error("task id '{0}' has no role before its environment")]
    NoRole(String),
    #[error("task id '{0}': role and job name may only contain letters, digits, '_', '-' and '.'")]
    BadChar(String),
}

/// What a job key accepts in a role or name (`JobKey`'s rule): a task id's
/// parts go on the wire as a job key, which the server parses again.
fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.')
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
        // An older scheduler's millisecond prefix: a number 12+ digits long
        // with no leading zero, as Java prints a long (a role is never only
        // a timestamp-sized number in practice). Anything else is a role group.
        let (created_ms, head) = match head.split_first() {
            Some((first, rest))
                if first.len() >= 12
                    && !first.starts_with('0')
                    && first.bytes().all(|b| b.is_ascii_digit())
                    && !rest.is_empty() =>
            {
                match first.parse::<u64>() {
                    Ok(ms) => (Some(ms), rest),
                    Err(_) => (None, head),
                }
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
        let role = head[..env_at].join("-");
        let name = head[env_at + 1..].join("-");
        if role.is_empty() {
            return Err(err(TaskIdError::NoRole));
        }
        if name.is_empty() {
            return Err(err(TaskIdError::NoName));
        }
        if !role.bytes().chain(name.bytes()).all(is_name_char) {
            return Err(err(TaskIdError::BadChar));
        }
        Ok(TaskId {
            created_ms,
            role,
            env: head[env_at].to_owned(),
            name,
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

    /// Found by the `task_id` fuzz target: a millisecond prefix with a
    /// leading zero, or too big for a u64, was dropped from the parts (so
    /// the parts no longer made up the id, and formatted again split
    /// differently); it is a role group now.
    #[test]
    fn only_a_real_millis_prefix_is_split_off() {
        let t = TaskId::parse(&format!("0001734429034-cbe-devel-api-1-{UUID}")).unwrap();
        assert_eq!((t.created_ms, t.role.as_str()), (None, "0001734429034-cbe"));
        let t = TaskId::parse(&format!("99999999999999999999999-cbe-devel-api-1-{UUID}")).unwrap();
        assert_eq!(
            (t.created_ms, t.role.as_str()),
            (None, "99999999999999999999999-cbe")
        );
        let t = TaskId::parse(&format!("1734429034000-cbe-devel-api-1-{UUID}")).unwrap();
        assert_eq!(
            (t.created_ms, t.role.as_str()),
            (Some(1734429034000), "cbe")
        );
    }

    /// Found by the `task_id` fuzz target: the parts of a task id become a
    /// job key on the wire, which the server parses again; a part it
    /// refuses (control characters, `/`, an empty role or name) made the
    /// whole ingest request fail.
    #[test]
    fn parts_are_valid_job_key_parts() {
        for bad in ["ad\0\0s", "a/b", "caf\u{e9}", "a b"] {
            assert!(
                matches!(
                    TaskId::parse(&format!("{bad}-staging3-runner-0-{UUID}")),
                    Err(TaskIdError::BadChar(_))
                ),
                "{bad:?}"
            );
            assert!(
                matches!(
                    TaskId::parse(&format!("www-prod-{bad}-0-{UUID}")),
                    Err(TaskIdError::BadChar(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            TaskId::parse(&format!("-prod-hello-0-{UUID}")),
            Err(TaskIdError::NoRole(_))
        ));
        assert!(matches!(
            TaskId::parse(&format!("www-prod--0-{UUID}")),
            Err(TaskIdError::NoName(_))
        ));
        // Empty groups inside a part are fine: the part is not empty.
        let t = TaskId::parse(&format!("www--data-prod-a--b-0-{UUID}")).unwrap();
        assert_eq!(t.job_key().to_string(), "www--data/prod/a--b");
        assert_eq!(t.job_key().to_string().parse(), Ok(t.job_key()));
    }
}
