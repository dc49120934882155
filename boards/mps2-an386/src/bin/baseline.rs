//! The size baseline: the same board bring-up and network stack as `punch`, a plain TCP client that
//! sends one message to `P2PSC_MEDIATOR` and expects it echoed, and no p2psc connect (no registration,
//! punch, Ed25519 or X25519). `scripts/size-report.sh` subtracts this image from `punch` to show what
//! p2psc itself costs. It runs too: against any TCP echo server at that address.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_time::{with_timeout, Duration};
use embedded_io_async::{Read as _, Write as _};
use mps2_an386::executor::Executor;
use mps2_an386::semihosting::exit;
use mps2_an386::{board, config, println};
use p2psc::net::tcp::TcpSocket;
use p2psc::net::{IpEndpoint, Ipv4Address};
use static_cell::StaticCell;

/// The same application socket buffers as `punch`'s peer connection.
struct Buffers {
    rx: [u8; 1024],
    tx: [u8; 1024],
}

static BUFFERS: StaticCell<Buffers> = StaticCell::new();
static EXECUTOR: StaticCell<Executor> = StaticCell::new();

#[mps2_an386::entry]
fn main() -> ! {
    EXECUTOR
        .init(Executor::new())
        .run(|spawner| spawner.spawn(app(spawner).unwrap()))
}

#[embassy_executor::task]
async fn app(spawner: Spawner) {
    let stack = board::start(spawner, "baseline");
    if board::wait_config(stack).await.is_none() {
        exit(false)
    }
    let b = BUFFERS.init(Buffers {
        rx: [0; 1024],
        tx: [0; 1024],
    });
    let mut socket = TcpSocket::new(stack, &mut b.rx, &mut b.tx);
    socket.set_timeout(Some(Duration::from_secs(10)));
    let server = IpEndpoint::new(
        Ipv4Address::from(config::MEDIATOR_ADDR).into(),
        config::MEDIATOR_PORT,
    );
    println!("tcp: connecting to {}", board::Ep(server));
    if let Err(e) = socket.connect(server).await {
        println!("tcp: failed: {:?}", e);
        exit(false)
    }
    let msg = b"hello from mps2-an386\n";
    let mut got = [0u8; 22];
    let ok = socket.write_all(msg).await.is_ok()
        && matches!(
            with_timeout(Duration::from_secs(10), socket.read_exact(&mut got)).await,
            Ok(Ok(()))
        )
        && got == *msg;
    if ok {
        println!("echo: ok");
    } else {
        println!("echo: failed");
    }
    socket.close();
    exit(ok)
}
