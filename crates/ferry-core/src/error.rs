//! Why an upload did not finish.

use serde::{Deserialize, Serialize};

/// Why an upload failed. Each variant has a stable [`code`](UploadError::code) for programs and a
/// message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum UploadError {
    /// The file is over the companion's maximum size; nothing was sent.
    #[error("the file is {size} bytes, over the limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    /// The companion does not accept this content type; nothing was sent.
    #[error("the companion does not accept files of type \"{content_type}\"")]
    TypeNotAllowed { content_type: String },
    /// The companion answered with an error (its code may be the store's S3 code).
    #[error("the companion refused ({status} {code}): {message}")]
    Companion {
        status: u16,
        code: String,
        message: String,
    },
    /// The companion could not be reached at all.
    #[error("the companion could not be reached: {message}")]
    CompanionUnreachable { message: String },
    /// The store answered a part PUT with an error.
    #[error("the store refused part {part} ({status} {code}): {message}")]
    Store {
        part: u32,
        status: u16,
        code: String,
        message: String,
    },
    /// A part PUT never got an answer from the store (network error, CORS, blocked host).
    #[error("part {part} could not reach the store: {message}")]
    Network { part: u32, message: String },
    /// The companion's plan does not fit the file.
    #[error("the companion's plan does not fit the file: {0}")]
    BadPlan(String),
    /// The upload was cancelled.
    #[error("the upload was cancelled")]
    Cancelled,
    /// The file's bytes could not be read (to hash them).
    #[error("the file could not be read: {message}")]
    Unreadable { message: String },
}

impl UploadError {
    /// A failed call to the companion: unreachable, or refused with its code.
    pub fn from_call(failure: crate::retry::Failure) -> Self {
        match failure.status {
            None => Self::CompanionUnreachable {
                message: failure.message,
            },
            Some(status) => Self::Companion {
                status,
                code: failure.code,
                message: failure.message,
            },
        }
    }

    /// A stable code: Ferry's own name of the failure, or the S3 or companion code it carries.
    pub fn code(&self) -> &str {
        match self {
            Self::TooLarge { .. } => "TooLarge",
            Self::TypeNotAllowed { .. } => "TypeNotAllowed",
            Self::Companion { code, .. } | Self::Store { code, .. } => code,
            Self::CompanionUnreachable { .. } => "CompanionUnreachable",
            Self::Network { .. } => "NetworkError",
            Self::BadPlan(_) => "BadPlan",
            Self::Cancelled => "Cancelled",
            Self::Unreadable { .. } => "FileUnreadable",
        }
    }
}
