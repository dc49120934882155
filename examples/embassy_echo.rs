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
    use p2psc::connector::{connect, ConnectBuffers, ConnectConfig, Mediator, Peer, RecordBuffers};
    use p2psc::identity::{Keypair, PublicKey};
    use p2psc::net::StaticConfigV4;
    use p2psc::net::{self, Config, Ipv4Address, Ipv4Cidr, Runner, Stack, StackResources};
    use p2psc::proto::channel::MAX_RECORD_LEN;
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

    /// Sockets in the stack: the mediator connection, two punch candidates, one spare (DHCP).
    const SOCKETS: usize = 4;

    /// Everything with a `'static` lifetime: the stack's sockets, the TCP and record buffers.
    struct Buffers {
        rx: [u8; 1024],
        tx: [u8; 1024],
        mediator_rx: [u8; 256],
        mediator_tx: [u8; 256],
        record_rx: [u8; MAX_RECORD_LEN],
        record_tx: [u8; 512],
    }

    static RESOURCES: StaticCell<StackResources<SOCKETS>> = StaticCell::new();
    static BUFFERS: StaticCell<Buffers> = StaticCell::new();

    #[embassy_executor::main]
    async fn main(spawner: Spawner) {
        let core = cortex_m::Peripherals::take().unwrap();
        firmware::start_clock(core.SYST);
        let seed = firmware::random_seed();

        let config = Config::ipv4_static(StaticConfigV4 {
            address: Ipv4Cidr::new(Ipv4Address::new(192, 168, 1, 2), 24),
            gateway: Some(Ipv4Address::new(192, 168, 1, 1)),
            dns_servers: Default::default(),
        });
        let resources = RESOURCES.init(StackResources::new());
        let tcp_seed = u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]);
        let (stack, runner) = net::new(NoEthernet, config, resources, tcp_seed);
        // The runner moves frames between the driver and smoltcp; it runs for as long as the stack.
        spawner.spawn(net_task(runner).unwrap());
        stack.wait_config_up().await;

        // 5 KiB of buffers, outside the task's future.
        let buffers = BUFFERS.init(Buffers {
            rx: [0; 1024],
            tx: [0; 1024],
            mediator_rx: [0; 256],
            mediator_tx: [0; 256],
            record_rx: [0; MAX_RECORD_LEN],
            record_tx: [0; 512],
        });
        loop {
            // A fresh seed for each connection (nonce, ephemeral key, port, jitter derive from it).
            match echo_once(stack, buffers, firmware::random_seed()).await {
                Ok(()) => Timer::after(Duration::from_secs(1)).await,
                Err(_) => Timer::after(Duration::from_secs(10)).await,
            }
        }
    }

    #[embassy_executor::task]
    async fn net_task(mut runner: Runner<'static, NoEthernet>) -> ! {
        runner.run().await
    }

    /// Connect to the peer, echo until it closes, close.
    async fn echo_once(
        stack: Stack<'_>,
        b: &mut Buffers,
        seed: [u8; 32],
    ) -> Result<(), p2psc::Error> {
        let me = Keypair::from_seed(&KEY_SEED);
        let peer = Peer::new(PEER_KEY);
        let mediator = Mediator::new(Ipv4Address::new(203, 0, 113, 10), 7777);
        let buffers = ConnectBuffers {
            rx: &mut b.rx,
            tx: &mut b.tx,
            mediator_rx: &mut b.mediator_rx,
            mediator_tx: &mut b.mediator_tx,
            race: None,
        };
        let records = RecordBuffers {
            rx: &mut b.record_rx,
            tx: &mut b.record_tx,
        };
        let config = ConnectConfig::default();
        let mut conn =
            connect(stack, &me, &peer, &mediator, buffers, records, config, seed).await?;
        let mut chunk = [0; 256];
        loop {
            // Ok(0): the peer's authenticated end of stream.
            let n = match conn.socket.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // write_all queues the last record; flush waits until TCP has taken it.
            if conn.socket.write_all(&chunk[..n]).await.is_err()
                || conn.socket.flush().await.is_err()
            {
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
