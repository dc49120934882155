//! The laptop's side of the firmware examples (`embassy_echo`, `superloop_echo` in p2psc): connect to
//! the device through the mediator, send a few messages, and check that each comes back unchanged.
//!
//! ```sh
//! p2psc keygen --out laptop.pem        # the device's firmware needs this key's public key
//! cargo run -p p2psc-tokio --example echo_client -- laptop.pem DEVICE_PUBLIC_KEY mediator.example.net:7777
//! ```
//!
//! `DEVICE_PUBLIC_KEY` is 64 hex digits (`p2psc pubkey device.pem`). Both sides must start within the
//! mediator's wait (a minute by default).

use std::error::Error;

use p2psc::identity::{Keypair, PublicKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MESSAGES: [&str; 3] = [
    "hello",
    "from the laptop",
    "over a punched, authenticated TCP stream",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [key_file, device, mediator] = args.as_slice() else {
        return Err("usage: echo_client KEY.pem DEVICE_PUBLIC_KEY MEDIATOR:PORT".into());
    };
    // A PKCS#8 PEM private key, as `p2psc keygen` or `openssl genpkey -algorithm ed25519` write it.
    let me = Keypair::from_pkcs8_pem(&std::fs::read_to_string(key_file)?)?;
    let device: PublicKey = device.parse()?;
    println!("me {:x}, device {device:x}", me.public_key());

    let mut conn = p2psc_tokio::connect(&me, &device, mediator, Default::default()).await?;
    println!("connected to {} as {:?}", conn.peer(), conn.role());
    for message in MESSAGES {
        conn.write_all(message.as_bytes()).await?;
        conn.flush().await?;
        let mut echo = vec![0; message.len()];
        conn.read_exact(&mut echo).await?;
        if echo != message.as_bytes() {
            return Err(format!(
                "sent {message:?}, got back {:?}",
                String::from_utf8_lossy(&echo)
            )
            .into());
        }
        println!("echoed: {message}");
    }
    // Our authenticated end of stream; the device then ends its own, and closes.
    conn.shutdown().await?;
    let mut rest = Vec::new();
    conn.read_to_end(&mut rest).await?;
    println!("closed");
    Ok(())
}
