//! S3's XML answers, read with quick-xml's serde support into the few fields the companion uses.
//! Stores disagree on root names (`ListPartsResult` for AWS, `ListPartsResponse` for moto) and
//! namespaces, so the root's name is only checked where it tells an error from an answer, and
//! unknown elements are skipped.

use quick_xml::events::Event;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// An S3 answer's fields, or why it could not be read.
pub fn read<T: DeserializeOwned>(xml: &str) -> Result<T, quick_xml::DeError> {
    quick_xml::de::from_str(xml)
}

/// The name of the document's root element.
fn root(xml: &str) -> Option<String> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event().ok()? {
            Event::Start(start) | Event::Empty(start) => {
                return Some(String::from_utf8_lossy(start.local_name().as_ref()).into_owned());
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorDocument {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: String,
}

/// An `<Error>` inside an `<ErrorResponse>`, as some S3-compatible stores wrap it.
#[derive(Debug, Deserialize)]
struct WrappedError {
    #[serde(rename = "Error")]
    error: ErrorDocument,
}

/// `(code, message)` of an `<Error>` document (or one wrapped in `<ErrorResponse>`); `None` for
/// any other document.
pub fn error(xml: &str) -> Option<(String, String)> {
    let error = match root(xml)?.as_str() {
        "Error" => read::<ErrorDocument>(xml).ok()?,
        "ErrorResponse" => read::<WrappedError>(xml).ok()?.error,
        _ => return None,
    };
    Some((
        error.code.unwrap_or_else(|| "Unknown".to_owned()),
        error.message,
    ))
}

/// CompleteMultipartUpload's answer.
#[derive(Debug, Deserialize)]
pub struct Completed {
    #[serde(rename = "ETag")]
    pub etag: String,
}

/// One page of ListParts.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PartsPage {
    #[serde(rename = "Part", default)]
    pub parts: Vec<Part>,
    #[serde(default)]
    pub is_truncated: bool,
    /// Text, read as a number only when the page is truncated: stores send it empty otherwise.
    pub next_part_number_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Part {
    pub part_number: u32,
    pub size: u64,
    #[serde(rename = "ETag")]
    pub etag: String,
    /// The part's checksum, of whichever algorithm its upload declared.
    #[serde(rename = "ChecksumCRC32C", default)]
    pub checksum_crc32c: Option<String>,
    #[serde(rename = "ChecksumCRC64NVME", default)]
    pub checksum_crc64nvme: Option<String>,
    #[serde(rename = "ChecksumSHA256", default)]
    pub checksum_sha256: Option<String>,
}

impl Part {
    pub fn checksum(&mut self) -> Option<String> {
        self.checksum_crc32c
            .take()
            .or_else(|| self.checksum_crc64nvme.take())
            .or_else(|| self.checksum_sha256.take())
    }
}

/// One page of ListMultipartUploads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct UploadsPage {
    #[serde(rename = "Upload", default)]
    pub uploads: Vec<Upload>,
    #[serde(default)]
    pub is_truncated: bool,
    pub next_key_marker: Option<String>,
    pub next_upload_id_marker: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Upload {
    pub key: String,
    pub upload_id: String,
    pub initiated: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_documents_are_read_and_answers_are_not_errors() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>EntityTooSmall</Code><Message>part 1 &lt; 5 MiB</Message><RequestId>x</RequestId></Error>"#;
        assert_eq!(
            error(body),
            Some(("EntityTooSmall".into(), "part 1 < 5 MiB".into()))
        );
        assert_eq!(error("<CompleteMultipartUploadResult/>"), None);
        assert_eq!(
            error(
                "<ErrorResponse><Error><Code>SlowDown</Code><Message>m</Message></Error></ErrorResponse>"
            ),
            Some(("SlowDown".into(), "m".into()))
        );
        assert_eq!(error("not xml at all"), None);
        // An entity a DOCTYPE declares is never expanded into the code.
        let declared = r#"<!DOCTYPE Error [<!ENTITY x "boom">]><Error><Code>&x;</Code></Error>"#;
        assert_ne!(
            error(declared).map(|(code, _)| code).as_deref(),
            Some("boom")
        );
        assert_eq!(
            error("<Error></Error>"),
            Some(("Unknown".into(), String::new()))
        );
    }

    #[test]
    fn a_complete_answer_gives_its_etag_unescaped() {
        let body = r#"<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>l</Location><Bucket>b</Bucket><Key>k</Key><ETag>&quot;ab-3&quot;</ETag></CompleteMultipartUploadResult>"#;
        assert_eq!(read::<Completed>(body).unwrap().etag, "\"ab-3\"");
        assert!(read::<Completed>("<CompleteMultipartUploadResult/>").is_err());
    }

    #[test]
    fn list_multipart_uploads_pages_are_read() {
        let body = r#"<ListMultipartUploadsResult><Bucket>b</Bucket><IsTruncated>true</IsTruncated>
<NextKeyMarker>k2</NextKeyMarker><NextUploadIdMarker>u2</NextUploadIdMarker>
<Upload><Key>k1</Key><UploadId>u1</UploadId><Initiated>2026-12-01T10:00:00.000Z</Initiated></Upload>
<Upload><Key>k2</Key><UploadId>u2</UploadId><Initiated>2026-12-01T11:00:00.000Z</Initiated></Upload>
</ListMultipartUploadsResult>"#;
        let page: UploadsPage = read(body).unwrap();
        assert!(page.is_truncated);
        assert_eq!(page.uploads.len(), 2);
        assert_eq!(
            (
                page.uploads[1].key.as_str(),
                page.uploads[1].upload_id.as_str()
            ),
            ("k2", "u2")
        );
        assert_eq!(page.next_key_marker.as_deref(), Some("k2"));
        let empty: UploadsPage = read("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>").unwrap();
        assert!(empty.uploads.is_empty() && !empty.is_truncated);
    }
}
