//! Alert rules and notifiers: read from the rules file, checked whole.
//!
//! A rules file is taken all or nothing: the first problem is reported
//! with the rule (or notifier), the field and why, and the rules already
//! in force stay in force.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use cblogs_core::pattern::{Pattern, PatternOptions};
use cblogs_core::{InstanceSet, Selector, Source, Stream};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RulesError {
    #[error("cannot read the alert rules file {path}: {why}")]
    Read { path: String, why: String },
    #[error("alert rules file {path}: {why}")]
    Parse { path: String, why: String },
    #[error("rule \"{rule}\": {field}: {why}")]
    Rule {
        rule: String,
        field: &'static str,
        why: String,
    },
    #[error("notifier \"{notifier}\": {field}: {why}")]
    Notifier {
        notifier: String,
        field: &'static str,
        why: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    #[serde(default)]
    notifier: Vec<NotifierSpec>,
    #[serde(default)]
    rule: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifierSpec {
    name: String,
    kind: String,
    url: Option<String>,
    routing_key: Option<String>,
    command: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: String,
    #[serde(default)]
    jobs: Vec<String>,
    instance: Option<String>,
    process: Option<String>,
    stream: Option<String>,
    pattern: String,
    #[serde(default)]
    fixed: bool,
    #[serde(default)]
    ignore_case: bool,
    threshold: u64,
    window: String,
    group_by: Option<String>,
    severity: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    repeat: Option<String>,
    #[serde(default)]
    notify: Vec<String>,
}

/// Where a notification goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifierKind {
    /// The generic JSON payload, POSTed.
    Webhook { url: String },
    /// Slack's incoming-webhook payload (`{"text": …}`).
    Slack { url: String },
    /// PagerDuty Events API v2 (trigger/resolve with a dedup key).
    PagerDuty { url: String, routing_key: String },
    /// A command run with the generic JSON payload on stdin.
    Command { argv: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifier {
    pub name: String,
    pub kind: NotifierKind,
}

/// What a rule counts matches per.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupBy {
    Job,
    JobInstance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

/// A rule, checked and compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub jobs: Vec<Selector>,
    pub instances: InstanceSet,
    pub process: Option<String>,
    pub stream: Option<Stream>,
    pub pattern: Pattern,
    pub threshold: u64,
    pub window: Duration,
    pub group_by: GroupBy,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub repeat: Duration,
    /// Indexes into [`Rules::notifiers`].
    pub notify: Vec<usize>,
}

impl Rule {
    /// Whether lines of `s` are this rule's to count.
    pub fn watches(&self, s: &Source) -> bool {
        let key = s.job_key();
        self.instances.contains(s.instance)
            && self.stream.is_none_or(|st| st == s.stream)
            && self.process.as_ref().is_none_or(|p| *p == s.process)
            && self
                .jobs
                .iter()
                .any(|j| j.matches_job(&key) && j.instances().contains(s.instance))
    }
}

/// Every rule and notifier of one rules file.
#[derive(Debug, Clone, Default)]
pub struct Rules {
    pub rules: Vec<Rule>,
    pub notifiers: Vec<Notifier>,
}

const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";
const DEFAULT_REPEAT: Duration = Duration::from_secs(3600);

impl Rules {
    pub fn load(path: &Path, regex_size_limit: usize) -> Result<Rules, RulesError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| RulesError::Read {
            path: shown.clone(),
            why: e.to_string(),
        })?;
        Rules::parse(&text, &shown, regex_size_limit)
    }

    pub fn parse(text: &str, path: &str, regex_size_limit: usize) -> Result<Rules, RulesError> {
        let parse_error = |e: toml::de::Error| RulesError::Parse {
            path: path.to_owned(),
            why: e.to_string(),
        };
        let mut table: toml::Table = toml::from_str(text).map_err(parse_error)?;
        // Each rule is read on its own, so that a misspelt field is reported
        // with the rule's name.
        let specs = match table.remove("rule") {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => items
                .into_iter()
                .enumerate()
                .map(|(i, item)| {
                    let name = item
                        .get("name")
                        .and_then(toml::Value::as_str)
                        .map_or_else(|| format!("#{}", i + 1), str::to_owned);
                    item.try_into::<RuleSpec>().map_err(|e| RulesError::Rule {
                        rule: name,
                        field: "fields",
                        why: e.message().to_owned(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(_) => {
                return Err(RulesError::Parse {
                    path: path.to_owned(),
                    why: "`rule` must be an array of tables ([[rule]])".into(),
                })
            }
        };
        let mut file: RulesFile = toml::Value::Table(table).try_into().map_err(parse_error)?;
        file.rule = specs;
        let mut notifiers = Vec::new();
        let mut names = HashSet::new();
        for n in file.notifier {
            let notifier = notifier(n)?;
            if !names.insert(notifier.name.clone()) {
                return Err(RulesError::Notifier {
                    notifier: notifier.name,
                    field: "name",
                    why: "another notifier has this name".into(),
                });
            }
            notifiers.push(notifier);
        }
        let mut rules = Vec::new();
        let mut rule_names = HashSet::new();
        for r in file.rule {
            let rule = rule(r, &notifiers, regex_size_limit)?;
            if !rule_names.insert(rule.name.clone()) {
                return Err(RulesError::Rule {
                    rule: rule.name,
                    field: "name",
                    why: "another rule has this name".into(),
                });
            }
            rules.push(rule);
        }
        Ok(Rules { rules, notifiers })
    }
}

fn notifier(n: NotifierSpec) -> Result<Notifier, RulesError> {
    let bad = |field: &'static str, why: &str| RulesError::Notifier {
        notifier: n.name.clone(),
        field,
        why: why.to_owned(),
    };
    let url = |n: &NotifierSpec| -> Result<String, RulesError> {
        let url = n.url.clone().ok_or_else(|| bad("url", "missing"))?;
        if !url.starts_with("http://") && !url.starts_with("https://") {
            return Err(bad("url", "must start with http:// or https://"));
        }
        Ok(url)
    };
    let kind = match n.kind.as_str() {
        "webhook" => NotifierKind::Webhook { url: url(&n)? },
        "slack" => NotifierKind::Slack { url: url(&n)? },
        "pagerduty" => NotifierKind::PagerDuty {
            url: match &n.url {
                Some(_) => url(&n)?,
                None => PAGERDUTY_URL.to_owned(),
            },
            routing_key: n
                .routing_key
                .clone()
                .filter(|k| !k.is_empty())
                .ok_or_else(|| bad("routing_key", "missing (the PagerDuty integration key)"))?,
        },
        "command" => NotifierKind::Command {
            argv: n
                .command
                .clone()
                .filter(|c| !c.is_empty())
                .ok_or_else(|| bad("command", "missing (a program and its arguments)"))?,
        },
        other => {
            return Err(bad(
                "kind",
                &format!("unknown kind '{other}' (webhook, slack, pagerduty or command)"),
            ))
        }
    };
    Ok(Notifier { name: n.name, kind })
}

fn duration(s: &str) -> Option<Duration> {
    let ns = cblogs_core::time::parse_duration_ns(s.trim())?;
    (ns > 0).then(|| Duration::from_nanos(ns as u64))
}

fn rule(r: RuleSpec, notifiers: &[Notifier], regex_size_limit: usize) -> Result<Rule, RulesError> {
    let bad = |field: &'static str, why: String| RulesError::Rule {
        rule: r.name.clone(),
        field,
        why,
    };
    if r.name.is_empty()
        || !r
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
    {
        return Err(bad("name", "use letters, digits, '_', '.' and '-'".into()));
    }
    if r.jobs.is_empty() {
        return Err(bad("jobs", "at least one job selector is needed".into()));
    }
    let jobs = r
        .jobs
        .iter()
        .map(|j| Selector::parse(j).map_err(|e| bad("jobs", e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let instances = match &r.instance {
        Some(i) => i
            .parse()
            .map_err(|e: cblogs_core::SelectorError| bad("instance", e.to_string()))?,
        None => InstanceSet::all(),
    };
    let stream = match r.stream.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<Stream>().map_err(|e| bad("stream", e))?),
    };
    let pattern = Pattern::new(
        PatternOptions {
            pattern: r.pattern.clone(),
            fixed: r.fixed,
            ignore_case: r.ignore_case,
            word: false,
        },
        regex_size_limit,
    )
    .map_err(|e| bad("pattern", e.to_string()))?;
    if r.threshold == 0 {
        return Err(bad("threshold", "must be at least 1".into()));
    }
    let window = duration(&r.window).ok_or_else(|| {
        bad(
            "window",
            format!("'{}' is not a duration (90s, 15m, 2h, 1h30m)", r.window),
        )
    })?;
    let group_by = match r.group_by.as_deref() {
        None | Some("job") => GroupBy::Job,
        Some("job+instance") => GroupBy::JobInstance,
        Some(other) => {
            return Err(bad(
                "group_by",
                format!("unknown '{other}' (job or job+instance)"),
            ))
        }
    };
    let severity = match r.severity.as_deref() {
        None => Severity::Warning,
        Some(s) => {
            serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
                bad(
                    "severity",
                    format!("unknown '{s}' (info, warning, error or critical)"),
                )
            })?
        }
    };
    let repeat = match r.repeat.as_deref() {
        None => DEFAULT_REPEAT,
        Some(s) => duration(s)
            .ok_or_else(|| bad("repeat", format!("'{s}' is not a duration (30m, 1h, 1d)")))?,
    };
    if r.notify.is_empty() {
        return Err(bad("notify", "name at least one notifier".into()));
    }
    let notify = r
        .notify
        .iter()
        .map(|n| {
            notifiers
                .iter()
                .position(|x| x.name == *n)
                .ok_or_else(|| bad("notify", format!("no notifier is named '{n}'")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rule {
        name: r.name,
        jobs,
        instances,
        process: r.process,
        stream,
        pattern,
        threshold: r.threshold,
        window,
        group_by,
        severity,
        labels: r.labels,
        repeat,
        notify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[notifier]]
name = "ops"
kind = "webhook"
url = "http://127.0.0.1:9/hook"

[[rule]]
name = "tracebacks"
jobs = ["www-data/prod/*"]
pattern = 'Traceback \(most recent call last\)'
threshold = 5
window = "5m"
group_by = "job+instance"
severity = "critical"
labels = { team = "web" }
notify = ["ops"]
"#;

    fn refused(text: &str) -> String {
        Rules::parse(text, "alerts.toml", 1 << 20)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_example_file_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/alerts.toml");
        let r = Rules::load(&path, 1 << 20).unwrap();
        assert_eq!(r.rules.len(), 1);
        assert_eq!(r.notifiers.len(), 1);
    }

    #[test]
    fn a_good_file() {
        let r = Rules::parse(GOOD, "alerts.toml", 1 << 20).unwrap();
        assert_eq!(r.rules.len(), 1);
        let rule = &r.rules[0];
        assert_eq!(rule.window, Duration::from_secs(300));
        assert_eq!(rule.group_by, GroupBy::JobInstance);
        assert_eq!(rule.severity, Severity::Critical);
        assert_eq!(rule.repeat, DEFAULT_REPEAT);
        assert_eq!(rule.notify, vec![0]);
    }

    #[test]
    fn each_problem_names_the_rule_and_the_field() {
        let cases = [
            (
                "pattern = 'Traceback \\(most",
                "pattern = 'Traceback (",
                "rule \"tracebacks\": pattern: regex parse error",
            ),
            (
                "notify = [\"ops\"]",
                "notify = [\"pager\"]",
                "rule \"tracebacks\": notify: no notifier is named 'pager'",
            ),
            (
                "threshold = 5",
                "threshold = 0",
                "rule \"tracebacks\": threshold",
            ),
            (
                "window = \"5m\"",
                "window = \"abc\"",
                "rule \"tracebacks\": window: 'abc'",
            ),
            (
                "group_by = \"job+instance\"",
                "group_by = \"host\"",
                "rule \"tracebacks\": group_by",
            ),
            (
                "severity = \"critical\"",
                "severity = \"huge\"",
                "rule \"tracebacks\": severity",
            ),
            (
                "jobs = [\"www-data/prod/*\"]",
                "jobs = []",
                "rule \"tracebacks\": jobs",
            ),
        ];
        for (from, to, want) in cases {
            let text = GOOD.replacen(from, to, 1);
            assert_ne!(text, GOOD, "{from}");
            let e = refused(&text);
            assert!(e.contains(want), "{to}: {e}");
        }
        let twice = format!("{GOOD}\n{}", &GOOD[GOOD.find("[[rule]]").unwrap()..]);
        assert!(refused(&twice).contains("rule \"tracebacks\": name: another rule"));
        let unknown = GOOD.replacen("threshold = 5", "threshold = 5\nthreshhold = 6", 1);
        assert!(
            refused(&unknown).contains("threshhold"),
            "{}",
            refused(&unknown)
        );
        let kind = GOOD.replacen("kind = \"webhook\"", "kind = \"email\"", 1);
        assert!(refused(&kind).contains("notifier \"ops\": kind"));
    }
}
