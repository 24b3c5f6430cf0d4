//! The TCP echo server that stands in for the application in the target pod: it echoes
//! what it reads until EOF, then closes. Owns the dual-stack listening socket (one socket
//! serves both VIPs) and the two ways it runs: in-process ([`Listener`], stops on drop) and
//! forever (`cargo xtask lab serve`, the `lab up` daemon).

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use socket2::{Domain, Protocol, Socket, Type};

/// A connection that stalls longer than this is dropped, so no handler thread lingers.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the in-process accept loop looks at its stop flag.
const STOP_POLL_MS: i32 = 100;
const STOP_POLL: Timespec = Timespec {
    tv_sec: 0,
    tv_nsec: STOP_POLL_MS as i64 * 1_000_000,
};

/// Binds [::]:`port` with IPV6_V6ONLY off (so IPv4 VIPs arrive as v4-mapped) in the
/// calling thread's netns, and listens.
pub fn bind_dual_stack(port: u16) -> Result<TcpListener> {
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))
        .context("could not create a TCP socket")?;
    socket
        .set_only_v6(false)
        .context("could not turn IPV6_V6ONLY off")?;
    socket
        .set_reuse_address(true)
        .context("could not set SO_REUSEADDR")?;
    let addr = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    socket
        .bind(&addr.into())
        .with_context(|| format!("could not bind [::]:{port} (is another echo server, e.g. a `lab up` daemon, running there?)"))?;
    socket.listen(128).context("could not listen")?;
    Ok(socket.into())
}

/// Echoes what the peer sends until it closes its side, then closes ours.
fn echo(mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if stream.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
    let _ = stream.shutdown(Shutdown::Write);
}

fn spawn_echo(stream: TcpStream) {
    // One thread per connection: a slow client must not hold up the next one. Threads
    // inherit the creator's netns, though an accepted socket does not need it.
    let _ = std::thread::Builder::new()
        .name("echo-conn".into())
        .spawn(move || echo(stream));
}

/// Serves `port` in the calling thread's netns until the process ends.
pub fn serve_forever(port: u16) -> Result<()> {
    let listener = bind_dual_stack(port)?;
    loop {
        match listener.accept() {
            Ok((stream, _)) => spawn_echo(stream),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                eprintln!("echo server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Echo servers, each on its own thread inside a netns. Ready to accept when
/// [`Listener::start`] returns; stop, and their threads end, on drop.
pub struct Listener {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Listener {
    /// Starts an echo server on [::]:`port` inside the named netns.
    pub fn start(ns_name: &str, port: u16) -> Result<Listener> {
        Listener::start_in(&[ns_name], port)
    }

    /// Starts an echo server on [::]:`port` inside each of the named netns (the targets of
    /// a lab with several).
    pub fn start_in(ns_names: &[&str], port: u16) -> Result<Listener> {
        let mut listener = Listener {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for ns_name in ns_names {
            // On error `listener` is dropped, which stops the ones already started.
            let thread = start_one(ns_name, port, &listener.stop)?;
            listener.threads.push(thread);
        }
        Ok(listener)
    }
}

fn start_one(ns_name: &str, port: u16, stop: &Arc<AtomicBool>) -> Result<JoinHandle<()>> {
    crate::netns::netns_path(ns_name)?;
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let ns = ns_name.to_string();
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name(format!("echo-{ns}"))
        .spawn(move || {
            let bound = crate::netns::enter(&ns).and_then(|_| {
                let l = bind_dual_stack(port)?;
                l.set_nonblocking(true)
                    .context("could not make the listener non-blocking")?;
                Ok(l)
            });
            match bound {
                Ok(l) => {
                    let _ = ready_tx.send(Ok(()));
                    accept_until(&l, &flag);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .context("could not start the echo server thread")?;
    let ready = ready_rx
        .recv()
        .context("the echo server thread ended before it was ready");
    let ready = match ready {
        Ok(r) => r,
        Err(e) => {
            let _ = thread.join();
            return Err(e);
        }
    };
    if let Err(e) = ready {
        let _ = thread.join();
        return Err(e).with_context(|| {
            format!("could not start an echo server on port {port} in `{ns_name}`")
        });
    }
    Ok(thread)
}

/// Accepts until `stop` is set, waking every STOP_POLL_MS to look at it.
fn accept_until(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                spawn_echo(stream);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let mut pfd = [PollFd::new(listener, PollFlags::IN)];
                let _ = poll(&mut pfd, Some(&STOP_POLL));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                eprintln!("echo server: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(STOP_POLL_MS as u64));
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
