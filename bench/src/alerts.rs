//! The alert rules of the alerting figure: 100 rules over every job, as a
//! busy team might write them, evaluated on every ingested line.

/// 100 rules: a few that match the corpus (with thresholds high enough to
/// fire rarely) and many that look for things it does not hold, all on
/// every job. Their notifier points at a closed port: deliveries fail and
/// retry in the background, which must not slow ingest either.
pub fn hundred_rules() -> String {
    let mut s = String::from(
        "[[notifier]]\nname = \"nowhere\"\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\n",
    );
    let matching = [
        ("oom", "OutOfMemoryError"),
        ("tracebacks", "^Traceback \\\\(most recent call last\\\\)"),
        ("refused", "(?i)connection refused"),
        ("fatal", "\\\\bFATAL\\\\b"),
        ("timeouts", "timed? ?out after \\\\d+ ?ms"),
    ];
    for (name, pattern) in matching {
        s.push_str(&rule(name, pattern, 1000));
    }
    for i in 0..95 {
        let pattern = match i % 5 {
            0 => format!("panic: runtime error: index out of range \\\\[{i}\\\\]"),
            1 => format!("SEGV in worker-{i}"),
            2 => format!("(?i)disk quota exceeded on /vol{i}"),
            3 => format!("certificate (has )?expired for host{i}\\\\."),
            _ => format!("ERR_CODE_{i}\\\\b"),
        };
        s.push_str(&rule(&format!("rule-{i}"), &pattern, 10));
    }
    s
}

fn rule(name: &str, pattern: &str, threshold: u32) -> String {
    format!(
        "\n[[rule]]\nname = \"{name}\"\njobs = [\"*\"]\npattern = \"{pattern}\"\nthreshold = {threshold}\nwindow = \"1m\"\nnotify = [\"nowhere\"]\n"
    )
}
