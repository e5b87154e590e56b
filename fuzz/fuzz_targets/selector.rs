//! Job selectors, instance sets and job keys (`cblogs_core::Selector`,
//! `InstanceSet`, `JobKey`) on any string.
//!
//! Never panics; a parsed selector's text (`Display`) parses back to the
//! same selector, an instance set's and a job key's text to the same value,
//! and a job key typed as a selector selects that job (unless its role is
//! itself an environment word, which makes `c/ROLE/env/N` ambiguous with
//! `role/env/name/INSTANCES`, as documented).

#![no_main]

use cblogs_core::{InstanceSet, JobKey, Selector, ENVIRONMENTS};
use libfuzzer_sys::fuzz_target;

fn is_env(s: &str) -> bool {
    ENVIRONMENTS.contains(&s)
        || s.strip_prefix("staging")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

fn check_instances(set: &InstanceSet, probe: u32) {
    let text = set.to_string();
    let back: InstanceSet = text
        .parse()
        .unwrap_or_else(|e| panic!("instance set {set:?} shown as {text:?} does not parse: {e}"));
    assert_eq!(&back, set, "{text:?}");
    assert_eq!(back.contains(probe), set.contains(probe));
    if set.is_all() {
        assert!(set.contains(probe));
    }
}

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let probe = data
        .iter()
        .fold(0u32, |n, &b| n.wrapping_mul(7).wrapping_add(u32::from(b)))
        % 64;

    if let Ok(sel) = Selector::parse(&s) {
        let text = sel.to_string();
        assert_eq!(text, s.trim());
        assert_eq!(sel.as_str(), text);
        let again = Selector::parse(&text)
            .unwrap_or_else(|e| panic!("selector {s:?} shown as {text:?} does not parse: {e}"));
        assert_eq!(format!("{again:?}"), format!("{sel:?}"));
        assert_eq!(again.instances(), sel.instances());
        assert_eq!(again.is_exact(), sel.is_exact());
        check_instances(sel.instances(), probe);
        // Matching never panics, whatever the key.
        for key in [
            JobKey::new(None, "www-data", "prod", "hello"),
            JobKey::new(Some("devcluster"), "a", "b", "c"),
            JobKey::new(Some(&s), &s, &s, &s),
        ] {
            let _ = sel.matches_job(&key);
        }
    }

    if let Ok(set) = s.parse::<InstanceSet>() {
        check_instances(&set, probe);
    }

    if let Ok(key) = s.parse::<JobKey>() {
        let text = key.to_string();
        assert_eq!(text, s, "a job key is shown as typed");
        assert_eq!(text.parse::<JobKey>().as_ref(), Ok(&key));
        let sel = Selector::parse(&text);
        if is_env(&key.env) && !is_env(&key.role) {
            let sel = sel.unwrap_or_else(|e| panic!("job key {text:?} is not a selector: {e}"));
            assert!(
                sel.matches_job(&key),
                "selector {text:?} misses its own job"
            );
            assert!(sel.is_exact(), "{text:?}");
            assert!(sel.instances().is_all(), "{text:?}");
        }
    }
});
