//! A real HTTP/1.1 server on a loopback port, answering with a test's handler and keeping every
//! request it saw.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the server received it.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    /// Names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Seen {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub(crate) fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// A query parameter, decoded.
    pub(crate) fn query(&self, name: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        url::form_urlencoded::parse(query.as_bytes())
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.into_owned())
    }
}

/// What the handler answers.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Waits this long before answering (to provoke timeouts).
    pub delay: Duration,
    /// Sends the body again and again in chunks, until the client hangs up (or 60 s have passed).
    pub endless: bool,
    /// Waits this long between the headers and the body.
    pub stall: Duration,
    /// Sends only this many bytes of the body (its whole length announced), then hangs up.
    pub cut: Option<usize>,
}

impl Reply {
    pub(crate) fn json(body: impl Into<String>) -> Reply {
        Reply::with("application/json", body)
    }

    pub(crate) fn with(content_type: &str, body: impl Into<String>) -> Reply {
        Reply {
            status: 200,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into().into_bytes(),
            delay: Duration::ZERO,
            endless: false,
            stall: Duration::ZERO,
            cut: None,
        }
    }

    /// Sends the headers at once and the body after `stall`.
    pub(crate) fn stall(mut self, stall: Duration) -> Reply {
        self.stall = stall;
        self
    }

    /// `body`, gzip-compressed, as `Content-Encoding: gzip` JSON.
    pub(crate) fn gzip(body: &[u8]) -> Reply {
        use flate2::write::GzEncoder;
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(body).unwrap();
        Reply {
            body: encoder.finish().unwrap(),
            ..Reply::json("")
        }
        .header("Content-Encoding", "gzip")
    }

    /// A chunked body that repeats `piece` without end.
    pub(crate) fn endless(piece: &str) -> Reply {
        Reply {
            endless: true,
            ..Reply::json(piece)
        }
    }

    pub(crate) fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            ..Reply::with("text/plain", body)
        }
    }

    pub(crate) fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub(crate) fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Announces the whole body, sends its first `bytes` and hangs up.
    pub(crate) fn cut(mut self, bytes: usize) -> Reply {
        self.cut = Some(bytes);
        self
    }
}

type Handler = dyn Fn(&Seen, usize) -> Reply + Send + Sync;

pub(crate) struct Server {
    pub url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Starts a server whose handler gets each request and its number (from 0).
    pub(crate) fn start(handler: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let handler: Arc<Handler> = Arc::new(handler);
        let log = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (handler, log) = (handler.clone(), log.clone());
                std::thread::spawn(move || serve(stream, &*handler, &log));
            }
        });
        Server { url, seen }
    }

    /// The requests seen so far.
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Seen>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let mut headers = Vec::new();
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.push((name.trim().to_lowercase(), value.trim().to_owned()));
            }
        }
        let length: usize = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let seen = Seen {
            method: method.to_owned(),
            target: target.to_owned(),
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        let number = {
            let mut log = log.lock().unwrap();
            log.push(seen.clone());
            log.len() - 1
        };
        let reply = handler(&seen, number);
        std::thread::sleep(reply.delay);
        let length = match reply.endless {
            true => "Transfer-Encoding: chunked".to_owned(),
            false => format!("Content-Length: {}", reply.body.len()),
        };
        let mut head = format!("HTTP/1.1 {} Reply\r\n{length}\r\n", reply.status);
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = reader.get_ref();
        if reply.endless {
            let chunk = [format!("{:x}\r\n", reply.body.len()).as_bytes(), &reply.body, b"\r\n"].concat();
            let _ = stream.write_all(head.as_bytes());
            let until = std::time::Instant::now() + Duration::from_secs(60);
            while std::time::Instant::now() < until && stream.write_all(&chunk).is_ok() {}
            return;
        }
        let sent = &reply.body[..reply.cut.unwrap_or(reply.body.len()).min(reply.body.len())];
        if stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.flush())
            .map(|()| std::thread::sleep(reply.stall))
            .and_then(|()| stream.write_all(sent))
            .is_err()
            || reply.cut.is_some()
        {
            let _ = stream.shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// A loopback address where nothing listens.
pub(crate) fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}
