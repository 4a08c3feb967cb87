//! S3's checksums (`x-amz-checksum-*`) on the requests Ferry uses: which checksum a write states
//! or asks for, checking the bytes and a Complete against it, and the values answers carry.
//!
//! The store verifies the algorithms of [`ferry_core::checksum`]: CRC32C, CRC64NVME and SHA-256.
//! S3's other two, CRC32 and SHA-1, are refused with `NotImplemented`, so a client that relies on
//! them learns at once instead of getting a value nobody checked. Errors carry S3's codes and,
//! where S3's wording is known, its messages.

use ferry_core::checksum::{self, Checksum, ChecksumAlgorithm, ChecksumType};
use s3s::dto;
use s3s::{S3Error, S3ErrorCode, S3Result, TrailingHeaders};

use crate::disk::{ChecksumValue, PartMeta, UploadChecksum, Written};

const SDK_ALGORITHM: &str = "x-amz-sdk-checksum-algorithm";

/// The `checksum_*` fields of an S3 DTO, which every one repeats, by S3's name of the algorithm.
macro_rules! stated {
    ($dto:expr) => {
        [
            ("CRC32", $dto.checksum_crc32.as_deref()),
            ("CRC32C", $dto.checksum_crc32c.as_deref()),
            ("CRC64NVME", $dto.checksum_crc64nvme.as_deref()),
            ("SHA1", $dto.checksum_sha1.as_deref()),
            ("SHA256", $dto.checksum_sha256.as_deref()),
        ]
    };
}
pub(crate) use stated;

/// What [`stated!`] gives.
pub type Stated<'a> = [(&'static str, Option<&'a str>); 5];

/// What a PutObject or UploadPart body is checked against.
#[derive(Debug)]
pub struct BodyCheck {
    pub algorithm: ChecksumAlgorithm,
    expected: Expected,
}

/// Where the value a body must have comes from.
#[derive(Debug)]
enum Expected {
    /// Nowhere: the store only computes the checksum, for a part of an upload that declared one.
    Nothing,
    /// A header.
    Stated(String),
    /// An aws-chunked body's trailer, read once the body has been.
    Trailer(TrailingHeaders),
}

impl BodyCheck {
    /// `BadDigest` unless the bytes have the stated value.
    pub fn verify(&self, written: &Written) -> S3Result<()> {
        let expected = match &self.expected {
            Expected::Nothing => return Ok(()),
            Expected::Stated(value) => value.clone(),
            Expected::Trailer(trailers) => {
                let header = self.algorithm.header();
                let value = trailers.read(|trailers| {
                    let value = trailers.get(header)?.to_str().ok()?;
                    checksum::decode(self.algorithm, value).map(|_| value.to_owned())
                });
                value.flatten().ok_or_else(|| invalid_header(header))?
            }
        };
        let computed = written.checksum.as_ref().map(|computed| &computed.value);
        if computed == Some(&expected) {
            Ok(())
        } else {
            Err(bad_digest(self.algorithm))
        }
    }
}

/// The checksum a PutObject or UploadPart body must have, from its headers: the stated value,
/// or the algorithm it names whose value comes in a trailer, or else the one the upload
/// declared. `declared` is the upload's, for a part; `trailers` an aws-chunked body's.
pub fn body_check(
    headers: &http::HeaderMap,
    named: Option<&dto::ChecksumAlgorithm>,
    stated: Stated<'_>,
    trailers: Option<TrailingHeaders>,
    declared: Option<UploadChecksum>,
) -> S3Result<Option<BodyCheck>> {
    let value = stated_value(stated)?;
    // s3s reads `x-amz-checksum-algorithm`, or the algorithm `x-amz-trailer` names, into
    // `named`; the SDKs also send `x-amz-sdk-checksum-algorithm`.
    let sdk = headers
        .get(SDK_ALGORITHM)
        .map(|name| algorithm(name.to_str().unwrap_or_default(), SDK_ALGORITHM))
        .transpose()?;
    let named = named
        .map(|name| algorithm(name.as_str(), "x-amz-checksum-algorithm"))
        .transpose()?;
    let named = match (sdk, named) {
        (Some(sdk), Some(named)) if sdk != named => return Err(invalid_header(SDK_ALGORITHM)),
        (sdk, named) => sdk.or(named),
    };
    let check = match (named, value) {
        (Some(named), Some(value)) if named != value.algorithm => {
            return Err(invalid_header(SDK_ALGORITHM));
        }
        (_, Some(value)) => Some(BodyCheck {
            algorithm: value.algorithm,
            expected: Expected::Stated(value.value),
        }),
        (Some(named), None) => match trailers {
            Some(trailers) => Some(BodyCheck {
                algorithm: named,
                expected: Expected::Trailer(trailers),
            }),
            None => {
                return Err(invalid_request(
                    "x-amz-sdk-checksum-algorithm specified, but no corresponding \
                     x-amz-checksum-* or x-amz-trailer headers were found.",
                ));
            }
        },
        (None, None) => declared.map(|declared| BodyCheck {
            algorithm: declared.algorithm,
            expected: Expected::Nothing,
        }),
    };
    if let (Some(declared), Some(check)) = (declared, &check)
        && check.algorithm != declared.algorithm
    {
        return Err(type_mismatch(declared.algorithm, check.algorithm));
    }
    Ok(check)
}

/// The checksum CreateMultipartUpload declares: its algorithm, and the type it asks for or
/// else the one S3 gives that algorithm.
pub fn declared(
    algorithm: Option<&dto::ChecksumAlgorithm>,
    kind: Option<&dto::ChecksumType>,
) -> S3Result<Option<UploadChecksum>> {
    let kind = kind.map(checksum_type).transpose()?;
    let Some(algorithm) = algorithm else {
        return match kind {
            None => Ok(None),
            Some(_) => Err(invalid_request(
                "The x-amz-checksum-type header can only be used with the \
                 x-amz-checksum-algorithm header.",
            )),
        };
    };
    let algorithm = self::algorithm(algorithm.as_str(), "x-amz-checksum-algorithm")?;
    let kind = kind.unwrap_or(algorithm.multipart_type());
    match (algorithm, kind) {
        // S3 has no full-object SHA-256 (it cannot be combined from the parts'), and no
        // composite CRC64NVME.
        (ChecksumAlgorithm::Sha256, ChecksumType::FullObject)
        | (ChecksumAlgorithm::Crc64nvme, ChecksumType::Composite) => Err(invalid_request(format!(
            "The {} checksum type cannot be used with the {} checksum algorithm.",
            s3_type(kind).as_str(),
            algorithm.name()
        ))),
        _ => Ok(Some(UploadChecksum { algorithm, kind })),
    }
}

/// `InvalidPart` unless every checksum a Complete lists for a part is the stored part's.
pub fn check_listed_part(
    number: i32,
    listed: Stated<'_>,
    stored: Option<&ChecksumValue>,
) -> S3Result<()> {
    let differs = listed.into_iter().any(|(name, value)| {
        value.is_some_and(|value| {
            !stored
                .is_some_and(|stored| stored.algorithm.s3_name() == name && stored.value == value)
        })
    });
    if differs {
        return Err(S3Error::with_message(
            S3ErrorCode::InvalidPart,
            format!("the checksum of part {number} does not match"),
        ));
    }
    Ok(())
}

/// The object's checksum from its parts' (in order, with their sizes): combined into the CRC of
/// the whole object, or the composite checksum of the parts' with `-N`.
pub fn object_checksum(declared: UploadChecksum, parts: &[&PartMeta]) -> S3Result<Checksum> {
    let mut values = Vec::with_capacity(parts.len());
    for part in parts {
        match &part.checksum {
            Some(checksum) if checksum.algorithm == declared.algorithm => {
                values.push((checksum.value.as_str(), part.size));
            }
            // Every part of an upload that declared a checksum is stored with one.
            _ => return Err(corrupt()),
        }
    }
    let value = match declared.kind {
        ChecksumType::FullObject => checksum::full_object(declared.algorithm, &values),
        ChecksumType::Composite => {
            let digests: Vec<&str> = values.iter().map(|&(value, _)| value).collect();
            checksum::composite(declared.algorithm, &digests)
        }
    };
    let value = value.ok_or_else(corrupt)?;
    Ok(Checksum {
        algorithm: declared.algorithm,
        kind: declared.kind,
        value,
    })
}

/// The type and value a Complete may state: the type must be the one the upload declared, and
/// the value the object's (`BadDigest` otherwise). A composite value may come with its `-N`.
pub fn check_complete(
    declared: UploadChecksum,
    kind: Option<&dto::ChecksumType>,
    stated: Stated<'_>,
    object: &Checksum,
) -> S3Result<()> {
    if let Some(kind) = kind
        && checksum_type(kind)? != declared.kind
    {
        return Err(invalid_request(format!(
            "The upload was created using the {} checksum mode. The complete request must use \
             the same checksum mode.",
            s3_type(declared.kind).as_str()
        )));
    }
    let stated = match single(stated)? {
        None => None,
        Some((name, value)) => {
            let header = header_of(name);
            let algorithm = algorithm(name, &header)?;
            if algorithm != declared.algorithm {
                return Err(type_mismatch(declared.algorithm, algorithm));
            }
            let digest = match (declared.kind, value.rsplit_once('-')) {
                (ChecksumType::Composite, Some((digest, _))) => digest,
                _ => value,
            };
            if checksum::decode(algorithm, digest).is_none() {
                return Err(invalid_header(&header));
            }
            Some(value)
        }
    };
    let digest = object.value.split('-').next().unwrap_or_default();
    match stated {
        Some(stated) if stated != object.value && stated != digest => {
            Err(bad_digest(declared.algorithm))
        }
        _ => Ok(()),
    }
}

/// A checksum in the `checksum_*` field of its algorithm, as answers carry it.
#[derive(Debug, Default)]
pub struct Fields {
    pub crc32c: Option<String>,
    pub crc64nvme: Option<String>,
    pub sha256: Option<String>,
    /// An object's checksum type; a part's checksum has none.
    pub kind: Option<dto::ChecksumType>,
}

impl Fields {
    fn of(algorithm: ChecksumAlgorithm, value: String) -> Self {
        let value = Some(value);
        match algorithm {
            ChecksumAlgorithm::Crc32c => Self {
                crc32c: value,
                ..Self::default()
            },
            ChecksumAlgorithm::Crc64nvme => Self {
                crc64nvme: value,
                ..Self::default()
            },
            ChecksumAlgorithm::Sha256 => Self {
                sha256: value,
                ..Self::default()
            },
        }
    }

    pub fn of_part(checksum: Option<ChecksumValue>) -> Self {
        checksum.map_or_else(Self::default, |checksum| {
            Self::of(checksum.algorithm, checksum.value)
        })
    }

    pub fn of_object(checksum: Option<Checksum>) -> Self {
        checksum.map_or_else(Self::default, |checksum| Self {
            kind: Some(s3_type(checksum.kind)),
            ..Self::of(checksum.algorithm, checksum.value)
        })
    }
}

pub fn s3_algorithm(algorithm: ChecksumAlgorithm) -> dto::ChecksumAlgorithm {
    dto::ChecksumAlgorithm::from_static(algorithm.s3_name())
}

pub fn s3_type(kind: ChecksumType) -> dto::ChecksumType {
    dto::ChecksumType::from_static(match kind {
        ChecksumType::FullObject => dto::ChecksumType::FULL_OBJECT,
        ChecksumType::Composite => dto::ChecksumType::COMPOSITE,
    })
}

/// The one value a request states, checked for form: S3 refuses two, and a value that is not
/// the base64 of a digest of its algorithm's length.
fn stated_value(stated: Stated<'_>) -> S3Result<Option<ChecksumValue>> {
    let Some((name, value)) = single(stated)? else {
        return Ok(None);
    };
    let header = header_of(name);
    let algorithm = algorithm(name, &header)?;
    if checksum::decode(algorithm, value).is_none() {
        return Err(invalid_header(&header));
    }
    Ok(Some(ChecksumValue {
        algorithm,
        value: value.to_owned(),
    }))
}

fn single(stated: Stated<'_>) -> S3Result<Option<(&'static str, &str)>> {
    let mut present = stated
        .into_iter()
        .filter_map(|(name, value)| Some((name, value?)));
    let first = present.next();
    if present.next().is_some() {
        return Err(invalid_request(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.",
        ));
    }
    Ok(first)
}

fn header_of(name: &str) -> String {
    format!("x-amz-checksum-{}", name.to_ascii_lowercase())
}

/// The algorithm S3 calls `name` (in any case, as S3 takes it), read from `header`.
fn algorithm(name: &str, header: &str) -> S3Result<ChecksumAlgorithm> {
    if let Some(algorithm) = ChecksumAlgorithm::parse(name) {
        return Ok(algorithm);
    }
    if ["CRC32", "SHA1"]
        .iter()
        .any(|other| name.eq_ignore_ascii_case(other))
    {
        return Err(S3Error::with_message(
            S3ErrorCode::NotImplemented,
            format!(
                "this store verifies CRC32C, CRC64NVME and SHA256 checksums, not {}",
                name.to_ascii_uppercase()
            ),
        ));
    }
    Err(invalid_header(header))
}

fn checksum_type(kind: &dto::ChecksumType) -> S3Result<ChecksumType> {
    match kind.as_str() {
        dto::ChecksumType::FULL_OBJECT => Ok(ChecksumType::FullObject),
        dto::ChecksumType::COMPOSITE => Ok(ChecksumType::Composite),
        _ => Err(invalid_header("x-amz-checksum-type")),
    }
}

fn corrupt() -> S3Error {
    S3Error::with_message(
        S3ErrorCode::InternalError,
        "a stored part has no valid checksum of the upload's algorithm",
    )
}

fn invalid_request(message: impl Into<String>) -> S3Error {
    S3Error::with_message(S3ErrorCode::InvalidRequest, message.into())
}

fn invalid_header(header: &str) -> S3Error {
    invalid_request(format!("Value for {header} header is invalid."))
}

fn type_mismatch(expected: ChecksumAlgorithm, actual: ChecksumAlgorithm) -> S3Error {
    invalid_request(format!(
        "Checksum Type mismatch occurred, expected checksum Type: {expected}, actual checksum \
         Type: {actual}"
    ))
}

fn bad_digest(algorithm: ChecksumAlgorithm) -> S3Error {
    S3Error::with_message(
        S3ErrorCode::BadDigest,
        format!(
            "The {} you specified did not match the calculated checksum.",
            algorithm.s3_name()
        ),
    )
}
