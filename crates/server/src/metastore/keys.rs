//! Object names of the metastore. The version is zero-padded to 20 digits
//! so that names sort as numbers do (a listing is in name order).

pub(super) const VERSIONS: &str = "metastore/versions/";
pub(super) const CHECKPOINTS: &str = "metastore/checkpoints/";

pub(super) fn version(v: u64) -> String {
    format!("{VERSIONS}{v:020}.json")
}

pub(super) fn checkpoint(v: u64) -> String {
    format!("{CHECKPOINTS}{v:020}.json")
}

/// The version a key of `folder` names, if it is one.
pub(super) fn parse(folder: &str, key: &str) -> Option<u64> {
    let name = key.strip_prefix(folder)?.strip_suffix(".json")?;
    (name.len() == 20).then_some(())?;
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_numbers_and_parse_back() {
        let (a, b) = (version(9), version(10));
        assert!(a < b, "{a} {b}");
        assert_eq!(parse(VERSIONS, &b), Some(10));
        assert_eq!(parse(CHECKPOINTS, &checkpoint(7)), Some(7));
        assert_eq!(parse(VERSIONS, &checkpoint(7)), None);
        assert_eq!(parse(VERSIONS, "metastore/versions/12.json"), None);
    }
}
