//! Progress bars with ETA on long loops; hidden when stderr is not a terminal.

use std::{io::IsTerminal, sync::Arc};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use terrain_model::progress::{Progress, ProgressSink};

struct Bar(ProgressBar);

impl ProgressSink for Bar {
    fn start(&self, label: &str, total: Option<u64>) {
        self.0.reset();
        self.0.set_length(total.unwrap_or(0));
        self.0.set_prefix(label.to_string());
        self.0.set_message("");
    }
    fn set_position(&self, pos: u64) {
        self.0.set_position(pos);
    }
    fn set_message(&self, message: &str) {
        self.0.set_message(message.to_string());
    }
    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A progress handle drawing a bar on stderr when it is a terminal, nothing otherwise.
pub fn terminal() -> Progress {
    let pb = ProgressBar::with_draw_target(
        Some(0),
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    );
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} ({eta} left) {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    Progress::new(Arc::new(Bar(pb)))
}
