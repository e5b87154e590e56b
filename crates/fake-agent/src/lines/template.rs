//! One template line cut into literal text and numbers, and how a number
//! is written again after it moved: with its width kept (leading zeros
//! where the template had them), so a timestamp stays a timestamp.

/// A line cut into literal text and numbers.
pub(crate) struct Template {
    pub(crate) segs: Vec<Seg>,
}

pub(crate) enum Seg {
    Text(Vec<u8>),
    Num {
        value: u64,
        width: u32,
        padded: bool,
    },
}

impl Template {
    pub(crate) fn parse(line: &[u8]) -> Template {
        let mut segs = Vec::new();
        let mut i = 0;
        while i < line.len() {
            let start = i;
            let digits = line[i].is_ascii_digit();
            while i < line.len() && line[i].is_ascii_digit() == digits {
                i += 1;
            }
            let run = &line[start..i];
            // Up to 18 digits fit a u64 with room for the steps.
            if digits && run.len() <= 18 {
                let value = run.iter().fold(0u64, |v, d| v * 10 + u64::from(d - b'0'));
                segs.push(Seg::Num {
                    value,
                    width: run.len() as u32,
                    padded: run[0] == b'0' || run.len() <= 2,
                });
            } else {
                match segs.last_mut() {
                    Some(Seg::Text(t)) => t.extend_from_slice(run),
                    _ => segs.push(Seg::Text(run.to_vec())),
                }
            }
        }
        Template { segs }
    }
}

/// splitmix64: a good 64-bit mix for deriving per-number steps from seeds.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub(crate) fn push_number(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

pub(crate) fn push_padded(out: &mut Vec<u8>, v: u64, width: u32) {
    let start = out.len();
    push_number(out, v);
    let len = (out.len() - start) as u32;
    if len < width {
        let pad = (width - len) as usize;
        out.splice(start..start, std::iter::repeat_n(b'0', pad));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_keeps_leading_zeros() {
        let mut out = Vec::new();
        push_padded(&mut out, 7, 3);
        push_number(&mut out, 0);
        push_number(&mut out, 1234);
        assert_eq!(out, b"00701234");
    }
}
