//! How a file is cut into parts, under S3's rules.
//!
//! `part = max(preferred, min_part_size, ceil(size / max_parts))`, capped at `max_part_size`.
//! A file at or under one part goes as a single PUT. The plan says when and why it raised the
//! preferred size, so a caller can tell the user.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::json::{Fields, FromJson, Json};

pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * KIB;
pub const GIB: u64 = 1024 * MIB;
pub const TIB: u64 = 1024 * GIB;

/// Ferry's preferred part size before the store's rules raise it.
pub const DEFAULT_PREFERRED_PART_SIZE: u64 = 512 * KIB;

/// What the store accepts for multipart uploads (S3's limits by default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoreLimits {
    /// Smallest size of every part but the last (`EntityTooSmall` at Complete below it).
    pub min_part_size: u64,
    /// Largest part, and largest single PUT.
    pub max_part_size: u64,
    /// Most parts in one upload.
    pub max_parts: u32,
    /// Largest object.
    pub max_object_size: u64,
}

impl StoreLimits {
    /// AWS S3's published limits; MinIO, R2 and GCS share them.
    pub const S3: Self = Self {
        min_part_size: 5 * MIB,
        max_part_size: 5 * GIB,
        max_parts: 10_000,
        max_object_size: 5 * TIB,
    };
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self::S3
    }
}

/// Whether a file goes as one PUT or as a multipart upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UploadMode {
    Single,
    Multipart,
}

/// Why the plan's part size is larger than the preferred one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "reason")]
pub enum PartSizeRaised {
    /// The store refuses parts under its minimum.
    StoreMinimum { min_part_size: u64 },
    /// At the preferred size the file would need more parts than the store allows.
    MaxParts { max_parts: u32 },
}

/// A file cut into parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    pub size: u64,
    pub part_size: u64,
    pub part_count: u32,
    pub mode: UploadMode,
    pub raised: Option<PartSizeRaised>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The file is larger than the store can hold in one object.
    #[error("a file of {size} bytes is larger than the store's limit of {max} bytes")]
    TooLarge { size: u64, max: u64 },
    /// A part size of zero cannot cut anything.
    #[error("the part size must be at least one byte")]
    ZeroPartSize,
}

impl Plan {
    /// Cuts `size` bytes into parts of about `preferred` bytes, as the store's limits allow.
    pub fn new(size: u64, preferred: u64, limits: &StoreLimits) -> Result<Self, PlanError> {
        let max = limits.max_object_size.min(
            limits
                .max_part_size
                .saturating_mul(u64::from(limits.max_parts)),
        );
        if size > max {
            return Err(PlanError::TooLarge { size, max });
        }
        let to_fit = size.div_ceil(u64::from(limits.max_parts.max(1)));
        let mut part_size = preferred;
        let mut raised = None;
        if limits.min_part_size > part_size {
            part_size = limits.min_part_size;
            raised = Some(PartSizeRaised::StoreMinimum {
                min_part_size: limits.min_part_size,
            });
        }
        if to_fit > part_size {
            part_size = to_fit;
            raised = Some(PartSizeRaised::MaxParts {
                max_parts: limits.max_parts,
            });
        }
        let part_size = part_size.min(limits.max_part_size);
        if part_size == 0 {
            return Err(PlanError::ZeroPartSize);
        }
        Self::with_part_size(size, part_size).map(|plan| Self { raised, ..plan })
    }

    /// The plan for a part size someone else chose (the companion), checked for sanity.
    pub fn with_part_size(size: u64, part_size: u64) -> Result<Self, PlanError> {
        if part_size == 0 {
            return Err(PlanError::ZeroPartSize);
        }
        let (mode, part_count) = if size <= part_size {
            (UploadMode::Single, 1)
        } else {
            let count = size.div_ceil(part_size);
            let count = u32::try_from(count).map_err(|_| PlanError::TooLarge {
                size,
                max: part_size * u64::from(u32::MAX),
            })?;
            (UploadMode::Multipart, count)
        };
        Ok(Self {
            size,
            part_size,
            part_count,
            mode,
            raised: None,
        })
    }

    /// The bytes of part `number` (1-based); the last part takes what is left.
    pub fn part_range(&self, number: u32) -> Range<u64> {
        debug_assert!((1..=self.part_count).contains(&number));
        let start = u64::from(number - 1) * self.part_size;
        start.min(self.size)..(start + self.part_size).min(self.size)
    }
}

impl FromJson for StoreLimits {
    fn from_json(json: &Json) -> Result<Self, String> {
        let fields = Fields::of(json)?;
        Ok(Self {
            min_part_size: fields.required("minPartSize")?,
            max_part_size: fields.required("maxPartSize")?,
            max_parts: fields.required("maxParts")?,
            max_object_size: fields.required("maxObjectSize")?,
        })
    }
}

impl FromJson for UploadMode {
    fn from_json(json: &Json) -> Result<Self, String> {
        match json.as_str() {
            Some("single") => Ok(Self::Single),
            Some("multipart") => Ok(Self::Multipart),
            _ => Err("expected \"single\" or \"multipart\"".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `check(size, preferred, expected part size, expected count, expected mode)`
    fn check(size: u64, preferred: u64, part_size: u64, part_count: u32, mode: UploadMode) {
        let plan = Plan::new(size, preferred, &StoreLimits::S3).unwrap();
        assert_eq!(
            (plan.part_size, plan.part_count, plan.mode),
            (part_size, part_count, mode),
            "size {size}"
        );
        assert!(plan.part_count <= StoreLimits::S3.max_parts);
        assert!(plan.part_size <= StoreLimits::S3.max_part_size);
        let covered: u64 = (1..=plan.part_count)
            .map(|n| {
                let range = plan.part_range(n);
                range.end - range.start
            })
            .sum();
        assert_eq!(covered, size, "parts cover the file exactly");
        if plan.mode == UploadMode::Multipart {
            for n in 1..plan.part_count {
                let range = plan.part_range(n);
                assert!(range.end - range.start >= StoreLimits::S3.min_part_size);
            }
        }
    }

    #[test]
    fn sizes_around_the_minimum_part() {
        use UploadMode::*;
        let pref = DEFAULT_PREFERRED_PART_SIZE;
        check(0, pref, 5 * MIB, 1, Single);
        check(1, pref, 5 * MIB, 1, Single);
        check(5 * MIB - 1, pref, 5 * MIB, 1, Single);
        check(5 * MIB, pref, 5 * MIB, 1, Single);
        check(5 * MIB + 1, pref, 5 * MIB, 2, Multipart);
        check(23 * MIB, pref, 5 * MIB, 5, Multipart);
    }

    #[test]
    fn huge_files_are_raised_to_fit_ten_thousand_parts() {
        use UploadMode::*;
        let pref = DEFAULT_PREFERRED_PART_SIZE;
        // 50 GiB / 10,000 = 5,368,710 bytes (rounded up), just above 5 MiB.
        check(50 * GIB, pref, 5_368_710, 10_000, Multipart);
        // 5 TiB / 10,000 = 549,755,814 bytes (rounded up).
        check(5 * TIB, pref, 549_755_814, 10_000, Multipart);
    }

    #[test]
    fn the_plan_says_why_it_raised_the_part_size() {
        let small = Plan::new(50 * MIB, DEFAULT_PREFERRED_PART_SIZE, &StoreLimits::S3).unwrap();
        assert_eq!(
            small.raised,
            Some(PartSizeRaised::StoreMinimum {
                min_part_size: 5 * MIB
            })
        );
        let huge = Plan::new(50 * GIB, DEFAULT_PREFERRED_PART_SIZE, &StoreLimits::S3).unwrap();
        assert_eq!(
            huge.raised,
            Some(PartSizeRaised::MaxParts { max_parts: 10_000 })
        );
        let preferred = Plan::new(50 * MIB, 8 * MIB, &StoreLimits::S3).unwrap();
        assert_eq!(preferred.raised, None);
        assert_eq!(preferred.part_size, 8 * MIB);
    }

    #[test]
    fn a_store_without_a_minimum_keeps_the_preferred_size() {
        let limits = StoreLimits {
            min_part_size: 0,
            ..StoreLimits::S3
        };
        let plan = Plan::new(MIB + 1, DEFAULT_PREFERRED_PART_SIZE, &limits).unwrap();
        assert_eq!((plan.part_size, plan.part_count), (512 * KIB, 3));
        assert_eq!(plan.part_range(3), MIB..MIB + 1);
    }

    #[test]
    fn beyond_five_tebibytes_is_refused() {
        let err = Plan::new(5 * TIB + 1, DEFAULT_PREFERRED_PART_SIZE, &StoreLimits::S3);
        assert_eq!(
            err,
            Err(PlanError::TooLarge {
                size: 5 * TIB + 1,
                max: 5 * TIB
            })
        );
    }

    #[test]
    fn parts_are_capped_at_five_gibibytes() {
        // A store that allows few parts cannot push a part over its maximum: the file is refused.
        let limits = StoreLimits {
            max_parts: 2,
            ..StoreLimits::S3
        };
        assert_eq!(
            Plan::new(10 * GIB + 1, MIB, &limits),
            Err(PlanError::TooLarge {
                size: 10 * GIB + 1,
                max: 10 * GIB
            })
        );
        let plan = Plan::new(10 * GIB, MIB, &limits).unwrap();
        assert_eq!((plan.part_size, plan.part_count), (5 * GIB, 2));
    }

    #[test]
    fn a_zero_part_size_is_an_error_not_a_division_by_zero() {
        assert_eq!(Plan::with_part_size(10, 0), Err(PlanError::ZeroPartSize));
    }
}
