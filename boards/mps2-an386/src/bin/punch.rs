//! Punch a direct, authenticated TCP connection to the peer through the mediator, then check it with
//! an echo exchange.
//!
//! Echo protocol (what the peer must speak once authenticated): the firmware sends [`ROUNDS`]
//! messages, one at a time, and after each expects the very same bytes back; then it closes. A peer
//! that echoes every byte it receives until the connection closes (`host-sim tap peer --echo`) is
//! enough. Console lines the end-to-end test looks for: `p2psc: registered`, `p2psc: matched ...`,
//! `p2psc: authenticated ...`, `p2psc: connected to ... path direct|relayed ...`, `echo: ok ...`
//! (with the feature `relay` also `p2psc: asking the mediator to relay ...` and
//! `p2psc: relay joined ...`); failures print `p2psc: failed: ...` or `echo: failed: ...`. The run ends QEMU with status 0 on success, 1 otherwise.
#![no_std]
#![no_main]

use embassy_executor::Spawner;
use embassy_time::{with_timeout, Duration, Instant, Timer};
use embedded_io_async::{Read, Write};
use mps2_an386::board::{Addr, Ep, Text};
use mps2_an386::executor::Executor;
use mps2_an386::semihosting::exit;
use mps2_an386::{board, config, entropy, println};
#[cfg(not(feature = "plaintext"))]
use p2psc::connector::{connect_observed as connect, ConnectResources as Resources};
#[cfg(feature = "plaintext")]
use p2psc::connector::{connect_plaintext as connect, PlaintextResources as Resources};
use p2psc::connector::{Config, ConnectEvent, Mediator, Request};
use p2psc::identity::{Keypair, PublicKey};
use p2psc::net::Ipv4Address;
use p2psc::proto::SessionKey;
use p2psc::rng::Drbg;
use static_cell::StaticCell;

/// Messages sent and expected back.
const ROUNDS: usize = 3;
/// Longest wait for one echo.
const ECHO_TIMEOUT: Duration = Duration::from_secs(10);

/// The connection's memory, sized here: the peer connection (the application's socket) 1 KiB each
/// way, the mediator connection's, and with the secure channel a whole incoming record (2 KiB) and
/// outgoing records of 512 B.
static RESOURCES: StaticCell<Resources<1024, 1024>> = StaticCell::new();
static EXECUTOR: StaticCell<Executor> = StaticCell::new();

#[mps2_an386::entry]
fn main() -> ! {
    EXECUTOR
        .init(Executor::new())
        .run(|spawner| spawner.spawn(app(spawner).unwrap()))
}

#[embassy_executor::task]
async fn app(spawner: Spawner) {
    let stack = board::start(spawner, "punch");
    if board::wait_config(stack).await.is_none() {
        exit(false)
    }
    let me = Keypair::from_seed(&config::KEY_SEED);
    let peer = PublicKey::from_bytes(config::PEER_KEY);
    let mediator = Mediator::new(
        Ipv4Address::from(config::MEDIATOR_ADDR),
        config::MEDIATOR_PORT,
    );
    println!("p2psc: me   {:x}", me.public_key());
    println!("p2psc: peer {:x}", peer);
    println!("p2psc: mediator {}", Ep(mediator.endpoint));

    let request = Request {
        // Bounded well inside the end-to-end test's QEMU timeout.
        config: Config {
            timeout: Duration::from_secs(60),
            ..Config::default()
        },
        ..Request::new(&me, peer, mediator)
    };
    let resources = RESOURCES.init(Resources::new());
    let mut rng = Drbg::new(entropy::seed(b"connect"));
    let started = Instant::now();
    let observe = |event| report(event, started);
    let result = connect(stack, resources, &request, &mut rng, observe).await;
    let mut conn = match result {
        Ok(conn) => conn,
        Err(e) => {
            println!(
                "p2psc: failed: {} after {} ms",
                e,
                started.elapsed().as_millis()
            );
            exit(false)
        }
    };
    println!(
        "p2psc: connected to {} as {:?} path {} session {} in {} ms",
        Ep(conn.remote),
        conn.role,
        conn.path,
        Fingerprint(&conn.session_key),
        started.elapsed().as_millis()
    );

    match echo(&mut conn.socket).await {
        Ok(bytes) => println!("echo: ok ({} messages, {} bytes)", ROUNDS, bytes),
        Err(why) => {
            println!("echo: failed: {}", Text(why));
            exit(false)
        }
    }
    // Close (our end-of-stream record, then FIN), and wait for the peer's (it closes once it has seen
    // ours) so that both ends see an orderly, authenticated close before QEMU exits.
    let closed = with_timeout(Duration::from_secs(5), async {
        #[cfg(not(feature = "plaintext"))]
        let _ = conn.socket.close().await;
        #[cfg(feature = "plaintext")]
        conn.socket.close();
        let mut buf = [0u8; 64];
        while let Ok(n) = conn.socket.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    Timer::after(Duration::from_millis(200)).await; // our last ACK
    if closed.is_ok() {
        println!("done");
    } else {
        println!("done (peer did not close)");
    }
    exit(true)
}

/// A short, non-secret tag of the session key, computed as `host-sim tap peer` prints it, so a test
/// can check that both ends derived the same key.
struct Fingerprint<'a>(&'a SessionKey);

impl core::fmt::Display for Fingerprint<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let digest = salty::Sha512::new()
            .updated(b"p2psc host-sim session fingerprint")
            .updated(&self.0 .0)
            .finalize();
        digest[..8].iter().try_for_each(|b| write!(f, "{:02x}", b))
    }
}

fn report(event: ConnectEvent, started: Instant) {
    let ms = started.elapsed().as_millis();
    match event {
        ConnectEvent::MediatorConnected(local) => {
            println!("p2psc: mediator connected from {} ({} ms)", Addr(local), ms)
        }
        ConnectEvent::Challenged(public) => println!("p2psc: mediator sees us at {}", Addr(public)),
        // Also for a peer that registers second: the mediator matches it at once, without a Registered
        // message, and the connector reports the registration all the same.
        ConnectEvent::Registered => println!("p2psc: registered ({} ms)", ms),
        ConnectEvent::Matched {
            role, peer, racing, ..
        } => {
            println!(
                "p2psc: matched peer at {} as {:?}{} ({} ms)",
                Addr(peer),
                role,
                Text(if racing {
                    ", racing LAN and public paths"
                } else {
                    ""
                }),
                ms
            );
        }
        ConnectEvent::Dialing(to, attempt) => {
            println!("p2psc: dialing {} (attempt {})", Addr(to), attempt)
        }
        ConnectEvent::Retrying(to) => println!("p2psc: retrying {}", Addr(to)),
        ConnectEvent::Established(to) => println!("p2psc: established {} ({} ms)", Addr(to), ms),
        ConnectEvent::Authenticated(to) => {
            println!("p2psc: authenticated {} ({} ms)", Addr(to), ms)
        }
        #[cfg(feature = "relay")]
        ConnectEvent::Relaying { at_once } => println!(
            "p2psc: asking the mediator to relay ({}) ({} ms)",
            Text(if at_once {
                "the NATs cannot be punched"
            } else {
                "the punch failed"
            }),
            ms
        ),
        #[cfg(feature = "relay")]
        ConnectEvent::Relayed => println!("p2psc: relay joined ({} ms)", ms),
        // Events added to p2psc later: not reported by this firmware.
        _ => {}
    }
}

/// Send each message and expect it back. Returns the bytes echoed.
async fn echo(socket: &mut (impl Read + Write)) -> Result<usize, &'static str> {
    let mut total = 0;
    for round in 0..ROUNDS {
        let mut msg = *b"hello from mps2-an386, round 0\n";
        msg[msg.len() - 2] = b'0' + round as u8;
        socket.write_all(&msg).await.map_err(|_| "write")?;
        let mut got = [0u8; 32];
        let mut n = 0;
        while n < msg.len() {
            let read = with_timeout(ECHO_TIMEOUT, socket.read(&mut got[n..msg.len()]))
                .await
                .map_err(|_| "timed out waiting for the echo")?
                .map_err(|_| "connection reset")?;
            if read == 0 {
                return Err("peer closed before echoing");
            }
            n += read;
        }
        if got[..n] != msg[..] {
            return Err("echo differs from what was sent");
        }
        total += n;
    }
    Ok(total)
}
