//! A response body as it arrives: gunzipped when the server compressed it, and bounded, so that a
//! hostile or broken API (a gzip bomb, an endless stream) ends in a clear error, not an OOM kill.

use std::io::Write;

use flate2::write::MultiGzDecoder;

/// Default of `max_response_mb`: the decoded bytes one response may hold.
pub(crate) const DEFAULT_MAX_MB: u64 = 512;
/// A compressed body may expand this many times over (gzip's own limit is about 1,030)…
const MAX_RATIO: usize = 500;
/// …once it has expanded past this many bytes: small bodies of repeated values compress well.
const RATIO_FLOOR: usize = 32 << 20;
/// Bytes reserved up front for a body at most: a `Content-Length` is the server's word only.
const RESERVE: usize = 8 << 20;
/// Compressed bytes fed to the decoder at a time, so a limit is never overshot by much.
const STEP: usize = 4096;

/// Why a body was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    #[error("it holds more than {limit_mb} MB once decoded (`max_response_mb: {limit_mb}`)")]
    TooLarge { limit_mb: u64 },
    #[error(
        "it expands from {compressed} compressed bytes to over {decoded} bytes, more than {MAX_RATIO} times: a \
         decompression bomb"
    )]
    Bomb { compressed: usize, decoded: usize },
    #[error("its gzip encoding is broken")]
    Gzip(#[source] std::io::Error),
}

/// A body being received.
pub(super) struct Body {
    decoded: Decoded,
    /// Bytes received, before decompression.
    received: usize,
    limit: usize,
    limit_mb: u64,
}

enum Decoded {
    Plain(Vec<u8>),
    Gzip(Box<MultiGzDecoder<Vec<u8>>>),
}

impl Body {
    /// An empty body of at most `limit_mb` decoded megabytes (10⁶ bytes); `gzip` when the response
    /// says `Content-Encoding: gzip`. `expected` bytes are reserved up front, within the limit.
    pub(super) fn new(gzip: bool, limit_mb: u64, expected: usize) -> Self {
        let limit = usize::try_from(limit_mb.saturating_mul(1_000_000)).unwrap_or(usize::MAX);
        let buffer = Vec::with_capacity(expected.min(limit).min(RESERVE));
        Body {
            decoded: if gzip {
                Decoded::Gzip(Box::new(MultiGzDecoder::new(buffer)))
            } else {
                Decoded::Plain(buffer)
            },
            received: 0,
            limit,
            limit_mb,
        }
    }

    /// Whether a body announced as `length` bytes is refused before it is read.
    pub(super) fn refuses(&self, length: u64) -> Result<(), BodyError> {
        match self.decoded {
            Decoded::Plain(_) if length > self.limit as u64 => Err(self.too_large()),
            _ => Ok(()),
        }
    }

    /// Takes the next received bytes; returns how many decoded bytes they added.
    pub(super) fn push(&mut self, chunk: &[u8]) -> Result<usize, BodyError> {
        let before = self.len();
        for step in chunk.chunks(STEP) {
            self.received += step.len();
            match &mut self.decoded {
                Decoded::Plain(buffer) => buffer.extend_from_slice(step),
                Decoded::Gzip(decoder) => decoder.write_all(step).map_err(BodyError::Gzip)?,
            }
            self.check()?;
        }
        if let Decoded::Gzip(decoder) = &mut self.decoded {
            decoder.flush().map_err(BodyError::Gzip)?;
        }
        Ok(self.len() - before)
    }

    /// The whole decoded body (empty when nothing came, even if it was said to be gzip).
    pub(super) fn finish(self) -> Result<Vec<u8>, BodyError> {
        match self.decoded {
            Decoded::Plain(buffer) => Ok(buffer),
            Decoded::Gzip(_) if self.received == 0 => Ok(Vec::new()),
            Decoded::Gzip(decoder) => decoder.finish().map_err(BodyError::Gzip),
        }
    }

    /// What could be decoded, for an error response's excerpt: a body that broke off, ran over its
    /// limit or is not valid gzip still says something.
    pub(super) fn excerpt(self) -> Vec<u8> {
        match self.decoded {
            Decoded::Plain(buffer) => buffer,
            Decoded::Gzip(decoder) => {
                let so_far = decoder.get_ref().clone();
                decoder.finish().unwrap_or(so_far)
            }
        }
    }

    fn len(&self) -> usize {
        match &self.decoded {
            Decoded::Plain(buffer) => buffer.len(),
            Decoded::Gzip(decoder) => decoder.get_ref().len(),
        }
    }

    fn check(&self) -> Result<(), BodyError> {
        let decoded = self.len();
        if decoded > self.limit {
            return Err(self.too_large());
        }
        if decoded > RATIO_FLOOR && decoded > self.received.saturating_mul(MAX_RATIO) {
            return Err(BodyError::Bomb {
                compressed: self.received,
                decoded,
            });
        }
        Ok(())
    }

    fn too_large(&self) -> BodyError {
        BodyError::TooLarge {
            limit_mb: self.limit_mb,
        }
    }
}

#[cfg(test)]
mod tests {
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn receive(body: &mut Body, bytes: &[u8]) -> Result<usize, BodyError> {
        bytes.chunks(10_000).map(|chunk| body.push(chunk)).sum()
    }

    #[test]
    fn plain_and_gzip_bodies_arrive_whole() {
        let text: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_string().into_bytes()).collect();
        let mut plain = Body::new(false, 2, 0);
        assert_eq!(receive(&mut plain, &text).unwrap(), text.len());
        assert_eq!(plain.finish().unwrap(), text);
        let mut zipped = Body::new(true, 2, 0);
        assert_eq!(receive(&mut zipped, &gzip(&text)).unwrap(), text.len());
        assert_eq!(zipped.finish().unwrap(), text);
    }

    #[test]
    fn bodies_over_the_limit_are_refused() {
        let text = vec![b'x'; 1_500_000];
        let mut plain = Body::new(false, 1, 0);
        assert!(matches!(
            receive(&mut plain, &text),
            Err(BodyError::TooLarge { limit_mb: 1 })
        ));
        assert!(Body::new(false, 1, 0).refuses(1_000_001).is_err());
        assert!(Body::new(false, 1, 0).refuses(1_000_000).is_ok());
        let numbers: Vec<u8> = (0..400_000u32).flat_map(|i| i.to_string().into_bytes()).collect();
        let mut zipped = Body::new(true, 1, 0);
        assert!(matches!(
            receive(&mut zipped, &gzip(&numbers)),
            Err(BodyError::TooLarge { .. })
        ));
    }

    #[test]
    fn empty_and_multi_member_gzip_bodies_are_read() {
        assert!(Body::new(true, 1, 0).finish().unwrap().is_empty());
        let mut two = gzip(b"[1, ");
        two.extend(gzip(b"2]"));
        let mut body = Body::new(true, 1, 0);
        receive(&mut body, &two).unwrap();
        assert_eq!(body.finish().unwrap(), b"[1, 2]");
    }

    #[test]
    fn a_gzip_bomb_is_stopped_early() {
        let bomb = gzip(&vec![0; 96 << 20]);
        let mut body = Body::new(true, 1024, 0);
        let error = receive(&mut body, &bomb).unwrap_err();
        let BodyError::Bomb { compressed, decoded } = error else {
            panic!("{error}");
        };
        assert!(decoded < RATIO_FLOOR + 8 * 1024 * 1024, "{decoded}");
        assert!(compressed < bomb.len(), "{compressed}");
        let mut broken = Body::new(true, 1, 0);
        assert!(matches!(
            receive(&mut broken, b"not gzip at all"),
            Err(BodyError::Gzip(_))
        ));
    }
}
