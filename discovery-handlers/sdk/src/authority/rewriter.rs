//! The HTTP/2 frame layer of [`super::AuthorityFix`]: passes the client's
//! byte stream through, gathering each header block (HEADERS plus any
//! CONTINUATION frames) to have [`rewrite_block`] look at it, and re-frames
//! the block only when it changed. On anything unexpected it stops looking
//! and passes the rest through untouched.

use tokio::io::ReadBuf;

use super::hpack::rewrite_block;

pub(super) const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER_LEN: usize = 9;
pub(super) const HEADERS: u8 = 0x1;
pub(super) const CONTINUATION: u8 = 0x9;
pub(super) const END_HEADERS: u8 = 0x4;
pub(super) const PADDED: u8 = 0x8;
pub(super) const PRIORITY: u8 = 0x20;
/// HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which h2 keeps.
pub(super) const MAX_EMIT_FRAME: usize = 16_384;
/// Larger frames or header blocks are passed through for h2 to refuse.
const MAX_BUFFERED: usize = 1 << 20;

/// The byte-stream transformation, without I/O.
#[derive(Debug, Default)]
pub(super) struct Rewriter {
    preface_seen: usize,
    /// Something unexpected happened: pass the rest through untouched.
    passthrough: bool,
    pub(super) eof: bool,
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    headers: Option<PendingHeaders>,
}

/// A header block spread over HEADERS and CONTINUATION frames.
#[derive(Debug)]
struct PendingHeaders {
    frames: Vec<u8>,
    flags: u8,
    stream_id: [u8; 4],
    priority: Option<[u8; 5]>,
    block: Vec<u8>,
}

impl Rewriter {
    pub(super) fn push(&mut self, data: &[u8]) {
        self.raw.extend_from_slice(data);
        self.process();
    }

    /// End of input: whatever is buffered goes out as it came.
    pub(super) fn finish(&mut self) {
        if let Some(pending) = self.headers.take() {
            self.out.extend_from_slice(&pending.frames);
        }
        self.out.append(&mut self.raw);
        self.eof = true;
    }

    /// Moves output into `buf`; false if there was none.
    pub(super) fn take_output(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        let available = &self.out[self.out_pos..];
        if available.is_empty() || buf.remaining() == 0 {
            return false;
        }
        let n = available.len().min(buf.remaining());
        buf.put_slice(&available[..n]);
        self.out_pos += n;
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        true
    }

    fn process(&mut self) {
        if self.preface_seen < PREFACE.len() {
            let n = (PREFACE.len() - self.preface_seen).min(self.raw.len());
            if self.raw[..n] != PREFACE[self.preface_seen..self.preface_seen + n] {
                self.passthrough = true; // not HTTP/2 with prior knowledge
            }
            self.out.extend(self.raw.drain(..n));
            self.preface_seen += n;
        }
        while !self.passthrough && self.preface_seen == PREFACE.len() {
            let Some(header) = self.raw.get(..FRAME_HEADER_LEN) else {
                return;
            };
            let len =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            if len > MAX_BUFFERED {
                self.give_up(&[]);
                break;
            }
            if self.raw.len() < FRAME_HEADER_LEN + len {
                return;
            }
            let frame: Vec<u8> = self.raw.drain(..FRAME_HEADER_LEN + len).collect();
            self.frame(frame);
        }
        if self.passthrough {
            self.out.append(&mut self.raw);
        }
    }

    fn frame(&mut self, frame: Vec<u8>) {
        let (kind, flags) = (frame[3], frame[4]);
        let stream_id = [frame[5], frame[6], frame[7], frame[8]];
        let payload = &frame[FRAME_HEADER_LEN..];
        match self.headers.as_mut() {
            None if kind == HEADERS => {
                let Some((priority, fragment)) = split_headers_payload(flags, payload) else {
                    self.give_up(&frame);
                    return;
                };
                let block = fragment.to_vec();
                self.headers = Some(PendingHeaders {
                    frames: frame,
                    flags,
                    stream_id,
                    priority,
                    block,
                });
            }
            None => {
                self.out.extend_from_slice(&frame);
                return;
            }
            Some(pending) if kind == CONTINUATION && pending.stream_id == stream_id => {
                if pending.block.len() + payload.len() > MAX_BUFFERED {
                    self.give_up(&frame);
                    return;
                }
                pending.block.extend_from_slice(payload);
                pending.frames.extend_from_slice(&frame);
                pending.flags |= flags & END_HEADERS;
            }
            Some(_) => {
                self.give_up(&frame);
                return;
            }
        }
        if let Some(pending) = self.headers.take_if(|p| p.flags & END_HEADERS != 0) {
            match rewrite_block(&pending.block) {
                Some(block) => self.emit(&pending, &block),
                None => self.out.extend_from_slice(&pending.frames),
            }
        }
    }

    fn give_up(&mut self, frame: &[u8]) {
        if let Some(pending) = self.headers.take() {
            self.out.extend_from_slice(&pending.frames);
        }
        self.out.extend_from_slice(frame);
        self.passthrough = true;
    }

    /// Writes a rewritten header block as HEADERS + CONTINUATION frames.
    fn emit(&mut self, pending: &PendingHeaders, block: &[u8]) {
        let mut first = pending.priority.map(Vec::from).unwrap_or_default();
        let room = MAX_EMIT_FRAME - first.len();
        let (head, mut rest) = block.split_at(block.len().min(room));
        first.extend_from_slice(head);
        let flags = pending.flags & !(PADDED | END_HEADERS);
        let end = |last: bool| if last { END_HEADERS } else { 0 };
        self.write_frame(
            HEADERS,
            flags | end(rest.is_empty()),
            pending.stream_id,
            &first,
        );
        while !rest.is_empty() {
            let (chunk, tail) = rest.split_at(rest.len().min(MAX_EMIT_FRAME));
            rest = tail;
            self.write_frame(CONTINUATION, end(rest.is_empty()), pending.stream_id, chunk);
        }
    }

    fn write_frame(&mut self, kind: u8, flags: u8, stream_id: [u8; 4], payload: &[u8]) {
        let len = payload.len().to_be_bytes();
        let [.., l2, l1, l0] = len;
        self.out.extend_from_slice(&[l2, l1, l0, kind, flags]);
        self.out.extend_from_slice(&stream_id);
        self.out.extend_from_slice(payload);
    }
}

/// Splits a HEADERS payload into its priority fields and header block
/// fragment, dropping padding.
fn split_headers_payload(flags: u8, payload: &[u8]) -> Option<(Option<[u8; 5]>, &[u8])> {
    let (mut body, pad) = if flags & PADDED != 0 {
        let (&pad, rest) = payload.split_first()?;
        (rest, usize::from(pad))
    } else {
        (payload, 0)
    };
    body = body.get(..body.len().checked_sub(pad)?)?;
    if flags & PRIORITY != 0 {
        let (priority, fragment) = body.split_first_chunk::<5>()?;
        return Some((Some(*priority), fragment));
    }
    Some((None, body))
}
