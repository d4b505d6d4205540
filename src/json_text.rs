//! JSON strings written by hand, byte for byte as serde_json writes them, for the two texts
//! written on every request: the AdmissionReview response and the decision's log line.
//!
//! serde_json escapes a byte at a time; a denial's message is a few hundred bytes of which none
//! needs escaping, so this looks at eight bytes at a time and copies the runs between escapes.

/// Appends `s` to `out` as a JSON string (quotes included), escaped as serde_json escapes it:
/// `"` and `\`, the short forms `\b \f \n \r \t`, and `\u00XX` for the other control characters.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    let mut at = 0;
    while let Some(i) = next_escape(bytes, at) {
        out.extend_from_slice(&bytes[copied..i]);
        push_escape(out, bytes[i]);
        copied = i + 1;
        at = i + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

const ONES: u64 = u64::MAX / 255;
const HIGHS: u64 = ONES * 0x80;

/// Whether any of the eight bytes of `w` is a control character, `"` or `\`.
fn any_to_escape(w: u64) -> bool {
    let zero_in = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS != 0;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGHS != 0;
    below_space || zero_in(w ^ (ONES * u64::from(b'"'))) || zero_in(w ^ (ONES * u64::from(b'\\')))
}

fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// The index of the first byte from `from` on that needs an escape.
fn next_escape(bytes: &[u8], mut from: usize) -> Option<usize> {
    while let Some(chunk) = bytes.get(from..from + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        if any_to_escape(w) {
            break;
        }
        from += 8;
    }
    bytes[from..].iter().position(|&b| needs_escape(b)).map(|i| from + i)
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ours(s: &str) -> String {
        let mut out = Vec::new();
        push_str(&mut out, s);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn every_ascii_character_at_every_offset_in_a_word_is_escaped_as_serde_json_does() {
        for c in 0..=0x7fu8 {
            for pad in 0..17 {
                let s = format!("{}{}{}", "a".repeat(pad), c as char, "é".repeat(pad % 5));
                assert_eq!(ours(&s), serde_json::to_string(&s).unwrap(), "{c:#x} after {pad}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_text_is_written_as_serde_json_writes_it(s in any::<String>(), t in "[ -~\"\\\\\n\t\u{1}-\u{1f}é€]{0,80}") {
            prop_assert_eq!(ours(&s), serde_json::to_string(&s).unwrap());
            prop_assert_eq!(ours(&t), serde_json::to_string(&t).unwrap());
        }
    }
}
