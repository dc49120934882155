//! A lying mediator: p2psc's own mediator machines (`Session`, `Table`), except that it registers one
//! peer under a key it does not own, so that a peer gets matched with an impostor. The peers'
//! handshake must catch it: the mediator is not trusted with authentication.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use p2psc::identity::dalek::DalekVerifier;
use p2psc::identity::PublicKey;
use p2psc::proto::{ConnId, MediatorConfig, Notice, Session, SessionEvent, Table};
use p2psc::wire::MAX_FRAME_LEN;

/// Serve on loopback (for at most `limit`): the peer registering as `impostor` is entered in the table
/// as `claimed` (the key its counterpart wants). Returns the address.
pub fn start(impostor: PublicKey, claimed: PublicKey, limit: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || serve(listener, impostor, claimed, limit));
    addr
}

struct Conn {
    stream: TcpStream,
    session: Session,
    rx: Vec<u8>,
}

fn serve(listener: TcpListener, impostor: PublicKey, claimed: PublicKey, limit: Duration) {
    let started = Instant::now();
    let now = || p2psc::time::Instant::from_micros(started.elapsed().as_micros() as i64);
    let config = MediatorConfig::default();
    let mut table = Table::new(HashMap::new(), config);
    let mut conns: Vec<Conn> = Vec::new();
    while started.elapsed() < limit {
        if let Ok((stream, observed)) = listener.accept() {
            stream.set_nonblocking(true).unwrap();
            let nonce = [conns.len() as u8 + 1; 32];
            let session = Session::new(config, observed, nonce, now());
            conns.push(Conn {
                stream,
                session,
                rx: Vec::new(),
            });
        }
        for k in 0..conns.len() {
            for event in receive(&mut conns[k], now()) {
                let event = match event {
                    SessionEvent::Verified(mut reg) if reg.key == impostor => {
                        reg.key = claimed;
                        SessionEvent::Verified(reg)
                    }
                    e => e,
                };
                let notices = table.settle(now(), k as ConnId, &mut conns[k].session, event);
                deliver(&mut conns, notices, now());
            }
        }
        for conn in conns.iter_mut() {
            let _ = conn.session.poll(now());
            transmit(conn, now());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Read what arrived and feed it to the session; returns its events.
fn receive(conn: &mut Conn, now: p2psc::time::Instant) -> Vec<SessionEvent> {
    let mut buf = [0u8; 1024];
    match conn.stream.read(&mut buf) {
        Ok(n) if n > 0 => conn.rx.extend_from_slice(&buf[..n]),
        Err(e) if e.kind() != ErrorKind::WouldBlock => {}
        _ => {}
    }
    let mut events = Vec::new();
    loop {
        let (used, event) = conn.session.receive(now, &DalekVerifier, &conn.rx);
        conn.rx.drain(..used);
        events.extend(event);
        if used == 0 {
            return events;
        }
    }
}

fn deliver(
    conns: &mut [Conn],
    notices: impl IntoIterator<Item = (ConnId, Notice)>,
    now: p2psc::time::Instant,
) {
    for (id, notice) in notices {
        let _ = conns[id as usize].session.notify(now, notice);
    }
}

fn transmit(conn: &mut Conn, now: p2psc::time::Instant) {
    let mut frame = [0u8; MAX_FRAME_LEN];
    while let Some(n) = conn.session.transmit(now, &mut frame) {
        let _ = conn.stream.write_all(&frame[..n]);
    }
}
