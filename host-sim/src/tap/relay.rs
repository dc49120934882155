//! `host-sim tap relay`: a delayed Ethernet link between two TAP devices (this kernel has no netem).
//!
//! Every frame read from one TAP is written to the other `--delay-ms` later, in order, both ways. Bridge
//! each TAP into a different segment and the two segments are joined by a link with that one-way delay.

use std::collections::VecDeque;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Forward Ethernet frames between two TAP devices after a delay, both ways. Runs until killed.
#[derive(Debug, Clone, clap::Args)]
pub struct RelayArgs {
    /// One TAP device (created if missing).
    #[arg(long, value_name = "IFNAME")]
    pub a: String,
    /// The other TAP device.
    #[arg(long, value_name = "IFNAME")]
    pub b: String,
    /// One-way delay added to every frame, milliseconds (each direction).
    #[arg(long, value_name = "MS", default_value_t = 20)]
    pub delay_ms: u64,
    /// Most frames in flight per direction; beyond, frames are dropped (a full queue).
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub queue: usize,
}

/// A TAP device, non-blocking, without packet information headers.
struct Tap {
    fd: OwnedFd,
    name: String,
}

impl Tap {
    fn open(name: &str) -> io::Result<Tap> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bad interface name",
            ));
        }
        let path = CString::new("/dev/net/tun").expect("no NUL");
        // SAFETY: a plain open(2) of a NUL-terminated path.
        let fd = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
        if unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &mut ifr) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Tap {
            fd,
            name: name.to_string(),
        })
    }

    /// One frame, or `None` when nothing is queued.
    fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        // SAFETY: reads at most buf.len() bytes into buf.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
            _ => Err(e),
        }
    }

    fn write(&self, frame: &[u8]) -> io::Result<()> {
        // SAFETY: writes frame.len() bytes from frame.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[derive(Default)]
struct Direction {
    queue: VecDeque<(Instant, Vec<u8>)>,
    forwarded: u64,
    dropped: u64,
}

pub fn run(args: RelayArgs) -> ExitCode {
    match relay(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("host-sim tap relay: {e}");
            ExitCode::from(2)
        }
    }
}

/// Set by SIGTERM/SIGINT: print the counters and leave.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn relay(args: &RelayArgs) -> io::Result<()> {
    // SAFETY: the handler only stores to an atomic (async-signal-safe). No SA_RESTART: poll returns EINTR.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
    let open = |name: &str| {
        Tap::open(name).map_err(|e| io::Error::new(e.kind(), format!("opening TAP {name}: {e}")))
    };
    let taps = [open(&args.a)?, open(&args.b)?];
    let delay = Duration::from_millis(args.delay_ms);
    println!(
        "relay {}: {} <-> {}, {} ms each way",
        std::process::id(),
        taps[0].name,
        taps[1].name,
        args.delay_ms
    );
    // dirs[i] carries frames read from taps[i] to taps[1 - i].
    let mut dirs = [Direction::default(), Direction::default()];
    let mut buf = vec![0u8; 65536];
    while !STOP.load(Ordering::Relaxed) {
        let now = Instant::now();
        for (i, dir) in dirs.iter_mut().enumerate() {
            while dir.queue.front().is_some_and(|(due, _)| *due <= now) {
                let (_, frame) = dir.queue.pop_front().expect("front exists");
                // A frame the other side cannot take is lost, as on a wire.
                match taps[1 - i].write(&frame) {
                    Ok(()) => dir.forwarded += 1,
                    Err(_) => dir.dropped += 1,
                }
            }
        }
        let next = dirs
            .iter()
            .filter_map(|d| d.queue.front().map(|(due, _)| *due))
            .min();
        let timeout_ms = match next {
            Some(due) => due
                .saturating_duration_since(Instant::now())
                .as_micros()
                .div_ceil(1000)
                .min(1000) as libc::c_int,
            None => 1000,
        };
        let mut fds = [
            libc::pollfd {
                fd: taps[0].fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: taps[1].fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // SAFETY: poll(2) over two pollfds that live across the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for i in 0..2 {
            if fds[i].revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return Err(io::Error::other(format!("TAP {} went away", taps[i].name)));
            }
            if fds[i].revents & libc::POLLIN == 0 {
                continue;
            }
            let due = Instant::now() + delay;
            while let Some(len) = taps[i].read(&mut buf)? {
                let dir = &mut dirs[i];
                if delay.is_zero() && dir.queue.is_empty() {
                    match taps[1 - i].write(&buf[..len]) {
                        Ok(()) => dir.forwarded += 1,
                        Err(_) => dir.dropped += 1,
                    }
                } else if dir.queue.len() < args.queue {
                    dir.queue.push_back((due, buf[..len].to_vec()));
                } else {
                    dir.dropped += 1;
                }
            }
        }
    }
    println!(
        "relay {}: {} -> {}: {} frames ({} dropped, {} in flight); {} -> {}: {} frames ({} dropped, {} in flight)",
        std::process::id(),
        taps[0].name,
        taps[1].name,
        dirs[0].forwarded,
        dirs[0].dropped,
        dirs[0].queue.len(),
        taps[1].name,
        taps[0].name,
        dirs[1].forwarded,
        dirs[1].dropped,
        dirs[1].queue.len()
    );
    Ok(())
}
