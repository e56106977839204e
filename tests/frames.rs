//! The frame layer against vectors made by running tgcalls' own frame functions
//! (`vectors/frames/`, see its README): what goes into the packet encryption on every attempt,
//! which packets pass the start-code check, what reaches the decoder, and the level byte.

use confchain::frame::{self, AudioLevel, Codec};
use serde_json::Value;

fn load(name: &str) -> Value {
    let path = format!("{}/vectors/frames/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

fn codec(case: &Value) -> Codec {
    let codec = Codec::from_payload_type(case["payload_type"].as_u64().unwrap() as u8);
    assert_eq!(codec.name(), case["codec"].as_str().unwrap(), "{}: payload type mapping", case["name"]);
    codec
}

#[test]
fn send_vectors_from_tgcalls() {
    let cases = load("send.json")["cases"].as_array().unwrap().clone();
    assert!(cases.len() >= 80);
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let codec = codec(case);
        let frame = bytes(&case["frame"]);
        let level = AudioLevel {
            level: case["audio_level"].as_u64().unwrap() as u8,
            speech: case["has_speech"].as_bool().unwrap(),
        };
        let outputs: Vec<Vec<u8>> = case["fake_outputs"].as_array().unwrap().iter().map(bytes).collect();
        let expected_calls = case["calls"].as_array().unwrap();

        // What the layer hands to the packet encryption.
        let mut plain = Vec::new();
        let prefix = frame::plaintext_into(codec, &frame, level, &mut plain);
        let first = &expected_calls[0];
        assert_eq!(hex::encode(&plain), first["data"].as_str().unwrap(), "{name}: data");
        assert_eq!(prefix as u64, first["prefix"].as_u64().unwrap(), "{name}: prefix");

        // Every attempt, the start-code check and the outcome, with the same fake packets.
        let mut calls = Vec::new();
        let sent = frame::encrypt_with_callback(codec, &frame, level, |data, prefix| {
            calls.push((data.to_vec(), prefix));
            outputs[calls.len() - 1].clone()
        });
        assert_eq!(calls.len(), expected_calls.len(), "{name}: attempts");
        for ((data, prefix), expected) in calls.iter().zip(expected_calls) {
            assert_eq!(hex::encode(data), expected["data"].as_str().unwrap(), "{name}: data of a retry");
            assert_eq!(*prefix as u64, expected["prefix"].as_u64().unwrap(), "{name}: prefix of a retry");
        }
        let expected_sent = case["sent"].as_str().map(|s| hex::decode(s).unwrap());
        assert_eq!(sent, expected_sent, "{name}: sent");
        for (k, output) in outputs.iter().enumerate().take(calls.len()) {
            if !output.is_empty() {
                let accepted = expected_sent.as_ref() == Some(output) && k + 1 == calls.len();
                assert_eq!(frame::is_valid_encrypted(codec, output, prefix), accepted, "{name}: check of attempt {k}");
            }
        }
    }
}

#[test]
fn receive_vectors_from_tgcalls() {
    for case in load("receive.json")["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let codec = codec(case);
        let got = frame::decrypt_with_callback(codec, &bytes(&case["decrypted"]));
        let expected = case["delivered"].as_str().map(|d| {
            let level = case["level"]
                .as_u64()
                .map(|l| AudioLevel { level: l as u8, speech: case["speech"].as_bool().unwrap() });
            (hex::decode(d).unwrap(), level)
        });
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn level_vectors_from_tgcalls() {
    let levels = load("levels.json");
    for v in levels["to_byte"].as_array().unwrap() {
        let linear = f32::from_bits(u32::from_str_radix(v["linear_f32_bits"].as_str().unwrap(), 16).unwrap());
        let speech = v["voice"].as_bool().unwrap() && !v["muted"].as_bool().unwrap();
        let level = AudioLevel::from_linear(linear, speech);
        assert_eq!(level.to_byte() as u64, v["byte"].as_u64().unwrap(), "level of {linear:e}");
        assert_eq!(level.level as u64, v["level"].as_u64().unwrap());
        assert_eq!(level.speech, v["speech"].as_bool().unwrap());
    }
    for v in levels["from_byte"].as_array().unwrap() {
        let byte = v["byte"].as_u64().unwrap() as u8;
        let expected = u32::from_str_radix(v["linear_f32_bits"].as_str().unwrap(), 16).unwrap();
        let got = AudioLevel::from_byte(byte).to_linear();
        assert_eq!(got.to_bits(), expected, "linear of byte {byte}: {got} vs {}", f32::from_bits(expected));
    }
}

mod calls {
    use confchain::frame::{self, AudioLevel, Codec, CHANNEL_MAIN, CHANNEL_SCREENCAST};
    use confchain::{
        build_zero_block, Call, CallEvent, ErrorKind, GroupParticipant, GroupState, Permissions, PrivateKey,
    };
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// Alice (1) and Bob (2) in a call whose zero block was drawn from `seed`.
    fn pair(seed: u64) -> (Call, Call, ChaCha20Rng, [u8; 32]) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let (a, b) = (PrivateKey::generate(&mut rng), PrivateKey::generate(&mut rng));
        let member = |id, key: &PrivateKey| GroupParticipant {
            user_id: id,
            public_key: key.public_key(),
            flags: Permissions::ALL,
            version: 0,
        };
        let state =
            GroupState { participants: vec![member(1, &a), member(2, &b)], external_permissions: Permissions::NONE };
        let zero = build_zero_block(state, &a, &mut rng).unwrap();
        let hash = zero.decode().unwrap().hash();
        let zero = zero.to_server_form();
        let alice = Call::new(1, a, &zero, &mut rng).unwrap();
        let bob = Call::new(2, b, &zero, &mut rng).unwrap();
        (alice, bob, rng, hash)
    }

    const IDR: &[u8] = &[
        0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80, 0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21,
        0xa0, 0x11, 0x22, 0x33,
    ];

    #[test]
    fn every_codec_round_trips_through_calls_and_handles() {
        let (mut alice, mut bob, mut rng, _) = pair(1);
        let level = AudioLevel { level: 42, speech: true };
        let vp8_key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0x55, 0x66, 0x77];
        let vp8_delta = [0x31, 0x02, 0x00, 0x55, 0x66];
        let cases: [(Codec, &[u8], usize); 5] = [
            (Codec::Opus, b"opus", 0),
            (Codec::Unknown, b"vp9", 0),
            (Codec::Vp8, &vp8_key, 10),
            (Codec::Vp8, &vp8_delta, 1),
            (Codec::H264, IDR, 25),
        ];
        for (codec, frame, prefix) in cases {
            let mut expected = Vec::new();
            assert_eq!(frame::plaintext_into(codec, frame, level, &mut expected), prefix, "{codec:?}");
            let packet = alice.encrypt_frame(CHANNEL_MAIN, codec, frame, level, 1_000, &mut rng).unwrap();
            assert_eq!(
                &packet[..prefix],
                &expected[..prefix],
                "{codec:?}: the clear prefix is the packet's first bytes"
            );
            assert_eq!(u32::from_le_bytes(packet[packet.len() - 4..].try_into().unwrap()) as usize, prefix);
            let (got, received) = bob.decrypt_frame(1, codec, &packet, 1_000).unwrap();
            match codec {
                Codec::Opus => assert_eq!((got.as_slice(), received.level), (frame, Some(level))),
                // Unknown codecs take the audio path on send and the raw path on receive (tgcalls).
                Codec::Unknown => assert_eq!((got.as_slice(), received.level), (expected.as_slice(), None)),
                _ => assert_eq!((got.as_slice(), received.level), (expected.as_slice(), None)),
            }
        }
        // The media handles, on the screencast channel, appending to non-empty buffers.
        let (encryptor, decryptor) = (alice.media_encryptor(&mut rng), bob.media_decryptor());
        let mut packet = b"head".to_vec();
        let sent =
            encryptor.encrypt_frame_into(CHANNEL_SCREENCAST, Codec::H264, IDR, level, 1_000, &mut packet).unwrap();
        assert_eq!((sent.clear_prefix, sent.attempts), (25, 1));
        assert_eq!(&packet[..4], b"head");
        let mut out = b"tail".to_vec();
        let received = decryptor.decrypt_frame_into(1, Codec::H264, &packet[4..], 1_000, &mut out).unwrap();
        assert_eq!(received.level, None);
        let mut widened = b"tail".to_vec();
        frame::plaintext_into(Codec::H264, IDR, level, &mut widened);
        assert_eq!(out, widened);
    }

    /// A packet appended to a buffer that already held bytes authenticates only its own clear
    /// prefix (the MAC once covered the buffer's earlier bytes too, so such packets never decrypted).
    #[test]
    fn packets_appended_to_a_non_empty_buffer_decrypt() {
        let (mut alice, mut bob, mut rng, _) = pair(2);
        let mut out = b"earlier bytes".to_vec();
        alice.encrypt_into(0, b"HDRpayload", 3, 1_000, &mut rng, &mut out).unwrap();
        assert_eq!(bob.decrypt(1, &out[13..], 1_000).unwrap(), b"HDRpayload");
    }

    #[test]
    fn an_empty_frame_is_dropped_but_an_empty_opus_frame_keeps_its_level() {
        let (mut alice, mut bob, mut rng, _) = pair(3);
        let level = AudioLevel { level: 7, speech: false };
        let packet = alice.encrypt_frame(0, Codec::Vp8, b"", level, 1_000, &mut rng).unwrap();
        assert_eq!(bob.decrypt_frame(1, Codec::Vp8, &packet, 1_000).unwrap_err().kind(), ErrorKind::FrameEmpty);
        let packet = alice.encrypt_frame(0, Codec::Opus, b"", level, 1_000, &mut rng).unwrap();
        let (frame, received) = bob.decrypt_frame(1, Codec::Opus, &packet, 1_000).unwrap();
        assert_eq!((frame.len(), received.level), (0, Some(level)));
        // A failed decryption leaves the buffer as it was.
        let mut out = b"keep".to_vec();
        assert!(bob.decrypt_frame_into(1, Codec::Opus, &packet, 1_000, &mut out).is_err(), "a replay");
        assert_eq!(out, b"keep");
    }

    /// About 1 block in 256 has a hash that puts a start code right after the clear prefix of
    /// every H.264 packet: the call says so at once, and drops H.264 (never sends it) while VP8
    /// and audio go on.
    #[test]
    fn a_blackout_epoch_is_reported_and_drops_h264_only() {
        let (mut alice, mut bob, mut rng, _) = (0..5_000)
            .map(pair)
            .find(|(_, _, _, hash)| frame::hash_blocks_h264(hash))
            .expect("one block in 256 blacks out H.264");
        assert!(alice.video_blackout());
        assert!(
            std::iter::from_fn(|| alice.poll_event()).any(|e| e == CallEvent::VideoBlackout { height: 0, now: true })
        );
        let mut out = b"keep".to_vec();
        let error = alice
            .encrypt_frame_into(0, Codec::H264, IDR, AudioLevel::default(), 1_000, &mut rng, &mut out)
            .unwrap_err();
        assert_eq!((error.kind(), error.kind().name()), (ErrorKind::FrameStartCode, "FRAME__START_CODE"));
        assert_eq!(out, b"keep");
        let packet = alice.encrypt_frame(0, Codec::Vp8, &[0x31, 1, 2], AudioLevel::default(), 1_000, &mut rng).unwrap();
        assert!(bob.decrypt_frame(1, Codec::Vp8, &packet, 1_000).is_ok());
    }
}
