//! Reading byte strings from the command line: hex, base64, `@file` or `-` (stdin).

use std::io::Read;

use base64::Engine;

use crate::Failure;

/// Reads the argument's text: `@path` reads a file, `-` reads stdin, anything else is the text.
pub fn text(arg: &str) -> Result<String, Failure> {
    if arg == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(|e| Failure::bad(format!("cannot read stdin: {e}")))?;
        Ok(s)
    } else if let Some(path) = arg.strip_prefix('@') {
        read_file(path)
    } else {
        Ok(arg.to_owned())
    }
}

/// Reads a file as text, or as bytes turned into hex when it is binary.
pub fn read_file(path: &str) -> Result<String, Failure> {
    let bytes = std::fs::read(path).map_err(|e| Failure::bad(format!("cannot read {path}: {e}")))?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => Ok(hex::encode(e.into_bytes())),
    }
}

/// Decodes one byte string written as hex (optionally `0x`-prefixed) or base64 (standard or URL-safe).
pub fn decode(s: &str) -> Result<Vec<u8>, Failure> {
    let s: String = s.split_whitespace().collect();
    let s = s.trim_matches('"');
    let hex_part = s.strip_prefix("0x").unwrap_or(s);
    if !hex_part.is_empty() && hex_part.len().is_multiple_of(2) && hex_part.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(hex_part).map_err(|e| Failure::bad(format!("bad hex: {e}")));
    }
    let engines = [
        base64::engine::general_purpose::STANDARD,
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    for e in engines {
        if let Ok(b) = e.decode(s) {
            return Ok(b);
        }
    }
    Err(Failure::bad("input is neither hex nor base64"))
}

/// Decodes a 32-byte hex key argument.
pub fn key32(s: &str, what: &str) -> Result<[u8; 32], Failure> {
    let b = hex::decode(s.trim()).map_err(|_| Failure::usage(format!("{what} must be 64 hex digits")))?;
    b.try_into().map_err(|_| Failure::usage(format!("{what} must be 32 bytes (64 hex digits)")))
}
