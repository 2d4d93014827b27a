//! The byte streams a connection runs over, and how each sends a range of a file:
//! plain TCP with `sendfile` (the bytes go from the page cache to the socket without
//! passing through the broker), TLS by reading the range and encrypting it.

use std::future::Future;
use std::io;
use std::os::fd::{AsRawFd, RawFd};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::protocol::FileRange;

/// Largest piece read at once to send a file range over TLS.
const TLS_FILE_PIECE: usize = 1 << 20;

/// Bytes a large frame's reader may already hold above the socket: the TLS listener's
/// read buffer (64 KiB) and rustls's partial record and decrypted plaintext (a
/// record each, 16 KiB and change). The low-water mark stays this far below what the
/// frame still needs, so it never asks the socket for bytes that will not come.
const READ_AHEAD_MARGIN: usize = 128 * 1024;
/// Largest low-water mark set: bounded well under the receive buffer (which the
/// kernel would otherwise grow, or, when `socket.receive.buffer.bytes` fixes it, cap).
const MAX_LOW_WATER: usize = 256 * 1024;

/// Sets the socket's receive low-water mark (`SO_RCVLOWAT`) for reading a frame body
/// of which `remaining` bytes are still to come: the broker is woken once that many
/// bytes are in, not for every TLS record or TCP segment, which on loopback also
/// spares the sender's core the wake-up. 1 (the default) when little remains.
pub fn set_low_water(fd: RawFd, remaining: usize) -> io::Result<()> {
    let mark = if remaining > READ_AHEAD_MARGIN + 64 * 1024 {
        (remaining - READ_AHEAD_MARGIN).min(MAX_LOW_WATER)
    } else {
        1
    } as libc::c_int;
    // SAFETY: setsockopt reads `mark` (an int, as SO_RCVLOWAT takes) for the call.
    let r = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVLOWAT,
            (&mark as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

pub trait Transport: Send + Sized + 'static {
    type Reader: AsyncRead + Unpin + Send + 'static;
    type Writer: AsyncWrite + Unpin + Send + 'static;

    fn split_transport(self) -> (Self::Reader, Self::Writer);

    /// The TCP socket underneath (for socket options such as `SO_RCVLOWAT`).
    fn socket_fd(&self) -> RawFd;

    /// Sends every byte of `range` on `writer` (nothing of the writer's is buffered).
    /// An error leaves the stream mid-response: the caller closes the connection.
    fn send_file(
        writer: &mut Self::Writer,
        range: &FileRange,
    ) -> impl Future<Output = io::Result<()>> + Send;
}

impl Transport for TcpStream {
    type Reader = OwnedReadHalf;
    type Writer = OwnedWriteHalf;

    fn split_transport(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        self.into_split()
    }

    fn socket_fd(&self) -> RawFd {
        self.as_raw_fd()
    }

    async fn send_file(writer: &mut OwnedWriteHalf, range: &FileRange) -> io::Result<()> {
        let socket: &TcpStream = writer.as_ref();
        let mut offset = libc::off_t::try_from(range.position)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut left = range.length;
        while left > 0 {
            socket.writable().await?;
            let sent = socket.try_io(Interest::WRITABLE, || {
                // SAFETY: both descriptors are open for the call (the socket is borrowed,
                // the file held by `range`); sendfile reads `offset` and advances it.
                let n = unsafe {
                    libc::sendfile(
                        socket.as_raw_fd(),
                        range.file.as_raw_fd(),
                        &mut offset,
                        left.min(1 << 30),
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            });
            match sent {
                // The file is shorter than the range (truncated since it was planned):
                // what was promised cannot be sent.
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => left -= n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// A stream over one TCP socket, which it can name.
pub trait OverTcp {
    fn tcp(&self) -> &TcpStream;
}

impl OverTcp for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl OverTcp for tokio::io::BufReader<TcpStream> {
    fn tcp(&self) -> &TcpStream {
        self.get_ref()
    }
}

impl<IO> Transport for tokio_rustls::server::TlsStream<IO>
where
    IO: AsyncRead + AsyncWrite + OverTcp + Unpin + Send + 'static,
{
    type Reader = ReadHalf<Self>;
    type Writer = WriteHalf<Self>;

    fn split_transport(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
    }

    fn socket_fd(&self) -> RawFd {
        self.get_ref().0.tcp().as_raw_fd()
    }

    async fn send_file(writer: &mut Self::Writer, range: &FileRange) -> io::Result<()> {
        let mut done = 0;
        while done < range.length {
            let piece = (range.length - done).min(TLS_FILE_PIECE);
            let bytes =
                crate::log::segment::read_at(&range.file, range.position + done as u64, piece)?;
            if bytes.len() < piece {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            writer.write_all(&bytes).await?;
            done += piece;
        }
        Ok(())
    }
}
