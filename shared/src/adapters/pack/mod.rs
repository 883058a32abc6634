//! How both stores keep JSON small: compressed with zstd against a built-in dictionary.
//!
//! Most stored JSON (an execution, a node run, a batch of logs) is a few hundred bytes with
//! the same field names every time, which plain compression cannot shrink: there is nothing
//! to repeat within one record. A zstd *raw content dictionary* fixes that: the compressor
//! may refer to any text in [`DICTIONARY_V1`] (typical records), so field names, statuses,
//! common headers and log messages cost a byte or two.
//!
//! A packed value is `[format, zstd frame...]`; format 1 is zstd with dictionary v1. The
//! dictionary is part of the storage format: **never edit `dictionary_v1.txt`**; a better one
//! is a new file and a new format byte, and the old one stays to read what was written.
//! Values small enough that compression does not pay are stored as plain JSON text; readers
//! accept both (and every row written before packing existed is plain text).

use std::cell::RefCell;

/// The format byte of a value compressed with dictionary v1.
const FORMAT_ZSTD_V1: u8 = 1;
/// Shorter JSON is stored as it is: the frame header would eat the gain.
const MIN_PACKED: usize = 64;
/// zstd's level: 3 is its default, fast enough to run inside the writer's transaction.
const LEVEL: i32 = 3;
/// A corrupt header must not make a reader allocate without bound.
const MAX_UNPACKED: u64 = 64 * 1024 * 1024;

static DICTIONARY_V1: &[u8] = include_bytes!("dictionary_v1.txt");

#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("unknown packed format {0}")]
    Format(u8),
    #[error("packed value is empty")]
    Empty,
    #[error("zstd: {0}")]
    Zstd(String),
}

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// A value as stored: plain JSON text, or packed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packed {
    Text(String),
    Bytes(Vec<u8>),
}

impl Packed {
    pub fn len(&self) -> usize {
        match self {
            Self::Text(t) => t.len(),
            Self::Bytes(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Packs JSON text: compressed when that makes it smaller, else the text itself.
pub fn pack(json: String) -> Packed {
    if json.len() < MIN_PACKED {
        return Packed::Text(json);
    }
    match compress(json.as_bytes()) {
        Ok(frame) if frame.len() + 1 < json.len() => {
            let mut out = Vec::with_capacity(frame.len() + 1);
            out.push(FORMAT_ZSTD_V1);
            out.extend_from_slice(&frame);
            Packed::Bytes(out)
        }
        // Incompressible (or the compressor failed): stored as it is, still readable.
        _ => Packed::Text(json),
    }
}

/// Packs JSON text into bytes whatever its size (for stores whose attribute is binary).
pub fn pack_bytes(json: String) -> Vec<u8> {
    match pack(json) {
        Packed::Bytes(b) => b,
        // Format 0: the JSON text as it is.
        Packed::Text(t) => {
            let mut out = Vec::with_capacity(t.len() + 1);
            out.push(0);
            out.extend_from_slice(t.as_bytes());
            out
        }
    }
}

/// The JSON text of packed bytes (from [`pack`] or [`pack_bytes`]).
pub fn unpack(bytes: &[u8]) -> Result<Vec<u8>, PackError> {
    let (&format, frame) = bytes.split_first().ok_or(PackError::Empty)?;
    match format {
        0 => Ok(frame.to_vec()),
        FORMAT_ZSTD_V1 => decompress(frame),
        other => Err(PackError::Format(other)),
    }
}

fn compress(data: &[u8]) -> Result<Vec<u8>, PackError> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Compressor::with_dictionary(LEVEL, DICTIONARY_V1)
                    .map_err(|e| PackError::Zstd(e.to_string()))?,
            );
        }
        let compressor = slot
            .as_mut()
            .ok_or_else(|| PackError::Zstd("no compressor".into()))?;
        compressor
            .compress(data)
            .map_err(|e| PackError::Zstd(e.to_string()))
    })
}

fn decompress(frame: &[u8]) -> Result<Vec<u8>, PackError> {
    let size = zstd::zstd_safe::get_frame_content_size(frame)
        .map_err(|_| PackError::Zstd("not a zstd frame".into()))?
        .ok_or_else(|| PackError::Zstd("the frame does not state its size".into()))?;
    if size > MAX_UNPACKED {
        return Err(PackError::Zstd(format!(
            "frame of {size} bytes is too large"
        )));
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(
                zstd::bulk::Decompressor::with_dictionary(DICTIONARY_V1)
                    .map_err(|e| PackError::Zstd(e.to_string()))?,
            );
        }
        let decompressor = slot
            .as_mut()
            .ok_or_else(|| PackError::Zstd("no decompressor".into()))?;
        decompressor
            .decompress(frame, size as usize)
            .map_err(|e| PackError::Zstd(e.to_string()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXECUTION: &str = r#"{"id":"01a236b4-ded7-7409-b2c3-a7ed4777d402","workflowId":"01a236b4-dec0-729d-952b-a83bf3d4f359","workflowVersion":1,"userId":"u","organizationId":"o","status":"success","mode":"webhook","inputData":{"body":{"n":2},"headers":{"accept":"*/*","accept-encoding":"gzip, deflate","connection":"keep-alive","content-length":"8","content-type":"application/json","host":"127.0.0.1:3917","user-agent":"python-requests/2.34.2"},"method":"POST","path":"/webhook/o0U6lWyds9iCMI6geC4YJg","query":{}},"outputData":{"n":2,"ok":true},"startedAt":"2026-12-02T12:22:32.925Z","completedAt":"2026-12-02T12:22:32.928Z","duration":3,"errorMessage":null,"errorDetails":null,"retryCount":0,"retryOf":null,"nodesExecuted":2,"nodesFailed":0,"metrics":{"totalNodes":2,"successfulNodes":2,"failedNodes":0,"skippedNodes":0,"averageNodeExecutionTime":0.0,"memoryUsage":19869696,"cpuUsage":30.0},"deadline":"2026-12-02T12:27:32.919Z","createdAt":"2026-12-02T12:22:32.919Z","startNodeId":"hook","parentExecutionId":null,"parentNodeId":null,"itemIndex":null,"depth":0}"#;

    #[test]
    fn a_typical_execution_packs_to_a_fraction_and_back() {
        let packed = pack(EXECUTION.to_string());
        let Packed::Bytes(bytes) = &packed else {
            panic!("expected compression to pay")
        };
        assert!(
            bytes.len() * 3 < EXECUTION.len(),
            "{} bytes packed from {}",
            bytes.len(),
            EXECUTION.len()
        );
        assert_eq!(unpack(bytes).unwrap(), EXECUTION.as_bytes());
    }

    #[test]
    fn short_or_incompressible_text_stays_text() {
        assert_eq!(pack("{}".into()), Packed::Text("{}".into()));
        let random: String = (0..200)
            .map(|i| char::from(b'!' + ((i * 7919 + i * i * 31) % 90) as u8))
            .collect();
        let json = serde_json::to_string(&random).unwrap();
        let packed = pack(json.clone());
        assert!(packed.len() <= json.len());
        assert_eq!(unpack(&pack_bytes(json.clone())).unwrap(), json.as_bytes());
    }

    #[test]
    fn unknown_or_broken_values_are_errors_not_panics() {
        assert!(matches!(unpack(&[]), Err(PackError::Empty)));
        assert!(matches!(unpack(&[9, 1, 2]), Err(PackError::Format(9))));
        assert!(unpack(&[1, 0, 1, 2, 3]).is_err());
    }
}
