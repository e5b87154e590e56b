//! Split ids: `w<window start, unix secs>_<created, unix ms>_<random>`.
//!
//! The window comes first so that a split found on disk after a crash
//! still says which window of line time it belongs to; the creation time
//! makes ids of one window sort in the order they were made; the random
//! part keeps two nodes (or two runs in one millisecond) apart.

use std::hash::BuildHasher;

/// A new id for a split of the window starting at `window_ns`.
pub fn new_split_id(window_ns: i64) -> String {
    let created_ms = cblogs_core::time::now_ns().div_euclid(1_000_000);
    // A freshly seeded hasher is this process's source of randomness.
    let random = std::collections::hash_map::RandomState::new().hash_one(created_ms) as u32;
    format!(
        "w{}_{created_ms}_{random:08x}",
        window_ns.div_euclid(1_000_000_000)
    )
}

/// The window start of split `id`, if it is a split id.
pub fn split_window(id: &str) -> Option<i64> {
    let rest = id.strip_prefix('w')?;
    let mut parts = rest.split('_');
    let window: i64 = parts.next()?.parse().ok()?;
    let created: u64 = parts.next()?.parse().ok()?;
    let random = parts.next()?;
    let valid = random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit());
    (valid && parts.next().is_none() && created > 0).then_some(())?;
    window.checked_mul(1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_names_its_window_and_two_ids_differ() {
        let w = -86_400_000_000_000;
        let (a, b) = (new_split_id(w), new_split_id(w));
        assert_ne!(a, b);
        assert_eq!(split_window(&a), Some(w));
        assert_eq!(split_window("p-100"), None);
        assert_eq!(split_window("w1_2_3"), None);
    }
}
