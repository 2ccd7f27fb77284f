//! Byte encodings kiln must reproduce exactly: lowercase hex, SHA-256 digests, and gzip whose bytes
//! depend on the data alone (cache keys, manifests, seeds, mirror indexes and `--encoding gzip` rely on it).

use std::io::Write as _;

use flate2::{Compression, GzBuilder};
use sha2::{Digest, Sha256};

/// Lowercase hex, two digits per byte.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        // Writing into a String cannot fail.
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// SHA-256 of `bytes`, in lowercase hex.
pub fn sha256_hex(bytes: impl AsRef<[u8]>) -> String {
    hex(&Sha256::digest(bytes.as_ref()))
}

/// gzip with nothing in its header but the data: mtime 0 and no file name; OS byte 255 ("unknown")
/// rather than the build host's; level 9, which makes the XFL header byte a constant 2.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzBuilder::new().mtime(0).operating_system(255).write(Vec::new(), Compression::best());
    // Writing into a Vec<u8> cannot fail, and the deflate stream reports errors only for API misuse (wrong
    // flush sequence), never because of the input bytes, so these cannot panic on any input.
    encoder.write_all(data).expect("gzip into a Vec<u8> is infallible");
    encoder.finish().expect("gzip into a Vec<u8> is infallible")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_sha256_match_known_values() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        // sha256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn gzip_depends_on_the_data_alone_and_round_trips() {
        let data = b"Package: kiln\n".repeat(100);
        let (a, b) = (gzip(&data), gzip(&data));
        assert_eq!(a, b);
        // Header: magic, deflate, no flags, mtime 0, XFL 2, OS 255.
        assert_eq!(&a[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a[..]), &mut decoded).unwrap();
        assert_eq!(decoded, data);
    }
}
