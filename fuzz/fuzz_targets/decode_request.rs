//! Fuzzes what a connection does with a frame: header, then body at whatever version the header
//! names. Run with `cargo fuzz run decode_request` (see README "Fuzzing").
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frame = bytes::Bytes::copy_from_slice(data);
    if let Ok((api_key, header)) = inlet_protocol::codec::decode_header(&mut frame) {
        let _ = inlet_protocol::codec::decode_body(api_key, header.request_api_version, &mut frame);
    }
});
