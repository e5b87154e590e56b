//! Property tests of the shared vocabulary's parsers: task ids, job keys,
//! selectors, instance sets and sandbox names, each formatted from
//! generated parts and parsed back. (The fuzz targets in `fuzz/` throw
//! arbitrary strings at the same parsers.)

use cblogs_core::sandbox::{executor_task_id, log_file, rotated_name, run_number};
use cblogs_core::{InstanceSet, JobKey, Selector, Stream, TaskId, ENVIRONMENTS};
use proptest::prelude::*;

fn is_env(s: &str) -> bool {
    ENVIRONMENTS.contains(&s)
        || s.strip_prefix("staging")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// An environment the task id parser recognises.
fn env() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("prod".to_owned()),
        Just("devel".to_owned()),
        Just("test".to_owned()),
        (0u32..100).prop_map(|n| format!("staging{n}")),
    ]
}

/// One `-`-separated group of a role or job name (`_` allowed).
fn group() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_]{1,8}"
}

/// A role: groups joined by `-`; only the first may be an environment word
/// (the parser takes the first environment word after it as the env, as
/// Aurora's ids leave no other way to split them).
fn role() -> impl Strategy<Value = String> {
    (group(), prop::collection::vec(group(), 0..3))
        .prop_filter(
            "an environment word inside the role is ambiguous",
            |(_, rest)| rest.iter().all(|g| !is_env(g)),
        )
        .prop_map(|(first, rest)| {
            std::iter::once(first)
                .chain(rest)
                .collect::<Vec<_>>()
                .join("-")
        })
}

/// A job name: groups joined by `-`, environment words allowed.
fn name() -> impl Strategy<Value = String> {
    prop::collection::vec(group(), 1..4).prop_map(|g| g.join("-"))
}

fn uuid() -> impl Strategy<Value = String> {
    "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-fA-F]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
}

/// A job key part as `JobKey` accepts it.
fn key_part() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,12}"
}

fn instance_set() -> impl Strategy<Value = Vec<(u32, u32)>> {
    prop::collection::vec(
        (0u32..2000, 0u32..50).prop_map(|(lo, n)| (lo, lo + n)),
        1..4,
    )
}

fn instances_text(ranges: &[(u32, u32)]) -> String {
    ranges
        .iter()
        .map(|&(lo, hi)| {
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}-{hi}")
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

proptest! {
    #[test]
    fn task_id_splits_into_its_parts(
        millis in prop::option::of(1_000_000_000_000u64..10_000_000_000_000_000),
        role in role(),
        env in env(),
        name in name(),
        instance in any::<u32>(),
        uuid in uuid(),
    ) {
        // (Groups are at most 8 long: a role that starts with a
        // timestamp-sized number would read as the millisecond prefix.)
        let raw = match millis {
            Some(ms) => format!("{ms}-{role}-{env}-{name}-{instance}-{uuid}"),
            None => format!("{role}-{env}-{name}-{instance}-{uuid}"),
        };
        let t = TaskId::parse(&raw).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(t.created_ms, millis);
        prop_assert_eq!(&t.role, &role);
        prop_assert_eq!(&t.env, &env);
        prop_assert_eq!(&t.name, &name);
        prop_assert_eq!(t.instance, instance);
        prop_assert_eq!(&t.uuid, &uuid);
        prop_assert_eq!(t.to_string(), raw.clone());
        prop_assert_eq!(raw.parse::<TaskId>(), Ok(t.clone()));
        // The job key goes on the wire as text and parses back.
        let key = t.job_key();
        prop_assert_eq!(key.to_string(), format!("{role}/{env}/{name}"));
        prop_assert_eq!(key.to_string().parse::<JobKey>(), Ok(key));
        // As the shipper meets it: an executor folder.
        let dir = format!("thermos-{raw}");
        prop_assert_eq!(executor_task_id(&dir), Some(raw.as_str()));
    }

    #[test]
    fn task_id_without_uuid_or_environment_is_refused(
        role in "[a-z]{1,8}",
        name in name(),
        instance in any::<u32>(),
        uuid in uuid(),
    ) {
        prop_assume!(!is_env(&role) && name.split('-').all(|g| !is_env(g)));
        let no_env = format!("{role}-{name}-{instance}-{uuid}");
        prop_assert!(TaskId::parse(&no_env).is_err(), "{}", no_env);
        let no_uuid = format!("{role}-prod-{name}-{instance}");
        prop_assert!(TaskId::parse(&no_uuid).is_err(), "{}", no_uuid);
    }

    #[test]
    fn job_key_text_round_trips(
        cluster in prop::option::of(key_part()),
        role in key_part(),
        env in key_part(),
        name in key_part(),
    ) {
        let key = JobKey::new(cluster.as_deref(), &role, &env, &name);
        let text = key.to_string();
        prop_assert_eq!(text.parse::<JobKey>(), Ok(key.clone()));
        let json = serde_json::to_string(&key).unwrap();
        prop_assert_eq!(serde_json::from_str::<JobKey>(&json).unwrap(), key.clone());
        prop_assert_eq!(key.role_env_name(), format!("{role}/{env}/{name}"));
    }

    #[test]
    fn selector_of_a_job_selects_it(
        cluster in prop::option::of(key_part()),
        role in key_part(),
        env in env(),
        name in key_part(),
        ranges in prop::option::of(instance_set()),
        probe in 0u32..2100,
    ) {
        // `c/ROLE/env/N` with an environment word for a role reads as
        // role/env/name/INSTANCES: documented as ambiguous.
        prop_assume!(!is_env(&role));
        let key = JobKey::new(cluster.as_deref(), &role, &env, &name);
        let mut text = key.to_string();
        if let Some(r) = &ranges {
            text = format!("{text}/{}", instances_text(r));
        }
        let s = Selector::parse(&format!("  {text} "))
            .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
        prop_assert_eq!(s.as_str(), text.as_str());
        prop_assert!(s.matches_job(&key), "{} misses {}", text, key);
        prop_assert!(s.is_exact());
        let other = JobKey::new(cluster.as_deref(), &role, &env, &format!("{name}x"));
        prop_assert!(!s.matches_job(&other));
        let expected = ranges
            .as_ref()
            .is_none_or(|r| r.iter().any(|&(lo, hi)| (lo..=hi).contains(&probe)));
        prop_assert_eq!(s.instances().contains(probe), expected);
        // Display parses back to the same selector.
        let again = Selector::parse(&s.to_string()).unwrap();
        prop_assert_eq!(again.instances(), s.instances());
        prop_assert_eq!(again.as_str(), s.as_str());
    }

    #[test]
    fn glob_selectors_and_bare_names(
        role in key_part(),
        env in env(),
        name in key_part(),
        cut in 0usize..12,
    ) {
        prop_assume!(!is_env(&role));
        let key = JobKey::new(Some("devcluster"), &role, &env, &name);
        let prefix: String = name.chars().take(cut).collect();
        for (text, exact) in [
            (format!("{role}/*/{prefix}*"), false),
            (format!("*/{env}/{name}"), false),
            // role/env: any name
            (format!("{role}/{env}"), false),
            (format!("{role}/*"), false),
            (format!("devcluster/{role}/{env}/{prefix}*"), false),
            (format!("{prefix}*"), false),
            (name.clone(), true),
            (format!("{name}/0-{}", u32::MAX), true),
        ] {
            let s = Selector::parse(&text)
                .map_err(|e| TestCaseError::fail(format!("{text}: {e}")))?;
            prop_assert!(s.matches_job(&key), "{} misses {}", text, key);
            prop_assert_eq!(s.is_exact(), exact, "{}", text);
        }
    }

    #[test]
    fn instance_set_text_round_trips(ranges in instance_set(), probe in 0u32..2100) {
        let text = instances_text(&ranges);
        let set: InstanceSet = text.parse().unwrap();
        prop_assert_eq!(set.to_string(), text.clone());
        prop_assert_eq!(set.to_string().parse::<InstanceSet>(), Ok(set.clone()));
        let expected = ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&probe));
        prop_assert_eq!(set.contains(probe), expected);
    }

    #[test]
    fn rotated_names_read_back(n in any::<u32>(), stderr in any::<bool>()) {
        let stream = if stderr { Stream::Stderr } else { Stream::Stdout };
        let name = rotated_name(stream, n);
        prop_assert_eq!(log_file(&name), Some((stream, (n > 0).then_some(n))));
        prop_assert_eq!(run_number(&n.to_string()), Some(n));
        // One name per number: a leading zero is another name.
        prop_assert_eq!(run_number(&format!("0{n}")), None);
        prop_assert_eq!(log_file(&format!("{}.0{n}", stream.as_str())), None);
    }

    #[test]
    fn sandbox_names_never_misread(
        s in prop_oneof![
            "\\PC{0,12}",
            "(stdout|stderr)(\\.[0-9]{0,3})?",
            "[0-9]{0,11}",
            "thermos-[a-z0-9-]{0,8}",
        ]
    ) {
        if let Some(n) = run_number(&s) {
            prop_assert_eq!(n.to_string(), s.clone());
        }
        if let Some((stream, n)) = log_file(&s) {
            prop_assert_eq!(rotated_name(stream, n.unwrap_or(0)), s.clone());
        }
        if let Some(id) = executor_task_id(&s) {
            prop_assert_eq!(format!("thermos-{id}"), s);
        }
    }
}
