//! Control characters from the inputs kept off the terminal: an interface name may hold
//! ESC, a pod's log any byte. The text view shows them escaped; a JSON line goes out with
//! them as JSON escapes (the same value).
use std::{borrow::Cow, fmt::Write};

/// `s` with every control character (C0, DEL, C1) in a visible form: `\x1b`, `\x7f`,
/// `\u{9b}`. Text without them comes back as it is.
pub(super) fn text(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match u32::from(c) {
            n @ (0..=0x1f | 0x7f) => {
                let _ = write!(out, "\\x{n:02x}");
            }
            n @ 0x80..=0x9f => {
                let _ = write!(out, "\\u{{{n:x}}}");
            }
            _ => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A valid JSON text with no raw control character: inside strings the ones JSON lets
/// through raw (DEL, C1) become `\u` escapes, outside them the whitespace ones (tab, CR)
/// become spaces. The value stays the same; text without them comes back as it is.
pub(super) fn json(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let (mut in_string, mut escaped) = (false, false);
    for c in s.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            } else if c.is_control() {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
                continue;
            }
        } else if c == '"' {
            in_string = true;
        } else if c.is_control() {
            out.push(' ');
            continue;
        }
        out.push(c);
    }
    Cow::Owned(out)
}
