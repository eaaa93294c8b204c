//! Go's `encoding/json` syntax checker (Go 1.19, the version etcd 3.4.23 is built with), byte by byte: the same
//! states, the same moment of failure, the same message for each failure.
//!
//! Two callers, as in Go: [`read_value`] is `json.Decoder` (grpc-gateway reads a request body with one; it stops
//! at the end of the first value and says "unexpected EOF" for a truncated one), [`check_valid`] is the check
//! `json.Unmarshal` runs over a whole input first ("unexpected end of JSON input", "... after top-level value").

use super::golang::quote_char;
use super::GatewayError;

/// Go's limit on nested arrays and objects (`maxNestingDepth`).
const MAX_DEPTH: usize = 10_000;

/// What a byte did to the value being scanned. Go tells more kinds apart; the callers here need only these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Continue,
    /// The byte closed an object or array.
    Close,
    /// The value ended just before this byte.
    End,
    Error,
}

/// Where the scanner is inside a value; each state is a function of Go's scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    BeginValueOrEmpty,
    BeginValue,
    BeginStringOrEmpty,
    BeginString,
    EndValue,
    EndTop,
    InString,
    InStringEsc,
    /// Inside `\u`: this many hex digits read so far.
    InStringEscU(u8),
    Neg,
    One,
    Zero,
    Dot,
    Dot0,
    E,
    ESign,
    E0,
    /// Inside a literal (`true`, `false`, `null`): the literal and how many bytes of it were read.
    Literal(&'static str, usize),
    Error,
}

/// What an open array or object waits for next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse {
    ObjectKey,
    ObjectValue,
    ArrayValue,
}

#[derive(Debug)]
struct Scanner {
    state: State,
    stack: Vec<Parse>,
    end_top: bool,
    err: Option<String>,
}

fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

impl Scanner {
    fn new() -> Self {
        Self { state: State::BeginValue, stack: Vec::new(), end_top: false, err: None }
    }

    fn error(&mut self, c: u8, context: &str) -> Op {
        self.state = State::Error;
        self.err = Some(format!("invalid character {} {context}", quote_char(c)));
        Op::Error
    }

    fn push(&mut self, c: u8, p: Parse) -> Op {
        self.stack.push(p);
        if self.stack.len() <= MAX_DEPTH {
            Op::Continue
        } else {
            self.error(c, "exceeded max depth")
        }
    }

    fn step(&mut self, c: u8) -> Op {
        match self.state {
            State::BeginValueOrEmpty => {
                if is_space(c) {
                    Op::Continue
                } else if c == b']' {
                    self.end_value(c)
                } else {
                    self.begin_value(c)
                }
            }
            State::BeginValue => self.begin_value(c),
            State::BeginStringOrEmpty => {
                if is_space(c) {
                    Op::Continue
                } else if c == b'}' {
                    if let Some(top) = self.stack.last_mut() {
                        *top = Parse::ObjectValue;
                    }
                    self.end_value(c)
                } else {
                    self.begin_string(c)
                }
            }
            State::BeginString => self.begin_string(c),
            State::EndValue => self.end_value(c),
            State::EndTop => self.end_top(c),
            State::InString => {
                match c {
                    b'"' => self.state = State::EndValue,
                    b'\\' => self.state = State::InStringEsc,
                    _ if c < 0x20 => return self.error(c, "in string literal"),
                    _ => {}
                }
                Op::Continue
            }
            State::InStringEsc => {
                match c {
                    b'b' | b'f' | b'n' | b'r' | b't' | b'\\' | b'/' | b'"' => self.state = State::InString,
                    b'u' => self.state = State::InStringEscU(0),
                    _ => return self.error(c, "in string escape code"),
                }
                Op::Continue
            }
            State::InStringEscU(n) => {
                if !c.is_ascii_hexdigit() {
                    return self.error(c, "in \\u hexadecimal character escape");
                }
                self.state = if n == 3 { State::InString } else { State::InStringEscU(n + 1) };
                Op::Continue
            }
            State::Neg => match c {
                b'0' => self.go(State::Zero),
                b'1'..=b'9' => self.go(State::One),
                _ => self.error(c, "in numeric literal"),
            },
            State::One => {
                if c.is_ascii_digit() {
                    Op::Continue
                } else {
                    self.zero(c)
                }
            }
            State::Zero => self.zero(c),
            State::Dot => {
                if c.is_ascii_digit() {
                    self.go(State::Dot0)
                } else {
                    self.error(c, "after decimal point in numeric literal")
                }
            }
            State::Dot0 => match c {
                b'0'..=b'9' => Op::Continue,
                b'e' | b'E' => self.go(State::E),
                _ => self.end_value(c),
            },
            State::E => {
                if c == b'+' || c == b'-' {
                    self.go(State::ESign)
                } else {
                    self.e_sign(c)
                }
            }
            State::ESign => self.e_sign(c),
            State::E0 => {
                if c.is_ascii_digit() {
                    Op::Continue
                } else {
                    self.end_value(c)
                }
            }
            State::Literal(word, read) => {
                let want = word.as_bytes()[read];
                if c != want {
                    let context = format!("in literal {word} (expecting {})", quote_char(want));
                    return self.error(c, &context);
                }
                self.state =
                    if read + 1 == word.len() { State::EndValue } else { State::Literal(word, read + 1) };
                Op::Continue
            }
            State::Error => Op::Error,
        }
    }

    fn go(&mut self, s: State) -> Op {
        self.state = s;
        Op::Continue
    }

    fn begin_value(&mut self, c: u8) -> Op {
        match c {
            _ if is_space(c) => Op::Continue,
            b'{' => {
                self.state = State::BeginStringOrEmpty;
                self.push(c, Parse::ObjectKey)
            }
            b'[' => {
                self.state = State::BeginValueOrEmpty;
                self.push(c, Parse::ArrayValue)
            }
            b'"' => self.go(State::InString),
            b'-' => self.go(State::Neg),
            b'0' => self.go(State::Zero),
            b'1'..=b'9' => self.go(State::One),
            b't' => self.go(State::Literal("true", 1)),
            b'f' => self.go(State::Literal("false", 1)),
            b'n' => self.go(State::Literal("null", 1)),
            _ => self.error(c, "looking for beginning of value"),
        }
    }

    fn begin_string(&mut self, c: u8) -> Op {
        match c {
            _ if is_space(c) => Op::Continue,
            b'"' => self.go(State::InString),
            _ => self.error(c, "looking for beginning of object key string"),
        }
    }

    fn zero(&mut self, c: u8) -> Op {
        match c {
            b'.' => self.go(State::Dot),
            b'e' | b'E' => self.go(State::E),
            _ => self.end_value(c),
        }
    }

    fn e_sign(&mut self, c: u8) -> Op {
        if c.is_ascii_digit() {
            self.go(State::E0)
        } else {
            self.error(c, "in exponent of numeric literal")
        }
    }

    fn end_value(&mut self, c: u8) -> Op {
        let Some(&top) = self.stack.last() else {
            self.state = State::EndTop;
            self.end_top = true;
            return self.end_top(c);
        };
        if is_space(c) {
            self.state = State::EndValue;
            return Op::Continue;
        }
        match (top, c) {
            (Parse::ObjectKey, b':') => {
                self.set_top(Parse::ObjectValue);
                self.go(State::BeginValue)
            }
            (Parse::ObjectKey, _) => self.error(c, "after object key"),
            (Parse::ObjectValue, b',') => {
                self.set_top(Parse::ObjectKey);
                self.go(State::BeginString)
            }
            (Parse::ObjectValue, b'}') | (Parse::ArrayValue, b']') => {
                self.stack.pop();
                if self.stack.is_empty() {
                    self.state = State::EndTop;
                    self.end_top = true;
                } else {
                    self.state = State::EndValue;
                }
                Op::Close
            }
            (Parse::ObjectValue, _) => self.error(c, "after object key:value pair"),
            (Parse::ArrayValue, b',') => self.go(State::BeginValue),
            (Parse::ArrayValue, _) => self.error(c, "after array element"),
        }
    }

    fn set_top(&mut self, p: Parse) {
        if let Some(top) = self.stack.last_mut() {
            *top = p;
        }
    }

    /// After the top-level value: Go records an error for a non-space byte but still says the value ended.
    fn end_top(&mut self, c: u8) -> Op {
        if !is_space(c) && self.err.is_none() {
            self.error(c, "after top-level value");
        }
        Op::End
    }

    fn take_err(&mut self) -> GatewayError {
        GatewayError::Syntax(self.err.take().unwrap_or_default())
    }
}

/// `json.Decoder.Decode`'s reading: the first JSON value in `input[from..]`, without the spaces around it, and
/// the offset where the next read starts. `Ok(None)` is Go's `io.EOF`: nothing but spaces is left.
pub(crate) fn read_value(input: &[u8], from: usize) -> Result<Option<(usize, usize)>, GatewayError> {
    let rest = input.get(from..).unwrap_or_default();
    let Some(start) = rest.iter().position(|&c| !is_space(c)) else {
        return Ok(None);
    };
    let mut s = Scanner::new();
    for (i, &c) in rest.iter().enumerate().skip(start) {
        match s.step(c) {
            Op::End => return Ok(Some((from + start, from + i))),
            Op::Close if s.step(b' ') == Op::End => return Ok(Some((from + start, from + i + 1))),
            Op::Error => return Err(s.take_err()),
            Op::Close | Op::Continue => {}
        }
    }
    if s.step(b' ') == Op::End {
        Ok(Some((from + start, input.len())))
    } else {
        Err(GatewayError::UnexpectedEof)
    }
}

/// `json.Unmarshal`'s first step: the whole input must be exactly one JSON value (spaces around it allowed).
pub(crate) fn check_valid(data: &[u8]) -> Result<(), GatewayError> {
    let mut s = Scanner::new();
    for &c in data {
        if s.step(c) == Op::Error {
            return Err(s.take_err());
        }
    }
    if s.err.is_some() {
        return Err(s.take_err());
    }
    if s.end_top {
        return Ok(());
    }
    s.step(b' ');
    if s.end_top {
        return Ok(());
    }
    if s.err.is_none() {
        s.err = Some("unexpected end of JSON input".to_string());
    }
    Err(s.take_err())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(data: &str) -> String {
        match check_valid(data.as_bytes()) {
            Ok(()) => "ok".to_string(),
            Err(e) => e.to_string(),
        }
    }

    fn read(data: &str) -> String {
        match read_value(data.as_bytes(), 0) {
            Ok(Some((a, b))) => format!("value {}", &data[a..b]),
            Ok(None) => "EOF".to_string(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn syntax_messages_are_go_scanner_messages() {
        for (input, want) in [
            ("x", "invalid character 'x' looking for beginning of value"),
            ("{x", "invalid character 'x' looking for beginning of object key string"),
            (r#"{"a" 1"#, "invalid character '1' after object key"),
            (r#"{"a":1 2"#, "invalid character '2' after object key:value pair"),
            ("[1 2", "invalid character '2' after array element"),
            ("\"a\u{1}\"", "invalid character '\\x01' in string literal"),
            (r#""\x""#, "invalid character 'x' in string escape code"),
            (r#""\u12g4""#, "invalid character 'g' in \\u hexadecimal character escape"),
            ("-x", "invalid character 'x' in numeric literal"),
            ("1.x", "invalid character 'x' after decimal point in numeric literal"),
            ("1ex", "invalid character 'x' in exponent of numeric literal"),
            ("tx", "invalid character 'x' in literal true (expecting 'r')"),
            ("fals1", "invalid character '1' in literal false (expecting 'e')"),
            ("nul", "invalid character ' ' in literal null (expecting 'l')"),
            ("1 x", "invalid character 'x' after top-level value"),
            ("01", "invalid character '1' after top-level value"),
            ("-", "invalid character ' ' in numeric literal"),
            ("", "unexpected end of JSON input"),
            ("{\"a\":", "unexpected end of JSON input"),
            ("'", "invalid character '\\'' looking for beginning of value"),
            ("[\"]", "unexpected end of JSON input"),
            (" [1, {\"a\": [true, false, null, -0.5e+3]}] ", "ok"),
        ] {
            assert_eq!(valid(input), want, "input {input:?}");
        }
    }

    #[test]
    fn decoder_reads_the_first_value_only() {
        assert_eq!(read(" {\"a\":1} x"), "value {\"a\":1}");
        assert_eq!(read("12 x"), "value 12");
        assert_eq!(read("12x"), "value 12");
        assert_eq!(read("12"), "value 12");
        assert_eq!(read("[1]]"), "value [1]");
        assert_eq!(read(" \n\t"), "EOF");
        assert_eq!(read(""), "EOF");
        assert_eq!(read("{\"a\":"), "unexpected EOF");
        assert_eq!(read("-"), "unexpected EOF");
        assert_eq!(read("{\"a\" x"), "invalid character 'x' after object key");
    }

    #[test]
    fn nesting_is_bounded_as_go_bounds_it() {
        let deep = "[".repeat(MAX_DEPTH + 1);
        assert_eq!(valid(&deep), "invalid character '[' exceeded max depth");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(valid(&ok), "ok");
    }
}
