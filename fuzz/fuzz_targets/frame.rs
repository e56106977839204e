//! The media frame layer under hostile frames and packets: H.264 access units of any shape
//! (no start code, truncated NALs, huge SEIs, 3-byte codes anywhere, garbage slice headers),
//! VP8 and Opus frames, and mutated frame packets. Never panics; allocation stays proportional
//! to the input. Properties: the laid-out plaintext is the frame with at most one `00` inserted
//! per start code and a clear prefix inside it; what is sent decrypts back to exactly that
//! plaintext (the Opus trailer stripped, its level returned); a frame is dropped only by a typed
//! error, with the output buffer untouched; a failed decrypt leaves the buffer as it was.
#![no_main]

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use confchain::frame::{self, AudioLevel, Codec};
use confchain::ErrorKind;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

static FIXTURE: OnceLock<common::Fixture> = OnceLock::new();

#[derive(Arbitrary, Debug)]
enum Part {
    /// A start code (3 or 4 bytes) and a NAL header byte.
    Nal {
        four: bool,
        header: u8,
    },
    Bytes(Vec<u8>),
    /// A run of one byte (zeros make emulation-prevention and start-code edge cases).
    Run {
        byte: u8,
        len: u16,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    codec: u8,
    level: u8,
    parts: Vec<Part>,
    /// Flip bytes of the packet before decrypting (at, value).
    edits: Vec<(u16, u8)>,
    raw_packet: Vec<u8>,
    seed: u64,
}

fuzz_target!(|data: &[u8]| {
    let fx = FIXTURE.get_or_init(common::fixture);
    let Ok(input) = Input::arbitrary(&mut Unstructured::new(data)) else { return };
    let codec = [Codec::Opus, Codec::Vp8, Codec::H264, Codec::Unknown][input.codec as usize % 4];
    let mut f = Vec::new();
    for part in input.parts.iter().take(64) {
        match part {
            Part::Nal { four, header } => {
                f.extend_from_slice(if *four { &[0, 0, 0, 1][..] } else { &[0, 0, 1][..] });
                f.push(*header);
            }
            Part::Bytes(b) => f.extend_from_slice(b),
            Part::Run { byte, len } => f.extend(std::iter::repeat_n(*byte, (*len as usize) % 70_000)),
        }
    }
    let level = AudioLevel::from_byte(input.level);

    // The layout: the frame with zeros inserted, the prefix inside it.
    let mut plain = b"keep".to_vec();
    let prefix = frame::plaintext_into(codec, &f, level, &mut plain);
    let plain = &plain[4..];
    assert!(prefix <= plain.len());
    match codec {
        Codec::Opus | Codec::Unknown => assert_eq!(plain, [&f[..], &[1, level.to_byte()]].concat()),
        Codec::Vp8 => assert_eq!(plain, &f[..]),
        Codec::H264 => {
            assert!(plain.len() >= f.len() && plain.len() - f.len() <= f.len() / 3 + 1);
            // Removing the inserted zeros gives the frame back: the tail is untouched.
            let widened = plain.len() - f.len();
            assert_eq!(&plain[prefix..], &f[prefix - widened.min(prefix)..]);
        }
    }

    // Encrypt and decrypt through the calls (fresh copies: replay windows stay per input).
    let (mut alice, mut bob) = (fx.alice.clone(), fx.bob.clone());
    let mut rng = common::rng(input.seed);
    let mut out = b"keep".to_vec();
    match alice.encrypt_frame_into(0, codec, &f, level, 0, &mut rng, &mut out) {
        Ok(sent) => {
            assert_eq!(sent.clear_prefix, prefix);
            assert!(frame::is_valid_encrypted(codec, &out[4..], prefix));
            let mut got = b"head".to_vec();
            match bob.decrypt_frame_into(1, codec, &out[4..], 0, &mut got) {
                Ok(received) => {
                    let expected: &[u8] = if codec == Codec::Opus { &f } else { plain };
                    assert_eq!(&got[4..], expected);
                    assert_eq!(received.level, (codec == Codec::Opus).then_some(level));
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::FrameEmpty);
                    assert!(plain.is_empty());
                    assert_eq!(got, b"head");
                }
            }
            // Edited packets: refused with the buffer untouched, or (edits that change nothing
            // authenticated) a replay.
            let mut packet = out[4..].to_vec();
            for &(at, value) in input.edits.iter().take(8) {
                let n = packet.len();
                packet[at as usize % n] ^= value;
            }
            let mut got = b"head".to_vec();
            if bob.decrypt_frame_into(1, codec, &packet, 0, &mut got).is_err() {
                assert_eq!(got, b"head");
            }
        }
        Err(e) => {
            // The only ways a frame this size is dropped: a start code in every attempt, or a
            // clear prefix past the packet format's limit (a huge SEI).
            assert!(matches!(e.kind(), ErrorKind::FrameStartCode | ErrorKind::InvalidInput), "{e:?}");
            assert_eq!(out, b"keep");
        }
    }

    // Raw bytes as a packet, for every codec's receive path.
    let mut got = b"head".to_vec();
    if bob.decrypt_frame_into(1, codec, &input.raw_packet, 0, &mut got).is_err() {
        assert_eq!(got, b"head");
    }
    let _ = frame::is_valid_encrypted(codec, &input.raw_packet, input.level as usize);
    let mut raw = input.raw_packet.clone();
    let _ = frame::strip_received(codec, &mut raw);
});
