//! The checksums S3 verifies (`x-amz-checksum-*`): computing a part's, and the whole object's
//! from its parts' without reading the bytes again.
//!
//! Values are what S3 puts in headers and XML: the base64 of the big-endian digest, with `-N`
//! after a composite one (a checksum of the `N` part checksums).
//!
//! - CRC32C and CRC64NVME are `FULL_OBJECT`: the object's CRC is combined from the parts' CRCs
//!   and lengths ([`full_object`]), so it equals the CRC of the file on disk.
//! - SHA-256 is `COMPOSITE` (S3 has no full-object SHA-256): the SHA-256 of the parts' digests.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
#[cfg(not(target_family = "wasm"))]
use sha2::{Digest as _, Sha256};

use crate::base64;
use crate::json::{Fields, FromJson, Json, Object, ToJson};
#[cfg(target_family = "wasm")]
use crate::sha256::Sha256;

/// A checksum algorithm S3 verifies. `FERRY_CHECKSUM` names it in lower case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    Crc32c,
    Crc64nvme,
    Sha256,
}

/// How an object's checksum relates to its parts'.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChecksumType {
    /// The checksum of the whole object's bytes.
    FullObject,
    /// A checksum of the parts' checksums, with `-N` for `N` parts.
    Composite,
}

/// An object's (or a part's) checksum, as S3 states it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checksum {
    pub algorithm: ChecksumAlgorithm,
    #[serde(rename = "type")]
    pub kind: ChecksumType,
    /// Base64 of the big-endian digest; `-N` follows a composite one.
    pub value: String,
}

impl ChecksumAlgorithm {
    pub const ALL: [ChecksumAlgorithm; 3] = [Self::Crc32c, Self::Crc64nvme, Self::Sha256];

    /// The name S3 gives it (`x-amz-checksum-algorithm`, `ChecksumAlgorithm` in XML).
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::Crc32c => "CRC32C",
            Self::Crc64nvme => "CRC64NVME",
            Self::Sha256 => "SHA256",
        }
    }

    /// The lower-case name, as in `FERRY_CHECKSUM` and `/api/config`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Crc32c => "crc32c",
            Self::Crc64nvme => "crc64nvme",
            Self::Sha256 => "sha256",
        }
    }

    /// The header carrying a value of this algorithm.
    pub fn header(self) -> &'static str {
        match self {
            Self::Crc32c => "x-amz-checksum-crc32c",
            Self::Crc64nvme => "x-amz-checksum-crc64nvme",
            Self::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The type of a multipart object's checksum: full-object where S3 can combine the parts'.
    pub fn multipart_type(self) -> ChecksumType {
        match self {
            Self::Crc32c | Self::Crc64nvme => ChecksumType::FullObject,
            Self::Sha256 => ChecksumType::Composite,
        }
    }

    /// By its lower-case or S3 name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|algorithm| name.eq_ignore_ascii_case(algorithm.name()))
    }

    /// The length of a digest, in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Crc32c => 4,
            Self::Crc64nvme => 8,
            Self::Sha256 => 32,
        }
    }

    pub fn hasher(self) -> Hasher {
        Hasher(match self {
            Self::Crc32c => State::Crc32c(crc32c().digest()),
            Self::Crc64nvme => State::Crc64nvme(crc64nvme().digest()),
            Self::Sha256 => State::Sha256(Sha256::default()),
        })
    }

    /// The checksum value of `bytes`.
    pub fn checksum(self, bytes: &[u8]) -> String {
        let mut hasher = self.hasher();
        hasher.update(bytes);
        hasher.finish()
    }
}

impl std::fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// CRC-32C (Castagnoli, `CRC-32/ISCSI`), sliced by 16 bytes. The tables (16 KiB here, 32 KiB
/// for CRC64NVME) are computed on first use rather than at compile time: as data they would be
/// a fifth of the gzipped npm package, for a microsecond's work.
fn crc32c() -> &'static crc::Crc<u32, crc::Table<16>> {
    static TABLES: OnceLock<crc::Crc<u32, crc::Table<16>>> = OnceLock::new();
    TABLES.get_or_init(|| crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISCSI))
}

/// CRC-64/NVME, S3's `CRC64NVME`.
const CRC_64_NVME: crc::Algorithm<u64> = crc::Algorithm {
    width: 64,
    poly: 0xad93_d235_94c9_3659,
    init: 0xffff_ffff_ffff_ffff,
    refin: true,
    refout: true,
    xorout: 0xffff_ffff_ffff_ffff,
    check: 0xae8b_1486_0a79_9888,
    residue: 0xf310_303b_2b6f_6e42,
};
fn crc64nvme() -> &'static crc::Crc<u64, crc::Table<16>> {
    static TABLES: OnceLock<crc::Crc<u64, crc::Table<16>>> = OnceLock::new();
    TABLES.get_or_init(|| crc::Crc::<u64, crc::Table<16>>::new(&CRC_64_NVME))
}

/// A checksum being computed, fed in pieces.
pub struct Hasher(State);

enum State {
    Crc32c(crc::Digest<'static, u32, crc::Table<16>>),
    Crc64nvme(crc::Digest<'static, u64, crc::Table<16>>),
    Sha256(Sha256),
}

impl Hasher {
    pub fn update(&mut self, bytes: &[u8]) {
        match &mut self.0 {
            State::Crc32c(digest) => digest.update(bytes),
            State::Crc64nvme(digest) => digest.update(bytes),
            State::Sha256(digest) => digest.update(bytes),
        }
    }

    /// The value, base64 as S3 states it.
    pub fn finish(self) -> String {
        base64::encode(&match self.0 {
            State::Crc32c(digest) => digest.finalize().to_be_bytes().to_vec(),
            State::Crc64nvme(digest) => digest.finalize().to_be_bytes().to_vec(),
            State::Sha256(digest) => digest.finalize().to_vec(),
        })
    }
}

/// The raw digest of a base64 value of `algorithm`; `None` if it is not one.
pub fn decode(algorithm: ChecksumAlgorithm, value: &str) -> Option<Vec<u8>> {
    let raw = base64::decode(value)?;
    (raw.len() == algorithm.digest_len()).then_some(raw)
}

/// The object's checksum from its parts' (in order, with their lengths): the full-object CRC for
/// CRC32C and CRC64NVME, the composite one for SHA-256. `None` if a part's value is malformed.
pub fn object_checksum(algorithm: ChecksumAlgorithm, parts: &[(&str, u64)]) -> Option<Checksum> {
    let value = match algorithm.multipart_type() {
        ChecksumType::FullObject => full_object(algorithm, parts)?,
        ChecksumType::Composite => composite(
            algorithm,
            &parts.iter().map(|&(value, _)| value).collect::<Vec<_>>(),
        )?,
    };
    Some(Checksum {
        algorithm,
        kind: algorithm.multipart_type(),
        value,
    })
}

/// The CRC of the parts' bytes one after another, from each part's CRC and length.
pub fn full_object(algorithm: ChecksumAlgorithm, parts: &[(&str, u64)]) -> Option<String> {
    let width = match algorithm {
        ChecksumAlgorithm::Crc32c => 32,
        ChecksumAlgorithm::Crc64nvme => 64,
        ChecksumAlgorithm::Sha256 => return None,
    };
    let poly = match algorithm {
        ChecksumAlgorithm::Crc32c => u64::from(crc::CRC_32_ISCSI.poly),
        _ => CRC_64_NVME.poly,
    };
    let gf2 = Gf2 {
        // Reflected: bit `width - 1` is x^0.
        poly: poly.reverse_bits() >> (64 - width),
        top: 1 << (width - 1),
    };
    let mut combined: Option<u64> = None;
    for &(value, len) in parts {
        let raw = decode(algorithm, value)?;
        let crc = raw
            .iter()
            .fold(0u64, |crc, &byte| crc << 8 | u64::from(byte));
        combined = Some(match combined {
            None => crc,
            // Appending `len` bytes multiplies the CRC so far by x^(8 len); the all-ones init
            // and final xor of both CRCs cancel out.
            Some(before) => gf2.multiply(gf2.x_to_8n(len), before) ^ crc,
        });
    }
    // No part: the CRC of nothing.
    let crc = combined.unwrap_or_else(|| match algorithm {
        ChecksumAlgorithm::Crc32c => u64::from(crc32c().checksum(&[])),
        _ => crc64nvme().checksum(&[]),
    });
    Some(base64::encode(&crc.to_be_bytes()[(64 - width) / 8..]))
}

/// The composite checksum of the parts' values: the checksum of their concatenated digests,
/// with `-N`.
pub fn composite(algorithm: ChecksumAlgorithm, parts: &[&str]) -> Option<String> {
    let mut hasher = algorithm.hasher();
    for value in parts {
        hasher.update(&decode(algorithm, value)?);
    }
    Some(format!("{}-{}", hasher.finish(), parts.len()))
}

/// Arithmetic on polynomials over GF(2) modulo a reflected CRC polynomial (zlib's
/// `crc32_combine`, for any width up to 64).
struct Gf2 {
    poly: u64,
    /// The bit standing for x^0.
    top: u64,
}

impl Gf2 {
    fn multiply(&self, a: u64, mut b: u64) -> u64 {
        let mut product = 0;
        let mut bit = self.top;
        while bit != 0 {
            if a & bit != 0 {
                product ^= b;
            }
            bit >>= 1;
            b = if b & 1 != 0 {
                (b >> 1) ^ self.poly
            } else {
                b >> 1
            };
        }
        product
    }

    /// x^(8 n) modulo the polynomial, by squaring.
    fn x_to_8n(&self, mut n: u64) -> u64 {
        let mut result = self.top;
        // x^8 = ((x^1)^2)^2)^2
        let mut square = self.top >> 1;
        for _ in 0..3 {
            square = self.multiply(square, square);
        }
        while n != 0 {
            if n & 1 != 0 {
                result = self.multiply(square, result);
            }
            square = self.multiply(square, square);
            n >>= 1;
        }
        result
    }
}

impl FromJson for ChecksumAlgorithm {
    fn from_json(json: &Json) -> Result<Self, String> {
        let name = String::from_json(json)?;
        Self::ALL
            .into_iter()
            .find(|algorithm| algorithm.name() == name)
            .ok_or_else(|| format!("unknown checksum algorithm \"{name}\""))
    }
}

impl ToJson for ChecksumAlgorithm {
    fn to_json(&self) -> Json {
        Json::String(self.name().into())
    }
}

impl ChecksumType {
    /// As S3 names it (`x-amz-checksum-type`).
    pub fn s3_name(self) -> &'static str {
        match self {
            Self::FullObject => "FULL_OBJECT",
            Self::Composite => "COMPOSITE",
        }
    }
}

impl FromJson for ChecksumType {
    fn from_json(json: &Json) -> Result<Self, String> {
        let name = String::from_json(json)?;
        [Self::FullObject, Self::Composite]
            .into_iter()
            .find(|kind| kind.s3_name() == name)
            .ok_or_else(|| format!("unknown checksum type \"{name}\""))
    }
}

impl ToJson for ChecksumType {
    fn to_json(&self) -> Json {
        Json::String(self.s3_name().into())
    }
}

impl FromJson for Checksum {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            algorithm: fields.required("algorithm")?,
            kind: fields.required("type")?,
            value: fields.required("value")?,
        })
    }
}

impl ToJson for Checksum {
    fn to_json(&self) -> Json {
        Object::new()
            .field("algorithm", self.algorithm.to_json())
            .field("type", self.kind.to_json())
            .field("value", self.value.to_json())
            .done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn check_values_of_the_catalogue() {
        let raw = |algorithm, text: &[u8]| {
            decode(algorithm, &ChecksumAlgorithm::checksum(algorithm, text)).unwrap()
        };
        assert_eq!(
            raw(ChecksumAlgorithm::Crc32c, b"123456789"),
            0xe306_9283u32.to_be_bytes()
        );
        assert_eq!(
            raw(ChecksumAlgorithm::Crc64nvme, b"123456789"),
            0xae8b_1486_0a79_9888u64.to_be_bytes()
        );
        // S3's own examples: the CRC32C of nothing is AAAAAA==, and SHA-256 of "abc".
        assert_eq!(ChecksumAlgorithm::Crc32c.checksum(b""), "AAAAAA==");
        assert_eq!(
            ChecksumAlgorithm::Sha256.checksum(b"abc"),
            "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
        );
    }

    /// The CRC of `bytes` by an implementation apart from Ferry's (crc-fast), in base64.
    fn independent_crc(algorithm: ChecksumAlgorithm, bytes: &[u8]) -> String {
        use crc_fast::{CrcAlgorithm, checksum};
        let raw = match algorithm {
            ChecksumAlgorithm::Crc32c => (checksum(CrcAlgorithm::Crc32Iscsi, bytes) as u32)
                .to_be_bytes()
                .to_vec(),
            ChecksumAlgorithm::Crc64nvme => checksum(CrcAlgorithm::Crc64Nvme, bytes)
                .to_be_bytes()
                .to_vec(),
            ChecksumAlgorithm::Sha256 => unreachable!("SHA-256 combines no parts into one"),
        };
        base64::encode(&raw)
    }

    #[test]
    fn full_object_crc_of_parts_equals_the_crc_of_the_bytes() {
        let data = bytes(100_003, 7);
        for algorithm in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc64nvme] {
            for cuts in [
                vec![],
                vec![0],
                vec![1],
                vec![4096, 4097, 50_000],
                vec![99_999, 100_002],
            ] {
                let mut bounds = vec![0];
                bounds.extend(cuts);
                bounds.push(data.len());
                let parts: Vec<(String, u64)> = bounds
                    .windows(2)
                    .map(|pair| {
                        (
                            algorithm.checksum(&data[pair[0]..pair[1]]),
                            (pair[1] - pair[0]) as u64,
                        )
                    })
                    .collect();
                let parts: Vec<(&str, u64)> = parts
                    .iter()
                    .map(|(value, len)| (value.as_str(), *len))
                    .collect();
                assert_eq!(
                    full_object(algorithm, &parts).unwrap(),
                    independent_crc(algorithm, &data),
                    "{algorithm} cut at {bounds:?}"
                );
            }
        }
    }

    #[test]
    fn full_object_of_no_part_is_the_crc_of_nothing() {
        for algorithm in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Crc64nvme] {
            assert_eq!(
                full_object(algorithm, &[]).unwrap(),
                algorithm.checksum(b"")
            );
        }
    }

    #[test]
    fn composite_is_the_checksum_of_the_part_digests() {
        let (one, two) = (bytes(1000, 3), bytes(10, 5));
        for algorithm in ChecksumAlgorithm::ALL {
            let values = [algorithm.checksum(&one), algorithm.checksum(&two)];
            let mut digests = decode(algorithm, &values[0]).unwrap();
            digests.extend(decode(algorithm, &values[1]).unwrap());
            assert_eq!(
                composite(algorithm, &[&values[0], &values[1]]).unwrap(),
                format!("{}-2", algorithm.checksum(&digests))
            );
        }
    }

    #[test]
    fn malformed_values_make_no_checksum() {
        let crc64 = ChecksumAlgorithm::Crc64nvme.checksum(b"x");
        // A CRC64 value given as a CRC32C one: wrong length.
        assert_eq!(full_object(ChecksumAlgorithm::Crc32c, &[(&crc64, 1)]), None);
        assert_eq!(composite(ChecksumAlgorithm::Sha256, &["not base64!"]), None);
        assert_eq!(full_object(ChecksumAlgorithm::Sha256, &[]), None);
    }

    #[test]
    fn names_parse_both_ways() {
        for algorithm in ChecksumAlgorithm::ALL {
            assert_eq!(ChecksumAlgorithm::parse(algorithm.name()), Some(algorithm));
            assert_eq!(
                ChecksumAlgorithm::parse(algorithm.s3_name()),
                Some(algorithm)
            );
            assert_eq!(
                serde_json::to_string(&algorithm).unwrap(),
                format!("\"{}\"", algorithm.name())
            );
        }
        assert_eq!(ChecksumAlgorithm::parse("md5"), None);
        assert_eq!(
            serde_json::to_string(&ChecksumType::FullObject).unwrap(),
            "\"FULL_OBJECT\""
        );
    }
}
