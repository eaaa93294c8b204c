//! Password prompts on a terminal: run under `script` (a pseudo-terminal), `cairnctl user add` asks twice
//! without echoing what is typed, exactly as etcdctl shows it, and Ctrl-C at the prompt exits 255 with the
//! terminal's echo restored.

#![allow(clippy::unwrap_used)] // a test: a failed unwrap is a failed test

mod common;

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{etcd_available, free_port, Kind, Server};

/// A command running on a pseudo-terminal; its output collected as it comes. Killed on drop.
struct Terminal {
    child: Child,
    input: Option<ChildStdin>,
    output: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn start(shell_command: &str) -> Terminal {
        let mut child = Command::new("script")
            .args(["-qec", shell_command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(Vec::new()));
        let mut pipe = child.stdout.take().unwrap();
        let sink = Arc::clone(&output);
        std::thread::spawn(move || {
            let mut buf = [0u8; 1024];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal { input: child.stdin.take(), child, output }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Waits (bounded) until the output holds `what`.
    fn wait_for(&self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.text().contains(what) {
            assert!(Instant::now() < deadline, "never saw {what:?}; the terminal shows {:?}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn type_in(&mut self, keys: &str) {
        let input = self.input.as_mut().unwrap();
        input.write_all(keys.as_bytes()).unwrap();
        input.flush().unwrap();
    }

    /// The exit code once the command ends (bounded), and everything it showed.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let code = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            assert!(Instant::now() < deadline, "still running; the terminal shows {:?}", self.text());
            std::thread::sleep(Duration::from_millis(20));
        };
        // The reader drains what is left once the terminal closes.
        std::thread::sleep(Duration::from_millis(100));
        (code, self.text())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn script_available(test: &str) -> bool {
    let found = Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var("CI").is_err(), "{test}: `script` (util-linux) is missing but CI is set");
        eprintln!("{test}: skipped: no `script` command for a pseudo-terminal");
    }
    found
}

#[test]
fn user_add_asks_twice_without_echo_on_a_terminal() {
    let test = "user_add_asks_twice_without_echo_on_a_terminal";
    if !etcd_available(test) || !script_available(test) {
        return;
    }
    let server = Server::start(Kind::Etcd, free_port(), free_port());
    let ctl = format!("{} --endpoints {}", env!("CARGO_BIN_EXE_cairnctl"), server.endpoint());
    let mut term = Terminal::start(&format!("{ctl} user add alice"));
    // Echo is off before the prompt shows, so typing right after it is never echoed.
    term.wait_for("Password of alice: ");
    // Backspace edits the line: "s3cx", Backspace, "ret" is "s3cret".
    term.type_in("s3cx\u{7f}ret\n");
    term.wait_for("confirmation: ");
    term.type_in("s3cret\n");
    let (code, shown) = term.finish();
    assert_eq!(code, Some(0), "{shown:?}");
    assert_eq!(
        shown,
        "Password of alice: \r\nType password of alice again for confirmation: \r\nUser alice created\r\n"
    );
    // The password typed is the one set: with auth on, alice authenticates (and is then refused a key).
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_cairnctl"))
            .args(["--endpoints", &server.endpoint()])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    };
    run(&["user", "add", "root:rootpw"]);
    assert!(run(&["auth", "enable"]).contains("Authentication Enabled"));
    assert!(run(&["--user", "alice:s3cret", "get", "k"]).contains("permission denied"));
    assert!(run(&["--user", "alice:other", "get", "k"]).contains("authentication failed"));

    // Ctrl-C at the prompt: exit 255 (speakeasy's), echo and signals back on for the shell.
    let mut term = Terminal::start(&format!("{ctl} --user alice get k; echo exit=$?; stty -a"));
    term.wait_for("Password: ");
    term.type_in("zqx\u{3}");
    let (_, shown) = term.finish();
    assert!(shown.contains("exit=255"), "{shown:?}");
    let settings: Vec<&str> = shown.split_whitespace().collect();
    assert!(
        settings.contains(&"echo") && settings.contains(&"isig"),
        "terminal left without echo: {shown:?}"
    );
    assert!(!shown.contains("zqx"), "typed characters were echoed: {shown:?}");
}
