//! From a task id to its job key and instance: configured rules first, then
//! Aurora's standard split (`cblogs_core::TaskId`). The shipper's log says
//! which one decided, once per task.

use cblogs_core::{JobKey, TaskId};
use regex::Regex;

use crate::config::{ConfigError, JobRule};

/// Where a task's logs belong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskJob {
    pub job: JobKey,
    pub instance: u32,
    /// What decided: "the standard split" or "job_rules[N]".
    pub rule: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error(transparent)]
    TaskId(#[from] cblogs_core::TaskIdError),
    #[error("task id '{task_id}': job_rules[{rule}] matched but {reason}")]
    Rule {
        task_id: String,
        rule: usize,
        reason: String,
    },
}

pub struct JobMapper {
    rules: Vec<Regex>,
}

impl JobMapper {
    pub fn new(rules: &[JobRule]) -> Result<JobMapper, ConfigError> {
        let mut compiled = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            let re = Regex::new(&rule.task_id)
                .map_err(|e| ConfigError::Invalid(format!("job_rules[{i}].task_id: {e}")))?;
            for group in ["role", "env", "name"] {
                if !re.capture_names().any(|n| n == Some(group)) {
                    return Err(ConfigError::Invalid(format!(
                        "job_rules[{i}].task_id has no named group '{group}' (write (?P<{group}>…))"
                    )));
                }
            }
            compiled.push(re);
        }
        Ok(JobMapper { rules: compiled })
    }

    pub fn map(&self, task_id: &str) -> Result<TaskJob, MappingError> {
        for (i, re) in self.rules.iter().enumerate() {
            let Some(caps) = re.captures(task_id) else {
                continue;
            };
            let rule_err = |reason: String| MappingError::Rule {
                task_id: task_id.to_owned(),
                rule: i,
                reason,
            };
            let part = |g: &str| caps.name(g).map_or("", |m| m.as_str());
            let instance = match caps.name("instance") {
                Some(m) => m
                    .as_str()
                    .parse()
                    .map_err(|_| rule_err(format!("instance '{}' is not a number", m.as_str())))?,
                None => TaskId::parse(task_id)?.instance,
            };
            let job = JobKey::new(None, part("role"), part("env"), part("name"));
            if job.role.is_empty() || job.env.is_empty() || job.name.is_empty() {
                return Err(rule_err("role, env or name is empty".to_owned()));
            }
            // The key travels as text and the server parses it again: what
            // a rule captured must be what a job key may hold.
            if let Err(e) = job.to_string().parse::<JobKey>() {
                return Err(rule_err(e.to_string()));
            }
            return Ok(TaskJob {
                job,
                instance,
                rule: format!("job_rules[{i}]"),
            });
        }
        let id = TaskId::parse(task_id)?;
        Ok(TaskJob {
            job: id.job_key(),
            instance: id.instance,
            rule: "the standard split".to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "5c1e9a52-8f0e-4c0b-9d61-0f3c1b7b2a11";

    #[test]
    fn a_rule_cannot_capture_what_a_job_key_refuses() {
        let rules = JobMapper::new(&[JobRule {
            task_id: r"^(?P<role>\w+) (?P<env>prod) (?P<name>.+)-(?P<instance>\d+)$".into(),
        }])
        .unwrap();
        let err = rules
            .map("ops prod hello wörld/x-3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("may only contain"), "{err}");
        assert_eq!(
            rules.map("ops prod hello-3").unwrap().job.to_string(),
            "ops/prod/hello"
        );
    }

    #[test]
    fn standard_split_and_rules() {
        let plain = JobMapper::new(&[]).unwrap();
        let t = plain.map(&format!("ops-test-prod-hello-2-{UUID}")).unwrap();
        // "test" is an environment word: the standard split takes it.
        assert_eq!(t.job.to_string(), "ops/test/prod-hello");

        let rules = JobMapper::new(&[JobRule {
            task_id: r"^(?P<role>ops-test)-(?P<env>[a-z0-9]+)-(?P<name>.+)-\d+-[0-9a-f-]{36}$"
                .into(),
        }])
        .unwrap();
        let t = rules.map(&format!("ops-test-prod-hello-2-{UUID}")).unwrap();
        assert_eq!(t.job.to_string(), "ops-test/prod/hello");
        assert_eq!(t.instance, 2);
        assert_eq!(t.rule, "job_rules[0]");
        let t = rules.map(&format!("www-data-prod-hi-0-{UUID}")).unwrap();
        assert_eq!(t.rule, "the standard split");
        assert!(rules.map("nonsense").is_err());
    }

    #[test]
    fn a_rule_without_the_groups_is_refused() {
        let err = JobMapper::new(&[JobRule {
            task_id: "^(?P<role>x)-".into(),
        }])
        .err()
        .unwrap();
        assert!(err.to_string().contains("'env'"), "{err}");
    }
}
