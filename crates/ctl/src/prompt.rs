//! Password prompts as etcdctl's (bgentry/speakeasy): the prompt on stdout, terminal echo turned off by running
//! `stty` on the inherited stdin, one line read from stdin, echo back on, a newline on stdout.
//!
//! Without a terminal this is speakeasy's sequence exactly: `stty` complains on stderr (twice) and the password
//! is read from stdin all the same, so `printf 'pw\npw\n' | cairnctl user add u` prints what etcdctl prints.
//!
//! On a terminal, the settings are saved (`stty -g`) and restored afterwards, and while the prompt waits the
//! terminal is put in non-canonical mode without echo or signals: echo is off before the prompt shows (nothing
//! typed after seeing it is echoed), Backspace and Ctrl-U edit the line, and Ctrl-C or Ctrl-\ arrive as bytes:
//! the terminal is restored and the process exits with 255, as speakeasy's signal handler does, with no
//! process-wide signal handler left behind for the command that follows.

use std::io::{IsTerminal, Read, Write};
use std::process::{Command, Stdio};

/// A longer line is cut there (a password is never this long; it bounds the read).
const MAX_LINE: usize = 64 * 1024;

const CTRL_C: u8 = 0x03;
const CTRL_D: u8 = 0x04;
const BACKSPACE: u8 = 0x08;
const CTRL_BACKSLASH: u8 = 0x1c;
const CTRL_U: u8 = 0x15;
const DELETE: u8 = 0x7f;

/// Asks for a password; the line read, trimmed as speakeasy trims it.
pub fn ask(prompt: &str) -> Result<String, String> {
    let line = if std::io::stdin().is_terminal() { ask_on_terminal(prompt)? } else { ask_piped(prompt)? };
    let mut out = std::io::stdout();
    let _ = out.write_all(b"\n").and_then(|()| out.flush());
    match line {
        Some(line) => Ok(line.trim().to_owned()),
        None => std::process::exit(255),
    }
}

fn show(prompt: &str) {
    let mut out = std::io::stdout();
    let _ = out.write_all(prompt.as_bytes()).and_then(|()| out.flush());
}

fn echo_off_failed(e: &std::io::Error) -> String {
    format!("failed turning off console echo for password entry:\n\t{e}")
}

fn read_failed(e: &std::io::Error) -> String {
    format!("failed during password entry: {e}")
}

fn ask_piped(prompt: &str) -> Result<Option<String>, String> {
    show(prompt);
    Command::new("stty").arg("-echo").status().map_err(|e| echo_off_failed(&e))?;
    let line = read_line();
    let _ = Command::new("stty").arg("echo").status();
    line.map(Some).map_err(|e| read_failed(&e))
}

/// One line from stdin, as speakeasy reads it: up to "\n" or the end, a trailing "\r" dropped.
fn read_line() -> std::io::Result<String> {
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_LINE {
        if stdin.read(&mut byte)? == 0 || byte[0] == b'\n' {
            break;
        }
        line.push(byte[0]);
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

fn ask_on_terminal(prompt: &str) -> Result<Option<String>, String> {
    let saved = Command::new("stty")
        .arg("-g")
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| echo_off_failed(&e))?;
    let saved = String::from_utf8_lossy(&saved.stdout).trim().to_owned();
    Command::new("stty")
        .args(["-echo", "-isig", "-icanon", "min", "1", "time", "0"])
        .status()
        .map_err(|e| echo_off_failed(&e))?;
    show(prompt);
    let keys = read_keys();
    let restore = if saved.is_empty() { vec!["echo", "isig", "icanon"] } else { vec![saved.as_str()] };
    let _ = Command::new("stty").args(restore).status();
    keys.map_err(|e| read_failed(&e))
}

/// Keys typed up to Enter (or Ctrl-D), with Backspace and Ctrl-U applied; None on Ctrl-C or Ctrl-\.
fn read_keys() -> std::io::Result<Option<String>> {
    let mut stdin = std::io::stdin().lock();
    let mut line: Vec<u8> = Vec::new();
    let mut byte = [0u8; 1];
    while line.len() < MAX_LINE {
        if stdin.read(&mut byte)? == 0 {
            break;
        }
        match byte[0] {
            b'\n' | b'\r' | CTRL_D => break,
            CTRL_C | CTRL_BACKSLASH => return Ok(None),
            CTRL_U => line.clear(),
            DELETE | BACKSPACE => {
                // A whole UTF-8 character: its continuation bytes, then its first byte.
                while line.last().is_some_and(|b| b & 0xc0 == 0x80) {
                    line.pop();
                }
                line.pop();
            }
            b => line.push(b),
        }
    }
    Ok(Some(String::from_utf8_lossy(&line).into_owned()))
}
