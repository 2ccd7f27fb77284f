//! OpenPGP key files as apt's `Signed-By` takes them: a public keyring, ASCII-armored (`.asc`) or
//! binary (`.gpg`) (sources.list(5), "Signed-By"). The packet framing is RFC 4880 §4.2 (old and new
//! headers); tags: 6 public key, 14 public subkey, 5 secret key, 7 secret subkey.
//!
//! This is how kiln tells a public key from a private one before writing it 0644 into an image; the
//! test suite checks every key file with `gpg --show-keys` as well.

use base64::Engine as _;

const PUBLIC_KEY: u8 = 6;
const SECRET_KEY: u8 = 5;
const SECRET_SUBKEY: u8 = 7;
const ARMOR_PUBLIC: &str = "-----BEGIN PGP PUBLIC KEY BLOCK-----";
const ARMOR_PRIVATE: &str = "-----BEGIN PGP PRIVATE KEY BLOCK-----";

/// What a key file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFile {
    /// A public keyring; `armored` picks the file name apt needs (`.asc` or `.gpg`).
    Public { armored: bool },
    /// Secret key material: it must never be written into an image.
    Private,
}

/// Reads a key file's packets. `Err` says why it is not an OpenPGP key apt could use.
pub fn classify(bytes: &[u8]) -> Result<KeyFile, String> {
    let text = std::str::from_utf8(bytes).ok();
    if let Some(text) = text.filter(|t| t.trim_start().starts_with("-----BEGIN ")) {
        if text.contains(ARMOR_PRIVATE) {
            return Ok(KeyFile::Private);
        }
        if !text.trim_start().starts_with(ARMOR_PUBLIC) {
            return Err("an armored file that is not a PGP PUBLIC KEY BLOCK".into());
        }
        return match packet_tags(&dearmor(text)?)? {
            tags if tags.iter().any(|t| matches!(*t, SECRET_KEY | SECRET_SUBKEY)) => Ok(KeyFile::Private),
            _ => Ok(KeyFile::Public { armored: true }),
        };
    }
    match packet_tags(bytes)? {
        tags if tags.iter().any(|t| matches!(*t, SECRET_KEY | SECRET_SUBKEY)) => Ok(KeyFile::Private),
        _ => Ok(KeyFile::Public { armored: false }),
    }
}

/// The base64 body of an armored block (RFC 4880 §6.2): after the header lines and a blank line, up to
/// the `=` checksum line or the END line.
fn dearmor(text: &str) -> Result<Vec<u8>, String> {
    let mut lines = text.lines().map(str::trim_end).skip_while(|l| !l.starts_with("-----BEGIN ")).skip(1);
    // Armor headers (`Version: …`, `Comment: …`) end at the first blank line.
    let mut body = String::new();
    let mut in_headers = true;
    for line in lines.by_ref() {
        if line.starts_with("-----END ") || (line.starts_with('=') && !in_headers) {
            break;
        }
        if in_headers {
            if line.is_empty() {
                in_headers = false;
            } else if !line.contains(": ") {
                // No headers at all: this line is already body.
                in_headers = false;
                body.push_str(line);
            }
            continue;
        }
        body.push_str(line);
    }
    base64::engine::general_purpose::STANDARD
        .decode(body.as_bytes())
        .map_err(|e| format!("the armor is not base64: {e}"))
}

/// The tag of every packet, in order; the first must be a public (or secret) key.
fn packet_tags(mut bytes: &[u8]) -> Result<Vec<u8>, String> {
    let mut tags = Vec::new();
    while let Some((&first, rest)) = bytes.split_first() {
        if first & 0x80 == 0 {
            return Err("not OpenPGP data (no packet header)".into());
        }
        let (tag, length, rest) = if first & 0x40 != 0 {
            let (length, rest) = match rest {
                [o1, rest @ ..] if *o1 < 192 => (usize::from(*o1), rest),
                [o1, o2, rest @ ..] if *o1 < 224 => (((usize::from(*o1) - 192) << 8) + usize::from(*o2) + 192, rest),
                [255, a, b, c, d, rest @ ..] => (u32::from_be_bytes([*a, *b, *c, *d]) as usize, rest),
                _ => return Err("a packet length that key files do not use".into()),
            };
            (first & 0x3f, length, rest)
        } else {
            let size = match first & 0x03 {
                0 => 1,
                1 => 2,
                2 => 4,
                _ => return Err("a packet of indeterminate length".into()),
            };
            if rest.len() < size {
                return Err("the data ends inside a packet header".into());
            }
            let length = rest[..size].iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
            ((first >> 2) & 0x0f, length, &rest[size..])
        };
        if rest.len() < length {
            return Err("the data ends inside a packet".into());
        }
        tags.push(tag);
        bytes = &rest[length..];
    }
    match tags.first() {
        Some(&PUBLIC_KEY) | Some(&SECRET_KEY) => Ok(tags),
        Some(_) => Err("the first packet is not a key".into()),
        None => Err("the file is empty".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_keys_are_public() {
        for key in [include_str!("../../assets/keys/docker.asc"), include_str!("../../assets/keys/tailscale.asc")] {
            assert_eq!(classify(key.as_bytes()), Ok(KeyFile::Public { armored: true }));
        }
        let armored = include_str!("../../assets/keys/cloudflare.asc");
        let binary = dearmor(armored).unwrap();
        assert_eq!(classify(&binary), Ok(KeyFile::Public { armored: false }));
    }

    #[test]
    fn private_and_broken_keys() {
        // A secret-key packet (tag 5, new format, 3 bytes of body) and an armored private block.
        assert_eq!(classify(&[0xc5, 0x03, 4, 0, 0]), Ok(KeyFile::Private));
        assert_eq!(
            classify(b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxcA=\n-----END PGP PRIVATE KEY BLOCK-----\n"),
            Ok(KeyFile::Private)
        );
        assert!(classify(b"hello").is_err());
        assert!(classify(&[0xc6, 0x09, 4]).is_err(), "truncated");
        assert!(classify(&[0xcd, 0x01, b'x']).is_err(), "a user id first");
        assert!(classify(b"").is_err());
    }
}
