//! Which jobs the load run's tails follow: in turn a single job, a single
//! instance, and two globs (`*` once, then globs that together cover every
//! job), and for each, which sandbox files of the layout its lines may
//! come from.

use anyhow::{bail, Context, Result};
use cblogs_core::{JobKey, Selector};

use crate::corpus::{FileSpec, INSTANCES, JOBS};

/// What one tail follows.
#[derive(Debug, Clone)]
pub struct TailSpec {
    pub selector: String,
    /// `job`, `instance`, `glob` or `all`.
    pub kind: &'static str,
    /// Per file of the layout: is it in the selection?
    pub wanted: Vec<bool>,
}

/// Globs that together cover every job; `*` first and only once.
const GLOBS: [&str; 16] = [
    "*",
    "payments/*",
    "*/devel/*",
    "mail/*",
    "search/*/*",
    "ads/*",
    "*/staging?/*",
    "data/*",
    "infra/*",
    "mobile/*",
    "ml/*",
    "web/*",
    "www-data/*",
    "cbe/*",
    "*/prod/*_*",
    "*/prod/*-*",
];

/// The tails' selectors: in turn a job, an instance, and two globs.
pub fn tail_specs(n: usize, specs: &[FileSpec]) -> Result<Vec<TailSpec>> {
    let mut out = Vec::with_capacity(n);
    let mut globs = 0;
    for i in 0..n {
        let round = i / 4;
        let (selector, kind) = match i % 4 {
            0 => {
                let (r, e, name, _) = JOBS[round % JOBS.len()];
                (format!("{r}/{e}/{name}"), "job")
            }
            1 => {
                let (r, e, name, _) = JOBS[(round * 7 + 3) % JOBS.len()];
                let instance = round as u32 % INSTANCES;
                (format!("{r}/{e}/{name}/{instance}"), "instance")
            }
            _ => {
                let g = if globs == 0 {
                    0
                } else {
                    1 + (globs - 1) % (GLOBS.len() - 1)
                };
                globs += 1;
                let kind = if g == 0 { "all" } else { "glob" };
                (GLOBS[g].to_owned(), kind)
            }
        };
        let sel = Selector::parse(&selector).with_context(|| format!("selector {selector}"))?;
        let mut wanted = Vec::with_capacity(specs.len());
        for s in specs {
            let key: JobKey = s.job.parse().with_context(|| format!("job {}", s.job))?;
            wanted.push(sel.matches_job(&key) && sel.instances().contains(s.instance));
        }
        if !wanted.iter().any(|w| *w) {
            bail!("the tail selector {selector} matches no file");
        }
        out.push(TailSpec {
            selector,
            kind,
            wanted,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::lay_out;

    #[test]
    fn the_tails_cover_every_job_and_all_kinds() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (_, specs) = lay_out(dir.path()).expect("the layout");
        let tails = tail_specs(64, &specs).expect("tail specs");
        assert_eq!(tails.iter().filter(|t| t.kind == "all").count(), 1);
        for kind in ["job", "instance", "glob"] {
            assert!(tails.iter().any(|t| t.kind == kind), "{kind}");
        }
        // The globs other than `*` cover every file between them.
        for f in 0..specs.len() {
            assert!(tails.iter().any(|t| t.kind == "glob" && t.wanted[f]));
        }
        let inst = tails
            .iter()
            .find(|t| t.kind == "instance")
            .expect("an instance tail");
        assert_eq!(inst.wanted.iter().filter(|w| **w).count(), 4);
    }
}
