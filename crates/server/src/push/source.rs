//! A pushed stream's labels as a cblogs source.
//!
//! Labels that name a job key give it (`role`, `env`, `job`, as Aurora
//! has them); otherwise the source is a generic app's, shown like any
//! job: role `app`, env `default`, its name from the first of `job`,
//! `service_name`, `service.name`, `app`, `application`, `container`,
//! `container_name`, `service`. Each distinct label set is its own
//! source (its task id is `push-` and a hash of the set), so two files of
//! one job (`filename`) never share bytes.

use std::collections::BTreeMap;

use cblogs_core::{JobKey, Source, Stream};

/// The first of `names` among `labels` with a value.
fn first<'a>(labels: &'a BTreeMap<String, String>, names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .filter_map(|n| labels.get(*n))
        .map(String::as_str)
        .find(|v| !v.trim().is_empty())
}

/// `value` as a source field: no `/`, no control characters, not empty.
fn field(value: Option<&str>, default: &str) -> String {
    let v: String = value
        .unwrap_or(default)
        .trim()
        .chars()
        .map(|c| if c == '/' || c.is_control() { '_' } else { c })
        .collect();
    if v.is_empty() {
        default.to_owned()
    } else {
        v
    }
}

/// `value` as a part of a job key (`role`, `env`, `name`, the cluster):
/// letters, digits, `_`, `-`, `.`; anything else becomes `_`, so the key
/// reads back as itself (`JobKey`'s parse, selectors).
fn job_part(value: Option<&str>, default: &str) -> String {
    field(value, default)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn source_of(labels: &BTreeMap<String, String>) -> Source {
    let name = job_part(
        first(
            labels,
            &[
                "job",
                "service_name",
                "service.name",
                "app",
                "application",
                "container",
                "container_name",
                "service",
            ],
        ),
        "unknown",
    );
    let role = job_part(
        first(labels, &["role", "service.namespace", "namespace"]),
        "app",
    );
    let env = job_part(
        first(
            labels,
            &[
                "env",
                "environment",
                "deployment.environment.name",
                "deployment.environment",
            ],
        ),
        "default",
    );
    let cluster = job_part(first(labels, &["cluster", "k8s.cluster.name"]), "default");
    let host = field(
        first(
            labels,
            &["host", "hostname", "host.name", "node_name", "nodename"],
        ),
        "unknown",
    );
    let instance = first(labels, &["instance", "service.instance.id"])
        .and_then(|i| i.parse::<u32>().ok())
        .unwrap_or(0);
    let basename = first(labels, &["filename", "log.file.path", "path"])
        .and_then(|f| f.rsplit('/').find(|p| !p.is_empty()));
    let process = field(
        first(labels, &["process", "process.executable.name"]).or(basename),
        &name,
    );
    let stream = match first(labels, &["stream"]) {
        Some("stderr") => Stream::Stderr,
        _ => Stream::Stdout,
    };
    let canonical: String = labels.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    Source {
        cluster,
        host,
        task_id: format!("push-{:016x}", cblogs_core::fnv1a(canonical.as_bytes())),
        job: JobKey {
            cluster: None,
            role,
            env,
            name,
        },
        instance,
        process,
        run: 0,
        stream,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_job_key_where_labels_name_one() {
        let s = source_of(&labels(&[
            ("cluster", "west"),
            ("role", "www-data"),
            ("env", "prod"),
            ("job", "hello"),
            ("instance", "3"),
            ("process", "web"),
            ("stream", "stderr"),
            ("host", "agent7"),
        ]));
        assert_eq!(s.job_key().to_string(), "west/www-data/prod/hello");
        assert_eq!(
            (s.instance, s.process.as_str(), s.stream),
            (3, "web", Stream::Stderr)
        );
        assert_eq!(s.host, "agent7");
        assert!(s.validate().is_ok());
    }

    #[test]
    fn otherwise_a_generic_app() {
        let promtail = source_of(&labels(&[
            ("job", "varlogs"),
            ("filename", "/var/log/syslog"),
            ("host", "h1"),
        ]));
        assert_eq!(
            promtail.job_key().to_string(),
            "default/app/default/varlogs"
        );
        assert_eq!(promtail.process, "syslog");
        let other_file = source_of(&labels(&[
            ("job", "varlogs"),
            ("filename", "/var/log/auth.log"),
            ("host", "h1"),
        ]));
        assert_ne!(
            promtail.id(),
            other_file.id(),
            "each label set its own source"
        );
        let otel = source_of(&labels(&[
            ("service.name", "checkout/v2"),
            ("service.namespace", "shop floor"),
            ("service.instance.id", "b7e1"),
            ("host.name", "node-4"),
        ]));
        assert_eq!(otel.job.name, "checkout_v2");
        assert_eq!(otel.job.role, "shop_floor");
        let key = otel.job_key().to_string();
        assert_eq!(
            key.parse::<JobKey>().map(|k| k.to_string()),
            Ok(key),
            "reads back"
        );
        assert_eq!((otel.instance, otel.host.as_str()), (0, "node-4"));
        assert!(otel.validate().is_ok());
        let nothing = source_of(&BTreeMap::new());
        assert_eq!(nothing.job_key().to_string(), "default/app/default/unknown");
        assert!(nothing.validate().is_ok());
    }
}
