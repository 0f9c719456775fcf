//! Arbitrary bytes as a request frame: size prefix check, header decode,
//! and the body decoder of whatever API the header names. Nothing may panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use pinion_server::api::decode_body;
use pinion_server::net::frame::{check_size, parse_request};

fuzz_target!(|data: &[u8]| {
    if data.len() >= 4 {
        let size = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        let _ = check_size(size, 100 << 20);
        if let Ok(request) = parse_request(Bytes::copy_from_slice(&data[4..])) {
            let _ = decode_body(&request);
        }
    }
});
