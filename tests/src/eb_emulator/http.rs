//! A minimal HTTP/1.1 server: `Content-Length` bodies, keep-alive, one handler.

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use super::{Handler, Reply};

pub(crate) async fn serve(listener: TcpListener, handler: Handler) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let _ = connection(stream, handler).await;
        });
    }
}

async fn connection(stream: TcpStream, handler: Handler) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut length = 0usize;
        let mut close = false;
        let mut access_key = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    "authorization" => access_key = super::authz::access_key(value),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body).await?;
        let (status, body, request_id) = match handler.handle(&body, access_key.as_deref()).await {
            Reply::Drop => return Ok(()),
            Reply::Ok { body, request_id } => (200, body, request_id),
            Reply::Err {
                status,
                body,
                request_id,
            } => (status, body, request_id),
        };
        let reason = match status {
            200 => "OK",
            400 => "Bad Request",
            500 => "Internal Server Error",
            503 => "Service Unavailable",
            _ => "Error",
        };
        // AWS always sends `Date`; the EB CLI reads it from every response.
        let date = aws_smithy_types::DateTime::from(std::time::SystemTime::now())
            .fmt(aws_smithy_types::date_time::Format::HttpDate)
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nx-amzn-RequestId: {request_id}\r\nDate: {date}\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        let stream = reader.get_mut();
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        stream.write_all(&out).await?;
        stream.flush().await?;
        if close {
            return Ok(());
        }
    }
}
