//! The pod's recent output, for `GET /log`: ochopod's own log lines and the process's stdout and
//! stderr, interleaved in arrival order, in a bounded ring.
//!
//! Writers never block for long: one short mutex hold per line. The ring keeps the last
//! [`LINES`] lines, each cut at [`LINE_BYTES`], so a chatty process cannot grow ochopod's memory.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

/// Lines kept.
pub const LINES: usize = 2000;
/// Longest line kept (longer ones are cut).
pub const LINE_BYTES: usize = 4096;

/// A cloneable handle on the ring.
#[derive(Clone, Default)]
pub struct LogRing {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl std::fmt::Debug for LogRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogRing")
    }
}

impl LogRing {
    pub fn push(&self, line: &str) {
        let line = line.trim_end_matches(['\n', '\r']);
        let mut cut = line.len().min(LINE_BYTES);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.len() == LINES {
            lines.pop_front();
        }
        lines.push_back(line[..cut].to_string());
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines
            .iter()
            .skip(lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }
}

/// A `tracing_subscriber` writer that copies ochopod's log lines to stderr and the ring.
#[derive(Clone)]
pub struct TeeWriter {
    pub ring: LogRing,
}

impl io::Write for TeeWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for line in String::from_utf8_lossy(buf).lines() {
            self.ring.push(line);
        }
        io::stderr().write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for TeeWriter {
    type Writer = TeeWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_last_lines_and_cuts_long_ones() {
        let ring = LogRing::default();
        for i in 0..LINES + 10 {
            ring.push(&format!("line {i}\n"));
        }
        let tail = ring.tail(3);
        assert_eq!(
            tail,
            vec![
                format!("line {}", LINES + 7),
                format!("line {}", LINES + 8),
                format!("line {}", LINES + 9)
            ]
        );
        assert_eq!(ring.tail(usize::MAX).len(), LINES);
        ring.push(&"é".repeat(LINE_BYTES));
        assert!(ring.tail(1)[0].len() <= LINE_BYTES);
    }
}
