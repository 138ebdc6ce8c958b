//! libvmmapi's `vm_parse_memsize`: bhyve's `-m` argument. A plain number
//! below 1 MiB counts megabytes (for compatibility), any other plain number
//! bytes; otherwise libutil's `expand_number`: a number with a unit of k,
//! m, g, t, p or e (binary multiples, either case, optionally followed by
//! `b`), or `b` for bytes.
//!
//! Numbers are C's (`strtoul` base 0): leading white space, an optional
//! `+`, decimal, octal with a leading 0, hexadecimal with 0x. Differences
//! from FreeBSD, where its result would be a size nobody asked for: a
//! number too large for 64 bits is `Range` (FreeBSD's plain-number branch
//! takes `ULONG_MAX`), a minus sign is `Inval` (strtoul negates), and so
//! is a string without digits (`expand_number("")` is 0 in FreeBSD).

use crate::error::{Error, Result};

const MB: u64 = 1 << 20;

/// A C number at the start of `s`: its value and the rest of `s`.
fn c_number(s: &[u8]) -> Result<(u64, &[u8])> {
    // C's isspace: Rust's ASCII white space plus vertical tab.
    let s = &s[s.iter().take_while(|c| c.is_ascii_whitespace() || **c == 0x0b).count()..];
    let s = match s.first() {
        Some(b'+') => &s[1..],
        Some(b'-') => return Err(Error::Inval),
        _ => s,
    };
    let (radix, digits) = match s {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, &s[2..]),
        [b'0', ..] => (8, s),
        _ => (10, s),
    };
    let n = digits.iter().take_while(|c| char::from(**c).is_digit(radix)).count();
    if n == 0 {
        return Err(Error::Inval);
    }
    let mut v: u64 = 0;
    for c in &digits[..n] {
        let d = u64::from(char::from(*c).to_digit(radix).unwrap_or(0));
        v = v.checked_mul(u64::from(radix)).and_then(|v| v.checked_add(d)).ok_or(Error::Range)?;
    }
    Ok((v, &digits[n..]))
}

/// `vm_parse_memsize(s)`, in bytes.
pub fn parse_memsize(s: &[u8]) -> Result<u64> {
    let (v, rest) = c_number(s)?;
    let shift = match rest {
        [] => return Ok(if v < MB { v * MB } else { v }),
        [u, tail @ ..] => {
            let shift = match u.to_ascii_lowercase() {
                b'b' => 0,
                b'k' => 10,
                b'm' => 20,
                b'g' => 30,
                b't' => 40,
                b'p' => 50,
                b'e' => 60,
                _ => return Err(Error::Inval),
            };
            let tail = match tail {
                [b, t @ ..] if shift != 0 && b.eq_ignore_ascii_case(&b'b') => t,
                t => t,
            };
            if !tail.is_empty() {
                return Err(Error::Inval);
            }
            shift
        }
    };
    if (v << shift) >> shift != v {
        return Err(Error::Range);
    }
    Ok(v << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_numbers_below_a_megabyte_are_megabytes() {
        assert_eq!(parse_memsize(b"256"), Ok(256 * MB));
        assert_eq!(parse_memsize(b"1048575"), Ok((MB - 1) * MB));
        assert_eq!(parse_memsize(b"1048576"), Ok(MB));
        assert_eq!(parse_memsize(b"0x800"), Ok(0x800 * MB));
        assert_eq!(parse_memsize(b"010"), Ok(8 * MB), "octal");
        assert_eq!(parse_memsize(b" +2"), Ok(2 * MB));
        assert_eq!(parse_memsize(b"\t\x0b\x0c\r\n 4"), Ok(4 * MB), "isspace");
        assert_eq!(parse_memsize(b"0"), Ok(0));
    }

    #[test]
    fn units_are_binary_multiples() {
        assert_eq!(parse_memsize(b"4G"), Ok(4 << 30));
        assert_eq!(parse_memsize(b"4g"), Ok(4 << 30));
        assert_eq!(parse_memsize(b"512m"), Ok(512 << 20));
        assert_eq!(parse_memsize(b"512MB"), Ok(512 << 20));
        assert_eq!(parse_memsize(b"3kb"), Ok(3 << 10));
        assert_eq!(parse_memsize(b"1t"), Ok(1 << 40));
        assert_eq!(parse_memsize(b"1P"), Ok(1 << 50));
        assert_eq!(parse_memsize(b"7e"), Ok(7 << 60));
        assert_eq!(parse_memsize(b"100b"), Ok(100), "bytes, not megabytes");
        assert_eq!(parse_memsize(b"0x10k"), Ok(16 << 10));
    }

    #[test]
    fn everything_else_is_an_error() {
        for bad in [&b""[..], b"   ", b"g", b"4q", b"4gbb", b"4bb", b"4 g", b"-1", b"-1g", b"1.5g", b"0x"] {
            assert_eq!(parse_memsize(bad), Err(Error::Inval), "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse_memsize(b"16e"), Err(Error::Range));
        assert_eq!(parse_memsize(b"18446744073709551616"), Err(Error::Range));
        // Too large already before the last digit is added.
        assert_eq!(parse_memsize(b"99999999999999999999"), Err(Error::Range));
        assert_eq!(parse_memsize(b"0x10000000000000000"), Err(Error::Range));
        assert_eq!(parse_memsize(b"18446744073709551615"), Ok(u64::MAX));
    }
}
