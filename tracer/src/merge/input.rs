//! An input's bytes into lines, each at most [`MAX_LINE`] bytes: a longer line is skipped
//! without being held whole, a line that is not UTF-8 is skipped, and a followed file that
//! was truncated or replaced (rotated) is read again from its start.
use std::{
    fs::File,
    io::{self, BufRead, BufReader},
    os::unix::fs::MetadataExt,
};

use anyhow::{Context, Result};

/// The longest line read (without its newline). A tracer's line is a few hundred bytes (a
/// flow summary with many pods a few KiB); anything near this is not one.
pub(super) const MAX_LINE: usize = 1 << 20;

/// What [`LineReader::next`] found.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    Line(String),
    /// A line longer than [`MAX_LINE`], skipped.
    Oversized,
    /// A line that is not UTF-8, skipped.
    InvalidUtf8,
    /// The end of what the input holds now; the start of an unfinished line is kept.
    Pending,
}

/// Lines of at most [`MAX_LINE`] bytes from a byte stream.
pub(super) struct LineReader<R> {
    inner: R,
    /// The line so far (never more than `MAX_LINE` bytes).
    pub(super) buf: Vec<u8>,
    /// In a line already too long: its bytes are dropped until its newline.
    discarding: bool,
    /// Bytes consumed from `inner`: where a file's reader is (truncation shows as a file
    /// shorter than this).
    pub(super) pos: u64,
}

impl<R: BufRead> LineReader<R> {
    pub(super) fn new(inner: R) -> Self {
        LineReader {
            inner,
            buf: Vec::new(),
            discarding: false,
            pos: 0,
        }
    }

    /// The next line (a `\n` ends it), or `Pending` at the end of the input's bytes so far.
    pub(super) fn next(&mut self) -> io::Result<Next> {
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                return Ok(Next::Pending);
            }
            let (used, end) = match avail.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, Some(i)),
                None => (avail.len(), None),
            };
            let part = &avail[..end.unwrap_or(used)];
            if !self.discarding {
                if self.buf.len() + part.len() <= MAX_LINE {
                    self.buf.extend_from_slice(part);
                } else {
                    self.discarding = true;
                    self.buf = Vec::new();
                }
            }
            self.inner.consume(used);
            self.pos += used as u64;
            if end.is_some() {
                return Ok(self.take());
            }
        }
    }

    /// At the end of a finite input: its last line if no newline ended it.
    pub(super) fn finish(&mut self) -> Option<Next> {
        (self.discarding || !self.buf.is_empty()).then(|| self.take())
    }

    /// Reads `inner` from its start from now on (a file opened again); an unfinished line
    /// of the old one is dropped.
    pub(super) fn restart(&mut self, inner: R) {
        *self = LineReader::new(inner);
    }

    fn take(&mut self) -> Next {
        if std::mem::take(&mut self.discarding) {
            return Next::Oversized;
        }
        match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(s) => Next::Line(s),
            Err(_) => Next::InvalidUtf8,
        }
    }
}

/// A file's identity: a path that names another one was rotated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileId {
    dev: u64,
    ino: u64,
}

/// One input: standard input, a pipe, or a file (`id` set for a regular file, which
/// --follow tails).
pub(crate) struct Source {
    pub(super) name: String,
    pub(super) lines: LineReader<Box<dyn BufRead + Send>>,
    pub(super) id: Option<FileId>,
}

impl Source {
    pub(super) fn open(name: &str) -> Result<Source> {
        if name == "-" {
            return Ok(Source {
                name: name.to_string(),
                lines: LineReader::new(Box::new(BufReader::new(io::stdin()))),
                id: None,
            });
        }
        let (input, id) = open_file(name).with_context(|| format!("cannot read {name}"))?;
        Ok(Source {
            name: name.to_string(),
            lines: LineReader::new(input),
            id,
        })
    }

    /// An input already in memory (the fuzz targets' cases).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn from_bytes(name: &str, bytes: Vec<u8>) -> Source {
        Source {
            name: name.to_string(),
            lines: LineReader::new(Box::new(io::Cursor::new(bytes))),
            id: None,
        }
    }

    /// For a followed file at the end of its bytes: if the path now names another file
    /// (rotated) or the file is shorter than what was read (truncated), reads it from its
    /// start and says so. A path that is gone (between rotation's rename and create)
    /// keeps the old file.
    pub(super) fn reopen_if_replaced(&mut self) -> io::Result<bool> {
        let Some(id) = self.id else {
            return Ok(false);
        };
        let Ok(m) = std::fs::metadata(&self.name) else {
            return Ok(false);
        };
        let now = FileId {
            dev: m.dev(),
            ino: m.ino(),
        };
        if now == id && m.len() >= self.lines.pos {
            return Ok(false);
        }
        let (input, id) = open_file(&self.name)?;
        self.lines.restart(input);
        self.id = id;
        Ok(true)
    }
}

type Opened = (Box<dyn BufRead + Send>, Option<FileId>);

fn open_file(name: &str) -> io::Result<Opened> {
    let f = File::open(name)?;
    // Of the file opened, not of the path, which may change in between.
    let m = f.metadata()?;
    let id = m.is_file().then(|| FileId {
        dev: m.dev(),
        ino: m.ino(),
    });
    Ok((Box::new(BufReader::new(f)), id))
}
