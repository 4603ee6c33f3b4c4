//! Just enough HPACK (RFC 7541 §5, §6) to walk a header block field by
//! field, without decoding the dynamic table, and to swap the value of a
//! literal `:authority` field. Huffman-coded strings (RFC 7541 Appendix B)
//! are decoded with `httlib-huffman` only where the field may be
//! `:authority`: grpc-go (the kubelet, dialling a device plugin or a DRA
//! plugin's registration socket) Huffman-codes the socket path it sends.

const REPLACEMENT: &[u8] = b"localhost";

/// Walks an HPACK block (RFC 7541 §6); returns a new block if an
/// `:authority` value was replaced, None if nothing changed or the block
/// could not be walked.
pub(super) fn rewrite_block(block: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(block.len());
    let mut changed = false;
    let mut pos = 0;
    while pos < block.len() {
        let start = pos;
        let first = block[pos];
        let name_prefix_bits = if first & 0x80 != 0 {
            pos = read_int(block, pos, 7)?.1; // indexed field
            out.extend_from_slice(&block[start..pos]);
            continue;
        } else if first & 0xc0 == 0x40 {
            6 // literal with incremental indexing
        } else if first & 0xe0 == 0x20 {
            pos = read_int(block, pos, 5)?.1; // dynamic table size update
            out.extend_from_slice(&block[start..pos]);
            continue;
        } else {
            4 // literal without indexing / never indexed
        };
        let (name_index, after_index) = read_int(block, pos, name_prefix_bits)?;
        pos = after_index;
        let is_authority = match name_index {
            1 => true,
            0 => {
                let (huffman, name, after_name) = read_string(block, pos)?;
                pos = after_name;
                plain(huffman, name)?.as_slice() == b":authority"
            }
            _ => false,
        };
        let name_end = pos;
        let (huffman, value, after_value) = read_string(block, pos)?;
        pos = after_value;
        let value = if is_authority {
            plain(huffman, value)?
        } else {
            Vec::new()
        };
        if is_authority && !value.is_empty() && http::uri::Authority::try_from(&value[..]).is_err()
        {
            out.extend_from_slice(&block[start..name_end]);
            // No longer than the decoded original: the table sizes entries
            // by their decoded length.
            let replacement = &REPLACEMENT[..value.len().min(REPLACEMENT.len())];
            out.push(u8::try_from(replacement.len()).ok()?); // < 127: fits the 7-bit prefix, H = 0
            out.extend_from_slice(replacement);
            changed = true;
        } else {
            out.extend_from_slice(&block[start..pos]);
        }
    }
    changed.then_some(out)
}

/// The bytes of a string literal, Huffman-decoded when it is coded; None
/// when the coding is invalid (the block is then passed on untouched).
pub(super) fn plain(huffman: bool, raw: &[u8]) -> Option<Vec<u8>> {
    if !huffman {
        return Some(raw.to_vec());
    }
    let mut decoded = Vec::with_capacity(raw.len() * 2);
    httlib_huffman::decode(raw, &mut decoded, httlib_huffman::DecoderSpeed::FourBits).ok()?;
    Some(decoded)
}

/// Reads an HPACK integer with an N-bit prefix; returns it and the position
/// after it.
fn read_int(block: &[u8], pos: usize, prefix_bits: u32) -> Option<(usize, usize)> {
    let max_prefix = (1usize << prefix_bits) - 1;
    let mut value = usize::from(*block.get(pos)?) & max_prefix;
    let mut pos = pos + 1;
    if value < max_prefix {
        return Some((value, pos));
    }
    let mut shift = 0;
    loop {
        let byte = *block.get(pos)?;
        pos += 1;
        value = value.checked_add(usize::from(byte & 0x7f).checked_shl(shift)?)?;
        if byte & 0x80 == 0 {
            return Some((value, pos));
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

/// Reads an HPACK string literal: (Huffman-coded?, raw bytes, position after).
fn read_string(block: &[u8], pos: usize) -> Option<(bool, &[u8], usize)> {
    let huffman = block.get(pos)? & 0x80 != 0;
    let (len, start) = read_int(block, pos, 7)?;
    let end = start.checked_add(len)?;
    Some((huffman, block.get(start..end)?, end))
}
