//! The benchmark's traffic: sinks in the gateway netns, senders in the target netns whose
//! sockets are bound to the VIP (so every packet is egress through the proxy: routed by
//! the `from 20.0.0.1` rule, ECMP over the frontends), and how a rate is measured: what the
//! gateway sink *received* over a window that starts after a warm-up.
//!
//! Sockets are made inside their namespace with `in_netns` (a socket keeps its netns for
//! life); the loops that use them run on ordinary threads.

use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use lab::netns::in_netns;
use lab::VIP4;
use rustix::net::{sendmmsg, MMsgHdr, SendAncillaryBuffer, SendFlags};
use socket2::{Domain, Protocol, Socket, Type};

/// The gateway's address on vlan0: the client side of the VIP's flows.
pub const SINK_IP: Ipv4Addr = Ipv4Addr::new(169, 254, 100, 150);
pub const TCP_PORT: u16 = 5201;
pub const UDP_PORT: u16 = 5202;
/// Fixed source port of the UDP flood: one flow, so one ECMP next-hop.
const UDP_SRC_PORT: u16 = 41000;
/// Small datagrams: the flood measures packets per second, not bytes.
pub const UDP_PAYLOAD: usize = 64;
const UDP_BATCH: usize = 64;
const TCP_CHUNK: usize = 128 * 1024;
/// How often blocked loops look at their stop flag.
const POLL: Duration = Duration::from_millis(100);

#[derive(Default)]
pub struct Counter {
    pub bytes: AtomicU64,
    pub packets: AtomicU64,
}

impl Counter {
    fn add(&self, bytes: u64, packets: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.packets.fetch_add(packets, Ordering::Relaxed);
    }

    pub fn read(&self) -> (u64, u64) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.packets.load(Ordering::Relaxed),
        )
    }
}

/// The gateway's TCP and UDP sinks; they count what arrives until dropped.
pub struct Sinks {
    stop: Arc<AtomicBool>,
    pub tcp: Arc<Counter>,
    pub udp: Arc<Counter>,
    threads: Vec<JoinHandle<()>>,
}

impl Sinks {
    pub fn start(gw_ns: &str) -> Result<Sinks> {
        let (listener, udp) = in_netns(gw_ns, || -> Result<(TcpListener, UdpSocket)> {
            let l = TcpListener::bind((SINK_IP, TCP_PORT))
                .with_context(|| format!("could not bind the TCP sink {SINK_IP}:{TCP_PORT}"))?;
            l.set_nonblocking(true)?;
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            // A deep queue, so a scheduling hiccup of the sink thread is not counted as
            // the path's loss (SO_RCVBUFFORCE: root may exceed rmem_max).
            force_rcvbuf(&s, 32 << 20);
            s.bind(&SocketAddr::from((SINK_IP, UDP_PORT)).into())
                .with_context(|| format!("could not bind the UDP sink {SINK_IP}:{UDP_PORT}"))?;
            s.set_read_timeout(Some(POLL))?;
            Ok((l, s.into()))
        })??;
        let stop = Arc::new(AtomicBool::new(false));
        let tcp = Arc::new(Counter::default());
        let udp_count = Arc::new(Counter::default());
        let threads = vec![
            {
                let (stop, count) = (stop.clone(), tcp.clone());
                std::thread::Builder::new()
                    .name("sink-tcp".into())
                    .spawn(move || tcp_accept(listener, &stop, &count))?
            },
            {
                let (stop, count) = (stop.clone(), udp_count.clone());
                std::thread::Builder::new()
                    .name("sink-udp".into())
                    .spawn(move || udp_receive(&udp, &stop, &count))?
            },
        ];
        Ok(Sinks {
            stop,
            tcp,
            udp: udp_count,
            threads,
        })
    }
}

impl Drop for Sinks {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn force_rcvbuf(s: &Socket, bytes: usize) {
    let _ = rustix::net::sockopt::set_socket_recv_buffer_size_force(s, bytes);
}

fn tcp_accept(listener: TcpListener, stop: &AtomicBool, count: &Arc<Counter>) {
    let mut readers = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((stream, _)) => {
                let count = count.clone();
                // The stop flag is not shared: a reader ends at the sender's EOF, or at
                // its read timeout once the sender is gone.
                readers.push(std::thread::spawn(move || tcp_read(stream, &count)));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(POLL / 4),
            Err(_) => std::thread::sleep(POLL),
        }
        readers.retain(|r: &JoinHandle<()>| !r.is_finished());
    }
    for r in readers {
        let _ = r.join();
    }
}

fn tcp_read(mut stream: TcpStream, count: &Counter) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => count.add(n as u64, 0),
        }
    }
}

/// recvmmsg through libc: rustix has sendmmsg but no recvmmsg.
fn udp_receive(sock: &UdpSocket, stop: &AtomicBool, count: &Counter) {
    let mut bufs = vec![[0u8; 2048]; UDP_BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .iter_mut()
        .map(|b| libc::iovec {
            iov_base: b.as_mut_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        })
        .collect();
    // SAFETY: mmsghdr is plain data; zeroed is its empty value.
    let mut msgs: Vec<libc::mmsghdr> = (0..UDP_BATCH)
        .map(|_| unsafe { std::mem::zeroed() })
        .collect();
    for (m, iov) in msgs.iter_mut().zip(iovs.iter_mut()) {
        m.msg_hdr.msg_iov = iov;
        m.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: every mmsghdr points at one live iovec over a live buffer; the socket
        // has a receive timeout, so this returns at least every POLL.
        let n = unsafe {
            libc::recvmmsg(
                sock.as_raw_fd(),
                msgs.as_mut_ptr(),
                UDP_BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            let bytes: u64 = msgs[..n as usize].iter().map(|m| m.msg_len as u64).sum();
            count.add(bytes, n as u64);
        }
    }
}

/// What one sender put on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    pub bytes: u64,
    pub packets: u64,
    pub elapsed: Duration,
}

/// A running sender in the target netns; [`Sender::stop`] ends it.
pub struct Sender {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Sent>>,
}

impl Sender {
    /// A bulk TCP stream from VIP4 (kernel-chosen port) to the gateway's TCP sink.
    pub fn tcp(tg_ns: &str) -> Result<Sender> {
        let stream = in_netns(tg_ns, || -> Result<TcpStream> {
            let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
            s.bind(&SocketAddr::from((VIP4, 0)).into())
                .context("could not bind the VIP as source address")?;
            s.connect_timeout(
                &SocketAddr::from((SINK_IP, TCP_PORT)).into(),
                Duration::from_secs(3),
            )
            .context("the TCP sender could not connect to the gateway sink")?;
            // Lets the loop see its stop flag even when the window is full.
            s.set_write_timeout(Some(POLL))?;
            Ok(s.into())
        })??;
        Ok(Sender::spawn("send-tcp", move |stop| {
            tcp_send(stream, stop)
        }))
    }

    /// A UDP flood from VIP4:41000 to the gateway's UDP sink: as fast as it goes, or
    /// paced to `pps` packets per second.
    pub fn udp(tg_ns: &str, pps: Option<u64>) -> Result<Sender> {
        Sender::udp_count(tg_ns, pps, None)
    }

    /// Like [`Sender::udp`], ending by itself after `limit` datagrams (see
    /// [`Sender::finish`]).
    pub fn udp_count(tg_ns: &str, pps: Option<u64>, limit: Option<u64>) -> Result<Sender> {
        let sock = in_netns(tg_ns, || -> Result<UdpSocket> {
            let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
            s.set_reuse_address(true)?;
            s.bind(&SocketAddr::from((VIP4, UDP_SRC_PORT)).into())
                .context("could not bind the VIP as source address")?;
            s.connect(&SocketAddr::from((SINK_IP, UDP_PORT)).into())?;
            s.set_write_timeout(Some(POLL))?;
            Ok(s.into())
        })??;
        Ok(Sender::spawn("send-udp", move |stop| {
            udp_send(&sock, pps, limit, stop)
        }))
    }

    fn spawn(name: &str, body: impl FnOnce(&AtomicBool) -> Sent + Send + 'static) -> Sender {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(&flag))
            .expect("could not start a sender thread");
        Sender {
            stop,
            thread: Some(thread),
        }
    }

    /// Waits for a sender with a limit to have sent it all.
    pub fn finish(mut self) -> Sent {
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }

    pub fn stop(mut self) -> Sent {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn tcp_send(mut stream: TcpStream, stop: &AtomicBool) -> Sent {
    let buf = vec![0x5au8; TCP_CHUNK];
    let start = Instant::now();
    let mut sent = Sent::default();
    while !stop.load(Ordering::Relaxed) {
        match stream.write(&buf) {
            Ok(n) => sent.bytes += n as u64,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    sent.elapsed = start.elapsed();
    sent
}

fn udp_send(sock: &UdpSocket, pps: Option<u64>, limit: Option<u64>, stop: &AtomicBool) -> Sent {
    let payload = [0xa5u8; UDP_PAYLOAD];
    let iov = [IoSlice::new(&payload)];
    // No address (the socket is connected), no control messages.
    let mut controls: Vec<SendAncillaryBuffer> = (0..UDP_BATCH)
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr> = controls.iter_mut().map(|c| MMsgHdr::new(&iov, c)).collect();
    let start = Instant::now();
    let mut sent = Sent::default();
    while !stop.load(Ordering::Relaxed) {
        let left = limit.map_or(u64::MAX, |l| l.saturating_sub(sent.packets));
        if left == 0 {
            break;
        }
        let want = match pps {
            None => UDP_BATCH as u64,
            Some(rate) => {
                // Paced: send what is due by now, in batches; sleep when ahead. The sleep
                // is short, so the offered rate stays smooth at the scale of the ring.
                let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
                if due <= sent.packets {
                    std::thread::sleep(Duration::from_micros(100));
                    continue;
                }
                (due - sent.packets).min(UDP_BATCH as u64)
            }
        };
        let want = want.min(left);
        let n = sendmmsg(sock, &mut msgs[..want as usize], SendFlags::empty()).unwrap_or(0);
        if n > 0 {
            sent.packets += n as u64;
            sent.bytes += n as u64 * UDP_PAYLOAD as u64;
        } else {
            // ENOBUFS / ECONNREFUSED (a stray ICMP error): keep going, but do not spin.
            std::thread::yield_now();
        }
    }
    sent.elapsed = start.elapsed();
    sent
}

/// A rate seen at the gateway sink over the measurement window.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub bytes_per_s: f64,
    pub packets_per_s: f64,
}

/// Which load to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Load {
    Tcp,
    Udp,
}

/// Runs `load` from the target for `warmup + window`, returns what the gateway received
/// during the window (the warm-up covers TCP slow start and thread start-up).
pub fn measure(
    sinks: &Sinks,
    tg_ns: &str,
    load: Load,
    warmup: Duration,
    window: Duration,
) -> Result<Rate> {
    let (sender, counter) = match load {
        Load::Tcp => (Sender::tcp(tg_ns)?, &sinks.tcp),
        Load::Udp => (Sender::udp(tg_ns, None)?, &sinks.udp),
    };
    std::thread::sleep(warmup);
    let (b0, p0) = counter.read();
    let t0 = Instant::now();
    std::thread::sleep(window);
    let (b1, p1) = counter.read();
    let secs = t0.elapsed().as_secs_f64();
    let sent = sender.stop();
    if b1 == b0 {
        bail!(
            "the gateway sink received nothing from the {load:?} sender in {secs:.1} s (it sent {} bytes): the path through the proxy is broken",
            sent.bytes
        );
    }
    Ok(Rate {
        bytes_per_s: (b1 - b0) as f64 / secs,
        packets_per_s: (p1 - p0) as f64 / secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The batched sender and receiver (sendmmsg, recvmmsg) over loopback: every datagram
    /// sent is counted, at its full size.
    #[test]
    fn batched_udp_send_and_receive_count_every_datagram() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let (stop, count) = (AtomicBool::new(false), Counter::default());
        std::thread::scope(|s| {
            s.spawn(|| udp_receive(&rx, &stop, &count));
            let sent = udp_send(&tx, None, Some(100), &AtomicBool::new(false));
            assert_eq!(sent.packets, 100);
            let deadline = Instant::now() + Duration::from_secs(5);
            while count.read().1 < 100 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            stop.store(true, Ordering::Relaxed);
        });
        assert_eq!(count.read(), (100 * UDP_PAYLOAD as u64, 100));
    }
}
