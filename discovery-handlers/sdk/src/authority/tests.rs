use tokio::io::ReadBuf;

use super::hpack::rewrite_block;
use super::rewriter::*;

/// What grpcio 1.85 (Python) sent on `grpc.insecure_channel("unix:/tmp/auth/x.sock")`
/// for one unary call: preface, SETTINGS, WINDOW_UPDATE, then HEADERS whose
/// block holds `:authority: tmp%2Fauth%2Fx.sock` as a literal with a literal
/// name (`40 0a ":authority" 13 "tmp%2Fauth%2Fx.sock"`), then the body.
const GRPCIO_CAPTURE: &str = concat!(
    "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a0000240400000000000002000000000003000000",
    "00000400400000000500400000000600004000fe0300000001000004080000000000003f00010000d8010400",
    "00000140053a70617468062f612e422f43400a3a617574686f7269747913746d702532466175746825324678",
    "2e736f636b8386400c636f6e74656e742d74797065106170706c69636174696f6e2f67727063400274650874",
    "7261696c6572734014677270632d6163636570742d656e636f64696e67176964656e746974792c206465666c",
    "6174652c20677a6970400c677270632d74696d656f7574023153400a757365722d6167656e7430677270632d",
    "707974686f6e2f312e38352e3120677270632d632f35382e302e3020286c696e75783b206368747470322900",
    "000408000000000100000005000005000100000001000000000000000408000000000000000005",
);

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `input` with `old_field` replaced by `new_field`, and the one-byte frame
/// length of the HEADERS frame whose header starts with `header` (hex:
/// length, type, flags) shortened to match.
fn replaced(input: &[u8], old_field: &[u8], new_field: &[u8], header: &str) -> Vec<u8> {
    let position = input
        .windows(old_field.len())
        .position(|w| w == old_field)
        .unwrap();
    let mut expected = input[..position].to_vec();
    expected.extend_from_slice(new_field);
    expected.extend_from_slice(&input[position + old_field.len()..]);
    let header = hex(header);
    let header_at = expected
        .windows(header.len())
        .position(|w| w == header)
        .unwrap();
    let shorter = u8::try_from(old_field.len() - new_field.len()).unwrap();
    expected[header_at + 2] -= shorter;
    expected
}

fn run(input: &[u8], chunk: usize) -> Vec<u8> {
    let mut rewriter = Rewriter::default();
    let mut output = Vec::new();
    let mut drain = |rewriter: &mut Rewriter| {
        let mut storage = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut storage);
            if !rewriter.take_output(&mut buf) {
                break;
            }
            output.extend_from_slice(buf.filled());
        }
    };
    for piece in input.chunks(chunk) {
        rewriter.push(piece);
        drain(&mut rewriter);
    }
    rewriter.finish();
    drain(&mut rewriter);
    output
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut frame = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 1];
    frame.extend_from_slice(payload);
    frame
}

fn connection(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut bytes = PREFACE.to_vec();
    for frame in frames {
        bytes.extend_from_slice(frame);
    }
    bytes
}

#[test]
fn grpcio_path_authority_becomes_localhost() {
    let input = hex(GRPCIO_CAPTURE);
    let old_field = hex("13746d7025324661757468253246782e736f636b");
    let new_field = [&[9u8][..], b"localhost"].concat();
    // The HEADERS frame is 10 bytes shorter: length 0xd8 becomes 0xce.
    let expected = replaced(&input, &old_field, &new_field, "0000d80104");

    assert_eq!(run(&input, 4096), expected);
    // However the bytes arrive.
    assert_eq!(run(&input, 1), expected);
    assert_eq!(run(&input, 7), expected);
}

/// What grpc-go 1.79.3 (the kubelet 1.36's) sent when dialled the way the
/// kubelet dials a device plugin or a plugin-registration socket (target =
/// the socket path, a context dialer) for one unary call, after the
/// server's SETTINGS: its HEADERS block holds `:authority` as a literal with
/// the static name index 1 and a Huffman-coded value (`41 a6 …`: 38 bytes
/// coding the percent-encoded path `tmp%2Fcap%2Fplugins_registry%2F…`).
const GRPC_GO_CAPTURE: &str = concat!(
    "505249202a20485454502f322e300d0a0d0a534d0d0a0d0a00000004000000000000000004010000000000",
    "007801040000000183864595626b2b22f394742675fb857c651d099d8bd3949d7f41a65458534d6a8b0907",
    "5aa2c35d16cc6a91158598c84d9e951611d31992bc85eeb58599741c9d7f5f8b1d75d0620d263d4c4d6564",
    "7a8b9acac8b4c7602bbafaecff40027465864d833505b11f40899acac8b24d494f6a7f8613efbe20b76f00",
    "00050001000000010000000000",
);

#[test]
fn grpc_go_huffman_coded_path_authority_becomes_localhost() {
    let input = hex(GRPC_GO_CAPTURE);
    let old_field =
        hex("41a65458534d6a8b09075aa2c35d16cc6a91158598c84d9e951611d31992bc85eeb58599741c9d7f");
    let new_field = [&[0x41u8, 9][..], b"localhost"].concat();
    // The HEADERS frame is 29 bytes shorter: length 0x78 becomes 0x5b.
    let expected = replaced(&input, &old_field, &new_field, "0000780104");

    assert_eq!(run(&input, 4096), expected);
    assert_eq!(run(&input, 1), expected);
    assert_eq!(run(&input, 13), expected);
}

#[test]
fn a_huffman_coded_valid_authority_passes_untouched() {
    // "localhost" Huffman-coded (RFC 7541 Appendix B), as h2 and grpc-go
    // send it for a TCP target.
    assert_eq!(
        super::hpack::plain(true, &hex("a0e41d139d09")),
        Some(b"localhost".to_vec())
    );
    let block = hex("4186a0e41d139d098386");
    assert_eq!(rewrite_block(&block), None);
    let input = connection(&[frame(HEADERS, END_HEADERS, &block)]);
    assert_eq!(run(&input, 3), input);
    // Invalid Huffman coding: passed on for h2 to judge.
    let block = hex("4182ffff8386");
    assert_eq!(super::hpack::plain(true, &hex("ffff")), None);
    let input = connection(&[frame(HEADERS, END_HEADERS, &block)]);
    assert_eq!(run(&input, 3), input);
}

#[test]
fn a_valid_authority_passes_untouched() {
    let block = [&[0x41, 9][..], b"localhost", &[0x83, 0x86]].concat();
    let input = connection(&[
        frame(HEADERS, END_HEADERS, &block),
        frame(0x0, 0x1, b"data"),
    ]);
    assert_eq!(run(&input, 5), input);
}

#[test]
fn static_name_index_and_raw_paths_are_fixed_too() {
    // grpc-java style: literal with incremental indexing, name index 1,
    // value "/run/x.sock".
    let block = [&[0x82, 0x41, 11][..], b"/run/x.sock"].concat();
    let input = connection(&[frame(HEADERS, END_HEADERS | 0x1, &block)]);
    let fixed = [&[0x82, 0x41, 9][..], b"localhost"].concat();
    assert_eq!(
        run(&input, 3),
        connection(&[frame(HEADERS, END_HEADERS | 0x1, &fixed)])
    );

    // A value shorter than "localhost" is replaced by a prefix no longer than
    // it, so the server's HPACK table never holds more than the client's.
    let block = [&[0x01, 4][..], b"a%2F"].concat();
    let input = connection(&[frame(HEADERS, END_HEADERS, &block)]);
    let fixed = [&[0x01, 4][..], b"loca"].concat();
    assert_eq!(
        run(&input, 64),
        connection(&[frame(HEADERS, END_HEADERS, &fixed)])
    );
}

#[test]
fn padding_priority_and_continuation_are_handled() {
    let block = [&[0x86, 0x41, 11][..], b"/run/x.sock", &[0x83]].concat();
    let (head, tail) = block.split_at(4);
    let priority = [0, 0, 0, 0, 15];
    let mut payload = vec![2];
    payload.extend_from_slice(&priority);
    payload.extend_from_slice(head);
    payload.extend_from_slice(&[0, 0]);
    let input = connection(&[
        frame(HEADERS, PADDED | PRIORITY | 0x1, &payload),
        frame(CONTINUATION, END_HEADERS, tail),
        frame(0x8, 0, &[0, 0, 0, 1]),
    ]);
    let fixed = [&priority[..], &[0x86, 0x41, 9], b"localhost", &[0x83]].concat();
    let expected = connection(&[
        frame(HEADERS, PRIORITY | END_HEADERS | 0x1, &fixed),
        frame(0x8, 0, &[0, 0, 0, 1]),
    ]);
    assert_eq!(run(&input, 2), expected);
}

#[test]
fn what_cannot_be_walked_passes_through() {
    // Huffman-coded value: left for h2 to judge.
    let huffman = [&[0x41, 0x80 | 4][..], &[1, 2, 3, 4]].concat();
    // A truncated block.
    let truncated = [0x41, 20, b'a'];
    for block in [&huffman[..], &truncated[..]] {
        let input = connection(&[frame(HEADERS, END_HEADERS, block)]);
        assert_eq!(run(&input, 3), input);
    }
    // Not HTTP/2 at all.
    let http1 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3);
    assert_eq!(run(&http1, 5), http1);
    // A CONTINUATION for another stream breaks the sequence: give up.
    let mut other = frame(CONTINUATION, END_HEADERS, &[0x82]);
    other[8] = 3;
    let input = connection(&[frame(HEADERS, 0, &[0x41, 1, b'/']), other]);
    assert_eq!(run(&input, 4), input);
}

#[test]
fn large_rewritten_blocks_are_split_into_frames() {
    let filler = vec![b'x'; 20_000];
    let mut block = vec![0x41, 11];
    block.extend_from_slice(b"/run/x.sock");
    block.extend_from_slice(&[0x40, 1, b'a', 0x7f, 0xa1, 0x9b, 0x01]); // "a": 20,000 bytes
    block.extend_from_slice(&filler);
    let (head, tail) = block.split_at(16_000);
    let input = connection(&[
        frame(HEADERS, 0, head),
        frame(CONTINUATION, END_HEADERS, tail),
    ]);
    let output = run(&input, 1000);
    let rewritten = rewrite_block(&block).unwrap();
    let (head, tail) = rewritten.split_at(MAX_EMIT_FRAME);
    assert_eq!(
        output,
        connection(&[
            frame(HEADERS, 0, head),
            frame(CONTINUATION, END_HEADERS, tail)
        ])
    );
}
