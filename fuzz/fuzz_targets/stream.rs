//! Any byte stream, split anywhere: the frame reader never panics, always makes progress, and yields
//! the same messages as parsing the frames whole.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psc::wire::FrameReader;

fuzz_target!(|input: (u8, &[u8])| {
    let (chunk, data) = input;
    let chunk = usize::from(chunk.max(1));
    let mut whole = FrameReader::new();
    let mut split = FrameReader::new();
    let mut a = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let (used, m) = whole.read(rest);
        assert!(used > 0);
        rest = &rest[used..];
        if let Some(m) = m {
            let stop = m.is_err();
            a.push(m);
            if stop {
                break;
            }
        }
    }
    let mut b = Vec::new();
    'outer: for piece in data.chunks(chunk) {
        let mut rest = piece;
        while !rest.is_empty() {
            let (used, m) = split.read(rest);
            assert!(used > 0);
            rest = &rest[used..];
            if let Some(m) = m {
                let stop = m.is_err();
                b.push(m);
                if stop {
                    break 'outer;
                }
            }
        }
    }
    assert_eq!(a, b);
});
