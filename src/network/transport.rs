//! The byte streams a connection runs over, and how each sends a range of a file:
//! plain TCP with `sendfile` (the bytes go from the page cache to the socket without
//! passing through the broker), TLS by reading the range and encrypting it.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadHalf, WriteHalf};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::protocol::FileRange;

/// Largest piece read at once to send a file range over TLS.
const TLS_FILE_PIECE: usize = 1 << 20;

pub trait Transport: Send + Sized + 'static {
    type Reader: AsyncRead + Unpin + Send + 'static;
    type Writer: AsyncWrite + Unpin + Send + 'static;

    fn split_transport(self) -> (Self::Reader, Self::Writer);

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

impl<IO> Transport for tokio_rustls::server::TlsStream<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Reader = ReadHalf<Self>;
    type Writer = WriteHalf<Self>;

    fn split_transport(self) -> (Self::Reader, Self::Writer) {
        tokio::io::split(self)
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
