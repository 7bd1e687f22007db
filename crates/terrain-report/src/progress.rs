//! Progress bars on the terminal for terrain's long loops.
//!
//! [`terminal`] gives a [`Progress`] handle whose sink is an indicatif bar on stderr:
//! `{prefix} [{bar}] {pos}/{len} ({eta} left) {msg}` when the loop's length is known, a spinner
//! when not; nothing at all when stderr is not a terminal (logs and pipes stay clean). Each
//! [`Progress::start`] resets the bar for the new loop, [`Progress::finish`] clears it.
//! [`hidden`] (for `--quiet` and tests) reports nowhere.

use std::{io::IsTerminal, sync::Arc, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
pub use terrain_model::progress::{Progress, ProgressSink};

/// When to draw a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Show {
    /// When stderr is a terminal.
    #[default]
    Auto,
    /// Never (`--quiet`, tests).
    Never,
    /// Always, even when stderr is not a terminal.
    Always,
}

/// A [`ProgressSink`] drawing an indicatif bar on stderr.
pub struct TerminalSink {
    bar: ProgressBar,
    visible: bool,
}

const BAR: &str = "{prefix} [{bar:30}] {pos}/{len} ({eta} left) {msg}";
const SPINNER: &str = "{prefix} {spinner} {pos} ({elapsed}) {msg}";

impl TerminalSink {
    /// A sink that draws when `show` says so.
    pub fn new(show: Show) -> Self {
        let visible = match show {
            Show::Auto => std::io::stderr().is_terminal(),
            Show::Never => false,
            Show::Always => true,
        };
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        TerminalSink {
            bar: ProgressBar::with_draw_target(None, target),
            visible,
        }
    }

    /// Whether this sink draws anything.
    pub fn is_visible(&self) -> bool {
        self.visible
    }

    /// The underlying bar (its position, length and prefix; for tests and custom use).
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl ProgressSink for TerminalSink {
    fn start(&self, label: &str, total: Option<u64>) {
        self.bar.reset();
        let style = match total {
            Some(_) => ProgressStyle::with_template(BAR).map(|s| s.progress_chars("=> ")),
            None => ProgressStyle::with_template(SPINNER),
        };
        if let Ok(style) = style {
            self.bar.set_style(style);
        }
        match total {
            Some(n) => {
                self.bar.disable_steady_tick();
                self.bar.set_length(n);
            }
            None => {
                self.bar.unset_length();
                if self.visible {
                    self.bar.enable_steady_tick(Duration::from_millis(120));
                }
            }
        }
        self.bar.set_prefix(label.to_string());
        self.bar.set_message("");
        self.bar.set_position(0);
    }

    fn set_position(&self, pos: u64) {
        self.bar.set_position(pos);
    }

    fn set_message(&self, message: &str) {
        self.bar.set_message(message.to_string());
    }

    fn finish(&self) {
        self.bar.disable_steady_tick();
        self.bar.finish_and_clear();
    }
}

/// A progress handle drawing on stderr when it is a terminal (the binary's default).
pub fn terminal() -> Progress {
    with(Show::Auto)
}

/// A progress handle that draws as `show` says ([`Show::Never`] gives [`hidden`]).
pub fn with(show: Show) -> Progress {
    match show {
        Show::Never => Progress::hidden(),
        show => Progress::new(Arc::new(TerminalSink::new(show))),
    }
}

/// A progress handle that reports nowhere.
pub fn hidden() -> Progress {
    Progress::hidden()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_resets_for_each_loop() {
        let sink = TerminalSink::new(Show::Never);
        assert!(!sink.is_visible());
        sink.start("lanczos", Some(10));
        sink.set_position(7);
        assert_eq!(sink.bar().position(), 7);
        assert_eq!(sink.bar().length(), Some(10));
        assert_eq!(sink.bar().prefix(), "lanczos");
        sink.finish();
        sink.start("trace", None);
        assert_eq!(sink.bar().position(), 0);
        assert_eq!(sink.bar().length(), None);
        assert_eq!(sink.bar().prefix(), "trace");
        assert!(!sink.bar().is_finished());
        sink.finish();
        assert!(sink.bar().is_finished());
        assert!(with(Show::Never).is_hidden());
        assert!(!with(Show::Always).is_hidden());
    }
}
