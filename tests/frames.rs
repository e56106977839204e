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
