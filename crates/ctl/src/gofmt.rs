//! Go's formatting rules that etcdctl's output depends on, so cairnctl prints the same bytes: `%q` quoting
//! (strconv.Quote), `time.Duration` parsing and printing, go-humanize's `Bytes`, `%v` of a byte-string slice.

use std::fmt::Write;
use std::time::Duration;

/// `fmt.Sprintf("%q", s)` of a Go string holding these bytes: printable runes kept, invalid UTF-8 as `\x..`
/// (the gateway's `strconv.Quote`).
pub fn quote(bytes: &[u8]) -> String {
    cairn_api::gateway::quote(bytes)
}

/// Reads one Go quoted string (`"..."` with escapes, or a raw `` `...` ``) from the start of `s`: the decoded
/// bytes and the rest of `s`.
pub fn unquote_prefix(s: &str) -> Option<(Vec<u8>, &str)> {
    let bytes = s.as_bytes();
    match bytes.first()? {
        b'`' => {
            let end = s[1..].find('`')? + 1;
            Some((s.as_bytes()[1..end].to_vec(), &s[end + 1..]))
        }
        b'"' => {
            let mut out = Vec::new();
            let mut i = 1;
            while i < bytes.len() {
                match bytes[i] {
                    b'"' => return Some((out, &s[i + 1..])),
                    b'\n' => return None,
                    b'\\' => {
                        let (decoded, used) = unescape(&bytes[i + 1..])?;
                        out.extend_from_slice(&decoded);
                        i += 1 + used;
                    }
                    b => {
                        out.push(b);
                        i += 1;
                    }
                }
            }
            None
        }
        _ => None,
    }
}

/// One escape after a backslash: the bytes it stands for and how many input bytes it used.
fn unescape(s: &[u8]) -> Option<(Vec<u8>, usize)> {
    let simple = |b: u8| Some((vec![b], 1));
    let hex = |n: usize| -> Option<u32> {
        let digits = std::str::from_utf8(s.get(1..=n)?).ok()?;
        u32::from_str_radix(digits, 16).ok()
    };
    match *s.first()? {
        b'a' => simple(7),
        b'b' => simple(8),
        b'f' => simple(12),
        b'n' => simple(b'\n'),
        b'r' => simple(b'\r'),
        b't' => simple(b'\t'),
        b'v' => simple(11),
        b'\\' => simple(b'\\'),
        b'"' => simple(b'"'),
        b'\'' => None,
        b'x' => Some((vec![u8::try_from(hex(2)?).ok()?], 3)),
        b'u' => Some((char::from_u32(hex(4)?)?.to_string().into_bytes(), 5)),
        b'U' => Some((char::from_u32(hex(8)?)?.to_string().into_bytes(), 9)),
        b'0'..=b'7' => {
            let digits = std::str::from_utf8(s.get(..3)?).ok()?;
            Some((vec![u8::from_str_radix(digits, 8).ok()?], 3))
        }
        _ => None,
    }
}

/// Go's `time.ParseDuration`: "5s", "1m30s", "250ms", "1.5h".
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let err = || format!("time: invalid duration {}", quote(s.as_bytes()));
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return Err(err());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| err())?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let nanos = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "" => return Err(format!("time: missing unit in duration {}", quote(s.as_bytes()))),
            u => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    quote(u.as_bytes()),
                    quote(s.as_bytes())
                ))
            }
        };
        total += value * nanos;
        rest = &rest[unit_len..];
    }
    if neg {
        return Ok(Duration::ZERO);
    }
    Ok(Duration::from_nanos(total.round() as u64))
}

/// Go's `time.Duration.String()`: "1.752056ms", "2s", "1m30s", "0s".
pub fn duration_string(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", fraction(nanos, 1_000_000));
    }
    let secs = nanos / 1_000_000_000;
    let sub = nanos % 1_000_000_000;
    let s_part = fraction(u128::from((secs % 60) as u64) * 1_000_000_000 + sub, 1_000_000_000);
    let mins = secs / 60;
    if mins == 0 {
        return format!("{s_part}s");
    }
    let hours = mins / 60;
    if hours == 0 {
        return format!("{}m{s_part}s", mins % 60);
    }
    format!("{hours}h{}m{s_part}s", mins % 60)
}

/// `n / unit` with the fraction's trailing zeros dropped.
fn fraction(n: u128, unit: u128) -> String {
    let whole = n / unit;
    let frac = n % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.to_string().len() - 1;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// go-humanize's `Bytes`: SI units, "20 kB", "1.2 MB", "7 B".
pub fn humanize_bytes(s: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if s < 10 {
        return format!("{s} B");
    }
    let e = ((s as f64).ln() / 1000f64.ln()).floor();
    let unit = UNITS[(e as usize).min(UNITS.len() - 1)];
    let val = ((s as f64) / 1000f64.powf(e) * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{} {unit}", go_float(val, 1))
    } else {
        format!("{} {unit}", go_float(val, 0))
    }
}

/// `strconv.FormatFloat(v, 'f', prec, 64)`: Go rounds the exact binary value half to even.
pub fn go_float(v: f64, prec: usize) -> String {
    format!("{v:.prec$}")
}

/// `fmt.Sprintf("%v", []string{...})`: "[a b c]".
pub fn string_slice(items: &[Vec<u8>]) -> String {
    let parts: Vec<String> = items.iter().map(|k| String::from_utf8_lossy(k).into_owned()).collect();
    format!("[{}]", parts.join(" "))
}

/// etcdctl's `--hex` form of bytes: each byte as `\xNN`.
pub fn hex_escaped(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4);
    for b in bytes {
        let _ = write!(out, "\\x{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_as_go() {
        assert_eq!(quote(b"a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(quote(b"\x00\xff"), r#""\x00\xff""#);
        assert_eq!(quote("héllo".as_bytes()), "\"héllo\"");
    }

    #[test]
    fn unquote_go_strings() {
        assert_eq!(unquote_prefix(r#""a\"b" rest"#), Some((b"a\"b".to_vec(), " rest")));
        assert_eq!(unquote_prefix("`raw\\n`x"), Some((b"raw\\n".to_vec(), "x")));
        assert_eq!(unquote_prefix(r#""\x41\u00e9""#).map(|(b, _)| b), Some("Aé".as_bytes().to_vec()));
        assert_eq!(unquote_prefix("'a'"), None);
        assert_eq!(unquote_prefix("\"open"), None);
    }

    #[test]
    fn durations_as_go() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("x").unwrap_err(), "time: invalid duration \"x\"");
        assert_eq!(parse_duration("5").unwrap_err(), "time: missing unit in duration \"5\"");
        assert_eq!(duration_string(Duration::from_nanos(1_752_056)), "1.752056ms");
        assert_eq!(duration_string(Duration::from_secs(2)), "2s");
        assert_eq!(duration_string(Duration::from_millis(90_500)), "1m30.5s");
        assert_eq!(duration_string(Duration::from_micros(15)), "15µs");
        assert_eq!(duration_string(Duration::ZERO), "0s");
    }

    #[test]
    fn humanize_as_go() {
        assert_eq!(humanize_bytes(20480), "20 kB");
        assert_eq!(humanize_bytes(5), "5 B");
        assert_eq!(humanize_bytes(1_234_567), "1.2 MB");
        assert_eq!(humanize_bytes(25_000), "25 kB");
        assert_eq!(humanize_bytes(999), "999 B");
    }

    #[test]
    fn hex_and_slices() {
        assert_eq!(hex_escaped(b"ab"), "\\x61\\x62");
        assert_eq!(string_slice(&[b"a".to_vec(), b"b".to_vec()]), "[a b]");
    }
}
