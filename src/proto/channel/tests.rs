use super::*;
extern crate std;
use std::println;

fn hex(b: &[u8]) -> std::string::String { b.iter().map(|x| std::format!("{:02x}", x)).collect() }

#[test]
fn print_vectors() {
    let sk = SessionKey(hex_literal::hex!("8e52c0c88795069e0061e3fa9308e28b5563731d8ea8f399dd2cfce644205982"));
    let l = ChannelKeys::derive(&sk, Role::Leader);
    println!("l2f {}", hex(&l.send.0));
    println!("f2l {}", hex(&l.receive.0));
    let mut s = Sealer::new(l.send);
    let mut out = [0u8; 200];
    let n = s.seal(b"Hello, follower!", &mut out).unwrap().len; println!("L0 {}", hex(&out[..n]));
    let n = s.seal(b"", &mut out).unwrap().len; println!("L1 {}", hex(&out[..n]));
    let n = s.seal_end(&mut out).unwrap(); println!("L2 {}", hex(&out[..n]));
    let f = ChannelKeys::derive(&sk, Role::Follower);
    let mut s = Sealer::new(f.send);
    let n = s.seal(b"Hello, leader!", &mut out).unwrap().len; println!("F0 {}", hex(&out[..n]));
    let p: std::vec::Vec<u8> = (0u8..64).collect();
    let n = s.seal(&p, &mut out).unwrap().len; println!("F1 {}", hex(&out[..n]));
    let n = s.seal_end(&mut out).unwrap(); println!("F2 {}", hex(&out[..n]));
}
