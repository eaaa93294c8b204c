//! The live progress bar: drawn on stderr only when stderr is a terminal, so piped or scripted runs (and `--json`
//! consumers) see nothing extra.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Makes progress bars for a run; every bar is hidden when `visible` is false.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    visible: bool,
}

impl Progress {
    /// Visible when stderr is a terminal.
    pub fn for_stderr() -> Self {
        Progress { visible: std::io::stderr().is_terminal() }
    }

    /// Never drawn (tests, and `compare`'s inner runs when piped).
    #[cfg(test)]
    pub fn hidden() -> Self {
        Progress { visible: false }
    }

    /// A line of status on stderr, only where bars are drawn.
    pub fn note(self, line: &str) {
        if self.visible {
            eprintln!("{line}");
        }
    }

    /// A bar counting up to `len`, labelled with what it counts.
    pub fn bar(self, len: u64, what: &str) -> ProgressBar {
        if !self.visible {
            return ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::hidden());
        }
        let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
        let style =
            ProgressStyle::with_template("{msg:>24} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec})")
                .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.set_message(what.to_owned());
        bar
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hidden_bar_still_counts() {
        let bar = Progress::hidden().bar(10, "puts");
        bar.inc(3);
        assert_eq!(bar.position(), 3);
        assert!(bar.is_hidden());
        bar.finish_and_clear();
    }
}
