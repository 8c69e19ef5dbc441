//! The pod's recent output, for `GET /log`: ochopod's own log lines and the process's stdout and
//! stderr, interleaved in arrival order, in a bounded ring.
//!
//! Writers never block for long: one short mutex hold per line. The ring keeps the last
//! [`LINES`] lines and at most [`RING_BYTES`] bytes of them, each line cut at [`LINE_BYTES`] with
//! a visible marker (`… [truncated N bytes]`), so a chatty process cannot grow ochopod's memory.
//! [`LineSplitter`] cuts output streams into such lines without ever holding more than one
//! line's worth of bytes: a process printing gigabytes without a newline costs [`LINE_BYTES`].

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex};

/// Lines kept.
pub const LINES: usize = 2000;
/// Longest line kept, in bytes (longer ones are cut and marked).
pub const LINE_BYTES: usize = 16 * 1024;
/// Bytes kept over all lines: the oldest lines go first when a new one does not fit.
pub const RING_BYTES: usize = 2 * 1024 * 1024;

/// What replaces the end of a line that was cut: `… [truncated N bytes]`.
pub fn marker(dropped: u64) -> String {
    format!("… [truncated {dropped} bytes]")
}

/// A cloneable handle on the ring.
#[derive(Clone, Default)]
pub struct LogRing {
    inner: Arc<Mutex<Ring>>,
}

#[derive(Default)]
struct Ring {
    lines: VecDeque<String>,
    /// The sum of the lengths of `lines`.
    bytes: usize,
}

impl std::fmt::Debug for LogRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogRing")
    }
}

impl LogRing {
    /// Adds a line, cut at [`LINE_BYTES`] (with a marker) when longer.
    pub fn push(&self, line: &str) {
        self.push_cut(line, 0);
    }

    /// Adds a line of which `dropped` bytes were already cut off by the reader; the marker
    /// counts them with whatever this cuts.
    pub fn push_cut(&self, line: &str, dropped: u64) {
        let line = line.trim_end_matches(['\n', '\r']);
        let mut cut = line.len().min(LINE_BYTES);
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        let dropped = dropped.saturating_add((line.len() - cut) as u64);
        let kept = if dropped == 0 {
            line.to_string()
        } else {
            format!("{}{}", &line[..cut], marker(dropped))
        };
        let mut ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        while !ring.lines.is_empty() && (ring.lines.len() >= LINES || ring.bytes + kept.len() > RING_BYTES) {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= old.len();
            }
        }
        ring.bytes += kept.len();
        ring.lines.push_back(kept);
    }

    /// The last `n` lines, oldest first.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let ring = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        ring.lines
            .iter()
            .skip(ring.lines.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The bytes the ring holds (the sum of its lines' lengths).
    pub fn bytes(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

/// Cuts a byte stream into lines, keeping at most `cap` bytes of each: the rest of a longer line
/// is counted, not stored. Feed it what a read returned; it hands back complete lines.
#[derive(Debug)]
pub struct LineSplitter {
    cap: usize,
    line: Vec<u8>,
    dropped: u64,
}

/// One line out of a [`LineSplitter`]: its first bytes (no newline) and how many were cut off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutLine {
    pub kept: Vec<u8>,
    pub dropped: u64,
}

impl CutLine {
    /// The line as text (lossy), with the marker when it was cut.
    pub fn text(&self) -> String {
        let text = String::from_utf8_lossy(&self.kept);
        if self.dropped == 0 {
            text.into_owned()
        } else {
            format!("{text}{}", marker(self.dropped))
        }
    }
}

impl LineSplitter {
    pub fn new(cap: usize) -> LineSplitter {
        LineSplitter {
            cap,
            line: Vec::new(),
            dropped: 0,
        }
    }

    /// Takes the next bytes of the stream; returns the lines they complete.
    pub fn feed(&mut self, mut bytes: &[u8]) -> Vec<CutLine> {
        let mut done = Vec::new();
        while let Some(at) = bytes.iter().position(|b| *b == b'\n') {
            self.take(&bytes[..at]);
            done.push(self.finish_line());
            bytes = &bytes[at + 1..];
        }
        self.take(bytes);
        done
    }

    /// The last line, when the stream ended without a newline.
    pub fn finish(&mut self) -> Option<CutLine> {
        (!self.line.is_empty() || self.dropped > 0).then(|| self.finish_line())
    }

    fn take(&mut self, part: &[u8]) {
        let room = self.cap.saturating_sub(self.line.len());
        let n = room.min(part.len());
        self.line.extend_from_slice(&part[..n]);
        self.dropped = self.dropped.saturating_add((part.len() - n) as u64);
    }

    fn finish_line(&mut self) -> CutLine {
        let mut kept = std::mem::take(&mut self.line);
        if kept.last() == Some(&b'\r') {
            kept.pop();
        }
        CutLine {
            kept,
            dropped: std::mem::take(&mut self.dropped),
        }
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
        let last = ring.tail(1).remove(0);
        assert!(
            last.len() <= LINE_BYTES + marker(u64::MAX).len(),
            "{}",
            last.len()
        );
        assert!(
            last.ends_with(&marker(LINE_BYTES as u64)),
            "{}",
            &last[last.len() - 40..]
        );
    }

    #[test]
    fn holds_at_most_ring_bytes_of_long_lines() {
        let ring = LogRing::default();
        let long = "x".repeat(LINE_BYTES);
        for _ in 0..LINES {
            ring.push(&long);
        }
        assert!(ring.bytes() <= RING_BYTES, "{} bytes", ring.bytes());
        let held: usize = ring.tail(usize::MAX).iter().map(String::len).sum();
        assert_eq!(held, ring.bytes());
        assert_eq!(ring.tail(usize::MAX).len(), RING_BYTES / LINE_BYTES);
        // Short lines after long ones push the long ones out one at a time.
        ring.push("short");
        assert_eq!(ring.tail(1), vec!["short".to_string()]);
        assert!(ring.bytes() <= RING_BYTES);
    }

    #[test]
    fn counts_what_the_reader_cut_in_the_marker() {
        let ring = LogRing::default();
        ring.push_cut("abc", 10);
        ring.push_cut(&"y".repeat(LINE_BYTES + 5), 10);
        let tail = ring.tail(2);
        assert_eq!(tail[0], format!("abc{}", marker(10)));
        assert!(tail[1].ends_with(&marker(15)), "{}", tail[1]);
    }

    #[test]
    fn splits_lines_across_reads_and_cuts_the_long_ones() {
        let mut s = LineSplitter::new(4);
        assert_eq!(s.feed(b"ab"), vec![]);
        let lines = s.feed(b"c\r\nabcdefgh\n\nxyz");
        assert_eq!(
            lines,
            vec![
                CutLine {
                    kept: b"abc".to_vec(),
                    dropped: 0
                },
                CutLine {
                    kept: b"abcd".to_vec(),
                    dropped: 4
                },
                CutLine {
                    kept: Vec::new(),
                    dropped: 0
                },
            ]
        );
        assert_eq!(lines[1].text(), format!("abcd{}", marker(4)));
        // A line without a newline, longer than any read, costs `cap` bytes however long it is.
        for _ in 0..1000 {
            assert!(s.feed(&[b'z'; 4096]).is_empty());
        }
        assert!(s.line.capacity() <= 64, "{}", s.line.capacity());
        let last = s.finish().expect("the unterminated line");
        assert_eq!(last.kept, b"xyzz".to_vec());
        assert_eq!(last.dropped, 1000 * 4096 - 1);
        assert_eq!(s.finish(), None);
    }
}
