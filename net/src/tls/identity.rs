//! The user name a client certificate stands for (`use_identity_as_username`):
//! the subject's Common Name, else the first DNS, e-mail or URI subject
//! alternative name.
//!
//! A small DER walker over the parts of an X.509 certificate (RFC 5280
//! section 4.1) that hold names; it runs only on certificates rustls has
//! already verified against the client CA, and still treats them as
//! untrusted input: every length is checked, nothing panics, nothing is
//! allocated from a length before the bytes are there.
//!
//! ```text
//! Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signature }
//! TBSCertificate ::= SEQUENCE {
//!     [0] version OPTIONAL, serialNumber, signature, issuer, validity,
//!     subject Name, subjectPublicKeyInfo,
//!     [1] issuerUniqueID OPTIONAL, [2] subjectUniqueID OPTIONAL,
//!     [3] extensions OPTIONAL }
//! Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }
//! Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE,
//!                          extnValue OCTET STRING }
//! ```

/// Longest identity accepted, in bytes (a CN is at most 64 by RFC 5280's
/// upper bounds; SANs have no bound, MQTT user names are at most 65,535).
pub const IDENTITY_MAX_BYTES: usize = 1024;

const TAG_SEQUENCE: u8 = 0x30;
const TAG_SET: u8 = 0x31;
const TAG_OID: u8 = 0x06;
const TAG_BOOLEAN: u8 = 0x01;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_VERSION: u8 = 0xA0;
const TAG_EXTENSIONS: u8 = 0xA3;
/// id-at-commonName, 2.5.4.3.
const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1D, 0x11];
/// GeneralName choices (context-specific, primitive) used as identities.
const SAN_RFC822: u8 = 0x81;
const SAN_DNS: u8 = 0x82;
const SAN_URI: u8 = 0x86;

/// One DER element: its tag and contents; `rest` follows it.
struct Tlv<'a> {
    tag: u8,
    value: &'a [u8],
}

/// Splits the first element off `input` (definite lengths only, as DER
/// requires; lengths up to 4 bytes).
fn next(input: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let len = bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, rest)
    };
    if rest.len() < len {
        return None;
    }
    let (value, rest) = rest.split_at(len);
    Some((Tlv { tag, value }, rest))
}

/// The elements of a constructed value, in order; stops at the first
/// malformed one.
fn children(mut input: &[u8]) -> impl Iterator<Item = Tlv<'_>> {
    std::iter::from_fn(move || {
        let (tlv, rest) = next(input)?;
        input = rest;
        Some(tlv)
    })
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (tlv, rest) = next(input)?;
    (tlv.tag == tag).then_some((tlv.value, rest))
}

/// The identity of a DER certificate: subject CN, else the first DNS,
/// e-mail or URI SAN. `None` if it has none, it is not valid UTF-8, it is
/// longer than [`IDENTITY_MAX_BYTES`], or the DER is malformed.
pub fn certificate_identity(der: &[u8]) -> Option<String> {
    let (cert, _) = expect(der, TAG_SEQUENCE)?;
    let (tbs, _) = expect(cert, TAG_SEQUENCE)?;
    let mut fields = children(tbs).peekable();
    if fields.peek().map(|f| f.tag) == Some(TAG_VERSION) {
        fields.next();
    }
    // serialNumber, signature, issuer, validity, then subject.
    let subject = fields.nth(4)?;
    if subject.tag != TAG_SEQUENCE {
        return None;
    }
    let name = common_name(subject.value).or_else(|| {
        fields
            .find(|f| f.tag == TAG_EXTENSIONS)
            .and_then(|ext| first_san(ext.value))
    })?;
    let name = std::str::from_utf8(name).ok()?;
    (!name.is_empty() && name.len() <= IDENTITY_MAX_BYTES).then(|| name.to_string())
}

/// The value of the first commonName attribute of a Name.
fn common_name(name: &[u8]) -> Option<&[u8]> {
    children(name)
        .filter(|rdn| rdn.tag == TAG_SET)
        .flat_map(|rdn| children(rdn.value))
        .filter(|atv| atv.tag == TAG_SEQUENCE)
        .find_map(|atv| {
            let (oid, rest) = expect(atv.value, TAG_OID)?;
            if oid != OID_COMMON_NAME {
                return None;
            }
            // Any string type (UTF8String, PrintableString, ...): its bytes.
            next(rest).map(|(value, _)| value.value)
        })
}

/// The first DNS, e-mail or URI name of the subjectAltName extension, from
/// the `[3]` extensions wrapper's contents.
fn first_san(extensions: &[u8]) -> Option<&[u8]> {
    let (list, _) = expect(extensions, TAG_SEQUENCE)?;
    let san = children(list)
        .filter(|e| e.tag == TAG_SEQUENCE)
        .find_map(|ext| {
            let (oid, mut rest) = expect(ext.value, TAG_OID)?;
            if oid != OID_SUBJECT_ALT_NAME {
                return None;
            }
            if let Some((_, after)) = expect(rest, TAG_BOOLEAN) {
                rest = after;
            }
            expect(rest, TAG_OCTET_STRING).map(|(value, _)| value)
        })?;
    let (names, _) = expect(san, TAG_SEQUENCE)?;
    children(names)
        .find(|n| matches!(n.tag, SAN_DNS | SAN_RFC822 | SAN_URI))
        .map(|n| n.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(cn: Option<&str>, sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "ringmq tests");
        if let Some(cn) = cn {
            dn.push(DnType::CommonName, cn);
        }
        params.distinguished_name = dn;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let cert = params.self_signed(&key).unwrap_or_else(|e| panic!("{e}"));
        cert.der().to_vec()
    }

    fn dns(name: &str) -> SanType {
        SanType::DnsName(name.try_into().unwrap_or_else(|e| panic!("{e:?}")))
    }

    #[test]
    fn common_name_wins() {
        let der = cert(Some("alice"), vec![dns("device-7.example")]);
        assert_eq!(certificate_identity(&der).as_deref(), Some("alice"));
    }

    #[test]
    fn first_dns_san_without_common_name() {
        let der = cert(None, vec![dns("device-7.example"), dns("other.example")]);
        assert_eq!(
            certificate_identity(&der).as_deref(),
            Some("device-7.example")
        );
    }

    #[test]
    fn no_name_at_all() {
        let der = cert(None, vec![]);
        assert_eq!(certificate_identity(&der), None);
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let der = cert(Some("alice"), vec![dns("a.example")]);
        for cut in 0..der.len() {
            // A truncated outer SEQUENCE is always refused.
            assert_eq!(certificate_identity(&der[..cut]), None, "cut at {cut}");
        }
        let mut flipped = der.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xFF;
            // Must not panic; the answer may be anything.
            let _ignored = certificate_identity(&flipped);
            flipped[i] ^= 0xFF;
        }
    }
}
