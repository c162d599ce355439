//! One TCP connection to memcached: a request goes out in one write, the reply comes back
//! through a read buffer.

use std::io;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::protocol::{Request, Status};

/// A reply: its status line and, for `VA`, the data.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: Status,
    pub(crate) data: Vec<u8>,
}

pub(crate) struct Connection {
    stream: BufReader<TcpStream>,
    line: Vec<u8>,
}

impl Connection {
    pub(crate) async fn open(host: &str, port: u16) -> io::Result<Self> {
        let stream = TcpStream::connect((host, port)).await?;
        // Each request is one write; waiting to coalesce would only add latency.
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            line: Vec::with_capacity(64),
        })
    }

    /// Sends `request` and reads its reply. An error leaves the connection in an unknown
    /// state: the caller must drop it.
    pub(crate) async fn execute(&mut self, request: &Request) -> io::Result<Reply> {
        self.stream.get_mut().write_all(&request.0).await?;
        self.line.clear();
        self.stream.read_until(b'\n', &mut self.line).await?;
        let Some(line) = self.line.strip_suffix(b"\r\n") else {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "memcached closed the connection mid-reply",
            ));
        };
        let status = Status::parse(line);
        let mut data = Vec::new();
        if let Status::Value { len, .. } = status {
            data.resize(len + 2, 0);
            self.stream.read_exact(&mut data).await?;
            if !data.ends_with(b"\r\n") {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "memcached value not followed by \\r\\n",
                ));
            }
            data.truncate(len);
        }
        Ok(Reply { status, data })
    }
}
