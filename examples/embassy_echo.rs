//! Firmware on embassy: the network stack and its runner task, one `connect` to a peer through a
//! mediator, then an echo of everything the peer sends, on the secure channel.
//!
//! ```sh
//! cargo build --example embassy_echo --target thumbv7em-none-eabihf
//! ```
//!
//! The board's parts (Ethernet driver, time base, random seed) are stand-ins in `firmware/mod.rs`:
//! with them the image builds and runs on any Cortex-M4F, and ends with `MediatorUnreachable`, since
//! no frame ever arrives. Replace them with your HAL's, and the keys with yours (`doc/keys.md`).
//! The other end is `p2psc connect` on a laptop, or the `echo_client` example of p2psc-tokio.
//!
//! On a host this file builds to a `main` that only says how to build it.
#![cfg_attr(target_os = "none", no_std)]
#![cfg_attr(target_os = "none", no_main)]

#[cfg(target_os = "none")]
mod firmware;

#[cfg(target_os = "none")]
mod app {
    use embassy_executor::Spawner;
    use embassy_time::{Duration, Timer};
    use embedded_io_async::Write;
    use p2psc::connector::{connect, ConnectResources, Mediator, Request};
    use p2psc::identity::{Keypair, PublicKey};
    use p2psc::net::StaticConfigV4;
    use p2psc::net::{self, Config, Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources};
    use rand_core::{CryptoRng, RngCore};
    use static_cell::StaticCell;

    use crate::firmware::{self, NoEthernet};

    /// This device's key: the seed of a PKCS#8 file, or from a secure element (`doc/keys.md`).
    const KEY_SEED: [u8; 32] = [0xA1; 32];
    /// The peer's public key (`p2psc pubkey KEY` prints it).
    const PEER_KEY: PublicKey = match PublicKey::from_hex(
        "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
    ) {
        Ok(key) => key,
        Err(_) => panic!("bad peer key"),
    };

    /// The buffers of a connection: 1 KiB each way for the application's socket, one candidate,
    /// the mediator connection's and the secure channel's (the defaults).
    type Resources = ConnectResources<1024, 1024>;
    /// Sockets in the stack: what a connection takes while it is made.
    const SOCKETS: usize = Resources::SOCKETS;

    static STACK_RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
    static CONNECT_RESOURCES: StaticCell<Resources> = StaticCell::new();

    #[embassy_executor::main]
    async fn main(spawner: Spawner) {
        let core = cortex_m::Peripherals::take().unwrap();
        firmware::start_clock(core.SYST);
        let mut rng = firmware::trng();

        let config = Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 1, 2), 24),
            gateway: Some(Ipv4Address::new(192, 168, 1, 1)),
            dns_servers: Default::default(),
        });
        let stack_resources = STACK_RESOURCES.init(StackResources::new());
        let (stack, runner) = net::new(NoEthernet, config, stack_resources, rng.next_u64());
        // The runner moves frames between the driver and smoltcp; it runs for as long as the stack.
        spawner.spawn(net_task(runner).unwrap());
        stack.wait_config_up().await;

        // 4.5 KiB of buffers, outside the task's future.
        let resources = CONNECT_RESOURCES.init(Resources::new());
        let me = Keypair::from_seed(&KEY_SEED);
        let mediator = Mediator::new(Ipv4Address::new(203, 0, 113, 10), 7777);
        let request = Request::new(&me, PEER_KEY, mediator);
        loop {
            match echo_once(stack, resources, &request, &mut rng).await {
                Ok(()) => Timer::after(Duration::from_secs(1)).await,
                Err(_) => Timer::after(Duration::from_secs(10)).await,
            }
        }
    }

    #[embassy_executor::task]
    async fn net_task(mut runner: Runner<'static, NoEthernet>) -> ! {
        runner.run().await
    }

    /// Connect to the peer, echo until it ends its stream, close.
    async fn echo_once(
        stack: Stack<'_>,
        resources: &mut Resources,
        request: &Request<&Keypair>,
        rng: &mut impl CryptoRng,
    ) -> Result<(), p2psc::Error> {
        let mut conn = connect(stack, resources, request, rng).await?;
        let mut chunk = [0; 256];
        loop {
            // Ok(0): the peer's authenticated end of stream.
            let n = match conn.socket.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // write_all queues the last record; flush waits until TCP has taken it.
            let echoed = conn.socket.write_all(&chunk[..n]).await;
            if echoed.is_err() || conn.socket.flush().await.is_err() {
                break;
            }
        }
        let _ = conn.socket.close().await;
        Ok(())
    }
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("firmware: cargo build --example embassy_echo --target thumbv7em-none-eabihf");
}
