//! The ids a fake agent is named with: the agent and framework ids of
//! `thermos-layout.md`, and deterministic uuids, so that the same task
//! always gets the same task id and container id (a demo restarted on the
//! same data dir appends to the same files; a test failure names the same
//! paths on every run).

/// The agent id in the layout page's `slaves/` folder.
pub const AGENT_ID: &str = "20171005-141516-16842879-5050-1234-S3";
/// The Aurora scheduler's framework id in the layout page.
pub const FRAMEWORK_ID: &str = "20160902-110203-16842879-5050-4321-0000";
/// The creation time (ms) older schedulers put in front of a task id.
pub const LEGACY_TASK_MILLIS: &str = "1507212916123";

/// A deterministic uuid (8-4-4-4-12 hex digits, version 4 and variant
/// bits set) made from `seed` by FNV-1a.
pub fn fake_uuid(seed: impl AsRef<[u8]>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.as_ref() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        (h >> 12) & 0xfff,
        h & 0xffff_ffff_ffff
    )
}

/// An Aurora task id of today's form: `role-env-name-instance-<uuid>`.
pub fn task_id(role: &str, env: &str, name: &str, instance: u32) -> String {
    format!(
        "{role}-{env}-{name}-{instance}-{}",
        fake_uuid(format!("task {role}/{env}/{name}/{instance}"))
    )
}

/// A task id of an older scheduler: `<millis>-role-env-name-instance-<uuid>`.
pub fn legacy_task_id(role: &str, env: &str, name: &str, instance: u32) -> String {
    format!(
        "{LEGACY_TASK_MILLIS}-{role}-{env}-{name}-{instance}-{}",
        fake_uuid(format!("legacy task {role}/{env}/{name}/{instance}"))
    )
}

/// The container id of a task's (only) executor run.
pub fn container_id(task_id: &str) -> String {
    fake_uuid(format!("container {task_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cblogs_core::TaskId;

    #[test]
    fn task_ids_split_back_into_their_job_and_instance() {
        for id in [
            task_id("www-data", "prod", "hello", 3),
            legacy_task_id("cbe-team", "devel", "eight_ball-api", 0),
        ] {
            let parsed = TaskId::parse(&id).expect("a task id cblogs can split");
            let job = format!("{}/{}/{}", parsed.role, parsed.env, parsed.name);
            assert!(
                ["www-data/prod/hello", "cbe-team/devel/eight_ball-api"].contains(&job.as_str()),
                "{id}"
            );
        }
        assert_eq!(fake_uuid("x"), fake_uuid("x"));
        assert_ne!(fake_uuid("x"), fake_uuid("y"));
    }
}
