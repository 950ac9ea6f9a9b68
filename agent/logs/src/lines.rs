//! Splitting a byte stream into lines with a bounded buffer.

/// Maximum length of a kept line, in bytes. Bytes past it are dropped and counted, so a
/// runaway line (a dumped XML document, a binary blob) cannot grow memory.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// One line as read from a log source, without its line end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// The first [`MAX_LINE_BYTES`] bytes of the line, raw (not necessarily UTF-8).
    pub bytes: Vec<u8>,
    /// Bytes of the line dropped after the first [`MAX_LINE_BYTES`].
    pub truncated_bytes: u64,
}

/// Splits chunks of bytes into LF-terminated lines.
///
/// A line split across chunks is held until its newline arrives or
/// [`LineSplitter::finish`] is called; the held part never exceeds
/// [`MAX_LINE_BYTES`]. A trailing `\r` is removed, so CRLF files read like LF files.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    partial_truncated_bytes: u64,
    /// True while a line is open, even when everything held so far was dropped.
    partial_open: bool,
}

impl LineSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds a chunk and calls `emit(line, truncated_bytes)` for every line it completes.
    pub fn feed(&mut self, chunk: &[u8], mut emit: impl FnMut(&[u8], u64)) {
        let mut rest = chunk;
        while let Some(newline_at) = memchr_newline(rest) {
            let piece = &rest[..newline_at];
            rest = &rest[newline_at + 1..];
            if self.partial_open {
                self.append_partial(piece);
                let truncated = self.partial_truncated_bytes;
                let line = std::mem::take(&mut self.partial);
                emit(strip_cr(&line), truncated);
                self.partial = line;
                self.reset_partial();
            } else if piece.len() > MAX_LINE_BYTES {
                let dropped = (piece.len() - MAX_LINE_BYTES) as u64;
                emit(&piece[..MAX_LINE_BYTES], dropped);
            } else {
                emit(strip_cr(piece), 0);
            }
        }
        if !rest.is_empty() {
            self.partial_open = true;
            self.append_partial(rest);
        }
    }

    /// Emits the held partial line, if any (end of input, or its file was rotated away).
    pub fn finish(&mut self, mut emit: impl FnMut(&[u8], u64)) {
        if self.partial_open {
            let truncated = self.partial_truncated_bytes;
            emit(strip_cr(&self.partial), truncated);
            self.reset_partial();
        }
    }

    /// Bytes of the open partial line that are held or were dropped.
    pub fn pending_bytes(&self) -> u64 {
        self.partial.len() as u64 + self.partial_truncated_bytes
    }

    fn append_partial(&mut self, piece: &[u8]) {
        let room = MAX_LINE_BYTES.saturating_sub(self.partial.len());
        let kept = piece.len().min(room);
        self.partial.extend_from_slice(&piece[..kept]);
        self.partial_truncated_bytes += (piece.len() - kept) as u64;
    }

    fn reset_partial(&mut self) {
        self.partial.clear();
        self.partial_truncated_bytes = 0;
        self.partial_open = false;
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Splits a whole buffer into [`Line`]s, including a last line without a newline.
pub fn split_all(bytes: &[u8]) -> Vec<Line> {
    let mut lines = Vec::new();
    let mut splitter = LineSplitter::new();
    let mut push = |line: &[u8], truncated_bytes: u64| {
        lines.push(Line {
            bytes: line.to_vec(),
            truncated_bytes,
        });
    };
    splitter.feed(bytes, &mut push);
    splitter.finish(&mut push);
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitter_joins_line_across_chunks() {
        let mut splitter = LineSplitter::new();
        let mut lines = Vec::new();
        splitter.feed(b"ab", |l, _| lines.push(l.to_vec()));
        splitter.feed(b"c\r\nd\n", |l, _| lines.push(l.to_vec()));
        assert_eq!(lines, vec![b"abc".to_vec(), b"d".to_vec()]);
    }

    #[test]
    fn splitter_caps_long_line_and_counts_rest() {
        let long = vec![b'x'; MAX_LINE_BYTES + 10];
        let mut input = long.clone();
        input.push(b'\n');
        let lines = split_all(&input);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].bytes.len(), MAX_LINE_BYTES);
        assert_eq!(lines[0].truncated_bytes, 10);
    }

    #[test]
    fn splitter_caps_long_partial_line_across_chunks() {
        let mut splitter = LineSplitter::new();
        let mut got = Vec::new();
        for _ in 0..20 {
            splitter.feed(&[b'y'; 8192], |l, t| got.push((l.len(), t)));
        }
        assert!(splitter.pending_bytes() == 20 * 8192);
        splitter.feed(b"\n", |l, t| got.push((l.len(), t)));
        assert_eq!(
            got,
            vec![(MAX_LINE_BYTES, (20 * 8192 - MAX_LINE_BYTES) as u64)]
        );
    }

    #[test]
    fn splitter_finish_flushes_unterminated_line() {
        assert_eq!(split_all(b"a\nb").len(), 2);
        assert_eq!(split_all(b"a\n").len(), 1);
        assert_eq!(split_all(b"").len(), 0);
    }
}
