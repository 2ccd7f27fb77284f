//! IP networks as the profile writes them (`10.77.0.0/24`, `2001:db8::/32`): parsed, compared, and
//! printed in the canonical form (RFC 5952 for IPv6) that ufw and `ip` print too.

use std::net::IpAddr;

/// An address with a prefix length. For allowed IPs the host bits are zero (checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    pub address: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl Cidr {
    /// One address as a network of one (`/32`, `/128`).
    pub fn host(address: IpAddr) -> Cidr {
        Cidr { address, prefix: max_prefix(address) }
    }

    /// An address (`203.0.113.7`) or a network (`203.0.113.0/24`), as firewall sources are written.
    pub fn parse_address_or_network(text: &str) -> Option<Cidr> {
        match text.parse::<IpAddr>() {
            Ok(address) => Some(Cidr::host(address)),
            Err(_) => Cidr::parse(text),
        }
    }

    /// True for a single address (`/32`, `/128`).
    pub fn is_host(&self) -> bool {
        self.prefix == max_prefix(self.address)
    }

    /// True when the address has bits set past the prefix (`203.0.113.7/24`).
    pub fn has_host_bits(&self) -> bool {
        self.network() != *self
    }

    pub fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        // Digits only: `u8::from_str` would also take `+24`.
        if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let prefix: u8 = prefix.parse().ok()?;
        (prefix <= max_prefix(address)).then_some(Cidr { address, prefix })
    }

    /// The address with the host bits cleared.
    pub fn network(&self) -> Cidr {
        let address = match self.address {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::from((u32::from(a) & mask).to_be_bytes())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                IpAddr::from((u128::from(a) & mask).to_be_bytes())
            }
        };
        Cidr { address, prefix: self.prefix }
    }

    pub fn contains(&self, address: IpAddr) -> bool {
        address.is_ipv4() == self.address.is_ipv4() && Cidr { address, prefix: self.prefix }.network() == self.network()
    }

    pub fn overlaps(&self, other: &Cidr) -> bool {
        let shorter = if self.prefix <= other.prefix { self } else { other };
        let longer = if self.prefix <= other.prefix { other } else { self };
        shorter.contains(longer.address)
    }
}

fn max_prefix(address: IpAddr) -> u8 {
    if address.is_ipv4() { 32 } else { 128 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks() {
        let net = Cidr::parse("10.77.0.0/24").unwrap();
        assert!(net.contains("10.77.0.9".parse().unwrap()) && !net.contains("10.78.0.9".parse().unwrap()));
        assert_eq!(Cidr::parse("10.77.0.1/24").unwrap().network(), net);
        assert!(net.overlaps(&Cidr::parse("10.77.0.2/32").unwrap()));
        assert!(!net.overlaps(&Cidr::parse("10.77.1.0/24").unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().overlaps(&net));
        assert!(!net.overlaps(&Cidr::parse("fd00::/8").unwrap()));
        assert_eq!(Cidr::parse("fd00::1/64").unwrap().network().to_string(), "fd00::/64");
        assert_eq!(Cidr::parse_address_or_network("2001:DB8:0::1"), Some(Cidr::host("2001:db8::1".parse().unwrap())));
        assert_eq!(Cidr::parse_address_or_network("2001:0db8::/32").unwrap().to_string(), "2001:db8::/32");
        assert!(
            Cidr::parse("203.0.113.7/24").unwrap().has_host_bits() && Cidr::parse("203.0.113.7/32").unwrap().is_host()
        );
        for bad in ["10.77.0.1", "10.77.0.1/33", "10.77.0.1/+4", "10.77.0.1/", "host/24", "fd00::/129"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }
}
