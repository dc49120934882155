//! The socket's I/O underneath: readiness, reads and writes through the stack's shared state (shared by
//! [`TcpSocket`](super::TcpSocket) and its halves), and the `embedded-io-async` trait implementations.

use super::*;

/// Shared by the socket and its halves: the stack and the socket's handle.
#[derive(Copy, Clone)]
pub(super) struct TcpIo<'a> {
    pub(super) stack: Stack<'a>,
    pub(super) handle: SocketHandle,
}

impl TcpIo<'_> {
    pub(super) fn with<R>(&self, f: impl FnOnce(&tcp::Socket, &Interface) -> R) -> R {
        self.stack.with_inner(|i| {
            let socket = i.sockets.get::<tcp::Socket>(self.handle);
            f(socket, &i.iface)
        })
    }

    /// Like `with`, and wakes the runner: the socket may have something new to send.
    pub(super) fn with_mut<R>(&self, f: impl FnOnce(&mut tcp::Socket, &mut Interface) -> R) -> R {
        self.stack.with_inner_mut(|i| {
            let socket = i.sockets.get_mut::<tcp::Socket>(self.handle);
            let res = f(socket, &mut i.iface);
            i.waker.wake();
            res
        })
    }

    pub(super) fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.with_mut(|s, _| {
            if s.can_recv() || !s.may_recv() {
                Poll::Ready(())
            } else {
                s.register_recv_waker(cx.waker());
                Poll::Pending
            }
        })
    }

    pub(super) fn read<'s>(
        &'s mut self,
        buf: &'s mut [u8],
    ) -> impl Future<Output = Result<usize, Error>> + 's {
        poll_fn(|cx| {
            // smoltcp's EOF differs from POSIX's; map it to `Ok(0)` as embedded-io expects.
            self.with_mut(|s, _| match s.recv_slice(buf) {
                // embedded-io: an empty buffer must not block.
                Ok(0) if buf.is_empty() => Poll::Ready(Ok(0)),
                Ok(0) => {
                    s.register_recv_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(tcp::RecvError::Finished) => Poll::Ready(Ok(0)),
                Err(tcp::RecvError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
            })
        })
    }

    pub(super) fn poll_write_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.with_mut(|s, _| {
            if s.can_send() || !s.may_send() {
                Poll::Ready(())
            } else {
                s.register_send_waker(cx.waker());
                Poll::Pending
            }
        })
    }

    pub(super) fn write<'s>(
        &'s mut self,
        buf: &'s [u8],
    ) -> impl Future<Output = Result<usize, Error>> + 's {
        poll_fn(|cx| {
            self.with_mut(|s, _| match s.send_slice(buf) {
                Ok(0) if buf.is_empty() => Poll::Ready(Ok(0)),
                Ok(0) => {
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                }
                Ok(n) => Poll::Ready(Ok(n)),
                Err(tcp::SendError::InvalidState) => Poll::Ready(Err(Error::ConnectionReset)),
            })
        })
    }

    pub(super) async fn write_with<F, R>(&mut self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&mut [u8]) -> (usize, R),
    {
        let mut f = Some(f);
        poll_fn(move |cx| {
            self.with_mut(|s, _| {
                if !s.can_send() {
                    if s.may_send() {
                        s.register_send_waker(cx.waker());
                        Poll::Pending
                    } else {
                        Poll::Ready(Err(Error::ConnectionReset))
                    }
                } else {
                    let f = f.take().expect("write_with polled after completion");
                    Poll::Ready(s.send(f).map_err(|_| Error::ConnectionReset))
                }
            })
        })
        .await
    }

    pub(super) async fn read_with<F, R>(&mut self, f: F) -> Result<R, Error>
    where
        F: FnOnce(&mut [u8]) -> (usize, R),
    {
        let mut f = Some(f);
        poll_fn(move |cx| {
            self.with_mut(|s, _| {
                if !s.can_recv() {
                    if s.may_recv() {
                        s.register_recv_waker(cx.waker());
                        Poll::Pending
                    } else {
                        Poll::Ready(Err(Error::ConnectionReset))
                    }
                } else {
                    let f = f.take().expect("read_with polled after completion");
                    Poll::Ready(s.recv(f).map_err(|_| Error::ConnectionReset))
                }
            })
        })
        .await
    }

    pub(super) fn flush(&mut self) -> impl Future<Output = Result<(), Error>> + '_ {
        poll_fn(|cx| {
            self.with_mut(|s, _| {
                let data_pending = s.send_queue() > 0 && s.state() != tcp::State::Closed;
                let fin_pending = matches!(
                    s.state(),
                    tcp::State::FinWait1 | tcp::State::Closing | tcp::State::LastAck
                );
                let rst_pending = s.state() == tcp::State::Closed && s.remote_endpoint().is_some();
                if data_pending || fin_pending || rst_pending {
                    // smoltcp wakes the send waker as acknowledged data leaves the buffer.
                    s.register_send_waker(cx.waker());
                    Poll::Pending
                } else {
                    Poll::Ready(Ok(()))
                }
            })
        })
    }
}

mod embedded_io_impls {
    use embedded_io_async::ErrorKind;

    use super::*;

    impl embedded_io_async::Error for Error {
        fn kind(&self) -> ErrorKind {
            match self {
                Error::ConnectionReset => ErrorKind::ConnectionReset,
            }
        }
    }

    impl embedded_io_async::Error for ConnectError {
        fn kind(&self) -> ErrorKind {
            match self {
                ConnectError::InvalidState => ErrorKind::Other,
                ConnectError::ConnectionReset => ErrorKind::ConnectionRefused,
                ConnectError::TimedOut => ErrorKind::TimedOut,
                ConnectError::NoRoute => ErrorKind::NotConnected,
            }
        }
    }

    impl embedded_io_async::Error for AcceptError {
        fn kind(&self) -> ErrorKind {
            match self {
                AcceptError::InvalidState => ErrorKind::Other,
                AcceptError::InvalidPort => ErrorKind::InvalidInput,
                AcceptError::ConnectionReset => ErrorKind::ConnectionReset,
            }
        }
    }

    impl embedded_io_async::ErrorType for TcpSocket<'_> {
        type Error = Error;
    }

    impl embedded_io_async::Read for TcpSocket<'_> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            self.io.read(buf).await
        }
    }

    impl embedded_io_async::ReadReady for TcpSocket<'_> {
        fn read_ready(&mut self) -> Result<bool, Self::Error> {
            Ok(self.io.with(|s, _| s.can_recv() || !s.may_recv()))
        }
    }

    impl embedded_io_async::Write for TcpSocket<'_> {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.io.write(buf).await
        }

        async fn flush(&mut self) -> Result<(), Self::Error> {
            self.io.flush().await
        }
    }

    impl embedded_io_async::WriteReady for TcpSocket<'_> {
        fn write_ready(&mut self) -> Result<bool, Self::Error> {
            Ok(self.io.with(|s, _| s.can_send()))
        }
    }

    impl embedded_io_async::ErrorType for TcpReader<'_> {
        type Error = Error;
    }

    impl embedded_io_async::Read for TcpReader<'_> {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            self.io.read(buf).await
        }
    }

    impl embedded_io_async::ReadReady for TcpReader<'_> {
        fn read_ready(&mut self) -> Result<bool, Self::Error> {
            Ok(self.io.with(|s, _| s.can_recv() || !s.may_recv()))
        }
    }

    impl embedded_io_async::ErrorType for TcpWriter<'_> {
        type Error = Error;
    }

    impl embedded_io_async::Write for TcpWriter<'_> {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
            self.io.write(buf).await
        }

        async fn flush(&mut self) -> Result<(), Self::Error> {
            self.io.flush().await
        }
    }

    impl embedded_io_async::WriteReady for TcpWriter<'_> {
        fn write_ready(&mut self) -> Result<bool, Self::Error> {
            Ok(self.io.with(|s, _| s.can_send()))
        }
    }
}
