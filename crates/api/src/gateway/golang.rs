//! Go's standard library texts, as etcd's gateway produces them: how `encoding/json` quotes a bad byte
//! (`quoteChar`), `%q` (`strconv.Quote`), how it unquotes a JSON string (invalid UTF-8 becomes U+FFFD byte by
//! byte), `base64.StdEncoding.Decode` with its error offsets, and how `json.Marshal` writes a string (HTML-safe).

use super::GatewayError;

/// Go's `unicode.IsPrint`, exact for ASCII and Latin-1 (all a single bad byte can be quoted as). Above that it is
/// close, not exact: format, separator and private-use code points are not printable, unassigned ones count as
/// printable (Go knows the Unicode tables; we only meet these in `%q` of an unknown enum name).
fn is_print(c: char) -> bool {
    let u = u32::from(c);
    match u {
        0x20..=0x7e => true,
        0..=0x1f | 0x7f..=0xa0 | 0xad => false,
        0xa1..=0xff => true,
        0x0600..=0x0605
        | 0x061c
        | 0x06dd
        | 0x070f
        | 0x1680
        | 0x180e
        | 0x2000..=0x200f
        | 0x2028..=0x202f
        | 0x205f..=0x2064
        | 0x2066..=0x206f
        | 0x3000
        | 0xe000..=0xf8ff
        | 0xfeff
        | 0xfff9..=0xfffb
        | 0xe0001
        | 0xe0020..=0xe007f
        | 0xf0000.. => false,
        _ => (u & 0xfffe) != 0xfffe,
    }
}

/// `strconv.Quote`'s escaping of one rune inside `quote` (`"` or `'`).
fn push_escaped(out: &mut String, c: char, quote: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        _ if c == quote => {
            out.push('\\');
            out.push(c);
        }
        _ if is_print(c) => out.push(c),
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        _ if u32::from(c) < 0x20 || c == '\u{7f}' => out.push_str(&format!("\\x{:02x}", u32::from(c))),
        _ if u32::from(c) < 0x10000 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
        _ => out.push_str(&format!("\\U{:08x}", u32::from(c))),
    }
}

/// `encoding/json`'s `quoteChar`: how a syntax error names the offending byte (`'x'`, `'\''`, `'"'`, `'\x01'`).
/// Go quotes the byte as the rune of the same number, so 0xc3 is `'Ã'`.
pub(crate) fn quote_char(c: u8) -> String {
    match c {
        b'\'' => "'\\''".to_string(),
        b'"' => "'\"'".to_string(),
        _ => {
            let mut out = String::from("'");
            push_escaped(&mut out, char::from(c), '"');
            out.push('\'');
            out
        }
    }
}

/// The length of the valid UTF-8 character at the start of `s`, as Go's `utf8.DecodeRune` accepts it, or `None`.
fn utf8_len(s: &[u8]) -> Option<usize> {
    let n = match s.first()? {
        0..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return None,
    };
    let bytes = s.get(..n)?;
    std::str::from_utf8(bytes).ok().map(|_| n)
}

/// `fmt`'s `%q` of a byte string (`strconv.Quote`): invalid UTF-8 bytes as `\xff`.
pub fn quote(s: &[u8]) -> String {
    let mut out = String::from("\"");
    let mut i = 0;
    while i < s.len() {
        match utf8_len(&s[i..]).and_then(|n| std::str::from_utf8(&s[i..i + n]).ok().map(|t| (n, t))) {
            Some((n, t)) => {
                for c in t.chars() {
                    push_escaped(&mut out, c, '"');
                }
                i += n;
            }
            None => {
                out.push_str(&format!("\\x{:02x}", s[i]));
                i += 1;
            }
        }
    }
    out.push('"');
    out
}

/// Four hex digits after `\u` at the start of `s`, as Go's `getu4`.
fn u4(s: &[u8]) -> Option<u32> {
    let digits = s.strip_prefix(b"\\u")?.get(..4)?;
    u32::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok()
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// `encoding/json`'s `unquote` of a string literal that the scanner accepted (quotes included): escapes resolved,
/// surrogate pairs joined, a lone surrogate and every byte of invalid UTF-8 replaced by U+FFFD. Always UTF-8.
pub(crate) fn unquote(literal: &[u8]) -> Vec<u8> {
    let s = literal.get(1..literal.len().saturating_sub(1)).unwrap_or_default();
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            let Some(&e) = s.get(i + 1) else { break };
            let simple = match e {
                b'b' => Some(b'\x08'),
                b'f' => Some(b'\x0c'),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                b'"' | b'\\' | b'/' | b'\'' => Some(e),
                _ => None,
            };
            if let Some(b) = simple {
                out.push(b);
                i += 2;
                continue;
            }
            let Some(r) = u4(&s[i..]) else { break };
            i += 6;
            let c = if (0xd800..0xe000).contains(&r) {
                match u4(&s[i..]) {
                    Some(r2) if r < 0xdc00 && (0xdc00..0xe000).contains(&r2) => {
                        i += 6;
                        char::from_u32(0x10000 + ((r - 0xd800) << 10) + (r2 - 0xdc00))
                    }
                    _ => None,
                }
            } else {
                char::from_u32(r)
            };
            push_char(&mut out, c.unwrap_or(char::REPLACEMENT_CHARACTER));
            continue;
        }
        match utf8_len(&s[i..]) {
            Some(n) => {
                out.extend_from_slice(&s[i..i + n]);
                i += n;
            }
            None => {
                push_char(&mut out, char::REPLACEMENT_CHARACTER);
                i += 1;
            }
        }
    }
    out
}

fn base64_value(c: u8) -> Option<u32> {
    let v = match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    };
    Some(u32::from(v))
}

fn skip_newlines(src: &[u8], mut i: usize) -> usize {
    while i < src.len() && matches!(src[i], b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// Go's `base64.StdEncoding.Decode`: padding required, `\r` and `\n` skipped anywhere, and the same offset in
/// "illegal base64 data at input byte N" for each kind of mistake.
pub(crate) fn base64_decode(src: &[u8]) -> Result<Vec<u8>, GatewayError> {
    let mut out = Vec::with_capacity(src.len() / 4 * 3);
    let mut si = 0;
    while si < src.len() {
        // One quantum: up to four symbols, newlines not counted.
        let mut vals = [0u32; 4];
        let mut j = 0;
        let mut trailing = None;
        while j < 4 {
            if si == src.len() {
                if j == 0 {
                    return Ok(out);
                }
                return Err(GatewayError::Base64(si - j));
            }
            let c = src[si];
            si += 1;
            if let Some(v) = base64_value(c) {
                vals[j] = v;
                j += 1;
                continue;
            }
            if c == b'\n' || c == b'\r' {
                continue;
            }
            if c != b'=' || j < 2 {
                return Err(GatewayError::Base64(si - 1));
            }
            if j == 2 {
                // "==" expected: the first '=' is read, the second may follow newlines.
                si = skip_newlines(src, si);
                if si == src.len() {
                    return Err(GatewayError::Base64(src.len()));
                }
                if src[si] != b'=' {
                    return Err(GatewayError::Base64(si - 1));
                }
                si += 1;
            }
            si = skip_newlines(src, si);
            if si < src.len() {
                trailing = Some(si);
            }
            break;
        }
        let v = vals[0] << 18 | vals[1] << 12 | vals[2] << 6 | vals[3];
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..j - 1]);
        if let Some(at) = trailing {
            return Err(GatewayError::Base64(at));
        }
    }
    Ok(out)
}

/// A string as Go's `json.Marshal` writes it: `<`, `>`, `&`, U+2028 and U+2029 as `\u` escapes, control
/// characters as `\n`, `\r`, `\t` or `\u00XX`.
pub fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            _ if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            _ => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_char_names_bytes_as_go() {
        assert_eq!(quote_char(b'x'), "'x'");
        assert_eq!(quote_char(b'\''), "'\\''");
        assert_eq!(quote_char(b'"'), "'\"'");
        assert_eq!(quote_char(b'\\'), "'\\\\'");
        assert_eq!(quote_char(1), "'\\x01'");
        assert_eq!(quote_char(b'\n'), "'\\n'");
        assert_eq!(quote_char(0x7f), "'\\x7f'");
        assert_eq!(quote_char(0x80), "'\\u0080'");
        assert_eq!(quote_char(0xa0), "'\\u00a0'");
        assert_eq!(quote_char(0xc3), "'Ã'");
        assert_eq!(quote_char(0xff), "'ÿ'");
    }

    #[test]
    fn quote_is_go_percent_q() {
        assert_eq!(quote(b"X"), "\"X\"");
        assert_eq!(quote(b"\\u0041"), "\"\\\\u0041\"");
        assert_eq!(quote(b"a\"b"), "\"a\\\"b\"");
        assert_eq!(quote(b"\xff\xe2\x82"), "\"\\xff\\xe2\\x82\"");
        assert_eq!(quote("é\u{200b}".as_bytes()), "\"é\\u200b\"");
    }

    #[test]
    fn unquote_resolves_escapes_and_replaces_bad_utf8_per_byte() {
        assert_eq!(unquote(br#""a\n\u0041\/""#), b"a\nA/");
        assert_eq!(unquote(br#""\ud83d\ude00""#), "😀".as_bytes());
        assert_eq!(unquote(br#""\ud83dx""#), "\u{fffd}x".as_bytes());
        assert_eq!(unquote(br#""\ud83d\u0041""#), "\u{fffd}A".as_bytes());
        assert_eq!(unquote(b"\"\xe2\x82\""), "\u{fffd}\u{fffd}".as_bytes());
        assert_eq!(unquote("\"é\"".as_bytes()), "é".as_bytes());
    }

    fn b64(s: &str) -> Result<Vec<u8>, String> {
        base64_decode(s.as_bytes()).map_err(|e| e.to_string())
    }

    #[test]
    fn base64_is_go_std_encoding() {
        assert_eq!(b64("YWJj"), Ok(b"abc".to_vec()));
        assert_eq!(b64("YQ=="), Ok(b"a".to_vec()));
        assert_eq!(b64("YWI="), Ok(b"ab".to_vec()));
        assert_eq!(b64("Y\nQ=\r\n="), Ok(b"a".to_vec()));
        assert_eq!(b64(""), Ok(Vec::new()));
        assert_eq!(b64("YR=="), Ok(b"a".to_vec()));
        let err = |n: usize| Err(format!("illegal base64 data at input byte {n}"));
        assert_eq!(b64("YQ"), err(0));
        assert_eq!(b64("YQ="), err(3));
        assert_eq!(b64("a b"), err(1));
        assert_eq!(b64("YQ==YQ=="), err(4));
        assert_eq!(b64("YQ-_"), err(2));
        assert_eq!(b64("Y==="), err(1));
        assert_eq!(b64("YQ=x"), err(2));
        assert_eq!(b64("YWJjY"), err(4));
        assert_eq!(b64("="), err(0));
    }

    #[test]
    fn json_strings_are_html_safe_as_go() {
        let mut s = String::new();
        push_json_string(&mut s, "'<' & \"x\"\u{1}\n\u{2028}é");
        assert_eq!(s, r#""'\u003c' \u0026 \"x\"\u0001\n\u2028é""#);
    }
}
