//! Output for people: aligned tables on stdout, a progress line on stderr. Pure formatting, no
//! I/O decisions beyond "is stderr a terminal".

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};

/// Columns padded to their widest cell, two spaces apart, no trailing blanks.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  ", w = widths[i]));
            }
        }
        out.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// A pod's ports for a table: `2181` when not remapped, `2181->31002` when it is.
pub fn ports(ports: &BTreeMap<String, u16>) -> String {
    let mut list: Vec<(u16, String)> = ports
        .iter()
        .map(|(k, v)| {
            let shown = if k.parse() == Ok(*v) {
                k.clone()
            } else {
                format!("{k}->{v}")
            };
            (k.parse().unwrap_or(u16::MAX), shown)
        })
        .collect();
    list.sort();
    if list.is_empty() {
        "-".into()
    } else {
        list.into_iter().map(|(_, s)| s).collect::<Vec<_>>().join(",")
    }
}

/// The one-line progress report of `wait` and `restart --rolling`, on stderr: rewritten in place
/// on a terminal, one line per change otherwise (a CI log gets a readable history, not a flood).
pub struct Progress {
    tty: bool,
    last: String,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            tty: std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }

    pub fn update(&mut self, line: &str) {
        if line == self.last {
            return;
        }
        let mut err = std::io::stderr().lock();
        // Progress is advisory: a closed stderr must not fail the command.
        let _ = if self.tty {
            write!(err, "\r\x1b[K{line}")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
        self.last = line.to_string();
    }

    /// Ends the line on a terminal so that what follows starts clean.
    pub fn finish(&mut self) {
        if self.tty && !self.last.is_empty() {
            eprintln!();
        }
        self.last.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let out = render(
            &["POD", "IP", "STATE"],
            &[
                vec!["default.zk #1".into(), "127.0.0.2".into(), "running".into()],
                vec!["default.zk #10".into(), "10.0.0.1".into(), "held".into()],
            ],
        );
        assert_eq!(
            out,
            "POD             IP         STATE\n\
             default.zk #1   127.0.0.2  running\n\
             default.zk #10  10.0.0.1   held\n"
        );
    }

    #[test]
    fn ports_show_remapping_only_when_there_is_one() {
        let mut p = BTreeMap::new();
        p.insert("8080".to_string(), 8080);
        p.insert("2181".to_string(), 31002);
        p.insert("10000".to_string(), 10000);
        assert_eq!(ports(&p), "2181->31002,8080,10000");
        assert_eq!(ports(&BTreeMap::new()), "-");
    }
}
