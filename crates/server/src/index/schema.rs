//! The index schema: one tantivy document per sealed block, its fast
//! fields (what a [`super::BlockRef`] is read from) and its distinct tokens.

use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING,
};

/// The index schema's fields.
#[derive(Clone, Copy)]
pub(super) struct Fields {
    pub(super) source: Field,
    pub(super) job: Field,
    pub(super) cluster: Field,
    pub(super) host: Field,
    pub(super) process: Field,
    pub(super) stream: Field,
    pub(super) instance: Field,
    pub(super) t_min: Field,
    pub(super) t_max: Field,
    pub(super) off_start: Field,
    pub(super) off_end: Field,
    pub(super) n_lines: Field,
    pub(super) text_bytes: Field,
    pub(super) data_pos: Field,
    pub(super) data_len: Field,
    pub(super) tokens: Field,
}

pub(super) fn schema() -> (Schema, Fields) {
    let mut b = Schema::builder();
    // Only the presence of a token in a block matters: no frequencies, no
    // positions, nothing stored (the text lives in blocks.dat). The value is
    // already cut and lowercased (`tokens::distinct_tokens`), so tantivy
    // only splits it on spaces.
    let tokens = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("whitespace")
            .set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        source: b.add_u64_field("source", INDEXED | FAST),
        job: b.add_text_field("job", STRING | FAST),
        cluster: b.add_text_field("cluster", STRING | FAST),
        host: b.add_text_field("host", STRING | FAST),
        process: b.add_text_field("process", STRING | FAST),
        stream: b.add_text_field("stream", STRING | FAST),
        instance: b.add_u64_field("instance", INDEXED | FAST),
        t_min: b.add_i64_field("t_min", INDEXED | FAST),
        t_max: b.add_i64_field("t_max", INDEXED | FAST),
        off_start: b.add_u64_field("off_start", FAST),
        off_end: b.add_u64_field("off_end", FAST),
        n_lines: b.add_u64_field("n_lines", FAST),
        text_bytes: b.add_u64_field("text_bytes", FAST),
        data_pos: b.add_u64_field("data_pos", FAST),
        data_len: b.add_u64_field("data_len", FAST),
        tokens: b.add_text_field("tokens", tokens),
    };
    (b.build(), fields)
}
