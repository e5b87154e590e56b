//! The index's query language: the terms a block must hold to be read,
//! as an AND/OR formula. The search planner (`search/plan.rs`) writes it
//! from a pattern; [`super::Partition::candidate_blocks`] evaluates it on
//! each segment's term dictionary.

/// Index terms a block must hold, as an AND/OR formula.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TermNeed {
    /// The index cannot narrow: every block is a candidate.
    Any,
    /// The block holds a term that this matches (one of them).
    Term(Vec<TermMatch>),
    All(Vec<TermNeed>),
    OneOf(Vec<TermNeed>),
}

impl TermNeed {
    pub fn all(parts: Vec<TermNeed>) -> TermNeed {
        let mut parts: Vec<TermNeed> = parts.into_iter().filter(|n| *n != TermNeed::Any).collect();
        match parts.len() {
            0 => TermNeed::Any,
            1 => parts.remove(0),
            _ => TermNeed::All(parts),
        }
    }

    pub fn one_of(mut parts: Vec<TermNeed>) -> TermNeed {
        if parts.is_empty() || parts.contains(&TermNeed::Any) {
            return TermNeed::Any;
        }
        if parts.len() == 1 {
            return parts.remove(0);
        }
        TermNeed::OneOf(parts)
    }
}

/// How a term of the dictionary is matched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TermMatch {
    Exact(String),
    Prefix(String),
    Suffix(String),
    Contains(String),
}
