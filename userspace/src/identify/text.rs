//! Bounded, inert text from hostile bytes.
//!
//! Devices name themselves with whatever bytes they like. We keep what they
//! sent (HTML stays literal: escaping is the UI's job, and text is only ever
//! data here) but bound its length and replace control characters, which
//! could rewrite a terminal running `iot-inspector devices`.

/// Longest text kept from one field (hostname, TXT value, header ...).
pub const MAX_TEXT: usize = 256;

/// Decodes `bytes` as UTF-8 (lossily), replaces control characters with
/// U+FFFD and truncates to at most `max` bytes on a character boundary.
/// Adds one to `truncated` when the input was cut.
pub fn bounded(bytes: &[u8], max: usize, truncated: &mut u64) -> String {
    // Decode at most a little more than `max` bytes: no point in decoding
    // 10 kB we are about to drop.
    let cut = bytes.len() > max;
    let window = &bytes[..bytes.len().min(max.saturating_add(4))];
    let decoded = String::from_utf8_lossy(window);
    let mut out = String::with_capacity(max.min(decoded.len()));
    let mut stopped = false;
    for c in decoded.chars() {
        let c = if c.is_control() { '\u{FFFD}' } else { c };
        if out.len() + c.len_utf8() > max {
            stopped = true;
            break;
        }
        out.push(c);
    }
    if cut || stopped {
        *truncated += 1;
    }
    out
}

/// [`bounded`] for text that is already a `str`.
pub fn bounded_str(s: &str, max: usize, truncated: &mut u64) -> String {
    bounded(s.as_bytes(), max, truncated)
}

/// Lower-case hex with colons (`01:aa:bb`), of at most `max_bytes` bytes.
pub fn hex(bytes: &[u8], max_bytes: usize, truncated: &mut u64) -> String {
    if bytes.len() > max_bytes {
        *truncated += 1;
    }
    let mut out = String::with_capacity(bytes.len().min(max_bytes) * 3);
    for (i, b) in bytes.iter().take(max_bytes).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Pushes `item` unless it is already there or `list` holds `cap` items
/// (then counts it as truncated).
pub fn push_bounded(list: &mut Vec<String>, item: String, cap: usize, truncated: &mut u64) {
    if item.is_empty() || list.contains(&item) {
        return;
    }
    if list.len() >= cap {
        *truncated += 1;
        return;
    }
    list.push(item);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_html_literal_and_replaces_controls() {
        let mut t = 0;
        let s = bounded(b"<img src=x onerror=alert(1)>\x1b[31m\x00", 256, &mut t);
        assert_eq!(s, "<img src=x onerror=alert(1)>\u{FFFD}[31m\u{FFFD}");
        assert_eq!(t, 0);
    }

    #[test]
    fn truncates_on_char_boundary_and_counts() {
        let mut t = 0;
        let long = "é".repeat(10_000);
        let s = bounded(long.as_bytes(), 5, &mut t);
        assert_eq!(s, "éé");
        assert_eq!(t, 1);
        let s = bounded(&[0xff, b'a'], 8, &mut t);
        assert_eq!(s, "\u{FFFD}a");
        assert_eq!(t, 1);
    }

    #[test]
    fn hex_and_lists_are_capped() {
        let mut t = 0;
        assert_eq!(hex(&[1, 0xab, 2], 2, &mut t), "01:ab");
        assert_eq!(t, 1);
        let mut list = Vec::new();
        for i in 0..5 {
            push_bounded(&mut list, format!("x{i}"), 3, &mut t);
        }
        push_bounded(&mut list, "x0".into(), 3, &mut t);
        assert_eq!(list, ["x0", "x1", "x2"]);
        assert_eq!(t, 3);
    }
}
