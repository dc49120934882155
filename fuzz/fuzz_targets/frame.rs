//! Any bytes: parsing never panics, and whatever parses re-emits to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psc::wire::{Frame, Message, MAX_FRAME_LEN};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::parse_bytes(data) {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let len = message.emit_bytes(&mut buf).expect("fits");
        assert_eq!(Message::parse_bytes(&buf[..len]), Ok(message));
        let frame = Frame::new_checked(data).expect("parsed, so checked");
        // Canonical encodings: same bytes, except that an Abort of a foreign version keeps its version.
        if frame.version() == p2psc::wire::VERSION {
            assert_eq!(&buf[..len], &data[..len]);
        }
    }
});
