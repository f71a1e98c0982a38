//! The two fields of a certificate VSS reads itself: notAfter, for the
//! expiry gauge, and the DNS names (SAN), to tie a peer's certificate to
//! the instance id it claims.
//!
//! rustls and webpki check validity and chains but expose neither field,
//! and an X.509 parser crate for two fields is a lot of code to carry: this
//! walks the few DER elements in front of them. Anything unexpected yields
//! None (no expiry: the gauge stays unset) or no names (the peer is
//! refused).

use rustls::pki_types::CertificateDer;

/// One DER element: (tag, contents, rest after it).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

const SEQUENCE: u8 = 0x30;
const VERSION: u8 = 0xa0;
const UTC_TIME: u8 = 0x17;
const BOOLEAN: u8 = 0x01;
const OCTET_STRING: u8 = 0x04;
const OID: u8 = 0x06;
const EXTENSIONS: u8 = 0xa3;
const DNS_NAME: u8 = 0x82;
/// subjectAltName, 2.5.29.17.
const SAN: &[u8] = &[0x55, 0x1d, 0x11];
const GENERALIZED_TIME: u8 = 0x18;

/// The fields of the TBSCertificate from serialNumber on.
fn tbs<'a>(cert: &'a CertificateDer<'_>) -> Option<&'a [u8]> {
    let (SEQUENCE, cert, _) = element(cert.as_ref())? else {
        return None;
    };
    let (SEQUENCE, mut tbs, _) = element(cert)? else {
        return None;
    };
    if tbs.first() == Some(&VERSION) {
        tbs = element(tbs)?.2;
    }
    Some(tbs)
}

/// The notAfter of `cert`, in seconds since the Unix epoch.
pub fn not_after(cert: &CertificateDer<'_>) -> Option<i64> {
    let mut tbs = tbs(cert)?;
    // serialNumber, signature, issuer.
    for _ in 0..3 {
        tbs = element(tbs)?.2;
    }
    let (SEQUENCE, validity, _) = element(tbs)? else {
        return None;
    };
    let (_, _, validity) = element(validity)?;
    let (tag, time, _) = element(validity)?;
    parse_time(tag, time)
}

/// The DNS names of `cert`'s subjectAltName extension.
pub fn dns_names(cert: &CertificateDer<'_>) -> Vec<String> {
    san_dns_names(cert).unwrap_or_default()
}

fn san_dns_names(cert: &CertificateDer<'_>) -> Option<Vec<String>> {
    let mut tbs = tbs(cert)?;
    // serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo.
    for _ in 0..6 {
        tbs = element(tbs)?.2;
    }
    // Then the optional unique ids, then the extensions.
    while let Some((tag, body, rest)) = element(tbs) {
        tbs = rest;
        if tag != EXTENSIONS {
            continue;
        }
        let (SEQUENCE, mut extensions, _) = element(body)? else {
            return None;
        };
        while let Some((SEQUENCE, extension, rest)) = element(extensions) {
            extensions = rest;
            let (OID, oid, extension) = element(extension)? else {
                return None;
            };
            if oid != SAN {
                continue;
            }
            let (mut tag, mut value, after) = element(extension)?;
            if tag == BOOLEAN {
                (tag, value, _) = element(after)?;
            }
            if tag != OCTET_STRING {
                return None;
            }
            let (SEQUENCE, mut names, _) = element(value)? else {
                return None;
            };
            let mut found = Vec::new();
            while let Some((tag, name, rest)) = element(names) {
                names = rest;
                if tag == DNS_NAME {
                    found.push(String::from_utf8(name.to_vec()).ok()?);
                }
            }
            return Some(found);
        }
    }
    Some(Vec::new())
}

fn parse_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?;
    let text = text.strip_suffix('Z')?;
    let (year, rest) = match tag {
        // RFC 5280: two-digit years 50-99 are 19xx, 00-49 are 20xx.
        UTC_TIME if text.len() == 12 => {
            let yy: i64 = text.get(..2)?.parse().ok()?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
        }
        GENERALIZED_TIME if text.len() == 14 => (text.get(..4)?.parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day) = (field(0)?, field(2)?);
    let (hour, minute, second) = (field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3_600 + minute * 60 + second)
}

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard
/// Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_utc_and_generalized_times() {
        assert_eq!(parse_time(UTC_TIME, b"700101000000Z"), Some(0));
        assert_eq!(parse_time(UTC_TIME, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(
            parse_time(GENERALIZED_TIME, b"20500101000000Z"),
            Some(2_524_608_000)
        );
        assert_eq!(parse_time(UTC_TIME, b"701301000000Z"), None);
        assert_eq!(parse_time(UTC_TIME, b"7001010000Z"), None);
    }

    #[test]
    fn reads_the_not_after_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["a".to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(2031, 3, 4);
        let cert = params.self_signed(&key).expect("cert");
        // 2031-03-04T00:00:00Z
        assert_eq!(not_after(cert.der()), Some(1_930_348_800));
    }

    #[test]
    fn reads_the_dns_names_of_a_generated_certificate() {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![
            "vss-0".to_string(),
            "127.0.0.1".to_string(),
            "vss-0.vss-headless.default.svc".to_string(),
        ])
        .expect("params");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(
            dns_names(cert.der()),
            ["vss-0", "vss-0.vss-headless.default.svc"]
        );
    }

    #[test]
    fn garbage_has_no_expiry_and_no_names() {
        assert!(dns_names(&CertificateDer::from(vec![0x30, 0x82, 1])).is_empty());
        assert_eq!(not_after(&CertificateDer::from(vec![0x30, 0x82, 1])), None);
        assert_eq!(not_after(&CertificateDer::from(Vec::new())), None);
    }
}
